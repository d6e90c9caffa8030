
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_store_pg.h"
#include "ngx_http_async_task_pg_files.h"
#include "ngx_http_async_task_dispatch.h"
#include "ngx_http_async_task_util.h"
#include <ngx_http_async_task_pg_migrations.h>


/*
 * The shared store: one PostgreSQL database for any number of nginx nodes.
 * Every call but init runs in a pool thread, on that thread's own
 * connection, made at its first call and made again after a failure.
 * Claims take rows with FOR UPDATE SKIP LOCKED, so that the nodes' claims
 * never wait for one another and never take the same task.
 *
 * Each worker process also keeps one connection in its event loop, which
 * only LISTENs: a node tells the others (NOTIFY, sent at COMMIT) that it
 * queued tasks ("q NODE"), so that they claim at once, and which tasks left
 * the queue through it ("g NODE ID...", claimed; "c NODE ID...", canceled),
 * so that they drop those from their zones and stop a run that was
 * canceled.
 *
 * Lease owners are "NODE/pid:N": the node's name (node=, the host's name
 * by default), then the worker process, as the dispatcher formats it.
 */


#define NGX_HTTP_ASYNC_TASK_PG_CHANNEL    "async_task"
#define NGX_HTTP_ASYNC_TASK_PG_RETRY      1000

/* a node not seen for this long (ms) is dead: its runs are taken back */
#define NGX_HTTP_ASYNC_TASK_PG_DEAD       10000

/* advisory lock keys: the schema's migrations, retention */
#define NGX_HTTP_ASYNC_TASK_PG_MIGRATE    "7401001"
#define NGX_HTTP_ASYNC_TASK_PG_EXPIRE     "7401002"


#define NGX_HTTP_ASYNC_TASK_PG_COLUMNS                                        \
    "id, kind, status, \"user\", priority, params, file, created_at, "       \
    "started_at, finished_at, attempts, backend, result, error"

/*
 * How many tasks of its kind run before a QUEUED one, on every node: those
 * of the higher priorities from the depths (migrations/postgresql/0003),
 * then the older ones of its own priority counted in the queue's index.
 * One snapshot for both: exact.  The cost is the tasks ahead of it in its
 * priority, not the queue; a statement with more subqueries (to count
 * from the nearer end) cost more to plan, at each read, than this saves.
 */
#define NGX_HTTP_ASYNC_TASK_PG_POSITION                                       \
    "CASE WHEN t.status <> 'QUEUED' THEN -1 ELSE "                           \
    "(SELECT coalesce(sum(d.n), 0) FROM queue_depth d "                      \
    "WHERE d.kind = t.kind AND d.priority > t.priority) + "                  \
    "(SELECT count(*) FROM tasks q WHERE q.status = 'QUEUED' "               \
    "AND q.kind = t.kind AND q.priority = t.priority "                       \
    "AND (q.created_at, q.id) < (t.created_at, t.id)) END"


/*
 * A notification of tasks that left the queue: "g NODE ID ID ..." (claimed)
 * or "c NODE ID ..." (canceled).
 */

typedef struct {
    u_char                         *last;
    u_char                          type;
    u_char                          text[4096];
} ngx_http_async_task_pg_gone_t;


typedef struct {
    ngx_http_async_task_store_conf_t  *conf;
    ngx_pool_t                        *pool;
    PGconn                            *conn;
} ngx_http_async_task_pg_listen_t;


static ngx_int_t ngx_http_async_task_pg_init(
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log);
static void ngx_http_async_task_pg_write(
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_get(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_list(
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_filter_t *filter, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_finish(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *user,
    ngx_uint_t from, ngx_http_async_task_t *task, ngx_pool_t *pool,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_recover(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *owner,
    ngx_pool_t *pool, ngx_http_async_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_reclaim(
    ngx_http_async_task_store_conf_t *conf, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_beat(ngx_http_async_task_pg_t *pg,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_expire(
    ngx_http_async_task_store_conf_t *conf, int64_t before, ngx_uint_t n,
    ngx_uint_t *count, ngx_array_t *files, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_maintain(
    ngx_http_async_task_store_conf_t *conf, ngx_uint_t idle, ngx_log_t *log);
static void ngx_http_async_task_pg_exit(void);
static ngx_int_t ngx_http_async_task_pg_worker(
    ngx_http_async_task_store_conf_t *conf, ngx_cycle_t *cycle);

static ngx_int_t ngx_http_async_task_pg_migrate(PGconn *conn,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_load(
    ngx_http_async_task_store_conf_t *conf, PGconn *conn,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_room(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_http_async_task_op_t **accepted, ngx_uint_t *m,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_insert(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_positions(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_claim(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_http_async_task_pg_gone_t *gone, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_complete(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_op_t *op, ngx_log_t *log);
static void ngx_http_async_task_pg_gone_init(
    ngx_http_async_task_pg_gone_t *gone,
    ngx_http_async_task_store_conf_t *conf, u_char type);
static ngx_int_t ngx_http_async_task_pg_gone_add(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_gone_t *gone, u_char *id, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_gone_send(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_gone_t *gone, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_notify_queued(
    ngx_http_async_task_pg_t *pg, ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log);

static PGconn *ngx_http_async_task_pg_connect(
    ngx_http_async_task_store_conf_t *conf, ngx_uint_t level,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_row(PGresult *res, int row,
    ngx_pool_t *pool, ngx_http_async_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_file(u_char *id, ngx_str_t *file);

static void ngx_http_async_task_pg_listen(ngx_event_t *ev);
static void ngx_http_async_task_pg_listen_thread(void *data, ngx_log_t *log);
static void ngx_http_async_task_pg_listen_done(ngx_event_t *ev);
static void ngx_http_async_task_pg_listen_read(ngx_event_t *ev);
static void ngx_http_async_task_pg_listen_close(void);
static void ngx_http_async_task_pg_notified(ngx_str_t *node, u_char *p,
    u_char *last);
static void ngx_http_async_task_pg_dummy(ngx_event_t *ev);
static void ngx_http_async_task_pg_notice(void *arg, const char *message);


ngx_http_async_task_store_driver_t  ngx_http_async_task_pg_driver = {
    ngx_http_async_task_pg_init,
    ngx_http_async_task_pg_write,
    ngx_http_async_task_pg_get,
    ngx_http_async_task_pg_list,
    ngx_http_async_task_pg_finish,
    ngx_http_async_task_pg_recover,
    ngx_http_async_task_pg_reclaim,
    ngx_http_async_task_pg_expire,
    ngx_http_async_task_pg_maintain,
    ngx_http_async_task_pg_exit,
    NULL,
    1,
    ngx_http_async_task_pg_worker,
    NULL
};


/*
 * Each pool thread has its connection; the process keeps a list of them
 * to close at exit, from the main thread, once the pool threads are done.
 */

static __thread ngx_http_async_task_pg_t  *ngx_http_async_task_pg;
static ngx_http_async_task_pg_t           *ngx_http_async_task_pg_all;
static pthread_mutex_t  ngx_http_async_task_pg_mutex =
                                                    PTHREAD_MUTEX_INITIALIZER;

/* when this process last found PostgreSQL out of reach (ms) */
static ngx_atomic_t                       ngx_http_async_task_pg_lost;

/* the worker's listening connection, in its event loop */
static ngx_http_async_task_store_conf_t  *ngx_http_async_task_pg_conf;
static PGconn                            *ngx_http_async_task_pg_listener;
static ngx_connection_t                  *ngx_http_async_task_pg_lc;
static ngx_event_t                        ngx_http_async_task_pg_retry;
static ngx_uint_t                         ngx_http_async_task_pg_connecting;


/*
 * Called in the master at start and at each reload: brings the schema up
 * to date under an advisory lock (the first node to start migrates, the
 * others wait and find it done), and gives the loader this node's live
 * tasks and the counts of the finished ones.
 */

static ngx_int_t
ngx_http_async_task_pg_init(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log)
{
    PGconn                    *conn;
    ngx_int_t                  rc;
    ngx_http_async_task_pg_t   pg;

    conn = ngx_http_async_task_pg_connect(conf, NGX_LOG_EMERG, log);
    if (conn == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_async_task_pg_migrate(conn, log);

    /* seen from the start: a node that dies at once has its runs back */

    if (rc == NGX_OK) {
        pg.conn = conn;
        pg.conf = conf;
        rc = ngx_http_async_task_pg_beat(&pg, log);
    }

    if (rc == NGX_OK && loader) {
        rc = ngx_http_async_task_pg_load(conf, conn, loader, fresh, log);
    }

    PQfinish(conn);

    return rc;
}


static ngx_int_t
ngx_http_async_task_pg_migrate(PGconn *conn, ngx_log_t *log)
{
    int          version, n;
    char         buf[64];
    PGresult    *res;
    const char  *sql;

    sql = "BEGIN; "
          "SELECT pg_advisory_xact_lock(" NGX_HTTP_ASYNC_TASK_PG_MIGRATE "); "
          "CREATE TABLE IF NOT EXISTS async_task_schema "
          "(version integer NOT NULL); "
          "INSERT INTO async_task_schema SELECT 0 "
          "WHERE NOT EXISTS (SELECT 1 FROM async_task_schema); "
          "SELECT version FROM async_task_schema";

    res = PQexec(conn, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "async_task store: cannot read schema version: %s",
                      PQerrorMessage(conn));
        PQclear(res);
        return NGX_ERROR;
    }

    version = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));
    PQclear(res);

    for (n = 0; ngx_http_async_task_pg_migrations[n]; n++) {
        /* count them */
    }

    if (version < 0 || version > n) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "async_task store: schema version %d is not one of "
                      "this module's (%d)", version, n);
        PQclear(PQexec(conn, "ROLLBACK"));
        return NGX_ERROR;
    }

    for ( /* void */ ; version < n; version++) {

        res = PQexec(conn, ngx_http_async_task_pg_migrations[version]);

        if (PQresultStatus(res) != PGRES_COMMAND_OK
            && PQresultStatus(res) != PGRES_TUPLES_OK)
        {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "async_task store: migration %d failed: %s",
                          version + 1, PQerrorMessage(conn));
            PQclear(res);
            PQclear(PQexec(conn, "ROLLBACK"));
            return NGX_ERROR;
        }

        PQclear(res);

        ngx_sprintf((u_char *) buf,
                    "UPDATE async_task_schema SET version = %d%Z",
                    version + 1);

        res = PQexec(conn, buf);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "async_task store: migration %d failed: %s",
                          version + 1, PQerrorMessage(conn));
            PQclear(res);
            PQclear(PQexec(conn, "ROLLBACK"));
            return NGX_ERROR;
        }

        PQclear(res);

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "async_task store: schema migrated to version %d",
                      version + 1);
    }

    res = PQexec(conn, "COMMIT");

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "async_task store: migrations not committed: %s",
                      PQerrorMessage(conn));
        PQclear(res);
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


/*
 * This node's share of the live tasks: those it accepted that still
 * queue, and those it runs.  At a fresh start of the node nothing of it
 * runs, so its RUNNING tasks queue again, uncharged; other nodes' runs
 * are theirs.
 */

static ngx_int_t
ngx_http_async_task_pg_load(ngx_http_async_task_store_conf_t *conf,
    PGconn *conn, ngx_http_async_task_loader_t *loader, ngx_uint_t fresh,
    ngx_log_t *log)
{
    int                     i, rows;
    char                   *owner;
    u_char                 *p;
    ngx_int_t               status;
    ngx_str_t               name;
    ngx_pool_t             *pool;
    PGresult               *res;
    const char             *values[2];
    ngx_http_async_task_t   task;
    u_char                  self[80], prefix[80];

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(self, "%V%Z", &conf->node);
    ngx_sprintf(prefix, "%V/%Z", &conf->node);

    values[0] = (char *) self;
    values[1] = (char *) prefix;

    res = NULL;

    if (fresh) {
        res = PQexecParams(conn, "UPDATE tasks SET status = 'QUEUED', "
                           "started_at = NULL, backend = NULL, "
                           "lease_owner = NULL, lease_expires = NULL "
                           "WHERE status = 'RUNNING' "
                           "AND starts_with(lease_owner, $1)",
                           1, NULL, &values[1], NULL, NULL, 0);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            goto failed;
        }

        PQclear(res);
    }

    res = PQexecParams(conn, "SELECT " NGX_HTTP_ASYNC_TASK_PG_COLUMNS
                       ", lease_owner FROM tasks "
                       "WHERE (status = 'QUEUED' "
                       "AND (node = $1 OR node IS NULL)) "
                       "OR (status = 'RUNNING' "
                       "AND starts_with(lease_owner, $2))",
                       2, NULL, values, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        goto failed;
    }

    rows = PQntuples(res);

    for (i = 0; i < rows; i++) {

        if (ngx_http_async_task_pg_row(res, i, pool, &task, log) != NGX_OK) {
            goto failed;
        }

        if (!PQgetisnull(res, i, 14)) {
            owner = PQgetvalue(res, i, 14);
            p = (u_char *) ngx_strchr(owner, '/');
            p = p ? p + 1 : (u_char *) owner;
            task.owner = ngx_http_async_task_util_lease_pid(p,
                                                        ngx_strlen(p));
        }

        if (loader->task(loader->data, &task) != NGX_OK) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "async_task zone is too small for the live "
                          "tasks of the store: %d fit", i);
            PQclear(res);
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        if (i % 1024 == 1023) {
            ngx_reset_pool(pool);
        }
    }

    PQclear(res);

    /* finished tasks are only counted */

    res = PQexec(conn, "SELECT status, count(*) FROM tasks "
                       "WHERE status NOT IN ('QUEUED', 'RUNNING') "
                       "GROUP BY status");

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        goto failed;
    }

    for (i = 0; i < PQntuples(res); i++) {
        name.data = (u_char *) PQgetvalue(res, i, 0);
        name.len = PQgetlength(res, i, 0);

        status = ngx_http_async_task_util_status_index(&name);

        if (status != NGX_ERROR) {
            loader->count(loader->data, status,
                          (ngx_uint_t) ngx_http_async_task_pg_int64(res, i, 1));
        }
    }

    PQclear(res);
    ngx_destroy_pool(pool);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "async_task store: %d live tasks loaded (node \"%V\")",
                  rows, &conf->node);

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "async_task store: cannot load tasks: %s",
                  PQerrorMessage(conn));

    PQclear(res);
    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


/*
 * Group commit: every new task, claim and outcome a worker has waiting
 * goes in one transaction.  A failed transaction fails them all; an
 * outcome whose lease is gone is NGX_DECLINED alone.  The notifications
 * go with the COMMIT.
 */

static void
ngx_http_async_task_pg_write(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_op_t **ops, ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t                      i, m, renamed, queued, inserted;
    ngx_http_async_task_op_t       *op, **accepted;
    ngx_http_async_task_pg_t       *pg;
    ngx_http_async_task_pg_gone_t   gone;

    renamed = 0;
    queued = 0;
    inserted = 0;
    accepted = NULL;
    m = 0;

    pg = ngx_http_async_task_pg_connection(conf, log);

    if (pg == NULL) {
        goto failed;
    }

    if (ngx_http_async_task_pg_command(pg, "BEGIN", NULL, log) != NGX_OK) {
        goto failed;
    }

    ngx_http_async_task_pg_gone_init(&gone, conf, 'g');

    for (i = 0; i < n; i++) {
        if (ops[i]->type == ngx_http_async_task_op_insert) {
            inserted = 1;
        }
    }

    if (inserted) {
        accepted = ngx_alloc(n * sizeof(ngx_http_async_task_op_t *), log);

        if (accepted == NULL
            || ngx_http_async_task_pg_room(pg, conf, ops, n, accepted, &m,
                                           log)
               != NGX_OK
            || (m && ngx_http_async_task_pg_insert(pg, conf, accepted, m,
                                                   log)
                     != NGX_OK))
        {
            ngx_http_async_task_pg_rollback(pg, log);
            goto failed;
        }

        queued = (m != 0);
    }

    /* their uploads too: a 202 names only inputs that every node gets */

    if (m
        && ngx_http_async_task_pg_files_insert(pg, conf, accepted, m, log)
           != NGX_OK)
    {
        ngx_http_async_task_pg_rollback(pg, log);
        goto failed;
    }

    for (i = 0; i < n; i++) {
        op = ops[i];

        switch (op->type) {

        case ngx_http_async_task_op_insert:
            /* NGX_BUSY: no room in the queue */
            break;

        case ngx_http_async_task_op_claim:
            op->rc = ngx_http_async_task_pg_claim(pg, conf, op, &gone, log);
            break;

        default:
            op->rc = ngx_http_async_task_pg_complete(pg, conf, op, log);

            if (op->rc == NGX_OK
                && op->task.status == NGX_HTTP_ASYNC_TASK_QUEUED)
            {
                queued = 1;
            }

            /*
             * The run's file takes the result's name only now: the lease
             * is this run's, and the row is locked until the COMMIT, so
             * no run that won before is overwritten, and a refused run
             * leaves it alone.
             */

            if (op->rc == NGX_OK && op->temp.len) {
                op->rc = ngx_http_async_task_store_rename(conf, op, log);
                renamed = 1;
            }

            /* and the result into the store, for the other nodes */

            if (op->rc == NGX_OK && op->temp.len) {
                op->rc = ngx_http_async_task_pg_files_result(pg, conf, op,
                                                             log);
            }
        }

        if (op->rc == NGX_ERROR) {
            ngx_http_async_task_pg_rollback(pg, log);
            goto failed;
        }
    }

    if ((queued && ngx_http_async_task_pg_notify_queued(pg, conf, log)
                   != NGX_OK)
        || ngx_http_async_task_pg_gone_send(pg, conf, &gone, log) != NGX_OK)
    {
        ngx_http_async_task_pg_rollback(pg, log);
        goto failed;
    }

    if (renamed) {

        /* the new names are on disk before the tasks say DONE */
        (void) ngx_http_async_task_util_sync_dir(conf->files.data, log);
    }

    if (ngx_http_async_task_pg_command(pg, "COMMIT", NULL, log) != NGX_OK) {
        ngx_http_async_task_pg_rollback(pg, log);
        goto failed;
    }

    /* committed: a 202 without a position is still a 202 */

    if (accepted) {
        if (m) {
            (void) ngx_http_async_task_pg_positions(pg, accepted, m, log);
        }

        ngx_free(accepted);
    }

    return;

failed:

    if (accepted) {
        ngx_free(accepted);
    }

    for (i = 0; i < n; i++) {
        ops[i]->rc = NGX_ERROR;
    }
}


/*
 * max_queued bounds the queue of all the nodes together: the new tasks of
 * the batch that fit go to "accepted", the others are NGX_BUSY.  Batches
 * of other nodes that commit meanwhile are not seen: the queue may go
 * over by what they add.  The depths (migration 0003) make it a sum of a
 * few rows, not a count of the queue.
 */

static ngx_int_t
ngx_http_async_task_pg_room(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_http_async_task_op_t **accepted, ngx_uint_t *m,
    ngx_log_t *log)
{
    int64_t      queued;
    PGresult    *res;
    ngx_uint_t   i;

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT coalesce(sum(n), 0) FROM queue_depth",
              NULL, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    queued = ngx_http_async_task_pg_int64(res, 0, 0);

    PQclear(res);

    *m = 0;

    for (i = 0; i < n; i++) {
        if (ops[i]->type != ngx_http_async_task_op_insert) {
            continue;
        }

        if (queued + (int64_t) *m < (int64_t) conf->max_queued) {
            ops[i]->rc = NGX_OK;
            accepted[(*m)++] = ops[i];

        } else {
            ops[i]->rc = NGX_BUSY;
        }
    }

    return NGX_OK;
}


/*
 * All the new tasks of a batch in one statement, one round trip: each
 * column as an array (in its text form), unnested into rows.
 */

static ngx_int_t
ngx_http_async_task_pg_insert(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log)
{
    u_char                           *buf, *p, *col[8];
    size_t                            size;
    ngx_int_t                         rc;
    ngx_uint_t                        i, c;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_pg_params_t   params;

    size = 0;

    for (i = 0; i < n; i++) {
        if (ops[i]->type == ngx_http_async_task_op_insert) {
            task = &ops[i]->task;
            size += 8 * (4 + 2) + 2 * (NGX_HTTP_ASYNC_TASK_ID_LEN
                                       + task->user.len + task->params.len
                                       + task->file.len + 3 * NGX_INT64_LEN
                                       + 16);
        }
    }

    buf = ngx_alloc(size + 8 * 3, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    for (c = 0; c < 8; c++) {
        col[c] = p;
        *p++ = '{';

        for (i = 0; i < n; i++) {

            if (ops[i]->type != ngx_http_async_task_op_insert) {
                continue;
            }

            task = &ops[i]->task;

            switch (c) {

            case 0:
                p = ngx_http_async_task_pg_element(p, task->id,
                                                NGX_HTTP_ASYNC_TASK_ID_LEN);
                break;

            case 1:
                p = ngx_http_async_task_pg_element(p,
                                ngx_http_async_task_kinds[task->kind].name.data,
                                ngx_http_async_task_kinds[task->kind].name.len);
                break;

            case 2:
                p = ngx_http_async_task_pg_element(p,
                            ngx_http_async_task_statuses[task->status].data,
                            ngx_http_async_task_statuses[task->status].len);
                break;

            case 3:
                /* an empty user is a user: not NULL */
                p = task->has_user
                    ? ngx_http_async_task_pg_element(p, task->user.data,
                                                     task->user.len)
                    : ngx_cpymem(p, "NULL", 4);
                break;

            case 4:
                p = ngx_sprintf(p, "%ui", task->priority);
                break;

            case 5:
                p = ngx_http_async_task_pg_element(p, task->params.data,
                                                   task->params.len);
                break;

            case 6:
                p = task->file.len
                    ? ngx_http_async_task_pg_element(p, task->file.data,
                                                     task->file.len)
                    : ngx_cpymem(p, "NULL", 4);
                break;

            default:
                p = ngx_sprintf(p, "%L", task->created_at);
            }

            *p++ = ',';
        }

        p[-1] = '}';
        *p++ = '\0';
    }

    params.n = 8;

    for (c = 0; c < 8; c++) {
        params.values[c] = (char *) col[c];
        params.lengths[c] = 0;
        params.formats[c] = 0;
    }

    ngx_http_async_task_pg_str(&params, &conf->node);

    rc = ngx_http_async_task_pg_command(pg,
             "INSERT INTO tasks (id, kind, status, \"user\", priority, "
             "params, file, created_at, node) "
             "SELECT id, kind, status, u, pr, pa, f, c, $9 FROM unnest("
             "$1::text[], $2::text[], $3::text[], $4::text[], "
             "$5::integer[], $6::text[], $7::text[], $8::bigint[]) "
             "AS x(id, kind, status, u, pr, pa, f, c)",
             &params, log);

    ngx_free(buf);

    return rc;
}


/* a quoted element of an array's text form */

u_char *
ngx_http_async_task_pg_element(u_char *p, u_char *data, size_t len)
{
    size_t  i;

    *p++ = '"';

    for (i = 0; i < len; i++) {
        if (data[i] == '"' || data[i] == '\\') {
            *p++ = '\\';
        }

        *p++ = data[i];
    }

    *p++ = '"';

    return p;
}


/*
 * The positions of a batch's new tasks, for the 202s, read once they are
 * committed: then every task ahead of them that any node committed
 * before is counted, with no lock that would make the batches of the
 * nodes take turns (counted before the COMMIT, a batch of another node
 * committed meanwhile would be missed).  No pass over the queue: for
 * each (kind, priority) of the batch, the depth of that priority and the
 * ones above it (migrations/postgresql/0003), less the tasks behind each
 * new one, which are the batch's own and the few queued since its
 * oldest.  A task claimed meanwhile has nothing ahead: 0.  The new tasks
 * are found by their ids alone (materialized): with the queue's index as
 * well, the planner may read all of the queue.
 */

static ngx_int_t
ngx_http_async_task_pg_positions(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_op_t **ops, ngx_uint_t n, ngx_log_t *log)
{
    int                               i;
    u_char                           *p, *ids;
    ngx_uint_t                        k;
    PGresult                         *res;
    ngx_http_async_task_pg_params_t   params;

    ids = ngx_alloc(3 + n * (NGX_HTTP_ASYNC_TASK_ID_LEN + 1), log);
    if (ids == NULL) {
        return NGX_ERROR;
    }

    p = ids;
    *p++ = '{';

    for (k = 0; k < n; k++) {
        if (ops[k]->type == ngx_http_async_task_op_insert) {
            p = ngx_cpymem(p, ops[k]->task.id, NGX_HTTP_ASYNC_TASK_ID_LEN);
            *p++ = ',';
        }
    }

    p[-1] = '}';
    *p = '\0';

    /* an array goes in its text form */

    params.n = 1;
    params.values[0] = (char *) ids;
    params.lengths[0] = 0;
    params.formats[0] = 0;

    res = ngx_http_async_task_pg_exec(pg,
              "WITH x AS MATERIALIZED (SELECT kind, priority, created_at, "
              "status FROM tasks WHERE id = ANY($1::text[])), "
              "b AS (SELECT kind, priority, min(created_at) AS c FROM x "
              "WHERE status = 'QUEUED' GROUP BY kind, priority), "
              "a AS (SELECT b.*, (SELECT sum(d.n) FROM queue_depth d "
              "WHERE d.kind = b.kind AND d.priority >= b.priority) AS n "
              "FROM b), "
              "r AS (SELECT t.id, a.n - row_number() OVER (PARTITION BY "
              "t.kind, t.priority ORDER BY t.created_at DESC, t.id DESC) "
              "AS pos FROM a JOIN tasks t ON t.status = 'QUEUED' "
              "AND t.kind = a.kind AND t.priority = a.priority "
              "AND t.created_at >= a.c) "
              "SELECT id, pos FROM r WHERE id = ANY($1::text[])",
              &params, log);

    ngx_free(ids);

    if (res == NULL) {
        return NGX_ERROR;
    }

    for (k = 0; k < n; k++) {
        if (ops[k]->type == ngx_http_async_task_op_insert) {
            ops[k]->task.position = 0;
        }
    }

    for (i = 0; i < PQntuples(res); i++) {

        if (PQgetlength(res, i, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN) {
            continue;
        }

        for (k = 0; k < n; k++) {
            if (ops[k]->type == ngx_http_async_task_op_insert
                && ngx_memcmp(ops[k]->task.id, PQgetvalue(res, i, 0),
                              NGX_HTTP_ASYNC_TASK_ID_LEN)
                   == 0)
            {
                ops[k]->task.position = (ngx_int_t)
                                  ngx_http_async_task_pg_int64(res, i, 1);
                break;
            }
        }
    }

    PQclear(res);

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_pg_get(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_pool_t *pool, ngx_http_async_task_t *task,
    ngx_log_t *log)
{
    ngx_int_t                         rc;
    PGresult                         *res;
    ngx_str_t                         s;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    p.n = 0;
    s.data = id;
    s.len = NGX_HTTP_ASYNC_TASK_ID_LEN;
    ngx_http_async_task_pg_str(&p, &s);

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT " NGX_HTTP_ASYNC_TASK_PG_COLUMNS ", "
              NGX_HTTP_ASYNC_TASK_PG_POSITION " FROM tasks t WHERE id = $1",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQntuples(res) == 0) {
        rc = NGX_DECLINED;

    } else {
        rc = ngx_http_async_task_pg_row(res, 0, pool, task, log);
    }

    PQclear(res);

    return rc;
}


static ngx_int_t
ngx_http_async_task_pg_list(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_filter_t *filter, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log)
{
    int                               i;
    ngx_int_t                         rc;
    ngx_str_t                         s;
    PGresult                         *res;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    p.n = 0;

    if (filter->user) {
        p.values[p.n] = filter->user->len ? (char *) filter->user->data : "";
        p.lengths[p.n] = (int) filter->user->len;
        p.formats[p.n] = 1;
        p.n++;

    } else {
        ngx_http_async_task_pg_null(&p);
    }

    if (filter->status >= 0) {
        ngx_http_async_task_pg_str(&p,
                            &ngx_http_async_task_statuses[filter->status]);
    } else {
        ngx_http_async_task_pg_null(&p);
    }

    if (filter->kind >= 0) {
        ngx_http_async_task_pg_str(&p,
                            &ngx_http_async_task_kind(filter->kind)->name);
    } else {
        ngx_http_async_task_pg_null(&p);
    }

    if (filter->has_cursor) {
        s.data = filter->cursor;
        s.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    } else {
        /* above every id: they are made of hex digits and dashes */
        ngx_str_set(&s, "~");
    }

    ngx_http_async_task_pg_str(&p, &s);
    ngx_http_async_task_pg_int(&p, (int64_t) filter->limit + 1);

    /* ids compare as bytes (COLLATE "C"), as SQLite compares them */

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT " NGX_HTTP_ASYNC_TASK_PG_COLUMNS ", "
              NGX_HTTP_ASYNC_TASK_PG_POSITION " FROM tasks t "
              "WHERE \"user\" IS NOT DISTINCT FROM $1::text "
              "AND ($2::text IS NULL OR status = $2::text) "
              "AND ($3::text IS NULL OR kind = $3::text) "
              "AND id < $4::text ORDER BY id DESC LIMIT $5::integer",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    for (i = 0; i < PQntuples(res); i++) {
        task = ngx_array_push(tasks);

        if (task == NULL
            || ngx_http_async_task_pg_row(res, i, pool, task, log) != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }
    }

    PQclear(res);

    return rc;
}


static ngx_int_t
ngx_http_async_task_pg_finish(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_str_t *user, ngx_uint_t from, ngx_http_async_task_t *task,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_int_t                         rc;
    ngx_str_t                         s;
    ngx_uint_t                        to;
    PGresult                         *res;
    ngx_http_async_task_t             row;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_gone_t     gone;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    to = task->status;

    if (ngx_http_async_task_pg_command(pg, "BEGIN", NULL, log) != NGX_OK) {
        return NGX_ERROR;
    }

    p.n = 0;
    s.data = id;
    s.len = NGX_HTTP_ASYNC_TASK_ID_LEN;
    ngx_http_async_task_pg_str(&p, &s);

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT " NGX_HTTP_ASYNC_TASK_PG_COLUMNS
              " FROM tasks t WHERE id = $1 FOR UPDATE", &p, log);

    if (res == NULL) {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    if (PQntuples(res) == 0) {
        rc = NGX_DECLINED;

    } else {
        rc = ngx_http_async_task_pg_row(res, 0, pool, &row, log);
    }

    PQclear(res);

    if (rc == NGX_OK
        && !ngx_http_async_task_util_owner(user, row.has_user, row.user.data,
                                           row.user.len))
    {
        rc = NGX_DECLINED;
    }

    if (rc == NGX_OK && !(from & (1 << row.status))) {
        *task = row;
        rc = NGX_BUSY;
    }

    if (rc != NGX_OK) {
        ngx_http_async_task_pg_rollback(pg, log);
        return rc;
    }

    row.status = to;
    row.finished_at = ngx_http_async_task_util_now_ms();

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &ngx_http_async_task_statuses[to]);
    ngx_http_async_task_pg_int(&p, row.finished_at);
    ngx_http_async_task_pg_str(&p, &s);

    ngx_http_async_task_pg_gone_init(&gone, conf, 'c');

    if (ngx_http_async_task_pg_command(pg,
            "UPDATE tasks SET status = $1, finished_at = $2::bigint, "
            "lease_owner = NULL, lease_expires = NULL WHERE id = $3",
            &p, log)
        != NGX_OK
        || ngx_http_async_task_pg_gone_add(pg, conf, &gone, id, log) != NGX_OK
        || ngx_http_async_task_pg_gone_send(pg, conf, &gone, log) != NGX_OK
        || ngx_http_async_task_pg_command(pg, "COMMIT", NULL, log) != NGX_OK)
    {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    row.position = -1;
    *task = row;

    return NGX_OK;
}


/* up to filter.limit due tasks of a kind; NGX_DECLINED: none */

static ngx_int_t
ngx_http_async_task_pg_claim(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_http_async_task_pg_gone_t *gone, ngx_log_t *log)
{
    int                               i, rows;
    int64_t                           now;
    ngx_int_t                         rc;
    ngx_str_t                         owner;
    PGresult                         *res;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_pg_params_t   p;
    u_char                            buf[128];

    if (ngx_array_init(&op->tasks, op->pool, op->filter.limit,
                       sizeof(ngx_http_async_task_t))
        != NGX_OK
        || ngx_http_async_task_pg_owner(conf, op->owner, buf, sizeof(buf),
                                        &owner)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    now = ngx_http_async_task_util_now_ms();

    p.n = 0;
    ngx_http_async_task_pg_int(&p, now);
    ngx_http_async_task_pg_str(&p, &owner);
    ngx_http_async_task_pg_int(&p, now + op->lease);
    ngx_http_async_task_pg_str(&p,
                           &ngx_http_async_task_kind(op->filter.kind)->name);
    ngx_http_async_task_pg_int(&p, (int64_t) op->filter.limit);

    /* the next tasks of a kind: priority, then age; others' locks skipped */

    res = op->nslots
          ? ngx_http_async_task_pg_slots_claim(pg, op, &p, log)
          : ngx_http_async_task_pg_exec(pg,
              "WITH c AS (SELECT id FROM tasks WHERE status = 'QUEUED' "
              "AND kind = $4 "
              "AND (not_before IS NULL OR not_before <= $1::bigint) "
              "ORDER BY priority DESC, created_at, id LIMIT $5::integer "
              "FOR UPDATE SKIP LOCKED), "
              "u AS (UPDATE tasks t SET status = 'RUNNING', "
              "started_at = $1::bigint, lease_owner = $2, "
              "lease_expires = $3::bigint FROM c WHERE t.id = c.id "
              "RETURNING t.*) "
              "SELECT " NGX_HTTP_ASYNC_TASK_PG_COLUMNS " FROM u "
              "ORDER BY priority DESC, created_at, id",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    rows = PQntuples(res);
    rc = NGX_OK;

    for (i = 0; i < rows; i++) {
        task = ngx_array_push(&op->tasks);

        if (task == NULL
            || ngx_http_async_task_pg_row(res, i, op->pool, task, log)
               != NGX_OK
            || ngx_http_async_task_pg_gone_add(pg, conf, gone, task->id, log)
               != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }
    }

    PQclear(res);

    if (rc == NGX_OK && rows == 0) {
        return NGX_DECLINED;
    }

    return rc;
}


/*
 * NGX_DECLINED: the lease is not the runner's any more (the task was
 * canceled, or taken back), and nothing was written.
 */

static ngx_int_t
ngx_http_async_task_pg_complete(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_log_t *log)
{
    char                             *changed;
    ngx_str_t                         owner, id;
    PGresult                         *res;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_pg_params_t   p;
    u_char                            buf[128];

    task = &op->task;

    if (ngx_http_async_task_pg_owner(conf, op->owner, buf, sizeof(buf),
                                     &owner)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    id.data = task->id;
    id.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    p.n = 0;
    ngx_http_async_task_pg_str(&p,
                               &ngx_http_async_task_statuses[task->status]);
    ngx_http_async_task_pg_str(&p, &task->result);
    ngx_http_async_task_pg_str(&p, &task->error);
    ngx_http_async_task_pg_int(&p, (int64_t) task->attempts);
    ngx_http_async_task_pg_str(&p, &task->backend);
    ngx_http_async_task_pg_str(&p, &task->file);

    if (task->finished_at) {
        ngx_http_async_task_pg_int(&p, task->finished_at);
    } else {
        ngx_http_async_task_pg_null(&p);
    }

    if (op->not_before) {
        ngx_http_async_task_pg_int(&p, op->not_before);
    } else {
        ngx_http_async_task_pg_null(&p);
    }

    ngx_http_async_task_pg_str(&p, &id);
    ngx_http_async_task_pg_str(&p, &owner);

    /* the runner's report: only while the lease is still its own */

    res = ngx_http_async_task_pg_exec(pg,
              "UPDATE tasks SET status = $1::text, result = $2, error = $3, "
              "attempts = $4::integer, backend = $5, "
              "file = coalesce($6, file), finished_at = $7::bigint, "
              "not_before = $8::bigint, "
              "started_at = CASE WHEN $1::text = 'QUEUED' THEN NULL "
              "ELSE started_at END, "
              "lease_owner = NULL, lease_expires = NULL "
              "WHERE id = $9 AND status = 'RUNNING' AND lease_owner = $10",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    changed = PQcmdTuples(res);

    if (changed[0] == '0' || changed[0] == '\0') {
        PQclear(res);
        return NGX_DECLINED;
    }

    PQclear(res);

    return NGX_OK;
}


/* a runner that is gone: its task back to the queue, uncharged */

static ngx_int_t
ngx_http_async_task_pg_recover(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_str_t *owner, ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_log_t *log)
{
    PGresult                         *res;
    ngx_str_t                         s, lease;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;
    u_char                            buf[128];

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_pg_owner(conf, owner, buf, sizeof(buf), &lease)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p.n = 0;
    s.data = id;
    s.len = NGX_HTTP_ASYNC_TASK_ID_LEN;
    ngx_http_async_task_pg_str(&p, &s);
    ngx_http_async_task_pg_str(&p, &lease);

    res = ngx_http_async_task_pg_exec(pg,
              "UPDATE tasks SET status = 'QUEUED', started_at = NULL, "
              "lease_owner = NULL, lease_expires = NULL "
              "WHERE id = $1 AND status = 'RUNNING' AND lease_owner = $2",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQcmdTuples(res)[0] != '0') {
        (void) ngx_http_async_task_pg_notify_queued(pg, conf, log);
    }

    PQclear(res);

    /* whatever became of it, the caller learns its status now */

    return ngx_http_async_task_pg_get(conf, id, pool, task, log);
}


/*
 * Every few seconds (the dispatcher's reclaim timer, in each worker): this
 * node's heartbeat, then the runs nobody will report on: leases past
 * their expiry, whichever node held them, and the runs of nodes not seen
 * for NGX_HTTP_ASYNC_TASK_PG_DEAD (killed, cut off).  Those tasks queue
 * again, uncharged.  For NGX_HTTP_ASYNC_TASK_PG_DEAD after this process
 * lost PostgreSQL, the heartbeat only.
 */

static ngx_int_t
ngx_http_async_task_pg_reclaim(ngx_http_async_task_store_conf_t *conf,
    ngx_pool_t *pool, ngx_array_t *tasks, ngx_log_t *log)
{
    int                               i;
    char                             *owner;
    int64_t                           now;
    PGresult                         *res;
    ngx_http_async_task_t            *task;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_pg_beat(pg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    now = ngx_http_async_task_util_now_ms();

    /*
     * After an outage every node beats again only at its next reclaim,
     * and the runs that ended meanwhile still store their outcomes: a
     * process that lost PostgreSQL lately judges no lease, nor any node.
     */

    if (now - (int64_t) ngx_http_async_task_pg_lost
        < NGX_HTTP_ASYNC_TASK_PG_DEAD)
    {
        return NGX_OK;
    }

    p.n = 0;
    ngx_http_async_task_pg_int(&p, now);
    ngx_http_async_task_pg_str(&p, &conf->node);
    ngx_http_async_task_pg_int(&p, now - NGX_HTTP_ASYNC_TASK_PG_DEAD);

    /* the lease as it was (RETURNING gives the row as it is now) */

    res = ngx_http_async_task_pg_exec(pg,
              "WITH o AS (SELECT id, lease_owner FROM tasks "
              "WHERE status = 'RUNNING' AND (lease_expires < $1::bigint "
              "OR split_part(lease_owner, '/', 1) IN "
              "(SELECT name FROM nodes WHERE seen < $3::bigint "
              "AND name <> $2)) FOR UPDATE) "
              "UPDATE tasks t SET status = 'QUEUED', started_at = NULL, "
              "lease_owner = NULL, lease_expires = NULL FROM o "
              "WHERE t.id = o.id RETURNING t.id, t.attempts, o.lease_owner",
              &p, log);

    if (res == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < PQntuples(res); i++) {

        if (PQgetlength(res, i, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN) {
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "async_task: task %s of \"%s\" is taken back",
                      PQgetvalue(res, i, 0), PQgetvalue(res, i, 2));

        /*
         * Another node's run is not in this zone as a run: a RUNNING
         * node there is this node's claim of it since, which is not to
         * be requeued (its runner would drop it, and its lease would
         * hold the task and its slot until it expired).
         */

        owner = PQgetvalue(res, i, 2);

        if (ngx_strncmp(owner, conf->node.data, conf->node.len) != 0
            || owner[conf->node.len] != '/')
        {
            continue;
        }

        task = ngx_array_push(tasks);
        if (task == NULL) {
            break;
        }

        ngx_memzero(task, sizeof(ngx_http_async_task_t));
        ngx_memcpy(task->id, PQgetvalue(res, i, 0),
                   NGX_HTTP_ASYNC_TASK_ID_LEN);
        task->attempts = (ngx_uint_t) ngx_http_async_task_pg_int64(res, i, 1);
    }

    if (PQntuples(res)) {
        (void) ngx_http_async_task_pg_notify_queued(pg, conf, log);
    }

    PQclear(res);

    return NGX_OK;
}


/* this node is alive: its "seen" time */

static ngx_int_t
ngx_http_async_task_pg_beat(ngx_http_async_task_pg_t *pg, ngx_log_t *log)
{
    ngx_http_async_task_pg_params_t  p;

    p.n = 0;
    ngx_http_async_task_pg_int(&p, ngx_http_async_task_util_now_ms());
    ngx_http_async_task_pg_str(&p, &pg->conf->node);

    return ngx_http_async_task_pg_command(pg,
               "INSERT INTO nodes (name, seen) VALUES ($2, $1::bigint) "
               "ON CONFLICT (name) DO UPDATE SET seen = EXCLUDED.seen",
               &p, log);
}


/*
 * Retention: up to n finished tasks older than "before" go; count[] gets
 * how many of each status went, "files" the files they leave behind.  One
 * node at a time: the others find the advisory lock taken and skip.
 */

static ngx_int_t
ngx_http_async_task_pg_expire(ngx_http_async_task_store_conf_t *conf,
    int64_t before, ngx_uint_t n, ngx_uint_t *count, ngx_array_t *files,
    ngx_log_t *log)
{
    int                               i, rows;
    size_t                            len;
    ngx_int_t                         status;
    ngx_str_t                         text, *file;
    PGresult                         *res;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_pg_command(pg, "BEGIN", NULL, log) != NGX_OK) {
        return NGX_ERROR;
    }

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT pg_try_advisory_xact_lock("
              NGX_HTTP_ASYNC_TASK_PG_EXPIRE ")", NULL, log);

    if (res == NULL) {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        PQclear(res);
        ngx_http_async_task_pg_rollback(pg, log);
        return 0;
    }

    PQclear(res);

    p.n = 0;
    ngx_http_async_task_pg_int(&p, before);
    ngx_http_async_task_pg_int(&p, (int64_t) ngx_min(n, 64));

    res = ngx_http_async_task_pg_exec(pg,
              "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks "
              "WHERE finished_at IS NOT NULL AND finished_at < $1::bigint "
              "LIMIT $2::integer FOR UPDATE SKIP LOCKED) "
              "RETURNING id, status, file",
              &p, log);

    if (res == NULL) {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    rows = PQntuples(res);

    for (i = 0; i < rows; i++) {
        text.data = (u_char *) PQgetvalue(res, i, 1);
        text.len = PQgetlength(res, i, 1);
        status = ngx_http_async_task_util_status_index(&text);

        if (status != NGX_ERROR) {
            count[status]++;
        }

        len = PQgetlength(res, i, 2);
        text.data = (u_char *) PQgetvalue(res, i, 2);
        text.len = len;

        if (PQgetisnull(res, i, 2) || len == 0
            || PQgetlength(res, i, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN
            || ngx_http_async_task_pg_file((u_char *) PQgetvalue(res, i, 0),
                                           &text)
               != NGX_OK)
        {
            continue;
        }

        file = ngx_array_push(files);
        if (file == NULL) {
            goto failed;
        }

        file->data = ngx_pnalloc(files->pool, len);
        if (file->data == NULL) {
            goto failed;
        }

        ngx_memcpy(file->data, PQgetvalue(res, i, 2), len);
        file->len = len;
    }

    PQclear(res);

    if (ngx_http_async_task_pg_command(pg, "COMMIT", NULL, log) != NGX_OK) {
        ngx_http_async_task_pg_rollback(pg, log);
        files->nelts = 0;
        return NGX_ERROR;
    }

    return rows;

failed:

    /* nothing went: the files stay */

    PQclear(res);
    ngx_http_async_task_pg_rollback(pg, log);
    files->nelts = 0;

    return NGX_ERROR;
}


/* PostgreSQL keeps its own log: nothing to cut back here */

static ngx_int_t
ngx_http_async_task_pg_maintain(ngx_http_async_task_store_conf_t *conf,
    ngx_uint_t idle, ngx_log_t *log)
{
    return NGX_OK;
}


/* at process exit: the thread pools have stopped */

static void
ngx_http_async_task_pg_exit(void)
{
    ngx_http_async_task_pg_t  *pg, *next;

    for (pg = ngx_http_async_task_pg_all; pg; pg = next) {
        next = pg->next;

        if (pg->conn) {
            PQfinish(pg->conn);
        }

        ngx_free(pg);
    }

    ngx_http_async_task_pg_all = NULL;

    /* closing the socket takes it out of the event set */

    if (ngx_http_async_task_pg_listener) {
        PQfinish(ngx_http_async_task_pg_listener);
        ngx_http_async_task_pg_listener = NULL;
    }
}


static void
ngx_http_async_task_pg_gone_init(ngx_http_async_task_pg_gone_t *gone,
    ngx_http_async_task_store_conf_t *conf, u_char type)
{
    gone->type = type;
    gone->last = ngx_sprintf(gone->text, "%c %V", type, &conf->node);
}


static ngx_int_t
ngx_http_async_task_pg_gone_add(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_gone_t *gone, u_char *id, ngx_log_t *log)
{
    if (gone->last + 1 + NGX_HTTP_ASYNC_TASK_ID_LEN
        > gone->text + sizeof(gone->text))
    {
        if (ngx_http_async_task_pg_gone_send(pg, conf, gone, log) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *gone->last++ = ' ';
    gone->last = ngx_cpymem(gone->last, id, NGX_HTTP_ASYNC_TASK_ID_LEN);

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_pg_gone_send(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_gone_t *gone, ngx_log_t *log)
{
    ngx_int_t                         rc;
    ngx_str_t                         s;
    ngx_http_async_task_pg_params_t   p;

    s.data = gone->text;
    s.len = gone->last - gone->text;

    if (s.len == 2 + conf->node.len) {
        /* no ids */
        return NGX_OK;
    }

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &s);

    rc = ngx_http_async_task_pg_command(pg,
             "SELECT pg_notify('" NGX_HTTP_ASYNC_TASK_PG_CHANNEL "', $1)",
             &p, log);

    ngx_http_async_task_pg_gone_init(gone, conf, gone->type);

    return rc;
}


static ngx_int_t
ngx_http_async_task_pg_notify_queued(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log)
{
    ngx_str_t                         s;
    ngx_http_async_task_pg_params_t   p;
    u_char                            text[80];

    s.data = text;
    s.len = ngx_sprintf(text, "q %V", &conf->node) - text;

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &s);

    return ngx_http_async_task_pg_command(pg,
             "SELECT pg_notify('" NGX_HTTP_ASYNC_TASK_PG_CHANNEL "', $1)",
             &p, log);
}


/*
 * The pool thread's connection.  One that broke (the server restarted, a
 * network failure) is made again at the next call, so that the store
 * comes back by itself once PostgreSQL does.
 */

ngx_http_async_task_pg_t *
ngx_http_async_task_pg_connection(ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log)
{
    ngx_http_async_task_pg_t  *pg;

    pg = ngx_http_async_task_pg;

    if (pg && pg->conn && PQstatus(pg->conn) == CONNECTION_OK) {
        return pg;
    }

    if (pg == NULL) {
        pg = ngx_calloc(sizeof(ngx_http_async_task_pg_t), log);
        if (pg == NULL) {
            return NULL;
        }

        ngx_http_async_task_pg = pg;

        (void) pthread_mutex_lock(&ngx_http_async_task_pg_mutex);
        pg->next = ngx_http_async_task_pg_all;
        ngx_http_async_task_pg_all = pg;
        (void) pthread_mutex_unlock(&ngx_http_async_task_pg_mutex);
    }

    if (pg->conn) {
        ngx_http_async_task_pg_lost = ngx_http_async_task_util_now_ms();
        PQfinish(pg->conn);
    }

    pg->conf = conf;
    pg->conn = ngx_http_async_task_pg_connect(conf, NGX_LOG_ERR, log);

    return pg->conn ? pg : NULL;
}


static PGconn *
ngx_http_async_task_pg_connect(ngx_http_async_task_store_conf_t *conf,
    ngx_uint_t level, ngx_log_t *log)
{
    PGconn    *conn;
    PGresult  *res;
    u_char     sql[64];

    conn = PQconnectdb((char *) conf->conninfo.data);

    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        ngx_http_async_task_pg_lost = ngx_http_async_task_util_now_ms();

        ngx_log_error(level, log, 0,
                      "async_task store: cannot connect to \"%V\": %s",
                      &conf->path,
                      conn ? PQerrorMessage(conn) : "no memory");
        PQfinish(conn);
        return NULL;
    }

    /* notices ("already exists, skipping") would go to stderr */
    (void) PQsetNoticeProcessor(conn, ngx_http_async_task_pg_notice, NULL);

    /* lock_timeout= bounds how long a call waits for a row lock */

    ngx_sprintf(sql, "SET lock_timeout = %M%Z", conf->lock_timeout);

    res = PQexec(conn, (char *) sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(level, log, 0,
                      "async_task store: cannot set up \"%V\": %s",
                      &conf->path, PQerrorMessage(conn));
        PQclear(res);
        PQfinish(conn);
        return NULL;
    }

    PQclear(res);

    return conn;
}


/*
 * A statement's rows, or NULL (logged).  A connection that broke while it
 * was idle (PostgreSQL restarted since this thread last used it) shows
 * only at its next statement: outside a transaction, that statement goes
 * again once on a new connection, so that the first call after an outage
 * does not fail for nothing.
 */

PGresult *
ngx_http_async_task_pg_exec(ngx_http_async_task_pg_t *pg, const char *sql,
    ngx_http_async_task_pg_params_t *params, ngx_log_t *log)
{
    PGconn          *conn;
    PGresult        *res;
    ngx_uint_t       idle, again;
    ExecStatusType   status;

    idle = (PQtransactionStatus(pg->conn) == PQTRANS_IDLE);

    for (again = 0; /* void */ ; again++) {

        if (params) {
            res = PQexecParams(pg->conn, sql, params->n, NULL,
                               params->values, params->lengths,
                               params->formats, 0);
        } else {
            res = PQexec(pg->conn, sql);
        }

        status = PQresultStatus(res);

        if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
            return res;
        }

        if (again || !idle || PQstatus(pg->conn) != CONNECTION_BAD) {
            break;
        }

        PQclear(res);

        ngx_http_async_task_pg_lost = ngx_http_async_task_util_now_ms();

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "async_task store: connection lost, connecting again");

        conn = ngx_http_async_task_pg_connect(pg->conf, NGX_LOG_ERR, log);
        if (conn == NULL) {
            return NULL;
        }

        PQfinish(pg->conn);
        pg->conn = conn;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0, "async_task store: \"%s\" failed: %s",
                  sql, PQerrorMessage(pg->conn));

    PQclear(res);

    return NULL;
}


ngx_int_t
ngx_http_async_task_pg_command(ngx_http_async_task_pg_t *pg, const char *sql,
    ngx_http_async_task_pg_params_t *params, ngx_log_t *log)
{
    PGresult  *res;

    res = ngx_http_async_task_pg_exec(pg, sql, params, log);
    if (res == NULL) {
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


void
ngx_http_async_task_pg_rollback(ngx_http_async_task_pg_t *pg, ngx_log_t *log)
{
    if (PQstatus(pg->conn) == CONNECTION_OK
        && PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
    {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
}


/* text goes as bytes (binary format): no NUL needed, none allowed */

void
ngx_http_async_task_pg_str(ngx_http_async_task_pg_params_t *p,
    ngx_str_t *value)
{
    if (value == NULL || value->len == 0) {
        ngx_http_async_task_pg_null(p);
        return;
    }

    p->values[p->n] = (char *) value->data;
    p->lengths[p->n] = (int) value->len;
    p->formats[p->n] = 1;
    p->n++;
}


void
ngx_http_async_task_pg_int(ngx_http_async_task_pg_params_t *p,
    int64_t value)
{
    ngx_sprintf(p->text[p->n], "%L%Z", value);

    p->values[p->n] = (char *) p->text[p->n];
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}


void
ngx_http_async_task_pg_null(ngx_http_async_task_pg_params_t *p)
{
    p->values[p->n] = NULL;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}


/* the dispatcher's "pid:N", as this node's: "NODE/pid:N" */

ngx_int_t
ngx_http_async_task_pg_owner(ngx_http_async_task_store_conf_t *conf,
    ngx_str_t *owner, u_char *buf, size_t size, ngx_str_t *out)
{
    if (owner == NULL || conf->node.len + 1 + owner->len > size) {
        return NGX_ERROR;
    }

    out->data = buf;
    out->len = ngx_sprintf(buf, "%V/%V", &conf->node, owner) - buf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_pg_row(PGresult *res, int row, ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_log_t *log)
{
    ngx_str_t  value;

    ngx_memzero(task, sizeof(ngx_http_async_task_t));

    task->position = -1;

    if (PQgetlength(res, row, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN) {
        return NGX_ERROR;
    }

    ngx_memcpy(task->id, PQgetvalue(res, row, 0), NGX_HTTP_ASYNC_TASK_ID_LEN);

    value.data = (u_char *) PQgetvalue(res, row, 1);
    value.len = PQgetlength(res, row, 1);
    task->kind = ngx_http_async_task_kind_index(&value);

    value.data = (u_char *) PQgetvalue(res, row, 2);
    value.len = PQgetlength(res, row, 2);
    task->status = ngx_http_async_task_util_status_index(&value);

    if (task->kind == (ngx_uint_t) NGX_ERROR
        || task->status == (ngx_uint_t) NGX_ERROR)
    {
        return NGX_ERROR;
    }

    task->has_user = !PQgetisnull(res, row, 3);
    task->priority = (ngx_uint_t) ngx_http_async_task_pg_int64(res, row, 4);
    task->created_at = ngx_http_async_task_pg_int64(res, row, 7);
    task->started_at = ngx_http_async_task_pg_int64(res, row, 8);
    task->finished_at = ngx_http_async_task_pg_int64(res, row, 9);
    task->attempts = (ngx_uint_t) ngx_http_async_task_pg_int64(res, row, 10);

    if (PQnfields(res) > 14 && !PQgetisnull(res, row, 14)) {
        task->position = (ngx_int_t) ngx_http_async_task_pg_int64(res, row,
                                                                   14);
    }

    if (ngx_http_async_task_pg_text(res, row, 3, pool, &task->user) != NGX_OK
        || ngx_http_async_task_pg_text(res, row, 5, pool, &task->params)
           != NGX_OK
        || ngx_http_async_task_pg_text(res, row, 6, pool, &task->file)
           != NGX_OK
        || ngx_http_async_task_pg_text(res, row, 11, pool, &task->backend)
           != NGX_OK
        || ngx_http_async_task_pg_text(res, row, 12, pool, &task->result)
           != NGX_OK
        || ngx_http_async_task_pg_text(res, row, 13, pool, &task->error)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_async_task_pg_file(task->id, &task->file) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "async_task store: task %*s names the file \"%V\", "
                      "not one of its own", NGX_HTTP_ASYNC_TASK_ID_LEN,
                      task->id, &task->file);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The database is a network service that other hosts write: a file name
 * in a row is used under files= only if it is one the module makes, the
 * task's id and a suffix ("<id>.in", "<id>.png"), never a path.
 */

static ngx_int_t
ngx_http_async_task_pg_file(u_char *id, ngx_str_t *file)
{
    if (file->len == 0) {
        return NGX_OK;
    }

    if (file->len <= NGX_HTTP_ASYNC_TASK_ID_LEN
        || file->len > NGX_HTTP_ASYNC_TASK_ID_LEN + 8
        || ngx_memcmp(file->data, id, NGX_HTTP_ASYNC_TASK_ID_LEN) != 0
        || file->data[NGX_HTTP_ASYNC_TASK_ID_LEN] != '.'
        || ngx_strlchr(file->data, file->data + file->len, '/') != NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_async_task_pg_text(PGresult *res, int row, int col,
    ngx_pool_t *pool, ngx_str_t *value)
{
    value->len = PQgetlength(res, row, col);

    if (PQgetisnull(res, row, col) || value->len == 0) {
        value->len = 0;
        value->data = NULL;
        return NGX_OK;
    }

    value->data = ngx_pnalloc(pool, value->len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, PQgetvalue(res, row, col), value->len);

    return NGX_OK;
}


int64_t
ngx_http_async_task_pg_int64(PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        return 0;
    }

    return (int64_t) strtoll(PQgetvalue(res, row, col), NULL, 10);
}


/*
 * The worker's listening connection: made in a pool thread (a connect
 * may wait on the network), then read in the event loop.  When it breaks
 * it is made again a second later; meanwhile the dispatcher's periodic
 * claims find what other nodes queue.
 */

static ngx_int_t
ngx_http_async_task_pg_worker(ngx_http_async_task_store_conf_t *conf,
    ngx_cycle_t *cycle)
{
    ngx_http_async_task_pg_conf = conf;
    ngx_http_async_task_pg_listener = NULL;
    ngx_http_async_task_pg_lc = NULL;
    ngx_http_async_task_pg_connecting = 0;

    ngx_memzero(&ngx_http_async_task_pg_retry, sizeof(ngx_event_t));

    ngx_http_async_task_pg_retry.handler = ngx_http_async_task_pg_listen;
    ngx_http_async_task_pg_retry.log = cycle->log;
    ngx_http_async_task_pg_retry.data = conf;
    ngx_http_async_task_pg_retry.cancelable = 1;

    ngx_http_async_task_pg_listen(&ngx_http_async_task_pg_retry);

    return NGX_OK;
}


static void
ngx_http_async_task_pg_listen(ngx_event_t *ev)
{
    ngx_pool_t                       *pool;
    ngx_http_async_task_pg_listen_t  *ls;

    if (ngx_exiting || ngx_terminate || ngx_http_async_task_pg_connecting) {
        return;
    }

    pool = ngx_create_pool(1024, ev->log);
    if (pool == NULL) {
        goto retry;
    }

    ls = ngx_pcalloc(pool, sizeof(ngx_http_async_task_pg_listen_t));
    if (ls == NULL) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    ls->conf = ngx_http_async_task_pg_conf;
    ls->pool = pool;

    if (ngx_http_async_task_store_post(pool, ev->log,
                                       ngx_http_async_task_pg_listen_thread,
                                       ngx_http_async_task_pg_listen_done, ls)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        goto retry;
    }

    ngx_http_async_task_pg_connecting = 1;

    return;

retry:

    ngx_add_timer(ev, NGX_HTTP_ASYNC_TASK_PG_RETRY);
}


static void
ngx_http_async_task_pg_listen_thread(void *data, ngx_log_t *log)
{
    ngx_http_async_task_pg_listen_t *ls = data;

    PGresult  *res;

    ls->conn = ngx_http_async_task_pg_connect(ls->conf, NGX_LOG_ERR, log);
    if (ls->conn == NULL) {
        return;
    }

    res = PQexec(ls->conn, "LISTEN " NGX_HTTP_ASYNC_TASK_PG_CHANNEL);

    if (PQresultStatus(res) != PGRES_COMMAND_OK
        || PQsetnonblocking(ls->conn, 1) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "async_task store: LISTEN failed: %s",
                      PQerrorMessage(ls->conn));
        PQfinish(ls->conn);
        ls->conn = NULL;
    }

    PQclear(res);
}


static void
ngx_http_async_task_pg_listen_done(ngx_event_t *ev)
{
    ngx_http_async_task_pg_listen_t *ls = ev->data;

    PGconn            *conn;
    ngx_connection_t  *c;

    conn = ls->conn;
    ngx_destroy_pool(ls->pool);

    ngx_http_async_task_pg_connecting = 0;

    if (conn && (ngx_exiting || ngx_terminate)) {
        PQfinish(conn);
        return;
    }

    if (conn == NULL) {
        goto retry;
    }

    c = ngx_get_connection(PQsocket(conn), ngx_cycle->log);
    if (c == NULL) {
        PQfinish(conn);
        goto retry;
    }

    c->read->handler = ngx_http_async_task_pg_listen_read;
    c->write->handler = ngx_http_async_task_pg_dummy;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->data = ngx_http_async_task_pg_conf;

    /* a graceful stop closes it, as it closes idle keepalive connections */
    c->idle = 1;

    ngx_http_async_task_pg_listener = conn;
    ngx_http_async_task_pg_lc = c;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_async_task_pg_listen_close();
        goto retry;
    }

    /* what was queued while no one listened */
    ngx_http_async_task_store_queued();
    ngx_http_async_task_dispatch_wake();

    return;

retry:

    if (!ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&ngx_http_async_task_pg_retry,
                      NGX_HTTP_ASYNC_TASK_PG_RETRY);
    }
}


static void
ngx_http_async_task_pg_listen_read(ngx_event_t *ev)
{
    u_char            *p, *last;
    PGnotify          *notify;
    ngx_str_t          node;
    ngx_connection_t  *c;

    c = ev->data;

    if (c->close) {
        ngx_http_async_task_pg_listen_close();
        return;
    }

    if (ngx_http_async_task_pg_listener == NULL) {
        return;
    }

    if (!PQconsumeInput(ngx_http_async_task_pg_listener)) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "async_task store: the listening connection broke: %s",
                      PQerrorMessage(ngx_http_async_task_pg_listener));

        ngx_http_async_task_pg_listen_close();

        if (!ngx_exiting && !ngx_terminate) {
            ngx_add_timer(&ngx_http_async_task_pg_retry,
                          NGX_HTTP_ASYNC_TASK_PG_RETRY);
        }

        return;
    }

    while ((notify = PQnotifies(ngx_http_async_task_pg_listener)) != NULL) {

        p = (u_char *) notify->extra;
        last = p + ngx_strlen(p);

        /* "q NODE", "g NODE ID ..." or "c NODE ID ..." */

        if (last - p > 2 && p[1] == ' ') {
            node.data = p + 2;

            for (node.len = 0;
                 node.data + node.len < last && node.data[node.len] != ' ';
                 node.len++)
            {
                /* void */
            }

            ngx_http_async_task_pg_notified(&node, p, last);
        }

        PQfreemem(notify);
    }

    if (ngx_handle_read_event(ev, 0) != NGX_OK) {
        ngx_http_async_task_pg_listen_close();
    }
}


static void
ngx_http_async_task_pg_notified(ngx_str_t *node, u_char *p, u_char *last)
{
    ngx_uint_t                         canceled;
    ngx_http_async_task_shm_t         *shm;
    ngx_http_async_task_store_conf_t  *conf;

    conf = ngx_http_async_task_pg_conf;

    /* this node's own changes are in its zone already */

    if (node->len == conf->node.len
        && ngx_strncmp(node->data, conf->node.data, node->len) == 0)
    {
        return;
    }

    if (p[0] == 'q') {
        ngx_http_async_task_store_queued();
        ngx_http_async_task_dispatch_wake();
        return;
    }

    if (p[0] != 'g' && p[0] != 'c') {
        return;
    }

    canceled = (p[0] == 'c');
    shm = conf->shm_zone->data;

    /*
     * Workers read notifications each at its own pace: a claim's "g" may
     * come after this node has claimed the task in turn (the other node
     * gave it back), so it drops a queued copy only.  A cancel is final:
     * a run here stops too.
     */

    for (p = node->data + node->len;
         last - p >= (ssize_t) (1 + NGX_HTTP_ASYNC_TASK_ID_LEN);
         p += 1 + NGX_HTTP_ASYNC_TASK_ID_LEN)
    {
        ngx_http_async_task_shm_gone(shm, p + 1, canceled);
    }
}


static void
ngx_http_async_task_pg_listen_close(void)
{
    ngx_connection_t  *c;

    c = ngx_http_async_task_pg_lc;

    if (c) {
        /* the socket is libpq's: PQfinish() closes it */

        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        ngx_http_async_task_pg_lc = NULL;
    }

    if (ngx_http_async_task_pg_listener) {
        PQfinish(ngx_http_async_task_pg_listener);
        ngx_http_async_task_pg_listener = NULL;
    }
}


static void
ngx_http_async_task_pg_dummy(ngx_event_t *ev)
{
}


static void
ngx_http_async_task_pg_notice(void *arg, const char *message)
{
}
