
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_async_task_protocol.h"


/*
 * The wire protocols of the GPU servers (research/backend-protocols.md):
 * OpenAI's images and audio transcription APIs, as stable-diffusion.cpp's
 * sd-server, LocalAI, speaches and whisper.cpp's server speak them, and
 * sd-server's own way of taking image options inside the prompt.
 */


#define NGX_HTTP_ASYNC_TASK_MESSAGE_MAX  200


static ngx_buf_t *ngx_http_async_task_protocol_head(ngx_pool_t *pool,
    ngx_str_t *path, ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, const char *type,
    ngx_str_t *boundary, off_t length, size_t extra);
static char *ngx_http_async_task_protocol_image(
    ngx_http_async_task_backend_t *backend, cJSON *params);
static ngx_chain_t *ngx_http_async_task_protocol_speech(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, cJSON *params, ngx_fd_t fd,
    off_t size);
static u_char *ngx_http_async_task_protocol_part(u_char *p,
    ngx_str_t *boundary, const char *name, const char *value);
static void ngx_http_async_task_protocol_image_done(
    ngx_http_async_task_t *task, ngx_http_async_task_outcome_t *out,
    cJSON *json, ngx_pool_t *pool, ngx_log_t *log);
static void ngx_http_async_task_protocol_speech_done(
    ngx_http_async_task_outcome_t *out, cJSON *json, ngx_pool_t *pool);
static void ngx_http_async_task_protocol_fail(
    ngx_http_async_task_outcome_t *out, ngx_http_async_task_run_e run,
    const char *code, ngx_pool_t *pool, const char *fmt, ...);
static ngx_int_t ngx_http_async_task_protocol_text(ngx_pool_t *pool,
    char *text, ngx_str_t *out);


static ngx_str_t  ngx_http_async_task_image_path =
    ngx_string("/v1/images/generations");
static ngx_str_t  ngx_http_async_task_speech_path =
    ngx_string("/v1/audio/transcriptions");


/* on the event loop, as a claimed task starts */

ngx_chain_t *
ngx_http_async_task_protocol_request(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_t *task,
    ngx_fd_t fd, off_t size)
{
    char         *body;
    cJSON        *params;
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    params = cJSON_ParseWithLength((char *) task->params.data,
                                   task->params.len);
    if (params == NULL) {
        return NULL;
    }

    if (task->kind == NGX_HTTP_ASYNC_TASK_SPEECH) {
        cl = ngx_http_async_task_protocol_speech(pool, backend, in, params,
                                                 fd, size);
        cJSON_Delete(params);
        return cl;
    }

    body = ngx_http_async_task_protocol_image(backend, params);

    cJSON_Delete(params);

    if (body == NULL) {
        return NULL;
    }

    len = ngx_strlen(body);

    b = ngx_http_async_task_protocol_head(pool,
                                          &ngx_http_async_task_image_path,
                                          backend, in, "application/json",
                                          NULL, len, len);
    if (b == NULL) {
        cJSON_free(body);
        return NULL;
    }

    b->last = ngx_cpymem(b->last, body, len);

    cJSON_free(body);

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/* the request line and headers, with room for "extra" bytes after them */

static ngx_buf_t *
ngx_http_async_task_protocol_head(ngx_pool_t *pool, ngx_str_t *path,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, const char *type,
    ngx_str_t *boundary, off_t length, size_t extra)
{
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(pool, sizeof("POST  HTTP/1.1" CRLF
                                         "Host: " CRLF
                                         "Content-Type: ; boundary=" CRLF
                                         "Content-Length: " CRLF
                                         "Accept: application/json" CRLF
                                         "User-Agent: ngx_async_task" CRLF
                                         "Connection: keep-alive" CRLF CRLF)
                                  + path->len + in->server.len
                                  + ngx_strlen(type)
                                  + (boundary ? boundary->len : 0)
                                  + NGX_OFF_T_LEN + extra);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_sprintf(b->last, "POST %V HTTP/1.1" CRLF
                          "Host: %V" CRLF "Content-Type: %s",
                          path, &in->server, type);

    if (boundary) {
        b->last = ngx_sprintf(b->last, "; boundary=%V", boundary);
    }

    b->last = ngx_sprintf(b->last, CRLF "Content-Length: %O" CRLF
                          "Accept: application/json" CRLF
                          "User-Agent: ngx_async_task" CRLF
                          "Connection: %s" CRLF CRLF, length,
                          backend->keepalive ? "keep-alive" : "close");

    return b;
}


static char *
ngx_http_async_task_protocol_image(ngx_http_async_task_backend_t *backend,
    cJSON *params)
{
    char   *body, *extra_text;
    cJSON  *req, *extra, *sample, *guidance, *item;
    u_char  size[NGX_INT_T_LEN * 2 + 2];
    u_char *prompt;
    size_t  len;

    cJSON  *p_prompt, *p_negative, *p_width, *p_height, *p_steps, *p_seed,
           *p_cfg;

    p_prompt = cJSON_GetObjectItemCaseSensitive(params, "prompt");
    p_negative = cJSON_GetObjectItemCaseSensitive(params, "negative_prompt");
    p_width = cJSON_GetObjectItemCaseSensitive(params, "width");
    p_height = cJSON_GetObjectItemCaseSensitive(params, "height");
    p_steps = cJSON_GetObjectItemCaseSensitive(params, "steps");
    p_seed = cJSON_GetObjectItemCaseSensitive(params, "seed");
    p_cfg = cJSON_GetObjectItemCaseSensitive(params, "cfg_scale");

    if (!cJSON_IsString(p_prompt) || !cJSON_IsNumber(p_width)
        || !cJSON_IsNumber(p_height))
    {
        return NULL;
    }

    req = cJSON_CreateObject();
    if (req == NULL) {
        return NULL;
    }

    body = NULL;

    if (backend->model.len
        && cJSON_AddItemToObject(req, "model",
               cJSON_CreateStringReference((char *) backend->model.data))
           == 0)
    {
        goto done;
    }

    if (backend->protocol == NGX_HTTP_ASYNC_TASK_PROTO_SDCPP) {

        /* sd-server reads its own options from inside the prompt */

        extra = cJSON_CreateObject();
        if (extra == NULL) {
            goto done;
        }

        if (p_negative) {
            cJSON_AddItemToObject(extra, "negative_prompt",
                                  cJSON_Duplicate(p_negative, 0));
        }

        if (p_seed) {
            cJSON_AddItemToObject(extra, "seed", cJSON_Duplicate(p_seed, 0));
        }

        sample = cJSON_AddObjectToObject(extra, "sample_params");

        if (sample && p_steps) {
            cJSON_AddItemToObject(sample, "sample_steps",
                                  cJSON_Duplicate(p_steps, 0));
        }

        if (sample && p_cfg) {
            guidance = cJSON_AddObjectToObject(sample, "guidance");
            if (guidance) {
                cJSON_AddItemToObject(guidance, "txt_cfg",
                                      cJSON_Duplicate(p_cfg, 0));
            }
        }

        extra_text = cJSON_PrintUnformatted(extra);
        cJSON_Delete(extra);

        if (extra_text == NULL) {
            goto done;
        }

        len = ngx_strlen(p_prompt->valuestring) + ngx_strlen(extra_text)
              + sizeof(" <sd_cpp_extra_args></sd_cpp_extra_args>");

        prompt = ngx_alloc(len, ngx_cycle->log);
        if (prompt == NULL) {
            cJSON_free(extra_text);
            goto done;
        }

        ngx_sprintf(prompt, "%s <sd_cpp_extra_args>%s</sd_cpp_extra_args>%Z",
                    p_prompt->valuestring, extra_text);

        cJSON_free(extra_text);

        item = cJSON_AddStringToObject(req, "prompt", (char *) prompt);
        ngx_free(prompt);

        if (item == NULL) {
            goto done;
        }

    } else {
        cJSON_AddItemToObject(req, "prompt", cJSON_Duplicate(p_prompt, 0));
    }

    cJSON_AddNumberToObject(req, "n", 1);

    ngx_sprintf(size, "%dx%d%Z", p_width->valueint, p_height->valueint);
    cJSON_AddStringToObject(req, "size", (char *) size);
    cJSON_AddStringToObject(req, "response_format", "b64_json");

    if (backend->protocol == NGX_HTTP_ASYNC_TASK_PROTO_OPENAI) {

        if (p_negative) {
            cJSON_AddItemToObject(req, "negative_prompt",
                                  cJSON_Duplicate(p_negative, 0));
        }

        if (p_seed) {
            cJSON_AddItemToObject(req, "seed", cJSON_Duplicate(p_seed, 0));
        }

        if (p_steps) {
            cJSON_AddItemToObject(req, "steps", cJSON_Duplicate(p_steps, 0));
        }

        if (p_cfg) {
            cJSON_AddItemToObject(req, "cfg_scale",
                                  cJSON_Duplicate(p_cfg, 0));
        }
    }

    body = cJSON_PrintUnformatted(req);

done:

    cJSON_Delete(req);

    return body;
}


/*
 * multipart/form-data: the text parts, then the audio file part sent
 * from disk (a file buffer: sendfile), then the closing delimiter.
 */

static ngx_chain_t *
ngx_http_async_task_protocol_speech(ngx_pool_t *pool,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, cJSON *params, ngx_fd_t fd,
    off_t size)
{
    u_char       *p;
    cJSON        *language, *prompt, *filename, *type;
    size_t        len;
    ngx_buf_t    *head, *file, *tail;
    ngx_str_t     boundary;
    ngx_chain_t  *cl, *cl2, *cl3;
    u_char       *name;

    language = cJSON_GetObjectItemCaseSensitive(params, "language");
    prompt = cJSON_GetObjectItemCaseSensitive(params, "prompt");
    filename = cJSON_GetObjectItemCaseSensitive(params, "filename");
    type = cJSON_GetObjectItemCaseSensitive(params, "content_type");

    boundary.len = sizeof("ngx-async-task-") - 1 + 16;
    boundary.data = ngx_pnalloc(pool, boundary.len);
    if (boundary.data == NULL) {
        return NULL;
    }

    ngx_sprintf(boundary.data, "ngx-async-task-%08xD%08xD",
                (uint32_t) ngx_random(), (uint32_t) ngx_random());

    /* a file name can not break out of its quotes */

    len = cJSON_IsString(filename) ? ngx_strlen(filename->valuestring) : 0;

    name = ngx_pnalloc(pool, len + sizeof("audio"));
    if (name == NULL) {
        return NULL;
    }

    if (len) {
        for (p = (u_char *) filename->valuestring; *p; p++) {
            name[p - (u_char *) filename->valuestring] =
                         (*p == '"' || *p == '\r' || *p == '\n' || *p == '\\')
                         ? '_' : *p;
        }

        name[len] = '\0';

    } else {
        ngx_cpystrn(name, (u_char *) "audio", sizeof("audio"));
    }

    len = 5 * (boundary.len + sizeof("--" CRLF "Content-Disposition: "
                                     "form-data; name=\"\"" CRLF CRLF CRLF)
               + sizeof("response_format"))
          + backend->model.len + sizeof("verbose_json")
          + (cJSON_IsString(language) ? ngx_strlen(language->valuestring) : 0)
          + (cJSON_IsString(prompt) ? ngx_strlen(prompt->valuestring) : 0)
          + sizeof("; filename=\"\"" CRLF "Content-Type: ") + ngx_strlen(name)
          + (cJSON_IsString(type) ? ngx_strlen(type->valuestring) : 0)
          + sizeof("application/octet-stream");

    tail = ngx_create_temp_buf(pool, boundary.len + sizeof(CRLF "----" CRLF));
    if (tail == NULL) {
        return NULL;
    }

    tail->last = ngx_sprintf(tail->last, CRLF "--%V--" CRLF, &boundary);

    /* the parts first, in a buffer of their own, to know the length */

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NULL;
    }

    head = ngx_calloc_buf(pool);
    if (head == NULL) {
        return NULL;
    }

    head->pos = p;
    head->start = p;
    head->temporary = 1;

    if (backend->model.len) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "model",
                                              (char *) backend->model.data);
    }

    p = ngx_http_async_task_protocol_part(p, &boundary, "response_format",
                                          "verbose_json");

    if (cJSON_IsString(language)) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "language",
                                              language->valuestring);
    }

    if (cJSON_IsString(prompt)) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "prompt",
                                              prompt->valuestring);
    }

    p = ngx_sprintf(p, "--%V" CRLF "Content-Disposition: form-data; "
                    "name=\"file\"; filename=\"%s\"" CRLF
                    "Content-Type: %s" CRLF CRLF, &boundary, name,
                    cJSON_IsString(type) ? type->valuestring
                                         : "application/octet-stream");

    head->last = p;
    head->end = p;

    cl = ngx_alloc_chain_link(pool);
    cl2 = ngx_alloc_chain_link(pool);
    cl3 = ngx_alloc_chain_link(pool);
    file = ngx_calloc_buf(pool);

    if (cl == NULL || cl2 == NULL || cl3 == NULL || file == NULL) {
        return NULL;
    }

    file->file = ngx_pcalloc(pool, sizeof(ngx_file_t));
    if (file->file == NULL) {
        return NULL;
    }

    file->in_file = 1;
    file->file_pos = 0;
    file->file_last = size;
    file->file->fd = fd;
    file->file->log = pool->log;
    ngx_str_set(&file->file->name, "audio");

    /* the request line and headers go in front of the parts */

    cl->buf = ngx_http_async_task_protocol_head(pool,
                     &ngx_http_async_task_speech_path, backend, in,
                     "multipart/form-data", &boundary,
                     (head->last - head->pos) + size
                     + (tail->last - tail->pos), 0);
    if (cl->buf == NULL) {
        return NULL;
    }

    cl->next = cl2;
    cl2->buf = head;
    cl2->next = cl3;
    cl3->buf = file;

    cl3->next = ngx_alloc_chain_link(pool);
    if (cl3->next == NULL) {
        return NULL;
    }

    cl3->next->buf = tail;
    cl3->next->next = NULL;

    return cl;
}


static u_char *
ngx_http_async_task_protocol_part(u_char *p, ngx_str_t *boundary,
    const char *name, const char *value)
{
    return ngx_sprintf(p, "--%V" CRLF "Content-Disposition: form-data; "
                       "name=\"%s\"" CRLF CRLF "%s" CRLF,
                       boundary, name, value);
}


/*
 * In a pool thread: what the instance's answer means for the task, and
 * for an image, the PNG written to files= (durably, before DONE is).
 */

void
ngx_http_async_task_protocol_response(ngx_http_async_task_t *task,
    ngx_http_async_task_outcome_t *out, ngx_pool_t *pool, ngx_log_t *log)
{
    cJSON       *json, *error, *message;
    const char  *text;

    switch (out->result) {

    case ngx_http_async_task_client_ok:
        break;

    case ngx_http_async_task_client_refused:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_requeue,
                                          "backend_error", pool,
                                          "the instance could not be reached");
        return;

    case ngx_http_async_task_client_aborted:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_requeue,
                                          "backend_error", pool,
                                          "nginx is shutting down");
        return;

    case ngx_http_async_task_client_timeout:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "timeout", pool,
                                          "the instance did not answer "
                                          "in time");
        return;

    case ngx_http_async_task_client_too_big:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the answer is too large");
        return;

    default: /* ngx_http_async_task_client_broken */
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "backend_error", pool,
                                          "the connection failed before "
                                          "a complete answer");
        return;
    }

    json = cJSON_ParseWithLength((char *) out->body.data, out->body.len);

    if (out->status >= 400) {

        /* the instance's own words, when it gives them */

        text = NULL;
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        message = cJSON_GetObjectItemCaseSensitive(error, "message");

        if (cJSON_IsString(message)) {
            text = message->valuestring;

        } else if (cJSON_IsString(error)) {
            text = error->valuestring;
        }

        ngx_http_async_task_protocol_fail(out,
                       out->status < 500 ? ngx_http_async_task_run_failed
                                         : ngx_http_async_task_run_error,
                       out->status < 500 ? "backend_rejected"
                                         : "backend_error",
                       pool, "the instance answered %ui%s%*s",
                       out->status, text ? ": " : "",
                       text ? ngx_min(ngx_strlen(text),
                                      NGX_HTTP_ASYNC_TASK_MESSAGE_MAX)
                            : (size_t) 0,
                       text ? text : "");
        cJSON_Delete(json);
        return;
    }

    if (out->status < 200 || out->status >= 300 || json == NULL) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the instance's answer is not "
                                          "the expected JSON (status %ui)",
                                          out->status);
        cJSON_Delete(json);
        return;
    }

    if (task->kind == NGX_HTTP_ASYNC_TASK_IMAGE) {
        ngx_http_async_task_protocol_image_done(task, out, json, pool, log);

    } else {
        ngx_http_async_task_protocol_speech_done(out, json, pool);
    }

    cJSON_Delete(json);
}


static void
ngx_http_async_task_protocol_image_done(ngx_http_async_task_t *task,
    ngx_http_async_task_outcome_t *out, cJSON *json, ngx_pool_t *pool,
    ngx_log_t *log)
{
    u_char     *p;
    cJSON      *data, *b64;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t   src, png;
    u_char      path[NGX_MAX_PATH];

    static u_char  signature[] = "\x89PNG\r\n\x1a\n";

    data = cJSON_GetObjectItemCaseSensitive(json, "data");
    b64 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0),
                                           "b64_json");

    if (!cJSON_IsString(b64)) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the answer has no "
                                          "data[0].b64_json");
        return;
    }

    src.data = (u_char *) b64->valuestring;
    src.len = ngx_strlen(b64->valuestring);

    png.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len));
    if (png.data == NULL) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool, "no memory");
        return;
    }

    if (ngx_decode_base64(&png, &src) != NGX_OK
        || png.len < sizeof(signature) - 1
        || ngx_memcmp(png.data, signature, sizeof(signature) - 1) != 0)
    {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "data[0].b64_json is not "
                                          "a base64 PNG");
        return;
    }

    out->file.len = NGX_HTTP_ASYNC_TASK_ID_LEN + sizeof(".png") - 1;
    out->file.data = ngx_pnalloc(pool, out->file.len);
    if (out->file.data == NULL) {
        goto failed;
    }

    ngx_sprintf(out->file.data, "%*s.png", NGX_HTTP_ASYNC_TASK_ID_LEN,
                task->id);

    if (out->files->len + 1 + out->file.len + out->suffix.len
        >= NGX_MAX_PATH)
    {
        goto failed;
    }

    /* the run's own file: the store renames it once it takes the outcome */

    ngx_sprintf(path, "%V/%V%V%Z", out->files, &out->file, &out->suffix);

    fd = ngx_open_file(path, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_HTTP_ASYNC_TASK_FILE_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path);
        goto failed;
    }

    for (p = png.data; p < png.data + png.len; p += n) {
        n = write(fd, p, png.data + png.len - p);

        if (n == -1) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          "write() \"%s\" failed", path);
            (void) ngx_close_file(fd);
            (void) ngx_delete_file(path);
            goto failed;
        }
    }

    /* the result is on disk, name and all, before the task says DONE */

    if (fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "fsync() \"%s\" failed", path);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(path);
        goto failed;
    }

    (void) ngx_close_file(fd);

    fd = ngx_open_file(out->files->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        if (fsync(fd) == -1) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          "fsync() \"%V\" failed", out->files);
        }

        (void) ngx_close_file(fd);
    }

    out->output.data = ngx_pnalloc(pool,
                                   sizeof("{\"content_type\":\"image/png\","
                                          "\"bytes\":}") + NGX_SIZE_T_LEN);
    if (out->output.data == NULL) {
        (void) ngx_delete_file(path);
        goto failed;
    }

    out->output.len = ngx_sprintf(out->output.data,
                                  "{\"content_type\":\"image/png\","
                                  "\"bytes\":%uz}", png.len)
                      - out->output.data;

    out->run = ngx_http_async_task_run_done;

    return;

failed:

    /*
     * A result that cannot be kept (a full disk) is retried as a failed
     * run: with backoff, and charged, so that it ends.
     */

    ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                      "backend_error", pool,
                                      "the result could not be stored");
}


static void
ngx_http_async_task_protocol_speech_done(ngx_http_async_task_outcome_t *out,
    cJSON *json, ngx_pool_t *pool)
{
    char   *text;
    cJSON  *result, *item;

    static const char  *fields[] = { "language", "duration", "segments",
                                     NULL };
    const char        **f;

    item = cJSON_GetObjectItemCaseSensitive(json, "text");

    if (!cJSON_IsString(item)) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the answer has no \"text\"");
        return;
    }

    result = cJSON_CreateObject();
    if (result == NULL) {
        goto failed;
    }

    cJSON_AddItemToObject(result, "text", cJSON_Duplicate(item, 0));

    for (f = fields; *f; f++) {
        item = cJSON_GetObjectItemCaseSensitive(json, *f);

        if (item && !cJSON_IsNull(item)) {
            cJSON_AddItemToObject(result, *f, cJSON_Duplicate(item, 1));
        }
    }

    text = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);

    if (text == NULL
        || ngx_http_async_task_protocol_text(pool, text, &out->output)
           != NGX_OK)
    {
        goto failed;
    }

    out->run = ngx_http_async_task_run_done;

    return;

failed:

    ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_requeue,
                                      "backend_error", pool,
                                      "the result could not be stored");
}


static void
ngx_http_async_task_protocol_fail(ngx_http_async_task_outcome_t *out,
    ngx_http_async_task_run_e run, const char *code, ngx_pool_t *pool,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    text[NGX_HTTP_ASYNC_TASK_MESSAGE_MAX + 64];

    out->run = run;
    out->code = code;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    out->message.data = ngx_pnalloc(pool, p - text);

    if (out->message.data) {
        out->message.len = p - text;
        ngx_memcpy(out->message.data, text, out->message.len);
    }
}


static ngx_int_t
ngx_http_async_task_protocol_text(ngx_pool_t *pool, char *text,
    ngx_str_t *out)
{
    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data) {
        ngx_memcpy(out->data, text, out->len);
    }

    cJSON_free(text);

    return out->data ? NGX_OK : NGX_ERROR;
}
