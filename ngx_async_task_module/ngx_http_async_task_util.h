
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_UTIL_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_UTIL_H_INCLUDED_


#include "ngx_http_async_task_module.h"


#define NGX_HTTP_ASYNC_TASK_TIME_LEN  (sizeof("2026-11-29T10:00:00.123Z") - 1)

/* a lease owner: "pid:N" */
#define NGX_HTTP_ASYNC_TASK_LEASE_LEN  (sizeof("pid:") - 1 + NGX_INT64_LEN)

/* not a code point: a byte that starts no UTF-8 character */
#define NGX_HTTP_ASYNC_TASK_UTF8_INVALID  0xffffffff


ngx_int_t ngx_http_async_task_util_parse_id(ngx_str_t *text, u_char *id);
int64_t ngx_http_async_task_util_now_ms(void);
int64_t ngx_http_async_task_util_cached_ms(void);
u_char *ngx_http_async_task_util_format_time(u_char *p, int64_t ms);
ngx_int_t ngx_http_async_task_util_status_index(ngx_str_t *name);
uint32_t ngx_http_async_task_util_utf8(u_char **p, u_char *last);
ngx_uint_t ngx_http_async_task_util_owner(ngx_str_t *user,
    ngx_uint_t has_owner, u_char *owner, size_t len);
ngx_int_t ngx_http_async_task_util_sync_dir(u_char *name, ngx_log_t *log);
void ngx_http_async_task_util_lease(ngx_str_t *owner, ngx_pid_t pid);
ngx_pid_t ngx_http_async_task_util_lease_pid(u_char *owner, size_t len);


#endif /* _NGX_HTTP_ASYNC_TASK_UTIL_H_INCLUDED_ */
