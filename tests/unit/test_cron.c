/*
 * test_cron.c -- durations, cron parsing (with error positions) and
 * next-fire computation in UTC and in IANA zones across DST changes.
 * Expected instants were computed independently with Python's zoneinfo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "weir_recipe.h"

/* ms since the epoch of a UTC wall time */
static int64_t utc(int y, int mo, int d, int h, int mi) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm) * 1000;
}

static weir_cron parse_ok(const char *expr) {
    weir_cron c;
    char err[256];
    if (weir_cron_parse(expr, &c, err, sizeof err) != 0)
        fail_msg("cron '%s' should parse, got: %s", expr, err);
    return c;
}

static void assert_parse_error(const char *expr, const char *want) {
    weir_cron c;
    char err[256];
    assert_int_equal(weir_cron_parse(expr, &c, err, sizeof err), -1);
    if (strcmp(err, want) != 0)
        fail_msg("cron '%s': error '%s', expected '%s'", expr, err, want);
}

static uint64_t bits(const int *v, int n) {
    uint64_t b = 0;
    int i;
    for (i = 0; i < n; i++) b |= (uint64_t)1 << v[i];
    return b;
}

/* ---- durations ---- */

static void test_duration_forms(void **unused) {
    static const struct { const char *s; double want; } ok[] = {
        {"30s", 30}, {"500ms", 0.5}, {"5m", 300}, {"2h", 7200}, {"1d", 86400},
        {"90", 90}, {"0", 0}, {"0s", 0}, {"1.5h", 5400}, {"1h30m", 5400},
        {"2d12h", 216000}, {"250ms", 0.25}, {"0.5", 0.5}, {"1m30s", 90}};
    size_t i;
    (void)unused;
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double v = -1;
        if (weir_duration_parse(ok[i].s, &v) != 0) fail_msg("'%s' should parse", ok[i].s);
        if (v != ok[i].want) fail_msg("'%s' = %g, expected %g", ok[i].s, v, ok[i].want);
    }
}

static void test_duration_errors(void **unused) {
    static const char *const bad[] = {
        "", "abc", "-5s", "5x", "5 s", " 5s", "5s ", "1e3", "inf", "nan", "0x10", "s",
        ".", "5m5", "1.2.3s", "+5s", "5S", "1000000000d", "1h-30m"};
    size_t i;
    double v = 42;
    (void)unused;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (weir_duration_parse(bad[i], &v) != -1) fail_msg("'%s' should be rejected", bad[i]);
    assert_int_equal(weir_duration_parse(NULL, &v), -1);
    assert_true(v == 42);      /* untouched on failure */
}

/* ---- parsing ---- */

static void test_parse_star(void **unused) {
    weir_cron c = parse_ok("* * * * *");
    (void)unused;
    assert_true(c.minutes == ((uint64_t)1 << 60) - 1);
    assert_int_equal(c.hours, (1u << 24) - 1);
    assert_int_equal(c.mdays, 0xfffffffeu);
    assert_int_equal(c.months, 0x1ffe);
    assert_int_equal(c.wdays, 0x7f);
    assert_true(c.mday_star);
    assert_true(c.wday_star);
}

static void test_parse_field_forms(void **unused) {
    static const int q[] = {0, 15, 30, 45}, r[] = {0, 5, 10}, h[] = {1, 2, 3, 22},
                     s[] = {5, 25, 45}, wd[] = {1, 2, 3, 4, 5};
    weir_cron c;
    (void)unused;
    c = parse_ok("*/15 * * * *");
    assert_true(c.minutes == bits(q, 4));
    c = parse_ok("0-10/5 1,2-3,22 1-5 JAN-MAR mon-fri");
    assert_true(c.minutes == bits(r, 3));
    assert_true(c.hours == bits(h, 4));
    assert_int_equal(c.mdays, 0x3e);
    assert_int_equal(c.months, 0xe);
    assert_int_equal(c.wdays, bits(wd, 5));
    assert_false(c.mday_star);
    assert_false(c.wday_star);
    c = parse_ok("5/20 * * * *");               /* N/S = N-max/S */
    assert_true(c.minutes == bits(s, 3));
    c = parse_ok("0 0 * * 7");                  /* 7 is Sunday */
    assert_int_equal(c.wdays, 1);
    c = parse_ok("0 0 * * 5-7");
    assert_int_equal(c.wdays, 0x61);
    c = parse_ok("0 0 * * Sun,sat");
    assert_int_equal(c.wdays, 0x41);
    c = parse_ok("0 0 * dec *");
    assert_int_equal(c.months, 1 << 12);
    c = parse_ok("  0\t0  *  *  */2  ");        /* blanks anywhere around fields */
    assert_int_equal(c.wdays, 0x55);
    assert_true(c.wday_star);                   /* "*" prefix: unrestricted for the OR rule */
    c = parse_ok("59 23 31 12 6");
    assert_true(c.minutes == (uint64_t)1 << 59);
    assert_int_equal(c.hours, 1u << 23);
    assert_int_equal(c.mdays, 1u << 31);
}

static void test_parse_aliases(void **unused) {
    static const struct { const char *alias, *expr; } a[] = {
        {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"}};
    size_t i;
    (void)unused;
    for (i = 0; i < sizeof a / sizeof a[0]; i++) {
        weir_cron x = parse_ok(a[i].alias), y = parse_ok(a[i].expr);
        assert_memory_equal(&x, &y, sizeof x);
    }
}

static void test_parse_errors_with_positions(void **unused) {
    (void)unused;
    assert_parse_error("", "empty cron expression (column 1)");
    assert_parse_error("* * * *", "expected 5 fields (minute hour day-of-month month "
                                  "day-of-week), got 4 (column 8)");
    assert_parse_error("* * * * * *", "too many fields: expected 5 (minute hour day-of-month "
                                      "month day-of-week) (column 11)");
    assert_parse_error("0 25 * * *", "hour: 25 is out of range 0-23 (column 3)");
    assert_parse_error("60 * * * *", "minute: 60 is out of range 0-59 (column 1)");
    assert_parse_error("0 0 0 * *", "day-of-month: 0 is out of range 1-31 (column 5)");
    assert_parse_error("0 0 * 13 *", "month: 13 is out of range 1-12 (column 7)");
    assert_parse_error("0 0 * * 8", "day-of-week: 8 is out of range 0-7 (column 9)");
    assert_parse_error("*/0 * * * *", "minute: step 0 is out of range 1-59 (column 3)");
    assert_parse_error("*/ * * * *", "minute: '/' must be followed by a step number (column 3)");
    assert_parse_error("0 5-2 * * *", "hour: range 5-2 goes backwards (column 5)");
    assert_parse_error("0 0 * FOO *", "month: unknown name 'FOO' (use JAN-DEC) (column 7)");
    assert_parse_error("0 0 * * funday", "day-of-week: unknown name 'funday' (use SUN-SAT) "
                                         "(column 9)");
    assert_parse_error("a * * * *", "minute: unknown name 'a' (numbers only here) (column 1)");
    assert_parse_error("1,,2 * * * *", "minute: empty list item (column 3)");
    assert_parse_error("1- * * * *", "minute: a value is missing (column 3)");
    assert_parse_error("1x * * * *", "minute: unexpected 'x' in '1x' (column 2)");
    assert_parse_error("0 0 30 2 *", "day-of-month and month never match (such as 30 "
                                     "February) (column 5)");
    assert_parse_error("0 0 31 4,6,9,11 *", "day-of-month and month never match (such as 30 "
                                            "February) (column 5)");
    assert_parse_error("@reboot", "unknown alias '@reboot' (known: @hourly @daily @midnight "
                                  "@weekly @monthly @yearly @annually) (column 1)");
    assert_parse_error("@daily 5", "nothing may follow @daily (column 8)");
    /* the OR rule makes these fire on the weekday: valid */
    parse_ok("0 0 31 4 1");
    parse_ok("0 0 29 2 *");
}

/* ---- next fire time ---- */

static void assert_next(const char *expr, const char *tz, int64_t after, int64_t want) {
    weir_cron c = parse_ok(expr);
    int64_t got = weir_cron_next(&c, tz, after);
    if (got != want) {
        time_t g = (time_t)(got / 1000), w = (time_t)(want / 1000);
        char gs[64] = "-1", ws[64];
        struct tm tm;
        if (got >= 0) strftime(gs, sizeof gs, "%Y-%m-%d %H:%M:%SZ", gmtime_r(&g, &tm));
        strftime(ws, sizeof ws, "%Y-%m-%d %H:%M:%SZ", gmtime_r(&w, &tm));
        fail_msg("next('%s', %s) = %s, expected %s", expr, tz ? tz : "UTC", gs, ws);
    }
}

static void test_next_utc_basics(void **unused) {
    (void)unused;
    assert_next("*/15 * * * *", NULL, utc(2026, 5, 4, 10, 7) + 30000, utc(2026, 5, 4, 10, 15));
    /* strictly after: a fire time equal to `after` is not returned */
    assert_next("*/15 * * * *", NULL, utc(2026, 5, 4, 10, 15), utc(2026, 5, 4, 10, 30));
    assert_next("*/15 * * * *", NULL, utc(2026, 5, 4, 10, 15) - 1, utc(2026, 5, 4, 10, 15));
    assert_next("*/15 * * * *", NULL, utc(2026, 5, 4, 23, 50), utc(2026, 5, 5, 0, 0));
    assert_next("* * * * *", NULL, utc(2026, 5, 4, 10, 0) + 999, utc(2026, 5, 4, 10, 1));
    assert_next("0 9 * * *", "UTC", utc(2026, 5, 4, 9, 0), utc(2026, 5, 5, 9, 0));
    assert_next("0 9 * * *", "Etc/UTC", utc(2026, 5, 4, 8, 59), utc(2026, 5, 4, 9, 0));
}

static void test_next_month_and_year_ends(void **unused) {
    (void)unused;
    assert_next("0 0 1 * *", NULL, utc(2026, 1, 31, 12, 0), utc(2026, 2, 1, 0, 0));
    assert_next("0 0 31 * *", NULL, utc(2026, 1, 31, 0, 0), utc(2026, 3, 31, 0, 0));
    assert_next("30 23 31 12 *", NULL, utc(2026, 12, 31, 23, 30), utc(2027, 12, 31, 23, 30));
    assert_next("0 0 * * *", NULL, utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 0, 0));
    assert_next("0 0 1 jan *", NULL, utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0));
}

static void test_next_feb_29(void **unused) {
    weir_cron c = parse_ok("0 12 29 2 *");
    (void)unused;
    assert_next("0 12 29 2 *", NULL, utc(2026, 3, 1, 0, 0), utc(2028, 2, 29, 12, 0));
    assert_next("0 12 29 2 *", NULL, utc(2028, 2, 29, 12, 0), utc(2032, 2, 29, 12, 0));
    /* 2100 is not a leap year: 2096 -> 2104 is beyond the 5-year horizon */
    assert_int_equal(weir_cron_next(&c, NULL, utc(2096, 3, 1, 0, 0)), -1);
}

static void test_next_day_or_rule(void **unused) {
    (void)unused;
    /* both restricted: the 13th OR a Friday (2026-02-01 is a Sunday) */
    assert_next("0 0 13 * 5", NULL, utc(2026, 2, 1, 0, 0), utc(2026, 2, 6, 0, 0));
    assert_next("0 0 13 * 5", NULL, utc(2026, 2, 6, 0, 0), utc(2026, 2, 13, 0, 0));
    assert_next("0 0 13 * 5", NULL, utc(2026, 2, 13, 0, 0), utc(2026, 2, 20, 0, 0));
    assert_next("0 0 1 * mon", NULL, utc(2026, 1, 2, 0, 0), utc(2026, 1, 5, 0, 0));
    /* one side unrestricted: plain AND */
    assert_next("0 0 13 * *", NULL, utc(2026, 2, 1, 0, 0), utc(2026, 2, 13, 0, 0));
    assert_next("0 0 * * 5", NULL, utc(2026, 2, 1, 0, 0), utc(2026, 2, 6, 0, 0));
    /* "*" + step counts as unrestricted (Vixie cron): odd days that are
     * Mondays in June 2026 are the 1st, 15th, 29th */
    assert_next("0 0 */2 * 1", NULL, utc(2026, 6, 2, 0, 0), utc(2026, 6, 15, 0, 0));
    /* the day-of-month may not exist in this month; Mondays still fire */
    assert_next("0 0 31 4 1", NULL, utc(2026, 4, 1, 0, 0), utc(2026, 4, 6, 0, 0));
}

static void test_next_aliases(void **unused) {
    (void)unused;
    assert_next("@hourly", NULL, utc(2026, 5, 4, 10, 30), utc(2026, 5, 4, 11, 0));
    assert_next("@daily", NULL, utc(2026, 5, 4, 10, 30), utc(2026, 5, 5, 0, 0));
    assert_next("@midnight", NULL, utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0));
    assert_next("@weekly", NULL, utc(2026, 1, 1, 0, 0), utc(2026, 1, 4, 0, 0)); /* Sunday */
    assert_next("@monthly", NULL, utc(2026, 5, 4, 10, 30), utc(2026, 6, 1, 0, 0));
    assert_next("@yearly", NULL, utc(2026, 5, 4, 10, 30), utc(2027, 1, 1, 0, 0));
    assert_next("@annually", NULL, utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0));
}

static void test_next_paris_spring_forward(void **unused) {
    (void)unused;
    /* 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that day */
    assert_next("30 2 * * *", "Europe/Paris", utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30));
    /* the day before, CET (UTC+1) */
    assert_next("30 2 * * *", "Europe/Paris", utc(2026, 3, 27, 12, 0), utc(2026, 3, 28, 1, 30));
    /* hourly: 01:00 CET, then 03:00 CEST (02:00 skipped) */
    assert_next("0 * * * *", "Europe/Paris", utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0));
    /* every 15 minutes: 01:45 CET (00:45Z), then 03:00 CEST (01:00Z) */
    assert_next("*/15 * * * *", "Europe/Paris", utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0));
}

static void test_next_paris_fall_back(void **unused) {
    (void)unused;
    /* 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; fires once,
     * at the first (CEST, 00:30Z) */
    assert_next("30 2 * * *", "Europe/Paris", utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30));
    assert_next("30 2 * * *", "Europe/Paris", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30));
    /* from inside the repeated hour (02:10 CET) the repeat does not fire */
    assert_next("30 2 * * *", "Europe/Paris", utc(2026, 10, 25, 1, 10), utc(2026, 10, 26, 1, 30));
    /* hourly: 02:00 CEST (00:00Z), then 03:00 CET (02:00Z) */
    assert_next("0 * * * *", "Europe/Paris", utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 0));
    assert_next("0 * * * *", "Europe/Paris", utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0));
    /* after the change, CET (UTC+1) */
    assert_next("0 9 * * *", "Europe/Paris", utc(2026, 10, 25, 12, 0), utc(2026, 10, 26, 8, 0));
}

static void test_next_new_york(void **unused) {
    (void)unused;
    /* 2026-07-03 is a Friday: next weekday 09:00 EDT is Monday 13:00Z */
    assert_next("0 9 * * 1-5", "America/New_York", utc(2026, 7, 3, 14, 0), utc(2026, 7, 6, 13, 0));
    /* spring forward 2026-03-08 02:00 EST -> 03:00 EDT */
    assert_next("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 6, 30));
    /* fall back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 fires once */
    assert_next("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 5, 30));
    assert_next("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30));
    /* the date line: 23:30 on 2026-12-31 New York is 04:30Z on 2027-01-01 */
    assert_next("30 23 31 12 *", "America/New_York", utc(2026, 6, 1, 0, 0), utc(2027, 1, 1, 4, 30));
}

static void test_next_restores_tz(void **unused) {
    weir_cron c = parse_ok("0 9 * * *");
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    (void)unused;
    setenv("TZ", "Asia/Tokyo", 1);
    tzset();
    assert_true(weir_cron_next(&c, "Europe/Paris", utc(2026, 5, 4, 0, 0)) == utc(2026, 5, 4, 7, 0));
    assert_string_equal(getenv("TZ"), "Asia/Tokyo");
    unsetenv("TZ");
    tzset();
    assert_true(weir_cron_next(&c, "America/New_York", utc(2026, 5, 4, 0, 0)) ==
                utc(2026, 5, 4, 13, 0));
    assert_null(getenv("TZ"));
    if (saved) setenv("TZ", saved, 1);
    tzset();
    free(saved);
}

static void test_tz_validation(void **unused) {
    weir_cron c = parse_ok("0 9 * * *");
    (void)unused;
    assert_true(weir_cron_tz_valid("Europe/Paris"));
    assert_true(weir_cron_tz_valid("America/New_York"));
    assert_true(weir_cron_tz_valid("UTC"));
    assert_false(weir_cron_tz_valid("Europe/Pariss"));
    assert_false(weir_cron_tz_valid("Europe"));            /* a directory */
    assert_false(weir_cron_tz_valid("zone.tab"));          /* not a TZif file */
    assert_false(weir_cron_tz_valid("../../../etc/passwd"));
    assert_false(weir_cron_tz_valid("/etc/localtime"));
    assert_false(weir_cron_tz_valid("Europe/Paris "));
    assert_false(weir_cron_tz_valid(""));
    /* an unknown zone never silently becomes UTC */
    assert_int_equal(weir_cron_next(&c, "Mars/Olympus", utc(2026, 5, 4, 0, 0)), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_forms),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_parse_star),
        cmocka_unit_test(test_parse_field_forms),
        cmocka_unit_test(test_parse_aliases),
        cmocka_unit_test(test_parse_errors_with_positions),
        cmocka_unit_test(test_next_utc_basics),
        cmocka_unit_test(test_next_month_and_year_ends),
        cmocka_unit_test(test_next_feb_29),
        cmocka_unit_test(test_next_day_or_rule),
        cmocka_unit_test(test_next_aliases),
        cmocka_unit_test(test_next_paris_spring_forward),
        cmocka_unit_test(test_next_paris_fall_back),
        cmocka_unit_test(test_next_new_york),
        cmocka_unit_test(test_next_restores_tz),
        cmocka_unit_test(test_tz_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
