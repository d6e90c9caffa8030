
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_


#include "ngx_http_async_task_module.h"
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


char *ngx_http_async_task_comfyui_workflow(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend, ngx_str_t *name);
char *ngx_http_async_task_comfyui_check(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend);

/* the protocol, in the kind table */

ngx_chain_t *ngx_http_async_task_comfyui_request(
    ngx_http_async_task_run_t *run);
ngx_int_t ngx_http_async_task_comfyui_process(ngx_http_async_task_run_t *run);
void ngx_http_async_task_comfyui_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log);
void ngx_http_async_task_comfyui_cancel(ngx_http_async_task_run_t *run);


#endif /* _NGX_HTTP_ASYNC_TASK_COMFYUI_H_INCLUDED_ */
