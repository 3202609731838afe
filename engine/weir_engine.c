/*
 * weir_engine.c -- the loop, the run queue and engine-wide lifecycle.
 *
 * Why an idle handle for the run queue: a module completes an op from
 * inside a library callback (curl's multi_socket_action, hiredis reply,
 * libpq notify).  Resuming Lua there would let the script call back into
 * the same library re-entrantly, which none of them allow.  So completion
 * only queues the job; the idle handle resumes it on the next turn.
 */
#include "weir_engine.h"

#include <stdlib.h>
#include <string.h>

#include "weir_job.h"
#include "weir_state.h"
#include "weir_store.h"

void weir_config_defaults(weir_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->mem_limit = WEIR_DEFAULT_MEM_LIMIT;
    cfg->cpu_limit_ms = WEIR_DEFAULT_CPU_LIMIT_MS;
#ifdef WEIR_LIB_DIR
    cfg->lib_path = WEIR_LIB_DIR;
#endif
#ifdef WEIR_CONNECTORS_DIR
    cfg->connectors_path = WEIR_CONNECTORS_DIR;
#endif
}

static void weir_engine_drain(uv_idle_t *h) {
    weir_engine *e = h->data;
    /* Resume only the jobs queued before this turn: a job that yields
     * and is immediately ready again (task.sleep(0)) waits for the next
     * turn, so I/O callbacks are never starved. */
    weir_job *tail = e->ready_tail;
    while (e->ready_head) {
        weir_job *job = e->ready_head;
        e->ready_head = job->next_ready;
        if (!e->ready_head) e->ready_tail = NULL;
        job->next_ready = NULL;
        weir_job_resume(job);
        weir_job_release(job);         /* the queue's reference */
        if (job == tail) break;
    }
    if (!e->ready_head && e->ready_idle_active) {
        uv_idle_stop(&e->ready_idle);
        e->ready_idle_active = 0;
    }
}

void weir_engine_ready(weir_engine *e, weir_job *job) {
    weir_job_retain(job);
    job->next_ready = NULL;
    if (e->ready_tail) e->ready_tail->next_ready = job;
    else e->ready_head = job;
    e->ready_tail = job;
    if (!e->ready_idle_active) {
        uv_idle_start(&e->ready_idle, weir_engine_drain);
        e->ready_idle_active = 1;
    }
}

const weir_module *weir_module_find(const char *name) {
    const weir_module *m;
    for (m = weir_modules; m->name; m++)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
}

weir_engine *weir_engine_new(uv_loop_t *loop, const weir_config *cfg, const char **err) {
    const weir_module *m;
    weir_engine *e = calloc(1, sizeof *e);
    if (!e) { *err = "out of memory"; return NULL; }
    if (cfg) e->cfg = *cfg;
    else weir_config_defaults(&e->cfg);
    e->log = weir_log_new();
    if (!e->log) { free(e); *err = "out of memory"; return NULL; }
    if (loop) {
        e->loop = loop;
    } else {
        e->loop = malloc(sizeof *e->loop);
        if (!e->loop || uv_loop_init(e->loop) != 0) {
            free(e->loop);
            weir_log_free(e->log);
            free(e);
            *err = "cannot initialise the event loop";
            return NULL;
        }
        e->owns_loop = 1;
    }
    uv_idle_init(e->loop, &e->ready_idle);
    e->ready_idle.data = e;
    for (m = weir_modules; m->name; m++) {
        if (m->engine_init && m->engine_init(e) != 0) {
            *err = "a module failed to initialise";
            /* close what was initialised, in reverse */
            while (m-- != weir_modules)
                if (m->engine_close) m->engine_close(e);
            e->closing = 1;
            uv_close((uv_handle_t *)&e->ready_idle, NULL);
            uv_run(e->loop, UV_RUN_DEFAULT);
            if (e->owns_loop) { uv_loop_close(e->loop); free(e->loop); }
            weir_log_free(e->log);
            free(e);
            return NULL;
        }
    }
    return e;
}

uint64_t weir_engine_now_ns(const weir_engine *e) {
    return uv_hrtime() + e->clock_offset_ns;
}

int weir_engine_run(weir_engine *e) {
    /* The idle handle is active exactly while jobs are ready, and the
     * ops' own handles keep the loop alive while jobs wait: so the loop
     * ends when every job has ended (or waits on nothing). */
    return uv_run(e->loop, UV_RUN_DEFAULT);
}

void weir_engine_free(weir_engine *e) {
    const weir_module *m;
    size_t n = 0;
    if (!e) return;
    e->closing = 1;
    while (e->states) weir_state_free(e->states);
    /* jobs of freed states are ended and detached, but the run queue
     * still holds a reference to those queued (e.g. a task killed while
     * ready): drop them, or they leak when the loop never turns again */
    while (e->ready_head) {
        weir_job *job = e->ready_head;
        e->ready_head = job->next_ready;
        job->next_ready = NULL;
        weir_job_release(job);
    }
    e->ready_tail = NULL;
    /* the store finishes in-flight requests during the final uv_run */
    if (e->store) weir_store_close(e->store);
    for (m = weir_modules; m->name; m++) n++;
    while (n--)
        if (weir_modules[n].engine_close) weir_modules[n].engine_close(e);
    uv_close((uv_handle_t *)&e->ready_idle, NULL);
    uv_run(e->loop, UV_RUN_DEFAULT);
    if (e->owns_loop) {
        uv_loop_close(e->loop);
        free(e->loop);
    }
    weir_log_free(e->log);
    free(e);
}
