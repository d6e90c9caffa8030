
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>

#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_store_pg.h"
#include "ngx_http_async_task_upstream.h"


/*
 * Instance slots shared by every node of a PostgreSQL store: max_conns
 * holds for the whole fleet, not per node.
 *
 * A run's slot is a lease of its own task: the claim that makes the task
 * RUNNING names the instance it runs on ("slot"), and the instance's
 * slots taken are its RUNNING tasks.  So a slot ends with the task's
 * lease, whatever ends it: the outcome stored, a cancel, a run given
 * back, a lease past its expiry, a dead worker's run recovered or a dead
 * node's taken back (its heartbeat, see the reclaim).
 *
 * The dispatcher names the instances it may use, in its balancer's
 * order, each as many times as its zone has free slots; the claim counts
 * the slots taken on every node under one advisory lock (claims of all
 * nodes wait for each other here, for the rest of their transaction) and
 * gives each task one slot: user_hash's instance for the task's user when
 * it is free, else the first free in the balancer's order, one other than
 * the instance the task last failed on if it can.
 */


/* the advisory lock of slot counts: see store_pg.c for the others */
#define NGX_HTTP_ASYNC_TASK_PG_SLOTS      "7401003"


static ngx_int_t ngx_http_async_task_pg_slots_pick(
    ngx_http_async_task_op_t *op, ngx_int_t *first, ngx_int_t *avail,
    ngx_uint_t *used, ngx_int_t *map, ngx_uint_t nmap, ngx_str_t *user,
    ngx_str_t *last);


/*
 * The claim with slots, in the write batch's transaction: "claim" holds
 * the parameters of the plain claim ($1 now, $2 the lease owner, $3 its
 * expiry, $4 the kind, $5 how many).  Returns the claimed rows, each with
 * its slot's instance as "backend", or NULL on failure.
 */

PGresult *
ngx_http_async_task_pg_slots_claim(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_op_t *op, ngx_http_async_task_pg_params_t *claim,
    ngx_log_t *log)
{
    int                               i, rows;
    u_char                           *names, *ids, *slots, *p, *q;
    size_t                            size;
    ngx_int_t                         j, k, n, *first, *avail, *map;
    ngx_str_t                         user, last, name;
    ngx_uint_t                        nmap, *used;
    PGresult                         *res;
    ngx_http_async_task_instance_t   *in;
    ngx_http_async_task_pg_params_t   params;

    n = op->nslots;

    /* the instances, once each: their slots taken on every node */

    size = 3;
    nmap = 0;

    for (j = 0; j < n; j++) {
        size += 2 * op->slots[j]->name.len + 3;
        nmap = ngx_max(nmap, op->slots[j]->index + 1);
    }

    names = ngx_pnalloc(op->pool, size);
    slots = ngx_pnalloc(op->pool, size);
    ids = ngx_pnalloc(op->pool, 3 + n * (NGX_HTTP_ASYNC_TASK_ID_LEN + 3));
    first = ngx_palloc(op->pool, n * sizeof(ngx_int_t));
    avail = ngx_pcalloc(op->pool, n * sizeof(ngx_int_t));
    used = ngx_pcalloc(op->pool, n * sizeof(ngx_uint_t));
    map = ngx_palloc(op->pool, nmap * sizeof(ngx_int_t));

    if (names == NULL || slots == NULL || ids == NULL || first == NULL
        || avail == NULL || used == NULL || map == NULL)
    {
        return NULL;
    }

    for (k = 0; k < (ngx_int_t) nmap; k++) {
        map[k] = -1;
    }

    p = names;
    *p++ = '{';

    for (j = 0; j < n; j++) {
        in = op->slots[j];

        if (map[in->index] < 0) {
            map[in->index] = j;
        }

        /*
         * avail[] of the first entry of each instance: its slots that may
         * be free, never more than its max_conns (round robin's choices
         * may name it more often)
         */
        k = map[in->index];
        first[j] = k;

        if (avail[k] < (ngx_int_t) in->max_conns) {
            avail[k]++;
        }

        if (k == j) {
            p = ngx_http_async_task_pg_element(p, in->name.data,
                                               in->name.len);
            *p++ = ',';
        }
    }

    p[-1] = '}';
    *p = '\0';

    if (ngx_http_async_task_pg_command(pg,
            "SELECT pg_advisory_xact_lock(" NGX_HTTP_ASYNC_TASK_PG_SLOTS ")",
            NULL, log)
        != NGX_OK)
    {
        return NULL;
    }

    /*
     * After the lock, so that this statement sees the slots of every
     * claim committed before.  The due tasks, and the slots taken.
     */

    params.n = 0;
    params.values[params.n] = claim->values[0];         /* now */
    params.lengths[params.n] = 0;
    params.formats[params.n++] = 0;
    params.values[params.n] = claim->values[3];         /* the kind */
    params.lengths[params.n] = claim->lengths[3];
    params.formats[params.n++] = claim->formats[3];
    params.values[params.n] = claim->values[4];         /* how many */
    params.lengths[params.n] = 0;
    params.formats[params.n++] = 0;
    params.values[params.n] = (char *) names;
    params.lengths[params.n] = 0;
    params.formats[params.n++] = 0;

    res = ngx_http_async_task_pg_exec(pg,
              "WITH c AS (SELECT id, \"user\", backend, priority, created_at "
              "FROM tasks WHERE status = 'QUEUED' AND kind = $2 "
              "AND (not_before IS NULL OR not_before <= $1::bigint) "
              "ORDER BY priority DESC, created_at, id LIMIT $3::integer "
              "FOR UPDATE SKIP LOCKED) "
              "SELECT 0, id, \"user\", backend, 0::bigint, priority, "
              "created_at FROM c "
              "UNION ALL SELECT 1, NULL, slot, NULL, count(*), 0, 0 "
              "FROM tasks WHERE status = 'RUNNING' "
              "AND slot = ANY($4::text[]) GROUP BY slot "
              "ORDER BY 1 DESC, 6 DESC, 7, 2",
              &params, log);

    if (res == NULL) {
        return NULL;
    }

    rows = PQntuples(res);

    /* the slots taken first (ORDER BY 1 DESC): max_conns less those */

    for (i = 0; i < rows && PQgetvalue(res, i, 0)[0] == '1'; i++) {
        name.data = (u_char *) PQgetvalue(res, i, 2);
        name.len = PQgetlength(res, i, 2);

        for (k = 0; k < n; k++) {
            in = op->slots[k];

            if (first[k] == k && in->name.len == name.len
                && ngx_memcmp(in->name.data, name.data, name.len) == 0)
            {
                avail[k] = ngx_min(avail[k], (ngx_int_t) in->max_conns
                           - ngx_http_async_task_pg_int64(res, i, 4));
                avail[k] = ngx_max(avail[k], 0);
                break;
            }
        }
    }

    /* then each due task, in the queue's order, gets a free slot */

    p = ids;
    q = slots;
    *p++ = '{';
    *q++ = '{';

    for ( /* void */ ; i < rows; i++) {
        user.data = (u_char *) PQgetvalue(res, i, 2);
        user.len = PQgetlength(res, i, 2);
        last.data = (u_char *) PQgetvalue(res, i, 3);
        last.len = PQgetlength(res, i, 3);

        j = ngx_http_async_task_pg_slots_pick(op, first, avail, used, map,
                                     nmap,
                                     PQgetisnull(res, i, 2) ? NULL : &user,
                                     &last);
        if (j == NGX_DECLINED) {
            break;
        }

        p = ngx_http_async_task_pg_element(p,
                                           (u_char *) PQgetvalue(res, i, 1),
                                           PQgetlength(res, i, 1));
        *p++ = ',';

        q = ngx_http_async_task_pg_element(q, op->slots[j]->name.data,
                                           op->slots[j]->name.len);
        *q++ = ',';
    }

    PQclear(res);

    if (p == ids + 1) {
        *p++ = '}';
        *q++ = '}';

    } else {
        p[-1] = '}';
        q[-1] = '}';
    }

    *p = '\0';
    *q = '\0';

    claim->n = 3;
    claim->values[claim->n] = (char *) ids;
    claim->lengths[claim->n] = 0;
    claim->formats[claim->n++] = 0;
    claim->values[claim->n] = (char *) slots;
    claim->lengths[claim->n] = 0;
    claim->formats[claim->n++] = 0;

    /* the rows are locked by this transaction since the select */

    return ngx_http_async_task_pg_exec(pg,
               "WITH u AS (UPDATE tasks t SET status = 'RUNNING', "
               "started_at = $1::bigint, lease_owner = $2, "
               "lease_expires = $3::bigint, slot = x.slot "
               "FROM unnest($4::text[], $5::text[]) AS x(id, slot) "
               "WHERE t.id = x.id AND t.status = 'QUEUED' RETURNING t.*) "
               "SELECT id, kind, status, \"user\", priority, params, file, "
               "created_at, started_at, finished_at, attempts, slot, "
               "result, error FROM u ORDER BY priority DESC, created_at, id",
               claim, log);
}


/*
 * The entry of op->slots whose slot a task gets, or NGX_DECLINED when
 * none is free: user_hash's instance for its user, along the ring, when
 * one there is free; else the balancer's order, an instance other than
 * the task's last if it can.  first[j] is the first entry of the same
 * instance as entry j, whose avail[] counts the instance's free slots;
 * map[] the first entry of each instance by its index, or -1.
 */

static ngx_int_t
ngx_http_async_task_pg_slots_pick(ngx_http_async_task_op_t *op,
    ngx_int_t *first, ngx_int_t *avail, ngx_uint_t *used, ngx_int_t *map,
    ngx_uint_t nmap, ngx_str_t *user, ngx_str_t *last)
{
    ngx_int_t                         j, k, n, pick;
    ngx_uint_t                        i, lo, other;
    ngx_http_async_task_backend_t    *backend;
    ngx_http_async_task_instance_t   *in;

    backend = op->backend;
    n = op->nslots;
    pick = NGX_DECLINED;

    if (backend->ups->balance == NGX_HTTP_ASYNC_TASK_USER_HASH && user
        && backend->npoints)
    {
        lo = ngx_http_async_task_upstream_ring(backend, user);

        for (i = 0; i < backend->npoints; i++) {
            in = backend->ring[(lo + i) % backend->npoints].instance;

            if (in->index >= nmap || map[in->index] < 0
                || avail[map[in->index]] == 0)
            {
                continue;
            }

            for (j = map[in->index]; j < n; j++) {
                if (first[j] == map[in->index] && !used[j]) {
                    pick = j;
                    break;
                }
            }

            break;
        }
    }

    for (other = 1; pick == NGX_DECLINED && other < 3; other++) {

        for (j = 0; j < n; j++) {
            in = op->slots[j];

            if (used[j] || avail[first[j]] == 0
                || (other == 1 && in->name.len == last->len
                    && ngx_memcmp(in->name.data, last->data, last->len) == 0))
            {
                continue;
            }

            pick = j;
            break;
        }
    }

    if (pick == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    k = first[pick];
    avail[k]--;
    used[pick] = 1;

    return pick;
}
