/*
 * weir_store_lua.h -- running store requests from a job: the shared
 * plumbing of weir.ledger, weir.cursor and the run history.
 */
#ifndef WEIR_STORE_LUA_H
#define WEIR_STORE_LUA_H

#include <lua.h>

#include "weir_store.h"

/* Runs in the job's coroutine with the store's answer: push Lua results
 * and return their count.  res / n are the statements' results. */
typedef int (*weir_store_lua_push)(lua_State *L, weir_store_rows *res, int n, void *ud);

/* Submits stmts as one transaction and yields the running job until the
 * store answers.  `ud` (may be NULL) is released with ud_free after push
 * or when the job is cancelled.  A store error is raised in the job as
 * "<what>: <error>".  Use as `return weir_store_lua_exec(...)`. */
int weir_store_lua_exec(lua_State *L, const char *what, const weir_store_stmt *stmts, int n,
                        weir_store_lua_push push, void *ud, void (*ud_free)(void *));

/* The engine's store for the running script, raising on failure. */
weir_store *weir_store_lua_check(lua_State *L, const char *what);

/* Runs `tx:query(sql, v1..vn)` for the nparams values at the top of the
 * stack, where tx (at txidx) is a weir.pg transaction on the same
 * PostgreSQL database as the store: the write commits or rolls back with
 * the caller's rows.  Raises the query's error; otherwise pushes
 * `result` (copied from index result_idx, 0 = true) and returns 1.  Use as
 * `return weir_store_lua_txquery(...)`.  Raises when the store is not
 * PostgreSQL (a SQLite store cannot share the transaction). */
int weir_store_lua_txquery(lua_State *L, int txidx, const char *what, const char *sql,
                           int nparams, int result_idx);

#endif
