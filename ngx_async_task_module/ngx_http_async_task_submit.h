
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_SUBMIT_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_SUBMIT_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_submit_image(ngx_http_request_t *r,
    ngx_str_t *unused);
ngx_int_t ngx_http_async_task_submit_speech(ngx_http_request_t *r,
    ngx_str_t *unused);
ngx_int_t ngx_http_async_task_submit_pcm(ngx_http_request_t *r,
    ngx_str_t *unused);


#endif /* _NGX_HTTP_ASYNC_TASK_SUBMIT_H_INCLUDED_ */
