
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

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
static uint32_t ngx_http_async_task_json_utf8(u_char **p, u_char *last);
static size_t ngx_http_async_task_json_cut(u_char *text, size_t len,
    size_t max);


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
          + prefix->len + ngx_escape_json(NULL, prefix->data, prefix->len);

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

    /*
     * A QUEUED task runs nowhere, even when the store still names the
     * instance of a failed attempt: the zone never knows that one.
     */

    if (task->backend.len && task->status != NGX_HTTP_ASYNC_TASK_QUEUED) {
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

        p = ngx_cpymem(p, "{\"url\":\"", sizeof("{\"url\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, prefix->data, prefix->len);
        p = ngx_cpymem(p, "tasks/", sizeof("tasks/") - 1);
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


/*
 * Error bodies echo what the client sent (field names, parameter names):
 * any bytes, of any length.  Both strings are escaped, invalid UTF-8
 * becomes U+FFFD, and each is cut to a number of characters.
 */

ngx_int_t
ngx_http_async_task_json_error(ngx_pool_t *pool, ngx_str_t *out,
    const char *code, ngx_str_t *message, const char *field)
{
    size_t   len, flen;
    u_char  *p;

    flen = field ? ngx_strlen(field) : 0;

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\","
                 "\"field\":\"\"}}")
          + ngx_strlen(code)
          + ngx_http_async_task_json_escape(NULL, message->data, message->len,
                                    NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX)
          + ngx_http_async_task_json_escape(NULL, (u_char *) field, flen,
                                    NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_sprintf(p, "{\"error\":{\"code\":\"%s\",\"message\":\"",
                    code);
    p += ngx_http_async_task_json_escape(p, message->data, message->len,
                                    NGX_HTTP_ASYNC_TASK_JSON_MESSAGE_MAX);
    *p++ = '"';

    if (field) {
        p = ngx_cpymem(p, ",\"field\":\"", sizeof(",\"field\":\"") - 1);
        p += ngx_http_async_task_json_escape(p, (u_char *) field, flen,
                                    NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);
        *p++ = '"';
    }

    *p++ = '}';
    *p++ = '}';

    out->len = p - out->data;

    return NGX_OK;
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

    /* an empty string may have no data, where no arithmetic is defined */

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
        c = ngx_http_async_task_json_utf8(&p, last);

        if (c == 0xfffd && p - start == 1) {
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
 * One character: its code point, or U+FFFD for a byte that does not
 * start a well-formed sequence (overlong forms, surrogates and code
 * points above U+10FFFF included); then only that byte is consumed.
 */

static uint32_t
ngx_http_async_task_json_utf8(u_char **p, u_char *last)
{
    u_char      *s;
    uint32_t     c, min;
    ngx_uint_t   i, n;

    s = *p;
    c = *s;

    if (c < 0x80) {
        *p = s + 1;
        return c;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        c &= 0x1f;
        min = 0x80;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        c &= 0x0f;
        min = 0x800;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        c &= 0x07;
        min = 0x10000;

    } else {
        goto invalid;
    }

    if ((size_t) (last - s) <= n) {
        goto invalid;
    }

    for (i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            goto invalid;
        }

        c = (c << 6) | (s[i] & 0x3f);
    }

    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        goto invalid;
    }

    *p = s + n + 1;

    return c;

invalid:

    *p = s + 1;

    return 0xfffd;
}


/*
 * A speech result as a listing shows it, so that a page of 100 tasks
 * stays small whatever the transcripts: "text" cut to a number of
 * characters, "language" and "duration" kept, anything else (segments)
 * left out; when something was left out, "truncated" and the "url" of
 * the full result.  Replaces task->result; NGX_ERROR on no memory only.
 */

ngx_int_t
ngx_http_async_task_json_list_result(ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_str_t *prefix)
{
    cJSON       *root, *item, *t, *l, *d;
    u_char      *p, *text, *language;
    size_t       len, text_len, language_len;
    ngx_uint_t   truncated;

    if (task->kind != NGX_HTTP_ASYNC_TASK_SPEECH
        || task->result.len <= NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX)
    {
        return NGX_OK;
    }

    root = cJSON_ParseWithLength((char *) task->result.data,
                                 task->result.len);

    if (root == NULL || !cJSON_IsObject(root)) {
        /* not the dispatcher's JSON: left out as a whole */
        cJSON_Delete(root);
        ngx_str_set(&task->result, "{\"truncated\":true}");
        goto url;
    }

    t = cJSON_GetObjectItemCaseSensitive(root, "text");
    l = cJSON_GetObjectItemCaseSensitive(root, "language");
    d = cJSON_GetObjectItemCaseSensitive(root, "duration");

    text = (u_char *) cJSON_GetStringValue(t);
    text_len = text ? ngx_strlen(text) : 0;
    language = (u_char *) cJSON_GetStringValue(l);
    language_len = language ? ngx_strlen(language) : 0;

    truncated = 0;

    for (item = root->child; item; item = item->next) {
        if (item != t && item != l && item != d) {
            truncated = 1;
        }
    }

    len = ngx_http_async_task_json_cut(text, text_len,
                                       NGX_HTTP_ASYNC_TASK_JSON_LIST_TEXT_MAX);

    if (len < text_len || language_len > NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX
        || (d && !cJSON_IsNumber(d)))
    {
        truncated = 1;
    }

    p = ngx_pnalloc(pool, sizeof("{\"text\":\"\",\"language\":\"\","
                                 "\"duration\":,\"truncated\":true}")
                          + ngx_http_async_task_json_escape(NULL, text, len, 0)
                          + ngx_http_async_task_json_escape(NULL, language,
                                    language_len,
                                    NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX)
                          + NGX_INT64_LEN + 16);
    if (p == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    task->result.data = p;

    *p++ = '{';

    if (text) {
        p = ngx_cpymem(p, "\"text\":\"", sizeof("\"text\":\"") - 1);
        p += ngx_http_async_task_json_escape(p, text, len, 0);
        *p++ = '"';
    }

    if (language) {
        p = ngx_sprintf(p, "%s\"language\":\"", text ? "," : "");
        p += ngx_http_async_task_json_escape(p, language, language_len,
                                    NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);
        *p++ = '"';
    }

    if (cJSON_IsNumber(d)) {
        p = ngx_sprintf(p, "%s\"duration\":%.3f",
                        (text || language) ? "," : "", d->valuedouble);
    }

    if (truncated) {
        p = ngx_sprintf(p, "%s\"truncated\":true",
                        (p - task->result.data > 1) ? "," : "");
    }

    *p++ = '}';

    task->result.len = p - task->result.data;

    cJSON_Delete(root);

    if (!truncated) {
        return NGX_OK;
    }

url:

    /* ,"url":"<prefix>tasks/<id>/result"} in place of the closing brace */

    len = task->result.len - 1;

    p = ngx_pnalloc(pool, len + sizeof(",\"url\":\"tasks//result\"}")
                          + NGX_HTTP_ASYNC_TASK_ID_LEN + prefix->len
                          + ngx_escape_json(NULL, prefix->data, prefix->len));
    if (p == NULL) {
        return NGX_ERROR;
    }

    text = p;

    p = ngx_cpymem(p, task->result.data, len);
    p = ngx_cpymem(p, ",\"url\":\"", sizeof(",\"url\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, "tasks/", sizeof("tasks/") - 1);
    p = ngx_cpymem(p, task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    p = ngx_cpymem(p, "/result\"}", sizeof("/result\"}") - 1);

    task->result.data = text;
    task->result.len = p - text;

    return NGX_OK;
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
        ngx_http_async_task_json_utf8(&p, last);
    }

    return p - text;
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
