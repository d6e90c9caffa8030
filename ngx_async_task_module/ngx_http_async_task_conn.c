
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_conn.h"


/* an API key, from nginx.conf, the environment or a file */
#define NGX_HTTP_ASYNC_TASK_SECRET_MAX   4096

/* a certificate chain of the leaf, intermediates and the trusted root */
#define NGX_HTTP_ASYNC_TASK_VERIFY_DEPTH 4

#define ngx_http_async_task_conn_is(name, text)                              \
    ((name)->len == sizeof(text) - 1                                          \
     && ngx_strncmp((name)->data, text, sizeof(text) - 1) == 0)


static ngx_uint_t ngx_http_async_task_conn_named(ngx_str_t *name,
    ngx_uint_t has_value);
static ngx_http_async_task_conn_t *ngx_http_async_task_conn_get(
    ngx_conf_t *cf, ngx_http_async_task_backend_t *backend);
static ngx_int_t ngx_http_async_task_conn_secret(ngx_conf_t *cf,
    ngx_str_t *spec, ngx_str_t *secret);
static ngx_int_t ngx_http_async_task_conn_read_secret(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *secret);
static ngx_int_t ngx_http_async_task_conn_header(ngx_conf_t *cf,
    ngx_http_async_task_conn_t *conn, ngx_str_t *spec);
static ngx_uint_t ngx_http_async_task_conn_is_host(ngx_str_t *name,
    ngx_uint_t port);
static ngx_uint_t ngx_http_async_task_conn_reserved(u_char *name,
    size_t len);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_async_task_conn_ssl(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend);
static void ngx_http_async_task_conn_cleanup(void *data);
#endif


/* the "name=value" parameters of async_task_backend that are conn.c's */

static ngx_str_t  ngx_http_async_task_conn_params[] = {
    ngx_string("tls_verify"),
    ngx_string("tls_trusted_certificate"),
    ngx_string("tls_server_name"),
    ngx_string("api_key"),
    ngx_string("header"),
    ngx_string("host"),
    ngx_null_string
};


/* the headers the request builders write themselves */

static ngx_str_t  ngx_http_async_task_conn_own[] = {
    ngx_string("Host"),
    ngx_string("Content-Length"),
    ngx_string("Content-Type"),
    ngx_string("Transfer-Encoding"),
    ngx_string("Connection"),
    ngx_string("Accept"),
    ngx_string("User-Agent"),
    ngx_null_string
};


/*
 * One parameter of async_task_backend: NGX_OK when it is one of these
 * and valid, NGX_DECLINED when it is not one of these, NGX_ERROR (and
 * logged) when it is one of these and invalid.  An error never shows a
 * value that may be a secret.
 */

ngx_int_t
ngx_http_async_task_conn_param(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend, ngx_str_t *value)
{
    u_char                      *eq;
    ngx_str_t                    name, s;
    ngx_http_async_task_conn_t  *conn;

    eq = ngx_strlchr(value->data, value->data + value->len, '=');

    name.data = value->data;
    name.len = eq ? (size_t) (eq - value->data) : value->len;

    s.data = eq ? eq + 1 : value->data + value->len;
    s.len = value->data + value->len - s.data;

    if (!ngx_http_async_task_conn_named(&name, eq != NULL)) {
        return NGX_DECLINED;
    }

    conn = ngx_http_async_task_conn_get(cf, backend);
    if (conn == NULL) {
        return NGX_ERROR;
    }

    if (eq == NULL) {
        conn->tls = 1;
        return NGX_OK;
    }

    if (ngx_http_async_task_conn_is(&name, "api_key")) {

        if (conn->api_key.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"api_key\" is duplicate");
            return NGX_ERROR;
        }

        return ngx_http_async_task_conn_secret(cf, &s, &conn->api_key);
    }

    if (ngx_http_async_task_conn_is(&name, "header")) {
        return ngx_http_async_task_conn_header(cf, conn, &s);
    }

    if (ngx_http_async_task_conn_is(&name, "host")) {
        conn->host = s;

        if (!ngx_http_async_task_conn_is_host(&s, 1)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid host \"%V\"", value);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_http_async_task_conn_is(&name, "tls_verify")) {

        if (ngx_strcmp(s.data, "on") == 0) {
            conn->tls_verify = 1;

        } else if (ngx_strcmp(s.data, "off") == 0) {
            conn->tls_verify = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid tls_verify \"%V\", "
                               "expected \"on\" or \"off\"", value);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_http_async_task_conn_is(&name, "tls_server_name")) {
        conn->tls_server_name = s;

        if (!ngx_http_async_task_conn_is_host(&s, 0)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid tls_server_name \"%V\"", value);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /* tls_trusted_certificate= */

    if (s.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", value);
        return NGX_ERROR;
    }

    conn->tls_trusted_certificate = s;

    return NGX_OK;
}


/* "tls", or the name of one of the parameters "name=value" of conn.c */

static ngx_uint_t
ngx_http_async_task_conn_named(ngx_str_t *name, ngx_uint_t has_value)
{
    ngx_str_t  *p;

    if (!has_value) {
        return ngx_http_async_task_conn_is(name, "tls");
    }

    for (p = ngx_http_async_task_conn_params; p->len; p++) {
        if (p->len == name->len
            && ngx_strncmp(p->data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_http_async_task_conn_t *
ngx_http_async_task_conn_get(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend)
{
    ngx_http_async_task_conn_t  *conn;

    if (backend->conn) {
        return backend->conn;
    }

    conn = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_conn_t));
    if (conn == NULL) {
        return NULL;
    }

    if (ngx_array_init(&conn->header_lines, cf->pool, 4, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    conn->tls_verify = NGX_CONF_UNSET;

    backend->conn = conn;

    return conn;
}


/*
 * api_key=KEY, api_key=$NAME (the environment variable NAME of the nginx
 * master process) or api_key=file:PATH (the file's content, read by the
 * master: it may be readable by root alone).  The key goes into a header:
 * visible ASCII only.
 */

static ngx_int_t
ngx_http_async_task_conn_secret(ngx_conf_t *cf, ngx_str_t *spec,
    ngx_str_t *secret)
{
    char       *env;
    size_t      i;
    ngx_str_t   path;

    if (spec->len > 1 && spec->data[0] == '$') {

        for (i = 1; i < spec->len; i++) {
            if (spec->data[i] != '_' && !isalnum(spec->data[i])) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid api_key: \"%V\" is not the name "
                                   "of an environment variable", spec);
                return NGX_ERROR;
            }
        }

        env = getenv((char *) spec->data + 1);

        if (env == NULL || *env == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "api_key: the environment variable \"%s\" "
                               "is not set", spec->data + 1);
            return NGX_ERROR;
        }

        secret->len = ngx_strlen(env);
        secret->data = ngx_pnalloc(cf->pool, secret->len);
        if (secret->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(secret->data, env, secret->len);

    } else if (spec->len > 5 && ngx_strncmp(spec->data, "file:", 5) == 0) {
        path.data = spec->data + 5;
        path.len = spec->len - 5;

        if (ngx_http_async_task_conn_read_secret(cf, &path, secret)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        *secret = *spec;
    }

    if (secret->len == 0 || secret->len > NGX_HTTP_ASYNC_TASK_SECRET_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid api_key: empty or longer than %d bytes",
                           NGX_HTTP_ASYNC_TASK_SECRET_MAX);
        return NGX_ERROR;
    }

    for (i = 0; i < secret->len; i++) {
        if (secret->data[i] < 0x21 || secret->data[i] > 0x7e) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid api_key: it may hold visible "
                               "ASCII characters only");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the whole file, without the line ends and blanks after the key */

static ngx_int_t
ngx_http_async_task_conn_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    u_char           *p;
    ssize_t           n;
    ngx_int_t         rc;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *path;
    file.log = cf->log;

    file.fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "api_key: " ngx_open_file_n " \"%s\" failed",
                           path->data);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "api_key: " ngx_fd_info_n " \"%s\" failed",
                           path->data);
        goto done;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_ASYNC_TASK_SECRET_MAX + 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "api_key: \"%s\" is larger than %d bytes",
                           path->data, NGX_HTTP_ASYNC_TASK_SECRET_MAX);
        goto done;
    }

    p = ngx_pnalloc(cf->pool, (size_t) ngx_file_size(&fi) + 1);
    if (p == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, p, (size_t) ngx_file_size(&fi), 0);

    if (n == NGX_ERROR) {
        goto done;
    }

    while (n > 0 && (p[n - 1] == LF || p[n - 1] == CR || p[n - 1] == ' '
                     || p[n - 1] == '\t'))
    {
        n--;
    }

    secret->data = p;
    secret->len = n;

    rc = NGX_OK;

done:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%s\" failed", path->data);
    }

    return rc;
}


/*
 * header=Name:value, or "header=Name: value" (nginx splits a parameter
 * at a blank outside quotes).  The name is an HTTP token, the value
 * printable; no CR or LF can reach the request.
 */

static ngx_int_t
ngx_http_async_task_conn_header(ngx_conf_t *cf,
    ngx_http_async_task_conn_t *conn, ngx_str_t *spec)
{
    u_char     *p, *last, *colon, *value, *line;
    size_t      len;
    ngx_str_t  *h;

    p = spec->data;
    last = p + spec->len;

    if (last - p >= 2 && *p == '"' && last[-1] == '"') {
        p++;
        last--;
    }

    colon = ngx_strlchr(p, last, ':');

    if (colon == NULL || colon == p) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid header: expected \"header=Name: value\"");
        return NGX_ERROR;
    }

    for (line = p; line < colon; line++) {
        if (*line <= 0x20 || *line >= 0x7f
            || ngx_strchr("\"(),/:;<=>?@[\\]{}", *line))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%*s\"", colon - p, p);
            return NGX_ERROR;
        }
    }

    if (ngx_http_async_task_conn_reserved(p, colon - p)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "header \"%*s\" is set by the module%s",
                           colon - p, p,
                           (colon - p == 4
                            && ngx_strncasecmp(p, (u_char *) "Host", 4) == 0)
                           ? ": use host=" : "");
        return NGX_ERROR;
    }

    for (value = colon + 1; value < last && (*value == ' ' || *value == '\t');
         value++)
    {
        /* void */
    }

    while (last > value && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    for (line = value; line < last; line++) {
        if ((*line < 0x20 && *line != '\t') || *line == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value of header \"%*s\"",
                               colon - p, p);
            return NGX_ERROR;
        }
    }

    len = (colon - p) + sizeof(": " CRLF) - 1 + (last - value);

    line = ngx_pnalloc(cf->pool, len);
    if (line == NULL) {
        return NGX_ERROR;
    }

    h = ngx_array_push(&conn->header_lines);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->data = line;
    h->len = ngx_sprintf(line, "%*s: %*s" CRLF, colon - p, p, last - value,
                         value)
             - line;

    return NGX_OK;
}


/* a host name or address, with a port if "port" */

static ngx_uint_t
ngx_http_async_task_conn_is_host(ngx_str_t *name, ngx_uint_t port)
{
    u_char  *p, *last;

    if (name->len == 0) {
        return 0;
    }

    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (!isalnum(*p) && *p != '.' && *p != '-' && *p != '_'
            && !(port && (*p == ':' || *p == '[' || *p == ']')))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_async_task_conn_reserved(u_char *name, size_t len)
{
    ngx_str_t  *own;

    for (own = ngx_http_async_task_conn_own; own->len; own++) {
        if (own->len == len && ngx_strncasecmp(own->data, name, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/* once the directive is read: the header block and the TLS context */

ngx_int_t
ngx_http_async_task_conn_init(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend)
{
    u_char                      *p;
    size_t                       len;
    ngx_str_t                   *h;
    ngx_uint_t                   i;
    ngx_http_async_task_conn_t  *conn;

    conn = backend->conn;

    if (conn == NULL) {
        return NGX_OK;
    }

    if (!conn->tls
        && (conn->tls_verify != NGX_CONF_UNSET
            || conn->tls_trusted_certificate.len
            || conn->tls_server_name.len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tls_verify\", \"tls_trusted_certificate\" and "
                           "\"tls_server_name\" require \"tls\"");
        return NGX_ERROR;
    }

    ngx_conf_init_value(conn->tls_verify, 1);

    h = conn->header_lines.elts;
    len = 0;

    if (conn->api_key.len) {
        len += sizeof("Authorization: Bearer " CRLF) - 1 + conn->api_key.len;
    }

    for (i = 0; i < conn->header_lines.nelts; i++) {
        if (conn->api_key.len && h[i].len > sizeof("Authorization:") - 1
            && ngx_strncasecmp(h[i].data, (u_char *) "Authorization:",
                               sizeof("Authorization:") - 1)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "header \"Authorization\" and \"api_key\" "
                               "are both given");
            return NGX_ERROR;
        }

        len += h[i].len;
    }

    if (len) {
        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        conn->headers.data = p;

        if (conn->api_key.len) {
            p = ngx_sprintf(p, "Authorization: Bearer %V" CRLF,
                            &conn->api_key);
        }

        for (i = 0; i < conn->header_lines.nelts; i++) {
            p = ngx_cpymem(p, h[i].data, h[i].len);
        }

        conn->headers.len = p - conn->headers.data;
    }

    if (!conn->tls) {
        return NGX_OK;
    }

#if (NGX_HTTP_SSL)

    return ngx_http_async_task_conn_ssl(cf, backend);

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"tls\" requires nginx built with "
                       "the ngx_http_ssl_module");
    return NGX_ERROR;

#endif
}


#if (NGX_HTTP_SSL)

/* as proxy_pass https:// sets up its context, with verification on */

static ngx_int_t
ngx_http_async_task_conn_ssl(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend)
{
    ngx_str_t                    ciphers;
    ngx_pool_cleanup_t          *cln;
    ngx_http_async_task_conn_t  *conn;

    conn = backend->conn;

    conn->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conn->ssl == NULL) {
        return NGX_ERROR;
    }

    conn->ssl->log = cf->log;

    if (ngx_ssl_create(conn->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conn->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conn->ssl;

    /* the sessions kept per instance go with the configuration */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_async_task_conn_cleanup;
    cln->data = backend;

    ngx_str_set(&ciphers, "DEFAULT");

    if (ngx_ssl_ciphers(cf, conn->ssl, &ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conn->tls_verify) {
        if (ngx_ssl_trusted_certificate(cf, conn->ssl,
                                        &conn->tls_trusted_certificate,
                                        NGX_HTTP_ASYNC_TASK_VERIFY_DEPTH)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* without a file of its own, the system's trusted CAs */

        if (conn->tls_trusted_certificate.len == 0
            && SSL_CTX_set_default_verify_paths(conn->ssl->ctx) != 1)
        {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_CTX_set_default_verify_paths() failed");
            return NGX_ERROR;
        }
    }

    if (ngx_ssl_client_session_cache(cf, conn->ssl, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_async_task_conn_cleanup(void *data)
{
    ngx_http_async_task_backend_t *backend = data;

    ngx_uint_t                       i;
    ngx_http_async_task_instance_t  *in;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->ssl_session) {
            ngx_ssl_free_session(in->ssl_session);
            in->ssl_session = NULL;
        }
    }
}

#endif


/* the Host line and the backend's own headers, for a request's head */

size_t
ngx_http_async_task_conn_headers_len(ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in)
{
    ngx_http_async_task_conn_t  *conn;

    conn = backend->conn;

    if (conn == NULL) {
        return sizeof("Host: " CRLF) - 1 + in->server.len;
    }

    return sizeof("Host: " CRLF) - 1
           + (conn->host.len ? conn->host.len : in->server.len)
           + conn->headers.len;
}


u_char *
ngx_http_async_task_conn_headers(u_char *p,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in)
{
    ngx_http_async_task_conn_t  *conn;

    conn = backend->conn;

    if (conn == NULL) {
        return ngx_sprintf(p, "Host: %V" CRLF, &in->server);
    }

    p = ngx_sprintf(p, "Host: %V" CRLF,
                    conn->host.len ? &conn->host : &in->server);

    if (conn->headers.len) {
        p = ngx_cpymem(p, conn->headers.data, conn->headers.len);
    }

    return p;
}


/*
 * An exchange with an instance of a TLS backend: the name to send and to
 * check is tls_server_name=, else host=, else the server as written in
 * the upstream, without its port.
 */

ngx_int_t
ngx_http_async_task_conn_client(ngx_http_async_task_client_t *hc,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in)
{
#if (NGX_HTTP_SSL)
    u_char                      *p, *last;
    ngx_str_t                    name;
    ngx_http_async_task_conn_t  *conn;

    conn = backend->conn;

    if (conn == NULL || conn->ssl == NULL) {
        return NGX_OK;
    }

    if (conn->tls_server_name.len) {
        name = conn->tls_server_name;

    } else {
        name = conn->host.len ? conn->host : in->host;

        p = name.data;
        last = name.data + name.len;

        if (p < last && *p == '[') {
            p = ngx_strlchr(p, last, ']');

            if (p) {
                name.data++;
                name.len = p - name.data;
            }

        } else {
            p = ngx_strlchr(p, last, ':');

            if (p) {
                name.len = p - name.data;
            }
        }
    }

    hc->ssl_name.data = ngx_pnalloc(hc->pool, name.len + 1);
    if (hc->ssl_name.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(hc->ssl_name.data, name.data, name.len + 1);
    hc->ssl_name.len = name.len;

    hc->ssl = conn->ssl;
    hc->ssl_session = &in->ssl_session;
    hc->ssl_verify = conn->tls_verify;

    /* RFC 6066: no address as a server name, one is checked as an address */

    hc->ssl_address = (ngx_strlchr(name.data, name.data + name.len, ':')
                       != NULL
                       || ngx_inet_addr(name.data, name.len) != INADDR_NONE);
#endif

    return NGX_OK;
}
