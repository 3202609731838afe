/*
 * weir_recipe.c -- recipe packs: loading, validation, parameters.
 *
 * Loading: DIR/recipe.lua runs as a job in a throwaway sandboxed state
 * (roots = DIR, so `require "jobs.fetch"` finds DIR/jobs/fetch.lua), with
 * the engine's CPU and memory caps.  It may only compute and return
 * data: an engine call (I/O) while loading is a problem of the recipe.
 * Then the returned table is validated completely -- every problem is
 * collected, not just the first -- while the weir_recipe is built in
 * plain C memory, and the handler modules are required in that state to
 * check that their functions exist.  The state is freed before returning.
 *
 * Line numbers: Lua tables remember none, so a problem is located by
 * scanning the source text of recipe.lua (weir_recipe_locate): good
 * enough for the usual `return { ... }` layout, deterministic, and it
 * falls back to the enclosing block's line.
 *
 * Validation runs in protected mode on the state's main thread: reads
 * are raw (no metamethod of the recipe runs), and every C allocation is
 * rooted in the context or the recipe before the next Lua call, so an
 * out-of-memory error unwinding through it leaks nothing.
 */
#include "weir_recipe.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lualib.h>

#include "weir_job.h"
#include "weir_json.h"
#include "weir_log.h"
#include "weir_state.h"

#define WEIR_RECIPE_MAX_DEPTH 8
#define WEIR_RECIPE_NAME_MAX 64
#define WEIR_RECIPE_MAX_CONCURRENCY 1000
#define WEIR_RECIPE_MAX_ATTEMPTS 100
#define WEIR_RECIPE_DAY 86400.0

static const char *const weir_recipe_root_keys[] = {
    "name", "version", "description", "params", "jobs", NULL};
static const char *const weir_recipe_param_keys[] = {
    "type", "required", "secret", "default", "description", NULL};
static const char *const weir_recipe_job_keys[] = {
    "handler", "triggers", "retry", "concurrency", "timeout", "description", NULL};
static const char *const weir_recipe_trigger_keys[] = {
    "every", "cron", "tz", "on", "manual", NULL};
static const char *const weir_recipe_retry_keys[] = {
    "max_attempts", "base", "cap", "jitter", "max_elapsed", NULL};
/* indexed by weir_param_type */
static const char *const weir_recipe_type_names[] = {
    "?", "string", "number", "integer", "boolean", "duration", "url", "json", NULL};

/* ---- growable text ---- */

typedef struct weir_recipe_buf {
    char *p;
    size_t len, cap;
    int oom;
} weir_recipe_buf;

static void weir_recipe_buf_add(weir_recipe_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1) cap *= 2;
        p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void weir_recipe_buf_vprintf(weir_recipe_buf *b, const char *fmt, va_list ap) {
    char small[512];
    va_list ap2;
    int n;
    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        weir_recipe_buf_add(b, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (!big) { b->oom = 1; return; }
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        weir_recipe_buf_add(b, big, (size_t)n);
        free(big);
    }
}

static void weir_recipe_buf_printf(weir_recipe_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void weir_recipe_buf_printf(weir_recipe_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    weir_recipe_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* ---- problems: collected, then sorted by line ---- */

typedef struct weir_recipe_issue {
    int line;
    int seq;
    char *text;
} weir_recipe_issue;

typedef struct weir_recipe_problems {
    weir_recipe_issue *v;
    int n, cap;
    int oom;
} weir_recipe_problems;

/* Takes ownership of text. */
static void weir_recipe_problems_add(weir_recipe_problems *ps, int line, char *text) {
    if (!text) { ps->oom = 1; return; }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 8;
        weir_recipe_issue *v = realloc(ps->v, (size_t)cap * sizeof *v);
        if (!v) { free(text); ps->oom = 1; return; }
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n].line = line;
    ps->v[ps->n].seq = ps->n;
    ps->v[ps->n].text = text;
    ps->n++;
}

static int weir_recipe_problem_cmp(const void *a, const void *b) {
    const weir_recipe_issue *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One problem per line, in order of line; NULL on OOM. */
static char *weir_recipe_problems_join(weir_recipe_problems *ps) {
    weir_recipe_buf b = {0};
    int i;
    qsort(ps->v, (size_t)ps->n, sizeof *ps->v, weir_recipe_problem_cmp);
    for (i = 0; i < ps->n; i++) {
        weir_recipe_buf_add(&b, ps->v[i].text, strlen(ps->v[i].text));
        if (i + 1 < ps->n) weir_recipe_buf_add(&b, "\n", 1);
    }
    if (ps->oom) weir_recipe_buf_add(&b, ps->n ? "\nout of memory" : "out of memory",
                                     ps->n ? 14 : 13);
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

static void weir_recipe_problems_free(weir_recipe_problems *ps) {
    int i;
    for (i = 0; i < ps->n; i++) free(ps->v[i].text);
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}

/* ---- a rough Lua lexer, enough to find `key =` in table constructors ---- */

enum { WEIR_TK_NAME = 1, WEIR_TK_STRING, WEIR_TK_NUMBER, WEIR_TK_OP };

typedef struct weir_recipe_tok {
    int type;
    const char *s;              /* names, ops; a string's contents */
    size_t len;
    int line;
    int escaped;                /* string with backslashes: never a key match */
    int depth;                  /* brace depth before this token */
    int match;                  /* openers: index of the closer, or -1 */
} weir_recipe_tok;

typedef struct weir_recipe_toks {
    weir_recipe_tok *v;
    int n, cap;
} weir_recipe_toks;

static weir_recipe_tok *weir_recipe_tok_new(weir_recipe_toks *t) {
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 256;
        weir_recipe_tok *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        t->v = v;
        t->cap = cap;
    }
    memset(&t->v[t->n], 0, sizeof t->v[t->n]);
    t->v[t->n].match = -1;
    return &t->v[t->n++];
}

/* At '[': length of a long bracket opener "[==[" (level = '=' count),
 * or 0. */
static size_t weir_recipe_long_open(const char *p, const char *end, size_t *level) {
    const char *q = p + 1;
    while (q < end && *q == '=') q++;
    if (q < end && *q == '[') {
        *level = (size_t)(q - p - 1);
        return (size_t)(q - p + 1);
    }
    return 0;
}

/* Skips to after the "]==]" closing a long bracket of `level`. */
static const char *weir_recipe_long_skip(const char *p, const char *end, size_t level,
                                         int *line, const char **content_end) {
    while (p < end) {
        if (*p == '\n') (*line)++;
        if (*p == ']') {
            const char *q = p + 1;
            while (q < end && *q == '=') q++;
            if (q < end && *q == ']' && (size_t)(q - p - 1) == level) {
                *content_end = p;
                return q + 1;
            }
        }
        p++;
    }
    *content_end = end;
    return end;
}

static int weir_recipe_is_op(const weir_recipe_tok *t, const char *op) {
    return t->type == WEIR_TK_OP && t->len == strlen(op) && memcmp(t->s, op, t->len) == 0;
}

static int weir_recipe_is_opener(const weir_recipe_tok *t) {
    return t->type == WEIR_TK_OP && t->len == 1 && strchr("{([", t->s[0]);
}

/* Pairs {} () [] and records brace depths. */
static void weir_recipe_match(weir_recipe_toks *t) {
    int *stack = malloc((size_t)(t->n + 1) * sizeof *stack);
    int sp = 0, depth = 0, i;
    for (i = 0; i < t->n; i++) {
        weir_recipe_tok *k = &t->v[i];
        k->depth = depth;
        if (k->type != WEIR_TK_OP || k->len != 1) continue;
        if (strchr("{([", k->s[0])) {
            if (stack) stack[sp++] = i;
            if (k->s[0] == '{') depth++;
        } else if (strchr("})]", k->s[0])) {
            if (k->s[0] == '}' && depth > 0) depth--;
            if (stack && sp > 0) {
                char want = k->s[0] == '}' ? '{' : k->s[0] == ')' ? '(' : '[';
                if (t->v[stack[sp - 1]].s[0] == want) t->v[stack[--sp]].match = i;
            }
        }
    }
    free(stack);
}

static int weir_recipe_lex(const char *src, size_t len, weir_recipe_toks *t) {
    const char *p = src, *end = src + len;
    int line = 1;
    memset(t, 0, sizeof *t);
    while (p < end) {
        weir_recipe_tok *k;
        size_t level, n;
        char c = *p;
        if (c == '\n') { line++; p++; continue; }
        if (isspace((unsigned char)c)) { p++; continue; }
        if (c == '-' && p + 1 < end && p[1] == '-') {
            const char *ce;
            p += 2;
            if (p < end && *p == '[' && (n = weir_recipe_long_open(p, end, &level)))
                p = weir_recipe_long_skip(p + n, end, level, &line, &ce);
            else
                while (p < end && *p != '\n') p++;
            continue;
        }
        if (!(k = weir_recipe_tok_new(t))) return -1;
        k->line = line;
        if (c == '[' && (n = weir_recipe_long_open(p, end, &level))) {
            const char *ce;
            k->type = WEIR_TK_STRING;
            k->s = p + n;
            p = weir_recipe_long_skip(p + n, end, level, &line, &ce);
            k->len = (size_t)(ce - k->s);
        } else if (c == '"' || c == '\'') {
            k->type = WEIR_TK_STRING;
            k->s = ++p;
            while (p < end && *p != c && *p != '\n') {
                if (*p == '\\' && p + 1 < end) {
                    k->escaped = 1;
                    if (p[1] == '\n') line++;
                    p += 2;
                } else {
                    p++;
                }
            }
            k->len = (size_t)(p - k->s);
            if (p < end && *p == c) p++;
        } else if (isalpha((unsigned char)c) || c == '_') {
            k->type = WEIR_TK_NAME;
            k->s = p;
            while (p < end && (isalnum((unsigned char)*p) || *p == '_')) p++;
            k->len = (size_t)(p - k->s);
        } else if (isdigit((unsigned char)c) || (c == '.' && p + 1 < end &&
                                                 isdigit((unsigned char)p[1]))) {
            k->type = WEIR_TK_NUMBER;
            k->s = p;
            while (p < end && (isalnum((unsigned char)*p) || *p == '.' ||
                               ((*p == '+' || *p == '-') && strchr("eEpP", p[-1]))))
                p++;
            k->len = (size_t)(p - k->s);
        } else {
            k->type = WEIR_TK_OP;
            k->s = p;
            k->len = (p + 1 < end && p[1] == '=' && strchr("=~<>", c)) ? 2 : 1;
            p += k->len;
        }
    }
    weir_recipe_match(t);
    return 0;
}

static int weir_recipe_tok_eq(const weir_recipe_tok *t, const char *s) {
    return t->len == strlen(s) && memcmp(t->s, s, t->len) == 0;
}

/* `NAME = {` at brace depth 0, the last one before token `before`
 * (`local jobs = {...}` then `return {jobs = jobs}`). */
static int weir_recipe_named_block(const weir_recipe_toks *t, const weir_recipe_tok *name,
                                   int before) {
    int i, found = -1;
    for (i = 0; i + 2 < before; i++) {
        const weir_recipe_tok *k = &t->v[i];
        if (k->depth == 0 && k->type == WEIR_TK_NAME && k->len == name->len &&
            memcmp(k->s, name->s, k->len) == 0 && weir_recipe_is_op(&t->v[i + 1], "=") &&
            weir_recipe_is_op(&t->v[i + 2], "{"))
            found = i + 2;
    }
    return found;
}

/* The token of a value: a `{` block as is, a NAME resolved to its
 * top-level `NAME = {` when there is one. */
static int weir_recipe_value_block(const weir_recipe_toks *t, int v) {
    if (v < 0 || v >= t->n) return -1;
    if (weir_recipe_is_op(&t->v[v], "{")) return v;
    if (t->v[v].type == WEIR_TK_NAME && (v + 1 >= t->n || t->v[v + 1].type != WEIR_TK_OP ||
                                         strchr(",;}", t->v[v + 1].s[0])))
        return weir_recipe_named_block(t, &t->v[v], v);
    return -1;
}

/* The chunk's last top-level `return`, or -1. */
static int weir_recipe_last_return(const weir_recipe_toks *t) {
    int i;
    for (i = t->n - 1; i >= 0; i--) {
        const weir_recipe_tok *k = &t->v[i];
        if (k->depth == 0 && k->type == WEIR_TK_NAME && weir_recipe_tok_eq(k, "return"))
            return i;
    }
    return -1;
}

/* Finds path key k among the direct children of the block opened at
 * `open`: returns the index of its value token and sets *line. */
static int weir_recipe_find_child(const weir_recipe_toks *t, int open,
                                  const weir_recipe_key *k, int *line) {
    int close = t->v[open].match >= 0 ? t->v[open].match : t->n;
    int i = open + 1, elem = 0, at_start = 1;
    while (i < close) {
        const weir_recipe_tok *tok = &t->v[i];
        if (at_start) {
            at_start = 0;
            if (tok->type == WEIR_TK_NAME && i + 1 < close &&
                weir_recipe_is_op(&t->v[i + 1], "=")) {
                if (k->key && weir_recipe_tok_eq(tok, k->key)) {
                    *line = tok->line;
                    return i + 2;
                }
            } else if (weir_recipe_is_op(tok, "[") && i + 3 < close &&
                       t->v[i + 1].type == WEIR_TK_STRING && !t->v[i + 1].escaped &&
                       weir_recipe_is_op(&t->v[i + 2], "]") &&
                       weir_recipe_is_op(&t->v[i + 3], "=")) {
                if (k->key && weir_recipe_tok_eq(&t->v[i + 1], k->key)) {
                    *line = tok->line;
                    return i + 4;
                }
                i += 4;     /* on to the value */
                continue;
            } else if (!weir_recipe_is_op(tok, ",") && !weir_recipe_is_op(tok, ";")) {
                elem++;
                if (!k->key && elem == k->index) {
                    *line = tok->line;
                    return i;
                }
            }
        }
        if (weir_recipe_is_opener(tok) && tok->match > i) {
            i = tok->match + 1;
            continue;
        }
        if (weir_recipe_is_op(tok, ",") || weir_recipe_is_op(tok, ";")) at_start = 1;
        i++;
    }
    return -1;
}

static int weir_recipe_locate_toks(const weir_recipe_toks *t, const weir_recipe_key *path,
                                   int npath) {
    int ret = weir_recipe_last_return(t);
    int block = ret >= 0 ? weir_recipe_value_block(t, ret + 1) : -1;
    int line = block >= 0 ? t->v[block].line : ret >= 0 ? t->v[ret].line : 1;
    int i;
    if (block < 0 && npath > 0 && path[0].key) {
        /* no `return {`: the first `key =` anywhere */
        for (i = 0; i + 1 < t->n; i++) {
            if (t->v[i].type == WEIR_TK_NAME && weir_recipe_tok_eq(&t->v[i], path[0].key) &&
                weir_recipe_is_op(&t->v[i + 1], "=") &&
                !(i > 0 && (weir_recipe_is_op(&t->v[i - 1], ".") ||
                            weir_recipe_is_op(&t->v[i - 1], ":")))) {
                line = t->v[i].line;
                block = weir_recipe_value_block(t, i + 2);
                path++;
                npath--;
                break;
            }
        }
        if (i + 1 >= t->n) return line;
    }
    for (i = 0; i < npath && block >= 0; i++) {
        int v = weir_recipe_find_child(t, block, &path[i], &line);
        if (v < 0) break;
        block = weir_recipe_value_block(t, v);
    }
    return line;
}

int weir_recipe_locate(const char *src, size_t len, const weir_recipe_key *path, int npath) {
    weir_recipe_toks t;
    int line;
    if (weir_recipe_lex(src, len, &t) != 0) {
        free(t.v);
        return 1;
    }
    line = weir_recipe_locate_toks(&t, path, npath);
    free(t.v);
    return line;
}

/* ---- the validation context ---- */

typedef struct weir_recipe_named {
    char *name;
    int line;
} weir_recipe_named;

typedef struct weir_recipe_ctx {
    weir_engine *e;
    weir_state *st;
    lua_State *L;
    const char *file;               /* recipe.lua as shown in messages */
    weir_recipe_toks toks;
    weir_recipe_key path[WEIR_RECIPE_MAX_DEPTH];
    int depth;
    weir_recipe_problems probs;
    weir_recipe *r;
    weir_job *job;                  /* the loader job; its result is the recipe */
    weir_recipe_named *names;       /* scratch for sorting params / jobs */
    int nnames;
} weir_recipe_ctx;

static void weir_recipe_push(weir_recipe_ctx *c, const char *key) {
    if (c->depth < WEIR_RECIPE_MAX_DEPTH) {
        c->path[c->depth].key = key;
        c->path[c->depth].index = 0;
    }
    c->depth++;
}

static void weir_recipe_push_index(weir_recipe_ctx *c, int index) {
    if (c->depth < WEIR_RECIPE_MAX_DEPTH) {
        c->path[c->depth].key = NULL;
        c->path[c->depth].index = index;
    }
    c->depth++;
}

static void weir_recipe_pop(weir_recipe_ctx *c) { c->depth--; }

static int weir_recipe_line(weir_recipe_ctx *c) {
    int n = c->depth < WEIR_RECIPE_MAX_DEPTH ? c->depth : WEIR_RECIPE_MAX_DEPTH;
    return weir_recipe_locate_toks(&c->toks, c->path, n);
}

/* Reports a problem at the current path: `FILE:LINE: a.b[2].c: msg`. */
static void weir_recipe_problem(weir_recipe_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void weir_recipe_problem(weir_recipe_ctx *c, const char *fmt, ...) {
    weir_recipe_buf b = {0};
    int line = weir_recipe_line(c), i;
    int n = c->depth < WEIR_RECIPE_MAX_DEPTH ? c->depth : WEIR_RECIPE_MAX_DEPTH;
    va_list ap;
    weir_recipe_buf_printf(&b, "%s:%d: ", c->file, line);
    for (i = 0; i < n; i++) {
        if (c->path[i].key)
            weir_recipe_buf_printf(&b, "%s%s", i ? "." : "", c->path[i].key);
        else
            weir_recipe_buf_printf(&b, "[%d]", c->path[i].index);
    }
    if (n) weir_recipe_buf_add(&b, ": ", 2);
    va_start(ap, fmt);
    weir_recipe_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.oom) {
        free(b.p);
        b.p = NULL;
    }
    weir_recipe_problems_add(&c->probs, line, b.p);
}

/* strdup that raises a Lua memory error: the validation runs protected
 * and everything allocated so far is rooted in the recipe. */
static char *weir_recipe_strdup(weir_recipe_ctx *c, const char *s) {
    char *d = strdup(s);
    if (!d) luaL_error(c->L, "out of memory");
    return d;
}

static void *weir_recipe_calloc(weir_recipe_ctx *c, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) luaL_error(c->L, "out of memory");
    return p;
}

/* A short, one-line description of the value at idx for messages. */
static const char *weir_recipe_got(lua_State *L, int idx, char *buf, size_t len) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return "nil";
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
        else
            snprintf(buf, len, "%.14g", (double)lua_tonumber(L, idx));
        return buf;
    case LUA_TSTRING: {
        size_t n, i, o = 0;
        const char *s = lua_tolstring(L, idx, &n);
        if (len < 8) return "a string";
        buf[o++] = '"';
        for (i = 0; i < n && o + 5 < len && i < 60; i++)
            buf[o++] = (s[i] >= 32 && s[i] != 127) ? s[i] : '?';
        if (i < n) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
        buf[o++] = '"';
        buf[o] = '\0';
        return buf;
    }
    case LUA_TTABLE: return "a table";
    case LUA_TFUNCTION: return "a function";
    default: return luaL_typename(L, idx);
    }
}

#define WEIR_GOT(c, idx) weir_recipe_got((c)->L, (idx), got, sizeof got)

/* Pushes t[key] (raw) and returns its type. */
static int weir_recipe_field(lua_State *L, int t, const char *key) {
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

static int weir_recipe_in(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

static void weir_recipe_join(const char *const *list, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    for (; *list && o < len; list++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", *list);
}

/* Reports keys of table t that are not in `allowed`. */
static void weir_recipe_check_keys(weir_recipe_ctx *c, int t, const char *const *allowed) {
    lua_State *L = c->L;
    char list[256], got[96];
    weir_recipe_join(allowed, list, sizeof list);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (!weir_recipe_in(allowed, k)) {
                weir_recipe_push(c, k);
                weir_recipe_problem(c, "unknown field (allowed: %s)", list);
                weir_recipe_pop(c);
            }
        } else {
            weir_recipe_problem(c, "unexpected entry [%s] (fields are written name = value; "
                                   "allowed: %s)", WEIR_GOT(c, -2), list);
        }
        lua_pop(L, 1);
    }
}

static int weir_recipe_name_ok(const char *s, const char *first, const char *rest) {
    size_t n = strlen(s), i;
    if (n == 0 || n > WEIR_RECIPE_NAME_MAX) return 0;
    if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]) || strchr(first, s[0])))
        return 0;
    for (i = 1; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
              strchr(rest, s[i])))
            return 0;
    return 1;
}

/* "30s", "5m", "500ms" for messages. */
static const char *weir_recipe_fmt_seconds(double s, char *buf, size_t len) {
    if (s >= WEIR_RECIPE_DAY && fmod(s, WEIR_RECIPE_DAY) == 0)
        snprintf(buf, len, "%gd", s / WEIR_RECIPE_DAY);
    else if (s >= 3600 && fmod(s, 3600) == 0) snprintf(buf, len, "%gh", s / 3600);
    else if (s >= 60 && fmod(s, 60) == 0) snprintf(buf, len, "%gm", s / 60);
    else if (s > 0 && s < 1) snprintf(buf, len, "%gms", s * 1000);
    else snprintf(buf, len, "%gs", s);
    return buf;
}

/* A duration from a Lua value: seconds, or a string for weir_duration_parse. */
static int weir_recipe_duration_value(lua_State *L, int idx, double *out) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double v = (double)lua_tonumber(L, idx);
        if (!isfinite(v) || v < 0) return -1;
        *out = v;
        return 0;
    }
    if (lua_type(L, idx) == LUA_TSTRING) return weir_duration_parse(lua_tostring(L, idx), out);
    return -1;
}

#define WEIR_RECIPE_DURATION_HELP \
    "must be a duration such as \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\" or a number of seconds"

/* Reads the optional duration field `key` of t into *out, within
 * [lo, hi].  Returns 1 when set, 0 when absent, -1 when wrong. */
static int weir_recipe_get_duration(weir_recipe_ctx *c, int t, const char *key, double lo,
                                    double hi, double *out) {
    char got[96], a[32], b[32];
    double v;
    int rc = 1;
    weir_recipe_push(c, key);
    if (weir_recipe_field(c->L, t, key) == LUA_TNIL) {
        rc = 0;
    } else if (weir_recipe_duration_value(c->L, -1, &v) != 0) {
        weir_recipe_problem(c, WEIR_RECIPE_DURATION_HELP " (got %s)", WEIR_GOT(c, -1));
        rc = -1;
    } else if (v < lo) {
        weir_recipe_problem(c, "must be at least %s (got %s)",
                            weir_recipe_fmt_seconds(lo, a, sizeof a),
                            weir_recipe_fmt_seconds(v, b, sizeof b));
        rc = -1;
    } else if (v > hi) {
        weir_recipe_problem(c, "must be at most %s (got %s)",
                            weir_recipe_fmt_seconds(hi, a, sizeof a),
                            weir_recipe_fmt_seconds(v, b, sizeof b));
        rc = -1;
    } else {
        *out = v;
    }
    lua_pop(c->L, 1);
    weir_recipe_pop(c);
    return rc;
}

static int weir_recipe_get_int(weir_recipe_ctx *c, int t, const char *key, long lo, long hi,
                               int *out) {
    char got[96];
    int rc = 1;
    weir_recipe_push(c, key);
    if (weir_recipe_field(c->L, t, key) == LUA_TNIL) {
        rc = 0;
    } else {
        lua_Integer v = 0;
        int isint = 0;
        if (lua_isinteger(c->L, -1)) {
            v = lua_tointeger(c->L, -1);
            isint = 1;
        } else if (lua_type(c->L, -1) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(c->L, -1);
            if (n == floor(n) && fabs(n) < 9007199254740992.0) {
                v = (lua_Integer)n;
                isint = 1;
            }
        }
        if (!isint) {
            weir_recipe_problem(c, "must be an integer between %ld and %ld (got %s)", lo, hi,
                                WEIR_GOT(c, -1));
            rc = -1;
        } else if (v < lo) {
            weir_recipe_problem(c, "must be an integer >= %ld (got %s)", lo, WEIR_GOT(c, -1));
            rc = -1;
        } else if (v > hi) {
            weir_recipe_problem(c, "must be an integer <= %ld (got %s)", hi, WEIR_GOT(c, -1));
            rc = -1;
        } else {
            *out = (int)v;
        }
    }
    lua_pop(c->L, 1);
    weir_recipe_pop(c);
    return rc;
}

static int weir_recipe_get_bool(weir_recipe_ctx *c, int t, const char *key, int *out) {
    char got[96];
    int rc = 1, type;
    weir_recipe_push(c, key);
    type = weir_recipe_field(c->L, t, key);
    if (type == LUA_TNIL) {
        rc = 0;
    } else if (type != LUA_TBOOLEAN) {
        weir_recipe_problem(c, "must be true or false (got %s)", WEIR_GOT(c, -1));
        rc = -1;
    } else {
        *out = lua_toboolean(c->L, -1);
    }
    lua_pop(c->L, 1);
    weir_recipe_pop(c);
    return rc;
}

/* Optional string field; *out gets a copy (owned by the recipe). */
static int weir_recipe_get_string(weir_recipe_ctx *c, int t, const char *key, char **out) {
    char got[96];
    int rc = 1, type;
    weir_recipe_push(c, key);
    type = weir_recipe_field(c->L, t, key);
    if (type == LUA_TNIL) {
        rc = 0;
    } else if (type != LUA_TSTRING) {
        weir_recipe_problem(c, "must be a string (got %s)", WEIR_GOT(c, -1));
        rc = -1;
    } else {
        *out = weir_recipe_strdup(c, lua_tostring(c->L, -1));
    }
    lua_pop(c->L, 1);
    weir_recipe_pop(c);
    return rc;
}

/* Collects the string keys of t into c->names, sorted by their line in
 * recipe.lua (then by name): declaration order when the file is laid
 * out as usual, and deterministic in any case. */
static int weir_recipe_named_cmp(const void *a, const void *b) {
    const weir_recipe_named *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void weir_recipe_names_free(weir_recipe_ctx *c) {
    int i;
    for (i = 0; i < c->nnames; i++) free(c->names[i].name);
    free(c->names);
    c->names = NULL;
    c->nnames = 0;
}

static void weir_recipe_collect_names(weir_recipe_ctx *c, int t, const char *what) {
    lua_State *L = c->L;
    char got[96];
    int n = 0;
    weir_recipe_names_free(c);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        n++;
        lua_pop(L, 1);
    }
    c->names = weir_recipe_calloc(c, (size_t)n, sizeof *c->names);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            weir_recipe_named *nm = &c->names[c->nnames];
            nm->name = weir_recipe_strdup(c, lua_tostring(L, -2));
            c->nnames++;
            weir_recipe_push(c, nm->name);
            nm->line = weir_recipe_line(c);
            weir_recipe_pop(c);
        } else {
            weir_recipe_problem(c, "unexpected entry [%s]: %s are written name = {...}",
                                WEIR_GOT(c, -2), what);
        }
        lua_pop(L, 1);
    }
    qsort(c->names, (size_t)c->nnames, sizeof *c->names, weir_recipe_named_cmp);
}

/* ---- params ---- */

static int weir_recipe_url_ok(const char *s) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = 0;
    if (!u) return 0;
    if (curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && host[0];
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static int weir_recipe_encode_protected(lua_State *L) {
    weir_json_encode(L, 1, WEIR_JSON_SORT_KEYS);
    return 1;
}

/* Pushes the number v as an integer when it is integral (30 not 30.0). */
static void weir_recipe_push_seconds(lua_State *L, double v) {
    if (v == floor(v) && fabs(v) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
}

/* Normalises the default at idx for `type` and pushes it, or returns
 * what is wrong (pushing nothing). */
static const char *weir_recipe_default_value(lua_State *L, int idx, weir_param_type type) {
    double d;
    switch (type) {
    case WEIR_PARAM_STRING:
        if (lua_type(L, idx) != LUA_TSTRING) return "must be a string";
        break;
    case WEIR_PARAM_NUMBER:
        if (lua_type(L, idx) != LUA_TNUMBER || !isfinite((double)lua_tonumber(L, idx)))
            return "must be a number";
        break;
    case WEIR_PARAM_INTEGER:
        if (lua_type(L, idx) != LUA_TNUMBER) return "must be an integer";
        if (!lua_isinteger(L, idx)) {
            lua_Number n = lua_tonumber(L, idx);
            if (n != floor(n) || fabs(n) >= 9007199254740992.0) return "must be an integer";
            lua_pushinteger(L, (lua_Integer)n);
            return NULL;
        }
        break;
    case WEIR_PARAM_BOOLEAN:
        if (lua_type(L, idx) != LUA_TBOOLEAN) return "must be true or false";
        break;
    case WEIR_PARAM_DURATION:
        if (weir_recipe_duration_value(L, idx, &d) != 0) return WEIR_RECIPE_DURATION_HELP;
        weir_recipe_push_seconds(L, d);
        return NULL;
    case WEIR_PARAM_URL:
        if (lua_type(L, idx) != LUA_TSTRING || !weir_recipe_url_ok(lua_tostring(L, idx)))
            return "must be an http:// or https:// URL with a host";
        break;
    case WEIR_PARAM_JSON:
        break;
    }
    lua_pushvalue(L, idx);
    return NULL;
}

static void weir_recipe_check_default(weir_recipe_ctx *c, int s, weir_recipe_param *p) {
    lua_State *L = c->L;
    char got[96];
    const char *why;
    weir_recipe_push(c, "default");
    if (weir_recipe_field(L, s, "default") == LUA_TNIL) goto out;
    if (p->secret) {
        weir_recipe_problem(c, "a secret param must not have a default (set it with --set "
                               "or the environment)");
        goto out;
    }
    if (p->required) {
        weir_recipe_problem(c, "a required param cannot have a default (drop one of them)");
        goto out;
    }
    if (!p->type) goto out;
    if ((why = weir_recipe_default_value(L, -1, p->type)) != NULL) {
        weir_recipe_problem(c, "%s (got %s)", why, WEIR_GOT(c, -1));
        goto out;
    }
    lua_pushcfunction(L, weir_recipe_encode_protected);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        weir_recipe_problem(c, "cannot be written as JSON: %s", lua_tostring(L, -1));
    } else {
        p->default_json = weir_recipe_strdup(c, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
out:
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

static void weir_recipe_check_param(weir_recipe_ctx *c, int s, weir_recipe_param *p) {
    lua_State *L = c->L;
    char got[96], types[128];
    int i;
    weir_recipe_join(weir_recipe_type_names + 1, types, sizeof types);
    if (lua_type(L, s) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table such as {type = \"string\"} (got %s)",
                            WEIR_GOT(c, s));
        return;
    }
    weir_recipe_check_keys(c, s, weir_recipe_param_keys);
    weir_recipe_push(c, "type");
    if (weir_recipe_field(L, s, "type") == LUA_TNIL) {
        weir_recipe_problem(c, "missing (one of %s)", types);
    } else {
        if (lua_type(L, -1) == LUA_TSTRING)
            for (i = 1; weir_recipe_type_names[i]; i++)
                if (strcmp(lua_tostring(L, -1), weir_recipe_type_names[i]) == 0)
                    p->type = (weir_param_type)i;
        if (!p->type) weir_recipe_problem(c, "must be one of %s (got %s)", types, WEIR_GOT(c, -1));
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
    weir_recipe_get_bool(c, s, "required", &p->required);
    weir_recipe_get_bool(c, s, "secret", &p->secret);
    weir_recipe_get_string(c, s, "description", &p->description);
    weir_recipe_check_default(c, s, p);
}

static void weir_recipe_check_params(weir_recipe_ctx *c, int t) {
    lua_State *L = c->L;
    weir_recipe *r = c->r;
    char got[96];
    int i, p;
    weir_recipe_push(c, "params");
    if (weir_recipe_field(L, t, "params") == LUA_TNIL) goto out;
    p = lua_gettop(L);
    if (lua_type(L, p) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table of name = {type = ...} (got %s)", WEIR_GOT(c, p));
        goto out;
    }
    weir_recipe_collect_names(c, p, "params");
    r->params = weir_recipe_calloc(c, (size_t)c->nnames, sizeof *r->params);
    for (i = 0; i < c->nnames; i++) {
        weir_recipe_param *prm = &r->params[r->nparams++];
        prm->name = weir_recipe_strdup(c, c->names[i].name);
        weir_recipe_push(c, prm->name);
        if (!weir_recipe_name_ok(prm->name, "_", "_") || isdigit((unsigned char)prm->name[0]))
            weir_recipe_problem(c, "invalid param name (lower-case letters, digits and '_', "
                                   "starting with a letter or '_', at most %d characters; it "
                                   "becomes WEIR_PARAM_<NAME>)",
                                WEIR_RECIPE_NAME_MAX);
        weir_recipe_field(L, p, prm->name);
        weir_recipe_check_param(c, lua_gettop(L), prm);
        lua_pop(L, 1);
        weir_recipe_pop(c);
    }
    weir_recipe_names_free(c);
out:
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

static const weir_recipe_param *weir_recipe_find_param(const weir_recipe *r, const char *name,
                                                       size_t len) {
    int i;
    for (i = 0; i < r->nparams; i++)
        if (strlen(r->params[i].name) == len && strncmp(r->params[i].name, name, len) == 0)
            return &r->params[i];
    return NULL;
}

/* ---- triggers ---- */

static void weir_recipe_check_every(weir_recipe_ctx *c, int tr_idx, weir_trigger *tr) {
    lua_State *L = c->L;
    char got[96], a[32];
    double v;
    weir_recipe_push(c, "every");
    weir_recipe_field(L, tr_idx, "every");
    tr->kind = WEIR_TRIGGER_EVERY;
    if (lua_type(L, -1) == LUA_TSTRING && lua_tostring(L, -1)[0] == '$') {
        const char *name = lua_tostring(L, -1) + 1;
        const weir_recipe_param *p = weir_recipe_find_param(c->r, name, strlen(name));
        if (!p)
            weir_recipe_problem(c, "%s names no declared param (declare params.%s with "
                                   "type = \"duration\")", WEIR_GOT(c, -1), name);
        else if (p->type && p->type != WEIR_PARAM_DURATION)
            weir_recipe_problem(c, "param '%s' is of type %s; every needs a duration param",
                                name, weir_recipe_type_names[p->type]);
        else if (p->type)
            tr->every_param = weir_recipe_strdup(c, name);
    } else if (weir_recipe_duration_value(L, -1, &v) != 0) {
        weir_recipe_problem(c, WEIR_RECIPE_DURATION_HELP ", or \"$param\" (got %s)",
                            WEIR_GOT(c, -1));
    } else if (v < 1.0) {
        weir_recipe_problem(c, "must be at least 1s (got %s)",
                            weir_recipe_fmt_seconds(v, a, sizeof a));
    } else {
        tr->every_ms = (uint64_t)llround(v * 1000.0);
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

static void weir_recipe_check_cron(weir_recipe_ctx *c, int tr_idx, weir_trigger *tr) {
    lua_State *L = c->L;
    char got[96], err[256];
    tr->kind = WEIR_TRIGGER_CRON;
    weir_recipe_push(c, "cron");
    weir_recipe_field(L, tr_idx, "cron");
    if (lua_type(L, -1) != LUA_TSTRING) {
        weir_recipe_problem(c, "must be a cron expression such as \"0 3 * * *\" (got %s)",
                            WEIR_GOT(c, -1));
    } else {
        tr->cron_expr = weir_recipe_strdup(c, lua_tostring(L, -1));
        if (weir_cron_parse(tr->cron_expr, &tr->cron, err, sizeof err) != 0)
            weir_recipe_problem(c, "invalid cron expression %s: %s", WEIR_GOT(c, -1), err);
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
    weir_recipe_push(c, "tz");
    if (weir_recipe_field(L, tr_idx, "tz") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING || !weir_cron_tz_valid(lua_tostring(L, -1)))
            weir_recipe_problem(c, "unknown time zone %s (an IANA name such as "
                                   "\"Europe/Paris\" or \"UTC\")", WEIR_GOT(c, -1));
        else
            tr->tz = weir_recipe_strdup(c, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

static int weir_recipe_on_ok(const char *s) {
    const char *rest;
    if (strncmp(s, "webhook:", 8) == 0) {
        rest = s + 8;
        if (!*rest || strlen(rest) > WEIR_RECIPE_NAME_MAX) return 0;
        for (; *rest; rest++)
            if (!(isalnum((unsigned char)*rest) || strchr("._-", *rest))) return 0;
        return 1;
    }
    if (strncmp(s, "stream:", 7) == 0) {
        rest = s + 7;
        if (!*rest || strlen(rest) > 200) return 0;
        for (; *rest; rest++)
            if ((unsigned char)*rest <= 32 || *rest == 127) return 0;
        return 1;
    }
    return 0;
}

static void weir_recipe_check_trigger(weir_recipe_ctx *c, int t, weir_trigger *tr) {
    static const char *const kinds[] = {"every", "cron", "on", "manual", NULL};
    lua_State *L = c->L;
    char got[96];
    const char *present[4];
    int n = 0, i;
    if (lua_type(L, t) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table such as {every = \"5m\"} (got %s)",
                            WEIR_GOT(c, t));
        return;
    }
    weir_recipe_check_keys(c, t, weir_recipe_trigger_keys);
    for (i = 0; kinds[i]; i++) {
        if (weir_recipe_field(L, t, kinds[i]) != LUA_TNIL) present[n++] = kinds[i];
        lua_pop(L, 1);
    }
    if (n == 0) {
        weir_recipe_problem(c, "needs one of every, cron, on, manual");
        return;
    }
    if (n > 1) {
        weir_recipe_problem(c, "has both %s and %s: one kind per trigger (add another "
                               "trigger to the array)", present[0], present[1]);
        return;
    }
    if (strcmp(present[0], "cron") != 0) {
        if (weir_recipe_field(L, t, "tz") != LUA_TNIL) {
            weir_recipe_push(c, "tz");
            weir_recipe_problem(c, "only applies to cron triggers");
            weir_recipe_pop(c);
        }
        lua_pop(L, 1);
    }
    if (strcmp(present[0], "every") == 0) {
        weir_recipe_check_every(c, t, tr);
    } else if (strcmp(present[0], "cron") == 0) {
        weir_recipe_check_cron(c, t, tr);
    } else if (strcmp(present[0], "on") == 0) {
        tr->kind = WEIR_TRIGGER_ON;
        weir_recipe_push(c, "on");
        weir_recipe_field(L, t, "on");
        if (lua_type(L, -1) != LUA_TSTRING || !weir_recipe_on_ok(lua_tostring(L, -1)))
            weir_recipe_problem(c, "must be \"webhook:NAME\" (NAME: letters, digits, '.', "
                                   "'_', '-') or \"stream:KEY\" (got %s)", WEIR_GOT(c, -1));
        else
            tr->on = weir_recipe_strdup(c, lua_tostring(L, -1));
        lua_pop(L, 1);
        weir_recipe_pop(c);
    } else {
        tr->kind = WEIR_TRIGGER_MANUAL;
        weir_recipe_push(c, "manual");
        weir_recipe_field(L, t, "manual");
        if (!(lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)))
            weir_recipe_problem(c, "must be true (got %s)", WEIR_GOT(c, -1));
        lua_pop(L, 1);
        weir_recipe_pop(c);
    }
}

static void weir_recipe_check_triggers(weir_recipe_ctx *c, int job_idx, weir_recipe_job *j) {
    lua_State *L = c->L;
    char got[96];
    int t, n, i, bad = 0;
    weir_recipe_push(c, "triggers");
    if (weir_recipe_field(L, job_idx, "triggers") == LUA_TNIL) {
        /* no triggers: the job runs when started by hand */
        j->triggers = weir_recipe_calloc(c, 1, sizeof *j->triggers);
        j->triggers[0].kind = WEIR_TRIGGER_MANUAL;
        j->ntriggers = 1;
        goto out;
    }
    t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be an array of triggers such as { {every = \"5m\"} } "
                               "(got %s)", WEIR_GOT(c, t));
        goto out;
    }
    n = (int)lua_rawlen(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n)
            continue;
        if (!bad) {
            if (lua_type(L, -1) == LUA_TSTRING &&
                weir_recipe_in(weir_recipe_trigger_keys, lua_tostring(L, -1)))
                weir_recipe_problem(c, "must be an array of triggers: write triggers = "
                                       "{ {%s = ...} }", lua_tostring(L, -1));
            else
                weir_recipe_problem(c, "must be an array of triggers (unexpected key %s)",
                                    WEIR_GOT(c, -1));
        }
        bad = 1;
    }
    if (bad) goto out;
    if (n == 0) {
        weir_recipe_problem(c, "must not be empty (leave triggers out for a job that is "
                               "only started by hand)");
        goto out;
    }
    j->triggers = weir_recipe_calloc(c, (size_t)n, sizeof *j->triggers);
    for (i = 1; i <= n; i++) {
        weir_trigger *tr = &j->triggers[j->ntriggers++];
        weir_recipe_push_index(c, i);
        lua_rawgeti(L, t, i);
        weir_recipe_check_trigger(c, lua_gettop(L), tr);
        lua_pop(L, 1);
        weir_recipe_pop(c);
    }
out:
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

/* ---- retry ---- */

static void weir_recipe_check_retry(weir_recipe_ctx *c, int job_idx, weir_recipe_job *j) {
    lua_State *L = c->L;
    weir_retry_policy *rp = &j->retry;
    char got[96], a[32];
    int t, base_ok, cap_ok;
    weir_recipe_push(c, "retry");
    if (weir_recipe_field(L, job_idx, "retry") == LUA_TNIL) goto out;
    t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table such as {max_attempts = 5, base = \"2s\"} "
                               "(got %s)", WEIR_GOT(c, t));
        goto out;
    }
    weir_recipe_check_keys(c, t, weir_recipe_retry_keys);
    weir_recipe_get_int(c, t, "max_attempts", 1, WEIR_RECIPE_MAX_ATTEMPTS, &rp->max_attempts);
    base_ok = weir_recipe_get_duration(c, t, "base", 0.001, 3600, &rp->base_s) >= 0;
    cap_ok = weir_recipe_get_duration(c, t, "cap", 0.001, WEIR_RECIPE_DAY, &rp->cap_s) == 1;
    if (base_ok && cap_ok && rp->cap_s < rp->base_s) {
        weir_recipe_push(c, "cap");
        weir_recipe_problem(c, "must be at least base (%s)",
                            weir_recipe_fmt_seconds(rp->base_s, a, sizeof a));
        weir_recipe_pop(c);
    }
    weir_recipe_get_duration(c, t, "max_elapsed", 0, 30 * WEIR_RECIPE_DAY, &rp->max_elapsed_s);
    weir_recipe_push(c, "jitter");
    if (weir_recipe_field(L, t, "jitter") != LUA_TNIL) {
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(s, "full") == 0) rp->full_jitter = 1;
        else if (strcmp(s, "none") == 0) rp->full_jitter = 0;
        else weir_recipe_problem(c, "must be \"full\" or \"none\" (got %s)", WEIR_GOT(c, -1));
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
out:
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

/* ---- handlers ---- */

static int weir_recipe_ident_ok(const char *s, size_t n, int dashes) {
    size_t i;
    if (n == 0 || isdigit((unsigned char)s[0])) return 0;
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || (dashes && s[i] == '-')))
            return 0;
    return 1;
}

static int weir_recipe_module_ok(const char *s, size_t n) {
    size_t start = 0, i;
    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!weir_recipe_ident_ok(s + start, i - start, 1)) return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* Error text on one line: require's "not found" lists one path a line. */
static void weir_recipe_flatten(char *s) {
    char *r = s, *w = s;
    while (*r) {
        if (*r == '\n' || *r == '\t') {
            while (*r == '\n' || *r == '\t') r++;
            if (w > s && w[-1] != ' ') *w++ = ' ';
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
}

static int weir_recipe_strcmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Requires the handler's module in the recipe's state (on the main
 * thread, under the CPU cap) and checks that the function exists. */
static void weir_recipe_check_handler_fn(weir_recipe_ctx *c, weir_recipe_job *j) {
    lua_State *L = c->L;
    weir_state *st = c->st;
    int rc;
    weir_state_push_env(st, L);
    lua_getfield(L, -1, "require");
    lua_remove(L, -2);
    lua_pushstring(L, j->module);
    st->running = NULL;
    st->slice_start_ns = uv_hrtime();
    st->slice_killed = 0;
    lua_sethook(L, weir_state_cpu_hook, LUA_MASKCOUNT, WEIR_HOOK_COUNT);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc != LUA_OK) {
        char *msg = weir_recipe_strdup(c, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                          : "(error object is not a string)");
        weir_recipe_flatten(msg);
        weir_recipe_problem(c, "cannot load module '%s': %s", j->module,
                            rc == LUA_ERRMEM ? "not enough memory (the state's cap)" : msg);
        free(msg);
    } else if (lua_type(L, -1) != LUA_TTABLE) {
        char got[96];
        weir_recipe_problem(c, "module '%s' returned %s, not a table of functions", j->module,
                            WEIR_GOT(c, -1));
    } else {
        int t = lua_gettop(L);
        if (weir_recipe_field(L, t, j->function) != LUA_TFUNCTION) {
            /* the module's functions, sorted: table order is not stable */
            const char *fns[16];
            char have[200];
            size_t o = 0, nfns = 0, k;
            have[0] = '\0';
            lua_pushnil(L);
            while (lua_next(L, t)) {
                /* key strings stay alive: the module table holds them */
                if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION &&
                    nfns < sizeof fns / sizeof fns[0])
                    fns[nfns++] = lua_tostring(L, -2);
                lua_pop(L, 1);
            }
            qsort(fns, nfns, sizeof fns[0], weir_recipe_strcmp);
            for (k = 0; k < nfns && o < sizeof have - 1; k++)
                o += (size_t)snprintf(have + o, sizeof have - o, "%s%s", o ? ", " : "", fns[k]);
            weir_recipe_problem(c, "module '%s' has no function '%s'%s%s%s", j->module,
                                j->function, o ? " (it has: " : "", have, o ? ")" : "");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void weir_recipe_check_handler(weir_recipe_ctx *c, int job_idx, weir_recipe_job *j) {
    lua_State *L = c->L;
    char got[96];
    weir_recipe_push(c, "handler");
    if (weir_recipe_field(L, job_idx, "handler") == LUA_TNIL) {
        weir_recipe_problem(c, "missing (\"module.function\", such as \"jobs.fetch.run\")");
    } else if (lua_type(L, -1) != LUA_TSTRING) {
        weir_recipe_problem(c, "must be a string \"module.function\" (got %s)", WEIR_GOT(c, -1));
    } else {
        const char *h = lua_tostring(L, -1);
        const char *dot = strrchr(h, '.');
        if (!dot || !weir_recipe_module_ok(h, (size_t)(dot - h)) ||
            !weir_recipe_ident_ok(dot + 1, strlen(dot + 1), 0)) {
            weir_recipe_problem(c, "must be \"module.function\" such as \"jobs.fetch.run\" "
                                   "(got %s)", WEIR_GOT(c, -1));
        } else {
            j->module = weir_recipe_calloc(c, (size_t)(dot - h) + 1, 1);
            memcpy(j->module, h, (size_t)(dot - h));
            j->function = weir_recipe_strdup(c, dot + 1);
            weir_recipe_check_handler_fn(c, j);
        }
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

/* ---- jobs ---- */

static void weir_recipe_check_job(weir_recipe_ctx *c, int s, weir_recipe_job *j) {
    char got[96];
    j->retry.max_attempts = 5;
    j->retry.base_s = 1.0;
    j->retry.cap_s = 300.0;
    j->retry.full_jitter = 1;
    j->retry.max_elapsed_s = 0;
    j->concurrency = 1;
    j->timeout_s = 300.0;
    if (lua_type(c->L, s) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table such as {handler = \"jobs.fetch.run\"} "
                               "(got %s)", WEIR_GOT(c, s));
        return;
    }
    weir_recipe_check_keys(c, s, weir_recipe_job_keys);
    weir_recipe_check_handler(c, s, j);
    weir_recipe_check_triggers(c, s, j);
    weir_recipe_check_retry(c, s, j);
    weir_recipe_get_int(c, s, "concurrency", 1, WEIR_RECIPE_MAX_CONCURRENCY, &j->concurrency);
    weir_recipe_get_duration(c, s, "timeout", 0, 7 * WEIR_RECIPE_DAY, &j->timeout_s);
    {
        char *ignored = NULL;   /* checked for its type; not kept */
        weir_recipe_get_string(c, s, "description", &ignored);
        free(ignored);
    }
}

static void weir_recipe_check_jobs(weir_recipe_ctx *c, int t) {
    lua_State *L = c->L;
    weir_recipe *r = c->r;
    char got[96];
    int i, p;
    weir_recipe_push(c, "jobs");
    if (weir_recipe_field(L, t, "jobs") == LUA_TNIL) {
        weir_recipe_problem(c, "missing (a table of name = {handler = ..., triggers = ...})");
        goto out;
    }
    p = lua_gettop(L);
    if (lua_type(L, p) != LUA_TTABLE) {
        weir_recipe_problem(c, "must be a table of name = {handler = ...} (got %s)",
                            WEIR_GOT(c, p));
        goto out;
    }
    weir_recipe_collect_names(c, p, "jobs");
    if (c->nnames == 0 && lua_rawlen(L, p) == 0)
        weir_recipe_problem(c, "must declare at least one job");
    r->jobs = weir_recipe_calloc(c, (size_t)c->nnames, sizeof *r->jobs);
    for (i = 0; i < c->nnames; i++) {
        weir_recipe_job *j = &r->jobs[r->njobs++];
        j->name = weir_recipe_strdup(c, c->names[i].name);
        j->line = c->names[i].line;
        weir_recipe_push(c, j->name);
        if (!weir_recipe_name_ok(j->name, "", "_-"))
            weir_recipe_problem(c, "invalid job name (lower-case letters, digits, '_' and '-', "
                                   "starting with a letter or digit, at most %d characters)",
                                WEIR_RECIPE_NAME_MAX);
        weir_recipe_field(L, p, j->name);
        weir_recipe_check_job(c, lua_gettop(L), j);
        lua_pop(L, 1);
        weir_recipe_pop(c);
    }
    weir_recipe_names_free(c);
out:
    lua_pop(L, 1);
    weir_recipe_pop(c);
}

/* ---- the recipe table ---- */

static void weir_recipe_check_root(weir_recipe_ctx *c, int t) {
    lua_State *L = c->L;
    weir_recipe *r = c->r;
    char got[96];
    if (lua_type(L, t) != LUA_TTABLE) {
        weir_recipe_problem(c, "recipe.lua must return the recipe table (got %s)",
                            WEIR_GOT(c, t));
        return;
    }
    weir_recipe_check_keys(c, t, weir_recipe_root_keys);

    weir_recipe_push(c, "name");
    if (weir_recipe_field(L, t, "name") == LUA_TNIL)
        weir_recipe_problem(c, "missing (a name such as \"workspace-audit\")");
    else if (lua_type(L, -1) != LUA_TSTRING || !weir_recipe_name_ok(lua_tostring(L, -1), "", "._-"))
        weir_recipe_problem(c, "must match [a-z0-9][a-z0-9._-]* (at most %d characters; got %s)",
                            WEIR_RECIPE_NAME_MAX, WEIR_GOT(c, -1));
    else
        r->name = weir_recipe_strdup(c, lua_tostring(L, -1));
    lua_pop(L, 1);
    weir_recipe_pop(c);

    weir_recipe_push(c, "version");
    if (weir_recipe_field(L, t, "version") == LUA_TNIL) {
        weir_recipe_problem(c, "missing (a string such as \"1.0.0\")");
    } else {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t i, n = v ? strlen(v) : 0;
        int ok = v && n > 0 && n <= WEIR_RECIPE_NAME_MAX;
        for (i = 0; ok && i < n; i++)
            if ((unsigned char)v[i] <= 32 || v[i] == 127) ok = 0;
        if (!ok)
            weir_recipe_problem(c, "must be a non-empty string without spaces such as "
                                   "\"1.0.0\" (got %s)", WEIR_GOT(c, -1));
        else
            r->version = weir_recipe_strdup(c, v);
    }
    lua_pop(L, 1);
    weir_recipe_pop(c);

    weir_recipe_get_string(c, t, "description", &r->description);
    weir_recipe_check_params(c, t);
    weir_recipe_check_jobs(c, t);
}

static int weir_recipe_validate_protected(lua_State *L) {
    weir_recipe_ctx *c = lua_touserdata(L, 1);
    lua_State *co = c->job->co;
    int n = c->job->nres;
    if (n > 0) {
        if (!lua_checkstack(co, 1)) return luaL_error(L, "out of memory");
        lua_pushvalue(co, lua_gettop(co) - n + 1);
        lua_xmove(co, L, 1);
    } else {
        lua_pushnil(L);
    }
    weir_recipe_check_root(c, lua_gettop(L));
    return 0;
}

/* ---- loading ---- */

static char *weir_recipe_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (!f) return NULL;
    for (;;) {
        size_t n;
        if (*len + 1 >= cap) {
            char *p = realloc(buf, cap ? cap * 2 : 8192);
            if (!p) { free(buf); fclose(f); errno = ENOMEM; return NULL; }
            buf = p;
            cap = cap ? cap * 2 : 8192;
        }
        n = fread(buf + *len, 1, cap - *len - 1, f);
        *len += n;
        if (n == 0) break;
    }
    if (ferror(f)) { free(buf); fclose(f); errno = EIO; return NULL; }
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

static void weir_recipe_problem_text(weir_recipe_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void weir_recipe_problem_text(weir_recipe_ctx *c, int line, const char *fmt, ...) {
    weir_recipe_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    weir_recipe_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.oom) { free(b.p); b.p = NULL; }
    weir_recipe_problems_add(&c->probs, line, b.p);
}

/* The job parked on an engine call: where, in recipe.lua or a module. */
static void weir_recipe_where(lua_State *co, char *buf, size_t len) {
    lua_Debug ar;
    int level;
    buf[0] = '\0';
    for (level = 0; lua_getstack(co, level, &ar); level++) {
        if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
            snprintf(buf, len, "%s:%d: ", ar.short_src, ar.currentline);
            return;
        }
    }
}

/* Runs recipe.lua as a job.  Loading must be over when weir_recipe_load
 * returns, and the caller may be inside a loop callback where uv_run
 * cannot be re-entered, so the job is resumed once, directly, instead of
 * being queued: a chunk that only computes data ends in that resume; one
 * that parks on an engine call is killed (its I/O is cancelled before
 * the loop ever runs it). */
static int weir_recipe_run_chunk(weir_recipe_ctx *c) {
    weir_job *job = weir_job_new(c->st);
    if (!job) {
        weir_recipe_problem_text(c, 0, "%s: out of memory", c->file);
        return -1;
    }
    c->job = job;
    if (weir_state_load_file(c->st, job->co, c->file) != LUA_OK) {
        weir_recipe_problem_text(c, 0, "%s", lua_tostring(job->co, -1));
        lua_pop(job->co, 1);
        return -1;
    }
    job->nargs = 0;
    job->on_done = NULL;
    job->status = WEIR_JOB_READY;
    weir_job_resume(job);
    if (job->status == WEIR_JOB_DONE) {
        weir_job *other;
        for (other = c->st->jobs; other; other = other->next_in_state)
            if (other != job) break;
        if (!other) return 0;
        /* spawned tasks die with the throwaway state */
        weir_recipe_problem_text(c, 0, "%s: recipe.lua may only compute and return data: it "
                                       "started a task while loading (task.spawn belongs in "
                                       "job handlers)", c->file);
        return -1;
    }
    if (job->status == WEIR_JOB_FAILED) {
        char *msg = strdup(job->error ? job->error : "loading failed");
        char *tb = msg ? strstr(msg, "\nstack traceback:") : NULL;
        if (tb) *tb = '\0';
        if (msg) weir_recipe_flatten(msg);
        weir_recipe_problem_text(c, 0, "%s", msg ? msg : "loading failed (out of memory)");
        free(msg);
        return -1;
    }
    {
        char where[300];
        weir_recipe_where(job->co, where, sizeof where);
        weir_recipe_problem_text(c, 0, "%s%s may only compute and return data: it called %s "
                                       "while loading (engine calls belong in job handlers)",
                                 where[0] ? where : "", where[0] ? "recipe.lua" : c->file,
                                 job->op && job->op->what ? job->op->what : "an engine call");
        weir_job_kill(job, "recipe loading made an engine call");
    }
    return -1;
}

static const char *weir_recipe_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static char *weir_recipe_join_path(const char *dir, const char *file) {
    size_t n = strlen(dir);
    char *p;
    while (n > 1 && dir[n - 1] == '/') n--;
    p = malloc(n + strlen(file) + 2);
    if (!p) return NULL;
    memcpy(p, dir, n);
    p[n] = '/';
    strcpy(p + n + 1, file);
    return p;
}

/* Everything after the file exists: state, job, validation. */
static void weir_recipe_load_in_state(weir_recipe_ctx *c, const char *dir) {
    const char *err = NULL;
    char errbuf[512];
    c->st = weir_state_new(c->e, weir_recipe_basename(c->r->dir), &dir, 1, &err);
    if (!c->st) {
        weir_recipe_problem_text(c, 0, "%s: cannot create the Lua state: %s", c->file,
                                 err ? err : "out of memory");
        return;
    }
    c->L = c->st->L;
    if (weir_recipe_run_chunk(c) == 0 &&
        weir_state_pcall(c->st, weir_recipe_validate_protected, c, errbuf, sizeof errbuf) !=
            LUA_OK)
        weir_recipe_problem_text(c, 0, "%s: validation stopped: %s", c->file, errbuf);
    weir_recipe_names_free(c);
    if (c->job) weir_job_release(c->job);
    c->job = NULL;
    weir_state_free(c->st);
    c->st = NULL;
}

weir_recipe *weir_recipe_load(weir_engine *e, const char *dir, char **errors) {
    weir_recipe_ctx c;
    char *src = NULL, *real = NULL, *file = NULL;
    size_t srclen = 0;
    memset(&c, 0, sizeof c);
    *errors = NULL;
    c.e = e;
    c.r = calloc(1, sizeof *c.r);
    file = weir_recipe_join_path(dir, "recipe.lua");
    if (!c.r || !file) goto oom;
    c.file = file;
    real = realpath(dir, NULL);
    if (!real) {
        weir_recipe_problem_text(&c, 0, "%s: cannot open the recipe directory: %s", dir,
                                 strerror(errno));
        goto done;
    }
    c.r->dir = real;
    c.r->file = weir_recipe_join_path(real, "recipe.lua");
    if (!c.r->file) goto oom;
    src = weir_recipe_read_file(file, &srclen);
    if (!src) {
        weir_recipe_problem_text(&c, 0, "%s: cannot read: %s", file, strerror(errno));
        goto done;
    }
    if (weir_recipe_lex(src, srclen, &c.toks) != 0) goto oom;
    weir_recipe_load_in_state(&c, dir);
    goto done;
oom:
    c.probs.oom = 1;
done:
    free(c.toks.v);
    free(src);
    free(file);
    if (c.probs.n || c.probs.oom) {
        *errors = weir_recipe_problems_join(&c.probs);
        if (!*errors) *errors = strdup("out of memory");
        weir_recipe_problems_free(&c.probs);
        weir_recipe_free(c.r);
        return NULL;
    }
    weir_recipe_problems_free(&c.probs);
    return c.r;
}

void weir_recipe_free(weir_recipe *r) {
    int i, k;
    if (!r) return;
    for (i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].default_json);
        free(r->params[i].description);
    }
    free(r->params);
    for (i = 0; i < r->njobs; i++) {
        weir_recipe_job *j = &r->jobs[i];
        for (k = 0; k < j->ntriggers; k++) {
            free(j->triggers[k].cron_expr);
            free(j->triggers[k].tz);
            free(j->triggers[k].on);
            free(j->triggers[k].every_param);
        }
        free(j->triggers);
        free(j->name);
        free(j->module);
        free(j->function);
    }
    free(r->jobs);
    free(r->dir);
    free(r->file);
    free(r->name);
    free(r->version);
    free(r->description);
    free(r);
}

const weir_recipe_job *weir_recipe_find_job(const weir_recipe *r, const char *name) {
    int i;
    for (i = 0; i < r->njobs; i++)
        if (strcmp(r->jobs[i].name, name) == 0) return &r->jobs[i];
    return NULL;
}

char *weir_recipe_summary(const weir_recipe *r) {
    weir_recipe_buf b = {0};
    weir_recipe_buf_printf(&b, "ok: %s %s: %d job%s, %d param%s", r->name, r->version,
                           r->njobs, r->njobs == 1 ? "" : "s", r->nparams,
                           r->nparams == 1 ? "" : "s");
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

/* ---- parameter values ---- */

typedef struct weir_recipe_pctx {
    weir_engine *e;
    const weir_recipe *r;
    const char *const *sets;
    int nsets;
    weir_recipe_problems probs;
    char *json;
} weir_recipe_pctx;

static void weir_recipe_pproblem(weir_recipe_pctx *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void weir_recipe_pproblem(weir_recipe_pctx *p, const char *fmt, ...) {
    weir_recipe_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    weir_recipe_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.oom) { free(b.p); b.p = NULL; }
    weir_recipe_problems_add(&p->probs, 0, b.p);
}

static int weir_recipe_parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "1", "yes", NULL};
    static const char *const no[] = {"false", "0", "no", NULL};
    int i;
    for (i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
    for (i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
    return -1;
}

/* Converts text for param p and pushes the value, or returns what is
 * wrong (pushing nothing). */
static const char *weir_recipe_convert(lua_State *L, const weir_recipe_param *p,
                                       const char *s) {
    char *end;
    double d;
    int b;
    switch (p->type) {
    case WEIR_PARAM_INTEGER: {
        long long v;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (!*s || *end || errno || isspace((unsigned char)*s)) return "must be an integer";
        lua_pushinteger(L, (lua_Integer)v);
        return NULL;
    }
    case WEIR_PARAM_NUMBER:
        /* digits, sign, point, exponent: no "inf", "nan", hex */
        if (!*s || strspn(s, "0123456789+-.eE") != strlen(s)) return "must be a number";
        errno = 0;
        d = strtod(s, &end);
        if (*end || errno || !isfinite(d)) return "must be a number";
        lua_pushnumber(L, d);
        return NULL;
    case WEIR_PARAM_BOOLEAN:
        if (weir_recipe_parse_bool(s, &b) != 0) return "must be true/false, 1/0 or yes/no";
        lua_pushboolean(L, b);
        return NULL;
    case WEIR_PARAM_DURATION:
        if (weir_duration_parse(s, &d) != 0) return WEIR_RECIPE_DURATION_HELP;
        weir_recipe_push_seconds(L, d);
        return NULL;
    case WEIR_PARAM_URL:
        if (!weir_recipe_url_ok(s)) return "must be an http:// or https:// URL with a host";
        lua_pushstring(L, s);
        return NULL;
    case WEIR_PARAM_JSON:
        if (weir_json_decode(L, s, strlen(s)) != 0) {
            lua_pop(L, 1);
            return "must be valid JSON";
        }
        return NULL;
    case WEIR_PARAM_STRING:
    default:
        lua_pushstring(L, s);
        return NULL;
    }
}

static void weir_recipe_env_name(const char *name, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "WEIR_PARAM_");
    for (; *name && o + 1 < len; name++) buf[o++] = (char)toupper((unsigned char)*name);
    buf[o] = '\0';
}

static void weir_recipe_unknown_set(weir_recipe_pctx *p, const char *key, size_t klen) {
    weir_recipe_buf list = {0};
    int i;
    for (i = 0; i < p->r->nparams; i++)
        weir_recipe_buf_printf(&list, "%s%s", i ? ", " : "", p->r->params[i].name);
    if (p->r->nparams)
        weir_recipe_pproblem(p, "--set %.*s: unknown param (declared: %s)", (int)klen, key,
                             list.oom ? "?" : list.p);
    else
        weir_recipe_pproblem(p, "--set %.*s: unknown param (this recipe declares no params)",
                             (int)klen, key);
    free(list.p);
}

static int weir_recipe_params_protected(lua_State *L) {
    weir_recipe_pctx *p = lua_touserdata(L, 1);
    const weir_recipe *r = p->r;
    int out, i, k;
    lua_newtable(L);
    out = lua_gettop(L);
    for (k = 0; k < p->nsets; k++) {
        const char *eq = strchr(p->sets[k], '=');
        size_t klen = eq ? (size_t)(eq - p->sets[k]) : strlen(p->sets[k]);
        if (!weir_recipe_find_param(r, p->sets[k], klen))
            weir_recipe_unknown_set(p, p->sets[k], klen);
    }
    for (i = 0; i < r->nparams; i++) {
        const weir_recipe_param *prm = &r->params[i];
        const char *val = NULL, *why;
        char env[WEIR_RECIPE_NAME_MAX + 16], from[WEIR_RECIPE_NAME_MAX + 32];
        size_t nlen = strlen(prm->name);
        weir_recipe_env_name(prm->name, env, sizeof env);
        for (k = 0; k < p->nsets; k++)          /* the last --set wins */
            if (strncmp(p->sets[k], prm->name, nlen) == 0 && p->sets[k][nlen] == '=')
                val = p->sets[k] + nlen + 1;
        if (val) {
            snprintf(from, sizeof from, "--set %s", prm->name);
        } else if ((val = getenv(env)) != NULL) {
            snprintf(from, sizeof from, "%s", env);
        }
        if (val) {
            if (prm->secret) weir_log_add_secret(p->e->log, val, strlen(val));
            if ((why = weir_recipe_convert(L, prm, val)) != NULL) {
                if (prm->secret)
                    weir_recipe_pproblem(p, "param %s (from %s): %s (value hidden: secret)",
                                         prm->name, from, why);
                else
                    weir_recipe_pproblem(p, "param %s (from %s): %s (got \"%s\")", prm->name,
                                         from, why, val);
                continue;
            }
            lua_setfield(L, out, prm->name);
        } else if (prm->default_json) {
            if (weir_json_decode(L, prm->default_json, strlen(prm->default_json)) != 0)
                return luaL_error(L, "param %s: stored default is not JSON", prm->name);
            lua_setfield(L, out, prm->name);
        } else if (prm->required) {
            weir_recipe_pproblem(p, "param %s: required; set it with --set %s=... or the "
                                    "environment variable %s", prm->name, prm->name, env);
        }
    }
    if (p->probs.n == 0) {
        weir_json_encode(L, out, WEIR_JSON_SORT_KEYS);
        p->json = strdup(lua_tostring(L, -1));
        if (!p->json) return luaL_error(L, "out of memory");
    }
    return 0;
}

/* A bare Lua state for JSON work outside any sandbox: it runs no script. */
static lua_State *weir_recipe_json_state(void) {
    return luaL_newstate();
}

char *weir_recipe_params_json(weir_engine *e, const weir_recipe *r, const char *const *sets,
                              int nsets, char **errors) {
    weir_recipe_pctx p;
    lua_State *L = weir_recipe_json_state();
    *errors = NULL;
    memset(&p, 0, sizeof p);
    p.e = e;
    p.r = r;
    p.sets = sets;
    p.nsets = nsets;
    if (!L) {
        *errors = strdup("params: out of memory");
        return NULL;
    }
    lua_pushcfunction(L, weir_recipe_params_protected);
    lua_pushlightuserdata(L, &p);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        char *msg = malloc(strlen(lua_tostring(L, -1)) + 9);
        if (msg) sprintf(msg, "params: %s", lua_tostring(L, -1));
        weir_recipe_problems_add(&p.probs, 0, msg);
    }
    lua_close(L);
    if (p.probs.n || p.probs.oom) {
        free(p.json);
        *errors = weir_recipe_problems_join(&p.probs);
        if (!*errors) *errors = strdup("out of memory");
        weir_recipe_problems_free(&p.probs);
        return NULL;
    }
    weir_recipe_problems_free(&p.probs);
    return p.json;
}

/* ---- every = "$param" ---- */

typedef struct weir_recipe_actx {
    weir_recipe *r;
    const char *json;
    weir_recipe_problems probs;
} weir_recipe_actx;

static int weir_recipe_apply_protected(lua_State *L) {
    weir_recipe_actx *a = lua_touserdata(L, 1);
    int i, k, t;
    if (weir_json_decode(L, a->json, strlen(a->json)) != 0 || !lua_istable(L, -1))
        return luaL_error(L, "params JSON is not an object");
    t = lua_gettop(L);
    for (i = 0; i < a->r->njobs; i++) {
        weir_recipe_job *j = &a->r->jobs[i];
        for (k = 0; k < j->ntriggers; k++) {
            weir_trigger *tr = &j->triggers[k];
            char msg[300];
            double v;
            if (tr->kind != WEIR_TRIGGER_EVERY || !tr->every_param) continue;
            lua_getfield(L, t, tr->every_param);
            v = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
            lua_pop(L, 1);
            if (v >= 1.0 && isfinite(v)) {
                tr->every_ms = (uint64_t)llround(v * 1000.0);
                continue;
            }
            if (v < 0)
                snprintf(msg, sizeof msg, "jobs.%s.triggers[%d].every: param %s has no value "
                         "(give it a default or set it)", j->name, k + 1, tr->every_param);
            else
                snprintf(msg, sizeof msg, "jobs.%s.triggers[%d].every: param %s must be at "
                         "least 1s (got %gs)", j->name, k + 1, tr->every_param, v);
            weir_recipe_problems_add(&a->probs, 0, strdup(msg));
        }
    }
    return 0;
}

int weir_recipe_apply_params(weir_recipe *r, const char *params_json, char **errors) {
    weir_recipe_actx a;
    lua_State *L = weir_recipe_json_state();
    *errors = NULL;
    memset(&a, 0, sizeof a);
    a.r = r;
    a.json = params_json;
    if (!L) {
        *errors = strdup("params: out of memory");
        return -1;
    }
    lua_pushcfunction(L, weir_recipe_apply_protected);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        char *msg = malloc(strlen(lua_tostring(L, -1)) + 9);
        if (msg) sprintf(msg, "params: %s", lua_tostring(L, -1));
        weir_recipe_problems_add(&a.probs, 0, msg);
    }
    lua_close(L);
    if (a.probs.n || a.probs.oom) {
        *errors = weir_recipe_problems_join(&a.probs);
        if (!*errors) *errors = strdup("out of memory");
        weir_recipe_problems_free(&a.probs);
        return -1;
    }
    weir_recipe_problems_free(&a.probs);
    return 0;
}
