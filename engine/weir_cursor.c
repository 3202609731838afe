/*
 * weir_cursor.c -- "weir.cursor".
 *
 *   cursor.get(source)          -> value | nil  (this job's staged value first)
 *   cursor.set(source, value)   stages value (any JSON-encodable value)
 *   cursor.set(source, value, {tx = tx})  writes it inside a weir.pg
 *                               transaction (PostgreSQL store): it commits
 *                               with the rows, exactly once
 *   cursor.commit()             -> n: writes every staged value in one transaction
 *   cursor.reset(source)        -> boolean: deletes the committed value now
 *   cursor.list()               -> {source = value, ...} committed values
 *
 * Why staging: a cursor must never move past data that was not handled.
 * set() only records the new position in the job; the engine commits it
 * after the job's handler returned (weir run, and the job runner), and a
 * failed or killed job simply drops it, so the next run starts from the
 * last committed position again.
 */
#include "weir_cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "weir_job.h"
#include "weir_json.h"
#include "weir_state.h"
#include "weir_store_lua.h"

#define WEIR_CURSOR_STAGED "weir.cursor.staged"

static const char *weir_cursor_source(lua_State *L, int idx) {
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (len == 0 || len > 200) luaL_argerror(L, idx, "source name must be 1..200 bytes");
    return s;
}

/* Pushes this job's staged table (created when create != 0) or nil. */
static int weir_cursor_push_staged(lua_State *L, int create) {
    weir_job *job = weir_job_current(L);
    if (!job) {
        if (create) return luaL_error(L, "cursor: can only be used from a running job");
        lua_pushnil(L);
        return 0;
    }
    weir_job_push_locals(L, job);
    if (lua_getfield(L, -1, WEIR_CURSOR_STAGED) == LUA_TTABLE) {
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 1);
    if (!create) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return 0;
    }
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, WEIR_CURSOR_STAGED);
    lua_remove(L, -2);
    return 1;
}

static int weir_cursor_push_value(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_store_rows *rows = &res[n - 1];
    (void)ud;
    if (!rows->nrows || !rows->cells[0]) {
        lua_pushnil(L);
        return 1;
    }
    if (weir_json_decode(L, rows->cells[0], strlen(rows->cells[0])) != 0)
        return luaL_error(L, "cursor.get: stored value is not valid JSON: %s", lua_tostring(L, -1));
    return 1;
}

static int weir_cursor_get(lua_State *L) {
    const char *p[2];
    weir_store_stmt stmt = {"SELECT value FROM cursors WHERE recipe = $1 AND source = $2", 2, p};
    p[1] = weir_cursor_source(L, 1);
    p[0] = weir_state_of(L)->name;
    if (weir_cursor_push_staged(L, 0)) {
        if (lua_getfield(L, -1, p[1]) == LUA_TSTRING) {
            size_t len;
            const char *v = lua_tolstring(L, -1, &len);
            if (weir_json_decode(L, v, len) != 0) return lua_error(L);
            return 1;
        }
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
    }
    return weir_store_lua_exec(L, "cursor.get", &stmt, 1, weir_cursor_push_value, NULL, NULL);
}

static int weir_cursor_set(lua_State *L) {
    weir_cursor_source(L, 1);
    luaL_checkany(L, 2);
    if (lua_isnil(L, 2)) return luaL_argerror(L, 2, "value must not be nil (use cursor.reset)");
    weir_json_encode(L, 2, WEIR_JSON_SORT_KEYS);    /* raises on what cannot be stored */
    if (lua_istable(L, 3) && lua_getfield(L, 3, "tx") != LUA_TNIL) {
        /* written inside the caller's transaction: it commits with the rows */
        char now[32];
        int txidx = lua_gettop(L), validx = txidx - 1;
        if (weir_cursor_push_staged(L, 0)) {        /* drop a staged value */
            lua_pushnil(L);
            lua_setfield(L, -2, lua_tostring(L, 1));
        }
        lua_pop(L, 1);
        snprintf(now, sizeof now, "%lld", (long long)weir_store_now_ms());
        lua_pushstring(L, weir_state_of(L)->name);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, validx);
        lua_pushstring(L, now);
        return weir_store_lua_txquery(L, txidx, "cursor.set",
            "INSERT INTO weir.cursors (recipe, source, value, updated_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (recipe, source) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at", 4, 0);
    }
    lua_settop(L, 3);
    weir_json_encode(L, 2, WEIR_JSON_SORT_KEYS);
    weir_cursor_push_staged(L, 1);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    return 0;
}

static int weir_cursor_push_committed(lua_State *L, weir_store_rows *res, int n, void *ud) {
    (void)res; (void)ud;
    lua_pushinteger(L, n);
    return 1;
}

static int weir_cursor_commit(lua_State *L) {
    static const char sql[] =
        "INSERT INTO cursors (recipe, source, value, updated_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (recipe, source) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at";
    weir_store_stmt *stmts;
    const char **params;
    char now[32];
    int n = 0, i = 0, staged;
    weir_job_check(L, "cursor.commit");
    if (!weir_cursor_push_staged(L, 0)) { lua_pushinteger(L, 0); return 1; }
    staged = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, staged)) { n++; lua_pop(L, 1); }
    if (n == 0) { lua_pushinteger(L, 0); return 1; }
    stmts = lua_newuserdatauv(L, (size_t)n * sizeof *stmts, 0);
    params = lua_newuserdatauv(L, (size_t)n * 4 * sizeof *params, 0);
    snprintf(now, sizeof now, "%lld", (long long)weir_store_now_ms());
    lua_pushnil(L);
    while (lua_next(L, staged)) {
        const char **p = params + (size_t)i * 4;
        p[0] = weir_state_of(L)->name;
        p[1] = lua_tostring(L, -2);
        p[2] = lua_tostring(L, -1);
        p[3] = now;
        stmts[i].sql = sql;
        stmts[i].nparams = 4;
        stmts[i].params = p;
        lua_pop(L, 1);
        i++;
    }
    /* The staged table stays referenced by the stack until the store has
     * copied the request; it is cleared only after a successful commit. */
    weir_job_push_locals(L, weir_job_current(L));
    lua_pushnil(L);
    lua_setfield(L, -2, WEIR_CURSOR_STAGED);
    lua_pop(L, 1);
    return weir_store_lua_exec(L, "cursor.commit", stmts, n, weir_cursor_push_committed, NULL, NULL);
}

static int weir_cursor_push_changed(lua_State *L, weir_store_rows *res, int n, void *ud) {
    (void)ud;
    lua_pushboolean(L, res[n - 1].changes > 0);
    return 1;
}

static int weir_cursor_reset(lua_State *L) {
    const char *p[2];
    weir_store_stmt stmt = {"DELETE FROM cursors WHERE recipe = $1 AND source = $2", 2, p};
    p[1] = weir_cursor_source(L, 1);
    p[0] = weir_state_of(L)->name;
    if (weir_cursor_push_staged(L, 0)) {
        lua_pushnil(L);
        lua_setfield(L, -2, p[1]);
    }
    lua_pop(L, 1);
    return weir_store_lua_exec(L, "cursor.reset", &stmt, 1, weir_cursor_push_changed, NULL, NULL);
}

static int weir_cursor_push_list(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_store_rows *rows = &res[n - 1];
    int r;
    (void)ud;
    lua_createtable(L, 0, rows->nrows);
    for (r = 0; r < rows->nrows; r++) {
        const char *v = rows->cells[r * 2 + 1];
        if (weir_json_decode(L, v, strlen(v)) != 0) {
            lua_pop(L, 1);
            lua_pushstring(L, v);
        }
        lua_setfield(L, -2, rows->cells[r * 2]);
    }
    return 1;
}

static int weir_cursor_list(lua_State *L) {
    const char *p[1];
    weir_store_stmt stmt = {"SELECT source, value FROM cursors WHERE recipe = $1 ORDER BY source",
                            1, p};
    p[0] = weir_state_of(L)->name;
    return weir_store_lua_exec(L, "cursor.list", &stmt, 1, weir_cursor_push_list, NULL, NULL);
}

int weir_open_cursor(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"get", weir_cursor_get},     {"set", weir_cursor_set},
        {"commit", weir_cursor_commit}, {"reset", weir_cursor_reset},
        {"list", weir_cursor_list},   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
