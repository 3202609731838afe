/*
 * weir_cursor.h -- "weir.cursor": named positions per recipe and source
 * (timestamps, LSNs, delta links, page tokens) that advance only when the
 * job that moved them succeeds.
 */
#ifndef WEIR_CURSOR_H
#define WEIR_CURSOR_H

#include <lua.h>

int weir_open_cursor(lua_State *L);

#endif
