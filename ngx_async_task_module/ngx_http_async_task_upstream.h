
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"


#define NGX_HTTP_ASYNC_TASK_NONE  ((ngx_uint_t) -1)


void *ngx_http_async_task_create_srv_conf(ngx_conf_t *cf);
char *ngx_http_async_task_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_async_task_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_async_task_init_instances(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf);

ngx_http_async_task_instance_t *ngx_http_async_task_pick_locked(
    ngx_http_async_task_backend_t *backend, ngx_str_t *user,
    ngx_uint_t avoid);
ngx_uint_t ngx_http_async_task_tier_locked(
    ngx_http_async_task_backend_t *backend);
void ngx_http_async_task_slots_locked(ngx_http_async_task_backend_t *backend,
    ngx_uint_t *free, ngx_uint_t *total);
void ngx_http_async_task_release_locked(
    ngx_http_async_task_instance_sh_t *ish);


#endif /* _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_ */
