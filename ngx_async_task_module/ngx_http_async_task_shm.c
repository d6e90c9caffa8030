
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_shm.h"
#include "ngx_http_async_task_treap.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"


static void ngx_http_async_task_shm_enlist_locked(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_node_t *node,
    ngx_http_async_task_t *task);
static void ngx_http_async_task_shm_fill_locked(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_node_t *node,
    ngx_http_async_task_t *task);
static void ngx_http_async_task_shm_hash_insert(
    ngx_http_async_task_shctx_t *sh, ngx_http_async_task_node_t *node);
static void ngx_http_async_task_shm_hash_delete(
    ngx_http_async_task_shctx_t *sh, ngx_http_async_task_node_t *node);
static ngx_http_async_task_node_t *ngx_http_async_task_shm_lookup(
    ngx_http_async_task_shctx_t *sh, u_char *id);
static void ngx_http_async_task_shm_insert_locked(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_node_t *node,
    ngx_http_async_task_t *task);
static void ngx_http_async_task_shm_requeue_locked(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_node_t *node,
    ngx_uint_t attempts);
static void ngx_http_async_task_shm_delete_locked(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_node_t *node);


/*
 * On a reload with the same zone size nginx hands us the old cycle's
 * context: the live tasks, counters and queue stay, and the new workers
 * continue from them while the old ones finish.
 */

ngx_int_t
ngx_http_async_task_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_async_task_shm_t  *oshm = data;

    size_t                      len;
    ngx_uint_t                  n;
    ngx_http_async_task_shm_t  *shm;

    shm = shm_zone->data;

    if (oshm) {
        shm->sh = oshm->sh;
        shm->shpool = oshm->shpool;
        return ngx_http_async_task_upstream_attach(shm);
    }

    shm->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm->sh = shm->shpool->data;
        return ngx_http_async_task_upstream_attach(shm);
    }

    shm->sh = ngx_slab_calloc(shm->shpool,
                              sizeof(ngx_http_async_task_shctx_t));
    if (shm->sh == NULL) {
        return NGX_ERROR;
    }

    shm->shpool->data = shm->sh;

    n = ngx_http_async_task_shm_buckets(shm->max_live);

    shm->sh->buckets = ngx_slab_calloc(shm->shpool,
                                      n * sizeof(ngx_http_async_task_node_t *));
    if (shm->sh->buckets == NULL) {
        return NGX_ERROR;
    }

    shm->sh->mask = n - 1;

    ngx_queue_init(&shm->sh->instances);
    ngx_queue_init(&shm->sh->running);
    ngx_queue_init(&shm->sh->pending);

    shm->sh->started_at = (int64_t) ngx_time() * 1000;
    shm->sh->seed = (uint32_t) ngx_random() | 1;

    len = sizeof(" in async_task zone \"\"") + shm_zone->shm.name.len;

    shm->shpool->log_ctx = ngx_slab_alloc(shm->shpool, len);
    if (shm->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shm->shpool->log_ctx, " in async_task zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone only costs the cache, the caller handles it */
    shm->shpool->log_nomem = 0;

    return ngx_http_async_task_upstream_attach(shm);
}


/*
 * A submission takes its queue slot and its node before the task is
 * committed, so that a full queue or a full zone is answered before
 * anything is written.  The node waits, pending and invisible, in the
 * tree: once the store has the task another worker may claim it before
 * the submitting worker gets to commit it here, and finds it.
 */

ngx_int_t
ngx_http_async_task_shm_reserve(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_uint_t max_queued)
{
    ngx_http_async_task_node_t   *node;
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    if (sh->count[NGX_HTTP_ASYNC_TASK_QUEUED] + sh->reserved >= max_queued) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_BUSY;
    }

    node = ngx_slab_calloc_locked(shm->shpool,
                                  sizeof(ngx_http_async_task_node_t));
    if (node == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_memcpy(node->id, id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    node->status = NGX_HTTP_ASYNC_TASK_PENDING;
    node->owner = ngx_pid;

    ngx_http_async_task_shm_hash_insert(sh, node);
    ngx_queue_insert_tail(&sh->pending, &node->running);

    sh->reserved++;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s reserved",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id);

    return NGX_OK;
}


/* the task was not committed: its node and slot go */

void
ngx_http_async_task_shm_release(ngx_http_async_task_shm_t *shm, u_char *id)
{
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    shm->sh->reserved--;

    node = ngx_http_async_task_shm_lookup(shm->sh, id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_PENDING) {
        ngx_http_async_task_shm_delete_locked(shm, node);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s reservation given back",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id);
}


/*
 * The task is in the store: its pending node joins the queue, unless a
 * claim took it meanwhile (it runs, or it is even gone already).
 */

void
ngx_http_async_task_shm_commit(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task)
{
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    shm->sh->reserved--;

    node = ngx_http_async_task_shm_lookup(shm->sh, task->id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_PENDING) {
        ngx_queue_remove(&node->running);
        ngx_http_async_task_shm_enlist_locked(shm, node, task);

    } else if (node && node->data == NULL) {
        ngx_http_async_task_shm_fill_locked(shm, node, task);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s committed",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, task->id);
}


/* at start, from the master process: the store's live tasks */

ngx_int_t
ngx_http_async_task_shm_load(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task)
{
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_slab_calloc_locked(shm->shpool,
                                  sizeof(ngx_http_async_task_node_t));
    if (node == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_http_async_task_shm_insert_locked(shm, node, task);

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return NGX_OK;
}


/* the finished tasks of a status, as the store counts them at start */

void
ngx_http_async_task_shm_load_count(ngx_http_async_task_shm_t *shm,
    ngx_uint_t status, ngx_uint_t n)
{
    shm->sh->count[status] = n;
}


/* whether the zone holds the store's tasks; "done": it does now */

ngx_uint_t
ngx_http_async_task_shm_loaded(ngx_http_async_task_shm_t *shm,
    ngx_uint_t done)
{
    if (done) {
        shm->sh->loaded = 1;
    }

    return shm->sh->loaded;
}


static void
ngx_http_async_task_shm_insert_locked(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_node_t *node, ngx_http_async_task_t *task)
{
    ngx_memcpy(node->id, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    ngx_http_async_task_shm_hash_insert(shm->sh, node);

    ngx_http_async_task_shm_enlist_locked(shm, node, task);
}


/*
 * A node in the tree joins the live set: its fields, its cached copy,
 * and the queue of its kind or the running list.
 */

static void
ngx_http_async_task_shm_enlist_locked(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_node_t *node, ngx_http_async_task_t *task)
{
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    node->kind = (u_char) task->kind;
    node->status = (u_char) task->status;
    node->priority = (u_char) task->priority;
    node->has_user = task->has_user;
    node->attempts = (uint32_t) task->attempts;
    node->created_at = task->created_at;
    node->started_at = task->started_at;

    ngx_http_async_task_shm_fill_locked(shm, node, task);

    if (task->status == NGX_HTTP_ASYNC_TASK_RUNNING) {
        node->owner = task->owner;
        ngx_queue_insert_tail(&sh->running, &node->running);

    } else {
        sh->seed ^= sh->seed << 13;
        sh->seed ^= sh->seed >> 17;
        sh->seed ^= sh->seed << 5;

        node->weight = sh->seed;

        ngx_http_async_task_treap_insert(&sh->queue[node->kind], node);
    }

    sh->count[task->status]++;
}


/* the cached copy is optional: without it reads go to the store */

static void
ngx_http_async_task_shm_fill_locked(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_node_t *node, ngx_http_async_task_t *task)
{
    size_t       size;
    ngx_uint_t   live, pages;

    node->user_len = (uint32_t) task->user.len;
    node->params_len = (uint32_t) task->params.len;
    node->data = NULL;

    /* nor may it take the free pages that the nodes of free slots need */

    size = task->user.len + task->params.len;
    live = shm->sh->count[NGX_HTTP_ASYNC_TASK_QUEUED]
           + shm->sh->count[NGX_HTTP_ASYNC_TASK_RUNNING] + shm->sh->reserved;
    pages = (live < shm->max_live && shm->per_page)
            ? (shm->max_live - live) / shm->per_page + 1 : 0;

    if (shm->shpool->pfree < pages + size / ngx_pagesize + 1) {
        return;
    }

    node->data = ngx_slab_alloc_locked(shm->shpool, size);
    if (node->data == NULL) {
        return;
    }

    /* a task without an owner has no user data at all: no memcpy() */

    if (task->user.len) {
        ngx_memcpy(node->data, task->user.data, task->user.len);
    }

    ngx_memcpy(node->data + task->user.len, task->params.data,
               task->params.len);
}


ngx_int_t
ngx_http_async_task_shm_get(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_str_t *user, ngx_pool_t *pool, ngx_http_async_task_t *task)
{
    u_char                       *data;
    ngx_int_t                     rc;
    ngx_http_async_task_node_t   *node;
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;
    data = NULL;

    if (shm->shared) {
        /* other nodes change tasks too: the store has them as they are */
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(sh, id);

    if (node == NULL || node->data == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (!ngx_http_async_task_util_owner(user, node->has_user, node->data,
                                        node->user_len))
    {
        /* another user's task: as if it did not exist */
        rc = NGX_DONE;
        goto done;
    }

    data = ngx_pnalloc(pool, node->user_len + node->params_len);
    if (data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(data, node->data, node->user_len + node->params_len);

    ngx_memzero(task, sizeof(ngx_http_async_task_t));

    ngx_memcpy(task->id, node->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    task->kind = node->kind;
    task->status = node->status;
    task->priority = node->priority;
    task->attempts = node->attempts;
    task->has_user = node->has_user;
    task->user.len = node->user_len;
    task->user.data = data;
    task->params.len = node->params_len;
    task->params.data = data + node->user_len;
    task->created_at = node->created_at;
    task->started_at = node->started_at;

    if (node->status == NGX_HTTP_ASYNC_TASK_RUNNING && node->instance) {
        task->backend.len = node->instance->name_len;
        task->backend.data = ngx_pnalloc(pool, task->backend.len);

        if (task->backend.data == NULL) {
            rc = NGX_ERROR;
            goto done;
        }

        ngx_memcpy(task->backend.data, node->instance->name,
                   task->backend.len);
    }

    task->position = (node->status == NGX_HTTP_ASYNC_TASK_QUEUED)
                     ? (ngx_int_t) ngx_http_async_task_treap_rank(
                                                sh->queue[node->kind], node)
                     : -1;

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


/*
 * What only the zone knows of a task read from the store: the position
 * of a queued one, the instance of a running one (a claim does not
 * write it to the store).
 */

void
ngx_http_async_task_shm_live(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task, ngx_pool_t *pool)
{
    ngx_http_async_task_node_t   *node;
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    if (!shm->shared) {
        /* with a shared store, the store counts the whole queue */
        task->position = -1;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(sh, task->id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_QUEUED
        && task->status == NGX_HTTP_ASYNC_TASK_QUEUED && !shm->shared)
    {
        task->position = ngx_http_async_task_treap_rank(sh->queue[node->kind],
                                                        node);

    } else if (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING
               && task->status == NGX_HTTP_ASYNC_TASK_RUNNING
               && node->instance)
    {
        task->backend.data = ngx_pnalloc(pool, node->instance->name_len);

        if (task->backend.data) {
            task->backend.len = node->instance->name_len;
            ngx_memcpy(task->backend.data, node->instance->name,
                       task->backend.len);
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* a task left the live set: count it under its new status */

void
ngx_http_async_task_shm_finish(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_uint_t from, ngx_uint_t to)
{
    ngx_http_async_task_node_t   *node;
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(sh, id);

    if (node && node->status != NGX_HTTP_ASYNC_TASK_PENDING) {
        ngx_http_async_task_shm_delete_locked(shm, node);

    } else if (sh->count[from]) {
        sh->count[from]--;
    }

    sh->count[to]++;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s %V -> %V",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id,
                   &ngx_http_async_task_statuses[from],
                   &ngx_http_async_task_statuses[to]);
}


/*
 * A claimed task starts: out of the queue, into the running list.  Its
 * node may be pending still: the worker that accepted it commits to the
 * store first and to the zone just after, and a claim can come between.
 * NGX_DECLINED: another process runs it; NGX_AGAIN: it has no node and
 * the zone has no room for one.
 */

ngx_int_t
ngx_http_async_task_shm_start(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_t *task, ngx_http_async_task_instance_sh_t *instance)
{
    ngx_http_async_task_node_t   *node;
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(sh, task->id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_DECLINED;
    }

    if (node == NULL) {

        /*
         * Not in the zone: it was accepted while a reload made a new
         * zone, or its worker died between the store and the zone.  (Or
         * it was canceled since its claim: the store will refuse the
         * outcome, and the node goes then.)
         */

        node = ngx_slab_calloc_locked(shm->shpool,
                                      sizeof(ngx_http_async_task_node_t));
        if (node == NULL) {
            /* a run the zone does not know would be taken for canceled */
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return NGX_AGAIN;
        }

        task->status = NGX_HTTP_ASYNC_TASK_RUNNING;
        ngx_http_async_task_shm_insert_locked(shm, node, task);

    } else if (node->status == NGX_HTTP_ASYNC_TASK_PENDING) {

        /* claimed before its own worker put it in the queue */

        ngx_queue_remove(&node->running);
        task->status = NGX_HTTP_ASYNC_TASK_RUNNING;
        ngx_http_async_task_shm_enlist_locked(shm, node, task);

    } else if (node->status == NGX_HTTP_ASYNC_TASK_QUEUED) {
        ngx_http_async_task_treap_delete(&sh->queue[node->kind], node);

        sh->count[NGX_HTTP_ASYNC_TASK_QUEUED]--;
        sh->count[NGX_HTTP_ASYNC_TASK_RUNNING]++;

        node->status = NGX_HTTP_ASYNC_TASK_RUNNING;
        ngx_queue_insert_tail(&sh->running, &node->running);
    }

    node->owner = ngx_pid;
    node->instance = instance;
    node->started_at = task->started_at;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s running on %*s",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, task->id,
                   instance->name_len, instance->name);

    return NGX_OK;
}


/*
 * A task that will run again: back into the queue, in its old place.
 * Its run's instance slot stays with the run, which gives it back.
 */

void
ngx_http_async_task_shm_requeue(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_uint_t attempts)
{
    ngx_uint_t                   found;
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(shm->sh, id);
    found = (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING);

    if (found) {
        ngx_http_async_task_shm_requeue_locked(shm, node, attempts);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s queued again:%ui, attempts:%ui",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id, found, attempts);
}


/*
 * A lease that ran out: the task queues again.  Each run's slot is given
 * back exactly once: by its runner while that lives (it sees at its next
 * tick that the task is no longer its own), by the reaper once it marked
 * a dead runner's task (owner < 0), and here only for a dead runner that
 * the reaper has not marked yet: the task leaves the running list, where
 * the reaper would have found it.
 */

void
ngx_http_async_task_shm_expire(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_uint_t attempts)
{
    ngx_uint_t                          released;
    ngx_http_async_task_node_t         *node;
    ngx_http_async_task_instance_sh_t  *instance;

    released = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(shm->sh, id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING) {
        instance = node->instance;

        if (instance && node->owner > 0 && node->owner != ngx_pid
            && kill(node->owner, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            ngx_http_async_task_upstream_release_locked(instance);
            released = 1;
        }

        ngx_http_async_task_shm_requeue_locked(shm, node, attempts);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s lease expired, slot given back:%ui",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id, released);
}


static void
ngx_http_async_task_shm_requeue_locked(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_node_t *node, ngx_uint_t attempts)
{
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    ngx_queue_remove(&node->running);

    sh->count[NGX_HTTP_ASYNC_TASK_RUNNING]--;
    sh->count[NGX_HTTP_ASYNC_TASK_QUEUED]++;

    node->status = NGX_HTTP_ASYNC_TASK_QUEUED;
    node->owner = 0;
    node->instance = NULL;
    node->started_at = 0;
    node->attempts = (uint32_t) attempts;

    ngx_http_async_task_treap_insert(&sh->queue[node->kind], node);
}


/* a run whose outcome the store refused (its lease was gone) leaves */

void
ngx_http_async_task_shm_drop(ngx_http_async_task_shm_t *shm, u_char *id)
{
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(shm->sh, id);

    if (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING
        && node->owner == ngx_pid)
    {
        ngx_http_async_task_shm_delete_locked(shm, node);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task zone: %*s run dropped",
                   NGX_HTTP_ASYNC_TASK_ID_LEN, id);
}


/*
 * A shared store: another node took the task (a claim, or a cancel when
 * "running"), so this node's queued copy leaves the zone, uncounted; with
 * "running", a run of it here too, which then stops at its worker's next
 * tick, as after a cancel.  A pending copy goes too: the other node saw
 * the commit before this node's worker could enlist it, and the commit
 * then finds nothing to enlist.
 */

void
ngx_http_async_task_shm_gone(ngx_http_async_task_shm_t *shm, u_char *id,
    ngx_uint_t running)
{
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(shm->sh, id);

    if (node
        && (node->status == NGX_HTTP_ASYNC_TASK_QUEUED
            || node->status == NGX_HTTP_ASYNC_TASK_PENDING
            || (running && node->status == NGX_HTTP_ASYNC_TASK_RUNNING)))
    {
        ngx_http_async_task_shm_delete_locked(shm, node);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* whether this process still runs the task: not canceled, not taken back */

ngx_int_t
ngx_http_async_task_shm_runs(ngx_http_async_task_shm_t *shm, u_char *id)
{
    ngx_int_t                    rc;
    ngx_http_async_task_node_t  *node;

    ngx_shmtx_lock(&shm->shpool->mutex);

    node = ngx_http_async_task_shm_lookup(shm->sh, id);

    rc = (node && node->status == NGX_HTTP_ASYNC_TASK_RUNNING
          && node->owner == ngx_pid);

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


/*
 * Running tasks whose worker process is gone (it crashed, or exited
 * before its results were applied): up to n of them are handed to the
 * caller, who takes them back, marked so that no other process does too.
 */

ngx_uint_t
ngx_http_async_task_shm_orphans(ngx_http_async_task_shm_t *shm,
    u_char (*ids)[NGX_HTTP_ASYNC_TASK_ID_LEN], ngx_pid_t *owners,
    ngx_http_async_task_instance_sh_t **instances, ngx_uint_t n,
    ngx_uint_t *released)
{
    ngx_uint_t                   found;
    ngx_queue_t                 *q, *next;
    ngx_http_async_task_node_t  *node;

    found = 0;
    *released = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    /*
     * Reservations of a process that died before it could commit or give
     * them back: if the task reached the store, a claim finds it there.
     */

    for (q = ngx_queue_head(&shm->sh->pending);
         q != ngx_queue_sentinel(&shm->sh->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        node = ngx_queue_data(q, ngx_http_async_task_node_t, running);

        if (node->owner == ngx_pid || kill(node->owner, 0) == 0
            || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        ngx_http_async_task_shm_delete_locked(shm, node);
        shm->sh->reserved--;
        (*released)++;
    }

    for (q = ngx_queue_head(&shm->sh->running);
         q != ngx_queue_sentinel(&shm->sh->running) && found < n;
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_async_task_node_t, running);

        if (node->owner <= 0 || node->owner == ngx_pid
            || kill(node->owner, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        ngx_memcpy(ids[found], node->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
        owners[found] = node->owner;
        instances[found] = node->instance;
        found++;

        /* ours to take back now */
        node->owner = -node->owner;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return found;
}


/* finished tasks deleted from the store, by status */

void
ngx_http_async_task_shm_forget(ngx_http_async_task_shm_t *shm,
    ngx_uint_t *count)
{
    ngx_uint_t  s;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (s = 0; s < NGX_HTTP_ASYNC_TASK_NSTATUSES; s++) {
        shm->sh->count[s] -= ngx_min(count[s], shm->sh->count[s]);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* the counts and each kind's queue at one moment: they add up */

void
ngx_http_async_task_shm_counts(ngx_http_async_task_shm_t *shm,
    ngx_uint_t *count, ngx_uint_t *queued, int64_t *started_at)
{
    ngx_uint_t  k;

    ngx_shmtx_lock(&shm->shpool->mutex);

    ngx_memcpy(count, shm->sh->count, sizeof(shm->sh->count));
    *started_at = shm->sh->started_at;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        queued[k] = ngx_http_async_task_treap_size(shm->sh->queue[k]);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* whether a submission would find the queue full: no reservation taken */

ngx_uint_t
ngx_http_async_task_shm_full(ngx_http_async_task_shm_t *shm,
    ngx_uint_t max_queued)
{
    ngx_uint_t  full;

    ngx_shmtx_lock(&shm->shpool->mutex);

    full = (shm->sh->count[NGX_HTTP_ASYNC_TASK_QUEUED] + shm->sh->reserved
            >= max_queued);

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return full;
}


/* how many tasks of the kind wait in the queue */

ngx_uint_t
ngx_http_async_task_shm_queued(ngx_http_async_task_shm_t *shm,
    ngx_uint_t kind)
{
    ngx_uint_t  n;

    ngx_shmtx_lock(&shm->shpool->mutex);
    n = ngx_http_async_task_treap_size(shm->sh->queue[kind]);
    ngx_shmtx_unlock(&shm->shpool->mutex);

    return n;
}


/* a counter of async_task_metrics: "counter" points into the zone */

void
ngx_http_async_task_shm_metric_add(ngx_http_async_task_shm_t *shm,
    uint64_t *counter, uint64_t n)
{
    ngx_shmtx_lock(&shm->shpool->mutex);
    *counter += n;
    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* an observation of a histogram in the zone, its bucket found already */

void
ngx_http_async_task_shm_metric_observe(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_histogram_t *h, ngx_uint_t bucket, uint64_t value)
{
    ngx_shmtx_lock(&shm->shpool->mutex);

    h->bucket[bucket]++;
    h->sum += value;
    h->count++;

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* one consistent copy of the figures, with the queues and runs by kind */

void
ngx_http_async_task_shm_metrics(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_shm_metrics_t *m)
{
    ngx_uint_t                   k;
    ngx_queue_t                 *q;
    ngx_http_async_task_node_t  *node;

    ngx_memzero(m->running, sizeof(m->running));

    ngx_shmtx_lock(&shm->shpool->mutex);

    m->metrics = shm->sh->metrics;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        m->queued[k] = ngx_http_async_task_treap_size(shm->sh->queue[k]);
    }

    for (q = ngx_queue_head(&shm->sh->running);
         q != ngx_queue_sentinel(&shm->sh->running);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_async_task_node_t, running);
        m->running[node->kind]++;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


static void
ngx_http_async_task_shm_delete_locked(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_node_t *node)
{
    ngx_http_async_task_shctx_t  *sh;

    sh = shm->sh;

    if (node->status == NGX_HTTP_ASYNC_TASK_QUEUED) {
        ngx_http_async_task_treap_delete(&sh->queue[node->kind], node);
        sh->count[node->status]--;

    } else if (node->status == NGX_HTTP_ASYNC_TASK_RUNNING) {
        ngx_queue_remove(&node->running);
        sh->count[node->status]--;

    } else {
        /* pending */
        ngx_queue_remove(&node->running);
    }

    ngx_http_async_task_shm_hash_delete(sh, node);

    if (node->data) {
        ngx_slab_free_locked(shm->shpool, node->data);
    }

    ngx_slab_free_locked(shm->shpool, node);
}


/*
 * The live tasks by id are a chained hash table with a bucket for each
 * task the zone is sized for: a tree of a million tasks cost a submission
 * some twenty cache misses on the way down, twice; a bucket costs one.
 */

ngx_uint_t
ngx_http_async_task_shm_buckets(ngx_uint_t live)
{
    ngx_uint_t  n;

    for (n = 16; n < live; n <<= 1) {
        /* void */
    }

    return n;
}


static ngx_http_async_task_node_t *
ngx_http_async_task_shm_lookup(ngx_http_async_task_shctx_t *sh, u_char *id)
{
    uint32_t                     hash;
    ngx_http_async_task_node_t  *node;

    hash = ngx_crc32_short(id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    for (node = sh->buckets[hash & sh->mask]; node; node = node->next) {

        if (node->hash == hash
            && ngx_memcmp(id, node->id, NGX_HTTP_ASYNC_TASK_ID_LEN) == 0)
        {
            return node;
        }
    }

    return NULL;
}


static void
ngx_http_async_task_shm_hash_insert(ngx_http_async_task_shctx_t *sh,
    ngx_http_async_task_node_t *node)
{
    ngx_http_async_task_node_t  **bucket;

    node->hash = ngx_crc32_short(node->id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    bucket = &sh->buckets[node->hash & sh->mask];

    node->next = *bucket;
    *bucket = node;
}


static void
ngx_http_async_task_shm_hash_delete(ngx_http_async_task_shctx_t *sh,
    ngx_http_async_task_node_t *node)
{
    ngx_http_async_task_node_t  **p;

    for (p = &sh->buckets[node->hash & sh->mask]; *p; p = &(*p)->next) {

        if (*p == node) {
            *p = node->next;
            return;
        }
    }
}
