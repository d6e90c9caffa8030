
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
 * a body over client_max_body_size, a malformed chunked body, a body that
 * does not arrive in time.  Below async_task_api these answers get the
 * contract's JSON error body instead of nginx's HTML page.
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


static ngx_http_async_task_error_t  ngx_http_async_task_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_argument", "the request is malformed" },
    { NGX_HTTP_NOT_FOUND, "not_found", "no such endpoint" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "method not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "invalid_argument",
      "the request body did not arrive in time" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "the body is over client_max_body_size" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "invalid_argument",
      "the request line is too long" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
      "unsupported Content-Type" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable, try again later" },
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
    ngx_http_async_task_error_t  *e;

    for (e = ngx_http_async_task_errors; e->status; e++) {
        if (e->status == r->headers_out.status) {
            break;
        }
    }

    message.data = (u_char *) e->message;
    message.len = ngx_strlen(e->message);

    return ngx_http_async_task_json_error(r->pool, body, e->code, &message,
                                          NULL);
}


/* nginx's own error answers (err_status) under async_task_api only */

static ngx_uint_t
ngx_http_async_task_error_applies(ngx_http_request_t *r)
{
    ngx_http_async_task_loc_conf_t  *alcf;

    if (r != r->main || r->err_status < NGX_HTTP_BAD_REQUEST
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST)
    {
        return 0;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_async_task_module);

    return alcf->api;
}
