/*
 * test_pg.c -- weir.pg's C API against a real server, started for this
 * test with tests/harness/pg.sh (start/stop in a temp directory): pools,
 * pipelined transactions, cancellation, a server restart under an
 * in-flight query, and engines freed with work in flight (run this under
 * ASan: every path must free what it owns).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weir_engine.h"
#include "weir_job.h"
#include "weir_pg.h"
#include "weir_state.h"

static char server_dir[64];
static char dsn[512];

/* ---- server ---- */

static int run_harness(const char *verb) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s/harness/pg.sh' %s '%s' >/dev/null", WEIR_TEST_DIR, verb, server_dir);
    return system(cmd);
}

static int start_server(void **state) {
    char cmd[512], line[512];
    FILE *f;
    (void)state;
    snprintf(server_dir, sizeof server_dir, "/tmp/weir-pgu.XXXXXX");
    if (!mkdtemp(server_dir)) return -1;
    snprintf(cmd, sizeof cmd, "'%s/harness/pg.sh' start '%s'", WEIR_TEST_DIR, server_dir);
    f = popen(cmd, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        const char *prefix = "export WEIR_PG_DSN='";
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            char *end = strrchr(line, '\'');
            if (end) *end = '\0';
            snprintf(dsn, sizeof dsn, "%s", line + strlen(prefix));
        }
    }
    if (pclose(f) != 0 || !dsn[0]) {
        fprintf(stderr, "test_pg: cannot start PostgreSQL with tests/harness/pg.sh\n");
        return -1;
    }
    return 0;
}

static int stop_server(void **state) {
    char cmd[300];
    (void)state;
    run_harness("stop");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", server_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

typedef struct {
    int calls;
    weir_pg_err_kind kind;
    int retryable;
    char sqlstate[6];
    char message[512];
    char value[128];            /* results[last] row 0 col 0 */
    int nresults;
    int ntuples[4];
} answer;

static void on_answer(void *ud, weir_pg_outcome *out) {
    answer *a = ud;
    int i;
    a->calls++;
    a->kind = out->err.kind;
    a->retryable = out->err.retryable;
    snprintf(a->sqlstate, sizeof a->sqlstate, "%s", out->err.sqlstate);
    snprintf(a->message, sizeof a->message, "%s", out->err.message ? out->err.message : "");
    a->nresults = out->nresults;
    for (i = 0; i < out->nresults && i < 4; i++)
        a->ntuples[i] = out->results[i] ? PQntuples(out->results[i]) : -1;
    if (out->nresults > 0) {
        PGresult *r = out->results[out->nresults - 1];
        if (r && PQntuples(r) > 0 && PQnfields(r) > 0)
            snprintf(a->value, sizeof a->value, "%s", PQgetvalue(r, 0, 0));
    }
}

static weir_engine *new_engine(void) {
    const char *err = NULL;
    weir_engine *e = weir_engine_new(NULL, NULL, &err);
    assert_non_null(e);
    return e;
}

static weir_pg_pool *pool(weir_engine *e, int size) {
    weir_pg_pool_opts o = {size, 0, 5, 0};
    char err[256];
    weir_pg_pool *p = weir_pg_pool_get(e, dsn, &o, err, sizeof err);
    if (!p) fail_msg("pool: %s", err);
    return p;
}

/* Runs sql to completion (the loop runs until nothing is pending). */
static void exec_sync(weir_engine *e, weir_pg_pool *p, const char *sql, answer *a) {
    weir_pg_stmt st = {sql, 0, NULL, NULL, NULL};
    memset(a, 0, sizeof *a);
    assert_non_null(weir_pg_exec(p, &st, on_answer, a));
    weir_engine_run(e);
    assert_int_equal(a->calls, 1);
}

/* Runs the loop until `sql` shows as active in pg_stat_activity (seen
 * through pool q): a condition, not a delay. */
static void wait_active(weir_engine *e, weir_pg_pool *q, const char *needle) {
    char sql[512];
    answer a;
    int i;
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '%s'",
             needle);
    for (i = 0; i < 2000; i++) {
        weir_pg_stmt st = {sql, 0, NULL, NULL, NULL};
        memset(&a, 0, sizeof a);
        assert_non_null(weir_pg_exec(q, &st, on_answer, &a));
        while (!a.calls) uv_run(e->loop, UV_RUN_ONCE);
        assert_int_equal(a.kind, WEIR_PG_OK);
        if (strcmp(a.value, "1") == 0) return;
    }
    fail_msg("the statement never became active: %s", needle);
}

/* ---- tests ---- */

static void test_exec_with_params(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool *p = pool(e, 2);
    const char *values[] = {"41", NULL};
    weir_pg_stmt st = {"SELECT $1::int + 1, $2::text IS NULL", 2, values, NULL, NULL};
    weir_pg_pool_stats stats;
    answer a = {0};
    (void)unused;
    assert_non_null(weir_pg_exec(p, &st, on_answer, &a));
    assert_int_equal(a.calls, 0);               /* never inside the call */
    weir_engine_run(e);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.kind, WEIR_PG_OK);
    assert_string_equal(a.value, "42");
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.open, 1);
    assert_int_equal(stats.idle, 1);
    assert_int_equal(stats.connects, 1);
    /* the same pool for the same DSN and options */
    assert_ptr_equal(pool(e, 2), p);
    weir_engine_free(e);
}

static void test_exec_tx_is_atomic(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool *p = pool(e, 2);
    weir_pg_stmt ok[] = {
        {"INSERT INTO u_tx VALUES (1)", 0, NULL, NULL, NULL},
        {"INSERT INTO u_tx VALUES (2) RETURNING id", 0, NULL, NULL, NULL}};
    weir_pg_stmt bad[] = {
        {"INSERT INTO u_tx VALUES (3)", 0, NULL, NULL, NULL},
        {"INSERT INTO u_tx VALUES (1)", 0, NULL, NULL, NULL},
        {"INSERT INTO u_tx VALUES (4)", 0, NULL, NULL, NULL}};
    answer a;
    (void)unused;
    exec_sync(e, p, "DROP TABLE IF EXISTS u_tx; CREATE TABLE u_tx (id int PRIMARY KEY)", &a);
    assert_int_equal(a.kind, WEIR_PG_OK);
    memset(&a, 0, sizeof a);
    assert_non_null(weir_pg_exec_tx(p, ok, 2, on_answer, &a));
    weir_engine_run(e);
    assert_int_equal(a.kind, WEIR_PG_OK);
    assert_int_equal(a.nresults, 2);
    assert_int_equal(a.ntuples[1], 1);
    assert_string_equal(a.value, "2");
    memset(&a, 0, sizeof a);
    assert_non_null(weir_pg_exec_tx(p, bad, 3, on_answer, &a));
    weir_engine_run(e);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.kind, WEIR_PG_ERR_SQL);
    assert_string_equal(a.sqlstate, "23505");
    exec_sync(e, p, "SELECT string_agg(id::text, ',' ORDER BY id) FROM u_tx", &a);
    assert_string_equal(a.value, "1,2");        /* 3 was rolled back with the rest */
    weir_engine_free(e);
}

static void test_pool_get_errors(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool_opts big = {5000, 0, 0, 0}, neg = {0, -1, 0, 0};
    char err[256];
    (void)unused;
    assert_null(weir_pg_pool_get(e, "host=x port", NULL, err, sizeof err));
    assert_non_null(strstr(err, "bad DSN"));
    assert_null(weir_pg_pool_get(e, dsn, &big, err, sizeof err));
    assert_non_null(strstr(err, "size"));
    assert_null(weir_pg_pool_get(e, dsn, &neg, err, sizeof err));
    assert_non_null(strstr(err, "statement_timeout"));
    assert_string_equal(weir_pg_error_kind_name(WEIR_PG_ERR_POOL_TIMEOUT), "pool_timeout");
    weir_engine_free(e);
}

static void test_cancel(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool *p = pool(e, 1);
    weir_pg_stmt slow = {"SELECT pg_sleep(30)", 0, NULL, NULL, NULL};
    weir_pg_stmt quick = {"SELECT 'queued'", 0, NULL, NULL, NULL};
    weir_pg_pool_stats stats;
    answer a, b, c;
    weir_pg_req *ra, *rb;
    (void)unused;
    exec_sync(e, p, "SELECT 1", &a);            /* one idle connection */
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    ra = weir_pg_exec(p, &slow, on_answer, &a); /* sent at once */
    rb = weir_pg_exec(p, &quick, on_answer, &b);/* waits for the connection */
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.waiting, 1);
    assert_int_equal(stats.busy, 1);
    weir_pg_cancel(rb);
    weir_pg_cancel(ra);                         /* cancelled on the server, conn closed */
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.waiting, 0);
    assert_int_equal(stats.open, 0);
    assert_int_equal(stats.discarded, 1);
    weir_engine_run(e);                         /* returns: nothing waits 30 s */
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    exec_sync(e, p, "SELECT 'after'", &c);
    assert_string_equal(c.value, "after");
    weir_engine_free(e);
}

static void test_connect_failure_backs_off(void **unused) {
    weir_engine *e = new_engine();
    char err[256];
    weir_pg_pool *p = weir_pg_pool_get(e, "host=127.0.0.1 port=1 user=weir dbname=postgres", NULL,
                                       err, sizeof err);
    weir_pg_pool_stats stats;
    answer a;
    (void)unused;
    assert_non_null(p);
    exec_sync(e, p, "SELECT 1", &a);
    assert_int_equal(a.kind, WEIR_PG_ERR_CONNECTION);
    assert_true(a.retryable);
    assert_non_null(strstr(a.message, "127.0.0.1:1/postgres: cannot connect"));
    /* within the backoff window (the engine's clock moved back a minute,
     * so no real delay can end it): fail fast, no new attempt */
    e->clock_offset_ns = (uint64_t)0 - (uint64_t)60000000000u;
    exec_sync(e, p, "SELECT 1", &a);
    assert_int_equal(a.kind, WEIR_PG_ERR_CONNECTION);
    assert_non_null(strstr(a.message, "next attempt in"));
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.connect_failures, 1);
    assert_int_equal(stats.open, 0);
    /* after the window: a new attempt, and the next window is longer */
    e->clock_offset_ns = (uint64_t)60000000000u;
    exec_sync(e, p, "SELECT 1", &a);
    assert_int_equal(a.kind, WEIR_PG_ERR_CONNECTION);
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.connect_failures, 2);
    weir_engine_free(e);
}

/* A server that accepts (the kernel does) but never answers: the
 * connect timeout, not libpq, must end the attempt. */
static void test_connect_timeout(void **unused) {
    weir_engine *e = new_engine();
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    weir_pg_pool_opts o = {1, 0, 0.2, 0};
    char conninfo[128], err[256];
    weir_pg_pool *p;
    answer a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    (void)unused;
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=weir sslmode=disable",
             ntohs(sa.sin_port));
    p = weir_pg_pool_get(e, conninfo, &o, err, sizeof err);
    assert_non_null(p);
    exec_sync(e, p, "SELECT 1", &a);
    assert_int_equal(a.kind, WEIR_PG_ERR_CONNECTION);
    assert_true(a.retryable);
    assert_non_null(strstr(a.message, "timed out after 200 ms"));
    weir_engine_free(e);
    close(fd);
}

static void test_server_restart(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool *p = pool(e, 2), *watch = pool(e, 1);
    weir_pg_stmt slow = {"SELECT pg_sleep(30)", 0, NULL, NULL, NULL};
    weir_pg_pool_stats stats;
    answer a, b;
    (void)unused;
    memset(&a, 0, sizeof a);
    assert_non_null(weir_pg_exec(p, &slow, on_answer, &a));
    wait_active(e, watch, "SELECT pg_sleep(30)");
    assert_int_equal(run_harness("restart"), 0);        /* blocks until it is back */
    while (!a.calls) uv_run(e->loop, UV_RUN_ONCE);
    assert_int_equal(a.kind, WEIR_PG_ERR_CONNECTION);
    assert_true(a.retryable);
    assert_non_null(strstr(a.message, "connection lost"));
    exec_sync(e, p, "SELECT 'reconnected'", &b);
    assert_int_equal(b.kind, WEIR_PG_OK);
    assert_string_equal(b.value, "reconnected");
    weir_pg_pool_stats_get(p, &stats);
    assert_int_equal(stats.connects, 2);
    assert_int_equal(stats.connect_failures, 0);
    /* the watcher's idle connection died too: its next query reconnects */
    exec_sync(e, watch, "SELECT 'watch'", &b);
    assert_string_equal(b.value, "watch");
    weir_engine_free(e);
}

static void test_engine_free_with_requests_in_flight(void **unused) {
    weir_engine *e = new_engine();
    weir_pg_pool *p = pool(e, 1);
    weir_pg_stmt slow = {"SELECT 'finished', pg_sleep(0.05)", 0, NULL, NULL, NULL};
    weir_pg_stmt queued = {"SELECT 'never sent'", 0, NULL, NULL, NULL};
    answer a, b, c;
    (void)unused;
    exec_sync(e, p, "SELECT 1", &a);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_non_null(weir_pg_exec(p, &slow, on_answer, &a));
    assert_non_null(weir_pg_exec(p, &queued, on_answer, &b));
    /* a connecting pool too: its connection is dropped at close */
    {
        weir_pg_pool *fresh = pool(e, 3);
        memset(&c, 0, sizeof c);
        assert_non_null(weir_pg_exec(fresh, &queued, on_answer, &c));
    }
    weir_engine_free(e);
    assert_int_equal(a.calls, 1);               /* finished in the final run */
    assert_int_equal(a.kind, WEIR_PG_OK);
    assert_string_equal(a.value, "finished");
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.kind, WEIR_PG_ERR_CLOSED);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.kind, WEIR_PG_ERR_CLOSED);
}

/* Lua jobs parked on weir.pg ops when the engine is freed. */
static void test_engine_free_with_lua_jobs_in_flight(void **unused) {
    weir_engine *e = new_engine();
    const char *err = NULL;
    weir_state *st = weir_state_new(e, "pgjobs", NULL, 0, &err);
    char src[1024];
    weir_job *jobs[3];
    const char *waits_on[3] = {"tx:query", "db:query", "listener:next"};
    const char *bodies[3] = {
        "db:tx(function(tx) tx:query('SELECT pg_sleep(30)') end)",
        "db:query('SELECT pg_sleep(30)')",
        "local l = assert(db:listen('freed')); l:next()"};
    int i, ready;
    (void)unused;
    assert_non_null(st);
    for (i = 0; i < 3; i++) {
        snprintf(src, sizeof src,
                 "local pg = require 'weir.pg'\n"
                 "local db = pg.connect(%s%s%s, {size = 3})\n%s\n",
                 "'", dsn, "'", bodies[i]);
        jobs[i] = weir_job_new(st);
        assert_non_null(jobs[i]);
        assert_int_equal(weir_state_load_buffer(st, jobs[i]->co, src, strlen(src), "=pgjob"), LUA_OK);
        weir_job_start(jobs[i], 0, NULL, NULL);
    }
    /* run until every job waits on its statement / notification */
    do {
        uv_run(e->loop, UV_RUN_ONCE);
        ready = 0;
        for (i = 0; i < 3; i++) {
            assert_true(jobs[i]->status != WEIR_JOB_FAILED && jobs[i]->status != WEIR_JOB_DONE);
            if (jobs[i]->status == WEIR_JOB_WAITING && jobs[i]->op &&
                strcmp(jobs[i]->op->what, waits_on[i]) == 0)
                ready++;
        }
    } while (ready < 3);
    for (i = 0; i < 3; i++) weir_job_release(jobs[i]);
    weir_engine_free(e);        /* ASan: nothing leaks, nothing is used after free */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_with_params),
        cmocka_unit_test(test_exec_tx_is_atomic),
        cmocka_unit_test(test_pool_get_errors),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_connect_failure_backs_off),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_engine_free_with_requests_in_flight),
        cmocka_unit_test(test_engine_free_with_lua_jobs_in_flight),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
