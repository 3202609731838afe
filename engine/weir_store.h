/*
 * weir_store.h -- the engine's own state: ledger, cursors, run history,
 * and (later) queued jobs, dead letters and sources.
 *
 * One interface, two backends:
 *   - SQLite (the embedded default): a file in the data directory, WAL.
 *     SQLite calls block, so they run on libuv's thread pool, one request
 *     at a time per store (a single connection, serialised in order).
 *   - PostgreSQL: schema `weir`, through weir.pg's pool (same SQL).
 *
 * Statements are written once, in the common subset of both dialects,
 * with $1..$n text parameters.  Values travel as text (or NULL); callers
 * convert.  Times are integer milliseconds since the epoch.
 *
 * Ownership: weir_store_exec() copies the statements and parameters it
 * is given; the result passed to the callback is owned by the store and
 * valid only during the callback.
 */
#ifndef WEIR_STORE_H
#define WEIR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "weir_engine.h"

typedef struct weir_store weir_store;

typedef struct weir_store_stmt {
    const char *sql;
    int nparams;
    const char *const *params;  /* NUL-terminated text, NULL = SQL NULL */
} weir_store_stmt;

/* Rows of one statement: cells[r * ncols + c], NULL for SQL NULL. */
typedef struct weir_store_rows {
    int nrows, ncols;
    char **cells;
    char **names;               /* column names, ncols */
    int64_t changes;            /* rows changed by an INSERT/UPDATE/DELETE */
} weir_store_rows;

/* Called on the loop thread.  err is NULL on success; results holds one
 * entry per statement.  On error nothing was committed.  The callback may
 * take a result over by copying the struct and zeroing the original
 * (then it frees it with weir_store_rows_free). */
typedef void (*weir_store_cb)(void *ud, weir_store_rows *results, int n,
                              const char *err);

void weir_store_rows_free(weir_store_rows *r);

/* Opens the store named by url:
 *   "sqlite:PATH" or a plain path    -> SQLite file (created, migrated)
 *   "postgres://..." / "postgresql://..." / "host=... dbname=..." -> PostgreSQL
 * NULL url: SQLite at $WEIR_DATA_DIR/weir.db (default ~/.local/share/weir).
 * Applies pending migrations synchronously before returning.  NULL and a
 * malloc'd *err on failure. */
weir_store *weir_store_open(weir_engine *e, const char *url, char **err);

/* Closes after in-flight requests finish (their callbacks still run). */
void weir_store_close(weir_store *s);

/* Runs stmts[0..n) in one transaction.  Returns 0, or -1 when the store
 * is closing or out of memory (cb is not called then). */
int weir_store_exec(weir_store *s, const weir_store_stmt *stmts, int n,
                    weir_store_cb cb, void *ud);

/* Runs the loop until the request completes: for CLI commands only. */
int weir_store_exec_sync(weir_store *s, const weir_store_stmt *stmts, int n,
                         weir_store_cb cb, void *ud);

const char *weir_store_backend(const weir_store *s);   /* "sqlite" | "postgres" */
const char *weir_store_location(const weir_store *s);  /* path or DSN without password */

/* The engine's store (opened lazily by the modules that need it, with
 * the URL from engine config), or NULL + *err. */
weir_store *weir_store_of_engine(weir_engine *e, char **err);

int64_t weir_store_now_ms(void);

#endif
