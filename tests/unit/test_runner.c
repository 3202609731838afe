/*
 * test_runner.c -- the backoff schedule (pure function of the policy,
 * the failed attempt and the random draw).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "weir_runner.h"

static void test_exponential_without_jitter(void **unused) {
    weir_retry_policy p = {5, 2.0, 300.0, 0, 0};
    (void)unused;
    assert_true(weir_runner_backoff(&p, 1, 0.7) == 2.0);   /* seed 004: 2 s, then 4 s */
    assert_true(weir_runner_backoff(&p, 2, 0.7) == 4.0);
    assert_true(weir_runner_backoff(&p, 3, 0.0) == 8.0);
}

static void test_cap(void **unused) {
    weir_retry_policy p = {50, 1.0, 60.0, 0, 0};
    (void)unused;
    assert_true(weir_runner_backoff(&p, 7, 0.5) == 60.0);   /* 64 capped */
    assert_true(weir_runner_backoff(&p, 40, 0.5) == 60.0);
}

static void test_full_jitter_bounds(void **unused) {
    weir_retry_policy p = {10, 1.0, 30.0, 1, 0};
    (void)unused;
    /* uniform(base, min(cap, base * 2^(n-1))) */
    assert_true(weir_runner_backoff(&p, 4, 0.0) == 1.0);
    assert_true(weir_runner_backoff(&p, 4, 0.5) == 4.5);
    assert_true(weir_runner_backoff(&p, 4, 0.999999) < 8.0);
    assert_true(weir_runner_backoff(&p, 1, 0.9) == 1.0);       /* first retry: base */
    assert_true(weir_runner_backoff(&p, 9, 0.999999) < 30.0);
}

static void test_defaults_when_unset(void **unused) {
    weir_retry_policy p = {0, 0, 0, 0, 0};
    (void)unused;
    assert_true(weir_runner_backoff(&p, 1, 0.3) == 1.0);
    assert_true(weir_runner_backoff(&p, 20, 0.3) == 300.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exponential_without_jitter),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_full_jitter_bounds),
        cmocka_unit_test(test_defaults_when_unset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
