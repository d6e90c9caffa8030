
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_


#include "ngx_http_async_task_module.h"


/* how much of a client's text an error body echoes, in characters */
#define NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX    128
#define NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX  512

/* the characters of a transcript that a listing shows */
#define NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX  1000


size_t ngx_http_async_task_json_task_len(ngx_http_async_task_t *task,
    ngx_str_t *prefix);
u_char *ngx_http_async_task_json_task(u_char *p, ngx_http_async_task_t *task,
    ngx_str_t *prefix);
ngx_int_t ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field);
ngx_int_t ngx_http_async_task_json_list_result(ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_str_t *prefix);
size_t ngx_http_async_task_json_escape(u_char *dst, u_char *src, size_t size,
    size_t max);


#endif /* _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_ */
