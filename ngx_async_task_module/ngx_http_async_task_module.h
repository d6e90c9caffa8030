
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_MODULE_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>


#define NGX_HTTP_ASYNC_TASK_IMAGE          0
#define NGX_HTTP_ASYNC_TASK_SPEECH         1
#define NGX_HTTP_ASYNC_TASK_NKINDS         2

#define NGX_HTTP_ASYNC_TASK_QUEUED         0
#define NGX_HTTP_ASYNC_TASK_RUNNING        1
#define NGX_HTTP_ASYNC_TASK_DONE           2
#define NGX_HTTP_ASYNC_TASK_FAILED         3
#define NGX_HTTP_ASYNC_TASK_CANCELED       4
#define NGX_HTTP_ASYNC_TASK_NSTATUSES      5

#define NGX_HTTP_ASYNC_TASK_ID_LEN         ((size_t) 36)

/*
 * Uploads, results and the database hold users' data: only the worker
 * user may read them.  Every file the module creates under files= and
 * the directories it makes use these modes.
 */
#define NGX_HTTP_ASYNC_TASK_FILE_ACCESS    0600
#define NGX_HTTP_ASYNC_TASK_DIR_ACCESS     0700

#define NGX_HTTP_ASYNC_TASK_ROUND_ROBIN    0
#define NGX_HTTP_ASYNC_TASK_USER_HASH      1
#define NGX_HTTP_ASYNC_TASK_LEAST_BUSY     2

/* $async_task_id, _kind, _status, _user, _position */
#define NGX_HTTP_ASYNC_TASK_NVARIABLES     5


typedef struct ngx_http_async_task_shctx_s  ngx_http_async_task_shctx_t;
typedef struct ngx_http_async_task_conn_s   ngx_http_async_task_conn_t;

/* a ComfyUI workflow (workflow=), ready to be filled in */
typedef struct ngx_http_async_task_comfyui_s  ngx_http_async_task_comfyui_t;


/* a task as the handlers and the store exchange it */

typedef struct {
    u_char                          id[NGX_HTTP_ASYNC_TASK_ID_LEN];
    ngx_uint_t                      kind;
    ngx_uint_t                      status;
    ngx_uint_t                      priority;
    ngx_uint_t                      attempts;

    unsigned                        has_user:1;

    ngx_str_t                       user;
    ngx_str_t                       params;     /* JSON object */
    ngx_str_t                       file;       /* uploaded input, or empty */
    ngx_str_t                       backend;
    ngx_str_t                       result;     /* JSON, or empty for null */
    ngx_str_t                       error;      /* JSON, or empty for null */

    int64_t                         created_at; /* ms, 0 for null */
    int64_t                         started_at;
    int64_t                         finished_at;

    ngx_int_t                       position;   /* -1 when absent */
    ngx_pid_t                       owner;      /* of a RUNNING one */
} ngx_http_async_task_t;


/* async_task_balance and async_task_health_check, in upstream{} */

typedef struct {
    ngx_uint_t                      balance;
    ngx_flag_t                      health_check;
    ngx_msec_t                      hc_interval;
    ngx_msec_t                      hc_timeout;
    ngx_uint_t                      hc_fails;
    ngx_uint_t                      hc_passes;
    ngx_str_t                       hc_uri;
} ngx_http_async_task_srv_conf_t;


typedef struct ngx_http_async_task_instance_sh_s
    ngx_http_async_task_instance_sh_t;

/* a GPU instance: one address of a server of a backend's upstream */

typedef struct {
    ngx_uint_t                      index;
    ngx_uint_t                      kind;
    ngx_str_t                       name;       /* "upstream/host:port" */
    ngx_str_t                       server;     /* "host:port" */
    ngx_str_t                       host;       /* the server as written */
    struct sockaddr                *sockaddr;
    socklen_t                       socklen;
    ngx_uint_t                      weight;
    ngx_uint_t                      max_conns;
    ngx_uint_t                      max_fails;
    ngx_msec_t                      fail_timeout;
    unsigned                        down:1;
    unsigned                        backup:1;

    ngx_http_async_task_instance_sh_t  *sh;

    /* this worker process's idle connections to it (keepalive=) */
    ngx_queue_t                     idle;
    ngx_uint_t                      nidle;

#if (NGX_HTTP_SSL)
    /* this worker process's last TLS session with it, to resume */
    ngx_ssl_session_t              *ssl_session;
#endif
} ngx_http_async_task_instance_t;


typedef struct {
    uint32_t                        hash;
    ngx_http_async_task_instance_t *instance;
} ngx_http_async_task_point_t;


typedef struct ngx_http_async_task_protocol_s
    ngx_http_async_task_protocol_t;


typedef struct {
    ngx_str_t                       kind;
    ngx_str_t                       upstream_name;
    ngx_http_upstream_srv_conf_t   *upstream;
    ngx_http_async_task_srv_conf_t *ups;        /* our upstream{} settings */

    ngx_http_async_task_instance_t **instances;
    ngx_uint_t                      ninstances;
    ngx_http_async_task_point_t    *ring;       /* user_hash */
    ngx_uint_t                      npoints;

    ngx_http_async_task_protocol_t *protocol;   /* of the kind table */
    ngx_str_t                       model;
    ngx_msec_t                      timeout;
    ngx_uint_t                      retries;
    ngx_msec_t                      backoff;
    ngx_uint_t                      keepalive;  /* idle connections kept */
    ngx_http_async_task_comfyui_t  *comfyui;    /* workflow= */
    ngx_http_async_task_conn_t     *conn;       /* TLS, credentials, or NULL */

    u_char                         *file;       /* where it was declared */
    ngx_uint_t                      line;
} ngx_http_async_task_backend_t;


typedef struct ngx_http_async_task_store_driver_s
    ngx_http_async_task_store_driver_t;


typedef struct {
    ngx_http_async_task_store_driver_t *driver; /* chosen with the store */
    ngx_str_t                       path;       /* the SQLite file; a
                                                   URI as it may be logged */
    ngx_str_t                       conninfo;   /* PostgreSQL: the URI */
    ngx_str_t                       node;       /* PostgreSQL: this node */
    ngx_str_t                       files;      /* uploads and results */
    ngx_uint_t                      files_shared; /* PostgreSQL: files= is
                                                     every node's */
    ngx_str_t                       zone_name;
    size_t                          zone_size;
    ngx_str_t                       thread_pool_name;
    ngx_thread_pool_t              *thread_pool;
    ngx_uint_t                      max_queued;
    time_t                          retention;
    ngx_msec_t                      lock_timeout;

    ngx_shm_zone_t                 *shm_zone;
} ngx_http_async_task_store_conf_t;


typedef struct {
    ngx_http_async_task_store_conf_t  *store;
    ngx_array_t                        instances;
    ngx_http_async_task_backend_t      backends[NGX_HTTP_ASYNC_TASK_NKINDS];

    u_char                            *api_file;  /* first async_task_api */
    ngx_uint_t                         api_line;

    u_char                            *metrics_file;
    ngx_uint_t                         metrics_line;

    /* the indexes of $async_task_id ... $async_task_position */
    ngx_int_t                  variables[NGX_HTTP_ASYNC_TASK_NVARIABLES];
} ngx_http_async_task_main_conf_t;


typedef struct {
    ngx_flag_t                      api;
    ngx_http_complex_value_t       *user;
} ngx_http_async_task_loc_conf_t;


extern ngx_module_t  ngx_http_async_task_module;

extern ngx_str_t     ngx_http_async_task_statuses[];


#endif /* _NGX_HTTP_ASYNC_TASK_MODULE_H_INCLUDED_ */
