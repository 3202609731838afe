/*
 * weir_json.c -- the "weir.json" module: JSON <-> Lua values on yajl.
 *
 * Decoding streams yajl_parse callbacks straight into Lua tables: there
 * is no intermediate DOM, every container is a table on the Lua stack
 * while it is open.  Encoding walks the value recursively and writes into
 * one growable buffer.  yajl_gen encodes the strings that need it
 * (escapes, UTF-8 validation); structure and numbers are written here,
 * because yajl_gen caps nesting at 128 levels (YAJL_MAX_DEPTH) where we
 * promise 1000, and so that floats round-trip exactly.
 *
 * Both directions run the library-owning part inside lua_pcall of a C
 * function so that a Lua error in the middle (out of memory, a value that
 * cannot be encoded) never leaks the yajl handle or the output buffer:
 * the caller frees them, then rethrows.
 */
#include "weir_json.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#define WEIR_JSON_MAX_DEPTH 1000
#define WEIR_JSON_INDENT "  "

/* Their addresses are the identity of json.null and of the registry slot
 * of json.array_mt: the same in every lua_State of the process. */
static const char weir_json_null_tag = 0;
static const char weir_json_array_mt_key = 0;
static const char weir_json_hints_key = 0;

/* Size hints for the decoder, one set per lua_State (a userdata in the
 * registry): for each of the first WEIR_JSON_HINT_DEPTH levels, how many
 * members the last array / object closed there had.  Documents tend to
 * repeat their shapes (a list of records, one record per line), and
 * creating each table at its final size instead of growing it through
 * 1, 2, 4, 8... slots saves most of the decoder's rehashing.  A wrong
 * hint only costs a few unused slots; hints are capped. */
#define WEIR_JSON_HINT_DEPTH 16
#define WEIR_JSON_HINT_MAX 64

typedef struct weir_json_hints {
    unsigned char array[WEIR_JSON_HINT_DEPTH + 1];
    unsigned char object[WEIR_JSON_HINT_DEPTH + 1];
} weir_json_hints;

/* ---------------------------------------------------------------------
 * Shared values
 * ------------------------------------------------------------------- */

void weir_json_push_null(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&weir_json_null_tag);
}

int weir_json_is_null(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
           lua_touserdata(L, idx) == (void *)&weir_json_null_tag;
}

static int weir_json_array_mt_newindex(lua_State *L) {
    const char *key = lua_tostring(L, 2);
    return luaL_error(L, "attempt to modify read-only table json.array_mt "
                      "(field '%s')", key ? key : "?");
}

/* The array metatable is shared by every decoded array of the state, so
 * one job giving it an __index would change what other jobs read.  It is
 * created empty (an assignment to an existing key would bypass
 * __newindex) with a locked metatable of its own whose __newindex
 * refuses every assignment.  (rawset is the sandbox's to refuse.) */
void weir_json_push_array_mt(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_json_array_mt_key) ==
        LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);                                /* mt */
    lua_createtable(L, 0, 2);                       /* mt guard */
    lua_pushcfunction(L, weir_json_array_mt_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);                        /* mt */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_json_array_mt_key);
}

/* Appends "where" (luaL_where of the script that called us) in front of
 * the string error at the top, then raises it.  Memory errors and
 * non-string errors are rethrown untouched. */
static int weir_json_rethrow(lua_State *L, int status) {
    if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

/* ---------------------------------------------------------------------
 * A small arena for yajl's own allocations
 *
 * yajl allocates its handle, lexer and buffers on every yajl_alloc /
 * yajl_gen_alloc, and yajl 2 cannot reset a parser for reuse.  On the hot
 * path (one small document per call) those mallocs cost more than the
 * parse, so they come from a buffer on the C stack instead; whatever does
 * not fit falls back to malloc.  Each block carries its size in a header
 * so realloc can copy it.
 * ------------------------------------------------------------------- */

#define WEIR_JSON_ARENA_SIZE 4096
#define WEIR_JSON_ARENA_ALIGN 16

typedef struct weir_json_arena {
    _Alignas(WEIR_JSON_ARENA_ALIGN) unsigned char mem[WEIR_JSON_ARENA_SIZE];
    size_t used;
} weir_json_arena;

static int weir_json_arena_owns(const weir_json_arena *a, const void *p) {
    uintptr_t u = (uintptr_t)p, base = (uintptr_t)a->mem;
    return u >= base && u < base + sizeof a->mem;
}

static void *weir_json_arena_malloc(void *ctx, size_t sz) {
    weir_json_arena *a = ctx;
    size_t need = WEIR_JSON_ARENA_ALIGN +
                  ((sz + WEIR_JSON_ARENA_ALIGN - 1) &
                   ~(size_t)(WEIR_JSON_ARENA_ALIGN - 1));
    unsigned char *p;

    if (sz > sizeof a->mem || need > sizeof a->mem - a->used)
        return malloc(sz);
    p = a->mem + a->used;
    memcpy(p, &sz, sizeof sz);
    a->used += need;
    return p + WEIR_JSON_ARENA_ALIGN;
}

static void weir_json_arena_free(void *ctx, void *p) {
    if (!weir_json_arena_owns(ctx, p))
        free(p);
}

static void *weir_json_arena_realloc(void *ctx, void *p, size_t sz) {
    size_t old;
    void *n;

    if (p == NULL)
        return weir_json_arena_malloc(ctx, sz);
    if (!weir_json_arena_owns(ctx, p))
        return realloc(p, sz);
    memcpy(&old, (unsigned char *)p - WEIR_JSON_ARENA_ALIGN, sizeof old);
    if (sz <= old)
        return p;
    n = weir_json_arena_malloc(ctx, sz);
    if (n != NULL)
        memcpy(n, p, old);
    return n;
}

static void weir_json_arena_init(weir_json_arena *a, yajl_alloc_funcs *af) {
    a->used = 0;
    af->malloc = weir_json_arena_malloc;
    af->realloc = weir_json_arena_realloc;
    af->free = weir_json_arena_free;
    af->ctx = a;
}

/* ---------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------- */

typedef struct weir_json_decoder {
    lua_State *L;
    yajl_handle h;
    const char *text;
    size_t len;
    int array_mt;            /* stack index of json.array_mt */
    int depth;               /* open containers */
    int too_deep;
    int completing;          /* failed in yajl_complete_parse */
    yajl_status status;
    weir_json_hints *hints;
    /* Per open container: the number of elements so far, as n (arrays)
     * or -1 - n (objects, whose pending key sits on the stack above the
     * table).  Points at count_inline until a document nests deeper. */
    lua_Integer *count;
    size_t count_cap;
    lua_Integer count_inline[64];
    weir_json_arena arena;
} weir_json_decoder;

/* Stores the value at the top into the enclosing container, if any. */
static int weir_json_dec_attach(weir_json_decoder *d) {
    lua_Integer *n;

    if (d->depth == 0)
        return 1;
    n = &d->count[d->depth];
    if (*n >= 0) {
        lua_rawseti(d->L, -2, ++*n);
    } else {
        lua_rawset(d->L, -3);
        --*n;
    }
    return 1;
}

static int weir_json_dec_null(void *ctx) {
    weir_json_decoder *d = ctx;
    weir_json_push_null(d->L);
    return weir_json_dec_attach(d);
}

static int weir_json_dec_boolean(void *ctx, int b) {
    weir_json_decoder *d = ctx;
    lua_pushboolean(d->L, b);
    return weir_json_dec_attach(d);
}

/* yajl hands over the raw text of the number.  lua_stringtonumber keeps
 * integers that fit in 64 bits as integers and turns the rest (fractions,
 * exponents, integers too large) into floats, which is the mapping we
 * promise.  The text is not NUL-terminated, hence the copy. */
static int weir_json_dec_number(void *ctx, const char *s, size_t len) {
    weir_json_decoder *d = ctx;
    lua_State *L = d->L;
    char small[64];

    if (len < sizeof small) {
        memcpy(small, s, len);
        small[len] = '\0';
        if (lua_stringtonumber(L, small) == 0)
            luaL_error(L, "number '%s' out of range", small);
    } else {
        const char *copy = lua_pushlstring(L, s, len);
        if (lua_stringtonumber(L, copy) == 0)
            luaL_error(L, "number '%s' out of range", copy);
        lua_remove(L, -2);
    }
    return weir_json_dec_attach(d);
}

static int weir_json_dec_string(void *ctx, const unsigned char *s,
                                size_t len) {
    weir_json_decoder *d = ctx;
    lua_pushlstring(d->L, (const char *)s, len);
    return weir_json_dec_attach(d);
}

static int weir_json_dec_key(void *ctx, const unsigned char *s, size_t len) {
    weir_json_decoder *d = ctx;
    lua_pushlstring(d->L, (const char *)s, len);
    return 1;
}

static void weir_json_dec_grow(weir_json_decoder *d) {
    size_t cap = d->count_cap * 2;
    lua_Integer *n;

    if (d->count == d->count_inline) {
        n = malloc(cap * sizeof *n);
        if (n != NULL)
            memcpy(n, d->count, d->count_cap * sizeof *n);
    } else {
        n = realloc(d->count, cap * sizeof *n);
    }
    if (n == NULL)
        luaL_error(d->L, "json.decode: out of memory");
    d->count = n;
    d->count_cap = cap;
}

static int weir_json_dec_open(weir_json_decoder *d, int is_array) {
    lua_State *L = d->L;

    if (d->depth == WEIR_JSON_MAX_DEPTH) {
        d->too_deep = 1;
        return 0;               /* cancels the parse */
    }
    if ((size_t)d->depth + 1 == d->count_cap)
        weir_json_dec_grow(d);
    /* The table, a pending key and the value being built. */
    luaL_checkstack(L, 3, "json.decode: nesting");
    d->depth++;
    if (is_array) {
        lua_createtable(L, d->depth <= WEIR_JSON_HINT_DEPTH ?
                           d->hints->array[d->depth] : 0, 0);
        lua_pushvalue(L, d->array_mt);
        lua_setmetatable(L, -2);
        d->count[d->depth] = 0;
    } else {
        lua_createtable(L, 0, d->depth <= WEIR_JSON_HINT_DEPTH ?
                              d->hints->object[d->depth] : 0);
        d->count[d->depth] = -1;
    }
    return 1;
}

static int weir_json_dec_close(weir_json_decoder *d) {
    if (d->depth <= WEIR_JSON_HINT_DEPTH) {
        lua_Integer n = d->count[d->depth];
        unsigned char *hint = n >= 0 ? &d->hints->array[d->depth]
                                     : &d->hints->object[d->depth];
        if (n < 0)
            n = -1 - n;
        *hint = (unsigned char)(n < WEIR_JSON_HINT_MAX ? n
                                                       : WEIR_JSON_HINT_MAX);
    }
    d->depth--;
    return weir_json_dec_attach(d);
}

static int weir_json_dec_start_map(void *ctx) {
    return weir_json_dec_open(ctx, 0);
}

static int weir_json_dec_end_map(void *ctx) {
    return weir_json_dec_close(ctx);
}

static int weir_json_dec_start_array(void *ctx) {
    return weir_json_dec_open(ctx, 1);
}

static int weir_json_dec_end_array(void *ctx) {
    return weir_json_dec_close(ctx);
}

static const yajl_callbacks weir_json_dec_callbacks = {
    weir_json_dec_null,
    weir_json_dec_boolean,
    NULL,                       /* integers and doubles come through */
    NULL,                       /* the number callback instead */
    weir_json_dec_number,
    weir_json_dec_string,
    weir_json_dec_start_map,
    weir_json_dec_key,
    weir_json_dec_end_map,
    weir_json_dec_start_array,
    weir_json_dec_end_array,
};

static void weir_json_push_parse_error(lua_State *L, weir_json_decoder *d);

/* Runs under lua_pcall: [decoder] -> value, or the parse error message
 * (d->status says which).  The message is built here, while the yajl
 * handle is alive and a memory error is still caught. */
static int weir_json_dec_protected(lua_State *L) {
    weir_json_decoder *d = lua_touserdata(L, 1);

    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &weir_json_hints_key) !=
        LUA_TUSERDATA) {
        lua_pop(L, 1);
        memset(lua_newuserdatauv(L, sizeof *d->hints, 0), 0,
               sizeof *d->hints);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &weir_json_hints_key);
    }
    d->hints = lua_touserdata(L, -1);
    weir_json_push_array_mt(L);
    d->array_mt = lua_gettop(L);
    d->status = yajl_parse(d->h, (const unsigned char *)d->text, d->len);
    if (d->status == yajl_status_ok) {
        d->completing = 1;
        d->status = yajl_complete_parse(d->h);
    }
    if (d->status != yajl_status_ok)
        weir_json_push_parse_error(L, d);
    return 1;
}

/* yajl's verbose-free message is "parse error: reason\n" or "lexical
 * error: reason.\n"; keep only the reason. */
static void weir_json_push_reason(lua_State *L, const char *msg) {
    const char *colon = strstr(msg, ": ");
    const char *start = colon ? colon + 2 : msg;
    size_t n = strlen(start);

    while (n > 0 && (start[n - 1] == '\n' || start[n - 1] == ' ' ||
                     start[n - 1] == '.'))
        n--;
    lua_pushlstring(L, start, n);
}

/* Pushes "parse error at line L, column C (byte B): reason". */
static void weir_json_push_parse_error(lua_State *L, weir_json_decoder *d) {
    size_t offset = d->len, i;
    size_t line = 1, column = 1;

    /* Bytes consumed by the failing yajl_parse call; a failure in
     * yajl_complete_parse (truncated input) is at the end. */
    if (!d->completing) {
        size_t consumed = yajl_get_bytes_consumed(d->h);
        if (consumed < offset)
            offset = consumed;
    }
    for (i = 0; i < offset; i++) {
        if (d->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    lua_pushfstring(L, "parse error at line %I, column %I (byte %I): ",
                    (lua_Integer)line, (lua_Integer)column,
                    (lua_Integer)offset);
    if (d->too_deep) {
        lua_pushfstring(L, "nesting deeper than %d levels",
                        WEIR_JSON_MAX_DEPTH);
    } else {
        unsigned char *msg = yajl_get_error(d->h, 0, NULL, 0);
        weir_json_push_reason(L, msg ? (const char *)msg : "malformed JSON");
        if (msg)
            yajl_free_error(d->h, msg);
    }
    lua_concat(L, 2);
}

int weir_json_decode(lua_State *L, const char *s, size_t len) {
    weir_json_decoder dec, *d = &dec;
    yajl_alloc_funcs af;
    int status;

    luaL_checkstack(L, 3, "json.decode");
    d->L = L;
    d->count = d->count_inline;
    d->count_cap = sizeof d->count_inline / sizeof d->count_inline[0];
    d->text = s;
    d->len = len;
    d->depth = 0;
    d->too_deep = 0;
    d->completing = 0;
    d->status = yajl_status_ok;
    weir_json_arena_init(&d->arena, &af);
    d->h = yajl_alloc(&weir_json_dec_callbacks, &af, d);
    if (d->h == NULL)
        return luaL_error(L, "json.decode: out of memory");
    /* Strict by default: no comments, strings validated as UTF-8, one
     * value, no trailing garbage. */
    lua_pushcfunction(L, weir_json_dec_protected);
    lua_pushlightuserdata(L, d);
    status = lua_pcall(L, 1, 1, 0);
    if (status == LUA_OK && d->status != yajl_status_ok)
        status = -1;            /* the message is on the stack */
    yajl_free(d->h);
    if (d->count != d->count_inline)
        free(d->count);
    if (status > 0)
        return lua_error(L);    /* out of memory and such: rethrow */
    return status;
}

/* ---------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------- */

/* One step of the path from the root to the value being encoded, kept
 * on the C stack; only turned into text when an error names the path. */
typedef struct weir_json_path {
    const struct weir_json_path *parent;
    const void *table;          /* the table holding this value */
    const char *key;            /* object key, or NULL: use index */
    size_t key_len;
    lua_Integer index;          /* array index (1-based) or integer key */
} weir_json_path;

/* A key of an object being encoded with sort_keys. */
typedef struct weir_json_key {
    const char *s;              /* the key's bytes (string keys: in the
                                 * table; integer keys: digits below) */
    size_t len;
    int is_int;
    lua_Integer i;
    char digits[24];
} weir_json_key;

typedef struct weir_json_encoder {
    lua_State *L;
    lua_Alloc alloc;            /* the state's allocator, so output */
    void *alloc_ud;             /* counts against its memory limit */
    yajl_gen strgen;            /* encodes one string at a time */
    int array_mt;               /* stack index of json.array_mt */
    int flags;
    char *buf;                  /* inline_buf until it outgrows it */
    size_t len, cap;
    weir_json_key *keys;        /* sort_keys scratch, used as a stack */
    size_t nkeys, keys_cap;
    char inline_buf[1024];
    weir_json_arena arena;      /* for yajl_gen's allocations */
} weir_json_encoder;

static void weir_json_enc_grow(weir_json_encoder *e, size_t need) {
    size_t cap = e->cap;
    int was_inline = e->buf == e->inline_buf;
    char *nb;

    while (cap - e->len < need) {
        if (cap > SIZE_MAX / 2)
            luaL_error(e->L, "json.encode: output too large");
        cap *= 2;
    }
    nb = e->alloc(e->alloc_ud, was_inline ? NULL : e->buf,
                  was_inline ? 0 : e->cap, cap);
    if (nb == NULL)
        luaL_error(e->L, "json.encode: not enough memory for %I bytes of "
                   "output", (lua_Integer)cap);
    if (was_inline)
        memcpy(nb, e->inline_buf, e->len);
    e->buf = nb;
    e->cap = cap;
}

static inline void weir_json_enc_add(weir_json_encoder *e, const char *s,
                                     size_t n) {
    if (e->cap - e->len < n)
        weir_json_enc_grow(e, n);
    memcpy(e->buf + e->len, s, n);
    e->len += n;
}

static inline void weir_json_enc_char(weir_json_encoder *e, char c) {
    if (e->cap == e->len)
        weir_json_enc_grow(e, 1);
    e->buf[e->len++] = c;
}

/* yajl_gen's print callback. */
static void weir_json_enc_print(void *ctx, const char *s, size_t n) {
    weir_json_enc_add(ctx, s, n);
}

/* Appends the path as text ($.a[2]["x y"]) to b, root first.  `level`
 * is p's distance from the root; levels strictly between `elide_from`
 * and `elide_to` print as one "..." so a path 1000 levels deep stays
 * readable. */
static void weir_json_path_add(luaL_Buffer *b, const weir_json_path *p,
                               int level, int elide_from, int elide_to) {
    size_t i;
    int ident;

    if (p == NULL) {
        luaL_addchar(b, '$');
        return;
    }
    weir_json_path_add(b, p->parent, level - 1, elide_from, elide_to);
    if (level > elide_from && level < elide_to) {
        if (level == elide_from + 1)
            luaL_addstring(b, "...");
        return;
    }
    if (p->key == NULL) {
        char num[32];
        snprintf(num, sizeof num, "[%lld]", (long long)p->index);
        luaL_addstring(b, num);
        return;
    }
    ident = p->key_len > 0 && p->key_len <= 64 &&
            !(p->key[0] >= '0' && p->key[0] <= '9');
    for (i = 0; ident && i < p->key_len; i++) {
        unsigned char c = (unsigned char)p->key[i];
        ident = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9');
    }
    if (ident) {
        luaL_addchar(b, '.');
        luaL_addlstring(b, p->key, p->key_len);
        return;
    }
    luaL_addstring(b, "[\"");
    for (i = 0; i < p->key_len && i < 64; i++) {
        unsigned char c = (unsigned char)p->key[i];
        if (c == '"' || c == '\\') {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)c);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02x", c);
            luaL_addstring(b, esc);
        } else {
            luaL_addchar(b, (char)c);
        }
    }
    if (p->key_len > 64)
        luaL_addstring(b, "...");
    luaL_addstring(b, "\"]");
}

/* Raises "json.encode: <what> at <path>". */
static void weir_json_enc_fail(weir_json_encoder *e, const weir_json_path *p,
                               const char *what) {
    lua_State *L = e->L;
    luaL_Buffer b;

    luaL_checkstack(L, 4, "json.encode");
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "json.encode: ");
    luaL_addstring(&b, what);
    const weir_json_path *q;
    int levels = 0;

    for (q = p; q != NULL; q = q->parent)
        levels++;
    luaL_addstring(&b, " at ");
    weir_json_path_add(&b, p, levels, 8, levels - 8);
    luaL_pushresult(&b);
    lua_error(L);
}

static void weir_json_enc_newline(weir_json_encoder *e, int depth) {
    weir_json_enc_char(e, '\n');
    while (depth-- > 0)
        weir_json_enc_add(e, WEIR_JSON_INDENT, sizeof WEIR_JSON_INDENT - 1);
}

static void weir_json_enc_string(weir_json_encoder *e, const char *s,
                                 size_t len, const weir_json_path *p,
                                 const char *what) {
    size_t i;

    /* Fast path: printable ASCII without '"' or '\\' is its own JSON
     * text; only the rest (escapes, UTF-8 to validate) goes to yajl,
     * whose per-string reset is comparatively expensive. */
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            break;
    }
    if (i == len) {
        if (e->cap - e->len < len + 2)
            weir_json_enc_grow(e, len + 2);
        e->buf[e->len++] = '"';
        memcpy(e->buf + e->len, s, len);
        e->len += len;
        e->buf[e->len++] = '"';
        return;
    }
    yajl_gen_reset(e->strgen, NULL);
    if (yajl_gen_string(e->strgen, (const unsigned char *)s, len) !=
        yajl_gen_status_ok)
        weir_json_enc_fail(e, p, what);
}

static void weir_json_enc_integer(weir_json_encoder *e, lua_Integer i) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *q = end;
    /* Unsigned so that the most negative integer negates cleanly. */
    unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i
                                 : (unsigned long long)i;

    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (i < 0)
        *--q = '-';
    weir_json_enc_add(e, q, (size_t)(end - q));
}

/* Does the %.14g text s read back as exactly x?  At most 14 significant
 * digits always fit a double exactly, so when the decimal exponent is
 * small enough for 10^|e| to be exact too, one IEEE multiplication or
 * division is correctly rounded and answers the question (Clinger's fast
 * path); otherwise ask strtod.  The fast path spares a strtod per float,
 * which was a third of the cost of encoding one. */
static int weir_json_float_roundtrips(const char *s, double x) {
    static const double pow10[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    const char *q = s;
    uint64_t mant = 0;
    int exp10 = 0, neg = 0, digits = 0, frac = 0;
    double v;

    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; *q != '\0' && *q != 'e' && *q != 'E'; q++) {
        if (*q >= '0' && *q <= '9') {
            mant = mant * 10 + (uint64_t)(*q - '0');
            digits++;
            exp10 -= frac;
        } else {
            frac = 1;           /* the decimal point, whatever the locale */
        }
    }
    if (*q != '\0')
        exp10 += atoi(q + 1);
    if (digits > 15 || exp10 < -22 || exp10 > 22)
        return strtod(s, NULL) == x;
    v = exp10 >= 0 ? (double)mant * pow10[exp10]
                   : (double)mant / pow10[-exp10];
    return (neg ? -v : v) == x;
}

/* Shortest of %.14g / %.17g that reads back as the same double, always
 * with a '.' or an exponent so that decoding gives a float again. */
static void weir_json_enc_float(weir_json_encoder *e, lua_Number x,
                                const weir_json_path *p) {
    char tmp[40];
    int n, i, has_mark = 0;

    if (isnan(x))
        weir_json_enc_fail(e, p, "cannot encode NaN");
    if (isinf(x))
        weir_json_enc_fail(e, p, x > 0 ? "cannot encode inf" :
                                         "cannot encode -inf");
    if (e->flags & WEIR_JSON_CANONICAL) {
        /* For hashing: 1.0 and 1 (and -0.0 and 0) are the same content,
         * so integral floats that fit an integer are written as one. */
        lua_Integer as_int;
        /* lua_numbertointeger only range-checks and truncates. */
        if (floor(x) == x && lua_numbertointeger(x, &as_int)) {
            weir_json_enc_integer(e, as_int);
            return;
        }
    }
    n = snprintf(tmp, sizeof tmp, "%.14g", (double)x);
    if (!weir_json_float_roundtrips(tmp, (double)x))
        n = snprintf(tmp, sizeof tmp, "%.17g", (double)x);
    for (i = 0; i < n; i++) {
        char c = tmp[i];
        if (c == 'e' || c == 'E') {
            has_mark = 1;
        } else if (c != '-' && c != '+' && (c < '0' || c > '9')) {
            tmp[i] = '.';       /* a locale's decimal comma */
            has_mark = 1;
        }
    }
    if (!has_mark) {
        tmp[n++] = '.';
        tmp[n++] = '0';
    }
    weir_json_enc_add(e, tmp, (size_t)n);
}

static void weir_json_enc_value(weir_json_encoder *e, int idx, int depth,
                                const weir_json_path *p);

/* Elements 1..n of the table at idx. */
static void weir_json_enc_array(weir_json_encoder *e, int idx, lua_Integer n,
                                int depth, const weir_json_path *p) {
    int pretty = e->flags & WEIR_JSON_PRETTY;
    weir_json_path elem = {p, lua_topointer(e->L, idx), NULL, 0, 0};
    lua_Integer i;

    weir_json_enc_char(e, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1)
            weir_json_enc_char(e, ',');
        if (pretty)
            weir_json_enc_newline(e, depth);
        elem.index = i;
        lua_rawgeti(e->L, idx, i);
        weir_json_enc_value(e, lua_gettop(e->L), depth, &elem);
        lua_pop(e->L, 1);
    }
    if (pretty && n > 0)
        weir_json_enc_newline(e, depth - 1);
    weir_json_enc_char(e, ']');
}

/* Writes the key at the top as an object key ("k": or "k":) and fills
 * *kp for error paths.  Integer keys become decimal strings; any other
 * key type cannot be encoded. */
static void weir_json_enc_key(weir_json_encoder *e, int tbl, int first,
                              int depth, const weir_json_path *p,
                              weir_json_path *kp) {
    lua_State *L = e->L;
    int pretty = e->flags & WEIR_JSON_PRETTY;
    char digits[24];

    if (!first)
        weir_json_enc_char(e, ',');
    if (pretty)
        weir_json_enc_newline(e, depth);
    if (lua_type(L, -2) == LUA_TSTRING) {
        kp->key = lua_tolstring(L, -2, &kp->key_len);
        weir_json_enc_string(e, kp->key, kp->key_len, kp,
                             "invalid UTF-8 in key");
    } else if (lua_isinteger(L, -2)) {
        int n;
        kp->key = NULL;
        kp->index = lua_tointeger(L, -2);
        n = snprintf(digits, sizeof digits, "%lld", (long long)kp->index);
        /* {[1]=..., ["1"]=...} would produce the key "1" twice. */
        lua_pushlstring(L, digits, (size_t)n);
        if (lua_rawget(L, tbl) != LUA_TNIL)
            weir_json_enc_fail(e, kp, "duplicate key (integer and string)");
        lua_pop(L, 1);
        weir_json_enc_char(e, '"');
        weir_json_enc_add(e, digits, (size_t)n);
        weir_json_enc_char(e, '"');
    } else {
        char what[64];
        snprintf(what, sizeof what, "cannot encode %s key",
                 lua_type(L, -2) == LUA_TNUMBER ? "float"
                                                : luaL_typename(L, -2));
        weir_json_enc_fail(e, p, what);
    }
    if (pretty)
        weir_json_enc_add(e, ": ", 2);
    else
        weir_json_enc_char(e, ':');
}

static void weir_json_enc_object(weir_json_encoder *e, int idx, int depth,
                                 const weir_json_path *p) {
    lua_State *L = e->L;
    weir_json_path kp = {p, lua_topointer(L, idx), NULL, 0, 0};
    int first = 1;

    weir_json_enc_char(e, '{');
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        weir_json_enc_key(e, idx, first, depth, p, &kp);
        weir_json_enc_value(e, lua_gettop(L), depth, &kp);
        lua_pop(L, 1);
        first = 0;
    }
    if ((e->flags & WEIR_JSON_PRETTY) && !first)
        weir_json_enc_newline(e, depth - 1);
    weir_json_enc_char(e, '}');
}

static int weir_json_key_cmp(const void *a, const void *b) {
    const weir_json_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);

    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* sort_keys: collect the keys (on e->keys, used as a stack so nested
 * objects do not allocate), sort them bytewise, then fetch each value. */
static void weir_json_enc_object_sorted(weir_json_encoder *e, int idx,
                                        int depth, const weir_json_path *p) {
    lua_State *L = e->L;
    int pretty = e->flags & WEIR_JSON_PRETTY;
    size_t base = e->nkeys, n, i;
    weir_json_path kp = {p, lua_topointer(L, idx), NULL, 0, 0};

    lua_pushnil(L);
    while (lua_next(L, idx)) {
        weir_json_key *k;
        lua_pop(L, 1);
        if (e->nkeys == e->keys_cap) {
            size_t cap = e->keys_cap ? e->keys_cap * 2 : 32;
            void *nk = e->alloc(e->alloc_ud, e->keys,
                                e->keys_cap * sizeof *e->keys,
                                cap * sizeof *e->keys);
            if (nk == NULL)
                luaL_error(L, "json.encode: not enough memory");
            e->keys = nk;
            e->keys_cap = cap;
        }
        k = &e->keys[e->nkeys];
        if (lua_type(L, -1) == LUA_TSTRING) {
            k->s = lua_tolstring(L, -1, &k->len);
            k->is_int = 0;
        } else if (lua_isinteger(L, -1)) {
            k->i = lua_tointeger(L, -1);
            k->is_int = 1;
            k->len = (size_t)snprintf(k->digits, sizeof k->digits, "%lld",
                                      (long long)k->i);
            k->s = NULL;        /* set after sorting: e->keys may move */
        } else {
            char what[64];
            snprintf(what, sizeof what, "cannot encode %s key",
                     lua_type(L, -1) == LUA_TNUMBER ? "float"
                                                    : luaL_typename(L, -1));
            weir_json_enc_fail(e, p, what);
        }
        e->nkeys++;
    }
    n = e->nkeys - base;
    for (i = base; i < e->nkeys; i++)
        if (e->keys[i].is_int)
            e->keys[i].s = e->keys[i].digits;
    if (n > 1)
        qsort(e->keys + base, n, sizeof *e->keys, weir_json_key_cmp);

    weir_json_enc_char(e, '{');
    for (i = 0; i < n; i++) {
        /* Re-read through e->keys each time: nested objects may grow
         * (and move) it. */
        weir_json_key *k = &e->keys[base + i];
        if (i > 0 && weir_json_key_cmp(k - 1, k) == 0) {
            kp.key = NULL;
            kp.index = k->is_int ? k->i : (k - 1)->i;
            weir_json_enc_fail(e, &kp, "duplicate key (integer and string)");
        }
        if (k->is_int) {
            lua_pushinteger(L, k->i);
            kp.key = NULL;
            kp.index = k->i;
        } else {
            lua_pushlstring(L, k->s, k->len);
            kp.key = k->s;
            kp.key_len = k->len;
        }
        if (i > 0)
            weir_json_enc_char(e, ',');
        if (pretty)
            weir_json_enc_newline(e, depth);
        if (k->is_int) {
            weir_json_enc_char(e, '"');
            weir_json_enc_add(e, k->digits, k->len);
            weir_json_enc_char(e, '"');
        } else {
            weir_json_enc_string(e, k->s, k->len, &kp, "invalid UTF-8 in key");
        }
        if (pretty)
            weir_json_enc_add(e, ": ", 2);
        else
            weir_json_enc_char(e, ':');
        lua_rawget(L, idx);
        weir_json_enc_value(e, lua_gettop(L), depth, &kp);
        lua_pop(L, 1);
    }
    e->nkeys = base;
    if (pretty && n > 0)
        weir_json_enc_newline(e, depth - 1);
    weir_json_enc_char(e, '}');
}

/* Array or object?  json.array_mt says array; otherwise a non-empty
 * table whose keys are exactly 1..n is an array and anything else an
 * object (an empty plain table is {}). */
static void weir_json_enc_table(weir_json_encoder *e, int idx, int depth,
                                const weir_json_path *p) {
    lua_State *L = e->L;
    const void *self = lua_topointer(L, idx);
    const weir_json_path *q;
    lua_Integer count = 0, max = 0;
    int sequence = 1;

    if (depth >= WEIR_JSON_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nesting deeper than %d levels",
                 WEIR_JSON_MAX_DEPTH);
        weir_json_enc_fail(e, p, what);
    }
    /* The path is the chain of tables being encoded: a cycle is this
     * table appearing on it. */
    for (q = p; q != NULL; q = q->parent)
        if (q->table == self)
            weir_json_enc_fail(e, p, "table cycle (a table contains itself)");
    /* Two slots for lua_next's key and value, one for the metatable, and
     * the extra ones luaL_Buffer needs when failing. */
    luaL_checkstack(L, 6, "json.encode: nesting");

    if (lua_getmetatable(L, idx)) {
        int is_array = lua_rawequal(L, -1, e->array_mt);
        lua_pop(L, 1);
        if (is_array) {
            weir_json_enc_array(e, idx, (lua_Integer)lua_rawlen(L, idx),
                                depth + 1, p);
            return;
        }
    }

    /* Usually the first key already says "object" (a string). */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_Integer k;
        if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1) {
            lua_pop(L, 2);
            sequence = 0;
            break;
        }
        count++;
        if (k > max)
            max = k;
        lua_pop(L, 1);
    }
    if (sequence && count > 0 && count == max)
        weir_json_enc_array(e, idx, count, depth + 1, p);
    else if (e->flags & WEIR_JSON_SORT_KEYS)
        weir_json_enc_object_sorted(e, idx, depth + 1, p);
    else
        weir_json_enc_object(e, idx, depth + 1, p);
}

static void weir_json_enc_value(weir_json_encoder *e, int idx, int depth,
                                const weir_json_path *p) {
    lua_State *L = e->L;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        weir_json_enc_add(e, "null", 4);
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            weir_json_enc_add(e, "true", 4);
        else
            weir_json_enc_add(e, "false", 5);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            weir_json_enc_integer(e, lua_tointeger(L, idx));
        else
            weir_json_enc_float(e, lua_tonumber(L, idx), p);
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        weir_json_enc_string(e, s, len, p, "invalid UTF-8 in string");
        break;
    }
    case LUA_TTABLE:
        weir_json_enc_table(e, idx, depth, p);
        break;
    case LUA_TLIGHTUSERDATA:
        if (weir_json_is_null(L, idx)) {
            weir_json_enc_add(e, "null", 4);
            break;
        }
        /* fall through */
    default: {
        char what[64];
        snprintf(what, sizeof what, "cannot encode %s", luaL_typename(L, idx));
        weir_json_enc_fail(e, p, what);
    }
    }
}

/* Runs under lua_pcall: [encoder, value] -> string. */
static int weir_json_enc_protected(lua_State *L) {
    weir_json_encoder *e = lua_touserdata(L, 1);

    weir_json_push_array_mt(L);
    e->array_mt = lua_gettop(L);
    weir_json_enc_value(e, 2, 0, NULL);
    lua_pushlstring(L, e->buf, e->len);
    return 1;
}

void weir_json_encode(lua_State *L, int idx, int flags) {
    weir_json_encoder enc, *e = &enc;
    yajl_alloc_funcs af;
    int status;

    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 3, "json.encode");
    e->L = L;
    e->flags = flags;
    e->alloc = lua_getallocf(L, &e->alloc_ud);
    e->buf = e->inline_buf;
    e->len = 0;
    e->cap = sizeof e->inline_buf;
    e->keys = NULL;
    e->nkeys = e->keys_cap = 0;
    weir_json_arena_init(&e->arena, &af);
    e->strgen = yajl_gen_alloc(&af);
    if (e->strgen == NULL ||
        !yajl_gen_config(e->strgen, yajl_gen_validate_utf8, 1) ||
        !yajl_gen_config(e->strgen, yajl_gen_print_callback,
                         weir_json_enc_print, (void *)e)) {
        if (e->strgen)
            yajl_gen_free(e->strgen);
        luaL_error(L, "json.encode: out of memory");
        return;
    }
    lua_pushcfunction(L, weir_json_enc_protected);
    lua_pushlightuserdata(L, e);
    lua_pushvalue(L, idx);
    status = lua_pcall(L, 2, 1, 0);
    yajl_gen_free(e->strgen);
    if (e->buf != e->inline_buf)
        e->alloc(e->alloc_ud, e->buf, e->cap, 0);
    if (e->keys)
        e->alloc(e->alloc_ud, e->keys, e->keys_cap * sizeof *e->keys, 0);
    if (status != LUA_OK)
        weir_json_rethrow(L, status);
}

/* ---------------------------------------------------------------------
 * Lua functions
 * ------------------------------------------------------------------- */

/* json.decode(s) -> value */
static int weir_json_l_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    lua_settop(L, 1);
    if (weir_json_decode(L, s, len) != 0)
        return luaL_error(L, "json.decode: %s", lua_tostring(L, -1));
    return 1;
}

/* json.encode(v [, {sort_keys=, pretty=}]) -> string */
static int weir_json_l_encode(lua_State *L) {
    int flags = 0;

    luaL_checkany(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING
                                ? lua_tostring(L, -2) : NULL;
            if (k && strcmp(k, "sort_keys") == 0) {
                if (lua_toboolean(L, -1))
                    flags |= WEIR_JSON_SORT_KEYS;
            } else if (k && strcmp(k, "pretty") == 0) {
                if (lua_toboolean(L, -1))
                    flags |= WEIR_JSON_PRETTY;
            } else {
                return luaL_error(L, "json.encode: unknown option '%s' "
                                  "(expected sort_keys or pretty)",
                                  k ? k : luaL_typename(L, -2));
            }
            lua_pop(L, 1);
        }
    }
    weir_json_encode(L, 1, flags);
    return 1;
}

/* json.array([t]) -> t, marked as an array */
static int weir_json_l_array(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    weir_json_push_array_mt(L);
    if (lua_getmetatable(L, 1) && !lua_rawequal(L, -1, -2))
        return luaL_error(L, "json.array: the table already has a metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* json.is_null(v) -> boolean */
static int weir_json_l_is_null(lua_State *L) {
    luaL_checkany(L, 1);
    lua_pushboolean(L, weir_json_is_null(L, 1));
    return 1;
}

static const luaL_Reg weir_json_funcs[] = {
    {"decode", weir_json_l_decode},
    {"encode", weir_json_l_encode},
    {"array", weir_json_l_array},
    {"is_null", weir_json_l_is_null},
    {NULL, NULL}
};

int weir_open_json(lua_State *L) {
    luaL_newlib(L, weir_json_funcs);
    weir_json_push_null(L);
    lua_setfield(L, -2, "null");
    weir_json_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
