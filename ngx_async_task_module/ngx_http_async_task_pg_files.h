
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_PG_FILES_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_PG_FILES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_store_pg.h"


/* the pieces a file goes in, in the table "files" */
#define NGX_HTTP_ASYNC_TASK_PG_CHUNK      (256 * 1024)

/* a node's copies younger than this (s) are left alone by the sweep */
#define NGX_HTTP_ASYNC_TASK_PG_FILES_AGE  60

/* the tasks the sweep asks about in one statement */
#define NGX_HTTP_ASYNC_TASK_PG_FILES_BATCH  64


/*
 * Uploads and results in PostgreSQL, for nodes whose files= directories
 * are their own.  Every call runs in a pool thread; each is a no-op
 * unless the store is PostgreSQL without "files_shared".
 */

ngx_uint_t ngx_http_async_task_pg_files_on(
    ngx_http_async_task_store_conf_t *conf);

/* in the write's transaction: the inputs of new tasks, a run's result */
ngx_int_t ngx_http_async_task_pg_files_insert(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log);
ngx_int_t ngx_http_async_task_pg_files_result(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_log_t *log);

/* a task's file into this node's files=, unless it is there already */
ngx_int_t ngx_http_async_task_pg_files_fetch(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *name,
    ngx_log_t *log);
ngx_int_t ngx_http_async_task_pg_files_get(
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_log_t *log);

void ngx_http_async_task_pg_files_remove(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_log_t *log);
void ngx_http_async_task_pg_files_sweep(
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log);


#endif /* _NGX_HTTP_ASYNC_TASK_PG_FILES_H_INCLUDED_ */
