/*
 * weir_task.c -- "weir.task": sleep, spawn / wait / all, now.
 *
 * task.sleep(s)               yields for s seconds (a uv_timer per op)
 * task.spawn(fn, ...) -> h     runs fn(...) as a new job of this state
 * task.wait(h [, timeout])     true, results... | false, err | nil, timeout_err
 * task.all(hs [, timeout])     { {ok=, value=, values=, error=}, ... }
 * task.now()                   monotonic seconds (float)
 *
 * A spawned task outlives its handle: it is owned by a small record that
 * both the handle and the running job reference.  It does not outlive a
 * failure of the job that spawned it (weir_job_adopt): that job's failure
 * kills it.  A state runs at most WEIR_TASK_MAX_LIVE spawned tasks.
 */
#include "weir_task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "weir_job.h"

#define WEIR_TASK_HANDLE "weir.task.handle"
#define WEIR_TASK_MAX_SLEEP 31536000.0   /* a year: beyond is a mistake */
#define WEIR_TASK_MAX_LIVE 10000         /* live spawned tasks per state */

typedef struct weir_task_waiter weir_task_waiter;

typedef struct weir_task_rec {
    weir_job *job;              /* retained until the record dies */
    weir_state *st;             /* counts the task while it runs */
    int refs;                   /* handle + running job + wait ops */
    weir_task_waiter *waiters;
} weir_task_rec;

struct weir_task_waiter {
    weir_op base;
    weir_task_rec *rec;
    uv_timer_t timer;
    int has_timer;
    int timed_out;
    double timeout;
    weir_task_waiter *prev, *next;
};

typedef struct weir_task_sleeper {
    weir_op base;
    uv_timer_t timer;
} weir_task_sleeper;

static uint64_t weir_task_ms(double seconds) {
    double ms = ceil(seconds * 1000.0);
    return ms <= 0 ? 0 : (uint64_t)ms;
}

static double weir_task_check_seconds(lua_State *L, int idx, const char *what) {
    double s = luaL_checknumber(L, idx);
    if (!(s >= 0) || s > WEIR_TASK_MAX_SLEEP) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: seconds must be between 0 and %.0f (got %g)", what,
                 WEIR_TASK_MAX_SLEEP, s);
        luaL_where(L, 1);
        lua_pushstring(L, msg);
        lua_concat(L, 2);
        lua_error(L);
    }
    return s;
}

/* ---- sleep ---- */

static void weir_task_sleep_closed(uv_handle_t *h) { free(h->data); }

static void weir_task_sleep_fired(uv_timer_t *t) {
    weir_task_sleeper *op = t->data;
    weir_op_complete(&op->base);
}

static int weir_task_sleep_push(lua_State *L, weir_op *op) {
    (void)L; (void)op;
    return 0;
}

static void weir_task_sleep_release(weir_op *base) {
    weir_task_sleeper *op = (weir_task_sleeper *)base;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, weir_task_sleep_closed);
}

static int weir_task_sleep(lua_State *L) {
    double s = weir_task_check_seconds(L, 1, "task.sleep");
    weir_job *job = weir_job_check(L, "task.sleep");
    weir_task_sleeper *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "task.sleep: out of memory");
    op->base.push = weir_task_sleep_push;
    op->base.cancel = weir_task_sleep_release;
    op->base.free = weir_task_sleep_release;
    op->base.what = "task.sleep";
    uv_timer_init(job->st->eng->loop, &op->timer);
    op->timer.data = op;
    /* the loop's cached time is from before this slice of Lua ran: a
     * timer started from it would fire early by the slice's length */
    uv_update_time(job->st->eng->loop);
    uv_timer_start(&op->timer, weir_task_sleep_fired, weir_task_ms(s), 0);
    return weir_op_yield(L, &op->base);
}

/* ---- records ---- */

static void weir_task_rec_release(weir_task_rec *rec) {
    if (--rec->refs > 0) return;
    weir_job_release(rec->job);
    free(rec);
}

static void weir_task_unlink(weir_task_waiter *w) {
    if (!w->rec) return;
    if (w->prev) w->prev->next = w->next;
    else if (w->rec->waiters == w) w->rec->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* The spawned job ended: wake every waiter, drop the running ref. */
static void weir_task_done(weir_job *job, void *data) {
    weir_task_rec *rec = data;
    (void)job;
    if (rec->st) {
        rec->st->ntasks--;
        rec->st = NULL;
    }
    while (rec->waiters) {
        weir_task_waiter *w = rec->waiters;
        weir_task_unlink(w);
        if (w->has_timer) uv_timer_stop(&w->timer);
        weir_op_complete(&w->base);
    }
    weir_task_rec_release(rec);
}

/* ---- spawn ---- */

static weir_task_rec *weir_task_check_handle(lua_State *L, int idx) {
    weir_task_rec **ud = luaL_checkudata(L, idx, WEIR_TASK_HANDLE);
    if (!*ud) luaL_argerror(L, idx, "task handle already released");
    return *ud;
}

static int weir_task_spawn(lua_State *L) {
    weir_state *st = weir_state_of(L);
    int nargs = lua_gettop(L) - 1;
    weir_task_rec **ud;
    weir_task_rec *rec;
    weir_job *child;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (!st->running) return luaL_error(L, "task.spawn: can only be called from a running job");
    if (st->ntasks >= WEIR_TASK_MAX_LIVE)
        return luaL_error(L, "task.spawn: too many live tasks in this script's state "
                             "(at most %d); wait for some to finish", WEIR_TASK_MAX_LIVE);
    ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = NULL;
    luaL_setmetatable(L, WEIR_TASK_HANDLE);
    lua_insert(L, 1);                           /* handle fn args... */
    rec = calloc(1, sizeof *rec);
    if (!rec) return luaL_error(L, "task.spawn: out of memory");
    child = weir_job_new(st);
    if (!child) {
        free(rec);
        return luaL_error(L, "task.spawn: cannot create a job (out of memory or closing)");
    }
    if (!lua_checkstack(child->co, nargs + 1)) {
        weir_job_release(child);
        free(rec);
        return luaL_error(L, "task.spawn: too many arguments");
    }
    rec->job = child;
    rec->refs = 2;                              /* handle + running */
    rec->st = st;
    st->ntasks++;
    *ud = rec;
    weir_job_adopt(st->running, child);         /* dies if the spawner fails */
    lua_xmove(L, child->co, nargs + 1);         /* fn + args */
    weir_job_start(child, nargs, weir_task_done, rec);
    return 1;
}

static int weir_task_handle_gc(lua_State *L) {
    weir_task_rec **ud = luaL_checkudata(L, 1, WEIR_TASK_HANDLE);
    if (*ud) {
        weir_task_rec *rec = *ud;
        *ud = NULL;
        weir_task_rec_release(rec);
    }
    return 0;
}

/* ---- wait ---- */

/* Pushes the outcome of an ended job: true + results | false + err. */
static int weir_task_push_outcome(lua_State *L, weir_job *job) {
    if (job->status == WEIR_JOB_DONE) {
        lua_State *co = job->co;
        int i, top, n = job->nres;
        if (!co) { lua_pushboolean(L, 1); return 1; }
        if (!lua_checkstack(co, n) || !lua_checkstack(L, n + 1))
            return luaL_error(L, "task.wait: too many results");
        lua_pushboolean(L, 1);
        top = lua_gettop(co);
        for (i = top - n + 1; i <= top; i++) lua_pushvalue(co, i);
        lua_xmove(co, L, n);
        return n + 1;
    }
    lua_pushboolean(L, 0);
    if (job->err_ref != LUA_NOREF && job->err_ref != LUA_REFNIL)
        lua_rawgeti(L, LUA_REGISTRYINDEX, job->err_ref);
    else
        lua_pushstring(L, job->error ? job->error : "task failed");
    return 2;
}

static int weir_task_ended(const weir_job *job) {
    return job->status == WEIR_JOB_DONE || job->status == WEIR_JOB_FAILED;
}

static int weir_task_wait_push(lua_State *L, weir_op *base) {
    weir_task_waiter *w = (weir_task_waiter *)base;
    if (w->timed_out) {
        lua_pushnil(L);
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "timeout");
        lua_setfield(L, -2, "kind");
        lua_pushfstring(L, "task.wait: timed out after %f s", w->timeout);
        lua_setfield(L, -2, "message");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "retryable");
        return 2;
    }
    return weir_task_push_outcome(L, w->rec->job);
}

static void weir_task_wait_closed(uv_handle_t *h) {
    weir_task_waiter *w = h->data;
    weir_task_rec_release(w->rec);
    free(w);
}

static void weir_task_wait_release(weir_op *base) {
    weir_task_waiter *w = (weir_task_waiter *)base;
    weir_task_unlink(w);
    if (w->has_timer) {
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, weir_task_wait_closed);
    } else {
        weir_task_rec_release(w->rec);
        free(w);
    }
}

static void weir_task_wait_timeout(uv_timer_t *t) {
    weir_task_waiter *w = t->data;
    weir_task_unlink(w);
    w->timed_out = 1;
    weir_op_complete(&w->base);
}

static int weir_task_wait(lua_State *L) {
    weir_task_rec *rec = weir_task_check_handle(L, 1);
    double timeout = lua_isnoneornil(L, 2) ? -1 : weir_task_check_seconds(L, 2, "task.wait");
    weir_job *job;
    weir_task_waiter *w;
    if (weir_task_ended(rec->job)) return weir_task_push_outcome(L, rec->job);
    job = weir_job_check(L, "task.wait");
    if (rec->job == job) return luaL_error(L, "task.wait: a task cannot wait for itself");
    w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "task.wait: out of memory");
    w->base.push = weir_task_wait_push;
    w->base.cancel = weir_task_wait_release;
    w->base.free = weir_task_wait_release;
    w->base.what = "task.wait";
    w->rec = rec;
    rec->refs++;
    w->next = rec->waiters;
    if (rec->waiters) rec->waiters->prev = w;
    rec->waiters = w;
    w->timeout = timeout;
    if (timeout >= 0) {
        uv_timer_init(job->st->eng->loop, &w->timer);
        w->timer.data = w;
        w->has_timer = 1;
        uv_update_time(job->st->eng->loop);
        uv_timer_start(&w->timer, weir_task_wait_timeout, weir_task_ms(timeout), 0);
    }
    return weir_op_yield(L, &w->base);
}

static int weir_task_cancel(lua_State *L) {
    weir_task_rec *rec = weir_task_check_handle(L, 1);
    weir_job *self = weir_job_current(L);
    if (rec->job == self) return luaL_error(L, "task.cancel: a task cannot cancel itself");
    if (!weir_task_ended(rec->job)) weir_job_kill(rec->job, "task cancelled");
    return 0;
}

static int weir_task_status(lua_State *L) {
    weir_task_rec *rec = weir_task_check_handle(L, 1);
    switch (rec->job->status) {
    case WEIR_JOB_DONE: lua_pushliteral(L, "done"); break;
    case WEIR_JOB_FAILED: lua_pushliteral(L, "failed"); break;
    default: lua_pushliteral(L, "running"); break;
    }
    return 1;
}

static int weir_task_now(lua_State *L) {
    weir_state *st = weir_state_of(L);
    lua_pushnumber(L, (double)weir_engine_now_ns(st->eng) / 1e9);
    return 1;
}

/* task.all is plain Lua over wait(): one wait per handle against one
 * deadline gives the same result as waiting on all at once. */
static const char weir_task_all_src[] =
    "local wait, now = ...\n"
    "return function(handles, timeout)\n"
    "  if type(handles) ~= 'table' then\n"
    "    error('task.all: expected a table of task handles', 2)\n"
    "  end\n"
    "  local deadline = timeout and now() + timeout\n"
    "  local results = {}\n"
    "  for i = 1, #handles do\n"
    "    local left = deadline and math.max(0, deadline - now()) or nil\n"
    "    local r = table.pack(wait(handles[i], left))\n"
    "    if r[1] then\n"
    "      results[i] = {ok = true, value = r[2], values = table.move(r, 2, r.n, 1, {})}\n"
    "    else\n"
    "      results[i] = {ok = false, error = r[2]}\n"
    "    end\n"
    "  end\n"
    "  return results\n"
    "end\n";

int weir_open_task(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"sleep", weir_task_sleep}, {"spawn", weir_task_spawn},
        {"wait", weir_task_wait},   {"cancel", weir_task_cancel},
        {"status", weir_task_status}, {"now", weir_task_now},
        {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"wait", weir_task_wait}, {"cancel", weir_task_cancel},
        {"status", weir_task_status}, {NULL, NULL}};
    weir_state *st = weir_state_of(L);
    if (luaL_newmetatable(L, WEIR_TASK_HANDLE)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, weir_task_handle_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    if (weir_state_load_buffer(st, L, weir_task_all_src, sizeof weir_task_all_src - 1,
                               "=weir.task") != LUA_OK)
        return lua_error(L);
    lua_getfield(L, -2, "wait");
    lua_getfield(L, -3, "now");
    lua_call(L, 2, 1);
    lua_setfield(L, -2, "all");
    return 1;
}
