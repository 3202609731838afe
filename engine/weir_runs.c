/*
 * weir_runs.c -- run history statements.
 */
#include "weir_runs.h"

#include <stdio.h>

static void weir_runs_num(char buf[32], long long v) { snprintf(buf, 32, "%lld", v); }

int weir_runs_insert(weir_store *s, const weir_run_record *r, weir_store_cb cb, void *ud) {
    char num[8][32];
    const char *p[13];
    weir_store_stmt stmt;
    weir_runs_num(num[0], r->attempt);
    weir_runs_num(num[1], (long long)r->started_at);
    weir_runs_num(num[2], (long long)r->ended_at);
    weir_runs_num(num[3], r->counts.read);
    weir_runs_num(num[4], r->counts.written);
    weir_runs_num(num[5], r->counts.skipped);
    weir_runs_num(num[6], r->counts.failed);
    p[0] = r->recipe;
    p[1] = r->job;
    p[2] = r->trigger;
    p[3] = num[0];
    p[4] = num[1];
    p[5] = r->ended_at ? num[2] : NULL;
    p[6] = r->status;
    p[7] = num[3];
    p[8] = num[4];
    p[9] = num[5];
    p[10] = num[6];
    p[11] = r->error;
    stmt.sql = "INSERT INTO runs (recipe, job, trigger, attempt, started_at, ended_at, status,"
               " read, written, skipped, failed, error)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";
    stmt.nparams = 12;
    stmt.params = p;
    return weir_store_exec(s, &stmt, 1, cb, ud);
}

int weir_runs_finish(weir_store *s, int64_t id, const weir_run_record *r, weir_store_cb cb,
                     void *ud) {
    char num[6][32];
    const char *p[8];
    weir_store_stmt stmt;
    weir_runs_num(num[0], (long long)id);
    weir_runs_num(num[1], (long long)r->ended_at);
    weir_runs_num(num[2], r->counts.read);
    weir_runs_num(num[3], r->counts.written);
    weir_runs_num(num[4], r->counts.skipped);
    weir_runs_num(num[5], r->counts.failed);
    p[0] = num[0];
    p[1] = num[1];
    p[2] = r->status;
    p[3] = num[2];
    p[4] = num[3];
    p[5] = num[4];
    p[6] = num[5];
    p[7] = r->error;
    stmt.sql = "UPDATE runs SET ended_at = $2, status = $3, read = $4, written = $5,"
               " skipped = $6, failed = $7, error = $8 WHERE id = $1";
    stmt.nparams = 8;
    stmt.params = p;
    return weir_store_exec(s, &stmt, 1, cb, ud);
}

int weir_runs_list(weir_store *s, const char *recipe, int failed_only, int limit,
                   weir_store_cb cb, void *ud) {
    char lim[32];
    const char *p[3];
    weir_store_stmt stmt;
    weir_runs_num(lim, limit > 0 ? limit : 20);
    p[0] = recipe;
    p[1] = failed_only ? "1" : "0";
    p[2] = lim;
    stmt.sql = "SELECT id, recipe, job, trigger, attempt, started_at, ended_at, status,"
               " read, written, skipped, failed, error FROM runs"
               " WHERE (CAST($1 AS TEXT) IS NULL OR recipe = $1)"
               " AND ($2 = '0' OR status IN ('failed', 'dead'))"
               " ORDER BY id DESC LIMIT $3";
    stmt.nparams = 3;
    stmt.params = p;
    return weir_store_exec(s, &stmt, 1, cb, ud);
}
