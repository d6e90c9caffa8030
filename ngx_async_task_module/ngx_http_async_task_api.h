
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"


ngx_int_t ngx_http_async_task_api_handler(ngx_http_request_t *r);

void ngx_http_async_task_api_prefix(ngx_http_request_t *r, ngx_str_t *prefix);

ngx_int_t ngx_http_async_task_api_send_task(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_async_task_t *task);


#endif /* _NGX_HTTP_ASYNC_TASK_API_H_INCLUDED_ */
