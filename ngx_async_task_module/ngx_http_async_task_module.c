
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_api.h"
#include "ngx_http_async_task_comfyui.h"
#include "ngx_http_async_task_conn.h"
#include "ngx_http_async_task_dispatch.h"
#include "ngx_http_async_task_health.h"
#include "ngx_http_async_task_error.h"
#include "ngx_http_async_task_id.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_shm.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"
#include "ngx_http_async_task_variables.h"


#define NGX_HTTP_ASYNC_TASK_ZONE_NAME    "async_task"
#define NGX_HTTP_ASYNC_TASK_ZONE_SIZE    (16 * 1024 * 1024)
#define NGX_HTTP_ASYNC_TASK_MAX_QUEUED   1000
#define NGX_HTTP_ASYNC_TASK_RETENTION    (24 * 60 * 60)
#define NGX_HTTP_ASYNC_TASK_LOCK_TIMEOUT 5000
#define NGX_HTTP_ASYNC_TASK_ZONE_SPARE   8


/* a path the worker processes must be able to use */

typedef struct {
    u_char                         *path;
    const char                     *what;
    int                             mode;       /* for access() */
} ngx_http_async_task_path_t;


static void *ngx_http_async_task_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_async_task_postconfiguration(ngx_conf_t *cf);
static char *ngx_http_async_task_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_async_task_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_async_task_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static ngx_uint_t ngx_http_async_task_store_uri(ngx_str_t *value);
static ngx_int_t ngx_http_async_task_store_redact(ngx_pool_t *pool,
    ngx_str_t *uri, ngx_str_t *out);
static ngx_int_t ngx_http_async_task_store_node_name(ngx_str_t *name);
static ngx_int_t ngx_http_async_task_store_node_default(ngx_conf_t *cf,
    ngx_http_async_task_store_conf_t *store);
static char *ngx_http_async_task_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_async_task_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_async_task_backend(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_async_task_check_zone(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf, ngx_http_async_task_shm_t *shm);
static size_t ngx_http_async_task_slot_size(size_t size);

static ngx_int_t ngx_http_async_task_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_async_task_load_task(void *data,
    ngx_http_async_task_t *task);
static void ngx_http_async_task_load_count(void *data, ngx_uint_t status,
    ngx_uint_t n);
static ngx_int_t ngx_http_async_task_prepare_paths(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *store);
static ngx_int_t ngx_http_async_task_create_dirs(ngx_cycle_t *cycle,
    u_char *path, ngx_core_conf_t *ccf);
static ngx_int_t ngx_http_async_task_check_paths(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *store, u_char *dir,
    ngx_core_conf_t *ccf);
static ngx_uint_t ngx_http_async_task_try_paths(
    ngx_http_async_task_path_t *paths, ngx_uint_t n);
static ngx_int_t ngx_http_async_task_init_process(ngx_cycle_t *cycle);
static void ngx_http_async_task_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_async_task_commands[] = {

    { ngx_string("async_task_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_async_task_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_backend"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_async_task_backend,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_async_task_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_async_task_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_async_task_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_health_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_async_task_health_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("async_task_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_async_task_loc_conf_t, user),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_async_task_module_ctx = {
    ngx_http_async_task_variables_add,     /* preconfiguration */
    ngx_http_async_task_postconfiguration, /* postconfiguration */

    ngx_http_async_task_create_main_conf,  /* create main configuration */
    ngx_http_async_task_init_main_conf,    /* init main configuration */

    ngx_http_async_task_create_srv_conf,   /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_async_task_create_loc_conf,   /* create location configuration */
    ngx_http_async_task_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_async_task_module = {
    NGX_MODULE_V1,
    &ngx_http_async_task_module_ctx,       /* module context */
    ngx_http_async_task_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_async_task_init_module,       /* init module */
    ngx_http_async_task_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_async_task_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_async_task_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->store = NULL;
     *     amcf->backends[] = { 0 };
     *     amcf->api_file = NULL;
     */

    return amcf;
}


/* the filters: errors as JSON, and submissions counted as answered */

static ngx_int_t
ngx_http_async_task_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_async_task_error_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_async_task_metrics_init(cf);
}


/*
 * Runs once the whole http{} block is parsed: upstreams may be declared
 * after the directives that name them.
 */

static char *
ngx_http_async_task_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_async_task_main_conf_t *amcf = conf;

    ngx_uint_t                       i, k;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;
    ngx_http_async_task_shm_t       *shm;
    ngx_http_async_task_backend_t   *backend;

    if (amcf->api_file && amcf->store == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_task_api\" requires \"async_task_store\" "
                      "in %s:%ui", amcf->api_file, amcf->api_line);
        return NGX_CONF_ERROR;
    }

    if (amcf->metrics_file && amcf->store == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_task_metrics\" requires \"async_task_store\" "
                      "in %s:%ui", amcf->metrics_file, amcf->metrics_line);
        return NGX_CONF_ERROR;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &amcf->backends[k];

        if (backend->kind.len == 0) {
            continue;
        }

        if (amcf->store == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"async_task_backend\" requires "
                          "\"async_task_store\" in %s:%ui",
                          backend->file, backend->line);
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < umcf->upstreams.nelts; i++) {

            /* only upstream{} blocks have srv_conf, not proxy_pass hosts */

            if (uscfp[i]->srv_conf
                && uscfp[i]->host.len == backend->upstream_name.len
                && ngx_strncasecmp(uscfp[i]->host.data,
                                   backend->upstream_name.data,
                                   backend->upstream_name.len)
                   == 0)
            {
                backend->upstream = uscfp[i];
                break;
            }
        }

        if (backend->upstream == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown upstream \"%V\" in %s:%ui",
                          &backend->upstream_name, backend->file,
                          backend->line);
            return NGX_CONF_ERROR;
        }
    }

    if (amcf->store == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_http_async_task_init_instances(cf, amcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    shm = amcf->store->shm_zone->data;
    shm->instances = &amcf->instances;

    if (ngx_http_async_task_check_zone(cf, amcf, shm) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The zone must hold a node for every task that can be live at once:
 * max_queued QUEUED ones and as many RUNNING ones as the instances take.
 * A zone too small for them would only show as 503s under load.  The
 * cached copies of tasks' data leave the nodes' room alone (see shm.c).
 */

static ngx_int_t
ngx_http_async_task_check_zone(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf, ngx_http_async_task_shm_t *shm)
{
    size_t                             node, instance, need;
    ngx_uint_t                         i, live, pages;
    ngx_http_async_task_instance_t    *in;
    ngx_http_async_task_store_conf_t  *store;

    store = amcf->store;
    in = amcf->instances.elts;

    live = store->max_queued;

    for (i = 0; i < amcf->instances.nelts; i++) {
        live += in[i].max_conns;
    }

    node = ngx_http_async_task_slot_size(sizeof(ngx_http_async_task_node_t));
    instance = ngx_http_async_task_slot_size(
                                 sizeof(ngx_http_async_task_instance_sh_t));

    shm->max_live = live;
    shm->per_page = ngx_pagesize / node;

    /*
     * the nodes' pages, their hash table's, the instances' pages, and a
     * few pages for the zone's context, its log context and the cached
     * task data
     */

    pages = (live + ngx_pagesize / node - 1) / (ngx_pagesize / node)
            + (ngx_http_async_task_shm_buckets(live) * sizeof(void *)
               + ngx_pagesize - 1) / ngx_pagesize
            + (amcf->instances.nelts * instance + ngx_pagesize - 1)
              / ngx_pagesize
            + NGX_HTTP_ASYNC_TASK_ZONE_SPARE;

    /* each page also costs its ngx_slab_page_t, and the pool its header */

    need = pages * (ngx_pagesize + sizeof(ngx_slab_page_t))
           + sizeof(ngx_slab_pool_t) + ngx_pagesize
           + 2 * (ngx_pagesize_shift - 3)
             * (sizeof(ngx_slab_page_t) + sizeof(ngx_slab_stat_t));

    if (store->zone_size < need) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "zone \"%V\" is too small for max_queued=%ui: "
                      "needs at least %uzk (%uz bytes per task)",
                      &store->zone_name, store->max_queued,
                      (need + 1023) / 1024, node);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* what the slab allocator gives for an allocation of the size */

static size_t
ngx_http_async_task_slot_size(size_t size)
{
    size_t  slot;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (slot = 8; slot < size; slot <<= 1) {
        /* void */
    }

    return slot;
}


static void *
ngx_http_async_task_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_async_task_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->user = NGX_CONF_UNSET_PTR;

    return alcf;
}


static char *
ngx_http_async_task_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_async_task_loc_conf_t *prev = parent;
    ngx_http_async_task_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);

    return NGX_CONF_OK;
}


/*
 * async_task_store path [zone=name:size] [thread_pool=name] [files=path]
 *                  [files_shared] [max_queued=number] [retention=time]
 *                  [lock_timeout=time];
 */

static char *
ngx_http_async_task_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_async_task_main_conf_t *amcf = conf;

    u_char                            *p;
    size_t                             len;
    ssize_t                            size;
    ngx_int_t                          n;
    ngx_str_t                         *value, s, tp;
    ngx_uint_t                         i;
    ngx_http_async_task_shm_t         *shm;
    ngx_http_async_task_store_conf_t  *store;

    if (amcf->store) {
        return "is duplicate";
    }

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_store_conf_t));
    if (store == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    store->path = value[1];

    if (store->path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty store path");
        return NGX_CONF_ERROR;
    }

    /* the one place that chooses the driver: a URI is PostgreSQL's */

    if (ngx_http_async_task_store_uri(&value[1])) {
        store->driver = &ngx_http_async_task_pg_driver;

        /* libpq takes it as a C string */

        store->conninfo.len = value[1].len;
        store->conninfo.data = ngx_pnalloc(cf->pool, value[1].len + 1);
        if (store->conninfo.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(store->conninfo.data, value[1].data, value[1].len + 1);

        /* what logs show: the URI without its password */
        if (ngx_http_async_task_store_redact(cf->pool, &value[1],
                                             &store->path)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

    } else {
        store->driver = &ngx_http_async_task_sqlite_driver;

        if (ngx_conf_full_name(cf->cycle, &store->path, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_set(&store->zone_name, NGX_HTTP_ASYNC_TASK_ZONE_NAME);
    store->zone_size = NGX_HTTP_ASYNC_TASK_ZONE_SIZE;
    store->max_queued = NGX_HTTP_ASYNC_TASK_MAX_QUEUED;
    store->retention = NGX_HTTP_ASYNC_TASK_RETENTION;
    store->lock_timeout = NGX_HTTP_ASYNC_TASK_LOCK_TIMEOUT;
    ngx_str_null(&tp);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            s.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(s.data, ':');

            if (p == NULL || p == s.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            store->zone_name.data = s.data;
            store->zone_name.len = p - s.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small", &value[i]);
                return NGX_CONF_ERROR;
            }

            store->zone_size = size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0) {
            tp.data = value[i].data + 12;
            tp.len = value[i].len - 12;

            if (tp.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "node=", 5) == 0
            && store->driver->shared)
        {
            store->node.data = value[i].data + 5;
            store->node.len = value[i].len - 5;

            if (ngx_http_async_task_store_node_name(&store->node) != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid node \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "files=", 6) == 0) {
            store->files.data = value[i].data + 6;
            store->files.len = value[i].len - 6;

            if (store->files.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "files_shared") == 0
            && store->driver->shared)
        {
            store->files_shared = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_queued=", 11) == 0) {
            n = ngx_atoi(value[i].data + 11, value[i].len - 11);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_queued \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            store->max_queued = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "retention=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            store->retention = ngx_parse_time(&s, 1);

            if (store->retention == (time_t) NGX_ERROR
                || store->retention == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid retention \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "lock_timeout=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            store->lock_timeout = ngx_parse_time(&s, 0);

            if (store->lock_timeout == (ngx_msec_t) NGX_ERROR
                || store->lock_timeout > INT_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid lock_timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (store->driver->shared) {

        /*
         * each node keeps uploads and results in files=, a directory of
         * its own unless "files_shared" says every node mounts it
         */

        if (store->files.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a PostgreSQL store requires \"files=\", "
                               "a directory for uploads and results");
            return NGX_CONF_ERROR;
        }

        if (store->node.len == 0
            && ngx_http_async_task_store_node_default(cf, store) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* results and uploads live beside the database unless told otherwise */

    if (store->files.len == 0) {
        p = store->path.data + store->path.len;

        while (p > store->path.data && p[-1] != '/') {
            p--;
        }

        len = p - store->path.data;

        store->files.data = ngx_pnalloc(cf->pool, len + sizeof("files"));
        if (store->files.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(store->files.data, store->path.data, len);
        p = ngx_cpymem(p, "files", sizeof("files") - 1);
        store->files.len = p - store->files.data;

    } else if (ngx_conf_full_name(cf->cycle, &store->files, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the thread code takes both paths as C strings */

    if (store->path.data[store->path.len] != '\0') {
        store->path.data = ngx_pstrdup(cf->pool, &store->path);
    }

    p = ngx_pnalloc(cf->pool, store->files.len + 1);
    if (p == NULL || store->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(p, store->files.data, store->files.len + 1);
    store->files.data = p;

    store->thread_pool = ngx_thread_pool_add(cf, tp.len ? &tp : NULL);
    if (store->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    shm = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_shm_t));
    if (shm == NULL) {
        return NGX_CONF_ERROR;
    }

    store->shm_zone = ngx_shared_memory_add(cf, &store->zone_name,
                                            store->zone_size,
                                            &ngx_http_async_task_module);
    if (store->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (store->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used",
                           &store->zone_name);
        return NGX_CONF_ERROR;
    }

    store->shm_zone->init = ngx_http_async_task_shm_init_zone;
    store->shm_zone->data = shm;
    shm->shared = store->driver->shared;

    amcf->store = store;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_async_task_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_async_task_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_async_task_main_conf_t  *amcf;

    if (alcf->api) {
        return "is duplicate";
    }

    alcf->api = 1;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_async_task_module);

    if (amcf->api_file == NULL) {
        amcf->api_file = cf->conf_file->file.name.data;
        amcf->api_line = cf->conf_file->line;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_async_task_api_handler;

    return NGX_CONF_OK;
}


/*
 * async_task_backend kind upstream [protocol=name] [workflow=file]
 *                    [model=name] [timeout=time] [retries=number]
 *                    [tls] [tls_verify=on|off]
 *                    [tls_trusted_certificate=file] [tls_server_name=name]
 *                    [api_key=key|$env|file:path] ["header=Name: value"]
 *                    [host=name];
 */

static char *
ngx_http_async_task_backend(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_async_task_main_conf_t *amcf = conf;

    ngx_int_t                       kind, n, rc;
    ngx_str_t                      *value, s;
    ngx_uint_t                      i;
    ngx_http_async_task_backend_t  *backend;

    value = cf->args->elts;

    kind = ngx_http_async_task_kind_index(&value[1]);

    if (kind == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown task kind \"%V\", "
                           "expected \"image\" or \"speech\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    backend = &amcf->backends[kind];

    if (backend->kind.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "backend for \"%V\" is duplicate", &value[1]);
        return NGX_CONF_ERROR;
    }

    backend->kind = value[1];
    backend->upstream_name = value[2];
    backend->protocol = ngx_http_async_task_kind(kind)->protocols;
    backend->timeout = 300000;
    backend->retries = 2;
    backend->backoff = 1000;
    backend->file = cf->conf_file->file.name.data;
    backend->line = cf->conf_file->line;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "protocol=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            backend->protocol = ngx_http_async_task_kind_protocol(kind, &s,
                                                                  &n);
            if (backend->protocol) {
                continue;
            }

            if (n != NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" is only for %V backends",
                                   &value[i],
                                   &ngx_http_async_task_kind(n)->name);
                return NGX_CONF_ERROR;
            }

            goto invalid;
        }

        if (ngx_strncmp(value[i].data, "workflow=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            if (s.len == 0) {
                goto invalid;
            }

            if (ngx_http_async_task_comfyui_workflow(cf, backend, &s)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "model=", 6) == 0) {
            backend->model.data = value[i].data + 6;
            backend->model.len = value[i].len - 6;

            if (backend->model.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            backend->timeout = ngx_parse_time(&s, 0);

            if (backend->timeout == (ngx_msec_t) NGX_ERROR
                || backend->timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "backoff=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            backend->backoff = ngx_parse_time(&s, 0);

            if (backend->backoff == (ngx_msec_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid backoff \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "keepalive=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR || n > 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid keepalive \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            backend->keepalive = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "retries=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);

            if (n == NGX_ERROR || n > 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid retries \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            backend->retries = n;
            continue;
        }

        /* TLS, credentials, headers: conn.c */

        rc = ngx_http_async_task_conn_param(cf, backend, &value[i]);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        goto invalid;
    }

    if (ngx_http_async_task_conn_init(cf, backend) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_async_task_comfyui_check(cf, backend);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


static ngx_uint_t
ngx_http_async_task_store_uri(ngx_str_t *value)
{
    if ((value->len > sizeof("postgresql://") - 1
         && ngx_strncasecmp(value->data, (u_char *) "postgresql://",
                            sizeof("postgresql://") - 1)
            == 0)
        || (value->len > sizeof("postgres://") - 1
            && ngx_strncasecmp(value->data, (u_char *) "postgres://",
                               sizeof("postgres://") - 1)
               == 0))
    {
        return 1;
    }

    return 0;
}


/*
 * The URI as logs may show it: the password of "user:password@" and the
 * value of every "password=" parameter become "xxx".
 */

static ngx_int_t
ngx_http_async_task_store_redact(ngx_pool_t *pool, ngx_str_t *uri,
    ngx_str_t *out)
{
    u_char  *p, *q, *last, *at, *colon, *end;

    out->data = ngx_pnalloc(pool, uri->len + sizeof("xxx"));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = uri->data;
    last = uri->data + uri->len;
    q = out->data;

    /* the authority: up to the first '/', '?' or '#' after "://" */

    p = ngx_strlcasestrn(p, last, (u_char *) "://", 3 - 1) + 3;
    q = ngx_cpymem(q, uri->data, p - uri->data);

    for (end = p; end < last; end++) {
        if (*end == '/' || *end == '?' || *end == '#') {
            break;
        }
    }

    at = NULL;

    for (colon = end; colon > p; colon--) {
        if (colon[-1] == '@') {
            at = colon - 1;
            break;
        }
    }

    colon = at ? ngx_strlchr(p, at, ':') : NULL;

    if (colon) {
        q = ngx_cpymem(q, p, colon + 1 - p);
        q = ngx_cpymem(q, "xxx", 3);
        p = at;
    }

    /* then the parameters: password=... up to the next '&' */

    while (p < last) {
        if ((*p == '?' || *p == '&')
            && last - p > (ssize_t) sizeof("password=") - 1
            && ngx_strncasecmp(p + 1, (u_char *) "password=",
                               sizeof("password=") - 1)
               == 0)
        {
            q = ngx_cpymem(q, p, sizeof("?password=") - 1);
            q = ngx_cpymem(q, "xxx", 3);
            p += sizeof("?password=") - 1;

            while (p < last && *p != '&' && *p != '#') {
                p++;
            }

            continue;
        }

        *q++ = *p++;
    }

    out->len = q - out->data;

    return NGX_OK;
}


/* a node's name goes into lease owners and notifications: no spaces */

static ngx_int_t
ngx_http_async_task_store_node_name(ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    if (name->len == 0 || name->len > 64) {
        return NGX_ERROR;
    }

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the host's name, unless node= names the node */

static ngx_int_t
ngx_http_async_task_store_node_default(ngx_conf_t *cf,
    ngx_http_async_task_store_conf_t *store)
{
    store->node = cf->cycle->hostname;

    if (ngx_http_async_task_store_node_name(&store->node) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the host name \"%V\" cannot name the node: "
                           "set \"node=\"", &store->node);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * In the master, before any worker exists: the store's schema is brought
 * up to date and, when the zone is new (first start, or a reload that
 * resized it), the zone is filled from the store.  The connection used
 * here is closed before the workers fork.
 */

static ngx_int_t
ngx_http_async_task_init_module(ngx_cycle_t *cycle)
{
    ngx_int_t                          rc;
    ngx_http_async_task_shm_t         *shm;
    ngx_http_async_task_loader_t       loader, *load;
    ngx_http_async_task_store_conf_t  *store;
    ngx_http_async_task_main_conf_t   *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_async_task_module);

    if (amcf == NULL || amcf->store == NULL || ngx_test_config) {
        return NGX_OK;
    }

    store = amcf->store;
    shm = store->shm_zone->data;

    /* a zone kept from the last cycle has the tasks already */

    loader.task = ngx_http_async_task_load_task;
    loader.count = ngx_http_async_task_load_count;
    loader.data = shm;

    load = ngx_http_async_task_shm_loaded(shm, 0) ? NULL : &loader;

    rc = ngx_http_async_task_prepare_paths(cycle, store);

    if (rc == NGX_OK) {
        rc = store->driver->init(store, load,
                                 ngx_is_init_cycle(cycle->old_cycle),
                                 cycle->log);
    }

    if (rc == NGX_OK && load) {
        (void) ngx_http_async_task_shm_loaded(shm, 1);
    }

    if (rc != NGX_OK && !ngx_is_init_cycle(cycle->old_cycle)) {

        /* a failed reload must not take the running nginx down */

        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "async_task store \"%V\" could not be prepared, "
                      "requests will answer 503 until it can",
                      &store->path);
        return NGX_OK;
    }

    return rc;
}


/*
 * Worker processes must be able to write what the master creates: the
 * directories it makes (and only those) and the database file go to the
 * "user" of nginx.conf.  Nothing the module makes is readable by other
 * local accounts.
 */

static ngx_int_t
ngx_http_async_task_prepare_paths(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *store)
{
    u_char           *p;
    ngx_fd_t          fd;
    ngx_uint_t        owner;
    ngx_core_conf_t  *ccf;
    u_char            dir[NGX_MAX_PATH];

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    owner = (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT);

    if (store->driver->shared) {

        /* no database file here: the files= directory only */

        if (ngx_http_async_task_create_dirs(cycle, store->files.data,
                                            owner ? ccf : NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        dir[0] = '\0';

        return ngx_http_async_task_check_paths(cycle, store, dir,
                                               owner ? ccf : NULL);
    }

    for (p = store->path.data + store->path.len;
         p > store->path.data && p[-1] != '/';
         p--)
    {
        /* void */
    }

    if (p - store->path.data >= NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "async_task store path \"%V\" is too long",
                      &store->path);
        return NGX_ERROR;
    }

    ngx_cpystrn(dir, store->path.data, p - store->path.data + 1);

    if (ngx_http_async_task_create_dirs(cycle, dir, owner ? ccf : NULL)
        != NGX_OK
        || ngx_http_async_task_create_dirs(cycle, store->files.data,
                                           owner ? ccf : NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* SQLite gives the -wal and -shm files the mode of the database */

    fd = ngx_open_file(store->path.data, NGX_FILE_RDWR,
                       NGX_FILE_CREATE_OR_OPEN,
                       NGX_HTTP_ASYNC_TASK_FILE_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", store->path.data);
        return NGX_ERROR;
    }

    if (owner && fchown(fd, ccf->user, ccf->group) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "fchown(\"%s\", %d) failed", store->path.data,
                      ccf->user);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    return ngx_http_async_task_check_paths(cycle, store, dir,
                                           owner ? ccf : NULL);
}


/* each missing directory of the path is made, and given to the user */

static ngx_int_t
ngx_http_async_task_create_dirs(ngx_cycle_t *cycle, u_char *path,
    ngx_core_conf_t *ccf)
{
    u_char           *p, ch;
    ngx_file_info_t   fi;

    if (path[0] == '\0') {
        return NGX_OK;
    }

    for (p = path + 1; ; p++) {
        ch = *p;

        if (ch != '/' && ch != '\0') {
            continue;
        }

        *p = '\0';

        if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {

            if (ngx_create_dir(path, NGX_HTTP_ASYNC_TASK_DIR_ACCESS)
                == NGX_FILE_ERROR
                && ngx_errno != NGX_EEXIST)
            {
                ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                              ngx_create_dir_n " \"%s\" failed", path);
                *p = ch;
                return NGX_ERROR;
            }

            if (ccf && chown((char *) path, ccf->user, ccf->group) == -1) {
                ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                              "chown(\"%s\", %d) failed", path, ccf->user);
                *p = ch;
                return NGX_ERROR;
            }
        }

        *p = ch;

        if (ch == '\0' || p[1] == '\0') {
            return NGX_OK;
        }
    }
}


/*
 * What worker processes will write must be writable by them: a mistake
 * stops nginx here rather than failing every request later.  The master
 * runs as root: a child process takes the workers' user, groups and
 * supplementary groups, as a worker would, and tries each path.
 */

static ngx_int_t
ngx_http_async_task_check_paths(ngx_cycle_t *cycle,
    ngx_http_async_task_store_conf_t *store, u_char *dir,
    ngx_core_conf_t *ccf)
{
    int                          fds[2], status, answer[2];
    u_char                      *name;
    ngx_pid_t                    pid;
    ngx_uint_t                   i, n;
    ngx_http_async_task_path_t   paths[5];
    u_char                       wal[NGX_MAX_PATH], shm[NGX_MAX_PATH];

    if (store->path.len + sizeof("-wal") > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "async_task store path \"%V\" is too long",
                      &store->path);
        return NGX_ERROR;
    }

    ngx_sprintf(wal, "%V-wal%Z", &store->path);
    ngx_sprintf(shm, "%V-shm%Z", &store->path);

    n = 0;

    if (dir[0]) {
        paths[n].path = dir;
        paths[n].what = "directory";
        paths[n++].mode = W_OK|X_OK;
    }

    paths[n].path = store->files.data;
    paths[n].what = "files= directory";
    paths[n++].mode = W_OK|X_OK;

    if (!store->driver->shared) {
        paths[n].path = store->path.data;
        paths[n].what = "database";
        paths[n++].mode = R_OK|W_OK;

        paths[n].path = wal;
        paths[n].what = "database";
        paths[n++].mode = R_OK|W_OK;

        paths[n].path = shm;
        paths[n].what = "database";
        paths[n++].mode = R_OK|W_OK;
    }

    if (ccf == NULL) {
        answer[0] = (int) ngx_http_async_task_try_paths(paths, n);
        answer[1] = ngx_errno;
        name = NULL;
        goto done;
    }

    name = (u_char *) ccf->username;

    if (pipe(fds) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "pipe() failed");
        return NGX_ERROR;
    }

    pid = fork();

    if (pid == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "fork() failed");
        (void) close(fds[0]);
        (void) close(fds[1]);
        return NGX_ERROR;
    }

    if (pid == 0) {
        (void) close(fds[0]);

        if (setgid(ccf->group) == -1
            || initgroups(ccf->username, ccf->group) == -1
            || setuid(ccf->user) == -1)
        {
            answer[0] = -1;

        } else {
            answer[0] = (int) ngx_http_async_task_try_paths(paths, n);
        }

        answer[1] = errno;

        (void) write(fds[1], answer, sizeof(answer));
        _exit(0);
    }

    (void) close(fds[1]);

    if (read(fds[0], answer, sizeof(answer)) != (ssize_t) sizeof(answer)) {
        answer[0] = -1;
        answer[1] = 0;
    }

    (void) close(fds[0]);

    while (waitpid(pid, &status, 0) == -1 && ngx_errno == NGX_EINTR) {
        /* void */
    }

done:

    if (answer[0] == (int) n) {
        return NGX_OK;
    }

    if (answer[0] < 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, answer[1],
                      "could not take the identity of user \"%s\" to "
                      "check the async_task store", name);
        return NGX_ERROR;
    }

    i = answer[0];

    if (name) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, answer[1],
                      "async_task_store %s \"%s\" is not %s by user \"%s\"",
                      paths[i].what, paths[i].path,
                      (paths[i].mode & X_OK) ? "writable" : "readable and "
                      "writable", name);

    } else {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, answer[1],
                      "async_task_store %s \"%s\" is not %s",
                      paths[i].what, paths[i].path,
                      (paths[i].mode & X_OK) ? "writable" : "readable and "
                      "writable");
    }

    return NGX_ERROR;
}


/* the index of the first path that fails, n when all pass */

static ngx_uint_t
ngx_http_async_task_try_paths(ngx_http_async_task_path_t *paths,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (access((char *) paths[i].path, paths[i].mode) == -1) {

            /* SQLite makes its -wal and -shm files when they are missing */

            if (paths[i].mode == (R_OK|W_OK) && ngx_errno == NGX_ENOENT) {
                continue;
            }

            return i;
        }
    }

    return n;
}


static ngx_int_t
ngx_http_async_task_init_process(ngx_cycle_t *cycle)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_async_task_module);

    if (amcf == NULL || amcf->store == NULL) {
        return NGX_OK;
    }

    if (ngx_http_async_task_store_init(cycle, amcf->store) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_id_init(cycle, amcf->store->thread_pool)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_dispatch_init(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_async_task_health_init(cycle, amcf);
}


static ngx_int_t
ngx_http_async_task_load_task(void *data, ngx_http_async_task_t *task)
{
    return ngx_http_async_task_shm_load(data, task);
}


static void
ngx_http_async_task_load_count(void *data, ngx_uint_t status, ngx_uint_t n)
{
    ngx_http_async_task_shm_load_count(data, status, n);
}


/* the thread pool module exits first: its threads have finished by now */

static void
ngx_http_async_task_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_async_task_module);

    if (amcf && amcf->store) {
        amcf->store->driver->exit();
    }
}
