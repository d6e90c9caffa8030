
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_SHM_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_SHM_H_INCLUDED_


#include "ngx_http_async_task_module.h"


/*
 * The figures of async_task_metrics live in the zone: they add up over
 * all worker processes and outlive a reload.  A histogram keeps each
 * bucket's own count (the last one is +Inf) and the sum in the unit of
 * its bounds; the exposition makes them cumulative.
 */

#define NGX_HTTP_ASYNC_TASK_BUCKETS        16

/* why a submission was refused */
#define NGX_HTTP_ASYNC_TASK_QUEUE_FULL     0
#define NGX_HTTP_ASYNC_TASK_INVALID        1
#define NGX_HTTP_ASYNC_TASK_UNAVAILABLE    2
#define NGX_HTTP_ASYNC_TASK_NREASONS       3

/* how a task ended: DONE, CANCELED, or FAILED with one of the codes */
#define NGX_HTTP_ASYNC_TASK_END_DONE       0
#define NGX_HTTP_ASYNC_TASK_END_CANCELED   1
#define NGX_HTTP_ASYNC_TASK_END_FAILED     2
#define NGX_HTTP_ASYNC_TASK_NENDS          6

/* what one attempt on an instance came to */
#define NGX_HTTP_ASYNC_TASK_NOUTCOMES      5


typedef struct {
    uint64_t                        bucket[NGX_HTTP_ASYNC_TASK_BUCKETS];
    uint64_t                        sum;
    uint64_t                        count;
} ngx_http_async_task_histogram_t;


typedef struct {
    uint64_t                        submitted[NGX_HTTP_ASYNC_TASK_NKINDS];
    uint64_t                        rejected[NGX_HTTP_ASYNC_TASK_NKINDS]
                                            [NGX_HTTP_ASYNC_TASK_NREASONS];
    uint64_t                        finished[NGX_HTTP_ASYNC_TASK_NKINDS]
                                            [NGX_HTTP_ASYNC_TASK_NENDS];
    ngx_http_async_task_histogram_t queue_wait[NGX_HTTP_ASYNC_TASK_NKINDS];
    ngx_http_async_task_histogram_t commit;     /* microseconds */
    ngx_http_async_task_histogram_t batch;      /* operations */
    uint64_t                        store_errors;
} ngx_http_async_task_metrics_sh_t;


/* what the exposition reads of the zone at once */

typedef struct {
    ngx_http_async_task_metrics_sh_t  metrics;
    uint64_t                        queued[NGX_HTTP_ASYNC_TASK_NKINDS];
    uint64_t                        running[NGX_HTTP_ASYNC_TASK_NKINDS];
} ngx_http_async_task_shm_metrics_t;


/* a GPU instance as all worker processes see it */

struct ngx_http_async_task_instance_sh_s {
    ngx_queue_t                     queue;
    u_char                          name[NGX_SOCKADDR_STRLEN + 64];
    size_t                          name_len;   /* "upstream/host:port" */

    ngx_uint_t                      inflight;
    ngx_uint_t                      requests;
    ngx_uint_t                      failures;
    ngx_int_t                       current_weight;   /* round robin */

    ngx_uint_t                      healthy;
    int64_t                         down_until; /* max_fails reached */
    ngx_uint_t                      fails;      /* in a row */
    ngx_uint_t                      passes;
    int64_t                         last_check; /* ms, 0: never */
    ngx_pid_t                       checker;    /* probing now */
    int64_t                         check_started;

    /* async_task_metrics: attempts by outcome, their run times in ms */
    uint64_t                        attempts[NGX_HTTP_ASYNC_TASK_NOUTCOMES];
    ngx_http_async_task_histogram_t run;
};


/* a node reserved for a task not committed yet: in no count, no queue */
#define NGX_HTTP_ASYNC_TASK_PENDING  NGX_HTTP_ASYNC_TASK_NSTATUSES


typedef struct ngx_http_async_task_node_s  ngx_http_async_task_node_t;

/* a live (QUEUED or RUNNING) task as every worker process sees it */

struct ngx_http_async_task_node_s {
    ngx_http_async_task_node_t     *next;       /* in its bucket */
    uint32_t                        hash;       /* crc32 of the id */
    u_char                          id[NGX_HTTP_ASYNC_TASK_ID_LEN];

    u_char                          kind;
    u_char                          status;
    u_char                          priority;
    u_char                          has_user;

    uint32_t                        attempts;
    int64_t                         created_at;
    int64_t                         started_at;

    /* while RUNNING: who runs it and where; while pending: who reserved */
    ngx_queue_t                     running;
    ngx_pid_t                       owner;
    ngx_http_async_task_instance_sh_t  *instance;

    /* the queue of its kind: an order-statistic treap, for "position" */
    ngx_http_async_task_node_t     *left;
    ngx_http_async_task_node_t     *right;
    uint32_t                        size;
    uint32_t                        weight;

    uint32_t                        user_len;
    uint32_t                        params_len;
    u_char                         *data;       /* user, params; or NULL */
};


struct ngx_http_async_task_shctx_s {
    ngx_http_async_task_node_t    **buckets;    /* the live tasks by id */
    ngx_uint_t                      mask;       /* buckets - 1 */
    ngx_http_async_task_node_t     *queue[NGX_HTTP_ASYNC_TASK_NKINDS];

    ngx_uint_t                      count[NGX_HTTP_ASYNC_TASK_NSTATUSES];
    ngx_uint_t                      reserved;   /* being committed now */

    int64_t                         started_at;
    uint32_t                        seed;
    ngx_uint_t                      loaded;     /* filled from the store */

    ngx_queue_t                     instances;
    ngx_queue_t                     running;    /* nodes, for the reaper */
    ngx_queue_t                     pending;    /* reserved, uncommitted */

    ngx_http_async_task_metrics_sh_t  metrics;
};


typedef struct {
    ngx_http_async_task_shctx_t    *sh;
    ngx_slab_pool_t                *shpool;
    ngx_array_t                    *instances;  /* of the configuration */
    ngx_uint_t                      max_live;   /* queued and running */
    ngx_uint_t                      per_page;   /* nodes in a page */
    ngx_uint_t                      shared;     /* a store of several
                                                   nodes: reads from it */
} ngx_http_async_task_shm_t;


ngx_int_t ngx_http_async_task_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_uint_t ngx_http_async_task_shm_buckets(ngx_uint_t live);

ngx_int_t ngx_http_async_task_shm_reserve(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_uint_t max_queued);
void ngx_http_async_task_shm_release(ngx_http_async_task_shm_t *shm,
    u_char *id);
void ngx_http_async_task_shm_commit(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task);
ngx_int_t ngx_http_async_task_shm_load(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task);
void ngx_http_async_task_shm_load_count(ngx_http_async_task_shm_t *shm,
    ngx_uint_t status, ngx_uint_t n);
ngx_uint_t ngx_http_async_task_shm_loaded(ngx_http_async_task_shm_t *shm,
    ngx_uint_t done);

ngx_int_t ngx_http_async_task_shm_get(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_str_t *user, ngx_pool_t *pool,
    ngx_http_async_task_t *task);
void ngx_http_async_task_shm_live(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task, ngx_pool_t *pool);
void ngx_http_async_task_shm_finish(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_uint_t from, ngx_uint_t to);
ngx_int_t ngx_http_async_task_shm_start(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task, ngx_http_async_task_instance_sh_t *instance);
void ngx_http_async_task_shm_requeue(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_uint_t attempts);
void ngx_http_async_task_shm_expire(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_uint_t attempts);
void ngx_http_async_task_shm_drop(ngx_http_async_task_shm_t *shm,
    u_char *id);
void ngx_http_async_task_shm_gone(ngx_http_async_task_shm_t *shm,
    u_char *id, ngx_uint_t running);
ngx_int_t ngx_http_async_task_shm_runs(ngx_http_async_task_shm_t *shm,
    u_char *id);
ngx_uint_t ngx_http_async_task_shm_orphans(ngx_http_async_task_shm_t *shm,
    u_char (*ids)[NGX_HTTP_ASYNC_TASK_ID_LEN], ngx_pid_t *owners,
    ngx_http_async_task_instance_sh_t **instances, ngx_uint_t n,
    ngx_uint_t *released);
void ngx_http_async_task_shm_forget(ngx_http_async_task_shm_t *shm,
    ngx_uint_t *count);
void ngx_http_async_task_shm_counts(ngx_http_async_task_shm_t *shm,
    ngx_uint_t *count, ngx_uint_t *queued, int64_t *started_at);
ngx_uint_t ngx_http_async_task_shm_full(ngx_http_async_task_shm_t *shm,
    ngx_uint_t max_queued);
ngx_uint_t ngx_http_async_task_shm_queued(ngx_http_async_task_shm_t *shm,
    ngx_uint_t kind);

void ngx_http_async_task_shm_metric_add(ngx_http_async_task_shm_t *shm,
    uint64_t *counter, uint64_t n);
void ngx_http_async_task_shm_metric_observe(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_histogram_t *h, ngx_uint_t bucket, uint64_t value);
void ngx_http_async_task_shm_metrics(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_shm_metrics_t *m);


#endif /* _NGX_HTTP_ASYNC_TASK_SHM_H_INCLUDED_ */
