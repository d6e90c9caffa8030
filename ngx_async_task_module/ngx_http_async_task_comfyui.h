
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_client.h"
#include "ngx_http_async_task_protocol.h"


/* the largest workflow file: API-format graphs are a few KB */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_WORKFLOW_MAX  (1024 * 1024)

/*
 * The largest answer to POST /prompt, GET /history/{id} and GET /queue:
 * a history entry echoes the workflow, and the queue every workflow in it.
 */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_ANSWER_MAX    (4 * 1024 * 1024)

/* how often a run asks ComfyUI whether its prompt is done */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_POLL          500

/* the longest prompt id taken, and an output's file name and subfolder */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_ID_MAX        64
#define NGX_HTTP_ASYNC_TASK_COMFYUI_NAME_MAX      255


typedef struct ngx_http_async_task_comfyui_run_s
    ngx_http_async_task_comfyui_run_t;

typedef void (*ngx_http_async_task_comfyui_handler_pt)(
    ngx_http_async_task_comfyui_run_t *run);


/* an output image, as /history names it and /view takes it */

typedef struct {
    ngx_str_t                       filename;
    ngx_str_t                       subfolder;
    ngx_str_t                       type;
} ngx_http_async_task_comfyui_image_t;


/*
 * A run on ComfyUI: POST /prompt, GET /history/{id} on a timer until the
 * prompt is done, GET /view of its image; one exchange at a time on the
 * run's client, each with a pool of its own but the last (the image
 * stays for the outcome), all within the backend's timeout.
 */

struct ngx_http_async_task_comfyui_run_s {
    ngx_http_async_task_client_t   *client;     /* set up by the caller */
    ngx_pool_t                     *pool;       /* the run's */
    ngx_log_t                      *log;
    ngx_http_async_task_backend_t  *backend;
    ngx_http_async_task_instance_t *instance;
    ngx_http_async_task_t          *task;
    ngx_http_async_task_outcome_t  *outcome;

    /* called once, when the outcome is set, unless the run is canceled */
    ngx_http_async_task_comfyui_handler_pt  handler;
    void                           *data;

    /* private */
    ngx_uint_t                      state;
    ngx_msec_t                      deadline;
    ngx_pool_t                     *exchange;   /* this exchange's pool */
    ngx_event_t                     poll;
    ngx_str_t                       prompt_id;
    ngx_http_async_task_comfyui_image_t  image;
};


char *ngx_http_async_task_comfyui_workflow(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend, ngx_str_t *name);
ngx_chain_t *ngx_http_async_task_comfyui_prompt(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_t *task);
ngx_int_t ngx_http_async_task_comfyui_prompt_answer(
    ngx_http_async_task_outcome_t *out, ngx_pool_t *pool, ngx_str_t *id);
ngx_int_t ngx_http_async_task_comfyui_history_answer(
    ngx_http_async_task_outcome_t *out, ngx_pool_t *pool, ngx_str_t *id,
    ngx_http_async_task_comfyui_image_t *image);
void ngx_http_async_task_comfyui_start(
    ngx_http_async_task_comfyui_run_t *run);
void ngx_http_async_task_comfyui_cancel(
    ngx_http_async_task_comfyui_run_t *run);


#endif /* _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_ */
