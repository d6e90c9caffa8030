
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_util.h"


/*
 * The task object is rendered by hand rather than through a cJSON tree:
 * it is the hottest answer (status polls), its shape is fixed, and its
 * nested values (params, result, error) are stored as JSON already.
 */

#define ngx_http_async_task_json_null_len(s)                                  \
    ((s)->len ? (s)->len : sizeof("null") - 1)


static u_char *ngx_http_async_task_json_raw(u_char *p, ngx_str_t *value);
static u_char *ngx_http_async_task_json_time(u_char *p, int64_t ms);


size_t
ngx_http_async_task_json_task_len(ngx_http_async_task_t *task,
    ngx_str_t *prefix)
{
    size_t  len;

    len = sizeof("{\"id\":\"\",\"kind\":\"\",\"status\":\"\",\"user\":null,"
                 "\"priority\":9,\"position\":,\"params\":,"
                 "\"created_at\":\"\",\"started_at\":\"\","
                 "\"finished_at\":\"\",\"attempts\":,\"backend\":\"\","
                 "\"result\":{\"url\":\"tasks//result\",},\"error\":}")
          + NGX_HTTP_ASYNC_TASK_ID_LEN * 2
          + sizeof("speech") + sizeof("CANCELED")
          + NGX_INT_T_LEN * 2
          + NGX_HTTP_ASYNC_TASK_TIME_LEN * 3
          + prefix->len;

    len += task->user.len + ngx_escape_json(NULL, task->user.data,
                                            task->user.len);
    len += task->backend.len + ngx_escape_json(NULL, task->backend.data,
                                               task->backend.len);

    len += ngx_http_async_task_json_null_len(&task->params);
    len += ngx_http_async_task_json_null_len(&task->result);
    len += ngx_http_async_task_json_null_len(&task->error);

    return len;
}


u_char *
ngx_http_async_task_json_task(u_char *p, ngx_http_async_task_t *task,
    ngx_str_t *prefix)
{
    p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = ngx_cpymem(p, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    p = ngx_sprintf(p, "\",\"kind\":\"%V\",\"status\":\"%V\",\"user\":",
                    &ngx_http_async_task_kinds[task->kind],
                    &ngx_http_async_task_statuses[task->status]);

    if (task->has_user) {
        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, task->user.data, task->user.len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, ",\"priority\":%ui", task->priority);

    if (task->status == NGX_HTTP_ASYNC_TASK_QUEUED && task->position >= 0) {
        p = ngx_sprintf(p, ",\"position\":%i", task->position);
    }

    p = ngx_cpymem(p, ",\"params\":", sizeof(",\"params\":") - 1);
    p = ngx_http_async_task_json_raw(p, &task->params);

    p = ngx_cpymem(p, ",\"created_at\":", sizeof(",\"created_at\":") - 1);
    p = ngx_http_async_task_json_time(p, task->created_at);
    p = ngx_cpymem(p, ",\"started_at\":", sizeof(",\"started_at\":") - 1);
    p = ngx_http_async_task_json_time(p, task->started_at);
    p = ngx_cpymem(p, ",\"finished_at\":", sizeof(",\"finished_at\":") - 1);
    p = ngx_http_async_task_json_time(p, task->finished_at);

    p = ngx_sprintf(p, ",\"attempts\":%ui,\"backend\":", task->attempts);

    if (task->backend.len) {
        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, task->backend.data,
                                       task->backend.len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"result\":", sizeof(",\"result\":") - 1);

    if (task->result.len > 2 && task->result.data[0] == '{'
        && task->kind == NGX_HTTP_ASYNC_TASK_IMAGE)
    {

        /* the result's address depends on the location that serves it */

        p = ngx_sprintf(p, "{\"url\":\"%Vtasks/", prefix);
        p = ngx_cpymem(p, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
        p = ngx_cpymem(p, "/result\",", sizeof("/result\",") - 1);
        p = ngx_cpymem(p, task->result.data + 1, task->result.len - 1);

    } else {
        p = ngx_http_async_task_json_raw(p, &task->result);
    }

    p = ngx_cpymem(p, ",\"error\":", sizeof(",\"error\":") - 1);
    p = ngx_http_async_task_json_raw(p, &task->error);

    *p++ = '}';

    return p;
}


ngx_int_t
ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field)
{
    size_t   len;
    u_char  *p;

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\",\"field\":\"\"}}")
          + ngx_strlen(code)
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + (field ? ngx_strlen(field) : 0);

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_sprintf(p, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    *p++ = '"';

    if (field) {
        p = ngx_sprintf(p, ",\"field\":\"%s\"", field);
    }

    *p++ = '}';
    *p++ = '}';

    out->len = p - out->data;

    return NGX_OK;
}


static u_char *
ngx_http_async_task_json_raw(u_char *p, ngx_str_t *value)
{
    if (value->len == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    return ngx_cpymem(p, value->data, value->len);
}


static u_char *
ngx_http_async_task_json_time(u_char *p, int64_t ms)
{
    if (ms == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = ngx_http_async_task_format_time(p, ms);
    *p++ = '"';

    return p;
}
