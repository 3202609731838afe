/*
 * weir_recipe.h -- recipe packs: loading, validation, parameters.
 *
 * A recipe is a directory with recipe.lua returning a table:
 *
 *   return {
 *     name = "workspace-audit-webhook", version = "1.2.0",
 *     description = "...",
 *     params = {
 *       callback_url  = {type = "url", required = true},
 *       interval      = {type = "duration", default = "30s"},
 *       client_secret = {type = "string", secret = true, required = true},
 *     },
 *     jobs = {
 *       fetch = {
 *         handler  = "jobs.fetch.run",         -- module path + "." + function
 *         triggers = { {every = "30s"}, {cron = "0 3 * * *", tz = "Europe/Paris"},
 *                      {on = "webhook:audit"}, {on = "stream:events"}, {manual = true} },
 *         retry    = {max_attempts = 5, base = "2s", cap = "5m", jitter = "full",
 *                     max_elapsed = "1h"},
 *         concurrency = 1, timeout = "10m",
 *       },
 *     },
 *   }
 *
 * Durations are numbers of seconds or strings "500ms" "30s" "5m" "2h" "1d".
 * `every` may also name a param: {every = "$interval"}.
 */
#ifndef WEIR_RECIPE_H
#define WEIR_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "weir_engine.h"

typedef enum {
    WEIR_TRIGGER_EVERY = 1,     /* every_ms */
    WEIR_TRIGGER_CRON,          /* cron + tz */
    WEIR_TRIGGER_ON,            /* on: "webhook:NAME" | "stream:KEY" */
    WEIR_TRIGGER_MANUAL
} weir_trigger_kind;

typedef struct weir_cron {
    uint64_t minutes;           /* bit m set: minute m (0-59) matches */
    uint32_t hours;             /* 0-23 */
    uint32_t mdays;             /* 1-31 */
    uint16_t months;            /* 1-12 */
    uint8_t wdays;              /* 0-6, Sunday = 0 (7 accepted as Sunday) */
    int mday_star, wday_star;   /* for the POSIX day-of-month / day-of-week OR rule */
} weir_cron;

typedef struct weir_trigger {
    weir_trigger_kind kind;
    uint64_t every_ms;
    char *cron_expr;            /* as written */
    weir_cron cron;
    char *tz;                   /* NULL = UTC */
    char *on;                   /* "webhook:NAME" / "stream:KEY" */
    char *every_param;          /* {every = "$interval"}: "interval"; every_ms
                                 * is 0 until weir_recipe_apply_params */
} weir_trigger;

typedef struct weir_retry_policy {
    int max_attempts;           /* total attempts, >= 1 (default 5) */
    double base_s;              /* first backoff (default 1 s) */
    double cap_s;               /* largest backoff (default 300 s) */
    int full_jitter;            /* 1: uniform(0, min(cap, base*2^n)); 0: exact */
    double max_elapsed_s;       /* 0 = no time limit; else give up after this */
} weir_retry_policy;

typedef struct weir_recipe_job {
    char *name;
    char *module;               /* "jobs.fetch" */
    char *function;             /* "run" */
    weir_trigger *triggers;
    int ntriggers;
    weir_retry_policy retry;
    int concurrency;            /* per process, default 1 */
    double timeout_s;           /* default 300; 0 = none */
    int line;                   /* line of the job in recipe.lua (0 unknown) */
} weir_recipe_job;

typedef enum {
    WEIR_PARAM_STRING = 1, WEIR_PARAM_NUMBER, WEIR_PARAM_INTEGER, WEIR_PARAM_BOOLEAN,
    WEIR_PARAM_DURATION, WEIR_PARAM_URL, WEIR_PARAM_JSON
} weir_param_type;

typedef struct weir_recipe_param {
    char *name;
    weir_param_type type;
    int required;
    int secret;
    char *default_json;         /* JSON text of the default, or NULL */
    char *description;
} weir_recipe_param;

typedef struct weir_recipe {
    char *dir;                  /* absolute path */
    char *file;                 /* dir + "/recipe.lua" */
    char *name;
    char *version;
    char *description;
    weir_recipe_param *params;
    int nparams;
    weir_recipe_job *jobs;
    int njobs;
} weir_recipe;

/* Loads and validates DIR/recipe.lua in a throwaway sandboxed state on e
 * (handler modules are loaded too and their functions checked).  On
 * failure returns NULL and *errors gets a malloc'd text with one problem
 * per line, each `FILE:LINE: path.to.field: what is wrong`. */
weir_recipe *weir_recipe_load(weir_engine *e, const char *dir, char **errors);
void weir_recipe_free(weir_recipe *r);

const weir_recipe_job *weir_recipe_find_job(const weir_recipe *r, const char *name);

/* Resolves parameter values: `sets` are "key=value" strings (CLI --set),
 * then the environment WEIR_PARAM_<NAME> (upper-cased), then defaults.
 * Values are converted and checked against their declared type.  Returns
 * a malloc'd JSON object text, or NULL with *errors as above (naming the
 * param, never a secret's value).  Secret values are registered with the
 * engine's log for redaction. */
char *weir_recipe_params_json(weir_engine *e, const weir_recipe *r, const char *const *sets,
                              int nsets, char **errors);

/* Durations: "250ms" "30s" "5m" "2h" "1d" or a plain number of seconds.
 * Returns 0 and sets *seconds, or -1. */
int weir_duration_parse(const char *s, double *seconds);

/* "ok: NAME VERSION: N jobs, M params" (singular for 1), malloc'd; the
 * success line of `weir check`. */
char *weir_recipe_summary(const weir_recipe *r);

/* Resolves every trigger written {every = "$param"} from params_json (as
 * returned by weir_recipe_params_json): every_ms = the param's seconds.
 * Returns 0, or -1 with *errors (one problem per line). */
int weir_recipe_apply_params(weir_recipe *r, const char *params_json, char **errors);

/* Line of a field of recipe.lua, found by scanning the source text: the
 * returned table's block, then each key of `path` as a direct child of
 * the block found so far (`name =`, `["name"] =`, or the index-th
 * positional element when key is NULL).  When a key cannot be found the
 * line of the deepest block found is returned (1 at worst). */
typedef struct weir_recipe_key {
    const char *key;            /* NULL: positional element `index` (1-based) */
    int index;
} weir_recipe_key;
int weir_recipe_locate(const char *src, size_t len, const weir_recipe_key *path, int npath);

/* Cron: 5 fields (minute hour day-of-month month day-of-week) with
 * `*`, lists, ranges, steps, month / day names, and @hourly @daily
 * @midnight @weekly @monthly @yearly @annually.  Returns 0, or -1 with a
 * message in err naming the field and the column ("hour: 25 is out of
 * range 0-23 (column 3)"). */
int weir_cron_parse(const char *expr, weir_cron *out, char *err, size_t errlen);

/* Next fire time strictly after `after_ms` (ms since the epoch) in time
 * zone tz (IANA name; NULL = UTC), or -1 when none within 5 years or tz
 * is not a valid zone.  A local time that does not exist (spring
 * forward) is skipped; one that happens twice (fall back) fires once, at
 * its first occurrence.  Switches TZ while it runs (restored before it
 * returns): call it from the loop thread only. */
int64_t weir_cron_next(const weir_cron *c, const char *tz, int64_t after_ms);

/* 1 when tz names an IANA zone: a TZif file under $TZDIR or
 * /usr/share/zoneinfo, no "..", no absolute path. */
int weir_cron_tz_valid(const char *tz);

#endif
