/*
 * weir_queue.h -- durable job queue with leases, delayed retries and a
 * dead-letter queue.  Two backends behind one vtable:
 *
 *   - embedded (default): tables `queue` and `dlq` in the state store;
 *   - Redis: streams + consumer groups (weir_queue_redis.c).
 *
 * An item is claimed with a lease (owner + deadline).  The worker renews
 * the lease while the job runs (heartbeat); a worker killed with -9
 * stops renewing, its lease runs out and any worker claims the item
 * again.  Item ids are deterministic for scheduled fires
 * (recipe:job:every:SLOT), so several processes firing the same slot
 * enqueue it once.
 */
#ifndef WEIR_QUEUE_H
#define WEIR_QUEUE_H

#include <stdint.h>

#include "weir_engine.h"

typedef struct weir_queue weir_queue;

typedef struct weir_queue_item {
    char *id;
    char *recipe;
    char *job;
    char *payload;              /* JSON text, never NULL ("null") */
    char *trigger;              /* every | cron | manual | once | replay | webhook:X | stream:X */
    int attempt;                /* the attempt about to run, 1-based */
    int64_t first_at;           /* ms: when the item was first enqueued */
    int64_t run_at;             /* ms: not before */
    char *last_error;
} weir_queue_item;

void weir_queue_item_clear(weir_queue_item *it);

/* Completion of a queue request: err NULL on success.  For claim and
 * dlq_list, items/n hold the result (owned by the queue, valid during the
 * callback).  For enqueue, n is 1 when inserted and 0 for a duplicate. */
typedef void (*weir_queue_cb)(void *ud, const char *err, weir_queue_item *items, int n);

typedef struct weir_queue_vt {
    const char *name;
    int (*enqueue)(weir_queue *q, const weir_queue_item *it, int coalesce,
                   weir_queue_cb cb, void *ud);
    /* due items of recipe/job (job NULL = any), at most max, leased for
     * lease_ms to this queue's owner id */
    int (*claim)(weir_queue *q, const char *recipe, const char *job, int max,
                 int64_t lease_ms, weir_queue_cb cb, void *ud);
    int (*heartbeat)(weir_queue *q, const char *id, int64_t lease_ms, weir_queue_cb cb, void *ud);
    int (*ack)(weir_queue *q, const char *id, weir_queue_cb cb, void *ud);
    int (*retry)(weir_queue *q, const weir_queue_item *it, weir_queue_cb cb, void *ud);
    int (*release)(weir_queue *q, const char *id, weir_queue_cb cb, void *ud);
    int (*dead)(weir_queue *q, const weir_queue_item *it, weir_queue_cb cb, void *ud);
    /* next run_at (ms) of an unleased item of recipe, via items[0].run_at, n = 0 if none */
    int (*next_due)(weir_queue *q, const char *recipe, weir_queue_cb cb, void *ud);
    int (*dlq_list)(weir_queue *q, const char *recipe, int limit, weir_queue_cb cb, void *ud);
    int (*dlq_get)(weir_queue *q, const char *id, weir_queue_cb cb, void *ud);
    int (*dlq_replay)(weir_queue *q, const char *id, weir_queue_cb cb, void *ud);
    int (*dlq_drop)(weir_queue *q, const char *id, weir_queue_cb cb, void *ud);
    int (*depth)(weir_queue *q, const char *recipe, weir_queue_cb cb, void *ud);
    void (*close)(weir_queue *q);
} weir_queue_vt;

struct weir_queue {
    const weir_queue_vt *vt;
    weir_engine *e;
    char owner[48];             /* this process's lease owner id */
};

/* The embedded queue on the engine's state store. */
weir_queue *weir_queue_open_store(weir_engine *e, char **err);

/* Opens the queue named by url: NULL / "store" -> embedded. */
weir_queue *weir_queue_open(weir_engine *e, const char *url, char **err);

/* Runs the loop until the request completed: CLI commands only. */
int weir_queue_wait(weir_queue *q, int rc, int *done);

#endif
