
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include <cjson/cJSON.h>

#include "ngx_http_async_task_api.h"
#include "ngx_http_async_task_dispatch.h"
#include "ngx_http_async_task_id.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_request.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_submit.h"
#include "ngx_http_async_task_upload.h"
#include "ngx_http_async_task_util.h"
#include "ngx_http_async_task_variables.h"


/* a JSON submission is small: its fields are limited to FIELD_MAX */
#define NGX_HTTP_ASYNC_TASK_JSON_KIB       64
#define NGX_HTTP_ASYNC_TASK_JSON_MAX       (NGX_HTTP_ASYNC_TASK_JSON_KIB * 1024)

#define NGX_HTTP_ASYNC_TASK_PRIORITY       5
#define NGX_HTTP_ASYNC_TASK_PRIORITY_MAX   9
#define NGX_HTTP_ASYNC_TASK_CFG_SCALE_MAX  30

/* raw PCM: the sample rates taken, and the default with its channels */
#define NGX_HTTP_ASYNC_TASK_RATE_MIN       8000
#define NGX_HTTP_ASYNC_TASK_RATE_MAX       48000
#define NGX_HTTP_ASYNC_TASK_RATE           16000
#define NGX_HTTP_ASYNC_TASK_CHANNELS       1

#define NGX_HTTP_ASYNC_TASK_LANGUAGE_MAX   35
#define NGX_HTTP_ASYNC_TASK_NAME_MAX       255

/* 2^53: every double at or past it is a whole number */
#define NGX_HTTP_ASYNC_TASK_INT_EXACT     9007199254740992.0

#define NGX_HTTP_ASYNC_TASK_TEXT_OK       0
#define NGX_HTTP_ASYNC_TASK_TEXT_NUL      1
#define NGX_HTTP_ASYNC_TASK_TEXT_CONTROL  2
#define NGX_HTTP_ASYNC_TASK_TEXT_UTF8     3


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_async_task_op_t       *op;         /* the insert: owns task */
    unsigned                        reserved:1; /* a queue slot, a node */
    unsigned                        stored:1;   /* the upload's input file */
    ngx_http_async_task_upload_t    upload;
    ngx_str_t                       json;       /* an image request */
    const char                     *error;      /* what is wrong with it */
    const char                     *field;
} ngx_http_async_task_submit_t;


static ngx_http_async_task_submit_t *ngx_http_async_task_submit_create(
    ngx_http_request_t *r, ngx_uint_t kind, ngx_int_t *rc);
static ngx_int_t ngx_http_async_task_submit_reserve(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx);
static ngx_int_t ngx_http_async_task_submit_release(ngx_http_request_t *r);
static ngx_int_t ngx_http_async_task_submit_refuse(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_async_task_submit_invalid(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, ngx_int_t rc);
static void ngx_http_async_task_submit_abort(
    ngx_http_async_task_submit_t *ctx);
static void ngx_http_async_task_submit_cleanup(void *data);
static ngx_int_t ngx_http_async_task_submit_commit(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx);
static void ngx_http_async_task_submit_done(ngx_http_async_task_op_t *op);

static void ngx_http_async_task_image_body(ngx_http_request_t *r);
static void ngx_http_async_task_image_read(void *data, ngx_log_t *log);
static void ngx_http_async_task_image_read_done(ngx_event_t *ev);
static ngx_int_t ngx_http_async_task_image_parse(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx);
static ngx_uint_t ngx_http_async_task_json_has_nul(ngx_str_t *json);
static ngx_int_t ngx_http_async_task_image_params(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *body);
static ngx_int_t ngx_http_async_task_image_print(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *prompt, cJSON *negative,
    double *numbers, cJSON *cfg_scale);
static ngx_int_t ngx_http_async_task_image_decimal(cJSON *item, char *buf,
    size_t size);
static const char *ngx_http_async_task_json_int(ngx_http_request_t *r,
    cJSON *item, double min, double max, double *value);
static const char *ngx_http_async_task_json_text(ngx_http_request_t *r,
    cJSON *item, size_t min, size_t max);

static ngx_int_t ngx_http_async_task_upload_start(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx);
static ngx_uint_t ngx_http_async_task_submit_full(ngx_http_request_t *r);
static void ngx_http_async_task_upload_body(ngx_http_request_t *r);
static void ngx_http_async_task_upload_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_upload_done(ngx_event_t *ev);
static const char *ngx_http_async_task_speech_fields(
    ngx_http_async_task_upload_t *up, ngx_uint_t *priority,
    const char **field);
static ngx_uint_t ngx_http_async_task_text(u_char *p, u_char *last,
    size_t *n);
static ngx_int_t ngx_http_async_task_speech_query(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx);
static ngx_int_t ngx_http_async_task_speech_args(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, ngx_uint_t pcm);
static ngx_int_t ngx_http_async_task_speech_language(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_speech_prompt(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_speech_priority(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_speech_sample_rate(ngx_str_t *value,
    void *data, const char **error);
static ngx_int_t ngx_http_async_task_speech_channels(ngx_str_t *value,
    void *data, const char **error);

static ngx_int_t ngx_http_async_task_content_type(ngx_http_request_t *r,
    const char *type);
static ngx_int_t ngx_http_async_task_reject(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *field);
static ngx_int_t ngx_http_async_task_params(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *params);
static const char *ngx_http_async_task_message(ngx_http_request_t *r,
    const char *fmt, const char *name);
static ngx_int_t ngx_http_async_task_add_string(cJSON *object,
    const char *name, ngx_str_t *value);


/* the query parameters of speech/transcribe and of speech/pcm */

static ngx_http_async_task_request_arg_t  ngx_http_async_task_speech_names[] = {
    { ngx_string("language"), ngx_http_async_task_speech_language },
    { ngx_string("prompt"), ngx_http_async_task_speech_prompt },
    { ngx_string("priority"), ngx_http_async_task_speech_priority },
    { ngx_null_string, NULL }
};


static ngx_http_async_task_request_arg_t  ngx_http_async_task_pcm_names[] = {
    { ngx_string("language"), ngx_http_async_task_speech_language },
    { ngx_string("priority"), ngx_http_async_task_speech_priority },
    { ngx_string("sample_rate"), ngx_http_async_task_speech_sample_rate },
    { ngx_string("channels"), ngx_http_async_task_speech_channels },
    { ngx_null_string, NULL }
};


ngx_int_t
ngx_http_async_task_submit_image(ngx_http_request_t *r, ngx_str_t *unused)
{
    ngx_int_t                      rc;
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_async_task_submit_create(r, NGX_HTTP_ASYNC_TASK_IMAGE, &rc);
    if (ctx == NULL) {
        return rc;
    }

    if (ngx_http_async_task_content_type(r, "application/json") != NGX_OK) {
        return ngx_http_async_task_reject(r,
                                  NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                  "unsupported_media_type",
                                  "the body must be application/json", NULL);
    }

    if (r->headers_in.content_length_n > NGX_HTTP_ASYNC_TASK_JSON_MAX) {
        return ngx_http_async_task_reject(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "payload_too_large",
                                          "the body is over "
                                ngx_value(NGX_HTTP_ASYNC_TASK_JSON_KIB)
                                          " KiB", NULL);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_async_task_image_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_http_async_task_submit_t *
ngx_http_async_task_submit_create(ngx_http_request_t *r, ngx_uint_t kind,
    ngx_int_t *rc)
{
    ngx_str_t                         user, *userp;
    ngx_pool_cleanup_t               *cln;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_op_t         *op;
    ngx_http_async_task_submit_t     *ctx;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    if (amcf->backends[kind].upstream == NULL) {
        *rc = ngx_http_async_task_reject(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   ngx_http_async_task_kind(kind)->unserved,
                                   NULL);
        return NULL;
    }

    ngx_http_async_task_metrics_submission(r, kind);
    ngx_http_async_task_variables_kind(r, kind);

    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (ngx_http_async_task_request_user(r, &user, &userp) != NGX_OK) {
        return NULL;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_async_task_submit_t));
    if (ctx == NULL) {
        return NULL;
    }

    op = ngx_http_async_task_op_create(r->connection->log,
                                       ngx_http_async_task_op_insert);
    if (op == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->op = op;

    /* a request that ends early, a client gone mid-upload, gives back all */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_async_task_op_destroy(op);
        return NULL;
    }

    cln->handler = ngx_http_async_task_submit_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_async_task_module);

    task = &op->task;

    task->created_at = ngx_http_async_task_id_new(task->id);
    task->kind = kind;
    task->status = NGX_HTTP_ASYNC_TASK_QUEUED;
    task->priority = NGX_HTTP_ASYNC_TASK_PRIORITY;

    if (userp) {
        task->has_user = 1;
        task->user = user;
    }

    return ctx;
}


static void
ngx_http_async_task_image_body(ngx_http_request_t *r)
{
    u_char                        *p;
    size_t                         len;
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_chain_t                   *cl;
    ngx_thread_task_t             *task;
    ngx_http_request_body_t       *rb;
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_async_task_module);
    rb = r->request_body;

    len = 0;

    if (rb && rb->temp_file) {
        len = (size_t) rb->temp_file->file.offset;

    } else if (rb) {
        for (cl = rb->bufs; cl; cl = cl->next) {
            len += cl->buf->last - cl->buf->pos;
        }
    }

    if (len > NGX_HTTP_ASYNC_TASK_JSON_MAX) {
        ngx_http_finalize_request(r, ngx_http_async_task_reject(r,
                                      NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "payload_too_large",
                                      "the body is over "
                                ngx_value(NGX_HTTP_ASYNC_TASK_JSON_KIB)
                                      " KiB", NULL));
        return;
    }

    ctx->json.data = ngx_pnalloc(r->pool, len + 1);
    if (ctx->json.data == NULL) {
        ngx_http_async_task_submit_abort(ctx);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->json.len = len;

    if (rb && rb->temp_file) {

        /* a body that did not fit client_body_buffer_size */

        task = ngx_thread_task_alloc(r->pool, 0);
        if (task == NULL) {
            ngx_http_async_task_submit_abort(ctx);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        task->ctx = ctx;
        task->handler = ngx_http_async_task_image_read;
        task->event.handler = ngx_http_async_task_image_read_done;
        task->event.data = ctx;
        task->event.log = r->connection->log;

        if (ngx_thread_task_post(ngx_http_async_task_request_thread_pool(r),
                                 task)
            != NGX_OK)
        {
            ngx_http_async_task_submit_abort(ctx);
            ngx_http_finalize_request(r,
                             ngx_http_async_task_request_send_unavailable(r));
            return;
        }

        r->main->blocked++;
        return;
    }

    p = ctx->json.data;

    for (cl = rb ? rb->bufs : NULL; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last != b->pos) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    rc = ngx_http_async_task_image_parse(r, ctx);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_async_task_image_read(void *data, ngx_log_t *log)
{
    ngx_http_async_task_submit_t *ctx = data;

    ssize_t   n;
    ngx_fd_t  fd;

    fd = ctx->request->request_body->temp_file->file.fd;

    n = pread(fd, ctx->json.data, ctx->json.len, 0);

    if (n != (ssize_t) ctx->json.len) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "pread() of request body failed");
        ctx->json.data = NULL;
    }
}


static void
ngx_http_async_task_image_read_done(ngx_event_t *ev)
{
    ngx_http_async_task_submit_t *ctx = ev->data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;
    r->main->blocked--;

    if (ctx->json.data == NULL) {
        ngx_http_async_task_submit_abort(ctx);
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        rc = ngx_http_async_task_image_parse(r, ctx);
    }

    ngx_http_async_task_request_finish(r, rc);
}


static ngx_int_t
ngx_http_async_task_image_parse(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx)
{
    cJSON        *body;
    ngx_int_t     rc;
    const char   *end;

    if (ctx->json.len == 0) {
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_json", "the body is empty",
                                          NULL);
    }

    ctx->json.data[ctx->json.len] = '\0';

    body = cJSON_ParseWithLengthOpts((char *) ctx->json.data, ctx->json.len,
                                     &end, 0);

    if (body == NULL) {
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_json",
                                          "the body is not valid JSON", NULL);
    }

    while (end < (char *) ctx->json.data + ctx->json.len
           && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
    {
        end++;
    }

    if (end != (char *) ctx->json.data + ctx->json.len) {
        cJSON_Delete(body);
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_json",
                                          "the body is not valid JSON", NULL);
    }

    if (ngx_http_async_task_json_has_nul(&ctx->json)) {
        cJSON_Delete(body);
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_argument",
                                          "strings must not contain NUL "
                                          "characters", NULL);
    }

    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_json",
                                          "the body is not a JSON object",
                                          NULL);
    }

    rc = ngx_http_async_task_image_params(r, ctx, body);

    if (rc == NGX_DECLINED) {
        /* answered before the body goes: the message may point into it */
        rc = ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_argument", ctx->error,
                                        ctx->field);
        cJSON_Delete(body);
        return rc;
    }

    cJSON_Delete(body);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_async_task_submit_reserve(r, ctx);
    if (rc != NGX_OK) {
        return ngx_http_async_task_submit_refuse(r, rc);
    }

    return ngx_http_async_task_submit_commit(r, ctx);
}


/*
 * cJSON decodes "\u0000" into its C strings, which would cut them short:
 * such a string is refused.  An escape is one after an odd number of
 * backslashes.
 */

static ngx_uint_t
ngx_http_async_task_json_has_nul(ngx_str_t *json)
{
    u_char  *p, *last, *b;

    p = json->data;
    last = json->data + json->len;

    while ((p = ngx_strlcasestrn(p, last, (u_char *) "\\u0000", 6 - 1))) {

        for (b = p; b > json->data && b[-1] == '\\'; b--) {
            /* void */
        }

        if ((p - b) % 2 == 0) {
            return 1;
        }

        p += 6;
    }

    return 0;
}


/*
 * Validates the submission and turns it into the task's params.  The
 * first fault found is answered, naming its field.
 */

static ngx_int_t
ngx_http_async_task_image_params(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *body)
{
    cJSON       *item, *prompt, *negative, *cfg_scale, *found[8];
    double       value;
    double       numbers[4];
    uint32_t     seed;
    ngx_uint_t   i;
    const char  *error, *field;

    /* found[] in this order: one pass over the body finds every field */

    static const char  *fields[] = {
        "prompt", "negative_prompt", "width", "height", "steps", "seed",
        "cfg_scale", "priority", NULL
    };

    error = NULL;
    field = NULL;

    ngx_memzero(found, sizeof(found));

    for (item = body->child; item; item = item->next) {

        for (i = 0; fields[i]; i++) {
            if (ngx_strcmp(item->string, fields[i]) == 0) {
                break;
            }
        }

        field = item->string;

        if (fields[i] == NULL) {
            error = ngx_http_async_task_message(r, "unknown field \"%s\"",
                                                field);
            break;
        }

        if (found[i]) {
            error = ngx_http_async_task_message(r, "duplicate field \"%s\"",
                                                field);
            break;
        }

        found[i] = item;
    }

    if (error) {
        ctx->error = error;
        ctx->field = field;
        return NGX_DECLINED;
    }

    item = found[0];

    if (item == NULL) {
        ctx->error = "prompt is required";
        ctx->field = "prompt";
        return NGX_DECLINED;
    }

    error = ngx_http_async_task_json_text(r, item, 1,
                                          NGX_HTTP_ASYNC_TASK_FIELD_MAX);
    if (error) {
        goto invalid;
    }

    prompt = item;

    negative = found[1];
    item = negative;

    if (item) {
        error = ngx_http_async_task_json_text(r, item, 0,
                                              NGX_HTTP_ASYNC_TASK_FIELD_MAX);
        if (error) {
            goto invalid;
        }
    }

    for (i = 2; i < 4; i++) {
        item = found[i];
        value = 1024;

        if (item) {
            error = ngx_http_async_task_json_int(r, item, 64, 2048, &value);
            if (error) {
                goto invalid;
            }

            if ((int64_t) value % 8) {
                error = ngx_http_async_task_message(r,
                                                "%s must be a multiple of 8",
                                                fields[i]);
                goto invalid;
            }
        }

        numbers[i - 2] = value;
    }

    item = found[4];
    value = 20;

    if (item) {
        error = ngx_http_async_task_json_int(r, item, 1, 150, &value);
        if (error) {
            goto invalid;
        }
    }

    numbers[2] = value;

    item = found[5];

    if (item) {
        error = ngx_http_async_task_json_int(r, item, 0, 4294967295.0,
                                             &value);
        if (error) {
            goto invalid;
        }

    } else {
        /* chosen here and recorded, so that a retry draws the same image */
        seed = ((uint32_t) ngx_random() << 16) ^ (uint32_t) ngx_random();
        value = seed;
    }

    numbers[3] = value;

    cfg_scale = found[6];
    item = cfg_scale;

    if (item) {
        if (!cJSON_IsNumber(item)) {
            error = "cfg_scale must be a number";
            goto invalid;
        }

        if (!(item->valuedouble >= 0
              && item->valuedouble <= NGX_HTTP_ASYNC_TASK_CFG_SCALE_MAX))
        {
            error = "cfg_scale must be between 0 and "
                    ngx_value(NGX_HTTP_ASYNC_TASK_CFG_SCALE_MAX);
            goto invalid;
        }
    }

    item = found[7];

    if (item) {
        error = ngx_http_async_task_json_int(r, item, 0,
                                             NGX_HTTP_ASYNC_TASK_PRIORITY_MAX,
                                             &value);
        if (error) {
            goto invalid;
        }

        ctx->op->task.priority = (ngx_uint_t) value;
    }

    return ngx_http_async_task_image_print(r, ctx, prompt, negative, numbers,
                                           cfg_scale);

invalid:

    ctx->error = error;
    ctx->field = item->string;

    return NGX_DECLINED;
}


/*
 * The task's params, the text that cJSON_PrintUnformatted() made of them
 * (the backends get it, GET shows it): the integers printed as integers
 * (as "%1.15g" does, -0 included), the strings escaped (of the control
 * characters only tab and line breaks get here), cfg_scale as cJSON
 * prints it.
 * Building a cJSON object to print it cost a tenth of a submission's
 * time in the event loop.
 */

static ngx_int_t
ngx_http_async_task_image_print(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *prompt, cJSON *negative,
    double *numbers, cJSON *cfg_scale)
{
    u_char      *p;
    size_t       len, plen, nlen;
    ngx_str_t   *out;
    ngx_uint_t   i;
    char         number[64];

    static ngx_str_t  names[] = {
        ngx_string(",\"width\":"),
        ngx_string(",\"height\":"),
        ngx_string(",\"steps\":"),
        ngx_string(",\"seed\":")
    };

    plen = ngx_strlen(prompt->valuestring);
    nlen = negative ? ngx_strlen(negative->valuestring) : 0;

    if (cfg_scale
        && ngx_http_async_task_image_decimal(cfg_scale, number,
                                             sizeof(number))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"prompt\":\"\"}") - 1
          + plen + ngx_escape_json(NULL, (u_char *) prompt->valuestring, plen)
          + 4 * (sizeof(",\"height\":-") - 1 + NGX_INT64_LEN);

    if (negative) {
        len += sizeof(",\"negative_prompt\":\"\"") - 1 + nlen
               + ngx_escape_json(NULL, (u_char *) negative->valuestring, nlen);
    }

    if (cfg_scale) {
        len += sizeof(",\"cfg_scale\":") - 1 + ngx_strlen(number);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out = &ctx->op->task.params;
    out->data = p;

    p = ngx_cpymem(p, "{\"prompt\":\"", sizeof("{\"prompt\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) prompt->valuestring, plen);
    *p++ = '"';

    if (negative) {
        p = ngx_cpymem(p, ",\"negative_prompt\":\"",
                       sizeof(",\"negative_prompt\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, (u_char *) negative->valuestring,
                                       nlen);
        *p++ = '"';
    }

    for (i = 0; i < 4; i++) {
        p = ngx_cpymem(p, names[i].data, names[i].len);

        if (numbers[i] == 0 && signbit(numbers[i])) {
            *p++ = '-';
        }

        p = ngx_sprintf(p, "%L", (int64_t) numbers[i]);
    }

    if (cfg_scale) {
        p = ngx_sprintf(p, ",\"cfg_scale\":%s", number);
    }

    *p++ = '}';

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * A number as cJSON prints it, "%1.15g" when that reads back as the same
 * number.  A number of at most six decimals, from 0.0001 up, is printed
 * here: those decimals are what "%1.15g" gives and they read back
 * exactly.  Others go to cJSON: its printf and sscanf of the number were
 * 3% of a submission's time in the event loop.
 */

static ngx_int_t
ngx_http_async_task_image_decimal(cJSON *item, char *buf, size_t size)
{
    u_char      *p;
    double       d, scale;
    int64_t      m, unit;
    ngx_uint_t   k;

    d = item->valuedouble;

    if (d >= 0.0001 && d < 1000000000) {

        scale = 1;
        unit = 1;

        for (k = 0; k <= 6; k++) {
            m = (int64_t) (d * scale + 0.5);

            if ((double) m / scale == d) {
                p = ngx_sprintf((u_char *) buf, "%L", m / unit);

                if (k) {
                    *p++ = '.';

                    for (m %= unit, unit /= 10; unit; unit /= 10) {
                        *p++ = (u_char) ('0' + m / unit);
                        m %= unit;
                    }
                }

                *p = '\0';

                return NGX_OK;
            }

            scale *= 10;
            unit *= 10;
        }
    }

    return cJSON_PrintPreallocated(item, buf, size, 0) ? NGX_OK : NGX_ERROR;
}


/* NULL when the item is an integer in range, or what is wrong with it */

static const char *
ngx_http_async_task_json_int(ngx_http_request_t *r, cJSON *item, double min,
    double max, double *value)
{
    u_char  *p;

    /* the cast is defined only inside int64_t's range */

    if (!cJSON_IsNumber(item)
        || (item->valuedouble > -NGX_HTTP_ASYNC_TASK_INT_EXACT
            && item->valuedouble < NGX_HTTP_ASYNC_TASK_INT_EXACT
            && item->valuedouble != (double) (int64_t) item->valuedouble))
    {
        return ngx_http_async_task_message(r, "%s must be an integer",
                                           item->string);
    }

    if (item->valuedouble < min || item->valuedouble > max) {
        p = ngx_pnalloc(r->pool, ngx_strlen(item->string)
                                 + sizeof(" must be between  and ")
                                 + 2 * NGX_INT64_LEN);
        if (p == NULL) {
            return "out of range";
        }

        ngx_sprintf(p, "%s must be between %L and %L%Z", item->string,
                    (int64_t) min, (int64_t) max);

        return (char *) p;
    }

    *value = item->valuedouble;

    return NULL;
}


/* NULL when the item is a UTF-8 string of min..max characters */

static const char *
ngx_http_async_task_json_text(ngx_http_request_t *r, cJSON *item, size_t min,
    size_t max)
{
    u_char  *p;
    size_t   n;

    if (!cJSON_IsString(item)) {
        return ngx_http_async_task_message(r, "%s must be a string",
                                           item->string);
    }

    p = (u_char *) item->valuestring;

    switch (ngx_http_async_task_text(p, p + ngx_strlen(p), &n)) {

    case NGX_HTTP_ASYNC_TASK_TEXT_OK:
        break;

    case NGX_HTTP_ASYNC_TASK_TEXT_UTF8:
        return ngx_http_async_task_message(r, "%s is not valid UTF-8",
                                           item->string);

    default:
        return ngx_http_async_task_message(r,
                                     "%s must not contain control characters",
                                     item->string);
    }

    /* sd-server takes options from inside the prompt: a client may not */

    if (ngx_strcasestrn(p, "sd_cpp_extra_args", 17 - 1)) {
        return ngx_http_async_task_message(r,
                                     "%s must not contain sd_cpp_extra_args",
                                     item->string);
    }

    if (n < min) {
        return ngx_http_async_task_message(r, "%s must not be empty",
                                           item->string);
    }

    if (n > max) {
        return ngx_http_async_task_message(r,
                                          "%s is longer than "
                                    ngx_value(NGX_HTTP_ASYNC_TASK_FIELD_MAX)
                                          " characters",
                                          item->string);
    }

    return NULL;
}


ngx_int_t
ngx_http_async_task_submit_speech(ngx_http_request_t *r, ngx_str_t *unused)
{
    u_char                        *p, *last;
    ngx_int_t                      rc;
    ngx_str_t                      boundary;
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_async_task_submit_create(r, NGX_HTTP_ASYNC_TASK_SPEECH,
                                            &rc);
    if (ctx == NULL) {
        return rc;
    }

    if (ngx_http_async_task_content_type(r, "multipart/form-data") == NGX_OK) {

        p = r->headers_in.content_type->value.data;
        last = p + r->headers_in.content_type->value.len;

        p = ngx_strlcasestrn(p, last, (u_char *) "boundary=", 9 - 1);

        if (p == NULL) {
            return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid_argument",
                                    "multipart/form-data without a boundary",
                                    NULL);
        }

        boundary.data = p + 9;

        if (boundary.data < last && *boundary.data == '"') {
            boundary.data++;
            p = ngx_strlchr(boundary.data, last, '"');

        } else {
            p = ngx_strlchr(boundary.data, last, ';');
        }

        boundary.len = (p ? p : last) - boundary.data;

        if (boundary.len == 0 || boundary.len > 70) {
            return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid_argument",
                                    "the multipart boundary is malformed",
                                    NULL);
        }

        ctx->upload.type = NGX_HTTP_ASYNC_TASK_UPLOAD_MULTIPART;
        ctx->upload.boundary = boundary;

        rc = ngx_http_async_task_speech_args(r, ctx, 0);
        if (rc != NGX_OK) {
            return ngx_http_async_task_submit_invalid(r, ctx, rc);
        }

    } else if (ngx_http_async_task_content_type(r, "audio/") == NGX_OK) {

        ctx->upload.type = NGX_HTTP_ASYNC_TASK_UPLOAD_RAW;
        ctx->upload.content_type = r->headers_in.content_type->value;
        ngx_str_set(&ctx->upload.filename, "audio");

        rc = ngx_http_async_task_speech_args(r, ctx, 0);
        if (rc != NGX_OK) {
            return ngx_http_async_task_submit_invalid(r, ctx, rc);
        }

    } else {
        return ngx_http_async_task_reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                          "unsupported_media_type",
                                          "the body must be "
                                          "multipart/form-data or audio/*",
                                          NULL);
    }

    return ngx_http_async_task_upload_start(r, ctx);
}


ngx_int_t
ngx_http_async_task_submit_pcm(ngx_http_request_t *r, ngx_str_t *unused)
{
    ngx_int_t                      rc;
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_async_task_submit_create(r, NGX_HTTP_ASYNC_TASK_SPEECH,
                                            &rc);
    if (ctx == NULL) {
        return rc;
    }

    if (r->headers_in.content_type
        && ngx_http_async_task_content_type(r, "application/octet-stream")
           != NGX_OK
        && ngx_http_async_task_content_type(r, "audio/pcm") != NGX_OK
        && ngx_http_async_task_content_type(r, "audio/l16") != NGX_OK)
    {
        return ngx_http_async_task_reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                          "unsupported_media_type",
                                          "the body must be raw PCM: "
                                          "application/octet-stream, "
                                          "audio/pcm or audio/L16", NULL);
    }

    ctx->upload.type = NGX_HTTP_ASYNC_TASK_UPLOAD_PCM;
    ctx->upload.sample_rate = NGX_HTTP_ASYNC_TASK_RATE;
    ctx->upload.channels = NGX_HTTP_ASYNC_TASK_CHANNELS;
    ngx_str_set(&ctx->upload.filename, "audio.wav");
    ngx_str_set(&ctx->upload.content_type, "audio/wav");

    rc = ngx_http_async_task_speech_args(r, ctx, 1);
    if (rc != NGX_OK) {
        return ngx_http_async_task_submit_invalid(r, ctx, rc);
    }

    if (r->headers_in.content_length_n > 0
        && r->headers_in.content_length_n % (2 * ctx->upload.channels))
    {
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_argument",
                                          "the body ends with a partial "
                                          "sample", NULL);
    }

    return ngx_http_async_task_upload_start(r, ctx);
}


static ngx_int_t
ngx_http_async_task_speech_args(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, ngx_uint_t pcm)
{
    ngx_int_t                           rc;
    ngx_http_async_task_request_arg_t  *params;

    params = pcm ? ngx_http_async_task_pcm_names
                 : ngx_http_async_task_speech_names;

    rc = ngx_http_async_task_request_args(r, params, &ctx->upload,
                                          &ctx->error, &ctx->field);

    return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


static ngx_int_t
ngx_http_async_task_speech_language(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_upload_t  *up = data;

    up->language = *value;
    up->has_language = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_speech_prompt(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_upload_t  *up = data;

    up->prompt = *value;
    up->has_prompt = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_speech_priority(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_upload_t  *up = data;

    up->priority = *value;
    up->has_priority = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_speech_sample_rate(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_upload_t  *up = data;

    ngx_int_t  n;

    n = ngx_http_async_task_request_int(value, NGX_HTTP_ASYNC_TASK_RATE_MIN,
                                        NGX_HTTP_ASYNC_TASK_RATE_MAX);

    if (n == NGX_ERROR) {
        *error = "sample_rate must be between "
                 ngx_value(NGX_HTTP_ASYNC_TASK_RATE_MIN) " and "
                 ngx_value(NGX_HTTP_ASYNC_TASK_RATE_MAX);
        return NGX_DECLINED;
    }

    up->sample_rate = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_speech_channels(ngx_str_t *value, void *data,
    const char **error)
{
    ngx_http_async_task_upload_t  *up = data;

    ngx_int_t  n;

    n = ngx_http_async_task_request_int(value, 1, 2);

    if (n == NGX_ERROR) {
        *error = "channels must be 1 or 2";
        return NGX_DECLINED;
    }

    up->channels = n;

    return NGX_OK;
}


/*
 * An upload is kept by nginx in its client body temp file as it arrives;
 * once complete, a pool thread turns it into the task's input file.  A
 * full queue is refused before any of the body is read, but the slot is
 * reserved only once the body is in: uploads that trickle in hold no
 * slot, and cannot lock other clients out.
 */

static ngx_int_t
ngx_http_async_task_upload_start(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx)
{
    ngx_int_t  rc;

    if (r->headers_in.content_length_n == 0) {
        return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                          "invalid_argument",
                                          "the body is empty", NULL);
    }

    if (ngx_http_async_task_submit_full(r)) {
        return ngx_http_async_task_submit_refuse(r, NGX_BUSY);
    }

    /* a named file, for the thread to open; removed when the request ends */
    r->request_body_in_file_only = 1;
    r->request_body_in_persistent_file = 1;
    r->request_body_in_clean_file = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_async_task_upload_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "async_task upload: body refused: %i", rc);

        ngx_http_async_task_submit_abort(ctx);
        return rc;
    }

    return NGX_DONE;
}


/* a cheap first look at the queue, which reserves nothing */

static ngx_uint_t
ngx_http_async_task_submit_full(ngx_http_request_t *r)
{
    ngx_uint_t                        full;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    full = ngx_http_async_task_shm_full(ngx_http_async_task_request_shm(r),
                                        amcf->store->max_queued);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task submit: queue full: %ui", full);

    return full;
}


static void
ngx_http_async_task_upload_body(ngx_http_request_t *r)
{
    u_char                        *p;
    size_t                         len;
    ngx_int_t                      rc;
    ngx_str_t                     *files;
    ngx_thread_task_t             *task;
    ngx_http_request_body_t       *rb;
    ngx_http_async_task_upload_t  *up;
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_async_task_module);
    rb = r->request_body;
    up = &ctx->upload;

    if (rb == NULL || rb->temp_file == NULL
        || rb->temp_file->file.offset == 0)
    {
        ngx_http_async_task_submit_abort(ctx);
        ngx_http_finalize_request(r, ngx_http_async_task_request_send_error(r,
                                        NGX_HTTP_BAD_REQUEST,
                                        "invalid_argument",
                                        "the body is empty", NULL));
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task upload: body of %O bytes read",
                   rb->temp_file->file.offset);

    rc = ngx_http_async_task_submit_reserve(r, ctx);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
                                  ngx_http_async_task_submit_refuse(r, rc));
        return;
    }

    up->source = rb->temp_file->file.name;

    files = ngx_http_async_task_request_files(r);
    len = files->len + sizeof("/.in") + NGX_HTTP_ASYNC_TASK_ID_LEN;

    up->target.data = ngx_pnalloc(r->pool, len);
    if (up->target.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(up->target.data, "%V/", files);
    ctx->op->task.file.data = p;
    p = ngx_cpymem(p, ctx->op->task.id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    p = ngx_cpymem(p, ".in", 3);
    ctx->op->task.file.len = p - ctx->op->task.file.data;
    *p = '\0';
    up->target.len = p - up->target.data;

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        goto failed;
    }

    task->ctx = ctx;
    task->handler = ngx_http_async_task_upload_thread;
    task->event.handler = ngx_http_async_task_upload_done;
    task->event.data = ctx;
    task->event.log = r->connection->log;

    if (ngx_thread_task_post(ngx_http_async_task_request_thread_pool(r), task)
        != NGX_OK)
    {
        ngx_http_async_task_submit_abort(ctx);
        ngx_http_finalize_request(r,
                             ngx_http_async_task_request_send_unavailable(r));
        return;
    }

    r->main->blocked++;

    return;

failed:

    ngx_http_async_task_submit_abort(ctx);
    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


static void
ngx_http_async_task_upload_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_submit_t *ctx = data;

    const char                    *error;
    ngx_uint_t                     priority;
    ngx_http_async_task_upload_t  *up;

    up = &ctx->upload;

    /* the insert's pool is not in use until the insert is posted */

    ngx_http_async_task_upload_run(up, ctx->op->pool, log);

    if (up->rc != NGX_OK) {
        return;
    }

    priority = NGX_HTTP_ASYNC_TASK_PRIORITY;

    error = ngx_http_async_task_speech_fields(up, &priority, &up->field);

    if (error) {
        up->rc = NGX_DECLINED;
        up->error = error;

        if (unlink((char *) up->target.data) == -1) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed",
                          up->target.data);
        }

        return;
    }

    ctx->op->task.priority = priority;
}


static void
ngx_http_async_task_upload_done(ngx_event_t *ev)
{
    ngx_http_async_task_submit_t *ctx = ev->data;

    ngx_int_t                      rc;
    ngx_http_request_t            *r;
    ngx_http_async_task_upload_t  *up;

    r = ctx->request;
    up = &ctx->upload;

    r->main->blocked--;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task upload: \"%V\" done: %i",
                   &up->target, up->rc);

    switch (up->rc) {

    case NGX_OK:
        ctx->stored = 1;

        rc = ngx_http_async_task_speech_query(r, ctx);

        if (rc == NGX_OK) {
            rc = ngx_http_async_task_submit_commit(r, ctx);

        } else {
            ngx_http_async_task_submit_abort(ctx);
        }

        break;

    case NGX_DECLINED:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "async_task upload: refused: %s", up->error);

        /* the message may live in the insert's pool: answer, then free */
        rc = ngx_http_async_task_request_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                    "invalid_argument",
                                                    up->error, up->field);
        ngx_http_async_task_submit_abort(ctx);
        break;

    default:
        ngx_http_async_task_submit_abort(ctx);
        rc = ngx_http_async_task_request_send_unavailable(r);
    }

    ngx_http_async_task_request_finish(r, rc);
}


/*
 * The optional fields of a speech task, from the query or from parts of
 * a multipart body.  Runs in the upload's pool thread, so that a bad
 * field removes the input file there.
 */

static const char *
ngx_http_async_task_speech_fields(ngx_http_async_task_upload_t *up,
    ngx_uint_t *priority, const char **field)
{
    u_char      *p, *last;
    size_t       n;
    ngx_int_t    value;

    if (up->has_language) {
        *field = "language";

        if (up->language.len == 0
            || up->language.len > NGX_HTTP_ASYNC_TASK_LANGUAGE_MAX)
        {
            return "language must be a language code such as \"en\"";
        }

        for (p = up->language.data, last = p + up->language.len;
             p < last;
             p++)
        {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            {
                return "language must be a language code such as \"en\"";
            }
        }
    }

    if (up->has_prompt) {
        *field = "prompt";

        switch (ngx_http_async_task_text(up->prompt.data,
                                         up->prompt.data + up->prompt.len,
                                         &n))
        {
        case NGX_HTTP_ASYNC_TASK_TEXT_NUL:
            return "prompt must not contain NUL characters";

        case NGX_HTTP_ASYNC_TASK_TEXT_CONTROL:
            return "prompt must not contain control characters";

        case NGX_HTTP_ASYNC_TASK_TEXT_UTF8:
            return "prompt is not valid UTF-8";
        }

        if (n > NGX_HTTP_ASYNC_TASK_FIELD_MAX) {
            return "prompt is longer than "
                   ngx_value(NGX_HTTP_ASYNC_TASK_FIELD_MAX) " characters";
        }
    }

    /* both go into the header of a part of the request to the instance */

    *field = "filename";

    switch (ngx_http_async_task_text(up->filename.data,
                                     up->filename.data + up->filename.len,
                                     &n))
    {
    case NGX_HTTP_ASYNC_TASK_TEXT_UTF8:
        return "filename is not valid UTF-8";

    case NGX_HTTP_ASYNC_TASK_TEXT_OK:
        if (ngx_strlchr(up->filename.data,
                        up->filename.data + up->filename.len, '\r')
            == NULL
            && ngx_strlchr(up->filename.data,
                           up->filename.data + up->filename.len, '\n')
               == NULL)
        {
            break;
        }

        /* fall through */

    default:
        return "filename must not contain control characters";
    }

    if (n > NGX_HTTP_ASYNC_TASK_NAME_MAX) {
        return "filename is longer than "
               ngx_value(NGX_HTTP_ASYNC_TASK_NAME_MAX) " characters";
    }

    *field = "content_type";

    for (p = up->content_type.data, last = p + up->content_type.len;
         p < last;
         p++)
    {
        if ((*p < 0x20 && *p != '\t') || *p >= 0x7f) {
            return "content_type must be printable ASCII";
        }
    }

    if (up->content_type.len > NGX_HTTP_ASYNC_TASK_NAME_MAX) {
        return "content_type is longer than "
               ngx_value(NGX_HTTP_ASYNC_TASK_NAME_MAX) " characters";
    }

    if (up->has_priority) {
        *field = "priority";

        value = ngx_http_async_task_request_int(&up->priority, 0,
                                           NGX_HTTP_ASYNC_TASK_PRIORITY_MAX);

        if (value == NGX_ERROR) {
            return "priority must be an integer between 0 and "
                   ngx_value(NGX_HTTP_ASYNC_TASK_PRIORITY_MAX);
        }

        *priority = value;
    }

    *field = NULL;

    return NULL;
}


/*
 * Text from a client: valid UTF-8, no NUL, and of the other control
 * characters only tab and line breaks, which prompts may hold.  *n is
 * the number of characters.
 */

static ngx_uint_t
ngx_http_async_task_text(u_char *p, u_char *last, size_t *n)
{
    uint32_t  c;

    *n = 0;

    while (p < last) {
        if (*p == '\0') {
            return NGX_HTTP_ASYNC_TASK_TEXT_NUL;
        }

        if ((*p < 0x20 && *p != '\t' && *p != '\r' && *p != '\n')
            || *p == 0x7f)
        {
            return NGX_HTTP_ASYNC_TASK_TEXT_CONTROL;
        }

        c = ngx_http_async_task_util_utf8(&p, last);

        if (c == NGX_HTTP_ASYNC_TASK_UTF8_INVALID) {
            return NGX_HTTP_ASYNC_TASK_TEXT_UTF8;
        }

        (*n)++;
    }

    return NGX_HTTP_ASYNC_TASK_TEXT_OK;
}


static ngx_int_t
ngx_http_async_task_speech_query(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx)
{
    cJSON                         *params;
    ngx_int_t                      rc;
    ngx_str_t                      text;
    ngx_http_async_task_upload_t  *up;

    up = &ctx->upload;

    params = cJSON_CreateObject();
    if (params == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    text = up->filename;

    if (ngx_http_async_task_add_string(params, "filename", &text) != NGX_OK
        || ngx_http_async_task_add_string(params, "content_type",
                                          &up->content_type)
           != NGX_OK
        || cJSON_AddNumberToObject(params, "bytes", (double) up->bytes)
           == NULL)
    {
        goto done;
    }

    if (up->type == NGX_HTTP_ASYNC_TASK_UPLOAD_PCM
        && (cJSON_AddNumberToObject(params, "sample_rate", up->sample_rate)
            == NULL
            || cJSON_AddNumberToObject(params, "channels", up->channels)
               == NULL))
    {
        goto done;
    }

    if (up->has_language
        && ngx_http_async_task_add_string(params, "language", &up->language)
           != NGX_OK)
    {
        goto done;
    }

    if (up->has_prompt
        && ngx_http_async_task_add_string(params, "prompt", &up->prompt)
           != NGX_OK)
    {
        goto done;
    }

    rc = ngx_http_async_task_params(r, ctx, params);

done:

    cJSON_Delete(params);

    return rc;
}


static ngx_int_t
ngx_http_async_task_params(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, cJSON *params)
{
    char       *text;
    ngx_str_t  *out;

    text = cJSON_PrintUnformatted(params);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out = &ctx->op->task.params;

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(r->pool, out->len);

    if (out->data) {
        ngx_memcpy(out->data, text, out->len);
    }

    cJSON_free(text);

    return out->data ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static ngx_int_t
ngx_http_async_task_submit_reserve(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx)
{
    ngx_int_t                         rc;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);

    rc = ngx_http_async_task_shm_reserve(ngx_http_async_task_request_shm(r),
                                         ctx->op->task.id,
                                         amcf->store->max_queued);

    ctx->reserved = (rc == NGX_OK);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task submit: slot for %*s: %i",
                   (size_t) NGX_HTTP_ASYNC_TASK_ID_LEN, ctx->op->task.id, rc);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_task zone \"%V\" is full: increase its size",
                      &amcf->store->zone_name);
    }

    return rc;
}


/* a queue slot could not be had: NGX_BUSY is a full queue */

static ngx_int_t
ngx_http_async_task_submit_refuse(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_table_elt_t  *h;

    if (rc != NGX_BUSY) {
        rc = ngx_http_async_task_submit_release(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_async_task_request_send_unavailable(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "5");

    return ngx_http_async_task_reject(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "queue_full",
                                      "the queue is full, try again later",
                                      NULL);
}


/* the query of a speech task was found wanting (NGX_DECLINED) */

static ngx_int_t
ngx_http_async_task_submit_invalid(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx, ngx_int_t rc)
{
    if (rc != NGX_DECLINED) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_async_task_reject(r, NGX_HTTP_BAD_REQUEST,
                                      "invalid_argument", ctx->error,
                                      ctx->field);
}


static void
ngx_http_async_task_submit_cleanup(void *data)
{
    ngx_http_async_task_submit_t *ctx = data;

    ngx_http_async_task_submit_abort(ctx);
}


/* a submission that will not be committed gives back what it held */

static void
ngx_http_async_task_submit_abort(ngx_http_async_task_submit_t *ctx)
{
    ngx_log_t  *log;

    log = ctx->request->connection->log;

    if (ctx->stored) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "async_task upload: removing \"%V\"",
                       &ctx->upload.target);

        if (ngx_delete_file(ctx->upload.target.data) == NGX_FILE_ERROR
            && ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed",
                          ctx->upload.target.data);
        }

        ctx->stored = 0;
    }

    if (ctx->reserved) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                       "async_task submit: queue slot given back");

        ngx_http_async_task_shm_release(
                             ngx_http_async_task_request_shm(ctx->request),
                             ctx->op->task.id);
        ctx->reserved = 0;
    }

    if (ctx->op) {
        ngx_http_async_task_op_destroy(ctx->op);
        ctx->op = NULL;
    }
}


static ngx_int_t
ngx_http_async_task_submit_commit(ngx_http_request_t *r,
    ngx_http_async_task_submit_t *ctx)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task submit: insert of %*s posted",
                   (size_t) NGX_HTTP_ASYNC_TASK_ID_LEN, ctx->op->task.id);

    ctx->op->handler = ngx_http_async_task_submit_done;
    ctx->op->data = ctx;

    (void) ngx_http_async_task_op_post(ctx->op);

    r->main->blocked++;

    return NGX_DONE;
}


static void
ngx_http_async_task_submit_done(ngx_http_async_task_op_t *op)
{
    ngx_http_async_task_submit_t *ctx = op->data;

    u_char              *p;
    ngx_int_t            rc;
    ngx_str_t            prefix;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ctx->request;
    r->main->blocked--;

    if (op->rc != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "async_task submit: insert failed: %i", op->rc);

        /* NGX_BUSY: a shared store found the whole queue full */

        rc = op->rc;

        ngx_http_async_task_submit_abort(ctx);
        ngx_http_async_task_request_finish(r, rc == NGX_BUSY
                             ? ngx_http_async_task_submit_refuse(r, rc)
                             : ngx_http_async_task_request_send_unavailable(r));
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task submit: task %*s committed",
                   (size_t) NGX_HTTP_ASYNC_TASK_ID_LEN, op->task.id);

    ngx_http_async_task_shm_commit(ngx_http_async_task_request_shm(r),
                                   &op->task);
    ctx->reserved = 0;
    ctx->stored = 0;

    /* a free slot starts it within milliseconds */
    ngx_http_async_task_dispatch_wake();

    ngx_http_async_task_shm_live(ngx_http_async_task_request_shm(r), &op->task,
                                 r->pool);

    ngx_http_async_task_api_prefix(r, &prefix);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = ngx_pnalloc(r->pool, prefix.len + sizeof("tasks/")
                             + NGX_HTTP_ASYNC_TASK_ID_LEN);
    if (p == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = p;
    p = ngx_sprintf(p, "%Vtasks/", &prefix);
    p = ngx_cpymem(p, op->task.id, NGX_HTTP_ASYNC_TASK_ID_LEN);
    h->value.len = p - h->value.data;

    rc = ngx_http_async_task_api_send_task(r, NGX_HTTP_ACCEPTED, &op->task);

done:

    ngx_http_async_task_submit_abort(ctx);
    ngx_http_async_task_request_finish(r, rc);
}


static ngx_int_t
ngx_http_async_task_content_type(ngx_http_request_t *r, const char *type)
{
    size_t      len;
    ngx_str_t  *value;

    if (r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    value = &r->headers_in.content_type->value;
    len = ngx_strlen(type);

    if (value->len < len
        || ngx_strncasecmp(value->data, (u_char *) type, len) != 0)
    {
        return NGX_DECLINED;
    }

    /* "audio/" is a prefix; a full type ends or takes parameters */

    if (type[len - 1] == '/' || value->len == len
        || value->data[len] == ';' || value->data[len] == ' ')
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* an answer before the body is read: the body is discarded */

static ngx_int_t
ngx_http_async_task_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *field)
{
    ngx_int_t  rc;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_task submit: refused %ui %s: %s",
                   status, code, message);

    rc = ngx_http_async_task_submit_release(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_async_task_request_send_error(r, status, code, message,
                                                  field);
}


static ngx_int_t
ngx_http_async_task_submit_release(ngx_http_request_t *r)
{
    ngx_http_async_task_submit_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_async_task_module);

    if (ctx) {
        ngx_http_async_task_submit_abort(ctx);
    }

    if (r->request_body == NULL) {
        return ngx_http_discard_request_body(r);
    }

    return NGX_OK;
}


static const char *
ngx_http_async_task_message(ngx_http_request_t *r, const char *fmt,
    const char *name)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, ngx_strlen(fmt) + ngx_strlen(name) + 1);
    if (p == NULL) {
        return "invalid field";
    }

    ngx_sprintf(p, fmt, name);
    p[ngx_strlen(fmt) - 2 + ngx_strlen(name)] = '\0';

    return (char *) p;
}


static ngx_int_t
ngx_http_async_task_add_string(cJSON *object, const char *name,
    ngx_str_t *value)
{
    char      *text;
    cJSON     *item;

    /* cJSON takes C strings: a NUL inside a value ends it */

    text = ngx_alloc(value->len + 1, ngx_cycle->log);
    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) text, value->data, value->len + 1);

    item = cJSON_AddStringToObject(object, name, text);

    ngx_free(text);

    return item ? NGX_OK : NGX_ERROR;
}
