
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_


#include "ngx_http_async_task_module.h"


/* how much of a client's text an error body echoes, in characters */
#define NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX    128
#define NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX  512

/* the characters of a transcript that a listing shows */
#define NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX  1000


/* a body being written, or with pos NULL only counted */
typedef struct {
    u_char                         *pos;
    size_t                          len;
} ngx_http_async_task_json_out_t;


/* what GET system/stats shows of a GPU instance */
typedef struct {
    ngx_str_t                      *kind;
    ngx_str_t                       upstream;
    ngx_str_t                      *server;
    ngx_uint_t                      healthy;
    ngx_uint_t                      inflight;
    ngx_uint_t                      max_conns;
    ngx_uint_t                      requests;
    ngx_uint_t                      failures;
    int64_t                         last_check;
} ngx_http_async_task_json_backend_t;


/* what GET system/stats shows */
typedef struct {
    int64_t                              uptime;     /* seconds */
    ngx_uint_t                           count[NGX_HTTP_ASYNC_TASK_NSTATUSES];
    ngx_uint_t                           capacity;   /* queue */
    ngx_uint_t                           nkinds;     /* with a backend */
    ngx_str_t                           *kinds[NGX_HTTP_ASYNC_TASK_NKINDS];
    ngx_uint_t                           queued[NGX_HTTP_ASYNC_TASK_NKINDS];
    ngx_uint_t                           workers;    /* slots */
    ngx_uint_t                           nbackends;
    ngx_http_async_task_json_backend_t  *backends;
} ngx_http_async_task_json_stats_t;


size_t ngx_http_async_task_json_task(u_char *buf,
    ngx_http_async_task_t *task, ngx_str_t *prefix);
size_t ngx_http_async_task_json_list(u_char *buf,
    ngx_http_async_task_t *tasks, ngx_uint_t n, u_char *next,
    ngx_str_t *prefix);
size_t ngx_http_async_task_json_stats(u_char *buf,
    ngx_http_async_task_json_stats_t *stats);
ngx_int_t ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field);
ngx_int_t ngx_http_async_task_json_task_error(ngx_pool_t *pool,
    ngx_str_t *out, const char *code, ngx_str_t *message);
void ngx_http_async_task_json_result_raw(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_t *task, ngx_str_t *prefix);
void ngx_http_async_task_json_result_file(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_t *task, ngx_str_t *prefix);
ngx_int_t ngx_http_async_task_json_transcript_listed(ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_str_t *prefix);
size_t ngx_http_async_task_json_escape(u_char *dst, u_char *src, size_t size,
    size_t max);


#endif /* _NGX_HTTP_ASYNC_TASK_JSON_H_INCLUDED_ */
