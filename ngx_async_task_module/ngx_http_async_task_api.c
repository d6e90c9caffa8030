
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_api.h"
#include "ngx_http_async_task_dispatch.h"
#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_request.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"
#include "ngx_http_async_task_variables.h"


#define NGX_HTTP_ASYNC_TASK_LIST_DEFAULT  20

#define NGX_HTTP_ASYNC_TASK_GET           (NGX_HTTP_GET|NGX_HTTP_HEAD)


typedef struct {
    ngx_http_async_task_filter_t   *filter;
    ngx_str_t                      *id;         /* tasks?id= */
} ngx_http_async_task_list_query_t;


static ngx_http_async_task_route_t *ngx_http_async_task_find_route(
    ngx_http_request_t *r, ngx_str_t *id, ngx_str_t *base);
static ngx_http_async_task_route_t *ngx_http_async_task_find_in(
    ngx_http_async_task_route_t *routes, ngx_str_t *uri, size_t max,
    ngx_str_t *id, ngx_str_t *base);
static ngx_int_t ngx_http_async_task_match(ngx_str_t *pattern,
    ngx_str_t *uri, ngx_str_t *id, ngx_str_t *base);
static ngx_int_t ngx_http_async_task_get(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_async_task_cancel(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_async_task_result(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_async_task_list(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_async_task_stats(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_async_task_lookup(ngx_http_request_t *r,
    ngx_str_t *id, ngx_uint_t result);
static ngx_http_async_task_op_t *ngx_http_async_task_task_op(
    ngx_http_request_t *r, ngx_http_async_task_op_e type, u_char *id,
    ngx_str_t *user);
static ngx_int_t ngx_http_async_task_op_user(ngx_http_async_task_op_t *op,
    ngx_str_t *user);
static ngx_int_t ngx_http_async_task_owned(ngx_http_async_task_op_t *op);
static void ngx_http_async_task_lookup_done(ngx_http_async_task_op_t *op);
static void ngx_http_async_task_op_cleanup(void *data);
static ngx_int_t ngx_http_async_task_send_result(ngx_http_request_t *r,
    ngx_http_async_task_t *task);
static void ngx_http_async_task_cancel_done(ngx_http_async_task_op_t *op);
static void ngx_http_async_task_list_done(ngx_http_async_task_op_t *op);
static ngx_int_t ngx_http_async_task_list_status(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_list_kind(ngx_str_t *value, void *data,
    const char **error);
static ngx_int_t ngx_http_async_task_list_limit(ngx_str_t *value, void *data,
    const char **error);
static ngx_int_t ngx_http_async_task_list_cursor(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_list_id(ngx_str_t *value, void *data,
    const char **error);
static ngx_int_t ngx_http_async_task_list_args(ngx_http_request_t *r,
    ngx_http_async_task_filter_t *filter, ngx_str_t *id, const char **error,
    const char **field);
static ngx_int_t ngx_http_async_task_post(ngx_http_request_t *r,
    ngx_http_async_task_op_t *op);


/* the query parameters of GET tasks */
static ngx_http_async_task_request_arg_t  ngx_http_async_task_list_names[] = {
    { ngx_string("status"), ngx_http_async_task_list_status },
    { ngx_string("kind"), ngx_http_async_task_list_kind },
    { ngx_string("limit"), ngx_http_async_task_list_limit },
    { ngx_string("cursor"), ngx_http_async_task_list_cursor },
    { ngx_string("id"), ngx_http_async_task_list_id },
    { ngx_null_string, NULL }
};


/* the endpoints of every kind; the submissions are in the kind table */
static ngx_http_async_task_route_t  ngx_http_async_task_routes[] = {

    { ngx_string("tasks"), NGX_HTTP_ASYNC_TASK_GET, "GET, HEAD",
      ngx_http_async_task_list },

    { ngx_string("tasks/*"), NGX_HTTP_ASYNC_TASK_GET|NGX_HTTP_DELETE,
      "GET, HEAD, DELETE", ngx_http_async_task_get },

    { ngx_string("tasks/*/result"), NGX_HTTP_ASYNC_TASK_GET, "GET, HEAD",
      ngx_http_async_task_result },

    { ngx_string("system/stats"), NGX_HTTP_ASYNC_TASK_GET, "GET, HEAD",
      ngx_http_async_task_stats },

    { ngx_null_string, 0, NULL, NULL }
};


ngx_int_t
ngx_http_async_task_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     id, base;
    ngx_table_elt_t              *h;
    ngx_http_async_task_route_t  *route;

    route = ngx_http_async_task_find_route(r, &id, &base);

    if (route == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "async task api: no endpoint for \"%V\"", &r->uri);

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                      "not_found",
                                                      "no such endpoint", NULL);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async task api: %V \"%V\" base \"%V\" id \"%V\"",
                   &r->method_name, &route->path, &base, &id);

    if (!(r->method & route->methods)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        h->value.data = (u_char *) route->allow;
        h->value.len = ngx_strlen(route->allow);

        return ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                                      "method_not_allowed",
                                                      "method not allowed here",
                                                      NULL);
    }

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return route->handler(r, &id);
}


/*
 * The endpoint is found at the end of the request URI, and what comes
 * before it is the API's base: so exact, nested and regex locations can
 * hold single endpoints.  Below a prefix location the base must lie
 * within the location's own prefix ("/api/v1/x/tasks" is not an endpoint
 * of "location /api/v1/").  The longest endpoint that fits wins.
 */

static ngx_http_async_task_route_t *
ngx_http_async_task_find_route(ngx_http_request_t *r, ngx_str_t *id,
    ngx_str_t *base)
{
    size_t                        max;
    ngx_uint_t                    k;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_async_task_route_t  *route;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->regex || clcf->named) {
        max = r->uri.len;

    } else {
        max = clcf->name.len;

        if (max && clcf->name.data[max - 1] != '/') {
            max++;
        }
    }

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        route = ngx_http_async_task_find_in(
                                      ngx_http_async_task_kind(k)->routes,
                                      &r->uri, max, id, base);
        if (route) {
            return route;
        }
    }

    return ngx_http_async_task_find_in(ngx_http_async_task_routes, &r->uri,
                                       max, id, base);
}


static ngx_http_async_task_route_t *
ngx_http_async_task_find_in(ngx_http_async_task_route_t *routes,
    ngx_str_t *uri, size_t max, ngx_str_t *id, ngx_str_t *base)
{
    ngx_http_async_task_route_t  *route;

    for (route = routes; route->path.len; route++) {

        if (ngx_http_async_task_match(&route->path, uri, id, base) == NGX_OK
            && base->len <= max)
        {
            return route;
        }
    }

    return NULL;
}


/*
 * Matches a pattern against the end of the URI, backwards; "*" is one
 * non-empty path segment (the id).  The base is the rest, up to the '/'
 * before the endpoint.
 */

static ngx_int_t
ngx_http_async_task_match(ngx_str_t *pattern, ngx_str_t *uri, ngx_str_t *id,
    ngx_str_t *base)
{
    u_char  *p, *q, *ps, *qs, *end;

    ps = pattern->data;
    p = ps + pattern->len;
    qs = uri->data;
    q = qs + uri->len;

    ngx_str_null(id);

    while (p > ps) {

        if (p[-1] == '*') {
            end = q;

            while (q > qs && q[-1] != '/') {
                q--;
            }

            if (q == end) {
                return NGX_DECLINED;
            }

            id->data = q;
            id->len = end - q;
            p--;
            continue;
        }

        if (q == qs || p[-1] != q[-1]) {
            return NGX_DECLINED;
        }

        p--;
        q--;
    }

    if (q == qs || q[-1] != '/') {
        return NGX_DECLINED;
    }

    base->data = qs;
    base->len = q - qs;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_get(ngx_http_request_t *r, ngx_str_t *id)
{
    if (r->method == NGX_HTTP_DELETE) {
        return ngx_http_async_task_cancel(r, id);
    }

    return ngx_http_async_task_lookup(r, id, 0);
}


/*
 * A live task usually answers from the zone, without the store; finished
 * ones, and live ones the zone had no room to cache, come from the store.
 */

static ngx_int_t
ngx_http_async_task_lookup(ngx_http_request_t *r, ngx_str_t *text,
    ngx_uint_t result)
{
    ngx_int_t                  rc;
    ngx_str_t                  user, *userp;
    ngx_http_async_task_t      task;
    ngx_http_async_task_op_t  *op;
    u_char                     id[NGX_HTTP_ASYNC_TASK_ID_LEN];

    if (ngx_http_async_task_util_parse_id(text, id) != NGX_OK) {
        return ngx_http_async_task_request_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                      "invalid_argument",
                                                      "malformed task id",
                                                      "id");
    }

    if (ngx_http_async_task_request_user(r, &user, &userp) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!result) {
        rc = ngx_http_async_task_shm_get(ngx_http_async_task_request_shm(r), id,
                                         userp, r->pool, &task);

        if (rc == NGX_OK) {
            return ngx_http_async_task_api_send_task(r, NGX_HTTP_OK, &task);
        }

        if (rc == NGX_DONE) {
            return ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                          "not_found",
                                                          "no such task", NULL);
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    op = ngx_http_async_task_task_op(r, ngx_http_async_task_op_get, id,
                                     userp);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->result = result;
    op->handler = ngx_http_async_task_lookup_done;

    return ngx_http_async_task_post(r, op);
}


/* a store operation on one task, for a requester (NULL: anyone) */

static ngx_http_async_task_op_t *
ngx_http_async_task_task_op(ngx_http_request_t *r,
    ngx_http_async_task_op_e type, u_char *id, ngx_str_t *user)
{
    ngx_http_async_task_op_t  *op;

    op = ngx_http_async_task_op_create(r->connection->log, type);
    if (op == NULL) {
        return NULL;
    }

    ngx_memcpy(op->task.id, id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    if (user && ngx_http_async_task_op_user(op, user) != NGX_OK) {
        ngx_http_async_task_op_destroy(op);
        return NULL;
    }

    return op;
}


/* the requester, kept with the op: the caller has it on its stack */

static ngx_int_t
ngx_http_async_task_op_user(ngx_http_async_task_op_t *op, ngx_str_t *user)
{
    op->filter.user = ngx_pcalloc(op->pool, sizeof(ngx_str_t));
    if (op->filter.user == NULL) {
        return NGX_ERROR;
    }

    *op->filter.user = *user;

    return NGX_OK;
}


/* the store's answer is visible only to the task's owner */

static ngx_int_t
ngx_http_async_task_owned(ngx_http_async_task_op_t *op)
{
    ngx_str_t  *user;

    user = op->filter.user;

    if (op->rc != NGX_OK) {
        return op->rc;
    }

    if (!ngx_http_async_task_util_owner(user, op->task.has_user,
                                        op->task.user.data,
                                        op->task.user.len))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a task from the store: the task itself, or its result */

static void
ngx_http_async_task_lookup_done(ngx_http_async_task_op_t *op)
{
    ngx_http_request_t  *r = op->data;

    ngx_int_t            rc;
    ngx_pool_cleanup_t  *cln;

    r->main->blocked--;

    switch (ngx_http_async_task_owned(op)) {

    case NGX_OK:
        if (op->result) {

            /*
             * A transcript is sent from the op's pool, however slowly
             * the client reads: the pool goes with the request.
             */

            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                break;
            }

            cln->handler = ngx_http_async_task_op_cleanup;
            cln->data = op;

            ngx_http_async_task_variables_set(r, &op->task);
            rc = ngx_http_async_task_send_result(r, &op->task);

            ngx_http_async_task_request_finish(r, rc);
            return;
        }

        ngx_http_async_task_shm_live(ngx_http_async_task_request_shm(r),
                                     &op->task, r->pool);

        rc = ngx_http_async_task_api_send_task(r, NGX_HTTP_OK, &op->task);
        break;

    case NGX_DECLINED:
        rc = ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                    "not_found", "no such task",
                                                    NULL);
        break;

    default:
        rc = ngx_http_async_task_request_send_unavailable(r);
    }

    ngx_http_async_task_op_destroy(op);
    ngx_http_async_task_request_finish(r, rc);
}


static void
ngx_http_async_task_op_cleanup(void *data)
{
    ngx_http_async_task_op_t  *op = data;

    ngx_http_async_task_op_destroy(op);
}


static ngx_int_t
ngx_http_async_task_result(ngx_http_request_t *r, ngx_str_t *id)
{
    return ngx_http_async_task_lookup(r, id, 1);
}


static ngx_int_t
ngx_http_async_task_send_result(ngx_http_request_t *r,
    ngx_http_async_task_t *task)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_str_t                    path;
    ngx_chain_t                  out;
    ngx_open_file_info_t         of;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_async_task_kind_t  *kind;

    if (task->status != NGX_HTTP_ASYNC_TASK_DONE || task->result.len == 0) {
        p = ngx_pnalloc(r->pool, sizeof("the task is CANCELED, not DONE"));
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "the task is %V, not DONE%Z",
                    &ngx_http_async_task_statuses[task->status]);

        return ngx_http_async_task_request_send_error(r, NGX_HTTP_CONFLICT,
                                                      "conflict", (char *) p,
                                                      NULL);
    }

    kind = ngx_http_async_task_kind(task->kind);

    if (kind->result_type.len == 0) {
        return ngx_http_async_task_request_send_json(r, NGX_HTTP_OK,
                                                     task->result.data,
                                                     task->result.len);
    }

    /* a result file the dispatcher wrote (a PNG), sent as a static file */

    if (task->file.len == 0) {
        return ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                      "not_found",
                                                      "the result file is gone",
                                                      NULL);
    }

    path.len = ngx_http_async_task_request_files(r)->len + 1 + task->file.len;
    path.data = ngx_pnalloc(r->pool, path.len + 1);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path.data, "%V/%V%Z", ngx_http_async_task_request_files(r),
                &task->file);

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));

    of.read_ahead = clcf->read_ahead;
    of.directio = NGX_MAX_OFF_T_VALUE;
    of.valid = clcf->open_file_cache_valid;
    of.min_uses = clcf->open_file_cache_min_uses;
    of.errors = clcf->open_file_cache_errors;
    of.events = clcf->open_file_cache_events;

    if (ngx_open_cached_file(clcf->open_file_cache, &path, &of, r->pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, of.err,
                      "%s \"%s\" failed", of.failed, path.data);

        return ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                      "not_found",
                                                      "the result file is gone",
                                                      NULL);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;
    r->headers_out.content_type = kind->result_type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->allow_ranges = 1;

    if (ngx_http_set_etag(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->sync = b->in_file ? 0 : 1;

    b->file->fd = of.fd;
    b->file->name = path;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async task api: result file \"%V\", %O bytes",
                   &path, of.size);

    /* a Range past the end: the range filter answers 416 instead */

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_async_task_cancel(ngx_http_request_t *r, ngx_str_t *text)
{
    ngx_str_t                  user, *userp;
    ngx_http_async_task_op_t  *op;
    u_char                     id[NGX_HTTP_ASYNC_TASK_ID_LEN];

    if (ngx_http_async_task_util_parse_id(text, id) != NGX_OK) {
        return ngx_http_async_task_request_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                      "invalid_argument",
                                                      "malformed task id",
                                                      "id");
    }

    if (ngx_http_async_task_request_user(r, &user, &userp) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op = ngx_http_async_task_task_op(r, ngx_http_async_task_op_finish, id,
                                     userp);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->task.status = NGX_HTTP_ASYNC_TASK_CANCELED;
    op->from = (1 << NGX_HTTP_ASYNC_TASK_QUEUED)
               | (1 << NGX_HTTP_ASYNC_TASK_RUNNING);

    op->handler = ngx_http_async_task_cancel_done;

    return ngx_http_async_task_post(r, op);
}


static void
ngx_http_async_task_cancel_done(ngx_http_async_task_op_t *op)
{
    ngx_http_request_t  *r = op->data;

    u_char     *p;
    ngx_int_t   rc;

    r->main->blocked--;

    switch (op->rc) {

    case NGX_OK:
        if (op->task.backend.len == 0) {
            /* where it ran, for the answer: the zone has it */
            op->task.status = NGX_HTTP_ASYNC_TASK_RUNNING;
            ngx_http_async_task_shm_live(ngx_http_async_task_request_shm(r),
                                         &op->task, r->pool);
            op->task.status = NGX_HTTP_ASYNC_TASK_CANCELED;
            op->task.position = -1;
        }

        ngx_http_async_task_shm_finish(ngx_http_async_task_request_shm(r),
                                       op->task.id, NGX_HTTP_ASYNC_TASK_QUEUED,
                                       NGX_HTTP_ASYNC_TASK_CANCELED);
        ngx_http_async_task_metrics_finished(&op->task, NULL);

        /* a run here stops now; one elsewhere at its worker's next tick */
        ngx_http_async_task_dispatch_cancel(op->task.id);

        rc = ngx_http_async_task_api_send_task(r, NGX_HTTP_OK, &op->task);
        break;

    case NGX_DECLINED:
        rc = ngx_http_async_task_request_send_error(r, NGX_HTTP_NOT_FOUND,
                                                    "not_found", "no such task",
                                                    NULL);
        break;

    case NGX_BUSY:
        p = ngx_pnalloc(r->pool, sizeof("the task is already CANCELED"));
        if (p == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            break;
        }

        ngx_sprintf(p, "the task is already %V%Z",
                    &ngx_http_async_task_statuses[op->task.status]);

        rc = ngx_http_async_task_request_send_error(r, NGX_HTTP_CONFLICT,
                                                    "conflict", (char *) p,
                                                    NULL);
        break;

    default:
        rc = ngx_http_async_task_request_send_unavailable(r);
    }

    ngx_http_async_task_op_destroy(op);
    ngx_http_async_task_request_finish(r, rc);
}


static ngx_int_t
ngx_http_async_task_list(ngx_http_request_t *r, ngx_str_t *unused)
{
    ngx_int_t                  rc;
    ngx_str_t                  user, *userp, id;
    const char                *error, *field;
    ngx_http_async_task_op_t  *op;

    op = ngx_http_async_task_op_create(r->connection->log,
                                       ngx_http_async_task_op_list);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&id);

    rc = ngx_http_async_task_list_args(r, &op->filter, &id, &error, &field);

    if (rc != NGX_OK) {
        ngx_http_async_task_op_destroy(op);

        if (rc == NGX_DECLINED) {
            return ngx_http_async_task_request_send_error(r,
                                                          NGX_HTTP_BAD_REQUEST,
                                                          "invalid_argument",
                                                          error, field);
        }

        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (id.data) {
        /* GET tasks?id= is GET tasks/{id} */
        ngx_http_async_task_op_destroy(op);
        return ngx_http_async_task_get(r, &id);
    }

    if (ngx_http_async_task_request_user(r, &user, &userp) != NGX_OK) {
        ngx_http_async_task_op_destroy(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (userp && ngx_http_async_task_op_user(op, userp) != NGX_OK) {
        ngx_http_async_task_op_destroy(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->handler = ngx_http_async_task_list_done;

    return ngx_http_async_task_post(r, op);
}


/*
 * NGX_OK, NGX_ERROR, or NGX_DECLINED: a parameter is wrong, and *error
 * and *field say which and why.
 */

static ngx_int_t
ngx_http_async_task_list_args(ngx_http_request_t *r,
    ngx_http_async_task_filter_t *filter, ngx_str_t *id, const char **error,
    const char **field)
{
    ngx_http_async_task_list_query_t  query;

    filter->status = -1;
    filter->kind = -1;
    filter->limit = NGX_HTTP_ASYNC_TASK_LIST_DEFAULT;

    query.filter = filter;
    query.id = id;

    return ngx_http_async_task_request_args(r, ngx_http_async_task_list_names,
                                            &query, error, field);
}


static ngx_int_t
ngx_http_async_task_list_status(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_list_query_t  *query = data;

    query->filter->status = ngx_http_async_task_util_status_index(value);

    if (query->filter->status == NGX_ERROR) {
        *error = "status must be one of QUEUED, RUNNING, DONE, FAILED, "
                 "CANCELED";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_list_kind(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_list_query_t  *query = data;

    query->filter->kind = ngx_http_async_task_kind_index(value);

    if (query->filter->kind == NGX_ERROR) {
        *error = "kind must be image or speech";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_list_limit(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_list_query_t  *query = data;

    ngx_int_t  n;

    n = ngx_http_async_task_request_int(value, 1,
                                        NGX_HTTP_ASYNC_TASK_LIST_MAX);

    if (n == NGX_ERROR) {
        *error = "limit must be between 1 and "
                 ngx_value(NGX_HTTP_ASYNC_TASK_LIST_MAX);
        return NGX_DECLINED;
    }

    query->filter->limit = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_list_cursor(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_list_query_t  *query = data;

    if (ngx_http_async_task_util_parse_id(value, query->filter->cursor)
        != NGX_OK)
    {
        *error = "malformed cursor";
        return NGX_DECLINED;
    }

    query->filter->has_cursor = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_list_id(ngx_str_t *value, void *data, const char **error)
{
    ngx_http_async_task_list_query_t  *query = data;

    *query->id = *value;

    return NGX_OK;
}


static void
ngx_http_async_task_list_done(ngx_http_async_task_op_t *op)
{
    ngx_http_request_t  *r = op->data;

    u_char                              *data, *next;
    size_t                               len;
    ngx_int_t                            rc;
    ngx_str_t                            prefix;
    ngx_uint_t                           i, n;
    ngx_http_async_task_t               *tasks;
    ngx_http_async_task_kind_listed_pt   listed;

    r->main->blocked--;

    if (op->rc != NGX_OK) {
        rc = ngx_http_async_task_request_send_unavailable(r);
        goto done;
    }

    ngx_http_async_task_api_prefix(r, &prefix);

    tasks = op->tasks.elts;
    n = ngx_min(op->tasks.nelts, op->filter.limit);

    for (i = 0; i < n; i++) {
        if (tasks[i].status == NGX_HTTP_ASYNC_TASK_QUEUED
            || tasks[i].status == NGX_HTTP_ASYNC_TASK_RUNNING)
        {
            ngx_http_async_task_shm_live(ngx_http_async_task_request_shm(r),
                                         &tasks[i], r->pool);
        }

        listed = ngx_http_async_task_kind(tasks[i].kind)->listed;

        if (listed && listed(r->pool, &tasks[i], &prefix) != NGX_OK) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }
    }

    /* one more row than asked for means there is a next page */

    next = (op->tasks.nelts > op->filter.limit) ? tasks[n - 1].id : NULL;

    len = ngx_http_async_task_json_list(NULL, tasks, n, next, &prefix);

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_http_async_task_json_list(data, tasks, n, next, &prefix);

    rc = ngx_http_async_task_request_send_json(r, NGX_HTTP_OK, data, len);

done:

    ngx_http_async_task_op_destroy(op);
    ngx_http_async_task_request_finish(r, rc);
}


static ngx_int_t
ngx_http_async_task_stats(ngx_http_request_t *r, ngx_str_t *unused)
{
    u_char                              *data;
    size_t                               len;
    int64_t                              started_at, now;
    ngx_uint_t                           i, n, free, slots;
    ngx_uint_t                           queued[NGX_HTTP_ASYNC_TASK_NKINDS];
    ngx_http_async_task_shm_t           *shm;
    ngx_http_async_task_instance_t      *in;
    ngx_http_async_task_json_stats_t     stats;
    ngx_http_async_task_main_conf_t     *amcf;
    ngx_http_async_task_instance_sh_t    ish;
    ngx_http_async_task_json_backend_t  *b;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);
    shm = ngx_http_async_task_request_shm(r);
    now = ngx_http_async_task_util_cached_ms();

    ngx_http_async_task_shm_counts(shm, stats.count, queued, &started_at);

    stats.uptime = (now - started_at) / 1000;
    stats.capacity = amcf->store->max_queued;

    /*
     * workers.total: the slots of the instances that can take tasks now;
     * queue.kinds: the queue of every kind a backend serves
     */

    stats.workers = 0;
    stats.nkinds = 0;

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_NKINDS; i++) {
        if (amcf->backends[i].upstream) {
            ngx_http_async_task_upstream_slots(shm, &amcf->backends[i],
                                               &free, &slots);
            stats.workers += slots;

            n = stats.nkinds++;
            stats.kinds[n] = &ngx_http_async_task_kind(i)->name;
            stats.queued[n] = queued[i];
        }
    }

    in = amcf->instances.elts;

    stats.nbackends = amcf->instances.nelts;
    stats.backends = ngx_palloc(r->pool, stats.nbackends
                                  * sizeof(ngx_http_async_task_json_backend_t));
    if (stats.backends == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < stats.nbackends; i++) {

        ngx_http_async_task_upstream_snapshot(shm, &in[i], &ish);

        /* the name is "upstream/server" */

        b = &stats.backends[i];

        b->kind = &ngx_http_async_task_kind(in[i].kind)->name;
        b->upstream.data = in[i].name.data;
        b->upstream.len = in[i].name.len - in[i].server.len - 1;
        b->server = &in[i].server;
        b->healthy = !in[i].down && ish.healthy && ish.down_until <= now;
        b->inflight = ish.inflight;
        b->max_conns = in[i].max_conns;
        b->requests = ish.requests;
        b->failures = ish.failures;
        b->last_check = ish.last_check;
    }

    len = ngx_http_async_task_json_stats(NULL, &stats);

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_async_task_json_stats(data, &stats);

    return ngx_http_async_task_request_send_json(r, NGX_HTTP_OK, data, len);
}


/*
 * Runs a store operation for a request: the request stays alive (count)
 * and cannot be freed under the thread (blocked) until the handler runs.
 */

static ngx_int_t
ngx_http_async_task_post(ngx_http_request_t *r, ngx_http_async_task_op_t *op)
{
    op->data = r;

    if (ngx_http_async_task_op_post(op) != NGX_OK) {
        ngx_http_async_task_op_destroy(op);
        return ngx_http_async_task_request_send_unavailable(r);
    }

    r->main->count++;
    r->main->blocked++;

    return NGX_DONE;
}


/*
 * The API's base, for Location headers and result URLs: the request URI
 * before the endpoint, escaped as a URI again (it was decoded).
 */

void
ngx_http_async_task_api_prefix(ngx_http_request_t *r, ngx_str_t *prefix)
{
    u_char     *p;
    ngx_str_t   id, base;
    uintptr_t   n;

    if (ngx_http_async_task_find_route(r, &id, &base) == NULL) {
        ngx_str_set(prefix, "/");
        return;
    }

    n = ngx_escape_uri(NULL, base.data, base.len, NGX_ESCAPE_URI);

    if (n == 0) {
        *prefix = base;
        return;
    }

    p = ngx_pnalloc(r->pool, base.len + 2 * n);
    if (p == NULL) {
        ngx_str_set(prefix, "/");
        return;
    }

    prefix->data = p;
    prefix->len = (u_char *) ngx_escape_uri(p, base.data, base.len,
                                            NGX_ESCAPE_URI)
                  - p;
}


ngx_int_t
ngx_http_async_task_api_send_task(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_async_task_t *task)
{
    u_char     *data;
    size_t      len;
    ngx_str_t   prefix;

    ngx_http_async_task_variables_set(r, task);
    ngx_http_async_task_api_prefix(r, &prefix);

    len = ngx_http_async_task_json_task(NULL, task, &prefix);

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_async_task_json_task(data, task, &prefix);

    return ngx_http_async_task_request_send_json(r, status, data, len);
}

