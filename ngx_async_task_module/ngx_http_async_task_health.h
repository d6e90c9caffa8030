
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_HEALTH_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_HEALTH_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"
#include "ngx_http_async_task_client.h"


ngx_int_t ngx_http_async_task_health_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf);
void ngx_http_async_task_health_report(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok, ngx_log_t *log);
void ngx_http_async_task_health_verdict(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok, ngx_log_t *log);
void ngx_http_async_task_health_log(ngx_http_async_task_instance_t *in,
    ngx_int_t change, ngx_log_t *log);
void ngx_http_async_task_health_probe(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t shared);
void ngx_http_async_task_health_passive(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_http_async_task_client_e result);


#endif /* _NGX_HTTP_ASYNC_TASK_HEALTH_H_INCLUDED_ */
