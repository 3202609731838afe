/*
 * hostile_runner.c -- runs one hostile script of tests/sandbox next to a
 * healthy job in the same engine, then checks that nothing leaked.
 *
 *     hostile_runner path/to/script.lua
 *
 * The script's leading comments configure the run:
 *     -- expect: <substring>    required: the job must FAIL with this in
 *                               job->error
 *     -- limits: mem=64m cpu_ms=500   optional engine limits
 *     -- no-line                the error need not name file:line
 *
 * Steps, all in ONE engine:
 *   1. state B runs a healthy job (sleeps, JSON, string ops) that returns
 *      a checksum computed here independently;
 *   2. state A runs the hostile script as a job started at the same time;
 *      it must end FAILED with the expected substring, the script's
 *      file:line, and never a "LEAK:" message (scripts raise that when a
 *      forbidden thing worked);
 *   3. a fresh victim chunk runs in A and in B and checks the shared
 *      libraries are intact and no global the script planted (any
 *      identifier PWNED... in its source) is visible;
 *   4. the engine is freed (ASan checks leaks).
 * Exit 0 when all hold, 1 with the reasons on stderr.
 *
 * Two guards turn silent escapes into clear failures: an atexit handler
 * catches a script that managed to exit the process (os.exit would
 * otherwise "pass" with status 0), and an alarm catches a script that
 * wedged the engine in C code where no hook can reach it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "weir_engine.h"
#include "weir_job.h"
#include "weir_state.h"

#define HOSTILE_MAX_NAMES 64
#define HOSTILE_DEFAULT_WATCHDOG_S 30
#define HOSTILE_SECRET_VAR "WEIR_HOSTILE_SECRET"
#define HOSTILE_SECRET_VALUE "s3cret-from-hostile-runner"
#define HOSTILE_HEALTHY_ROUNDS 20

typedef struct hostile_spec {
    const char *path;
    char *source;
    size_t source_len;
    char *expect;               /* required substring of the error */
    size_t mem_limit;
    uint64_t cpu_limit_ms;
    int no_line;
    char *names[HOSTILE_MAX_NAMES]; /* PWNED... identifiers planted */
    int nnames;
} hostile_spec;

/* Files outside every require root, for the path-escape scripts. */
typedef struct hostile_outside {
    char dir[64];
    char file[128];             /* absolute path of a .lua file */
    char rel[PATH_MAX];         /* same, relative to the script's dir, no .lua */
    char script_dir[PATH_MAX];
} hostile_outside;

static int hostile_failures;
static volatile sig_atomic_t hostile_finished;
static char hostile_watchdog_msg[512];

/* ---- reporting ---------------------------------------------------- */

static void hostile_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void hostile_fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "hostile_runner: FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    hostile_failures++;
}

static void hostile_on_exit(void) {
    if (!hostile_finished) {
        static const char msg[] = "hostile_runner: FAIL: the process exited "
                                  "while the scripts ran (a script reached exit())\n";
        if (write(2, msg, sizeof msg - 1) < 0) { /* nothing left to do */ }
        _exit(1);
    }
}

static void hostile_on_alarm(int sig) {
    (void)sig;
    if (write(2, hostile_watchdog_msg, strlen(hostile_watchdog_msg)) < 0) { /* ignore */ }
    _exit(1);
}

static void hostile_arm_watchdog(const char *path) {
    const char *env = getenv("WEIR_HOSTILE_TIMEOUT_S");
    unsigned secs = env ? (unsigned)strtoul(env, NULL, 10) : HOSTILE_DEFAULT_WATCHDOG_S;
    if (secs == 0) secs = HOSTILE_DEFAULT_WATCHDOG_S;
    snprintf(hostile_watchdog_msg, sizeof hostile_watchdog_msg,
             "hostile_runner: FAIL: %s: the engine was still running after %u s: "
             "the script wedged it where neither the CPU cap nor the memory cap "
             "reaches (a long C loop?)\n", path, secs);
    signal(SIGALRM, hostile_on_alarm);
    alarm(secs);
}

/* ---- reading the script and its header ---------------------------- */

static char *hostile_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static char *hostile_trimmed_copy(const char *s, size_t n) {
    char *out;
    while (n > 0 && isspace((unsigned char)*s)) { s++; n--; }
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    out = malloc(n + 1);
    if (!out) return NULL;
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

/* "64m" -> bytes; 0 on a malformed size. */
static size_t hostile_parse_size(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (end == s || (*end && !isspace((unsigned char)*end))) return 0;
    return (size_t)v;
}

static int hostile_parse_limits(hostile_spec *spec, const char *s) {
    while (*s) {
        while (isspace((unsigned char)*s)) s++;
        if (strncmp(s, "mem=", 4) == 0) {
            spec->mem_limit = hostile_parse_size(s + 4);
            if (spec->mem_limit == 0) return -1;
        } else if (strncmp(s, "cpu_ms=", 7) == 0) {
            spec->cpu_limit_ms = strtoull(s + 7, NULL, 10);
            if (spec->cpu_limit_ms == 0) return -1;
        } else if (*s) {
            return -1;
        }
        while (*s && !isspace((unsigned char)*s)) s++;
    }
    return 0;
}

/* One "-- key: value" line of the leading comment block. */
static int hostile_parse_header_line(hostile_spec *spec, const char *line, size_t n) {
    const char *p = line + 2;   /* past "--" */
    size_t rest = n - 2;
    while (rest > 0 && (*p == ' ' || *p == '\t')) { p++; rest--; }
    if (rest >= 7 && strncmp(p, "expect:", 7) == 0) {
        free(spec->expect);
        spec->expect = hostile_trimmed_copy(p + 7, rest - 7);
        return spec->expect && *spec->expect ? 0 : -1;
    }
    if (rest >= 7 && strncmp(p, "limits:", 7) == 0) {
        char *limits = hostile_trimmed_copy(p + 7, rest - 7);
        int rc = limits ? hostile_parse_limits(spec, limits) : -1;
        free(limits);
        return rc;
    }
    if (rest >= 7 && strncmp(p, "no-line", 7) == 0) spec->no_line = 1;
    return 0;
}

static int hostile_parse_header(hostile_spec *spec) {
    const char *line = spec->source;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n < 2 || strncmp(line, "--", 2) != 0) break;
        if (hostile_parse_header_line(spec, line, n) != 0) {
            hostile_fail("%s: malformed header line", spec->path);
            return -1;
        }
        if (!eol) break;
        line = eol + 1;
    }
    if (!spec->expect) {
        hostile_fail("%s: no '-- expect: <substring>' header", spec->path);
        return -1;
    }
    return 0;
}

static int hostile_has_name(const hostile_spec *spec, const char *s, size_t n) {
    int i;
    for (i = 0; i < spec->nnames; i++)
        if (strlen(spec->names[i]) == n && memcmp(spec->names[i], s, n) == 0) return 1;
    return 0;
}

/* Every identifier starting with PWNED is a global or field the script
 * tries to plant somewhere; the victim checks none is visible. */
static void hostile_collect_names(hostile_spec *spec) {
    const char *p = spec->source;
    while ((p = strstr(p, "PWNED")) != NULL) {
        const char *end = p;
        size_t n;
        while (isalnum((unsigned char)*end) || *end == '_') end++;
        n = (size_t)(end - p);
        if (!hostile_has_name(spec, p, n) && spec->nnames < HOSTILE_MAX_NAMES) {
            char *name = malloc(n + 1);
            if (name) {
                memcpy(name, p, n);
                name[n] = '\0';
                spec->names[spec->nnames++] = name;
            }
        }
        p = end;
    }
}

static void hostile_spec_free(hostile_spec *spec) {
    int i;
    free(spec->source);
    free(spec->expect);
    for (i = 0; i < spec->nnames; i++) free(spec->names[i]);
}

/* ---- a file outside every require root ---------------------------- */

static int hostile_make_outside(hostile_outside *out, const char *script_path) {
    static const char body[] =
        "PWNED_OUTSIDE_FILE = true\n"
        "return 'LEAK: a file outside the require roots was loaded'\n";
    char resolved[PATH_MAX], *slash, *p;
    FILE *f;
    size_t used;

    if (!realpath(script_path, resolved)) return -1;
    slash = strrchr(resolved, '/');
    *slash = '\0';
    snprintf(out->script_dir, sizeof out->script_dir, "%s", resolved[0] ? resolved : "/");

    snprintf(out->dir, sizeof out->dir, "/tmp/weir_hostile_XXXXXX");
    if (!mkdtemp(out->dir)) return -1;
    snprintf(out->file, sizeof out->file, "%s/outside.lua", out->dir);
    f = fopen(out->file, "w");
    if (!f) { rmdir(out->dir); return -1; }
    fputs(body, f);
    fclose(f);

    /* one "../" per component of the script's directory, then the file */
    out->rel[0] = '\0';
    used = 0;
    for (p = out->script_dir; *p; p++)
        if (*p == '/' && used + 3 < sizeof out->rel) {
            memcpy(out->rel + used, "../", 4);
            used += 3;
        }
    snprintf(out->rel + used, sizeof out->rel - used, "%s/outside", out->dir + 1);
    return 0;
}

static void hostile_remove_outside(const hostile_outside *out) {
    unlink(out->file);
    rmdir(out->dir);
}

/* Stack: +1 (the params table the hostile chunk receives as `...`). */
static void hostile_push_params(lua_State *L, const hostile_outside *out) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, out->file);
    lua_setfield(L, -2, "outside_file");
    lua_pushstring(L, out->dir);
    lua_setfield(L, -2, "outside_dir");
    lua_pushstring(L, out->rel);
    lua_setfield(L, -2, "outside_rel");
    lua_pushstring(L, HOSTILE_SECRET_VAR);
    lua_setfield(L, -2, "secret_var");
    lua_pushstring(L, HOSTILE_SECRET_VALUE);
    lua_setfield(L, -2, "secret_value");
}

/* ---- the healthy job and the victim chunk -------------------------- */

static const char hostile_healthy_src[] =
    "local json = require 'weir.json'\n"
    "local task = require 'weir.task'\n"
    "local sum = 0\n"
    "for i = 1, 20 do\n"
    "  task.sleep(0.005)\n"
    "  local s = ('ab'):rep(i)\n"
    "  local t = json.decode(json.encode({ n = i, s = s, list = { i, i + 1 } }))\n"
    "  if t.s ~= s or t.list[2] ~= i + 1 then\n"
    "    error('healthy: json round trip changed the data at ' .. i)\n"
    "  end\n"
    "  if string.upper(t.s) ~= ('AB'):rep(i) or #t.s:gsub('a', '') ~= i then\n"
    "    error('healthy: string functions misbehave at ' .. i)\n"
    "  end\n"
    "  sum = sum + t.n * #t.s + t.list[1]\n"
    "end\n"
    "return sum, 'healthy-done'\n";

/* What the healthy job must return: sum of i * 2i + i. */
static lua_Integer hostile_healthy_expected(void) {
    lua_Integer i, sum = 0;
    for (i = 1; i <= HOSTILE_HEALTHY_ROUNDS; i++) sum += i * (2 * i) + i;
    return sum;
}

/* Receives the PWNED names as `...`; raises "victim: ..." on the first
 * thing that is not as a fresh sandbox has it. */
static const char hostile_victim_src[] =
    "local names = ...\n"
    "local function check(ok, what)\n"
    "  if not ok then error('victim: ' .. what, 2) end\n"
    "end\n"
    "local function global(name)\n"
    "  local ok, v = pcall(function() return _ENV[name] end)\n"
    "  if ok then return v end\n"
    "  return nil\n"
    "end\n"
    "local libs = { string = string, table = table, math = math, os = os,\n"
    "               coroutine = coroutine, utf8 = utf8 }\n"
    "for _, n in ipairs(names) do\n"
    "  check(rawget(_ENV, n) == nil and global(n) == nil, 'global ' .. n .. ' leaked')\n"
    "  for lname, lib in pairs(libs) do\n"
    "    check(lib[n] == nil, lname .. '.' .. n .. ' leaked')\n"
    "  end\n"
    "  check(('')[n] == nil, 'string method ' .. n .. ' leaked')\n"
    "end\n"
    "for _, n in ipairs({ 'io', 'debug', 'package', 'dofile', 'loadfile' }) do\n"
    "  check(global(n) == nil, n .. ' became visible')\n"
    "end\n"
    "check(os.execute == nil and os.exit == nil and os.remove == nil, 'os grew functions')\n"
    "check(string.dump == nil, 'string.dump became visible')\n"
    "check(string.upper('a') == 'A', 'string.upper')\n"
    "check(('x'):rep(3) == 'xxx', 'string.rep via method')\n"
    "check(('abc'):sub(2) == 'bc' and ('abc'):len() == 3, 'string.sub/len')\n"
    "check(string.format('%d-%s', 5, 'x') == '5-x', 'string.format')\n"
    "check(('a,b'):find(',', 1, true) == 2, 'string.find')\n"
    "check(select(1, ('hello'):gsub('l', 'L')) == 'heLLo', 'string.gsub')\n"
    "check(math.floor(1.5) == 1 and math.max(1, 3, 2) == 3, 'math.floor/max')\n"
    "check(math.pi == 3.141592653589793 and math.huge > 1e308, 'math.pi/huge')\n"
    "check(type(os.time()) == 'number' and type(os.clock()) == 'number', 'os.time/clock')\n"
    "check(tostring(1) == '1' and tostring(nil) == 'nil' and tonumber('10') == 10,\n"
    "      'tostring/tonumber')\n"
    "local s = 0\n"
    "for _, v in pairs({ a = 1, b = 2 }) do s = s + v end\n"
    "check(s == 3, 'pairs')\n"
    "s = 0\n"
    "for i, v in ipairs({ 10, 20, 30 }) do s = s + i * v end\n"
    "check(s == 140, 'ipairs')\n"
    "local ok, e = pcall(error, 'boom', 0)\n"
    "check(ok == false and e == 'boom', 'pcall/error')\n"
    "check(select('#', pcall(function() return 1, 2 end)) == 3, 'pcall results')\n"
    "check(select(2, pcall(assert, false, 'm')) == 'm', 'assert')\n"
    "local t = { 3, 1, 2 }\n"
    "table.sort(t)\n"
    "table.insert(t, 4)\n"
    "check(table.concat(t, ',') == '1,2,3,4', 'table.concat/sort/insert')\n"
    "check(select('#', table.unpack({ 1, 2, 3 })) == 3, 'table.unpack')\n"
    "local mt = {}\n"
    "check(getmetatable(setmetatable({}, mt)) == mt, 'setmetatable/getmetatable')\n"
    "check(coroutine.wrap(function() coroutine.yield(7) end)() == 7, 'coroutine.wrap')\n"
    "check(load('return 1 + 1')() == 2, 'load')\n"
    "for _, n in ipairs(names) do\n"
    "  check(load('return ' .. n)() == nil, 'global ' .. n .. ' visible to load()')\n"
    "end\n"
    "local json = require 'weir.json'\n"
    "local task = require 'weir.task'\n"
    "check(json.encode({ 1, 2 }) == '[1,2]' and json.decode('[5]')[1] == 5, 'weir.json')\n"
    "check(json.decode('[]')[1] == nil and json.decode('[7]')[2] == nil, 'json arrays')\n"
    "local array_mt = getmetatable(json.decode('[]'))\n"
    "for _, n in ipairs(names) do\n"
    "  check(json[n] == nil and task[n] == nil, 'module field ' .. n)\n"
    "  check(type(array_mt) ~= 'table' or rawget(array_mt, n) == nil, 'array_mt.' .. n)\n"
    "end\n"
    "task.sleep(0)\n"
    "if collectgarbage then\n"
    "  local okr, running = pcall(collectgarbage, 'isrunning')\n"
    "  check(not okr or running == true, 'the collector was left stopped')\n"
    "end\n"
    "return 'victim-ok'\n";

/* ---- running jobs -------------------------------------------------- */

typedef struct hostile_run {
    weir_job *job;
    int ended;
} hostile_run;

static void hostile_on_done(weir_job *job, void *data) {
    hostile_run *run = data;
    (void)job;
    run->ended = 1;
}

static const char *hostile_status_name(weir_job_status s) {
    switch (s) {
    case WEIR_JOB_NEW: return "NEW";
    case WEIR_JOB_READY: return "READY";
    case WEIR_JOB_RUNNING: return "RUNNING";
    case WEIR_JOB_WAITING: return "WAITING";
    case WEIR_JOB_DONE: return "DONE";
    case WEIR_JOB_FAILED: return "FAILED";
    }
    return "?";
}

/* The error of an ended job: job->error, else whatever is on the stack. */
static const char *hostile_job_error(const weir_job *job) {
    if (job->error) return job->error;
    if (lua_gettop(job->co) > 0 && lua_type(job->co, -1) == LUA_TSTRING)
        return lua_tostring(job->co, -1);
    return "(no error message)";
}

/* Loads `src` as a fresh chunk in st and starts it with the PWNED names
 * as its one argument.  0, or -1 after reporting. */
static int hostile_start_chunk(weir_state *st, hostile_run *run, const char *src,
                               const char *chunkname, const hostile_spec *names) {
    int i;
    run->job = weir_job_new(st);
    if (!run->job) { hostile_fail("%s: weir_job_new failed", chunkname); return -1; }
    if (weir_state_load_buffer(st, run->job->co, src, strlen(src), chunkname) != 0) {
        hostile_fail("%s does not load: %s", chunkname, lua_tostring(run->job->co, -1));
        return -1;
    }
    lua_createtable(run->job->co, names ? names->nnames : 0, 0);
    for (i = 0; names && i < names->nnames; i++) {
        lua_pushstring(run->job->co, names->names[i]);
        lua_rawseti(run->job->co, -2, i + 1);
    }
    weir_job_start(run->job, 1, hostile_on_done, run);
    return 0;
}

static int hostile_start_script(weir_state *st, hostile_run *run, const hostile_spec *spec,
                                const hostile_outside *out) {
    run->job = weir_job_new(st);
    if (!run->job) { hostile_fail("%s: weir_job_new failed", spec->path); return -1; }
    if (weir_state_load_file(st, run->job->co, spec->path) != 0) {
        hostile_fail("%s does not load (a hostile script must compile): %s", spec->path,
                     lua_tostring(run->job->co, -1));
        return -1;
    }
    hostile_push_params(run->job->co, out);
    weir_job_start(run->job, 1, hostile_on_done, run);
    return 0;
}

static void hostile_release(hostile_run *run) {
    if (run->job) weir_job_release(run->job);
    run->job = NULL;
}

/* ---- verdicts ------------------------------------------------------ */

static void hostile_check_healthy(const hostile_run *run) {
    weir_job *job = run->job;
    char want[32];
    if (!job) return;
    if (job->status != WEIR_JOB_DONE) {
        hostile_fail("the healthy job next to the script did not succeed (status %s): %s",
                     hostile_status_name(job->status),
                     job->status == WEIR_JOB_FAILED ? hostile_job_error(job) : "");
        return;
    }
    snprintf(want, sizeof want, "%lld", (long long)hostile_healthy_expected());
    if (job->nres != 2 || lua_tointeger(job->co, -2) != hostile_healthy_expected()
        || !lua_isstring(job->co, -1) || strcmp(lua_tostring(job->co, -1), "healthy-done") != 0) {
        hostile_fail("the healthy job returned a wrong checksum (want %s, 'healthy-done'), got %s",
                     want, lua_gettop(job->co) >= 2 ? luaL_tolstring(job->co, -2, NULL) : "nothing");
    }
}

static const char *hostile_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "name.lua:<digit>" somewhere in the error (message or traceback). */
static int hostile_names_line(const char *err, const char *base) {
    size_t n = strlen(base);
    const char *p = err;
    while ((p = strstr(p, base)) != NULL) {
        if (p[n] == ':' && isdigit((unsigned char)p[n + 1])) return 1;
        p += n;
    }
    return 0;
}

static void hostile_check_hostile(const hostile_run *run, const hostile_spec *spec) {
    weir_job *job = run->job;
    const char *err;
    if (!job) return;
    if (job->status != WEIR_JOB_FAILED) {
        hostile_fail("the hostile script did not fail: it ended with status %s%s",
                     hostile_status_name(job->status),
                     job->status == WEIR_JOB_DONE ? " (it ran to completion)" : "");
        return;
    }
    err = hostile_job_error(job);
    printf("hostile job failed with:\n%s\n", err);
    if (strstr(err, "LEAK")) {
        hostile_fail("SANDBOX HOLE: the script reported a leak: %s", err);
        return;
    }
    if (!strstr(err, spec->expect))
        hostile_fail("the error does not contain the expected '%s':\n%s", spec->expect, err);
    if (!spec->no_line && !hostile_names_line(err, hostile_basename(spec->path)))
        hostile_fail("the error does not name a line of %s:\n%s",
                     hostile_basename(spec->path), err);
}

static void hostile_check_victim(const hostile_run *run, const char *where) {
    weir_job *job = run->job;
    if (!job) return;
    if (job->status != WEIR_JOB_DONE) {
        hostile_fail("the victim chunk in %s found damage:\n%s", where,
                     job->status == WEIR_JOB_FAILED ? hostile_job_error(job)
                                                    : hostile_status_name(job->status));
        return;
    }
    if (job->nres < 1 || !lua_isstring(job->co, -1)
        || strcmp(lua_tostring(job->co, -1), "victim-ok") != 0)
        hostile_fail("the victim chunk in %s returned the wrong value", where);
}

/* ---- main ---------------------------------------------------------- */

static int hostile_load_spec(hostile_spec *spec, const char *path) {
    memset(spec, 0, sizeof *spec);
    spec->path = path;
    spec->mem_limit = (size_t)64 << 20;
    spec->cpu_limit_ms = 500;
    spec->source = hostile_read_file(path, &spec->source_len);
    if (!spec->source) {
        hostile_fail("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (hostile_parse_header(spec) != 0) return -1;
    hostile_collect_names(spec);
    return 0;
}

static weir_engine *hostile_engine(const hostile_spec *spec) {
    weir_config cfg;
    const char *err = NULL;
    weir_engine *e;
    weir_config_defaults(&cfg);
    cfg.mem_limit = spec->mem_limit;
    cfg.cpu_limit_ms = spec->cpu_limit_ms;
    cfg.env_allow = "WEIR_HOSTILE_ALLOWED";
    e = weir_engine_new(NULL, &cfg, &err);
    if (!e) hostile_fail("weir_engine_new: %s", err);
    return e;
}

static weir_state *hostile_state(weir_engine *e, const char *name, const char *root) {
    const char *err = NULL;
    const char *roots[1];
    weir_state *st;
    roots[0] = root;
    st = weir_state_new(e, name, roots, root ? 1 : 0, &err);
    if (!st) hostile_fail("weir_state_new(%s): %s", name, err);
    return st;
}

/* Steps 1-3; the caller frees the engine. */
static void hostile_run_all(weir_engine *e, const hostile_spec *spec,
                            const hostile_outside *out) {
    hostile_run healthy = {0}, hostile = {0}, victim_a = {0}, victim_b = {0};
    weir_log_level level_before = weir_log_get_level(e->log);
    weir_state *st_b = hostile_state(e, "healthy", NULL);
    weir_state *st_a = hostile_state(e, "hostile", out->script_dir);
    if (!st_a || !st_b) return;

    if (hostile_start_chunk(st_b, &healthy, hostile_healthy_src, "=healthy", NULL) != 0
        || hostile_start_script(st_a, &hostile, spec, out) != 0) {
        hostile_release(&healthy);
        hostile_release(&hostile);
        return;
    }
    weir_engine_run(e);
    if (!hostile.ended) hostile_fail("the hostile job never ended (status %s)",
                                     hostile_status_name(hostile.job->status));
    if (!healthy.ended) hostile_fail("the healthy job never ended (status %s)",
                                     hostile_status_name(healthy.job->status));
    hostile_check_healthy(&healthy);
    hostile_check_hostile(&hostile, spec);
    printf("state A peak memory: %zu bytes\n", st_a->mem_peak);
    /* the engine-wide log threshold is shared by every state */
    if (weir_log_get_level(e->log) != level_before)
        hostile_fail("the script changed the engine-wide log level from %s to %s",
                     weir_log_level_name(level_before),
                     weir_log_level_name(weir_log_get_level(e->log)));
    hostile_release(&healthy);
    hostile_release(&hostile);

    if (hostile_start_chunk(st_a, &victim_a, hostile_victim_src, "=victim(A)", spec) == 0
        && hostile_start_chunk(st_b, &victim_b, hostile_victim_src, "=victim(B)", spec) == 0) {
        weir_engine_run(e);
        hostile_check_victim(&victim_a, "the hostile script's state (A)");
        hostile_check_victim(&victim_b, "the healthy state (B)");
    }
    hostile_release(&victim_a);
    hostile_release(&victim_b);
}

int main(int argc, char **argv) {
    hostile_spec spec;
    hostile_outside out;
    weir_engine *e;

    if (argc != 2) {
        fprintf(stderr, "usage: hostile_runner path/to/script.lua\n");
        return 2;
    }
    atexit(hostile_on_exit);
    hostile_finished = 1;       /* only armed while scripts run */
    if (hostile_load_spec(&spec, argv[1]) != 0) {
        hostile_spec_free(&spec);
        return 1;
    }
    if (hostile_make_outside(&out, argv[1]) != 0) {
        hostile_fail("cannot create the outside-the-roots file: %s", strerror(errno));
        hostile_spec_free(&spec);
        return 1;
    }
    /* a secret and HOME in the environment, for the getenv probes */
    setenv(HOSTILE_SECRET_VAR, HOSTILE_SECRET_VALUE, 1);
    setenv("HOME", "/root", 0);
    setenv("WEIR_HOSTILE_ALLOWED", "yes", 1);

    e = hostile_engine(&spec);
    if (e) {
        hostile_finished = 0;
        hostile_arm_watchdog(spec.path);
        hostile_run_all(e, &spec, &out);
        weir_engine_free(e);
        alarm(0);
        hostile_finished = 1;
    }
    hostile_remove_outside(&out);
    if (hostile_failures == 0)
        printf("hostile_runner: OK: %s failed as expected and nothing leaked\n",
               hostile_basename(spec.path));
    hostile_spec_free(&spec);
    return hostile_failures ? 1 : 0;
}
