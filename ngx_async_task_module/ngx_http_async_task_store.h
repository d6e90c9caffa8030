
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_STORE_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_STORE_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"


#define NGX_HTTP_ASYNC_TASK_LIST_MAX  100


typedef struct {
    ngx_int_t                       status;     /* -1: any */
    ngx_int_t                       kind;       /* -1: any */
    ngx_uint_t                      limit;
    ngx_str_t                      *user;       /* NULL: anonymous */
    u_char                          cursor[NGX_HTTP_ASYNC_TASK_ID_LEN];
    unsigned                        has_cursor:1;
} ngx_http_async_task_filter_t;


typedef struct ngx_http_async_task_op_s  ngx_http_async_task_op_t;


/* where init puts what the store holds, for the zone */

typedef struct {
    ngx_int_t  (*task)(void *data, ngx_http_async_task_t *task); /* live */
    void       (*count)(void *data, ngx_uint_t status, ngx_uint_t n);
    void        *data;
} ngx_http_async_task_loader_t;


/*
 * The store, as the rest of the module sees it: a narrow set of calls,
 * each run on the thread pool.  SQLite is the embedded driver; a
 * shared driver (PostgreSQL) implements the same calls.  Return codes:
 * NGX_OK, NGX_DECLINED (no such task), NGX_BUSY (the task is not in a
 * state that allows it), NGX_ERROR (the store cannot be used now).
 */

struct ngx_http_async_task_store_driver_s {
    /*
     * In the master: the schema, then, unless "loader" is NULL, each live
     * task and the count of finished ones of each status to the loader.
     * At a fresh start ("fresh") nothing runs, so RUNNING tasks queue
     * again.
     */
    ngx_int_t  (*init)(ngx_http_async_task_store_conf_t *conf,
                       ngx_http_async_task_loader_t *loader,
                       ngx_uint_t fresh, ngx_log_t *log);

    /*
     * The batched writes, in one transaction: new tasks (op_insert), the
     * outcomes of runs under their leases (op_complete, NGX_DECLINED when
     * the lease is gone: canceled, taken back), and claims of due tasks
     * (op_claim: up to filter.limit of filter.kind into "tasks",
     * NGX_DECLINED when none is due).  Sets each op's rc.
     */
    void       (*write)(ngx_http_async_task_store_conf_t *conf,
                        ngx_http_async_task_op_t **ops, ngx_uint_t n,
                        ngx_log_t *log);
    ngx_int_t  (*get)(ngx_http_async_task_store_conf_t *conf, u_char *id,
                      ngx_pool_t *pool, ngx_http_async_task_t *task,
                      ngx_log_t *log);
    ngx_int_t  (*list)(ngx_http_async_task_store_conf_t *conf,
                       ngx_http_async_task_filter_t *filter,
                       ngx_pool_t *pool, ngx_array_t *tasks, ngx_log_t *log);

    /*
     * a task to a final status, if it is in one of "from" (a bit mask);
     * the caller removes the task's file, of no more use
     */
    ngx_int_t  (*finish)(ngx_http_async_task_store_conf_t *conf, u_char *id,
                         ngx_str_t *user, ngx_uint_t from,
                         ngx_http_async_task_t *task, ngx_pool_t *pool,
                         ngx_log_t *log);

    /* the lease of a runner that is gone: the task queues again */
    ngx_int_t  (*recover)(ngx_http_async_task_store_conf_t *conf, u_char *id,
                          ngx_str_t *owner, ngx_pool_t *pool,
                          ngx_http_async_task_t *task, ngx_log_t *log);

    /*
     * Leases past their expiry (a run longer than its timeout is gone:
     * a worker died before it could say): those tasks queue again; their
     * ids into "tasks".
     */
    ngx_int_t  (*reclaim)(ngx_http_async_task_store_conf_t *conf,
                          ngx_pool_t *pool, ngx_array_t *tasks,
                          ngx_log_t *log);

    /*
     * retention: returns how many finished tasks went, or NGX_ERROR; the
     * files they leave behind into "files" (ngx_str_t), for the caller
     */
    ngx_int_t  (*expire)(ngx_http_async_task_store_conf_t *conf,
                         int64_t before, ngx_uint_t n, ngx_uint_t *count,
                         ngx_array_t *files, ngx_log_t *log);

    /*
     * periodic housekeeping, from a timer: "idle" when the worker wrote
     * nothing since the last time (NGX_BUSY: others were writing)
     */
    ngx_int_t  (*maintain)(ngx_http_async_task_store_conf_t *conf,
                           ngx_uint_t idle, ngx_log_t *log);

    /* at worker exit, in the main thread, once the pool threads are gone */
    void       (*exit)(void);

    /*
     * Optional (NULL: write's commit is durable).  After a write, in the
     * same thread, once the next batch may write: makes durable every
     * write committed so far; NGX_ERROR fails the batch.
     */
    ngx_int_t  (*sync)(ngx_http_async_task_store_conf_t *conf,
                       ngx_log_t *log);

    /*
     * A store shared by several nginx nodes (PostgreSQL): the zone holds
     * only what this node does, so reads, listings and positions come
     * from the store, and the dispatcher claims whatever the zone says.
     */
    ngx_uint_t   shared;

    /* in a worker process, once the store's thread work can be posted */
    ngx_int_t  (*worker)(ngx_http_async_task_store_conf_t *conf,
                         ngx_cycle_t *cycle);

    /*
     * Optional, in the event loop after each batch: housekeeping is due
     * now, while the worker writes; maintain() then runs, not idle, on
     * the thread pool beside the batches.
     */
    ngx_uint_t (*due)(void);
};


typedef void (*ngx_http_async_task_op_handler_pt)(ngx_http_async_task_op_t *op);
typedef void (*ngx_http_async_task_thread_pt)(void *data, ngx_log_t *log);

typedef enum {
    ngx_http_async_task_op_insert = 0,
    ngx_http_async_task_op_get,
    ngx_http_async_task_op_list,
    ngx_http_async_task_op_finish,
    ngx_http_async_task_op_complete,
    ngx_http_async_task_op_claim
} ngx_http_async_task_op_e;


struct ngx_http_async_task_op_s {
    ngx_http_async_task_op_e            type;
    ngx_int_t                           rc;

    ngx_http_async_task_t               task;
    ngx_http_async_task_filter_t        filter;
    ngx_array_t                         tasks;
    ngx_uint_t                          from;
    ngx_str_t                          *owner;      /* complete, claim */
    int64_t                             not_before; /* complete */
    int64_t                             lease;      /* claim */
    ngx_str_t                           temp;       /* complete: the run's
                                                       file, to task.file */
    unsigned                            result:1;   /* get: the result */

    /*
     * claim, on a shared store: the instances whose slots it may lease,
     * in the balancer's order, each once for each slot free here; the
     * claimed tasks' "backend" is then the instance of their slot
     */
    ngx_http_async_task_backend_t      *backend;
    ngx_http_async_task_instance_t    **slots;
    ngx_uint_t                          nslots;

    /* the thread allocates from this pool only, until the handler runs */
    ngx_pool_t                         *pool;
    ngx_log_t                          *log;

    ngx_http_async_task_op_handler_pt   handler;
    void                               *data;

    ngx_queue_t                         queue;      /* pending inserts */
};


extern ngx_http_async_task_store_driver_t  ngx_http_async_task_sqlite_driver;
extern ngx_http_async_task_store_driver_t  ngx_http_async_task_pg_driver;


ngx_http_async_task_op_t *ngx_http_async_task_op_create(ngx_log_t *log,
    ngx_http_async_task_op_e type);
ngx_int_t ngx_http_async_task_op_post(ngx_http_async_task_op_t *op);
void ngx_http_async_task_op_destroy(ngx_http_async_task_op_t *op);
ngx_int_t ngx_http_async_task_store_post(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_async_task_thread_pt handler, ngx_event_handler_pt done,
    void *data);

ngx_int_t ngx_http_async_task_store_rename(
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_log_t *log);
ngx_int_t ngx_http_async_task_store_init(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *conf);
ngx_uint_t ngx_http_async_task_store_remote(ngx_uint_t kind,
    ngx_uint_t tick);
void ngx_http_async_task_store_queued(void);


#endif /* _NGX_HTTP_ASYNC_TASK_STORE_H_INCLUDED_ */
