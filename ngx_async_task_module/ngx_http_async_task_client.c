
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_client.h"


#define NGX_HTTP_ASYNC_TASK_READ_CHUNK    (64 * 1024)


/* where the chunked decoder is */
enum {
    ngx_http_async_task_chunk_size = 0,
    ngx_http_async_task_chunk_data,
    ngx_http_async_task_chunk_data_end,
    ngx_http_async_task_chunk_trailer
};


/* a connection kept for the next request to its instance */

typedef struct {
    ngx_queue_t                     queue;
    ngx_connection_t               *connection;
    ngx_uint_t                     *nidle;
} ngx_http_async_task_idle_t;


#define NGX_HTTP_ASYNC_TASK_IDLE_TIMEOUT  60000

/* a TLS connection's own pool: its SSL state, which may outlive a job */
#define NGX_HTTP_ASYNC_TASK_SSL_POOL      512

/* a file sent over TLS goes through memory, this much at a time */
#define NGX_HTTP_ASYNC_TASK_SSL_FILE_BUF  (64 * 1024)


static ngx_int_t ngx_http_async_task_client_connect(
    ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_client_attach(
    ngx_http_async_task_client_t *hc, ngx_connection_t *c);
static void ngx_http_async_task_client_keep(ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_client_idle(ngx_event_t *ev);
static ngx_uint_t ngx_http_async_task_client_retry(
    ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_client_write(ngx_event_t *wev);
static void ngx_http_async_task_client_read(ngx_event_t *rev);
static void ngx_http_async_task_client_too_large(
    ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_client_dummy(ngx_event_t *ev);
static void ngx_http_async_task_client_expire(ngx_event_t *ev);
static ngx_int_t ngx_http_async_task_client_test_connect(
    ngx_connection_t *c);
static ngx_int_t ngx_http_async_task_client_grow(
    ngx_http_async_task_client_t *hc);
static ngx_int_t ngx_http_async_task_client_parse(
    ngx_http_async_task_client_t *hc, ngx_uint_t eof);
static ngx_int_t ngx_http_async_task_client_parse_headers(
    ngx_http_async_task_client_t *hc);
static ngx_int_t ngx_http_async_task_client_parse_chunked(
    ngx_http_async_task_client_t *hc);
static void ngx_http_async_task_client_finish(
    ngx_http_async_task_client_t *hc, ngx_http_async_task_client_e result);
static void ngx_http_async_task_client_close_connection(ngx_connection_t *c);
#if (NGX_HTTP_SSL)
static void ngx_http_async_task_client_ssl_init(
    ngx_http_async_task_client_t *hc, ngx_connection_t *c);
static void ngx_http_async_task_client_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_http_async_task_client_ssl_verify(
    ngx_http_async_task_client_t *hc, ngx_connection_t *c);
static void ngx_http_async_task_client_ssl_save_session(ngx_connection_t *c);
static ngx_chain_t *ngx_http_async_task_client_ssl_send(
    ngx_http_async_task_client_t *hc, ngx_connection_t *c);
#endif


/*
 * NGX_OK: the handler will tell how it went; NGX_DECLINED: no connection
 * could even be started (the handler is not called); NGX_ERROR.
 */

ngx_int_t
ngx_http_async_task_client_start(ngx_http_async_task_client_t *hc)
{
    ngx_queue_t                 *q;
    ngx_connection_t            *c;
    ngx_http_async_task_idle_t  *idle;

    hc->raw = ngx_create_temp_buf(hc->pool, NGX_HTTP_ASYNC_TASK_READ_CHUNK);
    if (hc->raw == NULL) {
        return NGX_ERROR;
    }

    hc->content_length = -1;
    hc->request_start = hc->request;

    /*
     * The deadline is not cancelable: a worker process that is shutting
     * down waits for the task it runs, at most worker_shutdown_timeout.
     */

    hc->deadline.handler = ngx_http_async_task_client_expire;
    hc->deadline.data = hc;
    hc->deadline.log = hc->log;

    if (hc->keepalive == 0 || ngx_queue_empty(hc->idle)) {

        if (ngx_http_async_task_client_connect(hc) != NGX_OK) {
            return NGX_DECLINED;
        }

        ngx_add_timer(&hc->deadline, hc->timeout);

        if (!hc->peer.connection->write->timer_set) {
            ngx_http_async_task_client_write(hc->peer.connection->write);
        }

        return NGX_OK;
    }

    /* the connection the instance answered on last, kept open */

    q = ngx_queue_head(hc->idle);
    ngx_queue_remove(q);
    (*hc->nidle)--;

    idle = ngx_queue_data(q, ngx_http_async_task_idle_t, queue);
    c = idle->connection;
    ngx_free(idle);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->idle = 0;
    c->read->cancelable = 0;

    hc->peer.connection = c;
    hc->reused = 1;
    hc->connected = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: reusing kept connection %p to %V",
                   c, hc->peer.name);

    ngx_http_async_task_client_attach(hc, c);

    ngx_add_timer(&hc->deadline, hc->timeout);

    ngx_http_async_task_client_write(c->write);

    return NGX_OK;
}


/* NGX_OK: connected or connecting (then the connect timer is set) */

static ngx_int_t
ngx_http_async_task_client_connect(ngx_http_async_task_client_t *hc)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    hc->peer.get = ngx_event_get_peer;
    hc->peer.log = hc->log;
    hc->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&hc->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (hc->peer.connection) {
            ngx_http_async_task_client_close_connection(hc->peer.connection);
            hc->peer.connection = NULL;
        }

        return NGX_DECLINED;
    }

    c = hc->peer.connection;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: connect to %V: %p, rc:%i",
                   hc->peer.name, c, rc);

    ngx_http_async_task_client_attach(hc, c);

    /*
     * Small writes go out at once: no Nagle delay that waits for the
     * instance's delayed ACK (sendfile corks and uncorks around a file).
     */

    if (hc->peer.sockaddr->sa_family != AF_UNIX) {
        (void) ngx_tcp_nodelay(c);
    }

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, hc->connect_timeout);
    }

    return NGX_OK;
}


/*
 * The exchange's own connection, or a kept one, now serves it.  The
 * connection's pool is its own, never the exchange's: only a TLS one has
 * one (its SSL state), made with the handshake and destroyed with it.
 */

static void
ngx_http_async_task_client_attach(ngx_http_async_task_client_t *hc,
    ngx_connection_t *c)
{
    c->data = hc;
    c->log = hc->log;
    c->read->log = hc->log;
    c->write->log = hc->log;
    c->read->handler = ngx_http_async_task_client_read;
    c->write->handler = ngx_http_async_task_client_write;
}


/*
 * A client for one exchange with an instance of a backend: its address,
 * the backend's kept connections, a deadline.  The caller adds the pool,
 * log, request, answer cap and handler.
 */

void
ngx_http_async_task_client_init(ngx_http_async_task_client_t *hc,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_msec_t timeout)
{
    ngx_memzero(hc, sizeof(ngx_http_async_task_client_t));

    hc->timeout = timeout;
    hc->connect_timeout = ngx_min(timeout, NGX_HTTP_ASYNC_TASK_CONNECT);
    hc->keepalive = backend->keepalive;
    hc->idle = &in->idle;
    hc->nidle = &in->nidle;

    hc->peer.sockaddr = in->sockaddr;
    hc->peer.socklen = in->socklen;
    hc->peer.name = &in->name;
}


/* drops the exchange without calling the handler: the task was canceled */

void
ngx_http_async_task_client_close(ngx_http_async_task_client_t *hc)
{
    if (hc->deadline.timer_set) {
        ngx_del_timer(&hc->deadline);
    }

    if (hc->peer.connection) {
        ngx_http_async_task_client_close_connection(hc->peer.connection);
        hc->peer.connection = NULL;
    }

    hc->done = 1;
}


static void
ngx_http_async_task_client_write(ngx_event_t *wev)
{
    ngx_chain_t                   *cl;
    ngx_connection_t              *c;
    ngx_http_async_task_client_t  *hc;

    c = wev->data;
    hc = c->data;

    if (c->close) {
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_aborted);
        return;
    }

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_ERR, hc->log, NGX_ETIMEDOUT,
                      "async_task: connect to %V timed out", hc->peer.name);
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_refused);
        return;
    }

    if (wev->timer_set) {

        /* the connect timer: connected, or refused */

        ngx_del_timer(wev);

        if (ngx_http_async_task_client_test_connect(c) != NGX_OK) {
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_refused);
            return;
        }
    }

    hc->connected = 1;

#if (NGX_HTTP_SSL)

    if (hc->ssl) {
        if (c->ssl == NULL) {
            ngx_http_async_task_client_ssl_init(hc, c);
            return;
        }

        cl = ngx_http_async_task_client_ssl_send(hc, c);

    } else {
        cl = c->send_chain(c, hc->request, 0);
    }

#else

    cl = c->send_chain(c, hc->request, 0);

#endif

    if (cl == NGX_CHAIN_ERROR) {

        /* an instance may answer early, then close: its answer counts */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                       "async task client: sending to %V failed, "
                       "reading what came back", hc->peer.name);

        hc->send_failed = 1;
        wev->handler = ngx_http_async_task_client_dummy;
        ngx_http_async_task_client_read(c->read);
        return;
    }

    hc->request = cl;

    if (cl) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
        }

        return;
    }

    /* all sent: sendfile corked a request with a file, uncork its end */

    if (c->tcp_nopush == NGX_TCP_NOPUSH_SET) {
        if (ngx_tcp_push(c->fd) == -1) {
            ngx_connection_error(c, ngx_socket_errno,
                                 ngx_tcp_push_n " failed");
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
            return;
        }

        c->tcp_nopush = NGX_TCP_NOPUSH_UNSET;

        if (hc->peer.sockaddr->sa_family != AF_UNIX) {
            (void) ngx_tcp_nodelay(c);
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: request sent to %V", hc->peer.name);

    hc->sent = 1;
    wev->handler = ngx_http_async_task_client_dummy;

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
        return;
    }

    if (c->read->ready) {
        ngx_http_async_task_client_read(c->read);
    }
}


static void
ngx_http_async_task_client_read(ngx_event_t *rev)
{
    ssize_t                        n;
    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_http_async_task_client_t  *hc;

    c = rev->data;
    hc = c->data;

    if (c->close) {
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_aborted);
        return;
    }

    if (!hc->connected) {

        /*
         * A refused connect shows first as an error on the read side:
         * it is the instance's failure, not a broken answer.
         */

        if (ngx_http_async_task_client_test_connect(c) != NGX_OK) {
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_refused);
        }

        return;
    }

    for ( ;; ) {

        if (hc->raw->last == hc->raw->end) {
            rc = ngx_http_async_task_client_grow(hc);

            if (rc == NGX_DECLINED) {
                ngx_http_async_task_client_too_large(hc);
                return;
            }

            if (rc != NGX_OK) {
                ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
                return;
            }
        }

        n = c->recv(c, hc->raw->last, hc->raw->end - hc->raw->last);

        if (n == NGX_AGAIN) {

            /* the request could not go out and no answer came: broken */

            if (hc->send_failed
                || ngx_handle_read_event(rev, 0) != NGX_OK)
            {
                ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
            return;
        }

        hc->raw->last += n;

        rc = ngx_http_async_task_client_parse(hc, n == 0);

        if (rc == NGX_OK) {
            ngx_http_async_task_client_finish(hc,
                                              ngx_http_async_task_client_ok);
            return;
        }

        if (rc == NGX_DECLINED) {
            ngx_http_async_task_client_too_large(hc);
            return;
        }

        if (rc == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                          "async_task: %V sent a malformed or incomplete "
                          "response", hc->peer.name);
            ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
            return;
        }
    }
}


/* an answer over its cap fails the run as a malformed one does */

static void
ngx_http_async_task_client_too_large(ngx_http_async_task_client_t *hc)
{
    if (hc->big_headers) {
        ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                      "async_task: %V sent a header block larger than "
                      "%d bytes", hc->peer.name,
                      NGX_HTTP_ASYNC_TASK_HEADERS_MAX);
        ngx_http_async_task_client_finish(hc,
                                   ngx_http_async_task_client_headers_too_big);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                  "async_task: %V sent an answer larger than %uz bytes",
                  hc->peer.name, hc->max_response);
    ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_too_big);
}


static void
ngx_http_async_task_client_dummy(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_async_task_client_t  *hc;

    c = ev->data;
    hc = c->data;

    if (c->close) {
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_aborted);
    }
}


static void
ngx_http_async_task_client_expire(ngx_event_t *ev)
{
    ngx_http_async_task_client_t  *hc = ev->data;

    ngx_log_error(NGX_LOG_ERR, hc->log, NGX_ETIMEDOUT,
                  "async_task: %V did not answer in time", hc->peer.name);

    ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_timeout);
}


static ngx_int_t
ngx_http_async_task_client_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A full buffer: a larger one.  With Content-Length, exactly the body's
 * size, so that an answer is held once; else twice the size, up to the
 * cap.  NGX_DECLINED: the answer is over max_response.
 */

static ngx_int_t
ngx_http_async_task_client_grow(ngx_http_async_task_client_t *hc)
{
    u_char     *keep;
    size_t      size, limit;
    ngx_buf_t  *b;

    /* what is still needed: the decoded body, or the whole answer so far */

    keep = hc->headers_done ? hc->body_start : hc->raw->pos;

    limit = hc->max_response + NGX_HTTP_ASYNC_TASK_HEADERS_MAX;
    size = hc->raw->end - hc->raw->start;

    if (hc->headers_done && hc->content_length >= 0) {
        size = (size_t) hc->content_length;

        if (size <= (size_t) (hc->raw->last - keep)) {
            return NGX_ERROR;
        }

    } else if (size >= limit) {
        return NGX_DECLINED;

    } else {
        size = ngx_min(size * 2, limit);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: answer buffer %uz -> %uz bytes",
                   (size_t) (hc->raw->end - hc->raw->start), size);

    b = ngx_create_temp_buf(hc->pool, size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->start, keep, hc->raw->last - keep);
    b->pos = b->start + (hc->raw->pos - keep);

    if (hc->headers_done) {
        hc->body_start = b->start;
        hc->body.data = b->start;
    }

    ngx_pfree(hc->pool, hc->raw->start);
    hc->raw = b;

    return NGX_OK;
}


/* NGX_OK: complete; NGX_AGAIN; NGX_DECLINED: too big; NGX_ERROR */

static ngx_int_t
ngx_http_async_task_client_parse(ngx_http_async_task_client_t *hc,
    ngx_uint_t eof)
{
    size_t     have;
    ngx_int_t  rc;

    if (!hc->headers_done) {
        rc = ngx_http_async_task_client_parse_headers(hc);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (hc->chunked) {
        return ngx_http_async_task_client_parse_chunked(hc);
    }

    have = hc->raw->last - hc->body_start;

    if (hc->content_length >= 0) {
        if ((off_t) have < hc->content_length) {
            return NGX_AGAIN;
        }

        hc->body.data = hc->body_start;
        hc->body.len = (size_t) hc->content_length;

        return NGX_OK;
    }

    /* neither length nor chunks: the body ends with the connection */

    if (have > hc->max_response) {
        return NGX_DECLINED;
    }

    if (!eof) {
        return NGX_AGAIN;
    }

    hc->body.data = hc->body_start;
    hc->body.len = have;

    return NGX_OK;
}


/*
 * The status line and headers.  Lines end in CRLF or in a bare LF (RFC
 * 9112, 2.2); interim answers (1xx but 101) are passed over.
 */

static ngx_int_t
ngx_http_async_task_client_parse_headers(ngx_http_async_task_client_t *hc)
{
    off_t     length;
    size_t    len;
    u_char   *p, *last, *end, *line, *eol, *vend, *colon, *value;

    for ( ;; ) {

        p = hc->raw->pos;
        last = hc->raw->last;

        /* the block ends with an empty line */

        end = NULL;

        for (line = p; line < last; line = eol + 1) {
            eol = ngx_strlchr(line, last, '\n');

            if (eol == NULL) {
                break;
            }

            if (line != p && (eol == line || (eol == line + 1
                                              && *line == '\r')))
            {
                end = eol + 1;
                break;
            }
        }

        if (end == NULL || end - p > NGX_HTTP_ASYNC_TASK_HEADERS_MAX) {
            if (last - p > NGX_HTTP_ASYNC_TASK_HEADERS_MAX) {
                hc->big_headers = 1;
                return NGX_DECLINED;
            }

            return NGX_AGAIN;
        }

        /* "HTTP/1.1 200 OK" */

        eol = ngx_strlchr(p, end, '\n');

        if (eol - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
            || p[8] != ' ' || p[9] < '1' || p[9] > '5'
            || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9'
            || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n'))
        {
            return NGX_ERROR;
        }

        hc->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        hc->close_after = (p[7] == '0');

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                       "async task client: status %ui from %V",
                       hc->status, hc->peer.name);

        if (hc->status == 101) {
            return NGX_ERROR;
        }

        for (line = eol + 1; line < end; line = eol + 1) {
            eol = ngx_strlchr(line, end, '\n');

            vend = (eol > line && eol[-1] == '\r') ? eol - 1 : eol;

            colon = ngx_strlchr(line, vend, ':');
            if (colon == NULL) {
                continue;
            }

            len = colon - line;

            for (value = colon + 1;
                 value < vend && (*value == ' ' || *value == '\t');
                 value++)
            {
                /* void */
            }

            while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) {
                vend--;
            }

            if (len == sizeof("Content-Length") - 1
                && ngx_strncasecmp(line, (u_char *) "Content-Length", len)
                   == 0)
            {
                length = ngx_atoof(value, vend - value);

                if (length == NGX_ERROR
                    || (hc->content_length >= 0
                        && length != hc->content_length))
                {
                    return NGX_ERROR;
                }

                hc->content_length = length;

            } else if (len == sizeof("Connection") - 1
                       && ngx_strncasecmp(line, (u_char *) "Connection", len)
                          == 0
                       && ngx_strlcasestrn(value, vend, (u_char *) "close",
                                           5 - 1))
            {
                hc->close_after = 1;

            } else if (len == sizeof("Transfer-Encoding") - 1
                       && ngx_strncasecmp(line,
                                          (u_char *) "Transfer-Encoding", len)
                          == 0
                       && ngx_strlcasestrn(value, vend, (u_char *) "chunked",
                                           7 - 1))
            {
                hc->chunked = 1;
            }
        }

        hc->raw->pos = end;

        if (hc->status >= 200) {
            break;
        }

        /* an interim answer has no body: the final one follows */

        hc->status = 0;
        hc->content_length = -1;
        hc->chunked = 0;
    }

    if (hc->chunked) {

        /* both: chunked wins, and the connection is not to be trusted */

        if (hc->content_length >= 0) {
            hc->content_length = -1;
            hc->close_after = 1;
        }

    } else if (hc->status == 204 || hc->status == 304) {
        hc->content_length = 0;
    }

    if (hc->content_length > (off_t) hc->max_response) {
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: headers done, length:%O chunked:%d "
                   "close:%d", hc->content_length, (int) hc->chunked,
                   (int) hc->close_after);

    hc->headers_done = 1;
    hc->body_start = end;

    /* the decoded body is written over the chunked one, from its start */

    hc->body.data = hc->body_start;
    hc->body.len = 0;

    return NGX_OK;
}


/*
 * Decodes chunks in place: the data of each chunk moves down to the end
 * of the body decoded so far; raw->pos is where decoding stopped.
 */

static ngx_int_t
ngx_http_async_task_client_parse_chunked(ngx_http_async_task_client_t *hc)
{
    u_char  *p, *last, *eol;
    size_t   n;
    off_t    size;

    p = hc->raw->pos;
    last = hc->raw->last;

    for ( ;; ) {

        switch (hc->state) {

        case ngx_http_async_task_chunk_size:

            eol = ngx_strlchr(p, last, '\n');
            if (eol == NULL) {
                hc->raw->pos = p;
                return (last - p > 1024) ? NGX_ERROR : NGX_AGAIN;
            }

            size = 0;

            for ( /* void */ ; p < eol; p++) {
                if (*p >= '0' && *p <= '9') {
                    size = size * 16 + (*p - '0');

                } else if ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') {
                    size = size * 16 + ((*p | 0x20) - 'a' + 10);

                } else if (*p == ';' || *p == '\r' || *p == ' ') {
                    break;

                } else {
                    return NGX_ERROR;
                }

                if (size > (off_t) hc->max_response) {
                    return NGX_DECLINED;
                }
            }

            p = eol + 1;

            if (size == 0) {
                hc->state = ngx_http_async_task_chunk_trailer;
                break;
            }

            if (hc->body.len + size > hc->max_response) {
                return NGX_DECLINED;
            }

            hc->chunk_left = size;
            hc->state = ngx_http_async_task_chunk_data;
            break;

        case ngx_http_async_task_chunk_data:

            n = ngx_min((size_t) hc->chunk_left, (size_t) (last - p));

            if (n == 0) {
                hc->raw->pos = p;
                return NGX_AGAIN;
            }

            ngx_memmove(hc->body.data + hc->body.len, p, n);
            hc->body.len += n;
            hc->chunk_left -= n;
            p += n;

            if (hc->chunk_left == 0) {
                hc->state = ngx_http_async_task_chunk_data_end;
            }

            break;

        case ngx_http_async_task_chunk_data_end:

            eol = ngx_strlchr(p, last, '\n');
            if (eol == NULL) {
                hc->raw->pos = p;
                return (last - p > 2) ? NGX_ERROR : NGX_AGAIN;
            }

            if (eol - p > 1) {
                return NGX_ERROR;
            }

            p = eol + 1;
            hc->state = ngx_http_async_task_chunk_size;
            break;

        default: /* ngx_http_async_task_chunk_trailer */

            eol = ngx_strlchr(p, last, '\n');
            if (eol == NULL) {
                hc->raw->pos = p;
                return NGX_AGAIN;
            }

            if (eol - p <= 1) {

                /* whatever follows is not this answer's */

                hc->raw->pos = eol + 1;
                return NGX_OK;
            }

            p = eol + 1;
        }
    }
}


static void
ngx_http_async_task_client_finish(ngx_http_async_task_client_t *hc,
    ngx_http_async_task_client_e result)
{
    if (hc->done) {
        return;
    }

    if ((result == ngx_http_async_task_client_broken
         || result == ngx_http_async_task_client_refused)
        && ngx_http_async_task_client_retry(hc))
    {
        return;
    }

    hc->done = 1;
    hc->result = result;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: %V done, result:%d status:%ui "
                   "body:%uz", hc->peer.name, (int) result, hc->status,
                   hc->body.len);

    if (hc->deadline.timer_set) {
        ngx_del_timer(&hc->deadline);
    }

    if (hc->peer.connection) {

        if (result == ngx_http_async_task_client_ok && hc->keepalive
            && hc->sent && !hc->close_after
            && (hc->chunked || hc->content_length >= 0)
            && (hc->chunked ? hc->raw->pos == hc->raw->last
                            : hc->body_start + hc->content_length
                              == hc->raw->last))
        {
            ngx_http_async_task_client_keep(hc);

        } else {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                           "async task client: close connection %p",
                           hc->peer.connection);
            ngx_http_async_task_client_close_connection(hc->peer.connection);
        }

        hc->peer.connection = NULL;
    }

    hc->handler(hc);
}


/*
 * A kept connection the instance had closed meanwhile fails before any
 * answer: the request goes again once, on a new connection.
 */

static ngx_uint_t
ngx_http_async_task_client_retry(ngx_http_async_task_client_t *hc)
{
    ngx_chain_t  *cl;

    if (!hc->reused || hc->retried || hc->headers_done
        || hc->raw->last != hc->raw->start)
    {
        return 0;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: kept connection to %V failed, "
                   "again on a new one", hc->peer.name);

    hc->retried = 1;
    hc->reused = 0;
    hc->connected = 0;
    hc->sent = 0;
    hc->send_failed = 0;

    ngx_http_async_task_client_close_connection(hc->peer.connection);
    hc->peer.connection = NULL;

    for (cl = hc->request_start; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            cl->buf->file_pos = 0;

        } else {
            cl->buf->pos = cl->buf->start;
        }
    }

    hc->request = hc->request_start;

    if (hc->file_buf) {
        hc->file_buf->pos = hc->file_buf->start;
        hc->file_buf->last = hc->file_buf->start;
    }

    if (ngx_http_async_task_client_connect(hc) != NGX_OK) {
        return 0;
    }

    if (!hc->peer.connection->write->timer_set) {
        ngx_http_async_task_client_write(hc->peer.connection->write);
    }

    return 1;
}


static void
ngx_http_async_task_client_keep(ngx_http_async_task_client_t *hc)
{
    ngx_connection_t            *c;
    ngx_http_async_task_idle_t  *idle;

    c = hc->peer.connection;

    if (*hc->nidle >= hc->keepalive || ngx_terminate || ngx_exiting) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                       "async task client: close connection %p, "
                       "%ui already kept", c, *hc->nidle);
        ngx_http_async_task_client_close_connection(c);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: keep connection %p to %V",
                   c, hc->peer.name);

    idle = ngx_alloc(sizeof(ngx_http_async_task_idle_t), ngx_cycle->log);
    if (idle == NULL) {
        ngx_http_async_task_client_close_connection(c);
        return;
    }

    idle->connection = c;
    idle->nidle = hc->nidle;

    /* the job's log goes with the job */

    c->data = idle;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->read->handler = ngx_http_async_task_client_idle;
    c->write->handler = ngx_http_async_task_client_idle;

    /* an exiting worker closes it, and does not wait for its timer */

    c->idle = 1;
    c->read->cancelable = 1;
    ngx_add_timer(c->read, NGX_HTTP_ASYNC_TASK_IDLE_TIMEOUT);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_free(idle);
        ngx_http_async_task_client_close_connection(c);
        return;
    }

    ngx_queue_insert_head(hc->idle, &idle->queue);
    (*hc->nidle)++;
}


/* anything on an idle connection, or its timer, or shutdown: it closes */

static void
ngx_http_async_task_client_idle(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_async_task_idle_t  *idle;

    c = ev->data;
    idle = c->data;

    if (ev->write && !c->close) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "async task client: kept connection %p closed, "
                   "timedout:%d close:%d", c, (int) ev->timedout,
                   (int) c->close);

    ngx_queue_remove(&idle->queue);
    (*idle->nidle)--;
    ngx_free(idle);

    ngx_http_async_task_client_close_connection(c);
}


/* a TLS connection sends its close_notify, without waiting for the peer's */

static void
ngx_http_async_task_client_close_connection(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {

            /* no waiting on a full socket buffer either */

            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
    }

#endif

    pool = c->pool;

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


#if (NGX_HTTP_SSL)

/* as ngx_http_upstream_ssl_init_connection(): SNI, a kept session */

static void
ngx_http_async_task_client_ssl_init(ngx_http_async_task_client_t *hc,
    ngx_connection_t *c)
{
    ngx_int_t  rc;

    c->pool = ngx_create_pool(NGX_HTTP_ASYNC_TASK_SSL_POOL, ngx_cycle->log);
    if (c->pool == NULL) {
        ngx_http_async_task_client_finish(hc,
                                          ngx_http_async_task_client_broken);
        return;
    }

    if (ngx_ssl_create_connection(hc->ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_tls);
        return;
    }

    if (!hc->ssl_address
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) hc->ssl_name.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, hc->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      hc->ssl_name.data);
        ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_tls);
        return;
    }

    c->ssl->save_session = ngx_http_async_task_client_ssl_save_session;

    if (*hc->ssl_session
        && ngx_ssl_set_session(c, *hc->ssl_session) != NGX_OK)
    {
        ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_tls);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: TLS to %V, session:%p",
                   hc->peer.name, *hc->ssl_session);

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {

        if (!c->write->timer_set) {
            ngx_add_timer(c->write, hc->connect_timeout);
        }

        c->ssl->handler = ngx_http_async_task_client_ssl_handshake;
        return;
    }

    ngx_http_async_task_client_ssl_handshake(c);
}


static void
ngx_http_async_task_client_ssl_handshake(ngx_connection_t *c)
{
    ngx_http_async_task_client_t  *hc;

    hc = c->data;

    if (c->ssl->handshaked) {

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }

        if (hc->ssl_verify
            && ngx_http_async_task_client_ssl_verify(hc, c) != NGX_OK)
        {
            ngx_http_async_task_client_finish(hc,
                                              ngx_http_async_task_client_tls);
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                       "async task client: TLS to %V, reused:%d",
                       hc->peer.name, SSL_session_reused(c->ssl->connection));

        c->read->handler = ngx_http_async_task_client_read;
        c->write->handler = ngx_http_async_task_client_write;

        ngx_http_async_task_client_write(c->write);
        return;
    }

    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_ERR, hc->log, NGX_ETIMEDOUT,
                      "async_task: TLS handshake with %V timed out",
                      hc->peer.name);

    } else {
        ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                      "async_task: TLS handshake with %V failed",
                      hc->peer.name);
    }

    ngx_http_async_task_client_finish(hc, ngx_http_async_task_client_tls);
}


/* as ngx_http_upstream_ssl_handshake(), and an address is checked too */

static ngx_int_t
ngx_http_async_task_client_ssl_verify(ngx_http_async_task_client_t *hc,
    ngx_connection_t *c)
{
    long        rc;
    X509       *cert;
    ngx_uint_t  match;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                      "async_task: the TLS certificate of %V does not "
                      "verify: (%l:%s)", hc->peer.name, rc,
                      X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    if (hc->ssl_address) {
        cert = SSL_get_peer_certificate(c->ssl->connection);
        match = (cert != NULL
                 && X509_check_ip_asc(cert, (char *) hc->ssl_name.data, 0)
                    == 1);

        if (cert) {
            X509_free(cert);
        }

    } else {
        match = (ngx_ssl_check_host(c, &hc->ssl_name) == NGX_OK);
    }

    if (!match) {
        ngx_log_error(NGX_LOG_ERR, hc->log, 0,
                      "async_task: the TLS certificate of %V does not "
                      "match \"%V\"", hc->peer.name, &hc->ssl_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the instance's newest session, for the next connection to resume */

static void
ngx_http_async_task_client_ssl_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t             *session;
    ngx_http_async_task_client_t  *hc;

    if (c->idle) {
        return;
    }

    hc = c->data;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hc->log, 0,
                   "async task client: TLS session %p of %V saved",
                   session, hc->peer.name);

    if (*hc->ssl_session) {
        ngx_ssl_free_session(*hc->ssl_session);
    }

    *hc->ssl_session = session;
}


/*
 * SSL writes from memory: a file in the request (an audio upload) goes
 * out through a buffer filled from it, a piece at a time.  A write that
 * would block is retried with the same bytes, as SSL_write() needs.
 */

static ngx_chain_t *
ngx_http_async_task_client_ssl_send(ngx_http_async_task_client_t *hc,
    ngx_connection_t *c)
{
    off_t         left;
    ssize_t       n;
    ngx_buf_t    *b, *fb;
    ngx_chain_t  *cl;

    cl = hc->request;

    while (cl) {
        b = cl->buf;

        if (b->in_file) {
            fb = hc->file_buf;

            if (fb == NULL) {
                fb = ngx_create_temp_buf(hc->pool,
                                         NGX_HTTP_ASYNC_TASK_SSL_FILE_BUF);
                if (fb == NULL) {
                    return NGX_CHAIN_ERROR;
                }

                hc->file_buf = fb;
            }

            if (fb->pos == fb->last) {
                left = b->file_last - b->file_pos;

                if (left == 0) {
                    cl = cl->next;
                    continue;
                }

                n = ngx_read_file(b->file, fb->start,
                                  (size_t) ngx_min(left, fb->end - fb->start),
                                  b->file_pos);

                if (n == NGX_ERROR || n == 0) {
                    ngx_log_error(NGX_LOG_ALERT, hc->log, 0,
                                  "async_task: the file of a request to %V "
                                  "could not be read", hc->peer.name);
                    return NGX_CHAIN_ERROR;
                }

                fb->pos = fb->start;
                fb->last = fb->start + n;
                b->file_pos += n;
            }

        } else if (b->last == b->pos) {
            cl = cl->next;
            continue;

        } else {
            fb = b;
        }

        n = ngx_ssl_write(c, fb->pos, fb->last - fb->pos);

        if (n == NGX_ERROR) {
            return NGX_CHAIN_ERROR;
        }

        if (n == NGX_AGAIN) {
            return cl;
        }

        fb->pos += n;

        if (!b->in_file && b->pos == b->last) {
            cl = cl->next;
        }
    }

    return NULL;
}

#endif
