
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_status_page.h"


/*
 * The status page: one self-contained HTML page, embedded by config from
 * ngx_http_async_task_status_page.html, that reads system/stats every few
 * seconds. The page is put together once, when the directive is read,
 * with the address of the figures in a <meta> element.
 */


#define NGX_HTTP_ASYNC_TASK_STATUS_PAGE_STATS  "system/stats"
#define NGX_HTTP_ASYNC_TASK_STATUS_PAGE_MARK   "@STATS@"


typedef struct {
    ngx_str_t                       page;
} ngx_http_async_task_status_page_loc_conf_t;


static void *ngx_http_async_task_status_page_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_async_task_status_page(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_async_task_status_page_check(ngx_conf_t *cf,
    ngx_str_t *uri);
static size_t ngx_http_async_task_status_page_escape(u_char *dst,
    ngx_str_t *src);
static ngx_int_t ngx_http_async_task_status_page_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_async_task_status_page_header(ngx_http_request_t *r,
    char *key, char *value);


static ngx_command_t  ngx_http_async_task_status_page_commands[] = {

    { ngx_string("async_task_status_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_async_task_status_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_async_task_status_page_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_async_task_status_page_create_loc_conf,
                                           /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_async_task_status_page_module = {
    NGX_MODULE_V1,
    &ngx_http_async_task_status_page_module_ctx, /* module context */
    ngx_http_async_task_status_page_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* what the browser may do with the page: its own inline script and style,
 * requests to this origin only, no frames, no forms */

static char  ngx_http_async_task_status_page_csp[] =
    "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";


static void *
ngx_http_async_task_status_page_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_async_task_status_page_loc_conf_t  *splcf;

    splcf = ngx_pcalloc(cf->pool,
                        sizeof(ngx_http_async_task_status_page_loc_conf_t));
    if (splcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     splcf->page = { 0, NULL };
     */

    return splcf;
}


static char *
ngx_http_async_task_status_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_async_task_status_page_loc_conf_t *splcf = conf;

    u_char                    *mark, *p;
    size_t                     len;
    ngx_str_t                 *value, stats, html;
    ngx_http_core_loc_conf_t  *clcf;

    if (splcf->page.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        stats = value[1];

        if (ngx_http_async_task_status_page_check(cf, &stats) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

    } else {
        ngx_str_set(&stats, NGX_HTTP_ASYNC_TASK_STATUS_PAGE_STATS);
    }

    html.data = (u_char *) ngx_http_async_task_status_page_html;
    html.len = sizeof(ngx_http_async_task_status_page_html) - 1;

    mark = ngx_strnstr(html.data, NGX_HTTP_ASYNC_TASK_STATUS_PAGE_MARK,
                       html.len);
    if (mark == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the embedded status page has no \"%s\" mark",
                           NGX_HTTP_ASYNC_TASK_STATUS_PAGE_MARK);
        return NGX_CONF_ERROR;
    }

    len = html.len - (sizeof(NGX_HTTP_ASYNC_TASK_STATUS_PAGE_MARK) - 1)
          + ngx_http_async_task_status_page_escape(NULL, &stats);

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    splcf->page.data = p;
    splcf->page.len = len;

    p = ngx_cpymem(p, html.data, mark - html.data);
    p += ngx_http_async_task_status_page_escape(p, &stats);
    mark += sizeof(NGX_HTTP_ASYNC_TASK_STATUS_PAGE_MARK) - 1;
    ngx_memcpy(p, mark, html.data + html.len - mark);

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_async_task_status_page_handler;

    return NGX_CONF_OK;
}


/* the figures must come from this server: the page's policy allows no
 * other origin, so an address with a scheme or a host is refused here */

static ngx_int_t
ngx_http_async_task_status_page_check(ngx_conf_t *cf, ngx_str_t *uri)
{
    u_char  *p, *last;

    if (uri->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the address of system/stats is empty");
        return NGX_ERROR;
    }

    if (uri->len >= 2 && uri->data[0] == '/' && uri->data[1] == '/') {
        goto remote;
    }

    last = uri->data + uri->len;

    for (p = uri->data; p < last; p++) {

        if (*p < 0x21 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address of system/stats \"%V\"",
                               uri);
            return NGX_ERROR;
        }

        if (*p == ':') {
            goto remote;
        }

        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    for ( /* void */ ; p < last; p++) {
        if (*p < 0x21 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address of system/stats \"%V\"",
                               uri);
            return NGX_ERROR;
        }
    }

    return NGX_OK;

remote:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "the address of system/stats \"%V\" must be a path "
                       "on this server", uri);
    return NGX_ERROR;
}


/* escapes for an HTML attribute value; with dst NULL, the length */

static size_t
ngx_http_async_task_status_page_escape(u_char *dst, ngx_str_t *src)
{
    char    *e;
    size_t   len, n;
    u_char  *p, *last;

    len = 0;
    last = src->data + src->len;

    for (p = src->data; p < last; p++) {

        switch (*p) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            e = NULL;
        }

        n = e ? ngx_strlen(e) : 1;

        if (dst) {
            if (e) {
                ngx_memcpy(dst + len, e, n);

            } else {
                dst[len] = *p;
            }
        }

        len += n;
    }

    return len;
}


static ngx_int_t
ngx_http_async_task_status_page_handler(ngx_http_request_t *r)
{
    ngx_int_t                                    rc;
    ngx_buf_t                                   *b;
    ngx_chain_t                                  out;
    ngx_http_async_task_status_page_loc_conf_t  *splcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_async_task_status_page_header(r, "Allow", "GET, HEAD")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    splcf = ngx_http_get_module_loc_conf(r,
                                       ngx_http_async_task_status_page_module);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = splcf->page.len;

    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/html") - 1;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_async_task_status_page_header(r, "Cache-Control", "no-cache")
        != NGX_OK
        || ngx_http_async_task_status_page_header(r, "Content-Security-Policy",
                                         ngx_http_async_task_status_page_csp)
           != NGX_OK
        || ngx_http_async_task_status_page_header(r, "X-Content-Type-Options",
                                                  "nosniff")
           != NGX_OK
        || ngx_http_async_task_status_page_header(r, "Referrer-Policy",
                                                  "no-referrer")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = splcf->page.data;
    b->last = splcf->page.data + splcf->page.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_async_task_status_page_header(ngx_http_request_t *r, char *key,
    char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}
