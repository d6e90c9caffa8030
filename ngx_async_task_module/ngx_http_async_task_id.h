
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_ID_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_ID_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_id_init(ngx_cycle_t *cycle,
    ngx_thread_pool_t *thread_pool);
int64_t ngx_http_async_task_id_new(u_char *id);


#endif /* _NGX_HTTP_ASYNC_TASK_ID_H_INCLUDED_ */
