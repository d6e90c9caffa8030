
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_util.h"


/*
 * The task object is rendered by hand rather than through a cJSON tree:
 * it is the hottest answer (status polls), its shape is fixed, and its
 * nested values (params, result, error) are stored as JSON already.
 */

/* a speech result as a listing shows it */
typedef struct {
    ngx_str_t                       text;       /* data NULL: none */
    ngx_str_t                       language;   /* data NULL: none */
    cJSON                          *duration;   /* a number, or NULL */
    ngx_uint_t                      truncated;
    u_char                         *id;
    ngx_str_t                      *prefix;
} ngx_http_async_task_json_listed_t;


#define ngx_http_async_task_json_literal(out, s)                             \
    ngx_http_async_task_json_put(out, (u_char *) s, sizeof(s) - 1)


static void ngx_http_async_task_json_task_out(
    ngx_http_async_task_json_out_t *out, ngx_http_async_task_t *task,
    ngx_str_t *prefix);
static void ngx_http_async_task_json_backend(
    ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_json_backend_t *b);
static void ngx_http_async_task_json_listed_out(
    ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_json_listed_t *listed);
static void ngx_http_async_task_json_error_out(
    ngx_http_async_task_json_out_t *out, const char *code,
    ngx_str_t *message, ngx_str_t *field);
static void ngx_http_async_task_json_task_error_out(
    ngx_http_async_task_json_out_t *out, const char *code,
    ngx_str_t *message);
static void ngx_http_async_task_json_put(ngx_http_async_task_json_out_t *out,
    u_char *data, size_t len);
static void ngx_http_async_task_json_uint(ngx_http_async_task_json_out_t *out,
    ngx_uint_t n);
static void ngx_http_async_task_json_escaped(
    ngx_http_async_task_json_out_t *out, ngx_str_t *s);
static void ngx_http_async_task_json_text(ngx_http_async_task_json_out_t *out,
    ngx_str_t *s, size_t max);
static void ngx_http_async_task_json_string(
    ngx_http_async_task_json_out_t *out, ngx_str_t *s);
static void ngx_http_async_task_json_time(ngx_http_async_task_json_out_t *out,
    int64_t ms);
static void ngx_http_async_task_json_raw(ngx_http_async_task_json_out_t *out,
    ngx_str_t *value);
static size_t ngx_http_async_task_json_cut(u_char *text, size_t len,
    size_t max);


/*
 * Each body is written by one function in two passes: given a NULL
 * buffer it returns the length, given a buffer of that length it writes
 * the body there.  A format so exists once, and is sized from itself.
 */

size_t
ngx_http_async_task_json_task(u_char *buf, ngx_http_async_task_t *task,
    ngx_str_t *prefix)
{
    ngx_http_async_task_json_out_t  out;

    out.pos = buf;
    out.len = 0;

    ngx_http_async_task_json_task_out(&out, task, prefix);

    return out.len;
}


/* GET tasks: a page of tasks, and the cursor of the next page or null */

size_t
ngx_http_async_task_json_list(u_char *buf, ngx_http_async_task_t *tasks,
    ngx_uint_t n, u_char *next, ngx_str_t *prefix)
{
    ngx_uint_t                      i;
    ngx_http_async_task_json_out_t  out;

    out.pos = buf;
    out.len = 0;

    ngx_http_async_task_json_literal(&out, "{\"tasks\":[");

    for (i = 0; i < n; i++) {
        if (i) {
            ngx_http_async_task_json_literal(&out, ",");
        }

        ngx_http_async_task_json_task_out(&out, &tasks[i], prefix);
    }

    ngx_http_async_task_json_literal(&out, "],\"next_cursor\":");

    if (next) {
        ngx_http_async_task_json_literal(&out, "\"");
        ngx_http_async_task_json_put(&out, next, NGX_HTTP_ASYNC_TASK_ID_LEN);
        ngx_http_async_task_json_literal(&out, "\"");

    } else {
        ngx_http_async_task_json_literal(&out, "null");
    }

    ngx_http_async_task_json_literal(&out, "}");

    return out.len;
}


size_t
ngx_http_async_task_json_stats(u_char *buf,
    ngx_http_async_task_json_stats_t *stats)
{
    u_char                          tmp[NGX_INT64_LEN];
    ngx_uint_t                      i;
    ngx_http_async_task_json_out_t  out;

    out.pos = buf;
    out.len = 0;

    ngx_http_async_task_json_literal(&out, "{\"uptime_seconds\":");
    ngx_http_async_task_json_put(&out, tmp,
                                 ngx_sprintf(tmp, "%L", stats->uptime) - tmp);
    ngx_http_async_task_json_literal(&out, ",\"tasks\":{");

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_NSTATUSES; i++) {
        if (i) {
            ngx_http_async_task_json_literal(&out, ",");
        }

        ngx_http_async_task_json_literal(&out, "\"");
        ngx_http_async_task_json_put(&out, ngx_http_async_task_statuses[i].data,
                                     ngx_http_async_task_statuses[i].len);
        ngx_http_async_task_json_literal(&out, "\":");
        ngx_http_async_task_json_uint(&out, stats->count[i]);
    }

    ngx_http_async_task_json_literal(&out, "},\"queue\":{\"depth\":");
    ngx_http_async_task_json_uint(&out,
                                  stats->count[NGX_HTTP_ASYNC_TASK_QUEUED]);
    ngx_http_async_task_json_literal(&out, ",\"capacity\":");
    ngx_http_async_task_json_uint(&out, stats->capacity);
    ngx_http_async_task_json_literal(&out, ",\"kinds\":{");

    for (i = 0; i < stats->nkinds; i++) {
        if (i) {
            ngx_http_async_task_json_literal(&out, ",");
        }

        ngx_http_async_task_json_literal(&out, "\"");
        ngx_http_async_task_json_put(&out, stats->kinds[i]->data,
                                     stats->kinds[i]->len);
        ngx_http_async_task_json_literal(&out, "\":");
        ngx_http_async_task_json_uint(&out, stats->queued[i]);
    }

    ngx_http_async_task_json_literal(&out, "}},\"workers\":{\"busy\":");
    ngx_http_async_task_json_uint(&out,
                                  stats->count[NGX_HTTP_ASYNC_TASK_RUNNING]);
    ngx_http_async_task_json_literal(&out, ",\"total\":");
    ngx_http_async_task_json_uint(&out, stats->workers);

    ngx_http_async_task_json_literal(&out, "},\"backends\":[");

    for (i = 0; i < stats->nbackends; i++) {
        if (i) {
            ngx_http_async_task_json_literal(&out, ",");
        }

        ngx_http_async_task_json_backend(&out, &stats->backends[i]);
    }

    ngx_http_async_task_json_literal(&out, "]}");

    return out.len;
}


/* the names of upstreams and servers are the configuration's, as they are */

static void
ngx_http_async_task_json_backend(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_json_backend_t *b)
{
    ngx_http_async_task_json_literal(out, "{\"kind\":\"");
    ngx_http_async_task_json_put(out, b->kind->data, b->kind->len);
    ngx_http_async_task_json_literal(out, "\",\"upstream\":\"");
    ngx_http_async_task_json_put(out, b->upstream.data, b->upstream.len);
    ngx_http_async_task_json_literal(out, "\",\"server\":\"");
    ngx_http_async_task_json_put(out, b->server->data, b->server->len);
    ngx_http_async_task_json_literal(out, "\",\"healthy\":");

    if (b->healthy) {
        ngx_http_async_task_json_literal(out, "true");

    } else {
        ngx_http_async_task_json_literal(out, "false");
    }

    ngx_http_async_task_json_literal(out, ",\"inflight\":");
    ngx_http_async_task_json_uint(out, b->inflight);
    ngx_http_async_task_json_literal(out, ",\"max_conns\":");
    ngx_http_async_task_json_uint(out, b->max_conns);
    ngx_http_async_task_json_literal(out, ",\"requests\":");
    ngx_http_async_task_json_uint(out, b->requests);
    ngx_http_async_task_json_literal(out, ",\"failures\":");
    ngx_http_async_task_json_uint(out, b->failures);
    ngx_http_async_task_json_literal(out, ",\"last_check\":");
    ngx_http_async_task_json_time(out, b->last_check);
    ngx_http_async_task_json_literal(out, "}");
}


static void
ngx_http_async_task_json_task_out(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_t *task, ngx_str_t *prefix)
{
    ngx_str_t  *name;

    ngx_http_async_task_json_literal(out, "{\"id\":\"");
    ngx_http_async_task_json_put(out, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    name = &ngx_http_async_task_kind(task->kind)->name;
    ngx_http_async_task_json_literal(out, "\",\"kind\":\"");
    ngx_http_async_task_json_put(out, name->data, name->len);

    name = &ngx_http_async_task_statuses[task->status];
    ngx_http_async_task_json_literal(out, "\",\"status\":\"");
    ngx_http_async_task_json_put(out, name->data, name->len);

    ngx_http_async_task_json_literal(out, "\",\"user\":");

    if (task->has_user) {
        ngx_http_async_task_json_string(out, &task->user);

    } else {
        ngx_http_async_task_json_literal(out, "null");
    }

    ngx_http_async_task_json_literal(out, ",\"priority\":");
    ngx_http_async_task_json_uint(out, task->priority);

    if (task->status == NGX_HTTP_ASYNC_TASK_QUEUED && task->position >= 0) {
        ngx_http_async_task_json_literal(out, ",\"position\":");
        ngx_http_async_task_json_uint(out, (ngx_uint_t) task->position);
    }

    ngx_http_async_task_json_literal(out, ",\"params\":");
    ngx_http_async_task_json_raw(out, &task->params);

    ngx_http_async_task_json_literal(out, ",\"created_at\":");
    ngx_http_async_task_json_time(out, task->created_at);
    ngx_http_async_task_json_literal(out, ",\"started_at\":");
    ngx_http_async_task_json_time(out, task->started_at);
    ngx_http_async_task_json_literal(out, ",\"finished_at\":");
    ngx_http_async_task_json_time(out, task->finished_at);

    ngx_http_async_task_json_literal(out, ",\"attempts\":");
    ngx_http_async_task_json_uint(out, task->attempts);
    ngx_http_async_task_json_literal(out, ",\"backend\":");

    /*
     * A QUEUED task runs nowhere, even when the store still names the
     * instance of a failed attempt: the zone never knows that one.
     */

    if (task->backend.len && task->status != NGX_HTTP_ASYNC_TASK_QUEUED) {
        ngx_http_async_task_json_string(out, &task->backend);

    } else {
        ngx_http_async_task_json_literal(out, "null");
    }

    ngx_http_async_task_json_literal(out, ",\"result\":");
    ngx_http_async_task_kind(task->kind)->result(out, task, prefix);

    ngx_http_async_task_json_literal(out, ",\"error\":");
    ngx_http_async_task_json_raw(out, &task->error);
    ngx_http_async_task_json_literal(out, "}");
}


/* a result kept as the dispatcher stored it: JSON, or null */

void
ngx_http_async_task_json_result_raw(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_t *task, ngx_str_t *prefix)
{
    ngx_http_async_task_json_raw(out, &task->result);
}


/*
 * A result file's description, with its address first: the address
 * depends on the location that serves it, so it is never stored.
 */

void
ngx_http_async_task_json_result_file(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_t *task, ngx_str_t *prefix)
{
    if (task->result.len <= 2 || task->result.data[0] != '{') {
        ngx_http_async_task_json_raw(out, &task->result);
        return;
    }

    ngx_http_async_task_json_literal(out, "{\"url\":\"");
    ngx_http_async_task_json_escaped(out, prefix);
    ngx_http_async_task_json_literal(out, "tasks/");
    ngx_http_async_task_json_put(out, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    ngx_http_async_task_json_literal(out, "/result\",");
    ngx_http_async_task_json_put(out, task->result.data + 1,
                                 task->result.len - 1);
}


static void
ngx_http_async_task_json_put(ngx_http_async_task_json_out_t *out,
    u_char *data, size_t len)
{
    if (out->pos) {
        out->pos = ngx_cpymem(out->pos, data, len);
    }

    out->len += len;
}


static void
ngx_http_async_task_json_uint(ngx_http_async_task_json_out_t *out,
    ngx_uint_t n)
{
    u_char  buf[NGX_INT_T_LEN];

    ngx_http_async_task_json_put(out, buf, ngx_sprintf(buf, "%ui", n) - buf);
}


static void
ngx_http_async_task_json_escaped(ngx_http_async_task_json_out_t *out,
    ngx_str_t *s)
{
    if (out->pos) {
        out->pos = (u_char *) ngx_escape_json(out->pos, s->data, s->len);
    }

    out->len += s->len + ngx_escape_json(NULL, s->data, s->len);
}


/* text from a client: see ngx_http_async_task_json_escape() */

static void
ngx_http_async_task_json_text(ngx_http_async_task_json_out_t *out,
    ngx_str_t *s, size_t max)
{
    size_t  n;

    n = ngx_http_async_task_json_escape(out->pos, s->data, s->len, max);

    if (out->pos) {
        out->pos += n;
    }

    out->len += n;
}


static void
ngx_http_async_task_json_string(ngx_http_async_task_json_out_t *out,
    ngx_str_t *s)
{
    ngx_http_async_task_json_literal(out, "\"");
    ngx_http_async_task_json_escaped(out, s);
    ngx_http_async_task_json_literal(out, "\"");
}


/* a time, or null for none */

static void
ngx_http_async_task_json_time(ngx_http_async_task_json_out_t *out,
    int64_t ms)
{
    u_char  buf[NGX_HTTP_ASYNC_TASK_TIME_LEN + 2], *p;

    if (ms == 0) {
        ngx_http_async_task_json_literal(out, "null");
        return;
    }

    p = buf;
    *p++ = '"';
    p = ngx_http_async_task_util_format_time(p, ms);
    *p++ = '"';

    ngx_http_async_task_json_put(out, buf, p - buf);
}


/* JSON kept as it is, or null for none */

static void
ngx_http_async_task_json_raw(ngx_http_async_task_json_out_t *out,
    ngx_str_t *value)
{
    if (value->len == 0) {
        ngx_http_async_task_json_literal(out, "null");
        return;
    }

    ngx_http_async_task_json_put(out, value->data, value->len);
}


/*
 * Error bodies echo what the client sent (field names, parameter names):
 * any bytes, of any length.  Both strings are escaped, invalid UTF-8
 * becomes U+FFFD, and each is cut to a number of characters.
 */

ngx_int_t
ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field)
{
    ngx_str_t                       name;
    ngx_http_async_task_json_out_t  body;

    name.data = (u_char *) field;
    name.len = field ? ngx_strlen(field) : 0;

    body.pos = NULL;
    body.len = 0;

    ngx_http_async_task_json_error_out(&body, code, message,
                                       field ? &name : NULL);

    out->data = ngx_pnalloc(pool, body.len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    body.pos = out->data;
    body.len = 0;

    ngx_http_async_task_json_error_out(&body, code, message,
                                       field ? &name : NULL);

    out->len = body.len;

    return NGX_OK;
}


static void
ngx_http_async_task_json_error_out(ngx_http_async_task_json_out_t *out,
    const char *code, ngx_str_t *message, ngx_str_t *field)
{
    ngx_http_async_task_json_literal(out, "{\"error\":{\"code\":\"");
    ngx_http_async_task_json_put(out, (u_char *) code, ngx_strlen(code));
    ngx_http_async_task_json_literal(out, "\",\"message\":\"");
    ngx_http_async_task_json_text(out, message,
                                  NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX);
    ngx_http_async_task_json_literal(out, "\"");

    if (field) {
        ngx_http_async_task_json_literal(out, ",\"field\":\"");
        ngx_http_async_task_json_text(out, field,
                                      NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);
        ngx_http_async_task_json_literal(out, "\"");
    }

    ngx_http_async_task_json_literal(out, "}}");
}


/*
 * The error object a failed task keeps: {"code":..,"message":..}.  The
 * message quotes an instance's own words, which may be any bytes.
 */

ngx_int_t
ngx_http_async_task_json_task_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message)
{
    ngx_http_async_task_json_out_t  body;

    body.pos = NULL;
    body.len = 0;

    ngx_http_async_task_json_task_error_out(&body, code, message);

    out->data = ngx_pnalloc(pool, body.len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    body.pos = out->data;
    body.len = 0;

    ngx_http_async_task_json_task_error_out(&body, code, message);

    out->len = body.len;

    return NGX_OK;
}


static void
ngx_http_async_task_json_task_error_out(ngx_http_async_task_json_out_t *out,
    const char *code, ngx_str_t *message)
{
    ngx_http_async_task_json_literal(out, "{\"code\":\"");
    ngx_http_async_task_json_put(out, (u_char *) code, ngx_strlen(code));
    ngx_http_async_task_json_literal(out, "\",\"message\":\"");
    ngx_http_async_task_json_text(out, message,
                                  NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX);
    ngx_http_async_task_json_literal(out, "\"}");
}


/*
 * The contents of a JSON string for any bytes: quotes, backslashes and
 * control characters escaped, each byte of invalid UTF-8 as U+FFFD, at
 * most "max" characters (0: all) and then "...".  Returns the length;
 * with dst NULL it only counts.
 */

size_t
ngx_http_async_task_json_escape(u_char *dst, u_char *src, size_t size,
    size_t max)
{
    u_char    *p, *last, *start;
    size_t     len, n;
    uint32_t   c;

    static u_char  hex[] = "0123456789abcdef";

    /* no text: src may be NULL, where no arithmetic is defined */

    if (size == 0) {
        return 0;
    }

    p = src;
    last = src + size;
    len = 0;

    for (n = 0; p < last; n++) {

        if (max && n == max) {
            if (dst) {
                ngx_memcpy(dst + len, "...", 3);
            }

            len += 3;
            break;
        }

        start = p;
        c = ngx_http_async_task_util_utf8(&p, last);

        if (c == NGX_HTTP_ASYNC_TASK_UTF8_INVALID) {
            /* an invalid byte */

            if (dst) {
                ngx_memcpy(dst + len, "\\ufffd", 6);
            }

            len += 6;
            continue;
        }

        if (c == '"' || c == '\\') {
            if (dst) {
                dst[len] = '\\';
                dst[len + 1] = (u_char) c;
            }

            len += 2;
            continue;
        }

        if (c < 0x20 || c == 0x7f) {
            if (dst) {
                ngx_memcpy(dst + len, "\\u00", 4);
                dst[len + 4] = hex[c >> 4];
                dst[len + 5] = hex[c & 0xf];
            }

            len += 6;
            continue;
        }

        if (dst) {
            ngx_memcpy(dst + len, start, p - start);
        }

        len += p - start;
    }

    return len;
}


/*
 * A speech result as a listing shows it, so that a page of 100 tasks
 * stays small whatever the transcripts: "text" cut to a number of
 * characters, "language" and "duration" kept, anything else (segments)
 * left out; when something was left out, "truncated" and the "url" of
 * the full result.  Replaces task->result; NGX_ERROR on no memory only.
 */

ngx_int_t
ngx_http_async_task_json_transcript_listed(ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_str_t *prefix)
{
    cJSON                                *root, *item, *t, *l, *d;
    size_t                                len;
    ngx_http_async_task_json_out_t        out;
    ngx_http_async_task_json_listed_t     listed;

    if (task->result.len <= NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX) {
        return NGX_OK;
    }

    ngx_memzero(&listed, sizeof(ngx_http_async_task_json_listed_t));

    listed.id = task->id;
    listed.prefix = prefix;

    root = cJSON_ParseWithLength((char *) task->result.data,
                                 task->result.len);

    if (root == NULL || !cJSON_IsObject(root)) {
        /* not the dispatcher's JSON: left out as a whole */
        listed.truncated = 1;

    } else {
        t = cJSON_GetObjectItemCaseSensitive(root, "text");
        l = cJSON_GetObjectItemCaseSensitive(root, "language");
        d = cJSON_GetObjectItemCaseSensitive(root, "duration");

        listed.text.data = (u_char *) cJSON_GetStringValue(t);
        listed.language.data = (u_char *) cJSON_GetStringValue(l);
        listed.duration = cJSON_IsNumber(d) ? d : NULL;

        for (item = root->child; item; item = item->next) {
            if (item != t && item != l && item != d) {
                listed.truncated = 1;
            }
        }

        if (listed.text.data) {
            listed.text.len = ngx_strlen(listed.text.data);

            len = ngx_http_async_task_json_cut(listed.text.data,
                                       listed.text.len,
                                       NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX);

            if (len < listed.text.len) {
                listed.text.len = len;
                listed.truncated = 1;
            }
        }

        if (listed.language.data) {
            listed.language.len = ngx_strlen(listed.language.data);

            if (listed.language.len > NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX) {
                listed.truncated = 1;
            }
        }

        if (d && listed.duration == NULL) {
            listed.truncated = 1;
        }
    }

    out.pos = NULL;
    out.len = 0;

    ngx_http_async_task_json_listed_out(&out, &listed);

    out.pos = ngx_pnalloc(pool, out.len);
    if (out.pos == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    task->result.data = out.pos;
    out.len = 0;

    ngx_http_async_task_json_listed_out(&out, &listed);

    task->result.len = out.len;

    cJSON_Delete(root);

    return NGX_OK;
}


/*
 * {"text":..,"language":..,"duration":..,"truncated":true,"url":..}, of
 * what there is; the url of the full result when something was left out
 */

static void
ngx_http_async_task_json_listed_out(ngx_http_async_task_json_out_t *out,
    ngx_http_async_task_json_listed_t *listed)
{
    u_char      buf[NGX_INT64_LEN + sizeof(".000")];
    ngx_uint_t  more;

    more = 0;

    ngx_http_async_task_json_literal(out, "{");

    if (listed->text.data) {
        ngx_http_async_task_json_literal(out, "\"text\":\"");
        ngx_http_async_task_json_text(out, &listed->text, 0);
        ngx_http_async_task_json_literal(out, "\"");
        more = 1;
    }

    if (listed->language.data) {
        if (more) {
            ngx_http_async_task_json_literal(out, ",");
        }

        ngx_http_async_task_json_literal(out, "\"language\":\"");
        ngx_http_async_task_json_text(out, &listed->language,
                                      NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);
        ngx_http_async_task_json_literal(out, "\"");
        more = 1;
    }

    if (listed->duration) {
        if (more) {
            ngx_http_async_task_json_literal(out, ",");
        }

        ngx_http_async_task_json_literal(out, "\"duration\":");
        ngx_http_async_task_json_put(out, buf,
                                     ngx_snprintf(buf, sizeof(buf), "%.3f",
                                                 listed->duration->valuedouble)
                                     - buf);
        more = 1;
    }

    if (listed->truncated) {
        if (more) {
            ngx_http_async_task_json_literal(out, ",");
        }

        ngx_http_async_task_json_literal(out, "\"truncated\":true,\"url\":\"");
        ngx_http_async_task_json_escaped(out, listed->prefix);
        ngx_http_async_task_json_literal(out, "tasks/");
        ngx_http_async_task_json_put(out, listed->id,
                                     NGX_HTTP_ASYNC_TASK_ID_LEN);
        ngx_http_async_task_json_literal(out, "/result\"");
    }

    ngx_http_async_task_json_literal(out, "}");
}


/* the bytes of at most "max" characters of UTF-8 text */

static size_t
ngx_http_async_task_json_cut(u_char *text, size_t len, size_t max)
{
    u_char      *p, *last;
    ngx_uint_t   n;

    p = text;
    last = text + len;

    for (n = 0; p < last && n < max; n++) {
        ngx_http_async_task_util_utf8(&p, last);
    }

    return p - text;
}
