
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_STORE_PG_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_STORE_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <libpq-fe.h>

#include "ngx_http_async_task_store.h"


/*
 * What the PostgreSQL driver's files share: a pool thread's connection,
 * statements with their parameters, and reading their rows.  Every call
 * here runs in a pool thread.
 */


#define NGX_HTTP_ASYNC_TASK_PG_PARAMS     12


typedef struct ngx_http_async_task_pg_s  ngx_http_async_task_pg_t;

struct ngx_http_async_task_pg_s {
    ngx_http_async_task_pg_t       *next;       /* all of the process's */
    PGconn                         *conn;
    ngx_http_async_task_store_conf_t  *conf;
};


typedef struct {
    const char                     *values[NGX_HTTP_ASYNC_TASK_PG_PARAMS];
    int                             lengths[NGX_HTTP_ASYNC_TASK_PG_PARAMS];
    int                             formats[NGX_HTTP_ASYNC_TASK_PG_PARAMS];
    int                             n;
    u_char                          text[NGX_HTTP_ASYNC_TASK_PG_PARAMS][24];
} ngx_http_async_task_pg_params_t;


ngx_http_async_task_pg_t *ngx_http_async_task_pg_connection(
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log);
PGresult *ngx_http_async_task_pg_exec(ngx_http_async_task_pg_t *pg,
    const char *sql, ngx_http_async_task_pg_params_t *params, ngx_log_t *log);
ngx_int_t ngx_http_async_task_pg_command(ngx_http_async_task_pg_t *pg,
    const char *sql, ngx_http_async_task_pg_params_t *params, ngx_log_t *log);
void ngx_http_async_task_pg_rollback(ngx_http_async_task_pg_t *pg,
    ngx_log_t *log);

void ngx_http_async_task_pg_str(ngx_http_async_task_pg_params_t *p,
    ngx_str_t *value);
void ngx_http_async_task_pg_int(ngx_http_async_task_pg_params_t *p,
    int64_t value);
void ngx_http_async_task_pg_null(ngx_http_async_task_pg_params_t *p);

ngx_int_t ngx_http_async_task_pg_owner(ngx_http_async_task_store_conf_t *conf,
    ngx_str_t *owner, u_char *buf, size_t size, ngx_str_t *out);
ngx_int_t ngx_http_async_task_pg_text(PGresult *res, int row, int col,
    ngx_pool_t *pool, ngx_str_t *value);
int64_t ngx_http_async_task_pg_int64(PGresult *res, int row, int col);
u_char *ngx_http_async_task_pg_element(u_char *p, u_char *data, size_t len);

PGresult *ngx_http_async_task_pg_slots_claim(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_op_t *op, ngx_http_async_task_pg_params_t *claim,
    ngx_log_t *log);


#endif /* _NGX_HTTP_ASYNC_TASK_STORE_PG_H_INCLUDED_ */
