
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The validation of an image submission: the JSON body, parsed as
 * ngx_http_async_task_image_parse() does, turned into the task's params
 * by ngx_http_async_task_image_params().  A valid body gives params
 * within the contract's bounds; an invalid one a message.
 *
 * Input: the request body.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_submit.c"


static void
fuzz_check_int(cJSON *params, const char *name, double min, double max)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(params, name);

    fuzz_assert(cJSON_IsNumber(item));
    fuzz_assert(item->valuedouble >= min && item->valuedouble <= max);
    fuzz_assert(item->valuedouble == (double) (int64_t) item->valuedouble);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                         *body, *params, *item;
    ngx_int_t                      rc;
    ngx_str_t                      json;
    const char                    *end;
    ngx_pool_t                    *pool;
    ngx_http_request_t             r;
    ngx_http_async_task_op_t       op;
    ngx_http_async_task_submit_t   ctx;

    if (size == 0 || size > NGX_HTTP_ASYNC_TASK_JSON_MAX) {
        return 0;
    }

    pool = fuzz_pool();

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    ngx_memzero(&op, sizeof(ngx_http_async_task_op_t));
    ngx_memzero(&ctx, sizeof(ngx_http_async_task_submit_t));

    r.pool = pool;
    ctx.request = &r;
    ctx.op = &op;
    op.task.priority = NGX_HTTP_ASYNC_TASK_PRIORITY;

    /* the body as nginx holds it: one buffer, a byte to spare for a NUL */

    json.len = size;
    json.data = ngx_pnalloc(pool, size + 1);
    fuzz_assert(json.data != NULL);
    ngx_memcpy(json.data, data, size);
    json.data[size] = '\0';

    body = cJSON_ParseWithLengthOpts((char *) json.data, json.len, &end, 0);

    if (body == NULL || ngx_http_async_task_json_has_nul(&json)
        || !cJSON_IsObject(body))
    {
        cJSON_Delete(body);
        ngx_destroy_pool(pool);
        return 0;
    }

    rc = ngx_http_async_task_image_params(&r, &ctx, body);

    if (rc == NGX_DECLINED) {
        fuzz_assert(ctx.error != NULL);
        fuzz_assert(strlen(ctx.error) < 2 * size + 100);

    } else {
        fuzz_assert(rc == NGX_OK);

        fuzz_assert_json(op.task.params.data, op.task.params.len);

        params = cJSON_ParseWithLength((char *) op.task.params.data,
                                       op.task.params.len);

        item = cJSON_GetObjectItemCaseSensitive(params, "prompt");
        fuzz_assert(cJSON_IsString(item) && item->valuestring[0] != '\0');

        fuzz_check_int(params, "width", 64, 2048);
        fuzz_check_int(params, "height", 64, 2048);
        fuzz_check_int(params, "steps", 1, 150);
        fuzz_check_int(params, "seed", 0, 4294967295.0);
        fuzz_assert(op.task.priority <= 9);

        cJSON_Delete(params);
    }

    cJSON_Delete(body);
    ngx_destroy_pool(pool);

    return 0;
}
