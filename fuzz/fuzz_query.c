
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The query string: ngx_http_async_task_request_next_arg() splits and
 * unescapes it, ngx_http_async_task_list_args() reads the filters of GET
 * tasks.
 *
 * Input: the query string (r->args, without the "?"), with no NUL byte.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_api.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                        *p, *last;
    ngx_int_t                      rc;
    ngx_str_t                      name, value, id;
    ngx_pool_t                    *pool;
    const char                    *error, *field;
    ngx_http_request_t             r;
    ngx_http_async_task_filter_t   filter;

    /* nginx refuses a request line with a NUL byte (400) */

    if (memchr(data, '\0', size)) {
        return 0;
    }

    pool = fuzz_pool();

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    r.pool = pool;

    /* a copy of its own: ASan sees a read past the end */

    r.args.len = size;
    r.args.data = ngx_pnalloc(pool, size);
    fuzz_assert(size == 0 || r.args.data != NULL);
    ngx_memcpy(r.args.data, data, size);

    p = r.args.data;
    last = p + size;

    for ( ;; ) {
        rc = ngx_http_async_task_request_next_arg(&r, &p, last, &name, &value);

        if (rc == NGX_DONE) {
            break;
        }

        fuzz_assert(rc == NGX_OK);
        fuzz_assert(p <= last);
        fuzz_assert(name.data[name.len] == '\0');
        fuzz_assert(value.data[value.len] == '\0');
        fuzz_assert(name.len + value.len <= size);
    }

    ngx_memzero(&filter, sizeof(ngx_http_async_task_filter_t));
    ngx_str_null(&id);
    error = NULL;
    field = NULL;

    rc = ngx_http_async_task_list_args(&r, &filter, &id, &error, &field);

    if (rc == NGX_DECLINED) {
        fuzz_assert(error != NULL && field != NULL);

    } else {
        fuzz_assert(rc == NGX_OK);
        fuzz_assert(filter.limit >= 1
                    && filter.limit <= NGX_HTTP_ASYNC_TASK_LIST_MAX);
        fuzz_assert(filter.status >= -1
                    && filter.status <= NGX_HTTP_ASYNC_TASK_CANCELED);
        fuzz_assert(filter.kind == -1
                    || filter.kind == NGX_HTTP_ASYNC_TASK_IMAGE
                    || filter.kind == NGX_HTTP_ASYNC_TASK_SPEECH);
    }

    ngx_destroy_pool(pool);

    return 0;
}
