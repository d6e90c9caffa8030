
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"


ngx_int_t ngx_http_async_task_api_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_async_task_user(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t **userp);
ngx_http_async_task_shm_t *ngx_http_async_task_shm(ngx_http_request_t *r);
ngx_str_t *ngx_http_async_task_files(ngx_http_request_t *r);
ngx_thread_pool_t *ngx_http_async_task_thread_pool(ngx_http_request_t *r);
ngx_int_t ngx_http_async_task_next_arg(ngx_http_request_t *r, u_char **pos,
    u_char *last, ngx_str_t *name, ngx_str_t *value);
void ngx_http_async_task_prefix(ngx_http_request_t *r, ngx_str_t *prefix);

ngx_int_t ngx_http_async_task_send_task(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_async_task_t *task);
ngx_int_t ngx_http_async_task_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *data, size_t len);
ngx_int_t ngx_http_async_task_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *field);
ngx_int_t ngx_http_async_task_send_unavailable(ngx_http_request_t *r);
void ngx_http_async_task_finish(ngx_http_request_t *r, ngx_int_t rc);


#endif /* _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_ */
