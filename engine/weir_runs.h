/*
 * weir_runs.h -- run history: one row per job run (recipe, job, trigger,
 * attempt, start, end, status, counts, error) in the state store.
 */
#ifndef WEIR_RUNS_H
#define WEIR_RUNS_H

#include <stdint.h>

#include "weir_lib.h"
#include "weir_store.h"

typedef struct weir_run_record {
    const char *recipe;
    const char *job;
    const char *trigger;        /* "manual", "every", "cron", "webhook:x", ... */
    int attempt;
    int64_t started_at, ended_at;   /* ms since the epoch; ended_at 0 = running */
    const char *status;         /* running | succeeded | failed | retrying | dead */
    weir_lib_counts counts;
    const char *error;          /* NULL on success; redact before storing */
} weir_run_record;

/* Inserts a run; cb gets the new id in results[0] (column "id"). */
int weir_runs_insert(weir_store *s, const weir_run_record *r, weir_store_cb cb, void *ud);

/* Updates the end, status, counts and error of run `id`. */
int weir_runs_finish(weir_store *s, int64_t id, const weir_run_record *r, weir_store_cb cb,
                     void *ud);

/* Lists runs, newest first: recipe may be NULL; failed_only; limit. */
int weir_runs_list(weir_store *s, const char *recipe, int failed_only, int limit,
                   weir_store_cb cb, void *ud);

#endif
