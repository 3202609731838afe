/*
 * test_core.c -- engine, state and job lifecycle from C: what the CLI and
 * later the scheduler rely on.  Run under ASan in CI: every path here
 * must free what it owns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>

#include "weir_engine.h"
#include "weir_job.h"
#include "weir_log.h"
#include "weir_state.h"

typedef struct {
    int calls;
    weir_job_status status;
    char error[512];
} done_rec;

static void on_done(weir_job *job, void *data) {
    done_rec *d = data;
    d->calls++;
    d->status = job->status;
    snprintf(d->error, sizeof d->error, "%s", job->error ? job->error : "");
}

static weir_engine *new_engine(size_t mem, uint64_t cpu_ms) {
    weir_config cfg;
    const char *err = NULL;
    weir_engine *e;
    weir_config_defaults(&cfg);
    cfg.mem_limit = mem;
    cfg.cpu_limit_ms = cpu_ms;
    e = weir_engine_new(NULL, &cfg, &err);
    assert_non_null(e);
    return e;
}

/* Starts `src` as a job in a new state; returns the job (owner ref). */
static weir_job *start(weir_engine *e, const char *name, const char *src, done_rec *d) {
    const char *err = NULL;
    weir_state *st = weir_state_new(e, name, NULL, 0, &err);
    weir_job *job;
    assert_non_null(st);
    job = weir_job_new(st);
    assert_non_null(job);
    assert_int_equal(weir_state_load_buffer(st, job->co, src, strlen(src), name), LUA_OK);
    weir_job_start(job, 0, on_done, d);
    return job;
}

static void test_job_returns_values(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    weir_job *job = start(e, "=ret", "local t = require 'weir.task'; t.sleep(0.001); return 1, 'two'", &d);
    (void)unused;
    weir_engine_run(e);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, WEIR_JOB_DONE);
    assert_int_equal(job->nres, 2);
    assert_int_equal(lua_tointeger(job->co, -2), 1);
    assert_string_equal(lua_tostring(job->co, -1), "two");
    weir_job_release(job);
    weir_engine_free(e);
}

static void test_error_has_position_and_traceback(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    weir_job *job = start(e, "@script.lua", "local x = nil\nreturn x.field", &d);
    (void)unused;
    weir_engine_run(e);
    assert_int_equal(d.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(d.error, "script.lua:2:"));
    assert_non_null(strstr(d.error, "stack traceback"));
    weir_job_release(job);
    weir_engine_free(e);
}

/* A job parked on a long sleep is cancelled when the engine is freed:
 * the timer is closed and the op freed (ASan would flag a leak). */
static void test_free_engine_with_pending_op(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    weir_job *job = start(e, "=sleepy", "require('weir.task').sleep(3600)", &d);
    (void)unused;
    uv_run(e->loop, UV_RUN_NOWAIT);           /* first resume: parks on the timer */
    assert_int_equal(job->status, WEIR_JOB_WAITING);
    assert_non_null(job->op);
    weir_engine_free(e);                      /* kills the job: on_done runs */
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(d.error, "closed"));
    weir_job_release(job);                    /* detached job, freed last */
}

static void test_kill_waiting_job(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    weir_job *job = start(e, "=sleepy", "require('weir.task').sleep(3600)", &d);
    (void)unused;
    uv_run(e->loop, UV_RUN_NOWAIT);
    weir_job_kill(job, "job timeout after 1s");
    assert_int_equal(d.calls, 1);
    assert_string_equal(d.error, "job timeout after 1s");
    assert_null(job->op);
    weir_engine_run(e);                       /* nothing left: returns */
    weir_job_release(job);
    weir_engine_free(e);
}

/* The CPU cap kills a busy loop in one state while a job in another
 * state keeps being served. */
static void test_cpu_cap_isolates_jobs(void **unused) {
    weir_engine *e = new_engine(0, 200);
    done_rec bad = {0}, good = {0};
    weir_job *j1 = start(e, "@busy.lua", "while true do pcall(function() while true do end end) end", &bad);
    weir_job *j2 = start(e, "=good",
        "local t = require 'weir.task'; local n = 0\n"
        "for i = 1, 20 do t.sleep(0.001); n = n + i end\nreturn n", &good);
    (void)unused;
    weir_engine_run(e);
    assert_int_equal(bad.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(bad.error, "CPU limit"));
    assert_non_null(strstr(bad.error, "busy.lua:1"));
    assert_int_equal(good.status, WEIR_JOB_DONE);
    assert_int_equal(lua_tointeger(j2->co, -1), 210);
    weir_job_release(j1);
    weir_job_release(j2);
    weir_engine_free(e);
}

static void test_memory_cap_holds(void **unused) {
    weir_engine *e = new_engine(16u << 20, 0);
    done_rec d = {0};
    weir_job *job = start(e, "@bomb.lua", "local t = {}\nwhile true do t[#t+1] = ('x'):rep(4096) .. #t end", &d);
    weir_state *st = job->st;
    (void)unused;
    weir_engine_run(e);
    assert_int_equal(d.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(d.error, "memory limit"));
    assert_true(st->mem_peak <= st->mem_limit);
    weir_job_release(job);
    weir_engine_free(e);
}

static void test_garbage_yield_fails_job(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    weir_job *job = start(e, "=y", "coroutine.yield(123)", &d);
    (void)unused;
    weir_engine_run(e);
    assert_int_equal(d.status, WEIR_JOB_FAILED);
    assert_non_null(strstr(d.error, "yield outside a coroutine"));
    weir_job_release(job);
    weir_engine_free(e);
}

/* __close variables of a killed job still run (resources released). */
static void test_kill_runs_close_handlers(void **unused) {
    weir_engine *e = new_engine(0, 0);
    done_rec d = {0};
    const char *err = NULL;
    const char *src =
        "closed = false\n"
        "local guard <close> = setmetatable({}, {__close = function() closed = true end})\n"
        "require('weir.task').sleep(3600)";
    weir_state *st = weir_state_new(e, "closer", NULL, 0, &err);
    weir_job *job = weir_job_new(st);
    int env_ref;
    (void)unused;
    assert_int_equal(weir_state_load_buffer(st, job->co, src, strlen(src), "=closer"), LUA_OK);
    lua_getupvalue(job->co, -1, 1);              /* the chunk's env */
    env_ref = luaL_ref(job->co, LUA_REGISTRYINDEX);
    weir_job_start(job, 0, on_done, &d);
    uv_run(e->loop, UV_RUN_NOWAIT);
    assert_int_equal(job->status, WEIR_JOB_WAITING);
    weir_job_kill(job, "stop");
    assert_int_equal(d.status, WEIR_JOB_FAILED);
    lua_rawgeti(st->L, LUA_REGISTRYINDEX, env_ref);
    lua_getfield(st->L, -1, "closed");
    assert_true(lua_toboolean(st->L, -1));
    lua_pop(st->L, 2);
    weir_job_release(job);
    weir_engine_free(e);
}

static void test_redaction(void **unused) {
    weir_log *lg = weir_log_new();
    const char *secret = "p\"a$$w0rd";
    const char *line = "{\"msg\":\"token p\\\"a$$w0rd and p\"a$$w0rd\"}";
    size_t len;
    char *out;
    (void)unused;
    assert_int_equal(weir_log_add_secret(lg, "abc", 3), -1);   /* too short */
    assert_int_equal(weir_log_add_secret(lg, secret, strlen(secret)), 0);
    out = weir_log_redact(lg, line, strlen(line), &len);
    assert_non_null(out);
    assert_null(strstr(out, "w0rd"));
    assert_non_null(strstr(out, "[REDACTED]"));
    free(out);
    weir_log_free(lg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_returns_values),
        cmocka_unit_test(test_error_has_position_and_traceback),
        cmocka_unit_test(test_free_engine_with_pending_op),
        cmocka_unit_test(test_kill_waiting_job),
        cmocka_unit_test(test_cpu_cap_isolates_jobs),
        cmocka_unit_test(test_memory_cap_holds),
        cmocka_unit_test(test_garbage_yield_fails_job),
        cmocka_unit_test(test_kill_runs_close_handlers),
        cmocka_unit_test(test_redaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
