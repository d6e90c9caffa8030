
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_variables.h"
#include "ngx_http_async_task_kind.h"


/*
 * $async_task_id, $async_task_kind, $async_task_status, $async_task_user
 * and $async_task_position: the task a request submitted or read, for
 * log_format, add_header and map.  The handlers know the task only once
 * the store or the zone answered, long after a variable could have been
 * asked for, so they store the values straight into the request's
 * indexed variables; until then (and for every other request) a variable
 * is not found.  Every one of them is indexed at start, so that the
 * request always has a place for it.
 */


#define NGX_HTTP_ASYNC_TASK_VAR_ID         0
#define NGX_HTTP_ASYNC_TASK_VAR_KIND       1
#define NGX_HTTP_ASYNC_TASK_VAR_STATUS     2
#define NGX_HTTP_ASYNC_TASK_VAR_USER       3
#define NGX_HTTP_ASYNC_TASK_VAR_POSITION   4


static ngx_int_t ngx_http_async_task_variable_unset(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_async_task_variable(ngx_http_request_t *r,
    ngx_uint_t var, u_char *data, size_t len);


static ngx_http_variable_t  ngx_http_async_task_variables[] = {

    { ngx_string("async_task_id"), NULL,
      ngx_http_async_task_variable_unset, 0, 0, 0 },

    { ngx_string("async_task_kind"), NULL,
      ngx_http_async_task_variable_unset, 0, 0, 0 },

    { ngx_string("async_task_status"), NULL,
      ngx_http_async_task_variable_unset, 0, 0, 0 },

    { ngx_string("async_task_user"), NULL,
      ngx_http_async_task_variable_unset, 0, 0, 0 },

    { ngx_string("async_task_position"), NULL,
      ngx_http_async_task_variable_unset, 0, 0, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_async_task_variables_add(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_variable_t              *var, *v;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_async_task_module);

    for (i = 0, v = ngx_http_async_task_variables; v->name.len; i++, v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;

        amcf->variables[i] = ngx_http_get_variable_index(cf, &v->name);
        if (amcf->variables[i] == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_variable_unset(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}


/* the task the request submitted or read: it is answered from r->pool */

void
ngx_http_async_task_variables_set(ngx_http_request_t *r,
    ngx_http_async_task_t *task)
{
    u_char     *p;
    ngx_str_t  *name;

    p = ngx_pnalloc(r->pool, NGX_HTTP_ASYNC_TASK_ID_LEN + task->user.len
                             + NGX_INT_T_LEN);
    if (p == NULL) {
        return;
    }

    ngx_memcpy(p, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    ngx_http_async_task_variable(r, NGX_HTTP_ASYNC_TASK_VAR_ID, p,
                                 NGX_HTTP_ASYNC_TASK_ID_LEN);
    p += NGX_HTTP_ASYNC_TASK_ID_LEN;

    ngx_http_async_task_variables_kind(r, task->kind);

    if (task->status < NGX_HTTP_ASYNC_TASK_NSTATUSES) {
        name = &ngx_http_async_task_statuses[task->status];
        ngx_http_async_task_variable(r, NGX_HTTP_ASYNC_TASK_VAR_STATUS,
                                     name->data, name->len);
    }

    if (task->has_user) {
        if (task->user.len) {
            ngx_memcpy(p, task->user.data, task->user.len);
        }

        ngx_http_async_task_variable(r, NGX_HTTP_ASYNC_TASK_VAR_USER, p,
                                     task->user.len);
        p += task->user.len;
    }

    if (task->position >= 0) {
        ngx_http_async_task_variable(r, NGX_HTTP_ASYNC_TASK_VAR_POSITION, p,
                                     ngx_sprintf(p, "%i", task->position)
                                     - p);
    }
}


/* a submission has its kind before it has a task */

void
ngx_http_async_task_variables_kind(ngx_http_request_t *r, ngx_uint_t kind)
{
    ngx_str_t  *name;

    if (kind < NGX_HTTP_ASYNC_TASK_NKINDS) {
        name = &ngx_http_async_task_kinds[kind].name;
        ngx_http_async_task_variable(r, NGX_HTTP_ASYNC_TASK_VAR_KIND,
                                     name->data, name->len);
    }
}


static void
ngx_http_async_task_variable(ngx_http_request_t *r, ngx_uint_t var,
    u_char *data, size_t len)
{
    ngx_http_variable_value_t        *v;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    v = &r->variables[amcf->variables[var]];

    v->data = data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->escape = 0;
}
