
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/random.h>
#include <cjson/cJSON.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_protocol.h"
#include "ngx_http_async_task_conn.h"
#include "ngx_http_async_task_util.h"


/*
 * The wire protocols of the GPU servers: OpenAI's images and audio
 * transcription APIs, as stable-diffusion.cpp's sd-server, LocalAI,
 * speaches and whisper.cpp's server speak them, sd-server's own way of
 * taking image options inside the prompt, AUTOMATIC1111's txt2img (Forge,
 * SD.Next, sd-server's /sdapi) and whisper.cpp's own /inference
 * (docs/architecture.md, "The wire protocols").
 */


#define NGX_HTTP_ASYNC_TASK_SCAN_BLOCK   (64 * 1024)
#define NGX_HTTP_ASYNC_TASK_BOUNDARY_TRIES  8


/*
 * The text of a speech request's parts, made safe: no control byte in
 * any, no quote or backslash in the file name, a Content-Type of token
 * characters or the default.  The store is not trusted for this.
 */

typedef struct {
    char                           *language;
    char                           *prompt;
    char                           *filename;
    char                           *type;
} ngx_http_async_task_speech_parts_t;


static ngx_chain_t *ngx_http_async_task_protocol_image_request(
    ngx_http_async_task_run_t *run, ngx_uint_t sdcpp);
static char *ngx_http_async_task_protocol_image(
    ngx_http_async_task_backend_t *backend, cJSON *params, ngx_uint_t sdcpp);
static void ngx_http_async_task_protocol_inert(char *text);
static char *ngx_http_async_task_protocol_a1111(cJSON *params);
static ngx_chain_t *ngx_http_async_task_protocol_json_request(
    ngx_http_async_task_run_t *run, ngx_str_t *path, char *body);
static ngx_chain_t *ngx_http_async_task_protocol_speech_request(
    ngx_http_async_task_run_t *run, ngx_str_t *path, ngx_uint_t model);
static ngx_chain_t *ngx_http_async_task_protocol_speech(
    ngx_http_async_task_run_t *run, cJSON *params, ngx_str_t *path,
    ngx_uint_t model);
static void ngx_http_async_task_protocol_speech_parts(cJSON *params,
    ngx_http_async_task_speech_parts_t *sp);
static void ngx_http_async_task_protocol_clean(char *text, ngx_uint_t name);
static ngx_int_t ngx_http_async_task_protocol_random(u_char *boundary);
static ngx_uint_t ngx_http_async_task_protocol_in_parts(u_char *boundary,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_speech_parts_t *sp);
static ngx_int_t ngx_http_async_task_protocol_in_file(u_char *boundary,
    ngx_fd_t fd, off_t size, ngx_log_t *log);
static u_char *ngx_http_async_task_protocol_part(u_char *p,
    ngx_str_t *boundary, const char *name, const char *value);
static void ngx_http_async_task_protocol_base64_png(
    ngx_http_async_task_run_t *run, cJSON *b64, const char *name,
    ngx_log_t *log);
static void ngx_http_async_task_protocol_transcript(
    ngx_http_async_task_run_t *run, ngx_uint_t segments);
static ngx_int_t ngx_http_async_task_protocol_text(ngx_pool_t *pool,
    char *text, ngx_str_t *out);


static ngx_str_t  ngx_http_async_task_image_path =
    ngx_string("/v1/images/generations");
static ngx_str_t  ngx_http_async_task_speech_path =
    ngx_string("/v1/audio/transcriptions");
static ngx_str_t  ngx_http_async_task_a1111_path =
    ngx_string("/sdapi/v1/txt2img");
static ngx_str_t  ngx_http_async_task_whispercpp_path =
    ngx_string("/inference");


/*
 * In a thread, before a speech run: a boundary that occurs in none of
 * the request's parts, the audio file included; "" if none was found
 * (the request then picks one and checks only the text parts).
 */

void
ngx_http_async_task_protocol_boundary(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    u_char                              *boundary;
    cJSON                               *params;
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_http_async_task_speech_parts_t   sp;

    boundary = run->boundary;
    boundary[0] = '\0';

    params = cJSON_ParseWithLength((char *) run->task->params.data,
                                   run->task->params.len);
    if (params == NULL) {
        return;
    }

    ngx_http_async_task_protocol_speech_parts(params, &sp);

    for (i = 0; i < NGX_HTTP_ASYNC_TASK_BOUNDARY_TRIES; i++) {

        if (ngx_http_async_task_protocol_random(boundary) != NGX_OK) {
            break;
        }

        if (ngx_http_async_task_protocol_in_parts(boundary, run->backend,
                                                  &sp))
        {
            continue;
        }

        rc = ngx_http_async_task_protocol_in_file(boundary, run->fd,
                                                  run->size, log);

        if (rc == NGX_DECLINED) {
            cJSON_Delete(params);
            return;
        }

        if (rc == NGX_ERROR) {
            break;
        }
    }

    boundary[0] = '\0';

    cJSON_Delete(params);
}


/* in the event loop, as a claimed task starts: OpenAI's images API */

ngx_chain_t *
ngx_http_async_task_protocol_openai_image(ngx_http_async_task_run_t *run)
{
    return ngx_http_async_task_protocol_image_request(run, 0);
}


/* the same, with sd-server's own options inside the prompt */

ngx_chain_t *
ngx_http_async_task_protocol_sdcpp_image(ngx_http_async_task_run_t *run)
{
    return ngx_http_async_task_protocol_image_request(run, 1);
}


static ngx_chain_t *
ngx_http_async_task_protocol_image_request(ngx_http_async_task_run_t *run,
    ngx_uint_t sdcpp)
{
    char   *body;
    cJSON  *params;

    params = cJSON_ParseWithLength((char *) run->task->params.data,
                                   run->task->params.len);
    if (params == NULL) {
        return NULL;
    }

    body = ngx_http_async_task_protocol_image(run->backend, params, sdcpp);

    cJSON_Delete(params);

    return ngx_http_async_task_protocol_json_request(run,
                                             &ngx_http_async_task_image_path,
                                             body);
}


/* AUTOMATIC1111's txt2img: the options as fields of their own */

ngx_chain_t *
ngx_http_async_task_protocol_a1111_image(ngx_http_async_task_run_t *run)
{
    char   *body;
    cJSON  *params;

    params = cJSON_ParseWithLength((char *) run->task->params.data,
                                   run->task->params.len);
    if (params == NULL) {
        return NULL;
    }

    body = ngx_http_async_task_protocol_a1111(params);

    cJSON_Delete(params);

    return ngx_http_async_task_protocol_json_request(run,
                                             &ngx_http_async_task_a1111_path,
                                             body);
}


/* a POST of a JSON body made by cJSON, which is freed here */

static ngx_chain_t *
ngx_http_async_task_protocol_json_request(ngx_http_async_task_run_t *run,
    ngx_str_t *path, char *body)
{
    size_t      len;
    ngx_buf_t  *b;

    if (body == NULL) {
        return NULL;
    }

    len = ngx_strlen(body);

    b = ngx_http_async_task_protocol_head(run, "POST", path,
                                          "application/json", NULL, len, len);
    if (b == NULL) {
        cJSON_free(body);
        return NULL;
    }

    b->last = ngx_cpymem(b->last, body, len);

    cJSON_free(body);

    return ngx_http_async_task_protocol_chain(run->pool, b);
}


/* the transcriptions API: multipart/form-data */

ngx_chain_t *
ngx_http_async_task_protocol_openai_speech(ngx_http_async_task_run_t *run)
{
    return ngx_http_async_task_protocol_speech_request(run,
                                           &ngx_http_async_task_speech_path, 1);
}


/* whisper.cpp's server: the same parts, but its model is its own */

ngx_chain_t *
ngx_http_async_task_protocol_whispercpp_speech(ngx_http_async_task_run_t *run)
{
    return ngx_http_async_task_protocol_speech_request(run,
                                       &ngx_http_async_task_whispercpp_path, 0);
}


static ngx_chain_t *
ngx_http_async_task_protocol_speech_request(ngx_http_async_task_run_t *run,
    ngx_str_t *path, ngx_uint_t model)
{
    cJSON        *params;
    ngx_chain_t  *cl;

    params = cJSON_ParseWithLength((char *) run->task->params.data,
                                   run->task->params.len);
    if (params == NULL) {
        return NULL;
    }

    cl = ngx_http_async_task_protocol_speech(run, params, path, model);

    cJSON_Delete(params);

    return cl;
}


ngx_chain_t *
ngx_http_async_task_protocol_chain(ngx_pool_t *pool, ngx_buf_t *b)
{
    ngx_chain_t  *cl;

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/*
 * The request line and headers, with room for "extra" bytes after them.
 * Without a type (a GET), there is neither Content-Type nor
 * Content-Length.
 */

ngx_buf_t *
ngx_http_async_task_protocol_head(ngx_http_async_task_run_t *run,
    const char *method, ngx_str_t *path, const char *type,
    ngx_str_t *boundary, off_t length, size_t extra)
{
    ngx_buf_t                       *b;
    ngx_http_async_task_instance_t  *in;

    in = run->instance;

    b = ngx_create_temp_buf(run->pool,
                            sizeof(" " " HTTP/1.1" CRLF
                                   "Content-Type: ; boundary=" CRLF
                                   "Content-Length: " CRLF
                                   "Accept: application/json" CRLF
                                   "User-Agent: ngx_async_task" CRLF
                                   "Connection: keep-alive" CRLF CRLF)
                            + ngx_strlen(method) + path->len
                            + ngx_http_async_task_conn_headers_len(
                                                         run->backend, in)
                            + (type ? ngx_strlen(type) : 0)
                            + (boundary ? boundary->len : 0)
                            + NGX_OFF_T_LEN + extra);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_sprintf(b->last, "%s %V HTTP/1.1" CRLF, method, path);
    b->last = ngx_http_async_task_conn_headers(b->last, run->backend, in);

    if (type) {
        b->last = ngx_sprintf(b->last, "Content-Type: %s", type);

        if (boundary) {
            b->last = ngx_sprintf(b->last, "; boundary=%V", boundary);
        }

        b->last = ngx_sprintf(b->last, CRLF "Content-Length: %O" CRLF,
                              length);
    }

    b->last = ngx_sprintf(b->last, "Accept: application/json" CRLF
                          "User-Agent: ngx_async_task" CRLF
                          "Connection: %s" CRLF CRLF,
                          run->backend->keepalive ? "keep-alive" : "close");

    return b;
}


static char *
ngx_http_async_task_protocol_image(ngx_http_async_task_backend_t *backend,
    cJSON *params, ngx_uint_t sdcpp)
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

    /* the only options block sd-server finds is ours */

    ngx_http_async_task_protocol_inert(p_prompt->valuestring);

    if (cJSON_IsString(p_negative)) {
        ngx_http_async_task_protocol_inert(p_negative->valuestring);
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

    if (sdcpp) {

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

    if (!sdcpp) {

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
 * txt2img's body: prompt, negative_prompt, width, height, steps, seed,
 * cfg_scale, batch_size 1.  sd-server's /sdapi reads the prompt as its
 * other endpoints do: the user's text opens no options block there either.
 */

static char *
ngx_http_async_task_protocol_a1111(cJSON *params)
{
    char        *body;
    cJSON       *req, *item;
    ngx_uint_t   i;

    static const char  *copied[] = { "negative_prompt", "width", "height",
                                     "steps", "seed", "cfg_scale", NULL };

    item = cJSON_GetObjectItemCaseSensitive(params, "prompt");

    if (!cJSON_IsString(item)
        || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(params, "width"))
        || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(params,
                                                            "height")))
    {
        return NULL;
    }

    ngx_http_async_task_protocol_inert(item->valuestring);

    req = cJSON_CreateObject();
    if (req == NULL) {
        return NULL;
    }

    body = NULL;

    if (!cJSON_AddItemToObject(req, "prompt", cJSON_Duplicate(item, 0))) {
        goto done;
    }

    for (i = 0; copied[i]; i++) {
        item = cJSON_GetObjectItemCaseSensitive(params, copied[i]);

        if (item == NULL || cJSON_IsNull(item)) {
            continue;
        }

        if (cJSON_IsString(item)) {
            ngx_http_async_task_protocol_inert(item->valuestring);
        }

        if (!cJSON_AddItemToObject(req, copied[i], cJSON_Duplicate(item, 0))) {
            goto done;
        }
    }

    if (cJSON_AddNumberToObject(req, "batch_size", 1) == NULL) {
        goto done;
    }

    body = cJSON_PrintUnformatted(req);

done:

    cJSON_Delete(req);

    return body;
}


/*
 * sd-server takes its options from the first <sd_cpp_extra_args> block
 * in the prompt: in the user's text, no tag can open or close one
 * (stored tasks may predate the check at submission).
 */

static void
ngx_http_async_task_protocol_inert(char *text)
{
    u_char  *r, *w;

    for (r = (u_char *) text, w = r; *r; r++) {

        if (*r == '<'
            && (ngx_strncasecmp(r + 1, (u_char *) "sd_cpp_extra_args",
                                sizeof("sd_cpp_extra_args") - 1) == 0
                || ngx_strncasecmp(r + 1, (u_char *) "/sd_cpp_extra_args",
                                   sizeof("/sd_cpp_extra_args") - 1) == 0))
        {
            continue;
        }

        *w++ = *r;
    }

    *w = '\0';
}


/*
 * multipart/form-data: the text parts, then the audio file part sent
 * from disk (a file buffer: sendfile), then the closing delimiter.
 */

static ngx_chain_t *
ngx_http_async_task_protocol_speech(ngx_http_async_task_run_t *run,
    cJSON *params, ngx_str_t *path, ngx_uint_t model)
{
    u_char                              *p, *ready;
    off_t                                size;
    size_t                               len;
    ngx_fd_t                             fd;
    ngx_buf_t                           *head, *file, *tail;
    ngx_str_t                            boundary;
    ngx_uint_t                           i;
    ngx_pool_t                          *pool;
    ngx_chain_t                         *cl, *cl2, *cl3;
    ngx_http_async_task_backend_t       *backend;
    ngx_http_async_task_speech_parts_t   sp;

    pool = run->pool;
    backend = run->backend;
    ready = run->boundary;
    fd = run->fd;
    size = run->size;

    ngx_http_async_task_protocol_speech_parts(params, &sp);

    boundary.len = NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN;
    boundary.data = ngx_pnalloc(pool, boundary.len + 1);
    if (boundary.data == NULL) {
        return NULL;
    }

    /* the one checked against the file too, else one of our own */

    if (ready && ready[0]
        && !ngx_http_async_task_protocol_in_parts(ready, backend, &sp))
    {
        ngx_memcpy(boundary.data, ready, boundary.len + 1);

    } else {
        for (i = 0; /* void */ ; i++) {
            if (i == NGX_HTTP_ASYNC_TASK_BOUNDARY_TRIES
                || ngx_http_async_task_protocol_random(boundary.data)
                   != NGX_OK)
            {
                return NULL;
            }

            if (!ngx_http_async_task_protocol_in_parts(boundary.data,
                                                       backend, &sp))
            {
                break;
            }
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "async task protocol: boundary %V", &boundary);

    len = 5 * (boundary.len + sizeof("--" CRLF "Content-Disposition: "
                                     "form-data; name=\"\"" CRLF CRLF CRLF)
               + sizeof("response_format"))
          + backend->model.len + sizeof("verbose_json")
          + (sp.language ? ngx_strlen(sp.language) : 0)
          + (sp.prompt ? ngx_strlen(sp.prompt) : 0)
          + sizeof("; filename=\"\"" CRLF "Content-Type: ")
          + ngx_strlen(sp.filename) + ngx_strlen(sp.type);

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

    if (model && backend->model.len) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "model",
                                              (char *) backend->model.data);
    }

    p = ngx_http_async_task_protocol_part(p, &boundary, "response_format",
                                          "verbose_json");

    if (sp.language) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "language",
                                              sp.language);
    }

    if (sp.prompt) {
        p = ngx_http_async_task_protocol_part(p, &boundary, "prompt",
                                              sp.prompt);
    }

    p = ngx_sprintf(p, "--%V" CRLF "Content-Disposition: form-data; "
                    "name=\"file\"; filename=\"%s\"" CRLF
                    "Content-Type: %s" CRLF CRLF, &boundary, sp.filename,
                    sp.type);

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

    cl->buf = ngx_http_async_task_protocol_head(run, "POST", path,
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


/* the parts' text from the task's params, cleaned in the parsed tree */

static void
ngx_http_async_task_protocol_speech_parts(cJSON *params,
    ngx_http_async_task_speech_parts_t *sp)
{
    u_char  *p;
    cJSON   *item;

    item = cJSON_GetObjectItemCaseSensitive(params, "language");
    sp->language = cJSON_IsString(item) ? item->valuestring : NULL;

    item = cJSON_GetObjectItemCaseSensitive(params, "prompt");
    sp->prompt = cJSON_IsString(item) ? item->valuestring : NULL;

    item = cJSON_GetObjectItemCaseSensitive(params, "filename");
    sp->filename = "audio";

    if (cJSON_IsString(item) && item->valuestring[0]) {
        ngx_http_async_task_protocol_clean(item->valuestring, 1);
        sp->filename = item->valuestring;
    }

    item = cJSON_GetObjectItemCaseSensitive(params, "content_type");
    sp->type = "application/octet-stream";

    if (cJSON_IsString(item) && item->valuestring[0]) {

        /* "type/subtype" and parameters: token characters, ";", "=", " " */

        for (p = (u_char *) item->valuestring; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9')
                  || ngx_strchr("!#$%&'*+-.^_`|~/;= ", *p)))
            {
                break;
            }
        }

        if (*p == '\0') {
            sp->type = item->valuestring;
        }
    }

    if (sp->language) {
        ngx_http_async_task_protocol_clean(sp->language, 0);
    }

    if (sp->prompt) {
        ngx_http_async_task_protocol_clean(sp->prompt, 0);
    }
}


/*
 * No control byte reaches the wire: a space in text, "_" in a file name,
 * which can not leave its quotes either.
 */

static void
ngx_http_async_task_protocol_clean(char *text, ngx_uint_t name)
{
    u_char  *p;

    for (p = (u_char *) text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = name ? '_' : ' ';

        } else if (name && (*p == '"' || *p == '\\')) {
            *p = '_';
        }
    }
}


/* "ngx-async-task-" and 128 bits from the kernel's random source */

static ngx_int_t
ngx_http_async_task_protocol_random(u_char *boundary)
{
    u_char  *p;
    u_char   bits[16];

    if (getrandom(bits, sizeof(bits), 0) != (ssize_t) sizeof(bits)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "getrandom() failed");
        return NGX_ERROR;
    }

    p = ngx_cpymem(boundary, "ngx-async-task-",
                   sizeof("ngx-async-task-") - 1);
    p = ngx_hex_dump(p, bits, sizeof(bits));
    *p = '\0';

    return NGX_OK;
}


static ngx_uint_t
ngx_http_async_task_protocol_in_parts(u_char *boundary,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_speech_parts_t *sp)
{
    char  *b = (char *) boundary;

    return (backend->model.len && ngx_strstr(backend->model.data, b))
           || (sp->language && ngx_strstr(sp->language, b))
           || (sp->prompt && ngx_strstr(sp->prompt, b))
           || ngx_strstr(sp->filename, b) || ngx_strstr(sp->type, b);
}


/* NGX_DECLINED: the boundary is not in the file; NGX_OK: it is */

static ngx_int_t
ngx_http_async_task_protocol_in_file(u_char *boundary, ngx_fd_t fd,
    off_t size, ngx_log_t *log)
{
    off_t     offset;
    size_t    keep, have;
    ssize_t   n;
    u_char    buf[NGX_HTTP_ASYNC_TASK_SCAN_BLOCK];

    /* each block starts with the end of the previous one */

    keep = 0;

    for (offset = 0; offset < size; offset += n) {

        n = pread(fd, buf + keep, sizeof(buf) - keep, offset);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "pread() of a task's input failed");
            return NGX_ERROR;
        }

        if (n == 0) {
            break;
        }

        have = keep + n;

        if (memmem(buf, have, boundary, NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN)
            != NULL)
        {
            return NGX_OK;
        }

        keep = ngx_min(have, NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN - 1);
        ngx_memmove(buf, buf + have - keep, keep);
    }

    return NGX_DECLINED;
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
 * In a pool thread: NGX_OK for a whole 2xx answer; otherwise the outcome
 * says what the exchange means for the task (NGX_DECLINED).
 */

ngx_int_t
ngx_http_async_task_protocol_answer(ngx_http_async_task_run_t *run)
{
    cJSON                          *json, *error, *message, *detail;
    ngx_pool_t                     *pool;
    const char                     *text;
    ngx_http_async_task_outcome_t  *out;

    out = &run->outcome;
    pool = run->pool;

    switch (out->result) {

    case ngx_http_async_task_client_ok:
        break;

    case ngx_http_async_task_client_refused:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_requeue,
                                          "backend_error", pool,
                                          "the instance could not be reached");
        return NGX_DECLINED;

    case ngx_http_async_task_client_tls:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "backend_error", pool,
                                          "the TLS handshake with the "
                                          "instance failed, or its "
                                          "certificate did not verify");
        return NGX_DECLINED;

    case ngx_http_async_task_client_aborted:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_requeue,
                                          "backend_error", pool,
                                          "nginx is shutting down");
        return NGX_DECLINED;

    case ngx_http_async_task_client_timeout:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "timeout", pool,
                                          "the instance did not answer "
                                          "in time");
        return NGX_DECLINED;

    case ngx_http_async_task_client_too_big:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the answer is larger than the "
                                          "limit of %uz bytes",
                          run->max_response
                          ? run->max_response
                          : ngx_http_async_task_kind(run->task->kind)
                                ->answer_max);
        return NGX_DECLINED;

    case ngx_http_async_task_client_headers_too_big:
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the answer's header block is "
                                          "larger than %d bytes",
                                          NGX_HTTP_ASYNC_TASK_HEADERS_MAX);
        return NGX_DECLINED;

    default: /* ngx_http_async_task_client_broken */
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "backend_error", pool,
                                          "the connection failed before "
                                          "a complete answer");
        return NGX_DECLINED;
    }

    if (out->status >= 400) {

        /* the instance's own words, when it gives them */

        json = cJSON_ParseWithLength((char *) out->body.data, out->body.len);

        text = NULL;
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        message = cJSON_GetObjectItemCaseSensitive(error, "message");
        detail = cJSON_GetObjectItemCaseSensitive(json, "detail");

        if (cJSON_IsString(message)) {
            text = message->valuestring;

        } else if (cJSON_IsString(detail)) {
            /* FastAPI's servers: A1111, speaches */
            text = detail->valuestring;

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
        return NGX_DECLINED;
    }

    if (out->status < 200 || out->status >= 300) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "the instance's answer is not "
                                          "the expected JSON (status %ui)",
                                          out->status);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* in a pool thread: a whole 2xx JSON answer, or NULL and the outcome */

cJSON *
ngx_http_async_task_protocol_verdict(ngx_http_async_task_run_t *run)
{
    cJSON  *json;

    if (ngx_http_async_task_protocol_answer(run) != NGX_OK) {
        return NULL;
    }

    json = cJSON_ParseWithLength((char *) run->outcome.body.data,
                                 run->outcome.body.len);

    if (json == NULL) {
        ngx_http_async_task_protocol_fail(&run->outcome,
                                          ngx_http_async_task_run_error,
                                          "bad_response", run->pool,
                                          "the instance's answer is not "
                                          "the expected JSON (status %ui)",
                                          run->outcome.status);
    }

    return json;
}


/* an image answer of OpenAI's API: the PNG is data[0].b64_json */

void
ngx_http_async_task_protocol_image_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    cJSON  *json, *data;

    json = ngx_http_async_task_protocol_verdict(run);
    if (json == NULL) {
        return;
    }

    data = cJSON_GetObjectItemCaseSensitive(json, "data");

    ngx_http_async_task_protocol_base64_png(run,
               cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0),
                                                "b64_json"),
               "data[0].b64_json", log);

    cJSON_Delete(json);
}


/* txt2img's answer: the PNG is images[0], in base64 */

void
ngx_http_async_task_protocol_a1111_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    cJSON  *json;

    json = ngx_http_async_task_protocol_verdict(run);
    if (json == NULL) {
        return;
    }

    ngx_http_async_task_protocol_base64_png(run,
               cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json,
                                                                   "images"),
                                  0),
               "images[0]", log);

    cJSON_Delete(json);
}


static void
ngx_http_async_task_protocol_base64_png(ngx_http_async_task_run_t *run,
    cJSON *b64, const char *name, ngx_log_t *log)
{
    ngx_str_t  src, png;

    if (!cJSON_IsString(b64)) {
        ngx_http_async_task_protocol_fail(&run->outcome,
                                          ngx_http_async_task_run_error,
                                          "bad_response", run->pool,
                                          "the answer has no %s", name);
        return;
    }

    src.data = (u_char *) b64->valuestring;
    src.len = ngx_strlen(b64->valuestring);

    /* decoded in place: the PNG is shorter than its base64 */

    png.data = src.data;

    if (ngx_decode_base64(&png, &src) != NGX_OK
        || ngx_http_async_task_protocol_png(run, &png, log) == NGX_DECLINED)
    {
        ngx_http_async_task_protocol_fail(&run->outcome,
                                          ngx_http_async_task_run_error,
                                          "bad_response", run->pool,
                                          "%s is not a base64 PNG", name);
    }
}


/*
 * In a pool thread: an image the task's result, written to files= under
 * this run's own name (durably, before DONE is).  NGX_DECLINED: it is
 * not a PNG, and the outcome is left to the caller; otherwise the
 * outcome is set, done or not.
 */

ngx_int_t
ngx_http_async_task_protocol_png(ngx_http_async_task_run_t *run,
    ngx_str_t *png, ngx_log_t *log)
{
    u_char                         *p;
    ssize_t                         n;
    ngx_fd_t                        fd;
    ngx_pool_t                     *pool;
    ngx_http_async_task_outcome_t  *out;
    u_char                          path[NGX_MAX_PATH];

    static u_char  signature[] = "\x89PNG\r\n\x1a\n";

    if (png->len < sizeof(signature) - 1
        || ngx_memcmp(png->data, signature, sizeof(signature) - 1) != 0)
    {
        return NGX_DECLINED;
    }

    out = &run->outcome;
    pool = run->pool;

    out->file.len = NGX_HTTP_ASYNC_TASK_ID_LEN + sizeof(".png") - 1;
    out->file.data = ngx_pnalloc(pool, out->file.len);
    if (out->file.data == NULL) {
        goto failed;
    }

    ngx_sprintf(out->file.data, "%*s.png", NGX_HTTP_ASYNC_TASK_ID_LEN,
                run->task->id);

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

    for (p = png->data; p < png->data + png->len; p += n) {
        n = write(fd, p, png->data + png->len - p);

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

    (void) ngx_http_async_task_util_sync_dir(out->files->data, log);

    out->output.data = ngx_pnalloc(pool,
                                   sizeof("{\"content_type\":\"image/png\","
                                          "\"bytes\":}") + NGX_SIZE_T_LEN);
    if (out->output.data == NULL) {
        (void) ngx_delete_file(path);
        goto failed;
    }

    out->output.len = ngx_sprintf(out->output.data,
                                  "{\"content_type\":\"image/png\","
                                  "\"bytes\":%uz}", png->len)
                      - out->output.data;

    out->run = ngx_http_async_task_run_done;

    return NGX_OK;

failed:

    /*
     * A result that cannot be kept (a full disk) is retried as a failed
     * run: with backoff, and charged, so that it ends.
     */

    ngx_str_null(&out->file);

    ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                      "backend_error", pool,
                                      "the result could not be stored");
    return NGX_ERROR;
}


/* a transcription answer: "text", and the details OpenAI's API gives */

void
ngx_http_async_task_protocol_speech_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    ngx_http_async_task_protocol_transcript(run, 0);
}


/*
 * whisper.cpp's verbose_json, as the same result object: its segments
 * keep the fields OpenAI's have (not its words, say), its other keys
 * (task, detected_language, ...) are left out
 */

void
ngx_http_async_task_protocol_whispercpp_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    ngx_http_async_task_protocol_transcript(run, 1);
}


static void
ngx_http_async_task_protocol_transcript(ngx_http_async_task_run_t *run,
    ngx_uint_t segments)
{
    char         *text;
    cJSON        *json, *result, *item, *list, *seg, *copy, *field;
    const char  **f, **g;

    static const char  *fields[] = { "language", "duration", "segments",
                                     NULL };
    static const char  *openai[] = { "id", "seek", "start", "end", "text",
                                     "tokens", "temperature", "avg_logprob",
                                     "compression_ratio", "no_speech_prob",
                                     NULL };

    json = ngx_http_async_task_protocol_verdict(run);
    if (json == NULL) {
        return;
    }

    item = cJSON_GetObjectItemCaseSensitive(json, "text");

    if (!cJSON_IsString(item)) {
        ngx_http_async_task_protocol_fail(&run->outcome,
                                          ngx_http_async_task_run_error,
                                          "bad_response", run->pool,
                                          "the answer has no \"text\"");
        cJSON_Delete(json);
        return;
    }

    result = cJSON_CreateObject();
    if (result == NULL) {
        goto failed;
    }

    cJSON_AddItemToObject(result, "text", cJSON_Duplicate(item, 0));

    for (f = fields; *f; f++) {
        item = cJSON_GetObjectItemCaseSensitive(json, *f);

        if (item == NULL || cJSON_IsNull(item)) {
            continue;
        }

        if (!segments || !cJSON_IsArray(item)
            || ngx_strcmp(*f, "segments") != 0)
        {
            cJSON_AddItemToObject(result, *f, cJSON_Duplicate(item, 1));
            continue;
        }

        list = cJSON_AddArrayToObject(result, "segments");
        if (list == NULL) {
            cJSON_Delete(result);
            goto failed;
        }

        cJSON_ArrayForEach(seg, item) {

            if (!cJSON_IsObject(seg)) {
                cJSON_AddItemToArray(list, cJSON_Duplicate(seg, 1));
                continue;
            }

            copy = cJSON_CreateObject();
            if (copy == NULL) {
                cJSON_Delete(result);
                goto failed;
            }

            cJSON_AddItemToArray(list, copy);

            for (g = openai; *g; g++) {
                field = cJSON_GetObjectItemCaseSensitive(seg, *g);

                if (field) {
                    cJSON_AddItemToObject(copy, *g,
                                          cJSON_Duplicate(field, 1));
                }
            }
        }
    }

    text = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);

    if (text == NULL
        || ngx_http_async_task_protocol_text(run->pool, text,
                                             &run->outcome.output)
           != NGX_OK)
    {
        goto failed;
    }

    run->outcome.run = ngx_http_async_task_run_done;

    cJSON_Delete(json);

    return;

failed:

    cJSON_Delete(json);

    ngx_http_async_task_protocol_fail(&run->outcome,
                                      ngx_http_async_task_run_requeue,
                                      "backend_error", run->pool,
                                      "the result could not be stored");
}


void
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
