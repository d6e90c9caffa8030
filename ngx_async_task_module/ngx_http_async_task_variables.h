
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_VARIABLES_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_VARIABLES_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_variables_add(ngx_conf_t *cf);
void ngx_http_async_task_variables_set(ngx_http_request_t *r,
    ngx_http_async_task_t *task);
void ngx_http_async_task_variables_kind(ngx_http_request_t *r,
    ngx_uint_t kind);


#endif /* _NGX_HTTP_ASYNC_TASK_VARIABLES_H_INCLUDED_ */
