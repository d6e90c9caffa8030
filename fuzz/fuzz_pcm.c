
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * Raw PCM to WAV, through the files as a pool thread does it:
 * ngx_http_async_task_upload_run() reads the body's temp file and
 * writes the task's input file.  The file is the canonical 44-byte
 * header and the body as is, or the body is refused.
 *
 * Input: channels (1 byte), sample rate (4 bytes, little-endian), the
 * body.  The module passes only 1 or 2 channels and 8000 to 48000 Hz;
 * other formats must be refused, not written.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_upload.h"


static u_char  fuzz_dir[NGX_MAX_PATH];


static uint32_t
fuzz_le32(u_char *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                            fd;
    u_char                        *wav;
    size_t                         len;
    ssize_t                        n;
    uint32_t                       block;
    ngx_pool_t                    *pool;
    ngx_http_async_task_upload_t   up;
    u_char                         source[NGX_MAX_PATH];
    u_char                         target[NGX_MAX_PATH];

    if (size < 5) {
        return 0;
    }

    pool = fuzz_pool();

    if (fuzz_dir[0] == '\0') {
        ngx_sprintf(fuzz_dir, "%s/fuzz-pcm-XXXXXX%Z",
                    getenv("FUZZ_TMPDIR") ? getenv("FUZZ_TMPDIR") : "/tmp");
        fuzz_assert(mkdtemp((char *) fuzz_dir) != NULL);
    }

    ngx_memzero(&up, sizeof(ngx_http_async_task_upload_t));

    up.type = NGX_HTTP_ASYNC_TASK_UPLOAD_PCM;
    up.channels = data[0];
    up.sample_rate = fuzz_le32((u_char *) data + 1);

    len = size - 5;

    up.source.data = ngx_sprintf(source, "%s/body%Z", fuzz_dir);
    up.source.len = up.source.data - source - 1;
    up.source.data = source;
    up.target.data = ngx_sprintf(target, "%s/input.wav%Z", fuzz_dir);
    up.target.len = up.target.data - target - 1;
    up.target.data = target;

    fd = open((char *) source, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    fuzz_assert(fd != -1);
    fuzz_assert(write(fd, data + 5, len) == (ssize_t) len);
    close(fd);

    ngx_http_async_task_upload_run(&up, pool, &fuzz_log);

    block = 2 * (uint32_t) up.channels;

    if (len == 0) {
        fuzz_assert(up.rc == NGX_DECLINED && up.error != NULL);

    } else if (up.channels == 0 || up.sample_rate == 0
               || up.sample_rate > 0xffffffff / block)
    {
        fuzz_assert(up.rc == NGX_ERROR);

    } else if (len % block) {
        fuzz_assert(up.rc == NGX_DECLINED && up.error != NULL);

    } else {
        fuzz_assert(up.rc == NGX_OK);
        fuzz_assert(up.bytes == (off_t) (44 + len));

        wav = ngx_pnalloc(pool, 44 + len + 1);
        fuzz_assert(wav != NULL);

        fd = open((char *) target, O_RDONLY);
        fuzz_assert(fd != -1);
        n = read(fd, wav, 44 + len + 1);
        close(fd);

        fuzz_assert(n == (ssize_t) (44 + len));
        fuzz_assert(ngx_memcmp(wav, "RIFF", 4) == 0);
        fuzz_assert(fuzz_le32(wav + 4) == 36 + len);
        fuzz_assert(ngx_memcmp(wav + 8, "WAVEfmt ", 8) == 0);
        fuzz_assert(fuzz_le32(wav + 16) == 16);
        fuzz_assert((wav[20] | wav[21] << 8) == 1);
        fuzz_assert((ngx_uint_t) (wav[22] | wav[23] << 8) == up.channels);
        fuzz_assert(fuzz_le32(wav + 24) == up.sample_rate);
        fuzz_assert(fuzz_le32(wav + 28) == up.sample_rate * block);
        fuzz_assert((uint32_t) (wav[32] | wav[33] << 8) == block);
        fuzz_assert((wav[34] | wav[35] << 8) == 16);
        fuzz_assert(ngx_memcmp(wav + 36, "data", 4) == 0);
        fuzz_assert(fuzz_le32(wav + 40) == len);
        fuzz_assert(ngx_memcmp(wav + 44, data + 5, len) == 0);
    }

    (void) unlink((char *) target);
    (void) unlink((char *) source);

    ngx_destroy_pool(pool);

    return 0;
}
