
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/mman.h>

#include "ngx_http_async_task_upload.h"
#include "ngx_http_async_task_util.h"


#define NGX_HTTP_ASYNC_TASK_BOUNDARY_MAX    70
#define NGX_HTTP_ASYNC_TASK_HEADERS_MAX     8192
#define NGX_HTTP_ASYNC_TASK_COPY_BUFFER     65536
#define NGX_HTTP_ASYNC_TASK_IO_MAX          0x40000000
#define NGX_HTTP_ASYNC_TASK_WAV_HEADER      44


typedef struct {
    ngx_http_async_task_upload_t   *up;
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;

    ngx_fd_t                        src;
    off_t                           size;
    ngx_fd_t                        dst;
    off_t                           written;

    /* multipart: the mapped body and the file part within it */
    u_char                         *start;
    u_char                         *end;
    ngx_str_t                       delimiter;  /* "\n--boundary" */
    u_char                         *file_start;
    u_char                         *file_end;
    unsigned                        has_file:1;
} ngx_http_async_task_upload_ctx_t;


typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       filename;
    ngx_str_t                       content_type;   /* in the mapping */
    unsigned                        has_disposition:1;
    unsigned                        has_name:1;
    unsigned                        has_filename:1;
    unsigned                        has_content_type:1;
} ngx_http_async_task_upload_part_t;


static ngx_int_t ngx_http_async_task_upload_raw(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_pcm(
    ngx_http_async_task_upload_ctx_t *ctx);
static u_char *ngx_http_async_task_upload_le16(u_char *p, uint32_t n);
static u_char *ngx_http_async_task_upload_le32(u_char *p, uint32_t n);
static ngx_int_t ngx_http_async_task_upload_multipart(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_parse(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_delimiter(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *p, u_char **found,
    u_char **next);
static ngx_int_t ngx_http_async_task_upload_delimiter_end(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *p, u_char **next);
static ngx_int_t ngx_http_async_task_upload_headers(
    ngx_http_async_task_upload_ctx_t *ctx, u_char **pos,
    ngx_http_async_task_upload_part_t *part);
static ngx_int_t ngx_http_async_task_upload_header(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *p, u_char *last,
    ngx_http_async_task_upload_part_t *part);
static ngx_int_t ngx_http_async_task_upload_disposition(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *p, u_char *last,
    ngx_http_async_task_upload_part_t *part);
static ngx_int_t ngx_http_async_task_upload_param(
    ngx_http_async_task_upload_ctx_t *ctx, u_char **pos, u_char *last,
    ngx_str_t *value);
static ngx_int_t ngx_http_async_task_upload_part(
    ngx_http_async_task_upload_ctx_t *ctx,
    ngx_http_async_task_upload_part_t *part, u_char *start, u_char *end);
static ngx_int_t ngx_http_async_task_upload_malformed(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_cut_short(
    ngx_http_async_task_upload_ctx_t *ctx);
static const char *ngx_http_async_task_upload_message(ngx_pool_t *pool,
    const char *fmt, ngx_str_t *name);
static ngx_int_t ngx_http_async_task_upload_create(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_copy(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_write(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *buf, size_t size);
static ngx_int_t ngx_http_async_task_upload_finish(
    ngx_http_async_task_upload_ctx_t *ctx);
static ngx_int_t ngx_http_async_task_upload_sync_dir(
    ngx_http_async_task_upload_ctx_t *ctx);
static void ngx_http_async_task_upload_abort(
    ngx_http_async_task_upload_ctx_t *ctx);


void
ngx_http_async_task_upload_run(ngx_http_async_task_upload_t *up,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_int_t                          rc;
    ngx_file_info_t                    fi;
    ngx_http_async_task_upload_ctx_t   ctx;

    up->rc = NGX_ERROR;
    up->error = NULL;
    up->field = NULL;
    up->bytes = 0;

    ngx_memzero(&ctx, sizeof(ngx_http_async_task_upload_ctx_t));

    ctx.up = up;
    ctx.pool = pool;
    ctx.log = log;
    ctx.dst = NGX_INVALID_FILE;

    ctx.src = ngx_open_file(up->source.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                            0);

    if (ctx.src == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", up->source.data);
        return;
    }

    if (ngx_fd_info(ctx.src, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_fd_info_n " \"%s\" failed", up->source.data);
        rc = NGX_ERROR;
        goto done;
    }

    ctx.size = ngx_file_size(&fi);

    if (ctx.size == 0) {
        up->error = "the body is empty";
        rc = NGX_DECLINED;
        goto done;
    }

    switch (up->type) {

    case NGX_HTTP_ASYNC_TASK_UPLOAD_RAW:
        rc = ngx_http_async_task_upload_raw(&ctx);
        break;

    case NGX_HTTP_ASYNC_TASK_UPLOAD_PCM:
        rc = ngx_http_async_task_upload_pcm(&ctx);
        break;

    case NGX_HTTP_ASYNC_TASK_UPLOAD_MULTIPART:
        rc = ngx_http_async_task_upload_multipart(&ctx);
        break;

    default:
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "unknown upload type %ui", up->type);
        rc = NGX_ERROR;
    }

done:

    if (ngx_close_file(ctx.src) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", up->source.data);
    }

    up->rc = rc;
}


void
ngx_http_async_task_upload_remove(ngx_http_async_task_store_conf_t *conf,
    ngx_str_t *file, ngx_log_t *log)
{
    u_char     *p;
    ngx_err_t   err;
    u_char      path[NGX_MAX_PATH];

    if (file->len == 0) {
        return;
    }

    if (conf->files.len + 1 + file->len + 1 > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_CRIT, log, 0,
                      "too long file name \"%V/%V\"", &conf->files, file);
        return;
    }

    p = ngx_cpymem(path, conf->files.data, conf->files.len);
    *p++ = '/';
    p = ngx_cpymem(p, file->data, file->len);
    *p = '\0';

    if (ngx_delete_file(path) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_CRIT, log, err,
                          ngx_delete_file_n " \"%s\" failed", path);
        }
    }
}


static ngx_int_t
ngx_http_async_task_upload_raw(ngx_http_async_task_upload_ctx_t *ctx)
{
    if (ngx_http_async_task_upload_create(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_upload_copy(ctx) != NGX_OK) {
        ngx_http_async_task_upload_abort(ctx);
        return NGX_ERROR;
    }

    return ngx_http_async_task_upload_finish(ctx);
}


/*
 * The canonical 44-byte header: a RIFF chunk holding a 16-byte "fmt "
 * chunk (PCM, 16 bits) and the "data" chunk, which is the body as is.
 */

static ngx_int_t
ngx_http_async_task_upload_pcm(ngx_http_async_task_upload_ctx_t *ctx)
{
    u_char                        *p;
    uint32_t                       block, data;
    ngx_http_async_task_upload_t  *up;
    u_char                         header[NGX_HTTP_ASYNC_TASK_WAV_HEADER];

    up = ctx->up;

    if (up->channels == 0 || up->channels > 0x7fff
        || up->sample_rate == 0
        || up->sample_rate > 0xffffffff / (up->channels * 2))
    {
        ngx_log_error(NGX_LOG_ALERT, ctx->log, 0,
                      "invalid PCM format: %ui Hz, %ui channels",
                      up->sample_rate, up->channels);
        return NGX_ERROR;
    }

    block = (uint32_t) up->channels * 2;

    if (ctx->size % block) {
        up->error = "the body ends with a partial sample";
        return NGX_DECLINED;
    }

    if (ctx->size > (off_t) 0xffffffff - 36) {
        up->error = "the body is too large for a WAV file";
        return NGX_DECLINED;
    }

    data = (uint32_t) ctx->size;

    p = ngx_cpymem(header, "RIFF", 4);
    p = ngx_http_async_task_upload_le32(p, 36 + data);
    p = ngx_cpymem(p, "WAVEfmt ", 8);
    p = ngx_http_async_task_upload_le32(p, 16);
    p = ngx_http_async_task_upload_le16(p, 1);
    p = ngx_http_async_task_upload_le16(p, (uint32_t) up->channels);
    p = ngx_http_async_task_upload_le32(p, (uint32_t) up->sample_rate);
    p = ngx_http_async_task_upload_le32(p,
                                        (uint32_t) up->sample_rate * block);
    p = ngx_http_async_task_upload_le16(p, block);
    p = ngx_http_async_task_upload_le16(p, 16);
    p = ngx_cpymem(p, "data", 4);
    (void) ngx_http_async_task_upload_le32(p, data);

    if (ngx_http_async_task_upload_create(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_upload_write(ctx, header, sizeof(header))
        != NGX_OK
        || ngx_http_async_task_upload_copy(ctx) != NGX_OK)
    {
        ngx_http_async_task_upload_abort(ctx);
        return NGX_ERROR;
    }

    return ngx_http_async_task_upload_finish(ctx);
}


static u_char *
ngx_http_async_task_upload_le16(u_char *p, uint32_t n)
{
    *p++ = (u_char) (n & 0xff);
    *p++ = (u_char) ((n >> 8) & 0xff);

    return p;
}


static u_char *
ngx_http_async_task_upload_le32(u_char *p, uint32_t n)
{
    *p++ = (u_char) (n & 0xff);
    *p++ = (u_char) ((n >> 8) & 0xff);
    *p++ = (u_char) ((n >> 16) & 0xff);
    *p++ = (u_char) ((n >> 24) & 0xff);

    return p;
}


/*
 * The body is mapped rather than read: the parser walks it in place and
 * the file part goes from the mapping to the target with write(), so
 * only the pages being looked at are ever resident.  The whole body is
 * validated before the target is created.
 */

static ngx_int_t
ngx_http_async_task_upload_multipart(ngx_http_async_task_upload_ctx_t *ctx)
{
    u_char                        *p;
    size_t                         size;
    ngx_int_t                      rc;
    ngx_http_async_task_upload_t  *up;

    up = ctx->up;

    if (up->boundary.len == 0
        || up->boundary.len > NGX_HTTP_ASYNC_TASK_BOUNDARY_MAX)
    {
        up->error = "the multipart boundary is invalid";
        return NGX_DECLINED;
    }

    if ((uint64_t) ctx->size > (uint64_t) NGX_MAX_SIZE_T_VALUE) {
        up->error = "the body is too large";
        return NGX_DECLINED;
    }

    size = (size_t) ctx->size;

    p = ngx_pnalloc(ctx->pool, sizeof("\n--") - 1 + up->boundary.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->delimiter.data = p;

    p = ngx_cpymem(p, "\n--", sizeof("\n--") - 1);
    p = ngx_cpymem(p, up->boundary.data, up->boundary.len);

    ctx->delimiter.len = p - ctx->delimiter.data;

    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, ctx->src, 0);

    if (p == MAP_FAILED) {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      "mmap() \"%s\" failed", up->source.data);
        return NGX_ERROR;
    }

    (void) madvise(p, size, MADV_SEQUENTIAL);

    ctx->start = p;
    ctx->end = p + size;

    rc = ngx_http_async_task_upload_parse(ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_async_task_upload_create(ctx);

        if (rc == NGX_OK) {
            if (ngx_http_async_task_upload_write(ctx, ctx->file_start,
                                            ctx->file_end - ctx->file_start)
                == NGX_OK)
            {
                rc = ngx_http_async_task_upload_finish(ctx);

            } else {
                ngx_http_async_task_upload_abort(ctx);
                rc = NGX_ERROR;
            }
        }
    }

    if (munmap(ctx->start, size) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ctx->log, ngx_errno,
                      "munmap() \"%s\" failed", up->source.data);
    }

    return rc;
}


static ngx_int_t
ngx_http_async_task_upload_parse(ngx_http_async_task_upload_ctx_t *ctx)
{
    u_char                             *p, *last, *found, *next;
    size_t                              len;
    ngx_int_t                           rc, delimiter;
    ngx_http_async_task_upload_part_t   part;

    p = ctx->start;
    next = NULL;

    /* the first delimiter may open the body, with no line break before */

    delimiter = NGX_ERROR;
    len = ctx->delimiter.len - 1;

    if ((size_t) (ctx->end - p) >= len
        && ngx_memcmp(p, ctx->delimiter.data + 1, len) == 0)
    {
        delimiter = ngx_http_async_task_upload_delimiter_end(ctx, p + len,
                                                             &next);
    }

    if (delimiter == NGX_ERROR) {
        delimiter = ngx_http_async_task_upload_delimiter(ctx, p, &found,
                                                         &next);
    }

    if (delimiter == NGX_DECLINED) {
        return ngx_http_async_task_upload_cut_short(ctx);
    }

    while (delimiter != NGX_DONE) {

        p = next;

        ngx_memzero(&part, sizeof(ngx_http_async_task_upload_part_t));

        rc = ngx_http_async_task_upload_headers(ctx, &p, &part);
        if (rc != NGX_OK) {
            return rc;
        }

        /*
         * the search starts at the line feed that ends the headers,
         * so that a delimiter right after them ends an empty part
         */

        delimiter = ngx_http_async_task_upload_delimiter(ctx, p - 1, &found,
                                                         &next);

        if (delimiter == NGX_DECLINED) {
            return ngx_http_async_task_upload_cut_short(ctx);
        }

        last = found;

        if (last > p && last[-1] == '\r') {
            last--;
        }

        if (last < p) {
            last = p;
        }

        rc = ngx_http_async_task_upload_part(ctx, &part, p, last);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ctx->has_file) {
        ctx->up->error = "a \"file\" part is required";
        ctx->up->field = "file";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Finds the next "\n--boundary" from p that is followed by what makes it
 * a delimiter line.  Returns NGX_OK for a delimiter, NGX_DONE for the
 * closing one, NGX_DECLINED when the body ends first.
 */

static ngx_int_t
ngx_http_async_task_upload_delimiter(ngx_http_async_task_upload_ctx_t *ctx,
    u_char *p, u_char **found, u_char **next)
{
    u_char     *q;
    ngx_int_t   rc;

    for ( ;; ) {
        q = memmem(p, ctx->end - p, ctx->delimiter.data, ctx->delimiter.len);

        if (q == NULL) {
            return NGX_DECLINED;
        }

        rc = ngx_http_async_task_upload_delimiter_end(ctx,
                                                 q + ctx->delimiter.len, next);

        if (rc != NGX_ERROR) {
            *found = q;
            return rc;
        }

        p = q + 1;
    }
}


/*
 * What follows "--boundary": "--" closes the body, optional blanks and
 * a line break open a part, anything else means this was not a delimiter
 * (NGX_ERROR).  NGX_DECLINED when the body ends before it is known.
 */

static ngx_int_t
ngx_http_async_task_upload_delimiter_end(
    ngx_http_async_task_upload_ctx_t *ctx, u_char *p, u_char **next)
{
    u_char  *last;

    last = ctx->end;

    if (p == last) {
        return NGX_DECLINED;
    }

    if (*p == '-') {
        if (p + 1 == last) {
            return NGX_DECLINED;
        }

        if (p[1] != '-') {
            return NGX_ERROR;
        }

        *next = p + 2;
        return NGX_DONE;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < last && *p == '\r') {
        p++;
    }

    if (p == last) {
        return NGX_DECLINED;
    }

    if (*p != '\n') {
        return NGX_ERROR;
    }

    *next = p + 1;

    return NGX_OK;
}


/*
 * Part headers, up to and including the empty line; *pos is left at the
 * part's content.  Both CRLF and bare LF end a line.
 */

static ngx_int_t
ngx_http_async_task_upload_headers(ngx_http_async_task_upload_ctx_t *ctx,
    u_char **pos, ngx_http_async_task_upload_part_t *part)
{
    u_char     *p, *q, *last, *start;
    size_t      len, room;
    ngx_int_t   rc;

    start = *pos;
    p = start;

    for ( ;; ) {
        len = ctx->end - p;
        room = NGX_HTTP_ASYNC_TASK_HEADERS_MAX - (p - start);

        q = memchr(p, '\n', ngx_min(len, room));

        if (q == NULL) {
            if (len > room) {
                ctx->up->error = "the part headers are too long";
                return NGX_DECLINED;
            }

            return ngx_http_async_task_upload_cut_short(ctx);
        }

        last = q;

        if (last > p && last[-1] == '\r') {
            last--;
        }

        if (last == p) {
            break;
        }

        rc = ngx_http_async_task_upload_header(ctx, p, last, part);
        if (rc != NGX_OK) {
            return rc;
        }

        p = q + 1;
    }

    if (!part->has_name || part->name.len == 0) {
        ctx->up->error = "a part has no name";
        return NGX_DECLINED;
    }

    *pos = q + 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_upload_header(ngx_http_async_task_upload_ctx_t *ctx,
    u_char *p, u_char *last, ngx_http_async_task_upload_part_t *part)
{
    u_char  *colon, *name, *value;

    colon = memchr(p, ':', last - p);

    if (colon == NULL) {
        return ngx_http_async_task_upload_malformed(ctx);
    }

    name = colon;

    while (name > p && (name[-1] == ' ' || name[-1] == '\t')) {
        name--;
    }

    if (name == p) {
        return ngx_http_async_task_upload_malformed(ctx);
    }

    value = colon + 1;

    while (value < last && (*value == ' ' || *value == '\t')) {
        value++;
    }

    while (last > value && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (name - p == sizeof("Content-Disposition") - 1
        && ngx_strncasecmp(p, (u_char *) "Content-Disposition",
                           sizeof("Content-Disposition") - 1)
           == 0)
    {
        if (part->has_disposition) {
            return ngx_http_async_task_upload_malformed(ctx);
        }

        part->has_disposition = 1;

        return ngx_http_async_task_upload_disposition(ctx, value, last, part);
    }

    if (name - p == sizeof("Content-Type") - 1
        && ngx_strncasecmp(p, (u_char *) "Content-Type",
                           sizeof("Content-Type") - 1)
           == 0)
    {
        if (part->has_content_type) {
            return ngx_http_async_task_upload_malformed(ctx);
        }

        part->has_content_type = 1;
        part->content_type.data = value;
        part->content_type.len = last - value;
    }

    return NGX_OK;
}


/* form-data; name="..."; filename="..." */

static ngx_int_t
ngx_http_async_task_upload_disposition(ngx_http_async_task_upload_ctx_t *ctx,
    u_char *p, u_char *last, ngx_http_async_task_upload_part_t *part)
{
    u_char     *name;
    size_t      len;
    ngx_int_t   rc;
    ngx_str_t   value;

    if ((size_t) (last - p) < sizeof("form-data") - 1
        || ngx_strncasecmp(p, (u_char *) "form-data",
                           sizeof("form-data") - 1)
           != 0)
    {
        return ngx_http_async_task_upload_malformed(ctx);
    }

    p += sizeof("form-data") - 1;

    for ( ;; ) {

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == last) {
            return NGX_OK;
        }

        if (*p++ != ';') {
            return ngx_http_async_task_upload_malformed(ctx);
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == last) {
            return NGX_OK;
        }

        name = p;

        while (p < last && *p != '=' && *p != ';' && *p != '"'
               && *p != ' ' && *p != '\t')
        {
            p++;
        }

        len = p - name;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (len == 0 || p == last || *p++ != '=') {
            return ngx_http_async_task_upload_malformed(ctx);
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        rc = ngx_http_async_task_upload_param(ctx, &p, last, &value);

        if (rc == NGX_ABORT) {

            /* a file name goes to the instance: say which field is wrong */

            if (len == sizeof("filename") - 1
                && ngx_strncasecmp(name, (u_char *) "filename", len) == 0)
            {
                ctx->up->error = "filename must not contain control "
                                 "characters";
                ctx->up->field = "filename";
                return NGX_DECLINED;
            }

            return ngx_http_async_task_upload_malformed(ctx);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        if (len == sizeof("name") - 1
            && ngx_strncasecmp(name, (u_char *) "name", len) == 0)
        {
            if (part->has_name) {
                return ngx_http_async_task_upload_malformed(ctx);
            }

            part->has_name = 1;
            part->name = value;

        } else if (len == sizeof("filename") - 1
                   && ngx_strncasecmp(name, (u_char *) "filename", len) == 0)
        {
            if (part->has_filename) {
                return ngx_http_async_task_upload_malformed(ctx);
            }

            part->has_filename = 1;
            part->filename = value;
        }
    }
}


/*
 * A parameter value, a quoted string or a token, copied to the pool and
 * NUL-terminated.  In a quoted string only \" and \\ are escapes: user
 * agents send Windows paths with bare backslashes.  NGX_ABORT: a control
 * character.
 */

static ngx_int_t
ngx_http_async_task_upload_param(ngx_http_async_task_upload_ctx_t *ctx,
    u_char **pos, u_char *last, ngx_str_t *value)
{
    u_char  *p, *d, *start, ch;

    p = *pos;

    d = ngx_pnalloc(ctx->pool, last - p + 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    value->data = d;

    if (p < last && *p == '"') {
        p++;

        for ( ;; ) {
            if (p == last) {
                return ngx_http_async_task_upload_malformed(ctx);
            }

            ch = *p++;

            if (ch == '"') {
                break;
            }

            if (ch == '\\' && p < last && (*p == '"' || *p == '\\')) {
                ch = *p++;
            }

            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return NGX_ABORT;
            }

            *d++ = ch;
        }

    } else {
        start = p;

        while (p < last && *p != ';' && *p != ' ' && *p != '\t') {
            if (*p < 0x20 || *p == 0x7f) {
                return NGX_ABORT;
            }

            if (*p == '"') {
                return ngx_http_async_task_upload_malformed(ctx);
            }

            p++;
        }

        if (p == start) {
            return ngx_http_async_task_upload_malformed(ctx);
        }

        d = ngx_cpymem(d, start, p - start);
    }

    value->len = d - value->data;
    *d = '\0';

    *pos = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_upload_part(ngx_http_async_task_upload_ctx_t *ctx,
    ngx_http_async_task_upload_part_t *part, u_char *start, u_char *end)
{
    size_t                         len;
    ngx_str_t                     *name, *value;
    ngx_http_async_task_upload_t  *up;

    up = ctx->up;
    name = &part->name;
    len = end - start;

    if (name->len == sizeof("file") - 1
        && ngx_strncmp(name->data, "file", name->len) == 0)
    {
        if (ctx->has_file) {
            up->error = "duplicate \"file\" part";
            up->field = "file";
            return NGX_DECLINED;
        }

        if (len == 0) {
            up->error = "the file part is empty";
            up->field = "file";
            return NGX_DECLINED;
        }

        ctx->has_file = 1;
        ctx->file_start = start;
        ctx->file_end = end;

        if (part->has_filename && part->filename.len) {
            up->filename = part->filename;

        } else {
            ngx_str_set(&up->filename, "audio");
        }

        if (part->has_content_type && part->content_type.len) {
            up->content_type.len = part->content_type.len;
            up->content_type.data = ngx_pnalloc(ctx->pool,
                                                part->content_type.len);
            if (up->content_type.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(up->content_type.data, part->content_type.data,
                       part->content_type.len);

        } else {
            ngx_str_set(&up->content_type, "application/octet-stream");
        }

        return NGX_OK;
    }

    if (name->len == sizeof("language") - 1
        && ngx_strncmp(name->data, "language", name->len) == 0)
    {
        if (up->has_language) {
            goto duplicate;
        }

        up->has_language = 1;
        value = &up->language;

    } else if (name->len == sizeof("prompt") - 1
               && ngx_strncmp(name->data, "prompt", name->len) == 0)
    {
        if (up->has_prompt) {
            goto duplicate;
        }

        up->has_prompt = 1;
        value = &up->prompt;

    } else if (name->len == sizeof("priority") - 1
               && ngx_strncmp(name->data, "priority", name->len) == 0)
    {
        if (up->has_priority) {
            goto duplicate;
        }

        up->has_priority = 1;
        value = &up->priority;

    } else {
        up->error = ngx_http_async_task_upload_message(ctx->pool,
                                                "unknown part \"%V\"%Z", name);
        if (up->error == NULL) {
            return NGX_ERROR;
        }

        up->field = (const char *) name->data;
        return NGX_DECLINED;
    }

    /* characters are counted later: here, at most 4 bytes each */

    if (len > 4 * NGX_HTTP_ASYNC_TASK_FIELD_MAX) {
        up->error = ngx_http_async_task_upload_message(ctx->pool,
                                                       "%V is too long%Z",
                                                       name);
        if (up->error == NULL) {
            return NGX_ERROR;
        }

        up->field = (const char *) name->data;
        return NGX_DECLINED;
    }

    value->len = len;
    value->data = ngx_pnalloc(ctx->pool, len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(value->data, start, len) = '\0';

    return NGX_OK;

duplicate:

    up->error = ngx_http_async_task_upload_message(ctx->pool,
                                                   "duplicate \"%V\" part%Z",
                                                   name);
    if (up->error == NULL) {
        return NGX_ERROR;
    }

    up->field = (const char *) name->data;
    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_async_task_upload_malformed(ngx_http_async_task_upload_ctx_t *ctx)
{
    ctx->up->error = "a part has malformed headers";
    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_async_task_upload_cut_short(ngx_http_async_task_upload_ctx_t *ctx)
{
    ctx->up->error = "the multipart body is cut short";
    return NGX_DECLINED;
}


/* fmt has one "%V" for the part name and ends with "%Z" */

static const char *
ngx_http_async_task_upload_message(ngx_pool_t *pool, const char *fmt,
    ngx_str_t *name)
{
    u_char  *p;

    p = ngx_pnalloc(pool, ngx_strlen(fmt) + name->len);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(p, fmt, name);

    return (const char *) p;
}


static ngx_int_t
ngx_http_async_task_upload_create(ngx_http_async_task_upload_ctx_t *ctx)
{
    ctx->dst = ngx_open_file(ctx->up->target.data, NGX_FILE_WRONLY,
                             NGX_FILE_CREATE_OR_OPEN|O_EXCL,
                             NGX_HTTP_ASYNC_TASK_FILE_ACCESS);

    if (ctx->dst == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", ctx->up->target.data);
        return NGX_ERROR;
    }

    ctx->written = 0;

    return NGX_OK;
}


/*
 * Appends the whole body to the target: in the kernel with
 * copy_file_range() where the file systems allow it, else through
 * a 64 KiB buffer.
 */

static ngx_int_t
ngx_http_async_task_upload_copy(ngx_http_async_task_upload_ctx_t *ctx)
{
    off_t       offset;
    u_char     *buf;
    size_t      size;
    ssize_t     n;
    ngx_err_t   err;

    offset = 0;

#if (NGX_LINUX)

    while (offset < ctx->size) {
        size = (size_t) ngx_min(ctx->size - offset,
                                NGX_HTTP_ASYNC_TASK_IO_MAX);

        n = copy_file_range(ctx->src, &offset, ctx->dst, NULL, size, 0);

        if (n > 0) {
            ctx->written += n;
            continue;
        }

        if (n == 0) {
            goto truncated;
        }

        err = ngx_errno;

        if (err == NGX_EINTR) {
            continue;
        }

        if (err == NGX_ENOSYS || err == NGX_EXDEV || err == NGX_EINVAL
            || err == NGX_EOPNOTSUPP)
        {
            break;
        }

        ngx_log_error(NGX_LOG_CRIT, ctx->log, err,
                      "copy_file_range() \"%s\" to \"%s\" failed",
                      ctx->up->source.data, ctx->up->target.data);
        return NGX_ERROR;
    }

    if (offset == ctx->size) {
        return NGX_OK;
    }

#endif

    buf = ngx_palloc(ctx->pool, NGX_HTTP_ASYNC_TASK_COPY_BUFFER);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    while (offset < ctx->size) {
        size = (size_t) ngx_min(ctx->size - offset,
                                NGX_HTTP_ASYNC_TASK_COPY_BUFFER);

        n = pread(ctx->src, buf, size, offset);

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            ngx_log_error(NGX_LOG_CRIT, ctx->log, err,
                          "pread() \"%s\" failed", ctx->up->source.data);
            return NGX_ERROR;
        }

        if (n == 0) {
            goto truncated;
        }

        if (ngx_http_async_task_upload_write(ctx, buf, n) != NGX_OK) {
            return NGX_ERROR;
        }

        offset += n;
    }

    return NGX_OK;

truncated:

    ngx_log_error(NGX_LOG_CRIT, ctx->log, 0,
                  "file \"%s\" was truncated to %O bytes while copied",
                  ctx->up->source.data, offset);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_async_task_upload_write(ngx_http_async_task_upload_ctx_t *ctx,
    u_char *buf, size_t size)
{
    ssize_t    n;
    ngx_err_t  err;

    while (size) {
        n = ngx_write_fd(ctx->dst, buf,
                         ngx_min(size, NGX_HTTP_ASYNC_TASK_IO_MAX));

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            ngx_log_error(NGX_LOG_CRIT, ctx->log, err,
                          ngx_write_fd_n " \"%s\" failed",
                          ctx->up->target.data);
            return NGX_ERROR;
        }

        if (n == 0) {
            ngx_log_error(NGX_LOG_CRIT, ctx->log, 0,
                          ngx_write_fd_n " \"%s\" has written nothing",
                          ctx->up->target.data);
            return NGX_ERROR;
        }

        buf += n;
        size -= n;
        ctx->written += n;
    }

    return NGX_OK;
}


/* the task's 202 promises that the file outlives a crash */

static ngx_int_t
ngx_http_async_task_upload_finish(ngx_http_async_task_upload_ctx_t *ctx)
{
    ngx_fd_t  fd;

    if (fsync(ctx->dst) == -1) {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      "fsync() \"%s\" failed", ctx->up->target.data);
        ngx_http_async_task_upload_abort(ctx);
        return NGX_ERROR;
    }

    fd = ctx->dst;
    ctx->dst = NGX_INVALID_FILE;

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed",
                      ctx->up->target.data);
        ngx_http_async_task_upload_abort(ctx);
        return NGX_ERROR;
    }

    if (ngx_http_async_task_upload_sync_dir(ctx) != NGX_OK) {
        ngx_http_async_task_upload_abort(ctx);
        return NGX_ERROR;
    }

    ctx->up->bytes = ctx->written;

    return NGX_OK;
}


/* the new directory entry is made durable too */

static ngx_int_t
ngx_http_async_task_upload_sync_dir(ngx_http_async_task_upload_ctx_t *ctx)
{
    u_char  *name, *slash;
    size_t   len;

    name = ctx->up->target.data;
    slash = (u_char *) strrchr((char *) name, '/');

    if (slash == NULL) {
        name = (u_char *) ".";

    } else {
        len = (slash == name) ? 1 : (size_t) (slash - name);

        name = ngx_pnalloc(ctx->pool, len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem(name, ctx->up->target.data, len) = '\0';
    }

    return ngx_http_async_task_util_sync_dir(name, ctx->log);
}


static void
ngx_http_async_task_upload_abort(ngx_http_async_task_upload_ctx_t *ctx)
{
    if (ctx->dst != NGX_INVALID_FILE) {
        if (ngx_close_file(ctx->dst) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, ctx->log, ngx_errno,
                          ngx_close_file_n " \"%s\" failed",
                          ctx->up->target.data);
        }

        ctx->dst = NGX_INVALID_FILE;
    }

    if (ngx_delete_file(ctx->up->target.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, ctx->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed",
                      ctx->up->target.data);
    }
}
