
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_ERROR_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_ERROR_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_error_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_ASYNC_TASK_ERROR_H_INCLUDED_ */
