
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_protocol.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_health.h"
#include "ngx_http_async_task_util.h"


/* points on the user_hash ring per unit of weight, as upstream hash has */
#define NGX_HTTP_ASYNC_TASK_POINTS  160


static void ngx_http_async_task_slots_locked(
    ngx_http_async_task_backend_t *backend, ngx_uint_t *free,
    ngx_uint_t *total);
static ngx_int_t ngx_http_async_task_instances_add(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_backend_t *backend, ngx_uint_t kind);
static ngx_int_t ngx_http_async_task_ring(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend);
static int ngx_libc_cdecl ngx_http_async_task_point_cmp(const void *one,
    const void *two);
static ngx_http_async_task_instance_t *ngx_http_async_task_pick_locked(
    ngx_http_async_task_backend_t *backend, ngx_str_t *user,
    ngx_uint_t avoid);
static ngx_uint_t ngx_http_async_task_tier_locked(
    ngx_http_async_task_backend_t *backend);
static ngx_uint_t ngx_http_async_task_usable(
    ngx_http_async_task_instance_t *in, ngx_uint_t backup);
static ngx_http_async_task_instance_t *ngx_http_async_task_pick_rr(
    ngx_http_async_task_backend_t *backend, ngx_uint_t avoid,
    ngx_uint_t backup);
static ngx_http_async_task_instance_t *ngx_http_async_task_pick_least(
    ngx_http_async_task_backend_t *backend, ngx_uint_t avoid,
    ngx_uint_t backup);
static void ngx_http_async_task_step_locked(
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_int_t sign);
static ngx_http_async_task_instance_t *ngx_http_async_task_pick_hash(
    ngx_http_async_task_backend_t *backend, ngx_str_t *user,
    ngx_uint_t avoid);


static ngx_conf_enum_t  ngx_http_async_task_balance_methods[] = {
    { ngx_string("round_robin"), NGX_HTTP_ASYNC_TASK_ROUND_ROBIN },
    { ngx_string("user_hash"), NGX_HTTP_ASYNC_TASK_USER_HASH },
    { ngx_string("least_busy"), NGX_HTTP_ASYNC_TASK_LEAST_BUSY },
    { ngx_null_string, 0 }
};


void *
ngx_http_async_task_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_async_task_srv_conf_t  *ascf;

    ascf = ngx_pcalloc(cf->pool, sizeof(ngx_http_async_task_srv_conf_t));
    if (ascf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ascf->balance = NGX_HTTP_ASYNC_TASK_ROUND_ROBIN;
     *     ascf->health_check = 0;
     *     ascf->hc_uri = { 0, NULL };
     */

    return ascf;
}


/*
 * async_task_balance round_robin | user_hash | least_busy;
 * a table as ngx_conf_set_enum_slot() reads, with a message that names
 * the choices
 */

char *
ngx_http_async_task_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_async_task_srv_conf_t *ascf = conf;

    ngx_str_t         *value;
    ngx_conf_enum_t   *m;

    value = cf->args->elts;

    for (m = ngx_http_async_task_balance_methods; m->name.len; m++) {
        if (m->name.len == value[1].len
            && ngx_strcmp(m->name.data, value[1].data) == 0)
        {
            ascf->balance = m->value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid balancing method \"%V\", expected "
                       "\"round_robin\", \"user_hash\" or \"least_busy\"",
                       &value[1]);

    return NGX_CONF_ERROR;
}


/*
 * async_task_health_check [interval=time] [timeout=time] [fails=number]
 *                         [passes=number] [uri=uri];
 */

char *
ngx_http_async_task_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_async_task_srv_conf_t *ascf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    if (ascf->health_check) {
        return "is duplicate";
    }

    ascf->health_check = 1;
    ascf->hc_interval = 30000;
    ascf->hc_timeout = 2000;
    ascf->hc_fails = 3;
    ascf->hc_passes = 2;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0
            || ngx_strncmp(value[i].data, "timeout=", 8) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'i') {
                ascf->hc_interval = n;

            } else {
                ascf->hc_timeout = n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "fails=", 6) == 0
            || ngx_strncmp(value[i].data, "passes=", 7) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_atoi(s.data, s.len);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'f') {
                ascf->hc_fails = n;

            } else {
                ascf->hc_passes = n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "uri=", 4) == 0) {
            ascf->hc_uri.data = value[i].data + 4;
            ascf->hc_uri.len = value[i].len - 4;

            if (ascf->hc_uri.len == 0 || ascf->hc_uri.data[0] != '/') {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * Every address of every server of a backend's upstream is an instance;
 * "server" parameters keep their meaning: weight, max_conns (tasks at
 * once, 1 when unset), down, backup.
 */

ngx_int_t
ngx_http_async_task_init_instances(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf)
{
    ngx_uint_t                       i, k;
    ngx_http_async_task_backend_t   *backend;
    ngx_http_async_task_instance_t  *in;

    if (ngx_array_init(&amcf->instances, cf->pool, 4,
                       sizeof(ngx_http_async_task_instance_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &amcf->backends[k];

        if (backend->upstream == NULL) {
            continue;
        }

        backend->ups = backend->upstream->srv_conf[
                                       ngx_http_async_task_module.ctx_index];

        /* without uri=, the probe its protocol's servers answer */

        if (backend->ups->health_check && backend->ups->hc_uri.len == 0) {
            backend->ups->hc_uri = backend->protocol->health_uri;
        }

        if (ngx_http_async_task_instances_add(cf, amcf, backend, k)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* the array is complete: now pointers into it hold */

    in = amcf->instances.elts;

    for (i = 0; i < amcf->instances.nelts; i++) {
        ngx_queue_init(&in[i].idle);
    }

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        backend = &amcf->backends[k];

        if (backend->upstream && ngx_http_async_task_ring(cf, backend)
                                 != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_instances_add(ngx_conf_t *cf,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_backend_t *backend, ngx_uint_t kind)
{
    u_char                          *p;
    ngx_uint_t                       i, j;
    ngx_http_upstream_server_t      *server;
    ngx_http_async_task_instance_t  *in;

    if (backend->upstream->servers == NULL
        || backend->upstream->servers->nelts == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "no servers in upstream \"%V\" in %s:%ui",
                      &backend->upstream_name, backend->file, backend->line);
        return NGX_ERROR;
    }

    server = backend->upstream->servers->elts;

    for (i = 0; i < backend->upstream->servers->nelts; i++) {
        for (j = 0; j < server[i].naddrs; j++) {

            in = ngx_array_push(&amcf->instances);
            if (in == NULL) {
                return NGX_ERROR;
            }

            ngx_memzero(in, sizeof(ngx_http_async_task_instance_t));

            in->index = amcf->instances.nelts - 1;
            in->kind = kind;
            in->server = server[i].addrs[j].name;
            in->host = server[i].name;
            in->sockaddr = server[i].addrs[j].sockaddr;
            in->socklen = server[i].addrs[j].socklen;
            in->weight = server[i].weight ? server[i].weight : 1;
            in->max_conns = server[i].max_conns ? server[i].max_conns : 1;
            in->max_fails = server[i].max_fails;
            in->fail_timeout = server[i].fail_timeout * 1000;
            in->down = server[i].down;
            in->backup = server[i].backup;

            in->name.len = backend->upstream_name.len + 1 + in->server.len;
            in->name.data = ngx_pnalloc(cf->pool, in->name.len);
            if (in->name.data == NULL) {
                return NGX_ERROR;
            }

            p = ngx_cpymem(in->name.data, backend->upstream_name.data,
                           backend->upstream_name.len);
            *p++ = '/';
            ngx_memcpy(p, in->server.data, in->server.len);

            backend->ninstances++;
        }
    }

    return NGX_OK;
}


/*
 * The user_hash ring: points hashed from each instance's name, so that
 * every worker process builds the same ring, and adding or removing one
 * of N instances moves about 1/N of the users.  MurmurHash2, not CRC32:
 * the CRC32 of "host:port-N" for N in a row clusters, and gave one of
 * three equal instances over half of the ring for some ports.
 */

static ngx_int_t
ngx_http_async_task_ring(ngx_conf_t *cf,
    ngx_http_async_task_backend_t *backend)
{
    size_t                           n;
    uint32_t                         hash;
    ngx_uint_t                       i, j, k;
    ngx_http_async_task_instance_t  *instances, *in;
    ngx_http_async_task_main_conf_t *amcf;
    u_char                           key[NGX_SOCKADDR_STRLEN + 256];

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_async_task_module);

    backend->instances = ngx_palloc(cf->pool, backend->ninstances
                                    * sizeof(ngx_http_async_task_instance_t *));
    if (backend->instances == NULL) {
        return NGX_ERROR;
    }

    instances = amcf->instances.elts;
    n = 0;
    k = 0;

    for (i = 0; i < amcf->instances.nelts; i++) {
        if (&amcf->backends[instances[i].kind] == backend) {
            backend->instances[k++] = &instances[i];

            if (!instances[i].backup) {
                n += instances[i].weight * NGX_HTTP_ASYNC_TASK_POINTS;
            }
        }
    }

    backend->ring = ngx_palloc(cf->pool,
                               n * sizeof(ngx_http_async_task_point_t) + 1);
    if (backend->ring == NULL) {
        return NGX_ERROR;
    }

    backend->npoints = 0;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->backup) {
            continue;
        }

        for (j = 0; j < in->weight * NGX_HTTP_ASYNC_TASK_POINTS; j++) {
            n = ngx_sprintf(key, "%V-%ui", &in->server, j) - key;
            hash = ngx_murmur_hash2(key, n);

            backend->ring[backend->npoints].hash = hash;
            backend->ring[backend->npoints].instance = in;
            backend->npoints++;
        }
    }

    ngx_qsort(backend->ring, backend->npoints,
              sizeof(ngx_http_async_task_point_t),
              ngx_http_async_task_point_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_async_task_point_cmp(const void *one, const void *two)
{
    const ngx_http_async_task_point_t  *first = one;
    const ngx_http_async_task_point_t  *second = two;

    if (first->hash < second->hash) {
        return -1;
    }

    return (first->hash > second->hash) ? 1 : 0;
}


/*
 * Chooses the instance for a task and takes one of its slots.  Called
 * with the zone locked: slots are counted for the whole nginx.  "avoid"
 * is the instance a retried task failed on, taken only when it is the
 * only one left.  Backup instances serve when no primary one is healthy.
 */

static ngx_http_async_task_instance_t *
ngx_http_async_task_pick_locked(ngx_http_async_task_backend_t *backend,
    ngx_str_t *user, ngx_uint_t avoid)
{
    ngx_uint_t                       backup, tries;
    ngx_http_async_task_instance_t  *in;

    backup = ngx_http_async_task_tier_locked(backend);

    for (tries = 0; tries < 2; tries++) {

        switch (backend->ups->balance) {

        case NGX_HTTP_ASYNC_TASK_USER_HASH:
            in = (user && !backup)
                 ? ngx_http_async_task_pick_hash(backend, user, avoid)
                 : ngx_http_async_task_pick_rr(backend, avoid, backup);
            break;

        case NGX_HTTP_ASYNC_TASK_LEAST_BUSY:
            in = ngx_http_async_task_pick_least(backend, avoid, backup);
            break;

        default:
            in = ngx_http_async_task_pick_rr(backend, avoid, backup);
        }

        if (in) {
            in->sh->inflight++;
            return in;
        }

        /* the failed instance is better than waiting */
        avoid = NGX_HTTP_ASYNC_TASK_NONE;
    }

    return NULL;
}


/*
 * Which instances serve now: the primary ones, or the backup ones when
 * no primary one is up (healthy, not resting after max_fails).
 */

static ngx_uint_t
ngx_http_async_task_tier_locked(ngx_http_async_task_backend_t *backend)
{
    int64_t                          now;
    ngx_uint_t                       i;
    ngx_http_async_task_instance_t  *in;

    now = ngx_http_async_task_util_cached_ms();

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (!in->backup && !in->down && in->sh->healthy
            && in->sh->down_until <= now)
        {
            return 0;
        }
    }

    return 1;
}


/* the slots free now, and all of them, of the instances that serve */

static void
ngx_http_async_task_slots_locked(ngx_http_async_task_backend_t *backend,
    ngx_uint_t *free, ngx_uint_t *total)
{
    int64_t                          now;
    ngx_uint_t                       i, backup;
    ngx_http_async_task_instance_t  *in;

    now = ngx_http_async_task_util_cached_ms();
    backup = ngx_http_async_task_tier_locked(backend);

    *free = 0;
    *total = 0;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->backup != backup || in->down || !in->sh->healthy
            || in->sh->down_until > now)
        {
            continue;
        }

        *total += in->max_conns;

        if (in->sh->inflight < in->max_conns) {
            *free += in->max_conns - in->sh->inflight;
        }
    }
}


/* whether the instance can take a task of the given tier now */

static ngx_uint_t
ngx_http_async_task_usable(ngx_http_async_task_instance_t *in,
    ngx_uint_t backup)
{
    return in->backup == backup && !in->down && in->sh->healthy
           && in->sh->inflight < in->max_conns
           && in->sh->down_until <= ngx_http_async_task_util_cached_ms();
}


/* smooth weighted round robin, as nginx's own, on shared weights */

static ngx_http_async_task_instance_t *
ngx_http_async_task_pick_rr(ngx_http_async_task_backend_t *backend,
    ngx_uint_t avoid, ngx_uint_t backup)
{
    ngx_int_t                        total;
    ngx_uint_t                       i;
    ngx_http_async_task_instance_t  *in, *best;

    best = NULL;
    total = 0;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->index == avoid || !ngx_http_async_task_usable(in, backup)) {
            continue;
        }

        in->sh->current_weight += in->weight;
        total += in->weight;

        if (best == NULL
            || in->sh->current_weight > best->sh->current_weight)
        {
            best = in;
        }
    }

    if (best) {
        best->sh->current_weight -= total;
    }

    return best;
}


/* the fewest running tasks for its max_conns; ties go round robin */

static ngx_http_async_task_instance_t *
ngx_http_async_task_pick_least(ngx_http_async_task_backend_t *backend,
    ngx_uint_t avoid, ngx_uint_t backup)
{
    ngx_int_t                        total;
    ngx_uint_t                       i;
    ngx_http_async_task_instance_t  *in, *least, *best;

    least = NULL;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->index == avoid || !ngx_http_async_task_usable(in, backup)) {
            continue;
        }

        if (least == NULL
            || in->sh->inflight * least->max_conns
               < least->sh->inflight * in->max_conns)
        {
            least = in;
        }
    }

    if (least == NULL) {
        return NULL;
    }

    best = NULL;
    total = 0;

    for (i = 0; i < backend->ninstances; i++) {
        in = backend->instances[i];

        if (in->index == avoid || !ngx_http_async_task_usable(in, backup)
            || in->sh->inflight * least->max_conns
               != least->sh->inflight * in->max_conns)
        {
            continue;
        }

        in->sh->current_weight += in->weight;
        total += in->weight;

        if (best == NULL
            || in->sh->current_weight > best->sh->current_weight)
        {
            best = in;
        }
    }

    best->sh->current_weight -= total;

    return best;
}


/* the user's point on the ring, then on along the ring */

static ngx_http_async_task_instance_t *
ngx_http_async_task_pick_hash(ngx_http_async_task_backend_t *backend,
    ngx_str_t *user, ngx_uint_t avoid)
{
    ngx_uint_t                       i, lo;
    ngx_http_async_task_instance_t  *in;

    if (backend->npoints == 0) {
        return NULL;
    }

    lo = ngx_http_async_task_upstream_ring(backend, user);

    for (i = 0; i < backend->npoints; i++) {
        in = backend->ring[(lo + i) % backend->npoints].instance;

        if (in->index != avoid && ngx_http_async_task_usable(in, 0)) {
            return in;
        }
    }

    return NULL;
}


/* the user's point on the user_hash ring: the first at or after its hash */

ngx_uint_t
ngx_http_async_task_upstream_ring(ngx_http_async_task_backend_t *backend,
    ngx_str_t *user)
{
    uint32_t    hash;
    ngx_uint_t  lo, hi, mid;

    hash = ngx_murmur_hash2(user->data, user->len);

    lo = 0;
    hi = backend->npoints;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (backend->ring[mid].hash < hash) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return lo;
}


/* a slot given back, the zone locked: for shm.c, which holds the lock */

void
ngx_http_async_task_upstream_release_locked(
    ngx_http_async_task_instance_sh_t *ish)
{
    if (ish->inflight) {
        ish->inflight--;
    }
}


/*
 * Gives each instance of the configuration its shared record.  A reload
 * finds the records of the servers that remain by name, and with them
 * their health, so that a reload does not forget a dead instance.  Called
 * by the zone's init, the zone being new or the old cycle's.
 */

ngx_int_t
ngx_http_async_task_upstream_attach(ngx_http_async_task_shm_t *shm)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i;
    ngx_queue_t                        *q;
    ngx_http_async_task_instance_t     *in;
    ngx_http_async_task_instance_sh_t  *ish;

    if (shm->instances == NULL) {
        return NGX_OK;
    }

    in = shm->instances->elts;
    rc = NGX_OK;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (i = 0; i < shm->instances->nelts; i++) {

        for (q = ngx_queue_head(&shm->sh->instances);
             q != ngx_queue_sentinel(&shm->sh->instances);
             q = ngx_queue_next(q))
        {
            ish = ngx_queue_data(q, ngx_http_async_task_instance_sh_t, queue);

            if (ish->name_len == in[i].name.len
                && ngx_memcmp(ish->name, in[i].name.data, ish->name_len) == 0)
            {
                in[i].sh = ish;
                break;
            }
        }

        if (in[i].sh) {
            continue;
        }

        if (in[i].name.len > sizeof(ish->name)) {
            rc = NGX_ERROR;
            break;
        }

        ish = ngx_slab_calloc_locked(shm->shpool,
                                   sizeof(ngx_http_async_task_instance_sh_t));
        if (ish == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memcpy(ish->name, in[i].name.data, in[i].name.len);
        ish->name_len = in[i].name.len;
        ish->healthy = 1;

        ngx_queue_insert_tail(&shm->sh->instances, &ish->queue);

        in[i].sh = ish;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


/*
 * The balancer's choice for a task, its slot taken for the whole nginx.
 */

ngx_http_async_task_instance_t *
ngx_http_async_task_upstream_get(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend, ngx_str_t *user,
    ngx_uint_t avoid, ngx_log_t *log)
{
    ngx_uint_t                       inflight;
    ngx_http_async_task_instance_t  *in;

    inflight = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    in = ngx_http_async_task_pick_locked(backend, user, avoid);

    if (in) {
        in->sh->requests++;
        inflight = in->sh->inflight;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (in) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "async_task balancer: %V chosen, inflight:%ui/%ui",
                       &in->name, inflight, in->max_conns);

    } else {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                       "async_task balancer: no instance slot free");
    }

    return in;
}


/*
 * A shared store leases the slots with the claim, on every node's count:
 * into "order" the instances the balancer chooses for n tasks, in its
 * order, then the other slots free here, a slot of each instance in turn
 * (user_hash chooses among them), for when the store finds those taken
 * by other nodes; each instance once for each of its free slots.  No slot
 * is taken here (the run takes its own when it starts); round robin moves
 * on by the n choices, so that other workers' claims meanwhile choose
 * on, until upstream_chosen() says which ones the store gave.
 */

ngx_uint_t
ngx_http_async_task_upstream_order(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend, ngx_uint_t n,
    ngx_http_async_task_instance_t **order, ngx_uint_t max)
{
    ngx_uint_t                       i, k, held, more, backup;
    ngx_http_async_task_instance_t  *in;

    k = 0;
    held = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    /*
     * least_busy counts each choice as a run, to spread them; round robin
     * does not, so that the instances it weighs stay the same and
     * upstream_chosen() can take its steps back exactly
     */

    while (k < ngx_min(n, max)) {
        in = ngx_http_async_task_pick_locked(backend, NULL,
                                             NGX_HTTP_ASYNC_TASK_NONE);
        if (in == NULL) {
            break;
        }

        if (backend->ups->balance != NGX_HTTP_ASYNC_TASK_LEAST_BUSY) {
            ngx_http_async_task_upstream_release_locked(in->sh);
            held = k + 1;
        }

        order[k++] = in;
    }

    backup = ngx_http_async_task_tier_locked(backend);

    do {
        more = 0;

        for (i = 0; i < backend->ninstances && k < max; i++) {
            in = backend->instances[i];

            if (ngx_http_async_task_usable(in, backup)) {
                in->sh->inflight++;
                order[k++] = in;
                more = 1;
            }
        }

    } while (more && k < max);

    /* the picks counted each slot as taken, to go on to the next */

    for (i = held; i < k; i++) {
        ngx_http_async_task_upstream_release_locked(order[i]->sh);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return k;
}


/*
 * The store gave the claim the slots of "chosen": round robin's weights
 * go back by the "picked" choices of upstream_order(), and on by these.
 */

void
ngx_http_async_task_upstream_chosen(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t **picked, ngx_uint_t npicked,
    ngx_http_async_task_instance_t **chosen, ngx_uint_t nchosen)
{
    ngx_uint_t  i;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (i = npicked; i > 0; i--) {
        ngx_http_async_task_step_locked(backend, picked[i - 1], -1);
    }

    for (i = 0; i < nchosen; i++) {
        ngx_http_async_task_step_locked(backend, chosen[i], 1);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* smooth weighted round robin's step for a choice of "in", or back */

static void
ngx_http_async_task_step_locked(ngx_http_async_task_backend_t *backend,
    ngx_http_async_task_instance_t *in, ngx_int_t sign)
{
    ngx_int_t                        total;
    ngx_uint_t                       i;
    ngx_http_async_task_instance_t  *other;

    total = 0;

    for (i = 0; i < backend->ninstances; i++) {
        other = backend->instances[i];

        if (other == in || ngx_http_async_task_usable(other, in->backup)) {
            other->sh->current_weight += sign * (ngx_int_t) other->weight;
            total += other->weight;
        }
    }

    in->sh->current_weight -= sign * total;
}


/* the slot that a shared store leased for a run, taken when it starts */

void
ngx_http_async_task_upstream_take(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_log_t *log)
{
    ngx_uint_t  inflight;

    ngx_shmtx_lock(&shm->shpool->mutex);

    /* the store counts for every node: the zone may lag behind it */
    in->sh->inflight++;
    in->sh->requests++;
    inflight = in->sh->inflight;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async_task balancer: %V leased, inflight:%ui/%ui",
                   &in->name, inflight, in->max_conns);
}


/* the slots free now, and all of them, of the instances that serve */

void
ngx_http_async_task_upstream_slots(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_backend_t *backend, ngx_uint_t *free,
    ngx_uint_t *total)
{
    ngx_shmtx_lock(&shm->shpool->mutex);
    ngx_http_async_task_slots_locked(backend, free, total);
    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* a consistent copy of an instance's shared record, for the stats */

void
ngx_http_async_task_upstream_snapshot(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_instance_sh_t *ish)
{
    ngx_shmtx_lock(&shm->shpool->mutex);
    *ish = *in->sh;
    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* a slot given back without a verdict on the instance */

void
ngx_http_async_task_upstream_release(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_sh_t *ish, ngx_log_t *log)
{
    ngx_uint_t  inflight;

    ngx_shmtx_lock(&shm->shpool->mutex);

    ngx_http_async_task_upstream_release_locked(ish);
    inflight = ish->inflight;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async_task: slot of %*s given back, inflight:%ui",
                   ish->name_len, ish->name, inflight);
}


/*
 * A run is over: its slot goes back and the instance is charged for it,
 * as ngx_http_upstream_free_round_robin_peer() does.  Without health
 * checks an instance that cannot be reached rests for fail_timeout=
 * after max_fails=, as nginx's own balancers do.
 */

void
ngx_http_async_task_upstream_free(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t failed, ngx_http_async_task_client_e result, ngx_log_t *log)
{
    int64_t                             down_until;
    ngx_uint_t                          inflight, fails;
    ngx_http_async_task_instance_sh_t  *ish;

    ish = in->sh;

    /* the nodes of a shared store count refusals together */
    ngx_http_async_task_health_passive(in, ups, result);

    ngx_shmtx_lock(&shm->shpool->mutex);

    ngx_http_async_task_upstream_release_locked(ish);

    if (failed && result != ngx_http_async_task_client_aborted) {
        ish->failures++;
    }

    if (!ups->health_check) {

        if (result == ngx_http_async_task_client_refused) {
            ish->fails++;

            if (in->max_fails == 0) {
                /* no accounting asked for: a pause, not a tight loop */
                ish->down_until = ngx_http_async_task_util_now_ms() + 1000;

            } else if (ish->fails >= in->max_fails) {
                ish->down_until = ngx_http_async_task_util_now_ms()
                                  + in->fail_timeout;
            }

        } else if (result == ngx_http_async_task_client_ok) {
            ish->fails = 0;
        }
    }

    inflight = ish->inflight;
    fails = ish->fails;
    down_until = ish->down_until;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async_task: free %V, failed:%ui, inflight:%ui, "
                   "fails:%ui, down until:%L",
                   &in->name, failed, inflight, fails, down_until);
}


/* async_task_metrics: an attempt's outcome, and its run time in bucket */

void
ngx_http_async_task_upstream_observe(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_uint_t outcome,
    ngx_uint_t bucket, uint64_t ms)
{
    ngx_http_async_task_instance_sh_t  *ish;

    ish = in->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    ish->attempts[outcome]++;

    ish->run.bucket[bucket]++;
    ish->run.sum += ms;
    ish->run.count++;

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* whether a health probe of the instance is due, taken by us if it is */

ngx_uint_t
ngx_http_async_task_upstream_check_take(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, int64_t now, ngx_msec_t interval,
    ngx_msec_t timeout)
{
    ngx_uint_t                          due;
    ngx_http_async_task_instance_sh_t  *ish;

    ish = in->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    due = now - ish->last_check >= (int64_t) interval
          && (ish->checker == 0
              || now - ish->check_started > (int64_t) timeout * 2);

    if (due) {
        ish->checker = ngx_pid;
        ish->check_started = now;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (due) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "async_task health: probe of %V taken", &in->name);
    }

    return due;
}


/* the probe is over: the next one is due interval= from now */

void
ngx_http_async_task_upstream_check_done(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in)
{
    ngx_shmtx_lock(&shm->shpool->mutex);

    in->sh->last_check = ngx_http_async_task_util_now_ms();
    in->sh->checker = 0;

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/*
 * A probe's or a task request's verdict on an instance: fails= in a row
 * take it out, passes= in a row bring it back.  Returns 1 when it came
 * back, -1 when it went down, 0 otherwise.
 */

ngx_int_t
ngx_http_async_task_upstream_verdict(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in, ngx_http_async_task_srv_conf_t *ups,
    ngx_uint_t ok, ngx_log_t *log)
{
    ngx_int_t                           change;
    ngx_uint_t                          fails, passes;
    ngx_http_async_task_instance_sh_t  *ish;

    ish = in->sh;
    change = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    if (ok) {
        ish->passes++;
        ish->fails = 0;

        if (!ish->healthy && ish->passes >= ups->hc_passes) {
            ish->healthy = 1;
            change = 1;
        }

    } else {
        ish->fails++;
        ish->passes = 0;

        if (ish->healthy && ish->fails >= ups->hc_fails) {
            ish->healthy = 0;
            change = -1;
        }
    }

    fails = ish->fails;
    passes = ish->passes;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async_task health: %V %s, fails:%ui, passes:%ui, "
                   "change:%i", &in->name, ok ? "passed" : "failed",
                   fails, passes, change);

    return change;
}


/*
 * The health that the nodes of a shared store agree on (the database's
 * row for the instance), from ngx_http_async_task_pg_health.c.  Returns 1
 * when the instance came back, -1 when it went down, 0 otherwise.
 */

ngx_int_t
ngx_http_async_task_upstream_shared(ngx_http_async_task_shm_t *shm,
    ngx_http_async_task_instance_t *in,
    ngx_http_async_task_instance_sh_t *from)
{
    ngx_int_t                           change;
    ngx_http_async_task_instance_sh_t  *ish;

    ish = in->sh;

    ngx_shmtx_lock(&shm->shpool->mutex);

    change = (ngx_int_t) from->healthy - (ngx_int_t) ish->healthy;

    ish->healthy = from->healthy;
    ish->fails = from->fails;
    ish->passes = from->passes;
    ish->down_until = from->down_until;

    if (from->last_check) {
        ish->last_check = from->last_check;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return change;
}
