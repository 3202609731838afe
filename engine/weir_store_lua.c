/*
 * weir_store_lua.c -- a store request as a weir_op.
 *
 * The store cannot un-send a request, so cancelling the op only marks it:
 * the store's callback then frees it instead of completing it.
 */
#include "weir_store_lua.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "weir_job.h"

typedef struct weir_store_op {
    weir_op base;
    const char *what;
    weir_store_rows *results;   /* moved out of the store's callback */
    int n;
    char *err;
    weir_store_lua_push push;
    void *ud;
    void (*ud_free)(void *);
    int cancelled;
} weir_store_op;

static void weir_store_op_destroy(weir_store_op *op) {
    int i;
    if (op->results) {
        for (i = 0; i < op->n; i++) weir_store_rows_free(&op->results[i]);
        free(op->results);
    }
    if (op->ud_free && op->ud) op->ud_free(op->ud);
    free(op->err);
    free(op);
}

static void weir_store_op_answer(void *ud, weir_store_rows *results, int n, const char *err) {
    weir_store_op *op = ud;
    if (op->cancelled) {
        weir_store_op_destroy(op);
        return;
    }
    if (err) {
        op->err = strdup(err);
    } else {
        op->results = calloc((size_t)n, sizeof *op->results);
        if (op->results) {
            memcpy(op->results, results, (size_t)n * sizeof *results);
            memset(results, 0, (size_t)n * sizeof *results);
            op->n = n;
        } else {
            op->err = strdup("store: out of memory");
        }
    }
    weir_op_complete(&op->base);
}

static int weir_store_op_push(lua_State *L, weir_op *base) {
    weir_store_op *op = (weir_store_op *)base;
    if (op->err) return luaL_error(L, "%s: %s", op->what, op->err);
    return op->push(L, op->results, op->n, op->ud);
}

static void weir_store_op_cancel(weir_op *base) {
    ((weir_store_op *)base)->cancelled = 1;    /* freed by the answer */
}

static void weir_store_op_free(weir_op *base) {
    weir_store_op_destroy((weir_store_op *)base);
}

weir_store *weir_store_lua_check(lua_State *L, const char *what) {
    weir_state *st = weir_state_of(L);
    char *err = NULL;
    weir_store *s = weir_store_of_engine(st->eng, &err);
    if (!s) {
        lua_pushfstring(L, "%s: %s", what, err ? err : "no store");
        free(err);
        lua_error(L);
    }
    return s;
}

int weir_store_lua_exec(lua_State *L, const char *what, const weir_store_stmt *stmts, int n,
                        weir_store_lua_push push, void *ud, void (*ud_free)(void *)) {
    weir_store *s;
    weir_store_op *op;
    weir_job *job = weir_job_current(L);
    char *err = NULL;
    if (!job || !lua_isyieldable(L) || job->op) {
        if (ud_free && ud) ud_free(ud);
        weir_job_check(L, what);                    /* raises */
    }
    s = weir_store_of_engine(job->st->eng, &err);
    if (!s) {
        if (ud_free && ud) ud_free(ud);
        lua_pushfstring(L, "%s: %s", what, err ? err : "no store");
        free(err);
        return lua_error(L);
    }
    op = calloc(1, sizeof *op);
    if (!op) {
        if (ud_free && ud) ud_free(ud);
        return luaL_error(L, "%s: out of memory", what);
    }
    op->base.push = weir_store_op_push;
    op->base.cancel = weir_store_op_cancel;
    op->base.free = weir_store_op_free;
    op->base.what = what;
    op->what = what;
    op->push = push;
    op->ud = ud;
    op->ud_free = ud_free;
    if (weir_store_exec(s, stmts, n, weir_store_op_answer, op) != 0) {
        weir_store_op_destroy(op);
        return luaL_error(L, "%s: the store is closing or out of memory", what);
    }
    return weir_op_yield(L, &op->base);
}

/* continuation of tx:query: stack = ... result res err */
static int weir_store_lua_txquery_k(lua_State *L, int status, lua_KContext ctx) {
    int result_idx = (int)ctx;
    (void)status;
    if (lua_isnil(L, -2)) return lua_error(L);      /* err on top */
    lua_pop(L, 2);
    if (result_idx) lua_pushvalue(L, result_idx);
    else lua_pushboolean(L, 1);
    return 1;
}

int weir_store_lua_txquery(lua_State *L, int txidx, const char *what, const char *sql,
                           int nparams, int result_idx) {
    weir_store *s = weir_store_lua_check(L, what);
    int base;
    txidx = lua_absindex(L, txidx);
    if (result_idx) result_idx = lua_absindex(L, result_idx);
    if (strcmp(weir_store_backend(s), "postgres") != 0)
        return luaL_error(L, "%s: option 'tx' needs the PostgreSQL state store (set "
                             "WEIR_STORE_URL to the sink's database)", what);
    if (lua_getfield(L, txidx, "query") != LUA_TFUNCTION)
        return luaL_error(L, "%s: option 'tx' must be a weir.pg transaction", what);
    base = lua_gettop(L) - nparams - 1;             /* index below the values */
    lua_insert(L, base + 1);                        /* query v1..vn */
    lua_pushvalue(L, txidx);
    lua_insert(L, base + 2);                        /* query tx v1..vn */
    lua_pushstring(L, sql);
    lua_insert(L, base + 3);                        /* query tx sql v1..vn */
    lua_callk(L, nparams + 2, 2, (lua_KContext)result_idx, weir_store_lua_txquery_k);
    return weir_store_lua_txquery_k(L, LUA_OK, (lua_KContext)result_idx);
}
