
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_pg_files.h"
#include "ngx_http_async_task_upload.h"


/*
 * Group commit: a worker has at most three write batches on the thread
 * pool.  Writes wait in "pending" and go together in a batch, one
 * transaction and one flush for all of them, so the commit rate follows
 * the load instead of capping it.  A batch takes what is pending when its
 * thread's turn to write comes, not when it was posted: what arrives
 * while the batch before it is written joins it.  The batches are written
 * in the order they were posted, one at a time, and answered in that
 * order; with a driver that flushes apart (sync), one is written while
 * the one before is being flushed, and the third is on the pool's queue:
 * the thread that is done flushing takes it up at once, without waiting
 * for the event loop to post it.
 */

#define NGX_HTTP_ASYNC_TASK_BATCH_MAX  512
#define NGX_HTTP_ASYNC_TASK_BATCHES    3

#define NGX_HTTP_ASYNC_TASK_MAINTAIN    1000
#define NGX_HTTP_ASYNC_TASK_OPS_GUARD   100


typedef struct {
    ngx_http_async_task_store_conf_t  *conf;
    ngx_uint_t                         n;
    int64_t                            usec;       /* the commit, or -1 */
    ngx_uint_t                         seq;        /* its turn to write */
    ngx_uint_t                         written;    /* its thread is done */
    ngx_http_async_task_op_t          *ops[NGX_HTTP_ASYNC_TASK_BATCH_MAX];
} ngx_http_async_task_batch_t;


typedef struct {
    ngx_http_async_task_thread_pt      handler;
    ngx_event_handler_pt               done;
    void                              *data;
} ngx_http_async_task_post_t;


typedef struct {
    ngx_http_async_task_store_conf_t  *conf;
    ngx_uint_t                         idle;
    ngx_int_t                          rc;
} ngx_http_async_task_maintain_t;


static void ngx_http_async_task_ops_hold(void);
static void ngx_http_async_task_post_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_post_done(ngx_event_t *ev);
static void ngx_http_async_task_op_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_op_done(ngx_event_t *ev);
static void ngx_http_async_task_batch_start(void);
static void ngx_http_async_task_batch_take(ngx_http_async_task_batch_t *batch);
static ngx_uint_t ngx_http_async_task_batch_wanted(void);
static void ngx_http_async_task_batch_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_batch_done(ngx_event_t *ev);
static void ngx_http_async_task_maintain_timer(ngx_event_t *ev);
static void ngx_http_async_task_maintain_due(
    ngx_http_async_task_store_conf_t *conf);
static ngx_int_t ngx_http_async_task_maintain_post(
    ngx_http_async_task_store_conf_t *conf, ngx_uint_t idle);
static void ngx_http_async_task_maintain_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_maintain_done(ngx_event_t *ev);
static void ngx_http_async_task_ops_guard(ngx_event_t *ev);


/* the writes no batch has taken yet; under the turn mutex */
static ngx_queue_t                   ngx_http_async_task_pending;
static ngx_thread_task_t  *ngx_http_async_task_batch_tasks[
                                               NGX_HTTP_ASYNC_TASK_BATCHES];
/* how many batches are out, and the oldest of them */
static ngx_uint_t                    ngx_http_async_task_batch_busy;
static ngx_uint_t                    ngx_http_async_task_batch_head;
static ngx_uint_t                    ngx_http_async_task_batch_seq;
/*
 * Under the mutex, with "pending": the turn of the next batch to write,
 * and the batches posted that have not taken their writes yet.
 */
static ngx_uint_t                    ngx_http_async_task_batch_turn;
static ngx_uint_t                    ngx_http_async_task_batch_waiting;
static pthread_mutex_t               ngx_http_async_task_turn_mutex =
                                                    PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t                ngx_http_async_task_turn_cond =
                                                    PTHREAD_COND_INITIALIZER;
static ngx_event_t                   ngx_http_async_task_maintain_event;
static ngx_thread_task_t            *ngx_http_async_task_maintain_task;
static ngx_uint_t                    ngx_http_async_task_maintaining;
static ngx_uint_t                    ngx_http_async_task_batches;
static ngx_uint_t                    ngx_http_async_task_batches_seen;
static ngx_uint_t                    ngx_http_async_task_wrote;
static ngx_uint_t                    ngx_http_async_task_ops;
static ngx_event_t                   ngx_http_async_task_ops_event;
/* a shared store: another node queued tasks of a kind (NOTIFY) */
static ngx_uint_t                    ngx_http_async_task_remote[
                                                NGX_HTTP_ASYNC_TASK_NKINDS];


static ngx_http_async_task_store_conf_t *
ngx_http_async_task_store_conf(void)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_async_task_module);

    return amcf->store;
}


ngx_int_t
ngx_http_async_task_store_init(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *conf)
{
    ngx_uint_t                       i;
    ngx_thread_task_t               *task;
    ngx_http_async_task_batch_t     *batch;
    ngx_http_async_task_maintain_t  *maintain;

    ngx_queue_init(&ngx_http_async_task_pending);
    ngx_http_async_task_batch_busy = 0;
    ngx_http_async_task_batch_head = 0;
    ngx_http_async_task_batch_seq = 0;
    ngx_http_async_task_batch_turn = 0;
    ngx_http_async_task_batch_waiting = 0;
    ngx_http_async_task_batches = 0;
    ngx_http_async_task_batches_seen = 0;
    ngx_http_async_task_wrote = 0;
    ngx_http_async_task_ops = 0;
    ngx_http_async_task_maintaining = 0;
    ngx_memzero(ngx_http_async_task_remote,
                sizeof(ngx_http_async_task_remote));

    /*
     * Not cancelable: a worker that exits (reload, quit) waits until every
     * operation it posted has come back and its handler has run, so that
     * a client gets its answer and the zone learns what the store did.
     */

    ngx_memzero(&ngx_http_async_task_ops_event, sizeof(ngx_event_t));

    ngx_http_async_task_ops_event.handler = ngx_http_async_task_ops_guard;
    ngx_http_async_task_ops_event.data = conf;
    ngx_http_async_task_ops_event.log = cycle->log;

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_BATCHES; i++) {
        task = ngx_thread_task_alloc(cycle->pool,
                                     sizeof(ngx_http_async_task_batch_t));
        if (task == NULL) {
            return NGX_ERROR;
        }

        batch = task->ctx;
        batch->conf = conf;

        task->handler = ngx_http_async_task_batch_thread;
        task->event.handler = ngx_http_async_task_batch_done;
        task->event.data = batch;
        task->event.log = cycle->log;

        ngx_http_async_task_batch_tasks[i] = task;
    }

    ngx_http_async_task_maintain_task = ngx_thread_task_alloc(cycle->pool,
                                        sizeof(ngx_http_async_task_maintain_t));
    if (ngx_http_async_task_maintain_task == NULL) {
        return NGX_ERROR;
    }

    maintain = ngx_http_async_task_maintain_task->ctx;
    maintain->conf = conf;
    ngx_http_async_task_maintain_task->handler =
                                        ngx_http_async_task_maintain_thread;
    ngx_http_async_task_maintain_task->event.handler =
                                        ngx_http_async_task_maintain_done;
    ngx_http_async_task_maintain_task->event.data = maintain;
    ngx_http_async_task_maintain_task->event.log = cycle->log;

    ngx_memzero(&ngx_http_async_task_maintain_event, sizeof(ngx_event_t));

    ngx_http_async_task_maintain_event.handler =
                                        ngx_http_async_task_maintain_timer;
    ngx_http_async_task_maintain_event.data = conf;
    ngx_http_async_task_maintain_event.log = cycle->log;
    ngx_http_async_task_maintain_event.cancelable = 1;

    ngx_add_timer(&ngx_http_async_task_maintain_event,
                  NGX_HTTP_ASYNC_TASK_MAINTAIN);

    if (conf->driver->worker) {
        return conf->driver->worker(conf, cycle);
    }

    return NGX_OK;
}


ngx_http_async_task_op_t *
ngx_http_async_task_op_create(ngx_log_t *log, ngx_http_async_task_op_e type)
{
    ngx_pool_t                *pool;
    ngx_http_async_task_op_t  *op;

    pool = ngx_create_pool(2048, log);
    if (pool == NULL) {
        return NULL;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_http_async_task_op_t));
    if (op == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    op->type = type;
    op->pool = pool;
    op->log = log;
    op->task.position = -1;

    return op;
}


void
ngx_http_async_task_op_destroy(ngx_http_async_task_op_t *op)
{
    ngx_destroy_pool(op->pool);
}


/*
 * Runs the operation on the thread pool; its handler is always called
 * later from the event loop, never from within this call.
 */

ngx_int_t
ngx_http_async_task_op_post(ngx_http_async_task_op_t *op)
{
    if (op->type == ngx_http_async_task_op_insert
        || op->type == ngx_http_async_task_op_complete
        || op->type == ngx_http_async_task_op_claim)
    {
        (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);
        ngx_queue_insert_tail(&ngx_http_async_task_pending, &op->queue);
        (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

        if (ngx_http_async_task_batch_wanted()) {
            ngx_http_async_task_batch_start();
        }

        ngx_http_async_task_ops_hold();

        return NGX_OK;
    }

    return ngx_http_async_task_store_post(op->pool, op->log,
                                          ngx_http_async_task_op_thread,
                                          ngx_http_async_task_op_done, op);
}


/*
 * In a driver's write, once an outcome's row says DONE: the run's file
 * (op->temp) becomes the task's (op->task.file).
 */

ngx_int_t
ngx_http_async_task_store_rename(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_op_t *op, ngx_log_t *log)
{
    ngx_err_t  err;
    u_char     from[NGX_MAX_PATH], to[NGX_MAX_PATH];

    if (conf->files.len + 1 + ngx_max(op->temp.len, op->task.file.len)
        >= NGX_MAX_PATH)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(from, "%V/%V%Z", &conf->files, &op->temp);
    ngx_sprintf(to, "%V/%V%Z", &conf->files, &op->task.file);

    if (ngx_rename_file(from, to) == NGX_FILE_ERROR) {

        /*
         * An outcome offered again (its COMMIT failed after the rename)
         * finds its file under the task's name already.
         */

        err = ngx_errno;

        if (err == NGX_ENOENT && access((char *) to, F_OK) == 0) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_CRIT, log, err,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      from, to);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The one way work goes to the store's thread pool: "handler" runs there
 * with "data", then "done" from the event loop with the event's data set
 * to "data".  The thread task is allocated from "pool".  Until "done" has
 * run, the guard keeps an exiting worker.
 */

ngx_int_t
ngx_http_async_task_store_post(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_async_task_thread_pt handler, ngx_event_handler_pt done,
    void *data)
{
    ngx_thread_task_t                 *task;
    ngx_http_async_task_post_t        *post;
    ngx_http_async_task_store_conf_t  *conf;

    conf = ngx_http_async_task_store_conf();

    task = ngx_thread_task_alloc(pool, sizeof(ngx_http_async_task_post_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    post = task->ctx;
    post->handler = handler;
    post->done = done;
    post->data = data;

    task->handler = ngx_http_async_task_post_thread;
    task->event.handler = ngx_http_async_task_post_done;
    task->event.data = post;
    task->event.log = log;

    if (ngx_thread_task_post(conf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_async_task_ops_hold();

    return NGX_OK;
}


static void
ngx_http_async_task_post_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_post_t  *post = data;

    post->handler(post->data, log);
}


static void
ngx_http_async_task_post_done(ngx_event_t *ev)
{
    ngx_http_async_task_post_t  *post = ev->data;

    ngx_http_async_task_ops--;

    ev->data = post->data;
    post->done(ev);
}


static void
ngx_http_async_task_ops_hold(void)
{
    ngx_http_async_task_ops++;

    if (!ngx_http_async_task_ops_event.timer_set) {
        ngx_add_timer(&ngx_http_async_task_ops_event,
                      NGX_HTTP_ASYNC_TASK_OPS_GUARD);
    }
}


static void
ngx_http_async_task_ops_guard(ngx_event_t *ev)
{
    if (ngx_http_async_task_ops) {
        ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_OPS_GUARD);
    }
}


static void
ngx_http_async_task_op_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_op_t  *op = data;

    ngx_http_async_task_store_conf_t    *conf;
    ngx_http_async_task_store_driver_t  *driver;

    conf = ngx_http_async_task_store_conf();
    driver = conf->driver;

    switch (op->type) {

    case ngx_http_async_task_op_get:
        op->rc = driver->get(conf, op->task.id, op->pool, &op->task, log);

        /* a result file that another node made, fetched to be sent */

        if (op->result
            && ngx_http_async_task_pg_files_get(conf, op, log) != NGX_OK)
        {
            op->rc = NGX_ERROR;
        }

        break;

    case ngx_http_async_task_op_list:
        if (ngx_array_init(&op->tasks, op->pool, op->filter.limit + 1,
                           sizeof(ngx_http_async_task_t))
            != NGX_OK)
        {
            op->rc = NGX_ERROR;
            break;
        }

        op->rc = driver->list(conf, &op->filter, op->pool, &op->tasks, log);
        break;

    case ngx_http_async_task_op_finish:
        op->rc = driver->finish(conf, op->task.id, op->filter.user, op->from,
                                &op->task, op->pool, log);

        /* the task will not run: its input is of no more use */

        if (op->rc == NGX_OK && op->task.file.len) {
            ngx_http_async_task_upload_remove(conf, &op->task.file, log);
            ngx_http_async_task_pg_files_remove(conf, op->task.id, log);
        }

        break;

    default:
        op->rc = NGX_ERROR;
    }
}


static void
ngx_http_async_task_op_done(ngx_event_t *ev)
{
    ngx_http_async_task_op_t  *op = ev->data;

    ngx_http_async_task_metrics_op(op);
    op->handler(op);
}


/*
 * Another batch is wanted when a slot is free, writes are pending, and
 * no batch that was posted is still to take them: so a batch never finds
 * nothing to take.
 */

static ngx_uint_t
ngx_http_async_task_batch_wanted(void)
{
    ngx_uint_t  wanted;

    if (ngx_http_async_task_batch_busy == NGX_HTTP_ASYNC_TASK_BATCHES) {
        return 0;
    }

    (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);

    wanted = !ngx_queue_empty(&ngx_http_async_task_pending)
             && ngx_http_async_task_batch_waiting == 0;

    (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

    return wanted;
}


static void
ngx_http_async_task_batch_start(void)
{
    ngx_uint_t                    i;
    ngx_thread_task_t            *task;
    ngx_http_async_task_batch_t  *batch;

    task = ngx_http_async_task_batch_tasks[(ngx_http_async_task_batch_head
                                            + ngx_http_async_task_batch_busy)
                                           % NGX_HTTP_ASYNC_TASK_BATCHES];
    batch = task->ctx;
    batch->n = 0;
    batch->usec = -1;
    batch->written = 0;

    ngx_http_async_task_batch_busy++;
    ngx_http_async_task_batches++;

    batch->seq = ngx_http_async_task_batch_seq++;

    (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);
    ngx_http_async_task_batch_waiting++;
    (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

    if (ngx_thread_task_post(batch->conf->thread_pool, task) == NGX_OK) {
        return;
    }

    /* no thread will take its turn: the writes pending fail */

    ngx_http_async_task_batch_seq--;

    (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);
    ngx_http_async_task_batch_take(batch);
    (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

    /* answered from the event loop, as a completed batch would be */

    for (i = 0; i < batch->n; i++) {
        batch->ops[i]->rc = NGX_ERROR;
    }

    ngx_post_event(&task->event, &ngx_posted_events);
}


/* under the turn mutex: the batch takes the writes pending */

static void
ngx_http_async_task_batch_take(ngx_http_async_task_batch_t *batch)
{
    ngx_queue_t               *q;
    ngx_http_async_task_op_t  *op;

    ngx_http_async_task_batch_waiting--;

    while (!ngx_queue_empty(&ngx_http_async_task_pending)
           && batch->n < NGX_HTTP_ASYNC_TASK_BATCH_MAX)
    {
        q = ngx_queue_head(&ngx_http_async_task_pending);
        ngx_queue_remove(q);

        op = ngx_queue_data(q, ngx_http_async_task_op_t, queue);

        batch->ops[batch->n] = op;
        batch->n++;
    }
}


/*
 * The pool's queue hands batches out in the order they were posted, but
 * two threads may reach the store in either order: the turns keep the
 * commits in that order too (a claim sees the inserts posted before it).
 * The batch takes its writes once it has its turn, so that all that
 * came while the batch before it was written goes with it.
 */

static void
ngx_http_async_task_batch_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_batch_t  *batch = data;

    int64_t                              start;
    ngx_uint_t                           i;
    ngx_http_async_task_store_driver_t  *driver;

    driver = batch->conf->driver;

    (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);

    while (ngx_http_async_task_batch_turn != batch->seq) {
        (void) pthread_cond_wait(&ngx_http_async_task_turn_cond,
                                 &ngx_http_async_task_turn_mutex);
    }

    ngx_http_async_task_batch_take(batch);

    (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

    start = ngx_http_async_task_metrics_clock();
    driver->write(batch->conf, batch->ops, batch->n, log);

    (void) pthread_mutex_lock(&ngx_http_async_task_turn_mutex);
    ngx_http_async_task_batch_turn++;
    (void) pthread_cond_broadcast(&ngx_http_async_task_turn_cond);
    (void) pthread_mutex_unlock(&ngx_http_async_task_turn_mutex);

    /* a failed write failed every op; else nothing is answered unflushed */

    if (driver->sync && batch->n && batch->ops[0]->rc != NGX_ERROR
        && driver->sync(batch->conf, log) != NGX_OK)
    {
        for (i = 0; i < batch->n; i++) {
            batch->ops[i]->rc = NGX_ERROR;
        }
    }

    batch->usec = ngx_http_async_task_metrics_clock() - start;
}


/*
 * A later batch may be flushed before an earlier one: it waits for it,
 * so that the handlers see the batches in the order they were posted (a
 * claim after the insert of the task it claims, an outcome after its
 * claim).
 */

static void
ngx_http_async_task_batch_done(ngx_event_t *ev)
{
    ngx_http_async_task_batch_t  *batch = ev->data;

    ngx_uint_t                 i, n;
    ngx_http_async_task_op_t  *ops[NGX_HTTP_ASYNC_TASK_BATCH_MAX];

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "async task batch of %ui written", batch->n);

    batch->written = 1;

    while (ngx_http_async_task_batch_busy) {

        batch = ngx_http_async_task_batch_tasks[ngx_http_async_task_batch_head]
                ->ctx;

        if (!batch->written) {
            return;
        }

        n = batch->n;
        ngx_memcpy(ops, batch->ops, n * sizeof(ngx_http_async_task_op_t *));
        ngx_http_async_task_metrics_batch(ops, n, batch->usec);

        ngx_http_async_task_batch_busy--;
        ngx_http_async_task_batch_head = (ngx_http_async_task_batch_head + 1)
                                         % NGX_HTTP_ASYNC_TASK_BATCHES;

        /* start the next batch first: it is written during our answers */

        if (ngx_http_async_task_batch_wanted()) {
            ngx_http_async_task_batch_start();
        }

        ngx_http_async_task_ops -= n;

        for (i = 0; i < n; i++) {

            /* the queue of that kind is empty for now, on every node */

            if (ops[i]->type == ngx_http_async_task_op_claim
                && ops[i]->rc == NGX_DECLINED)
            {
                ngx_http_async_task_remote[ops[i]->filter.kind] = 0;
            }

            ops[i]->handler(ops[i]);
        }

        ngx_http_async_task_maintain_due(batch->conf);
    }
}


/*
 * A shared store: tasks that other nodes queued are not in this node's
 * zone.  The dispatcher claims when a notification said so, until a claim
 * finds nothing, and at "tick" in any case (a notification missed while
 * the listening connection was down).
 */

ngx_uint_t
ngx_http_async_task_store_remote(ngx_uint_t kind, ngx_uint_t tick)
{
    ngx_http_async_task_store_conf_t  *conf;

    conf = ngx_http_async_task_store_conf();

    if (!conf->driver->shared) {
        return 0;
    }

    return tick || ngx_http_async_task_remote[kind];
}


void
ngx_http_async_task_store_queued(void)
{
    ngx_uint_t  k;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        ngx_http_async_task_remote[k] = 1;
    }
}


/*
 * Housekeeping of the store, at most one at a time per worker process.
 * While the worker writes, its writer checkpoints (before a transaction,
 * in the batch's thread); once it has been idle for a tick since it last
 * wrote, this cuts the log back to nothing, once.
 */

static void
ngx_http_async_task_maintain_timer(ngx_event_t *ev)
{
    ngx_http_async_task_store_conf_t *conf = ev->data;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    if (ngx_http_async_task_batches != ngx_http_async_task_batches_seen
        || !ngx_http_async_task_wrote || ngx_http_async_task_batch_busy
        || ngx_http_async_task_maintaining)
    {
        if (ngx_http_async_task_batches != ngx_http_async_task_batches_seen) {
            ngx_http_async_task_batches_seen = ngx_http_async_task_batches;
            ngx_http_async_task_wrote = 1;
        }

        ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_MAINTAIN);
        return;
    }

    if (ngx_http_async_task_maintain_post(conf, 1) != NGX_OK) {
        ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_MAINTAIN);
    }
}


/* after a batch: the driver's housekeeping that cannot wait for idle */

static void
ngx_http_async_task_maintain_due(ngx_http_async_task_store_conf_t *conf)
{
    if (conf->driver->due == NULL || ngx_http_async_task_maintaining
        || ngx_exiting || ngx_terminate || !conf->driver->due())
    {
        return;
    }

    (void) ngx_http_async_task_maintain_post(conf, 0);
}


static ngx_int_t
ngx_http_async_task_maintain_post(ngx_http_async_task_store_conf_t *conf,
    ngx_uint_t idle)
{
    ngx_http_async_task_maintain_t  *maintain;

    maintain = ngx_http_async_task_maintain_task->ctx;
    maintain->idle = idle;

    if (ngx_thread_task_post(conf->thread_pool,
                             ngx_http_async_task_maintain_task)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_async_task_maintaining = 1;

    return NGX_OK;
}


static void
ngx_http_async_task_maintain_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_maintain_t *maintain = data;

    maintain->rc = maintain->conf->driver->maintain(maintain->conf,
                                                    maintain->idle, log);
}


static void
ngx_http_async_task_maintain_done(ngx_event_t *ev)
{
    ngx_http_async_task_maintain_t *maintain = ev->data;

    ngx_http_async_task_maintaining = 0;

    if (!maintain->idle) {
        /* the timer is still set */
        return;
    }

    if (maintain->rc == NGX_OK
        && ngx_http_async_task_batches == ngx_http_async_task_batches_seen)
    {
        /* the log is empty: nothing to do until the next write */
        ngx_http_async_task_wrote = 0;
    }

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    ngx_add_timer(&ngx_http_async_task_maintain_event,
                  NGX_HTTP_ASYNC_TASK_MAINTAIN);
}
