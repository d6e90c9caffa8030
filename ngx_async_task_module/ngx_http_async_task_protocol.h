
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_


#include <cjson/cJSON.h>

#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_client.h"


/*
 * The largest answer a run takes, headers apart: a 2048x2048 PNG in
 * base64 is a few MB to some 22 MB (RGBA, incompressible); a transcript
 * with its segments is at most a few MB.
 */

#define NGX_HTTP_ASYNC_TASK_IMAGE_ANSWER_MAX   (24 * 1024 * 1024)
#define NGX_HTTP_ASYNC_TASK_SPEECH_ANSWER_MAX  (8 * 1024 * 1024)

#define ngx_http_async_task_answer_max(kind)                                 \
    ((kind) == NGX_HTTP_ASYNC_TASK_IMAGE                                      \
     ? NGX_HTTP_ASYNC_TASK_IMAGE_ANSWER_MAX                                   \
     : NGX_HTTP_ASYNC_TASK_SPEECH_ANSWER_MAX)


/* how much of an instance's own error message a task's error quotes */
#define NGX_HTTP_ASYNC_TASK_MESSAGE_MAX  200


/* a multipart boundary: a prefix and 128 bits from the kernel, in hex */
#define NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN  (sizeof("ngx-async-task-") - 1 + 32)


/* what a run of a task came to */

typedef enum {
    ngx_http_async_task_run_done = 0,
    ngx_http_async_task_run_failed,         /* not worth a retry: 4xx */
    ngx_http_async_task_run_error,          /* may be retried */
    ngx_http_async_task_run_requeue         /* not the task's fault */
} ngx_http_async_task_run_e;


typedef struct {
    /* before the run: a speech request's boundary, or "" */
    u_char                          boundary[NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN
                                             + 1];

    /* in */
    ngx_http_async_task_client_e    result;
    ngx_uint_t                      status;
    ngx_str_t                       body;
    ngx_str_t                      *files;
    ngx_str_t                       suffix;     /* of this run's own file */
    unsigned                        raw:1;      /* the body is the image */

    /* out */
    ngx_http_async_task_run_e       run;
    const char                     *code;       /* the error's code */
    ngx_str_t                       message;
    ngx_str_t                       output;     /* the result, JSON */
    ngx_str_t                       file;       /* a result file's name */
} ngx_http_async_task_outcome_t;


void ngx_http_async_task_protocol_boundary(ngx_http_async_task_t *task,
    ngx_http_async_task_backend_t *backend, ngx_fd_t fd, off_t size,
    u_char *boundary, ngx_log_t *log);
ngx_chain_t *ngx_http_async_task_protocol_request(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_t *task,
    u_char *boundary, ngx_fd_t fd, off_t size);
void ngx_http_async_task_protocol_response(ngx_http_async_task_t *task,
    ngx_http_async_task_outcome_t *out, ngx_pool_t *pool, ngx_log_t *log);
ngx_buf_t *ngx_http_async_task_protocol_head(ngx_pool_t *pool,
    const char *method, ngx_str_t *path,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, const char *type,
    ngx_str_t *boundary, off_t length, size_t extra);
ngx_int_t ngx_http_async_task_protocol_exchange(
    ngx_http_async_task_outcome_t *out, size_t max, ngx_pool_t *pool);
ngx_int_t ngx_http_async_task_protocol_status(
    ngx_http_async_task_outcome_t *out, cJSON *json, ngx_pool_t *pool);
void ngx_http_async_task_protocol_fail(ngx_http_async_task_outcome_t *out,
    ngx_http_async_task_run_e run, const char *code, ngx_pool_t *pool,
    const char *fmt, ...);


#endif /* _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_ */
