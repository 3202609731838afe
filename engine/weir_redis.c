/*
 * weir_redis.c -- "weir.redis": Redis on the loop with hiredis's async API.
 *
 * Layers, bottom up:
 *   io       libuv glue for one redisAsyncContext: a uv_poll_t driven by
 *            hiredis's addRead/delRead/addWrite/delWrite/cleanup hooks;
 *   conn     one connection (shared, dedicated or subscriber): connect,
 *            AUTH/SELECT, connect timeout, detach/teardown;
 *   server   one URL: its connections, the dedicated pool, backoff, stats;
 *   req      one C API request (a batch of commands) with its tombstone;
 *   Lua      client / pipeline / subscriber objects; every call is an op.
 *
 * Teardown rules (hiredis 0.14.1 async.c):
 *   - when a context dies, hiredis runs every pending reply callback with a
 *     NULL reply, then our cleanup hook, then onDisconnect (only if it was
 *     connected), then frees it.  So a request's memory must outlive its
 *     callbacks: a cancelled request stays allocated (fn = NULL, its
 *     "tombstone") until hiredis is done with it;
 *   - the cleanup hook clears io->ac before uv_close: the poll callback may
 *     still fire for a closing handle and must not touch a freed context;
 *     the poll handle and the connect timer are closed separately;
 *   - we call redisAsyncFree only on a context hiredis is not already
 *     tearing down (REDIS_DISCONNECTING / REDIS_FREEING), never from its
 *     connect/disconnect callbacks; inside a reply callback hiredis defers
 *     the free until the callback returns.
 *   - ac->data points to the conn while they are attached; detaching clears
 *     both sides, so late callbacks of a dying context see data == NULL.
 *
 * Loop liveness: a poll handle is referenced only while its connection
 * has replies in flight (or a subscriber waits), so an idle connection
 * never keeps `weir run` alive after the script ended.
 */
#include "weir_redis.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <lauxlib.h>
#include <openssl/evp.h>

#include "weir_job.h"
#include "weir_state.h"

#define WEIR_REDIS_CLIENT "weir.redis.client"
#define WEIR_REDIS_PIPELINE "weir.redis.pipeline"
#define WEIR_REDIS_SUBSCRIBER "weir.redis.subscriber"

#define WEIR_REDIS_CONNECT_TIMEOUT_MS 5000
#define WEIR_REDIS_COMMAND_TIMEOUT 30.0     /* seconds, Lua clients' default */
#define WEIR_REDIS_BACKOFF_BASE_MS 100
#define WEIR_REDIS_BACKOFF_CAP_MS 2000
#define WEIR_REDIS_MAX_IDLE 8               /* pooled dedicated connections */
#define WEIR_REDIS_MAX_BUSY 256             /* blocking commands in flight */
#define WEIR_REDIS_MAX_QUEUED 10000         /* undelivered pub/sub messages */
#define WEIR_REDIS_MAX_TIMEOUT 31536000.0   /* a year, in seconds */
#define WEIR_REDIS_STACK_ARGS 32

typedef struct weir_redis_engine weir_redis_engine;
typedef struct weir_redis_conn weir_redis_conn;
typedef struct weir_redis_sub weir_redis_sub;
typedef struct weir_redis_sub_op weir_redis_sub_op;

enum { WEIR_REDIS_SHARED, WEIR_REDIS_DEDICATED, WEIR_REDIS_SUBSCRIBER_CONN };
enum { WEIR_REDIS_DOWN, WEIR_REDIS_CONNECTING, WEIR_REDIS_READY };

/* How a detached connection counts for backoff and stats. */
enum {
    WEIR_REDIS_DETACH_DROP,     /* went away: a drop if it was up, else a failure */
    WEIR_REDIS_DETACH_FAILED,   /* a failed attempt whatever the state (AUTH, timeout) */
    WEIR_REDIS_DETACH_QUIET     /* our decision (cancel, pool, shutdown) */
};

enum { WEIR_REDIS_SEND_TX = 1 };   /* internal: MULTI/EXEC allowed */

struct weir_redis_engine {
    weir_engine *eng;
    weir_redis_server *servers;
    weir_redis_sub *subs;
    int closing;
    weir_redis_engine *next;
};

/* The engines of this process: weir_engine has no slot for us. */
static weir_redis_engine *weir_redis_engines;
static uint64_t weir_redis_rng;

typedef struct weir_redis_io {
    redisAsyncContext *ac;      /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
    int closing;
    int permanent;              /* retrying will not help (AUTH refused) */
    char why[224];              /* why the context died, for its callbacks */
} weir_redis_io;

struct weir_redis_conn {
    weir_redis_server *srv;
    int kind;
    int state;
    redisAsyncContext *ac;      /* NULL while down */
    int inflight;               /* replies expected on ac */
    int hold;                   /* a subscriber is waiting: keep the loop alive */
    int busy;                   /* dedicated: lent to a request */
    int discarding;
    uv_timer_t timer;           /* connect timeout */
    weir_redis_req *req;        /* dedicated: the request using it */
    weir_redis_sub *sub;        /* subscriber connection: its owner */
    weir_redis_conn *prev, *next;   /* srv->conns */
    weir_redis_conn *next_idle;     /* srv->idle */
};

struct weir_redis_server {
    weir_redis_engine *owner;
    char *url;                  /* lookup key, as given */
    char *name;                 /* "host:port/db", no password */
    char *host;
    int port;
    char *unix_path;
    char *user, *password;
    long db;
    uint64_t connect_timeout_ms;
    int attempts;               /* failed connects in a row */
    uint64_t retry_at;          /* loop ms before which we fail fast */
    char last_error[224];
    int last_permanent;         /* last_error will not go away by retrying */
    weir_redis_conn *shared;
    weir_redis_conn *conns;
    weir_redis_conn *idle;
    int nidle, nbusy;
    weir_redis_stats stats;
    weir_redis_server *next;
};

struct weir_redis_req {
    weir_redis_server *srv;
    weir_redis_conn *conn;      /* dedicated connection, or NULL */
    weir_redis_reply_fn fn;     /* NULL: finished or cancelled (tombstone) */
    void *data;
    int ncmds;
    int delivered;              /* replies handed to fn */
    int pending;                /* hiredis callbacks still to come */
    int broken;                 /* part of the batch could not be queued */
    int timer_open;
    int timer_closing;
    uv_timer_t timer;
    /* EVALSHA -> EVAL fallback: the EVAL command, ready to send */
    int eval_argc;
    int eval_retried;
    const char **eval_argv;
    size_t *eval_lens;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                      */
/* ------------------------------------------------------------------ */

static uv_loop_t *weir_redis_loop(const weir_redis_server *s) {
    return s->owner->eng->loop;
}

static void weir_redis_set_error(weir_redis_error *err, const char *kind, int retryable,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void weir_redis_set_error(weir_redis_error *err, const char *kind, int retryable,
                                 const char *fmt, ...) {
    va_list ap;
    if (!err) return;
    err->kind = kind;
    err->retryable = retryable;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static uint64_t weir_redis_random(void) {
    if (!weir_redis_rng) weir_redis_rng = uv_hrtime() | 1;
    weir_redis_rng ^= weir_redis_rng << 13;
    weir_redis_rng ^= weir_redis_rng >> 7;
    weir_redis_rng ^= weir_redis_rng << 17;
    return weir_redis_rng;
}

static int weir_redis_cmd_is(const char *arg, size_t len, const char *name) {
    return len == strlen(name) && strncasecmp(arg, name, len) == 0;
}

static weir_redis_engine *weir_redis_engine_of(const weir_engine *e) {
    weir_redis_engine *re;
    for (re = weir_redis_engines; re; re = re->next)
        if (re->eng == e) return re;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* command classification                                             */
/* ------------------------------------------------------------------ */

int weir_redis_is_blocking(int argc, const char *const *argv, const size_t *lens) {
    static const char *const always[] = {"BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP",
                                         "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
                                         NULL};
    int i;
    if (argc < 1) return 0;
    for (i = 0; always[i]; i++)
        if (weir_redis_cmd_is(argv[0], lens[0], always[i])) return 1;
    if (weir_redis_cmd_is(argv[0], lens[0], "XREAD") ||
        weir_redis_cmd_is(argv[0], lens[0], "XREADGROUP")) {
        for (i = 1; i < argc; i++) {
            if (weir_redis_cmd_is(argv[i], lens[i], "STREAMS")) break;
            if (weir_redis_cmd_is(argv[i], lens[i], "BLOCK")) return 1;
        }
    }
    return 0;
}

/* Commands that change the state of a connection: on a connection shared
 * by every job they would leak into other jobs' commands.  Returns why
 * (a static string) or NULL when the command is fine. */
static const char *weir_redis_forbidden(int argc, const char *const *argv, const size_t *lens) {
    static const struct {
        const char *name;
        const char *why;
    } rules[] = {
        {"SUBSCRIBE", "use client:subscribe(...)"},
        {"PSUBSCRIBE", "use client:psubscribe(...)"},
        {"SSUBSCRIBE", "sharded pub/sub is not supported"},
        {"UNSUBSCRIBE", "close the subscriber instead"},
        {"PUNSUBSCRIBE", "close the subscriber instead"},
        {"SUNSUBSCRIBE", "sharded pub/sub is not supported"},
        {"MONITOR", "MONITOR is not supported"},
        {"SELECT", "put the database number in the URL (redis://host:port/DB)"},
        {"AUTH", "put the credentials in the URL (redis://user:password@host:port)"},
        {"HELLO", "RESP3 is not supported"},
        {"QUIT", "connections are managed by weir"},
        {"RESET", "connections are managed by weir"},
        {"MULTI", "use client:pipeline(fn, {transaction = true})"},
        {"EXEC", "use client:pipeline(fn, {transaction = true})"},
        {"DISCARD", "use client:pipeline(fn, {transaction = true})"},
        {"WATCH", "WATCH needs a connection of its own; use client:eval for check-and-set"},
        {"UNWATCH", "WATCH needs a connection of its own; use client:eval for check-and-set"},
        {NULL, NULL}};
    int i;
    if (argc < 1) return "a command needs a name";
    for (i = 0; rules[i].name; i++)
        if (weir_redis_cmd_is(argv[0], lens[0], rules[i].name)) return rules[i].why;
    if (argc >= 2 && weir_redis_cmd_is(argv[0], lens[0], "CLIENT") &&
        weir_redis_cmd_is(argv[1], lens[1], "REPLY"))
        return "CLIENT REPLY would desynchronise the shared connection";
    return NULL;
}

/* ------------------------------------------------------------------ */
/* io: libuv glue for one context                                     */
/* ------------------------------------------------------------------ */

static void weir_redis_conn_detach(weir_redis_conn *c, int how);
static void weir_redis_conn_discard(weir_redis_conn *c);
static void weir_redis_sub_dropped(weir_redis_sub *sub, const weir_redis_io *io);

static void weir_redis_io_closed(uv_handle_t *h) { free(h->data); }

/* Fills io->why from hiredis's error unless we already said why. */
static void weir_redis_io_reason(redisAsyncContext *ac) {
    weir_redis_io *io = ac->ev.data;
    weir_redis_conn *c = ac->data;
    if (!io || io->why[0]) return;
    snprintf(io->why, sizeof io->why, "redis %s: %s", c ? c->srv->name : "server",
             ac->c.err ? ac->c.errstr : "connection closed");
}

static void weir_redis_io_poll(uv_poll_t *h, int status, int events) {
    weir_redis_io *io = h->data;
    if (status < 0) {
        /* libuv stopped watching the socket: let hiredis find the error
         * by reading; if it does not, tear the context down ourselves. */
        if (io->ac) redisAsyncHandleRead(io->ac);
        if (io->ac) {
            redisAsyncContext *ac = io->ac;
            snprintf(io->why, sizeof io->why, "redis: socket error: %s", uv_strerror(status));
            if (ac->data) weir_redis_conn_detach(ac->data, WEIR_REDIS_DETACH_DROP);
            if (!(ac->c.flags & (REDIS_FREEING | REDIS_DISCONNECTING))) redisAsyncFree(ac);
        }
        return;
    }
    if (io->ac && (events & UV_READABLE)) redisAsyncHandleRead(io->ac);
    if (io->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(io->ac);
}

static void weir_redis_io_watch(weir_redis_io *io, int add, int remove) {
    if (io->closing) return;
    io->events = (io->events | add) & ~remove;
    if (io->events) uv_poll_start(&io->poll, io->events, weir_redis_io_poll);
    else uv_poll_stop(&io->poll);
}

static void weir_redis_io_add_read(void *p) { weir_redis_io_watch(p, UV_READABLE, 0); }
static void weir_redis_io_del_read(void *p) { weir_redis_io_watch(p, 0, UV_READABLE); }
static void weir_redis_io_add_write(void *p) { weir_redis_io_watch(p, UV_WRITABLE, 0); }
static void weir_redis_io_del_write(void *p) { weir_redis_io_watch(p, 0, UV_WRITABLE); }

static void weir_redis_io_cleanup(void *p) {
    weir_redis_io *io = p;
    if (io->closing) return;
    io->closing = 1;
    io->ac = NULL;      /* hiredis frees the context next: never touch it again */
    uv_poll_stop(&io->poll);
    uv_close((uv_handle_t *)&io->poll, weir_redis_io_closed);
}

static weir_redis_io *weir_redis_io_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    weir_redis_io *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    if (uv_poll_init(loop, &io->poll, ac->c.fd) != 0) {
        free(io);       /* not initialised: nothing to close */
        return NULL;
    }
    io->poll.data = io;
    io->ac = ac;
    ac->ev.data = io;
    ac->ev.addRead = weir_redis_io_add_read;
    ac->ev.delRead = weir_redis_io_del_read;
    ac->ev.addWrite = weir_redis_io_add_write;
    ac->ev.delWrite = weir_redis_io_del_write;
    ac->ev.cleanup = weir_redis_io_cleanup;
    return io;
}

/* ------------------------------------------------------------------ */
/* server: backoff                                                    */
/* ------------------------------------------------------------------ */

static void weir_redis_server_failed(weir_redis_server *s, const char *why, int permanent) {
    uint64_t cap, delay = WEIR_REDIS_BACKOFF_BASE_MS;
    int shift;
    s->attempts++;
    s->stats.connect_failures++;
    /* full jitter: uniform(base, min(cap, base * 2^attempts)) */
    shift = s->attempts > 10 ? 10 : s->attempts;
    cap = (uint64_t)WEIR_REDIS_BACKOFF_BASE_MS << shift;
    if (cap > WEIR_REDIS_BACKOFF_CAP_MS) cap = WEIR_REDIS_BACKOFF_CAP_MS;
    if (cap > delay) delay += weir_redis_random() % (cap - delay + 1);
    s->retry_at = uv_now(weir_redis_loop(s)) + delay;
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    s->last_permanent = permanent;
}

static void weir_redis_server_up(weir_redis_server *s) {
    s->attempts = 0;
    s->retry_at = 0;
    s->stats.connects++;
}

/* ------------------------------------------------------------------ */
/* conn                                                               */
/* ------------------------------------------------------------------ */

static void weir_redis_conn_update_ref(weir_redis_conn *c) {
    weir_redis_io *io = c->ac ? c->ac->ev.data : NULL;
    if (!io || io->closing) return;
    if (c->inflight > 0 || c->hold) uv_ref((uv_handle_t *)&io->poll);
    else uv_unref((uv_handle_t *)&io->poll);
}

/* Cuts the link between c and its context (both sides).  The context
 * itself is left to whoever is tearing it down. */
static void weir_redis_conn_detach(weir_redis_conn *c, int how) {
    redisAsyncContext *ac = c->ac;
    weir_redis_io *io;
    weir_redis_sub *sub;
    if (!ac) return;
    weir_redis_io_reason(ac);
    io = ac->ev.data;
    ac->data = NULL;
    c->ac = NULL;
    c->inflight = 0;
    uv_timer_stop(&c->timer);
    if (how == WEIR_REDIS_DETACH_FAILED ||
        (how == WEIR_REDIS_DETACH_DROP && c->state != WEIR_REDIS_READY))
        weir_redis_server_failed(c->srv, io ? io->why : "connection failed",
                                 io ? io->permanent : 0);
    else if (how == WEIR_REDIS_DETACH_DROP)
        c->srv->stats.drops++;
    c->state = WEIR_REDIS_DOWN;
    sub = c->sub;
    if (sub && how != WEIR_REDIS_DETACH_QUIET) weir_redis_sub_dropped(sub, io);
    /* a pooled connection that died is of no use any more */
    if (c->kind == WEIR_REDIS_DEDICATED && !c->busy && !c->discarding)
        weir_redis_conn_discard(c);
}

/* Tears down c's context on our own initiative. */
static void weir_redis_conn_close_ac(weir_redis_conn *c, const char *why, int how) {
    redisAsyncContext *ac = c->ac;
    weir_redis_io *io;
    if (!ac) return;
    io = ac->ev.data;
    if (io && !io->why[0]) snprintf(io->why, sizeof io->why, "redis %s: %s", c->srv->name, why);
    weir_redis_conn_detach(c, how);
    if (!(ac->c.flags & (REDIS_FREEING | REDIS_DISCONNECTING))) redisAsyncFree(ac);
}

/* Detaches c if hiredis is already tearing its context down (we are
 * inside that context's callbacks): it must not get new commands. */
static void weir_redis_conn_check(weir_redis_conn *c) {
    if (c->ac && (c->ac->c.flags & (REDIS_FREEING | REDIS_DISCONNECTING)))
        weir_redis_conn_detach(c, WEIR_REDIS_DETACH_DROP);
}

static void weir_redis_on_connect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    weir_redis_conn *c = ac->data;
    if (!c) return;
    if (status == REDIS_OK) {
        c->state = WEIR_REDIS_READY;
        uv_timer_stop(&c->timer);
        weir_redis_server_up(c->srv);
        return;
    }
    /* hiredis frees the context right after this callback */
    weir_redis_conn_detach(c, WEIR_REDIS_DETACH_FAILED);
}

static void weir_redis_on_disconnect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    (void)status;
    if (ac->data) weir_redis_conn_detach(ac->data, WEIR_REDIS_DETACH_DROP);
}

static void weir_redis_connect_timeout(uv_timer_t *t) {
    weir_redis_conn *c = t->data;
    char why[96];
    if (!c->ac || c->state != WEIR_REDIS_CONNECTING) return;
    snprintf(why, sizeof why, "connect timed out after %llu ms",
             (unsigned long long)c->srv->connect_timeout_ms);
    weir_redis_conn_close_ac(c, why, WEIR_REDIS_DETACH_FAILED);
}

static char weir_redis_auth_tag[] = "AUTH";
static char weir_redis_select_tag[] = "SELECT";

/* Reply to AUTH / SELECT sent first on every new connection. */
static void weir_redis_on_setup(redisAsyncContext *ac, void *r, void *privdata) {
    redisReply *reply = r;
    weir_redis_conn *c = ac->data;
    weir_redis_io *io = ac->ev.data;
    if (!c) return;
    c->inflight--;
    weir_redis_conn_update_ref(c);
    if (!reply || reply->type != REDIS_REPLY_ERROR) return;
    if (io) {
        snprintf(io->why, sizeof io->why, "redis %s: %s failed: %.*s", c->srv->name,
                 (const char *)privdata, (int)reply->len, reply->str);
        io->permanent = 1;
    }
    /* hiredis defers the free until this callback returns; the commands
     * queued behind get a NULL reply and io->why */
    weir_redis_conn_close_ac(c, "setup failed", WEIR_REDIS_DETACH_FAILED);
}

static int weir_redis_conn_setup(weir_redis_conn *c) {
    weir_redis_server *s = c->srv;
    char dbuf[24];
    if (s->password) {
        const char *argv[3];
        size_t lens[3];
        int argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;
        if (s->user) {
            argv[argc] = s->user;
            lens[argc++] = strlen(s->user);
        }
        argv[argc] = s->password;
        lens[argc++] = strlen(s->password);
        if (redisAsyncCommandArgv(c->ac, weir_redis_on_setup, weir_redis_auth_tag, argc, argv,
                                  lens) != REDIS_OK)
            return -1;
        c->inflight++;
    }
    if (s->db != 0) {
        const char *argv[2];
        size_t lens[2];
        snprintf(dbuf, sizeof dbuf, "%ld", s->db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = dbuf;
        lens[1] = strlen(dbuf);
        if (redisAsyncCommandArgv(c->ac, weir_redis_on_setup, weir_redis_select_tag, 2, argv,
                                  lens) != REDIS_OK)
            return -1;
        c->inflight++;
    }
    return 0;
}

static void weir_redis_unreachable(const weir_redis_server *s, weir_redis_error *err) {
    uint64_t now = uv_now(weir_redis_loop(s));
    weir_redis_set_error(err, "connection", !s->last_permanent, "%s (next attempt in %llu ms)",
                         s->last_error[0] ? s->last_error : "redis: unreachable",
                         (unsigned long long)(s->retry_at > now ? s->retry_at - now : 0));
}

/* Starts connecting c.  Commands may be queued at once: hiredis buffers
 * them until the socket is writable. */
static int weir_redis_conn_connect(weir_redis_conn *c, weir_redis_error *err) {
    weir_redis_server *s = c->srv;
    uv_loop_t *loop = weir_redis_loop(s);
    redisAsyncContext *ac;
    char why[224];
    if (s->retry_at && uv_now(loop) < s->retry_at) {
        weir_redis_unreachable(s, err);
        return -1;
    }
    ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path) : redisAsyncConnect(s->host, s->port);
    if (!ac) {
        weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", s->name);
        return -1;
    }
    if (ac->err) {
        snprintf(why, sizeof why, "redis %s: %s", s->name, ac->c.errstr);
        redisAsyncFree(ac);
        weir_redis_server_failed(s, why, 0);
        weir_redis_unreachable(s, err);
        return -1;
    }
    if (!weir_redis_io_attach(ac, loop)) {
        snprintf(why, sizeof why, "redis %s: cannot watch the socket", s->name);
        redisAsyncFree(ac);
        weir_redis_server_failed(s, why, 0);
        weir_redis_unreachable(s, err);
        return -1;
    }
    ac->data = c;
    c->ac = ac;
    c->state = WEIR_REDIS_CONNECTING;
    c->inflight = 0;
    redisAsyncSetConnectCallback(ac, weir_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, weir_redis_on_disconnect);
    if (!s->unix_path) redisEnableKeepAlive(&ac->c);
    if (weir_redis_conn_setup(c) != 0) {
        weir_redis_conn_close_ac(c, "cannot queue AUTH/SELECT (out of memory)",
                                 WEIR_REDIS_DETACH_QUIET);
        weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", s->name);
        return -1;
    }
    uv_timer_start(&c->timer, weir_redis_connect_timeout, s->connect_timeout_ms, 0);
    weir_redis_conn_update_ref(c);
    return 0;
}

static void weir_redis_conn_closed(uv_handle_t *h) { free(h->data); }

static weir_redis_conn *weir_redis_conn_new(weir_redis_server *s, int kind) {
    weir_redis_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = s;
    c->kind = kind;
    c->state = WEIR_REDIS_DOWN;
    uv_timer_init(weir_redis_loop(s), &c->timer);
    c->timer.data = c;
    uv_unref((uv_handle_t *)&c->timer);   /* in-flight commands keep the loop alive */
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    return c;
}

static void weir_redis_idle_remove(weir_redis_server *s, weir_redis_conn *c) {
    weir_redis_conn **pp;
    for (pp = &s->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == c) {
            *pp = c->next_idle;
            c->next_idle = NULL;
            s->nidle--;
            return;
        }
    }
}

/* Unlinks c from everything, closes its context and frees it (once its
 * timer handle is closed). */
static void weir_redis_conn_discard(weir_redis_conn *c) {
    weir_redis_server *s = c->srv;
    if (c->discarding) return;
    c->discarding = 1;
    if (c->prev) c->prev->next = c->next;
    else if (s->conns == c) s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->kind == WEIR_REDIS_DEDICATED && !c->busy) weir_redis_idle_remove(s, c);
    if (c->busy) {
        c->busy = 0;
        s->nbusy--;
    }
    if (s->shared == c) s->shared = NULL;
    if (c->req) {
        c->req->conn = NULL;
        c->req = NULL;
    }
    if (c->sub) c->sub = NULL;     /* the subscriber cleared its side */
    weir_redis_conn_close_ac(c, "connection closed by weir", WEIR_REDIS_DETACH_QUIET);
    uv_close((uv_handle_t *)&c->timer, weir_redis_conn_closed);
}

static weir_redis_conn *weir_redis_shared_conn(weir_redis_server *s, weir_redis_error *err) {
    weir_redis_conn *c = s->shared;
    if (!c) {
        c = weir_redis_conn_new(s, WEIR_REDIS_SHARED);
        if (!c) {
            weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", s->name);
            return NULL;
        }
        s->shared = c;
    }
    weir_redis_conn_check(c);
    if (!c->ac && weir_redis_conn_connect(c, err) != 0) return NULL;
    return c;
}

/* A dedicated connection lent to one request (pooled or new). */
static weir_redis_conn *weir_redis_dedicated_conn(weir_redis_server *s, weir_redis_error *err) {
    weir_redis_conn *c;
    while ((c = s->idle)) {
        weir_redis_idle_remove(s, c);
        weir_redis_conn_check(c);
        if (c->ac) {
            c->busy = 1;
            s->nbusy++;
            return c;
        }
        weir_redis_conn_discard(c);
    }
    if (s->nbusy >= WEIR_REDIS_MAX_BUSY) {
        weir_redis_set_error(err, "busy", 1,
                             "redis %s: too many blocking commands in flight (%d)", s->name,
                             WEIR_REDIS_MAX_BUSY);
        return NULL;
    }
    c = weir_redis_conn_new(s, WEIR_REDIS_DEDICATED);
    if (!c) {
        weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", s->name);
        return NULL;
    }
    c->busy = 1;
    s->nbusy++;
    if (weir_redis_conn_connect(c, err) != 0) {
        weir_redis_conn_discard(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* req                                                                */
/* ------------------------------------------------------------------ */

static void weir_redis_req_maybe_free(weir_redis_req *r) {
    if (r->pending > 0 || r->timer_open) return;
    free(r->eval_argv);
    free(r);
}

static void weir_redis_req_timer_closed(uv_handle_t *h) {
    weir_redis_req *r = h->data;
    r->timer_open = 0;
    weir_redis_req_maybe_free(r);
}

/* No more callbacks for r: its tombstone waits for hiredis. */
static void weir_redis_req_finish(weir_redis_req *r) {
    r->fn = NULL;
    r->data = NULL;
    if (r->timer_open && !r->timer_closing) {
        r->timer_closing = 1;
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, weir_redis_req_timer_closed);
    }
}

static void weir_redis_req_fail(weir_redis_req *r, const weir_redis_error *err) {
    weir_redis_reply_fn fn = r->fn;
    void *data = r->data;
    int index = r->delivered;
    weir_redis_req_finish(r);
    if (fn) fn(NULL, err, index, data);
}

static void weir_redis_req_deliver(weir_redis_req *r, const redisReply *reply) {
    weir_redis_reply_fn fn = r->fn;
    void *data = r->data;
    int index = r->delivered++;
    if (r->delivered >= r->ncmds) weir_redis_req_finish(r);
    fn(reply, NULL, index, data);
}

/* A dedicated connection goes back to the pool when it is healthy. */
static void weir_redis_req_release_conn(weir_redis_req *r) {
    weir_redis_conn *c = r->conn;
    weir_redis_server *s;
    if (!c) return;
    s = c->srv;
    r->conn = NULL;
    c->req = NULL;
    weir_redis_conn_check(c);
    if (c->ac && c->state == WEIR_REDIS_READY && s->nidle < WEIR_REDIS_MAX_IDLE &&
        !s->owner->closing) {
        c->busy = 0;
        s->nbusy--;
        c->next_idle = s->idle;
        s->idle = c;
        s->nidle++;
        weir_redis_conn_update_ref(c);
    } else {
        weir_redis_conn_discard(c);
    }
}

/* EVALSHA answered NOSCRIPT: send the script itself, once. */
static int weir_redis_eval_retry(weir_redis_req *r, redisAsyncContext *ac, weir_redis_conn *c,
                                 const redisReply *reply);

static void weir_redis_on_reply(redisAsyncContext *ac, void *rp, void *privdata) {
    weir_redis_req *r = privdata;
    redisReply *reply = rp;
    weir_redis_conn *c = ac->data;
    r->pending--;
    if (c && c->inflight > 0) c->inflight--;
    if (!reply && c) {
        /* the context is dying: this and every later callback get NULL */
        weir_redis_conn_detach(c, WEIR_REDIS_DETACH_DROP);
        c = NULL;
    }
    if (r->fn) {
        if (!reply) {
            weir_redis_io *io = ac->ev.data;
            weir_redis_error err;
            weir_redis_io_reason(ac);
            if (r->srv->owner->closing)
                weir_redis_set_error(&err, "closed", 0, "redis %s: the engine is closing",
                                     r->srv->name);
            else
                weir_redis_set_error(&err, "connection", io ? !io->permanent : 1, "%s",
                                     io ? io->why : "redis: connection lost");
            weir_redis_req_fail(r, &err);
        } else if (r->broken) {
            weir_redis_error err;
            weir_redis_set_error(&err, "memory", 0,
                                 "redis %s: could not queue every command (out of memory)",
                                 r->srv->name);
            weir_redis_req_fail(r, &err);
        } else if (!weir_redis_eval_retry(r, ac, c, reply)) {
            weir_redis_req_deliver(r, reply);
        }
    }
    if (c) weir_redis_conn_update_ref(c);
    if (r->pending == 0) {
        weir_redis_req_release_conn(r);
        weir_redis_req_maybe_free(r);
    }
}

static int weir_redis_eval_retry(weir_redis_req *r, redisAsyncContext *ac, weir_redis_conn *c,
                                 const redisReply *reply) {
    if (!r->eval_argv || r->eval_retried || !c || reply->type != REDIS_REPLY_ERROR ||
        reply->len < 8 || strncmp(reply->str, "NOSCRIPT", 8) != 0)
        return 0;
    r->eval_retried = 1;
    if (redisAsyncCommandArgv(ac, weir_redis_on_reply, r, r->eval_argc, r->eval_argv,
                              r->eval_lens) != REDIS_OK)
        return 0;
    r->pending++;
    c->inflight++;
    return 1;
}

static void weir_redis_req_timeout(uv_timer_t *t) {
    weir_redis_req *r = t->data;
    weir_redis_server *s = r->srv;
    weir_redis_error err;
    weir_redis_set_error(&err, "timeout", 1, "redis %s: no reply within the command timeout",
                         s->name);
    weir_redis_req_fail(r, &err);
    /* Redis answers in order: everything queued behind this command waits
     * for it too.  Start over on a fresh connection. */
    if (r->pending > 0 && s->shared && s->shared->ac)
        weir_redis_conn_close_ac(s->shared, "connection reset after a command timed out",
                                 WEIR_REDIS_DETACH_DROP);
}

static weir_redis_req *weir_redis_send_flags(weir_redis_server *s, const weir_redis_cmd *cmds,
                                             int ncmds, uint64_t timeout_ms, int flags,
                                             weir_redis_reply_fn fn, void *data,
                                             weir_redis_error *err) {
    weir_redis_conn *c;
    weir_redis_req *r;
    int i, blocking = 0;
    if (!s || !cmds || ncmds < 1 || !fn) {
        weir_redis_set_error(err, "usage", 0, "redis: no command to send");
        return NULL;
    }
    for (i = 0; i < ncmds; i++) {
        const char *why;
        if (cmds[i].argc < 1 || !cmds[i].argv || !cmds[i].lens) {
            weir_redis_set_error(err, "usage", 0, "redis: command %d has no name", i + 1);
            return NULL;
        }
        if (!(flags & WEIR_REDIS_SEND_TX) &&
            (why = weir_redis_forbidden(cmds[i].argc, cmds[i].argv, cmds[i].lens))) {
            weir_redis_set_error(err, "usage", 0, "redis: %.*s is not allowed here: %s",
                                 (int)(cmds[i].lens[0] > 32 ? 32 : cmds[i].lens[0]),
                                 cmds[i].argv[0], why);
            return NULL;
        }
        if (weir_redis_is_blocking(cmds[i].argc, cmds[i].argv, cmds[i].lens)) blocking = 1;
    }
    if (flags & WEIR_REDIS_SEND_TX) blocking = 0;   /* Redis never blocks inside MULTI */
    if (s->owner->closing) {
        weir_redis_set_error(err, "closed", 0, "redis %s: the engine is closing", s->name);
        return NULL;
    }
    c = blocking ? weir_redis_dedicated_conn(s, err) : weir_redis_shared_conn(s, err);
    if (!c) return NULL;
    r = calloc(1, sizeof *r);
    if (!r) {
        if (blocking) weir_redis_conn_discard(c);
        weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", s->name);
        return NULL;
    }
    r->srv = s;
    r->fn = fn;
    r->data = data;
    r->ncmds = ncmds;
    for (i = 0; i < ncmds; i++) {
        if (redisAsyncCommandArgv(c->ac, weir_redis_on_reply, r, cmds[i].argc,
                                  (const char **)cmds[i].argv, cmds[i].lens) != REDIS_OK)
            break;
        r->pending++;
        c->inflight++;
    }
    if (i == 0) {
        free(r);
        if (blocking) weir_redis_conn_discard(c);
        weir_redis_set_error(err, "memory", 0, "redis %s: cannot queue the command", s->name);
        return NULL;
    }
    if (i < ncmds) r->broken = 1;   /* reported with the first reply */
    if (blocking) {
        r->conn = c;
        c->req = r;
    } else if (timeout_ms > 0) {
        uv_timer_init(weir_redis_loop(s), &r->timer);
        r->timer.data = r;
        r->timer_open = 1;
        uv_timer_start(&r->timer, weir_redis_req_timeout, timeout_ms, 0);
    }
    s->stats.commands += (uint64_t)i;
    weir_redis_conn_update_ref(c);
    return r;
}

weir_redis_req *weir_redis_send(weir_redis_server *s, const weir_redis_cmd *cmds, int ncmds,
                                uint64_t timeout_ms, weir_redis_reply_fn fn, void *data,
                                weir_redis_error *err) {
    return weir_redis_send_flags(s, cmds, ncmds, timeout_ms, 0, fn, data, err);
}

weir_redis_req *weir_redis_command(weir_redis_server *s, int argc, const char *const *argv,
                                   const size_t *lens, uint64_t timeout_ms,
                                   weir_redis_reply_fn fn, void *data, weir_redis_error *err) {
    weir_redis_cmd cmd;
    cmd.argc = argc;
    cmd.argv = argv;
    cmd.lens = lens;
    return weir_redis_send_flags(s, &cmd, 1, timeout_ms, 0, fn, data, err);
}

void weir_redis_cancel(weir_redis_req *r) {
    weir_redis_conn *c;
    if (!r || !r->fn) return;
    weir_redis_req_finish(r);
    c = r->conn;
    if (c) {
        /* a blocking command would still pop data for nobody: close its
         * connection (may free r: touch nothing after this) */
        r->conn = NULL;
        c->req = NULL;
        weir_redis_conn_discard(c);
    }
}

/* ---- eval ---- */

static void weir_redis_sha1_hex(const char *data, size_t len, char out[41]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL)) mdlen = 0;
    for (i = 0; i < mdlen && i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * i] = '\0';
}

weir_redis_req *weir_redis_eval(weir_redis_server *s, const char *script, size_t script_len,
                                int nkeys, const char *const *keys, const size_t *key_lens,
                                int nargs, const char *const *args, const size_t *arg_lens,
                                uint64_t timeout_ms, weir_redis_reply_fn fn, void *data,
                                weir_redis_error *err) {
    weir_redis_req *r;
    weir_redis_cmd cmd;
    const char **argv;
    size_t *lens;
    char sha[41], nk[24];
    int i, argc;
    if (nkeys < 0 || nargs < 0 || nkeys > INT_MAX / 2 - 8 || nargs > INT_MAX / 2 - 8) {
        weir_redis_set_error(err, "usage", 0, "redis: bad key or argument count");
        return NULL;
    }
    argc = 3 + nkeys + nargs;
    /* one block: argv[argc] + lens[argc]; it doubles as the EVAL fallback */
    argv = malloc((size_t)argc * (sizeof *argv + sizeof *lens));
    if (!argv) {
        weir_redis_set_error(err, "memory", 0, "redis: out of memory");
        return NULL;
    }
    lens = (size_t *)(argv + argc);
    weir_redis_sha1_hex(script, script_len, sha);
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = sha;
    lens[1] = strlen(sha);
    argv[2] = nk;
    lens[2] = strlen(nk);
    for (i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        lens[3 + i] = key_lens[i];
    }
    for (i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arg_lens[i];
    }
    cmd.argc = argc;
    cmd.argv = argv;
    cmd.lens = lens;
    r = weir_redis_send_flags(s, &cmd, 1, timeout_ms, 0, fn, data, err);
    if (!r) {
        free(argv);
        return NULL;
    }
    /* Keep an EVAL copy for NOSCRIPT, bytes included: the caller's strings
     * need not outlive this call.  Without it (out of memory) a NOSCRIPT
     * reply is simply delivered. */
    {
        size_t bytes = 0;
        char *p;
        const char **eargv;
        size_t *elens;
        for (i = 3; i < argc; i++) bytes += lens[i];
        bytes += script_len + strlen(nk);
        eargv = malloc((size_t)argc * (sizeof *eargv + sizeof *elens) + bytes + 8);
        if (eargv) {
            elens = (size_t *)(eargv + argc);
            p = (char *)(elens + argc);
            eargv[0] = "EVAL";
            elens[0] = 4;
            memcpy(p, script, script_len);
            eargv[1] = p;
            elens[1] = script_len;
            p += script_len;
            for (i = 2; i < argc; i++) {
                memcpy(p, argv[i], lens[i]);
                eargv[i] = p;
                elens[i] = lens[i];
                p += lens[i];
            }
            r->eval_argc = argc;
            r->eval_argv = eargv;
            r->eval_lens = elens;
        }
    }
    free(argv);
    return r;
}

/* ------------------------------------------------------------------ */
/* server lookup                                                      */
/* ------------------------------------------------------------------ */

static int weir_redis_hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Copies [p, p+n) percent-decoded (user info may be URL-encoded). */
static char *weir_redis_decode(const char *p, size_t n) {
    char *out = malloc(n + 1), *o = out;
    size_t i;
    if (!out) return NULL;
    for (i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n &&
            (hi = weir_redis_hexval((unsigned char)p[i + 1])) >= 0 &&
            (lo = weir_redis_hexval((unsigned char)p[i + 2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = p[i];
        }
    }
    *o = '\0';
    return out;
}

static int weir_redis_parse_db(const char *p, long *db) {
    char *end;
    long v;
    if (!*p) return 0;
    errno = 0;
    v = strtol(p, &end, 10);
    if (errno || *end || v < 0 || v > 100000 || end == p) return -1;
    *db = v;
    return 0;
}

static void weir_redis_server_free(weir_redis_server *s) {
    free(s->url);
    free(s->name);
    free(s->host);
    free(s->unix_path);
    free(s->user);
    if (s->password) {
        /* do not leave the secret in freed memory */
        volatile char *p = s->password;
        while (*p) *p++ = 0;
        free(s->password);
    }
    free(s);
}

/* Splits "[user:]password@" off the front of *rest. */
static int weir_redis_parse_userinfo(weir_redis_server *s, const char **rest, const char *end) {
    const char *at = NULL, *p, *colon;
    for (p = *rest; p < end; p++)
        if (*p == '@') at = p;
    if (!at) return 0;
    colon = memchr(*rest, ':', (size_t)(at - *rest));
    if (colon) {
        if (colon > *rest && !(s->user = weir_redis_decode(*rest, (size_t)(colon - *rest))))
            return -1;
        if (!(s->password = weir_redis_decode(colon + 1, (size_t)(at - colon - 1)))) return -1;
    } else if (at > *rest) {
        /* "redis://secret@host": a bare password, as redis-cli accepts */
        if (!(s->password = weir_redis_decode(*rest, (size_t)(at - *rest)))) return -1;
    }
    if (s->password && !*s->password) {
        free(s->password);
        s->password = NULL;
    }
    *rest = at + 1;
    return 0;
}

static int weir_redis_parse_tcp(weir_redis_server *s, const char *rest, char *err, size_t errlen) {
    const char *end = rest + strlen(rest), *slash, *hend, *p;
    char portbuf[8];
    /* the last '@' ends the user info: a password may contain '/' or '@' */
    if (weir_redis_parse_userinfo(s, &rest, end) != 0) goto oom;
    slash = strchr(rest, '/');
    hend = slash ? slash : end;
    if (*rest == '[') {
        const char *close = memchr(rest, ']', (size_t)(hend - rest));
        if (!close) goto bad;
        s->host = strndup(rest + 1, (size_t)(close - rest - 1));
        p = close + 1;
    } else {
        const char *colon = memchr(rest, ':', (size_t)(hend - rest));
        p = colon ? colon : hend;
        s->host = strndup(rest, (size_t)(p - rest));
    }
    if (!s->host) goto oom;
    if (!*s->host) goto bad;
    s->port = 6379;
    if (p < hend) {
        size_t n;
        char *pend;
        long port;
        if (*p != ':') goto bad;
        n = (size_t)(hend - p - 1);
        if (n == 0 || n >= sizeof portbuf) goto bad;
        memcpy(portbuf, p + 1, n);
        portbuf[n] = '\0';
        port = strtol(portbuf, &pend, 10);
        if (*pend || port < 1 || port > 65535) goto bad;
        s->port = (int)port;
    }
    if (slash && weir_redis_parse_db(slash + 1, &s->db) != 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "bad redis URL: expected redis://[[user]:password@]host[:port][/db]");
    return -1;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int weir_redis_parse_unix(weir_redis_server *s, const char *rest, char *err,
                                 size_t errlen) {
    const char *end = rest + strlen(rest), *q;
    if (weir_redis_parse_userinfo(s, &rest, end) != 0) goto oom;
    q = strchr(rest, '?');
    if (*rest != '/') goto bad;
    s->unix_path = strndup(rest, q ? (size_t)(q - rest) : strlen(rest));
    if (!s->unix_path) goto oom;
    if (q) {
        if (strncmp(q, "?db=", 4) != 0 || weir_redis_parse_db(q + 4, &s->db) != 0) goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "bad redis URL: expected unix://[[user]:password@]/path[?db=N]");
    return -1;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int weir_redis_parse_url(weir_redis_server *s, const char *url, char *err, size_t errlen) {
    char name[300];
    int rc;
    if (strncmp(url, "redis://", 8) == 0) {
        rc = weir_redis_parse_tcp(s, url + 8, err, errlen);
    } else if (strncmp(url, "unix://", 7) == 0) {
        rc = weir_redis_parse_unix(s, url + 7, err, errlen);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, errlen, "rediss:// (TLS) is not supported by this build of weir");
        return -1;
    } else {
        snprintf(err, errlen, "unsupported redis URL: expected redis://host:port[/db] or "
                              "unix:///path/to/socket");
        return -1;
    }
    if (rc != 0) return -1;
    if (s->unix_path) snprintf(name, sizeof name, "unix:%s", s->unix_path);
    else if (strchr(s->host, ':')) snprintf(name, sizeof name, "[%s]:%d", s->host, s->port);
    else snprintf(name, sizeof name, "%s:%d", s->host, s->port);
    if (s->db) snprintf(name + strlen(name), sizeof name - strlen(name), "/%ld", s->db);
    s->name = strdup(name);
    if (!s->name) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

weir_redis_server *weir_redis_server_get(weir_engine *e, const char *url,
                                         const weir_redis_options *opts,
                                         char *err, size_t errlen) {
    weir_redis_engine *re = weir_redis_engine_of(e);
    weir_redis_server *s;
    if (!re) {
        snprintf(err, errlen, "weir.redis is not initialised on this engine");
        return NULL;
    }
    if (re->closing) {
        snprintf(err, errlen, "the engine is closing");
        return NULL;
    }
    for (s = re->servers; s; s = s->next) {
        if (strcmp(s->url, url) == 0) {
            if (opts && opts->connect_timeout_ms) s->connect_timeout_ms = opts->connect_timeout_ms;
            return s;
        }
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->owner = re;
    s->connect_timeout_ms = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms
                                                             : WEIR_REDIS_CONNECT_TIMEOUT_MS;
    if (weir_redis_parse_url(s, url, err, errlen) != 0) {
        weir_redis_server_free(s);
        return NULL;
    }
    s->next = re->servers;
    re->servers = s;
    return s;
}

const char *weir_redis_server_name(const weir_redis_server *s) { return s->name; }

void weir_redis_server_stats(const weir_redis_server *s, weir_redis_stats *out) {
    *out = s->stats;
    out->connected = s->shared && s->shared->ac && s->shared->state == WEIR_REDIS_READY;
    out->blocking_busy = s->nbusy;
    out->blocking_idle = s->nidle;
}

/* ------------------------------------------------------------------ */
/* reply copies: hiredis frees a reply when its callback returns, and a */
/* job resumes only on the next loop turn                              */
/* ------------------------------------------------------------------ */

typedef struct weir_redis_value weir_redis_value;
struct weir_redis_value {
    int type;                   /* REDIS_REPLY_* */
    long long integer;
    size_t len;                 /* bytes of str, or number of elements */
    char *str;
    weir_redis_value *element;
};

static void weir_redis_value_measure(const redisReply *r, size_t *nvals, size_t *nbytes) {
    size_t i;
    if (r->type == REDIS_REPLY_ARRAY) {
        *nvals += r->elements;
        for (i = 0; i < r->elements; i++)
            weir_redis_value_measure(r->element[i], nvals, nbytes);
    } else if (r->str) {
        *nbytes += r->len + 1;
    }
}

static void weir_redis_value_fill(weir_redis_value *v, const redisReply *r,
                                  weir_redis_value **vals, char **bytes) {
    size_t i;
    memset(v, 0, sizeof *v);
    v->type = r->type;
    v->integer = r->integer;
    if (r->type == REDIS_REPLY_ARRAY) {
        v->len = r->elements;
        v->element = *vals;
        *vals += r->elements;
        for (i = 0; i < r->elements; i++)
            weir_redis_value_fill(&v->element[i], r->element[i], vals, bytes);
    } else if (r->str) {
        v->str = *bytes;
        v->len = r->len;
        memcpy(v->str, r->str, r->len);
        v->str[r->len] = '\0';
        *bytes += r->len + 1;
    }
}

/* The whole tree in one block: nodes first, then the bytes. */
static weir_redis_value *weir_redis_value_copy(const redisReply *r) {
    size_t nvals = 1, nbytes = 0;
    weir_redis_value *block, *vals;
    char *bytes;
    weir_redis_value_measure(r, &nvals, &nbytes);
    block = malloc(nvals * sizeof *block + nbytes);
    if (!block) return NULL;
    vals = block + 1;
    bytes = (char *)(block + nvals);
    weir_redis_value_fill(block, r, &vals, &bytes);
    return block;
}

/* ------------------------------------------------------------------ */
/* Lua: values and errors                                             */
/* ------------------------------------------------------------------ */

/* Errors Redis says are worth retrying. */
static int weir_redis_code_retryable(const char *code, size_t len) {
    static const char *const codes[] = {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN",
                                        "CLUSTERDOWN", "READONLY", NULL};
    int i;
    for (i = 0; codes[i]; i++)
        if (len == strlen(codes[i]) && memcmp(code, codes[i], len) == 0) return 1;
    return 0;
}

/* Pushes {kind = "redis", code = "WRONGTYPE", message = ..., retryable}. */
static void weir_redis_push_reply_error(lua_State *L, const char *msg, size_t len) {
    size_t code_len = 0;
    while (code_len < len && msg[code_len] != ' ') code_len++;
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "redis");
    lua_setfield(L, -2, "kind");
    lua_pushlstring(L, msg, code_len);
    lua_setfield(L, -2, "code");
    lua_pushlstring(L, msg, len);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, weir_redis_code_retryable(msg, code_len));
    lua_setfield(L, -2, "retryable");
}

static int weir_redis_push_error(lua_State *L, const weir_redis_error *err) {
    lua_pushnil(L);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, err->kind ? err->kind : "connection");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, err->message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, err->retryable);
    lua_setfield(L, -2, "retryable");
    return 2;
}

/* Status and bulk -> string, integer -> integer, array -> table; inside
 * a table nil -> false (as Redis's own Lua scripting does, so positions
 * survive) and an error -> its error table; at the top level nil -> nil. */
static void weir_redis_push_value(lua_State *L, const weir_redis_value *v, int nested) {
    size_t i;
    luaL_checkstack(L, 4, "redis reply nested too deeply");
    switch (v->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, v->str ? v->str : "", v->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)v->integer);
        break;
    case REDIS_REPLY_ERROR:
        weir_redis_push_reply_error(L, v->str ? v->str : "", v->len);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, v->len > INT_MAX ? INT_MAX : (int)v->len, 0);
        for (i = 0; i < v->len; i++) {
            weir_redis_push_value(L, &v->element[i], 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default:    /* REDIS_REPLY_NIL */
        if (nested) lua_pushboolean(L, 0);
        else lua_pushnil(L);
        break;
    }
}

/* A whole reply as call() returns it: value | nil | nil, err. */
static int weir_redis_push_result(lua_State *L, const weir_redis_value *v) {
    if (v->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        weir_redis_push_reply_error(L, v->str ? v->str : "", v->len);
        return 2;
    }
    weir_redis_push_value(L, v, 0);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Lua: command ops                                                   */
/* ------------------------------------------------------------------ */

enum {
    WEIR_REDIS_OP_CALL,         /* one reply -> value | nil, err */
    WEIR_REDIS_OP_PIPELINE,     /* n replies -> array */
    WEIR_REDIS_OP_TX,           /* MULTI, n QUEUED, EXEC -> EXEC's array */
    WEIR_REDIS_OP_CONNECT       /* PING -> client */
};

typedef struct weir_redis_client {
    weir_redis_server *srv;
    uint64_t command_timeout_ms;    /* 0: none */
} weir_redis_client;

typedef struct weir_redis_op {
    weir_op base;
    int kind;
    weir_redis_req *req;        /* live request, NULL once it ended */
    int failed;
    int oom;
    weir_redis_error err;
    weir_redis_client client;   /* CONNECT: what to hand back */
    int nreplies;
    weir_redis_value *replies[1];   /* nreplies slots */
} weir_redis_op;

static void weir_redis_op_on_reply(const redisReply *reply, const weir_redis_error *err,
                                   int index, void *data) {
    weir_redis_op *op = data;
    if (err) {
        op->failed = 1;
        op->err = *err;
        op->req = NULL;
        weir_op_complete(&op->base);
        return;
    }
    if (index < op->nreplies && !(op->replies[index] = weir_redis_value_copy(reply)))
        op->oom = 1;
    if (index == op->nreplies - 1) {
        op->req = NULL;
        weir_op_complete(&op->base);
    }
}

static void weir_redis_op_release(weir_op *base) {
    weir_redis_op *op = (weir_redis_op *)base;
    int i;
    if (op->req) weir_redis_cancel(op->req);
    for (i = 0; i < op->nreplies; i++) free(op->replies[i]);
    free(op);
}

static void weir_redis_push_client(lua_State *L, const weir_redis_client *cl) {
    weir_redis_client *ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = *cl;
    luaL_setmetatable(L, WEIR_REDIS_CLIENT);
}

/* EXEC's reply, or nil + the error naming the first rejected command. */
static int weir_redis_push_tx(lua_State *L, weir_redis_op *op) {
    const weir_redis_value *exec = op->replies[op->nreplies - 1];
    int i;
    if (exec->type != REDIS_REPLY_ERROR) {
        weir_redis_push_value(L, exec, 0);
        return 1;
    }
    lua_pushnil(L);
    weir_redis_push_reply_error(L, exec->str ? exec->str : "", exec->len);
    for (i = 1; i < op->nreplies - 1; i++) {
        const weir_redis_value *q = op->replies[i];
        if (q->type == REDIS_REPLY_ERROR) {
            lua_pushfstring(L, "%s (command %d: %s)", exec->str ? exec->str : "", i,
                            q->str ? q->str : "");
            lua_setfield(L, -2, "message");
            break;
        }
    }
    return 2;
}

static int weir_redis_op_push(lua_State *L, weir_op *base) {
    weir_redis_op *op = (weir_redis_op *)base;
    int i;
    if (op->failed) return weir_redis_push_error(L, &op->err);
    if (op->oom) return luaL_error(L, "redis: out of memory copying a reply");
    switch (op->kind) {
    case WEIR_REDIS_OP_CONNECT:
        if (op->replies[0]->type == REDIS_REPLY_ERROR) return weir_redis_push_result(L, op->replies[0]);
        weir_redis_push_client(L, &op->client);
        return 1;
    case WEIR_REDIS_OP_PIPELINE:
        lua_createtable(L, op->nreplies, 0);
        for (i = 0; i < op->nreplies; i++) {
            weir_redis_push_value(L, op->replies[i], 1);
            lua_rawseti(L, -2, i + 1);
        }
        return 1;
    case WEIR_REDIS_OP_TX:
        return weir_redis_push_tx(L, op);
    default:
        return weir_redis_push_result(L, op->replies[0]);
    }
}

static weir_redis_op *weir_redis_op_new(lua_State *L, int kind, int nreplies, const char *what) {
    weir_redis_op *op;
    op = calloc(1, sizeof *op + (size_t)(nreplies > 1 ? nreplies - 1 : 0) * sizeof op->replies[0]);
    if (!op) luaL_error(L, "%s: out of memory", what);
    op->kind = kind;
    op->nreplies = nreplies;
    op->base.push = weir_redis_op_push;
    op->base.cancel = weir_redis_op_release;
    op->base.free = weir_redis_op_release;
    op->base.what = what;
    return op;
}

/* Sends and yields, or returns nil, err at once when nothing was sent. */
static int weir_redis_op_start(lua_State *L, weir_redis_op *op, weir_redis_server *s,
                               const weir_redis_cmd *cmds, int ncmds, uint64_t timeout_ms,
                               int flags) {
    weir_redis_error err;
    op->req = weir_redis_send_flags(s, cmds, ncmds, timeout_ms, flags, weir_redis_op_on_reply, op,
                                    &err);
    if (!op->req) {
        free(op);
        if (strcmp(err.kind, "usage") == 0) return luaL_error(L, "%s", err.message);
        return weir_redis_push_error(L, &err);
    }
    return weir_op_yield(L, &op->base);
}

/* ---- arguments ---- */

/* Converts the value at idx to a string in place (binary-safe).  Floats
 * keep 17 significant digits so they round-trip exactly. */
static const char *weir_redis_arg(lua_State *L, int idx, size_t *len, const char *what,
                                  int pos) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, idx));
        lua_pushstring(L, buf);
        lua_replace(L, idx);
    } else if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER) {
        luaL_error(L, "%s: command argument %d must be a string or a number (got %s)", what,
                   pos, luaL_typename(L, idx));
    }
    return lua_tolstring(L, idx, len);
}

typedef struct weir_redis_argv {
    const char *stack_argv[WEIR_REDIS_STACK_ARGS];
    size_t stack_lens[WEIR_REDIS_STACK_ARGS];
    const char **argv;
    size_t *lens;
} weir_redis_argv;

/* Room for n arguments: on the C stack, or a userdata pushed on L (freed
 * by the GC whatever happens). */
static void weir_redis_argv_init(lua_State *L, weir_redis_argv *a, int n) {
    if (n <= WEIR_REDIS_STACK_ARGS) {
        a->argv = a->stack_argv;
        a->lens = a->stack_lens;
        return;
    }
    a->argv = lua_newuserdatauv(L, (size_t)n * (sizeof *a->argv + sizeof *a->lens), 0);
    a->lens = (size_t *)(a->argv + n);
}

/* Collects stack values [first, first + n) as one command. */
static void weir_redis_argv_collect(lua_State *L, weir_redis_argv *a, int first, int n,
                                    const char *what) {
    int i;
    for (i = 0; i < n; i++) a->argv[i] = weir_redis_arg(L, first + i, &a->lens[i], what, i + 1);
}

static void weir_redis_check_allowed(lua_State *L, int argc, const char *const *argv,
                                     const size_t *lens, const char *what) {
    const char *why = weir_redis_forbidden(argc, argv, lens);
    if (why)
        luaL_error(L, "%s: %s is not allowed on a shared connection: %s", what,
                   argc > 0 ? argv[0] : "?", why);
}

/* ---- client ---- */

static weir_redis_client *weir_redis_check_client(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, WEIR_REDIS_CLIENT);
}

/* Runs the command made of stack values [first, top]. */
static int weir_redis_run(lua_State *L, weir_redis_client *cl, int first, const char *what) {
    int n = lua_gettop(L) - first + 1;
    weir_redis_argv a;
    weir_redis_cmd cmd;
    weir_redis_op *op;
    if (n < 1) return luaL_error(L, "%s: missing the command name", what);
    weir_redis_argv_init(L, &a, n);
    weir_redis_argv_collect(L, &a, first, n, what);
    weir_redis_check_allowed(L, n, a.argv, a.lens, what);
    weir_job_check(L, what);
    cmd.argc = n;
    cmd.argv = a.argv;
    cmd.lens = a.lens;
    op = weir_redis_op_new(L, WEIR_REDIS_OP_CALL, 1, what);
    return weir_redis_op_start(L, op, cl->srv, &cmd, 1, cl->command_timeout_ms, 0);
}

static int weir_redis_l_call(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    return weir_redis_run(L, cl, 2, "client:call");
}

static int weir_redis_l_command(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    lua_Integer i, n;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = luaL_len(L, 2);
    if (n < 1 || n > 1000000) return luaL_error(L, "client:command: expected {name, args...}");
    luaL_checkstack(L, (int)n + 4, "client:command: too many arguments");
    for (i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
    return weir_redis_run(L, cl, 3, "client:command");
}

static double weir_redis_opt_seconds(lua_State *L, int idx, const char *field, double dflt,
                                     const char *what) {
    double v;
    int t = lua_getfield(L, idx, field);
    if (t == LUA_TNIL) v = dflt;
    else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) v = 0;   /* false: none */
    else if (t != LUA_TNUMBER)
        return luaL_error(L, "%s: %s must be a number of seconds (or false)", what, field);
    else v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0) || v > WEIR_REDIS_MAX_TIMEOUT)
        return luaL_error(L, "%s: %s must be between 0 and %f seconds", what, field,
                          WEIR_REDIS_MAX_TIMEOUT);
    return v;
}

static uint64_t weir_redis_ms(double seconds) {
    double ms = seconds * 1000.0;
    if (seconds > 0 && ms < 1) ms = 1;
    return (uint64_t)ms;
}

static int weir_redis_l_connect(lua_State *L) {
    weir_redis_engine *re = lua_touserdata(L, lua_upvalueindex(1));
    const char *url = luaL_checkstring(L, 1);
    double connect_timeout = WEIR_REDIS_CONNECT_TIMEOUT_MS / 1000.0;
    double command_timeout = WEIR_REDIS_COMMAND_TIMEOUT;
    weir_redis_options opts;
    weir_redis_client cl;
    weir_redis_op *op;
    weir_redis_cmd cmd;
    static const char *const ping[] = {"PING"};
    static const size_t ping_len[] = {4};
    char err[256];
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        connect_timeout = weir_redis_opt_seconds(L, 2, "connect_timeout", connect_timeout,
                                                 "redis.connect");
        command_timeout = weir_redis_opt_seconds(L, 2, "command_timeout", command_timeout,
                                                 "redis.connect");
        if (connect_timeout <= 0)
            return luaL_error(L, "redis.connect: connect_timeout must be positive");
    }
    weir_job_check(L, "redis.connect");
    opts.connect_timeout_ms = weir_redis_ms(connect_timeout);
    cl.srv = weir_redis_server_get(re->eng, url, &opts, err, sizeof err);
    if (!cl.srv) return luaL_error(L, "redis.connect: %s", err);
    cl.command_timeout_ms = weir_redis_ms(command_timeout);
    if (cl.srv->shared && cl.srv->shared->ac && cl.srv->shared->state == WEIR_REDIS_READY) {
        weir_redis_push_client(L, &cl);
        return 1;
    }
    /* a PING proves the server answers and accepted AUTH/SELECT */
    op = weir_redis_op_new(L, WEIR_REDIS_OP_CONNECT, 1, "redis.connect");
    op->client = cl;
    cmd.argc = 1;
    cmd.argv = ping;
    cmd.lens = ping_len;
    return weir_redis_op_start(L, op, cl.srv, &cmd, 1,
                               cl.command_timeout_ms ? cl.command_timeout_ms
                                                     : opts.connect_timeout_ms, 0);
}

/* ---- pipeline ---- */

typedef struct weir_redis_pipe {
    int sent;                   /* the pipeline function returned */
} weir_redis_pipe;

static int weir_redis_l_pipe_call(lua_State *L) {
    weir_redis_pipe *p = luaL_checkudata(L, 1, WEIR_REDIS_PIPELINE);
    int i, n = lua_gettop(L) - 1;
    weir_redis_argv a;
    lua_Integer idx;
    if (p->sent) return luaL_error(L, "pipeline: already sent (use p only inside its function)");
    if (n < 1) return luaL_error(L, "pipeline: missing the command name");
    weir_redis_argv_init(L, &a, n);
    weir_redis_argv_collect(L, &a, 2, n, "pipeline:call");
    weir_redis_check_allowed(L, n, a.argv, a.lens, "pipeline:call");
    lua_getiuservalue(L, 1, 1);                 /* list */
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, 2 + i);
        lua_rawseti(L, -2, i + 1);
    }
    idx = luaL_len(L, -2) + 1;
    lua_rawseti(L, -2, idx);
    lua_pushinteger(L, idx);
    return 1;
}

static int weir_redis_l_pipe_command(lua_State *L) {
    lua_Integer i, n;
    luaL_checkudata(L, 1, WEIR_REDIS_PIPELINE);
    luaL_checktype(L, 2, LUA_TTABLE);
    n = luaL_len(L, 2);
    if (n < 1 || n > 1000000) return luaL_error(L, "pipeline:command: expected {name, args...}");
    luaL_checkstack(L, (int)n + 4, "pipeline:command: too many arguments");
    lua_settop(L, 2);
    lua_pushcfunction(L, weir_redis_l_pipe_call);
    lua_pushvalue(L, 1);
    for (i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
    lua_call(L, (int)n + 1, 1);
    return 1;
}

/* client:pipeline(fn [, {transaction = true}]) */
static int weir_redis_l_pipeline(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    weir_redis_pipe *p;
    weir_redis_cmd *cmds;
    weir_redis_op *op;
    const char **argv;
    size_t *lens;
    lua_Integer n, i, total = 0, j;
    int tx = 0, extra, k = 0, a = 0;
    static const char *const multi[] = {"MULTI"}, *const exec[] = {"EXEC"};
    static const size_t multi_len[] = {5}, exec_len[] = {4};
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "transaction");
        tx = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    weir_job_check(L, "client:pipeline");
    lua_settop(L, 2);
    p = lua_newuserdatauv(L, sizeof *p, 1);     /* 3: p */
    p->sent = 0;
    luaL_setmetatable(L, WEIR_REDIS_PIPELINE);
    lua_newtable(L);
    lua_setiuservalue(L, 3, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0);                          /* fn(p): it cannot yield */
    p->sent = 1;
    lua_getiuservalue(L, 3, 1);                 /* 4: list of commands */
    n = luaL_len(L, 4);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    if (n > INT_MAX / 2) return luaL_error(L, "client:pipeline: too many commands");
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 4, i);
        total += luaL_len(L, -1);
        lua_pop(L, 1);
    }
    extra = tx ? 2 : 0;
    if (total > INT_MAX / 4) return luaL_error(L, "client:pipeline: too many arguments");
    /* one scratch userdata: cmds, then argv, then lens */
    cmds = lua_newuserdatauv(L, (size_t)(n + extra) * sizeof *cmds +
                                    (size_t)total * (sizeof *argv + sizeof *lens), 0);
    argv = (const char **)(cmds + n + extra);
    lens = (size_t *)(argv + total);
    if (tx) {
        cmds[k].argc = 1;
        cmds[k].argv = multi;
        cmds[k++].lens = multi_len;
    }
    for (i = 1; i <= n; i++) {
        lua_Integer argc;
        lua_rawgeti(L, 4, i);
        argc = luaL_len(L, -1);
        cmds[k].argc = (int)argc;
        cmds[k].argv = argv + a;
        cmds[k++].lens = lens + a;
        for (j = 1; j <= argc; j++) {
            lua_rawgeti(L, -1, j);
            /* the strings stay alive in the list, which p keeps */
            argv[a] = lua_tolstring(L, -1, &lens[a]);
            a++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (tx) {
        cmds[k].argc = 1;
        cmds[k].argv = exec;
        cmds[k++].lens = exec_len;
    }
    op = weir_redis_op_new(L, tx ? WEIR_REDIS_OP_TX : WEIR_REDIS_OP_PIPELINE, k,
                           "client:pipeline");
    return weir_redis_op_start(L, op, cl->srv, cmds, k, cl->command_timeout_ms,
                               tx ? WEIR_REDIS_SEND_TX : 0);
}

/* ---- eval ---- */

/* Pushes the strings of array t (may be nil) and points argv at them. */
static int weir_redis_collect_list(lua_State *L, int t, weir_redis_argv *a, const char *what,
                                   const char *name) {
    lua_Integer i, n;
    int base;
    if (lua_isnoneornil(L, t)) {
        weir_redis_argv_init(L, a, 0);
        return 0;
    }
    if (!lua_istable(L, t)) luaL_error(L, "%s: %s must be an array", what, name);
    n = luaL_len(L, t);
    if (n > 100000) luaL_error(L, "%s: too many %s", what, name);
    luaL_checkstack(L, (int)n + 4, "too many arguments");
    weir_redis_argv_init(L, a, (int)n);
    base = lua_gettop(L);
    for (i = 1; i <= n; i++) lua_rawgeti(L, t, i);
    weir_redis_argv_collect(L, a, base + 1, (int)n, what);
    return (int)n;
}

/* client:eval(script [, keys [, args]]) */
static int weir_redis_l_eval(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    size_t script_len;
    const char *script = luaL_checklstring(L, 2, &script_len);
    weir_redis_argv keys, args;
    int nkeys, nargs;
    weir_redis_op *op;
    weir_redis_error err;
    lua_settop(L, 4);
    nkeys = weir_redis_collect_list(L, 3, &keys, "client:eval", "keys");
    nargs = weir_redis_collect_list(L, 4, &args, "client:eval", "args");
    weir_job_check(L, "client:eval");
    op = weir_redis_op_new(L, WEIR_REDIS_OP_CALL, 1, "client:eval");
    op->req = weir_redis_eval(cl->srv, script, script_len, nkeys, keys.argv, keys.lens, nargs,
                              args.argv, args.lens, cl->command_timeout_ms,
                              weir_redis_op_on_reply, op, &err);
    if (!op->req) {
        free(op);
        return weir_redis_push_error(L, &err);
    }
    return weir_op_yield(L, &op->base);
}

/* ---- xreadgroup: builds the argument list, then it is call() ---- */

/* Appends the value at the top of the stack to array t (popping it). */
static void weir_redis_append(lua_State *L, int t, int *n) {
    lua_rawseti(L, t, ++*n);
}

static void weir_redis_xopt(lua_State *L, int opts, int args, int *n, const char *field,
                            const char *word) {
    if (lua_getfield(L, opts, field) == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        luaL_error(L, "client:xreadgroup: %s must be a non-negative integer", field);
    lua_pushstring(L, word);
    weir_redis_append(L, args, n);
    weir_redis_append(L, args, n);
}

/* Adds one stream (key at -2, id at -1, both popped). */
static void weir_redis_xstream(lua_State *L, int keys, int ids, int *nstreams) {
    if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "client:xreadgroup: stream keys must be strings");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, ">");
    }
    ++*nstreams;
    lua_rawseti(L, ids, *nstreams);
    lua_rawseti(L, keys, *nstreams);
}

/* client:xreadgroup{group =, consumer =, streams = {key = id} | {{key, id}, ...},
 *                   count =, block = ms, noack = bool} */
static int weir_redis_l_xreadgroup(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    int args, keys, ids, streams, n = 0, nstreams = 0, i;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_newtable(L);
    args = 3;
    lua_newtable(L);
    keys = 4;
    lua_newtable(L);
    ids = 5;
    lua_pushliteral(L, "XREADGROUP");
    weir_redis_append(L, args, &n);
    lua_pushliteral(L, "GROUP");
    weir_redis_append(L, args, &n);
    if (lua_getfield(L, 2, "group") != LUA_TSTRING)
        return luaL_error(L, "client:xreadgroup: group must be a string");
    weir_redis_append(L, args, &n);
    if (lua_getfield(L, 2, "consumer") != LUA_TSTRING)
        return luaL_error(L, "client:xreadgroup: consumer must be a string");
    weir_redis_append(L, args, &n);
    weir_redis_xopt(L, 2, args, &n, "count", "COUNT");
    weir_redis_xopt(L, 2, args, &n, "block", "BLOCK");
    lua_getfield(L, 2, "noack");
    if (lua_toboolean(L, -1)) {
        lua_pushliteral(L, "NOACK");
        weir_redis_append(L, args, &n);
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "STREAMS");
    weir_redis_append(L, args, &n);
    if (lua_getfield(L, 2, "streams") != LUA_TTABLE)
        return luaL_error(L, "client:xreadgroup: streams must be {key = id} or {{key, id}, ...}");
    streams = lua_gettop(L);
    if (luaL_len(L, streams) > 0) {     /* {{key, id}, ...}: this order */
        lua_Integer k, len = luaL_len(L, streams);
        for (k = 1; k <= len; k++) {
            if (lua_rawgeti(L, streams, k) != LUA_TTABLE)
                return luaL_error(L, "client:xreadgroup: streams[%d] must be {key, id}", (int)k);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            weir_redis_xstream(L, keys, ids, &nstreams);
            lua_pop(L, 1);
        }
    } else {                            /* {key = id}: any order */
        lua_pushnil(L);
        while (lua_next(L, streams)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);          /* key key id */
            weir_redis_xstream(L, keys, ids, &nstreams);
        }
    }
    if (nstreams == 0) return luaL_error(L, "client:xreadgroup: streams is empty");
    for (i = 1; i <= nstreams; i++) {
        lua_rawgeti(L, keys, i);
        weir_redis_append(L, args, &n);
    }
    for (i = 1; i <= nstreams; i++) {
        lua_rawgeti(L, ids, i);
        weir_redis_append(L, args, &n);
    }
    lua_settop(L, args);
    luaL_checkstack(L, n + 4, "client:xreadgroup: too many streams");
    for (i = 1; i <= n; i++) lua_rawgeti(L, args, i);
    return weir_redis_run(L, cl, args + 1, "client:xreadgroup");
}

static int weir_redis_l_stats(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    weir_redis_stats st;
    weir_redis_server_stats(cl->srv, &st);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)st.connects);
    lua_setfield(L, -2, "connects");
    lua_pushinteger(L, (lua_Integer)st.connect_failures);
    lua_setfield(L, -2, "connect_failures");
    lua_pushinteger(L, (lua_Integer)st.drops);
    lua_setfield(L, -2, "drops");
    lua_pushinteger(L, (lua_Integer)st.commands);
    lua_setfield(L, -2, "commands");
    lua_pushboolean(L, st.connected);
    lua_setfield(L, -2, "connected");
    lua_pushinteger(L, st.blocking_busy);
    lua_setfield(L, -2, "blocking_busy");
    lua_pushinteger(L, st.blocking_idle);
    lua_setfield(L, -2, "blocking_idle");
    return 1;
}

static int weir_redis_l_name(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    lua_pushstring(L, cl->srv->name);
    return 1;
}

static int weir_redis_l_tostring(lua_State *L) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    lua_pushfstring(L, "redis client (%s)", cl->srv->name);
    return 1;
}

/* ------------------------------------------------------------------ */
/* subscribers: a dedicated connection each                           */
/* ------------------------------------------------------------------ */

typedef struct weir_redis_msg {
    struct weir_redis_msg *next;
    const char *channel, *payload, *pattern;    /* pattern: NULL unless pmessage */
    size_t channel_len, payload_len, pattern_len;
    size_t dropped;             /* messages dropped just before this one */
} weir_redis_msg;

typedef struct weir_redis_chan {
    char *name;
    size_t len;
    int pattern;
} weir_redis_chan;

enum { WEIR_REDIS_SUB_OP_SUBSCRIBE, WEIR_REDIS_SUB_OP_NEXT };

struct weir_redis_sub {
    weir_redis_engine *owner;
    weir_redis_server *srv;
    weir_redis_conn *conn;
    weir_redis_chan *chans;
    int nchans;
    int unconfirmed;            /* subscribe confirmations still to come */
    weir_redis_msg *head, *tail;
    size_t nmsgs, dropped;
    weir_redis_sub_op *waiter;
    int failed;                 /* a drop that next() has not reported yet */
    weir_redis_error err;
    weir_redis_sub *prev, *next;
};

struct weir_redis_sub_op {
    weir_op base;
    int kind;
    weir_redis_sub *sub;        /* SUBSCRIBE: owned until pushed;
                                   NEXT: the one waited on, NULL once done */
    weir_redis_msg *msg;        /* NEXT: the message taken */
    int failed;
    int timed_out;
    weir_redis_error err;
    double timeout;
    int has_timer;
    uv_timer_t timer;
};

static void weir_redis_sub_hold(weir_redis_sub *sub) {
    weir_redis_conn *c = sub->conn;
    if (!c) return;
    c->hold = sub->waiter != NULL || sub->unconfirmed > 0;
    weir_redis_conn_update_ref(c);
}

/* Hands the outcome to the waiting op (if any) and wakes its job. */
static void weir_redis_sub_wake(weir_redis_sub *sub, const weir_redis_error *err) {
    weir_redis_sub_op *op = sub->waiter;
    if (!op) return;
    sub->waiter = NULL;
    if (op->has_timer) uv_timer_stop(&op->timer);
    if (err) {
        op->failed = 1;
        op->err = *err;
    } else if (op->kind == WEIR_REDIS_SUB_OP_NEXT && sub->head) {
        op->msg = sub->head;
        sub->head = op->msg->next;
        if (!sub->head) sub->tail = NULL;
        sub->nmsgs--;
    }
    if (op->kind == WEIR_REDIS_SUB_OP_NEXT) op->sub = NULL;
    weir_redis_sub_hold(sub);
    weir_op_complete(&op->base);
}

static void weir_redis_sub_dropped(weir_redis_sub *sub, const weir_redis_io *io) {
    weir_redis_error err;
    weir_redis_set_error(&err, "connection", io ? !io->permanent : 1, "%s",
                         io ? io->why : "redis: subscriber connection lost");
    sub->unconfirmed = 0;
    if (sub->waiter) {
        weir_redis_sub_wake(sub, &err);
    } else {
        sub->failed = 1;
        sub->err = err;
    }
}

static void weir_redis_sub_push_msg(weir_redis_sub *sub, const redisReply *ch,
                                    const redisReply *payload, const redisReply *pattern) {
    size_t bytes = ch->len + payload->len + (pattern ? pattern->len : 0) + 3;
    weir_redis_msg *m = malloc(sizeof *m + bytes);
    char *p;
    if (!m) {
        sub->dropped++;
        return;
    }
    p = (char *)(m + 1);
    memcpy(p, ch->str, ch->len);
    p[ch->len] = '\0';
    m->channel = p;
    m->channel_len = ch->len;
    p += ch->len + 1;
    memcpy(p, payload->str, payload->len);
    p[payload->len] = '\0';
    m->payload = p;
    m->payload_len = payload->len;
    p += payload->len + 1;
    m->pattern = NULL;
    m->pattern_len = 0;
    if (pattern) {
        memcpy(p, pattern->str, pattern->len);
        p[pattern->len] = '\0';
        m->pattern = p;
        m->pattern_len = pattern->len;
    }
    m->next = NULL;
    m->dropped = sub->dropped;
    sub->dropped = 0;
    if (sub->nmsgs >= WEIR_REDIS_MAX_QUEUED) {   /* nobody reads: drop the oldest */
        weir_redis_msg *old = sub->head;
        sub->head = old->next;
        if (!sub->head) sub->tail = NULL;
        sub->nmsgs--;
        m->dropped += old->dropped + 1;
        free(old);
    }
    if (sub->tail) sub->tail->next = m;
    else sub->head = m;
    sub->tail = m;
    sub->nmsgs++;
    if (sub->waiter && sub->waiter->kind == WEIR_REDIS_SUB_OP_NEXT) weir_redis_sub_wake(sub, NULL);
}

static int weir_redis_is_str(const redisReply *r) {
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* Every reply on a subscriber connection: confirmations and messages. */
static void weir_redis_sub_on_reply(redisAsyncContext *ac, void *rp, void *privdata) {
    weir_redis_sub *sub = privdata;
    redisReply *r = rp;
    weir_redis_conn *c = ac->data;
    const char *kind;
    if (!r) {
        /* dying context (one NULL per channel): the first one detaches */
        if (c) weir_redis_conn_detach(c, WEIR_REDIS_DETACH_DROP);
        return;
    }
    if (!c || c->sub != sub || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        !weir_redis_is_str(r->element[0]))
        return;
    kind = r->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0 || strcasecmp(kind, "psubscribe") == 0) {
        if (sub->unconfirmed > 0 && --sub->unconfirmed == 0 && sub->waiter &&
            sub->waiter->kind == WEIR_REDIS_SUB_OP_SUBSCRIBE)
            weir_redis_sub_wake(sub, NULL);
        weir_redis_sub_hold(sub);
    } else if (strcasecmp(kind, "message") == 0 && weir_redis_is_str(r->element[1]) &&
               weir_redis_is_str(r->element[2])) {
        weir_redis_sub_push_msg(sub, r->element[1], r->element[2], NULL);
    } else if (strcasecmp(kind, "pmessage") == 0 && r->elements >= 4 &&
               weir_redis_is_str(r->element[1]) && weir_redis_is_str(r->element[2]) &&
               weir_redis_is_str(r->element[3])) {
        weir_redis_sub_push_msg(sub, r->element[2], r->element[3], r->element[1]);
    }
}

/* Sends one (P)SUBSCRIBE with every channel of that kind. */
static int weir_redis_sub_send(weir_redis_sub *sub, int pattern) {
    const char **argv;
    size_t *lens;
    int i, argc = 1, rc;
    for (i = 0; i < sub->nchans; i++) argc += sub->chans[i].pattern == pattern;
    if (argc == 1) return 0;
    argv = malloc((size_t)argc * (sizeof *argv + sizeof *lens));
    if (!argv) return -1;
    lens = (size_t *)(argv + argc);
    argv[0] = pattern ? "PSUBSCRIBE" : "SUBSCRIBE";
    lens[0] = strlen(argv[0]);
    argc = 1;
    for (i = 0; i < sub->nchans; i++) {
        if (sub->chans[i].pattern != pattern) continue;
        argv[argc] = sub->chans[i].name;
        lens[argc++] = sub->chans[i].len;
    }
    rc = redisAsyncCommandArgv(sub->conn->ac, weir_redis_sub_on_reply, sub, argc, argv, lens);
    free(argv);
    if (rc != REDIS_OK) return -1;
    sub->unconfirmed += argc - 1;
    return 0;
}

/* (Re)connects and (re)subscribes to every channel. */
static int weir_redis_sub_connect(weir_redis_sub *sub, weir_redis_error *err) {
    weir_redis_conn *c = sub->conn;
    if (!c) {
        c = weir_redis_conn_new(sub->srv, WEIR_REDIS_SUBSCRIBER_CONN);
        if (!c) {
            weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", sub->srv->name);
            return -1;
        }
        c->sub = sub;
        sub->conn = c;
    }
    weir_redis_conn_check(c);
    if (c->ac) return 0;
    if (weir_redis_conn_connect(c, err) != 0) return -1;
    sub->unconfirmed = 0;
    if (weir_redis_sub_send(sub, 0) != 0 || weir_redis_sub_send(sub, 1) != 0) {
        weir_redis_conn_close_ac(c, "cannot queue SUBSCRIBE", WEIR_REDIS_DETACH_QUIET);
        weir_redis_set_error(err, "memory", 0, "redis %s: out of memory", sub->srv->name);
        return -1;
    }
    sub->srv->stats.commands++;
    weir_redis_sub_hold(sub);
    return 0;
}

static void weir_redis_sub_free(weir_redis_sub *sub) {
    weir_redis_error err;
    int i;
    weir_redis_set_error(&err, "closed", 0, "redis subscriber: closed");
    weir_redis_sub_wake(sub, &err);
    if (sub->conn) {
        weir_redis_conn *c = sub->conn;
        sub->conn = NULL;
        c->sub = NULL;
        weir_redis_conn_discard(c);
    }
    while (sub->head) {
        weir_redis_msg *m = sub->head;
        sub->head = m->next;
        free(m);
    }
    for (i = 0; i < sub->nchans; i++) free(sub->chans[i].name);
    free(sub->chans);
    if (sub->prev) sub->prev->next = sub->next;
    else if (sub->owner->subs == sub) sub->owner->subs = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    free(sub);
}

/* ---- sub ops ---- */

static void weir_redis_sub_op_closed(uv_handle_t *h) { free(h->data); }

static void weir_redis_sub_op_release(weir_op *base) {
    weir_redis_sub_op *op = (weir_redis_sub_op *)base;
    if (op->sub) {
        weir_redis_sub *sub = op->sub;
        op->sub = NULL;
        if (sub->waiter == op) {
            sub->waiter = NULL;
            weir_redis_sub_hold(sub);
        }
        if (op->kind == WEIR_REDIS_SUB_OP_SUBSCRIBE) weir_redis_sub_free(sub);
    }
    free(op->msg);
    op->msg = NULL;
    if (op->has_timer) {
        uv_timer_stop(&op->timer);
        uv_close((uv_handle_t *)&op->timer, weir_redis_sub_op_closed);
    } else {
        free(op);
    }
}

static void weir_redis_sub_op_timeout(uv_timer_t *t) {
    weir_redis_sub_op *op = t->data;
    weir_redis_sub *sub = op->sub;
    if (!sub || sub->waiter != op) return;
    op->timed_out = 1;
    sub->waiter = NULL;
    if (op->kind == WEIR_REDIS_SUB_OP_NEXT) op->sub = NULL;
    weir_redis_sub_hold(sub);
    weir_op_complete(&op->base);
}

static void weir_redis_push_msg(lua_State *L, const weir_redis_msg *m) {
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, m->channel, m->channel_len);
    lua_setfield(L, -2, "channel");
    lua_pushlstring(L, m->payload, m->payload_len);
    lua_setfield(L, -2, "message");
    if (m->pattern) {
        lua_pushlstring(L, m->pattern, m->pattern_len);
        lua_setfield(L, -2, "pattern");
    }
    if (m->dropped) {
        lua_pushinteger(L, (lua_Integer)m->dropped);
        lua_setfield(L, -2, "dropped");
    }
}

static int weir_redis_push_timeout(lua_State *L, const char *what, double seconds) {
    weir_redis_error err;
    weir_redis_set_error(&err, "timeout", 1, "%s: timed out after %g s", what, seconds);
    return weir_redis_push_error(L, &err);
}

static int weir_redis_sub_op_push(lua_State *L, weir_op *base) {
    weir_redis_sub_op *op = (weir_redis_sub_op *)base;
    if (op->failed) return weir_redis_push_error(L, &op->err);
    if (op->kind == WEIR_REDIS_SUB_OP_SUBSCRIBE) {
        weir_redis_sub **ud;
        if (op->timed_out) return weir_redis_push_timeout(L, "client:subscribe", op->timeout);
        ud = lua_newuserdatauv(L, sizeof *ud, 0);
        *ud = op->sub;
        op->sub = NULL;             /* the userdata owns it now */
        luaL_setmetatable(L, WEIR_REDIS_SUBSCRIBER);
        return 1;
    }
    if (!op->msg) return weir_redis_push_timeout(L, "subscriber:next", op->timeout);
    weir_redis_push_msg(L, op->msg);
    return 1;
}

static weir_redis_sub_op *weir_redis_sub_op_new(lua_State *L, weir_redis_sub *sub, int kind,
                                                double timeout, const char *what) {
    weir_redis_sub_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->kind = kind;
    op->sub = sub;
    op->timeout = timeout;
    op->base.push = weir_redis_sub_op_push;
    op->base.cancel = weir_redis_sub_op_release;
    op->base.free = weir_redis_sub_op_release;
    op->base.what = what;
    if (timeout > 0) {
        uv_timer_init(weir_state_of(L)->eng->loop, &op->timer);
        op->timer.data = op;
        op->has_timer = 1;
        uv_timer_start(&op->timer, weir_redis_sub_op_timeout, weir_redis_ms(timeout), 0);
    }
    sub->waiter = op;
    weir_redis_sub_hold(sub);
    return op;
}

/* client:subscribe(channel, ...) / client:psubscribe(pattern, ...) */
static int weir_redis_subscribe(lua_State *L, int pattern, const char *what) {
    weir_redis_client *cl = weir_redis_check_client(L, 1);
    int i, n = lua_gettop(L) - 1;
    weir_redis_sub *sub;
    weir_redis_sub_op *op;
    weir_redis_error err;
    if (n < 1) return luaL_error(L, "%s: expected at least one channel", what);
    for (i = 2; i <= n + 1; i++) luaL_checkstring(L, i);
    weir_job_check(L, what);
    sub = calloc(1, sizeof *sub);
    if (sub) sub->chans = calloc((size_t)n, sizeof *sub->chans);
    if (!sub || !sub->chans) {
        free(sub);
        return luaL_error(L, "%s: out of memory", what);
    }
    sub->owner = cl->srv->owner;
    sub->srv = cl->srv;
    sub->next = sub->owner->subs;
    if (sub->next) sub->next->prev = sub;
    sub->owner->subs = sub;
    for (i = 0; i < n; i++) {
        size_t len;
        const char *name = lua_tolstring(L, i + 2, &len);
        sub->chans[i].name = malloc(len + 1);
        if (!sub->chans[i].name) {
            weir_redis_sub_free(sub);
            return luaL_error(L, "%s: out of memory", what);
        }
        memcpy(sub->chans[i].name, name, len + 1);
        sub->chans[i].len = len;
        sub->chans[i].pattern = pattern;
        sub->nchans++;
    }
    if (weir_redis_sub_connect(sub, &err) != 0) {
        weir_redis_sub_free(sub);
        return weir_redis_push_error(L, &err);
    }
    op = weir_redis_sub_op_new(L, sub, WEIR_REDIS_SUB_OP_SUBSCRIBE,
                               (double)cl->command_timeout_ms / 1000.0, what);
    if (!op) {
        weir_redis_sub_free(sub);
        return luaL_error(L, "%s: out of memory", what);
    }
    return weir_op_yield(L, &op->base);
}

static int weir_redis_l_subscribe(lua_State *L) {
    return weir_redis_subscribe(L, 0, "client:subscribe");
}

static int weir_redis_l_psubscribe(lua_State *L) {
    return weir_redis_subscribe(L, 1, "client:psubscribe");
}

static weir_redis_sub *weir_redis_check_sub(lua_State *L) {
    weir_redis_sub **ud = luaL_checkudata(L, 1, WEIR_REDIS_SUBSCRIBER);
    if (!*ud) luaL_error(L, "redis subscriber: already closed");
    return *ud;
}

/* subscriber:next([timeout]) -> {channel, message [, pattern]} | nil, err */
static int weir_redis_l_sub_next(lua_State *L) {
    weir_redis_sub *sub = weir_redis_check_sub(L);
    double timeout = -1;
    weir_redis_sub_op *op;
    weir_redis_error err;
    if (!lua_isnoneornil(L, 2)) {
        timeout = luaL_checknumber(L, 2);
        if (!(timeout >= 0) || timeout > WEIR_REDIS_MAX_TIMEOUT)
            return luaL_error(L, "subscriber:next: timeout must be between 0 and %f seconds",
                              WEIR_REDIS_MAX_TIMEOUT);
    }
    if (sub->waiter) return luaL_error(L, "subscriber:next: another job is already waiting");
    if (sub->head) {
        weir_redis_msg *m = sub->head;
        weir_redis_push_msg(L, m);      /* may raise: m stays queued until copied */
        sub->head = m->next;
        if (!sub->head) sub->tail = NULL;
        sub->nmsgs--;
        free(m);
        return 1;
    }
    if (sub->failed) {
        sub->failed = 0;
        return weir_redis_push_error(L, &sub->err);
    }
    weir_job_check(L, "subscriber:next");
    if (weir_redis_sub_connect(sub, &err) != 0) return weir_redis_push_error(L, &err);
    if (timeout == 0) return weir_redis_push_timeout(L, "subscriber:next", 0);
    op = weir_redis_sub_op_new(L, sub, WEIR_REDIS_SUB_OP_NEXT, timeout, "subscriber:next");
    if (!op) return luaL_error(L, "subscriber:next: out of memory");
    return weir_op_yield(L, &op->base);
}

static int weir_redis_l_sub_close(lua_State *L) {
    weir_redis_sub **ud = luaL_checkudata(L, 1, WEIR_REDIS_SUBSCRIBER);
    if (*ud) {
        weir_redis_sub *sub = *ud;
        *ud = NULL;
        weir_redis_sub_free(sub);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* module                                                             */
/* ------------------------------------------------------------------ */

int weir_open_redis(lua_State *L) {
    static const luaL_Reg client_methods[] = {
        {"call", weir_redis_l_call},
        {"command", weir_redis_l_command},
        {"pipeline", weir_redis_l_pipeline},
        {"eval", weir_redis_l_eval},
        {"subscribe", weir_redis_l_subscribe},
        {"psubscribe", weir_redis_l_psubscribe},
        {"xreadgroup", weir_redis_l_xreadgroup},
        {"stats", weir_redis_l_stats},
        {"name", weir_redis_l_name},
        {NULL, NULL}};
    static const luaL_Reg pipe_methods[] = {
        {"call", weir_redis_l_pipe_call}, {"command", weir_redis_l_pipe_command}, {NULL, NULL}};
    static const luaL_Reg sub_methods[] = {
        {"next", weir_redis_l_sub_next}, {"close", weir_redis_l_sub_close}, {NULL, NULL}};
    weir_redis_engine *re = weir_redis_engine_of(weir_state_of(L)->eng);
    if (!re) return luaL_error(L, "weir.redis: not initialised on this engine");
    if (luaL_newmetatable(L, WEIR_REDIS_CLIENT)) {
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, weir_redis_l_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, WEIR_REDIS_PIPELINE)) {
        luaL_newlib(L, pipe_methods);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, WEIR_REDIS_SUBSCRIBER)) {
        luaL_newlib(L, sub_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, weir_redis_l_sub_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, weir_redis_l_sub_close);
        lua_setfield(L, -2, "__close");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, re);
    lua_pushcclosure(L, weir_redis_l_connect, 1);
    lua_setfield(L, -2, "connect");
    return 1;
}

int weir_redis_engine_init(weir_engine *e) {
    weir_redis_engine *re = calloc(1, sizeof *re);
    if (!re) return -ENOMEM;
    re->eng = e;
    re->next = weir_redis_engines;
    weir_redis_engines = re;
    return 0;
}

void weir_redis_engine_close(weir_engine *e) {
    weir_redis_engine *re = weir_redis_engine_of(e), **pp;
    if (!re) return;
    re->closing = 1;
    /* states (and their subscribers) are gone already; anything left is
     * closed here, and hiredis fails what is still in flight */
    while (re->subs) weir_redis_sub_free(re->subs);
    while (re->servers) {
        weir_redis_server *s = re->servers;
        while (s->conns) weir_redis_conn_discard(s->conns);
        re->servers = s->next;
        weir_redis_server_free(s);
    }
    for (pp = &weir_redis_engines; *pp; pp = &(*pp)->next) {
        if (*pp == re) {
            *pp = re->next;
            break;
        }
    }
    free(re);
}
