/*
 * weir_lib.c -- the "weir" module.
 *
 *   weir.retry(err [, {after = seconds}])  raises a retryable error; the runner
 *                                          waits `after` (e.g. Retry-After) before
 *                                          the next attempt instead of its backoff
 *   weir.fail(err)                         raises a permanent error: no more attempts
 *   weir.count(name [, n])                 adds n (default 1) to a run counter
 *                                          (read, written, skipped, failed, or any)
 *   weir.counts()                          -> the job's counters so far
 *   weir.job()                             -> {id=, recipe=, attempt=, trigger=}
 *
 * Errors are tables {kind=, message=, retryable=, after=, where=}: they keep
 * their structure through pcall and task.wait, and the engine reports
 * their `message`.
 */
#include "weir_lib.h"

#include <string.h>

#include <lauxlib.h>

#include "weir_state.h"

#define WEIR_LIB_COUNTS "weir.counts"
#define WEIR_LIB_JOB "weir.job"

/* Builds {kind=, message=, retryable=, where=} from the value at idx. */
static void weir_lib_push_error(lua_State *L, int idx, const char *kind, int retryable) {
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 6);
    if (lua_type(L, idx) == LUA_TTABLE) {
        /* copy the caller's fields (kind/message of an http error, ...) */
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            } else {
                lua_pop(L, 1);
            }
        }
        if (lua_getfield(L, -1, "kind") != LUA_TNIL) lua_setfield(L, -2, "cause");
        else lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_tolstring(L, idx, NULL);
        lua_setfield(L, -2, "message");
    }
    if (lua_getfield(L, -1, "message") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, retryable ? "retry requested" : "failed");
        lua_setfield(L, -2, "message");
    } else {
        lua_pop(L, 1);
    }
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushboolean(L, retryable);
    lua_setfield(L, -2, "retryable");
    luaL_where(L, 2);
    lua_setfield(L, -2, "where");
    /* message with position, as a string error would have */
    lua_getfield(L, -1, "where");
    lua_getfield(L, -2, "message");
    lua_concat(L, 2);
    lua_setfield(L, -2, "message");
}

static int weir_lib_retry(lua_State *L) {
    weir_lib_push_error(L, 1, WEIR_ERR_RETRY, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_Number after;
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "after") != LUA_TNIL) {
            after = luaL_checknumber(L, -1);
            if (!(after >= 0) || after > 86400.0)
                return luaL_error(L, "weir.retry: 'after' must be between 0 and 86400 seconds");
            lua_setfield(L, -2, "after");
        } else {
            lua_pop(L, 1);
        }
    }
    return lua_error(L);
}

static int weir_lib_fail(lua_State *L) {
    weir_lib_push_error(L, 1, WEIR_ERR_PERMANENT, 0);
    return lua_error(L);
}

/* Pushes the job's table `name` inside its locals, creating it. */
static void weir_lib_push_local_table(lua_State *L, weir_job *job, const char *name) {
    weir_job_push_locals(L, job);
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    lua_remove(L, -2);
}

static int weir_lib_count(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, 1);
    weir_job *job = weir_job_current(L);
    if (!job) return luaL_error(L, "weir.count: can only be called from a running job");
    weir_lib_push_local_table(L, job, WEIR_LIB_COUNTS);
    lua_getfield(L, -1, name);
    n += lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, name);
    lua_pushinteger(L, n);
    return 1;
}

static int weir_lib_lua_counts(lua_State *L) {
    weir_job *job = weir_job_current(L);
    lua_newtable(L);
    if (!job) return 1;
    weir_lib_push_local_table(L, job, WEIR_LIB_COUNTS);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    return 1;
}

static int weir_lib_job(lua_State *L) {
    weir_job *job = weir_job_current(L);
    weir_state *st = weir_state_of(L);
    if (!job) return luaL_error(L, "weir.job: can only be called from a running job");
    lua_newtable(L);
    /* what the runner recorded (attempt, trigger, job name, payload) */
    weir_lib_push_local_table(L, job, WEIR_LIB_JOB);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)job->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, st->name);
    lua_setfield(L, -2, "recipe");
    if (lua_getfield(L, -1, "attempt") == LUA_TNIL) {
        lua_pushinteger(L, 1);
        lua_setfield(L, -3, "attempt");
    }
    lua_pop(L, 1);
    return 1;
}

void weir_lib_get_counts(lua_State *L, weir_job *job, weir_lib_counts *out) {
    memset(out, 0, sizeof *out);
    if (!job || job->locals_ref == LUA_NOREF || job->locals_ref == LUA_REFNIL) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->locals_ref);
    if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, WEIR_LIB_COUNTS) == LUA_TTABLE) {
        lua_getfield(L, -1, "read");
        out->read = lua_tointeger(L, -1);
        lua_getfield(L, -2, "written");
        out->written = lua_tointeger(L, -1);
        lua_getfield(L, -3, "skipped");
        out->skipped = lua_tointeger(L, -1);
        lua_getfield(L, -4, "failed");
        out->failed = lua_tointeger(L, -1);
        lua_pop(L, 4);
    }
    lua_pop(L, 2);
}

int weir_open_lib(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"retry", weir_lib_retry}, {"fail", weir_lib_fail},
        {"count", weir_lib_count}, {"counts", weir_lib_lua_counts},
        {"job", weir_lib_job},     {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
