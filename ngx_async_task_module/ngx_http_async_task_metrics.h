
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_METRICS_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_METRICS_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_protocol.h"
#include "ngx_http_async_task_store.h"


char *ngx_http_async_task_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_async_task_metrics_init(ngx_conf_t *cf);
void ngx_http_async_task_metrics_submission(ngx_http_request_t *r,
    ngx_uint_t kind);
void ngx_http_async_task_metrics_started(ngx_http_async_task_t *task);
void ngx_http_async_task_metrics_run(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_t *task, ngx_http_async_task_outcome_t *out,
    ngx_int_t rc);
void ngx_http_async_task_metrics_finished(ngx_http_async_task_t *task,
    const char *code);
void ngx_http_async_task_metrics_batch(ngx_http_async_task_op_t **ops,
    ngx_uint_t n, int64_t usec);
void ngx_http_async_task_metrics_op(ngx_http_async_task_op_t *op);
int64_t ngx_http_async_task_metrics_clock(void);


#endif /* _NGX_HTTP_ASYNC_TASK_METRICS_H_INCLUDED_ */
