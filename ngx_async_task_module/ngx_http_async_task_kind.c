
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_comfyui.h"
#include "ngx_http_async_task_submit.h"


/*
 * The task kinds and their wire protocols (docs/architecture.md, "The
 * kind table").  The dispatcher, the API, the JSON writers and the
 * configuration read a kind's traits here instead of testing its number.
 */


static ngx_http_async_task_route_t  ngx_http_async_task_image_routes[] = {

    { ngx_string("image/async"), NGX_HTTP_POST, "POST",
      ngx_http_async_task_submit_image },

    { ngx_null_string, 0, NULL, NULL }
};


static ngx_http_async_task_route_t  ngx_http_async_task_speech_routes[] = {

    { ngx_string("speech/transcribe"), NGX_HTTP_POST, "POST",
      ngx_http_async_task_submit_speech },

    { ngx_string("speech/pcm"), NGX_HTTP_POST, "POST",
      ngx_http_async_task_submit_pcm },

    { ngx_null_string, 0, NULL, NULL }
};


static ngx_http_async_task_protocol_t
    ngx_http_async_task_image_protocols[] = {

    /* OpenAI's images API: sd-server, LocalAI, OpenAI */
    { ngx_string("openai"), ngx_string("/health"),
      NULL,
      ngx_http_async_task_protocol_openai_image,
      NULL,
      ngx_http_async_task_protocol_image_done,
      NULL },

    /* the same, with sd-server's options inside the prompt */
    { ngx_string("sdcpp"), ngx_string("/health"),
      NULL,
      ngx_http_async_task_protocol_sdcpp_image,
      NULL,
      ngx_http_async_task_protocol_image_done,
      NULL },

    /* AUTOMATIC1111's txt2img: A1111, Forge, SD.Next, sd-server's /sdapi */
    { ngx_string("a1111"), ngx_string("/sdapi/v1/options"),
      NULL,
      ngx_http_async_task_protocol_a1111_image,
      NULL,
      ngx_http_async_task_protocol_a1111_done,
      NULL },

    /* ComfyUI: the operator's workflow, posted, followed, fetched */
    { ngx_string("comfyui"), ngx_string("/system_stats"),
      NULL,
      ngx_http_async_task_comfyui_request,
      ngx_http_async_task_comfyui_process,
      ngx_http_async_task_comfyui_done,
      ngx_http_async_task_comfyui_cancel },

    { ngx_null_string, ngx_null_string, NULL, NULL, NULL, NULL, NULL }
};


static ngx_http_async_task_protocol_t
    ngx_http_async_task_speech_protocols[] = {

    /* OpenAI's transcriptions API: speaches, LocalAI, OpenAI */
    { ngx_string("openai"), ngx_string("/health"),
      ngx_http_async_task_protocol_boundary,
      ngx_http_async_task_protocol_openai_speech,
      NULL,
      ngx_http_async_task_protocol_speech_done,
      NULL },

    /* whisper.cpp's server: POST /inference */
    { ngx_string("whispercpp"), ngx_string("/health"),
      ngx_http_async_task_protocol_boundary,
      ngx_http_async_task_protocol_whispercpp_speech,
      NULL,
      ngx_http_async_task_protocol_whispercpp_done,
      NULL },

    { ngx_null_string, ngx_null_string, NULL, NULL, NULL, NULL, NULL }
};


ngx_http_async_task_kind_t  ngx_http_async_task_kinds[] = {

    /* NGX_HTTP_ASYNC_TASK_IMAGE: a prompt in, a PNG file out */
    { ngx_string("image"),
      ngx_http_async_task_image_routes,
      "no backend serves image tasks",
      0,
      ngx_string("image/png"),
      NGX_HTTP_ASYNC_TASK_IMAGE_ANSWER_MAX,
      ngx_http_async_task_json_result_file,
      NULL,
      ngx_http_async_task_image_protocols },

    /* NGX_HTTP_ASYNC_TASK_SPEECH: audio in, a transcript (JSON) out */
    { ngx_string("speech"),
      ngx_http_async_task_speech_routes,
      "no backend serves speech tasks",
      1,
      ngx_null_string,
      NGX_HTTP_ASYNC_TASK_SPEECH_ANSWER_MAX,
      ngx_http_async_task_json_result_raw,
      ngx_http_async_task_json_transcript_listed,
      ngx_http_async_task_speech_protocols },

    { ngx_null_string, NULL, NULL, 0, ngx_null_string, 0, NULL, NULL, NULL }
};


/*
 * A kind's protocol by name; when it has none of that name, *other says
 * whether another kind has one (a protocol for the wrong kind).
 */

ngx_http_async_task_protocol_t *
ngx_http_async_task_kind_protocol(ngx_uint_t kind, ngx_str_t *name,
    ngx_int_t *other)
{
    ngx_uint_t                       k;
    ngx_http_async_task_protocol_t  *p;

    *other = NGX_ERROR;

    for (k = 0; ngx_http_async_task_kinds[k].name.len; k++) {

        for (p = ngx_http_async_task_kinds[k].protocols; p->name.len; p++) {

            if (p->name.len != name->len
                || ngx_strncmp(p->name.data, name->data, name->len) != 0)
            {
                continue;
            }

            if (k == kind) {
                return p;
            }

            if (*other == NGX_ERROR) {
                *other = k;
            }
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_async_task_kind_index(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_async_task_kinds[i].name.len; i++) {
        if (name->len == ngx_http_async_task_kinds[i].name.len
            && ngx_strncmp(name->data, ngx_http_async_task_kinds[i].name.data,
                           name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}
