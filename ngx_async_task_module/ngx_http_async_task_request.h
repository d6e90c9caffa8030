
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_REQUEST_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_REQUEST_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"


/*
 * A query parameter's reader: NGX_OK, NGX_ERROR, or NGX_DECLINED with
 * *error set, the value being wrong.
 */
typedef ngx_int_t (*ngx_http_async_task_request_arg_pt)(ngx_str_t *value,
    void *data, const char **error);

typedef struct {
    ngx_str_t                            name;
    ngx_http_async_task_request_arg_pt   handler;
} ngx_http_async_task_request_arg_t;


ngx_int_t ngx_http_async_task_request_user(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t **userp);
ngx_http_async_task_shm_t *ngx_http_async_task_request_shm(
    ngx_http_request_t *r);
ngx_str_t *ngx_http_async_task_request_files(ngx_http_request_t *r);
ngx_thread_pool_t *ngx_http_async_task_request_thread_pool(
    ngx_http_request_t *r);
ngx_int_t ngx_http_async_task_request_next_arg(ngx_http_request_t *r,
    u_char **pos, u_char *last, ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_http_async_task_request_args(ngx_http_request_t *r,
    ngx_http_async_task_request_arg_t *args, void *data, const char **error,
    const char **field);
ngx_int_t ngx_http_async_task_request_int(ngx_str_t *value, ngx_int_t min,
    ngx_int_t max);

ngx_int_t ngx_http_async_task_request_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *data, size_t len);
ngx_int_t ngx_http_async_task_request_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *field);
ngx_int_t ngx_http_async_task_request_send_unavailable(
    ngx_http_request_t *r);
void ngx_http_async_task_request_finish(ngx_http_request_t *r, ngx_int_t rc);


#endif /* _NGX_HTTP_ASYNC_TASK_REQUEST_H_INCLUDED_ */
