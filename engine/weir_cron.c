/*
 * weir_cron.c -- durations, cron expressions and their next fire time.
 *
 * Cron semantics follow Vixie cron (the one Debian ships), see crontab(5):
 *   - 5 fields: minute hour day-of-month month day-of-week;
 *   - `*`, `N`, `A-B`, `A-B/S`, `* /S` (no space), `N/S` (= N-max/S) and
 *     comma lists; month and weekday names (JAN, MON) in any case;
 *     weekday 7 is Sunday as well as 0;
 *   - when both day fields are restricted (neither starts with `*`), a
 *     day matches if EITHER matches; otherwise both must.
 *
 * Next fire time: we walk the wall clock of the zone (pure calendar
 * arithmetic through timegm/gmtime_r, skipping whole months, days and
 * hours that cannot match) and turn each matching wall time into UTC.
 * A wall time that does not exist (spring forward) is skipped; one that
 * exists twice (fall back) fires once, at its first occurrence.
 *
 * Time zones: C has no "localtime in zone X" call, so the conversion sets
 * TZ, calls tzset/localtime_r, and restores the previous TZ before
 * returning.  That is safe because the engine runs everything on its
 * loop thread; do not call weir_cron_next from another thread while
 * something else uses local time.  UTC needs no switch at all.
 */
#include "weir_recipe.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- durations ---- */

/* 100 years: anything longer is a typo, and the value still fits in
 * int64 milliseconds with room to spare. */
#define WEIR_DURATION_MAX_S (100.0 * 365.25 * 86400.0)

/* Reads "12" or "1.5" at *p; advances *p.  -1 when no digits. */
static int weir_duration_number(const char **p, double *out) {
    const char *s = *p, *start = s;
    char buf[64];
    size_t n;
    while (isdigit((unsigned char)*s)) s++;
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) s++;
    }
    n = (size_t)(s - start);
    /* strtod alone would also take "inf", "0x10", "1e9", signs, spaces */
    if (n == 0 || (n == 1 && *start == '.') || n >= sizeof buf) return -1;
    memcpy(buf, start, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    *p = s;
    return 0;
}

/* Unit at *p in seconds; advances *p.  0 when there is none. */
static double weir_duration_unit(const char **p) {
    const char *s = *p;
    if (s[0] == 'm' && s[1] == 's') { *p = s + 2; return 0.001; }
    switch (*s) {
    case 's': *p = s + 1; return 1.0;
    case 'm': *p = s + 1; return 60.0;
    case 'h': *p = s + 1; return 3600.0;
    case 'd': *p = s + 1; return 86400.0;
    default: return 0.0;
    }
}

int weir_duration_parse(const char *s, double *seconds) {
    double total = 0.0;
    int parts = 0;
    if (!s || !*s) return -1;
    while (*s) {
        double v, unit;
        if (weir_duration_number(&s, &v) != 0) return -1;
        unit = weir_duration_unit(&s);
        if (unit == 0.0) {
            /* a bare number of seconds, only on its own: "90" */
            if (*s || parts) return -1;
            unit = 1.0;
        }
        total += v * unit;
        parts++;
    }
    if (!(total <= WEIR_DURATION_MAX_S)) return -1;
    *seconds = total;
    return 0;
}

/* ---- cron parsing ---- */

typedef struct weir_cron_field {
    const char *name;
    int min, max;
    const char *const *names;   /* names[i] stands for min + i */
} weir_cron_field;

static const char *const weir_cron_month_names[] = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const weir_cron_wday_names[] = {
    "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const weir_cron_field weir_cron_fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, weir_cron_month_names},
    {"day-of-week", 0, 7, weir_cron_wday_names},
};

static const struct {
    const char *alias;
    const char *expr;
} weir_cron_aliases[] = {
    {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"}, {NULL, NULL}};

typedef struct weir_cron_parser {
    const char *expr;           /* whole expression, for columns */
    char *err;
    size_t errlen;
} weir_cron_parser;

static int weir_cron_fail(weir_cron_parser *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int weir_cron_fail(weir_cron_parser *ps, const char *at, const char *fmt, ...) {
    char msg[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "%s (column %d)", msg, (int)(at - ps->expr) + 1);
    return -1;
}

/* A number or a name of field f at *p (ends at `end`). */
static int weir_cron_value(weir_cron_parser *ps, const weir_cron_field *f, const char **p,
                           const char *end, int *out) {
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        long v = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            if (v < 1000) v = v * 10 + (*s - '0');
            s++;
        }
        if (v < f->min || v > f->max)
            return weir_cron_fail(ps, *p, "%s: %ld is out of range %d-%d", f->name, v,
                                  f->min, f->max);
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names && end - s >= 3 && isalpha((unsigned char)s[0])) {
        int i;
        for (i = 0; f->names[i]; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0 &&
                (end - s == 3 || !isalpha((unsigned char)s[3]))) {
                *out = f->min + i;
                *p = s + 3;
                return 0;
            }
        }
    }
    if (s >= end)
        return weir_cron_fail(ps, s, "%s: a value is missing", f->name);
    if (isalpha((unsigned char)*s)) {
        const char *w = s;
        while (w < end && isalpha((unsigned char)*w)) w++;
        return weir_cron_fail(ps, s, "%s: unknown name '%.*s'%s", f->name, (int)(w - s), s,
                              f->names == weir_cron_month_names ? " (use JAN-DEC)"
                              : f->names ? " (use SUN-SAT)" : " (numbers only here)");
    }
    return weir_cron_fail(ps, s, "%s: unexpected '%c'", f->name, *s);
}

/* One list item: `*`, `N`, `A-B`, each optionally `/STEP`. */
static int weir_cron_item(weir_cron_parser *ps, const weir_cron_field *f, const char *s,
                          const char *end, uint64_t *bits) {
    const char *item = s;
    int lo, hi, step = 1, v;
    int star_max = f->max;
    if (f->names == weir_cron_wday_names) star_max = 6;   /* 7 is Sunday again */
    if (s < end && *s == '*') {
        lo = f->min;
        hi = star_max;
        s++;
    } else {
        if (weir_cron_value(ps, f, &s, end, &lo) != 0) return -1;
        hi = lo;
        if (s < end && *s == '-') {
            const char *at = ++s;
            if (weir_cron_value(ps, f, &s, end, &hi) != 0) return -1;
            if (hi < lo)
                return weir_cron_fail(ps, at, "%s: range %d-%d goes backwards", f->name, lo, hi);
        } else if (s < end && *s == '/') {
            hi = star_max;      /* "N/S" means N-max/S */
        }
    }
    if (s < end && *s == '/') {
        const char *at = ++s;
        long n = 0;
        if (s >= end || !isdigit((unsigned char)*s))
            return weir_cron_fail(ps, at, "%s: '/' must be followed by a step number", f->name);
        while (s < end && isdigit((unsigned char)*s)) {
            if (n < 1000) n = n * 10 + (*s - '0');
            s++;
        }
        if (n < 1 || n > f->max)
            return weir_cron_fail(ps, at, "%s: step %ld is out of range 1-%d", f->name, n,
                                  f->max);
        step = (int)n;
    }
    if (s != end)
        return weir_cron_fail(ps, s, "%s: unexpected '%c' in '%.*s'", f->name, *s,
                              (int)(end - item), item);
    for (v = lo; v <= hi; v += step) *bits |= (uint64_t)1 << v;
    return 0;
}

static int weir_cron_parse_field(weir_cron_parser *ps, const weir_cron_field *f,
                                 const char *s, const char *end, uint64_t *bits) {
    *bits = 0;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        if (item_end == s)
            return weir_cron_fail(ps, s, "%s: empty list item", f->name);
        if (weir_cron_item(ps, f, s, item_end, bits) != 0) return -1;
        if (!comma) return 0;
        s = comma + 1;
    }
}

static int weir_cron_days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) return 29;
    return days[month - 1];
}

/* With day-of-week unrestricted, "31 in a 30-day month" never fires. */
static int weir_cron_can_fire(const weir_cron *c) {
    int m, d;
    if (c->mday_star || !c->wday_star) return 1;
    for (m = 1; m <= 12; m++) {
        if (!(c->months >> m & 1)) continue;
        for (d = 1; d <= weir_cron_days_in_month(2000, m); d++)   /* 2000: leap */
            if (c->mdays >> d & 1) return 1;
    }
    return 0;
}

static int weir_cron_parse_fields(weir_cron_parser *ps, const char *s, weir_cron *out) {
    const char *start[5], *end[5];
    uint64_t bits[5];
    int n = 0, i;
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        if (n == 5)
            return weir_cron_fail(ps, s, "too many fields: expected 5 (minute hour "
                                         "day-of-month month day-of-week)");
        start[n] = s;
        while (*s && *s != ' ' && *s != '\t') s++;
        end[n++] = s;
    }
    if (n < 5)
        return weir_cron_fail(ps, s, "expected 5 fields (minute hour day-of-month month "
                                     "day-of-week), got %d", n);
    for (i = 0; i < 5; i++)
        if (weir_cron_parse_field(ps, &weir_cron_fields[i], start[i], end[i], &bits[i]) != 0)
            return -1;
    if (bits[4] >> 7 & 1) bits[4] = (bits[4] & 0x7f) | 1;        /* 7 -> Sunday */
    memset(out, 0, sizeof *out);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)bits[4];
    out->mday_star = *start[2] == '*';
    out->wday_star = *start[4] == '*';
    if (!weir_cron_can_fire(out))
        return weir_cron_fail(ps, start[2], "day-of-month and month never match "
                                            "(such as 30 February)");
    return 0;
}

int weir_cron_parse(const char *expr, weir_cron *out, char *err, size_t errlen) {
    weir_cron_parser ps = {expr, err, errlen};
    const char *s = expr;
    int i;
    if (err && errlen) err[0] = '\0';
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return weir_cron_fail(&ps, s, "empty cron expression");
    if (*s == '@') {
        size_t n = strcspn(s, " \t");
        const char *rest = s + n;
        while (*rest == ' ' || *rest == '\t') rest++;
        for (i = 0; weir_cron_aliases[i].alias; i++) {
            if (strlen(weir_cron_aliases[i].alias) == n &&
                strncmp(s, weir_cron_aliases[i].alias, n) == 0) {
                if (*rest)
                    return weir_cron_fail(&ps, rest, "nothing may follow %s",
                                          weir_cron_aliases[i].alias);
                ps.expr = weir_cron_aliases[i].expr;
                return weir_cron_parse_fields(&ps, ps.expr, out);
            }
        }
        return weir_cron_fail(&ps, s, "unknown alias '%.*s' (known: @hourly @daily "
                                      "@midnight @weekly @monthly @yearly @annually)",
                              (int)n, s);
    }
    return weir_cron_parse_fields(&ps, s, out);
}

/* ---- time zones ---- */

int weir_cron_tz_valid(const char *tz) {
    const char *dir = getenv("TZDIR");
    char path[1024];
    char magic[4];
    const char *p;
    FILE *f;
    size_t n;
    if (!tz || !*tz || tz[0] == '/' || strstr(tz, "..") || strlen(tz) > 200) return 0;
    for (p = tz; *p; p++)
        if (!(isalnum((unsigned char)*p) || strchr("/_+-", *p))) return 0;
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    f = fopen(path, "rb");
    if (!f) return 0;
    n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    /* zone.tab, iso3166.tab, tzdata.zi live there too: only TZif files
     * are zones (a directory fails the read) */
    return n == sizeof magic && memcmp(magic, "TZif", 4) == 0;
}

static int weir_cron_is_utc(const char *tz) {
    return !tz || strcmp(tz, "UTC") == 0 || strcmp(tz, "Etc/UTC") == 0;
}

typedef struct weir_cron_tz {
    int switched;
    char *saved;                /* previous TZ, NULL when unset */
} weir_cron_tz;

static int weir_cron_tz_enter(weir_cron_tz *z, const char *tz) {
    const char *old = getenv("TZ");
    char value[256];
    z->switched = 0;
    z->saved = NULL;
    if (weir_cron_is_utc(tz)) return 0;
    if (old && !(z->saved = strdup(old))) return -1;
    /* ':' makes glibc read the zone file, never parse a POSIX rule */
    snprintf(value, sizeof value, ":%s", tz);
    if (setenv("TZ", value, 1) != 0) {
        free(z->saved);
        return -1;
    }
    tzset();
    z->switched = 1;
    return 0;
}

static void weir_cron_tz_leave(weir_cron_tz *z) {
    if (!z->switched) return;
    if (z->saved) setenv("TZ", z->saved, 1);
    else unsetenv("TZ");
    tzset();
    free(z->saved);
    z->switched = 0;
}

/* Wall clock of instant t in the current zone, as seconds of a UTC
 * calendar (so timegm/gmtime_r do the calendar arithmetic). */
static int64_t weir_cron_wall_of(const weir_cron_tz *z, int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (!z->switched) return t;
    if (!localtime_r(&tt, &tm)) return t;
    return t + tm.tm_gmtoff;
}

/* First instant whose wall clock is `wall`, or 0 with *found = 0 when the
 * wall time falls in a gap.  The offset in effect is one of those a day
 * before or a day after (zones are at most 14 h from UTC), which covers
 * a transition in between. */
static int64_t weir_cron_instant_of(const weir_cron_tz *z, int64_t wall, int *found) {
    int64_t cand[2], best = 0;
    int i;
    *found = 0;
    if (!z->switched) { *found = 1; return wall; }
    cand[0] = wall - (weir_cron_wall_of(z, wall - 86400) - (wall - 86400));
    cand[1] = wall - (weir_cron_wall_of(z, wall + 86400) - (wall + 86400));
    for (i = 0; i < 2; i++) {
        if (weir_cron_wall_of(z, cand[i]) != wall) continue;
        if (!*found || cand[i] < best) best = cand[i];
        *found = 1;
    }
    return best;
}

/* ---- next fire time ---- */

static int weir_cron_day_matches(const weir_cron *c, const struct tm *tm) {
    int mday = c->mdays >> tm->tm_mday & 1;
    int wday = c->wdays >> tm->tm_wday & 1;
    if (c->mday_star || c->wday_star) return mday && wday;
    return mday || wday;
}

/* Lowest set bit >= from in bits (below `limit`), or -1. */
static int weir_cron_next_bit(uint64_t bits, int from, int limit) {
    int i;
    for (i = from; i < limit; i++)
        if (bits >> i & 1) return i;
    return -1;
}

static int64_t weir_cron_floor_div(int64_t a, int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t weir_cron_next(const weir_cron *c, const char *tz, int64_t after_ms) {
    weir_cron_tz z;
    int64_t after_s = weir_cron_floor_div(after_ms, 1000);
    int64_t wall, limit, result = -1;
    if (!weir_cron_is_utc(tz) && !weir_cron_tz_valid(tz)) return -1;
    if (weir_cron_tz_enter(&z, tz) != 0) return -1;
    wall = weir_cron_floor_div(weir_cron_wall_of(&z, after_s), 60) * 60 + 60;
    limit = wall + (int64_t)5 * 366 * 86400;
    while (wall < limit) {
        time_t tt = (time_t)wall;
        struct tm tm;
        int h, m, found;
        int64_t t;
        if (!gmtime_r(&tt, &tm)) break;
        if (!(c->months >> (tm.tm_mon + 1) & 1)) {
            tm.tm_mon++; tm.tm_mday = 1; tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            wall = (int64_t)timegm(&tm);
            continue;
        }
        if (!weir_cron_day_matches(c, &tm)) {
            tm.tm_mday++; tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            wall = (int64_t)timegm(&tm);
            continue;
        }
        h = weir_cron_next_bit(c->hours, tm.tm_hour, 24);
        if (h < 0) {
            tm.tm_mday++; tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            wall = (int64_t)timegm(&tm);
            continue;
        }
        if (h != tm.tm_hour) {
            tm.tm_hour = h; tm.tm_min = 0;
        }
        m = weir_cron_next_bit(c->minutes, tm.tm_min, 60);
        if (m < 0) {
            tm.tm_hour++; tm.tm_min = tm.tm_sec = 0;
            wall = (int64_t)timegm(&tm);
            continue;
        }
        tm.tm_min = m;
        tm.tm_sec = 0;
        wall = (int64_t)timegm(&tm);
        t = weir_cron_instant_of(&z, wall, &found);
        /* gap: the wall time never happens; fold: its first occurrence
         * already passed (<= after), so the repeat does not fire */
        if (found && t * 1000 > after_ms) {
            result = t * 1000;
            break;
        }
        wall += 60;
    }
    weir_cron_tz_leave(&z);
    return result;
}
