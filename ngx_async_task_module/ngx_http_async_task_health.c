
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_health.h"
#include "ngx_http_async_task_client.h"
#include "ngx_http_async_task_conn.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_pg_health.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"


/*
 * Active health checks: every interval=, one probe per instance for the
 * whole nginx.  The worker process that finds a probe due takes it in the
 * zone (checker), so that two workers never probe the same instance at
 * once; a probe whose worker died is taken over after its timeout.
 *
 * With a store shared by several nodes (PostgreSQL) the nodes share the
 * probes and the verdicts (ngx_http_async_task_pg_health.c): worker 0 of
 * each node takes the probes due from the database, and the zone's own
 * probes run only while the database cannot be reached.
 */


#define NGX_HTTP_ASYNC_TASK_HEALTH_TICK  100


typedef struct {
    ngx_pool_t                      *pool;
    ngx_log_t                        log;
    ngx_http_async_task_instance_t  *instance;
    ngx_http_async_task_client_t     client;
    ngx_uint_t                       shared;    /* leased from the store */
} ngx_http_async_task_probe_t;


static void ngx_http_async_task_health_tick(ngx_event_t *ev);
static void ngx_http_async_task_health_done(ngx_http_async_task_client_t *hc);


static ngx_event_t                       ngx_http_async_task_health_event;
static ngx_http_async_task_main_conf_t  *ngx_http_async_task_health_amcf;


ngx_int_t
ngx_http_async_task_health_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf)
{
    ngx_uint_t  k;

    ngx_http_async_task_health_amcf = amcf;

    if (amcf->store->driver->shared) {
        if (ngx_http_async_task_pg_health_init(cycle, amcf) != NGX_OK) {
            return NGX_ERROR;
        }

        /* worker 0 probes for the node */

        if (ngx_worker != 0) {
            return NGX_OK;
        }
    }

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        if (amcf->backends[k].ups && amcf->backends[k].ups->health_check) {
            break;
        }
    }

    if (k == NGX_HTTP_ASYNC_TASK_NKINDS) {
        return NGX_OK;
    }

    ngx_http_async_task_health_event.handler = ngx_http_async_task_health_tick;
    ngx_http_async_task_health_event.data = amcf;
    ngx_http_async_task_health_event.log = cycle->log;
    ngx_http_async_task_health_event.cancelable = 1;

    ngx_add_timer(&ngx_http_async_task_health_event,
                  NGX_HTTP_ASYNC_TASK_HEALTH_TICK);

    return NGX_OK;
}


static void
ngx_http_async_task_health_tick(ngx_event_t *ev)
{
    int64_t                           now;
    ngx_uint_t                        k, i;
    ngx_http_async_task_shm_t        *shm;
    ngx_http_async_task_backend_t    *backend;
    ngx_http_async_task_instance_t   *in;
    ngx_http_async_task_srv_conf_t   *ups;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    if (ngx_http_async_task_pg_health_shared()) {
        ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_HEALTH_TICK);
        return;
    }

    shm = ngx_http_async_task_health_amcf->store->shm_zone->data;
    now = ngx_http_async_task_util_cached_ms();

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &ngx_http_async_task_health_amcf->backends[k];
        ups = backend->ups;

        if (ups == NULL || !ups->health_check) {
            continue;
        }

        for (i = 0; i < backend->ninstances; i++) {
            in = backend->instances[i];

            if (in->down) {
                continue;
            }

            if (ngx_http_async_task_upstream_check_take(shm, in, now,
                                                        ups->hc_interval,
                                                        ups->hc_timeout))
            {
                ngx_http_async_task_health_probe(in, ups, 0);
            }
        }
    }

    ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_HEALTH_TICK);
}


/* a probe of the instance: "shared" when its lease is the store's */

void
ngx_http_async_task_health_probe(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t shared)
{
    ngx_buf_t                      *b;
    ngx_pool_t                     *pool;
    ngx_chain_t                    *cl;
    ngx_http_async_task_probe_t    *probe;
    ngx_http_async_task_client_t   *hc;
    ngx_http_async_task_backend_t  *backend;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    backend = &ngx_http_async_task_health_amcf->backends[in->kind];

    /* a probe carries what a task request does: Host, credentials */

    probe = ngx_pcalloc(pool, sizeof(ngx_http_async_task_probe_t));
    b = ngx_create_temp_buf(pool, sizeof("GET  HTTP/1.1" CRLF
                                         "User-Agent: ngx_async_task" CRLF
                                         "Connection: close" CRLF CRLF)
                                  + ups->hc_uri.len
                                  + ngx_http_async_task_conn_headers_len(
                                                                backend, in));
    cl = ngx_alloc_chain_link(pool);

    if (probe == NULL || b == NULL || cl == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    b->last = ngx_sprintf(b->last, "GET %V HTTP/1.1" CRLF, &ups->hc_uri);
    b->last = ngx_http_async_task_conn_headers(b->last, backend, in);
    b->last = ngx_sprintf(b->last, "User-Agent: ngx_async_task" CRLF
                          "Connection: close" CRLF CRLF);

    cl->buf = b;
    cl->next = NULL;

    probe->pool = pool;
    probe->log = *ngx_cycle->log;
    pool->log = &probe->log;
    probe->instance = in;
    probe->shared = shared;

    hc = &probe->client;

    hc->pool = pool;
    hc->log = &probe->log;
    hc->request = cl;
    hc->connect_timeout = ups->hc_timeout;
    hc->timeout = ups->hc_timeout;
    hc->max_response = 64 * 1024;
    hc->handler = ngx_http_async_task_health_done;
    hc->data = probe;
    hc->peer.sockaddr = in->sockaddr;
    hc->peer.socklen = in->socklen;
    hc->peer.name = &in->name;

    if (ngx_http_async_task_conn_client(hc, backend, in) != NGX_OK
        || ngx_http_async_task_client_start(hc) != NGX_OK)
    {
        hc->result = ngx_http_async_task_client_refused;
        ngx_http_async_task_health_done(hc);
    }
}


static void
ngx_http_async_task_health_done(ngx_http_async_task_client_t *hc)
{
    ngx_http_async_task_probe_t *probe = hc->data;

    ngx_uint_t                       ok;
    ngx_http_async_task_shm_t       *shm;
    ngx_http_async_task_srv_conf_t  *ups;
    ngx_http_async_task_instance_t  *in;

    in = probe->instance;
    ups = ngx_http_async_task_health_amcf->backends[in->kind].ups;
    shm = ngx_http_async_task_health_amcf->store->shm_zone->data;

    ok = (hc->result == ngx_http_async_task_client_ok
          && hc->status >= 200 && hc->status < 400);

    /* an aborted probe (the worker exits) leaves its lease to expire */

    if (hc->result == ngx_http_async_task_client_aborted) {
        ngx_destroy_pool(probe->pool);
        return;
    }

    if (!probe->shared) {
        ngx_http_async_task_upstream_check_done(shm, in);
        ngx_http_async_task_health_report(in, ups, ok, &probe->log);

    } else if (ngx_http_async_task_pg_health_verdict(in, ups, ok, 1)
               != NGX_OK)
    {
        /* the store would have counted it, and ended the lease */
        ngx_http_async_task_upstream_check_done(shm, in);
        ngx_http_async_task_health_verdict(in, ups, ok, &probe->log);
    }

    ngx_destroy_pool(probe->pool);
}


/*
 * A probe's or a task request's verdict on an instance: upstream.c keeps
 * the count, each change is logged here.
 */

void
ngx_http_async_task_health_report(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok, ngx_log_t *log)
{
    if (ups == NULL || !ups->health_check) {
        return;
    }

    if (ngx_http_async_task_health_amcf->store->driver->shared
        && ngx_http_async_task_pg_health_verdict(in, ups, ok, 0) == NGX_OK)
    {
        /* the nodes' verdicts are counted in the store */
        return;
    }

    ngx_http_async_task_health_verdict(in, ups, ok, log);
}


/* a verdict counted in the zone alone */

void
ngx_http_async_task_health_verdict(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok, ngx_log_t *log)
{
    ngx_int_t                   change;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_health_amcf->store->shm_zone->data;
    change = ngx_http_async_task_upstream_verdict(shm, in, ups, ok, log);

    ngx_http_async_task_health_log(in, change, log);
}


/* a change of an instance's health: 1 up again, -1 down, 0 none */

void
ngx_http_async_task_health_log(ngx_http_async_task_instance_t *in,
    ngx_int_t change, ngx_log_t *log)
{
    if (change) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "async_task: instance %V is %s", &in->name,
                      change > 0 ? "up again" : "down");
    }
}


/*
 * A run's end in an upstream without health checks, before the zone
 * counts it (ngx_http_async_task_upstream_free()): with a shared store a
 * refused connection, or a success after failures, is counted in the
 * store too, so that max_fails= holds for all nodes together.
 */

void
ngx_http_async_task_health_passive(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_http_async_task_client_e result)
{
    if (ups->health_check || in->max_fails == 0
        || ngx_http_async_task_health_amcf == NULL
        || !ngx_http_async_task_health_amcf->store->driver->shared)
    {
        return;
    }

    if (result == ngx_http_async_task_client_refused) {
        ngx_http_async_task_pg_health_passive(in, 0);

    } else if (result == ngx_http_async_task_client_ok && in->sh->fails) {
        ngx_http_async_task_pg_health_passive(in, 1);
    }
}
