
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * What an instance's answer means for a task: the protocols of the kind
 * table read their answers (OpenAI's data[0].b64_json and A1111's
 * images[0], base64 PNGs; OpenAI's and whisper.cpp's transcripts) and
 * error answers.  Every outcome is one of the
 * four, with a message unless done; a done one has a JSON output, and
 * for an image the PNG on disk.
 *
 * Input: the task's kind (bit 0), the client's result (bits 1-3) and
 * the protocol in the kind's table (bits 4-7) in the first byte, the
 * status (2 bytes, big-endian), the body.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_kind.h"


static u_char  fuzz_dir[NGX_MAX_PATH];


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t                        files;
    ngx_pool_t                      *pool;
    ngx_file_info_t                  fi;
    ngx_http_async_task_t            task;
    ngx_http_async_task_run_t        run;
    ngx_http_async_task_outcome_t   *out;
    ngx_uint_t                       n;
    ngx_http_async_task_protocol_t  *protocol;
    u_char                           path[NGX_MAX_PATH];

    if (size < 3) {
        return 0;
    }

    pool = fuzz_pool();

    if (fuzz_dir[0] == '\0') {
        ngx_sprintf(fuzz_dir, "%s/fuzz-protocol-XXXXXX%Z",
                    getenv("FUZZ_TMPDIR") ? getenv("FUZZ_TMPDIR") : "/tmp");
        fuzz_assert(mkdtemp((char *) fuzz_dir) != NULL);
    }

    files.data = fuzz_dir;
    files.len = ngx_strlen(fuzz_dir);

    ngx_memzero(&task, sizeof(ngx_http_async_task_t));
    ngx_memzero(&run, sizeof(ngx_http_async_task_run_t));

    run.pool = pool;
    run.log = &fuzz_log;
    run.task = &task;
    out = &run.outcome;

    ngx_memset(task.id, 'a', NGX_HTTP_ASYNC_TASK_ID_LEN);
    task.kind = (data[0] & 1) ? NGX_HTTP_ASYNC_TASK_SPEECH
                              : NGX_HTTP_ASYNC_TASK_IMAGE;
    protocol = ngx_http_async_task_kind(task.kind)->protocols;

    for (n = 0; protocol[n].name.len; n++) { /* void */ }

    protocol += (data[0] >> 4) % n;

    out->result = ((data[0] >> 1) & 7)
                  % (ngx_http_async_task_client_aborted + 1);
    out->status = (data[1] << 8 | data[2]) % 600;
    out->files = &files;

    /* a run writes its own file, as the dispatcher names it */
    ngx_str_set(&out->suffix, ".1-1.tmp");

    /* the body as the client leaves it: in its buffer, no NUL after it */

    out->body.len = size - 3;
    out->body.data = ngx_pnalloc(pool, out->body.len);
    fuzz_assert(out->body.len == 0 || out->body.data != NULL);
    ngx_memcpy(out->body.data, data + 3, out->body.len);

    protocol->finalize(&run, &fuzz_log);

    if (out->run == ngx_http_async_task_run_done) {
        fuzz_assert(out->result == ngx_http_async_task_client_ok);
        fuzz_assert(out->status >= 200 && out->status < 300);
        fuzz_assert_json(out->output.data, out->output.len);

        if (task.kind == NGX_HTTP_ASYNC_TASK_IMAGE) {
            fuzz_assert(out->file.len > 0);
            ngx_sprintf(path, "%V/%V%V%Z", &files, &out->file, &out->suffix);
            fuzz_assert(ngx_file_info(path, &fi) == 0);
            fuzz_assert(ngx_file_size(&fi) >= 8);
            (void) unlink((char *) path);

        } else {
            fuzz_assert(out->file.len == 0);
        }

    } else {
        fuzz_assert(out->run == ngx_http_async_task_run_failed
                    || out->run == ngx_http_async_task_run_error
                    || out->run == ngx_http_async_task_run_requeue);
        fuzz_assert(out->code != NULL);
        fuzz_assert(out->message.len > 0);
        fuzz_touch(&out->message);
    }

    ngx_destroy_pool(pool);

    return 0;
}
