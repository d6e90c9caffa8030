
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The query string of the speech endpoints: ngx_http_async_task_speech_
 * args() reads language, prompt, priority, and for raw PCM sample_rate
 * and channels, into the upload.  A format it accepts is one the PCM
 * converter takes.
 *
 * Input: 0 or 1 (speech/transcribe or speech/pcm), the query string,
 * with no NUL byte.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_submit.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                      rc;
    ngx_uint_t                     pcm;
    ngx_pool_t                    *pool;
    ngx_http_request_t             r;
    ngx_http_async_task_submit_t   ctx;

    /* nginx refuses a request line with a NUL byte (400) */

    if (size == 0 || memchr(data + 1, '\0', size - 1)) {
        return 0;
    }

    pool = fuzz_pool();

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    ngx_memzero(&ctx, sizeof(ngx_http_async_task_submit_t));

    r.pool = pool;
    ctx.request = &r;

    pcm = data[0] & 1;

    /* the defaults, as ngx_http_async_task_submit_pcm() sets them */

    ctx.upload.sample_rate = NGX_HTTP_ASYNC_TASK_RATE;
    ctx.upload.channels = NGX_HTTP_ASYNC_TASK_CHANNELS;

    r.args.len = size - 1;
    r.args.data = ngx_pnalloc(pool, size - 1);
    fuzz_assert(size == 1 || r.args.data != NULL);
    ngx_memcpy(r.args.data, data + 1, size - 1);

    rc = ngx_http_async_task_speech_args(&r, &ctx, pcm);

    if (rc == NGX_DECLINED) {
        fuzz_assert(ctx.error != NULL && ctx.field != NULL);

    } else {
        fuzz_assert(rc == NGX_OK);
        fuzz_assert(ctx.upload.sample_rate >= 8000
                    && ctx.upload.sample_rate <= 48000);
        fuzz_assert(ctx.upload.channels == 1 || ctx.upload.channels == 2);
        fuzz_assert(!ctx.upload.has_language
                    || ctx.upload.language.data[ctx.upload.language.len]
                       == '\0');

        if (pcm) {
            fuzz_assert(!ctx.upload.has_prompt);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
