/*
 * weir_main.c -- the `weir` command line.
 *
 *   weir run FILE.lua [--set k=v ...]   run a script as one job
 *   weir test [PATH ...]                 run *_spec.lua files
 *   weir version | help [COMMAND]
 *
 * Exit codes: 0 success, 1 the job / a test failed, 2 usage error.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "weir_engine.h"
#include "weir_job.h"
#include "weir_json.h"
#include "weir_log.h"
#include "weir_lib.h"
#include "weir_queue.h"
#include "weir_recipe.h"
#include "weir_runner.h"
#include "weir_runs.h"
#include "weir_state.h"
#include "weir_store.h"

#define WEIR_EXIT_OK 0
#define WEIR_EXIT_FAIL 1
#define WEIR_EXIT_USAGE 2

typedef struct weir_cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv);
} weir_cli_cmd;

/* ---- common options ---- */

typedef struct weir_cli_opts {
    weir_config cfg;
    const char *log_file;
    int log_level;
    const char **sets;          /* "k=v" strings (run) */
    int nsets;
    const char **paths;         /* positional arguments */
    int npaths;
    const char *filter;         /* test */
    int verbose;
    int failed_only, json, limit;   /* runs */
    int once;                       /* run DIR */
    int log_level_set;
    const char *job, *payload;
    double grace, lease;
} weir_cli_opts;

static int weir_cli_parse_size(const char *s, size_t *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0) return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return -1;
    *out = (size_t)v;
    return 0;
}

static int weir_cli_parse_ms(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static void weir_cli_config_from_env(weir_cli_opts *o) {
    const char *v;
    weir_config_defaults(&o->cfg);
    o->log_level = WEIR_LOG_INFO;
    if ((v = getenv("WEIR_LIB_PATH")) && *v) o->cfg.lib_path = v;
    if ((v = getenv("WEIR_CONNECTORS_PATH")) && *v) o->cfg.connectors_path = v;
    if ((v = getenv("WEIR_CA_BUNDLE")) && *v) o->cfg.ca_bundle = v;
    if ((v = getenv("WEIR_ENV_ALLOW"))) o->cfg.env_allow = v;
    if ((v = getenv("WEIR_STORE_URL")) && *v) o->cfg.store_url = v;
    if ((v = getenv("WEIR_LOG_FILE")) && *v) o->log_file = v;
    if ((v = getenv("WEIR_LOG_LEVEL")) && *v && weir_log_level_parse(v) >= 0)
        o->log_level = weir_log_level_parse(v);
    if ((v = getenv("WEIR_MEM_LIMIT")) && *v) weir_cli_parse_size(v, &o->cfg.mem_limit);
    if ((v = getenv("WEIR_CPU_LIMIT_MS")) && *v) weir_cli_parse_ms(v, &o->cfg.cpu_limit_ms);
}

static int weir_cli_usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "weir %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nRun 'weir help %s' for usage.\n", cmd);
    return WEIR_EXIT_USAGE;
}

/* Parses argv[1..] of a command.  Returns 0 or an exit code. */
static int weir_cli_parse(const char *cmd, int argc, char **argv, weir_cli_opts *o,
                          int allow_set, int allow_filter) {
    int i;
    weir_cli_config_from_env(o);
    o->sets = calloc((size_t)argc, sizeof *o->sets);
    o->paths = calloc((size_t)argc, sizeof *o->paths);
    if (!o->sets || !o->paths) return weir_cli_usage_error(cmd, "%s", "out of memory");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strncmp(a, "--", 2) == 0 && strchr(a, '=')) {
            /* --flag=value */
            static char flag[64];
            size_t n = (size_t)(strchr(a, '=') - a);
            if (n >= sizeof flag) return weir_cli_usage_error(cmd, "unknown flag '%s'", a);
            memcpy(flag, a, n);
            flag[n] = '\0';
            val = a + n + 1;
            a = flag;
        }
#define WEIR_NEED_VALUE()                                                        \
        do {                                                                     \
            if (!val) {                                                          \
                if (i + 1 >= argc)                                               \
                    return weir_cli_usage_error(cmd, "flag '%s' needs a value", a); \
                val = argv[++i];                                                 \
            }                                                                    \
        } while (0)
        if (allow_set && (strcmp(a, "--set") == 0 || strcmp(a, "-s") == 0)) {
            WEIR_NEED_VALUE();
            if (!strchr(val, '=') || val[0] == '=')
                return weir_cli_usage_error(cmd, "--set expects key=value, got '%s'", val);
            o->sets[o->nsets++] = val;
        } else if (allow_set && strcmp(a, "--once") == 0) {
            o->once = 1;
        } else if (allow_set && strcmp(a, "--job") == 0) {
            WEIR_NEED_VALUE();
            o->job = val;
        } else if (allow_set && strcmp(a, "--payload") == 0) {
            WEIR_NEED_VALUE();
            o->payload = val;
        } else if (allow_set && strcmp(a, "--lease") == 0) {
            WEIR_NEED_VALUE();
            if (weir_duration_parse(val, &o->lease) != 0 || o->lease < 0.3)
                return weir_cli_usage_error(cmd, "--lease: a duration of at least 300ms, got '%s'", val);
        } else if (allow_set && strcmp(a, "--grace") == 0) {
            WEIR_NEED_VALUE();
            if (weir_duration_parse(val, &o->grace) != 0 || o->grace < 0)
                return weir_cli_usage_error(cmd, "--grace: not a duration: '%s'", val);
        } else if (allow_filter == 1 && strcmp(a, "--filter") == 0) {
            WEIR_NEED_VALUE();
            o->filter = val;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o->verbose = 1;
        } else if (strcmp(a, "--mem-limit") == 0) {
            WEIR_NEED_VALUE();
            if (weir_cli_parse_size(val, &o->cfg.mem_limit) != 0)
                return weir_cli_usage_error(cmd, "--mem-limit: not a size: '%s'", val);
        } else if (strcmp(a, "--cpu-limit") == 0) {
            WEIR_NEED_VALUE();
            if (weir_cli_parse_ms(val, &o->cfg.cpu_limit_ms) != 0)
                return weir_cli_usage_error(cmd, "--cpu-limit: not a number of ms: '%s'", val);
        } else if (strcmp(a, "--log-level") == 0) {
            WEIR_NEED_VALUE();
            if (weir_log_level_parse(val) < 0)
                return weir_cli_usage_error(cmd, "--log-level: one of debug, info, warn, error; got '%s'", val);
            o->log_level = weir_log_level_parse(val);
            o->log_level_set = 1;
        } else if (strcmp(a, "--log-file") == 0) {
            WEIR_NEED_VALUE();
            o->log_file = val;
        } else if (strcmp(a, "--store") == 0) {
            WEIR_NEED_VALUE();
            o->cfg.store_url = val;
        } else if (allow_filter == 2 && strcmp(a, "--failed") == 0) {
            o->failed_only = 1;
        } else if (allow_filter == 2 && strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (allow_filter == 2 && strcmp(a, "--limit") == 0) {
            WEIR_NEED_VALUE();
            o->limit = atoi(val);
            if (o->limit <= 0) return weir_cli_usage_error(cmd, "--limit: expects a positive number, got '%s'", val);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return -1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return weir_cli_usage_error(cmd, "unknown flag '%s'", a);
        } else {
            if (val) return weir_cli_usage_error(cmd, "unknown flag '%s'", a);
            o->paths[o->npaths++] = a;
        }
#undef WEIR_NEED_VALUE
    }
    return 0;
}

static void weir_cli_opts_free(weir_cli_opts *o) {
    free(o->sets);
    free(o->paths);
}

static weir_engine *weir_cli_engine(weir_cli_opts *o) {
    const char *err = NULL;
    weir_engine *e = weir_engine_new(NULL, &o->cfg, &err);
    if (!e) {
        fprintf(stderr, "weir: cannot start the engine: %s\n", err);
        return NULL;
    }
    weir_log_set_level(e->log, (weir_log_level)o->log_level);
    if (o->log_file) {
        int rc = weir_log_open_file(e->log, o->log_file);
        if (rc != 0) {
            fprintf(stderr, "weir: cannot open log file %s: %s\n", o->log_file, strerror(-rc));
            weir_engine_free(e);
            return NULL;
        }
    }
    return e;
}

/* Prints msg on stderr with secrets redacted. */
static void weir_cli_print_error(weir_engine *e, const char *prefix, const char *msg) {
    size_t len;
    char *clean = weir_log_redact(e->log, msg, strlen(msg), &len);
    fprintf(stderr, "%s%s\n", prefix, clean ? clean : msg);
    free(clean);
}

static char *weir_cli_dirname(const char *path) {
    char *d = strdup(path);
    char *slash;
    if (!d) return NULL;
    slash = strrchr(d, '/');
    if (!slash) { free(d); return strdup("."); }
    if (slash == d) slash[1] = '\0';
    else *slash = '\0';
    return d;
}

static const char *weir_cli_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- run ---- */

typedef struct weir_cli_run {
    weir_engine *e;
    weir_cli_opts *o;
    int exit_code;
    int finished;
} weir_cli_run;

struct weir_cli_params_ctx {
    lua_State *co;
    weir_cli_opts *o;
};

static int weir_cli_push_params(lua_State *L) {
    struct weir_cli_params_ctx *ctx = lua_touserdata(L, 1);
    int i;
    (void)L;
    lua_createtable(ctx->co, 0, ctx->o->nsets);
    for (i = 0; i < ctx->o->nsets; i++) {
        const char *kv = ctx->o->sets[i];
        const char *eq = strchr(kv, '=');
        lua_pushlstring(ctx->co, kv, (size_t)(eq - kv));
        lua_pushstring(ctx->co, eq + 1);
        lua_rawset(ctx->co, -3);
    }
    return 0;
}

struct weir_cli_print_ctx {
    weir_job *job;
};

/* Prints the job's results as JSON lines (protected: encoding raises). */
static int weir_cli_print_results(lua_State *L) {
    struct weir_cli_print_ctx *ctx = lua_touserdata(L, 1);
    lua_State *co = ctx->job->co;
    int n = ctx->job->nres, top = lua_gettop(co), i;
    for (i = top - n + 1; i <= top; i++) {
        if (lua_isnil(co, i)) continue;
        lua_pushvalue(co, i);
        lua_xmove(co, L, 1);
        weir_json_encode(L, -1, WEIR_JSON_SORT_KEYS);
        fwrite(lua_tostring(L, -1), 1, lua_rawlen(L, -1), stdout);
        fputc('\n', stdout);
        lua_pop(L, 2);
    }
    fflush(stdout);
    return 0;
}

static void weir_cli_run_done(weir_job *job, void *data) {
    weir_cli_run *r = data;
    r->finished = 1;
    if (job->status == WEIR_JOB_DONE) {
        struct weir_cli_print_ctx ctx = {job};
        char err[512];
        r->exit_code = WEIR_EXIT_OK;
        if (weir_state_pcall(job->st, weir_cli_print_results, &ctx, err, sizeof err) != LUA_OK) {
            weir_cli_print_error(r->e, "weir: cannot print the result: ", err);
            r->exit_code = WEIR_EXIT_FAIL;
        }
    } else {
        weir_cli_print_error(r->e, "", job->error ? job->error : "job failed");
        r->exit_code = WEIR_EXIT_FAIL;
    }
    /* stop the loop even if spawned tasks are still running */
    uv_stop(r->e->loop);
}

static const char weir_cli_run_boot[] =
    "local chunk, params = ...\n"
    "local results = table.pack(chunk(params))\n"
    "require('weir.cursor').commit()\n"
    "return table.unpack(results, 1, results.n)\n";

typedef struct {
    int done, failed;
} weir_cli_wait;

static void weir_cli_store_done(void *ud, weir_store_rows *res, int n, const char *err) {
    weir_cli_wait *w = ud;
    (void)res; (void)n;
    w->done = 1;
    if (err) w->failed = 1;
}

/* Records the run in the store's history (after the loop stopped, so the
 * synchronous store call may run the loop again).  A store that cannot
 * be opened costs a warning, never the script's exit status. */
static void weir_cli_record_run(weir_engine *e, weir_state *st, weir_job *job, int64_t started) {
    weir_run_record rec;
    char *err = NULL, *clean = NULL;
    weir_cli_wait w = {0, 0};
    weir_store *store = weir_store_of_engine(e, &err);
    if (!store) {
        fprintf(stderr, "weir: warning: run not recorded: %s\n", err ? err : "no store");
        free(err);
        return;
    }
    memset(&rec, 0, sizeof rec);
    rec.recipe = st->name;
    rec.job = "main";
    rec.trigger = "manual";
    rec.attempt = 1;
    rec.started_at = started;
    rec.ended_at = weir_store_now_ms();
    rec.status = job->status == WEIR_JOB_DONE ? "succeeded" : "failed";
    if (job->status == WEIR_JOB_DONE || job->status == WEIR_JOB_FAILED)
        weir_lib_get_counts(st->L, job, &rec.counts);
    if (job->error) {
        clean = weir_log_redact(e->log, job->error, strlen(job->error), NULL);
        rec.error = clean ? clean : "(error not recorded: out of memory)";
    } else if (job->status != WEIR_JOB_DONE) {
        rec.error = "did not finish";
    }
    if (weir_runs_insert(store, &rec, weir_cli_store_done, &w) != 0) w.failed = 1;
    else while (!w.done) uv_run(e->loop, UV_RUN_ONCE);
    if (w.failed) fprintf(stderr, "weir: warning: run not recorded in %s\n", weir_store_location(store));
    free(clean);
}

/* ---- recipes: check and run DIR ---- */

static weir_recipe *weir_cli_load_recipe(weir_engine *e, const char *dir) {
    char *errors = NULL;
    weir_recipe *r = weir_recipe_load(e, dir, &errors);
    if (!r) {
        weir_cli_print_error(e, "", errors ? errors : "cannot load the recipe");
        free(errors);
    }
    return r;
}

static int weir_cli_cmd_check(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_engine *e;
    weir_recipe *r;
    int rc = weir_cli_parse("check", argc, argv, &o, 0, 0);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    if (o.npaths != 1) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("check", "%s", "expects exactly one recipe DIR");
    }
    e = weir_cli_engine(&o);
    if (!e) { weir_cli_opts_free(&o); return WEIR_EXIT_FAIL; }
    r = weir_cli_load_recipe(e, o.paths[0]);
    if (r) {
        char *sum = weir_recipe_summary(r);
        puts(sum ? sum : "ok");
        free(sum);
        weir_recipe_free(r);
    }
    weir_engine_free(e);
    weir_cli_opts_free(&o);
    return r ? WEIR_EXIT_OK : WEIR_EXIT_FAIL;
}

typedef struct {
    weir_engine *e;
    weir_runner *rn;
    uv_signal_t sigterm, sigint;
    uv_timer_t progress;
    int progress_on;
    uint64_t progress_t0;
    int signals;
    int stopped;
    int interrupts;
} weir_cli_daemon;

/* A live status line for people watching a terminal (logs below warn
 * are held back then; with stderr not a terminal, logs stay JSON lines). */
static void weir_cli_progress_tick(uv_timer_t *t) {
    weir_cli_daemon *d = t->data;
    const weir_runner_stats *s = weir_runner_get_stats(d->rn);
    double secs = (double)(uv_hrtime() - d->progress_t0) / 1e9;
    fprintf(stderr, "\r\033[K[weir] %.0fs  running %d  done %lld  retries %lld  dead %lld  "
                    "records %lld (%.1f/s)", secs, s->running, s->succeeded, s->retried, s->dead,
            s->records_read, secs > 0 ? (double)s->records_read / secs : 0.0);
    fflush(stderr);
}

static void weir_cli_daemon_stopped(void *ud) {
    weir_cli_daemon *d = ud;
    d->stopped = 1;
    if (d->progress_on) {
        weir_cli_progress_tick(&d->progress);
        fputc('\n', stderr);
        uv_timer_stop(&d->progress);
        uv_close((uv_handle_t *)&d->progress, NULL);
        d->progress_on = 0;
    }
    if (d->signals) {
        uv_close((uv_handle_t *)&d->sigterm, NULL);
        uv_close((uv_handle_t *)&d->sigint, NULL);
        d->signals = 0;
    }
}

static void weir_cli_daemon_signal(uv_signal_t *h, int signum) {
    weir_cli_daemon *d = h->data;
    if (signum == SIGINT && ++d->interrupts >= 2) {
        fprintf(stderr, "weir: second interrupt: exiting now\n");
        _exit(130);
    }
    weir_log_write(d->e->log, WEIR_LOG_INFO, NULL, NULL,
                   signum == SIGTERM ? "SIGTERM: stopping (in-flight jobs get the grace period)"
                                     : "SIGINT: stopping (interrupt again to exit at once)", NULL);
    weir_runner_stop(d->rn, weir_cli_daemon_stopped, d);
}

static int weir_cli_run_recipe(weir_cli_opts *o, const char *dir) {
    weir_cli_daemon d;
    weir_runner_opts ro;
    weir_recipe *r;
    weir_queue *q = NULL;
    char *params = NULL, *errors = NULL, *err = NULL;
    int status = WEIR_EXIT_FAIL;
    memset(&d, 0, sizeof d);
    d.e = weir_cli_engine(o);
    if (!d.e) return WEIR_EXIT_FAIL;
    r = weir_cli_load_recipe(d.e, dir);
    if (!r) goto out;
    params = weir_recipe_params_json(d.e, r, o->sets, o->nsets, &errors);
    if (!params || weir_recipe_apply_params(r, params, &errors) != 0) {
        weir_cli_print_error(d.e, "", errors ? errors : "invalid parameters");
        weir_recipe_free(r);
        goto out;
    }
    if (o->job && !weir_recipe_find_job(r, o->job)) {
        fprintf(stderr, "weir run: recipe %s has no job '%s'\n", r->name, o->job);
        weir_recipe_free(r);
        goto out;
    }
    q = weir_queue_open(d.e, NULL, &err);
    if (!q) {
        fprintf(stderr, "weir run: %s\n", err ? err : "cannot open the queue");
        weir_recipe_free(r);
        goto out;
    }
    memset(&ro, 0, sizeof ro);
    ro.once = o->once;
    ro.only_job = o->job;
    ro.payload_json = o->payload;
    ro.grace_s = o->grace;
    ro.lease_ms = (int64_t)(o->lease * 1000.0);
    d.rn = weir_runner_new(d.e, r, params, q, &ro, &err);   /* owns r and params */
    params = NULL;
    if (!d.rn) {
        fprintf(stderr, "weir run: %s\n", err ? err : "cannot start");
        goto out;
    }
    if (weir_runner_start(d.rn, &err) != 0) {
        fprintf(stderr, "weir run: %s\n", err ? err : "cannot start");
        weir_runner_stop(d.rn, weir_cli_daemon_stopped, &d);
        weir_engine_run(d.e);
        goto out;
    }
    uv_signal_init(d.e->loop, &d.sigterm);
    uv_signal_init(d.e->loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, weir_cli_daemon_signal, SIGTERM);
    uv_signal_start(&d.sigint, weir_cli_daemon_signal, SIGINT);
    d.signals = 1;
    if (isatty(STDERR_FILENO) && !o->log_file && !getenv("WEIR_LOG_LEVEL") && !o->log_level_set) {
        weir_log_set_level(d.e->log, WEIR_LOG_WARN);
        uv_timer_init(d.e->loop, &d.progress);
        d.progress.data = &d;
        d.progress_t0 = uv_hrtime();
        uv_timer_start(&d.progress, weir_cli_progress_tick, 0, 500);
        d.progress_on = 1;
    }
    /* --once / --job stop by themselves; the runner calls on_stopped */
    if (o->once || o->job) weir_runner_stop_when_done(d.rn, weir_cli_daemon_stopped, &d);
    weir_engine_run(d.e);
    if (!d.stopped) {
        fprintf(stderr, "weir run: the loop ended before the runner stopped\n");
    } else {
        const weir_runner_stats *s = weir_runner_get_stats(d.rn);
        status = (o->once || o->job) ? (weir_runner_exit_status(d.rn) ? WEIR_EXIT_FAIL : WEIR_EXIT_OK)
                                     : WEIR_EXIT_OK;
        fprintf(stderr, "weir: %s: %lld started, %lld succeeded, %lld retried, %lld dead-lettered,"
                        " %lld released\n", dir, s->started, s->succeeded, s->retried, s->dead,
                s->released);
    }
out:
    if (d.signals) {
        uv_close((uv_handle_t *)&d.sigterm, NULL);
        uv_close((uv_handle_t *)&d.sigint, NULL);
        uv_run(d.e->loop, UV_RUN_NOWAIT);
    }
    weir_runner_free(d.rn);
    if (q) q->vt->close(q);
    free(params);
    free(errors);
    free(err);
    weir_engine_free(d.e);
    return status;
}

static int weir_cli_cmd_run(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_cli_run r = {0};
    weir_state *st;
    weir_job *job;
    struct stat sb;
    const char *path, *err = NULL;
    char *dir;
    int64_t started;
    int rc = weir_cli_parse("run", argc, argv, &o, 1, 0);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    if (o.npaths != 1) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("run", "%s", "expects exactly one FILE.lua (or recipe DIR)");
    }
    path = o.paths[0];
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "weir run: cannot open %s: %s\n", path, strerror(errno));
        weir_cli_opts_free(&o);
        return WEIR_EXIT_FAIL;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = weir_cli_run_recipe(&o, path);
        weir_cli_opts_free(&o);
        return rc;
    }
    if (o.once || o.job || o.payload) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("run", "%s", "--once, --job and --payload are for recipe directories");
    }
    r.o = &o;
    r.e = weir_cli_engine(&o);
    r.exit_code = WEIR_EXIT_FAIL;
    if (!r.e) { weir_cli_opts_free(&o); return WEIR_EXIT_FAIL; }
    dir = weir_cli_dirname(path);
    st = dir ? weir_state_new(r.e, weir_cli_basename(path), (const char *const *)&dir, 1, &err)
             : NULL;
    free(dir);
    if (!st) {
        fprintf(stderr, "weir: cannot create the Lua state: %s\n", err ? err : "out of memory");
        goto out;
    }
    job = weir_job_new(st);
    if (!job) {
        fprintf(stderr, "weir: cannot create the job: out of memory\n");
        goto out;
    }
    /* the boot chunk runs the script, then commits the cursors it moved:
     * a failed script never advances a cursor */
    if (weir_state_load_buffer(st, job->co, weir_cli_run_boot, sizeof weir_cli_run_boot - 1,
                               "=weir run") != LUA_OK ||
        weir_state_load_file(st, job->co, path) != LUA_OK) {
        weir_cli_print_error(r.e, "", lua_tostring(job->co, -1));
        weir_job_release(job);
        goto out;
    }
    {
        struct weir_cli_params_ctx pctx = {job->co, &o};
        if (weir_state_pcall(st, weir_cli_push_params, &pctx, NULL, 0) != LUA_OK) {
            fprintf(stderr, "weir: out of memory building params\n");
            weir_job_release(job);
            goto out;
        }
    }
    started = weir_store_now_ms();
    weir_job_start(job, 2, weir_cli_run_done, &r);
    weir_engine_run(r.e);
    if (!r.finished) {
        fprintf(stderr, "weir: %s: the job is waiting on %s but nothing can complete it "
                        "(deadlock)\n", path,
                job->op && job->op->what ? job->op->what : "an engine call");
        r.exit_code = WEIR_EXIT_FAIL;
    }
    weir_cli_record_run(r.e, st, job, started);
    weir_job_release(job);
out:
    weir_engine_free(r.e);
    weir_cli_opts_free(&o);
    return r.exit_code;
}

/* ---- test ---- */

typedef struct weir_cli_files {
    char **v;
    size_t n, cap;
} weir_cli_files;

static int weir_cli_files_add(weir_cli_files *f, const char *path) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        char **p = realloc(f->v, cap * sizeof *p);
        if (!p) return -1;
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n] = strdup(path);
    return f->v[f->n] ? (int)f->n++ * 0 : -1;
}

static int weir_cli_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int weir_cli_strcmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int weir_cli_collect(weir_cli_files *f, const char *path, int depth) {
    struct stat sb;
    DIR *d;
    struct dirent *de;
    if (depth > 32) return 0;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) return weir_cli_files_add(f, path);
    d = opendir(path);
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        char child[PATH_MAX];
        struct stat cs;
        if (de->d_name[0] == '.') continue;
        snprintf(child, sizeof child, "%s/%s", path, de->d_name);
        if (stat(child, &cs) != 0) continue;
        if (S_ISDIR(cs.st_mode)) weir_cli_collect(f, child, depth + 1);
        else if (weir_cli_ends_with(de->d_name, "_spec.lua")) weir_cli_files_add(f, child);
    }
    closedir(d);
    return 0;
}

static const char weir_cli_test_boot[] =
    "local chunk, env, path, opts = ...\n"
    "local spec = require 'weir.spec'\n"
    "return spec.run_file(chunk, env, path, opts)\n";

typedef struct weir_cli_test {
    weir_engine *e;
    long passed, failed;
    int finished;
} weir_cli_test;

static void weir_cli_test_done(weir_job *job, void *data) {
    weir_cli_test *t = data;
    t->finished = 1;
    if (job->status == WEIR_JOB_DONE && job->nres >= 2) {
        int top = lua_gettop(job->co);
        t->passed += (long)lua_tointeger(job->co, top - job->nres + 1);
        t->failed += (long)lua_tointeger(job->co, top - job->nres + 2);
    } else {
        weir_cli_print_error(t->e, "FAIL (spec runner) ",
                             job->error ? job->error : "the spec file did not report results");
        t->failed++;
    }
    uv_stop(t->e->loop);
}

struct weir_cli_test_args {
    lua_State *co;
    const char *path;
    weir_cli_opts *o;
};

/* co: boot chunk, file chunk -> boot chunk, file chunk, env, path, opts */
static int weir_cli_test_push_args(lua_State *L) {
    struct weir_cli_test_args *a = lua_touserdata(L, 1);
    lua_State *co = a->co;
    (void)L;
    lua_getupvalue(co, -1, 1);               /* the chunk's env */
    lua_pushstring(co, a->path);
    lua_createtable(co, 0, 2);
    if (a->o->filter) {
        lua_pushstring(co, a->o->filter);
        lua_setfield(co, -2, "filter");
    }
    lua_pushboolean(co, a->o->verbose);
    lua_setfield(co, -2, "verbose");
    return 0;
}

static void weir_cli_test_file(weir_cli_test *t, weir_cli_opts *o, const char *path) {
    const char *err = NULL;
    char *dir = weir_cli_dirname(path);
    weir_state *st = dir ? weir_state_new(t->e, weir_cli_basename(path),
                                          (const char *const *)&dir, 1, &err) : NULL;
    weir_job *job;
    struct weir_cli_test_args args = {NULL, path, o};
    free(dir);
    if (!st) {
        fprintf(stderr, "FAIL %s: cannot create a Lua state: %s\n", path, err ? err : "out of memory");
        t->failed++;
        return;
    }
    job = weir_job_new(st);
    if (!job) {
        fprintf(stderr, "FAIL %s: cannot create a job\n", path);
        t->failed++;
        weir_state_free(st);
        return;
    }
    if (weir_state_load_buffer(st, job->co, weir_cli_test_boot, sizeof weir_cli_test_boot - 1,
                               "=weir test") != LUA_OK ||
        weir_state_load_file(st, job->co, path) != LUA_OK) {
        weir_cli_print_error(t->e, "FAIL ", lua_tostring(job->co, -1));
        t->failed++;
        weir_job_release(job);
        weir_state_free(st);
        return;
    }
    args.co = job->co;
    if (weir_state_pcall(st, weir_cli_test_push_args, &args, NULL, 0) != LUA_OK) {
        fprintf(stderr, "FAIL %s: out of memory\n", path);
        t->failed++;
        weir_job_release(job);
        weir_state_free(st);
        return;
    }
    t->finished = 0;
    weir_job_start(job, 4, weir_cli_test_done, t);
    weir_engine_run(t->e);
    if (!t->finished) {
        fprintf(stderr, "FAIL %s: the spec job is waiting on %s but nothing can complete it "
                        "(deadlock)\n", path,
                job->op && job->op->what ? job->op->what : "an engine call");
        t->failed++;
    }
    weir_job_release(job);
    weir_state_free(st);
}

static int weir_cli_cmd_test(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_cli_files files = {0};
    weir_cli_test t = {0};
    size_t i;
    int rc = weir_cli_parse("test", argc, argv, &o, 0, 1);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    if (o.npaths == 0) o.paths[o.npaths++] = "tests";
    for (i = 0; i < (size_t)o.npaths; i++) {
        if (weir_cli_collect(&files, o.paths[i], 0) != 0) {
            fprintf(stderr, "weir test: cannot read %s: %s\n", o.paths[i], strerror(errno));
            rc = WEIR_EXIT_FAIL;
        }
    }
    if (files.n == 0) {
        fprintf(stderr, "weir test: no *_spec.lua files found\n");
        printf("0 passed, 0 failed\n");
        weir_cli_opts_free(&o);
        free(files.v);
        return WEIR_EXIT_FAIL;
    }
    qsort(files.v, files.n, sizeof *files.v, weir_cli_strcmp);
    t.e = weir_cli_engine(&o);
    if (t.e) {
        for (i = 0; i < files.n; i++) weir_cli_test_file(&t, &o, files.v[i]);
        weir_engine_free(t.e);
    } else {
        rc = WEIR_EXIT_FAIL;
    }
    for (i = 0; i < files.n; i++) free(files.v[i]);
    free(files.v);
    weir_cli_opts_free(&o);
    printf("%ld passed, %ld failed\n", t.passed, t.failed);
    fflush(stdout);
    if (rc) return rc;
    return (t.failed == 0 && t.passed > 0) ? WEIR_EXIT_OK : WEIR_EXIT_FAIL;
}

/* ---- runs / cursor ---- */

typedef struct {
    weir_cli_opts *o;
    int done, failed;
    long nrows;
} weir_cli_listing;

static void weir_cli_json_str(const char *s) {
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* Prints rows as JSON lines (--json) or as an aligned table. */
static void weir_cli_print_rows(void *ud, weir_store_rows *res, int n, const char *err) {
    weir_cli_listing *l = ud;
    weir_store_rows *r = &res[n - 1];
    int i, c;
    l->done = 1;
    if (err) {
        fprintf(stderr, "weir: %s\n", err);
        l->failed = 1;
        return;
    }
    l->nrows = r->nrows;
    for (i = 0; i < r->nrows; i++) {
        if (l->o->json) {
            putchar('{');
            for (c = 0; c < r->ncols; c++) {
                const char *v = r->cells[i * r->ncols + c];
                if (c) putchar(',');
                weir_cli_json_str(r->names[c]);
                putchar(':');
                if (!v) fputs("null", stdout);
                else weir_cli_json_str(v);
            }
            puts("}");
        } else {
            for (c = 0; c < r->ncols; c++) {
                const char *v = r->cells[i * r->ncols + c];
                int len = v ? (int)strcspn(v, "\n") : 1;   /* first line only */
                printf("%s%s=%.*s", c ? "  " : "", r->names[c], len, v ? v : "-");
            }
            putchar('\n');
        }
    }
}

/* Opens the store of the engine for a CLI command, or prints why not. */
static weir_store *weir_cli_store(weir_engine *e) {
    char *err = NULL;
    weir_store *s = weir_store_of_engine(e, &err);
    if (!s) {
        fprintf(stderr, "weir: %s\n", err ? err : "cannot open the store");
        free(err);
    }
    return s;
}

static int weir_cli_cmd_runs(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_cli_listing l = {0};
    weir_engine *e;
    weir_store *s;
    int rc = weir_cli_parse("runs", argc, argv, &o, 0, 2);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    if (o.npaths > 1) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("runs", "%s", "expects at most one RECIPE");
    }
    l.o = &o;
    e = weir_cli_engine(&o);
    if (!e) { weir_cli_opts_free(&o); return WEIR_EXIT_FAIL; }
    s = weir_cli_store(e);
    if (s && weir_runs_list(s, o.npaths ? o.paths[0] : NULL, o.failed_only, o.limit, weir_cli_print_rows, &l) == 0) {
        while (!l.done) uv_run(e->loop, UV_RUN_ONCE);
    } else {
        l.failed = 1;
    }
    if (!l.failed && !o.json && l.nrows == 0) fprintf(stderr, "weir runs: no runs recorded\n");
    weir_engine_free(e);
    weir_cli_opts_free(&o);
    return l.failed ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
}

static int weir_cli_cmd_cursor(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_cli_listing l = {0};
    weir_engine *e;
    weir_store *s;
    weir_store_stmt stmt;
    const char *params[2];
    int show, rc = weir_cli_parse("cursor", argc, argv, &o, 0, 2);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    if (o.npaths < 2 || o.npaths > 3 ||
        (strcmp(o.paths[0], "show") != 0 && strcmp(o.paths[0], "reset") != 0)) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("cursor", "%s", "expects: show|reset RECIPE [SOURCE]");
    }
    show = strcmp(o.paths[0], "show") == 0;
    params[0] = o.paths[1];
    params[1] = o.npaths == 3 ? o.paths[2] : NULL;
    stmt.sql = show ? "SELECT source, value, updated_at FROM cursors WHERE recipe = $1"
                      " AND (CAST($2 AS TEXT) IS NULL OR source = $2) ORDER BY source"
                    : "DELETE FROM cursors WHERE recipe = $1"
                      " AND (CAST($2 AS TEXT) IS NULL OR source = $2)";
    stmt.nparams = 2;
    stmt.params = params;
    l.o = &o;
    e = weir_cli_engine(&o);
    if (!e) { weir_cli_opts_free(&o); return WEIR_EXIT_FAIL; }
    s = weir_cli_store(e);
    if (s && weir_store_exec(s, &stmt, 1, weir_cli_print_rows, &l) == 0) {
        while (!l.done) uv_run(e->loop, UV_RUN_ONCE);
    } else {
        l.failed = 1;
    }
    if (!l.failed && show && l.nrows == 0 && !o.json)
        fprintf(stderr, "weir cursor: no cursor for %s%s%s\n", o.paths[1],
                params[1] ? " / " : "", params[1] ? params[1] : "");
    if (!l.failed && !show) printf("reset %s%s%s\n", o.paths[1], params[1] ? " / " : "",
                                   params[1] ? params[1] : " (all sources)");
    weir_engine_free(e);
    weir_cli_opts_free(&o);
    return l.failed ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
}

/* ---- dlq ---- */

typedef struct {
    weir_cli_opts *o;
    int done, failed, n;
    int show;
} weir_cli_dlq;

static void weir_cli_dlq_print(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_cli_dlq *d = ud;
    int i;
    d->done = 1;
    d->n = n;
    if (err) {
        fprintf(stderr, "weir dlq: %s\n", err);
        d->failed = 1;
        return;
    }
    for (i = 0; i < n; i++) {
        weir_queue_item *it = &items[i];
        if (d->o->json || d->show) {
            printf("{\"id\":");
            weir_cli_json_str(it->id);
            printf(",\"recipe\":");
            weir_cli_json_str(it->recipe);
            printf(",\"job\":");
            weir_cli_json_str(it->job);
            printf(",\"trigger\":");
            weir_cli_json_str(it->trigger);
            printf(",\"attempts\":%d,\"first_at\":%lld,\"failed_at\":%lld,\"payload\":%s,\"error\":",
                   it->attempt, (long long)it->first_at, (long long)it->run_at,
                   it->payload ? it->payload : "null");
            weir_cli_json_str(it->last_error ? it->last_error : "");
            puts("}");
        } else {
            int len = it->last_error ? (int)strcspn(it->last_error, "\n") : 0;
            printf("%s  %s/%s  attempts=%d  error=%.*s\n", it->id, it->recipe, it->job,
                   it->attempt, len, it->last_error ? it->last_error : "");
        }
    }
}

static void weir_cli_dlq_changed(void *ud, const char *err, weir_queue_item *items, int n) {
    weir_cli_dlq *d = ud;
    (void)items;
    d->done = 1;
    d->n = n;
    if (err) {
        fprintf(stderr, "weir dlq: %s\n", err);
        d->failed = 1;
    }
}

static int weir_cli_cmd_dlq(int argc, char **argv) {
    weir_cli_opts o = {0};
    weir_cli_dlq d = {0};
    weir_engine *e;
    weir_queue *q;
    char *err = NULL;
    const char *action;
    int rc = weir_cli_parse("dlq", argc, argv, &o, 0, 2);
    if (rc < 0) { weir_cli_opts_free(&o); return -1; }
    if (rc) { weir_cli_opts_free(&o); return rc; }
    action = o.npaths ? o.paths[0] : "";
    if (!((strcmp(action, "list") == 0 && o.npaths <= 2) ||
          ((strcmp(action, "show") == 0 || strcmp(action, "replay") == 0 ||
            strcmp(action, "drop") == 0) && o.npaths == 2))) {
        weir_cli_opts_free(&o);
        return weir_cli_usage_error("dlq", "%s", "expects: list [RECIPE] | show ID | replay ID | drop ID");
    }
    d.o = &o;
    e = weir_cli_engine(&o);
    if (!e) { weir_cli_opts_free(&o); return WEIR_EXIT_FAIL; }
    q = weir_queue_open(e, NULL, &err);
    if (!q) {
        fprintf(stderr, "weir dlq: %s\n", err ? err : "cannot open the queue");
        free(err);
        weir_engine_free(e);
        weir_cli_opts_free(&o);
        return WEIR_EXIT_FAIL;
    }
    if (strcmp(action, "list") == 0) {
        rc = q->vt->dlq_list(q, o.npaths == 2 ? o.paths[1] : NULL, o.limit, weir_cli_dlq_print, &d);
    } else if (strcmp(action, "show") == 0) {
        d.show = 1;
        rc = q->vt->dlq_get(q, o.paths[1], weir_cli_dlq_print, &d);
    } else if (strcmp(action, "replay") == 0) {
        rc = q->vt->dlq_replay(q, o.paths[1], weir_cli_dlq_changed, &d);
    } else {
        rc = q->vt->dlq_drop(q, o.paths[1], weir_cli_dlq_changed, &d);
    }
    if (weir_queue_wait(q, rc, &d.done) != 0) d.failed = 1;
    if (!d.failed) {
        if (strcmp(action, "list") == 0 && d.n == 0 && !o.json)
            fprintf(stderr, "weir dlq: no dead letters\n");
        else if (strcmp(action, "list") != 0 && d.n == 0) {
            fprintf(stderr, "weir dlq: no dead letter with id %s\n", o.paths[1]);
            d.failed = 1;
        } else if (strcmp(action, "replay") == 0)
            printf("replayed %s: queued again as a new attempt 1\n", o.paths[1]);
        else if (strcmp(action, "drop") == 0)
            printf("dropped %s\n", o.paths[1]);
    }
    q->vt->close(q);
    weir_engine_free(e);
    weir_cli_opts_free(&o);
    return d.failed ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
}

/* ---- version / help ---- */

static int weir_cli_cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("weir %s (%s, libuv %s)\n", WEIR_VERSION, LUA_RELEASE, uv_version_string());
    return WEIR_EXIT_OK;
}

static int weir_cli_cmd_help(int argc, char **argv);

static const weir_cli_cmd weir_cli_cmds[] = {
    {"run", "run a Lua script as one job, or a recipe directory",
     "usage: weir run FILE.lua [--set key=value ...] [options]\n"
     "       weir run DIR [--set key=value ...] [--once | --job NAME [--payload JSON]] [--grace DUR]\n"
     "\n"
     "With a recipe DIR: runs its jobs from their triggers until SIGTERM / SIGINT\n"
     "(in-flight jobs get --grace, default 30s; queue leases last --lease, default\n"
     "30s, renewed every third); --once runs every scheduled job\n"
     "once (with retries) and exits 0 when all succeeded; --job runs one job once.\n"
     "\n"
     "Runs FILE.lua as one job in a fresh sandboxed state.  The chunk receives a\n"
     "params table built from --set as its first argument (local params = ...).\n"
     "Non-nil return values are printed to stdout as JSON, one per line.\n"
     "Exit status: 0 success, 1 the script failed (error on stderr), 2 usage.\n"
     "\n"
     "options:\n"
     "  --set, -s key=value   add a parameter (repeatable)\n"
     "  --mem-limit SIZE      memory cap of the Lua state (default 256m)\n"
     "  --cpu-limit MS        max run time without yielding (default 5000)\n"
     "  --log-level LEVEL     debug | info | warn | error (default info)\n"
     "  --log-file FILE       append JSON-lines logs to FILE (default stderr)\n",
     weir_cli_cmd_run},
    {"check", "validate a recipe directory without running it",
     "usage: weir check DIR\n"
     "\n"
     "Loads DIR/recipe.lua and its handler modules in a sandbox and validates\n"
     "every field.  Prints 'ok: NAME VERSION: N jobs, M params' (exit 0) or every\n"
     "problem as FILE:LINE: field: what is wrong (exit 1).\n",
     weir_cli_cmd_check},
    {"test", "run *_spec.lua files",
     "usage: weir test [PATH ...] [--filter TEXT] [--verbose]\n"
     "\n"
     "Runs every *_spec.lua under the given files or directories (default: tests),\n"
     "each in its own sandboxed state, and prints 'N passed, N failed'.\n"
     "Exit status: 0 when nothing failed and at least one test ran, else 1.\n"
     "\n"
     "options:\n"
     "  --filter TEXT         run only tests whose full name contains TEXT\n"
     "  --verbose, -v         add failure positions and per-file counts\n"
     "  --mem-limit SIZE, --cpu-limit MS, --log-level LEVEL as for 'weir run'\n",
     weir_cli_cmd_test},
    {"runs", "list recorded job runs",
     "usage: weir runs [RECIPE] [--failed] [--limit N] [--json] [--store URL]\n"
     "\n"
     "Lists runs from the state store, newest first (default 20).\n"
     "  --failed              only failed and dead-lettered runs\n"
     "  --limit N             at most N runs\n"
     "  --json                one JSON object per line\n"
     "  --store URL           the store (default: $WEIR_STORE_URL, else SQLite in $WEIR_DATA_DIR)\n",
     weir_cli_cmd_runs},
    {"cursor", "show or reset a recipe's cursors",
     "usage: weir cursor show|reset RECIPE [SOURCE] [--json] [--store URL]\n"
     "\n"
     "show prints the committed cursors of RECIPE (one SOURCE, or all);\n"
     "reset deletes them, so the next run starts from the beginning.\n",
     weir_cli_cmd_cursor},
    {"dlq", "list, show, replay or drop dead-lettered jobs",
     "usage: weir dlq list [RECIPE] [--limit N] [--json]\n"
     "       weir dlq show ID\n"
     "       weir dlq replay ID     queue it again (attempt 1, current script version)\n"
     "       weir dlq drop ID\n",
     weir_cli_cmd_dlq},
    {"version", "print the version", "usage: weir version\n", weir_cli_cmd_version},
    {"help", "show help for a command", "usage: weir help [COMMAND]\n", weir_cli_cmd_help},
    {NULL, NULL, NULL, NULL}};

static void weir_cli_print_overview(FILE *out) {
    const weir_cli_cmd *c;
    fprintf(out, "weir %s -- a Lua-scriptable integration engine\n\n"
                 "usage: weir COMMAND [ARGS]\n\ncommands:\n", WEIR_VERSION);
    for (c = weir_cli_cmds; c->name; c++) fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\nRun 'weir help COMMAND' for a command's options.\n"
                 "Environment: WEIR_ENV_ALLOW, WEIR_LOG_LEVEL, WEIR_LOG_FILE, WEIR_MEM_LIMIT,\n"
                 "WEIR_CPU_LIMIT_MS, WEIR_CA_BUNDLE, WEIR_LIB_PATH, WEIR_CONNECTORS_PATH,\n"
                 "WEIR_DATA_DIR, WEIR_STORE_URL.\n");
}

static const weir_cli_cmd *weir_cli_find(const char *name) {
    const weir_cli_cmd *c;
    for (c = weir_cli_cmds; c->name; c++)
        if (strcmp(c->name, name) == 0) return c;
    return NULL;
}

static size_t weir_cli_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t row[64];
    if (la >= 63 || lb >= 63) return 99;
    for (j = 0; j <= lb; j++) row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t prev = row[0], cur;
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur = row[j];
            row[j] = row[j] + 1;
            if (row[j - 1] + 1 < row[j]) row[j] = row[j - 1] + 1;
            if (prev + cost < row[j]) row[j] = prev + cost;
            prev = cur;
        }
    }
    return row[lb];
}

static const char *weir_cli_suggest(const char *name) {
    const weir_cli_cmd *c, *best = NULL;
    size_t bestd = 3;
    for (c = weir_cli_cmds; c->name; c++) {
        size_t d = weir_cli_distance(name, c->name);
        if (d < bestd || (strncmp(c->name, name, strlen(name)) == 0 && strlen(name) >= 2)) {
            bestd = d;
            best = c;
        }
    }
    return best ? best->name : NULL;
}

static int weir_cli_unknown(const char *what, const char *name) {
    const char *s = weir_cli_suggest(name);
    fprintf(stderr, "weir: unknown %s '%s'.", what, name);
    if (s) fprintf(stderr, " Did you mean '%s'?", s);
    fprintf(stderr, "\nRun 'weir --help' for the list of commands.\n");
    return WEIR_EXIT_USAGE;
}

static int weir_cli_cmd_help(int argc, char **argv) {
    const weir_cli_cmd *c;
    if (argc < 2) {
        weir_cli_print_overview(stdout);
        return WEIR_EXIT_OK;
    }
    c = weir_cli_find(argv[1]);
    if (!c) return weir_cli_unknown("command", argv[1]);
    fputs(c->usage, stdout);
    return WEIR_EXIT_OK;
}

int main(int argc, char **argv) {
    const weir_cli_cmd *c;
    int rc;
    if (argc < 2) {
        weir_cli_print_overview(stderr);
        return WEIR_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        weir_cli_print_overview(stdout);
        return WEIR_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return weir_cli_cmd_version(argc - 1, argv + 1);
    if (argv[1][0] == '-') return weir_cli_unknown("flag", argv[1]);
    c = weir_cli_find(argv[1]);
    if (!c) return weir_cli_unknown("command", argv[1]);
    rc = c->run(argc - 1, argv + 1);
    if (rc < 0) {               /* --help given to the command */
        fputs(c->usage, stdout);
        return WEIR_EXIT_OK;
    }
    return rc;
}
