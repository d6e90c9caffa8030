
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_PG_HEALTH_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_PG_HEALTH_H_INCLUDED_


#include "ngx_http_async_task_module.h"


ngx_int_t ngx_http_async_task_pg_health_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf);
ngx_uint_t ngx_http_async_task_pg_health_shared(void);
ngx_int_t ngx_http_async_task_pg_health_verdict(
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t ok, ngx_uint_t probe);
void ngx_http_async_task_pg_health_passive(
    ngx_http_async_task_instance_t *in, ngx_uint_t ok);


#endif /* _NGX_HTTP_ASYNC_TASK_PG_HEALTH_H_INCLUDED_ */
