/*
 * weir_pg.c -- "weir.pg": PostgreSQL on the loop with libpq's async API.
 *
 * Layers, bottom up:
 *   io       a uv_poll_t on the connection's socket (allocated apart from
 *            the connection: uv_close is asynchronous, and while connecting
 *            libpq may switch sockets, so the handle is recreated after
 *            every PQconnectPoll step);
 *   conn     one PGconn: connect (PQconnectStart/Poll), setup statements,
 *            running one request at a time, loss and discard;
 *   pool     connections of one (DSN, options): FIFO of waiting requests,
 *            size limit, backoff after failed connects;
 *   req      one request: statements (simple, pipelined transaction),
 *            COPY FROM STDIN, or the acquisition of a pinned connection
 *            (a session: transactions and LISTEN use one);
 *   Lua      the pool / transaction objects; every call is a weir_op; the
 *            parts that read best in Lua (tx, copy_in, upsert, listeners)
 *            are a small Lua chunk over C primitives.
 *
 * Lifetimes: requests, connections and io handles are freed from uv_close
 * callbacks, so a pointer stays valid for the rest of the libuv callback
 * that discards it.  Pools are reference counted (engine, connections,
 * requests, sessions) and freed when the last one goes after the engine
 * closed.
 *
 * Loop liveness: a connection's poll handle is referenced only while it
 * runs a request, connects, or has a listener waiting, so idle pooled
 * connections never keep `weir run` alive.
 *
 * Why an in-flight request that is cancelled discards its connection: the
 * server is still executing it.  libpq 15 has no asynchronous cancel, so
 * PQcancel (thread-safe, blocking) runs on the libuv thread pool to stop
 * the server-side work, and the connection is closed at once.
 */
#include "weir_pg.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "weir_job.h"
#include "weir_json.h"
#include "weir_state.h"

#define WEIR_PG_POOL_MT "weir.pg.pool"
#define WEIR_PG_SESSION_MT "weir.pg.tx"
#define WEIR_PG_BYTEA_MT "weir.pg.bytea"

#define WEIR_PG_MAX_POOL_SIZE 1000
#define WEIR_PG_MAX_TIMEOUT 31536000.0      /* a year, in seconds */
#define WEIR_PG_BACKOFF_BASE_MS 100
#define WEIR_PG_BACKOFF_CAP_MS 5000
#define WEIR_PG_CLEANUP_TIMEOUT_MS 5000     /* ROLLBACK of a released tx */
#define WEIR_PG_CLOSE_GRACE_MS 10000        /* in-flight work at engine close */
#define WEIR_PG_COPY_CHUNK 65536
#define WEIR_PG_MAX_NOTES 10000             /* undelivered notifications */
#define WEIR_PG_MAX_PARAMS 65535
#define WEIR_PG_MSG 640                     /* room for name + libpq message */

/* type OIDs (server/catalog/pg_type_d.h is not in libpq-dev) */
enum {
    WEIR_PG_BOOLOID = 16, WEIR_PG_BYTEAOID = 17, WEIR_PG_INT8OID = 20,
    WEIR_PG_INT2OID = 21, WEIR_PG_INT4OID = 23, WEIR_PG_OIDOID = 26,
    WEIR_PG_JSONOID = 114, WEIR_PG_FLOAT4OID = 700, WEIR_PG_FLOAT8OID = 701,
    WEIR_PG_DATEOID = 1082, WEIR_PG_TIMESTAMPOID = 1114,
    WEIR_PG_TIMESTAMPTZOID = 1184, WEIR_PG_NUMERICOID = 1700,
    WEIR_PG_JSONBOID = 3802
};

typedef struct weir_pg_engine weir_pg_engine;
typedef struct weir_pg_conn weir_pg_conn;
typedef struct weir_pg_io weir_pg_io;
typedef struct weir_pg_session weir_pg_session;
typedef struct weir_pg_note weir_pg_note;

typedef void (*weir_pg_acquired_fn)(void *ud, weir_pg_session *s, weir_pg_error *err);

struct weir_pg_engine {
    weir_engine *eng;
    weir_pg_pool *pools;
    weir_pg_engine *next;
};

/* The engines of this process: weir_engine has no slot for us. */
static weir_pg_engine *weir_pg_engines;
static uint64_t weir_pg_rng;

struct weir_pg_pool {
    weir_engine *eng;
    char *dsn;
    char *setup_sql;            /* run on every new connection */
    char name[256];             /* "host:port/dbname", never a password */
    weir_pg_pool_opts opts;     /* as asked (pool identity) */
    int size;
    uint64_t connect_timeout_ms;
    double wait_timeout;        /* < 0: fail at once when busy */
    int closing;
    int refs;
    weir_pg_conn *conns;
    weir_pg_req *wait_head, *wait_tail;
    int nwaiting;
    int attempts;               /* failed connects in a row */
    uint64_t retry_at_ms;       /* loop time before which we fail fast */
    char last_error[256];
    unsigned long connects, connect_failures, discarded;
    weir_pg_pool *next;
};

enum { WEIR_PG_CONNECTING, WEIR_PG_SETUP, WEIR_PG_OPEN, WEIR_PG_DEAD };

struct weir_pg_io {
    uv_poll_t poll;
    weir_pg_conn *conn;         /* NULL once detached (handle closing) */
    int events;
    int active;
};

struct weir_pg_conn {
    weir_pg_pool *pool;
    PGconn *pg;
    weir_pg_io *io;
    uv_timer_t timer;           /* connect, cleanup or close deadline */
    int state;
    int dedicated;              /* outside the pool's size (listeners) */
    int cleanup;                /* running the ROLLBACK of a released tx */
    int closing_grace;          /* the engine closes: deadline armed */
    int want_write;
    weir_pg_req *req;           /* running request */
    weir_pg_req *owner;         /* dedicated: the acquisition it serves */
    weir_pg_session *session;   /* pinned to this session */
    weir_pg_conn *prev, *next;  /* pool->conns */
};

enum { WEIR_PG_REQ_EXEC, WEIR_PG_REQ_TX, WEIR_PG_REQ_COPY, WEIR_PG_REQ_ACQUIRE };
enum { WEIR_PG_COPY_START, WEIR_PG_COPY_SEND, WEIR_PG_COPY_END };

typedef struct weir_pg_stmt_copy {
    char *sql;
    int nparams;
    char **values;
    int *lengths;
    int *formats;
} weir_pg_stmt_copy;

struct weir_pg_req {
    weir_pg_pool *pool;
    weir_pg_conn *conn;         /* while it runs */
    int kind;
    int internal;               /* setup / cleanup: the conn's own */
    int simple;                 /* one statement through PQsendQuery */
    int dedicated;              /* acquisition of a dedicated connection */
    weir_pg_stmt_copy *stmts;
    int nstmts;
    int idx;                    /* pipeline: statement whose results come */
    char *copy_data;
    size_t copy_len, copy_off;
    int copy_phase;
    int copy_out;               /* draining an unexpected COPY TO STDOUT */
    PGresult **results;
    int nresults;
    weir_pg_error err;
    weir_pg_done_fn cb;
    weir_pg_acquired_fn acq_cb;
    void *ud;
    weir_pg_session *session;   /* acquisition: made, not yet delivered */
    int queued;                 /* in the pool's wait queue */
    int deferred;               /* delivery scheduled on the timer */
    int cancelled;
    uv_timer_t timer;           /* wait timeout, or deferred delivery */
    weir_pg_req *prev, *next;   /* wait queue */
};

struct weir_pg_note {
    char *channel, *payload;
    int pid;
    weir_pg_note *next;
};

struct weir_pg_session {
    weir_pg_pool *pool;
    weir_pg_conn *conn;         /* NULL once lost */
    int dedicated;
    int releasing;              /* released while a request runs */
    weir_pg_err_kind lost_kind;
    char lost_msg[WEIR_PG_MSG];
    weir_pg_note *notes, *notes_tail;
    int nnotes;
    unsigned long dropped;      /* notifications beyond WEIR_PG_MAX_NOTES */
    void (*on_note)(void *ud, int closing);  /* a listener waits */
    void *on_note_ud;
};

static void weir_pg_conn_lost(weir_pg_conn *c, weir_pg_err_kind kind, const char *why);
static void weir_pg_conn_release(weir_pg_conn *c);
static void weir_pg_conn_discard(weir_pg_conn *c);
static void weir_pg_conn_update_io(weir_pg_conn *c);
static void weir_pg_pool_pump(weir_pg_pool *p);
static void weir_pg_pool_assign(weir_pg_conn *c, weir_pg_req *r);
static void weir_pg_req_free(weir_pg_req *r);
static void weir_pg_req_deliver_later(weir_pg_req *r);
static void weir_pg_session_release(weir_pg_session *s);
static void weir_pg_io_cb(uv_poll_t *h, int status, int events);

/* ------------------------------------------------------------------ */
/* small helpers                                                      */
/* ------------------------------------------------------------------ */

/* The engine's clock (tests can move it), for backoff decisions. */
static uint64_t weir_pg_now_ms(const weir_pg_pool *p) {
    return weir_engine_now_ns(p->eng) / 1000000u;
}

static uint64_t weir_pg_random(void) {
    if (!weir_pg_rng) weir_pg_rng = uv_hrtime() | 1;
    weir_pg_rng ^= weir_pg_rng << 13;
    weir_pg_rng ^= weir_pg_rng >> 7;
    weir_pg_rng ^= weir_pg_rng << 17;
    return weir_pg_rng;
}

static uint64_t weir_pg_ms(double seconds) {
    double ms = ceil(seconds * 1000.0);
    return ms <= 0 ? 0 : (uint64_t)ms;
}

static weir_pg_engine *weir_pg_engine_of(const weir_engine *e) {
    weir_pg_engine *pe;
    for (pe = weir_pg_engines; pe; pe = pe->next)
        if (pe->eng == e) return pe;
    return NULL;
}

/* libpq messages end with "\n" and may continue on tab-indented lines
 * ("This probably means..."): keep the first line. */
static void weir_pg_first_line(char *dst, size_t len, const char *src) {
    size_t n = 0;
    if (!src) src = "";
    while (src[n] && src[n] != '\n' && n + 1 < len) n++;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void weir_pg_ignore_notice(void *arg, const char *message) {
    (void)arg; (void)message;      /* library code never prints */
}

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

const char *weir_pg_error_kind_name(weir_pg_err_kind kind) {
    switch (kind) {
    case WEIR_PG_OK: return "ok";
    case WEIR_PG_ERR_SQL: return "sql";
    case WEIR_PG_ERR_CONNECTION: return "connection";
    case WEIR_PG_ERR_POOL_TIMEOUT: return "pool_timeout";
    case WEIR_PG_ERR_CLOSED: return "closed";
    }
    return "unknown";
}

static void weir_pg_err_clear(weir_pg_error *e) {
    free(e->message);
    free(e->detail);
    free(e->hint);
    memset(e, 0, sizeof *e);
}

static int weir_pg_sqlstate_retryable(const char *st) {
    return strncmp(st, "40", 2) == 0 || strncmp(st, "08", 2) == 0 ||
           strncmp(st, "57P0", 4) == 0 || strcmp(st, "53300") == 0;
}

static void weir_pg_err_set(weir_pg_error *e, weir_pg_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first error of a request wins; later ones only add noise. */
static void weir_pg_err_set(weir_pg_error *e, weir_pg_err_kind kind, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    if (e->kind != WEIR_PG_OK) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->kind = kind;
    e->retryable = kind == WEIR_PG_ERR_CONNECTION || kind == WEIR_PG_ERR_POOL_TIMEOUT;
    e->message = strdup(buf);
}

static char *weir_pg_field_dup(const PGresult *res, int field) {
    const char *v = PQresultErrorField(res, field);
    return v ? strdup(v) : NULL;
}

static void weir_pg_err_from_result(weir_pg_error *e, const PGresult *res) {
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    if (e->kind != WEIR_PG_OK) return;
    e->kind = WEIR_PG_ERR_SQL;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", st ? st : "");
    e->retryable = weir_pg_sqlstate_retryable(e->sqlstate);
    e->position = pos ? atoi(pos) : 0;
    e->message = weir_pg_field_dup(res, PG_DIAG_MESSAGE_PRIMARY);
    if (!e->message) {
        char line[512];
        weir_pg_first_line(line, sizeof line, PQresultErrorMessage(res));
        e->message = strdup(line[0] ? line : "the server reported an error");
    }
    e->detail = weir_pg_field_dup(res, PG_DIAG_MESSAGE_DETAIL);
    e->hint = weir_pg_field_dup(res, PG_DIAG_MESSAGE_HINT);
}

/* A request that dies with its connection: whatever the server said last
 * stays (sqlstate 57P01 on a shutdown), the kind becomes "connection". */
static void weir_pg_err_connection(weir_pg_error *e, const weir_pg_pool *p,
                                   weir_pg_err_kind kind, const char *why) {
    char buf[1024];
    snprintf(buf, sizeof buf, "pg %s: %s%s", p->name,
             kind == WEIR_PG_ERR_CLOSED ? "" : "connection lost: ",
             e->message ? e->message : why);
    free(e->message);
    e->message = strdup(buf);
    e->kind = kind;
    e->retryable = kind == WEIR_PG_ERR_CONNECTION;
}

/* ------------------------------------------------------------------ */
/* pool references                                                    */
/* ------------------------------------------------------------------ */

static void weir_pg_pool_unref(weir_pg_pool *p) {
    if (--p->refs > 0) return;
    free(p->dsn);
    free(p->setup_sql);
    free(p);
}

/* ------------------------------------------------------------------ */
/* requests                                                           */
/* ------------------------------------------------------------------ */

static void weir_pg_req_closed(uv_handle_t *h) {
    weir_pg_req *r = h->data;
    weir_pg_pool_unref(r->pool);
    free(r);
}

static weir_pg_req *weir_pg_req_new(weir_pg_pool *p, int kind) {
    weir_pg_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->pool = p;
    r->kind = kind;
    uv_timer_init(p->eng->loop, &r->timer);
    r->timer.data = r;
    p->refs++;
    return r;
}

static void weir_pg_stmts_free(weir_pg_stmt_copy *stmts, int n) {
    int i, j;
    if (!stmts) return;
    for (i = 0; i < n; i++) {
        free(stmts[i].sql);
        for (j = 0; stmts[i].values && j < stmts[i].nparams; j++) free(stmts[i].values[j]);
        free(stmts[i].values);
        free(stmts[i].lengths);
        free(stmts[i].formats);
    }
    free(stmts);
}

static void weir_pg_req_free(weir_pg_req *r) {
    int i;
    weir_pg_stmts_free(r->stmts, r->nstmts);
    r->stmts = NULL;
    for (i = 0; i < r->nresults; i++) PQclear(r->results[i]);
    free(r->results);
    r->results = NULL;
    free(r->copy_data);
    r->copy_data = NULL;
    weir_pg_err_clear(&r->err);
    if (r->session) {               /* acquired but never delivered */
        weir_pg_session *s = r->session;
        r->session = NULL;
        weir_pg_session_release(s);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, weir_pg_req_closed);
}

/* Copies one statement; values[i] NULL stays NULL (SQL NULL). */
static int weir_pg_stmt_dup(weir_pg_stmt_copy *dst, const weir_pg_stmt *src) {
    int i;
    memset(dst, 0, sizeof *dst);
    if (!(dst->sql = strdup(src->sql))) return -1;
    dst->nparams = src->nparams;
    if (src->nparams <= 0) return 0;
    dst->values = calloc((size_t)src->nparams, sizeof *dst->values);
    dst->lengths = calloc((size_t)src->nparams, sizeof *dst->lengths);
    dst->formats = calloc((size_t)src->nparams, sizeof *dst->formats);
    if (!dst->values || !dst->lengths || !dst->formats) return -1;
    for (i = 0; i < src->nparams; i++) {
        const char *v = src->values ? src->values[i] : NULL;
        int binary = src->formats && src->formats[i] == 1;
        size_t len;
        if (!v) continue;
        len = binary ? (size_t)(src->lengths ? src->lengths[i] : 0) : strlen(v);
        dst->values[i] = malloc(len + 1);
        if (!dst->values[i]) return -1;
        memcpy(dst->values[i], v, len);
        dst->values[i][len] = '\0';
        dst->lengths[i] = (int)len;
        dst->formats[i] = binary;
    }
    return 0;
}

static int weir_pg_req_set_stmts(weir_pg_req *r, const weir_pg_stmt *stmts, int n) {
    int i;
    r->stmts = calloc((size_t)n, sizeof *r->stmts);
    r->results = calloc((size_t)n, sizeof *r->results);
    if (!r->stmts || !r->results) return -1;
    r->nstmts = n;
    r->nresults = n;
    for (i = 0; i < n; i++)
        if (weir_pg_stmt_dup(&r->stmts[i], &stmts[i]) != 0) return -1;
    return 0;
}

/* Hands the outcome to the callback, then frees the request. */
static void weir_pg_req_deliver(weir_pg_req *r) {
    r->deferred = 0;
    if (!r->cancelled) {
        if (r->kind == WEIR_PG_REQ_ACQUIRE) {
            weir_pg_session *s = r->session;
            r->session = NULL;
            if (r->acq_cb) r->acq_cb(r->ud, s, s ? NULL : &r->err);
        } else if (r->cb) {
            weir_pg_outcome out;
            out.results = r->results;
            out.nresults = r->err.kind == WEIR_PG_OK ? r->nresults : 0;
            out.err = r->err;
            r->cb(r->ud, &out);
            /* the callback may have taken results or error strings */
            r->err = out.err;
        }
    }
    weir_pg_req_free(r);
}

static void weir_pg_req_deferred_cb(uv_timer_t *t) { weir_pg_req_deliver(t->data); }

/* Callbacks never run inside the call that started a request: anything
 * finished synchronously is delivered from a timer on the next turn. */
static void weir_pg_req_deliver_later(weir_pg_req *r) {
    r->deferred = 1;
    uv_timer_stop(&r->timer);
    uv_ref((uv_handle_t *)&r->timer);
    uv_timer_start(&r->timer, weir_pg_req_deferred_cb, 0, 0);
}

static void weir_pg_req_fail_later(weir_pg_req *r, weir_pg_err_kind kind, const char *msg) {
    weir_pg_err_set(&r->err, kind, "%s", msg);
    weir_pg_req_deliver_later(r);
}

/* ------------------------------------------------------------------ */
/* io                                                                 */
/* ------------------------------------------------------------------ */

static void weir_pg_io_closed(uv_handle_t *h) { free(h->data); }

static void weir_pg_io_close(weir_pg_conn *c) {
    weir_pg_io *io = c->io;
    if (!io) return;
    c->io = NULL;
    io->conn = NULL;
    uv_poll_stop(&io->poll);
    uv_close((uv_handle_t *)&io->poll, weir_pg_io_closed);
}

static int weir_pg_io_open(weir_pg_conn *c) {
    int fd = PQsocket(c->pg);
    weir_pg_io *io;
    if (fd < 0) return -1;
    io = calloc(1, sizeof *io);
    if (!io) return -1;
    if (uv_poll_init_socket(c->pool->eng->loop, &io->poll, fd) != 0) {
        free(io);
        return -1;
    }
    io->poll.data = io;
    io->conn = c;
    c->io = io;
    return 0;
}

static void weir_pg_io_watch(weir_pg_conn *c, int events, int ref) {
    weir_pg_io *io = c->io;
    if (!io) return;
    if (!io->active || io->events != events) {
        uv_poll_start(&io->poll, events, weir_pg_io_cb);
        io->events = events;
        io->active = 1;
    }
    if (ref) uv_ref((uv_handle_t *)&io->poll);
    else uv_unref((uv_handle_t *)&io->poll);
}

/* ------------------------------------------------------------------ */
/* connections                                                        */
/* ------------------------------------------------------------------ */

static void weir_pg_conn_closed(uv_handle_t *h) {
    weir_pg_conn *c = h->data;
    weir_pg_pool_unref(c->pool);
    free(c);
}

static void weir_pg_conn_unlink(weir_pg_conn *c) {
    weir_pg_pool *p = c->pool;
    if (c->prev) c->prev->next = c->next;
    else if (p->conns == c) p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Closes a connection that nothing references any more (no request,
 * session or owner: callers detach those first). */
static void weir_pg_conn_discard(weir_pg_conn *c) {
    if (c->state == WEIR_PG_DEAD) return;
    if (c->state == WEIR_PG_OPEN) c->pool->discarded++;
    c->state = WEIR_PG_DEAD;
    weir_pg_conn_unlink(c);
    weir_pg_io_close(c);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, weir_pg_conn_closed);
}

typedef struct weir_pg_cancel_work {
    uv_work_t work;
    PGcancel *cancel;
} weir_pg_cancel_work;

static void weir_pg_cancel_run(uv_work_t *w) {
    weir_pg_cancel_work *cw = w->data;
    char errbuf[256];
    (void)PQcancel(cw->cancel, errbuf, sizeof errbuf);   /* best effort */
}

static void weir_pg_cancel_done(uv_work_t *w, int status) {
    weir_pg_cancel_work *cw = w->data;
    (void)status;
    PQfreeCancel(cw->cancel);
    free(cw);
}

/* Asks the server to stop what the connection runs (off the loop). */
static void weir_pg_conn_cancel_server(weir_pg_conn *c) {
    weir_pg_cancel_work *cw;
    PGcancel *cancel = c->pg ? PQgetCancel(c->pg) : NULL;
    if (!cancel) return;
    cw = calloc(1, sizeof *cw);
    if (!cw) {
        PQfreeCancel(cancel);
        return;
    }
    cw->cancel = cancel;
    cw->work.data = cw;
    if (uv_queue_work(c->pool->eng->loop, &cw->work, weir_pg_cancel_run,
                      weir_pg_cancel_done) != 0) {
        PQfreeCancel(cancel);
        free(cw);
    }
}

static void weir_pg_session_lose(weir_pg_session *s, weir_pg_err_kind kind, const char *why) {
    s->conn = NULL;
    s->lost_kind = kind;
    snprintf(s->lost_msg, sizeof s->lost_msg, "%s", why);
    if (s->on_note) s->on_note(s->on_note_ud, 0);
}

static void weir_pg_conn_update_io(weir_pg_conn *c) {
    int events = UV_READABLE, ref;
    if (c->state == WEIR_PG_DEAD || c->state == WEIR_PG_CONNECTING) return;
    if (c->want_write) events |= UV_WRITABLE;
    ref = c->req != NULL || c->state != WEIR_PG_OPEN ||
          (c->session && c->session->on_note != NULL);
    weir_pg_io_watch(c, events, ref);
}

/* -- connect -- */

static int weir_pg_conn_is_pooled(const weir_pg_conn *c) { return !c->dedicated; }

static uint64_t weir_pg_backoff_ms(int attempts) {
    uint64_t ms = WEIR_PG_BACKOFF_BASE_MS;
    int i;
    for (i = 1; i < attempts && ms < WEIR_PG_BACKOFF_CAP_MS; i++) ms *= 2;
    if (ms > WEIR_PG_BACKOFF_CAP_MS) ms = WEIR_PG_BACKOFF_CAP_MS;
    /* jitter: 50..100% so that many clients do not retry in lockstep */
    return ms / 2 + weir_pg_random() % (ms / 2 + 1);
}

static void weir_pg_connect_failed(weir_pg_conn *c, const char *why) {
    weir_pg_pool *p = c->pool;
    weir_pg_req *owner = c->owner;
    char line[200];
    weir_pg_first_line(line, sizeof line, why);
    p->attempts++;
    p->connect_failures++;
    p->retry_at_ms = weir_pg_now_ms(p) + weir_pg_backoff_ms(p->attempts);
    snprintf(p->last_error, sizeof p->last_error, "%s", line[0] ? line : "connection failed");
    if (c->req) {                   /* the setup request */
        weir_pg_req *setup = c->req;
        c->req = NULL;
        setup->conn = NULL;
        setup->cancelled = 1;
        weir_pg_req_free(setup);
    }
    c->owner = NULL;
    weir_pg_conn_discard(c);
    if (owner) {
        char msg[WEIR_PG_MSG];
        snprintf(msg, sizeof msg, "pg %s: cannot connect: %s", p->name, p->last_error);
        weir_pg_req_fail_later(owner, p->closing ? WEIR_PG_ERR_CLOSED : WEIR_PG_ERR_CONNECTION, msg);
    }
    weir_pg_pool_pump(p);
}

static void weir_pg_conn_timer_cb(uv_timer_t *t) {
    weir_pg_conn *c = t->data;
    char msg[128];
    if (c->state == WEIR_PG_CONNECTING || c->state == WEIR_PG_SETUP) {
        snprintf(msg, sizeof msg, "timed out after %llu ms",
                 (unsigned long long)c->pool->connect_timeout_ms);
        weir_pg_connect_failed(c, msg);
    } else if (c->closing_grace) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CLOSED, "the engine closed before the statement finished");
    } else if (c->cleanup) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, "ROLLBACK of a released transaction timed out");
    }
}

static void weir_pg_conn_ready(weir_pg_conn *c);

static void weir_pg_setup_done(void *ud, weir_pg_outcome *out) {
    weir_pg_conn *c = ud;
    char msg[WEIR_PG_MSG];
    if (out->err.kind != WEIR_PG_OK) {
        snprintf(msg, sizeof msg, "setup failed: %s", out->err.message ? out->err.message : "?");
        weir_pg_connect_failed(c, msg);
        return;
    }
    weir_pg_conn_ready(c);
}

static int weir_pg_conn_start(weir_pg_conn *c, weir_pg_req *r);

static void weir_pg_conn_connected(weir_pg_conn *c) {
    weir_pg_pool *p = c->pool;
    weir_pg_req *setup;
    weir_pg_stmt st = {p->setup_sql, 0, NULL, NULL, NULL};
    if (PQsetnonblocking(c->pg, 1) != 0 || weir_pg_io_open(c) != 0) {
        weir_pg_connect_failed(c, "cannot watch the connection's socket");
        return;
    }
    setup = weir_pg_req_new(p, WEIR_PG_REQ_EXEC);
    if (!setup || weir_pg_req_set_stmts(setup, &st, 1) != 0) {
        if (setup) weir_pg_req_free(setup);
        weir_pg_connect_failed(c, "out of memory");
        return;
    }
    setup->internal = 1;
    setup->simple = 1;
    setup->cb = weir_pg_setup_done;
    setup->ud = c;
    c->state = WEIR_PG_SETUP;
    weir_pg_conn_start(c, setup);
}

static void weir_pg_connect_step(weir_pg_conn *c) {
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    int events;
    /* libpq may have moved to another socket (next host, SSL retry):
     * watch whatever PQsocket says now, on a fresh handle */
    weir_pg_io_close(c);
    switch (st) {
    case PGRES_POLLING_OK:
        weir_pg_conn_connected(c);
        return;
    case PGRES_POLLING_FAILED:
        weir_pg_connect_failed(c, PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_READING:
        events = UV_READABLE;
        break;
    default:
        events = UV_WRITABLE;
        break;
    }
    if (weir_pg_io_open(c) != 0) {
        weir_pg_connect_failed(c, "cannot watch the connection's socket");
        return;
    }
    weir_pg_io_watch(c, events, 1);
}

/* Starts a new connection; NULL when it failed at once (accounted as a
 * failed attempt, waiters handled by the caller's pump). */
static weir_pg_conn *weir_pg_conn_open(weir_pg_pool *p, int dedicated, weir_pg_req *owner) {
    weir_pg_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = p;
    c->dedicated = dedicated;
    c->owner = owner;
    c->state = WEIR_PG_CONNECTING;
    p->refs++;
    uv_timer_init(p->eng->loop, &c->timer);
    c->timer.data = c;
    c->next = p->conns;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    c->pg = PQconnectStart(p->dsn);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        c->owner = NULL;            /* the caller reports to it */
        weir_pg_connect_failed(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return NULL;
    }
    /* libpq's default notice processor prints to stderr */
    PQsetNoticeProcessor(c->pg, weir_pg_ignore_notice, NULL);
    uv_timer_start(&c->timer, weir_pg_conn_timer_cb, p->connect_timeout_ms, 0);
    /* as if PQconnectPoll had returned PGRES_POLLING_WRITING */
    if (weir_pg_io_open(c) != 0) {
        c->owner = NULL;
        weir_pg_connect_failed(c, "cannot watch the connection's socket");
        return NULL;
    }
    weir_pg_io_watch(c, UV_WRITABLE, 1);
    return c;
}

/* -- sessions -- */

static weir_pg_session *weir_pg_session_new(weir_pg_conn *c) {
    weir_pg_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->pool = c->pool;
    s->conn = c;
    s->dedicated = c->dedicated;
    c->session = s;
    c->pool->refs++;
    return s;
}

/* -- running requests -- */

static int weir_pg_conn_send(weir_pg_conn *c, weir_pg_req *r) {
    PGconn *pg = c->pg;
    int i;
    if (r->kind == WEIR_PG_REQ_COPY || r->simple)
        return PQsendQuery(pg, r->stmts[0].sql);
    if (r->kind == WEIR_PG_REQ_EXEC) {
        weir_pg_stmt_copy *s = &r->stmts[0];
        return PQsendQueryParams(pg, s->sql, s->nparams, NULL, (const char *const *)s->values,
                                 s->lengths, s->formats, 0);
    }
    /* a pipeline: the statements share one implicit transaction up to
     * the sync, so the first failure rolls them all back */
    if (!PQenterPipelineMode(pg)) return 0;
    for (i = 0; i < r->nstmts; i++) {
        weir_pg_stmt_copy *s = &r->stmts[i];
        if (!PQsendQueryParams(pg, s->sql, s->nparams, NULL, (const char *const *)s->values,
                               s->lengths, s->formats, 0))
            return 0;
    }
    return PQpipelineSync(pg);
}

static int weir_pg_conn_flush(weir_pg_conn *c) {
    int rc = PQflush(c->pg);
    if (rc < 0) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return -1;
    }
    c->want_write = rc == 1;
    return 0;
}

/* Starts r on c.  0, or -1 when the connection failed (r was then
 * failed through weir_pg_conn_lost, delivered later). */
static int weir_pg_conn_start(weir_pg_conn *c, weir_pg_req *r) {
    c->req = r;
    r->conn = c;
    r->idx = 0;
    if (!weir_pg_conn_send(c, r)) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return -1;
    }
    if (weir_pg_conn_flush(c) != 0) return -1;
    weir_pg_conn_update_io(c);
    return 0;
}

/* The request on c is finished: hand the connection on, then deliver. */
static void weir_pg_conn_finish(weir_pg_conn *c) {
    weir_pg_req *r = c->req;
    weir_pg_session *s;
    if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) PQexitPipelineMode(c->pg);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return;
    }
    c->req = NULL;
    r->conn = NULL;
    if (r->internal) {
        weir_pg_outcome out;
        out.results = r->results;
        out.nresults = r->nresults;
        out.err = r->err;
        r->cb(r->ud, &out);
        r->err = out.err;
        r->cancelled = 1;
        weir_pg_req_free(r);
        return;
    }
    s = c->session;
    if (s && s->releasing) {
        c->session = NULL;
        s->conn = NULL;
        weir_pg_session_release(s);
        if (c->dedicated) weir_pg_conn_discard(c);
        else weir_pg_conn_release(c);
    } else if (!s) {
        weir_pg_conn_release(c);
    } else {
        weir_pg_conn_update_io(c);
    }
    weir_pg_req_deliver(r);
}

/* One result (NULL: end of a statement's results).  Returns 1 when the
 * caller must stop reading results for now. */
static int weir_pg_conn_result(weir_pg_conn *c, PGresult *res) {
    weir_pg_req *r = c->req;
    if (!res) {
        if (r->kind == WEIR_PG_REQ_TX) {
            r->idx++;
            return 0;
        }
        weir_pg_conn_finish(c);
        return 1;
    }
    switch (PQresultStatus(res)) {
    case PGRES_COPY_IN:
        PQclear(res);
        if (r->kind == WEIR_PG_REQ_COPY && r->copy_phase == WEIR_PG_COPY_START) {
            r->copy_phase = WEIR_PG_COPY_SEND;
            return 1;
        }
        weir_pg_err_set(&r->err, WEIR_PG_ERR_SQL, "COPY FROM STDIN runs through copy_in()");
        if (PQputCopyEnd(c->pg, "weir.pg: COPY FROM STDIN runs through copy_in()") < 0) {
            weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
            return 1;
        }
        return 0;
    case PGRES_COPY_OUT:
        PQclear(res);
        weir_pg_err_set(&r->err, WEIR_PG_ERR_SQL, "COPY TO STDOUT is not supported by weir.pg");
        r->copy_out = 1;
        return 1;
    case PGRES_PIPELINE_SYNC:
        PQclear(res);
        weir_pg_conn_finish(c);
        return 1;
    case PGRES_PIPELINE_ABORTED:
        PQclear(res);
        return 0;
    case PGRES_FATAL_ERROR:
    case PGRES_BAD_RESPONSE:
    case PGRES_NONFATAL_ERROR:
        weir_pg_err_from_result(&r->err, res);
        PQclear(res);
        return 0;
    default:
        if (r->kind == WEIR_PG_REQ_TX) {
            if (r->idx < r->nresults && !r->results[r->idx]) r->results[r->idx] = res;
            else PQclear(res);
        } else if (r->nresults > 0) {
            /* several statements in one string: the last result counts */
            PQclear(r->results[0]);
            r->results[0] = res;
        } else {
            PQclear(res);
        }
        return 0;
    }
}

/* COPY data: push chunks until libpq's buffer is full (then wait for
 * the socket to be writable), then the end marker.  -1: conn lost. */
static int weir_pg_copy_send(weir_pg_conn *c) {
    weir_pg_req *r = c->req;
    int rc;
    while (r->copy_off < r->copy_len) {
        size_t n = r->copy_len - r->copy_off;
        if (n > WEIR_PG_COPY_CHUNK) n = WEIR_PG_COPY_CHUNK;
        rc = PQputCopyData(c->pg, r->copy_data + r->copy_off, (int)n);
        if (rc == 0) {
            c->want_write = 1;
            return 0;
        }
        if (rc < 0) {
            weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
            return -1;
        }
        r->copy_off += n;
    }
    rc = PQputCopyEnd(c->pg, NULL);
    if (rc == 0) {
        c->want_write = 1;
        return 0;
    }
    if (rc < 0) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return -1;
    }
    r->copy_phase = WEIR_PG_COPY_END;
    free(r->copy_data);
    r->copy_data = NULL;
    return 0;
}

/* Discards COPY TO STDOUT data.  1 while more is to come. */
static int weir_pg_copy_out_drain(weir_pg_conn *c) {
    char *buf;
    int n;
    while ((n = PQgetCopyData(c->pg, &buf, 1)) > 0) PQfreemem(buf);
    if (n == 0) return 1;
    c->req->copy_out = 0;
    return 0;
}

static void weir_pg_conn_notifies(weir_pg_conn *c) {
    PGnotify *n;
    weir_pg_session *s = c->session;
    int got = 0;
    while ((n = PQnotifies(c->pg)) != NULL) {
        if (s && s->dedicated) {
            weir_pg_note *note = NULL;
            if (s->nnotes >= WEIR_PG_MAX_NOTES) {
                s->dropped++;
            } else if ((note = calloc(1, sizeof *note)) != NULL) {
                note->channel = strdup(n->relname ? n->relname : "");
                note->payload = strdup(n->extra ? n->extra : "");
                note->pid = n->be_pid;
                if (!note->channel || !note->payload) {
                    free(note->channel);
                    free(note->payload);
                    free(note);
                    s->dropped++;
                } else {
                    if (s->notes_tail) s->notes_tail->next = note;
                    else s->notes = note;
                    s->notes_tail = note;
                    s->nnotes++;
                    got = 1;
                }
            }
        }
        PQfreemem(n);
    }
    if (got && s->on_note) s->on_note(s->on_note_ud, 0);
}

/* Socket events of an established connection. */
static void weir_pg_conn_drive(weir_pg_conn *c, int readable) {
    weir_pg_req *r;
    if (readable && !PQconsumeInput(c->pg)) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return;
    }
    r = c->req;
    if (r && r->kind == WEIR_PG_REQ_COPY && r->copy_phase == WEIR_PG_COPY_SEND &&
        weir_pg_copy_send(c) != 0)
        return;
    if (weir_pg_conn_flush(c) != 0) return;
    while (c->state != WEIR_PG_DEAD && c->req &&
           !(c->req->kind == WEIR_PG_REQ_COPY && c->req->copy_phase == WEIR_PG_COPY_SEND)) {
        if (c->req->copy_out && weir_pg_copy_out_drain(c)) break;
        if (PQisBusy(c->pg)) break;
        if (weir_pg_conn_result(c, PQgetResult(c->pg))) {
            /* a finished request may have handed the connection to the
             * next one (already sent), or COPY may start: go on only if
             * there is data to send or results to read */
            if (c->state == WEIR_PG_DEAD || !c->req) break;
            if (c->req->kind == WEIR_PG_REQ_COPY && c->req->copy_phase == WEIR_PG_COPY_SEND) {
                if (weir_pg_copy_send(c) != 0) return;
                if (weir_pg_conn_flush(c) != 0) return;
            }
        }
    }
    if (c->state == WEIR_PG_DEAD) return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, PQerrorMessage(c->pg));
        return;
    }
    weir_pg_conn_notifies(c);
    weir_pg_conn_update_io(c);
}

static void weir_pg_io_cb(uv_poll_t *h, int status, int events) {
    weir_pg_io *io = h->data;
    weir_pg_conn *c = io->conn;
    if (!c) return;
    if (c->state == WEIR_PG_CONNECTING) {
        weir_pg_connect_step(c);
        return;
    }
    if (status < 0) {
        weir_pg_conn_lost(c, WEIR_PG_ERR_CONNECTION, uv_strerror(status));
        return;
    }
    weir_pg_conn_drive(c, (events & UV_READABLE) != 0);
}

/* The connection died (or is given up): fail its request, tell its
 * session, discard it -- and every idle connection of the pool, which
 * talked to the same server. */
static void weir_pg_conn_lost(weir_pg_conn *c, weir_pg_err_kind kind, const char *why) {
    weir_pg_pool *p = c->pool;
    weir_pg_req *r = c->req;
    weir_pg_session *s = c->session;
    weir_pg_conn *o, *onext;
    char line[256], msg[WEIR_PG_MSG];
    if (c->state == WEIR_PG_DEAD) return;
    weir_pg_first_line(line, sizeof line, why);
    if (!line[0]) snprintf(line, sizeof line, "the server closed the connection");
    if (c->state != WEIR_PG_OPEN) {
        weir_pg_connect_failed(c, line);
        return;
    }
    c->req = NULL;
    c->session = NULL;
    if (s) {
        snprintf(msg, sizeof msg, "pg %s: %s%s", p->name,
                 kind == WEIR_PG_ERR_CLOSED ? "" : "connection lost: ", line);
        weir_pg_session_lose(s, kind, msg);
        if (s->releasing) weir_pg_session_release(s);
    }
    weir_pg_conn_discard(c);
    if (kind == WEIR_PG_ERR_CONNECTION) {
        for (o = p->conns; o; o = onext) {
            onext = o->next;
            if (o->state == WEIR_PG_OPEN && !o->req && !o->session && !o->dedicated)
                weir_pg_conn_discard(o);
        }
    }
    if (r) {
        r->conn = NULL;
        if (r->internal) {
            r->cancelled = 1;
            weir_pg_req_free(r);
        } else {
            weir_pg_err_connection(&r->err, p, kind, line);
            weir_pg_req_deliver_later(r);
        }
    }
    weir_pg_pool_pump(p);
}

static void weir_pg_cleanup_done(void *ud, weir_pg_outcome *out) {
    weir_pg_conn *c = ud;
    c->cleanup = 0;
    uv_timer_stop(&c->timer);
    if (out->err.kind != WEIR_PG_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        weir_pg_conn_discard(c);
        weir_pg_pool_pump(c->pool);
        return;
    }
    weir_pg_conn_release(c);
}

/* A pooled connection is free again: roll back what its last user left
 * open, then serve the oldest waiter or go idle. */
static void weir_pg_conn_release(weir_pg_conn *c) {
    weir_pg_pool *p = c->pool;
    PGTransactionStatusType ts;
    weir_pg_req *w;
    if (c->state != WEIR_PG_OPEN) return;
    ts = PQtransactionStatus(c->pg);
    if (p->closing && ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
        weir_pg_conn_discard(c);
        return;
    }
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        weir_pg_stmt st = {"ROLLBACK", 0, NULL, NULL, NULL};
        weir_pg_req *rb = weir_pg_req_new(p, WEIR_PG_REQ_EXEC);
        if (!rb || weir_pg_req_set_stmts(rb, &st, 1) != 0) {
            if (rb) weir_pg_req_free(rb);
            weir_pg_conn_discard(c);
            return;
        }
        rb->internal = 1;
        rb->simple = 1;
        rb->cb = weir_pg_cleanup_done;
        rb->ud = c;
        c->cleanup = 1;
        uv_timer_start(&c->timer, weir_pg_conn_timer_cb, WEIR_PG_CLEANUP_TIMEOUT_MS, 0);
        weir_pg_conn_start(c, rb);
        return;
    }
    if (ts != PQTRANS_IDLE) {
        weir_pg_conn_discard(c);
        weir_pg_pool_pump(p);
        return;
    }
    if ((w = p->wait_head) != NULL) {
        weir_pg_pool_assign(c, w);
        return;
    }
    weir_pg_conn_update_io(c);
}

/* Connected and set up. */
static void weir_pg_conn_ready(weir_pg_conn *c) {
    weir_pg_pool *p = c->pool;
    weir_pg_req *owner = c->owner;
    c->state = WEIR_PG_OPEN;
    uv_timer_stop(&c->timer);
    p->attempts = 0;
    p->retry_at_ms = 0;
    p->connects++;
    if (c->dedicated) {
        c->owner = NULL;
        if (!owner) {
            weir_pg_conn_discard(c);
            return;
        }
        owner->session = weir_pg_session_new(c);
        if (!owner->session) {
            weir_pg_conn_discard(c);
            weir_pg_req_fail_later(owner, WEIR_PG_ERR_CONNECTION, "pg: out of memory");
            return;
        }
        weir_pg_conn_update_io(c);
        weir_pg_req_deliver_later(owner);
        return;
    }
    weir_pg_conn_release(c);
}

/* ------------------------------------------------------------------ */
/* pools                                                              */
/* ------------------------------------------------------------------ */

static int weir_pg_conn_is_idle(const weir_pg_conn *c) {
    return c->state == WEIR_PG_OPEN && !c->req && !c->session && !c->dedicated && !c->cleanup;
}

static weir_pg_conn *weir_pg_pool_idle(weir_pg_pool *p) {
    weir_pg_conn *c;
    for (c = p->conns; c; c = c->next)
        if (weir_pg_conn_is_idle(c)) return c;
    return NULL;
}

static void weir_pg_pool_count(const weir_pg_pool *p, int *open, int *connecting) {
    const weir_pg_conn *c;
    *open = *connecting = 0;
    for (c = p->conns; c; c = c->next) {
        if (!weir_pg_conn_is_pooled(c) || c->state == WEIR_PG_DEAD) continue;
        (*open)++;
        if (c->state != WEIR_PG_OPEN) (*connecting)++;
    }
}

static void weir_pg_wait_unlink(weir_pg_pool *p, weir_pg_req *r) {
    if (!r->queued) return;
    if (r->prev) r->prev->next = r->next;
    else p->wait_head = r->next;
    if (r->next) r->next->prev = r->prev;
    else p->wait_tail = r->prev;
    r->prev = r->next = NULL;
    r->queued = 0;
    p->nwaiting--;
    uv_timer_stop(&r->timer);
}

/* Gives connection c to the waiting request r. */
static void weir_pg_pool_assign(weir_pg_conn *c, weir_pg_req *r) {
    weir_pg_wait_unlink(c->pool, r);
    if (r->kind != WEIR_PG_REQ_ACQUIRE) {
        weir_pg_conn_start(c, r);
        return;
    }
    r->session = weir_pg_session_new(c);
    if (!r->session) {
        weir_pg_req_fail_later(r, WEIR_PG_ERR_CONNECTION, "pg: out of memory");
        weir_pg_conn_update_io(c);
        return;
    }
    weir_pg_conn_update_io(c);
    weir_pg_req_deliver_later(r);
}

static void weir_pg_backoff_message(const weir_pg_pool *p, char *buf, size_t len) {
    uint64_t now = weir_pg_now_ms(p);
    snprintf(buf, len, "pg %s: cannot connect: %s (next attempt in %llu ms)", p->name,
             p->last_error[0] ? p->last_error : "connection failed",
             (unsigned long long)(p->retry_at_ms > now ? p->retry_at_ms - now : 0));
}

static int weir_pg_in_backoff(const weir_pg_pool *p) {
    return p->retry_at_ms && weir_pg_now_ms(p) < p->retry_at_ms;
}

/* Hands idle connections to waiters, opens connections for the rest (up
 * to the size), and fails waiters nothing can serve (server down, in
 * backoff, nothing open). */
static void weir_pg_pool_pump(weir_pg_pool *p) {
    weir_pg_conn *c;
    int open, connecting;
    while (p->wait_head && (c = weir_pg_pool_idle(p)) != NULL)
        weir_pg_pool_assign(c, p->wait_head);
    if (!p->wait_head || p->closing) return;
    weir_pg_pool_count(p, &open, &connecting);
    while (connecting < p->nwaiting && open < p->size && !weir_pg_in_backoff(p)) {
        if (!weir_pg_conn_open(p, 0, NULL)) return;   /* failure pumped again */
        open++;
        connecting++;
    }
    if (open == 0 && p->wait_head) {
        char msg[WEIR_PG_MSG];
        weir_pg_backoff_message(p, msg, sizeof msg);
        while (p->wait_head) {
            weir_pg_req *r = p->wait_head;
            weir_pg_wait_unlink(p, r);
            weir_pg_req_fail_later(r, WEIR_PG_ERR_CONNECTION, msg);
        }
    }
}

static void weir_pg_wait_timeout(uv_timer_t *t) {
    weir_pg_req *r = t->data;
    weir_pg_pool *p = r->pool;
    weir_pg_wait_unlink(p, r);
    weir_pg_err_set(&r->err, WEIR_PG_ERR_POOL_TIMEOUT,
                    "pg %s: no free connection within %g s (pool size %d, all busy)", p->name,
                    p->wait_timeout, p->size);
    weir_pg_req_deliver(r);
}

/* Queues r for a pooled connection. */
static void weir_pg_pool_enqueue(weir_pg_pool *p, weir_pg_req *r) {
    if (p->wait_timeout < 0 && !weir_pg_pool_idle(p)) {
        int open, connecting;
        weir_pg_pool_count(p, &open, &connecting);
        if (open >= p->size) {
            char msg[WEIR_PG_MSG];
            snprintf(msg, sizeof msg, "pg %s: no free connection (pool size %d, all busy)",
                     p->name, p->size);
            weir_pg_req_fail_later(r, WEIR_PG_ERR_POOL_TIMEOUT, msg);
            return;
        }
    }
    r->queued = 1;
    r->prev = p->wait_tail;
    r->next = NULL;
    if (p->wait_tail) p->wait_tail->next = r;
    else p->wait_head = r;
    p->wait_tail = r;
    p->nwaiting++;
    if (p->wait_timeout > 0)
        uv_timer_start(&r->timer, weir_pg_wait_timeout, weir_pg_ms(p->wait_timeout), 0);
    weir_pg_pool_pump(p);
}

/* "host:port/dbname" from the DSN's options, for messages. */
static void weir_pg_pool_name(weir_pg_pool *p, PQconninfoOption *opts) {
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    PQconninfoOption *o;
    for (o = opts; o && o->keyword; o++) {
        if (!o->val || !o->val[0]) continue;
        if (strcmp(o->keyword, "host") == 0) host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0) port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0) db = o->val;
        else if (strcmp(o->keyword, "user") == 0) user = o->val;
    }
    if (!host) host = hostaddr ? hostaddr : "localhost";
    snprintf(p->name, sizeof p->name, "%s:%s/%s", host, port ? port : "5432",
             db ? db : user ? user : "");
}

static int weir_pg_opts_check(const weir_pg_pool_opts *o, char *errbuf, size_t errlen) {
    if (o->size < 0 || o->size > WEIR_PG_MAX_POOL_SIZE) {
        snprintf(errbuf, errlen, "size must be between 1 and %d (got %d)", WEIR_PG_MAX_POOL_SIZE,
                 o->size);
        return -1;
    }
    if (!(o->statement_timeout >= 0 && o->statement_timeout <= WEIR_PG_MAX_TIMEOUT)) {
        snprintf(errbuf, errlen, "statement_timeout must be between 0 and %.0f seconds",
                 WEIR_PG_MAX_TIMEOUT);
        return -1;
    }
    if (!(o->connect_timeout >= 0 && o->connect_timeout <= WEIR_PG_MAX_TIMEOUT)) {
        snprintf(errbuf, errlen, "connect_timeout must be between 0 and %.0f seconds",
                 WEIR_PG_MAX_TIMEOUT);
        return -1;
    }
    if (isnan(o->wait_timeout) || o->wait_timeout > WEIR_PG_MAX_TIMEOUT) {
        snprintf(errbuf, errlen, "wait_timeout must be at most %.0f seconds", WEIR_PG_MAX_TIMEOUT);
        return -1;
    }
    return 0;
}

static int weir_pg_opts_equal(const weir_pg_pool_opts *a, const weir_pg_pool_opts *b) {
    return a->size == b->size && a->statement_timeout == b->statement_timeout &&
           a->connect_timeout == b->connect_timeout && a->wait_timeout == b->wait_timeout;
}

/* Session settings every connection gets: results are parsed by type, so
 * their text forms must not depend on the server's configuration. */
static char *weir_pg_setup_sql(const weir_pg_pool_opts *o) {
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'; "
                     "SET bytea_output TO 'hex'; SET client_encoding TO 'UTF8'; "
                     "SET extra_float_digits TO 1");
    if (o->statement_timeout > 0)
        snprintf(buf + n, sizeof buf - (size_t)n, "; SET statement_timeout TO %llu",
                 (unsigned long long)weir_pg_ms(o->statement_timeout));
    return strdup(buf);
}

weir_pg_pool *weir_pg_pool_get(weir_engine *e, const char *dsn, const weir_pg_pool_opts *opts,
                               char *errbuf, size_t errlen) {
    weir_pg_engine *pe = weir_pg_engine_of(e);
    weir_pg_pool_opts o;
    weir_pg_pool *p;
    PQconninfoOption *info;
    char *perr = NULL;
    if (!pe) {
        snprintf(errbuf, errlen, "weir.pg is not initialised on this engine");
        return NULL;
    }
    if (e->closing) {
        snprintf(errbuf, errlen, "the engine is closing");
        return NULL;
    }
    if (opts) o = *opts;
    else memset(&o, 0, sizeof o);
    if (weir_pg_opts_check(&o, errbuf, errlen) != 0) return NULL;
    for (p = pe->pools; p; p = p->next)
        if (strcmp(p->dsn, dsn) == 0 && weir_pg_opts_equal(&p->opts, &o)) return p;
    info = PQconninfoParse(dsn, &perr);
    if (!info) {
        char line[200];
        weir_pg_first_line(line, sizeof line, perr ? perr : "out of memory");
        snprintf(errbuf, errlen, "bad DSN: %s", line);
        if (perr) PQfreemem(perr);
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->dsn = strdup(dsn)) || !(p->setup_sql = weir_pg_setup_sql(&o))) {
        if (p) {
            free(p->dsn);
            free(p);
        }
        PQconninfoFree(info);
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    weir_pg_pool_name(p, info);
    PQconninfoFree(info);
    p->eng = e;
    p->opts = o;
    p->size = o.size ? o.size : WEIR_PG_DEFAULT_POOL_SIZE;
    p->connect_timeout_ms = weir_pg_ms(o.connect_timeout > 0 ? o.connect_timeout
                                                             : WEIR_PG_DEFAULT_CONNECT_TIMEOUT);
    p->wait_timeout = o.wait_timeout != 0 ? o.wait_timeout : WEIR_PG_DEFAULT_WAIT_TIMEOUT;
    p->refs = 1;                    /* the engine's */
    p->next = pe->pools;
    pe->pools = p;
    return p;
}

/* ------------------------------------------------------------------ */
/* requests: public API                                               */
/* ------------------------------------------------------------------ */

static weir_pg_req *weir_pg_submit(weir_pg_pool *p, int kind, const weir_pg_stmt *stmts, int n,
                                   weir_pg_done_fn cb, void *ud) {
    weir_pg_req *r;
    if (p->closing || n < 1) return NULL;
    r = weir_pg_req_new(p, kind);
    if (!r) return NULL;
    if (weir_pg_req_set_stmts(r, stmts, n) != 0) {
        r->cancelled = 1;
        weir_pg_req_free(r);
        return NULL;
    }
    r->simple = kind == WEIR_PG_REQ_EXEC && stmts[0].nparams == 0;
    r->cb = cb;
    r->ud = ud;
    weir_pg_pool_enqueue(p, r);
    return r;
}

weir_pg_req *weir_pg_exec(weir_pg_pool *p, const weir_pg_stmt *stmt, weir_pg_done_fn cb,
                          void *ud) {
    return weir_pg_submit(p, WEIR_PG_REQ_EXEC, stmt, 1, cb, ud);
}

weir_pg_req *weir_pg_exec_tx(weir_pg_pool *p, const weir_pg_stmt *stmts, int n,
                             weir_pg_done_fn cb, void *ud) {
    return weir_pg_submit(p, WEIR_PG_REQ_TX, stmts, n, cb, ud);
}

/* Gives up the connection of a request that is still running. */
static void weir_pg_conn_abort(weir_pg_conn *c) {
    weir_pg_pool *p = c->pool;
    weir_pg_session *s = c->session;
    weir_pg_conn_cancel_server(c);
    c->session = NULL;
    if (s) {
        char msg[WEIR_PG_MSG];
        snprintf(msg, sizeof msg, "pg %s: a statement of this transaction was cancelled, "
                                  "which closed its connection", p->name);
        weir_pg_session_lose(s, WEIR_PG_ERR_CONNECTION, msg);
        if (s->releasing) weir_pg_session_release(s);
    }
    weir_pg_conn_discard(c);
    weir_pg_pool_pump(p);
}

void weir_pg_cancel(weir_pg_req *r) {
    weir_pg_pool *p;
    weir_pg_conn *c;
    if (!r || r->cancelled) return;
    p = r->pool;
    r->cancelled = 1;
    if (r->queued) {
        weir_pg_wait_unlink(p, r);
    } else if (r->conn) {
        c = r->conn;
        c->req = NULL;
        r->conn = NULL;
        weir_pg_conn_abort(c);
    } else if (r->dedicated && !r->deferred) {
        for (c = p->conns; c; c = c->next) {
            if (c->owner == r) {
                c->owner = NULL;
                if (c->req) {           /* setup */
                    weir_pg_req *setup = c->req;
                    c->req = NULL;
                    setup->conn = NULL;
                    weir_pg_req_free(setup);
                }
                weir_pg_conn_discard(c);
                break;
            }
        }
    }
    weir_pg_req_free(r);
}

void weir_pg_pool_stats_get(const weir_pg_pool *p, weir_pg_pool_stats *st) {
    const weir_pg_conn *c;
    memset(st, 0, sizeof *st);
    st->size = p->size;
    for (c = p->conns; c; c = c->next) {
        if (c->dedicated || c->state == WEIR_PG_DEAD) continue;
        st->open++;
        if (c->state != WEIR_PG_OPEN) st->connecting++;
        else if (weir_pg_conn_is_idle(c)) st->idle++;
        else st->busy++;
    }
    st->waiting = p->nwaiting;
    st->connects = p->connects;
    st->connect_failures = p->connect_failures;
    st->discarded = p->discarded;
}

/* ------------------------------------------------------------------ */
/* sessions: a pinned connection (transactions, listeners)            */
/* ------------------------------------------------------------------ */

static weir_pg_req *weir_pg_acquire(weir_pg_pool *p, int dedicated, weir_pg_acquired_fn cb,
                                    void *ud) {
    weir_pg_req *r;
    if (p->closing) return NULL;
    r = weir_pg_req_new(p, WEIR_PG_REQ_ACQUIRE);
    if (!r) return NULL;
    r->acq_cb = cb;
    r->ud = ud;
    r->dedicated = dedicated;
    if (!dedicated) {
        weir_pg_pool_enqueue(p, r);
    } else if (weir_pg_in_backoff(p)) {
        char msg[WEIR_PG_MSG];
        weir_pg_backoff_message(p, msg, sizeof msg);
        weir_pg_req_fail_later(r, WEIR_PG_ERR_CONNECTION, msg);
    } else if (!weir_pg_conn_open(p, 1, r)) {
        char msg[WEIR_PG_MSG];
        snprintf(msg, sizeof msg, "pg %s: cannot connect: %s", p->name, p->last_error);
        weir_pg_req_fail_later(r, WEIR_PG_ERR_CONNECTION, msg);
    }
    return r;
}

static void weir_pg_notes_free(weir_pg_session *s) {
    while (s->notes) {
        weir_pg_note *n = s->notes;
        s->notes = n->next;
        free(n->channel);
        free(n->payload);
        free(n);
    }
    s->notes_tail = NULL;
    s->nnotes = 0;
}

/* Gives the connection back (rolled back if a transaction is open; a
 * dedicated one is closed).  While a statement still runs, the release
 * completes when it ends. */
static void weir_pg_session_release(weir_pg_session *s) {
    weir_pg_conn *c = s->conn;
    if (s->on_note) {               /* wake a listener waiting on it */
        void (*fn)(void *, int) = s->on_note;
        void *ud = s->on_note_ud;
        s->on_note = NULL;
        s->on_note_ud = NULL;
        fn(ud, 1);
    }
    if (c && c->req) {
        s->releasing = 1;
        return;
    }
    weir_pg_notes_free(s);
    if (c) {
        c->session = NULL;
        s->conn = NULL;
        if (c->dedicated) weir_pg_conn_discard(c);
        else weir_pg_conn_release(c);
    }
    weir_pg_pool_unref(s->pool);
    free(s);
}

/* Runs one statement (or a COPY with its data, taken over) on the
 * session's connection.  NULL with errbuf set when it is busy. */
static weir_pg_req *weir_pg_session_exec(weir_pg_session *s, int kind, const weir_pg_stmt *stmt,
                                         char *copy_data, size_t copy_len, weir_pg_done_fn cb,
                                         void *ud, char *errbuf, size_t errlen) {
    weir_pg_req *r;
    if (s->conn && (s->conn->req || s->conn->state != WEIR_PG_OPEN)) {
        snprintf(errbuf, errlen, "this transaction is already running a statement "
                                 "(one at a time per transaction)");
        free(copy_data);
        return NULL;
    }
    r = weir_pg_req_new(s->pool, kind);
    if (!r || weir_pg_req_set_stmts(r, stmt, 1) != 0) {
        if (r) {
            r->cancelled = 1;
            weir_pg_req_free(r);
        }
        free(copy_data);
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    r->simple = kind == WEIR_PG_REQ_EXEC && stmt->nparams == 0;
    r->copy_data = copy_data;
    r->copy_len = copy_len;
    r->cb = cb;
    r->ud = ud;
    if (!s->conn) {
        weir_pg_req_fail_later(r, s->lost_kind ? s->lost_kind : WEIR_PG_ERR_CONNECTION,
                               s->lost_msg[0] ? s->lost_msg : "pg: the connection was lost");
        return r;
    }
    weir_pg_conn_start(s->conn, r);
    return r;
}

/* ------------------------------------------------------------------ */
/* engine                                                             */
/* ------------------------------------------------------------------ */

static void weir_pg_pool_close(weir_pg_pool *p) {
    weir_pg_conn *c, *next;
    char msg[WEIR_PG_MSG];
    p->closing = 1;
    snprintf(msg, sizeof msg, "pg %s: the engine is closing", p->name);
    while (p->wait_head) {
        weir_pg_req *r = p->wait_head;
        weir_pg_wait_unlink(p, r);
        weir_pg_req_fail_later(r, WEIR_PG_ERR_CLOSED, msg);
    }
    for (c = p->conns; c; c = next) {
        next = c->next;
        if (c->state != WEIR_PG_OPEN) {
            weir_pg_req *owner = c->owner;
            c->owner = NULL;
            if (c->req) {
                weir_pg_req *setup = c->req;
                c->req = NULL;
                setup->conn = NULL;
                setup->cancelled = 1;
                weir_pg_req_free(setup);
            }
            weir_pg_conn_discard(c);
            if (owner) weir_pg_req_fail_later(owner, WEIR_PG_ERR_CLOSED, msg);
        } else if (c->req) {
            /* finishes during the engine's final loop run, within bounds */
            c->closing_grace = 1;
            uv_timer_start(&c->timer, weir_pg_conn_timer_cb, WEIR_PG_CLOSE_GRACE_MS, 0);
            weir_pg_conn_update_io(c);
        } else if (c->session) {
            weir_pg_session *s = c->session;
            c->session = NULL;
            weir_pg_session_lose(s, WEIR_PG_ERR_CLOSED, msg);
            weir_pg_conn_discard(c);
        } else {
            weir_pg_conn_discard(c);
        }
    }
    weir_pg_pool_unref(p);
}

int weir_pg_engine_init(weir_engine *e) {
    weir_pg_engine *pe = calloc(1, sizeof *pe);
    if (!pe) return -ENOMEM;
    pe->eng = e;
    pe->next = weir_pg_engines;
    weir_pg_engines = pe;
    return 0;
}

void weir_pg_engine_close(weir_engine *e) {
    weir_pg_engine *pe = weir_pg_engine_of(e), **pp;
    if (!pe) return;
    for (pp = &weir_pg_engines; *pp; pp = &(*pp)->next) {
        if (*pp == pe) {
            *pp = pe->next;
            break;
        }
    }
    while (pe->pools) {
        weir_pg_pool *p = pe->pools;
        pe->pools = p->next;
        weir_pg_pool_close(p);
    }
    free(pe);
}


/* ------------------------------------------------------------------ */
/* Lua: values                                                        */
/* ------------------------------------------------------------------ */

/* Well-formed UTF-8 (no overlongs, surrogates or code points beyond
 * U+10FFFF): what the server accepts as text. */
static int weir_pg_utf8_valid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n, k;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return 0;
        if (i + n >= len) return 0;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += n + 1;
    }
    return 1;
}

static const char *weir_pg_bytea_bytes(lua_State *L, int idx, size_t *len) {
    const char *b;
    lua_getiuservalue(L, idx, 1);
    b = lua_tolstring(L, -1, len);  /* stays on the stack while in use */
    return b ? b : "";
}

static const char *weir_pg_fmt_float(lua_Number x, char *buf, size_t len) {
    if (isnan(x)) return "NaN";
    if (isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
    snprintf(buf, len, "%.17g", (double)x);
    return buf;
}

/* Binds the Lua values at first .. first+n-1 as statement parameters.
 * Every string the statement points to stays on the Lua stack until the
 * calling C function returns (the request copies them before that). */
static void weir_pg_l_params(lua_State *L, int first, int n, weir_pg_stmt *st, const char *what) {
    const char **values;
    int *lengths, *formats, i;
    char num[64];
    if (n > WEIR_PG_MAX_PARAMS) luaL_error(L, "%s: too many parameters (%d, at most %d)", what, n,
                                           WEIR_PG_MAX_PARAMS);
    luaL_checkstack(L, n + 8, "too many parameters");
    values = lua_newuserdatauv(L, (size_t)n * sizeof *values + 1, 0);
    lengths = lua_newuserdatauv(L, (size_t)n * sizeof *lengths + 1, 0);
    formats = lua_newuserdatauv(L, (size_t)n * sizeof *formats + 1, 0);
    for (i = 0; i < n; i++) {
        int idx = first + i;
        size_t len = 0;
        values[i] = NULL;
        lengths[i] = 0;
        formats[i] = 0;
        switch (lua_type(L, idx)) {
        case LUA_TNIL:
            break;
        case LUA_TLIGHTUSERDATA:
            if (!weir_json_is_null(L, idx))
                luaL_error(L, "%s: parameter $%d: cannot bind a light userdata", what, i + 1);
            break;
        case LUA_TBOOLEAN:
            values[i] = lua_toboolean(L, idx) ? "true" : "false";
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, idx)) {
                snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
                values[i] = lua_pushstring(L, num);
            } else {
                values[i] = lua_pushstring(L, weir_pg_fmt_float(lua_tonumber(L, idx), num, sizeof num));
            }
            break;
        case LUA_TSTRING:
            values[i] = lua_tolstring(L, idx, &len);
            if (len > INT_MAX) luaL_error(L, "%s: parameter $%d is too long", what, i + 1);
            /* bytes that cannot be text go in binary format (bytea) */
            if (memchr(values[i], 0, len) || !weir_pg_utf8_valid((const unsigned char *)values[i], len)) {
                lengths[i] = (int)len;
                formats[i] = 1;
            }
            break;
        case LUA_TUSERDATA:
            if (!luaL_testudata(L, idx, WEIR_PG_BYTEA_MT))
                luaL_error(L, "%s: parameter $%d: cannot bind a userdata", what, i + 1);
            values[i] = weir_pg_bytea_bytes(L, idx, &len);
            if (len > INT_MAX) luaL_error(L, "%s: parameter $%d is too long", what, i + 1);
            lengths[i] = (int)len;
            formats[i] = 1;
            break;
        case LUA_TTABLE:
            weir_json_encode(L, idx, 0);    /* json / jsonb parameters */
            values[i] = lua_tostring(L, -1);
            break;
        default:
            luaL_error(L, "%s: parameter $%d: cannot bind a %s", what, i + 1, luaL_typename(L, idx));
        }
    }
    st->nparams = n;
    st->values = values;
    st->lengths = lengths;
    st->formats = formats;
}

/* -- results -- */

static int64_t weir_pg_days_from_civil(int64_t y, int m, int d) {
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void weir_pg_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* "2024-01-01 10:00:00.123+05:30" -> "2024-01-01T04:30:00.123Z".  The
 * sessions run with TimeZone UTC, so the offset is normally +00, but a
 * script may SET TimeZone.  -1 when the text is not of that shape
 * (infinity, BC dates): the caller keeps it as is. */
static int weir_pg_timestamptz_utc(const char *v, char *out, size_t outlen) {
    int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0, os = 0, sign = 1;
    char frac[16] = "";
    const char *p;
    size_t nf = 0;
    int64_t t, days, yy;
    if (sscanf(v, "%d-%d-%d %d:%d:%d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) return -1;
    p = v + n;
    if (*p == '.') {
        frac[nf++] = *p++;
        while (*p >= '0' && *p <= '9' && nf < sizeof frac - 1) frac[nf++] = *p++;
        frac[nf] = '\0';
    }
    if (*p != '+' && *p != '-') return -1;
    sign = *p++ == '-' ? -1 : 1;
    n = 0;
    if (sscanf(p, "%2d%n", &oh, &n) != 1) return -1;
    p += n;
    if (*p == ':') {
        n = 0;
        if (sscanf(p + 1, "%2d%n", &om, &n) != 1) return -1;
        p += 1 + n;
        if (*p == ':') {
            n = 0;
            if (sscanf(p + 1, "%2d%n", &os, &n) != 1) return -1;
            p += 1 + n;
        }
    }
    if (*p) return -1;
    t = weir_pg_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (oh * 3600 + om * 60 + os);
    days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    t -= days * 86400;
    weir_pg_civil_from_days(days, &yy, &mo, &d);
    snprintf(out, outlen, "%04lld-%02d-%02dT%02d:%02d:%02d%sZ", (long long)yy, mo, d,
             (int)(t / 3600), (int)(t / 60 % 60), (int)(t % 60), frac);
    return 0;
}

static int weir_pg_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void weir_pg_push_bytea(lua_State *L, const char *v, size_t len) {
    luaL_Buffer b;
    size_t i;
    if (len < 2 || v[0] != '\\' || v[1] != 'x') {   /* not hex output */
        lua_pushlstring(L, v, len);
        return;
    }
    luaL_buffinitsize(L, &b, (len - 2) / 2);
    for (i = 2; i + 1 < len; i += 2) {
        int hi = weir_pg_hexval((unsigned char)v[i]), lo = weir_pg_hexval((unsigned char)v[i + 1]);
        if (hi < 0 || lo < 0) break;
        luaL_addchar(&b, (char)(hi << 4 | lo));
    }
    luaL_pushresult(&b);
}

static void weir_pg_push_value(lua_State *L, const PGresult *res, int row, int col) {
    const char *v;
    size_t len;
    char buf[96];
    if (PQgetisnull(res, row, col)) {
        weir_json_push_null(L);
        return;
    }
    v = PQgetvalue(res, row, col);
    len = (size_t)PQgetlength(res, row, col);
    switch (PQftype(res, col)) {
    case WEIR_PG_BOOLOID:
        lua_pushboolean(L, v[0] == 't');
        break;
    case WEIR_PG_INT2OID:
    case WEIR_PG_INT4OID:
    case WEIR_PG_INT8OID:
    case WEIR_PG_OIDOID:
        lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        break;
    case WEIR_PG_FLOAT4OID:
    case WEIR_PG_FLOAT8OID:
        lua_pushnumber(L, (lua_Number)strtod(v, NULL));
        break;
    case WEIR_PG_JSONOID:
    case WEIR_PG_JSONBOID:
        if (weir_json_decode(L, v, len) != 0) {
            lua_pop(L, 1);
            lua_pushlstring(L, v, len);
        }
        break;
    case WEIR_PG_BYTEAOID:
        weir_pg_push_bytea(L, v, len);
        break;
    case WEIR_PG_TIMESTAMPTZOID:
        if (weir_pg_timestamptz_utc(v, buf, sizeof buf) == 0) lua_pushstring(L, buf);
        else lua_pushlstring(L, v, len);
        break;
    case WEIR_PG_TIMESTAMPOID:
        if (len < sizeof buf && len > 10 && v[10] == ' ') {
            memcpy(buf, v, len);
            buf[10] = 'T';
            lua_pushlstring(L, buf, len);
        } else {
            lua_pushlstring(L, v, len);
        }
        break;
    default:    /* numeric (exact), text, uuid, date, arrays...: their text */
        lua_pushlstring(L, v, len);
        break;
    }
}

static lua_Integer weir_pg_result_count(const PGresult *res) {
    const char *ct;
    if (!res) return 0;
    ct = PQcmdTuples((PGresult *)res);
    return ct[0] ? (lua_Integer)strtoll(ct, NULL, 10) : (lua_Integer)PQntuples(res);
}

/* rows (array of {column = value}), count, fields, command */
static void weir_pg_push_result(lua_State *L, const PGresult *res) {
    int nrows = res ? PQntuples(res) : 0, nf = res ? PQnfields(res) : 0, r, f;
    lua_createtable(L, nrows, 3);
    for (r = 0; r < nrows; r++) {
        lua_createtable(L, 0, nf);
        for (f = 0; f < nf; f++) {
            weir_pg_push_value(L, res, r, f);
            lua_setfield(L, -2, PQfname(res, f));
        }
        lua_rawseti(L, -2, r + 1);
    }
    lua_createtable(L, nf, 0);
    for (f = 0; f < nf; f++) {
        lua_pushstring(L, PQfname(res, f));
        lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_pushinteger(L, weir_pg_result_count(res));
    lua_setfield(L, -2, "count");
    if (res) {
        const char *cmd = PQcmdStatus((PGresult *)res);
        lua_pushlstring(L, cmd, strcspn(cmd, " "));
        lua_setfield(L, -2, "command");
    }
}

static void weir_pg_push_error(lua_State *L, const weir_pg_error *e) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, weir_pg_error_kind_name(e->kind));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, e->message ? e->message : "pg: unknown error");
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, e->retryable);
    lua_setfield(L, -2, "retryable");
    if (e->sqlstate[0]) {
        lua_pushstring(L, e->sqlstate);
        lua_setfield(L, -2, "sqlstate");
    }
    if (e->position > 0) {
        lua_pushinteger(L, e->position);
        lua_setfield(L, -2, "position");
    }
    if (e->detail) {
        lua_pushstring(L, e->detail);
        lua_setfield(L, -2, "detail");
    }
    if (e->hint) {
        lua_pushstring(L, e->hint);
        lua_setfield(L, -2, "hint");
    }
}

/* ------------------------------------------------------------------ */
/* Lua: ops                                                           */
/* ------------------------------------------------------------------ */

enum {
    WEIR_PG_PUSH_ROWS,      /* res */
    WEIR_PG_PUSH_COMMIT,    /* true, or an error if COMMIT rolled back */
    WEIR_PG_PUSH_TYPES,     /* array of column type OIDs */
    WEIR_PG_PUSH_COUNT,     /* affected rows */
    WEIR_PG_PUSH_SESSION    /* a transaction object */
};

typedef struct weir_pg_op {
    weir_op base;
    weir_pg_req *req;           /* NULL once answered */
    int mode;
    PGresult *res;
    weir_pg_error err;
    weir_pg_session *session;
} weir_pg_op;

static void weir_pg_op_destroy(weir_pg_op *op) {
    PQclear(op->res);
    weir_pg_err_clear(&op->err);
    if (op->session) weir_pg_session_release(op->session);
    free(op);
}

static void weir_pg_op_answered(void *ud, weir_pg_outcome *out) {
    weir_pg_op *op = ud;
    op->req = NULL;
    op->err = out->err;
    memset(&out->err, 0, sizeof out->err);      /* taken */
    if (out->nresults > 0) {
        op->res = out->results[out->nresults - 1];
        out->results[out->nresults - 1] = NULL;
    }
    weir_op_complete(&op->base);
}

static void weir_pg_op_acquired(void *ud, weir_pg_session *s, weir_pg_error *err) {
    weir_pg_op *op = ud;
    op->req = NULL;
    op->session = s;
    if (!s) {
        op->err = *err;
        memset(err, 0, sizeof *err);
    }
    weir_op_complete(&op->base);
}

static void weir_pg_push_session(lua_State *L, weir_pg_op *op) {
    weir_pg_session **ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = NULL;
    luaL_setmetatable(L, WEIR_PG_SESSION_MT);
    *ud = op->session;
    op->session = NULL;
}

static int weir_pg_op_push(lua_State *L, weir_op *base) {
    weir_pg_op *op = (weir_pg_op *)base;
    int i, nf;
    if (op->err.kind != WEIR_PG_OK) {
        lua_pushnil(L);
        weir_pg_push_error(L, &op->err);
        return 2;
    }
    switch (op->mode) {
    case WEIR_PG_PUSH_COMMIT:
        if (op->res && strcmp(PQcmdStatus(op->res), "ROLLBACK") == 0) {
            weir_pg_error e;
            memset(&e, 0, sizeof e);
            e.kind = WEIR_PG_ERR_SQL;
            strcpy(e.sqlstate, "25P02");
            e.message = "COMMIT rolled the transaction back: a statement in it failed";
            lua_pushnil(L);
            weir_pg_push_error(L, &e);
            return 2;
        }
        lua_pushboolean(L, 1);
        return 1;
    case WEIR_PG_PUSH_TYPES:
        nf = op->res ? PQnfields(op->res) : 0;
        lua_createtable(L, nf, 0);
        for (i = 0; i < nf; i++) {
            lua_pushinteger(L, (lua_Integer)PQftype(op->res, i));
            lua_rawseti(L, -2, i + 1);
        }
        return 1;
    case WEIR_PG_PUSH_COUNT:
        lua_pushinteger(L, weir_pg_result_count(op->res));
        return 1;
    case WEIR_PG_PUSH_SESSION:
        weir_pg_push_session(L, op);
        return 1;
    default:
        weir_pg_push_result(L, op->res);
        return 1;
    }
}

static void weir_pg_op_cancel(weir_op *base) {
    weir_pg_op *op = (weir_pg_op *)base;
    if (op->req) weir_pg_cancel(op->req);
    op->req = NULL;
    weir_pg_op_destroy(op);
}

static void weir_pg_op_free(weir_op *base) { weir_pg_op_destroy((weir_pg_op *)base); }

static weir_pg_op *weir_pg_op_new(lua_State *L, int mode, const char *what) {
    weir_pg_op *op = calloc(1, sizeof *op);
    if (!op) luaL_error(L, "%s: out of memory", what);
    op->mode = mode;
    op->base.push = weir_pg_op_push;
    op->base.cancel = weir_pg_op_cancel;
    op->base.free = weir_pg_op_free;
    op->base.what = what;
    return op;
}

/* ------------------------------------------------------------------ */
/* Lua: pools                                                         */
/* ------------------------------------------------------------------ */

static weir_pg_pool *weir_pg_l_pool(lua_State *L, int idx) {
    return *(weir_pg_pool **)luaL_checkudata(L, idx, WEIR_PG_POOL_MT);
}

static double weir_pg_l_opt_seconds(lua_State *L, int t, const char *name, double dflt) {
    double v = dflt;
    if (lua_getfield(L, t, name) != LUA_TNIL) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "pg.connect: %s must be a number of seconds", name);
        v = lua_tonumber(L, -1);
        if (!(v >= 0 && v <= WEIR_PG_MAX_TIMEOUT))
            luaL_error(L, "pg.connect: %s must be between 0 and %f seconds (got %f)", name,
                       WEIR_PG_MAX_TIMEOUT, v);
    }
    lua_pop(L, 1);
    return v;
}

static void weir_pg_l_opts(lua_State *L, int t, weir_pg_pool_opts *o) {
    static const char *const known[] = {"size", "statement_timeout", "connect_timeout",
                                        "wait_timeout", NULL};
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, t)) return;
    luaL_checktype(L, t, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int i, ok = 0;
        lua_pop(L, 1);
        for (i = 0; known[i]; i++)
            if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), known[i]) == 0) ok = 1;
        if (!ok) luaL_error(L, "pg.connect: unknown option '%s'", luaL_tolstring(L, -1, NULL));
    }
    if (lua_getfield(L, t, "size") != LUA_TNIL) {
        lua_Integer n;
        int isint;
        n = lua_tointegerx(L, -1, &isint);
        if (!isint || n < 1 || n > WEIR_PG_MAX_POOL_SIZE)
            luaL_error(L, "pg.connect: size must be an integer between 1 and %d",
                       WEIR_PG_MAX_POOL_SIZE);
        o->size = (int)n;
    }
    lua_pop(L, 1);
    o->statement_timeout = weir_pg_l_opt_seconds(L, t, "statement_timeout", 0);
    o->connect_timeout = weir_pg_l_opt_seconds(L, t, "connect_timeout", 0);
    /* Lua: 0 means "do not wait"; C: 0 means the default, < 0 no wait */
    o->wait_timeout = weir_pg_l_opt_seconds(L, t, "wait_timeout", -2);
    if (o->wait_timeout == -2) o->wait_timeout = 0;
    else if (o->wait_timeout == 0) o->wait_timeout = -1;
}

static int weir_pg_l_connect(lua_State *L) {
    const char *dsn = luaL_checkstring(L, 1);
    weir_pg_pool_opts o;
    weir_pg_pool *p, **ud;
    char err[300];
    weir_pg_l_opts(L, 2, &o);
    p = weir_pg_pool_get(weir_state_of(L)->eng, dsn, &o, err, sizeof err);
    if (!p) return luaL_error(L, "pg.connect: %s", err);
    ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = p;
    luaL_setmetatable(L, WEIR_PG_POOL_MT);
    return 1;
}

static int weir_pg_l_query(lua_State *L) {
    weir_pg_pool *p = weir_pg_l_pool(L, 1);
    weir_pg_stmt st = {luaL_checkstring(L, 2), 0, NULL, NULL, NULL};
    weir_pg_op *op;
    weir_job_check(L, "db:query");
    weir_pg_l_params(L, 3, lua_gettop(L) - 2, &st, "db:query");
    op = weir_pg_op_new(L, WEIR_PG_PUSH_ROWS, "db:query");
    op->req = weir_pg_exec(p, &st, weir_pg_op_answered, op);
    if (!op->req) {
        free(op);
        return luaL_error(L, "db:query: the engine is closing or out of memory");
    }
    return weir_op_yield(L, &op->base);
}

static int weir_pg_l_acquire(lua_State *L) {
    weir_pg_pool *p = weir_pg_l_pool(L, 1);
    int dedicated = lua_toboolean(L, 2);
    const char *what = dedicated ? "db:listen" : "db:tx";
    weir_pg_op *op;
    weir_job_check(L, what);
    op = weir_pg_op_new(L, WEIR_PG_PUSH_SESSION, what);
    op->req = weir_pg_acquire(p, dedicated, weir_pg_op_acquired, op);
    if (!op->req) {
        free(op);
        return luaL_error(L, "%s: the engine is closing or out of memory", what);
    }
    return weir_op_yield(L, &op->base);
}

static int weir_pg_l_stats(lua_State *L) {
    weir_pg_pool_stats st;
    weir_pg_pool_stats_get(weir_pg_l_pool(L, 1), &st);
    lua_createtable(L, 0, 9);
    lua_pushinteger(L, st.size); lua_setfield(L, -2, "size");
    lua_pushinteger(L, st.open); lua_setfield(L, -2, "open");
    lua_pushinteger(L, st.idle); lua_setfield(L, -2, "idle");
    lua_pushinteger(L, st.busy); lua_setfield(L, -2, "busy");
    lua_pushinteger(L, st.connecting); lua_setfield(L, -2, "connecting");
    lua_pushinteger(L, st.waiting); lua_setfield(L, -2, "waiting");
    lua_pushinteger(L, (lua_Integer)st.connects); lua_setfield(L, -2, "connects");
    lua_pushinteger(L, (lua_Integer)st.connect_failures); lua_setfield(L, -2, "connect_failures");
    lua_pushinteger(L, (lua_Integer)st.discarded); lua_setfield(L, -2, "discarded");
    return 1;
}

static int weir_pg_l_pool_tostring(lua_State *L) {
    lua_pushfstring(L, "pg pool %s", weir_pg_l_pool(L, 1)->name);
    return 1;
}

static int weir_pg_l_bytea(lua_State *L) {
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_newuserdatauv(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, WEIR_PG_BYTEA_MT);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Lua: transactions (sessions)                                       */
/* ------------------------------------------------------------------ */

static weir_pg_session *weir_pg_l_session(lua_State *L, int idx, const char *what) {
    weir_pg_session **ud = luaL_checkudata(L, idx, WEIR_PG_SESSION_MT);
    if (!*ud) luaL_error(L, "%s: this transaction has ended", what);
    return *ud;
}

static int weir_pg_l_release(lua_State *L) {
    weir_pg_session **ud = luaL_checkudata(L, 1, WEIR_PG_SESSION_MT);
    if (*ud) {
        weir_pg_session *s = *ud;
        *ud = NULL;
        weir_pg_session_release(s);
    }
    return 0;
}

/* Starts stmt (or a COPY) on the session and yields an op of `mode`. */
static int weir_pg_l_session_run(lua_State *L, weir_pg_session *s, int kind, int mode,
                                 const weir_pg_stmt *st, char *copy_data, size_t copy_len,
                                 const char *what) {
    char err[200];
    weir_pg_op *op = calloc(1, sizeof *op);
    if (!op) {
        free(copy_data);
        return luaL_error(L, "%s: out of memory", what);
    }
    op->mode = mode;
    op->base.push = weir_pg_op_push;
    op->base.cancel = weir_pg_op_cancel;
    op->base.free = weir_pg_op_free;
    op->base.what = what;
    op->req = weir_pg_session_exec(s, kind, st, copy_data, copy_len, weir_pg_op_answered, op,
                                   err, sizeof err);
    if (!op->req) {
        free(op);
        return luaL_error(L, "%s: %s", what, err);
    }
    return weir_op_yield(L, &op->base);
}

static int weir_pg_l_tx_query(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "tx:query");
    weir_pg_stmt st = {luaL_checkstring(L, 2), 0, NULL, NULL, NULL};
    weir_job_check(L, "tx:query");
    weir_pg_l_params(L, 3, lua_gettop(L) - 2, &st, "tx:query");
    return weir_pg_l_session_run(L, s, WEIR_PG_REQ_EXEC, WEIR_PG_PUSH_ROWS, &st, NULL, 0,
                                 "tx:query");
}

static int weir_pg_l_commit(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "db:tx");
    weir_pg_stmt st = {"COMMIT", 0, NULL, NULL, NULL};
    weir_job_check(L, "db:tx");
    return weir_pg_l_session_run(L, s, WEIR_PG_REQ_EXEC, WEIR_PG_PUSH_COMMIT, &st, NULL, 0,
                                 "db:tx");
}

/* Pushes `name` quoted as an identifier; dots separate schema and
 * table ("public.users").  0, or -1 when the connection is gone. */
static int weir_pg_push_ident(lua_State *L, weir_pg_session *s, const char *name) {
    luaL_Buffer b;
    const char *part = name;
    if (!s->conn) return -1;
    luaL_buffinit(L, &b);
    for (;;) {
        size_t n = strcspn(part, ".");
        char *q = PQescapeIdentifier(s->conn->pg, part, n);
        if (!q) {
            char line[200];
            weir_pg_first_line(line, sizeof line, PQerrorMessage(s->conn->pg));
            luaL_pushresult(&b);
            lua_pop(L, 1);
            return luaL_error(L, "pg: bad identifier '%s': %s", name, line);
        }
        luaL_addstring(&b, q);
        PQfreemem(q);
        if (!part[n]) break;
        luaL_addchar(&b, '.');
        part += n + 1;
    }
    luaL_pushresult(&b);
    return 0;
}

static int weir_pg_l_lost(lua_State *L, weir_pg_session *s) {
    weir_pg_error e;
    memset(&e, 0, sizeof e);
    e.kind = s->lost_kind ? s->lost_kind : WEIR_PG_ERR_CONNECTION;
    e.retryable = e.kind == WEIR_PG_ERR_CONNECTION;
    e.message = s->lost_msg[0] ? s->lost_msg : "pg: the connection was lost";
    lua_pushnil(L);
    weir_pg_push_error(L, &e);
    return 2;
}

static int weir_pg_l_ident(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "pg");
    const char *name = luaL_checkstring(L, 2);
    if (weir_pg_push_ident(L, s, name) != 0) return weir_pg_l_lost(L, s);
    return 1;
}

/* "a", "b", ... quoted, from the array at idx. */
static int weir_pg_push_column_list(lua_State *L, weir_pg_session *s, int idx) {
    luaL_Buffer b;
    lua_Integer i, n = luaL_len(L, idx);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "pg: columns[%d] is not a string", (int)i);
        if (weir_pg_push_ident(L, s, lua_tostring(L, -1)) != 0) return -1;
        lua_remove(L, -2);
        if (i > 1) luaL_addstring(&b, ", ");
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return 0;
}

/* describe(tx, table, columns) -> array of type OIDs */
static int weir_pg_l_describe(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "copy_in");
    const char *tbl = luaL_checkstring(L, 2);
    weir_pg_stmt st = {NULL, 0, NULL, NULL, NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    weir_job_check(L, "copy_in");
    lua_settop(L, 3);
    if (weir_pg_push_column_list(L, s, 3) != 0) return weir_pg_l_lost(L, s);   /* 4 */
    if (weir_pg_push_ident(L, s, tbl) != 0) return weir_pg_l_lost(L, s);        /* 5 */
    st.sql = lua_pushfstring(L, "SELECT %s FROM %s LIMIT 0", lua_tostring(L, 4), lua_tostring(L, 5));
    return weir_pg_l_session_run(L, s, WEIR_PG_REQ_EXEC, WEIR_PG_PUSH_TYPES, &st, NULL, 0,
                                 "copy_in");
}

/* -- COPY text format -- */

typedef struct weir_pg_buf {
    char *data;
    size_t len, cap;
} weir_pg_buf;

#define WEIR_PG_BUF_MT "weir.pg.buffer"

static int weir_pg_buf_gc(lua_State *L) {
    weir_pg_buf *b = luaL_checkudata(L, 1, WEIR_PG_BUF_MT);
    free(b->data);
    b->data = NULL;
    return 0;
}

static void weir_pg_buf_add(lua_State *L, weir_pg_buf *b, const char *s, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 65536;
        char *d;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) luaL_error(L, "copy_in: data too large");
            cap *= 2;
        }
        d = realloc(b->data, cap);
        if (!d) luaL_error(L, "copy_in: out of memory");
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* Text-format escaping: backslash, tab, newline and CR. */
static void weir_pg_buf_escaped(lua_State *L, weir_pg_buf *b, const char *s, size_t n) {
    size_t i, run = 0;
    for (i = 0; i < n; i++) {
        const char *esc = NULL;
        switch (s[i]) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: continue;
        }
        weir_pg_buf_add(L, b, s + run, i - run);
        weir_pg_buf_add(L, b, esc, 2);
        run = i + 1;
    }
    weir_pg_buf_add(L, b, s + run, n - run);
}

static void weir_pg_buf_hex(lua_State *L, weir_pg_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    char chunk[512];
    size_t i, k = 0;
    weir_pg_buf_add(L, b, "\\\\x", 3);     /* bytea hex input, escaped for COPY */
    for (i = 0; i < n; i++) {
        chunk[k++] = hex[(unsigned char)s[i] >> 4];
        chunk[k++] = hex[(unsigned char)s[i] & 15];
        if (k == sizeof chunk) {
            weir_pg_buf_add(L, b, chunk, k);
            k = 0;
        }
    }
    weir_pg_buf_add(L, b, chunk, k);
}

/* The value at the top of the stack, as one COPY field (popped). */
static void weir_pg_copy_value(lua_State *L, weir_pg_buf *b, Oid type, lua_Integer row,
                               const char *col) {
    char num[64];
    size_t len;
    const char *s;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        weir_pg_buf_add(L, b, "\\N", 2);
        break;
    case LUA_TLIGHTUSERDATA:
        if (!weir_json_is_null(L, -1))
            luaL_error(L, "copy_in: row %d, column %s: cannot send a light userdata", (int)row, col);
        weir_pg_buf_add(L, b, "\\N", 2);
        break;
    case LUA_TBOOLEAN:
        weir_pg_buf_add(L, b, lua_toboolean(L, -1) ? "t" : "f", 1);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -1));
            s = num;
        } else {
            s = weir_pg_fmt_float(lua_tonumber(L, -1), num, sizeof num);
        }
        weir_pg_buf_add(L, b, s, strlen(s));
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, -1, &len);
        if (type == WEIR_PG_BYTEAOID) {
            weir_pg_buf_hex(L, b, s, len);
        } else {
            if (memchr(s, 0, len))
                luaL_error(L, "copy_in: row %d, column %s: text cannot contain a zero byte",
                           (int)row, col);
            weir_pg_buf_escaped(L, b, s, len);
        }
        break;
    case LUA_TUSERDATA:
        if (!luaL_testudata(L, -1, WEIR_PG_BYTEA_MT))
            luaL_error(L, "copy_in: row %d, column %s: cannot send a userdata", (int)row, col);
        s = weir_pg_bytea_bytes(L, -1, &len);
        weir_pg_buf_hex(L, b, s, len);
        lua_pop(L, 1);
        break;
    case LUA_TTABLE:
        weir_json_encode(L, -1, 0);
        s = lua_tolstring(L, -1, &len);
        weir_pg_buf_escaped(L, b, s, len);
        lua_pop(L, 1);
        break;
    default:
        luaL_error(L, "copy_in: row %d, column %s: cannot send a %s", (int)row, col,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* copy(tx, table, columns, rows, first, last, types) -> count
 * Rows are arrays in `columns` order or records keyed by column name. */
static int weir_pg_l_copy(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "copy_in");
    const char *tbl = luaL_checkstring(L, 2);
    lua_Integer first, last, r, ncols, j;
    weir_pg_stmt st = {NULL, 0, NULL, NULL, NULL};
    weir_pg_buf *b;
    char *data;
    size_t len;
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    first = luaL_checkinteger(L, 5);
    last = luaL_checkinteger(L, 6);
    luaL_checktype(L, 7, LUA_TTABLE);
    weir_job_check(L, "copy_in");
    lua_settop(L, 7);
    ncols = luaL_len(L, 3);
    if (weir_pg_push_column_list(L, s, 3) != 0) return weir_pg_l_lost(L, s);   /* 8 */
    if (weir_pg_push_ident(L, s, tbl) != 0) return weir_pg_l_lost(L, s);        /* 9 */
    st.sql = lua_pushfstring(L, "COPY %s (%s) FROM STDIN", lua_tostring(L, 9),
                             lua_tostring(L, 8));                               /* 10 */
    b = lua_newuserdatauv(L, sizeof *b, 0);                                     /* 11 */
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, WEIR_PG_BUF_MT);
    for (r = first; r <= last; r++) {
        int positional;
        if (lua_rawgeti(L, 4, r) != LUA_TTABLE)
            return luaL_error(L, "copy_in: row %d is a %s, not a table", (int)r, luaL_typename(L, -1));
        lua_rawgeti(L, 3, 1);
        positional = lua_rawlen(L, -2) > 0 && lua_rawget(L, -2) == LUA_TNIL;
        lua_pop(L, 1);
        for (j = 1; j <= ncols; j++) {
            const char *col;
            Oid type;
            lua_rawgeti(L, 3, j);
            col = lua_tostring(L, -1);
            lua_rawgeti(L, 7, j);
            type = (Oid)lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (positional) lua_rawgeti(L, -2, j);
            else lua_rawget(L, -2);         /* row[col], replacing the name */
            if (positional) lua_remove(L, -2);
            weir_pg_copy_value(L, b, type, r, col ? col : "?");
            weir_pg_buf_add(L, b, j < ncols ? "\t" : "\n", 1);
        }
        lua_pop(L, 1);
    }
    data = b->data;
    len = b->len;
    b->data = NULL;                 /* the request owns it now */
    return weir_pg_l_session_run(L, s, WEIR_PG_REQ_COPY, WEIR_PG_PUSH_COUNT, &st, data, len,
                                 "copy_in");
}

/* -- notifications -- */

/* A next() call.  It stays registered on its session (on_note) from
 * creation until the op is freed, even after it was woken, so that a
 * session released in between (listener:close() from another task)
 * detaches it instead of leaving it a dangling pointer. */
typedef struct weir_pg_note_op {
    weir_op base;
    weir_pg_session *s;         /* NULL once the session was released */
    uv_timer_t timer;
    double timeout;
    int waiting;
    int timed_out;
    int closed;
} weir_pg_note_op;

static void weir_pg_note_op_wakeup(weir_pg_note_op *op) {
    if (!op->waiting) return;
    op->waiting = 0;
    uv_timer_stop(&op->timer);
    weir_op_complete(&op->base);
}

static void weir_pg_note_wake(void *ud, int closing) {
    weir_pg_note_op *op = ud;
    if (closing) {              /* the session goes away now */
        op->s = NULL;
        op->closed = 1;
    }
    weir_pg_note_op_wakeup(op);
}

static void weir_pg_note_timeout(uv_timer_t *t) {
    weir_pg_note_op *op = t->data;
    op->timed_out = 1;
    weir_pg_note_op_wakeup(op);
}

static int weir_pg_push_note(lua_State *L, weir_pg_session *s) {
    weir_pg_note *n = s->notes;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, n->channel);
    lua_setfield(L, -2, "channel");
    lua_pushstring(L, n->payload);
    lua_setfield(L, -2, "payload");
    lua_pushinteger(L, n->pid);
    lua_setfield(L, -2, "pid");
    s->notes = n->next;
    if (!s->notes) s->notes_tail = NULL;
    s->nnotes--;
    free(n->channel);
    free(n->payload);
    free(n);
    return 1;
}

static int weir_pg_note_op_push(lua_State *L, weir_op *base) {
    weir_pg_note_op *op = (weir_pg_note_op *)base;
    if (op->closed || !op->s) {
        lua_pushnil(L);
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "closed");
        lua_setfield(L, -2, "kind");
        lua_pushliteral(L, "listener:next: the listener was closed while waiting");
        lua_setfield(L, -2, "message");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "retryable");
        return 2;
    }
    if (op->s->notes) return weir_pg_push_note(L, op->s);
    if (!op->s->conn) return weir_pg_l_lost(L, op->s);
    lua_pushnil(L);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "timeout");
    lua_setfield(L, -2, "kind");
    lua_pushfstring(L, "listener:next: no notification within %f s", op->timeout);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retryable");
    return 2;
}

static void weir_pg_note_op_closed(uv_handle_t *h) { free(h->data); }

static void weir_pg_note_op_release(weir_op *base) {
    weir_pg_note_op *op = (weir_pg_note_op *)base;
    weir_pg_session *s = op->s;
    if (s && s->on_note_ud == op) {
        s->on_note = NULL;
        s->on_note_ud = NULL;
        if (s->conn) weir_pg_conn_update_io(s->conn);
    }
    op->s = NULL;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, weir_pg_note_op_closed);
}

/* wait_notify(tx [, timeout]) -> {channel, payload, pid} | nil, err */
static int weir_pg_l_wait_notify(lua_State *L) {
    weir_pg_session *s = weir_pg_l_session(L, 1, "listener:next");
    double timeout = luaL_optnumber(L, 2, -1);
    weir_job *job;
    weir_pg_note_op *op;
    if (!lua_isnoneornil(L, 2) && !(timeout >= 0 && timeout <= WEIR_PG_MAX_TIMEOUT))
        return luaL_error(L, "listener:next: timeout must be between 0 and %f seconds",
                          WEIR_PG_MAX_TIMEOUT);
    if (s->notes) return weir_pg_push_note(L, s);
    if (!s->conn) return weir_pg_l_lost(L, s);
    job = weir_job_check(L, "listener:next");
    if (s->on_note) return luaL_error(L, "listener:next: another task is already waiting on it");
    /* (on_note stays set until that task has its answer) */
    op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "listener:next: out of memory");
    op->base.push = weir_pg_note_op_push;
    op->base.cancel = weir_pg_note_op_release;
    op->base.free = weir_pg_note_op_release;
    op->base.what = "listener:next";
    op->s = s;
    op->waiting = 1;
    op->timeout = timeout;
    uv_timer_init(job->st->eng->loop, &op->timer);
    op->timer.data = op;
    if (timeout >= 0) uv_timer_start(&op->timer, weir_pg_note_timeout, weir_pg_ms(timeout), 0);
    s->on_note = weir_pg_note_wake;
    s->on_note_ud = op;
    weir_pg_conn_update_io(s->conn);
    return weir_op_yield(L, &op->base);
}

/* ------------------------------------------------------------------ */
/* Lua: the parts written in Lua                                      */
/* ------------------------------------------------------------------ */

/* Transactions, COPY and upsert orchestration and listeners read best in
 * Lua; they only call the C primitives of P.  pcall is yieldable in 5.4,
 * so the function given to db:tx may wait on engine calls.  The session
 * is a to-be-closed variable: when the job is killed (timeout, cancel)
 * its __close hands the connection back -- rolled back, or discarded if
 * a statement was still running. */
static const char weir_pg_lua_src[] =
    "local P = ...\n"
    "local type, error, pcall, ipairs, pairs, setmetatable = type, error, pcall, ipairs, pairs, setmetatable\n"
    "local pack, unpack, concat, sort = table.pack, table.unpack, table.concat, table.sort\n"
    "local format, min, tointeger = string.format, math.min, math.tointeger\n"
    "local M = {}\n"
    "\n"
    "local function check_name(what, v, arg)\n"
    "  if type(v) ~= 'string' or v == '' then\n"
    "    error(format('%s: %s must be a non-empty string', what, arg), 3)\n"
    "  end\n"
    "end\n"
    "local function check_names(what, t, arg)\n"
    "  if type(t) == 'string' then t = {t} end\n"
    "  if type(t) ~= 'table' or #t == 0 then\n"
    "    error(format('%s: %s must be a non-empty array of column names', what, arg), 3)\n"
    "  end\n"
    "  for i = 1, #t do\n"
    "    if type(t[i]) ~= 'string' or t[i] == '' then\n"
    "      error(format('%s: %s[%d] must be a non-empty string', what, arg, i), 3)\n"
    "    end\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "\n"
    "function M.tx(db, fn)\n"
    "  if type(fn) ~= 'function' then\n"
    "    error('db:tx: expected a function, got ' .. type(fn), 2)\n"
    "  end\n"
    "  local s, err = P.acquire(db, false)\n"
    "  if not s then error(err, 0) end\n"
    "  local guard <close> = s\n"
    "  local ok\n"
    "  ok, err = P.query(s, 'BEGIN')\n"
    "  if not ok then error(err, 0) end\n"
    "  local r = pack(pcall(fn, s))\n"
    "  if not r[1] then\n"
    "    P.query(s, 'ROLLBACK')   -- if it fails, the release discards the connection\n"
    "    error(r[2], 0)\n"
    "  end\n"
    "  ok, err = P.commit(s)\n"
    "  if not ok then error(err, 0) end\n"
    "  return unpack(r, 2, r.n)\n"
    "end\n"
    "\n"
    "-- f(tx, ...) -> value | nil, err, run in a transaction of its own\n"
    "local function in_tx(db, f, ...)\n"
    "  local args = pack(...)\n"
    "  local ok, v = pcall(M.tx, db, function(s)\n"
    "    local r, err = f(s, unpack(args, 1, args.n))\n"
    "    if r == nil then error(err, 0) end\n"
    "    return r\n"
    "  end)\n"
    "  if ok then return v end\n"
    "  if type(v) == 'table' and v.kind then return nil, v end\n"
    "  error(v, 0)\n"
    "end\n"
    "\n"
    "local function copy_args(what, tbl, columns, rows)\n"
    "  check_name(what, tbl, 'table')\n"
    "  columns = check_names(what, columns, 'columns')\n"
    "  if type(rows) ~= 'table' then error(what .. ': rows must be an array of rows', 3) end\n"
    "  return columns\n"
    "end\n"
    "\n"
    "local function copy_in(s, tbl, columns, rows)\n"
    "  local types, err = P.describe(s, tbl, columns)\n"
    "  if not types then return nil, err end\n"
    "  return P.copy(s, tbl, columns, rows, 1, #rows, types)\n"
    "end\n"
    "\n"
    "function M.tx_copy_in(s, tbl, columns, rows)\n"
    "  columns = copy_args('tx:copy_in', tbl, columns, rows)\n"
    "  return copy_in(s, tbl, columns, rows)\n"
    "end\n"
    "\n"
    "function M.copy_in(db, tbl, columns, rows)\n"
    "  columns = copy_args('db:copy_in', tbl, columns, rows)\n"
    "  return in_tx(db, copy_in, tbl, columns, rows)\n"
    "end\n"
    "\n"
    "local function upsert_args(what, tbl, rows, opts)\n"
    "  check_name(what, tbl, 'table')\n"
    "  if type(rows) ~= 'table' and type(rows) ~= 'function' then\n"
    "    error(what .. ': rows must be an array of rows or an iterator function', 3)\n"
    "  end\n"
    "  if type(opts) ~= 'table' then error(what .. ': opts must be a table with key = {...}', 3) end\n"
    "  local key = check_names(what, opts.key, 'opts.key')\n"
    "  local columns = opts.columns\n"
    "  if columns == nil then\n"
    "    if type(rows) ~= 'table' or type(rows[1]) ~= 'table' then\n"
    "      error(what .. ': opts.columns is required unless rows is a non-empty array of records', 3)\n"
    "    end\n"
    "    columns = {}\n"
    "    for k in pairs(rows[1]) do\n"
    "      if type(k) == 'string' then columns[#columns + 1] = k end\n"
    "    end\n"
    "    sort(columns)\n"
    "  end\n"
    "  columns = check_names(what, columns, 'opts.columns')\n"
    "  local present = {}\n"
    "  for _, c in ipairs(columns) do present[c] = true end\n"
    "  for _, k in ipairs(key) do\n"
    "    if not present[k] then error(format('%s: key column %s is not in columns', what, k), 3) end\n"
    "  end\n"
    "  local batch = opts.batch == nil and 5000 or tointeger(opts.batch)\n"
    "  if not batch or batch < 1 or batch > 1000000 then\n"
    "    error(what .. ': opts.batch must be an integer between 1 and 1000000', 3)\n"
    "  end\n"
    "  return key, columns, batch\n"
    "end\n"
    "\n"
    "local upsert_seq = 0\n"
    "\n"
    "-- COPY each batch into a temporary table, then one INSERT .. SELECT ..\n"
    "-- ON CONFLICT per batch; xmax = 0 tells inserted rows from updated ones.\n"
    "-- DISTINCT ON keeps the last row of a key repeated within a batch.\n"
    "local function upsert(s, tbl, rows, key, columns, batch)\n"
    "  local target, err = P.ident(s, tbl)\n"
    "  if not target then return nil, err end\n"
    "  local q, kq, iskey, sets = {}, {}, {}, {}\n"
    "  for i, k in ipairs(key) do kq[i] = P.ident(s, k); iskey[k] = true end\n"
    "  for i, c in ipairs(columns) do\n"
    "    q[i] = P.ident(s, c)\n"
    "    if not iskey[c] then sets[#sets + 1] = q[i] .. ' = EXCLUDED.' .. q[i] end\n"
    "  end\n"
    "  upsert_seq = upsert_seq + 1\n"
    "  local tmp = 'weir_upsert_' .. upsert_seq\n"
    "  local cols, keys = concat(q, ', '), concat(kq, ', ')\n"
    "  local ok\n"
    "  ok, err = P.query(s, format('CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA',\n"
    "                              tmp, cols, target))\n"
    "  if not ok then return nil, err end\n"
    "  local types\n"
    "  types, err = P.describe(s, tmp, columns)\n"
    "  if not types then return nil, err end\n"
    "  local action = #sets > 0 and ('DO UPDATE SET ' .. concat(sets, ', ')) or 'DO NOTHING'\n"
    "  local merge = format('WITH up AS (INSERT INTO %s (%s) SELECT DISTINCT ON (%s) %s FROM %s '\n"
    "    .. 'ORDER BY %s, ctid DESC ON CONFLICT (%s) %s RETURNING (xmax = 0) AS ins) '\n"
    "    .. 'SELECT count(*) FILTER (WHERE ins) AS inserted, count(*) FILTER (WHERE NOT ins) AS updated FROM up',\n"
    "    target, cols, keys, cols, tmp, keys, keys, action)\n"
    "  local inserted, updated = 0, 0\n"
    "  local function flush(list, first, last)\n"
    "    local r, e = P.query(s, 'TRUNCATE ' .. tmp)\n"
    "    if r then r, e = P.copy(s, tmp, columns, list, first, last, types) end\n"
    "    if r then r, e = P.query(s, merge) end\n"
    "    if not r then return nil, e end\n"
    "    inserted, updated = inserted + r[1].inserted, updated + r[1].updated\n"
    "    return true\n"
    "  end\n"
    "  if type(rows) == 'table' then\n"
    "    local n = #rows\n"
    "    for first = 1, n, batch do\n"
    "      ok, err = flush(rows, first, min(first + batch - 1, n))\n"
    "      if not ok then return nil, err end\n"
    "    end\n"
    "  else\n"
    "    local buf, n = {}, 0\n"
    "    while true do\n"
    "      local row = rows()\n"
    "      if row ~= nil then n = n + 1; buf[n] = row end\n"
    "      if n > 0 and (row == nil or n == batch) then\n"
    "        ok, err = flush(buf, 1, n)\n"
    "        if not ok then return nil, err end\n"
    "        n = 0\n"
    "      end\n"
    "      if row == nil then break end\n"
    "    end\n"
    "  end\n"
    "  ok, err = P.query(s, 'DROP TABLE ' .. tmp)\n"
    "  if not ok then return nil, err end\n"
    "  return {inserted = inserted, updated = updated}\n"
    "end\n"
    "\n"
    "function M.tx_upsert(s, tbl, rows, opts)\n"
    "  local key, columns, batch = upsert_args('tx:upsert', tbl, rows, opts)\n"
    "  return upsert(s, tbl, rows, key, columns, batch)\n"
    "end\n"
    "\n"
    "function M.upsert(db, tbl, rows, opts)\n"
    "  local key, columns, batch = upsert_args('db:upsert', tbl, rows, opts)\n"
    "  return in_tx(db, upsert, tbl, rows, key, columns, batch)\n"
    "end\n"
    "\n"
    "-- Listeners: a dedicated connection each.  If it is lost, next() reports\n"
    "-- the error once and the following call connects and LISTENs again\n"
    "-- (notifications sent in between are lost).\n"
    "-- methods has no path back to itself: a script cannot reach it through\n"
    "-- l.__index and rewrite next() for the other jobs of the state\n"
    "local methods = {}\n"
    "local Listener = {__index = methods, __metatable = false}\n"
    "local listeners = setmetatable({}, {__mode = 'k'})\n"
    "\n"
    "local function listen_on(db, channel)\n"
    "  local s, err = P.acquire(db, true)\n"
    "  if not s then return nil, err end\n"
    "  local q\n"
    "  q, err = P.ident(s, channel)\n"
    "  if q then q, err = P.query(s, 'LISTEN ' .. q) end\n"
    "  if not q then P.release(s); return nil, err end\n"
    "  return s\n"
    "end\n"
    "\n"
    "function M.listen(db, channel)\n"
    "  check_name('db:listen', channel, 'channel')\n"
    "  local s, err = listen_on(db, channel)\n"
    "  if not s then return nil, err end\n"
    "  local l = setmetatable({}, Listener)\n"
    "  listeners[l] = {db = db, channel = channel, s = s}\n"
    "  return l\n"
    "end\n"
    "\n"
    "local function state(l, what)\n"
    "  local st = listeners[l]\n"
    "  if not st then error(what .. ': not a listener', 3) end\n"
    "  return st\n"
    "end\n"
    "\n"
    "function methods.next(l, timeout)\n"
    "  local st = state(l, 'listener:next')\n"
    "  if st.closed then error('listener:next: the listener is closed', 2) end\n"
    "  if timeout ~= nil and type(timeout) ~= 'number' then\n"
    "    error('listener:next: timeout must be a number of seconds', 2)\n"
    "  end\n"
    "  if not st.s then\n"
    "    local s, err = listen_on(st.db, st.channel)\n"
    "    if not s then return nil, err end\n"
    "    if st.closed then P.release(s); error('listener:next: the listener is closed', 2) end\n"
    "    st.s = s\n"
    "  end\n"
    "  local s = st.s\n"
    "  local note, err = P.wait_notify(s, timeout)\n"
    "  if note == nil and err.kind == 'connection' and st.s == s then\n"
    "    P.release(s)\n"
    "    st.s = nil\n"
    "  end\n"
    "  return note, err\n"
    "end\n"
    "\n"
    "function methods.close(l)\n"
    "  local st = state(l, 'listener:close')\n"
    "  st.closed = true\n"
    "  if st.s then P.release(st.s); st.s = nil end\n"
    "end\n"
    "Listener.__close = methods.close\n"
    "\n"
    "function methods.channel(l)\n"
    "  return state(l, 'listener:channel').channel\n"
    "end\n"
    "\n"
    "return M\n";

static int weir_pg_l_tostring_tx(lua_State *L) {
    weir_pg_session **ud = luaL_checkudata(L, 1, WEIR_PG_SESSION_MT);
    lua_pushstring(L, *ud ? "pg transaction" : "pg transaction (ended)");
    return 1;
}

/* Builds the metatables of this state; the Lua part gets P. */
static void weir_pg_l_metatables(lua_State *L) {
    static const luaL_Reg prims[] = {
        {"acquire", weir_pg_l_acquire}, {"query", weir_pg_l_tx_query},
        {"commit", weir_pg_l_commit},   {"describe", weir_pg_l_describe},
        {"copy", weir_pg_l_copy},       {"ident", weir_pg_l_ident},
        {"wait_notify", weir_pg_l_wait_notify}, {"release", weir_pg_l_release},
        {NULL, NULL}};
    weir_state *st = weir_state_of(L);
    int m;
    luaL_newlib(L, prims);
    if (weir_state_load_buffer(st, L, weir_pg_lua_src, sizeof weir_pg_lua_src - 1, "=weir.pg") !=
        LUA_OK)
        lua_error(L);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    m = lua_gettop(L);

    luaL_newmetatable(L, WEIR_PG_POOL_MT);
    lua_createtable(L, 0, 6);
    lua_pushcfunction(L, weir_pg_l_query);
    lua_setfield(L, -2, "query");
    lua_pushcfunction(L, weir_pg_l_stats);
    lua_setfield(L, -2, "stats");
    lua_getfield(L, m, "tx");
    lua_setfield(L, -2, "tx");
    lua_getfield(L, m, "copy_in");
    lua_setfield(L, -2, "copy_in");
    lua_getfield(L, m, "upsert");
    lua_setfield(L, -2, "upsert");
    lua_getfield(L, m, "listen");
    lua_setfield(L, -2, "listen");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, weir_pg_l_pool_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newmetatable(L, WEIR_PG_SESSION_MT);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, weir_pg_l_tx_query);
    lua_setfield(L, -2, "query");
    lua_getfield(L, m, "tx_copy_in");
    lua_setfield(L, -2, "copy_in");
    lua_getfield(L, m, "tx_upsert");
    lua_setfield(L, -2, "upsert");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, weir_pg_l_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, weir_pg_l_release);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, weir_pg_l_tostring_tx);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newmetatable(L, WEIR_PG_BYTEA_MT);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newmetatable(L, WEIR_PG_BUF_MT);
    lua_pushcfunction(L, weir_pg_buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pop(L, 1);                  /* M */
}

int weir_open_pg(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"connect", weir_pg_l_connect}, {"bytea", weir_pg_l_bytea}, {NULL, NULL}};
    if (!weir_pg_engine_of(weir_state_of(L)->eng))
        return luaL_error(L, "weir.pg: not initialised on this engine");
    luaL_getmetatable(L, WEIR_PG_POOL_MT);
    if (lua_isnil(L, -1)) weir_pg_l_metatables(L);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    weir_json_push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
