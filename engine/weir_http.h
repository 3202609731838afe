/*
 * weir_http.h -- non-blocking HTTP client: libcurl's multi_socket API
 * driven by the engine's libuv loop.  One curl multi handle per engine;
 * each http.request is an easy handle owned by a weir_op.
 */
#ifndef WEIR_HTTP_H
#define WEIR_HTTP_H

#include <lua.h>

#include "weir_engine.h"

/* Lua module "weir.http". */
int weir_open_http(lua_State *L);

int weir_http_engine_init(weir_engine *e);
void weir_http_engine_close(weir_engine *e);

#endif
