/*
 * weir_ledger.h -- "weir.ledger": idempotency and loop prevention over
 * the state store.  See weir_ledger.c for the API.
 */
#ifndef WEIR_LEDGER_H
#define WEIR_LEDGER_H

#include <lua.h>

int weir_open_ledger(lua_State *L);

#endif
