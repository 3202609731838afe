/*
 * weir_log.c -- JSON-lines logs with secret redaction.
 *
 * A line is built in memory, redacted as a whole, then written with one
 * fwrite so concurrent writers (several processes appending to one file)
 * never interleave inside a line.  Redaction works on the final text and
 * also matches the JSON-escaped form of each secret, so a secret that
 * contains quotes or backslashes cannot slip through the encoder.
 */
#include "weir_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "weir_job.h"
#include "weir_json.h"
#include "weir_state.h"

#define WEIR_LOG_REDACTED "[REDACTED]"
#define WEIR_LOG_MIN_SECRET 4
/* Secrets live in engine memory (outside every state's cap) and every
 * log line is matched against all of them: bound both. */
#define WEIR_LOG_MAX_SECRETS 4096
#define WEIR_LOG_MAX_SECRET_BYTES ((size_t)1 << 20)

typedef struct weir_log_secret {
    char *raw;
    size_t raw_len;
    char *escaped;          /* JSON-escaped form, NULL when identical */
    size_t escaped_len;
} weir_log_secret;

struct weir_log {
    FILE *out;
    int owns_out;
    weir_log_level level;
    weir_log_secret *secrets;
    size_t nsecrets, cap;
    size_t secret_bytes;        /* sum of raw_len */
};

/* ---- growable byte buffer (local to this file) ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} weir_log_buf;

static void weir_log_buf_add(weir_log_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void weir_log_buf_str(weir_log_buf *b, const char *s) {
    weir_log_buf_add(b, s, strlen(s));
}

/* Appends s as a JSON string body (no quotes). */
static void weir_log_buf_escape(weir_log_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        char u[7];
        if (c == '"') rep = "\\\"";
        else if (c == '\\') rep = "\\\\";
        else if (c == '\n') rep = "\\n";
        else if (c == '\r') rep = "\\r";
        else if (c == '\t') rep = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
            u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = '\0';
            rep = u;
        }
        if (rep) {
            weir_log_buf_add(b, s + start, i - start);
            weir_log_buf_str(b, rep);
            start = i + 1;
        }
    }
    weir_log_buf_add(b, s + start, n - start);
}

/* ---- lifecycle ---- */

weir_log *weir_log_new(void) {
    weir_log *lg = calloc(1, sizeof *lg);
    if (!lg) return NULL;
    lg->out = stderr;
    lg->level = WEIR_LOG_INFO;
    return lg;
}

void weir_log_free(weir_log *lg) {
    size_t i;
    if (!lg) return;
    if (lg->owns_out) fclose(lg->out);
    for (i = 0; i < lg->nsecrets; i++) {
        free(lg->secrets[i].raw);
        free(lg->secrets[i].escaped);
    }
    free(lg->secrets);
    free(lg);
}

int weir_log_open_file(weir_log *lg, const char *path) {
    FILE *f = fopen(path, "a");
    if (!f) return -errno;
    setvbuf(f, NULL, _IOLBF, 0);
    if (lg->owns_out) fclose(lg->out);
    lg->out = f;
    lg->owns_out = 1;
    return 0;
}

void weir_log_set_level(weir_log *lg, weir_log_level level) { lg->level = level; }
weir_log_level weir_log_get_level(const weir_log *lg) { return lg->level; }

static const char *const weir_log_names[] = {"debug", "info", "warn", "error"};

const char *weir_log_level_name(weir_log_level level) {
    return (unsigned)level < 4 ? weir_log_names[level] : "info";
}

int weir_log_level_parse(const char *name) {
    int i;
    for (i = 0; i < 4; i++)
        if (strcmp(name, weir_log_names[i]) == 0) return i;
    if (strcmp(name, "warning") == 0) return WEIR_LOG_WARN;
    return -1;
}

/* ---- secrets ---- */

int weir_log_add_secret(weir_log *lg, const char *value, size_t len) {
    size_t i;
    weir_log_buf esc = {0};
    weir_log_secret *s;
    if (len < WEIR_LOG_MIN_SECRET) return -1;
    for (i = 0; i < lg->nsecrets; i++)
        if (lg->secrets[i].raw_len == len && memcmp(lg->secrets[i].raw, value, len) == 0)
            return 0;
    if (lg->nsecrets >= WEIR_LOG_MAX_SECRETS ||
        len > WEIR_LOG_MAX_SECRET_BYTES - lg->secret_bytes)
        return -2;
    if (lg->nsecrets == lg->cap) {
        size_t cap = lg->cap ? lg->cap * 2 : 8;
        weir_log_secret *p = realloc(lg->secrets, cap * sizeof *p);
        if (!p) return -1;
        lg->secrets = p;
        lg->cap = cap;
    }
    s = &lg->secrets[lg->nsecrets];
    s->raw = malloc(len + 1);
    if (!s->raw) return -1;
    memcpy(s->raw, value, len);
    s->raw[len] = '\0';
    s->raw_len = len;
    s->escaped = NULL;
    s->escaped_len = 0;
    weir_log_buf_escape(&esc, value, len);
    if (esc.oom) { free(s->raw); free(esc.p); return -1; }
    if (esc.len != len || memcmp(esc.p, value, len) != 0) {
        s->escaped = esc.p;
        s->escaped_len = esc.len;
    } else {
        free(esc.p);
    }
    lg->nsecrets++;
    lg->secret_bytes += len;
    return 0;
}

size_t weir_log_secret_count(const weir_log *lg) { return lg ? lg->nsecrets : 0; }

/* Length of the secret form matching at s (n bytes left), or 0. */
static size_t weir_log_match_secret(const weir_log *lg, const char *s, size_t n) {
    size_t i;
    for (i = 0; i < lg->nsecrets; i++) {
        const weir_log_secret *sec = &lg->secrets[i];
        if (sec->raw_len <= n && memcmp(s, sec->raw, sec->raw_len) == 0)
            return sec->raw_len;
        if (sec->escaped && sec->escaped_len <= n &&
            memcmp(s, sec->escaped, sec->escaped_len) == 0)
            return sec->escaped_len;
    }
    return 0;
}

char *weir_log_redact(const weir_log *lg, const char *s, size_t len, size_t *out_len) {
    weir_log_buf b = {0};
    size_t i = 0, start = 0;
    weir_log_buf_add(&b, "", 0);
    if (lg && lg->nsecrets) {
        while (i < len) {
            size_t m = weir_log_match_secret(lg, s + i, len - i);
            if (m) {
                weir_log_buf_add(&b, s + start, i - start);
                weir_log_buf_str(&b, WEIR_LOG_REDACTED);
                i += m;
                start = i;
            } else {
                i++;
            }
        }
    }
    weir_log_buf_add(&b, s + start, len - start);
    if (b.oom) { free(b.p); return NULL; }
    if (out_len) *out_len = b.len;
    return b.p;
}

/* ---- writing ---- */

static void weir_log_timestamp(char out[64]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);
}

static void weir_log_field(weir_log_buf *b, const char *key, const char *val) {
    weir_log_buf_str(b, ",\"");
    weir_log_buf_str(b, key);
    weir_log_buf_str(b, "\":\"");
    weir_log_buf_escape(b, val, strlen(val));
    weir_log_buf_str(b, "\"");
}

void weir_log_write(weir_log *lg, weir_log_level level, const char *recipe,
                    const char *job, const char *msg, const char *fields_json) {
    weir_log_buf b = {0};
    char ts[64];
    char *line;
    size_t len;
    if (!lg || level < lg->level) return;
    weir_log_timestamp(ts);
    weir_log_buf_str(&b, "{\"time\":\"");
    weir_log_buf_str(&b, ts);
    weir_log_buf_str(&b, "\"");
    weir_log_field(&b, "level", weir_log_level_name(level));
    if (recipe) weir_log_field(&b, "recipe", recipe);
    if (job) weir_log_field(&b, "job", job);
    weir_log_field(&b, "msg", msg ? msg : "");
    /* Merge the members of an encoded object: strip its braces. */
    if (fields_json) {
        size_t n = strlen(fields_json);
        if (n > 2 && fields_json[0] == '{' && fields_json[n - 1] == '}') {
            weir_log_buf_str(&b, ",");
            weir_log_buf_add(&b, fields_json + 1, n - 2);
        }
    }
    weir_log_buf_str(&b, "}\n");
    if (b.oom) { free(b.p); return; }
    line = weir_log_redact(lg, b.p, b.len, &len);
    free(b.p);
    if (!line) return;
    fwrite(line, 1, len, lg->out);
    fflush(lg->out);
    free(line);
}

/* ---- Lua module "weir.log" ----
 * log.info(msg [, fields]) etc.; log.secret(value) registers a value to
 * redact; log.level() returns the engine's threshold. */

static weir_log *weir_log_of(lua_State *L) {
    weir_state *st = weir_state_of(L);
    return st && st->eng ? st->eng->log : NULL;
}

static int weir_log_emit(lua_State *L, weir_log_level level) {
    weir_log *lg = weir_log_of(L);
    weir_state *st = weir_state_of(L);
    const char *msg = luaL_checkstring(L, 1);
    const char *fields = NULL;
    char jobid[32];
    weir_job *job = st ? st->running : NULL;
    if (!lg || level < lg->level) return 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        weir_json_encode(L, 2, WEIR_JSON_SORT_KEYS);
        fields = lua_tostring(L, -1);
    }
    if (job) snprintf(jobid, sizeof jobid, "%llu", (unsigned long long)job->id);
    weir_log_write(lg, level, st ? st->name : NULL, job ? jobid : NULL, msg, fields);
    return 0;
}

static int weir_log_debug(lua_State *L) { return weir_log_emit(L, WEIR_LOG_DEBUG); }
static int weir_log_info(lua_State *L) { return weir_log_emit(L, WEIR_LOG_INFO); }
static int weir_log_warn(lua_State *L) { return weir_log_emit(L, WEIR_LOG_WARN); }
static int weir_log_error(lua_State *L) { return weir_log_emit(L, WEIR_LOG_ERROR); }

static int weir_log_lua_secret(lua_State *L) {
    size_t len;
    const char *v = luaL_checklstring(L, 1, &len);
    weir_log *lg = weir_log_of(L);
    if (len < WEIR_LOG_MIN_SECRET)
        return luaL_error(L, "log.secret: a secret must be at least %d bytes",
                          WEIR_LOG_MIN_SECRET);
    if (lg) {
        int rc = weir_log_add_secret(lg, v, len);
        if (rc == -2)
            return luaL_error(L, "log.secret: the engine's secret store is full (at most "
                                 "%d secrets and %d bytes in total)", WEIR_LOG_MAX_SECRETS,
                              (int)WEIR_LOG_MAX_SECRET_BYTES);
        if (rc != 0) return luaL_error(L, "log.secret: out of memory");
    }
    return 0;
}

/* log.level() -> the engine's threshold.  Read-only for scripts: the
 * threshold is engine-wide, so one script must not silence the others
 * (the operator sets it with WEIR_LOG_LEVEL). */
static int weir_log_level_fn(lua_State *L) {
    weir_log *lg = weir_log_of(L);
    if (!lua_isnoneornil(L, 1))
        return luaL_error(L, "log.level: scripts cannot change the engine's log level "
                             "(it is engine-wide; set WEIR_LOG_LEVEL instead)");
    if (!lg) return 0;
    lua_pushstring(L, weir_log_level_name(lg->level));
    return 1;
}

int weir_open_log(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"debug", weir_log_debug}, {"info", weir_log_info},
        {"warn", weir_log_warn},   {"error", weir_log_error},
        {"secret", weir_log_lua_secret}, {"level", weir_log_level_fn},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
