
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_


#include "ngx_http_async_task_module.h"


size_t ngx_http_async_task_json_task_len(ngx_http_async_task_t *task,
    ngx_str_t *prefix);
u_char *ngx_http_async_task_json_task(u_char *p, ngx_http_async_task_t *task,
    ngx_str_t *prefix);
ngx_int_t ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field);


#endif /* _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_ */
