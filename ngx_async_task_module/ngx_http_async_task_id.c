
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <uuid/uuid.h>

#include "ngx_http_async_task_id.h"


/*
 * libuuid reseeds its own generator for every id it makes (getrandom(),
 * getpid(), getppid(), getuid() and gettid(): 4-6 us here), which was a
 * tenth of the event loop's time for a submission.  So a worker process
 * draws the random bits on the thread pool, a block at a time: the event
 * loop takes them from one block while a thread fills the other, and only
 * sets the time.  Should both blocks be empty (the first submissions, a
 * burst faster than a thread), it draws an id itself.
 */

#define NGX_HTTP_ASYNC_TASK_IDS  128


typedef struct {
    uuid_t                      bits[NGX_HTTP_ASYNC_TASK_IDS];
    ngx_uint_t                  left;       /* to take, from the end */
} ngx_http_async_task_id_block_t;


static void ngx_http_async_task_id_fill(void);
static void ngx_http_async_task_id_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_id_filled(ngx_event_t *ev);


static ngx_http_async_task_id_block_t   ngx_http_async_task_id_blocks[2];
static ngx_uint_t                       ngx_http_async_task_id_current;
static ngx_uint_t                       ngx_http_async_task_id_filling;
static ngx_thread_task_t               *ngx_http_async_task_id_task;
static ngx_thread_pool_t               *ngx_http_async_task_id_pool;


/* in each worker process: its own bits, never the master's */

ngx_int_t
ngx_http_async_task_id_init(ngx_cycle_t *cycle, ngx_thread_pool_t *thread_pool)
{
    ngx_thread_task_t  *task;

    ngx_http_async_task_id_blocks[0].left = 0;
    ngx_http_async_task_id_blocks[1].left = 0;
    ngx_http_async_task_id_current = 0;
    ngx_http_async_task_id_filling = 0;
    ngx_http_async_task_id_pool = thread_pool;

    task = ngx_thread_task_alloc(cycle->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->handler = ngx_http_async_task_id_thread;
    task->event.handler = ngx_http_async_task_id_filled;
    task->event.log = cycle->log;

    ngx_http_async_task_id_task = task;

    ngx_http_async_task_id_fill();

    return NGX_OK;
}


/*
 * UUIDv7: 48 bits of Unix milliseconds, 12 bits of sub-millisecond time
 * (RFC 9562, method 3), then libuuid's random bits.  Time-ordered keys
 * keep SQLite inserts at the right edge of the B-tree, "newest first" is
 * "id descending", and tasks submitted in the same millisecond, through
 * any worker process, still queue in the order they came.  Returns the
 * milliseconds, the task's creation time.
 */

int64_t
ngx_http_async_task_id_new(u_char *id)
{
    char                             text[37];
    uuid_t                           uu;
    uint64_t                         ms, frac;
    struct timeval                   tv;
    ngx_http_async_task_id_block_t  *block;

    block = &ngx_http_async_task_id_blocks[ngx_http_async_task_id_current];

    if (block->left == 0 && !ngx_http_async_task_id_filling) {
        ngx_http_async_task_id_current ^= 1;
        block = &ngx_http_async_task_id_blocks[ngx_http_async_task_id_current];
        ngx_http_async_task_id_fill();
    }

    if (block->left) {
        block->left--;
        ngx_memcpy(uu, block->bits[block->left], sizeof(uuid_t));

    } else {
        uuid_generate_random(uu);
    }

    ngx_gettimeofday(&tv);

    ms = (uint64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
    frac = (uint64_t) (tv.tv_usec % 1000) * 4096 / 1000;

    uu[0] = (u_char) (ms >> 40);
    uu[1] = (u_char) (ms >> 32);
    uu[2] = (u_char) (ms >> 24);
    uu[3] = (u_char) (ms >> 16);
    uu[4] = (u_char) (ms >> 8);
    uu[5] = (u_char) ms;
    uu[6] = (u_char) (0x70 | (frac >> 8));
    uu[7] = (u_char) frac;
    uu[8] = (u_char) (0x80 | (uu[8] & 0x3f));

    uuid_unparse_lower(uu, text);

    ngx_memcpy(id, text, NGX_HTTP_ASYNC_TASK_ID_LEN);

    return (int64_t) ms;
}


/* the block not taken from is empty: a thread fills it */

static void
ngx_http_async_task_id_fill(void)
{
    ngx_thread_task_t  *task;

    task = ngx_http_async_task_id_task;
    task->ctx = &ngx_http_async_task_id_blocks[
                                         ngx_http_async_task_id_current ^ 1];
    task->event.data = task->ctx;

    if (ngx_thread_task_post(ngx_http_async_task_id_pool, task) == NGX_OK) {
        ngx_http_async_task_id_filling = 1;
    }
}


static void
ngx_http_async_task_id_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_id_block_t *block = data;

    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_IDS; i++) {
        uuid_generate_random(block->bits[i]);
    }
}


static void
ngx_http_async_task_id_filled(ngx_event_t *ev)
{
    ngx_http_async_task_id_block_t *block = ev->data;

    block->left = NGX_HTTP_ASYNC_TASK_IDS;
    ngx_http_async_task_id_filling = 0;
}
