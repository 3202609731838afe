/*
 * weir_job.c -- jobs, pending operations, and the engine-aware
 * `coroutine` library.
 *
 * Life of an engine call (OpenResty's cosocket pattern):
 *   1. a module function starts I/O, then weir_op_yield() parks the op
 *      on the job and yields the thread with the yield tag;
 *   2. lua_resume() in weir_job_resume() returns LUA_YIELD with the tag:
 *      the job is WAITING;
 *   3. the I/O callback calls weir_op_complete(): the job is queued;
 *   4. the engine resumes the job's root thread with no values; the
 *      continuation weir_op_continue() runs inside the coroutine, pushes
 *      the op's results (protected: an allocation failure is a Lua error
 *      of the job, never a panic of the engine) and frees the op.
 *
 * User coroutines: an engine yield inside a coroutine created by the
 * script reaches our coroutine.resume wrapper, which forwards it up by
 * yielding its own thread with the tag.  When the engine resumes the
 * root, each wrapper's continuation resumes the next thread down until
 * the one that made the call gets its results.  Threads that are parked
 * on an engine call are recorded in a weak table so a script cannot
 * resume (or close) them behind the engine's back.
 */
#include "weir_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define WEIR_CO_CLOSE_MAX_DEPTH 32

static char weir_job_tag;            /* its address is the yield tag */
static char weir_job_waiting_key;    /* registry: weak set of parked threads */
static uint64_t weir_job_next_id = 1;

void *weir_job_yield_tag(void) { return &weir_job_tag; }

/* ---- parked-thread set ---- */

static void weir_job_push_waiting(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_job_waiting_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_job_waiting_key);
    }
}

/* Marks (flag = 1) or unmarks thread co as parked on an engine call. */
static void weir_job_mark_parked(lua_State *L, lua_State *co, int flag) {
    weir_job_push_waiting(L);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    if (flag) lua_pushboolean(L, 1);
    else lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static int weir_job_is_parked(lua_State *L, lua_State *co) {
    int parked;
    weir_job_push_waiting(L);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    parked = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return parked;
}

/* ---- creation / references ---- */

struct weir_job_new_ctx {
    weir_job *job;
};

static int weir_job_new_protected(lua_State *L) {
    struct weir_job_new_ctx *ctx = lua_touserdata(L, 1);
    ctx->job->co = lua_newthread(L);
    ctx->job->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

weir_job *weir_job_new(weir_state *st) {
    struct weir_job_new_ctx ctx;
    weir_job *job;
    if (st->closing) return NULL;
    job = calloc(1, sizeof *job);
    if (!job) return NULL;
    job->st = st;
    job->co_ref = LUA_NOREF;
    job->err_ref = LUA_NOREF;
    job->locals_ref = LUA_NOREF;
    job->refs = 1;
    ctx.job = job;
    lua_pushcfunction(st->L, weir_job_new_protected);
    lua_pushlightuserdata(st->L, &ctx);
    if (lua_pcall(st->L, 1, 0, 0) != LUA_OK) {
        lua_pop(st->L, 1);
        free(job);
        return NULL;
    }
    job->id = weir_job_next_id++;
    job->next_in_state = st->jobs;
    if (st->jobs) st->jobs->prev_in_state = job;
    st->jobs = job;
    return job;
}

void weir_job_retain(weir_job *job) { job->refs++; }

/* ---- spawned jobs ---- */

static void weir_job_unlink_child(weir_job *child) {
    weir_job *parent = child->parent;
    if (!parent) return;
    if (child->prev_sibling) child->prev_sibling->next_sibling = child->next_sibling;
    else parent->children = child->next_sibling;
    if (child->next_sibling) child->next_sibling->prev_sibling = child->prev_sibling;
    child->parent = child->prev_sibling = child->next_sibling = NULL;
}

void weir_job_adopt(weir_job *parent, weir_job *child) {
    weir_job_unlink_child(child);
    child->parent = parent;
    child->next_sibling = parent->children;
    if (parent->children) parent->children->prev_sibling = child;
    parent->children = child;
}

/* A failed job takes the jobs it spawned with it: a script that spawns
 * work and then fails must not leave that work running (each spawned
 * job has its own CPU cap, so N spinning tasks would starve the engine
 * N times the cap).  Their failure cascades to what they spawned. */
static void weir_job_kill_children(weir_job *job) {
    while (job->children) {
        weir_job *child = job->children;
        weir_job_unlink_child(child);
        weir_job_retain(child);
        weir_job_kill(child, "task killed: the job that spawned it failed");
        weir_job_release(child);
    }
}

void weir_job_release(weir_job *job) {
    weir_state *st;
    if (--job->refs > 0) return;
    st = job->st;
    weir_job_unlink_child(job);
    while (job->children) weir_job_unlink_child(job->children);
    if (job->op) {                  /* never started, or owner gone early */
        if (job->op->state == WEIR_OP_PENDING) job->op->cancel(job->op);
        else job->op->free(job->op);
        job->op = NULL;
    }
    if (st) {
        if (job->co_ref != LUA_NOREF) luaL_unref(st->L, LUA_REGISTRYINDEX, job->co_ref);
        if (job->err_ref != LUA_NOREF) luaL_unref(st->L, LUA_REGISTRYINDEX, job->err_ref);
        if (job->locals_ref != LUA_NOREF) luaL_unref(st->L, LUA_REGISTRYINDEX, job->locals_ref);
        if (job->prev_in_state) job->prev_in_state->next_in_state = job->next_in_state;
        else if (st->jobs == job) st->jobs = job->next_in_state;
        if (job->next_in_state) job->next_in_state->prev_in_state = job->prev_in_state;
    }
    free(job->kill_reason);
    free(job->error);
    free(job);
}

void weir_job_start(weir_job *job, int nargs, weir_job_done_fn on_done, void *data) {
    job->nargs = nargs;
    job->on_done = on_done;
    job->on_done_data = data;
    job->status = WEIR_JOB_READY;
    weir_engine_ready(job->st->eng, job);
}

void weir_job_push_locals(lua_State *L, weir_job *job) {
    if (job->locals_ref == LUA_NOREF) {
        lua_newtable(L);
        lua_pushvalue(L, -1);
        job->locals_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->locals_ref);
}

/* ---- ending a job ---- */

/* Drops the job's op: cancel a pending one, free a completed one. */
static void weir_job_drop_op(weir_job *job) {
    weir_op *op = job->op;
    if (!op) return;
    job->op = NULL;
    if (op->state == WEIR_OP_PENDING) op->cancel(op);
    else op->free(op);
}

struct weir_job_fail_ctx {
    weir_job *job;
    const char *reason;     /* NULL: the error value is on co's top */
    int traceback;          /* add co's traceback to reason */
};

/* Runs on the state's main thread (protected): formats the error with a
 * traceback, then closes the thread's pending to-be-closed variables. */
static int weir_job_fail_protected(lua_State *L) {
    struct weir_job_fail_ctx *ctx = lua_touserdata(L, 1);
    weir_job *job = ctx->job;
    if (!job->error) {
        if (ctx->reason && ctx->traceback) {
            luaL_traceback(L, job->co, ctx->reason, 0);
            job->error = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        } else if (ctx->reason) {
            job->error = strdup(ctx->reason);
        } else {
            job->error = weir_state_error_string(job->co, 1);
        }
    }
    /* keep the error value itself for task.wait (tables stay tables) */
    if (ctx->reason) {
        lua_pushstring(L, ctx->reason);
    } else if (lua_gettop(job->co) > 0) {
        lua_xmove(job->co, L, 1);
    } else {
        lua_pushnil(L);
    }
    job->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_resetthread(job->co);
    return 0;
}

static void weir_job_finish(weir_job *job) {
    weir_job_drop_op(job);
    if (job->on_done) {
        weir_job_done_fn fn = job->on_done;
        job->on_done = NULL;
        fn(job, job->on_done_data);
    }
}

static void weir_job_kill_children(weir_job *job);

static void weir_job_fail_tb(weir_job *job, const char *reason, int traceback) {
    weir_state *st = job->st;
    struct weir_job_fail_ctx ctx = {job, reason, traceback};
    weir_job *prev = st->running;
    job->status = WEIR_JOB_FAILED;
    weir_job_drop_op(job);
    /* __close handlers run now: they are user code, so keep the CPU cap
     * pointed at this job while they run. */
    st->running = job;
    st->slice_start_ns = uv_hrtime();
    lua_pushcfunction(st->L, weir_job_fail_protected);
    lua_pushlightuserdata(st->L, &ctx);
    if (lua_pcall(st->L, 1, 0, 0) != LUA_OK) lua_pop(st->L, 1);
    st->running = prev;
    if (!job->error) job->error = strdup(reason ? reason : "job failed (out of memory while formatting the error)");
    job->nres = 0;
    weir_job_kill_children(job);
    weir_job_finish(job);
}

static void weir_job_fail(weir_job *job, const char *reason) {
    weir_job_fail_tb(job, reason, 0);
}

void weir_job_kill(weir_job *job, const char *reason) {
    if (job->status == WEIR_JOB_DONE || job->status == WEIR_JOB_FAILED) return;
    if (job->status == WEIR_JOB_RUNNING) {
        /* The CPU hook of this very job will raise at once. */
        job->killed = 1;
        if (!job->kill_reason) job->kill_reason = strdup(reason);
        return;
    }
    job->killed = 1;
    weir_job_fail(job, reason);
}

/* ---- resuming ---- */

/* "file:line: memory limit ..." from the innermost Lua frame of the dead
 * coroutine (its stack is still inspectable after the error). */
static void weir_job_memory_reason(weir_job *job, char *out, size_t len) {
    lua_Debug ar;
    int level;
    char where[300] = "";
    for (level = 0; lua_getstack(job->co, level, &ar); level++) {
        if (lua_getinfo(job->co, "Sl", &ar) && ar.currentline > 0) {
            snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
    snprintf(out, len, "%smemory limit: the script's state reached its cap of %zu MiB "
             "(not enough memory)", where, job->st->mem_limit >> 20);
}

/* "file:line: coroutine.yield outside a coroutine..." at the script
 * position of a stray yield (the suspended thread's stack still holds
 * the yield call and its Lua caller). */
static void weir_job_yield_reason(weir_job *job, char *out, size_t len) {
    lua_Debug ar;
    int level;
    char where[300] = "";
    for (level = 0; lua_getstack(job->co, level, &ar); level++) {
        if (lua_getinfo(job->co, "Sl", &ar) && ar.currentline > 0) {
            snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
    snprintf(out, len, "%scoroutine.yield outside a coroutine: a job may only yield "
             "through engine calls (use coroutine.wrap or coroutine.create to yield "
             "values)", where);
}

void weir_job_resume(weir_job *job) {
    weir_state *st = job->st;
    int nargs = 0, nres = 0, rc;
    if (job->status != WEIR_JOB_READY) return;    /* killed while queued */
    if (!job->op) nargs = job->nargs;             /* first resume */
    job->nargs = 0;
    job->status = WEIR_JOB_RUNNING;
    st->running = job;
    st->slice_start_ns = job->slice_start_ns = uv_hrtime();
    st->slice_killed = 0;
    lua_sethook(job->co, weir_state_cpu_hook, LUA_MASKCOUNT, WEIR_HOOK_COUNT);
    rc = lua_resume(job->co, NULL, nargs, &nres);
    st->running = NULL;
    if (rc == LUA_YIELD) {
        int engine = nres >= 1 && lua_touserdata(job->co, -nres) == &weir_job_tag;
        lua_pop(job->co, nres);
        if (job->killed || st->slice_killed) {
            weir_job_fail(job, job->kill_reason ? job->kill_reason
                               : "job killed: CPU limit exceeded");
        } else if (!engine || !job->op) {
            char reason[512];
            weir_job_yield_reason(job, reason, sizeof reason);
            weir_job_fail_tb(job, reason, 1);
        } else if (job->op->state == WEIR_OP_COMPLETED) {
            job->status = WEIR_JOB_READY;         /* completed synchronously */
            weir_engine_ready(st->eng, job);
        } else {
            job->status = WEIR_JOB_WAITING;
        }
    } else if (rc == LUA_OK && (job->killed || st->slice_killed)) {
        /* coroutine.resume or pcall(coroutine.wrap(...)) caught the kill
         * in an inner thread and the job returned before its own hook
         * fired again: a killed job never ends as a success */
        lua_pop(job->co, nres);
        weir_job_fail(job, job->kill_reason ? job->kill_reason
                           : "job killed: CPU limit exceeded");
    } else if (rc == LUA_OK) {
        job->status = WEIR_JOB_DONE;
        job->nres = nres;
        weir_job_finish(job);
    } else if (rc == LUA_ERRMEM && !job->killed) {
        char reason[512];
        weir_job_memory_reason(job, reason, sizeof reason);
        weir_job_fail(job, reason);
    } else {
        weir_job_fail(job, job->killed ? job->kill_reason : NULL);
    }
}

/* ---- ops ---- */

weir_job *weir_job_current(lua_State *L) {
    weir_state *st = weir_state_of(L);
    return st ? st->running : NULL;
}

weir_job *weir_job_check(lua_State *L, const char *what) {
    weir_job *job = weir_job_current(L);
    if (!job)
        luaL_error(L, "%s: can only be called from a running job", what);
    else if (!lua_isyieldable(L))
        luaL_error(L, "%s: cannot wait here: engine calls cannot be made across a "
                      "C-call boundary (table.sort comparator, string.gsub callback, "
                      "metamethod, require, __gc/__close)", what);
    else if (job->op)
        luaL_error(L, "%s: this job is already waiting on %s", what,
                   job->op->what ? job->op->what : "an engine call");
    return job;
}

struct weir_op_deliver {
    weir_op *op;
    int nres;
};

static int weir_op_deliver_protected(lua_State *L) {
    struct weir_op_deliver *d = lua_touserdata(L, -1);
    lua_pop(L, 1);
    d->nres = d->op->push(L, d->op);
    return d->nres;
}

/* Continuation of weir_op_yield: runs in the thread that made the call
 * when the engine (through any wrappers) resumes it. */
static int weir_op_continue(lua_State *L, int status, lua_KContext ctx) {
    weir_op *op = (weir_op *)ctx;
    weir_job *job = op->job;
    struct weir_op_deliver d = {op, 0};
    int top, rc;
    (void)status;
    weir_job_mark_parked(L, L, 0);
    if (job->op != op || op->state != WEIR_OP_COMPLETED)
        return luaL_error(L, "internal error: a thread waiting on %s was resumed early",
                          op->what ? op->what : "an engine call");
    job->op = NULL;
    lua_settop(L, 0);
    top = lua_gettop(L);
    lua_pushcfunction(L, weir_op_deliver_protected);
    lua_pushlightuserdata(L, &d);
    rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    op->free(op);
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L) - top;
}

int weir_op_yield(lua_State *L, weir_op *op) {
    weir_job *job = weir_job_current(L);
    op->job = job;
    job->op = op;
    weir_job_mark_parked(L, L, 1);
    lua_pushlightuserdata(L, &weir_job_tag);
    return lua_yieldk(L, 1, (lua_KContext)op, weir_op_continue);
}

void weir_op_complete(weir_op *op) {
    weir_job *job = op->job;
    op->state = WEIR_OP_COMPLETED;
    if (job && job->status == WEIR_JOB_WAITING && job->op == op) {
        job->status = WEIR_JOB_READY;
        weir_engine_ready(job->st->eng, job);
    }
}

/* ---- engine-aware coroutine library ---- */

static lua_State *weir_co_check(lua_State *L, int idx) {
    lua_State *co = lua_tothread(L, idx);
    luaL_argexpected(L, co, idx, "coroutine");
    return co;
}

static int weir_co_step(lua_State *L, lua_State *co, int nargs, int wrap);

/* Continuation after the engine resumed a wrapper thread that was
 * forwarding an engine yield: resume the inner thread (index 1). */
static int weir_co_forward_k(lua_State *L, int status, lua_KContext ctx) {
    lua_State *co = lua_tothread(L, 1);
    (void)status;
    weir_job_mark_parked(L, L, 0);
    lua_settop(L, 1);
    return weir_co_step(L, co, 0, (int)ctx);
}

/* Resumes co with nargs values from L's top.  Engine yields are
 * forwarded; anything else returns like coroutine.resume (wrap = 0:
 * true/false + values) or coroutine.wrap (wrap = 1: values or raise).
 * Expects co at index 1 of L. */
static int weir_co_step(lua_State *L, lua_State *co, int nargs, int wrap) {
    int status, nres;
    if (!lua_checkstack(co, nargs)) {
        lua_pushliteral(L, "too many arguments to resume");
        goto error;
    }
    lua_xmove(L, co, nargs);
    status = lua_resume(co, L, nargs, &nres);
    if (status == LUA_YIELD && nres >= 1 && lua_touserdata(co, -nres) == &weir_job_tag) {
        weir_job *job = weir_job_current(L);
        lua_pop(co, nres);
        if (!lua_isyieldable(L)) {
            /* The call inside co cannot complete: nobody can wait for it. */
            if (job) {
                weir_op *op = job->op;
                job->op = NULL;
                if (op) {
                    if (op->state == WEIR_OP_PENDING) op->cancel(op);
                    else op->free(op);
                }
            }
            return luaL_error(L, "engine call inside a coroutine resumed across a "
                                 "C-call boundary (sort comparator, metamethod, gsub "
                                 "callback): it cannot wait");
        }
        weir_job_mark_parked(L, L, 1);
        lua_pushlightuserdata(L, &weir_job_tag);
        return lua_yieldk(L, 1, (lua_KContext)wrap, weir_co_forward_k);
    }
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            goto error;
        }
        if (!wrap) lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + (wrap ? 0 : 1);
    }
    lua_xmove(co, L, 1);                /* the error value */
    if (wrap) {
        /* propagate with the position of the wrap call, as stock Lua does */
        if (lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
error:
    if (wrap) return lua_error(L);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int weir_co_guard(lua_State *L, lua_State *co, const char *what) {
    if (weir_job_is_parked(L, co))
        return luaL_error(L, "coroutine.%s: cannot %s a coroutine that is waiting "
                             "on an engine call", what, what);
    return 0;
}

static int weir_co_resume(lua_State *L) {
    lua_State *co = weir_co_check(L, 1);
    if (weir_job_is_parked(L, co)) {          /* stock convention: false, msg */
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "cannot resume a coroutine that is waiting on an engine call");
        return 2;
    }
    return weir_co_step(L, co, lua_gettop(L) - 1, 0);
}

static int weir_co_wrap_call(lua_State *L) {
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    weir_co_guard(L, co, "resume");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);                   /* co at index 1, as step expects */
    return weir_co_step(L, co, lua_gettop(L) - 1, 1);
}

static int weir_co_wrap(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, weir_co_wrap_call, 1);
    return 1;
}

/* coroutine.close runs the closed thread's __close handlers, which may
 * close further coroutines.  Lua 5.4.4 restarts the C-call count of each
 * thread it resets (fixed in 5.4.5), so nested closes recurse in C with
 * no limit and overflow the C stack: we count the nesting ourselves. */
static int weir_co_close(lua_State *L) {
    lua_State *co = weir_co_check(L, 1);
    weir_state *st = weir_state_of(L);
    int rc;
    weir_co_guard(L, co, "close");
    if (st->close_depth >= WEIR_CO_CLOSE_MAX_DEPTH)
        return luaL_error(L, "coroutine.close: C stack overflow (closes nested more "
                             "than %d deep through __close handlers)",
                          WEIR_CO_CLOSE_MAX_DEPTH);
    /* defer to the stock implementation kept as upvalue 1; protected so
     * the depth is restored on every path, then any error re-raised */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    st->close_depth++;
    rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    st->close_depth--;
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

void weir_job_open_coroutine(lua_State *L) {
    /* table at top: the stock coroutine library; replace what must know
     * about engine yields, keep create/yield/status/running/isyieldable */
    lua_pushcfunction(L, weir_co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, weir_co_wrap);
    lua_setfield(L, -2, "wrap");
    lua_getfield(L, -1, "close");
    lua_pushcclosure(L, weir_co_close, 1);
    lua_setfield(L, -2, "close");
}
