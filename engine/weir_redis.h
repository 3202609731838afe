/*
 * weir_redis.h -- "weir.redis": Redis on the engine's loop through
 * hiredis's async API, plus a small C API for other engine modules (the
 * job queue, the distributed rate limiter).
 *
 * Model: per engine, one weir_redis_server per URL.  A server owns
 *   - one shared connection that pipelines the commands of every job and
 *     module (replies are matched in order by hiredis's callback queue);
 *   - a small pool of dedicated connections for blocking commands (BLPOP,
 *     XREADGROUP ... BLOCK, ...), which would otherwise stall every other
 *     command queued behind them on the shared connection;
 *   - reconnect state: when Redis goes away, commands in flight fail with
 *     a retryable "connection" error; the next command reconnects, with a
 *     bounded, jittered backoff after failed attempts (fail fast meanwhile).
 * Subscribers (Lua only) get a connection of their own.
 *
 * C API contract (weir_redis_send / weir_redis_command / weir_redis_eval):
 *   - the callback runs once per reply, in order, index 0..n-1, with
 *     err == NULL; `reply` may be an error reply (REDIS_REPLY_ERROR) and is
 *     valid only during the call (hiredis frees it afterwards);
 *   - on failure (connection lost, timeout, engine closing) it runs once
 *     with reply == NULL and err set, index = the first reply that will not
 *     come, and never again;
 *   - it never runs from inside the sending call: an immediate failure is
 *     returned as NULL with *err filled, and the callback is not called;
 *   - the returned request is valid until its last callback started;
 *     weir_redis_cancel() before that guarantees no further callback.
 *     Replies of a cancelled command are discarded when they arrive
 *     (Redis cannot un-send a command); a cancelled blocking command's
 *     dedicated connection is closed so it cannot consume data for nobody.
 * Everything runs on the engine's loop thread.
 */
#ifndef WEIR_REDIS_H
#define WEIR_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <lua.h>

#include "weir_engine.h"

typedef struct weir_redis_server weir_redis_server;
typedef struct weir_redis_req weir_redis_req;

typedef struct weir_redis_error {
    const char *kind;       /* static: "connection", "timeout", "busy", "usage",
                               "closed", "memory" */
    int retryable;          /* trying again later may succeed */
    char message[256];      /* names the server (never its password) */
} weir_redis_error;

typedef struct weir_redis_options {
    uint64_t connect_timeout_ms;  /* 0: keep the server's (default 5000) */
} weir_redis_options;

typedef struct weir_redis_cmd {
    int argc;
    const char *const *argv;      /* binary-safe: lengths below */
    const size_t *lens;
} weir_redis_cmd;

typedef struct weir_redis_stats {
    uint64_t connects;            /* connections established */
    uint64_t connect_failures;    /* attempts that failed (refused, timeout, AUTH) */
    uint64_t drops;               /* established connections that went away */
    uint64_t commands;            /* commands sent */
    int connected;                /* the shared connection is up right now */
    int blocking_busy;            /* dedicated connections in use */
    int blocking_idle;            /* dedicated connections pooled */
} weir_redis_stats;

typedef void (*weir_redis_reply_fn)(const redisReply *reply, const weir_redis_error *err,
                                    int index, void *data);

/* The server for `url` on engine e, created on first use (no I/O yet):
 *   redis://[[user]:password@]host[:port][/db]     (host: IP or a name in
 *   unix://[[user]:password@]/path/to/socket[?db=N]  /etc/hosts, see docs)
 * NULL with a message in err (no password in it) for a bad URL, or when
 * the module is not initialised on e.  Owned by the engine. */
weir_redis_server *weir_redis_server_get(weir_engine *e, const char *url,
                                         const weir_redis_options *opts,
                                         char *err, size_t errlen);

/* "127.0.0.1:6379/2" or "unix:/path": for messages and logs. */
const char *weir_redis_server_name(const weir_redis_server *s);

void weir_redis_server_stats(const weir_redis_server *s, weir_redis_stats *out);

/* Sends ncmds commands in one write (a pipeline; no other command can
 * come between them).  timeout_ms = 0: no timeout; otherwise a command
 * without its reply after timeout_ms fails with kind "timeout" and the
 * shared connection is reset (whatever was queued behind it fails with
 * "connection").  Blocking commands go to a dedicated connection and
 * ignore timeout_ms.  Connection-state commands (SELECT, AUTH, MULTI,
 * WATCH, SUBSCRIBE, ...) are refused with kind "usage". */
weir_redis_req *weir_redis_send(weir_redis_server *s, const weir_redis_cmd *cmds, int ncmds,
                                uint64_t timeout_ms, weir_redis_reply_fn fn, void *data,
                                weir_redis_error *err);

/* One command. */
weir_redis_req *weir_redis_command(weir_redis_server *s, int argc, const char *const *argv,
                                   const size_t *lens, uint64_t timeout_ms,
                                   weir_redis_reply_fn fn, void *data, weir_redis_error *err);

/* EVALSHA sha1(script) nkeys keys... args...; on NOSCRIPT (script cache
 * empty, e.g. after a restart) the same call is re-sent as EVAL once.
 * One reply. */
weir_redis_req *weir_redis_eval(weir_redis_server *s, const char *script, size_t script_len,
                                int nkeys, const char *const *keys, const size_t *key_lens,
                                int nargs, const char *const *args, const size_t *arg_lens,
                                uint64_t timeout_ms, weir_redis_reply_fn fn, void *data,
                                weir_redis_error *err);

/* No callback will run for r after this.  See the contract above. */
void weir_redis_cancel(weir_redis_req *r);

/* 1 when the command blocks the connection (BLPOP, BRPOP, BLMOVE,
 * BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX, BZMPOP, WAIT, WAITAOF, XREAD or
 * XREADGROUP with BLOCK). */
int weir_redis_is_blocking(int argc, const char *const *argv, const size_t *lens);

/* Module entry points (weir_modules.c). */
int weir_open_redis(lua_State *L);
int weir_redis_engine_init(weir_engine *e);
void weir_redis_engine_close(weir_engine *e);

#endif
