
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_CLIENT_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_CLIENT_H_INCLUDED_


#include "ngx_http_async_task_module.h"


typedef struct ngx_http_async_task_client_s  ngx_http_async_task_client_t;

typedef void (*ngx_http_async_task_client_handler_pt)(
    ngx_http_async_task_client_t *hc);


/* an answer's status line and headers, interim answers apart */
#define NGX_HTTP_ASYNC_TASK_HEADERS_MAX   (32 * 1024)

/* the longest a connection to an instance may take to be made */
#define NGX_HTTP_ASYNC_TASK_CONNECT       5000


/* how an exchange ended */

typedef enum {
    ngx_http_async_task_client_ok = 0,      /* a whole response */
    ngx_http_async_task_client_refused,     /* no connection was made */
    ngx_http_async_task_client_timeout,
    ngx_http_async_task_client_broken,      /* reset, cut short, malformed */
    ngx_http_async_task_client_too_big,     /* a body over max_response */
    ngx_http_async_task_client_headers_too_big,
    ngx_http_async_task_client_tls,         /* handshake or certificate */
    ngx_http_async_task_client_aborted      /* nginx is shutting down */
} ngx_http_async_task_client_e;


/*
 * One HTTP/1.1 exchange with a GPU instance, with no client request
 * behind it: nginx's event machinery, one connection, Content-Length or
 * chunked answers, a size limit, a connect and a total timeout.  The
 * request is a chain: memory buffers and file buffers (an audio file is
 * sent from disk, never loaded).  The answer is read as the request goes
 * out: an instance may answer (a 413) and close before it has all of it.
 */

struct ngx_http_async_task_client_s {
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    ngx_peer_connection_t           peer;

    ngx_chain_t                    *request;

    /* keep-alive: where idle connections wait, and how many at most */
    ngx_queue_t                    *idle;
    ngx_uint_t                     *nidle;
    ngx_uint_t                      keepalive;

    ngx_msec_t                      connect_timeout;
    ngx_msec_t                      timeout;
    size_t                          max_response;

    ngx_http_async_task_client_handler_pt   handler;
    void                           *data;

#if (NGX_HTTP_SSL)
    /* TLS (conn.c sets it up): the name to send and check, NUL-ended */
    ngx_ssl_t                      *ssl;
    ngx_str_t                       ssl_name;
    ngx_ssl_session_t             **ssl_session;    /* the instance's */
    unsigned                        ssl_verify:1;
    unsigned                        ssl_address:1;  /* the name is one */
#endif

    /* the outcome */
    ngx_http_async_task_client_e    result;
    ngx_uint_t                      status;
    ngx_str_t                       body;

    /* private */
    ngx_chain_t                    *request_start;
    ngx_event_t                     deadline;
    ngx_buf_t                      *raw;        /* the response as read */
    ngx_buf_t                      *file_buf;   /* a file's piece, for TLS */
    u_char                         *body_start;
    off_t                           content_length;
    off_t                           chunk_left;
    ngx_uint_t                      state;
    unsigned                        connected:1;
    unsigned                        sent:1;     /* the whole request */
    unsigned                        send_failed:1;
    unsigned                        reused:1;   /* a kept connection */
    unsigned                        retried:1;
    unsigned                        close_after:1;
    unsigned                        chunked:1;
    unsigned                        headers_done:1;
    unsigned                        big_headers:1;
    unsigned                        done:1;
};


ngx_int_t ngx_http_async_task_client_start(ngx_http_async_task_client_t *hc);
void ngx_http_async_task_client_close(ngx_http_async_task_client_t *hc);
void ngx_http_async_task_client_init(ngx_http_async_task_client_t *hc,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_msec_t timeout);


#endif /* _NGX_HTTP_ASYNC_TASK_CLIENT_H_INCLUDED_ */
