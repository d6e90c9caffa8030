
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>

#include "ngx_http_async_task_pg_health.h"
#include "ngx_http_async_task_health.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_store_pg.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"


/*
 * The health of the instances, shared by the nodes of a PostgreSQL store
 * (the table instance_health, one row per instance name).
 *
 * One worker process of each node (worker 0) runs a round every half
 * interval= (100 ms to a second): one statement takes the probe leases of
 * the instances that are due, for the whole fleet (FOR UPDATE SKIP LOCKED:
 * two nodes never take the same), and reads every instance's row, which
 * the node's zone then follows.  That worker probes what it took and
 * writes the verdict, with the next probe's time.  The verdicts of task
 * requests, and the refused connections of upstreams without health
 * checks (max_fails=), are written by whichever worker ran the task: the
 * database counts them for every node.
 *
 * Every statement runs in a pool thread.  While the database cannot be
 * reached, the node probes by itself and keeps its own verdicts, as with
 * SQLite, and tries again every second; once a round works, the
 * database's rows apply again.
 */


#define NGX_HTTP_ASYNC_TASK_PG_HEALTH_MIN    100
#define NGX_HTTP_ASYNC_TASK_PG_HEALTH_MAX    1000


#define NGX_HTTP_ASYNC_TASK_PG_HEALTH_RETURNING                               \
    " RETURNING instance, version, healthy, fails, passes, down_until, "     \
    "last_check, false"

/* fails= in a row take an instance out, passes= in a row bring it back */
#define NGX_HTTP_ASYNC_TASK_PG_HEALTH_VERDICT                                 \
    "UPDATE instance_health SET version = version + 1, "                     \
    "fails = CASE WHEN $2::int = 1 THEN 0 ELSE fails + 1 END, "              \
    "passes = CASE WHEN $2::int = 1 THEN passes + 1 ELSE 0 END, "            \
    "healthy = CASE WHEN $2::int = 1 THEN healthy OR passes + 1 >= $3::int " \
    "ELSE healthy AND fails + 1 < $4::int END"


typedef enum {
    ngx_http_async_task_pg_health_round = 0,
    ngx_http_async_task_pg_health_probed,
    ngx_http_async_task_pg_health_task,
    ngx_http_async_task_pg_health_max_fails
} ngx_http_async_task_pg_health_e;


/* an instance's row */

typedef struct {
    ngx_str_t                         instance;
    int64_t                           version;
    int64_t                           down_until;
    int64_t                           last_check;
    ngx_uint_t                        fails;
    ngx_uint_t                        passes;
    unsigned                          healthy:1;
    unsigned                          taken:1;  /* its probe is ours */
} ngx_http_async_task_pg_health_row_t;


/* an instance that worker 0 follows, once for each name */

typedef struct {
    ngx_http_async_task_instance_t   *instance;
    ngx_http_async_task_srv_conf_t   *ups;
    int64_t                           version;  /* the row's, applied */
} ngx_http_async_task_pg_health_target_t;


/* a statement, on the thread pool */

typedef struct {
    ngx_http_async_task_pg_health_e   type;
    ngx_int_t                         rc;
    ngx_pool_t                       *pool;

    ngx_http_async_task_instance_t   *instance;
    ngx_http_async_task_srv_conf_t   *ups;
    ngx_uint_t                        ok;
    ngx_uint_t                        create;   /* round: the rows first */
    int64_t                           now;

    ngx_array_t                       rows;
} ngx_http_async_task_pg_health_call_t;


static void ngx_http_async_task_pg_health_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_async_task_pg_health_call(
    ngx_http_async_task_pg_health_e type, ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok);
static void ngx_http_async_task_pg_health_thread(void *data, ngx_log_t *log);
static PGresult *ngx_http_async_task_pg_health_round_sql(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_pg_health_call_t *call,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_health_rows(
    ngx_http_async_task_pg_health_call_t *call, PGresult *res);
static void ngx_http_async_task_pg_health_done(ngx_event_t *ev);
static void ngx_http_async_task_pg_health_round_done(
    ngx_http_async_task_pg_health_call_t *call);
static ngx_http_async_task_pg_health_target_t *
    ngx_http_async_task_pg_health_target(ngx_str_t *name);
static void ngx_http_async_task_pg_health_apply(
    ngx_http_async_task_pg_health_target_t *t,
    ngx_http_async_task_pg_health_row_t *row);
static u_char *ngx_http_async_task_pg_health_array(ngx_pool_t *pool,
    ngx_uint_t probed);


static ngx_http_async_task_main_conf_t  *ngx_http_async_task_pg_health_amcf;

/* worker 0's: what it follows, and its rounds */
static ngx_http_async_task_pg_health_target_t
                                 *ngx_http_async_task_pg_health_targets;
static ngx_uint_t                 ngx_http_async_task_pg_health_ntargets;
static u_char                    *ngx_http_async_task_pg_health_names;
static u_char                    *ngx_http_async_task_pg_health_probes;
static ngx_str_t                  ngx_http_async_task_pg_health_owner;
static ngx_msec_t                 ngx_http_async_task_pg_health_period;
static ngx_msec_t                 ngx_http_async_task_pg_health_lease;
static ngx_uint_t                 ngx_http_async_task_pg_health_up;
static ngx_uint_t                 ngx_http_async_task_pg_health_created;
static ngx_event_t                ngx_http_async_task_pg_health_event;


/*
 * In every worker process of a node with a shared store; worker 0 runs the
 * rounds, for the instances that are not "down".
 */

ngx_int_t
ngx_http_async_task_pg_health_init(ngx_cycle_t *cycle,
    ngx_http_async_task_main_conf_t *amcf)
{
    u_char                                  *p;
    ngx_uint_t                               k, i, j, n;
    ngx_http_async_task_backend_t           *backend;
    ngx_http_async_task_instance_t          *in;
    ngx_http_async_task_srv_conf_t          *ups;
    ngx_http_async_task_pg_health_target_t  *t;

    ngx_http_async_task_pg_health_amcf = amcf;
    ngx_http_async_task_pg_health_ntargets = 0;
    ngx_http_async_task_pg_health_up = 0;
    ngx_http_async_task_pg_health_created = 0;

    if (ngx_worker != 0 || amcf->instances.nelts == 0) {
        return NGX_OK;
    }

    t = ngx_palloc(cycle->pool, amcf->instances.nelts
                   * sizeof(ngx_http_async_task_pg_health_target_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    ngx_http_async_task_pg_health_targets = t;
    ngx_http_async_task_pg_health_period = NGX_HTTP_ASYNC_TASK_PG_HEALTH_MAX;
    ngx_http_async_task_pg_health_lease = 0;

    n = 0;

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &amcf->backends[k];
        ups = backend->ups;

        if (ups == NULL) {
            continue;
        }

        for (i = 0; i < backend->ninstances; i++) {
            in = backend->instances[i];

            if (in->down) {
                continue;
            }

            for (j = 0; j < n; j++) {
                if (t[j].instance->name.len == in->name.len
                    && ngx_memcmp(t[j].instance->name.data, in->name.data,
                                  in->name.len) == 0)
                {
                    break;
                }
            }

            if (j < n) {
                continue;
            }

            t[n].instance = in;
            t[n].ups = ups;
            t[n].version = -1;
            n++;

            if (ups->health_check) {
                ngx_http_async_task_pg_health_period = ngx_min(
                                  ngx_http_async_task_pg_health_period,
                                  ups->hc_interval / 2);
                ngx_http_async_task_pg_health_lease = ngx_max(
                                  ngx_http_async_task_pg_health_lease,
                                  ups->hc_timeout * 2);
            }
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    /* shared until a round fails: no probes of its own meanwhile */

    ngx_http_async_task_pg_health_up = 1;
    ngx_http_async_task_pg_health_ntargets = n;
    ngx_http_async_task_pg_health_period = ngx_max(
                                  ngx_http_async_task_pg_health_period,
                                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_MIN);

    ngx_http_async_task_pg_health_names =
                       ngx_http_async_task_pg_health_array(cycle->pool, 0);
    ngx_http_async_task_pg_health_probes =
                       ngx_http_async_task_pg_health_array(cycle->pool, 1);

    p = ngx_pnalloc(cycle->pool, amcf->store->node.len + 1 + NGX_INT_T_LEN);

    if (ngx_http_async_task_pg_health_names == NULL
        || ngx_http_async_task_pg_health_probes == NULL
        || p == NULL)
    {
        return NGX_ERROR;
    }

    ngx_http_async_task_pg_health_owner.data = p;
    ngx_http_async_task_pg_health_owner.len =
                        ngx_sprintf(p, "%V/%P", &amcf->store->node, ngx_pid)
                        - p;

    ngx_memzero(&ngx_http_async_task_pg_health_event, sizeof(ngx_event_t));

    ngx_http_async_task_pg_health_event.handler =
                                        ngx_http_async_task_pg_health_timer;
    ngx_http_async_task_pg_health_event.data = amcf;
    ngx_http_async_task_pg_health_event.log = cycle->log;
    ngx_http_async_task_pg_health_event.cancelable = 1;

    ngx_add_timer(&ngx_http_async_task_pg_health_event, 1);

    return NGX_OK;
}


/* whether the rounds work: the node's probes are leased from the fleet */

ngx_uint_t
ngx_http_async_task_pg_health_shared(void)
{
    return ngx_http_async_task_pg_health_up;
}


static void
ngx_http_async_task_pg_health_timer(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_terminate) {
        return;
    }

    if (ngx_http_async_task_pg_health_call(ngx_http_async_task_pg_health_round,
                                           NULL, NULL, 0)
        != NGX_OK)
    {
        ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_PG_HEALTH_MAX);
    }
}


/*
 * A verdict on an instance, for the database to count: a probe's ("probe",
 * which ends its lease), or a task request's.  NGX_DECLINED: the caller
 * counts it in the zone itself.
 */

ngx_int_t
ngx_http_async_task_pg_health_verdict(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_srv_conf_t *ups, ngx_uint_t ok, ngx_uint_t probe)
{
    /* a task request that changes nothing: no write */

    if (!probe && ok && in->sh->healthy && in->sh->fails == 0) {
        return NGX_OK;
    }

    return ngx_http_async_task_pg_health_call(probe
                                      ? ngx_http_async_task_pg_health_probed
                                      : ngx_http_async_task_pg_health_task,
                                      in, ups, ok);
}


/*
 * A refused connection (ok: 0), or a success after failures, in an
 * upstream without health checks: the zone counts it for this node, the
 * database for all of them.
 */

void
ngx_http_async_task_pg_health_passive(ngx_http_async_task_instance_t *in,
    ngx_uint_t ok)
{
    (void) ngx_http_async_task_pg_health_call(
                        ngx_http_async_task_pg_health_max_fails, in, NULL, ok);
}


static ngx_int_t
ngx_http_async_task_pg_health_call(ngx_http_async_task_pg_health_e type,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t ok)
{
    ngx_pool_t                            *pool;
    ngx_http_async_task_pg_health_call_t  *call;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_DECLINED;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_http_async_task_pg_health_call_t));
    if (call == NULL) {
        goto failed;
    }

    if (ngx_array_init(&call->rows, pool, 4,
                       sizeof(ngx_http_async_task_pg_health_row_t))
        != NGX_OK)
    {
        goto failed;
    }

    call->type = type;
    call->rc = NGX_ERROR;
    call->pool = pool;
    call->instance = in;
    call->ups = ups;
    call->ok = ok;
    call->create = !ngx_http_async_task_pg_health_created;
    call->now = ngx_http_async_task_util_now_ms();

    if (ngx_http_async_task_store_post(pool, ngx_cycle->log,
                                       ngx_http_async_task_pg_health_thread,
                                       ngx_http_async_task_pg_health_done,
                                       call)
        == NGX_OK)
    {
        return NGX_OK;
    }

failed:

    ngx_destroy_pool(pool);

    return NGX_DECLINED;
}


static void
ngx_http_async_task_pg_health_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_pg_health_call_t *call = data;

    PGresult                         *res;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_instance_t   *in;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(
                            ngx_http_async_task_pg_health_amcf->store, log);
    if (pg == NULL) {
        return;
    }

    in = call->instance;
    p.n = 0;

    switch (call->type) {

    case ngx_http_async_task_pg_health_round:
        res = ngx_http_async_task_pg_health_round_sql(pg, call, log);
        break;

    case ngx_http_async_task_pg_health_probed:
        ngx_http_async_task_pg_str(&p, &in->name);
        ngx_http_async_task_pg_int(&p, call->ok);
        ngx_http_async_task_pg_int(&p, call->ups->hc_passes);
        ngx_http_async_task_pg_int(&p, call->ups->hc_fails);
        ngx_http_async_task_pg_int(&p, call->now);
        ngx_http_async_task_pg_int(&p, call->now + call->ups->hc_interval);

        res = ngx_http_async_task_pg_exec(pg,
                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_VERDICT ", "
                  "last_check = $5::bigint, next_check = $6::bigint, "
                  "probe_owner = NULL, probe_until = 0 WHERE instance = $1"
                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_RETURNING,
                  &p, log);
        break;

    case ngx_http_async_task_pg_health_task:
        ngx_http_async_task_pg_str(&p, &in->name);
        ngx_http_async_task_pg_int(&p, call->ok);
        ngx_http_async_task_pg_int(&p, call->ups->hc_passes);
        ngx_http_async_task_pg_int(&p, call->ups->hc_fails);

        res = ngx_http_async_task_pg_exec(pg,
                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_VERDICT
                  " WHERE instance = $1"
                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_RETURNING,
                  &p, log);
        break;

    default: /* ngx_http_async_task_pg_health_max_fails */
        ngx_http_async_task_pg_str(&p, &in->name);
        ngx_http_async_task_pg_int(&p, call->ok);
        ngx_http_async_task_pg_int(&p, in->max_fails);
        ngx_http_async_task_pg_int(&p, call->now + in->fail_timeout);

        /* as ngx_http_async_task_upstream_free() counts in the zone */

        res = ngx_http_async_task_pg_exec(pg,
                  "UPDATE instance_health SET version = version + 1, "
                  "fails = CASE WHEN $2::int = 1 THEN 0 ELSE fails + 1 END, "
                  "down_until = CASE WHEN $2::int = 0 "
                  "AND fails + 1 >= $3::int THEN $4::bigint "
                  "ELSE down_until END WHERE instance = $1"
                  NGX_HTTP_ASYNC_TASK_PG_HEALTH_RETURNING,
                  &p, log);
    }

    if (res == NULL) {
        return;
    }

    call->rc = ngx_http_async_task_pg_health_rows(call, res);

    PQclear(res);
}


/*
 * A round: the rows made once (a new instance, or the first round after
 * an error), then the leases of the probes due taken and every row read.
 */

static PGresult *
ngx_http_async_task_pg_health_round_sql(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_pg_health_call_t *call, ngx_log_t *log)
{
    ngx_http_async_task_pg_params_t  p;

    p.values[0] = (char *) ngx_http_async_task_pg_health_names;
    p.values[1] = (char *) ngx_http_async_task_pg_health_probes;
    p.lengths[0] = 0;
    p.lengths[1] = 0;
    p.formats[0] = 0;
    p.formats[1] = 0;
    p.n = 1;

    if (call->create
        && ngx_http_async_task_pg_command(pg,
               "INSERT INTO instance_health (instance) "
               "SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
               &p, log)
           != NGX_OK)
    {
        return NULL;
    }

    p.n = 2;
    ngx_http_async_task_pg_int(&p, call->now);
    ngx_http_async_task_pg_int(&p,
                        call->now + ngx_http_async_task_pg_health_lease);
    ngx_http_async_task_pg_str(&p, &ngx_http_async_task_pg_health_owner);

    return ngx_http_async_task_pg_exec(pg,
               "WITH due AS (SELECT instance FROM instance_health "
               "WHERE instance = ANY($2::text[]) "
               "AND next_check <= $3::bigint AND probe_until <= $3::bigint "
               "FOR UPDATE SKIP LOCKED), "
               "taken AS (UPDATE instance_health h "
               "SET probe_owner = $5, probe_until = $4::bigint "
               "FROM due WHERE h.instance = due.instance "
               "RETURNING h.instance) "
               "SELECT h.instance, h.version, h.healthy, h.fails, h.passes, "
               "h.down_until, h.last_check, taken.instance IS NOT NULL "
               "FROM instance_health h "
               "LEFT JOIN taken ON taken.instance = h.instance "
               "WHERE h.instance = ANY($1::text[])",
               &p, log);
}


static ngx_int_t
ngx_http_async_task_pg_health_rows(ngx_http_async_task_pg_health_call_t *call,
    PGresult *res)
{
    int                                   i;
    ngx_http_async_task_pg_health_row_t  *row;

    if (PQnfields(res) != 8) {
        return NGX_ERROR;
    }

    for (i = 0; i < PQntuples(res); i++) {

        row = ngx_array_push(&call->rows);
        if (row == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_async_task_pg_text(res, i, 0, call->pool, &row->instance)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        row->version = ngx_http_async_task_pg_int64(res, i, 1);
        row->healthy = (PQgetvalue(res, i, 2)[0] == 't');
        row->fails = (ngx_uint_t) ngx_http_async_task_pg_int64(res, i, 3);
        row->passes = (ngx_uint_t) ngx_http_async_task_pg_int64(res, i, 4);
        row->down_until = ngx_http_async_task_pg_int64(res, i, 5);
        row->last_check = ngx_http_async_task_pg_int64(res, i, 6);
        row->taken = (PQgetvalue(res, i, 7)[0] == 't');
    }

    /* a verdict on a row that is not there yet */

    if (call->type != ngx_http_async_task_pg_health_round
        && call->rows.nelts == 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * In the event loop.  Worker 0 applies what the database says; in other
 * workers the next round brings it.  A verdict the database did not
 * count is counted in the zone alone.
 */

static void
ngx_http_async_task_pg_health_done(ngx_event_t *ev)
{
    ngx_http_async_task_pg_health_call_t *call = ev->data;

    ngx_http_async_task_shm_t               *shm;
    ngx_http_async_task_instance_t          *in;
    ngx_http_async_task_pg_health_row_t     *row;
    ngx_http_async_task_pg_health_target_t  *t;

    in = call->instance;

    if (call->type == ngx_http_async_task_pg_health_round) {
        ngx_http_async_task_pg_health_round_done(call);

    } else if (call->rc == NGX_OK) {
        row = call->rows.elts;
        t = ngx_http_async_task_pg_health_ntargets
            ? ngx_http_async_task_pg_health_target(&row->instance) : NULL;

        if (t) {
            ngx_http_async_task_pg_health_apply(t, row);
        }

    } else if (call->type != ngx_http_async_task_pg_health_max_fails) {

        if (call->type == ngx_http_async_task_pg_health_probed) {
            /* the probe's end, for the zone's own probes meanwhile */
            shm = ngx_http_async_task_pg_health_amcf->store->shm_zone->data;
            ngx_http_async_task_upstream_check_done(shm, in);
        }

        ngx_http_async_task_health_verdict(in, call->ups, call->ok,
                                           ngx_cycle->log);
    }

    ngx_destroy_pool(call->pool);
}


static void
ngx_http_async_task_pg_health_round_done(
    ngx_http_async_task_pg_health_call_t *call)
{
    ngx_msec_t                               next;
    ngx_uint_t                               i;
    ngx_http_async_task_pg_health_row_t     *row;
    ngx_http_async_task_pg_health_target_t  *t;

    next = ngx_http_async_task_pg_health_period;

    if (call->rc != NGX_OK) {

        if (ngx_http_async_task_pg_health_up) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "async_task health: the store cannot be reached, "
                          "this node probes by itself");
        }

        ngx_http_async_task_pg_health_up = 0;
        ngx_http_async_task_pg_health_created = 0;

        /* what the zone holds now is its own */

        for (i = 0; i < ngx_http_async_task_pg_health_ntargets; i++) {
            ngx_http_async_task_pg_health_targets[i].version = -1;
        }

        next = ngx_max(next, NGX_HTTP_ASYNC_TASK_PG_HEALTH_MAX);

        goto done;
    }

    ngx_http_async_task_pg_health_up = 1;
    ngx_http_async_task_pg_health_created = 1;

    row = call->rows.elts;

    for (i = 0; i < call->rows.nelts; i++) {

        t = ngx_http_async_task_pg_health_target(&row[i].instance);
        if (t == NULL) {
            continue;
        }

        ngx_http_async_task_pg_health_apply(t, &row[i]);

        if (row[i].taken && !ngx_exiting && !ngx_terminate) {
            ngx_http_async_task_health_probe(t->instance, t->ups, 1);
        }
    }

    if (call->rows.nelts < ngx_http_async_task_pg_health_ntargets) {
        /* a row is missing (another node's new configuration): make it */
        ngx_http_async_task_pg_health_created = 0;
    }

done:

    if (!ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&ngx_http_async_task_pg_health_event, next);
    }
}


static ngx_http_async_task_pg_health_target_t *
ngx_http_async_task_pg_health_target(ngx_str_t *name)
{
    ngx_uint_t                               i;
    ngx_http_async_task_pg_health_target_t  *t;

    t = ngx_http_async_task_pg_health_targets;

    for (i = 0; i < ngx_http_async_task_pg_health_ntargets; i++) {
        if (t[i].instance->name.len == name->len
            && ngx_memcmp(t[i].instance->name.data, name->data, name->len)
               == 0)
        {
            return &t[i];
        }
    }

    return NULL;
}


/* the zone follows a row newer than the last one applied */

static void
ngx_http_async_task_pg_health_apply(ngx_http_async_task_pg_health_target_t *t,
    ngx_http_async_task_pg_health_row_t *row)
{
    ngx_int_t                           change;
    ngx_http_async_task_shm_t          *shm;
    ngx_http_async_task_instance_sh_t   sh;

    if (row->version <= t->version) {
        return;
    }

    t->version = row->version;

    sh.healthy = row->healthy;
    sh.fails = row->fails;
    sh.passes = row->passes;
    sh.down_until = row->down_until;
    sh.last_check = row->last_check;

    shm = ngx_http_async_task_pg_health_amcf->store->shm_zone->data;
    change = ngx_http_async_task_upstream_shared(shm, t->instance, &sh);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_task health: %V from the store, version:%L, "
                   "healthy:%d, fails:%ui, passes:%ui",
                   &t->instance->name, row->version, (int) row->healthy,
                   row->fails, row->passes);

    if (t->ups->health_check) {
        ngx_http_async_task_health_log(t->instance, change, ngx_cycle->log);
    }
}


/* the text form of an array of the instances' names, or of the probed */

static u_char *
ngx_http_async_task_pg_health_array(ngx_pool_t *pool, ngx_uint_t probed)
{
    u_char                                  *buf, *p;
    size_t                                   size;
    ngx_uint_t                               i;
    ngx_http_async_task_pg_health_target_t  *t;

    t = ngx_http_async_task_pg_health_targets;
    size = sizeof("{}");

    for (i = 0; i < ngx_http_async_task_pg_health_ntargets; i++) {
        size += 2 * t[i].instance->name.len + 3;
    }

    buf = ngx_pnalloc(pool, size);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;
    *p++ = '{';

    for (i = 0; i < ngx_http_async_task_pg_health_ntargets; i++) {

        if (probed && !t[i].ups->health_check) {
            continue;
        }

        if (p != buf + 1) {
            *p++ = ',';
        }

        p = ngx_http_async_task_pg_element(p, t[i].instance->name.data,
                                           t[i].instance->name.len);
    }

    *p++ = '}';
    *p = '\0';

    return buf;
}
