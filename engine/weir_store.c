/*
 * weir_store.c -- the state store: request queue, SQLite backend,
 * migrations.
 *
 * Requests are deep-copied on submit, so callers may free their
 * statements at once.  The SQLite backend owns one connection used only
 * from libuv's thread pool, one request at a time, in submission order:
 * SQLite connections must not be used from two threads at once, and
 * ordering keeps "record then read" sequences of one job consistent.
 */
#include "weir_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "weir_pg.h"

#define WEIR_STORE_STMT_CACHE 64
#define WEIR_STORE_BUSY_TIMEOUT_MS 10000

typedef struct weir_store_req weir_store_req;

struct weir_store_req {
    weir_store *s;
    weir_store_stmt *stmts;     /* deep copies */
    int n;
    weir_store_rows *results;   /* n entries, filled by the backend */
    char *err;
    weir_store_cb cb;
    void *ud;
    weir_store_req *next;
};

typedef struct weir_store_cached {
    char *sql;
    sqlite3_stmt *stmt;
} weir_store_cached;

struct weir_store {
    weir_engine *e;
    const char *backend;
    char *location;
    /* sqlite */
    sqlite3 *db;
    weir_store_cached cache[WEIR_STORE_STMT_CACHE];
    int ncached;
    uv_work_t work;
    weir_store_req *head, *tail;   /* queued, head is in flight when busy */
    int busy;
    int closing;
    /* postgres */
    weir_pg_pool *pool;
    int inflight;               /* pg requests not answered yet */
};

int64_t weir_store_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *weir_store_strdup_printf(const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, a ? a : "", b ? b : "");
    return s;
}

/* ---- results ---- */

void weir_store_rows_free(weir_store_rows *r) {
    int i;
    if (!r) return;
    if (r->cells) {
        for (i = 0; i < r->nrows * r->ncols; i++) free(r->cells[i]);
        free(r->cells);
    }
    if (r->names) {
        for (i = 0; i < r->ncols; i++) free(r->names[i]);
        free(r->names);
    }
    memset(r, 0, sizeof *r);
}

static void weir_store_req_free(weir_store_req *req) {
    int i, j;
    for (i = 0; i < req->n; i++) {
        free((char *)req->stmts[i].sql);
        for (j = 0; j < req->stmts[i].nparams; j++) free((char *)req->stmts[i].params[j]);
        free((char **)req->stmts[i].params);
        if (req->results) weir_store_rows_free(&req->results[i]);
    }
    free(req->stmts);
    free(req->results);
    free(req->err);
    free(req);
}

static weir_store_req *weir_store_req_copy(const weir_store_stmt *stmts, int n) {
    weir_store_req *req = calloc(1, sizeof *req);
    int i, j;
    if (!req) return NULL;
    req->stmts = calloc((size_t)n, sizeof *req->stmts);
    req->results = calloc((size_t)n, sizeof *req->results);
    if (!req->stmts || !req->results) goto oom;
    req->n = n;
    for (i = 0; i < n; i++) {
        char **params = NULL;
        req->stmts[i].sql = strdup(stmts[i].sql);
        if (!req->stmts[i].sql) goto oom;
        if (stmts[i].nparams > 0) {
            params = calloc((size_t)stmts[i].nparams, sizeof *params);
            if (!params) goto oom;
            req->stmts[i].params = (const char *const *)params;
            req->stmts[i].nparams = stmts[i].nparams;
            for (j = 0; j < stmts[i].nparams; j++) {
                if (!stmts[i].params[j]) continue;
                params[j] = strdup(stmts[i].params[j]);
                if (!params[j]) goto oom;
            }
        }
    }
    return req;
oom:
    weir_store_req_free(req);
    return NULL;
}

/* ---- SQLite backend (runs on the thread pool) ---- */

static sqlite3_stmt *weir_store_sqlite_prepare(weir_store *s, const char *sql, int *cached) {
    sqlite3_stmt *stmt = NULL;
    int i;
    for (i = 0; i < s->ncached; i++) {
        if (strcmp(s->cache[i].sql, sql) == 0) {
            *cached = 1;
            return s->cache[i].stmt;
        }
    }
    if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK) return NULL;
    *cached = 0;
    if (s->ncached < WEIR_STORE_STMT_CACHE) {
        char *copy = strdup(sql);
        if (copy) {
            s->cache[s->ncached].sql = copy;
            s->cache[s->ncached].stmt = stmt;
            s->ncached++;
            *cached = 1;
        }
    }
    return stmt;
}

/* Grows a rows buffer to hold at least `need` cells. */
static int weir_store_rows_reserve(weir_store_rows *r, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    {
        size_t ncap = *cap ? *cap * 2 : 16;
        char **p;
        while (ncap < need) ncap *= 2;
        p = realloc(r->cells, ncap * sizeof *p);
        if (!p) return -1;
        r->cells = p;
        *cap = ncap;
    }
    return 0;
}

static int weir_store_sqlite_stmt(weir_store *s, const weir_store_stmt *st, weir_store_rows *out,
                                  char **err) {
    int cached = 0, rc, i, ncols;
    size_t cap = 0;
    sqlite3_stmt *stmt = weir_store_sqlite_prepare(s, st->sql, &cached);
    if (!stmt) {
        *err = weir_store_strdup_printf("store: %s (in: %s)", sqlite3_errmsg(s->db), st->sql);
        return -1;
    }
    for (i = 0; i < st->nparams; i++) {
        char name[16];
        int idx;
        snprintf(name, sizeof name, "$%d", i + 1);
        idx = sqlite3_bind_parameter_index(stmt, name);
        if (idx == 0) continue;                 /* parameter unused by this text */
        if (st->params[i]) sqlite3_bind_text(stmt, idx, st->params[i], -1, SQLITE_STATIC);
        else sqlite3_bind_null(stmt, idx);
    }
    ncols = sqlite3_column_count(stmt);
    out->ncols = ncols;
    if (ncols > 0) {
        out->names = calloc((size_t)ncols, sizeof *out->names);
        if (!out->names) goto oom;
        for (i = 0; i < ncols; i++) {
            out->names[i] = strdup(sqlite3_column_name(stmt, i));
            if (!out->names[i]) goto oom;
        }
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (weir_store_rows_reserve(out, &cap, (size_t)(out->nrows + 1) * (size_t)ncols) != 0)
            goto oom;
        for (i = 0; i < ncols; i++) {
            const unsigned char *txt = sqlite3_column_text(stmt, i);
            char **cell = &out->cells[out->nrows * ncols + i];
            *cell = NULL;
            if (txt) {
                *cell = strdup((const char *)txt);
                if (!*cell) goto oom;
            }
        }
        out->nrows++;
    }
    if (rc != SQLITE_DONE) {
        *err = weir_store_strdup_printf("store: %s (in: %s)", sqlite3_errmsg(s->db), st->sql);
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        if (!cached) sqlite3_finalize(stmt);
        return -1;
    }
    out->changes = sqlite3_changes(s->db);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!cached) sqlite3_finalize(stmt);
    return 0;
oom:
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!cached) sqlite3_finalize(stmt);
    *err = strdup("store: out of memory");
    return -1;
}

static void weir_store_sqlite_run(weir_store *s, weir_store_req *req) {
    int i;
    char *msg = NULL;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        req->err = weir_store_strdup_printf("store: cannot begin a transaction: %s%s",
                                            msg ? msg : sqlite3_errmsg(s->db), NULL);
        sqlite3_free(msg);
        return;
    }
    for (i = 0; i < req->n; i++) {
        if (weir_store_sqlite_stmt(s, &req->stmts[i], &req->results[i], &req->err) != 0) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return;
        }
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        req->err = weir_store_strdup_printf("store: commit failed: %s%s",
                                            msg ? msg : sqlite3_errmsg(s->db), NULL);
        sqlite3_free(msg);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static void weir_store_work(uv_work_t *w) {
    weir_store *s = w->data;
    weir_store_sqlite_run(s, s->head);
}

static void weir_store_sqlite_close_db(weir_store *s) {
    int i;
    for (i = 0; i < s->ncached; i++) {
        sqlite3_finalize(s->cache[i].stmt);
        free(s->cache[i].sql);
    }
    s->ncached = 0;
    if (s->db) sqlite3_close(s->db);
    s->db = NULL;
}

static void weir_store_destroy(weir_store *s) {
    weir_store_sqlite_close_db(s);
    if (s->e && s->e->store == s) s->e->store = NULL;
    free(s->location);
    free(s);
}

static void weir_store_kick(weir_store *s);

static void weir_store_after_work(uv_work_t *w, int status) {
    weir_store *s = w->data;
    weir_store_req *req = s->head;
    s->head = req->next;
    if (!s->head) s->tail = NULL;
    s->busy = 0;
    if (status == UV_ECANCELED && !req->err) req->err = strdup("store: request cancelled");
    req->cb(req->ud, req->results, req->n, req->err);
    weir_store_req_free(req);
    if (s->head) weir_store_kick(s);
    else if (s->closing && s->inflight == 0) weir_store_destroy(s);
}

static void weir_store_kick(weir_store *s) {
    if (s->busy || !s->head) return;
    s->busy = 1;
    s->work.data = s;
    if (uv_queue_work(s->e->loop, &s->work, weir_store_work, weir_store_after_work) != 0) {
        /* cannot happen with a live loop; run inline rather than lose it */
        weir_store_work(&s->work);
        weir_store_after_work(&s->work, 0);
    }
}

static int weir_store_pg_submit(weir_store *s, weir_store_req *req);

int weir_store_exec(weir_store *s, const weir_store_stmt *stmts, int n, weir_store_cb cb,
                    void *ud) {
    weir_store_req *req;
    if (!s || s->closing || n <= 0) return -1;
    req = weir_store_req_copy(stmts, n);
    if (!req) return -1;
    req->s = s;
    req->cb = cb;
    req->ud = ud;
    if (s->pool) return weir_store_pg_submit(s, req);
    if (s->tail) s->tail->next = req;
    else s->head = req;
    s->tail = req;
    weir_store_kick(s);
    return 0;
}

typedef struct {
    weir_store_cb cb;
    void *ud;
    int done;
} weir_store_sync;

static void weir_store_sync_cb(void *ud, weir_store_rows *results, int n, const char *err) {
    weir_store_sync *sy = ud;
    sy->done = 1;
    sy->cb(sy->ud, results, n, err);
}

int weir_store_exec_sync(weir_store *s, const weir_store_stmt *stmts, int n, weir_store_cb cb,
                         void *ud) {
    weir_store_sync sy = {cb, ud, 0};
    if (weir_store_exec(s, stmts, n, weir_store_sync_cb, &sy) != 0) return -1;
    while (!sy.done) uv_run(s->e->loop, UV_RUN_ONCE);
    return 0;
}

/* ---- PostgreSQL backend ----
 * Requests go to weir.pg's pool as one pipelined transaction each; the
 * pool runs them concurrently on its connections (a job still sees its
 * own requests in order, since it waits for each).  Migrations run on a
 * short blocking connection when the store opens: start-up only. */

static void weir_store_pg_answer(void *ud, weir_pg_outcome *out) {
    weir_store_req *req = ud;
    weir_store *s = req->s;
    int i, r, c;
    if (out->err.kind != WEIR_PG_OK) {
        req->err = weir_store_strdup_printf("store: %s%s", out->err.message ? out->err.message
                                            : weir_pg_error_kind_name(out->err.kind), NULL);
    } else {
        for (i = 0; i < req->n && i < out->nresults && !req->err; i++) {
            PGresult *res = out->results[i];
            weir_store_rows *rows = &req->results[i];
            const char *tuples = PQcmdTuples(res);
            rows->changes = tuples && *tuples ? strtoll(tuples, NULL, 10) : 0;
            if (PQresultStatus(res) != PGRES_TUPLES_OK) continue;
            rows->nrows = PQntuples(res);
            rows->ncols = PQnfields(res);
            rows->names = calloc((size_t)rows->ncols + 1, sizeof *rows->names);
            rows->cells = calloc((size_t)rows->nrows * (size_t)rows->ncols + 1, sizeof *rows->cells);
            if (!rows->names || !rows->cells) { req->err = strdup("store: out of memory"); break; }
            for (c = 0; c < rows->ncols; c++) rows->names[c] = strdup(PQfname(res, c));
            for (r = 0; r < rows->nrows; r++)
                for (c = 0; c < rows->ncols; c++)
                    if (!PQgetisnull(res, r, c))
                        rows->cells[r * rows->ncols + c] = strdup(PQgetvalue(res, r, c));
        }
    }
    req->cb(req->ud, req->results, req->n, req->err);
    weir_store_req_free(req);
    s->inflight--;
    if (s->closing && s->inflight == 0) weir_store_destroy(s);
}

static int weir_store_pg_submit(weir_store *s, weir_store_req *req) {
    weir_pg_stmt *ps = calloc((size_t)req->n, sizeof *ps);
    int i;
    if (!ps) { weir_store_req_free(req); return -1; }
    for (i = 0; i < req->n; i++) {
        ps[i].sql = req->stmts[i].sql;
        ps[i].nparams = req->stmts[i].nparams;
        ps[i].values = req->stmts[i].params;
    }
    s->inflight++;
    if (!weir_pg_exec_tx(s->pool, ps, req->n, weir_store_pg_answer, req)) {
        s->inflight--;
        free(ps);
        weir_store_req_free(req);
        return -1;
    }
    free(ps);                   /* the pool copied the statements */
    return 0;
}

static const char *const weir_store_pg_migrations[] = {
    "CREATE TABLE ledger ("
    "  recipe TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,"
    "  hash TEXT NOT NULL, origin TEXT, remote_id TEXT, etag TEXT, outcome TEXT,"
    "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    "  PRIMARY KEY (recipe, scope, key));"
    "CREATE TABLE cursors ("
    "  recipe TEXT NOT NULL, source TEXT NOT NULL, value TEXT NOT NULL,"
    "  updated_at BIGINT NOT NULL, PRIMARY KEY (recipe, source));"
    "CREATE TABLE runs ("
    "  id BIGSERIAL PRIMARY KEY, recipe TEXT NOT NULL, job TEXT NOT NULL,"
    "  trigger TEXT, attempt INTEGER NOT NULL DEFAULT 1, started_at BIGINT NOT NULL,"
    "  ended_at BIGINT, status TEXT NOT NULL, read BIGINT NOT NULL DEFAULT 0,"
    "  written BIGINT NOT NULL DEFAULT 0, skipped BIGINT NOT NULL DEFAULT 0,"
    "  failed BIGINT NOT NULL DEFAULT 0, error TEXT);"
    "CREATE INDEX runs_by_recipe ON runs (recipe, id);",
    "CREATE TABLE queue ("
    "  id TEXT PRIMARY KEY, recipe TEXT NOT NULL, job TEXT NOT NULL, payload TEXT NOT NULL,"
    "  trigger TEXT NOT NULL, attempt INTEGER NOT NULL, first_at BIGINT NOT NULL,"
    "  run_at BIGINT NOT NULL, lease_owner TEXT, lease_until BIGINT, last_error TEXT,"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX queue_due ON queue (recipe, run_at);"
    "CREATE TABLE dlq ("
    "  id TEXT PRIMARY KEY, recipe TEXT NOT NULL, job TEXT NOT NULL, payload TEXT NOT NULL,"
    "  trigger TEXT NOT NULL, attempts INTEGER NOT NULL, first_at BIGINT NOT NULL,"
    "  failed_at BIGINT NOT NULL, error TEXT);"
    "CREATE INDEX dlq_by_recipe ON dlq (recipe, failed_at);",
    NULL};

/* The DSN with search_path=weir for every pooled connection. */
static char *weir_store_pg_dsn(const char *url) {
    size_t n = strlen(url) + 64;
    char *d = malloc(n);
    if (!d) return NULL;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        snprintf(d, n, "%s%soptions=-csearch_path%%3Dweir", url, strchr(url, '?') ? "&" : "?");
    else
        snprintf(d, n, "%s options='-csearch_path=weir'", url);
    return d;
}

static int weir_store_pg_migrate(const char *dsn, char **err) {
    PGconn *c = PQconnectdb(dsn);
    PGresult *r;
    int version = 0, i, ok = 0;
    char sql[160];
    if (PQstatus(c) != CONNECTION_OK) {
        *err = weir_store_strdup_printf("store: cannot connect to PostgreSQL: %s%s",
                                        PQerrorMessage(c), NULL);
        PQfinish(c);
        return -1;
    }
    /* one migrator at a time across processes */
    r = PQexec(c, "BEGIN; SELECT pg_advisory_xact_lock(7365010);"
                  "CREATE SCHEMA IF NOT EXISTS weir;"
                  "CREATE TABLE IF NOT EXISTS weir.weir_migrations ("
                  " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);"
                  "SELECT coalesce(max(version), 0) FROM weir.weir_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) goto fail;
    version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    for (i = version; weir_store_pg_migrations[i]; i++) {
        r = PQexec(c, "SET LOCAL search_path = weir");
        PQclear(r);
        r = PQexec(c, weir_store_pg_migrations[i]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) goto fail;
        PQclear(r);
        snprintf(sql, sizeof sql, "INSERT INTO weir.weir_migrations VALUES (%d, %lld)", i + 1,
                 (long long)weir_store_now_ms());
        r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) goto fail;
        PQclear(r);
    }
    r = PQexec(c, "COMMIT");
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) goto fail;
    PQclear(r);
    PQfinish(c);
    return 0;
fail:
    *err = weir_store_strdup_printf("store: PostgreSQL migration failed: %s%s",
                                    r ? PQresultErrorMessage(r) : PQerrorMessage(c), NULL);
    PQclear(r);
    PQfinish(c);
    return -1;
}

static weir_store *weir_store_open_pg(weir_engine *e, const char *url, char **err) {
    weir_store *s;
    char errbuf[256] = "";
    char *dsn = weir_store_pg_dsn(url);
    if (!dsn) { *err = strdup("store: out of memory"); return NULL; }
    if (weir_store_pg_migrate(dsn, err) != 0) { free(dsn); return NULL; }
    s = calloc(1, sizeof *s);
    if (!s) { free(dsn); *err = strdup("store: out of memory"); return NULL; }
    s->e = e;
    s->backend = "postgres";
    s->location = strdup("postgres (schema weir)");
    s->pool = weir_pg_pool_get(e, dsn, NULL, errbuf, sizeof errbuf);
    free(dsn);
    if (!s->pool || !s->location) {
        *err = weir_store_strdup_printf("store: %s%s", errbuf[0] ? errbuf : "out of memory", NULL);
        free(s->location);
        free(s);
        return NULL;
    }
    return s;
}

/* ---- opening and migrations ---- */

/* Each migration is applied once, in order, inside one transaction. */
static const char *const weir_store_sqlite_migrations[] = {
    /* 1: ledger, cursors, run history */
    "CREATE TABLE ledger ("
    "  recipe TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,"
    "  hash TEXT NOT NULL, origin TEXT, remote_id TEXT, etag TEXT, outcome TEXT,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (recipe, scope, key));"
    "CREATE TABLE cursors ("
    "  recipe TEXT NOT NULL, source TEXT NOT NULL, value TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL, PRIMARY KEY (recipe, source));"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, recipe TEXT NOT NULL, job TEXT NOT NULL,"
    "  trigger TEXT, attempt INTEGER NOT NULL DEFAULT 1, started_at INTEGER NOT NULL,"
    "  ended_at INTEGER, status TEXT NOT NULL, read INTEGER NOT NULL DEFAULT 0,"
    "  written INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,"
    "  failed INTEGER NOT NULL DEFAULT 0, error TEXT);"
    "CREATE INDEX runs_by_recipe ON runs (recipe, id);",
    /* 2: the embedded job queue and its dead letters */
    "CREATE TABLE queue ("
    "  id TEXT PRIMARY KEY, recipe TEXT NOT NULL, job TEXT NOT NULL, payload TEXT NOT NULL,"
    "  trigger TEXT NOT NULL, attempt INTEGER NOT NULL, first_at INTEGER NOT NULL,"
    "  run_at INTEGER NOT NULL, lease_owner TEXT, lease_until INTEGER, last_error TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX queue_due ON queue (recipe, run_at);"
    "CREATE TABLE dlq ("
    "  id TEXT PRIMARY KEY, recipe TEXT NOT NULL, job TEXT NOT NULL, payload TEXT NOT NULL,"
    "  trigger TEXT NOT NULL, attempts INTEGER NOT NULL, first_at INTEGER NOT NULL,"
    "  failed_at INTEGER NOT NULL, error TEXT);"
    "CREATE INDEX dlq_by_recipe ON dlq (recipe, failed_at);",
    NULL};

static int weir_store_mkdirs(const char *path) {
    char buf[4096];
    size_t i, n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (i = 1; i < n; i++) {
        if (buf[i] != '/') continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
        buf[i] = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
    return 0;
}

static char *weir_store_default_path(void) {
    const char *dir = getenv("WEIR_DATA_DIR");
    const char *home = getenv("HOME");
    char path[4096];
    if (dir && *dir) {
        snprintf(path, sizeof path, "%s", dir);
    } else {
        const char *xdg = getenv("XDG_DATA_HOME");
        if (xdg && *xdg) snprintf(path, sizeof path, "%s/weir", xdg);
        else snprintf(path, sizeof path, "%s/.local/share/weir", home && *home ? home : ".");
    }
    if (weir_store_mkdirs(path) != 0) return NULL;
    strncat(path, "/weir.db", sizeof path - strlen(path) - 1);
    return strdup(path);
}

static int weir_store_sqlite_migrate(weir_store *s, char **err) {
    sqlite3_stmt *q = NULL;
    int version = 0, i, rc;
    char *msg = NULL;
    if (sqlite3_exec(s->db, "CREATE TABLE IF NOT EXISTS weir_migrations ("
                            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                     NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    /* serialise concurrent starters: the write lock is taken before reading */
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) goto fail;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(version), 0) FROM weir_migrations", -1,
                           &q, NULL) != SQLITE_OK)
        goto rollback;
    if (sqlite3_step(q) == SQLITE_ROW) version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    for (i = version; weir_store_sqlite_migrations[i]; i++) {
        char mark[128];
        if (sqlite3_exec(s->db, weir_store_sqlite_migrations[i], NULL, NULL, &msg) != SQLITE_OK)
            goto rollback;
        snprintf(mark, sizeof mark, "INSERT INTO weir_migrations VALUES (%d, %lld)", i + 1,
                 (long long)weir_store_now_ms());
        if (sqlite3_exec(s->db, mark, NULL, NULL, &msg) != SQLITE_OK) goto rollback;
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) goto rollback;
    return 0;
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    *err = weir_store_strdup_printf("store %s: migration failed: %s", s->location,
                                    msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return -1;
}

static weir_store *weir_store_open_sqlite(weir_engine *e, const char *path, char **err) {
    weir_store *s = calloc(1, sizeof *s);
    char *msg = NULL;
    if (!s) { *err = strdup("store: out of memory"); return NULL; }
    s->e = e;
    s->backend = "sqlite";
    s->location = path ? strdup(path) : weir_store_default_path();
    if (!s->location) {
        *err = strdup("store: cannot create the data directory (set WEIR_DATA_DIR)");
        free(s);
        return NULL;
    }
    if (sqlite3_open_v2(s->location, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        *err = weir_store_strdup_printf("store: cannot open %s: %s", s->location,
                                        s->db ? sqlite3_errmsg(s->db) : "out of memory");
        weir_store_destroy(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, WEIR_STORE_BUSY_TIMEOUT_MS);
    /* WAL: readers (weir runs, the API) never block the writer; NORMAL
     * sync is durable across process crashes (kill -9), which is what
     * the engine promises; FULL would add power-loss durability. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                            "PRAGMA foreign_keys=ON;", NULL, NULL, &msg) != SQLITE_OK) {
        *err = weir_store_strdup_printf("store: cannot configure %s: %s", s->location,
                                        msg ? msg : "?");
        sqlite3_free(msg);
        weir_store_destroy(s);
        return NULL;
    }
    if (weir_store_sqlite_migrate(s, err) != 0) {
        weir_store_destroy(s);
        return NULL;
    }
    return s;
}

static int weir_store_is_postgres_url(const char *url) {
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0 ||
           strstr(url, "dbname=") != NULL || strstr(url, "host=") != NULL;
}

weir_store *weir_store_open(weir_engine *e, const char *url, char **err) {
    *err = NULL;
    if (!url || !*url) return weir_store_open_sqlite(e, NULL, err);
    if (strncmp(url, "sqlite:", 7) == 0) return weir_store_open_sqlite(e, url + 7, err);
    if (weir_store_is_postgres_url(url)) return weir_store_open_pg(e, url, err);
    return weir_store_open_sqlite(e, url, err);
}

void weir_store_close(weir_store *s) {
    if (!s) return;
    s->closing = 1;
    if (!s->busy && !s->head && s->inflight == 0) weir_store_destroy(s);
}

const char *weir_store_backend(const weir_store *s) { return s->backend; }
const char *weir_store_location(const weir_store *s) { return s->location; }

weir_store *weir_store_of_engine(weir_engine *e, char **err) {
    *err = NULL;
    if (!e->store) e->store = weir_store_open(e, e->cfg.store_url, err);
    return e->store;
}
