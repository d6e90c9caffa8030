
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_UPLOAD_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_UPLOAD_H_INCLUDED_


#include "ngx_http_async_task_module.h"


#define NGX_HTTP_ASYNC_TASK_UPLOAD_RAW        0
#define NGX_HTTP_ASYNC_TASK_UPLOAD_MULTIPART  1
#define NGX_HTTP_ASYNC_TASK_UPLOAD_PCM        2

#define NGX_HTTP_ASYNC_TASK_FIELD_MAX         4000


/*
 * An audio upload, turned into the task's input file.  The request body
 * is already on disk (nginx's client body temp file); all of the work
 * here runs in a pool thread: it streams the body into the files=
 * directory, never holding it whole in memory.
 */

typedef struct {
    ngx_uint_t                      type;

    /* in */
    ngx_str_t                       source;     /* body temp file, "\0" */
    ngx_str_t                       target;     /* new input file, "\0" */
    ngx_str_t                       boundary;   /* multipart */
    ngx_uint_t                      sample_rate;    /* PCM */
    ngx_uint_t                      channels;       /* PCM */

    /* out */
    ngx_int_t                       rc;         /* NGX_OK, NGX_DECLINED:
                                                   bad input, NGX_ERROR */
    const char                     *error;      /* when NGX_DECLINED */
    const char                     *field;
    off_t                           bytes;      /* of the input file */
    ngx_str_t                       filename;   /* multipart: file part */
    ngx_str_t                       content_type;
    ngx_str_t                       language;   /* multipart fields */
    ngx_str_t                       prompt;
    ngx_str_t                       priority;
    unsigned                        has_language:1;
    unsigned                        has_prompt:1;
    unsigned                        has_priority:1;
} ngx_http_async_task_upload_t;


void ngx_http_async_task_upload_run(ngx_http_async_task_upload_t *up,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_http_async_task_upload_remove(
    ngx_http_async_task_store_conf_t *conf, ngx_str_t *file, ngx_log_t *log);


#endif /* _NGX_HTTP_ASYNC_TASK_UPLOAD_H_INCLUDED_ */
