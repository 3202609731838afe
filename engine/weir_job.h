/*
 * weir_job.h -- jobs (coroutines) and the pending operations they wait on.
 *
 * A job is a Lua thread in a weir_state.  Scripts read as if blocking:
 * an engine call starts its I/O, parks a weir_op and yields the job; the
 * libuv callback completes the op; the engine resumes the job on the
 * next loop turn and the op pushes its results inside the coroutine.
 *
 * Writing a yielding Lua function (the whole contract):
 *
 *     static int my_call(lua_State *L) {
 *         weir_job *job = weir_job_check(L, "mod.call"); // raises if
 *                                     // not yieldable here
 *         struct my_op *op = calloc(1, sizeof *op);      // weir_op first
 *         ... parse arguments BEFORE allocating anything that leaks ...
 *         op->base.push = my_push;     // runs in the coroutine: push
 *                                      // results, return their count;
 *                                      // may raise (the op is still freed)
 *         op->base.cancel = my_cancel; // stop the I/O; from now on the
 *                                      // module owns op and frees it
 *                                      // (possibly later, e.g. uv_close)
 *         op->base.free = my_free;     // release op after push / when
 *                                      // completed but never delivered
 *         start the I/O; its callback calls weir_op_complete(&op->base);
 *         return weir_op_yield(L, &op->base);
 *     }
 *
 * Every op ends in exactly one of: complete -> push -> free;
 * complete -> free (job killed before resume); cancel (module frees).
 */
#ifndef WEIR_JOB_H
#define WEIR_JOB_H

#include <lua.h>
#include <stdint.h>

#include "weir_engine.h"
#include "weir_state.h"

typedef struct weir_op weir_op;

typedef int (*weir_op_push_fn)(lua_State *L, weir_op *op);
typedef void (*weir_op_cancel_fn)(weir_op *op);
typedef void (*weir_op_free_fn)(weir_op *op);

typedef enum {
    WEIR_OP_PENDING = 0,
    WEIR_OP_COMPLETED
} weir_op_state;

struct weir_op {
    weir_job *job;
    weir_op_push_fn push;
    weir_op_cancel_fn cancel;
    weir_op_free_fn free;
    weir_op_state state;
    const char *what;           /* "http.request", for errors and logs */
};

typedef enum {
    WEIR_JOB_NEW = 0,
    WEIR_JOB_READY,             /* in the engine's run queue */
    WEIR_JOB_RUNNING,           /* inside lua_resume */
    WEIR_JOB_WAITING,           /* parked on an op */
    WEIR_JOB_DONE,              /* returned; results on co's stack */
    WEIR_JOB_FAILED             /* raised; error value on co's stack */
} weir_job_status;

typedef void (*weir_job_done_fn)(weir_job *job, void *data);

struct weir_job {
    weir_state *st;
    lua_State *co;              /* the job's root thread */
    int co_ref;                 /* registry ref keeping co alive */
    uint64_t id;
    weir_job_status status;
    int nargs;                  /* arguments for the first resume */
    int nres;                   /* results left on co when DONE */
    weir_op *op;                /* pending or completed op, or NULL */

    uint64_t slice_start_ns;    /* when the current resume started */
    int killed;                 /* CPU cap or kill: every hook raises */
    char *kill_reason;          /* malloc'd, message of the kill */
    char *error;                /* malloc'd "file:line: msg" + traceback */
    int err_ref;                /* registry ref of the error value, or LUA_NOREF */
    int locals_ref;             /* registry ref of the job's locals table */

    weir_job_done_fn on_done;
    void *on_done_data;
    int refs;                   /* owner + waiters; freed at 0 */

    weir_job *next_ready;
    weir_job *prev_in_state, *next_in_state;

    weir_job *parent;           /* the job that spawned this one, or NULL */
    weir_job *children;         /* jobs this one spawned (weir_job_adopt) */
    weir_job *prev_sibling, *next_sibling;
};

/* Creates a job with a new thread in st.  Push the function and its
 * arguments on job->co, then weir_job_start().  NULL on OOM. */
weir_job *weir_job_new(weir_state *st);

/* Queues the job for its first resume.  on_done (may be NULL) runs once
 * when the job ends: check job->status, read results / error on job->co. */
void weir_job_start(weir_job *job, int nargs, weir_job_done_fn on_done,
                    void *data);

/* Stops a job that has not ended: cancels its op and fails it with
 * `reason`.  on_done runs.  Safe to call from any callback, but not on
 * the running job (the CPU hook kills that one). */
void weir_job_kill(weir_job *job, const char *reason);

/* Records that parent spawned child: when parent fails, child (if it
 * has not ended) is killed, and so on down.  The link is weak: it is
 * dropped when either job is freed. */
void weir_job_adopt(weir_job *parent, weir_job *child);

void weir_job_retain(weir_job *job);
/* Drops a reference; the last one frees the thread and the job. */
void weir_job_release(weir_job *job);

/* The job whose coroutine tree L belongs to, raising a clear error when
 * `what` cannot yield here (main chunk, metamethod, sort comparator...). */
weir_job *weir_job_check(lua_State *L, const char *what);

/* The running job or NULL (no raising). */
weir_job *weir_job_current(lua_State *L);

/* Parks op on the current job and yields.  Use as `return ...`. */
int weir_op_yield(lua_State *L, weir_op *op);

/* Called by a module when op's I/O finished; queues the job. */
void weir_op_complete(weir_op *op);

/* Called by the engine's idle handle: resumes one ready job. */
void weir_job_resume(weir_job *job);

/* Installs the engine-aware `coroutine` library into table at top. */
void weir_job_open_coroutine(lua_State *L);

/* Pushes the job's locals table (created on first use): per-job data of
 * modules (staged cursors, run counters).  Call from Lua context. */
void weir_job_push_locals(lua_State *L, weir_job *job);

/* The unique value engine yields carry; user yields never equal it. */
void *weir_job_yield_tag(void);

#endif
