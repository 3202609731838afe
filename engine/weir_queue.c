/*
 * weir_queue.c -- the embedded queue: tables `queue` and `dlq` in the
 * state store.
 *
 * Every operation is one store transaction, so claim (select due items +
 * lease them) is atomic: on SQLite because write transactions are
 * serialised (BEGIN IMMEDIATE), on PostgreSQL through FOR UPDATE SKIP
 * LOCKED.  Writes that belong to a lease check the owner, so a worker
 * whose lease ran out and was taken over cannot ack or retry an item it
 * no longer holds.
 */
#include "weir_queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir_crypto.h"
#include "weir_store.h"

typedef struct weir_queue_store {
    weir_queue base;
    weir_store *store;
    int pg;
} weir_queue_store;

typedef struct weir_queue_req {
    weir_queue_cb cb;
    void *ud;
    int want;                   /* 0: changes of statement 0 as n; 1: items from last stmt */
} weir_queue_req;

static const char weir_queue_cols[] =
    "id, recipe, job, payload, trigger, attempt, first_at, run_at, last_error";
static const char weir_queue_dlq_cols[] =
    "id, recipe, job, payload, trigger, attempts, first_at, failed_at, error";

void weir_queue_item_clear(weir_queue_item *it) {
    free(it->id);
    free(it->recipe);
    free(it->job);
    free(it->payload);
    free(it->trigger);
    free(it->last_error);
    memset(it, 0, sizeof *it);
}

static char *weir_queue_dup(const char *s) { return s ? strdup(s) : NULL; }

static void weir_queue_num(char buf[32], long long v) { snprintf(buf, 32, "%lld", v); }

/* Converts rows (in weir_queue_cols order) to items; -1 on OOM. */
static int weir_queue_rows_to_items(const weir_store_rows *r, weir_queue_item **out) {
    weir_queue_item *items;
    int i;
    *out = NULL;
    if (r->nrows == 0) return 0;
    items = calloc((size_t)r->nrows, sizeof *items);
    if (!items) return -1;
    for (i = 0; i < r->nrows; i++) {
        char **c = &r->cells[i * r->ncols];
        items[i].id = weir_queue_dup(c[0]);
        items[i].recipe = weir_queue_dup(c[1]);
        items[i].job = weir_queue_dup(c[2]);
        items[i].payload = weir_queue_dup(c[3] ? c[3] : "null");
        items[i].trigger = weir_queue_dup(c[4]);
        items[i].attempt = c[5] ? atoi(c[5]) : 1;
        items[i].first_at = c[6] ? strtoll(c[6], NULL, 10) : 0;
        items[i].run_at = c[7] ? strtoll(c[7], NULL, 10) : 0;
        items[i].last_error = weir_queue_dup(c[8]);
    }
    *out = items;
    return r->nrows;
}

static void weir_queue_answer(void *ud, weir_store_rows *res, int n, const char *err) {
    weir_queue_req *req = ud;
    weir_queue_item *items = NULL;
    int count = 0, i;
    if (!err) {
        if (req->want == 1) {
            count = weir_queue_rows_to_items(&res[n - 1], &items);
            if (count < 0) { err = "queue: out of memory"; count = 0; }
        } else {
            count = (int)res[0].changes;
        }
    }
    req->cb(req->ud, err, items, count);
    for (i = 0; i < count && items; i++) weir_queue_item_clear(&items[i]);
    free(items);
    free(req);
}

static int weir_queue_exec(weir_queue *q, const weir_store_stmt *stmts, int n, int want,
                           weir_queue_cb cb, void *ud) {
    weir_queue_store *qs = (weir_queue_store *)q;
    weir_queue_req *req = calloc(1, sizeof *req);
    if (!req) return -1;
    req->cb = cb;
    req->ud = ud;
    req->want = want;
    if (weir_store_exec(qs->store, stmts, n, weir_queue_answer, req) != 0) {
        free(req);
        return -1;
    }
    return 0;
}

/* ---- operations ---- */

static int weir_queue_store_enqueue(weir_queue *q, const weir_queue_item *it, int coalesce,
                                    weir_queue_cb cb, void *ud) {
    char attempt[32], first[32], run[32], now[32];
    const char *p[9];
    weir_store_stmt st;
    weir_queue_num(attempt, it->attempt > 0 ? it->attempt : 1);
    weir_queue_num(now, weir_store_now_ms());
    weir_queue_num(first, it->first_at ? it->first_at : weir_store_now_ms());
    weir_queue_num(run, it->run_at ? it->run_at : weir_store_now_ms());
    p[0] = it->id; p[1] = it->recipe; p[2] = it->job;
    p[3] = it->payload ? it->payload : "null"; p[4] = it->trigger;
    p[5] = attempt; p[6] = first; p[7] = run; p[8] = now;
    /* coalesce: a scheduled fire is dropped while an earlier fire of the
     * same job and trigger still waits to start */
    st.sql = coalesce
        ? "INSERT INTO queue (id, recipe, job, payload, trigger, attempt, first_at, run_at,"
          " created_at) SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT),"
          " CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS INTEGER), CAST($7 AS BIGINT),"
          " CAST($8 AS BIGINT), CAST($9 AS BIGINT) WHERE NOT EXISTS"
          " (SELECT 1 FROM queue WHERE recipe = $2 AND job = $3 AND trigger = $5"
          " AND lease_owner IS NULL) ON CONFLICT (id) DO NOTHING"
        : "INSERT INTO queue (id, recipe, job, payload, trigger, attempt, first_at, run_at,"
          " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING";
    st.nparams = 9;
    st.params = p;
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_claim(weir_queue *q, const char *recipe, const char *job, int max,
                                  int64_t lease_ms, weir_queue_cb cb, void *ud) {
    weir_queue_store *qs = (weir_queue_store *)q;
    char until[32], now[32], lim[32], sql[768];
    const char *p[6];
    weir_store_stmt st;
    int64_t t = weir_store_now_ms();
    weir_queue_num(now, t);
    weir_queue_num(until, t + lease_ms);
    weir_queue_num(lim, max > 0 ? max : 1);
    p[0] = q->owner; p[1] = until; p[2] = recipe; p[3] = job; p[4] = now; p[5] = lim;
    snprintf(sql, sizeof sql,
             "UPDATE queue SET lease_owner = $1, lease_until = $2 WHERE id IN"
             " (SELECT id FROM queue WHERE recipe = $3 AND (CAST($4 AS TEXT) IS NULL OR job = $4)"
             " AND run_at <= $5 AND (lease_owner IS NULL OR lease_until < $5)"
             " ORDER BY run_at, created_at LIMIT $6%s) RETURNING %s",
             qs->pg ? " FOR UPDATE SKIP LOCKED" : "", weir_queue_cols);
    st.sql = sql;
    st.nparams = 6;
    st.params = p;
    return weir_queue_exec(q, &st, 1, 1, cb, ud);
}

static int weir_queue_store_heartbeat(weir_queue *q, const char *id, int64_t lease_ms,
                                      weir_queue_cb cb, void *ud) {
    char until[32];
    const char *p[3];
    weir_store_stmt st = {"UPDATE queue SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                          3, p};
    weir_queue_num(until, weir_store_now_ms() + lease_ms);
    p[0] = id; p[1] = q->owner; p[2] = until;
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_ack(weir_queue *q, const char *id, weir_queue_cb cb, void *ud) {
    const char *p[2] = {id, q->owner};
    weir_store_stmt st = {"DELETE FROM queue WHERE id = $1 AND lease_owner = $2", 2, p};
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_retry(weir_queue *q, const weir_queue_item *it, weir_queue_cb cb,
                                  void *ud) {
    char attempt[32], run[32];
    const char *p[5];
    weir_store_stmt st = {"UPDATE queue SET attempt = $3, run_at = $4, last_error = $5,"
                          " lease_owner = NULL, lease_until = NULL"
                          " WHERE id = $1 AND lease_owner = $2", 5, p};
    weir_queue_num(attempt, it->attempt);
    weir_queue_num(run, it->run_at);
    p[0] = it->id; p[1] = q->owner; p[2] = attempt; p[3] = run; p[4] = it->last_error;
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_release(weir_queue *q, const char *id, weir_queue_cb cb, void *ud) {
    const char *p[2] = {id, q->owner};
    weir_store_stmt st = {"UPDATE queue SET lease_owner = NULL, lease_until = NULL"
                          " WHERE id = $1 AND lease_owner = $2", 2, p};
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_dead(weir_queue *q, const weir_queue_item *it, weir_queue_cb cb,
                                 void *ud) {
    char attempts[32], first[32], now[32];
    const char *p[9], *p2[2];
    weir_store_stmt st[2];
    weir_queue_num(attempts, it->attempt);
    weir_queue_num(first, it->first_at);
    weir_queue_num(now, weir_store_now_ms());
    p[0] = it->id; p[1] = it->recipe; p[2] = it->job; p[3] = it->payload ? it->payload : "null";
    p[4] = it->trigger; p[5] = attempts; p[6] = first; p[7] = now; p[8] = it->last_error;
    st[0].sql = "INSERT INTO dlq (id, recipe, job, payload, trigger, attempts, first_at,"
                " failed_at, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts,"
                " failed_at = excluded.failed_at, error = excluded.error,"
                " payload = excluded.payload";
    st[0].nparams = 9;
    st[0].params = p;
    p2[0] = it->id;
    p2[1] = q->owner;
    st[1].sql = "DELETE FROM queue WHERE id = $1 AND lease_owner = $2";
    st[1].nparams = 2;
    st[1].params = p2;
    return weir_queue_exec(q, st, 2, 0, cb, ud);
}

static int weir_queue_store_next_due(weir_queue *q, const char *recipe, weir_queue_cb cb,
                                     void *ud) {
    const char *p[1] = {recipe};
    weir_store_stmt st = {"SELECT 'next', '', '', 'null', '', 1, 0, min(run_at), NULL FROM queue"
                          " WHERE recipe = $1 AND lease_owner IS NULL HAVING count(*) > 0", 1, p};
    return weir_queue_exec(q, &st, 1, 1, cb, ud);
}

static int weir_queue_store_dlq_list(weir_queue *q, const char *recipe, int limit,
                                     weir_queue_cb cb, void *ud) {
    char lim[32], sql[512];
    const char *p[2];
    weir_store_stmt st;
    weir_queue_num(lim, limit > 0 ? limit : 50);
    p[0] = recipe;
    p[1] = lim;
    snprintf(sql, sizeof sql, "SELECT %s FROM dlq WHERE (CAST($1 AS TEXT) IS NULL OR recipe = $1)"
             " ORDER BY failed_at DESC, id LIMIT $2", weir_queue_dlq_cols);
    st.sql = sql;
    st.nparams = 2;
    st.params = p;
    return weir_queue_exec(q, &st, 1, 1, cb, ud);
}

static int weir_queue_store_dlq_get(weir_queue *q, const char *id, weir_queue_cb cb, void *ud) {
    char sql[256];
    const char *p[1] = {id};
    weir_store_stmt st;
    snprintf(sql, sizeof sql, "SELECT %s FROM dlq WHERE id = $1", weir_queue_dlq_cols);
    st.sql = sql;
    st.nparams = 1;
    st.params = p;
    return weir_queue_exec(q, &st, 1, 1, cb, ud);
}

/* Replay: back to the queue as a new item (attempt 1, fresh first_at) so
 * it runs against the script version that is loaded now. */
static int weir_queue_store_dlq_replay(weir_queue *q, const char *id, weir_queue_cb cb,
                                       void *ud) {
    char now[32];
    const char *p[2], *p2[1];
    weir_store_stmt st[2];
    weir_queue_num(now, weir_store_now_ms());
    p[0] = id;
    p[1] = now;
    st[0].sql = "INSERT INTO queue (id, recipe, job, payload, trigger, attempt, first_at, run_at,"
                " created_at) SELECT id || ':replay:' || CAST($2 AS TEXT), recipe, job, payload,"
                " 'replay', 1, CAST($2 AS BIGINT), CAST($2 AS BIGINT), CAST($2 AS BIGINT)"
                " FROM dlq WHERE id = $1";
    st[0].nparams = 2;
    st[0].params = p;
    p2[0] = id;
    st[1].sql = "DELETE FROM dlq WHERE id = $1";
    st[1].nparams = 1;
    st[1].params = p2;
    return weir_queue_exec(q, st, 2, 0, cb, ud);
}

static int weir_queue_store_dlq_drop(weir_queue *q, const char *id, weir_queue_cb cb, void *ud) {
    const char *p[1] = {id};
    weir_store_stmt st = {"DELETE FROM dlq WHERE id = $1", 1, p};
    return weir_queue_exec(q, &st, 1, 0, cb, ud);
}

static int weir_queue_store_depth(weir_queue *q, const char *recipe, weir_queue_cb cb, void *ud) {
    const char *p[1] = {recipe};
    weir_store_stmt st = {"SELECT 'depth', '', '', 'null', '', count(*), 0, 0, NULL FROM queue"
                          " WHERE recipe = $1", 1, p};
    return weir_queue_exec(q, &st, 1, 1, cb, ud);
}

static void weir_queue_store_close(weir_queue *q) { free(q); }

static const weir_queue_vt weir_queue_store_vt = {
    "store",
    weir_queue_store_enqueue, weir_queue_store_claim, weir_queue_store_heartbeat,
    weir_queue_store_ack, weir_queue_store_retry, weir_queue_store_release,
    weir_queue_store_dead, weir_queue_store_next_due, weir_queue_store_dlq_list,
    weir_queue_store_dlq_get, weir_queue_store_dlq_replay, weir_queue_store_dlq_drop,
    weir_queue_store_depth, weir_queue_store_close};

static void weir_queue_owner_id(char out[48]) {
    char host[32] = "host";
    unsigned char rnd[4] = {0};
    char hex[9];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    weir_crypto_random(rnd, sizeof rnd);
    weir_crypto_hex(rnd, sizeof rnd, hex);
    snprintf(out, 48, "%.20s:%d:%s", host, (int)getpid(), hex);
}

weir_queue *weir_queue_open_store(weir_engine *e, char **err) {
    weir_store *s = weir_store_of_engine(e, err);
    weir_queue_store *qs;
    if (!s) return NULL;
    qs = calloc(1, sizeof *qs);
    if (!qs) {
        *err = strdup("queue: out of memory");
        return NULL;
    }
    qs->base.vt = &weir_queue_store_vt;
    qs->base.e = e;
    qs->store = s;
    qs->pg = strcmp(weir_store_backend(s), "postgres") == 0;
    weir_queue_owner_id(qs->base.owner);
    return &qs->base;
}

weir_queue *weir_queue_open(weir_engine *e, const char *url, char **err) {
    *err = NULL;
    if (!url || !*url || strcmp(url, "store") == 0) return weir_queue_open_store(e, err);
    *err = strdup("queue: unknown queue URL (use 'store')");
    return NULL;
}

int weir_queue_wait(weir_queue *q, int rc, int *done) {
    if (rc != 0) return rc;
    while (!*done) uv_run(q->e->loop, UV_RUN_ONCE);
    return 0;
}
