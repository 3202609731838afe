/*
 * test_recipe.c -- recipe packs: loading the fixtures of tests/recipes
 * (every parsed field of the valid ones, the exact problems and line
 * numbers of the broken ones), the source-text line locator, parameter
 * resolution (types, --set, environment, defaults, required, unknown
 * keys, secrets) and every = "$param".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir_engine.h"
#include "weir_log.h"
#include "weir_recipe.h"

#define FIXTURES WEIR_TEST_DIR "/recipes/"

static weir_engine *new_engine(size_t mem, uint64_t cpu_ms) {
    weir_config cfg;
    const char *err = NULL;
    weir_engine *e;
    weir_config_defaults(&cfg);
    if (mem) cfg.mem_limit = mem;
    if (cpu_ms) cfg.cpu_limit_ms = cpu_ms;
    e = weir_engine_new(NULL, &cfg, &err);
    assert_non_null(e);
    return e;
}

/* errors with the fixtures' directory removed, so expectations read
 * "broken_fields/recipe.lua:17: ..." wherever the tree lives. */
static char *strip_dir(const char *s) {
    const char *prefix = FIXTURES;
    size_t plen = strlen(prefix);
    char *out = malloc(strlen(s) + 1), *w = out;
    assert_non_null(out);
    while (*s) {
        if (strncmp(s, prefix, plen) == 0) s += plen;
        else *w++ = *s++;
    }
    *w = '\0';
    return out;
}

static weir_recipe *load_ok(weir_engine *e, const char *name) {
    char *errors = NULL;
    char path[1024];
    weir_recipe *r;
    snprintf(path, sizeof path, FIXTURES "%s", name);
    r = weir_recipe_load(e, path, &errors);
    if (!r) fail_msg("%s should load, got:\n%s", name, errors ? errors : "(no errors)");
    assert_null(errors);
    return r;
}

/* Loads a broken fixture; returns its stripped errors (caller frees). */
static char *load_broken(weir_engine *e, const char *name) {
    char *errors = NULL, *clean;
    char path[1024];
    snprintf(path, sizeof path, FIXTURES "%s", name);
    assert_null(weir_recipe_load(e, path, &errors));
    assert_non_null(errors);
    clean = strip_dir(errors);
    free(errors);
    return clean;
}

/* Compares line by line so a failure names the first different line
 * (cmocka truncates long messages). */
static void assert_text(const char *got, const char *want) {
    int line = 1;
    const char *g = got, *w = want;
    if (strcmp(got, want) == 0) return;
    while (*g && *g == *w) {
        if (*g == '\n') line++;
        g++;
        w++;
    }
    while (g > got && g[-1] != '\n') { g--; w--; }
    print_error("first difference at line %d\ngot:      %.*s\nexpected: %.*s\n", line,
                (int)strcspn(g, "\n"), g, (int)strcspn(w, "\n"), w);
    fail();
}

/* ---- valid fixtures ---- */

static const weir_recipe_param *param(const weir_recipe *r, const char *name) {
    int i;
    for (i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0) return &r->params[i];
    fail_msg("no param %s", name);
    return NULL;
}

static void test_valid_full(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_full");
    const weir_recipe_job *fetch, *report;
    const weir_recipe_param *p;
    char *summary;
    (void)unused;
    assert_string_equal(r->name, "workspace-audit");
    assert_string_equal(r->version, "1.2.0");
    assert_string_equal(r->description, "Pulls the audit log and posts a daily report");
    assert_non_null(strstr(r->dir, "/tests/recipes/valid_full"));
    assert_true(r->dir[0] == '/');
    assert_non_null(strstr(r->file, "/tests/recipes/valid_full/recipe.lua"));

    /* params, in declaration order */
    assert_int_equal(r->nparams, 9);
    assert_string_equal(r->params[0].name, "callback_url");
    assert_string_equal(r->params[8].name, "pin");
    p = param(r, "callback_url");
    assert_int_equal(p->type, WEIR_PARAM_URL);
    assert_true(p->required);
    assert_false(p->secret);
    assert_null(p->default_json);
    assert_string_equal(p->description, "where reports go");
    p = param(r, "interval");
    assert_int_equal(p->type, WEIR_PARAM_DURATION);
    assert_string_equal(p->default_json, "30");
    p = param(r, "client_secret");
    assert_int_equal(p->type, WEIR_PARAM_STRING);
    assert_true(p->secret);
    assert_true(p->required);
    assert_string_equal(param(r, "page_size")->default_json, "100");   /* from a module */
    assert_int_equal(param(r, "page_size")->type, WEIR_PARAM_INTEGER);
    assert_string_equal(param(r, "ratio")->default_json, "0.25");
    assert_int_equal(param(r, "ratio")->type, WEIR_PARAM_NUMBER);
    assert_string_equal(param(r, "dry_run")->default_json, "false");
    assert_int_equal(param(r, "dry_run")->type, WEIR_PARAM_BOOLEAN);
    assert_string_equal(param(r, "filters")->default_json, "{\"kinds\":[\"login\",\"logout\"],\"max\":3}");
    assert_int_equal(param(r, "filters")->type, WEIR_PARAM_JSON);
    assert_string_equal(param(r, "region")->default_json, "\"eu\"");
    assert_true(param(r, "pin")->secret);
    assert_false(param(r, "pin")->required);

    /* jobs, in declaration order */
    assert_int_equal(r->njobs, 2);
    fetch = weir_recipe_find_job(r, "fetch");
    report = weir_recipe_find_job(r, "report");
    assert_ptr_equal(fetch, &r->jobs[0]);
    assert_ptr_equal(report, &r->jobs[1]);
    assert_null(weir_recipe_find_job(r, "nope"));
    assert_int_equal(fetch->line, 20);
    assert_int_equal(report->line, 34);
    assert_string_equal(fetch->module, "jobs.fetch");
    assert_string_equal(fetch->function, "run");
    assert_int_equal(fetch->ntriggers, 5);
    assert_int_equal(fetch->triggers[0].kind, WEIR_TRIGGER_EVERY);
    assert_string_equal(fetch->triggers[0].every_param, "interval");
    assert_true(fetch->triggers[0].every_ms == 0);
    assert_int_equal(fetch->triggers[1].kind, WEIR_TRIGGER_EVERY);
    assert_true(fetch->triggers[1].every_ms == 300000);
    assert_null(fetch->triggers[1].every_param);
    assert_int_equal(fetch->triggers[2].kind, WEIR_TRIGGER_ON);
    assert_string_equal(fetch->triggers[2].on, "webhook:audit");
    assert_string_equal(fetch->triggers[3].on, "stream:events");
    assert_int_equal(fetch->triggers[4].kind, WEIR_TRIGGER_MANUAL);
    assert_int_equal(fetch->retry.max_attempts, 7);
    assert_true(fetch->retry.base_s == 2.0);
    assert_true(fetch->retry.cap_s == 300.0);
    assert_int_equal(fetch->retry.full_jitter, 0);
    assert_true(fetch->retry.max_elapsed_s == 3600.0);
    assert_int_equal(fetch->concurrency, 2);
    assert_true(fetch->timeout_s == 600.0);

    assert_string_equal(report->module, "jobs.report");
    assert_string_equal(report->function, "daily");
    assert_int_equal(report->ntriggers, 2);
    assert_int_equal(report->triggers[0].kind, WEIR_TRIGGER_CRON);
    assert_string_equal(report->triggers[0].cron_expr, "0 7 * * 1-5");
    assert_string_equal(report->triggers[0].tz, "Europe/Paris");
    assert_int_equal(report->triggers[0].cron.hours, 1 << 7);
    assert_int_equal(report->triggers[0].cron.wdays, 0x3e);
    assert_string_equal(report->triggers[1].cron_expr, "@weekly");
    assert_null(report->triggers[1].tz);
    /* defaults where nothing is written */
    assert_int_equal(report->retry.max_attempts, 5);
    assert_true(report->retry.base_s == 1.0);
    assert_true(report->retry.cap_s == 300.0);
    assert_int_equal(report->retry.full_jitter, 1);
    assert_true(report->retry.max_elapsed_s == 0);
    assert_int_equal(report->concurrency, 1);
    assert_true(report->timeout_s == 300.0);

    summary = weir_recipe_summary(r);
    assert_string_equal(summary, "ok: workspace-audit 1.2.0: 2 jobs, 9 params");
    free(summary);
    weir_recipe_free(r);
    weir_engine_free(e);
}

static void test_valid_minimal(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_minimal");
    char *summary;
    (void)unused;
    assert_string_equal(r->name, "minimal");
    assert_null(r->description);
    assert_int_equal(r->nparams, 0);
    assert_int_equal(r->njobs, 1);
    assert_int_equal(r->jobs[0].line, 5);
    /* no triggers: started by hand only */
    assert_int_equal(r->jobs[0].ntriggers, 1);
    assert_int_equal(r->jobs[0].triggers[0].kind, WEIR_TRIGGER_MANUAL);
    summary = weir_recipe_summary(r);
    assert_string_equal(summary, "ok: minimal 0.1: 1 job, 0 params");
    free(summary);
    weir_recipe_free(r);
    weir_engine_free(e);
}

static void test_valid_locals(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_locals");
    (void)unused;
    assert_string_equal(r->name, "locals.demo");
    assert_int_equal(r->njobs, 2);
    /* a job's line is where jobs names it (`sync = sync`, line 9) */
    assert_string_equal(r->jobs[0].name, "sync");
    assert_int_equal(r->jobs[0].line, 9);
    assert_string_equal(r->jobs[1].name, "second-sync");
    assert_int_equal(r->jobs[1].line, 10);
    assert_int_equal(r->jobs[1].concurrency, 3);
    assert_int_equal(r->jobs[0].triggers[0].kind, WEIR_TRIGGER_CRON);
    weir_recipe_free(r);
    /* fields of such a job are found through `local sync = {` */
    {
        static const char src[] =
            "local sync = {\n  handler = 'a.b',\n  triggers = {},\n}\n"
            "local jobs = {sync = sync}\nreturn {jobs = jobs}\n";
        weir_recipe_key p[3] = {{"jobs", 0}, {"sync", 0}, {"triggers", 0}};
        assert_int_equal(weir_recipe_locate(src, sizeof src - 1, p, 3), 3);
        assert_int_equal(weir_recipe_locate(src, sizeof src - 1, p, 2), 5);
    }
    weir_engine_free(e);
}

/* ---- broken fixtures ---- */

static void test_broken_fields_all_problems(void **unused) {
    weir_engine *e = new_engine(0, 0);
    char *errors = load_broken(e, "broken_fields");
    const char *nomod = "broken_fields/recipe.lua:34: jobs.nomod.handler: cannot load module "
                        "'jobs.absent': module 'jobs.absent' not found: no file "
                        "'broken_fields/jobs/absent.lua' no file "
                        "'broken_fields/jobs/absent/init.lua'";
    char *at, *eol;
    (void)unused;
    /* the "not found" line lists the engine's own directories too: check
     * its stable start, then compare the rest exactly without it */
    at = strstr(errors, nomod);
    assert_non_null(at);
    eol = strchr(at, '\n');
    assert_non_null(eol);
    memmove(at, eol + 1, strlen(eol + 1) + 1);
    assert_text(errors,
        "broken_fields/recipe.lua:1: version: missing (a string such as \"1.0.0\")\n"
        "broken_fields/recipe.lua:2: name: must match [a-z0-9][a-z0-9._-]* (at most 64 characters; got \"Bad Name\")\n"
        "broken_fields/recipe.lua:3: colour: unknown field (allowed: name, version, description, params, jobs)\n"
        "broken_fields/recipe.lua:5: params.level.type: must be one of string, number, integer, boolean, duration, url, json (got \"strng\")\n"
        "broken_fields/recipe.lua:6: params.label.description: must be a string (got 7)\n"
        "broken_fields/recipe.lua:7: params.token.default: a secret param must not have a default (set it with --set or the environment)\n"
        "broken_fields/recipe.lua:8: params.count.default: must be an integer (got 1.5)\n"
        "broken_fields/recipe.lua:9: params.wait.default: must be a duration such as \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\" or a number of seconds (got \"soon\")\n"
        "broken_fields/recipe.lua:10: params.home.default: must be an http:// or https:// URL with a host (got \"ftp://example.com/\")\n"
        "broken_fields/recipe.lua:11: params.Bad-Param: invalid param name (lower-case letters, digits and '_', starting with a letter or '_', at most 64 characters; it becomes WEIR_PARAM_<NAME>)\n"
        "broken_fields/recipe.lua:12: params.must.required: must be true or false (got \"yes\")\n"
        "broken_fields/recipe.lua:17: jobs.fetch.retry.max_attempts: must be an integer >= 1 (got -1)\n"
        "broken_fields/recipe.lua:17: jobs.fetch.retry.cap: must be at least base (2s)\n"
        "broken_fields/recipe.lua:17: jobs.fetch.retry.jitter: must be \"full\" or \"none\" (got \"some\")\n"
        "broken_fields/recipe.lua:18: jobs.fetch.concurrency: must be an integer >= 1 (got 0)\n"
        "broken_fields/recipe.lua:19: jobs.fetch.timeout: must be a duration such as \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\" or a number of seconds (got \"abc\")\n"
        "broken_fields/recipe.lua:21: jobs.fetch.triggers[1]: has both every and cron: one kind per trigger (add another trigger to the array)\n"
        "broken_fields/recipe.lua:22: jobs.fetch.triggers[2].cron: invalid cron expression \"0 25 * * *\": hour: 25 is out of range 0-23 (column 3)\n"
        "broken_fields/recipe.lua:22: jobs.fetch.triggers[2].tz: unknown time zone \"Europe/Pariss\" (an IANA name such as \"Europe/Paris\" or \"UTC\")\n"
        "broken_fields/recipe.lua:23: jobs.fetch.triggers[3].on: must be \"webhook:NAME\" (NAME: letters, digits, '.', '_', '-') or \"stream:KEY\" (got \"email:inbox\")\n"
        "broken_fields/recipe.lua:24: jobs.fetch.triggers[4].every: must be at least 1s (got 500ms)\n"
        "broken_fields/recipe.lua:25: jobs.fetch.triggers[5].every: param 'label' is of type string; every needs a duration param\n"
        "broken_fields/recipe.lua:26: jobs.fetch.triggers[6].every: \"$nope\" names no declared param (declare params.nope with type = \"duration\")\n"
        "broken_fields/recipe.lua:27: jobs.fetch.triggers[7].manual: must be true (got false)\n"
        "broken_fields/recipe.lua:28: jobs.fetch.triggers[8].tz: only applies to cron triggers\n"
        "broken_fields/recipe.lua:29: jobs.fetch.triggers[9]: needs one of every, cron, on, manual\n"
        "broken_fields/recipe.lua:32: jobs.Bad Job: invalid job name (lower-case letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters)\n"
        "broken_fields/recipe.lua:33: jobs.nofn.handler: module 'jobs.fetch' has no function 'missing' (it has: run, setup)\n"
        "broken_fields/recipe.lua:35: jobs.badhandler.colour: unknown field (allowed: handler, triggers, retry, concurrency, timeout, description)\n"
        "broken_fields/recipe.lua:35: jobs.badhandler.handler: must be \"module.function\" such as \"jobs.fetch.run\" (got \"run\")\n"
        "broken_fields/recipe.lua:36: jobs.notrig.triggers: must be an array of triggers: write triggers = { {every = ...} }");
    free(errors);
    weir_engine_free(e);
}

static void test_broken_one_liners(void **unused) {
    static const struct { const char *fixture, *want; } cases[] = {
        {"broken_syntax", "broken_syntax/recipe.lua:4: '}' expected (to close '{' at line 1) near 'jobs'"},
        {"broken_io", "broken_io/recipe.lua:2: recipe.lua may only compute and return data: it called "
                      "task.sleep while loading (engine calls belong in job handlers)"},
        {"broken_runtime", "broken_runtime/recipe.lua:2: attempt to index a nil value (field 'missing')"},
        {"broken_return", "broken_return/recipe.lua:2: recipe.lua must return the recipe table (got "
                          "\"workspace-audit\")"},
        {"broken_empty", "broken_empty/recipe.lua:3: version: must be a non-empty string without spaces "
                         "such as \"1.0.0\" (got \"\")\n"
                         "broken_empty/recipe.lua:4: jobs: must declare at least one job"},
        {"broken_module", "broken_module/recipe.lua:5: jobs.a.handler: cannot load module 'jobs.bad': "
                          "broken_module/jobs/bad.lua:3: <name> or '...' expected near 'return'\n"
                          "broken_module/recipe.lua:6: jobs.b.handler: module 'jobs.notable' returned 42, "
                          "not a table of functions"},
        {"no_such_recipe", "no_such_recipe: cannot open the recipe directory: No such file or directory"},
        {"broken_io/..", "broken_io/../recipe.lua: cannot read: No such file or directory"},
    };
    size_t i;
    weir_engine *e = new_engine(0, 0);
    (void)unused;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *errors = load_broken(e, cases[i].fixture);
        if (strcmp(errors, cases[i].want) != 0)
            fail_msg("%s:\ngot:      %s\nexpected: %s", cases[i].fixture, errors, cases[i].want);
        free(errors);
    }
    weir_engine_free(e);
}

static void test_broken_spawn(void **unused) {
    weir_engine *e = new_engine(0, 0);
    char *errors = load_broken(e, "broken_spawn");
    (void)unused;
    assert_text(errors, "broken_spawn/recipe.lua: recipe.lua may only compute and return "
                        "data: it started a task while loading (task.spawn belongs in job "
                        "handlers)");
    free(errors);
    /* the killed task still sits in the engine's run queue: a running
     * loop drops it on its next turn (weir_engine_free does not) */
    weir_engine_run(e);
    weir_engine_free(e);
}

static void test_broken_caps(void **unused) {
    weir_engine *e = new_engine(0, 200);
    char *errors = load_broken(e, "broken_cpu");
    (void)unused;
    assert_text(errors, "broken_cpu/recipe.lua:2: CPU limit: ran more than 200 ms without "
                        "yielding; aborted");
    free(errors);
    weir_engine_free(e);
    e = new_engine(8u << 20, 0);
    errors = load_broken(e, "broken_mem");
    assert_text(errors, "broken_mem/recipe.lua:2: memory limit: the script's state reached its "
                        "cap of 8 MiB (not enough memory)");
    free(errors);
    weir_engine_free(e);
}

/* ---- the line locator ---- */

static int locate(const char *src, const char *a, const char *b, const char *c) {
    weir_recipe_key path[3];
    int n = 0;
    const char *parts[3] = {a, b, c};
    int i;
    for (i = 0; i < 3 && parts[i]; i++) {
        if (parts[i][0] == '#') {           /* "#2": second positional element */
            path[n].key = NULL;
            path[n].index = atoi(parts[i] + 1);
        } else {
            path[n].key = parts[i];
            path[n].index = 0;
        }
        n++;
    }
    return weir_recipe_locate(src, strlen(src), path, n);
}

static void test_locate(void **unused) {
    const char *src =
        "-- jobs = { fetch = {} } in a comment\n"          /* 1 */
        "local s = \"fetch = 1\"\n"                          /* 2 */
        "--[[ long\n"                                        /* 3 */
        "  fetch = 2 ]]\n"                                   /* 4 */
        "return {\n"                                         /* 5 */
        "  name = [[multi\n"                                 /* 6 */
        "line]],\n"                                          /* 7 */
        "  jobs = {\n"                                       /* 8 */
        "    other = { retry = {max_attempts = 1} },\n"      /* 9 */
        "    fetch = {\n"                                    /* 10 */
        "      triggers = {\n"                               /* 11 */
        "        {every = \"1m\"}, {cron = f(1, 2)},\n"      /* 12 */
        "        {manual = true},\n"                         /* 13 */
        "      },\n"                                         /* 14 */
        "      [\"max_attempts\"] = 3,\n"                    /* 15 */
        "    },\n"                                           /* 16 */
        "  },\n"                                             /* 17 */
        "}\n";                                               /* 18 */
    (void)unused;
    assert_int_equal(locate(src, NULL, NULL, NULL), 5);
    assert_int_equal(locate(src, "name", NULL, NULL), 6);
    assert_int_equal(locate(src, "jobs", NULL, NULL), 8);
    assert_int_equal(locate(src, "jobs", "fetch", NULL), 10);
    assert_int_equal(locate(src, "jobs", "fetch", "triggers"), 11);
    assert_int_equal(locate(src, "jobs", "fetch", "max_attempts"), 15);
    /* not a direct child of fetch (it is other's): the enclosing block */
    assert_int_equal(locate(src, "jobs", "fetch", "retry"), 10);
    assert_int_equal(locate(src, "jobs", "nope", NULL), 8);
    assert_int_equal(locate(src, "version", NULL, NULL), 5);
    {
        weir_recipe_key p[5] = {{"jobs", 0}, {"fetch", 0}, {"triggers", 0}, {NULL, 2}, {"cron", 0}};
        assert_int_equal(weir_recipe_locate(src, strlen(src), p, 5), 12);
        p[3].index = 3;
        assert_int_equal(weir_recipe_locate(src, strlen(src), p, 4), 13);
        p[3].index = 4;                     /* no 4th trigger: the array's line */
        assert_int_equal(weir_recipe_locate(src, strlen(src), p, 4), 11);
    }
    assert_int_equal(locate("x = 1", "name", NULL, NULL), 1);
    assert_int_equal(locate("", "name", NULL, NULL), 1);
    /* no `return {`: the first `key =` anywhere */
    assert_int_equal(locate("local t = {}\n\nt.jobs = 1\nlocal r = {\n jobs = {}}\nreturn f(r)",
                            "jobs", NULL, NULL), 5);
    assert_int_equal(locate("local jobs = {\n a = {},\n b = {},\n}\n"
                            "return {\n jobs = jobs }", "jobs", "b", NULL), 3);
    assert_int_equal(locate("return {\n \"x\",\n\n {\n y = 1 } }", "#2", "y", NULL), 5);
}

/* ---- params ---- */

static char *params(weir_engine *e, const weir_recipe *r, const char *const *sets, int n,
                    char **errors) {
    char *json = weir_recipe_params_json(e, r, sets, n, errors);
    if (json) assert_null(*errors);
    else assert_non_null(*errors);
    return json;
}

static void test_params_sources_and_types(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_full");
    const char *sets[] = {
        "callback_url=https://hooks.example.com/x?a=1", "client_secret=s3cr3t-value",
        "page_size=50", "ratio=1e-3", "dry_run=yes", "filters={\"kinds\":[]}",
        "interval=1h30m", "region=first", "region=a=b", "pin=1234"};
    char *errors = NULL, *json;
    (void)unused;
    unsetenv("WEIR_PARAM_REGION");
    json = params(e, r, sets, 10, &errors);
    assert_non_null(json);
    assert_text(json, "{\"callback_url\":\"https://hooks.example.com/x?a=1\","
                      "\"client_secret\":\"s3cr3t-value\",\"dry_run\":true,"
                      "\"filters\":{\"kinds\":[]},\"interval\":5400,\"page_size\":50,"
                      "\"pin\":1234,\"ratio\":0.001,\"region\":\"a=b\"}");
    free(json);

    /* the environment, then defaults */
    setenv("WEIR_PARAM_CALLBACK_URL", "http://localhost:8080/hook", 1);
    setenv("WEIR_PARAM_CLIENT_SECRET", "env-secret", 1);
    setenv("WEIR_PARAM_DRY_RUN", "0", 1);
    setenv("WEIR_PARAM_REGION", "from-env", 1);
    {
        const char *over[] = {"region=from-set"};
        json = params(e, r, over, 1, &errors);
    }
    assert_non_null(json);
    assert_text(json, "{\"callback_url\":\"http://localhost:8080/hook\","
                      "\"client_secret\":\"env-secret\",\"dry_run\":false,"
                      "\"filters\":{\"kinds\":[\"login\",\"logout\"],\"max\":3},"
                      "\"interval\":30,\"page_size\":100,\"ratio\":0.25,"
                      "\"region\":\"from-set\"}");
    free(json);
    unsetenv("WEIR_PARAM_CALLBACK_URL");
    unsetenv("WEIR_PARAM_CLIENT_SECRET");
    unsetenv("WEIR_PARAM_DRY_RUN");
    unsetenv("WEIR_PARAM_REGION");
    weir_recipe_free(r);
    weir_engine_free(e);
}

static void test_params_errors(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_full");
    const char *sets[] = {
        "callback_url=ftp://example.com", "page_size=12abc", "ratio=inf", "dry_run=maybe",
        "filters={bad", "interval=soon", "colour=blue", "pin=12x4-hidden"};
    char *errors = NULL, *json;
    (void)unused;
    json = params(e, r, sets, 8, &errors);
    assert_null(json);
    assert_text(errors,
        "--set colour: unknown param (declared: callback_url, interval, client_secret, page_size, "
        "ratio, dry_run, filters, region, pin)\n"
        "param callback_url (from --set callback_url): must be an http:// or https:// URL with a "
        "host (got \"ftp://example.com\")\n"
        "param interval (from --set interval): must be a duration such as \"500ms\", \"30s\", "
        "\"5m\", \"2h\", \"1d\" or a number of seconds (got \"soon\")\n"
        "param client_secret: required; set it with --set client_secret=... or the environment "
        "variable WEIR_PARAM_CLIENT_SECRET\n"
        "param page_size (from --set page_size): must be an integer (got \"12abc\")\n"
        "param ratio (from --set ratio): must be a number (got \"inf\")\n"
        "param dry_run (from --set dry_run): must be true/false, 1/0 or yes/no (got \"maybe\")\n"
        "param filters (from --set filters): must be valid JSON (got \"{bad\")\n"
        "param pin (from --set pin): must be an integer (value hidden: secret)");
    /* the bad secret value was still registered: it never reaches a log */
    assert_null(strstr(errors, "12x4-hidden"));
    free(errors);
    weir_recipe_free(r);

    /* a recipe without params */
    r = load_ok(e, "valid_minimal");
    {
        const char *one[] = {"x=1"};
        json = params(e, r, one, 1, &errors);
        assert_null(json);
        assert_text(errors, "--set x: unknown param (this recipe declares no params)");
        free(errors);
        json = params(e, r, NULL, 0, &errors);
        assert_text(json, "{}");
        free(json);
    }
    weir_recipe_free(r);
    weir_engine_free(e);
}

static void test_params_secrets_redacted(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_full");
    const char *sets[] = {"callback_url=https://x.example", "client_secret=hunter2-very-secret",
                          "pin=987654"};
    const char *line = "token hunter2-very-secret pin 987654 url https://x.example";
    char *errors = NULL, *json, *clean;
    size_t n;
    (void)unused;
    assert_int_equal(weir_log_secret_count(e->log), 0);
    json = params(e, r, sets, 3, &errors);
    assert_non_null(json);
    free(json);
    assert_int_equal(weir_log_secret_count(e->log), 2);
    clean = weir_log_redact(e->log, line, strlen(line), &n);
    assert_text(clean, "token [REDACTED] pin [REDACTED] url https://x.example");
    free(clean);
    weir_recipe_free(r);
    weir_engine_free(e);
}

static void test_apply_every_param(void **unused) {
    weir_engine *e = new_engine(0, 0);
    weir_recipe *r = load_ok(e, "valid_full");
    char *errors = NULL;
    (void)unused;
    assert_int_equal(weir_recipe_apply_params(r, "{\"interval\":30}", &errors), 0);
    assert_null(errors);
    assert_true(r->jobs[0].triggers[0].every_ms == 30000);
    assert_true(r->jobs[0].triggers[1].every_ms == 300000);    /* untouched */
    assert_int_equal(weir_recipe_apply_params(r, "{\"interval\":0.5}", &errors), -1);
    assert_text(errors, "jobs.fetch.triggers[1].every: param interval must be at least 1s "
                        "(got 0.5s)");
    free(errors);
    assert_int_equal(weir_recipe_apply_params(r, "{}", &errors), -1);
    assert_text(errors, "jobs.fetch.triggers[1].every: param interval has no value (give it "
                        "a default or set it)");
    free(errors);
    assert_int_equal(weir_recipe_apply_params(r, "[1", &errors), -1);
    assert_text(errors, "params: params JSON is not an object");
    free(errors);
    weir_recipe_free(r);
    weir_engine_free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_full),
        cmocka_unit_test(test_valid_minimal),
        cmocka_unit_test(test_valid_locals),
        cmocka_unit_test(test_broken_fields_all_problems),
        cmocka_unit_test(test_broken_one_liners),
        cmocka_unit_test(test_broken_spawn),
        cmocka_unit_test(test_broken_caps),
        cmocka_unit_test(test_locate),
        cmocka_unit_test(test_params_sources_and_types),
        cmocka_unit_test(test_params_errors),
        cmocka_unit_test(test_params_secrets_redacted),
        cmocka_unit_test(test_apply_every_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
