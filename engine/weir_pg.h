/*
 * weir_pg.h -- "weir.pg": PostgreSQL on the engine's loop through libpq's
 * asynchronous API (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * pipeline mode, COPY FROM STDIN, LISTEN/NOTIFY), with connection pools.
 *
 * Pools: one per (DSN, options) per engine, shared by every state of the
 * engine and by C callers.  A pool opens connections lazily up to `size`;
 * requests beyond that wait in FIFO order for a free connection, at most
 * `wait_timeout` seconds (then error kind "pool_timeout").  A connection
 * that dies is discarded (with every idle connection of its pool, which
 * talked to the same server); the next request reconnects, with an
 * exponential backoff after failed attempts.  Pools live until the engine
 * closes.
 *
 * The C API below is what other engine modules use (the state store's
 * PostgreSQL backend).  Callbacks always run from a libuv callback, never
 * from inside the call that started the request, and exactly once unless
 * the request is cancelled.  Requests in flight when the engine closes
 * finish during its final loop run (at most 10 s, then they fail with
 * WEIR_PG_ERR_CLOSED); requests still waiting for a connection get kind
 * WEIR_PG_ERR_CLOSED.
 */
#ifndef WEIR_PG_H
#define WEIR_PG_H

#include <libpq-fe.h>
#include <lua.h>

#include "weir_engine.h"

typedef struct weir_pg_pool weir_pg_pool;
typedef struct weir_pg_req weir_pg_req;

#define WEIR_PG_DEFAULT_POOL_SIZE       10
#define WEIR_PG_DEFAULT_CONNECT_TIMEOUT 10.0   /* seconds */
#define WEIR_PG_DEFAULT_WAIT_TIMEOUT    30.0   /* seconds */

typedef struct weir_pg_pool_opts {
    int size;                   /* max connections; 0: default */
    double statement_timeout;   /* seconds, SET on connect; 0: server's */
    double connect_timeout;     /* seconds (connect + setup); 0: default */
    double wait_timeout;        /* seconds to wait for a free connection;
                                   0: default; < 0: fail at once when busy */
} weir_pg_pool_opts;

typedef enum {
    WEIR_PG_OK = 0,
    WEIR_PG_ERR_SQL,            /* the server refused the statement */
    WEIR_PG_ERR_CONNECTION,     /* connection lost / cannot connect */
    WEIR_PG_ERR_POOL_TIMEOUT,   /* no free connection within wait_timeout */
    WEIR_PG_ERR_CLOSED          /* the engine is closing */
} weir_pg_err_kind;

typedef struct weir_pg_error {
    weir_pg_err_kind kind;
    int retryable;              /* sqlstate class 40 / 08, 57P0x, 53300,
                                   connection and pool errors */
    char sqlstate[6];           /* "" when none (client-side error) */
    int position;               /* 1-based character in the SQL, 0: none */
    char *message, *detail, *hint;  /* malloc'd; NULL when absent */
} weir_pg_error;

/* One statement.  nparams == 0 and a lone statement: sent with the simple
 * protocol, so `sql` may hold several statements (the last result is
 * kept).  values[i] NULL is SQL NULL; formats NULL means all text;
 * lengths are needed for binary (format 1) values only. */
typedef struct weir_pg_stmt {
    const char *sql;
    int nparams;
    const char *const *values;
    const int *lengths;
    const int *formats;
} weir_pg_stmt;

/* What a request produced.  On success results[i] is the result of
 * statement i.  The callback may take a result (set the slot to NULL and
 * PQclear it later) or the error strings (set them to NULL and free
 * them); the rest is freed after the callback returns. */
typedef struct weir_pg_outcome {
    PGresult **results;
    int nresults;
    weir_pg_error err;          /* kind WEIR_PG_OK on success */
} weir_pg_outcome;

typedef void (*weir_pg_done_fn)(void *ud, weir_pg_outcome *out);

typedef struct weir_pg_pool_stats {
    int size, open, idle, busy, connecting, waiting;
    unsigned long connects, connect_failures, discarded;
} weir_pg_pool_stats;

/* Module table entry. */
int weir_open_pg(lua_State *L);
int weir_pg_engine_init(weir_engine *e);
void weir_pg_engine_close(weir_engine *e);

/* The engine's pool for (dsn, opts) (opts NULL: defaults), created on
 * first use without connecting.  NULL with a message in errbuf when the
 * DSN does not parse, an option is out of range, or the engine closes. */
weir_pg_pool *weir_pg_pool_get(weir_engine *e, const char *dsn,
                               const weir_pg_pool_opts *opts,
                               char *errbuf, size_t errlen);

/* Runs one statement on a pooled connection (statement and parameters
 * are copied).  NULL when out of memory or closing (cb never runs). */
weir_pg_req *weir_pg_exec(weir_pg_pool *p, const weir_pg_stmt *stmt,
                          weir_pg_done_fn cb, void *ud);

/* Runs n statements as one transaction in a single round trip (pipeline
 * mode: they share an implicit transaction, so the first failing one
 * rolls back all of them; its error is reported). */
weir_pg_req *weir_pg_exec_tx(weir_pg_pool *p, const weir_pg_stmt *stmts,
                             int n, weir_pg_done_fn cb, void *ud);

/* Cancels a request whose callback has not run: it will not run.  A
 * query in flight is cancelled on the server and its connection closed. */
void weir_pg_cancel(weir_pg_req *req);

void weir_pg_pool_stats_get(const weir_pg_pool *p, weir_pg_pool_stats *st);

/* "sql", "connection", "pool_timeout", "closed" (or "ok"). */
const char *weir_pg_error_kind_name(weir_pg_err_kind kind);

#endif
