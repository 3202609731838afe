/*
 * weir_runner.h -- runs a recipe: fires its triggers into the queue,
 * claims due items, runs each as a job, and settles the outcome
 * (ack, retry with backoff, dead letter).
 *
 * Lifecycle: weir_runner_new -> weir_runner_start -> (loop runs) ->
 * weir_runner_stop (graceful: no new claims, in-flight jobs get `grace`
 * seconds, the rest are killed and their items released) -> on_stopped
 * -> weir_runner_free.
 */
#ifndef WEIR_RUNNER_H
#define WEIR_RUNNER_H

#include <stdint.h>

#include "weir_engine.h"
#include "weir_queue.h"
#include "weir_recipe.h"

typedef struct weir_runner weir_runner;

typedef struct weir_runner_opts {
    int once;                   /* run every scheduled job once, then stop */
    const char *only_job;       /* run this job once (manual), then stop */
    const char *payload_json;   /* payload for only_job (default "null") */
    double grace_s;             /* shutdown grace period (default 30) */
    int64_t lease_ms;           /* queue lease, renewed at a third (default 30000) */
    int progress;               /* live progress line on stderr (a terminal) */
} weir_runner_opts;

typedef struct weir_runner_stats {
    long long started, succeeded, retried, dead, released;
    long long records_read, records_written;
    int running;
} weir_runner_stats;

/* Takes ownership of recipe and params_json (malloc'd).  The queue is
 * borrowed.  NULL + malloc'd *err on failure. */
weir_runner *weir_runner_new(weir_engine *e, weir_recipe *recipe, char *params_json,
                             weir_queue *q, const weir_runner_opts *opts, char **err);

/* Creates the recipe's state, arms triggers, starts claiming. */
int weir_runner_start(weir_runner *rn, char **err);

/* Graceful stop; on_stopped runs once everything settled. */
void weir_runner_stop(weir_runner *rn, void (*on_stopped)(void *ud), void *ud);

/* --once / only_job: call on_stopped when the runner stopped by itself. */
void weir_runner_stop_when_done(weir_runner *rn, void (*on_stopped)(void *ud), void *ud);

/* After a --once / only_job run stopped: 0 when every job succeeded. */
int weir_runner_exit_status(const weir_runner *rn);
const weir_runner_stats *weir_runner_get_stats(const weir_runner *rn);
void weir_runner_free(weir_runner *rn);

/* Backoff before the attempt after `failed_attempt` (1-based), with u01
 * uniform in [0, 1): full jitter gives uniform(base, min(cap, base*2^(n-1))). */
double weir_runner_backoff(const weir_retry_policy *p, int failed_attempt, double u01);

#endif
