
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_error.h"
#include "ngx_http_async_task_json.h"


/*
 * Some errors are answered by nginx itself before or around our handler:
 * access control (auth_basic, auth_request, allow/deny), limit_req and
 * limit_conn, a body over client_max_body_size, a malformed chunked
 * body, a body that does not arrive in time, a request line or header
 * over large_client_header_buffers.  Below async_task_api these answers
 * keep their status and nginx's headers (WWW-Authenticate, Allow, ...)
 * and get the contract's JSON error body, with a code that says what
 * happened, instead of nginx's HTML page.
 */

typedef struct {
    ngx_uint_t                      status;
    const char                     *code;
    const char                     *message;
} ngx_http_async_task_error_t;


static ngx_int_t ngx_http_async_task_error_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_async_task_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_async_task_error_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_uint_t ngx_http_async_task_error_applies(ngx_http_request_t *r);
static ngx_uint_t ngx_http_async_task_error_early(ngx_http_request_t *r);
static void **ngx_http_async_task_error_location(
    ngx_http_core_loc_conf_t *clcf, u_char *uri, size_t len);


static ngx_http_async_task_error_t  ngx_http_async_task_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_argument", "the request is malformed" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized", "authentication is required" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "access is forbidden" },
    { NGX_HTTP_NOT_FOUND, "not_found", "no such endpoint" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "method not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "request_timeout",
      "the request did not arrive in time" },
    { NGX_HTTP_CONFLICT, "conflict", "conflict" },
    { NGX_HTTP_LENGTH_REQUIRED, "length_required",
      "the body needs a Content-Length" },
    { NGX_HTTP_PRECONDITION_FAILED, "precondition_failed",
      "a precondition failed" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "the body is over client_max_body_size" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "uri_too_long",
      "the request line is too long" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
      "unsupported Content-Type" },
    { NGX_HTTP_RANGE_NOT_SATISFIABLE, "range_not_satisfiable",
      "the range is not satisfiable" },
    { NGX_HTTP_MISDIRECTED_REQUEST, "misdirected_request",
      "misdirected request" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limited",
      "too many requests, try again later" },
    { NGX_HTTP_REQUEST_HEADER_TOO_LARGE, "request_header_too_large",
      "a request header is too large" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error", "internal error" },
    { NGX_HTTP_NOT_IMPLEMENTED, "not_implemented",
      "the request uses a feature that is not implemented" },
    { NGX_HTTP_BAD_GATEWAY, "bad_gateway", "bad gateway" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable, try again later" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout", "gateway timeout" },
    { NGX_HTTP_VERSION_NOT_SUPPORTED, "http_version_not_supported",
      "the HTTP version is not supported" },
    { NGX_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
      "insufficient storage" },
    { 0, "internal_error", "internal error" }
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_async_task_error_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_async_task_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_async_task_error_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_error_header_filter(ngx_http_request_t *r)
{
    ngx_str_t  body;

    if (!ngx_http_async_task_error_applies(r)) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_async_task_error_body(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->headers_out.content_length_n = body.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_async_task_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_str_t     body;
    ngx_chain_t  *cl, out;

    if (in == NULL || !ngx_http_async_task_error_applies(r)) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is dropped; ours goes out with its last buffer */

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            break;
        }

        cl->buf->pos = cl->buf->last;
    }

    if (cl == NULL) {
        return NGX_OK;
    }

    if (ngx_http_async_task_error_body(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_async_task_error_body(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_str_t                     message;
    ngx_uint_t                    status;
    ngx_http_async_task_error_t  *e;

    status = r->headers_out.status;

    /*
     * A header over large_client_header_buffers goes out as a 400 with
     * nginx's 494 page; only that path asks for a lingering close
     * before the request has a location.
     */

    if (status == NGX_HTTP_BAD_REQUEST && r->lingering_close
        && ngx_http_async_task_error_early(r))
    {
        status = NGX_HTTP_REQUEST_HEADER_TOO_LARGE;
    }

    for (e = ngx_http_async_task_errors; e->status; e++) {
        if (e->status == status) {
            break;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async task api: nginx's %ui answered as \"%s\"",
                   r->headers_out.status, e->code);

    message.data = (u_char *) e->message;
    message.len = ngx_strlen(e->message);

    return ngx_http_async_task_json_error(r->pool, body, e->code, &message,
                                          NULL);
}


/*
 * nginx's own error answers (err_status) under async_task_api only.  An
 * error raised before a location was chosen (a request line or header
 * over large_client_header_buffers) belongs to the location that the
 * URI, as far as it was read, would have chosen.
 */

static ngx_uint_t
ngx_http_async_task_error_applies(ngx_http_request_t *r)
{
    void                           **loc_conf;
    u_char                          *uri, *last;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_async_task_loc_conf_t  *alcf;

    if (r != r->main || r->err_status < NGX_HTTP_BAD_REQUEST
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST)
    {
        return 0;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_async_task_module);

    if (alcf->api || !ngx_http_async_task_error_early(r)) {
        return alcf->api;
    }

    if (r->uri.len) {
        uri = r->uri.data;
        last = uri + r->uri.len;

    } else if (r->uri_start && r->header_in
               && r->uri_start >= r->header_in->start
               && r->uri_start < r->header_in->last)
    {
        /* a request line cut short: the URI as far as it came */

        uri = r->uri_start;
        last = r->uri_end ? r->uri_end : r->header_in->last;

        if (last <= uri || last > r->header_in->last) {
            return 0;
        }

    } else {
        return 0;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    loc_conf = ngx_http_async_task_error_location(clcf, uri, last - uri);
    if (loc_conf == NULL) {
        return 0;
    }

    alcf = loc_conf[ngx_http_async_task_module.ctx_index];

    return alcf->api;
}


/* the request never reached a location: it has the server's */

static ngx_uint_t
ngx_http_async_task_error_early(ngx_http_request_t *r)
{
    ngx_http_core_srv_conf_t  *cscf;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    return r->loc_conf == cscf->ctx->loc_conf;
}


/*
 * The prefix location of a URI, nested ones included, as nginx's own
 * static location search finds it (regex locations are not tried).
 */

static void **
ngx_http_async_task_error_location(ngx_http_core_loc_conf_t *clcf,
    u_char *start, size_t size)
{
    void                          **found;
    u_char                         *uri;
    size_t                          n, len;
    ngx_int_t                       rc;
    ngx_http_location_tree_node_t  *node;

    found = NULL;

    /* nested locations are searched with the whole URI again */

    while (clcf && clcf->static_locations) {

        node = clcf->static_locations;
        clcf = NULL;
        uri = start;
        len = size;

        while (node) {

            n = (len <= (size_t) node->len) ? len : node->len;

            rc = ngx_filename_cmp(uri, node->name, n);

            if (rc != 0) {
                node = (rc < 0) ? node->left : node->right;
                continue;
            }

            if (len > (size_t) node->len) {

                if (node->inclusive) {
                    found = node->inclusive->loc_conf;
                    clcf = found[ngx_http_core_module.ctx_index];

                    node = node->tree;
                    uri += n;
                    len -= n;
                    continue;
                }

                node = node->right;
                continue;
            }

            if (len == (size_t) node->len) {
                return node->exact ? node->exact->loc_conf
                                   : node->inclusive->loc_conf;
            }

            node = node->left;
        }
    }

    return found;
}
