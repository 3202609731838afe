/*
 * test_http.c -- C-level checks of weir.http that a spec cannot make:
 * the engine freed with requests in flight, a job killed mid-request,
 * per-engine resources released, no poll handle left behind.  Leaks and
 * use-after-free show under the ASan build (WEIR_SANITIZE=ON).
 *
 * Needs the HTTP mock (run through tests/mocks/with_mocks.sh); the mock's
 * /barrier and /inflight endpoints tell from the server side how many
 * requests are in flight and how many clients hung up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <lauxlib.h>
#include <uv.h>

#include "weir_engine.h"
#include "weir_http.h"
#include "weir_job.h"
#include "weir_state.h"

static const char *mock_url(void) {
    const char *u = getenv("WEIR_MOCK_URL");
    if (!u) fail_msg("WEIR_MOCK_URL is not set: run through with_mocks.sh");
    return u;
}

/* ---- a blocking side channel to the mock (plain libcurl easy) ---- */

typedef struct {
    char data[4096];
    size_t len;
} test_buf;

static size_t test_buf_write(char *p, size_t size, size_t n, void *ud) {
    test_buf *b = ud;
    size_t len = size * n, room = sizeof b->data - 1 - b->len;
    if (len > room) len = room;
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return size * n;
}

/* The integer after "name": in the mock's JSON for /inflight?group=G. */
static long mock_stat(const char *group, const char *name) {
    char url[512], key[64];
    test_buf b = {{0}, 0};
    const char *at;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof url, "%s/inflight?group=%s", mock_url(), group);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, test_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    snprintf(key, sizeof key, "\"%s\": ", name);
    at = strstr(b.data, key);
    if (!at) fail_msg("no %s in %s", name, b.data);
    return strtol(at + strlen(key), NULL, 10);
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Turns the loop without blocking until the mock reports `want` of
 * `name` for group (bounded: ~20 s). */
static void spin_until(weir_engine *e, const char *group, const char *name,
                       long want) {
    int i;
    for (i = 0; i < 2000; i++) {
        if (e) uv_run(e->loop, UV_RUN_NOWAIT);
        if (mock_stat(group, name) >= want) return;
        nap_ms(10);
    }
    fail_msg("mock never reported %s >= %ld for %s", name, want, group);
}

static void unique_group(char *out, size_t len, const char *what) {
    static int seq;
    snprintf(out, len, "%s-%ld-%d", what, (long)uv_hrtime(), ++seq);
}

/* ---- running Lua on an engine ---- */

typedef struct {
    int done;
    weir_job_status status;
    char result[512];
} test_outcome;

static void test_on_done(weir_job *job, void *data) {
    test_outcome *o = data;
    o->done = 1;
    o->status = job->status;
    if (job->status == WEIR_JOB_DONE && job->nres > 0 && job->co) {
        const char *s = lua_tostring(job->co, -job->nres);
        snprintf(o->result, sizeof o->result, "%s", s ? s : "(not a string)");
    } else if (job->status == WEIR_JOB_FAILED) {
        snprintf(o->result, sizeof o->result, "%s",
                 job->error ? job->error : "(no error text)");
    }
}

static weir_engine *test_engine(weir_state **st) {
    const char *err = NULL;
    weir_engine *e = weir_engine_new(NULL, NULL, &err);
    if (!e) fail_msg("engine: %s", err);
    *st = weir_state_new(e, "test_http", NULL, 0, &err);
    if (!*st) fail_msg("state: %s", err);
    return e;
}

/* Starts src as a job with (mock_url, arg) as its `...`. */
static weir_job *test_start(weir_state *st, const char *src, const char *arg,
                            test_outcome *o) {
    weir_job *job = weir_job_new(st);
    assert_non_null(job);
    if (weir_state_load_buffer(st, job->co, src, strlen(src), "=test") != LUA_OK)
        fail_msg("load: %s", lua_tostring(job->co, -1));
    lua_pushstring(job->co, mock_url());
    lua_pushstring(job->co, arg ? arg : "");
    weir_job_start(job, 2, test_on_done, o);
    return job;
}

static const char hang_src[] =
    "local http = require 'weir.http'\n"
    "local task = require 'weir.task'\n"
    "local base, group = ...\n"
    "local function hang()\n"
    "  return http.request{url = base .. '/barrier', timeout = 60,\n"
    "    query = {group = group, n = 100000, timeout_ms = 30000}}\n"
    "end\n"
    "for i = 1, 20 do task.spawn(hang) end\n"
    "hang()\n"
    "return 'not reached'\n";

/* The engine goes away with 21 requests in flight: every op is cancelled
 * and freed, every connection closed (the mock sees 21 hang-ups). */
static void test_engine_free_with_requests_in_flight(void **unused) {
    char group[64];
    weir_state *st;
    weir_engine *e = test_engine(&st);
    test_outcome o = {0};
    weir_job *job;
    (void)unused;
    unique_group(group, sizeof group, "free");
    job = test_start(st, hang_src, group, &o);
    spin_until(e, group, "current", 21);
    assert_int_equal(o.done, 0);
    weir_job_release(job);
    weir_engine_free(e);
    spin_until(NULL, group, "abandoned", 21);
}

static const char echo_src[] =
    "local http = require 'weir.http'\n"
    "local base, tag = ...\n"
    "local res = assert(http.request{url = base .. '/echo', query = {tag = tag}})\n"
    "return res:json().query.tag\n";

/* A job killed while waiting on a request fails with the kill reason;
 * the connection is closed and the engine keeps serving requests. */
static void test_kill_mid_request(void **unused) {
    char group[64];
    weir_state *st;
    weir_engine *e = test_engine(&st);
    test_outcome o = {0}, o2 = {0};
    weir_job *job, *job2;
    (void)unused;
    unique_group(group, sizeof group, "kill");
    job = test_start(st,
        "local http = require 'weir.http'\n"
        "local base, group = ...\n"
        "return http.request{url = base .. '/barrier',\n"
        "  query = {group = group, n = 2, timeout_ms = 30000}}\n",
        group, &o);
    spin_until(e, group, "current", 1);
    assert_int_equal(job->status, WEIR_JOB_WAITING);
    weir_job_kill(job, "killed by the test");
    weir_engine_run(e);     /* returns: nothing is pending any more */
    assert_int_equal(o.done, 1);
    assert_int_equal(o.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(o.result, "killed by the test"));
    spin_until(NULL, group, "abandoned", 1);

    job2 = test_start(st, echo_src, "after-kill", &o2);
    weir_engine_run(e);
    assert_int_equal(o2.status, WEIR_JOB_DONE);
    assert_string_equal(o2.result, "after-kill");
    weir_job_release(job);
    weir_job_release(job2);
    weir_engine_free(e);
}

static void count_polls(uv_handle_t *h, void *arg) {
    if (h->type == UV_POLL && !uv_is_closing(h)) ++*(int *)arg;
}

/* Sequential and concurrent requests leave no uv_poll_t behind once
 * they are done (idle keep-alive connections are not watched). */
static void test_no_poll_handles_left(void **unused) {
    weir_state *st;
    weir_engine *e = test_engine(&st);
    test_outcome o = {0};
    weir_job *job;
    int polls = 0;
    (void)unused;
    job = test_start(st,
        "local http = require 'weir.http'\n"
        "local task = require 'weir.task'\n"
        "local base = ...\n"
        "for i = 1, 50 do assert(http.request{url = base .. '/echo'}) end\n"
        "local hs = {}\n"
        "for i = 1, 50 do hs[i] = task.spawn(function()\n"
        "  return assert(http.request{url = base .. '/bytes?n=100000'}).status\n"
        "end) end\n"
        "for _, r in ipairs(task.all(hs)) do assert(r.ok and r.value == 200) end\n"
        "local _, err = http.request{url = base .. '/drop'}\n"
        "return err.kind\n",
        NULL, &o);
    weir_engine_run(e);
    assert_int_equal(o.status, WEIR_JOB_DONE);
    assert_string_equal(o.result, "network");
    uv_walk(e->loop, count_polls, &polls);
    assert_int_equal(polls, 0);
    weir_job_release(job);
    weir_engine_free(e);
}

/* weir_http_engine_init/close on a bare engine: every handle it opened
 * is closed by one more loop run, so the loop closes cleanly. */
static void test_engine_init_close(void **unused) {
    uv_loop_t loop;
    weir_engine e;
    (void)unused;
    memset(&e, 0, sizeof e);
    assert_int_equal(uv_loop_init(&loop), 0);
    e.loop = &loop;
    weir_config_defaults(&e.cfg);
    assert_int_equal(weir_http_engine_init(&e), 0);
    assert_non_null(e.http);
    weir_http_engine_close(&e);
    assert_null(e.http);
    weir_http_engine_close(&e);     /* twice is harmless */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_init_close),
        cmocka_unit_test(test_no_poll_handles_left),
        cmocka_unit_test(test_kill_mid_request),
        cmocka_unit_test(test_engine_free_with_requests_in_flight),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
