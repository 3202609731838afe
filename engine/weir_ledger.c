/*
 * weir_ledger.c -- "weir.ledger": what was already written, by whom.
 *
 * An entry per (recipe, scope, key): the SHA-256 of the record's
 * canonical JSON (sorted keys, integral floats written as integers), the
 * origin that wrote it (for two-way sync), the remote id / etag the other
 * side gave it, the stored outcome of the side effect, timestamps.
 *
 *   ledger.hash(record)                         -> hex (no I/O)
 *   ledger.check(scope, key, record)            -> "new"|"changed"|"unchanged", entry
 *   ledger.record(scope, key, record [, opts])  -> hash   (opts: origin, remote_id, etag, outcome)
 *   ledger.is_echo(scope, key, record, origin)  -> boolean
 *   ledger.get(scope, key)                      -> entry | nil
 *   ledger.forget(scope, key)                   -> boolean (an entry was removed)
 *   ledger.scan(scope [, {after=, limit=}])     -> array of entries, ordered by key
 *   ledger.count(scope)                         -> integer
 *   ledger.check_many(scope, {key = record})    -> {key = status}
 *   ledger.record_many(scope, {key = record} [, opts]) -> integer (entries written)
 *
 * Entries are namespaced by the script's recipe name, so two recipes
 * never see each other's ledger.
 */
#include "weir_ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "weir_job.h"
#include "weir_json.h"
#include "weir_state.h"
#include "weir_store_lua.h"

#define WEIR_LEDGER_MAX_BATCH 10000
#define WEIR_LEDGER_SCAN_DEFAULT 1000

static const char weir_ledger_cols[] =
    "key, hash, origin, remote_id, etag, outcome, created_at, updated_at";

/* One upsert, four entry points (single, inside a pg tx, SQLite batch,
 * PostgreSQL batch): the columns and the conflict rule are shared.  A
 * later record that omits remote_id / etag / outcome keeps the stored ones. */
#define WEIR_LEDGER_INSERT_COLS \
    " (recipe, scope, key, hash, origin, remote_id, etag, outcome, created_at, updated_at)"
#define WEIR_LEDGER_ON_CONFLICT \
    " ON CONFLICT (recipe, scope, key) DO UPDATE SET hash = excluded.hash," \
    " origin = excluded.origin," \
    " remote_id = coalesce(excluded.remote_id, ledger.remote_id)," \
    " etag = coalesce(excluded.etag, ledger.etag)," \
    " outcome = coalesce(excluded.outcome, ledger.outcome)," \
    " updated_at = excluded.updated_at"
#define WEIR_LEDGER_ONE_ROW " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"

/* Pushes the hex SHA-256 of the canonical JSON of the value at idx. */
static void weir_ledger_push_hash(lua_State *L, int idx) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    static const char digits[] = "0123456789abcdef";
    size_t len;
    const char *s;
    unsigned int i;
    weir_json_encode(L, idx, WEIR_JSON_SORT_KEYS | WEIR_JSON_CANONICAL);
    s = lua_tolstring(L, -1, &len);
    if (!EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL))
        luaL_error(L, "ledger: SHA-256 failed");
    for (i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    lua_pop(L, 1);
    lua_pushlstring(L, hex, 2 * mdlen);
}

static const char *weir_ledger_recipe(lua_State *L) {
    weir_state *st = weir_state_of(L);
    return st->name;
}

static const char *weir_ledger_check_name(lua_State *L, int idx, const char *what) {
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (len == 0) luaL_argerror(L, idx, lua_pushfstring(L, "%s must not be empty", what));
    return s;
}

/* Key: strings as they are, integers in decimal. */
static const char *weir_ledger_key(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx)) return lua_tostring(L, idx);
    return weir_ledger_check_name(L, idx, "key");
}

/* Pushes an entry table from row r of res. */
static void weir_ledger_push_entry(lua_State *L, weir_store_rows *res, int r) {
    static const char *const fields[] = {"key", "hash", "origin", "remote_id", "etag",
                                         "outcome", "created_at", "updated_at"};
    int c;
    lua_createtable(L, 0, 8);
    for (c = 0; c < res->ncols && c < 8; c++) {
        const char *v = res->cells[r * res->ncols + c];
        if (!v) continue;
        if (c >= 6) {
            lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        } else if (c == 5) {
            if (weir_json_decode(L, v, strlen(v)) != 0) lua_pushstring(L, v);
        } else {
            lua_pushstring(L, v);
        }
        lua_setfield(L, -2, fields[c]);
    }
}

/* ---- hash ---- */

static int weir_ledger_hash(lua_State *L) {
    luaL_checkany(L, 1);
    weir_ledger_push_hash(L, 1);
    return 1;
}

/* ---- get / check / is_echo: one SELECT, different answers ---- */

typedef struct {
    char hash[65];
    char origin[128];
    int mode;                       /* 0 get, 1 check, 2 is_echo */
} weir_ledger_q;

static int weir_ledger_answer(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_ledger_q *q = ud;
    weir_store_rows *rows = &res[n - 1];
    const char *stored_hash = rows->nrows ? rows->cells[1] : NULL;
    const char *stored_origin = rows->nrows ? rows->cells[2] : NULL;
    switch (q->mode) {
    case 0:
        if (rows->nrows) weir_ledger_push_entry(L, rows, 0);
        else lua_pushnil(L);
        return 1;
    case 1:
        if (!rows->nrows) lua_pushliteral(L, "new");
        else if (strcmp(stored_hash, q->hash) == 0) lua_pushliteral(L, "unchanged");
        else lua_pushliteral(L, "changed");
        if (rows->nrows) weir_ledger_push_entry(L, rows, 0);
        else lua_pushnil(L);
        return 2;
    default:
        /* an echo: the same content, last written by the other side */
        lua_pushboolean(L, rows->nrows && strcmp(stored_hash, q->hash) == 0 &&
                               stored_origin && strcmp(stored_origin, q->origin) != 0);
        return 1;
    }
}

static int weir_ledger_select(lua_State *L, int mode, const char *what) {
    const char *scope = weir_ledger_check_name(L, 1, "scope");
    const char *key = weir_ledger_key(L, 2);
    char sql[256];
    const char *params[3];
    weir_store_stmt stmt;
    weir_ledger_q *q;
    char hash[65] = "";
    weir_job_check(L, what);
    if (mode != 0) {
        luaL_checkany(L, 3);
        weir_ledger_push_hash(L, 3);            /* may raise: before any malloc */
        memcpy(hash, lua_tostring(L, -1), 64);
        lua_pop(L, 1);
    }
    if (mode == 2) weir_ledger_check_name(L, 4, "origin");
    q = calloc(1, sizeof *q);
    if (!q) return luaL_error(L, "%s: out of memory", what);
    q->mode = mode;
    memcpy(q->hash, hash, sizeof hash);
    if (mode == 2) snprintf(q->origin, sizeof q->origin, "%s", lua_tostring(L, 4));
    snprintf(sql, sizeof sql, "SELECT %s FROM ledger WHERE recipe = $1 AND scope = $2 AND key = $3",
             weir_ledger_cols);
    params[0] = weir_ledger_recipe(L);
    params[1] = scope;
    params[2] = key;
    stmt.sql = sql;
    stmt.nparams = 3;
    stmt.params = params;
    return weir_store_lua_exec(L, what, &stmt, 1, weir_ledger_answer, q, free);
}

static int weir_ledger_get(lua_State *L) { return weir_ledger_select(L, 0, "ledger.get"); }
static int weir_ledger_check(lua_State *L) { return weir_ledger_select(L, 1, "ledger.check"); }
static int weir_ledger_is_echo(lua_State *L) { return weir_ledger_select(L, 2, "ledger.is_echo"); }

/* ---- record ---- */

static const char weir_ledger_upsert_sql[] =
    "INSERT INTO ledger" WEIR_LEDGER_INSERT_COLS WEIR_LEDGER_ONE_ROW WEIR_LEDGER_ON_CONFLICT;

static const char weir_ledger_upsert_tx_sql[] =
    "INSERT INTO weir.ledger" WEIR_LEDGER_INSERT_COLS WEIR_LEDGER_ONE_ROW WEIR_LEDGER_ON_CONFLICT;

/* Reads opts at idx into strings on the Lua stack; fills p[4..7]. */
static void weir_ledger_opts(lua_State *L, int idx, const char **p) {
    static const char *const names[] = {"origin", "remote_id", "etag"};
    int i;
    p[4] = p[5] = p[6] = p[7] = NULL;
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    for (i = 0; i < 3; i++) {
        int t = lua_getfield(L, idx, names[i]);
        if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            p[4 + i] = lua_tostring(L, -1);
        } else if (t != LUA_TNIL) {
            luaL_error(L, "ledger: option '%s' must be a string", names[i]);
        }
        /* the value stays on the stack so the string stays alive */
    }
    if (lua_getfield(L, idx, "outcome") != LUA_TNIL) {
        weir_json_encode(L, -1, WEIR_JSON_SORT_KEYS);
        p[7] = lua_tostring(L, -1);
    }
}

static int weir_ledger_push_count(lua_State *L, weir_store_rows *res, int n, void *ud) {
    int64_t total = 0;
    int i;
    (void)ud;
    for (i = 0; i < n; i++) total += res[i].changes;
    lua_pushinteger(L, (lua_Integer)total);
    return 1;
}

static int weir_ledger_push_hash_result(lua_State *L, weir_store_rows *res, int n, void *ud) {
    (void)res; (void)n;
    lua_pushstring(L, ud);
    return 1;
}

static int weir_ledger_record(lua_State *L) {
    const char *p[9];
    char now[32];
    weir_store_stmt stmt;
    char *hash;
    p[1] = weir_ledger_check_name(L, 1, "scope");
    p[2] = weir_ledger_key(L, 2);
    luaL_checkany(L, 3);
    weir_job_check(L, "ledger.record");
    weir_ledger_opts(L, 4, p);
    weir_ledger_push_hash(L, 3);
    p[3] = lua_tostring(L, -1);
    p[0] = weir_ledger_recipe(L);
    snprintf(now, sizeof now, "%lld", (long long)weir_store_now_ms());
    p[8] = now;
    if (lua_istable(L, 4) && lua_getfield(L, 4, "tx") != LUA_TNIL) {
        /* same transaction as the caller's rows (PostgreSQL store) */
        int txidx = lua_gettop(L), hashidx, i;
        lua_pushstring(L, p[3]);
        hashidx = lua_gettop(L);
        for (i = 0; i < 9; i++) {
            if (p[i]) lua_pushstring(L, p[i]);
            else lua_pushnil(L);
        }
        return weir_store_lua_txquery(L, txidx, "ledger.record", weir_ledger_upsert_tx_sql, 9,
                                      hashidx);
    }
    hash = strdup(p[3]);
    if (!hash) return luaL_error(L, "ledger.record: out of memory");
    stmt.sql = weir_ledger_upsert_sql;
    stmt.nparams = 9;
    stmt.params = p;
    return weir_store_lua_exec(L, "ledger.record", &stmt, 1, weir_ledger_push_hash_result,
                               hash, free);
}

/* ---- batches ----
 * Set-based: one statement per WEIR_LEDGER_CHUNK keys (not one per key),
 * all chunks of a call in one transaction.  Keys are compared in their
 * string form, so the integer 42 and the string "42" are the same key. */

#define WEIR_LEDGER_CHUNK 1000

/* Collected keys and hashes of a batch call (C memory, freed by the op). */
typedef struct {
    int n;
    char **keys;
    char **hashes;
    char **sql;                 /* one statement text per chunk */
    const char **params;        /* all parameters, chunk after chunk */
    int nsql;
    char *arr_keys, *arr_hashes;    /* PostgreSQL: text[] literals */
} weir_ledger_many;

static void weir_ledger_many_free(void *ud) {
    weir_ledger_many *m = ud;
    int i;
    if (!m) return;
    for (i = 0; i < m->n; i++) { free(m->keys[i]); free(m->hashes[i]); }
    for (i = 0; i < m->nsql; i++) free(m->sql[i]);
    free(m->keys);
    free(m->hashes);
    free(m->sql);
    free(m->params);
    free(m->arr_keys);
    free(m->arr_hashes);
    free(m);
}

/* A PostgreSQL text[] literal of v[0..n): every element quoted, with
 * backslash and double quote escaped. */
static char *weir_ledger_pg_array(char *const *v, int n) {
    size_t cap = 3, len = 0;
    int i;
    char *out;
    for (i = 0; i < n; i++) cap += 2 * strlen(v[i]) + 3;
    out = malloc(cap);
    if (!out) return NULL;
    out[len++] = '{';
    for (i = 0; i < n; i++) {
        const char *c;
        if (i) out[len++] = ',';
        out[len++] = '"';
        for (c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\') out[len++] = '\\';
            out[len++] = *c;
        }
        out[len++] = '"';
    }
    out[len++] = '}';
    out[len] = '\0';
    return out;
}

/* On a PostgreSQL store: one statement with two array parameters instead
 * of wide VALUES lists (planning cost grows with the parameter count). */
static int weir_ledger_is_pg(lua_State *L, const char *what) {
    weir_store *s = weir_store_lua_check(L, what);
    return strcmp(weir_store_backend(s), "postgres") == 0;
}

/* Reads {key = record} at idx: keys (string form, deduplicated) and the
 * hashes of their records.  Raises (after freeing) on bad input. */
static weir_ledger_many *weir_ledger_collect(lua_State *L, int idx, const char *what) {
    weir_ledger_many *m;
    int n = 0, i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
    if (n > WEIR_LEDGER_MAX_BATCH)
        luaL_error(L, "%s: at most %d entries per call (got %d)", what, WEIR_LEDGER_MAX_BATCH, n);
    m = calloc(1, sizeof *m);
    if (!m) luaL_error(L, "%s: out of memory", what);
    m->keys = calloc((size_t)n + 1, sizeof *m->keys);
    m->hashes = calloc((size_t)n + 1, sizeof *m->hashes);
    if (!m->keys || !m->hashes) { weir_ledger_many_free(m); luaL_error(L, "%s: out of memory", what); }
    lua_createtable(L, 0, n);                       /* seen keys (string form) */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int vidx = lua_gettop(L), seen = vidx - 2, dup;
        const char *k;
        lua_pushvalue(L, vidx - 1);
        if (!(lua_type(L, -1) == LUA_TSTRING ||
              (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)))) {
            weir_ledger_many_free(m);
            luaL_error(L, "%s: keys must be strings or integers", what);
        }
        k = lua_tostring(L, -1);
        dup = lua_getfield(L, seen, k) != LUA_TNIL;
        lua_pop(L, 1);
        if (dup) { lua_pop(L, 2); continue; }
        lua_pushboolean(L, 1);
        lua_setfield(L, seen, k);
        m->keys[i] = strdup(k);
        lua_pop(L, 1);
        lua_pushcfunction(L, weir_ledger_hash);     /* may raise: protect m */
        lua_pushvalue(L, vidx);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            m->n = i + 1;
            weir_ledger_many_free(m);
            lua_error(L);
        }
        m->hashes[i] = strdup(lua_tostring(L, -1));
        lua_pop(L, 2);
        m->n = ++i;
        if (!m->keys[i - 1] || !m->hashes[i - 1]) {
            weir_ledger_many_free(m);
            luaL_error(L, "%s: out of memory", what);
        }
    }
    lua_pop(L, 1);                                  /* seen */
    return m;
}

/* Builds one statement per chunk: head, then per key `row` with $K for
 * the key and $H for the hash (numbered after `fixed` parameters). */
static int weir_ledger_chunks(lua_State *L, weir_ledger_many *m, int fixed,
                              const char *const *fixed_vals,
                              const char *head, const char *row, const char *sep,
                              const char *tail, int per_key, weir_store_stmt **out) {
    int nchunks = (m->n + WEIR_LEDGER_CHUNK - 1) / WEIR_LEDGER_CHUNK, c, i;
    int per_chunk_params = fixed + per_key * WEIR_LEDGER_CHUNK;
    /* userdata: the job yields (longjmp) right after submitting, so the
     * array must be garbage, not malloc'd memory freed after the call */
    weir_store_stmt *st = lua_newuserdatauv(L, (size_t)nchunks * sizeof *st, 0);
    m->sql = calloc((size_t)nchunks, sizeof *m->sql);
    m->params = calloc((size_t)nchunks * (size_t)per_chunk_params, sizeof *m->params);
    if (!m->sql || !m->params) return -1;
    for (c = 0; c < nchunks; c++) {
        int first = c * WEIR_LEDGER_CHUNK, last = first + WEIR_LEDGER_CHUNK;
        size_t cap = strlen(head) + strlen(tail) + 1 +
                     (size_t)WEIR_LEDGER_CHUNK * (strlen(row) + strlen(sep) + 24);
        char *sql = malloc(cap), *p = sql;
        const char **pv = m->params + (size_t)c * (size_t)per_chunk_params;
        int np = fixed;
        if (!sql) return -1;
        if (last > m->n) last = m->n;
        for (i = 0; i < fixed; i++) pv[i] = fixed_vals[i];
        p += snprintf(p, cap, "%s", head);
        for (i = first; i < last; i++) {
            const char *r;
            if (i > first) p += snprintf(p, cap - (size_t)(p - sql), "%s", sep);
            for (r = row; *r; r++) {
                if (r[0] == '$' && (r[1] == 'K' || r[1] == 'H')) {
                    pv[np] = r[1] == 'K' ? m->keys[i] : m->hashes[i];
                    np++;
                    p += snprintf(p, cap - (size_t)(p - sql), "$%d", np);
                    r++;
                } else {
                    *p++ = *r;
                }
            }
        }
        p += snprintf(p, cap - (size_t)(p - sql), "%s", tail);
        m->sql[c] = sql;
        m->nsql = c + 1;
        st[c].sql = sql;
        st[c].nparams = np;
        st[c].params = pv;
    }
    *out = st;
    return nchunks;
}


/* record_many(scope, {key = record, ...} [, opts]) -> entries written */
static int weir_ledger_record_many(lua_State *L) {
    const char *fixed[7];
    const char *opts[9];
    char now[32];
    weir_ledger_many *m;
    weir_store_stmt *st;
    int nst, pg;
    fixed[1] = weir_ledger_check_name(L, 1, "scope");
    luaL_checktype(L, 2, LUA_TTABLE);
    weir_job_check(L, "ledger.record_many");
    weir_ledger_opts(L, 3, opts);
    snprintf(now, sizeof now, "%lld", (long long)weir_store_now_ms());
    fixed[0] = weir_ledger_recipe(L);
    fixed[2] = now;
    fixed[3] = opts[4]; fixed[4] = opts[5]; fixed[5] = opts[6]; fixed[6] = opts[7];
    pg = weir_ledger_is_pg(L, "ledger.record_many");       /* may raise: before any malloc */
    m = weir_ledger_collect(L, 2, "ledger.record_many");
    if (m->n == 0) { weir_ledger_many_free(m); lua_pushinteger(L, 0); return 1; }
    if (pg) {
        weir_store_stmt one;
        m->arr_keys = weir_ledger_pg_array(m->keys, m->n);
        m->arr_hashes = weir_ledger_pg_array(m->hashes, m->n);
        m->params = calloc(9, sizeof *m->params);
        if (!m->arr_keys || !m->arr_hashes || !m->params) {
            weir_ledger_many_free(m);
            return luaL_error(L, "ledger.record_many: out of memory");
        }
        memcpy(m->params, fixed, 7 * sizeof *fixed);
        m->params[7] = m->arr_keys;
        m->params[8] = m->arr_hashes;
        one.sql = "INSERT INTO ledger" WEIR_LEDGER_INSERT_COLS
                  " SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), k, h,"
                  " CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT),"
                  " CAST($3 AS BIGINT), CAST($3 AS BIGINT)"
                  " FROM unnest(CAST($8 AS TEXT[]), CAST($9 AS TEXT[])) AS t(k, h)"
                  WEIR_LEDGER_ON_CONFLICT;
        one.nparams = 9;
        one.params = m->params;
        return weir_store_lua_exec(L, "ledger.record_many", &one, 1, weir_ledger_push_count, m,
                                   weir_ledger_many_free);
    }
    nst = weir_ledger_chunks(L, m, 7, fixed,
        "INSERT INTO ledger" WEIR_LEDGER_INSERT_COLS " VALUES ",
        "($1, $2, $K, $H, $4, $5, $6, $7, CAST($3 AS BIGINT), CAST($3 AS BIGINT))", ", ",
        WEIR_LEDGER_ON_CONFLICT, 2, &st);
    if (nst < 0) {
        weir_ledger_many_free(m);
        return luaL_error(L, "ledger.record_many: out of memory");
    }
    return weir_store_lua_exec(L, "ledger.record_many", st, nst, weir_ledger_push_count, m,
                               weir_ledger_many_free);
}

/* check_many(scope, {key = record}) -> {key = "new"|"changed"|"unchanged"}
 * (keys in their string form) */
static int weir_ledger_many_answer(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_ledger_many *m = ud;
    int i, c, r;
    /* stored hashes by key */
    lua_createtable(L, 0, m->n);
    for (c = 0; c < n; c++)
        for (r = 0; r < res[c].nrows; r++) {
            lua_pushstring(L, res[c].cells[r * res[c].ncols + 1]);
            lua_setfield(L, -2, res[c].cells[r * res[c].ncols]);
        }
    lua_createtable(L, 0, m->n);
    for (i = 0; i < m->n; i++) {
        const char *stored;
        lua_getfield(L, -2, m->keys[i]);
        stored = lua_tostring(L, -1);
        if (!stored) lua_pushliteral(L, "new");
        else if (strcmp(stored, m->hashes[i]) == 0) lua_pushliteral(L, "unchanged");
        else lua_pushliteral(L, "changed");
        lua_setfield(L, -3, m->keys[i]);
        lua_pop(L, 1);
    }
    return 1;
}

static int weir_ledger_check_many(lua_State *L) {
    const char *fixed[2];
    weir_ledger_many *m;
    weir_store_stmt *st;
    int nst, pg;
    fixed[1] = weir_ledger_check_name(L, 1, "scope");
    luaL_checktype(L, 2, LUA_TTABLE);
    weir_job_check(L, "ledger.check_many");
    fixed[0] = weir_ledger_recipe(L);
    pg = weir_ledger_is_pg(L, "ledger.check_many");       /* may raise: before any malloc */
    m = weir_ledger_collect(L, 2, "ledger.check_many");
    if (m->n == 0) { weir_ledger_many_free(m); lua_newtable(L); return 1; }
    if (pg) {
        weir_store_stmt one;
        m->arr_keys = weir_ledger_pg_array(m->keys, m->n);
        m->params = calloc(3, sizeof *m->params);
        if (!m->arr_keys || !m->params) {
            weir_ledger_many_free(m);
            return luaL_error(L, "ledger.check_many: out of memory");
        }
        m->params[0] = fixed[0];
        m->params[1] = fixed[1];
        m->params[2] = m->arr_keys;
        one.sql = "SELECT key, hash FROM ledger WHERE recipe = $1 AND scope = $2"
                  " AND key = ANY(CAST($3 AS TEXT[]))";
        one.nparams = 3;
        one.params = m->params;
        return weir_store_lua_exec(L, "ledger.check_many", &one, 1, weir_ledger_many_answer, m,
                                   weir_ledger_many_free);
    }
    nst = weir_ledger_chunks(L, m, 2, fixed,
        "SELECT key, hash FROM ledger WHERE recipe = $1 AND scope = $2 AND key IN (",
        "$K", ", ", ")", 1, &st);
    if (nst < 0) {
        weir_ledger_many_free(m);
        return luaL_error(L, "ledger.check_many: out of memory");
    }
    return weir_store_lua_exec(L, "ledger.check_many", st, nst, weir_ledger_many_answer, m,
                               weir_ledger_many_free);
}

/* ---- forget / scan / count ---- */

static int weir_ledger_push_changed(lua_State *L, weir_store_rows *res, int n, void *ud) {
    (void)ud;
    lua_pushboolean(L, res[n - 1].changes > 0);
    return 1;
}

static int weir_ledger_forget(lua_State *L) {
    const char *p[3];
    weir_store_stmt stmt = {"DELETE FROM ledger WHERE recipe = $1 AND scope = $2 AND key = $3",
                            3, p};
    p[1] = weir_ledger_check_name(L, 1, "scope");
    p[2] = weir_ledger_key(L, 2);
    p[0] = weir_ledger_recipe(L);
    return weir_store_lua_exec(L, "ledger.forget", &stmt, 1, weir_ledger_push_changed, NULL, NULL);
}

static int weir_ledger_push_entries(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_store_rows *rows = &res[n - 1];
    int r;
    (void)ud;
    lua_createtable(L, rows->nrows, 0);
    for (r = 0; r < rows->nrows; r++) {
        weir_ledger_push_entry(L, rows, r);
        lua_rawseti(L, -2, r + 1);
    }
    return 1;
}

static int weir_ledger_scan(lua_State *L) {
    const char *p[4];
    char limit[32], sql[256];
    lua_Integer lim = WEIR_LEDGER_SCAN_DEFAULT;
    weir_store_stmt stmt;
    p[1] = weir_ledger_check_name(L, 1, "scope");
    p[2] = "";
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "after") != LUA_TNIL) p[2] = luaL_checkstring(L, -1);
        if (lua_getfield(L, 2, "limit") != LUA_TNIL) lim = luaL_checkinteger(L, -1);
    }
    if (lim < 1 || lim > 100000) return luaL_error(L, "ledger.scan: limit must be 1..100000");
    snprintf(limit, sizeof limit, "%lld", (long long)lim);
    p[0] = weir_ledger_recipe(L);
    p[3] = limit;
    snprintf(sql, sizeof sql, "SELECT %s FROM ledger WHERE recipe = $1 AND scope = $2 AND"
             " key > $3 ORDER BY key LIMIT $4", weir_ledger_cols);
    stmt.sql = sql;
    stmt.nparams = 4;
    stmt.params = p;
    return weir_store_lua_exec(L, "ledger.scan", &stmt, 1, weir_ledger_push_entries, NULL, NULL);
}

static int weir_ledger_push_int(lua_State *L, weir_store_rows *res, int n, void *ud) {
    weir_store_rows *rows = &res[n - 1];
    (void)ud;
    lua_pushinteger(L, rows->nrows && rows->cells[0] ? (lua_Integer)strtoll(rows->cells[0], NULL, 10) : 0);
    return 1;
}

static int weir_ledger_count(lua_State *L) {
    const char *p[2];
    weir_store_stmt stmt = {"SELECT count(*) FROM ledger WHERE recipe = $1 AND scope = $2", 2, p};
    p[1] = weir_ledger_check_name(L, 1, "scope");
    p[0] = weir_ledger_recipe(L);
    return weir_store_lua_exec(L, "ledger.count", &stmt, 1, weir_ledger_push_int, NULL, NULL);
}

int weir_open_ledger(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"hash", weir_ledger_hash},         {"check", weir_ledger_check},
        {"record", weir_ledger_record},     {"is_echo", weir_ledger_is_echo},
        {"get", weir_ledger_get},           {"forget", weir_ledger_forget},
        {"scan", weir_ledger_scan},         {"count", weir_ledger_count},
        {"check_many", weir_ledger_check_many}, {"record_many", weir_ledger_record_many},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
