
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_util.h"


ngx_str_t  ngx_http_async_task_statuses[] = {
    ngx_string("QUEUED"),
    ngx_string("RUNNING"),
    ngx_string("DONE"),
    ngx_string("FAILED"),
    ngx_string("CANCELED"),
    ngx_null_string
};


ngx_int_t
ngx_http_async_task_util_parse_id(ngx_str_t *text, u_char *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (text->len != NGX_HTTP_ASYNC_TASK_ID_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_ID_LEN; i++) {
        c = text->data[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return NGX_ERROR;
            }

            id[i] = c;
            continue;
        }

        c = ngx_tolower(c);

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return NGX_ERROR;
        }

        id[i] = c;
    }

    return NGX_OK;
}


int64_t
ngx_http_async_task_util_now_ms(void)
{
    struct timeval  tv;

    /* also called from pool threads, where nginx's cached time is not */

    ngx_gettimeofday(&tv);

    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


/* the event loop's cached time: cheap, and exact enough for schedules */

int64_t
ngx_http_async_task_util_cached_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


u_char *
ngx_http_async_task_util_format_time(u_char *p, int64_t ms)
{
    time_t     sec;
    ngx_tm_t   tm;

    sec = (time_t) (ms / 1000);

    ngx_gmtime(sec, &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (ms % 1000));
}


ngx_int_t
ngx_http_async_task_util_status_index(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_async_task_statuses[i].len; i++) {
        if (name->len == ngx_http_async_task_statuses[i].len
            && ngx_strncmp(name->data, ngx_http_async_task_statuses[i].data,
                           name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/*
 * The one UTF-8 decoder of the module: the next character's code point,
 * or NGX_HTTP_ASYNC_TASK_UTF8_INVALID for a byte that does not start a
 * well-formed sequence (overlong forms, surrogates and code points above
 * U+10FFFF included); then only that byte is consumed.
 */

uint32_t
ngx_http_async_task_util_utf8(u_char **p, u_char *last)
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

    return NGX_HTTP_ASYNC_TASK_UTF8_INVALID;
}


/*
 * Whether a requester (NULL: none, async_task_user unset or empty) may
 * see a task that has an owner or not: only the same one, byte for byte.
 */

ngx_uint_t
ngx_http_async_task_util_owner(ngx_str_t *user, ngx_uint_t has_owner,
    u_char *owner, size_t len)
{
    if (user == NULL) {
        return !has_owner;
    }

    return has_owner && user->len == len
           && ngx_memcmp(user->data, owner, len) == 0;
}


/*
 * A directory's fsync(), which makes the entries made in it durable: a
 * new file is not on disk until its name is.
 */

ngx_int_t
ngx_http_async_task_util_sync_dir(u_char *name, ngx_log_t *log)
{
    ngx_fd_t   fd;
    ngx_int_t  rc;

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", name);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    if (fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "fsync() \"%s\" failed", name);
        rc = NGX_ERROR;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", name);
    }

    return rc;
}


/*
 * The owner of a lease, as the store keeps it: "pid:N", the process that
 * runs the task.  owner->data has NGX_HTTP_ASYNC_TASK_LEASE_LEN bytes.
 */

void
ngx_http_async_task_util_lease(ngx_str_t *owner, ngx_pid_t pid)
{
    owner->len = ngx_sprintf(owner->data, "pid:%P", pid) - owner->data;
}


/* the process of a lease owner; 0 when it is not one */

ngx_pid_t
ngx_http_async_task_util_lease_pid(u_char *owner, size_t len)
{
    if (len < 4 || ngx_strncmp(owner, "pid:", 4) != 0) {
        return 0;
    }

    return (ngx_pid_t) ngx_atoi(owner + 4, len - 4);
}
