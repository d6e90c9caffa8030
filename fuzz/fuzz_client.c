
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * The response parser of the outbound HTTP client: the status line,
 * the headers, a Content-Length, chunked or until-close body, fed to
 * ngx_http_async_task_client_read() in pieces through a connection whose
 * recv() hands out the input, as a socket would.  Every answer ends
 * (the input ends with the connection), and a complete one has its
 * body inside what was read and within max_response.
 *
 * Input: max_response (1 byte, x 64), the size of the first buffer
 * (1 byte), the size of each read (1 byte), the bytes of the answer.
 */

#include "fuzz_common.h"

#include "ngx_http_async_task_client.c"


static const u_char  *fuzz_pos;
static const u_char  *fuzz_last;
static size_t         fuzz_read;


static ssize_t
fuzz_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    n = ngx_min(size, fuzz_read);
    n = ngx_min(n, (size_t) (fuzz_last - fuzz_pos));

    ngx_memcpy(buf, fuzz_pos, n);
    fuzz_pos += n;

    return n;
}


static void
fuzz_done(ngx_http_async_task_client_t *hc)
{
    /* the outcome is read by the harness */
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t                      name = ngx_string("fuzz");
    ngx_pool_t                    *pool;
    ngx_event_t                    rev;
    ngx_connection_t               c;
    ngx_http_async_task_client_t   hc;

    if (size < 3) {
        return 0;
    }

    pool = fuzz_pool();

    ngx_memzero(&hc, sizeof(ngx_http_async_task_client_t));
    ngx_memzero(&c, sizeof(ngx_connection_t));
    ngx_memzero(&rev, sizeof(ngx_event_t));

    hc.pool = pool;
    hc.log = &fuzz_log;
    hc.max_response = (size_t) data[0] * 64;
    hc.handler = fuzz_done;
    hc.content_length = -1;
    hc.sent = 1;
    hc.connected = 1;
    hc.peer.name = &name;
    hc.peer.connection = &c;

    hc.raw = ngx_create_temp_buf(pool, 1 + data[1]);
    fuzz_assert(hc.raw != NULL);

    /* closed by the client: a descriptor of -1 makes that a no-op */

    c.fd = (ngx_socket_t) -1;
    c.log = &fuzz_log;
    c.data = &hc;
    c.recv = fuzz_recv;
    c.read = &rev;
    rev.data = &c;

    fuzz_read = 1 + data[2];
    fuzz_pos = data + 3;
    fuzz_last = data + size;

    ngx_http_async_task_client_read(&rev);

    fuzz_assert(hc.done);

    if (hc.result == ngx_http_async_task_client_ok) {
        fuzz_assert(hc.status >= 100 && hc.status <= 599);
        fuzz_assert(hc.body.len <= hc.max_response);
        fuzz_assert(hc.body.len == 0
                    || (hc.body.data >= hc.raw->start
                        && hc.body.data + hc.body.len <= hc.raw->last));

        if (!hc.chunked && hc.content_length >= 0) {
            fuzz_assert(hc.body.len == (size_t) hc.content_length);
        }

        fuzz_touch(&hc.body);

    } else {
        fuzz_assert(hc.result == ngx_http_async_task_client_broken
                    || hc.result == ngx_http_async_task_client_too_big
                    || hc.result
                       == ngx_http_async_task_client_headers_too_big);
    }

    ngx_destroy_pool(pool);

    return 0;
}
