
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_KIND_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_KIND_H_INCLUDED_


#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_protocol.h"


/* an endpoint of the API: "*" in the path stands for a task's id */

typedef ngx_int_t (*ngx_http_async_task_route_pt)(ngx_http_request_t *r,
    ngx_str_t *id);

typedef struct {
    ngx_str_t                       path;
    ngx_uint_t                      methods;
    const char                     *allow;
    ngx_http_async_task_route_pt    handler;
} ngx_http_async_task_route_t;


/* the "result" of a task object, and of a task in a listing */

typedef void (*ngx_http_async_task_kind_result_pt)(
    ngx_http_async_task_json_out_t *out, ngx_http_async_task_t *task,
    ngx_str_t *prefix);
typedef ngx_int_t (*ngx_http_async_task_kind_listed_pt)(ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_str_t *prefix);


/*
 * A task kind, described once: the kind table is indexed by the kind's
 * number (NGX_HTTP_ASYNC_TASK_IMAGE, ...), as ngx_check_types[] of
 * nginx_upstream_check_module is by the check's type.  Nothing else in
 * the module branches on a kind.  A new kind is its number and
 * NGX_HTTP_ASYNC_TASK_NKINDS in ngx_http_async_task_module.h, an entry
 * here, and one file with its submit handler (the validation of its
 * parameters), its protocols and, if it needs them, its result writers.
 */

typedef struct {
    ngx_str_t                            name;
    ngx_http_async_task_route_t         *routes;    /* its submissions */
    const char                          *unserved;  /* no backend: 404 */

    ngx_uint_t                           input;     /* an uploaded file */
    ngx_str_t                            result_type; /* "": JSON result */
    size_t                               answer_max;

    ngx_http_async_task_kind_result_pt   result;
    ngx_http_async_task_kind_listed_pt   listed;    /* NULL: as it is */

    ngx_http_async_task_protocol_t      *protocols; /* the default first */
} ngx_http_async_task_kind_t;


#define ngx_http_async_task_kind(k)  (&ngx_http_async_task_kinds[k])


ngx_int_t ngx_http_async_task_kind_index(ngx_str_t *name);
ngx_http_async_task_protocol_t *ngx_http_async_task_kind_protocol(
    ngx_uint_t kind, ngx_str_t *name, ngx_int_t *other);

extern ngx_http_async_task_kind_t  ngx_http_async_task_kinds[];


#endif /* _NGX_HTTP_ASYNC_TASK_KIND_H_INCLUDED_ */
