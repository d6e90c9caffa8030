
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_DISPATCH_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_DISPATCH_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_dispatch_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf);
void ngx_http_async_task_dispatch_wake(void);
void ngx_http_async_task_dispatch_cancel(u_char *id);


#endif /* _NGX_HTTP_ASYNC_TASK_DISPATCH_H_INCLUDED_ */
