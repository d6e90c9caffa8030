
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ngx_http_async_task_comfyui.h"
#include "ngx_http_async_task_client.h"
#include "ngx_http_async_task_conn.h"
#include "ngx_http_async_task_json.h"
#include "ngx_http_async_task_kind.h"


/*
 * protocol=comfyui: image tasks on ComfyUI (comfyanonymous/ComfyUI,
 * server.py), as a graph in its API format that the operator exported
 * (workflow=FILE).  The graph's strings may hold placeholders, {{name}}
 * or {{name|default}}, which a run replaces with the task's values,
 * JSON-safely (docs/directives.md, "ComfyUI").  A run posts the graph,
 * follows it in /history, fetches the image with /view, each a step of
 * the protocol seam; a canceled one is interrupted or taken out of
 * ComfyUI's queue.
 */


#define NGX_HTTP_ASYNC_TASK_COMFYUI_STRING    0
#define NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER   1
#define NGX_HTTP_ASYNC_TASK_COMFYUI_NUMBER    2

#define NGX_HTTP_ASYNC_TASK_COMFYUI_NEGATIVE  1     /* its index below */

/* the number a JSON integer of a task may be: exact in a double */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_INT_MAX   9007199254740992.0

/* a number's text: "%.17g" of a double */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_NUMBER_LEN  32

/* how long each request telling ComfyUI to drop a prompt may take */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_STOP_TIMEOUT  10000


/* a run's steps */
#define NGX_HTTP_ASYNC_TASK_COMFYUI_POST      0
#define NGX_HTTP_ASYNC_TASK_COMFYUI_HISTORY   1
#define NGX_HTTP_ASYNC_TASK_COMFYUI_VIEW      2


typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      type;
} ngx_http_async_task_comfyui_field_t;


/* the workflow's bytes before a placeholder, and the placeholder */

typedef struct {
    ngx_str_t                       text;
    ngx_uint_t                      field;
    ngx_str_t                       value;      /* the default, or null */
    unsigned                        whole:1;    /* the whole JSON string */
} ngx_http_async_task_comfyui_hole_t;


struct ngx_http_async_task_comfyui_s {
    ngx_str_t                       file;
    ngx_array_t                     holes;
    ngx_str_t                       tail;
};


/* an output image, as /history names it and /view takes it */

typedef struct {
    ngx_str_t                       filename;
    ngx_str_t                       subfolder;
    ngx_str_t                       type;
} ngx_http_async_task_comfyui_image_t;


/* a run's own, in run->data */

typedef struct {
    ngx_uint_t                      state;
    ngx_str_t                       prompt_id;
    ngx_http_async_task_comfyui_image_t  image;
} ngx_http_async_task_comfyui_ctx_t;


/*
 * Telling ComfyUI to drop the prompt of a run that is over for us: a
 * copy of the run, on a pool of its own, for the requests' head.
 */

typedef struct {
    ngx_pool_t                     *pool;
    ngx_log_t                       log;
    ngx_http_async_task_run_t       run;
    ngx_http_async_task_client_t    client;
    ngx_str_t                       prompt_id;
    ngx_uint_t                      queried;    /* GET /queue is done */
    u_char                          task[NGX_HTTP_ASYNC_TASK_ID_LEN];
} ngx_http_async_task_comfyui_stop_t;


static ngx_int_t ngx_http_async_task_comfyui_read(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *text);
static ngx_int_t ngx_http_async_task_comfyui_api_format(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *text);
static ngx_int_t ngx_http_async_task_comfyui_parse(ngx_conf_t *cf,
    ngx_http_async_task_comfyui_t *wf, ngx_str_t *text);
static ngx_int_t ngx_http_async_task_comfyui_hole(ngx_conf_t *cf,
    ngx_http_async_task_comfyui_t *wf,
    ngx_http_async_task_comfyui_hole_t *hole, u_char *start, u_char *end);
static ngx_uint_t ngx_http_async_task_comfyui_is_number(ngx_str_t *text,
    ngx_uint_t integer);
static ngx_chain_t *ngx_http_async_task_comfyui_prompt(
    ngx_http_async_task_run_t *run);
static ngx_int_t ngx_http_async_task_comfyui_values(
    ngx_http_async_task_comfyui_t *wf, cJSON *params, cJSON **items);
static size_t ngx_http_async_task_comfyui_value(u_char *dst,
    ngx_http_async_task_comfyui_hole_t *hole, cJSON *item);
static ngx_chain_t *ngx_http_async_task_comfyui_send(
    ngx_http_async_task_run_t *run, const char *method, ngx_str_t *path,
    ngx_str_t *body);
static size_t ngx_http_async_task_comfyui_escape_arg(u_char *dst,
    ngx_str_t *arg);
static ngx_int_t ngx_http_async_task_comfyui_prompt_answer(
    ngx_http_async_task_run_t *run, ngx_str_t *id);
static ngx_int_t ngx_http_async_task_comfyui_history_answer(
    ngx_http_async_task_run_t *run, ngx_str_t *id,
    ngx_http_async_task_comfyui_image_t *image);
static ngx_int_t ngx_http_async_task_comfyui_copy(ngx_pool_t *pool,
    cJSON *item, ngx_str_t *out, ngx_uint_t id);
static void ngx_http_async_task_comfyui_failed(
    ngx_http_async_task_outcome_t *out, cJSON *entry, ngx_pool_t *pool);
static ngx_int_t ngx_http_async_task_comfyui_pick(cJSON *entry,
    ngx_pool_t *pool, ngx_http_async_task_comfyui_image_t *image);
static ngx_int_t ngx_http_async_task_comfyui_wait(
    ngx_http_async_task_run_t *run);
static void ngx_http_async_task_comfyui_stop_send(
    ngx_http_async_task_comfyui_stop_t *st, const char *method,
    ngx_str_t *path, ngx_str_t *body);
static void ngx_http_async_task_comfyui_stop_answer(
    ngx_http_async_task_client_t *hc);
static ngx_int_t ngx_http_async_task_comfyui_in_queue(cJSON *list,
    ngx_str_t *id);


static ngx_http_async_task_comfyui_field_t
    ngx_http_async_task_comfyui_fields[] = {
    { ngx_string("prompt"), NGX_HTTP_ASYNC_TASK_COMFYUI_STRING },
    { ngx_string("negative_prompt"), NGX_HTTP_ASYNC_TASK_COMFYUI_STRING },
    { ngx_string("width"), NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER },
    { ngx_string("height"), NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER },
    { ngx_string("steps"), NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER },
    { ngx_string("seed"), NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER },
    { ngx_string("cfg_scale"), NGX_HTTP_ASYNC_TASK_COMFYUI_NUMBER },
    { ngx_null_string, 0 }
};

#define NGX_HTTP_ASYNC_TASK_COMFYUI_NFIELDS                                  \
    (sizeof(ngx_http_async_task_comfyui_fields)                              \
     / sizeof(ngx_http_async_task_comfyui_field_t) - 1)


static ngx_str_t  ngx_http_async_task_comfyui_prompt_path =
    ngx_string("/prompt");
static ngx_str_t  ngx_http_async_task_comfyui_queue_path =
    ngx_string("/queue");
static ngx_str_t  ngx_http_async_task_comfyui_interrupt_path =
    ngx_string("/interrupt");


/*
 * workflow=FILE: read, checked to be an API-format graph, and cut into
 * the text between placeholders, once, at configuration time.
 */

char *
ngx_http_async_task_comfyui_workflow(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend, ngx_str_t *name)
{
    ngx_str_t                       text;
    ngx_http_async_task_comfyui_t  *wf;

    if (backend->comfyui) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"workflow\" is duplicate");
        return NGX_CONF_ERROR;
    }

    wf = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_comfyui_t));
    if (wf == NULL) {
        return NGX_CONF_ERROR;
    }

    wf->file = *name;

    if (ngx_conf_full_name(cf->cycle, &wf->file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_async_task_comfyui_read(cf, &wf->file, &text) != NGX_OK
        || ngx_http_async_task_comfyui_api_format(cf, &wf->file, &text)
           != NGX_OK
        || ngx_http_async_task_comfyui_parse(cf, wf, &text) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    backend->comfyui = wf;

    return NGX_CONF_OK;
}


/* a workflow is what a ComfyUI backend runs, and only it needs one */

char *
ngx_http_async_task_comfyui_check(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend)
{
    ngx_uint_t  comfyui;

    comfyui = (backend->protocol->process
               == ngx_http_async_task_comfyui_process);

    if (comfyui == (backend->comfyui != NULL)) {
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       comfyui ? "protocol=comfyui needs \"workflow=\""
                               : "\"workflow\" is only for protocol=comfyui");

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_async_task_comfyui_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text)
{
    ssize_t          n;
    ngx_int_t        rc;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " workflow \"%V\" failed", name);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " workflow \"%V\" failed", name);
        goto done;
    }

    if (!ngx_is_file(&fi)
        || ngx_file_size(&fi) > NGX_HTTP_ASYNC_TASK_COMFYUI_WORKFLOW_MAX
        || ngx_file_size(&fi) == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\" is not a file of 1 to %d bytes",
                           name, NGX_HTTP_ASYNC_TASK_COMFYUI_WORKFLOW_MAX);
        goto done;
    }

    text->len = (size_t) ngx_file_size(&fi);
    text->data = ngx_pnalloc(cf->pool, text->len);
    if (text->data == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, text->data, text->len, 0);

    if (n == NGX_ERROR) {
        goto done;
    }

    if ((size_t) n != text->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\" changed while it was read", name);
        goto done;
    }

    rc = NGX_OK;

done:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " workflow \"%V\" failed", name);
    }

    return rc;
}


/*
 * What ComfyUI's "Export (API)" writes: an object of nodes, each with a
 * class_type and its inputs; not the UI's format ("nodes", "links").
 */

static ngx_int_t
ngx_http_async_task_comfyui_api_format(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text)
{
    u_char      *p, *last;
    cJSON       *json, *node;
    const char  *end;

    /* the whole file, where cJSON would stop after the first value */

    end = NULL;
    last = text->data + text->len;

    json = cJSON_ParseWithLengthOpts((char *) text->data, text->len, &end, 0);

    for (p = json ? (u_char *) end : last; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(json);
            json = NULL;
            break;
        }
    }

    if (json == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\" is not valid JSON "
                           "(near byte %uz)", name,
                           end ? (size_t) ((u_char *) end - text->data)
                               : (size_t) 0);
        return NGX_ERROR;
    }

    node = cJSON_IsObject(json) ? json->child : NULL;

    if (node == NULL) {
        goto invalid;
    }

    for ( /* void */ ; node; node = node->next) {
        if (!cJSON_IsObject(node)
            || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(node,
                                                              "class_type"))
            || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(node,
                                                                "inputs")))
        {
            goto invalid;
        }
    }

    cJSON_Delete(json);

    return NGX_OK;

invalid:

    cJSON_Delete(json);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "workflow \"%V\" is not in ComfyUI's API format: "
                       "an object of nodes, each with \"class_type\" and "
                       "\"inputs\" (ComfyUI's \"Export (API)\")", name);

    return NGX_ERROR;
}


/*
 * The text, valid JSON, cut at each placeholder in its strings: the
 * lexer only needs to know where strings start and end.
 */

static ngx_int_t
ngx_http_async_task_comfyui_parse(ngx_conf_t *cf,
    ngx_http_async_task_comfyui_t *wf, ngx_str_t *text)
{
    u_char                              *p, *q, *r, *open, *lit, *last;
    ngx_uint_t                           prompt;
    ngx_http_async_task_comfyui_hole_t  *hole;

    if (ngx_array_init(&wf->holes, cf->pool, 8,
                       sizeof(ngx_http_async_task_comfyui_hole_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    prompt = 0;
    lit = text->data;
    last = text->data + text->len;

    for (p = text->data; p < last; p++) {

        if (*p != '"') {
            continue;
        }

        open = p;

        for (q = p + 1; q < last && *q != '"'; q++) {

            if (*q == '\\') {
                q++;
                continue;
            }

            if (*q < 0x20) {
                /* cJSON lets it pass, ComfyUI's parser would not */

                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "workflow \"%V\" has a control "
                                   "character in a string (near byte %uz)",
                                   &wf->file, (size_t) (q - text->data));
                return NGX_ERROR;
            }

            if (*q != '{' || q + 1 == last || q[1] != '{') {
                continue;
            }

            /* "{{", up to "}}" in the same string */

            for (r = q + 2; r + 1 < last; r++) {

                if (*r == '\\') {
                    r++;
                    continue;
                }

                if (*r == '"' || (r[0] == '}' && r[1] == '}')) {
                    break;
                }
            }

            if (r + 1 >= last || *r == '"') {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "workflow \"%V\" has a \"{{\" that no "
                                   "\"}}\" closes in its string (write "
                                   "\"\\u007b{\" for a literal \"{{\")",
                                   &wf->file);
                return NGX_ERROR;
            }

            hole = ngx_array_push(&wf->holes);
            if (hole == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_async_task_comfyui_hole(cf, wf, hole, q + 2, r)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            hole->whole = (q == open + 1 && r + 2 < last && r[2] == '"');

            hole->text.data = lit;
            hole->text.len = (hole->whole ? open : q) - lit;

            if (hole->field == 0) {
                prompt = 1;
            }

            /* past "}}", and past the closing quote of a whole string */

            lit = hole->whole ? r + 3 : r + 2;
            q = r + 1;
        }

        p = q;
    }

    wf->tail.data = lit;
    wf->tail.len = last - lit;

    if (!prompt) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\" has no \"{{prompt}}\" "
                           "placeholder", &wf->file);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "name" or "name|default", between "{{" and "}}" */

static ngx_int_t
ngx_http_async_task_comfyui_hole(ngx_conf_t *cf,
    ngx_http_async_task_comfyui_t *wf,
    ngx_http_async_task_comfyui_hole_t *hole, u_char *start, u_char *end)
{
    u_char                               *bar;
    ngx_str_t                             name;
    ngx_uint_t                            i;
    ngx_http_async_task_comfyui_field_t  *f;

    bar = ngx_strlchr(start, end, '|');

    name.data = start;
    name.len = (bar ? bar : end) - start;

    f = ngx_http_async_task_comfyui_fields;

    for (i = 0; f[i].name.len; i++) {
        if (f[i].name.len == name.len
            && ngx_strncmp(f[i].name.data, name.data, name.len) == 0)
        {
            break;
        }
    }

    if (f[i].name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\" has an unknown placeholder "
                           "\"{{%*s}}\"", &wf->file,
                           ngx_min(name.len, 64), name.data);
        return NGX_ERROR;
    }

    hole->field = i;
    ngx_str_null(&hole->value);

    if (bar) {
        hole->value.data = bar + 1;
        hole->value.len = end - (bar + 1);

        if (f[i].type != NGX_HTTP_ASYNC_TASK_COMFYUI_STRING
            && !ngx_http_async_task_comfyui_is_number(&hole->value,
                          f[i].type == NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "workflow \"%V\": the default of "
                               "\"{{%V}}\" is not %s", &wf->file, &name,
                               f[i].type == NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER
                               ? "an integer" : "a number");
            return NGX_ERROR;
        }

    } else if (f[i].type == NGX_HTTP_ASYNC_TASK_COMFYUI_NUMBER) {

        /* a task may leave cfg_scale out: "the backend's" is the file's */

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "workflow \"%V\": \"{{%V}}\" needs a default, "
                           "as in \"{{%V|4.0}}\", for tasks without one",
                           &wf->file, &name, &name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a JSON number, or integer, and nothing else */

static ngx_uint_t
ngx_http_async_task_comfyui_is_number(ngx_str_t *text, ngx_uint_t integer)
{
    u_char  *p, *last, *digits;

    p = text->data;
    last = p + text->len;

    if (p < last && *p == '-') {
        p++;
    }

    digits = p;

    while (p < last && *p >= '0' && *p <= '9') {
        p++;
    }

    if (p == digits || (*digits == '0' && p - digits > 1)) {
        return 0;
    }

    if (integer) {
        return p == last;
    }

    if (p < last && *p == '.') {
        digits = ++p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return 0;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        digits = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return 0;
        }
    }

    return p == last;
}


/*
 * The body of POST /prompt: {"prompt": <the graph, filled in>,
 * "client_id": "ngx_async_task"}: ComfyUI shows a prompt's client id to
 * anyone who can read its queue or history, and a task's id is what
 * reads the task (without async_task_user), so it is not sent.  NULL
 * when the task lacks a value that the graph needs, or holds one of the
 * wrong type (the store is not trusted): the request cannot be made.
 */

static ngx_chain_t *
ngx_http_async_task_comfyui_prompt(ngx_http_async_task_run_t *run)
{
    u_char                              *p;
    cJSON                               *params;
    size_t                               len;
    ngx_str_t                            body;
    ngx_uint_t                           i;
    ngx_chain_t                         *cl;
    ngx_http_async_task_t               *task;
    ngx_http_async_task_comfyui_t       *wf;
    ngx_http_async_task_comfyui_hole_t  *hole;

    cJSON  *items[NGX_HTTP_ASYNC_TASK_COMFYUI_NFIELDS];

    task = run->task;
    wf = run->backend->comfyui;

    params = cJSON_ParseWithLength((char *) task->params.data,
                                   task->params.len);
    if (params == NULL) {
        return NULL;
    }

    cl = NULL;

    if (ngx_http_async_task_comfyui_values(wf, params, items) != NGX_OK) {
        goto done;
    }

    hole = wf->holes.elts;

    len = sizeof("{\"prompt\":,\"client_id\":\"ngx_async_task\"}") - 1
          + wf->tail.len;

    for (i = 0; i < wf->holes.nelts; i++) {
        len += hole[i].text.len
               + ngx_http_async_task_comfyui_value(NULL, &hole[i],
                                                   items[hole[i].field]);
    }

    body.data = ngx_pnalloc(run->pool, len);
    if (body.data == NULL) {
        goto done;
    }

    p = ngx_cpymem(body.data, "{\"prompt\":", sizeof("{\"prompt\":") - 1);

    for (i = 0; i < wf->holes.nelts; i++) {
        p = ngx_cpymem(p, hole[i].text.data, hole[i].text.len);
        p += ngx_http_async_task_comfyui_value(p, &hole[i],
                                               items[hole[i].field]);
    }

    p = ngx_cpymem(p, wf->tail.data, wf->tail.len);
    p = ngx_cpymem(p, ",\"client_id\":\"ngx_async_task\"}",
                   sizeof(",\"client_id\":\"ngx_async_task\"}") - 1);

    body.len = p - body.data;

    cl = ngx_http_async_task_comfyui_send(run, "POST",
                                     &ngx_http_async_task_comfyui_prompt_path,
                                     &body);

done:

    cJSON_Delete(params);

    return cl;
}


/* each field's value in the task, checked; NULL for one it has not */

static ngx_int_t
ngx_http_async_task_comfyui_values(ngx_http_async_task_comfyui_t *wf,
    cJSON *params, cJSON **items)
{
    cJSON                               *item;
    ngx_uint_t                           i;
    ngx_http_async_task_comfyui_hole_t  *hole;
    ngx_http_async_task_comfyui_field_t *f;

    f = ngx_http_async_task_comfyui_fields;

    for (i = 0; f[i].name.len; i++) {
        item = cJSON_GetObjectItemCaseSensitive(params,
                                                (char *) f[i].name.data);

        if (item == NULL || cJSON_IsNull(item)) {
            items[i] = NULL;
            continue;
        }

        if (f[i].type == NGX_HTTP_ASYNC_TASK_COMFYUI_STRING
            ? !cJSON_IsString(item)
            : !cJSON_IsNumber(item) || !isfinite(item->valuedouble)
              || (f[i].type == NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER
                  && (item->valuedouble > NGX_HTTP_ASYNC_TASK_COMFYUI_INT_MAX
                      || item->valuedouble
                         < -NGX_HTTP_ASYNC_TASK_COMFYUI_INT_MAX
                      || item->valuedouble
                         != (double) (int64_t) item->valuedouble)))
        {
            return NGX_ERROR;
        }

        items[i] = item;
    }

    /* a placeholder with no value and no default: only the negative one */

    hole = wf->holes.elts;

    for (i = 0; i < wf->holes.nelts; i++) {
        if (items[hole[i].field] == NULL && hole[i].value.data == NULL
            && hole[i].field != NGX_HTTP_ASYNC_TASK_COMFYUI_NEGATIVE)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A placeholder's replacement: a whole string becomes a JSON value of
 * the field's type (a string, quoted and escaped; a number as it is);
 * inside a longer string, the text, escaped.  A default is JSON string
 * content already (it is in the file's string), or a number.  With dst
 * NULL it only counts.
 */

static size_t
ngx_http_async_task_comfyui_value(u_char *dst,
    ngx_http_async_task_comfyui_hole_t *hole, cJSON *item)
{
    int         n;
    size_t      len, q;
    ngx_uint_t  type;
    u_char      buf[NGX_HTTP_ASYNC_TASK_COMFYUI_NUMBER_LEN];

    type = ngx_http_async_task_comfyui_fields[hole->field].type;
    q = (hole->whole && type == NGX_HTTP_ASYNC_TASK_COMFYUI_STRING) ? 1 : 0;

    if (dst && q) {
        dst[0] = '"';
    }

    if (item == NULL) {
        len = hole->value.len;

        /* no default: "" (a NULL source has no defined memcpy) */

        if (dst && len) {
            ngx_memcpy(dst + q, hole->value.data, len);
        }

    } else if (type == NGX_HTTP_ASYNC_TASK_COMFYUI_STRING) {
        len = ngx_http_async_task_json_escape(dst ? dst + q : NULL,
                                   (u_char *) item->valuestring,
                                   ngx_strlen(item->valuestring), 0);

    } else {
        if (type == NGX_HTTP_ASYNC_TASK_COMFYUI_INTEGER) {
            len = ngx_sprintf(buf, "%L", (int64_t) item->valuedouble) - buf;

        } else {
            /* the shortest of 15 or 17 digits that reads back the same */

            n = snprintf((char *) buf, sizeof(buf), "%.15g",
                         item->valuedouble);

            if (strtod((char *) buf, NULL) != item->valuedouble) {
                n = snprintf((char *) buf, sizeof(buf), "%.17g",
                             item->valuedouble);
            }

            len = (n > 0 && (size_t) n < sizeof(buf)) ? (size_t) n : 0;
        }

        if (dst) {
            ngx_memcpy(dst + q, buf, len);
        }
    }

    if (dst && q) {
        dst[q + len] = '"';
    }

    return len + 2 * q;
}


/* one request: the head and, for a POST, its JSON body, in one buffer */

static ngx_chain_t *
ngx_http_async_task_comfyui_send(ngx_http_async_task_run_t *run,
    const char *method, ngx_str_t *path, ngx_str_t *body)
{
    ngx_buf_t  *b;

    b = ngx_http_async_task_protocol_head(run, method, path,
                                          body ? "application/json" : NULL,
                                          NULL, body ? body->len : 0,
                                          body ? body->len : 0);
    if (b == NULL) {
        return NULL;
    }

    if (body) {
        b->last = ngx_cpymem(b->last, body->data, body->len);
    }

    return ngx_http_async_task_protocol_chain(run->pool, b);
}


/*
 * create_request: the step's request, in the run's pool.  /prompt and
 * /history answers are capped lower than an image: they are parsed on
 * the event loop.
 */

ngx_chain_t *
ngx_http_async_task_comfyui_request(ngx_http_async_task_run_t *run)
{
    u_char                             *p;
    size_t                              len;
    ngx_str_t                           path;
    ngx_http_async_task_comfyui_ctx_t  *ctx;

    ctx = run->data;

    if (ctx == NULL) {
        ctx = ngx_pcalloc(run->pool,
                          sizeof(ngx_http_async_task_comfyui_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        run->data = ctx;
    }

    run->max_response = NGX_HTTP_ASYNC_TASK_COMFYUI_ANSWER_MAX;

    switch (ctx->state) {

    case NGX_HTTP_ASYNC_TASK_COMFYUI_POST:
        return ngx_http_async_task_comfyui_prompt(run);

    case NGX_HTTP_ASYNC_TASK_COMFYUI_HISTORY:
        path.data = ngx_pnalloc(run->pool, sizeof("/history/") - 1
                                           + ctx->prompt_id.len);
        if (path.data == NULL) {
            return NULL;
        }

        path.len = ngx_sprintf(path.data, "/history/%V", &ctx->prompt_id)
                   - path.data;

        return ngx_http_async_task_comfyui_send(run, "GET", &path, NULL);

    default: /* NGX_HTTP_ASYNC_TASK_COMFYUI_VIEW */
        run->max_response = NGX_HTTP_ASYNC_TASK_IMAGE_ANSWER_MAX;

        len = sizeof("/view?filename=&subfolder=&type=") - 1
              + ngx_http_async_task_comfyui_escape_arg(NULL,
                                                       &ctx->image.filename)
              + ngx_http_async_task_comfyui_escape_arg(NULL,
                                                       &ctx->image.subfolder)
              + ngx_http_async_task_comfyui_escape_arg(NULL,
                                                       &ctx->image.type);

        path.data = ngx_pnalloc(run->pool, len);
        if (path.data == NULL) {
            return NULL;
        }

        p = ngx_cpymem(path.data, "/view?filename=",
                       sizeof("/view?filename=") - 1);
        p += ngx_http_async_task_comfyui_escape_arg(p, &ctx->image.filename);
        p = ngx_cpymem(p, "&subfolder=", sizeof("&subfolder=") - 1);
        p += ngx_http_async_task_comfyui_escape_arg(p, &ctx->image.subfolder);
        p = ngx_cpymem(p, "&type=", sizeof("&type=") - 1);
        p += ngx_http_async_task_comfyui_escape_arg(p, &ctx->image.type);

        path.len = p - path.data;

        return ngx_http_async_task_comfyui_send(run, "GET", &path, NULL);
    }
}


/*
 * A query argument from ComfyUI (a file name, a subfolder): every byte
 * but RFC 3986's unreserved ones percent-encoded.  Returns the length;
 * with dst NULL it only counts.
 */

static size_t
ngx_http_async_task_comfyui_escape_arg(u_char *dst, ngx_str_t *arg)
{
    u_char      c;
    size_t      n;
    ngx_uint_t  i;

    static u_char  hex[] = "0123456789ABCDEF";

    for (i = 0, n = 0; i < arg->len; i++) {
        c = arg->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '-' || c == '.' || c == '_' || c == '~')
        {
            if (dst) {
                dst[n] = c;
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '%';
            dst[n + 1] = hex[c >> 4];
            dst[n + 2] = hex[c & 0xf];
        }

        n += 3;
    }

    return n;
}


/*
 * The answer to POST /prompt, a whole one: NGX_OK and its prompt_id;
 * otherwise the outcome is set.  A 4xx is ComfyUI refusing the graph:
 * its message and the first error of the first node it names.
 */

static ngx_int_t
ngx_http_async_task_comfyui_prompt_answer(ngx_http_async_task_run_t *run,
    ngx_str_t *id)
{
    cJSON                          *json, *error, *message, *node, *errors,
                                   *item, *text;
    ngx_pool_t                     *pool;
    const char                     *what, *type, *detail;
    ngx_http_async_task_outcome_t  *out;

    out = &run->outcome;
    pool = run->pool;

    if (out->status >= 400 && out->status < 500) {
        json = cJSON_ParseWithLength((char *) out->body.data, out->body.len);
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        message = cJSON_GetObjectItemCaseSensitive(error, "message");

        what = cJSON_IsString(message) ? message->valuestring
                                       : "the graph was refused";
        type = "";
        detail = "";

        node = cJSON_GetObjectItemCaseSensitive(json, "node_errors");
        node = cJSON_IsObject(node) ? node->child : NULL;

        if (node) {
            item = cJSON_GetObjectItemCaseSensitive(node, "class_type");
            type = cJSON_IsString(item) ? item->valuestring : "";

            errors = cJSON_GetObjectItemCaseSensitive(node, "errors");
            item = cJSON_GetArrayItem(errors, 0);

            text = cJSON_GetObjectItemCaseSensitive(item, "message");
            message = cJSON_GetObjectItemCaseSensitive(item, "details");

            detail = cJSON_IsString(text) ? text->valuestring : "";

            ngx_http_async_task_protocol_fail(out,
                           ngx_http_async_task_run_failed,
                           "backend_rejected", pool,
                           "ComfyUI refused the workflow (%ui): %*s; "
                           "node %*s (%*s): %*s%s%*s", out->status,
                           ngx_min(ngx_strlen(what), 80), what,
                           ngx_min(ngx_strlen(node->string), 16),
                           node->string, ngx_min(ngx_strlen(type), 40), type,
                           ngx_min(ngx_strlen(detail), 80), detail,
                           cJSON_IsString(message) ? ": " : "",
                           cJSON_IsString(message)
                           ? ngx_min(ngx_strlen(message->valuestring), 60)
                           : (size_t) 0,
                           cJSON_IsString(message) ? message->valuestring
                                                   : "");

        } else {
            ngx_http_async_task_protocol_fail(out,
                           ngx_http_async_task_run_failed,
                           "backend_rejected", pool,
                           "ComfyUI refused the workflow (%ui): %*s",
                           out->status,
                           ngx_min(ngx_strlen(what),
                                   NGX_HTTP_ASYNC_TASK_MESSAGE_MAX),
                           what);
        }

        cJSON_Delete(json);
        return NGX_ERROR;
    }

    json = ngx_http_async_task_protocol_verdict(run);
    if (json == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_comfyui_copy(pool,
                      cJSON_GetObjectItemCaseSensitive(json, "prompt_id"),
                      id, 1)
        != NGX_OK)
    {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "ComfyUI's answer to /prompt has "
                                          "no prompt_id (status %ui)",
                                          out->status);
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    cJSON_Delete(json);

    return NGX_OK;
}


/*
 * The answer to GET /history/{id}: NGX_AGAIN while the prompt has not
 * run to its end, NGX_OK and the image to fetch, or NGX_ERROR and the
 * outcome set.
 */

static ngx_int_t
ngx_http_async_task_comfyui_history_answer(ngx_http_async_task_run_t *run,
    ngx_str_t *id, ngx_http_async_task_comfyui_image_t *image)
{
    cJSON                          *json, *entry, *status, *str;
    ngx_int_t                       rc;
    ngx_pool_t                     *pool;
    ngx_http_async_task_outcome_t  *out;
    u_char                          name[NGX_HTTP_ASYNC_TASK_COMFYUI_ID_MAX
                                         + 1];

    out = &run->outcome;
    pool = run->pool;

    json = ngx_http_async_task_protocol_verdict(run);
    if (json == NULL) {
        return NGX_ERROR;
    }

    if (!cJSON_IsObject(json)) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "ComfyUI's history is not a JSON "
                                          "object");
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    ngx_memcpy(name, id->data, id->len);
    name[id->len] = '\0';

    entry = cJSON_GetObjectItemCaseSensitive(json, (char *) name);

    if (entry == NULL) {
        cJSON_Delete(json);
        return NGX_AGAIN;
    }

    status = cJSON_GetObjectItemCaseSensitive(entry, "status");
    str = cJSON_GetObjectItemCaseSensitive(status, "status_str");

    if (cJSON_IsString(str) && ngx_strcmp(str->valuestring, "error") == 0) {
        ngx_http_async_task_comfyui_failed(out, entry, pool);
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    rc = ngx_http_async_task_comfyui_pick(entry, pool, image);

    if (rc == NGX_DECLINED) {
        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                          "bad_response", pool,
                                          "ComfyUI finished the prompt "
                                          "without an image it names "
                                          "properly");
    }

    cJSON_Delete(json);

    return rc == NGX_OK ? NGX_OK : NGX_ERROR;
}


/*
 * A string from ComfyUI, copied: a prompt id of letters, digits, "-"
 * and "_" (it goes into a path and JSON); a name of at most 255 bytes
 * without control bytes (it goes into a query, escaped).
 */

static ngx_int_t
ngx_http_async_task_comfyui_copy(ngx_pool_t *pool, cJSON *item,
    ngx_str_t *out, ngx_uint_t id)
{
    u_char  *p;
    size_t   len;

    if (!cJSON_IsString(item)) {
        return NGX_ERROR;
    }

    len = ngx_strlen(item->valuestring);

    if (len > (id ? NGX_HTTP_ASYNC_TASK_COMFYUI_ID_MAX
                  : NGX_HTTP_ASYNC_TASK_COMFYUI_NAME_MAX)
        || (id && len == 0))
    {
        return NGX_ERROR;
    }

    for (p = (u_char *) item->valuestring; *p; p++) {
        if (id ? !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                   || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')
               : (*p < 0x20 || *p == 0x7f))
        {
            return NGX_ERROR;
        }
    }

    out->len = len;
    out->data = ngx_pnalloc(pool, len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, item->valuestring, len + 1);

    return NGX_OK;
}


/* status_str "error": ComfyUI's execution_error, or an interruption */

static void
ngx_http_async_task_comfyui_failed(ngx_http_async_task_outcome_t *out,
    cJSON *entry, ngx_pool_t *pool)
{
    cJSON       *messages, *m, *kind, *data, *item;
    const char  *type, *node, *text;

    messages = cJSON_GetObjectItemCaseSensitive(
                   cJSON_GetObjectItemCaseSensitive(entry, "status"),
                   "messages");

    cJSON_ArrayForEach(m, messages) {
        kind = cJSON_GetArrayItem(m, 0);
        data = cJSON_GetArrayItem(m, 1);

        if (!cJSON_IsString(kind)) {
            continue;
        }

        if (ngx_strcmp(kind->valuestring, "execution_interrupted") == 0) {
            ngx_http_async_task_protocol_fail(out,
                                          ngx_http_async_task_run_error,
                                          "backend_error", pool,
                                          "ComfyUI interrupted the prompt");
            return;
        }

        if (ngx_strcmp(kind->valuestring, "execution_error") != 0) {
            continue;
        }

        item = cJSON_GetObjectItemCaseSensitive(data, "node_type");
        type = cJSON_IsString(item) ? item->valuestring : "?";
        item = cJSON_GetObjectItemCaseSensitive(data, "node_id");
        node = cJSON_IsString(item) ? item->valuestring : "?";
        item = cJSON_GetObjectItemCaseSensitive(data, "exception_message");
        text = cJSON_IsString(item) ? item->valuestring : "";

        ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                  "backend_error", pool,
                                  "ComfyUI failed the prompt: node %*s "
                                  "(%*s): %*s",
                                  ngx_min(ngx_strlen(node), 16), node,
                                  ngx_min(ngx_strlen(type), 40), type,
                                  ngx_min(ngx_strlen(text),
                                          NGX_HTTP_ASYNC_TASK_MESSAGE_MAX),
                                  text);
        return;
    }

    ngx_http_async_task_protocol_fail(out, ngx_http_async_task_run_error,
                                      "backend_error", pool,
                                      "ComfyUI failed the prompt");
}


/*
 * The image of a finished prompt: the first one of type "output" (what
 * SaveImage writes), else the first of any type (PreviewImage's "temp").
 * NGX_DECLINED when there is none, or it is not a name to ask for.
 */

static ngx_int_t
ngx_http_async_task_comfyui_pick(cJSON *entry, ngx_pool_t *pool,
    ngx_http_async_task_comfyui_image_t *image)
{
    cJSON  *outputs, *node, *img, *found, *item;

    outputs = cJSON_GetObjectItemCaseSensitive(entry, "outputs");
    found = NULL;

    cJSON_ArrayForEach(node, outputs) {
        cJSON_ArrayForEach(img,
                   cJSON_GetObjectItemCaseSensitive(node, "images"))
        {
            item = cJSON_GetObjectItemCaseSensitive(img, "type");

            if (found == NULL
                || (cJSON_IsString(item)
                    && ngx_strcmp(item->valuestring, "output") == 0))
            {
                found = img;
            }

            if (cJSON_IsString(item)
                && ngx_strcmp(item->valuestring, "output") == 0)
            {
                goto done;
            }
        }
    }

done:

    if (found == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_async_task_comfyui_copy(pool,
                   cJSON_GetObjectItemCaseSensitive(found, "filename"),
                   &image->filename, 0)
        != NGX_OK
        || image->filename.len == 0)
    {
        return NGX_DECLINED;
    }

    item = cJSON_GetObjectItemCaseSensitive(found, "subfolder");

    if (item == NULL || cJSON_IsNull(item)) {
        ngx_str_set(&image->subfolder, "");

    } else if (ngx_http_async_task_comfyui_copy(pool, item,
                                                &image->subfolder, 0)
               != NGX_OK)
    {
        return NGX_DECLINED;
    }

    item = cJSON_GetObjectItemCaseSensitive(found, "type");

    if (item == NULL || cJSON_IsNull(item)) {
        ngx_str_set(&image->type, "output");

    } else if (!cJSON_IsString(item)
               || (ngx_strcmp(item->valuestring, "output") != 0
                   && ngx_strcmp(item->valuestring, "temp") != 0
                   && ngx_strcmp(item->valuestring, "input") != 0))
    {
        return NGX_DECLINED;

    } else if (ngx_http_async_task_comfyui_copy(pool, item, &image->type, 0)
               != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * process: after each whole answer.  NGX_AGAIN with the next step, or
 * NGX_OK: the image is there for done(), or the run ended with its
 * outcome set.
 */

ngx_int_t
ngx_http_async_task_comfyui_process(ngx_http_async_task_run_t *run)
{
    ngx_int_t                           rc;
    ngx_http_async_task_comfyui_ctx_t  *ctx;

    ctx = run->data;

    switch (ctx->state) {

    case NGX_HTTP_ASYNC_TASK_COMFYUI_POST:
        if (ngx_http_async_task_comfyui_prompt_answer(run, &ctx->prompt_id)
            != NGX_OK)
        {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_INFO, run->log, 0,
                      "async_task: task %*s is ComfyUI prompt %V on %V",
                      NGX_HTTP_ASYNC_TASK_ID_LEN, run->task->id,
                      &ctx->prompt_id, &run->instance->name);

        ctx->state = NGX_HTTP_ASYNC_TASK_COMFYUI_HISTORY;

        return ngx_http_async_task_comfyui_wait(run);

    case NGX_HTTP_ASYNC_TASK_COMFYUI_HISTORY:
        rc = ngx_http_async_task_comfyui_history_answer(run, &ctx->prompt_id,
                                                        &ctx->image);
        if (rc == NGX_AGAIN) {
            return ngx_http_async_task_comfyui_wait(run);
        }

        if (rc != NGX_OK) {
            return NGX_OK;
        }

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, run->log, 0,
                       "async task %*s: comfyui image \"%V\" in \"%V\"",
                       NGX_HTTP_ASYNC_TASK_ID_LEN, run->task->id,
                       &ctx->image.filename, &ctx->image.subfolder);

        ctx->state = NGX_HTTP_ASYNC_TASK_COMFYUI_VIEW;
        run->delay = 0;

        return NGX_AGAIN;

    default: /* NGX_HTTP_ASYNC_TASK_COMFYUI_VIEW */
        return NGX_OK;
    }
}


/*
 * The prompt is queued or runs: ask again after a while, unless the run's
 * time is up before that.  Then ComfyUI has answered every question: it
 * is busy (its queue was long, or the graph slow), not down, and the
 * instance's health does not suffer (the last exchange is a whole 200);
 * the prompt is dropped there and the task retried as after any timeout.
 */

static ngx_int_t
ngx_http_async_task_comfyui_wait(ngx_http_async_task_run_t *run)
{
    ngx_http_async_task_comfyui_ctx_t  *ctx;

    if ((ngx_msec_int_t) (run->deadline - ngx_current_msec)
        > NGX_HTTP_ASYNC_TASK_COMFYUI_POLL)
    {
        run->delay = NGX_HTTP_ASYNC_TASK_COMFYUI_POLL;
        return NGX_AGAIN;
    }

    ctx = run->data;

    ngx_http_async_task_protocol_fail(&run->outcome,
                                      ngx_http_async_task_run_error,
                                      "timeout", run->pool,
                                      "ComfyUI did not finish prompt %V "
                                      "in time", &ctx->prompt_id);

    ngx_http_async_task_comfyui_cancel(run);

    return NGX_OK;
}


/* finalize, in a pool thread: the answer of /view is the image itself */

void
ngx_http_async_task_comfyui_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log)
{
    if (ngx_http_async_task_protocol_answer(run) != NGX_OK) {
        return;
    }

    if (ngx_http_async_task_protocol_png(run, &run->outcome.body, log)
        == NGX_DECLINED)
    {
        ngx_http_async_task_protocol_fail(&run->outcome,
                                          ngx_http_async_task_run_error,
                                          "bad_response", run->pool,
                                          "the image ComfyUI sent is not "
                                          "a PNG");
    }
}


/*
 * cancel: a prompt of ours that no one waits for any more (the task was
 * canceled, the run timed out, the worker shuts down) is interrupted
 * when it is the one ComfyUI executes (POST /interrupt names it, and
 * versions that read the name stop only it), or taken out of the queue
 * when it waits there (POST /queue {"delete": [id]}).  GET /queue tells
 * which.  On a pool and a client of its own: the run is freed right
 * after this.  A run that ComfyUI has not answered /prompt for has no
 * id to name: its prompt, if ComfyUI took it, runs to its end.
 */

void
ngx_http_async_task_comfyui_cancel(ngx_http_async_task_run_t *run)
{
    ngx_pool_t                          *pool;
    ngx_http_async_task_comfyui_ctx_t   *ctx;
    ngx_http_async_task_comfyui_stop_t  *st;

    ctx = run->data;

    if (ctx == NULL || ctx->prompt_id.len == 0
        || ctx->state == NGX_HTTP_ASYNC_TASK_COMFYUI_VIEW)
    {
        return;
    }

    pool = ngx_create_pool(2048, run->log);
    if (pool == NULL) {
        return;
    }

    st = ngx_pcalloc(pool, sizeof(ngx_http_async_task_comfyui_stop_t));
    if (st == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    st->pool = pool;
    st->log = *run->log;
    pool->log = &st->log;
    ngx_memcpy(st->task, run->task->id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    st->prompt_id.len = ctx->prompt_id.len;
    st->prompt_id.data = ngx_pstrdup(pool, &ctx->prompt_id);
    if (st->prompt_id.data == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    /* what the requests' head needs of the run: its instance, backend */

    st->run.pool = pool;
    st->run.log = &st->log;
    st->run.backend = run->backend;
    st->run.instance = run->instance;

    ngx_http_async_task_comfyui_stop_send(st, "GET",
                                   &ngx_http_async_task_comfyui_queue_path,
                                   NULL);
}


static void
ngx_http_async_task_comfyui_stop_send(ngx_http_async_task_comfyui_stop_t *st,
    const char *method, ngx_str_t *path, ngx_str_t *body)
{
    ngx_chain_t                   *cl;
    ngx_http_async_task_client_t  *hc;

    hc = &st->client;

    ngx_http_async_task_client_init(hc, st->run.backend, st->run.instance,
                       ngx_min(st->run.backend->timeout,
                               NGX_HTTP_ASYNC_TASK_COMFYUI_STOP_TIMEOUT));

    hc->pool = st->pool;
    hc->log = &st->log;
    hc->max_response = NGX_HTTP_ASYNC_TASK_COMFYUI_ANSWER_MAX;
    hc->handler = ngx_http_async_task_comfyui_stop_answer;
    hc->data = st;

    cl = ngx_http_async_task_comfyui_send(&st->run, method, path, body);

    if (cl == NULL) {
        ngx_destroy_pool(st->pool);
        return;
    }

    hc->request = cl;

    /* TLS and credentials as the run's own requests have them */

    if (ngx_http_async_task_conn_client(hc, st->run.backend,
                                        st->run.instance)
        != NGX_OK
        || ngx_http_async_task_client_start(hc) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, &st->log, 0,
                      "async_task: ComfyUI prompt %V of task %*s could not "
                      "be dropped on %V", &st->prompt_id,
                      NGX_HTTP_ASYNC_TASK_ID_LEN, st->task,
                      &st->run.instance->name);
        ngx_destroy_pool(st->pool);
    }
}


static void
ngx_http_async_task_comfyui_stop_answer(ngx_http_async_task_client_t *hc)
{
    ngx_http_async_task_comfyui_stop_t *st = hc->data;

    u_char     *p;
    cJSON      *json;
    ngx_str_t   body, *path;
    const char *what;

    if (hc->result != ngx_http_async_task_client_ok
        || hc->status < 200 || hc->status >= 300)
    {
        ngx_log_error(NGX_LOG_WARN, &st->log, 0,
                      "async_task: ComfyUI prompt %V of task %*s could not "
                      "be dropped on %V (%s, status %ui)", &st->prompt_id,
                      NGX_HTTP_ASYNC_TASK_ID_LEN, st->task,
                      &st->run.instance->name,
                      st->queried ? "interrupt or delete" : "queue",
                      hc->status);
        goto done;
    }

    if (st->queried) {
        ngx_log_error(NGX_LOG_INFO, &st->log, 0,
                      "async_task: ComfyUI prompt %V of task %*s dropped "
                      "on %V", &st->prompt_id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      st->task, &st->run.instance->name);
        goto done;
    }

    st->queried = 1;

    json = cJSON_ParseWithLength((char *) hc->body.data, hc->body.len);

    if (ngx_http_async_task_comfyui_in_queue(
            cJSON_GetObjectItemCaseSensitive(json, "queue_running"),
            &st->prompt_id))
    {
        path = &ngx_http_async_task_comfyui_interrupt_path;
        what = "{\"prompt_id\":\"%V\"}";

    } else if (ngx_http_async_task_comfyui_in_queue(
                   cJSON_GetObjectItemCaseSensitive(json, "queue_pending"),
                   &st->prompt_id))
    {
        path = &ngx_http_async_task_comfyui_queue_path;
        what = "{\"delete\":[\"%V\"]}";

    } else {
        /* finished meanwhile, or never queued: nothing to stop */
        cJSON_Delete(json);
        goto done;
    }

    cJSON_Delete(json);

    body.data = ngx_pnalloc(st->pool, sizeof("{\"delete\":[\"\"]}")
                                      + st->prompt_id.len);
    if (body.data == NULL) {
        goto done;
    }

    p = ngx_sprintf(body.data, what, &st->prompt_id);
    body.len = p - body.data;

    ngx_http_async_task_comfyui_stop_send(st, "POST", path, &body);

    return;

done:

    ngx_destroy_pool(st->pool);
}


/* whether an item of ComfyUI's queue list, [number, id, ...], is ours */

static ngx_int_t
ngx_http_async_task_comfyui_in_queue(cJSON *list, ngx_str_t *id)
{
    cJSON  *item, *pid;

    cJSON_ArrayForEach(item, list) {
        pid = cJSON_GetArrayItem(item, 1);

        if (cJSON_IsString(pid)
            && ngx_strlen(pid->valuestring) == id->len
            && ngx_strncmp(pid->valuestring, id->data, id->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}

