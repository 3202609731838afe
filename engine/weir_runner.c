/*
 * weir_runner.c -- the recipe runner: triggers -> queue -> jobs -> outcome.
 *
 * Fluent Bit's split: the handler says what happened (return = done,
 * weir.retry = try again, weir.fail = give up, any other error = try
 * again); the runner decides whether another attempt is allowed (count
 * and time limits); the queue decides when it runs (run_at).
 *
 * Everything here runs on the loop thread.  Each running item is a
 * weir_runner_exec owning its job, timeout timer and heartbeat timer; it
 * is freed after the queue confirmed the outcome and the run history row
 * was written.
 */
#include "weir_runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "weir_crypto.h"
#include "weir_job.h"
#include "weir_json.h"
#include "weir_lib.h"
#include "weir_log.h"
#include "weir_runs.h"
#include "weir_state.h"
#include "weir_store.h"

#define WEIR_RUNNER_POLL_MS 1000

typedef struct weir_runner_jobdef weir_runner_jobdef;
typedef struct weir_runner_exec weir_runner_exec;

typedef struct weir_runner_trigger_timer {
    uv_timer_t timer;
    weir_runner_jobdef *jd;
    const weir_trigger *trig;
    int64_t next_ms;            /* cron: the fire time armed */
} weir_runner_trigger_timer;

struct weir_runner_jobdef {
    weir_runner *rn;
    const weir_recipe_job *def;
    int running;
    int claiming;
    weir_runner_trigger_timer *timers;
    int ntimers;
};

struct weir_runner_exec {
    weir_runner *rn;
    weir_runner_jobdef *jd;
    weir_queue_item item;
    weir_job *job;
    uv_timer_t timeout;
    uv_timer_t heartbeat;
    int handles_open;           /* uv handles still to close */
    int64_t started_at;
    int lease_lost;
    int shutdown;
    int64_t retry_at;           /* ms: when the retry is due (status retrying) */
    char *error;                /* redacted error of this attempt */
    const char *status;         /* succeeded | retrying | dead | released */
    weir_lib_counts counts;
    weir_runner_exec *next;
};

struct weir_runner {
    weir_engine *e;
    weir_recipe *recipe;
    char *params_json;
    weir_queue *q;
    weir_runner_opts opts;
    weir_state *st;
    weir_runner_jobdef *jobs;
    int njobs;
    weir_runner_exec *execs;    /* running or settling */
    uv_timer_t poll;
    uv_timer_t grace;
    int poll_open, grace_open;
    int started, stopping, stopped;
    int once_pending;           /* once / only_job items not yet settled */
    int once_failed;
    char **once_ids;
    int nonce;
    void (*on_stopped)(void *);
    void *on_stopped_ud;
    weir_runner_stats stats;
};

static void weir_runner_pump(weir_runner *rn);
static void weir_runner_maybe_stopped(weir_runner *rn);
static void weir_runner_poll_cb(uv_timer_t *t);

/* ---- small helpers ---- */

static void weir_runner_log(weir_runner *rn, weir_log_level lvl, const char *job,
                            const char *msg, const char *fields) {
    weir_log_write(rn->e->log, lvl, rn->recipe->name, job, msg, fields);
}

static double weir_runner_rand01(void) {
    uint32_t r = 0;
    if (weir_crypto_random(&r, sizeof r) != 0) return 0.5;
    return (double)r / 4294967296.0;
}

double weir_runner_backoff(const weir_retry_policy *p, int failed_attempt, double u01) {
    double cap = p->cap_s > 0 ? p->cap_s : 300.0;
    double base = p->base_s > 0 ? p->base_s : 1.0;
    double hi = base * pow(2.0, failed_attempt > 1 ? failed_attempt - 1 : 0);
    if (hi > cap) hi = cap;
    if (base > hi) base = hi;
    if (!p->full_jitter) return hi;
    return base + (hi - base) * u01;
}

/* JSON string escaping for log fields built by hand. */
static void weir_runner_fields(char *out, size_t len, const char *id, int attempt,
                               const char *extra_key, const char *extra_val) {
    char esc[512];
    size_t j = 0;
    const char *s = extra_val ? extra_val : "";
    for (; *s && j + 7 < sizeof esc; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { esc[j++] = '\\'; esc[j++] = (char)c; }
        else if (c < 0x20) { j += (size_t)snprintf(esc + j, sizeof esc - j, "\\u%04x", c); }
        else esc[j++] = (char)c;
    }
    esc[j] = '\0';
    if (extra_key)
        snprintf(out, len, "{\"item\":\"%s\",\"attempt\":%d,\"%s\":\"%s\"}", id, attempt,
                 extra_key, esc);
    else
        snprintf(out, len, "{\"item\":\"%s\",\"attempt\":%d}", id, attempt);
}

/* ---- enqueueing ---- */

typedef struct {
    weir_runner *rn;
    char *id;
    int once;
} weir_runner_enq;

static void weir_runner_enqueued(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_runner_enq *eq = ud;
    weir_runner *rn = eq->rn;
    (void)items;
    if (err) {
        weir_runner_log(rn, WEIR_LOG_ERROR, NULL, "enqueue failed", NULL);
        if (eq->once) {
            rn->once_pending--;
            rn->once_failed = 1;
        }
    } else if (n == 0 && eq->once) {
        rn->once_pending--;                /* duplicate: nothing to wait for */
    }
    free(eq->id);
    free(eq);
    if (!rn->stopping) weir_runner_pump(rn);
    else weir_runner_maybe_stopped(rn);
}

static int weir_runner_enqueue(weir_runner *rn, const weir_recipe_job *def, const char *id,
                               const char *trigger, const char *payload, int coalesce,
                               int once) {
    weir_queue_item it;
    weir_runner_enq *eq = calloc(1, sizeof *eq);
    if (!eq) return -1;
    eq->rn = rn;
    eq->id = strdup(id);
    eq->once = once;
    memset(&it, 0, sizeof it);
    it.id = (char *)id;
    it.recipe = rn->recipe->name;
    it.job = def->name;
    it.payload = (char *)(payload ? payload : "null");
    it.trigger = (char *)trigger;
    it.attempt = 1;
    it.first_at = it.run_at = weir_store_now_ms();
    if (!eq->id || rn->q->vt->enqueue(rn->q, &it, coalesce, weir_runner_enqueued, eq) != 0) {
        free(eq->id);
        free(eq);
        return -1;
    }
    return 0;
}

/* ---- triggers ---- */

static void weir_runner_fire_every(uv_timer_t *t) {
    weir_runner_trigger_timer *tt = t->data;
    weir_runner *rn = tt->jd->rn;
    char id[512];
    int64_t now = weir_store_now_ms();
    int64_t slot = now / (int64_t)tt->trig->every_ms;
    if (rn->stopping) return;
    snprintf(id, sizeof id, "%s:%s:every:%lld", rn->recipe->name, tt->jd->def->name,
             (long long)slot);
    if (weir_runner_enqueue(rn, tt->jd->def, id, "every", NULL, 1, 0) != 0)
        weir_runner_log(rn, WEIR_LOG_ERROR, tt->jd->def->name, "cannot enqueue a scheduled run", NULL);
}

static void weir_runner_arm_cron(weir_runner_trigger_timer *tt);

static void weir_runner_fire_cron(uv_timer_t *t) {
    weir_runner_trigger_timer *tt = t->data;
    weir_runner *rn = tt->jd->rn;
    char id[512];
    if (rn->stopping) return;
    if (weir_store_now_ms() < tt->next_ms) {      /* woke early (clock skew): re-arm */
        weir_runner_arm_cron(tt);
        return;
    }
    snprintf(id, sizeof id, "%s:%s:cron:%lld", rn->recipe->name, tt->jd->def->name,
             (long long)tt->next_ms);
    if (weir_runner_enqueue(rn, tt->jd->def, id, "cron", NULL, 1, 0) != 0)
        weir_runner_log(rn, WEIR_LOG_ERROR, tt->jd->def->name, "cannot enqueue a cron run", NULL);
    weir_runner_arm_cron(tt);
}

static void weir_runner_arm_cron(weir_runner_trigger_timer *tt) {
    int64_t now = weir_store_now_ms();
    int64_t after = tt->next_ms > now ? tt->next_ms - 1 : now;
    int64_t next = weir_cron_next(&tt->trig->cron, tt->trig->tz, after);
    if (next < 0) {
        weir_runner_log(tt->jd->rn, WEIR_LOG_WARN, tt->jd->def->name,
                        "cron expression never fires again", NULL);
        return;
    }
    tt->next_ms = next;
    uv_timer_start(&tt->timer, weir_runner_fire_cron, (uint64_t)(next > now ? next - now : 0), 0);
}

/* ---- running one item ---- */

static const char weir_runner_boot[] =
    "local module, fn, params_json, payload_json, info = ...\n"
    "local json = require 'weir.json'\n"
    "local weir = require 'weir'\n"
    "local m = require(module)\n"
    "local handler = type(m) == 'table' and m[fn]\n"
    "if type(handler) ~= 'function' then\n"
    "  weir.fail(('handler %s.%s is not a function'):format(module, fn))\n"
    "end\n"
    "local ctx = {params = json.decode(params_json), payload = json.decode(payload_json),\n"
    "             job = info.job, attempt = info.attempt, trigger = info.trigger, id = info.id}\n"
    "local results = table.pack(handler(ctx))\n"
    "require('weir.cursor').commit()\n"
    "return table.unpack(results, 1, results.n)\n";

static void weir_runner_exec_free(weir_runner_exec *x) {
    weir_runner *rn = x->rn;
    weir_runner_exec **pp;
    for (pp = &rn->execs; *pp; pp = &(*pp)->next)
        if (*pp == x) { *pp = x->next; break; }
    weir_queue_item_clear(&x->item);
    if (x->job) weir_job_release(x->job);
    free(x->error);
    free(x);
    weir_runner_maybe_stopped(rn);
}

static void weir_runner_handle_closed(uv_handle_t *h) {
    weir_runner_exec *x = h->data;
    if (--x->handles_open == 0) weir_runner_exec_free(x);
}

/* The outcome is settled: write history, release the slot, close handles. */
static void weir_runner_recorded(void *ud, weir_store_rows *res, int n, const char *err) {
    weir_runner_exec *x = ud;
    (void)res; (void)n;
    if (err) weir_runner_log(x->rn, WEIR_LOG_WARN, x->jd->def->name, "run history not written", NULL);
    uv_close((uv_handle_t *)&x->timeout, weir_runner_handle_closed);
    uv_close((uv_handle_t *)&x->heartbeat, weir_runner_handle_closed);
}

static void weir_runner_settled(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_runner_exec *x = ud;
    weir_runner *rn = x->rn;
    weir_run_record rec;
    char *serr = NULL;
    weir_store *store;
    (void)items; (void)n;
    if (err) {
        weir_runner_log(rn, WEIR_LOG_ERROR, x->jd->def->name, "queue update failed", NULL);
    }
    x->jd->running--;
    rn->stats.running--;
    /* once / only_job bookkeeping: an item is settled when it will not run again */
    if (rn->once_pending > 0 && strcmp(x->status, "retrying") != 0 &&
        strcmp(x->status, "released") != 0) {
        int i;
        for (i = 0; i < rn->nonce; i++) {
            if (rn->once_ids[i] && strcmp(rn->once_ids[i], x->item.id) == 0) {
                free(rn->once_ids[i]);
                rn->once_ids[i] = NULL;
                rn->once_pending--;
                if (strcmp(x->status, "succeeded") != 0) rn->once_failed = 1;
            }
        }
    }
    memset(&rec, 0, sizeof rec);
    rec.recipe = rn->recipe->name;
    rec.job = x->jd->def->name;
    rec.trigger = x->item.trigger;
    rec.attempt = x->item.attempt;
    rec.started_at = x->started_at;
    rec.ended_at = weir_store_now_ms();
    rec.status = x->status;
    rec.counts = x->counts;
    rec.error = x->error;
    /* wake for the retry rather than at the next poll */
    if (x->retry_at && rn->poll_open && !rn->stopping) {
        int64_t wait = x->retry_at - weir_store_now_ms();
        if (wait < 1) wait = 1;
        if (!uv_is_active((uv_handle_t *)&rn->poll) ||
            uv_timer_get_due_in(&rn->poll) > (uint64_t)wait)
            uv_timer_start(&rn->poll, weir_runner_poll_cb, (uint64_t)wait, 0);
    }
    store = weir_store_of_engine(rn->e, &serr);
    free(serr);
    if (!store || weir_runs_insert(store, &rec, weir_runner_recorded, x) != 0)
        weir_runner_recorded(x, NULL, 0, "no store");
    if (!rn->stopping) weir_runner_pump(rn);
}

/* Reads the failure of x's job: kind of error and a redacted message. */
static void weir_runner_classify(weir_runner_exec *x, int *permanent, double *after) {
    weir_job *job = x->job;
    lua_State *L = job->st ? job->st->L : NULL;
    *permanent = 0;
    *after = -1;
    if (L && job->err_ref != LUA_NOREF && job->err_ref != LUA_REFNIL) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, job->err_ref);
        if (lua_type(L, -1) == LUA_TTABLE) {
            if (lua_getfield(L, -1, "kind") == LUA_TSTRING) {
                const char *k = lua_tostring(L, -1);
                if (strcmp(k, WEIR_ERR_PERMANENT) == 0) *permanent = 1;
            }
            lua_pop(L, 1);
            if (lua_getfield(L, -1, "retryable") == LUA_TBOOLEAN && !lua_toboolean(L, -1))
                *permanent = 1;
            lua_pop(L, 1);
            if (lua_getfield(L, -1, "after") == LUA_TNUMBER) *after = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

static void weir_runner_job_done(weir_job *job, void *data) {
    weir_runner_exec *x = data;
    weir_runner *rn = x->rn;
    const weir_retry_policy *pol = &x->jd->def->retry;
    char fields[768];
    int rc;
    uv_timer_stop(&x->timeout);
    uv_timer_stop(&x->heartbeat);
    if (job->st) weir_lib_get_counts(job->st->L, job, &x->counts);
    rn->stats.records_read += x->counts.read;
    rn->stats.records_written += x->counts.written;
    if (job->error) x->error = weir_log_redact(rn->e->log, job->error, strlen(job->error), NULL);

    if (x->lease_lost) {
        /* another worker owns the item now: write nothing to the queue */
        x->status = "released";
        weir_runner_fields(fields, sizeof fields, x->item.id, x->item.attempt, NULL, NULL);
        weir_runner_log(rn, WEIR_LOG_WARN, x->jd->def->name, "lease lost; abandoning the run", fields);
        weir_runner_settled(x, NULL, NULL, 0);
        return;
    }
    if (job->status == WEIR_JOB_DONE) {
        x->status = "succeeded";
        rn->stats.succeeded++;
        weir_runner_fields(fields, sizeof fields, x->item.id, x->item.attempt, NULL, NULL);
        weir_runner_log(rn, WEIR_LOG_INFO, x->jd->def->name, "job succeeded", fields);
        rc = rn->q->vt->ack(rn->q, x->item.id, weir_runner_settled, x);
    } else if (x->shutdown) {
        x->status = "released";
        rn->stats.released++;
        rc = rn->q->vt->release(rn->q, x->item.id, weir_runner_settled, x);
    } else {
        int permanent;
        double after, delay;
        int64_t now = weir_store_now_ms();
        weir_runner_classify(x, &permanent, &after);
        delay = after >= 0 ? after : weir_runner_backoff(pol, x->item.attempt, weir_runner_rand01());
        free(x->item.last_error);
        x->item.last_error = x->error ? strdup(x->error) : strdup("failed");
        if (permanent || x->item.attempt >= pol->max_attempts ||
            (pol->max_elapsed_s > 0 &&
             (double)(now - x->item.first_at) / 1000.0 + delay > pol->max_elapsed_s)) {
            x->status = "dead";
            rn->stats.dead++;
            weir_runner_fields(fields, sizeof fields, x->item.id, x->item.attempt, "error",
                               x->error);
            weir_runner_log(rn, WEIR_LOG_ERROR, x->jd->def->name,
                            permanent ? "job failed permanently; dead-lettered"
                                      : "job out of attempts; dead-lettered", fields);
            rc = rn->q->vt->dead(rn->q, &x->item, weir_runner_settled, x);
        } else {
            weir_queue_item next = x->item;
            x->status = "retrying";
            rn->stats.retried++;
            next.attempt = x->item.attempt + 1;
            next.run_at = now + (int64_t)(delay * 1000.0);
            x->retry_at = next.run_at;
            weir_runner_fields(fields, sizeof fields, x->item.id, x->item.attempt, "error",
                               x->error);
            weir_runner_log(rn, WEIR_LOG_WARN, x->jd->def->name, "job failed; will retry", fields);
            rc = rn->q->vt->retry(rn->q, &next, weir_runner_settled, x);
        }
    }
    if (rc != 0) weir_runner_settled(x, "queue refused the update", NULL, 0);
}

static void weir_runner_timed_out(uv_timer_t *t) {
    weir_runner_exec *x = t->data;
    char msg[128];
    snprintf(msg, sizeof msg, "job timeout: ran longer than %g s", x->jd->def->timeout_s);
    weir_job_kill(x->job, msg);
}

static void weir_runner_heartbeat_done(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_runner_exec *x = ud;
    (void)items;
    x->handles_open--;                        /* the heartbeat's hold on x */
    if (!err && n == 0 && x->job &&
        (x->job->status == WEIR_JOB_WAITING || x->job->status == WEIR_JOB_READY)) {
        x->lease_lost = 1;
        weir_job_kill(x->job, "lease lost to another worker");
    }
    if (x->handles_open == 0) weir_runner_exec_free(x);
}

static void weir_runner_beat(uv_timer_t *t) {
    weir_runner_exec *x = t->data;
    weir_runner *rn = x->rn;
    x->handles_open++;
    if (rn->q->vt->heartbeat(rn->q, x->item.id, rn->opts.lease_ms, weir_runner_heartbeat_done, x) != 0)
        x->handles_open--;
}

struct weir_runner_prep {
    weir_runner_exec *x;
};

/* Pushes boot arguments onto the job thread and the job's identity into
 * its locals (protected: runs on the state's main thread). */
static int weir_runner_prepare(lua_State *L) {
    struct weir_runner_prep *p = lua_touserdata(L, 1);
    weir_runner_exec *x = p->x;
    lua_State *co = x->job->co;
    const weir_recipe_job *def = x->jd->def;
    weir_job_push_locals(L, x->job);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, def->name);
    lua_setfield(L, -2, "job");
    lua_pushinteger(L, x->item.attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushstring(L, x->item.trigger);
    lua_setfield(L, -2, "trigger");
    lua_pushstring(L, x->item.id);
    lua_setfield(L, -2, "id");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "weir.job");
    /* boot args: module, fn, params_json, payload_json, info */
    lua_pushstring(co, def->module);
    lua_pushstring(co, def->function);
    lua_pushstring(co, x->rn->params_json);
    lua_pushstring(co, x->item.payload ? x->item.payload : "null");
    lua_xmove(L, co, 1);
    lua_pop(L, 1);
    return 0;
}

static void weir_runner_run_item(weir_runner_jobdef *jd, const weir_queue_item *src) {
    weir_runner *rn = jd->rn;
    weir_runner_exec *x = calloc(1, sizeof *x);
    struct weir_runner_prep prep;
    char fields[768];
    if (!x) return;                         /* lease runs out; another claim retries it */
    x->rn = rn;
    x->jd = jd;
    x->item.id = strdup(src->id);
    x->item.recipe = strdup(src->recipe);
    x->item.job = strdup(src->job);
    x->item.payload = strdup(src->payload ? src->payload : "null");
    x->item.trigger = strdup(src->trigger ? src->trigger : "manual");
    x->item.attempt = src->attempt;
    x->item.first_at = src->first_at;
    x->item.run_at = src->run_at;
    x->item.last_error = src->last_error ? strdup(src->last_error) : NULL;
    x->started_at = weir_store_now_ms();
    x->job = weir_job_new(rn->st);
    if (!x->item.id || !x->item.recipe || !x->item.job || !x->item.payload || !x->item.trigger ||
        !x->job ||
        weir_state_load_buffer(rn->st, x->job->co, weir_runner_boot, sizeof weir_runner_boot - 1,
                               "=weir runner") != LUA_OK) {
        if (x->job) weir_job_release(x->job);
        weir_queue_item_clear(&x->item);
        free(x);
        return;
    }
    prep.x = x;
    if (weir_state_pcall(rn->st, weir_runner_prepare, &prep, NULL, 0) != LUA_OK) {
        weir_job_release(x->job);
        weir_queue_item_clear(&x->item);
        free(x);
        return;
    }
    x->next = rn->execs;
    rn->execs = x;
    jd->running++;
    rn->stats.running++;
    rn->stats.started++;
    uv_timer_init(rn->e->loop, &x->timeout);
    uv_timer_init(rn->e->loop, &x->heartbeat);
    x->timeout.data = x->heartbeat.data = x;
    x->handles_open = 2;
    if (jd->def->timeout_s > 0)
        uv_timer_start(&x->timeout, weir_runner_timed_out, (uint64_t)(jd->def->timeout_s * 1000.0), 0);
    uv_timer_start(&x->heartbeat, weir_runner_beat, (uint64_t)(rn->opts.lease_ms / 3),
                   (uint64_t)(rn->opts.lease_ms / 3));
    weir_runner_fields(fields, sizeof fields, x->item.id, x->item.attempt, "trigger", x->item.trigger);
    weir_runner_log(rn, WEIR_LOG_INFO, jd->def->name, "job started", fields);
    weir_job_start(x->job, 5, weir_runner_job_done, x);
}

/* ---- claiming ---- */

typedef struct {
    weir_runner_jobdef *jd;
} weir_runner_claim;

static void weir_runner_release_ignored(void *ud, const char *err, weir_queue_item *items, int n) {
    (void)ud; (void)err; (void)items; (void)n;
}

static void weir_runner_claimed(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_runner_claim *c = ud;
    weir_runner_jobdef *jd = c->jd;
    weir_runner *rn = jd->rn;
    int i;
    free(c);
    jd->claiming = 0;
    if (err) {
        weir_runner_log(rn, WEIR_LOG_ERROR, jd->def->name, "claim failed", NULL);
        return;
    }
    for (i = 0; i < n; i++) {
        if (rn->stopping) {
            rn->q->vt->release(rn->q, items[i].id, weir_runner_release_ignored, NULL);
            continue;
        }
        weir_runner_run_item(jd, &items[i]);
    }
    /* a full batch may mean more is due */
    if (n > 0 && !rn->stopping) weir_runner_pump(rn);
}

static void weir_runner_pump(weir_runner *rn) {
    int i;
    if (!rn->started || rn->stopping) return;
    for (i = 0; i < rn->njobs; i++) {
        weir_runner_jobdef *jd = &rn->jobs[i];
        int free_slots = jd->def->concurrency - jd->running;
        weir_runner_claim *c;
        if (free_slots <= 0 || jd->claiming) continue;
        c = calloc(1, sizeof *c);
        if (!c) return;
        c->jd = jd;
        jd->claiming = 1;
        if (rn->q->vt->claim(rn->q, rn->recipe->name, jd->def->name, free_slots,
                             rn->opts.lease_ms, weir_runner_claimed, c) != 0) {
            jd->claiming = 0;
            free(c);
        }
    }
}

/* Wakes at the next due item (retries), at most every second (other
 * processes enqueue too, and leases of dead workers expire). */
static void weir_runner_next_due(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_runner *rn = ud;
    int64_t wait = WEIR_RUNNER_POLL_MS;
    if (!err && n > 0) {
        int64_t d = items[0].run_at - weir_store_now_ms();
        if (d < wait) wait = d < 1 ? 1 : d;
    }
    if (!rn->stopping && rn->poll_open)
        uv_timer_start(&rn->poll, weir_runner_poll_cb, (uint64_t)wait, 0);
}

static void weir_runner_poll_cb(uv_timer_t *t) {
    weir_runner *rn = t->data;
    if (rn->stopping) return;
    weir_runner_pump(rn);
    if (rn->q->vt->next_due(rn->q, rn->recipe->name, weir_runner_next_due, rn) != 0)
        uv_timer_start(&rn->poll, weir_runner_poll_cb, WEIR_RUNNER_POLL_MS, 0);
}

/* ---- lifecycle ---- */

weir_runner *weir_runner_new(weir_engine *e, weir_recipe *recipe, char *params_json,
                             weir_queue *q, const weir_runner_opts *opts, char **err) {
    weir_runner *rn = calloc(1, sizeof *rn);
    int i;
    if (!rn) goto oom;
    rn->e = e;
    rn->recipe = recipe;
    rn->params_json = params_json;
    rn->q = q;
    if (opts) rn->opts = *opts;
    if (rn->opts.grace_s <= 0) rn->opts.grace_s = 30;
    if (rn->opts.lease_ms <= 0) rn->opts.lease_ms = 30000;
    rn->jobs = calloc((size_t)recipe->njobs, sizeof *rn->jobs);
    if (!rn->jobs) goto oom;
    rn->njobs = recipe->njobs;
    for (i = 0; i < recipe->njobs; i++) {
        rn->jobs[i].rn = rn;
        rn->jobs[i].def = &recipe->jobs[i];
    }
    return rn;
oom:
    if (rn) free(rn->jobs);
    free(rn);
    weir_recipe_free(recipe);
    free(params_json);
    *err = strdup("runner: out of memory");
    return NULL;
}

static int weir_runner_is_scheduled(const weir_recipe_job *def) {
    int i;
    for (i = 0; i < def->ntriggers; i++)
        if (def->triggers[i].kind == WEIR_TRIGGER_EVERY || def->triggers[i].kind == WEIR_TRIGGER_CRON)
            return 1;
    return 0;
}

static int weir_runner_add_once(weir_runner *rn, const weir_recipe_job *def, const char *trigger,
                                const char *payload) {
    char id[512];
    unsigned char rnd[4];
    char hex[9];
    char **ids = realloc(rn->once_ids, (size_t)(rn->nonce + 1) * sizeof *ids);
    if (!ids) return -1;
    rn->once_ids = ids;
    weir_crypto_random(rnd, sizeof rnd);
    weir_crypto_hex(rnd, sizeof rnd, hex);
    snprintf(id, sizeof id, "%s:%s:%s:%lld:%s", rn->recipe->name, def->name, trigger,
             (long long)weir_store_now_ms(), hex);
    ids[rn->nonce] = strdup(id);
    if (!ids[rn->nonce]) return -1;
    rn->nonce++;
    rn->once_pending++;
    if (weir_runner_enqueue(rn, def, id, trigger, payload, 0, 1) != 0) {
        rn->once_pending--;
        return -1;
    }
    return 0;
}

int weir_runner_start(weir_runner *rn, char **err) {
    const char *root = rn->recipe->dir;
    const char *serr = NULL;
    int i, j;
    rn->st = weir_state_new(rn->e, rn->recipe->name, &root, 1, &serr);
    if (!rn->st) {
        *err = strdup(serr ? serr : "cannot create the recipe's state");
        return -1;
    }
    uv_timer_init(rn->e->loop, &rn->poll);
    rn->poll.data = rn;
    rn->poll_open = 1;
    uv_timer_init(rn->e->loop, &rn->grace);
    rn->grace.data = rn;
    rn->grace_open = 1;
    rn->started = 1;
    if (rn->opts.only_job) {
        const weir_recipe_job *def = weir_recipe_find_job(rn->recipe, rn->opts.only_job);
        if (!def) {
            *err = strdup("no such job in the recipe");
            return -1;
        }
        if (weir_runner_add_once(rn, def, "manual", rn->opts.payload_json) != 0) goto oom;
    } else if (rn->opts.once) {
        for (i = 0; i < rn->njobs; i++)
            if (weir_runner_is_scheduled(rn->jobs[i].def) &&
                weir_runner_add_once(rn, rn->jobs[i].def, "once", NULL) != 0)
                goto oom;
        if (rn->nonce == 0) {
            *err = strdup("the recipe has no scheduled job (every / cron) to run once");
            return -1;
        }
    } else {
        for (i = 0; i < rn->njobs; i++) {
            weir_runner_jobdef *jd = &rn->jobs[i];
            jd->timers = calloc((size_t)jd->def->ntriggers + 1, sizeof *jd->timers);
            if (!jd->timers) goto oom;
            for (j = 0; j < jd->def->ntriggers; j++) {
                const weir_trigger *t = &jd->def->triggers[j];
                weir_runner_trigger_timer *tt;
                if (t->kind != WEIR_TRIGGER_EVERY && t->kind != WEIR_TRIGGER_CRON) continue;
                tt = &jd->timers[jd->ntimers++];
                tt->jd = jd;
                tt->trig = t;
                uv_timer_init(rn->e->loop, &tt->timer);
                tt->timer.data = tt;
                if (t->kind == WEIR_TRIGGER_EVERY)
                    uv_timer_start(&tt->timer, weir_runner_fire_every, 0, t->every_ms);
                else
                    weir_runner_arm_cron(tt);
            }
        }
    }
    uv_timer_start(&rn->poll, weir_runner_poll_cb, 0, 0);
    return 0;
oom:
    *err = strdup("runner: out of memory");
    return -1;
}

static void weir_runner_maybe_stopped(weir_runner *rn) {
    if (!rn->started) return;
    /* once / only_job: stop by itself when everything settled */
    if (!rn->stopping && (rn->opts.once || rn->opts.only_job) && rn->once_pending <= 0 &&
        rn->execs == NULL) {
        weir_runner_stop(rn, rn->on_stopped, rn->on_stopped_ud);
        return;
    }
    if (!rn->stopping || rn->stopped || rn->execs) return;
    rn->stopped = 1;
    if (rn->grace_open) {
        uv_timer_stop(&rn->grace);
        uv_close((uv_handle_t *)&rn->grace, NULL);
        rn->grace_open = 0;
    }
    if (rn->on_stopped) rn->on_stopped(rn->on_stopped_ud);
}

static void weir_runner_grace_over(uv_timer_t *t) {
    weir_runner *rn = t->data;
    weir_runner_exec *x;
    for (x = rn->execs; x; x = x->next) {
        if (x->job && (x->job->status == WEIR_JOB_WAITING || x->job->status == WEIR_JOB_READY)) {
            x->shutdown = 1;
            weir_job_kill(x->job, "shutdown: grace period over; the item goes back to the queue");
        }
    }
}

void weir_runner_stop(weir_runner *rn, void (*on_stopped)(void *ud), void *ud) {
    int i, j;
    rn->on_stopped = on_stopped;
    rn->on_stopped_ud = ud;
    if (rn->stopping) {
        weir_runner_maybe_stopped(rn);
        return;
    }
    rn->stopping = 1;
    for (i = 0; i < rn->njobs; i++)
        for (j = 0; j < rn->jobs[i].ntimers; j++) {
            uv_timer_stop(&rn->jobs[i].timers[j].timer);
            uv_close((uv_handle_t *)&rn->jobs[i].timers[j].timer, NULL);
        }
    for (i = 0; i < rn->njobs; i++) rn->jobs[i].ntimers = 0;
    if (rn->poll_open) {
        uv_timer_stop(&rn->poll);
        uv_close((uv_handle_t *)&rn->poll, NULL);
        rn->poll_open = 0;
    }
    if (rn->execs && rn->grace_open)
        uv_timer_start(&rn->grace, weir_runner_grace_over, (uint64_t)(rn->opts.grace_s * 1000.0), 0);
    weir_runner_maybe_stopped(rn);
}

void weir_runner_stop_when_done(weir_runner *rn, void (*on_stopped)(void *ud), void *ud) {
    rn->on_stopped = on_stopped;
    rn->on_stopped_ud = ud;
}

int weir_runner_exit_status(const weir_runner *rn) {
    return rn->once_failed || rn->once_pending > 0 ? 1 : 0;
}

const weir_runner_stats *weir_runner_get_stats(const weir_runner *rn) { return &rn->stats; }

void weir_runner_free(weir_runner *rn) {
    int i;
    if (!rn) return;
    for (i = 0; i < rn->njobs; i++) free(rn->jobs[i].timers);
    free(rn->jobs);
    for (i = 0; i < rn->nonce; i++) free(rn->once_ids[i]);
    free(rn->once_ids);
    if (rn->st) weir_state_free(rn->st);
    weir_recipe_free(rn->recipe);
    free(rn->params_json);
    free(rn);
}
