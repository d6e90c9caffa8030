
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_shm.h"
#include "ngx_http_async_task_client.h"


#define NGX_HTTP_ASYNC_TASK_NONE  ((ngx_uint_t) -1)


void *ngx_http_async_task_create_srv_conf(ngx_conf_t *cf);
char *ngx_http_async_task_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_async_task_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_async_task_init_instances(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf);

ngx_int_t ngx_http_async_task_upstream_attach(ngx_http_async_task_shm_t *shm);
ngx_http_async_task_instance_t *ngx_http_async_task_upstream_get(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_backend_t *backend,
    ngx_str_t *user, ngx_uint_t avoid, ngx_log_t *log);
ngx_uint_t ngx_http_async_task_upstream_ring(
    ngx_http_async_task_backend_t *backend, ngx_str_t *user);
ngx_uint_t ngx_http_async_task_upstream_order(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend, ngx_uint_t n,
    ngx_http_async_task_instance_t **order, ngx_uint_t max);
void ngx_http_async_task_upstream_chosen(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t **picked, ngx_uint_t npicked,
    ngx_http_async_task_instance_t **chosen, ngx_uint_t nchosen);
void ngx_http_async_task_upstream_take(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_log_t *log);
void ngx_http_async_task_upstream_slots(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend, ngx_uint_t *free,
    ngx_uint_t *total);
void ngx_http_async_task_upstream_snapshot(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in,
    ngx_http_async_task_instance_sh_t *ish);
void ngx_http_async_task_upstream_release_locked(
    ngx_http_async_task_instance_sh_t *ish);
void ngx_http_async_task_upstream_release(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_sh_t *ish, ngx_log_t *log);
void ngx_http_async_task_upstream_free(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t failed, ngx_http_async_task_client_e result, ngx_log_t *log);
void ngx_http_async_task_upstream_observe(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_uint_t outcome,
    ngx_uint_t bucket, uint64_t ms);
ngx_uint_t ngx_http_async_task_upstream_check_take(
    ngx_http_async_task_shm_t *shm, ngx_http_async_task_instance_t *in,
    int64_t now, ngx_msec_t interval, ngx_msec_t timeout);
void ngx_http_async_task_upstream_check_done(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in);
ngx_int_t ngx_http_async_task_upstream_verdict(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t ok, ngx_log_t *log);
ngx_int_t ngx_http_async_task_upstream_shared(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in,
    ngx_http_async_task_instance_sh_t *from);

#endif /* _NGX_HTTP_ASYNC_TASK_UPSTREAM_H_INCLUDED_ */
