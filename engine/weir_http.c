/*
 * weir_http.c -- the "weir.http" module: libcurl's multi_socket API on the
 * engine's libuv loop.
 *
 * One CURLM per engine.  curl tells us which sockets to watch
 * (SOCKETFUNCTION -> one uv_poll_t per socket) and when to call it back
 * (TIMERFUNCTION -> one uv_timer_t); both feed curl_multi_socket_action,
 * after which finished transfers are drained from curl_multi_info_read and
 * their ops completed.  weir_op_complete() only queues the job: Lua is
 * never resumed from inside a curl callback.
 *
 * Socket bookkeeping.  curl may close a socket before it reports
 * CURL_POLL_REMOVE, and libuv aborts when it finds a watched fd closed
 * (EBADF/ENOENT from epoll_ctl).  So:
 *   - poll contexts live in an fd-indexed table owned by this module, not
 *     behind curl_multi_assign(): the pointer curl would hand back can be
 *     stale once we dropped the context ourselves;
 *   - CURLOPT_CLOSESOCKETFUNCTION closes the uv_poll_t (which deregisters
 *     the fd from epoll synchronously) before it closes the fd;
 *   - for sockets curl closes without that callback (the threaded
 *     resolver's wake-up pair), every SOCKETFUNCTION call checks that the
 *     fd still names the socket the poll was started on (device + inode)
 *     and starts a fresh poll handle when it does not.
 *
 * Op lifetime: the op owns its easy handle until it is freed.  It leaves
 * the multi when the transfer finishes (drain) or when it is cancelled.
 * While arguments are parsed the op is owned by a guard userdata, so a
 * Lua error at any point frees it (at collection) instead of leaking it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "weir_http.h"
#include "weir_job.h"
#include "weir_json.h"
#include "weir_state.h"

#define WEIR_HTTP_DEFAULT_TIMEOUT      30.0
#define WEIR_HTTP_DEFAULT_MAX_BODY     ((lua_Integer)64 * 1024 * 1024)
#define WEIR_HTTP_DEFAULT_REDIRECTS    10
/* Idle connections kept for reuse across requests (all hosts). */
#define WEIR_HTTP_MAXCONNECTS          256L
/* Largest accepted timeout: keeps seconds * 1000 inside a long. */
#define WEIR_HTTP_MAX_TIMEOUT          (100.0 * 24 * 3600)
#define WEIR_HTTP_BODY_MIN_CAP         16384
#define WEIR_HTTP_USER_AGENT           "weir/" WEIR_VERSION

#define WEIR_HTTP_RESPONSE_MT "weir.http.response"
#define WEIR_HTTP_GUARD_MT    "weir.http.guard"

typedef struct weir_http weir_http;
typedef struct weir_http_sock weir_http_sock;
typedef struct weir_http_op weir_http_op;
typedef struct weir_http_key weir_http_key;

/* A query key (owned by the Lua table being read). */
struct weir_http_key {
    const char *s;
    size_t len;
};

/* A socket curl asked us to watch. */
struct weir_http_sock {
    uv_poll_t poll;
    weir_http *h;
    curl_socket_t fd;
    dev_t dev;                  /* identity of the socket behind fd */
    ino_t ino;
};

/* Per-engine state (engine->http). */
struct weir_http {
    weir_engine *eng;
    CURLM *multi;
    uv_timer_t timer;
    weir_http_sock **socks;     /* indexed by fd */
    size_t nsocks;
    weir_http_op *ops;          /* transfers in the multi */
    int open_handles;           /* uv handles not closed yet (timer, polls) */
    int closing;
};

struct weir_http_op {
    weir_op base;               /* first: the job layer sees a weir_op */
    weir_http *h;               /* NULL once the engine closed */
    CURL *easy;
    CURLU *curlu;               /* the request URL while it is built */
    struct curl_slist *req_headers;
    char *req_body;             /* POSTFIELDS are not copied by curl */
    size_t req_body_len;
    char *url;                  /* requested URL with the query */
    weir_http_key *keys;        /* scratch: sorted query keys */
    char *query;                /* scratch: encoded query= pairs */
    size_t query_len, query_cap;

    char *body;                 /* response body, grows as it arrives */
    size_t body_len, body_cap;
    size_t max_body;

    int in_multi;
    int too_large;
    int out_of_memory;
    CURLcode result;
    char errbuf[CURL_ERROR_SIZE];
    weir_http_op *prev, *next;  /* h->ops */
};

typedef struct weir_http_guard {
    weir_http_op *op;
} weir_http_guard;

static void weir_http_drain(weir_http *h);

/* ------------------------------------------------------------------ */
/* Engine resources                                                   */
/* ------------------------------------------------------------------ */

static void weir_http_maybe_free(weir_http *h) {
    if (h->closing && h->open_handles == 0) {
        free(h->socks);
        free(h);
        curl_global_cleanup();
    }
}

static void weir_http_on_handle_closed(uv_handle_t *handle) {
    weir_http *h;
    if (handle->type == UV_POLL) {
        weir_http_sock *s = handle->data;
        h = s->h;
        free(s);
    } else {
        h = handle->data;
    }
    h->open_handles--;
    weir_http_maybe_free(h);
}

static weir_http_sock *weir_http_sock_get(weir_http *h, curl_socket_t fd) {
    if (fd < 0 || (size_t)fd >= h->nsocks)
        return NULL;
    return h->socks[fd];
}

/* Closing the poll handle deregisters fd from epoll at once (while the
 * fd is still open); the memory goes in the close callback. */
static void weir_http_sock_release(weir_http *h, weir_http_sock *s) {
    h->socks[s->fd] = NULL;
    uv_close((uv_handle_t *)&s->poll, weir_http_on_handle_closed);
}

static int weir_http_sock_identify(curl_socket_t fd, dev_t *dev, ino_t *ino) {
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    *dev = sb.st_dev;
    *ino = sb.st_ino;
    return 0;
}

/* Does fd still name the socket s was started on? */
static int weir_http_sock_current(const weir_http_sock *s) {
    dev_t dev;
    ino_t ino;
    if (weir_http_sock_identify(s->fd, &dev, &ino) != 0)
        return 0;
    return dev == s->dev && ino == s->ino;
}

static int weir_http_socks_reserve(weir_http *h, curl_socket_t fd) {
    size_t want, n;
    weir_http_sock **grown;
    if ((size_t)fd < h->nsocks)
        return 0;
    want = (size_t)fd + 1;
    n = h->nsocks ? h->nsocks : 64;
    while (n < want)
        n *= 2;
    grown = realloc(h->socks, n * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + h->nsocks, 0, (n - h->nsocks) * sizeof *grown);
    h->socks = grown;
    h->nsocks = n;
    return 0;
}

/* Returns the new context, NULL on failure; *gone is set when the fd is
 * already closed (nothing to watch). */
static weir_http_sock *weir_http_sock_new(weir_http *h, curl_socket_t fd,
                                          int *gone) {
    weir_http_sock *s;
    *gone = 0;
    if (fd < 0 || weir_http_socks_reserve(h, fd) != 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->h = h;
    s->fd = fd;
    if (weir_http_sock_identify(fd, &s->dev, &s->ino) != 0) {
        *gone = 1;
        free(s);
        return NULL;
    }
    if (uv_poll_init_socket(h->eng->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    s->poll.data = s;
    h->open_handles++;
    h->socks[fd] = s;
    return s;
}

static void weir_http_on_poll(uv_poll_t *poll, int status, int events) {
    weir_http_sock *s = poll->data;
    weir_http *h = s->h;
    curl_socket_t fd = s->fd;   /* s may be freed by socket_action */
    int flags = 0, running;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(h->multi, fd, flags, &running);
    weir_http_drain(h);
}

/* CURLMOPT_SOCKETFUNCTION */
static int weir_http_on_socket(CURL *easy, curl_socket_t fd, int what,
                               void *userp, void *socketp) {
    weir_http *h = userp;
    weir_http_sock *s = weir_http_sock_get(h, fd);
    int events = 0, gone;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            weir_http_sock_release(h, s);
        return 0;
    }
    if (s && !weir_http_sock_current(s)) {
        /* fd was closed behind our back and maybe reused: the old handle
         * must not be modified (epoll_ctl would fail and libuv abort). */
        weir_http_sock_release(h, s);
        s = NULL;
    }
    if (!s) {
        s = weir_http_sock_new(h, fd, &gone);
        if (!s)
            return gone ? 0 : -1;  /* -1: curl fails the transfers */
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, weir_http_on_poll) == 0 ? 0 : -1;
}

/* CURLOPT_CLOSESOCKETFUNCTION: stop watching before the fd goes away. */
static int weir_http_on_closesocket(void *clientp, curl_socket_t fd) {
    weir_http *h = clientp;
    weir_http_sock *s = weir_http_sock_get(h, fd);
    if (s)
        weir_http_sock_release(h, s);
    return close(fd);
}

static void weir_http_on_timeout(uv_timer_t *timer) {
    weir_http *h = timer->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    weir_http_drain(h);
}

/* CURLMOPT_TIMERFUNCTION: never call socket_action from here (curl is
 * not re-entrant); a 0 ms timer runs it on the next loop turn. */
static int weir_http_on_timer_set(CURLM *multi, long timeout_ms, void *userp) {
    weir_http *h = userp;
    if (timeout_ms < 0)
        return uv_timer_stop(&h->timer) == 0 ? 0 : -1;
    return uv_timer_start(&h->timer, weir_http_on_timeout,
                          (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* 1,000 requests in flight need 1,000 sockets: lift the soft fd limit to
 * the hard one when it is lower (never lowers anything). */
static void weir_http_raise_nofile(void) {
    struct rlimit rl;
    rlim_t want;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && want > 65536) {
            rl.rlim_cur = 65536;    /* nr_open may be below "infinity" */
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

int weir_http_engine_init(weir_engine *e) {
    weir_http *h;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    weir_http_raise_nofile();
    h = calloc(1, sizeof *h);
    if (!h) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    h->eng = e;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        curl_global_cleanup();
        return -ENOMEM;
    }
    uv_timer_init(e->loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, weir_http_on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, weir_http_on_timer_set);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, WEIR_HTTP_MAXCONNECTS);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    e->http = h;
    return 0;
}

static void weir_http_op_unlink(weir_http_op *op) {
    weir_http *h = op->h;
    if (op->prev)
        op->prev->next = op->next;
    else
        h->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* Takes the transfer out of the multi (stops its I/O). */
static void weir_http_op_detach(weir_http_op *op) {
    if (!op->in_multi)
        return;
    op->in_multi = 0;
    if (op->h) {
        curl_multi_remove_handle(op->h->multi, op->easy);
        weir_http_op_unlink(op);
    }
}

void weir_http_engine_close(weir_engine *e) {
    weir_http *h = e->http;
    size_t i;
    if (!h)
        return;
    e->http = NULL;
    h->closing = 1;
    /* Ops still in flight belong to jobs the engine frees later: detach
     * them so they never touch h again. */
    while (h->ops) {
        weir_http_op *op = h->ops;
        weir_http_op_detach(op);
        op->h = NULL;
    }
    /* Closes cached connections through weir_http_on_closesocket. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    for (i = 0; i < h->nsocks; i++)
        if (h->socks[i])
            weir_http_sock_release(h, h->socks[i]);
    uv_close((uv_handle_t *)&h->timer, weir_http_on_handle_closed);
}

/* ------------------------------------------------------------------ */
/* Ops                                                                */
/* ------------------------------------------------------------------ */

static void weir_http_op_destroy(weir_http_op *op) {
    weir_http_op_detach(op);
    if (op->easy)
        curl_easy_cleanup(op->easy);
    if (op->curlu)
        curl_url_cleanup(op->curlu);
    curl_slist_free_all(op->req_headers);
    free(op->req_body);
    free(op->url);
    free(op->keys);
    free(op->query);
    free(op->body);
    free(op);
}

static void weir_http_op_free(weir_op *base) {
    weir_http_op_destroy((weir_http_op *)base);
}

/* The job was killed or timed out mid-request: stop and free. */
static void weir_http_op_cancel(weir_op *base) {
    weir_http_op_destroy((weir_http_op *)base);
}

static void weir_http_drain(weir_http *h) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        char *priv = NULL;
        weir_http_op *op;
        CURLcode result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        result = msg->data.result;  /* msg dies with remove_handle */
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        op = (weir_http_op *)(void *)priv;
        if (!op)
            continue;
        weir_http_op_detach(op);
        op->result = result;
        weir_op_complete(&op->base);
    }
}

/* CURLOPT_WRITEFUNCTION: the body accumulates in a C buffer; past
 * max_body the transfer is aborted. */
static size_t weir_http_on_write(char *data, size_t size, size_t nmemb,
                                 void *userp) {
    weir_http_op *op = userp;
    size_t len = size * nmemb;
    if (len > op->max_body - op->body_len) {
        op->too_large = 1;
        return CURL_WRITEFUNC_ERROR;
    }
    if (op->body_len + len > op->body_cap) {
        size_t need = op->body_len + len;
        size_t cap = op->body_cap ? op->body_cap : WEIR_HTTP_BODY_MIN_CAP;
        char *grown;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > op->max_body && need <= op->max_body)
            cap = op->max_body;
        grown = realloc(op->body, cap);
        if (!grown) {
            op->out_of_memory = 1;
            return CURL_WRITEFUNC_ERROR;
        }
        op->body = grown;
        op->body_cap = cap;
    }
    memcpy(op->body + op->body_len, data, len);
    op->body_len += len;
    return len;
}

/* ------------------------------------------------------------------ */
/* Results                                                            */
/* ------------------------------------------------------------------ */

typedef struct weir_http_kind {
    const char *kind;
    int retryable;
} weir_http_kind;

static weir_http_kind weir_http_classify(const weir_http_op *op) {
    weir_http_kind k = {"protocol", 0};
    if (op->too_large)
        return (weir_http_kind){"too_large", 0};
    if (op->out_of_memory)
        return (weir_http_kind){"memory", 0};
    switch (op->result) {
    case CURLE_OPERATION_TIMEDOUT:
        return (weir_http_kind){"timeout", 1};
    case CURLE_COULDNT_CONNECT:
    case CURLE_PROXY:
        return (weir_http_kind){"connect", 1};
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return (weir_http_kind){"dns", 1};
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return (weir_http_kind){"tls", 0};
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return (weir_http_kind){"network", 1};
    case CURLE_FILESIZE_EXCEEDED:
        return (weir_http_kind){"too_large", 0};
    case CURLE_TOO_MANY_REDIRECTS:
        return (weir_http_kind){"redirects", 0};
    case CURLE_OUT_OF_MEMORY:
        return (weir_http_kind){"memory", 0};
    case CURLE_ABORTED_BY_CALLBACK:
        return (weir_http_kind){"aborted", 0};
    default:
        return k;
    }
}

/* Stack: +1 (the error table). */
static void weir_http_push_error(lua_State *L, weir_http_op *op) {
    weir_http_kind k = weir_http_classify(op);
    const char *url = NULL;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, k.kind);
    lua_setfield(L, -2, "kind");
    if (op->too_large || op->result == CURLE_FILESIZE_EXCEEDED)
        lua_pushfstring(L, "response body larger than max_body (%I bytes)",
                        (lua_Integer)op->max_body);
    else if (op->out_of_memory)
        lua_pushliteral(L, "out of memory buffering the response body");
    else if (op->errbuf[0])
        lua_pushstring(L, op->errbuf);
    else
        lua_pushstring(L, curl_easy_strerror(op->result));
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, k.retryable);
    lua_setfield(L, -2, "retryable");
    curl_easy_getinfo(op->easy, CURLINFO_EFFECTIVE_URL, &url);
    lua_pushstring(L, url ? url : op->url);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, (lua_Integer)op->result);
    lua_setfield(L, -2, "curl_code");
}

/* Pushes the name lower-cased.  Stack: +1. */
static void weir_http_push_lower(lua_State *L, const char *name) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; *name; name++)
        luaL_addchar(&b, (char)tolower((unsigned char)*name));
    luaL_pushresult(&b);
}

/* Response headers of the last response (after redirects): lower-cased
 * names; repeats joined with ", ", except set-cookie (an array: cookie
 * values may themselves contain commas).  Stack: +1. */
static void weir_http_push_headers(lua_State *L, CURL *easy) {
    struct curl_header *hd = NULL;
    lua_newtable(L);
    while ((hd = curl_easy_nextheader(easy, CURLH_HEADER, -1, hd))) {
        weir_http_push_lower(L, hd->name);          /* t name */
        if (strcmp(lua_tostring(L, -1), "set-cookie") == 0) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) != LUA_TTABLE) {  /* t name old */
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -2);
                lua_pushvalue(L, -2);
                lua_rawset(L, -5);                  /* t name arr */
            }
            lua_pushstring(L, hd->value);
            lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
            lua_pop(L, 2);
            continue;
        }
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {     /* t name old */
            lua_pushliteral(L, ", ");
            lua_pushstring(L, hd->value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, hd->value);
        }
        lua_rawset(L, -3);
    }
}

/* Runs in the job's coroutine: an allocation failure here is an
 * ordinary Lua error.  Returns response | nil, err. */
static int weir_http_push(lua_State *L, weir_op *base) {
    weir_http_op *op = (weir_http_op *)base;
    long status = 0;
    const char *url = NULL;
    curl_off_t elapsed_us = 0;

    if (op->result != CURLE_OK || op->too_large || op->out_of_memory) {
        lua_pushnil(L);
        weir_http_push_error(L, op);
        return 2;
    }
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(op->easy, CURLINFO_EFFECTIVE_URL, &url);
    curl_easy_getinfo(op->easy, CURLINFO_TOTAL_TIME_T, &elapsed_us);

    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    weir_http_push_headers(L, op->easy);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, op->body ? op->body : "", op->body_len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, url ? url : op->url);
    lua_setfield(L, -2, "url");
    lua_pushnumber(L, (lua_Number)elapsed_us / 1e6);
    lua_setfield(L, -2, "elapsed");
    luaL_setmetatable(L, WEIR_HTTP_RESPONSE_MT);
    return 1;
}

/* response:json() */
static int weir_http_response_json(lua_State *L) {
    size_t len;
    const char *body;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "body");
    body = lua_tolstring(L, -1, &len);
    if (!body)
        return luaL_error(L, "response:json(): the response has no string body");
    if (weir_json_decode(L, body, len) != 0)
        return luaL_error(L, "response:json(): body is not valid JSON: %s",
                          lua_tostring(L, -1));
    return 1;
}

/* ------------------------------------------------------------------ */
/* Arguments                                                          */
/* ------------------------------------------------------------------ */

static const char *const weir_http_fields[] = {
    "method", "url", "query", "headers", "body", "json", "timeout",
    "connect_timeout", "max_body", "follow_redirects", NULL
};

static int weir_http_guard_gc(lua_State *L) {
    weir_http_guard *g = luaL_checkudata(L, 1, WEIR_HTTP_GUARD_MT);
    if (g->op) {
        weir_http_op_destroy(g->op);
        g->op = NULL;
    }
    return 0;
}

static int weir_http_is_tchar(int c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int weir_http_is_token(const char *s, size_t len) {
    size_t i;
    if (len == 0)
        return 0;
    for (i = 0; i < len; i++)
        if (!weir_http_is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

static void weir_http_check_known_fields(lua_State *L, int opts) {
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        int i, known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "http.request: option keys must be strings (got %s)",
                       luaL_typename(L, -1));
        for (i = 0; weir_http_fields[i]; i++)
            if (strcmp(lua_tostring(L, -1), weir_http_fields[i]) == 0)
                known = 1;
        if (!known)
            luaL_error(L, "http.request: unknown field '%s'", lua_tostring(L, -1));
    }
}

/* Field as a positive number of seconds -> milliseconds; 0 when absent. */
static long weir_http_opt_ms(lua_State *L, int opts, const char *field,
                             double dflt) {
    double secs = dflt;
    int t = lua_getfield(L, opts, field);
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER)
            luaL_error(L, "http.request: field '%s' must be a number (got %s)",
                       field, luaL_typename(L, -1));
        secs = (double)lua_tonumber(L, -1);
        if (!(secs > 0) || secs > WEIR_HTTP_MAX_TIMEOUT)
            luaL_error(L, "http.request: field '%s' must be a positive number "
                       "of seconds (at most %d)", field,
                       (int)WEIR_HTTP_MAX_TIMEOUT);
    }
    lua_pop(L, 1);
    if (secs <= 0)
        return 0;
    return secs * 1000 < 1 ? 1 : (long)ceil(secs * 1000);
}

static lua_Integer weir_http_opt_max_body(lua_State *L, int opts) {
    lua_Integer n = WEIR_HTTP_DEFAULT_MAX_BODY;
    int t = lua_getfield(L, opts, "max_body"), isint;
    if (t != LUA_TNIL) {
        n = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint || n < 0)
            luaL_error(L, "http.request: field 'max_body' must be a "
                       "non-negative integer (bytes)");
    }
    lua_pop(L, 1);
    return n;
}

/* -> max redirects; 0 = do not follow. */
static long weir_http_opt_redirects(lua_State *L, int opts) {
    long n = 0;
    int t = lua_getfield(L, opts, "follow_redirects"), isint;
    if (t == LUA_TBOOLEAN) {
        n = lua_toboolean(L, -1) ? WEIR_HTTP_DEFAULT_REDIRECTS : 0;
    } else if (t != LUA_TNIL) {
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint || v < 0 || v > 1000)
            luaL_error(L, "http.request: field 'follow_redirects' must be a "
                       "boolean or a number of hops (0 to 1000)");
        n = (long)v;
    }
    lua_pop(L, 1);
    return n;
}

/* Upper-cased method; GET when absent.  Stack: +1 (the method). */
static const char *weir_http_opt_method(lua_State *L, int opts) {
    size_t len, i;
    const char *m;
    luaL_Buffer b;
    int t = lua_getfield(L, opts, "method");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "GET");
        return lua_tostring(L, -1);
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "http.request: field 'method' must be a string (got %s)",
                   luaL_typename(L, -1));
    m = lua_tolstring(L, -1, &len);
    if (!weir_http_is_token(m, len))
        luaL_error(L, "http.request: field 'method' is not a valid HTTP "
                   "method: '%s'", m);
    luaL_buffinit(L, &b);
    for (i = 0; i < len; i++)
        luaL_addchar(&b, (char)toupper((unsigned char)m[i]));
    luaL_pushresult(&b);
    lua_remove(L, -2);
    return lua_tostring(L, -1);
}

static void weir_http_oom(lua_State *L) {
    luaL_error(L, "http.request: out of memory");
}

/* The value at top as a query / header string (strings, numbers,
 * booleans when allow_bool).  Converts a copy, never the table entry.
 * Stack: +1. */
static const char *weir_http_scalar(lua_State *L, int allow_bool, size_t *len) {
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, -1);
        return lua_tolstring(L, -1, len);
    case LUA_TBOOLEAN:
        if (allow_bool) {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            return lua_tolstring(L, -1, len);
        }
        return NULL;
    default:
        return NULL;
    }
}

static int weir_http_query_add(weir_http_op *op, const char *s) {
    size_t len = strlen(s);
    if (op->query_len + len + 1 > op->query_cap) {
        size_t cap = op->query_cap ? op->query_cap : 256;
        char *grown;
        while (cap < op->query_len + len + 1)
            cap *= 2;
        grown = realloc(op->query, cap);
        if (!grown)
            return -1;
        op->query = grown;
        op->query_cap = cap;
    }
    memcpy(op->query + op->query_len, s, len + 1);
    op->query_len += len;
    return 0;
}

/* Percent-encoding is curl's (upper-case hex, as RFC 3986 recommends;
 * CURLU would lower-case it, which breaks request signatures). */
static void weir_http_append_pair(lua_State *L, weir_http_op *op,
                                  const char *key, size_t klen,
                                  const char *val, size_t vlen) {
    char *ek = curl_easy_escape(op->easy, key, (int)klen);
    char *ev = curl_easy_escape(op->easy, val, (int)vlen);
    int failed = !ek || !ev ||
                 (op->query_len > 0 && weir_http_query_add(op, "&") != 0) ||
                 weir_http_query_add(op, ek) != 0 ||
                 weir_http_query_add(op, "=") != 0 ||
                 weir_http_query_add(op, ev) != 0;
    curl_free(ek);
    curl_free(ev);
    if (failed)
        weir_http_oom(L);
}

/* Appends the value at top (scalar or array of scalars) as key=value. */
static void weir_http_append_query_value(lua_State *L, weir_http_op *op,
                                         const char *key, size_t klen) {
    size_t vlen;
    const char *v;
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            v = weir_http_scalar(L, 1, &vlen);
            if (!v)
                luaL_error(L, "http.request: query value '%s'[%I] must be a "
                           "string, number or boolean", key, i);
            weir_http_append_pair(L, op, key, klen, v, vlen);
            lua_pop(L, 2);
        }
        return;
    }
    v = weir_http_scalar(L, 1, &vlen);
    if (!v)
        luaL_error(L, "http.request: query value '%s' must be a string, "
                   "number, boolean or array of them (got %s)", key,
                   luaL_typename(L, -1));
    weir_http_append_pair(L, op, key, klen, v, vlen);
    lua_pop(L, 1);
}

static int weir_http_key_cmp(const void *a, const void *b) {
    const weir_http_key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Appends query= (table at qidx) to the URL, keys sorted so the same
 * table always gives the same URL. */
static void weir_http_build_query(lua_State *L, weir_http_op *op, int qidx) {
    size_t n = 0, i;
    lua_pushnil(L);
    while (lua_next(L, qidx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "http.request: field 'query' must have string keys "
                       "(got %s)", luaL_typename(L, -1));
        n++;
    }
    if (n == 0)
        return;
    op->keys = calloc(n, sizeof *op->keys);
    if (!op->keys)
        weir_http_oom(L);
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, qidx)) {     /* keys stay alive: the table holds them */
        lua_pop(L, 1);
        op->keys[i].s = lua_tolstring(L, -1, &op->keys[i].len);
        i++;
    }
    qsort(op->keys, n, sizeof *op->keys, weir_http_key_cmp);
    for (i = 0; i < n; i++) {
        lua_pushlstring(L, op->keys[i].s, op->keys[i].len);
        lua_rawget(L, qidx);
        weir_http_append_query_value(L, op, op->keys[i].s, op->keys[i].len);
    }
}

/* Inserts op->query into op->url before any fragment, after "?" or
 * "&" as the URL needs. */
static void weir_http_join_query(lua_State *L, weir_http_op *op) {
    const char *full = op->url, *hash = strchr(full, '#');
    size_t head = hash ? (size_t)(hash - full) : strlen(full);
    const char *q = memchr(full, '?', head);
    const char *sep = !q ? "?" : (full[head - 1] == '?' || full[head - 1] == '&')
                                 ? "" : "&";
    size_t n = head + strlen(sep) + op->query_len + strlen(full + head) + 1;
    char *joined = malloc(n);
    if (!joined)
        weir_http_oom(L);
    snprintf(joined, n, "%.*s%s%s%s", (int)head, full, sep, op->query,
             full + head);
    free(op->url);
    op->url = joined;
}

/* URL + query -> op->url.  The URL parser is curl's (CURLU). */
static void weir_http_build_url(lua_State *L, weir_http_op *op, int opts) {
    char *full = NULL, *scheme = NULL, scheme_copy[32];
    CURLUcode uc;
    if (lua_getfield(L, opts, "url") != LUA_TSTRING)
        luaL_error(L, "http.request: field 'url' must be a string (got %s)",
                   luaL_typename(L, -1));
    op->curlu = curl_url();
    if (!op->curlu)
        weir_http_oom(L);
    uc = curl_url_set(op->curlu, CURLUPART_URL, lua_tostring(L, -1), 0);
    if (uc != CURLUE_OK)
        luaL_error(L, "http.request: field 'url' is not a valid URL (%s): %s",
                   curl_url_strerror(uc), lua_tostring(L, -1));
    if (curl_url_get(op->curlu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        weir_http_oom(L);
    snprintf(scheme_copy, sizeof scheme_copy, "%s", scheme);
    curl_free(scheme);      /* before anything can raise */
    if (strcmp(scheme_copy, "https") != 0 && strcmp(scheme_copy, "http") != 0)
        luaL_error(L, "http.request: field 'url' must be an http or https URL "
                   "(got scheme '%s')", scheme_copy);
    lua_pop(L, 1);

    switch (lua_getfield(L, opts, "query")) {
    case LUA_TNIL:
        break;
    case LUA_TTABLE:
        weir_http_build_query(L, op, lua_gettop(L));
        break;
    default:
        luaL_error(L, "http.request: field 'query' must be a table (got %s)",
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);

    if (curl_url_get(op->curlu, CURLUPART_URL, &full, 0) != CURLUE_OK)
        weir_http_oom(L);
    op->url = strdup(full);
    curl_free(full);
    if (!op->url)
        weir_http_oom(L);
    if (op->query_len > 0)
        weir_http_join_query(L, op);
}

typedef struct weir_http_hdr_flags {
    int content_type, expect;
} weir_http_hdr_flags;

static void weir_http_add_raw_header(lua_State *L, weir_http_op *op,
                                     const char *line) {
    struct curl_slist *grown = curl_slist_append(op->req_headers, line);
    if (!grown)
        weir_http_oom(L);
    op->req_headers = grown;
}

static void weir_http_add_header(lua_State *L, weir_http_op *op,
                                 const char *name, const char *value,
                                 size_t vlen) {
    size_t i;
    for (i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            luaL_error(L, "http.request: header '%s' contains a line break "
                       "or NUL byte", name);
    /* "Name:" would remove curl's header; "Name;" sends it empty. */
    if (vlen == 0)
        lua_pushfstring(L, "%s;", name);
    else
        lua_pushfstring(L, "%s: %s", name, value);
    weir_http_add_raw_header(L, op, lua_tostring(L, -1));
    lua_pop(L, 1);
}

static void weir_http_add_header_value(lua_State *L, weir_http_op *op,
                                       const char *name) {
    size_t vlen;
    const char *v = weir_http_scalar(L, 0, &vlen);
    if (!v)
        luaL_error(L, "http.request: header '%s' must be a string, number or "
                   "array of them (got %s)", name, luaL_typename(L, -1));
    weir_http_add_header(L, op, name, v, vlen);
    lua_pop(L, 1);
}

static void weir_http_build_headers(lua_State *L, weir_http_op *op, int opts,
                                    weir_http_hdr_flags *fl) {
    int hidx;
    int t = lua_getfield(L, opts, "headers");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "http.request: field 'headers' must be a table (got %s)",
                   luaL_typename(L, -1));
    hidx = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, hidx)) {         /* key value */
        size_t nlen;
        const char *name;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "http.request: field 'headers' must have string "
                       "keys (got %s)", luaL_typename(L, -2));
        name = lua_tolstring(L, -2, &nlen);
        if (!weir_http_is_token(name, nlen))
            luaL_error(L, "http.request: '%s' is not a valid header name", name);
        if (strcasecmp(name, "content-type") == 0)
            fl->content_type = 1;
        if (strcasecmp(name, "expect") == 0)
            fl->expect = 1;
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
            for (i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                weir_http_add_header_value(L, op, name);
                lua_pop(L, 1);
            }
        } else {
            weir_http_add_header_value(L, op, name);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* body= or json= -> op->req_body.  Returns 1 when there is a body. */
static int weir_http_build_body(lua_State *L, weir_http_op *op, int opts,
                                int *is_json) {
    size_t len;
    const char *s;
    int tb = lua_getfield(L, opts, "body");
    int tj = lua_getfield(L, opts, "json");
    *is_json = 0;
    if (tb != LUA_TNIL && tj != LUA_TNIL)
        luaL_error(L, "http.request: fields 'body' and 'json' are exclusive");
    if (tb == LUA_TNIL && tj == LUA_TNIL) {
        lua_pop(L, 2);
        return 0;
    }
    if (tj != LUA_TNIL) {
        weir_json_encode(L, -1, 0);     /* raises naming the bad value */
        *is_json = 1;
    } else if (tb != LUA_TSTRING) {
        luaL_error(L, "http.request: field 'body' must be a string (got %s)",
                   luaL_typename(L, -2));
    } else {
        lua_pushvalue(L, -2);
    }
    s = lua_tolstring(L, -1, &len);
    op->req_body = malloc(len ? len : 1);
    if (!op->req_body)
        weir_http_oom(L);
    memcpy(op->req_body, s, len);
    op->req_body_len = len;
    lua_pop(L, 3);
    return 1;
}

static void weir_http_set_method(weir_http_op *op, const char *method,
                                 int has_body) {
    CURL *c = op->easy;
    int is_post = strcmp(method, "POST") == 0;
    if (!has_body && (is_post || strcmp(method, "PUT") == 0 ||
                      strcmp(method, "PATCH") == 0)) {
        /* Send "Content-Length: 0" rather than no length at all. */
        op->req_body = malloc(1);
        has_body = op->req_body != NULL;
        op->req_body_len = 0;
    }
    if (has_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)op->req_body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, op->req_body);
        /* POST stays curl's own (so 301-303 redirects turn it into GET
         * like browsers do); other methods ride on the body. */
        if (!is_post)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
}

static void weir_http_set_common(weir_http_op *op, weir_http *h) {
    CURL *c = op->easy;
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)op);
    curl_easy_setopt(c, CURLOPT_URL, op->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, op->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, weir_http_on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, op);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, weir_http_on_closesocket);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, h);
    /* Scripts must not read file://, talk gopher:// to internal hosts... */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->eng->cfg.ca_bundle)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->eng->cfg.ca_bundle);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  /* all built in */
    curl_easy_setopt(c, CURLOPT_USERAGENT, WEIR_HTTP_USER_AGENT);
}

/* http.request{...} -> response | nil, err */
static int weir_http_request(lua_State *L) {
    weir_job *job = weir_job_check(L, "http.request");
    weir_http *h = weir_state_of(L)->eng->http;
    weir_http_guard *g;
    weir_http_op *op;
    weir_http_hdr_flags fl = {0, 0};
    const char *method;
    long timeout_ms, connect_ms, redirects;
    lua_Integer max_body;
    int has_body, is_json;
    (void)job;

    if (!h)
        return luaL_error(L, "http.request: the HTTP client is not available "
                          "(engine closing)");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    weir_http_check_known_fields(L, 1);
    method = weir_http_opt_method(L, 1);            /* stays at index 2 */
    timeout_ms = weir_http_opt_ms(L, 1, "timeout", WEIR_HTTP_DEFAULT_TIMEOUT);
    connect_ms = weir_http_opt_ms(L, 1, "connect_timeout", 0);
    max_body = weir_http_opt_max_body(L, 1);
    redirects = weir_http_opt_redirects(L, 1);

    /* From here C memory exists: the guard frees it if anything raises. */
    g = lua_newuserdatauv(L, sizeof *g, 0);
    g->op = NULL;
    luaL_setmetatable(L, WEIR_HTTP_GUARD_MT);
    op = calloc(1, sizeof *op);
    if (!op)
        weir_http_oom(L);
    g->op = op;
    op->h = h;
    op->max_body = (size_t)max_body;
    op->base.push = weir_http_push;
    op->base.cancel = weir_http_op_cancel;
    op->base.free = weir_http_op_free;
    op->base.what = "http.request";
    op->easy = curl_easy_init();
    if (!op->easy)
        weir_http_oom(L);

    weir_http_build_url(L, op, 1);
    weir_http_build_headers(L, op, 1, &fl);
    has_body = weir_http_build_body(L, op, 1, &is_json);
    if (is_json && !fl.content_type)
        weir_http_add_header(L, op, "Content-Type", "application/json", 16);
    if (!fl.expect)     /* no 100-continue round trip for big bodies */
        weir_http_add_raw_header(L, op, "Expect:");
    curl_url_cleanup(op->curlu);
    op->curlu = NULL;

    weir_http_set_common(op, h);
    weir_http_set_method(op, method, has_body);
    curl_easy_setopt(op->easy, CURLOPT_HTTPHEADER, op->req_headers);
    curl_easy_setopt(op->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (connect_ms > 0)
        curl_easy_setopt(op->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (max_body > 0)   /* refuses a too long Content-Length up front */
        curl_easy_setopt(op->easy, CURLOPT_MAXFILESIZE_LARGE,
                         (curl_off_t)max_body);
    if (redirects > 0) {
        curl_easy_setopt(op->easy, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(op->easy, CURLOPT_MAXREDIRS, redirects);
    }

    if (curl_multi_add_handle(h->multi, op->easy) != CURLM_OK)
        weir_http_oom(L);
    op->in_multi = 1;
    op->next = h->ops;
    if (h->ops)
        h->ops->prev = op;
    h->ops = op;
    g->op = NULL;       /* the job layer owns op now */
    return weir_op_yield(L, &op->base);
}

/* ------------------------------------------------------------------ */
/* Module                                                             */
/* ------------------------------------------------------------------ */

static const luaL_Reg weir_http_funcs[] = {
    {"request", weir_http_request},
    {NULL, NULL}
};

int weir_open_http(lua_State *L) {
    if (luaL_newmetatable(L, WEIR_HTTP_GUARD_MT)) {
        lua_pushcfunction(L, weir_http_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, WEIR_HTTP_RESPONSE_MT)) {
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, weir_http_response_json);
        lua_setfield(L, -2, "json");
        lua_setfield(L, -2, "__index");
        /* Shared by every response of the state: scripts must not be
         * able to reach and change it. */
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    luaL_newlib(L, weir_http_funcs);
    return 1;
}
