/*
 * test_redis.c -- the weir.redis C API against a real redis-server started
 * by tests/harness/redis.sh: reply order and types, binary safety, EVALSHA
 * fallback, cancellation (tombstones, dedicated connections), a server
 * restart mid-run, backoff, command timeouts, engine shutdown.
 *
 * Every wait is "run the loop until this callback ran" with a bound on
 * loop iterations plus a watchdog timer, never a sleep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir_engine.h"
#include "weir_redis.h"

static char redis_dir[256];
static char redis_url[128];
static char harness[512];

/* ---- server ---- */

static int harness_run(const char *verb) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s' %s '%s' >/dev/null", harness, verb, redis_dir);
    return system(cmd);
}

static int group_setup(void **unused) {
    char path[300];
    FILE *f;
    int port = 0;
    (void)unused;
    snprintf(harness, sizeof harness, "%s/harness/redis.sh", WEIR_TEST_DIR);
    snprintf(redis_dir, sizeof redis_dir, "%s/weir-redis-unit.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(redis_dir)) return -1;
    if (harness_run("start") != 0) return -1;
    snprintf(path, sizeof path, "%s/port", redis_dir);
    f = fopen(path, "r");
    if (!f) return -1;
    if (fscanf(f, "%d", &port) != 1) port = 0;
    fclose(f);
    if (port <= 0) return -1;
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", port);
    return 0;
}

static int group_teardown(void **unused) {
    char cmd[600];
    (void)unused;
    harness_run("stop");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", redis_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

#define MAX_REPLIES 8

typedef struct {
    int calls;                  /* callbacks seen */
    int done;                   /* last reply or error seen */
    int expect;                 /* replies expected */
    int indexes[MAX_REPLIES];
    int types[MAX_REPLIES];
    long long integers[MAX_REPLIES];
    char strs[MAX_REPLIES][64];
    size_t lens[MAX_REPLIES];
    int failed;
    weir_redis_error err;
} rec;

static void on_reply(const redisReply *reply, const weir_redis_error *err, int index,
                     void *data) {
    rec *r = data;
    int i = r->calls++;
    if (err) {
        r->failed = 1;
        r->err = *err;
        r->done = 1;
        return;
    }
    if (i < MAX_REPLIES) {
        r->indexes[i] = index;
        r->types[i] = reply->type;
        r->integers[i] = reply->integer;
        if (reply->str) {
            size_t n = reply->len < sizeof r->strs[i] ? reply->len : sizeof r->strs[i] - 1;
            memcpy(r->strs[i], reply->str, n);
            r->lens[i] = reply->len;
        }
    }
    if (index == r->expect - 1) r->done = 1;
}

static void watchdog_fired(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until *flag is set; fails the test after 10 s. */
static void run_until(weir_engine *e, const int *flag) {
    uv_timer_t dog;
    int fired = 0;
    uv_timer_init(e->loop, &dog);
    dog.data = &fired;
    uv_timer_start(&dog, watchdog_fired, 10000, 0);
    uv_unref((uv_handle_t *)&dog);
    while (!*flag && !fired) {
        /* nothing referenced left: ONCE would return at once; block on
         * the watchdog instead of spinning */
        if (!uv_loop_alive(e->loop)) uv_ref((uv_handle_t *)&dog);
        uv_run(e->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&dog, NULL);
    uv_run(e->loop, UV_RUN_NOWAIT);
    assert_false(fired);
}

static weir_engine *engine(void) {
    const char *err = NULL;
    weir_engine *e = weir_engine_new(NULL, NULL, &err);
    assert_non_null(e);
    return e;
}

static weir_redis_server *server(weir_engine *e, const char *url) {
    char err[256];
    weir_redis_server *s = weir_redis_server_get(e, url, NULL, err, sizeof err);
    if (!s) fail_msg("server_get(%s): %s", url, err);
    return s;
}

/* Sends a command given as words (no binary) and waits for its reply. */
static void call(weir_engine *e, weir_redis_server *s, rec *r, uint64_t timeout_ms, int argc,
                 ...) {
    const char *argv[16];
    size_t lens[16];
    weir_redis_error err;
    va_list ap;
    int i;
    va_start(ap, argc);
    for (i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    memset(r, 0, sizeof *r);
    r->expect = 1;
    if (!weir_redis_command(s, argc, argv, lens, timeout_ms, on_reply, r, &err)) {
        r->failed = 1;
        r->err = err;
        r->done = 1;
        return;
    }
    run_until(e, &r->done);
}

/* blocked_clients from INFO, extracted server-side (replies are kept to
 * 64 bytes here). */
static long long server_blocked(weir_engine *e, weir_redis_server *s) {
    rec r;
    call(e, s, &r, 0, 3, "EVAL",
         "local i = redis.call('INFO', 'clients') "
         "return tonumber(string.match(i, 'blocked_clients:(%d+)'))",
         "0");
    assert_false(r.failed);
    assert_int_equal(r.types[0], REDIS_REPLY_INTEGER);
    return r.integers[0];
}

static void wait_blocked(weir_engine *e, weir_redis_server *s, long long n) {
    int i;
    for (i = 0; i < 5000; i++)
        if (server_blocked(e, s) == n) return;
    fail_msg("the server never reported %lld blocked clients", n);
}

/* ---- tests ---- */

static void test_url_parsing(void **unused) {
    weir_engine *e = engine();
    char err[256];
    weir_redis_server *s;
    static const struct {
        const char *url, *name;
    } good[] = {
        {"redis://127.0.0.1:6379", "127.0.0.1:6379"},
        {"redis://localhost", "localhost:6379"},
        {"redis://:pw@h:1/2", "h:1/2"},
        {"redis://u:p%40ss@[::1]:7000/0", "[::1]:7000"},
        {"redis://secret@h", "h:6379"},
        {"unix://:pw@/tmp/s.sock?db=4", "unix:/tmp/s.sock/4"},
        {"unix:///tmp/x.sock", "unix:/tmp/x.sock"},
    };
    static const char *const bad[] = {"redis://",       "redis://h:0",   "redis://h:70000",
                                      "redis://h/x",    "redis://h:1x",  "unix://rel.sock",
                                      "unix:///p?x=1",  "rediss://h",    "http://h",
                                      "redis://:secret@h:99999"};
    size_t i;
    (void)unused;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        s = weir_redis_server_get(e, good[i].url, NULL, err, sizeof err);
        assert_non_null(s);
        assert_string_equal(weir_redis_server_name(s), good[i].name);
        /* the same URL gives the same server */
        assert_ptr_equal(s, weir_redis_server_get(e, good[i].url, NULL, err, sizeof err));
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(weir_redis_server_get(e, bad[i], NULL, err, sizeof err));
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "secret"));
    }
    weir_engine_free(e);
}

static void test_batch_replies_in_order_binary_safe(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const set[] = {"SET", "unit:bin", "a\0b"};
    static const size_t set_len[] = {3, 8, 3};
    static const char *const get[] = {"GET", "unit:bin"};
    static const size_t get_len[] = {3, 8};
    static const char *const del[] = {"DEL", "unit:n"};
    static const size_t del_len[] = {3, 6};
    static const char *const incr[] = {"INCR", "unit:n"};
    static const size_t incr_len[] = {4, 6};
    static const char *const miss[] = {"GET", "unit:missing"};
    static const size_t miss_len[] = {3, 12};
    weir_redis_cmd cmds[5] = {{3, set, set_len},
                              {2, get, get_len},
                              {2, del, del_len},
                              {2, incr, incr_len},
                              {2, miss, miss_len}};
    weir_redis_error err;
    rec r;
    int i;
    weir_redis_stats st;
    (void)unused;
    memset(&r, 0, sizeof r);
    r.expect = 5;
    assert_non_null(weir_redis_send(s, cmds, 5, 0, on_reply, &r, &err));
    run_until(e, &r.done);
    assert_false(r.failed);
    assert_int_equal(r.calls, 5);
    for (i = 0; i < 5; i++) assert_int_equal(r.indexes[i], i);
    assert_int_equal(r.types[0], REDIS_REPLY_STATUS);
    assert_int_equal(r.types[1], REDIS_REPLY_STRING);
    assert_int_equal(r.lens[1], 3);
    assert_memory_equal(r.strs[1], "a\0b", 3);
    assert_int_equal(r.types[3], REDIS_REPLY_INTEGER);
    assert_int_equal(r.integers[3], 1);
    assert_int_equal(r.types[4], REDIS_REPLY_NIL);
    weir_redis_server_stats(s, &st);
    assert_int_equal(st.connects, 1);
    assert_true(st.connected);
    /* the idle connection does not keep the loop alive */
    assert_int_equal(uv_run(e->loop, UV_RUN_DEFAULT), 0);
    weir_engine_free(e);
}

static void test_refused_commands_never_call_back(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const sel[] = {"select", "1"};
    static const size_t sel_len[] = {6, 1};
    weir_redis_error err;
    rec r;
    (void)unused;
    memset(&r, 0, sizeof r);
    assert_null(weir_redis_command(s, 2, sel, sel_len, 0, on_reply, &r, &err));
    assert_string_equal(err.kind, "usage");
    assert_non_null(strstr(err.message, "URL"));
    assert_null(weir_redis_send(s, NULL, 0, 0, on_reply, &r, &err));
    uv_run(e->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 0);
    weir_engine_free(e);
}

static void test_eval_falls_back_to_eval_on_noscript(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char script[] = "return ARGV[1] .. ':' .. KEYS[1]";
    static const char *const keys[] = {"k1"};
    static const size_t key_lens[] = {2};
    static const char *const args[] = {"a1"};
    static const size_t arg_lens[] = {2};
    weir_redis_error err;
    rec r;
    int round;
    (void)unused;
    call(e, s, &r, 0, 2, "SCRIPT", "FLUSH");
    assert_false(r.failed);
    for (round = 0; round < 2; round++) {   /* NOSCRIPT -> EVAL, then EVALSHA hits */
        memset(&r, 0, sizeof r);
        r.expect = 1;
        assert_non_null(weir_redis_eval(s, script, sizeof script - 1, 1, keys, key_lens, 1, args,
                                        arg_lens, 0, on_reply, &r, &err));
        run_until(e, &r.done);
        assert_false(r.failed);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.types[0], REDIS_REPLY_STRING);
        assert_string_equal(r.strs[0], "a1:k1");
    }
    weir_engine_free(e);
}

static void test_cancelled_reply_is_discarded_in_order(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const get[] = {"GET", "unit:cancel"};
    static const size_t get_len[] = {3, 11};
    weir_redis_error err;
    weir_redis_req *req;
    rec cancelled, r;
    (void)unused;
    call(e, s, &r, 0, 3, "SET", "unit:cancel", "first");
    memset(&cancelled, 0, sizeof cancelled);
    cancelled.expect = 1;
    req = weir_redis_command(s, 2, get, get_len, 1000, on_reply, &cancelled, &err);
    assert_non_null(req);
    weir_redis_cancel(req);
    /* the next command gets its own reply, not the cancelled one's */
    call(e, s, &r, 0, 2, "ECHO", "second");
    assert_false(r.failed);
    assert_string_equal(r.strs[0], "second");
    assert_int_equal(cancelled.calls, 0);
    weir_engine_free(e);
}

static void test_cancelled_blocking_command_closes_its_connection(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const blpop[] = {"BLPOP", "unit:bq", "0"};
    static const size_t blpop_len[] = {5, 7, 1};
    weir_redis_error err;
    weir_redis_req *req;
    weir_redis_stats st;
    rec blocked, r;
    (void)unused;
    call(e, s, &r, 0, 2, "DEL", "unit:bq");
    memset(&blocked, 0, sizeof blocked);
    blocked.expect = 1;
    req = weir_redis_command(s, 3, blpop, blpop_len, 0, on_reply, &blocked, &err);
    assert_non_null(req);
    wait_blocked(e, s, 1);
    weir_redis_cancel(req);
    wait_blocked(e, s, 0);
    call(e, s, &r, 0, 3, "RPUSH", "unit:bq", "kept");
    call(e, s, &r, 0, 2, "LLEN", "unit:bq");
    assert_int_equal(r.integers[0], 1);
    assert_int_equal(blocked.calls, 0);
    weir_redis_server_stats(s, &st);
    assert_int_equal(st.blocking_busy, 0);
    weir_engine_free(e);
}

static void test_restart_fails_in_flight_then_reconnects(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const blpop[] = {"BLPOP", "unit:restart", "0"};
    static const size_t blpop_len[] = {5, 12, 1};
    weir_redis_error err;
    weir_redis_stats before, after;
    rec blocked, r;
    int attempt, ok = 0;
    (void)unused;
    call(e, s, &r, 0, 1, "PING");
    assert_string_equal(r.strs[0], "PONG");
    memset(&blocked, 0, sizeof blocked);
    blocked.expect = 1;
    assert_non_null(weir_redis_command(s, 3, blpop, blpop_len, 0, on_reply, &blocked, &err));
    wait_blocked(e, s, 1);
    weir_redis_server_stats(s, &before);
    /* the server goes away and comes back on the same port while the
     * command is in flight (the loop is not running meanwhile) */
    assert_int_equal(harness_run("restart"), 0);
    run_until(e, &blocked.done);
    assert_true(blocked.failed);
    assert_string_equal(blocked.err.kind, "connection");
    assert_true(blocked.err.retryable);
    /* later commands succeed: the first may still find the old socket,
     * whose EOF the loop has not read yet; it fails retryably and the
     * next one reconnects at once (an established connection that drops
     * is retried without backoff) */
    for (attempt = 0; attempt < 5 && !ok; attempt++) {
        call(e, s, &r, 0, 1, "PING");
        if (!r.failed) ok = strcmp(r.strs[0], "PONG") == 0;
        else assert_true(r.err.retryable);
    }
    assert_true(ok);
    weir_redis_server_stats(s, &after);
    assert_true(after.connects > before.connects);
    assert_true(after.drops > before.drops);
    assert_int_equal(after.blocking_busy, 0);
    weir_engine_free(e);
}

static void test_unreachable_server_backs_off(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, "redis://127.0.0.1:1");
    static const char *const ping[] = {"PING"};
    static const size_t ping_len[] = {4};
    weir_redis_error err;
    weir_redis_stats st;
    rec r;
    (void)unused;
    call(e, s, &r, 0, 1, "PING");
    assert_true(r.failed);
    assert_string_equal(r.err.kind, "connection");
    assert_true(r.err.retryable);
    /* right away: refused without a connection attempt */
    memset(&r, 0, sizeof r);
    assert_null(weir_redis_command(s, 1, ping, ping_len, 0, on_reply, &r, &err));
    assert_string_equal(err.kind, "connection");
    assert_non_null(strstr(err.message, "next attempt in"));
    weir_redis_server_stats(s, &st);
    assert_int_equal(st.connect_failures, 1);
    assert_int_equal(st.connects, 0);
    weir_engine_free(e);
}

static void test_command_timeout_resets_the_connection(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    weir_redis_stats st;
    rec r;
    int attempt, ok = 0;
    (void)unused;
    call(e, s, &r, 20, 3, "DEBUG", "SLEEP", "0.5");   /* 25 times the timeout */
    assert_true(r.failed);
    assert_string_equal(r.err.kind, "timeout");
    assert_true(r.err.retryable);
    for (attempt = 0; attempt < 5 && !ok; attempt++) {
        call(e, s, &r, 0, 1, "PING");
        ok = !r.failed;
    }
    assert_true(ok);
    weir_redis_server_stats(s, &st);
    assert_int_equal(st.drops, 1);
    weir_engine_free(e);
}

static void test_engine_close_fails_what_is_in_flight(void **unused) {
    weir_engine *e = engine();
    weir_redis_server *s = server(e, redis_url);
    static const char *const blpop[] = {"BLPOP", "unit:never", "0"};
    static const size_t blpop_len[] = {5, 10, 1};
    static const char *const ping[] = {"PING"};
    static const size_t ping_len[] = {4};
    weir_redis_error err;
    rec blocked, pending;
    (void)unused;
    memset(&blocked, 0, sizeof blocked);
    memset(&pending, 0, sizeof pending);
    blocked.expect = pending.expect = 1;
    assert_non_null(weir_redis_command(s, 3, blpop, blpop_len, 0, on_reply, &blocked, &err));
    assert_non_null(weir_redis_command(s, 1, ping, ping_len, 1000, on_reply, &pending, &err));
    weir_engine_free(e);
    assert_int_equal(blocked.calls, 1);
    assert_string_equal(blocked.err.kind, "closed");
    assert_int_equal(pending.calls, 1);
    assert_string_equal(pending.err.kind, "closed");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parsing),
        cmocka_unit_test(test_batch_replies_in_order_binary_safe),
        cmocka_unit_test(test_refused_commands_never_call_back),
        cmocka_unit_test(test_eval_falls_back_to_eval_on_noscript),
        cmocka_unit_test(test_cancelled_reply_is_discarded_in_order),
        cmocka_unit_test(test_cancelled_blocking_command_closes_its_connection),
        cmocka_unit_test(test_restart_fails_in_flight_then_reconnects),
        cmocka_unit_test(test_unreachable_server_backs_off),
        cmocka_unit_test(test_command_timeout_resets_the_connection),
        cmocka_unit_test(test_engine_close_fails_what_is_in_flight),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
