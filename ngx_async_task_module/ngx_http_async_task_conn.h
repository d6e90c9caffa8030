
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_CONN_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_CONN_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_client.h"


/*
 * How a backend's instances are reached beyond plain HTTP: TLS, the
 * credentials and headers every request to them carries (task requests
 * and health probes alike), the Host header.
 */

struct ngx_http_async_task_conn_s {
    ngx_flag_t                      tls;
    ngx_flag_t                      tls_verify;
    ngx_str_t                       tls_trusted_certificate;
    ngx_str_t                       tls_server_name;
    ngx_str_t                       host;
    ngx_str_t                       api_key;
    ngx_array_t                     header_lines;   /* of ngx_str_t */

    /* "Authorization: Bearer ..." CRLF and header= lines, made once */
    ngx_str_t                       headers;

#if (NGX_HTTP_SSL)
    ngx_ssl_t                      *ssl;
#endif
};


ngx_int_t ngx_http_async_task_conn_param(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend, ngx_str_t *value);
ngx_int_t ngx_http_async_task_conn_init(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend);
size_t ngx_http_async_task_conn_headers_len(
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in);
u_char *ngx_http_async_task_conn_headers(u_char *p,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in);
ngx_int_t ngx_http_async_task_conn_client(ngx_http_async_task_client_t *hc,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in);


#endif /* _NGX_HTTP_ASYNC_TASK_CONN_H_INCLUDED_ */
