
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The multipart parser of speech uploads, ngx_http_async_task_upload_
 * parse(), over an exact copy of the body rather than the mapped file
 * (ASan then sees a read past the end), set up as ngx_http_async_task_
 * upload_multipart() does.  A body it accepts has one file part inside
 * the body and fields of at most 4000 bytes.
 *
 * Input: the boundary (1 to 70 bytes), a line feed, the body.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_upload.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                            *body, *lf;
    size_t                             len;
    ngx_int_t                          rc;
    ngx_pool_t                        *pool;
    ngx_http_async_task_upload_t       up;
    ngx_http_async_task_upload_ctx_t   ctx;

    lf = memchr(data, '\n',
                ngx_min(size, NGX_HTTP_ASYNC_TASK_BOUNDARY_MAX + 1));

    if (lf == NULL || lf == data) {
        return 0;
    }

    pool = fuzz_pool();

    ngx_memzero(&up, sizeof(ngx_http_async_task_upload_t));
    ngx_memzero(&ctx, sizeof(ngx_http_async_task_upload_ctx_t));

    up.type = NGX_HTTP_ASYNC_TASK_UPLOAD_MULTIPART;
    up.boundary.data = (u_char *) data;
    up.boundary.len = lf - data;

    ctx.up = &up;
    ctx.pool = pool;
    ctx.log = &fuzz_log;
    ctx.src = NGX_INVALID_FILE;
    ctx.dst = NGX_INVALID_FILE;

    ctx.delimiter.data = ngx_pnalloc(pool, 3 + up.boundary.len);
    fuzz_assert(ctx.delimiter.data != NULL);
    ngx_memcpy(ctx.delimiter.data, "\n--", 3);
    ngx_memcpy(ctx.delimiter.data + 3, up.boundary.data, up.boundary.len);
    ctx.delimiter.len = 3 + up.boundary.len;

    len = data + size - (lf + 1);
    body = malloc(len ? len : 1);
    fuzz_assert(body != NULL);
    ngx_memcpy(body, lf + 1, len);

    ctx.start = body;
    ctx.end = body + len;
    ctx.size = len;

    rc = ngx_http_async_task_upload_parse(&ctx);

    if (rc == NGX_OK) {
        fuzz_assert(ctx.has_file);
        fuzz_assert(ctx.file_start >= body && ctx.file_start < ctx.file_end
                    && ctx.file_end <= body + len);
        fuzz_assert(up.filename.len > 0);
        fuzz_assert(up.content_type.len > 0);
        fuzz_assert(up.language.len <= 4 * NGX_HTTP_ASYNC_TASK_FIELD_MAX);
        fuzz_assert(up.prompt.len <= 4 * NGX_HTTP_ASYNC_TASK_FIELD_MAX);
        fuzz_assert(up.priority.len <= 4 * NGX_HTTP_ASYNC_TASK_FIELD_MAX);

    } else {
        fuzz_assert(rc == NGX_DECLINED);
        fuzz_assert(up.error != NULL);
    }

    free(body);

    /*
     * The caller reads what the parser found once the body is unmapped:
     * none of it may point into the body (ASan: use after free).
     */

    if (up.error) {
        fuzz_assert(strlen(up.error) < len + 200);
    }

    if (up.field) {
        fuzz_assert(strlen(up.field) <= len);
    }

    fuzz_touch(&up.filename);
    fuzz_touch(&up.content_type);

    ngx_destroy_pool(pool);

    return 0;
}
