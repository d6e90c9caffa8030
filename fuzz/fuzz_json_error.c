
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The error body: whatever the client sent ends up in its message or
 * its field (an unknown field's name, a query parameter's name), and the
 * body must still be one JSON object that says the same.
 *
 * Input: the field, a NUL, the message; no NUL: a message, no field.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_util.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p, *nul, *last;
    ngx_uint_t   utf8;
    cJSON       *json, *error, *item;
    ngx_str_t    message, out;
    ngx_pool_t  *pool;
    const char  *field;

    pool = fuzz_pool();

    nul = memchr(data, '\0', size);

    if (nul) {
        field = (const char *) data;
        message.data = nul + 1;
        message.len = data + size - message.data;

    } else {
        field = NULL;
        message.data = (u_char *) data;
        message.len = size;
    }

    fuzz_assert(ngx_http_async_task_json_error(pool, &out, "invalid_argument",
                                               &message, field)
                == NGX_OK);

    /* JSON has no raw control characters in strings; cJSON lets them by */

    for (p = out.data; p < out.data + out.len; p++) {
        if (*p < 0x20) {
            fprintf(stderr, "FAULT: a raw control character in the error "
                    "body: \"%.*s\"\n", (int) out.len, out.data);
            abort();
        }
    }

    /* JSON is UTF-8 (RFC 8259, 8.1); cJSON does not check that either */

    for (p = out.data; p < out.data + out.len; /* void */) {
        if (*p < 0x80) {
            p++;

        } else if (ngx_http_async_task_util_utf8(&p, out.data + out.len)
                   == NGX_HTTP_ASYNC_TASK_UTF8_INVALID)
        {
            fprintf(stderr, "FAULT: the error body is not UTF-8: "
                    "\"%.*s\"\n", (int) out.len, out.data);
            abort();
        }
    }

    json = cJSON_ParseWithLength((char *) out.data, out.len);

    if (json == NULL) {
        fprintf(stderr, "FAULT: the error body is not valid JSON: \"%.*s\"\n",
                (int) out.len, out.data);
        abort();
    }

    error = cJSON_GetObjectItemCaseSensitive(json, "error");

    item = cJSON_GetObjectItemCaseSensitive(error, "code");
    fuzz_assert(cJSON_IsString(item));
    fuzz_assert(strcmp(item->valuestring, "invalid_argument") == 0);

    item = cJSON_GetObjectItemCaseSensitive(error, "message");
    fuzz_assert(cJSON_IsString(item));

    /*
     * the message reads back as sent, up to a NUL (cJSON's strings), if
     * it is UTF-8: U+FFFD stands for each byte that is not
     */

    utf8 = 1;

    for (p = message.data; p < message.data + message.len; /* void */) {
        if (ngx_http_async_task_util_utf8(&p, message.data + message.len)
            == NGX_HTTP_ASYNC_TASK_UTF8_INVALID)
        {
            utf8 = 0;
            break;
        }
    }

    fuzz_assert(strncmp(item->valuestring, (char *) message.data,
                        message.len) == 0
                || memchr(message.data, '\0', message.len) != NULL
                || !utf8);

    item = cJSON_GetObjectItemCaseSensitive(error, "field");

    if (field) {
        fuzz_assert(cJSON_IsString(item));

        /* as sent if UTF-8 and within the cap: else U+FFFD or cut */

        utf8 = 1;
        last = (u_char *) field + ngx_strlen(field);

        for (p = (u_char *) field; p < last; /* void */) {
            if (ngx_http_async_task_util_utf8(&p, last)
                == NGX_HTTP_ASYNC_TASK_UTF8_INVALID)
            {
                utf8 = 0;
                break;
            }
        }

        fuzz_assert(strcmp(item->valuestring, field) == 0
                    || !utf8
                    || ngx_strlen(field) > NGX_HTTP_ASYNC_TASK_JSON_FIELD_MAX);

    } else {
        fuzz_assert(item == NULL);
    }

    cJSON_Delete(json);
    ngx_destroy_pool(pool);

    return 0;
}
