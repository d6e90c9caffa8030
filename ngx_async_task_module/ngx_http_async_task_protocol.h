
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_client.h"


#ifndef NGX_HTTP_ASYNC_TASK_FILE_ACCESS
#define NGX_HTTP_ASYNC_TASK_FILE_ACCESS  0600
#endif


/* what a run of a task came to */

typedef enum {
    ngx_http_async_task_run_done = 0,
    ngx_http_async_task_run_failed,         /* not worth a retry: 4xx */
    ngx_http_async_task_run_error,          /* may be retried */
    ngx_http_async_task_run_requeue         /* not the task's fault */
} ngx_http_async_task_run_e;


typedef struct {
    /* in */
    ngx_http_async_task_client_e    result;
    ngx_uint_t                      status;
    ngx_str_t                       body;
    ngx_str_t                      *files;
    ngx_str_t                       suffix;     /* of this run's own file */

    /* out */
    ngx_http_async_task_run_e       run;
    const char                     *code;       /* the error's code */
    ngx_str_t                       message;
    ngx_str_t                       output;     /* the result, JSON */
    ngx_str_t                       file;       /* a result file's name */
} ngx_http_async_task_outcome_t;


ngx_chain_t *ngx_http_async_task_protocol_request(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_t *task,
    ngx_fd_t fd, off_t size);
void ngx_http_async_task_protocol_response(ngx_http_async_task_t *task,
    ngx_http_async_task_outcome_t *out, ngx_pool_t *pool, ngx_log_t *log);


#endif /* _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_ */
