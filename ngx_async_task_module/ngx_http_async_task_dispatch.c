
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_async_task_dispatch.h"
#include "ngx_http_async_task_client.h"
#include "ngx_http_async_task_conn.h"
#include "ngx_http_async_task_health.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_pg_files.h"
#include "ngx_http_async_task_protocol.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_upload.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"


/*
 * The dispatcher: every worker process runs queued tasks on the instances
 * of the backends' upstreams, with no client request behind them.
 *
 * A worker that sees a free slot claims a task from the store (an atomic
 * UPDATE leases it to the process), picks an instance with the balancer
 * (slots are counted in the zone, for the whole nginx; with a shared store
 * the claim leases them, counted for every node), sends the request
 * with its own HTTP client, and reports the outcome to the store under
 * the lease.  A worker wakes itself when it accepts a task or finishes
 * one, and looks for work on a short timer, for what other workers do.
 */


#define NGX_HTTP_ASYNC_TASK_TICK          200
#define NGX_HTTP_ASYNC_TASK_REAP          1000
#define NGX_HTTP_ASYNC_TASK_CLAIMS        64
/* the slots a claim on a shared store may choose among */
#define NGX_HTTP_ASYNC_TASK_CLAIM_SLOTS   256
#define NGX_HTTP_ASYNC_TASK_BACKOFF_MAX   60000
#define NGX_HTTP_ASYNC_TASK_ORPHANS       16
#define NGX_HTTP_ASYNC_TASK_ZONE_FULL_WAIT  1000
#define NGX_HTTP_ASYNC_TASK_KEEP_FIRST  100
#define NGX_HTTP_ASYNC_TASK_KEEP_MAX    1000

/* before another try at an input the store could not give (ms) */
#define NGX_HTTP_ASYNC_TASK_FETCH_WAIT    1000


typedef struct {
    ngx_queue_t                        queue;      /* this worker's runs */
    ngx_pool_t                        *pool;
    ngx_log_t                          log;

    ngx_http_async_task_t              task;
    ngx_http_async_task_backend_t     *backend;
    ngx_http_async_task_instance_t    *instance;
    ngx_http_async_task_instance_t    *slot;       /* leased with the claim */
    ngx_http_async_task_instance_sh_t *orphaned;   /* recovered runs */
    ngx_pid_t                          orphan_owner;
    ngx_array_t                        tasks;      /* reclaimed */
    ngx_array_t                        files;      /* expired */
    ngx_http_async_task_client_t       client;
    ngx_http_async_task_run_t          run;        /* as protocols see it */
    ngx_event_t                        next;       /* a run's next step */
    ngx_pool_t                        *exchange;   /* a step's answer */

    ngx_str_t                          temp;       /* the run's file */
    int64_t                            not_before;
    ngx_msec_t                         backoff;    /* an uncharged requeue */
    ngx_msec_t                         keep;       /* the outcome waits */
    ngx_int_t                          rc;
} ngx_http_async_task_job_t;


static ngx_http_async_task_job_t *ngx_http_async_task_job_create(
    ngx_uint_t kind);
static void ngx_http_async_task_job_destroy(ngx_http_async_task_job_t *job);
static ngx_int_t ngx_http_async_task_job_post(ngx_http_async_task_job_t *job,
    ngx_http_async_task_thread_pt handler, ngx_event_handler_pt done);
static void ngx_http_async_task_dispatch_handler(ngx_event_t *ev);
static void ngx_http_async_task_claim_done(ngx_http_async_task_op_t *op);
static void ngx_http_async_task_open_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_open_done(ngx_event_t *ev);
static ngx_int_t ngx_http_async_task_job_adopt(
    ngx_http_async_task_job_t *job, ngx_http_async_task_t *task);
static void ngx_http_async_task_start(ngx_http_async_task_job_t *job);
static void ngx_http_async_task_send(ngx_http_async_task_job_t *job);
static void ngx_http_async_task_run_finished(ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_next_step(ngx_event_t *ev);
static void ngx_http_async_task_complete(ngx_http_async_task_job_t *job);
static void ngx_http_async_task_complete_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_complete_done(ngx_event_t *ev);
static void ngx_http_async_task_complete_stored(ngx_http_async_task_op_t *op);
static void ngx_http_async_task_complete_keep(ngx_http_async_task_job_t *job);
static void ngx_http_async_task_complete_apply(
    ngx_http_async_task_job_t *job);
static void ngx_http_async_task_discard_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_discard_done(ngx_event_t *ev);
static void ngx_http_async_task_tick(ngx_event_t *ev);
static void ngx_http_async_task_reap(ngx_event_t *ev);
static void ngx_http_async_task_reclaim_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_reclaim_done(ngx_event_t *ev);
static void ngx_http_async_task_recover_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_recover_done(ngx_event_t *ev);
static void ngx_http_async_task_expire(ngx_event_t *ev);
static void ngx_http_async_task_expire_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_expire_done(ngx_event_t *ev);
static ngx_http_async_task_instance_t *ngx_http_async_task_instance(
    ngx_http_async_task_backend_t *backend, ngx_str_t *name);


static ngx_http_async_task_main_conf_t  *ngx_http_async_task_amcf;
static ngx_http_async_task_shm_t        *ngx_http_async_task_shm_ctx;

static ngx_event_t      ngx_http_async_task_dispatch_event;
static ngx_event_t      ngx_http_async_task_tick_event;
static ngx_event_t      ngx_http_async_task_reap_event;
static ngx_event_t      ngx_http_async_task_expire_event;
static ngx_queue_t      ngx_http_async_task_jobs;
static ngx_uint_t       ngx_http_async_task_claiming[
                                                 NGX_HTTP_ASYNC_TASK_NKINDS];
static ngx_uint_t       ngx_http_async_task_expiring;
static ngx_uint_t       ngx_http_async_task_reaps;
static ngx_uint_t       ngx_http_async_task_ticks;
static ngx_uint_t       ngx_http_async_task_runs;
static ngx_uint_t       ngx_http_async_task_zone_full;
static ngx_str_t        ngx_http_async_task_owner;
static u_char           ngx_http_async_task_owner_text[
                                              NGX_HTTP_ASYNC_TASK_LEASE_LEN];
static ngx_uint_t       ngx_http_async_task_expired[
                                              NGX_HTTP_ASYNC_TASK_NSTATUSES];
static ngx_int_t        ngx_http_async_task_expire_rc;


ngx_int_t
ngx_http_async_task_dispatch_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf)
{
    ngx_msec_t  interval;

    ngx_http_async_task_amcf = amcf;
    ngx_http_async_task_shm_ctx = amcf->store->shm_zone->data;

    ngx_queue_init(&ngx_http_async_task_jobs);
    ngx_memzero(ngx_http_async_task_claiming,
                sizeof(ngx_http_async_task_claiming));

    /* the lease owner: this process */

    ngx_http_async_task_owner.data = ngx_http_async_task_owner_text;
    ngx_http_async_task_util_lease(&ngx_http_async_task_owner, ngx_pid);

    /* debug logging takes an event's data for a connection's: not NULL */

    ngx_http_async_task_dispatch_event.handler =
                                        ngx_http_async_task_dispatch_handler;
    ngx_http_async_task_dispatch_event.log = cycle->log;
    ngx_http_async_task_dispatch_event.data = amcf;

    ngx_http_async_task_tick_event.handler = ngx_http_async_task_tick;
    ngx_http_async_task_tick_event.log = cycle->log;
    ngx_http_async_task_tick_event.data = amcf;
    ngx_http_async_task_tick_event.cancelable = 1;

    ngx_http_async_task_reap_event.handler = ngx_http_async_task_reap;
    ngx_http_async_task_reap_event.log = cycle->log;
    ngx_http_async_task_reap_event.data = amcf;
    ngx_http_async_task_reap_event.cancelable = 1;

    ngx_http_async_task_expire_event.handler = ngx_http_async_task_expire;
    ngx_http_async_task_expire_event.log = cycle->log;
    ngx_http_async_task_expire_event.data = amcf;
    ngx_http_async_task_expire_event.cancelable = 1;

    ngx_add_timer(&ngx_http_async_task_tick_event, NGX_HTTP_ASYNC_TASK_TICK);
    ngx_add_timer(&ngx_http_async_task_reap_event, NGX_HTTP_ASYNC_TASK_REAP);

    interval = (ngx_msec_t) ngx_min(amcf->store->retention * 1000 / 2, 60000);
    ngx_add_timer(&ngx_http_async_task_expire_event,
                  ngx_max(interval, 1000));

    ngx_post_event(&ngx_http_async_task_dispatch_event, &ngx_posted_events);

    return NGX_OK;
}


void
ngx_http_async_task_dispatch_wake(void)
{
    if (ngx_http_async_task_amcf && !ngx_exiting && !ngx_terminate
        && !ngx_http_async_task_dispatch_event.posted)
    {
        ngx_post_event(&ngx_http_async_task_dispatch_event, &ngx_posted_events);
    }
}


/*
 * As many claims as there are free slots for a kind, less those already
 * under way here.  Slots taken by other workers show in the zone.
 */

static void
ngx_http_async_task_dispatch_handler(ngx_event_t *ev)
{
    ngx_uint_t                       k, free, total, queued, want;
    ngx_http_async_task_op_t        *op;
    ngx_http_async_task_shm_t       *shm;
    ngx_http_async_task_backend_t   *backend;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    shm = ngx_http_async_task_shm_ctx;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &ngx_http_async_task_amcf->backends[k];

        if (backend->upstream == NULL) {
            continue;
        }

        queued = ngx_http_async_task_shm_queued(shm, k);
        ngx_http_async_task_upstream_slots(shm, backend, &free, &total);

        /*
         * Now and then a claim whatever the zone says: a task can be in
         * the store and not in the zone (a worker killed between the two).
         */

        if (queued == 0 && ev == &ngx_http_async_task_tick_event
            && ngx_http_async_task_ticks % 25 == 0)
        {
            queued = 1;
        }

        /* a shared store: other nodes' tasks are not in the zone */

        if (queued == 0
            && ngx_http_async_task_store_remote(k,
                                ev == &ngx_http_async_task_tick_event
                                && ngx_http_async_task_ticks % 5 == 0))
        {
            queued = free;
        }

        want = ngx_min(free, queued);

        if (want <= ngx_http_async_task_claiming[k]) {
            continue;
        }

        want = ngx_min(want - ngx_http_async_task_claiming[k],
                       NGX_HTTP_ASYNC_TASK_CLAIMS);

        /* one claim for all of them, in the worker's write batch */

        op = ngx_http_async_task_op_create(ev->log,
                                           ngx_http_async_task_op_claim);
        if (op == NULL) {
            return;
        }

        op->filter.kind = k;
        op->filter.limit = want;
        op->owner = &ngx_http_async_task_owner;
        op->lease = (int64_t) backend->timeout + 60000;
        op->handler = ngx_http_async_task_claim_done;

        /* a shared store leases slots on every node's count: which ones */

        if (ngx_http_async_task_amcf->store->driver->shared) {
            op->backend = backend;
            op->slots = ngx_palloc(op->pool, NGX_HTTP_ASYNC_TASK_CLAIM_SLOTS
                                   * sizeof(ngx_http_async_task_instance_t *));

            if (op->slots) {
                op->nslots = ngx_http_async_task_upstream_order(shm, backend,
                                 want, op->slots,
                                 NGX_HTTP_ASYNC_TASK_CLAIM_SLOTS);
            }

            if (op->nslots == 0) {
                ngx_http_async_task_op_destroy(op);
                continue;
            }
        }

        (void) ngx_http_async_task_op_post(op);

        ngx_http_async_task_claiming[k] += want;
    }
}


static ngx_http_async_task_job_t *
ngx_http_async_task_job_create(ngx_uint_t kind)
{
    ngx_pool_t                 *pool;
    ngx_http_async_task_job_t  *job;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_async_task_job_t));
    if (job == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job->pool = pool;
    job->backend = &ngx_http_async_task_amcf->backends[kind];
    job->task.kind = kind;

    job->log = *ngx_cycle->log;
    pool->log = &job->log;

    job->run.pool = pool;
    job->run.log = &job->log;
    job->run.task = &job->task;
    job->run.backend = job->backend;
    job->run.fd = NGX_INVALID_FILE;

    /* not cancelable: an exiting worker ends its runs through the store */
    job->next.handler = ngx_http_async_task_next_step;
    job->next.data = job;
    job->next.log = &job->log;

    return job;
}


static void
ngx_http_async_task_job_destroy(ngx_http_async_task_job_t *job)
{
    if (job->run.fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(job->run.fd);
    }

    if (job->next.timer_set) {
        ngx_del_timer(&job->next);
    }

    if (job->exchange) {
        ngx_destroy_pool(job->exchange);
    }

    ngx_destroy_pool(job->pool);
}


/* the store's guard keeps an exiting worker until "done" has run */

static ngx_int_t
ngx_http_async_task_job_post(ngx_http_async_task_job_t *job,
    ngx_http_async_task_thread_pt handler, ngx_event_handler_pt done)
{
    return ngx_http_async_task_store_post(job->pool, &job->log, handler,
                                          done, job);
}


/* each claimed task becomes a run of its own */

static void
ngx_http_async_task_claim_done(ngx_http_async_task_op_t *op)
{
    ngx_uint_t                        i, n;
    ngx_http_async_task_t            *tasks;
    ngx_http_async_task_job_t        *run;
    ngx_http_async_task_instance_t  **chosen;

    ngx_http_async_task_claiming[op->filter.kind] -= op->filter.limit;

    /* a shared store: round robin goes by the slots that the claim got */

    chosen = op->nslots ? ngx_palloc(op->pool, op->nslots * sizeof(
                                     ngx_http_async_task_instance_t *))
                        : NULL;

    if (chosen) {
        tasks = op->tasks.elts;
        n = 0;

        for (i = 0; op->rc == NGX_OK && i < op->tasks.nelts; i++) {
            chosen[n] = ngx_http_async_task_instance(op->backend,
                                                     &tasks[i].backend);
            n += (chosen[n] != NULL);
        }

        ngx_http_async_task_upstream_chosen(ngx_http_async_task_shm_ctx,
                                    op->backend, op->slots,
                                    ngx_min(op->filter.limit, op->nslots),
                                    chosen, n);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, op->log, 0,
                   "async task claim of %ui %V: %ui claimed",
                   op->filter.limit,
                   &ngx_http_async_task_kind(op->filter.kind)->name,
                   op->rc == NGX_OK ? op->tasks.nelts : 0);

    if (op->rc == NGX_OK) {
        tasks = op->tasks.elts;

        for (i = 0; i < op->tasks.nelts; i++) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, op->log, 0,
                           "async task %*s claimed",
                           NGX_HTTP_ASYNC_TASK_ID_LEN, tasks[i].id);

            run = ngx_http_async_task_job_create(op->filter.kind);

            if (run) {
                run->slot = op->nslots
                            ? ngx_http_async_task_instance(run->backend,
                                                           &tasks[i].backend)
                            : NULL;
            }

            if (run == NULL
                || (op->nslots && run->slot == NULL)
                || ngx_http_async_task_job_adopt(run, &tasks[i]) != NGX_OK)
            {
                /* the lease stays: the task runs after its owner exits */
                if (run) {
                    ngx_http_async_task_job_destroy(run);
                }

                continue;
            }

            if (!ngx_http_async_task_kind(run->task.kind)->input) {
                ngx_http_async_task_start(run);
                continue;
            }

            /* an input is sent from its file: opened off the event loop */

            if (ngx_http_async_task_job_post(run,
                                             ngx_http_async_task_open_thread,
                                             ngx_http_async_task_open_done)
                != NGX_OK)
            {
                ngx_http_async_task_start(run);
            }
        }
    }

    ngx_http_async_task_op_destroy(op);
}


static void
ngx_http_async_task_open_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    ngx_file_info_t                    fi;
    ngx_http_async_task_store_conf_t  *conf;
    u_char                             path[NGX_MAX_PATH];

    conf = ngx_http_async_task_amcf->store;

    if (job->task.file.len == 0
        || conf->files.len + 1 + job->task.file.len >= NGX_MAX_PATH)
    {
        return;
    }

    /* an upload that another node took: fetched from the store first */

    if (ngx_http_async_task_pg_files_fetch(conf, job->task.id,
                                           &job->task.file, log)
        == NGX_ERROR)
    {
        /* not the task's fault: it queues again, uncharged */
        job->run.outcome.run = ngx_http_async_task_run_requeue;
        job->run.outcome.code = "backend_error";
        ngx_str_set(&job->run.outcome.message,
                    "the input could not be fetched from the store");
        job->backoff = NGX_HTTP_ASYNC_TASK_FETCH_WAIT;
        return;
    }

    ngx_sprintf(path, "%V/%V%Z", &conf->files, &job->task.file);

    job->run.fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (job->run.fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "async_task: the input of task %*s is gone: \"%s\"",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id, path);
        return;
    }

    if (ngx_fd_info(job->run.fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(job->run.fd);
        job->run.fd = NGX_INVALID_FILE;
        return;
    }

    job->run.size = ngx_file_size(&fi);

    if (job->backend->protocol->prepare) {
        job->backend->protocol->prepare(&job->run, log);
    }
}


static void
ngx_http_async_task_open_done(ngx_event_t *ev)
{
    ngx_http_async_task_start(ev->data);
}


static ngx_int_t
ngx_http_async_task_job_adopt(ngx_http_async_task_job_t *job,
    ngx_http_async_task_t *task)
{
    ngx_str_t  *s[] = { &job->task.user, &job->task.params, &job->task.file,
                        &job->task.backend, &job->task.result,
                        &job->task.error };
    ngx_uint_t  i;
    u_char     *p;

    job->task = *task;

    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if (s[i]->len == 0) {
            continue;
        }

        p = ngx_pnalloc(job->pool, s[i]->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, s[i]->data, s[i]->len);
        s[i]->data = p;
    }

    return NGX_OK;
}


static void
ngx_http_async_task_start(ngx_http_async_task_job_t *job)
{
    ngx_int_t                         rc;
    ngx_str_t                        *user;
    ngx_uint_t                        avoid;
    ngx_http_async_task_shm_t        *shm;
    ngx_http_async_task_instance_t   *in;

    shm = ngx_http_async_task_shm_ctx;

    if (ngx_http_async_task_kind(job->task.kind)->input
        && job->run.fd == NGX_INVALID_FILE)
    {
        /* a task that cannot run: failed, not retried */
        if (job->run.outcome.run != ngx_http_async_task_run_requeue) {
            job->run.outcome.run = ngx_http_async_task_run_failed;
            job->run.outcome.code = "backend_error";
            ngx_str_set(&job->run.outcome.message,
                        "the uploaded input is gone");
        }

        ngx_http_async_task_complete(job);
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        job->run.outcome.result = ngx_http_async_task_client_aborted;
        ngx_http_async_task_complete(job);
        return;
    }

    if (job->slot) {
        /* a shared store leased its slot with the claim, as chosen then */
        in = job->slot;
        job->slot = NULL;
        ngx_http_async_task_upstream_take(shm, in, &job->log);

    } else {
        /* a retried task goes elsewhere if it can */

        in = ngx_http_async_task_instance(job->backend, &job->task.backend);
        avoid = in ? in->index : NGX_HTTP_ASYNC_TASK_NONE;

        user = job->task.has_user ? &job->task.user : NULL;

        in = ngx_http_async_task_upstream_get(shm, job->backend, user, avoid,
                                              &job->log);
    }

    if (in == NULL) {
        /* the slot went to another worker meanwhile: queue again */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                       "async task %*s: no instance slot, requeued",
                       NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);

        job->run.outcome.run = ngx_http_async_task_run_requeue;
        job->run.outcome.code = "backend_error";
        ngx_str_set(&job->run.outcome.message, "no instance slot was free");
        ngx_http_async_task_complete(job);
        return;
    }

    rc = ngx_http_async_task_shm_start(shm, &job->task, in->sh);

    if (rc == NGX_DECLINED) {

        /*
         * The zone still has the run before: its requeue is in the store,
         * not yet in the zone.  The task goes back under this claim's
         * lease, which would hold it until it ran out; after a tick, so
         * that the claims do not spin until that run's answer comes.
         */

        ngx_http_async_task_upstream_release(shm, in->sh, &job->log);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                       "async task %*s: its last run is not over, requeued",
                       NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);

        job->run.outcome.run = ngx_http_async_task_run_requeue;
        job->run.outcome.code = "backend_error";
        job->backoff = NGX_HTTP_ASYNC_TASK_TICK;
        ngx_str_set(&job->run.outcome.message, "its last run was not over");
        ngx_http_async_task_complete(job);
        return;
    }

    if (rc == NGX_AGAIN) {
        /* no room in the zone for its node: queue again, uncharged */
        ngx_http_async_task_upstream_release(shm, in->sh, &job->log);

        if (!ngx_http_async_task_zone_full) {
            ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                          "async_task zone is full: task %*s queues again",
                          NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);
            ngx_http_async_task_zone_full = 1;
        }

        job->run.outcome.run = ngx_http_async_task_run_requeue;
        job->run.outcome.code = "backend_error";
        job->backoff = NGX_HTTP_ASYNC_TASK_ZONE_FULL_WAIT;
        ngx_str_set(&job->run.outcome.message, "the zone is full");
        ngx_http_async_task_complete(job);
        return;
    }

    ngx_http_async_task_zone_full = 0;
    ngx_http_async_task_metrics_started(&job->task);

    job->instance = in;
    job->run.instance = in;
    job->task.backend = in->name;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                   "async task %*s started on %V, attempts:%ui",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id, &in->name,
                   job->task.attempts);

    ngx_queue_insert_tail(&ngx_http_async_task_jobs, &job->queue);

    ngx_http_async_task_send(job);
}


/* an exchange of the run: its first, or the next step of its protocol */

static void
ngx_http_async_task_send(ngx_http_async_task_job_t *job)
{
    ngx_msec_int_t                 left;
    ngx_http_async_task_client_t  *hc;

    hc = &job->client;

    /* all the steps of a run together take at most the timeout */

    if (job->run.step == 0) {
        job->run.deadline = ngx_current_msec + job->backend->timeout;
    }

    left = (ngx_msec_int_t) (job->run.deadline - ngx_current_msec);

    ngx_http_async_task_client_init(hc, job->backend, job->instance,
                                    (ngx_msec_t) ngx_max(left, 1));

    hc->pool = job->pool;
    hc->log = &job->log;
    hc->data = job;
    hc->handler = ngx_http_async_task_run_finished;

    if (left <= 0) {
        hc->result = ngx_http_async_task_client_timeout;
        ngx_http_async_task_run_finished(hc);
        return;
    }

    /*
     * A protocol of several steps reads each answer in a pool of its own,
     * freed before the next step: a run that polls does not grow.
     */

    if (job->backend->protocol->process) {
        job->exchange = ngx_create_pool(4096, &job->log);
        if (job->exchange == NULL) {
            hc->result = ngx_http_async_task_client_broken;
            ngx_http_async_task_run_finished(hc);
            return;
        }

        hc->pool = job->exchange;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                   "async task %*s runs, step %ui", NGX_HTTP_ASYNC_TASK_ID_LEN,
                   job->task.id, job->run.step);

    hc->request = job->backend->protocol->create_request(&job->run);

    hc->max_response = job->run.max_response
                       ? job->run.max_response
                       : ngx_http_async_task_kind(job->task.kind)->answer_max;

    if (hc->request == NULL) {
        ngx_log_error(NGX_LOG_ALERT, &job->log, 0,
                      "async_task: the request of task %*s could not be made",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);
        hc->result = ngx_http_async_task_client_broken;
        ngx_http_async_task_run_finished(hc);
        return;
    }

    if (ngx_http_async_task_conn_client(hc, job->backend, job->instance)
        != NGX_OK)
    {
        hc->result = ngx_http_async_task_client_broken;
        ngx_http_async_task_run_finished(hc);
        return;
    }

    if (ngx_http_async_task_client_start(hc) != NGX_OK) {
        hc->result = ngx_http_async_task_client_refused;
        ngx_http_async_task_run_finished(hc);
    }
}


static void
ngx_http_async_task_run_finished(ngx_http_async_task_client_t *hc)
{
    ngx_http_async_task_job_t  *job = hc->data;

    ngx_int_t                        rc;
    ngx_http_async_task_protocol_t  *protocol;

    job->run.outcome.result = hc->result;
    job->run.outcome.status = hc->status;
    job->run.outcome.body = hc->body;

    protocol = job->backend->protocol;

    if (protocol->process && hc->result == ngx_http_async_task_client_ok) {

        rc = protocol->process(&job->run);

        if (rc == NGX_AGAIN) {
            job->run.step++;

            ngx_destroy_pool(job->exchange);
            job->exchange = NULL;
            ngx_str_null(&job->run.outcome.body);

            ngx_log_debug4(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                           "async task %*s: step %ui in %M ms",
                           NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id,
                           job->run.step, job->run.delay);

            ngx_add_timer(&job->next, job->run.delay);
            return;
        }
    }

    ngx_queue_remove(&job->queue);

    ngx_http_async_task_complete(job);
}


/* the next exchange of a run; at shutdown the run ends uncharged */

static void
ngx_http_async_task_next_step(ngx_event_t *ev)
{
    ngx_http_async_task_job_t  *job = ev->data;

    if (ngx_exiting || ngx_terminate) {
        ngx_queue_remove(&job->queue);

        if (job->backend->protocol->cancel) {
            job->backend->protocol->cancel(&job->run);
        }

        job->run.outcome.result = ngx_http_async_task_client_aborted;
        ngx_http_async_task_complete(job);
        return;
    }

    ngx_http_async_task_send(job);
}


/* the outcome to the store, in a thread: images are written there too */

static void
ngx_http_async_task_complete(ngx_http_async_task_job_t *job)
{
    u_char  *p;

    job->run.outcome.files = &ngx_http_async_task_amcf->store->files;

    /*
     * A result is written under a name of this run's own, and takes the
     * task's name only when the store takes the outcome: a run that lost
     * its lease never touches the file of the run that won.
     */

    p = ngx_pnalloc(job->pool, sizeof(".-.tmp") + 2 * NGX_INT_T_LEN);
    if (p) {
        job->run.outcome.suffix.data = p;
        job->run.outcome.suffix.len = ngx_sprintf(p, ".%P-%ui.tmp", ngx_pid,
                                              ++ngx_http_async_task_runs)
                                  - p;
    }

    if (ngx_http_async_task_job_post(job,
                                     ngx_http_async_task_complete_thread,
                                     ngx_http_async_task_complete_done)
        != NGX_OK)
    {
        /* the lease stays: the task runs again after a restart */
        ngx_log_error(NGX_LOG_ALERT, &job->log, 0,
                      "async_task: the outcome of task %*s could not be "
                      "stored", NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);

        if (job->instance) {
            ngx_http_async_task_upstream_release(ngx_http_async_task_shm_ctx,
                                                 job->instance->sh,
                                                 &job->log);
        }

        ngx_http_async_task_job_destroy(job);
    }
}


static void
ngx_http_async_task_complete_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    int64_t                         delay;
    ngx_http_async_task_t          *task;
    ngx_http_async_task_outcome_t  *out;

    task = &job->task;
    out = &job->run.outcome;

    if (out->code == NULL) {
        job->backend->protocol->finalize(&job->run, log);
    }

    job->not_before = 0;

    switch (out->run) {

    case ngx_http_async_task_run_done:
        task->status = NGX_HTTP_ASYNC_TASK_DONE;
        task->attempts++;
        task->result = out->output;
        task->file = out->file;
        task->finished_at = ngx_http_async_task_util_now_ms();
        break;

    case ngx_http_async_task_run_requeue:
        task->status = NGX_HTTP_ASYNC_TASK_QUEUED;

        if (job->backoff) {
            job->not_before = ngx_http_async_task_util_now_ms() + job->backoff;
        }

        break;

    case ngx_http_async_task_run_error:
        task->attempts++;

        if (task->attempts <= job->backend->retries) {

            /* exponential backoff, with jitter: half to all of it */

            delay = (int64_t) job->backend->backoff
                    << ngx_min(task->attempts - 1, 16);
            delay = ngx_min(delay, NGX_HTTP_ASYNC_TASK_BACKOFF_MAX);
            delay = delay / 2 + (delay ? ngx_random() % (delay / 2 + 1) : 0);

            task->status = NGX_HTTP_ASYNC_TASK_QUEUED;
            job->not_before = ngx_http_async_task_util_now_ms() + delay;

            ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                           "async task %*s: retry %ui in %L ms",
                           NGX_HTTP_ASYNC_TASK_ID_LEN, task->id,
                           task->attempts, delay);
            break;
        }

        /* fall through */

    default: /* ngx_http_async_task_run_failed */
        if (out->run == ngx_http_async_task_run_failed) {
            task->attempts++;
        }

        task->status = NGX_HTTP_ASYNC_TASK_FAILED;
        task->finished_at = ngx_http_async_task_util_now_ms();

        if (ngx_http_async_task_json_task_error(job->pool, &task->error,
                                     out->code ? out->code : "backend_error",
                                     &out->message)
            != NGX_OK)
        {
            ngx_str_set(&task->error, "{\"code\":\"backend_error\"}");
        }
    }

}


/* the outcome is known: it goes to the store with the worker's batch */

static void
ngx_http_async_task_complete_done(ngx_event_t *ev)
{
    ngx_http_async_task_job_t *job = ev->data;

    u_char                         *p;
    ngx_http_async_task_op_t       *op;
    ngx_http_async_task_outcome_t  *out;

    out = &job->run.outcome;

    op = ngx_http_async_task_op_create(&job->log,
                                       ngx_http_async_task_op_complete);
    if (op == NULL) {
        ngx_http_async_task_complete_keep(job);
        return;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                   "async task %*s outcome: %V, attempts:%ui, "
                   "client result:%d",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id,
                   &ngx_http_async_task_statuses[job->task.status],
                   job->task.attempts, (int) out->result);

    op->task = job->task;
    op->owner = &ngx_http_async_task_owner;
    op->not_before = job->not_before;

    if (out->run == ngx_http_async_task_run_done && out->file.len
        && job->temp.len == 0)
    {
        p = ngx_pnalloc(job->pool, out->file.len + out->suffix.len);
        if (p == NULL) {
            ngx_http_async_task_op_destroy(op);
            ngx_http_async_task_complete_keep(job);
            return;
        }

        job->temp.data = p;
        p = ngx_cpymem(p, out->file.data, out->file.len);
        p = ngx_cpymem(p, out->suffix.data, out->suffix.len);
        job->temp.len = p - job->temp.data;
    }

    op->temp = job->temp;
    op->handler = ngx_http_async_task_complete_stored;
    op->data = job;

    (void) ngx_http_async_task_op_post(op);
}


static void
ngx_http_async_task_complete_stored(ngx_http_async_task_op_t *op)
{
    ngx_http_async_task_job_t *job = op->data;

    job->rc = op->rc;
    ngx_http_async_task_op_destroy(op);

    if (job->rc == NGX_ERROR) {
        ngx_http_async_task_complete_keep(job);
        return;
    }

    if (job->keep) {
        ngx_log_error(NGX_LOG_NOTICE, &job->log, 0,
                      "async_task: the outcome of task %*s is stored",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);
    }

    ngx_http_async_task_complete_apply(job);
}


/*
 * The store could not take the outcome (PostgreSQL is down, SQLite's file
 * stays locked): the run keeps it, with its lease and its instance slot,
 * and offers it again, sooner or later, until the store takes it, so that
 * the work is not done twice.  The timer is not cancelable: an exiting
 * worker stays until then.
 */

static void
ngx_http_async_task_complete_keep(ngx_http_async_task_job_t *job)
{
    if (job->keep == 0) {
        ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                      "async_task: the outcome of task %*s waits for the "
                      "store", NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id);

        job->keep = NGX_HTTP_ASYNC_TASK_KEEP_FIRST;

    } else {
        job->keep = ngx_min(job->keep * 2, NGX_HTTP_ASYNC_TASK_KEEP_MAX);
    }

    job->next.handler = ngx_http_async_task_complete_done;

    ngx_add_timer(&job->next, job->keep);
}


/* the store has the outcome (or refused it): the zone and slots follow */

static void
ngx_http_async_task_complete_apply(ngx_http_async_task_job_t *job)
{
    ngx_http_async_task_t           *task;
    ngx_http_async_task_shm_t       *shm;
    ngx_http_async_task_outcome_t   *out;
    ngx_http_async_task_instance_t  *in;

    shm = ngx_http_async_task_shm_ctx;
    task = &job->task;
    out = &job->run.outcome;
    in = job->instance;

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                   "async task %*s outcome stored, rc:%i, %V%s",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, task->id, job->rc,
                   &ngx_http_async_task_statuses[task->status],
                   job->rc == NGX_OK
                   && task->status == NGX_HTTP_ASYNC_TASK_QUEUED
                   ? ", requeued" : "");

    if (in) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                       "async task %*s: slot of %V released",
                       NGX_HTTP_ASYNC_TASK_ID_LEN, task->id, &in->name);

        ngx_http_async_task_upstream_free(shm, in, job->backend->ups,
                            out->run != ngx_http_async_task_run_done,
                            out->result, &job->log);

        /* with health checks, failed task requests count as failures */

        if (out->result != ngx_http_async_task_client_aborted) {
            ngx_http_async_task_health_report(in, job->backend->ups,
                       out->result == ngx_http_async_task_client_ok
                       && out->status < 500, &job->log);
        }
    }

    ngx_http_async_task_metrics_run(in, task, &job->run.outcome, job->rc);

    if (job->rc == NGX_DECLINED) {
        /* canceled, or taken back, while it ran */
        ngx_http_async_task_shm_drop(shm, task->id);
    }

    if (job->rc == NGX_OK) {

        /*
         * Only a run that started puts its task back into the zone's
         * queue.  One that never got a slot did not touch the zone; once
         * its requeue is committed another worker may claim and start the
         * task before this answer comes, and its running node is not ours
         * to requeue.
         */

        if (task->status == NGX_HTTP_ASYNC_TASK_QUEUED) {
            if (in) {
                ngx_http_async_task_shm_requeue(shm, task->id,
                                                task->attempts);
            }

        } else {
            ngx_http_async_task_shm_finish(shm, task->id,
                                           NGX_HTTP_ASYNC_TASK_RUNNING,
                                           task->status);
        }

        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "async_task: task %*s on %V: %V%s%V",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, task->id,
                      in ? &in->name : &task->backend,
                      &ngx_http_async_task_statuses[task->status],
                      out->code ? " " : "", &out->message);
    }

    ngx_http_async_task_dispatch_wake();

    if (job->rc != NGX_OK && job->temp.len) {

        /* canceled or taken back while it ran: its result is of no use */

        if (ngx_http_async_task_job_post(job,
                                         ngx_http_async_task_discard_thread,
                                         ngx_http_async_task_discard_done)
            == NGX_OK)
        {
            return;
        }
    }

    ngx_http_async_task_job_destroy(job);
}


static void
ngx_http_async_task_discard_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    ngx_http_async_task_upload_remove(ngx_http_async_task_amcf->store,
                                      &job->temp, log);
}


static void
ngx_http_async_task_discard_done(ngx_event_t *ev)
{
    ngx_http_async_task_job_destroy(ev->data);
}


/*
 * The short timer: work that other workers made possible, and runs of
 * this worker that were canceled (through any worker) are dropped.
 */

static void
ngx_http_async_task_tick(ngx_event_t *ev)
{
    ngx_queue_t                *q, *next;
    ngx_http_async_task_job_t  *job;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    for (q = ngx_queue_head(&ngx_http_async_task_jobs);
         q != ngx_queue_sentinel(&ngx_http_async_task_jobs);
         q = next)
    {
        next = ngx_queue_next(q);
        job = ngx_queue_data(q, ngx_http_async_task_job_t, queue);

        if (!ngx_http_async_task_shm_runs(ngx_http_async_task_shm_ctx,
                                          job->task.id))
        {
            ngx_http_async_task_dispatch_cancel(job->task.id);
        }
    }

    ngx_http_async_task_ticks++;
    ngx_http_async_task_dispatch_handler(ev);

    ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_TICK);
}


/* a run of this worker was canceled: its connection closes, its slot frees */

void
ngx_http_async_task_dispatch_cancel(u_char *id)
{
    ngx_queue_t                *q;
    ngx_http_async_task_job_t  *job;

    if (ngx_http_async_task_amcf == NULL) {
        return;
    }

    for (q = ngx_queue_head(&ngx_http_async_task_jobs);
         q != ngx_queue_sentinel(&ngx_http_async_task_jobs);
         q = ngx_queue_next(q))
    {
        job = ngx_queue_data(q, ngx_http_async_task_job_t, queue);

        if (ngx_memcmp(job->task.id, id, NGX_HTTP_ASYNC_TASK_ID_LEN) != 0) {
            continue;
        }

        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "async_task: task %*s canceled while it ran on %V",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, id, &job->instance->name);

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &job->log, 0,
                       "async task %*s: run dropped, slot of %V released",
                       NGX_HTTP_ASYNC_TASK_ID_LEN, id, &job->instance->name);

        ngx_queue_remove(&job->queue);
        ngx_http_async_task_client_close(&job->client);

        if (job->next.timer_set) {
            ngx_del_timer(&job->next);
        }

        if (job->backend->protocol->cancel) {
            job->backend->protocol->cancel(&job->run);
        }

        ngx_http_async_task_upstream_release(ngx_http_async_task_shm_ctx,
                                             job->instance->sh, &job->log);

        ngx_http_async_task_job_destroy(job);

        ngx_http_async_task_dispatch_wake();

        return;
    }
}


/* runs of worker processes that are gone go back to the queue */

static void
ngx_http_async_task_reap(ngx_event_t *ev)
{
    ngx_uint_t                          i, n, released;
    ngx_http_async_task_job_t          *job;
    ngx_pid_t                           owners[NGX_HTTP_ASYNC_TASK_ORPHANS];
    ngx_http_async_task_instance_sh_t  *ish[NGX_HTTP_ASYNC_TASK_ORPHANS];
    u_char  ids[NGX_HTTP_ASYNC_TASK_ORPHANS][NGX_HTTP_ASYNC_TASK_ID_LEN];

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    n = ngx_http_async_task_shm_orphans(ngx_http_async_task_shm_ctx, ids,
                                        owners, ish,
                                        NGX_HTTP_ASYNC_TASK_ORPHANS,
                                        &released);

    if (released) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "async_task: %ui queue slots of exited processes "
                      "released", released);
    }

    for (i = 0; i < n; i++) {
        job = ngx_http_async_task_job_create(0);
        if (job == NULL) {
            break;
        }

        ngx_memcpy(job->task.id, ids[i], NGX_HTTP_ASYNC_TASK_ID_LEN);
        job->orphaned = ish[i];
        job->orphan_owner = owners[i];

        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "async_task: task %*s of exited process %P is taken "
                      "back", NGX_HTTP_ASYNC_TASK_ID_LEN, ids[i], owners[i]);

        if (ngx_http_async_task_job_post(job,
                                         ngx_http_async_task_recover_thread,
                                         ngx_http_async_task_recover_done)
            != NGX_OK)
        {
            ngx_http_async_task_job_destroy(job);
            break;
        }
    }

    /* now and then, the leases that nobody will report on any more */

    if (++ngx_http_async_task_reaps % 5 == 0) {
        job = ngx_http_async_task_job_create(0);

        if (job
            && ngx_http_async_task_job_post(job,
                                            ngx_http_async_task_reclaim_thread,
                                            ngx_http_async_task_reclaim_done)
               != NGX_OK)
        {
            ngx_http_async_task_job_destroy(job);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_REAP);
}


static void
ngx_http_async_task_reclaim_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    ngx_http_async_task_store_conf_t  *conf;

    if (ngx_array_init(&job->tasks, job->pool, 4,
                       sizeof(ngx_http_async_task_t))
        != NGX_OK)
    {
        job->rc = NGX_ERROR;
        return;
    }

    conf = ngx_http_async_task_amcf->store;

    job->rc = conf->driver->reclaim(conf, job->pool, &job->tasks, log);
}


static void
ngx_http_async_task_reclaim_done(ngx_event_t *ev)
{
    ngx_http_async_task_job_t *job = ev->data;

    ngx_uint_t                  i;
    ngx_http_async_task_t      *tasks;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_shm_ctx;
    tasks = job->tasks.elts;

    for (i = 0; job->rc == NGX_OK && i < job->tasks.nelts; i++) {

        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "async_task: the lease of task %*s expired, "
                      "it queues again", NGX_HTTP_ASYNC_TASK_ID_LEN,
                      tasks[i].id);

        ngx_http_async_task_shm_expire(shm, tasks[i].id, tasks[i].attempts);
    }

    ngx_http_async_task_job_destroy(job);

    ngx_http_async_task_dispatch_wake();
}


static void
ngx_http_async_task_recover_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    ngx_str_t                          owner;
    ngx_http_async_task_store_conf_t  *conf;
    u_char                             text[NGX_HTTP_ASYNC_TASK_LEASE_LEN];

    owner.data = text;
    ngx_http_async_task_util_lease(&owner, job->orphan_owner);

    conf = ngx_http_async_task_amcf->store;

    job->rc = conf->driver->recover(conf, job->task.id, &owner, job->pool,
                                    &job->task, log);
}


static void
ngx_http_async_task_recover_done(ngx_event_t *ev)
{
    ngx_http_async_task_job_t *job = ev->data;

    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_shm_ctx;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "async task %*s of exited process %P taken back, rc:%i, "
                   "slot released", NGX_HTTP_ASYNC_TASK_ID_LEN, job->task.id,
                   job->orphan_owner, job->rc);

    if (job->orphaned) {
        ngx_http_async_task_upstream_release(shm, job->orphaned, ev->log);
    }

    if (job->rc == NGX_OK) {
        if (job->task.status == NGX_HTTP_ASYNC_TASK_QUEUED) {
            ngx_http_async_task_shm_requeue(shm, job->task.id,
                                            job->task.attempts);

        } else if (job->task.status != NGX_HTTP_ASYNC_TASK_RUNNING) {
            ngx_http_async_task_shm_finish(shm, job->task.id,
                                           NGX_HTTP_ASYNC_TASK_RUNNING,
                                           job->task.status);
        }

    } else if (job->rc == NGX_DECLINED) {
        /* deleted meanwhile */
        ngx_http_async_task_shm_finish(shm, job->task.id,
                                       NGX_HTTP_ASYNC_TASK_RUNNING,
                                       NGX_HTTP_ASYNC_TASK_CANCELED);
    }

    ngx_http_async_task_job_destroy(job);

    ngx_http_async_task_dispatch_wake();
}


/* retention: finished tasks older than retention=, a batch at a time */

static void
ngx_http_async_task_expire(ngx_event_t *ev)
{
    ngx_http_async_task_job_t  *job;

    if (ngx_exiting || ngx_terminate || ngx_http_async_task_expiring) {
        return;
    }

    ngx_memzero(ngx_http_async_task_expired,
                sizeof(ngx_http_async_task_expired));

    job = ngx_http_async_task_job_create(0);

    if (job == NULL
        || ngx_http_async_task_job_post(job,
                                        ngx_http_async_task_expire_thread,
                                        ngx_http_async_task_expire_done)
           != NGX_OK)
    {
        if (job) {
            ngx_http_async_task_job_destroy(job);
        }

        ngx_add_timer(ev, 1000);
        return;
    }

    ngx_http_async_task_expiring = 1;
}


static void
ngx_http_async_task_expire_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_job_t *job = data;

    ngx_str_t                         *files;
    ngx_uint_t                         i;
    ngx_http_async_task_store_conf_t  *conf;

    conf = ngx_http_async_task_amcf->store;

    if (ngx_array_init(&job->files, job->pool, 64, sizeof(ngx_str_t))
        != NGX_OK)
    {
        ngx_http_async_task_expire_rc = NGX_ERROR;
        return;
    }

    ngx_http_async_task_expire_rc = conf->driver->expire(conf,
                                 ngx_http_async_task_util_now_ms()
                                 - (int64_t) conf->retention * 1000,
                                 64, ngx_http_async_task_expired,
                                 &job->files, log);

    /* the rows are gone: now their files */

    files = job->files.elts;

    for (i = 0; i < job->files.nelts; i++) {
        ngx_http_async_task_upload_remove(conf, &files[i], log);
    }

    /* and this node's copies of files that other nodes removed */
    ngx_http_async_task_pg_files_sweep(conf, log);
}


static void
ngx_http_async_task_expire_done(ngx_event_t *ev)
{
    ngx_msec_t  interval;

    ngx_http_async_task_expiring = 0;

    /* the event is in the job's pool */
    ngx_http_async_task_job_destroy(ev->data);

    ngx_http_async_task_shm_forget(ngx_http_async_task_shm_ctx,
                                   ngx_http_async_task_expired);

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    if (ngx_http_async_task_expire_rc > 0) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "async_task: %i finished tasks expired",
                      ngx_http_async_task_expire_rc);
    }

    /* a full batch: there is probably more */

    interval = (ngx_http_async_task_expire_rc == 64) ? 10
               : (ngx_msec_t) ngx_max(ngx_min(
                         ngx_http_async_task_amcf->store->retention * 500,
                         60000), 1000);

    ngx_add_timer(&ngx_http_async_task_expire_event, interval);
}


static ngx_http_async_task_instance_t *
ngx_http_async_task_instance(ngx_http_async_task_backend_t *backend,
    ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < backend->ninstances; i++) {
        if (backend->instances[i]->name.len == name->len
            && ngx_memcmp(backend->instances[i]->name.data, name->data,
                          name->len) == 0)
        {
            return backend->instances[i];
        }
    }

    return NULL;
}
