
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * protocol=comfyui (ngx_http_async_task_comfyui.c): the workflow's
 * lexer and the filling in of its placeholders, and what ComfyUI
 * answers to /prompt and /history.  A workflow that passes the checks,
 * filled in with any values, is valid JSON; any stored params either
 * make no request or a body that is valid JSON; an answer either gives
 * a prompt id and image names that are safe to send back, or an outcome
 * with a message.
 *
 * Input: the first byte picks what the rest is: 0, a workflow; 1, a
 * task's params for a fixed workflow; 2, an answer to /prompt; 3, an
 * answer to /history (for prompt id "p1").  An answer starts with its
 * status, 2 bytes, big-endian.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_comfyui.c"


static u_char  fuzz_workflow[] =
    "{\"3\":{\"class_type\":\"KSampler\",\"inputs\":{\"seed\":\"{{seed}}\","
    "\"steps\":\"{{steps}}\",\"cfg\":\"{{cfg_scale|2.5}}\"}},"
    "\"6\":{\"class_type\":\"CLIPTextEncode\",\"inputs\":{\"text\":"
    "\"{{prompt}}\",\"n\":\"{{negative_prompt}}\"}},"
    "\"5\":{\"class_type\":\"EmptyLatentImage\",\"inputs\":{\"width\":"
    "\"{{width}}\",\"height\":\"{{height}}\"}},"
    "\"9\":{\"class_type\":\"SaveImage\",\"inputs\":{\"filename_prefix\":"
    "\"x {{prompt}} {{seed}} {{cfg_scale|1e3}} {{negative_prompt|\\\"}}\"}}}";

static u_char  fuzz_params[] =
    "{\"prompt\":\"a \\\"fox\\\"\\n\\u0001 {{seed}}\",\"width\":64,"
    "\"height\":64,\"steps\":4,\"seed\":4294967295,\"cfg_scale\":0.1}";


static ngx_http_async_task_comfyui_t *
fuzz_load(ngx_pool_t *pool, u_char *data, size_t len)
{
    ngx_str_t                       text;
    ngx_conf_t                      cf;
    ngx_http_async_task_comfyui_t  *wf;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = pool;
    cf.log = &fuzz_log;
    cf.cycle = &fuzz_cycle;

    wf = ngx_pcalloc(pool, sizeof(ngx_http_async_task_comfyui_t));
    fuzz_assert(wf != NULL);
    ngx_str_set(&wf->file, "fuzz.json");

    text.len = len;
    text.data = ngx_pnalloc(pool, len);
    fuzz_assert(len == 0 || text.data != NULL);
    ngx_memcpy(text.data, data, len);

    if (ngx_http_async_task_comfyui_api_format(&cf, &wf->file, &text)
        != NGX_OK
        || ngx_http_async_task_comfyui_parse(&cf, wf, &text) != NGX_OK)
    {
        return NULL;
    }

    return wf;
}


/* the request's body, after its head, is valid JSON */

static void
fuzz_body(ngx_chain_t *cl)
{
    u_char  *p;

    fuzz_assert(cl != NULL && cl->next == NULL);

    p = ngx_strnstr(cl->buf->pos, "\r\n\r\n", cl->buf->last - cl->buf->pos);
    fuzz_assert(p != NULL);

    p += 4;
    fuzz_assert_json(p, cl->buf->last - p);
}


static void
fuzz_request(ngx_pool_t *pool, ngx_http_async_task_comfyui_t *wf,
    u_char *params, size_t len)
{
    ngx_chain_t                     *cl;
    ngx_http_async_task_t            task;
    ngx_http_async_task_run_t        run;
    ngx_http_async_task_backend_t    backend;
    ngx_http_async_task_instance_t   in;

    ngx_memzero(&task, sizeof(ngx_http_async_task_t));
    ngx_memzero(&run, sizeof(ngx_http_async_task_run_t));
    ngx_memzero(&backend, sizeof(ngx_http_async_task_backend_t));
    ngx_memzero(&in, sizeof(ngx_http_async_task_instance_t));

    ngx_memset(task.id, 'a', NGX_HTTP_ASYNC_TASK_ID_LEN);
    task.params.data = params;
    task.params.len = len;
    backend.comfyui = wf;
    ngx_str_set(&in.server, "127.0.0.1:8188");

    run.pool = pool;
    run.log = &fuzz_log;
    run.task = &task;
    run.backend = &backend;
    run.instance = &in;

    cl = ngx_http_async_task_comfyui_prompt(&run);

    if (cl) {
        fuzz_body(cl);
    }
}


/* a name ComfyUI gave, taken: no control byte, at most 255 bytes */

static void
fuzz_name(ngx_str_t *s)
{
    size_t  i;

    fuzz_assert(s->len <= NGX_HTTP_ASYNC_TASK_COMFYUI_NAME_MAX);

    for (i = 0; i < s->len; i++) {
        fuzz_assert(s->data[i] >= 0x20 && s->data[i] != 0x7f);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                               i;
    ngx_int_t                            rc;
    ngx_str_t                            id;
    ngx_pool_t                          *pool;
    ngx_http_async_task_t                task;
    ngx_http_async_task_run_t            run;
    ngx_http_async_task_outcome_t       *out;
    ngx_http_async_task_comfyui_t       *wf;
    ngx_http_async_task_comfyui_image_t  image;

    if (size < 1) {
        return 0;
    }

    pool = fuzz_pool();

    switch (data[0] % 4) {

    case 0:
        wf = fuzz_load(pool, (u_char *) data + 1, size - 1);

        if (wf) {
            fuzz_request(pool, wf, fuzz_params, sizeof(fuzz_params) - 1);
        }

        break;

    case 1:
        wf = fuzz_load(pool, fuzz_workflow, sizeof(fuzz_workflow) - 1);
        fuzz_assert(wf != NULL);

        fuzz_request(pool, wf, (u_char *) data + 1, size - 1);
        break;

    default:
        if (size < 3) {
            break;
        }

        ngx_memzero(&task, sizeof(ngx_http_async_task_t));
        ngx_memzero(&run, sizeof(ngx_http_async_task_run_t));

        task.kind = NGX_HTTP_ASYNC_TASK_IMAGE;
        run.pool = pool;
        run.log = &fuzz_log;
        run.task = &task;

        /* a whole answer, as process() gets them */

        out = &run.outcome;
        out->status = (data[1] << 8 | data[2]) % 600;
        out->body.len = size - 3;
        out->body.data = ngx_pnalloc(pool, out->body.len);
        fuzz_assert(out->body.len == 0 || out->body.data != NULL);
        ngx_memcpy(out->body.data, data + 3, out->body.len);

        if (data[0] % 4 == 2) {
            rc = ngx_http_async_task_comfyui_prompt_answer(&run, &id);

            if (rc == NGX_OK) {
                fuzz_assert(id.len > 0
                            && id.len <= NGX_HTTP_ASYNC_TASK_COMFYUI_ID_MAX);

                for (i = 0; i < id.len; i++) {
                    fuzz_assert(ngx_strchr("abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789-_", id.data[i])
                                != NULL);
                }
            }

        } else {
            ngx_str_set(&id, "p1");
            rc = ngx_http_async_task_comfyui_history_answer(&run, &id,
                                                            &image);
            if (rc == NGX_OK) {
                fuzz_assert(image.filename.len > 0);
                fuzz_name(&image.filename);
                fuzz_name(&image.subfolder);
                fuzz_assert(image.type.len > 0);
            }
        }

        if (rc == NGX_ERROR) {
            fuzz_assert(out->code != NULL);
            fuzz_assert(out->message.len > 0);
            fuzz_touch(&out->message);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
