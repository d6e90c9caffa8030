
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * What every endpoint needs of its request, below the router (api.c) and
 * the submit path (submit.c): the store and user of a request, its query
 * string, and the JSON responses.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_request.h"
#include "ngx_http_async_task_store.h"


/*
 * Reads a query string: each name=value to the reader of that name in
 * args, a table that ends with a null name.  NGX_OK, NGX_ERROR, or
 * NGX_DECLINED: a parameter is unknown or its value wrong, and *error and
 * *field say which and why.
 */

ngx_int_t
ngx_http_async_task_request_args(ngx_http_request_t *r,
    ngx_http_async_task_request_arg_t *args, void *data, const char **error,
    const char **field)
{
    u_char                             *p, *last, *msg;
    ngx_int_t                           rc;
    ngx_str_t                           name, value;
    ngx_http_async_task_request_arg_t  *arg;

    /* no query: args.data may be NULL, where no arithmetic is defined */

    if (r->args.len == 0) {
        return NGX_OK;
    }

    p = r->args.data;
    last = p + r->args.len;

    for ( ;; ) {

        rc = ngx_http_async_task_request_next_arg(r, &p, last, &name, &value);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        /* the name is a copy that ends with a NUL */

        *field = (char *) name.data;

        for (arg = args; arg->name.len; arg++) {
            if (arg->name.len == name.len
                && ngx_strncmp(arg->name.data, name.data, name.len) == 0)
            {
                break;
            }
        }

        if (arg->name.len == 0) {
            msg = ngx_pnalloc(r->pool, sizeof("unknown query parameter \"\"")
                                       + name.len);
            if (msg == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(msg, "unknown query parameter \"%s\"%Z", name.data);

            *error = (char *) msg;

            return NGX_DECLINED;
        }

        rc = arg->handler(&value, data, error);

        if (rc != NGX_OK) {
            return rc;
        }
    }
}


/* a parameter's whole number in min..max, or NGX_ERROR */

ngx_int_t
ngx_http_async_task_request_int(ngx_str_t *value, ngx_int_t min,
    ngx_int_t max)
{
    ngx_int_t  n;

    n = ngx_atoi(value->data, value->len);

    if (n == NGX_ERROR || n < min || n > max) {
        return NGX_ERROR;
    }

    return n;
}


/*
 * The next name=value of a query string, both copied and unescaped; both
 * end with a NUL that the length does not count.
 */

ngx_int_t
ngx_http_async_task_request_next_arg(ngx_http_request_t *r,
    u_char **pos, u_char *last, ngx_str_t *name, ngx_str_t *value)
{
    u_char  *p, *amp, *eq, *dst, *src;

    p = *pos;

    while (p < last && *p == '&') {
        p++;
    }

    if (p >= last) {
        *pos = last;
        return NGX_DONE;
    }

    amp = ngx_strlchr(p, last, '&');
    if (amp == NULL) {
        amp = last;
    }

    *pos = amp;

    eq = ngx_strlchr(p, amp, '=');

    name->len = (eq ? eq : amp) - p;
    name->data = ngx_pnalloc(r->pool, name->len + 1);
    if (name->data == NULL) {
        return NGX_ERROR;
    }

    dst = name->data;
    src = p;
    ngx_unescape_uri(&dst, &src, name->len, NGX_UNESCAPE_URI);

    name->len = dst - name->data;
    *dst = '\0';

    value->len = eq ? (size_t) (amp - eq - 1) : 0;
    value->data = ngx_pnalloc(r->pool, value->len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    dst = value->data;

    if (eq) {
        src = eq + 1;
        ngx_unescape_uri(&dst, &src, value->len, NGX_UNESCAPE_URI);
    }

    value->len = dst - value->data;
    *dst = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_async_task_request_user(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t **userp)
{
    ngx_http_async_task_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_async_task_module);

    *userp = NULL;

    if (alcf->user == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, alcf->user, user) != NGX_OK) {
        return NGX_ERROR;
    }

    if (user->len) {
        *userp = user;
    }

    return NGX_OK;
}


ngx_http_async_task_shm_t *
ngx_http_async_task_request_shm(ngx_http_request_t *r)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    return amcf->store->shm_zone->data;
}


ngx_thread_pool_t *
ngx_http_async_task_request_thread_pool(ngx_http_request_t *r)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    return amcf->store->thread_pool;
}


ngx_str_t *
ngx_http_async_task_request_files(ngx_http_request_t *r)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    return &amcf->store->files;
}


ngx_int_t
ngx_http_async_task_request_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async task api: %ui, %uz bytes of JSON", status, len);

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_async_task_request_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message, const char *field)
{
    ngx_str_t  body, text;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async task api: error %s: %s", code, message);

    text.data = (u_char *) message;
    text.len = ngx_strlen(message);

    if (ngx_http_async_task_json_error(r->pool, &body, code, &text, field)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_async_task_request_send_json(r, status, body.data,
                                                 body.len);
}


ngx_int_t
ngx_http_async_task_request_send_unavailable(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "1");

    return ngx_http_async_task_request_send_error(r,
                                        NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "unavailable",
                                        "the task store is unavailable, "
                                        "try again later", NULL);
}


/*
 * Ends a request that waited for the thread pool, unless it goes on
 * waiting (NGX_DONE): then the next completion ends it.
 */

void
ngx_http_async_task_request_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}
