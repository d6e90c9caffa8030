
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sqlite3.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_store.h"
#include "ngx_http_async_task_upload.h"
#include "ngx_http_async_task_util.h"
#include <ngx_http_async_task_migrations.h>


/*
 * The embedded store.  Every call but init runs in a pool thread, on that
 * thread's own connection: SQLite connections are opened in the worker
 * processes, never carried across fork(), and each is used by one thread.
 * Several worker processes write the same file: WAL lets readers go on
 * while one writes, writers take the lock up front (BEGIN IMMEDIATE) and
 * wait for it at most lock_timeout, after which the caller answers 503.
 */


/*
 * Once the write-ahead log holds this many pages (about 4 MB) it is
 * checkpointed in two steps.  First a pool thread copies the log into the
 * database beside the writes (PASSIVE): that is most of the work, and the
 * fsync of the database file.  Then the writer, before its next
 * transaction, copies what was appended meanwhile and restarts the log
 * (RESTART): nothing is appended between that checkpoint and the next
 * BEGIN, and that BEGIN starts the log over instead of growing it.  When
 * the writer had to do the whole checkpoint itself, its batch and every
 * one behind it waited for it (5-25 ms, a few times a second under load):
 * that was the tail of the submissions' latency.  Should the first step
 * not come, the writer does it all at WAL_PAGES_MAX.  On a restart the
 * file is cut back to journal_size_limit.
 */
#define NGX_HTTP_ASYNC_TASK_WAL_PAGES      1000
#define NGX_HTTP_ASYNC_TASK_WAL_PAGES_MAX  4000
#define NGX_HTTP_ASYNC_TASK_WAL_LIMIT      "4194304"

/* the first step: none, running, or done (the log copied beside) */
#define NGX_HTTP_ASYNC_TASK_COPY_NONE      0
#define NGX_HTTP_ASYNC_TASK_COPY_RUNNING   1
#define NGX_HTTP_ASYNC_TASK_COPY_DONE      2


#define NGX_HTTP_ASYNC_TASK_COLUMNS                                           \
    "id, kind, status, user, priority, params, file, created_at, "           \
    "started_at, finished_at, attempts, backend, result, error"


typedef struct ngx_http_async_task_sqlite_s  ngx_http_async_task_sqlite_t;

struct ngx_http_async_task_sqlite_s {
    ngx_http_async_task_sqlite_t   *next;       /* all of the process's */
    sqlite3                        *db;
    sqlite3_stmt                   *begin;
    sqlite3_stmt                   *commit;
    sqlite3_stmt                   *rollback;
    sqlite3_stmt                   *insert;
    sqlite3_stmt                   *get;
    sqlite3_stmt                   *list;
    sqlite3_stmt                   *finish;
    sqlite3_stmt                   *claim;
    sqlite3_stmt                   *complete;
    sqlite3_stmt                   *recover;
    sqlite3_stmt                   *expired;
    sqlite3_stmt                   *remove;
    sqlite3_stmt                   *reclaim;
};


static ngx_int_t ngx_http_async_task_sqlite_init(
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log);
static void ngx_http_async_task_sqlite_write(
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_get(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_list(
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_filter_t *filter, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_finish(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *user,
    ngx_uint_t from, ngx_http_async_task_t *task, ngx_pool_t *pool,
    ngx_log_t *log);

static ngx_int_t ngx_http_async_task_sqlite_flush(
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_batch(
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_sqlite_t *sq,
    ngx_http_async_task_op_t **ops, ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_sync(
    ngx_http_async_task_sqlite_t *sq, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_claim(
    ngx_http_async_task_sqlite_t *sq, ngx_uint_t kind, ngx_str_t *owner,
    int64_t lease, ngx_uint_t n, ngx_pool_t *pool, ngx_array_t *tasks,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_recover(
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *owner,
    ngx_pool_t *pool, ngx_http_async_task_t *task, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_reclaim(
    ngx_http_async_task_store_conf_t *conf, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_expire(
    ngx_http_async_task_store_conf_t *conf, int64_t before, ngx_uint_t n,
    ngx_uint_t *count, ngx_array_t *files, ngx_log_t *log);
static void ngx_http_async_task_sqlite_bind_str(sqlite3_stmt *stmt, int col,
    ngx_str_t *value);
static ngx_http_async_task_sqlite_t *ngx_http_async_task_sqlite_connection(
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_insert(
    ngx_http_async_task_sqlite_t *sq, ngx_http_async_task_t *task,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_complete(
    ngx_http_async_task_sqlite_t *sq, ngx_http_async_task_t *task,
    ngx_str_t *owner, int64_t not_before, ngx_log_t *log);
static void ngx_http_async_task_sqlite_exit(void);
static void ngx_http_async_task_sqlite_close(ngx_http_async_task_sqlite_t *sq);
static int ngx_http_async_task_sqlite_busy(void *data, int n);
static int ngx_http_async_task_sqlite_wal(void *data, sqlite3 *db,
    const char *name, int pages);
static void ngx_http_async_task_sqlite_checkpoint(
    ngx_http_async_task_sqlite_t *sq, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_maintain(
    ngx_http_async_task_store_conf_t *conf, ngx_uint_t idle, ngx_log_t *log);
static ngx_uint_t ngx_http_async_task_sqlite_due(void);
static sqlite3 *ngx_http_async_task_sqlite_open(
    ngx_http_async_task_store_conf_t *conf, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_migrate(sqlite3 *db,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_load(sqlite3 *db,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_sqlite_row(sqlite3_stmt *stmt,
    ngx_pool_t *pool, ngx_http_async_task_t *task);
static ngx_int_t ngx_http_async_task_sqlite_text(sqlite3_stmt *stmt,
    int col, ngx_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_http_async_task_sqlite_step(
    ngx_http_async_task_sqlite_t *sq, sqlite3_stmt *stmt, ngx_log_t *log);
static void ngx_http_async_task_sqlite_error(ngx_http_async_task_sqlite_t *sq,
    ngx_log_t *log, const char *what);


ngx_http_async_task_store_driver_t  ngx_http_async_task_sqlite_driver = {
    ngx_http_async_task_sqlite_init,
    ngx_http_async_task_sqlite_write,
    ngx_http_async_task_sqlite_get,
    ngx_http_async_task_sqlite_list,
    ngx_http_async_task_sqlite_finish,
    ngx_http_async_task_sqlite_recover,
    ngx_http_async_task_sqlite_reclaim,
    ngx_http_async_task_sqlite_expire,
    ngx_http_async_task_sqlite_maintain,
    ngx_http_async_task_sqlite_exit,
    ngx_http_async_task_sqlite_flush,
    0,
    NULL,
    ngx_http_async_task_sqlite_due
};


/*
 * Each pool thread has its connection; the process keeps a list of them
 * to close at exit, from the main thread, once the pool threads are done.
 * (A thread-exit destructor would race with nginx unloading the module.)
 */

static __thread ngx_http_async_task_sqlite_t  *ngx_http_async_task_sqlite;
static ngx_http_async_task_sqlite_t           *ngx_http_async_task_sqlite_all;
/* the log's length in pages after the process's last commit, any thread */
static volatile int     ngx_http_async_task_sqlite_wal_pages;
static volatile int     ngx_http_async_task_sqlite_wal_next =
                                               NGX_HTTP_ASYNC_TASK_WAL_PAGES;
static volatile int     ngx_http_async_task_sqlite_copy;
static pthread_mutex_t  ngx_http_async_task_sqlite_mutex =
                                                    PTHREAD_MUTEX_INITIALIZER;


/*
 * Called in the master at start and at each reload: brings the schema up
 * to date, and gives the loader (for a new zone) the tasks that are still
 * live and the counts of the finished ones.
 */

static ngx_int_t
ngx_http_async_task_sqlite_init(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log)
{
    sqlite3    *db;
    ngx_int_t   rc;

    db = ngx_http_async_task_sqlite_open(conf, log);
    if (db == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_async_task_sqlite_migrate(db, log);

    if (rc == NGX_OK && loader) {
        rc = ngx_http_async_task_sqlite_load(db, loader, fresh, log);
    }

    sqlite3_close(db);

    return rc;
}


static ngx_int_t
ngx_http_async_task_sqlite_migrate(sqlite3 *db, ngx_log_t *log)
{
    int            version, n;
    char          *err;
    sqlite3_stmt  *stmt;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL)
        != SQLITE_OK
        || sqlite3_step(stmt) != SQLITE_ROW)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "async_task store: cannot read schema version: %s",
                      sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return NGX_ERROR;
    }

    version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);

    for (n = 0; ngx_http_async_task_migrations[n]; n++) {
        /* count them */
    }

    if (version > n) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "async_task store: schema version %d is newer than "
                      "this module's %d", version, n);
        return NGX_ERROR;
    }

    for ( /* void */ ; version < n; version++) {

        if (sqlite3_exec(db, ngx_http_async_task_migrations[version],
                         NULL, NULL, &err)
            != SQLITE_OK)
        {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "async_task store: migration %d failed: %s",
                          version + 1, err);
            sqlite3_free(err);
            (void) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "async_task store: schema migrated to version %d",
                      version + 1);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_sqlite_load(sqlite3 *db,
    ngx_http_async_task_loader_t *loader, ngx_uint_t fresh, ngx_log_t *log)
{
    int                     rc;
    u_char                 *owner;
    ngx_int_t               status;
    ngx_str_t               name;
    ngx_uint_t              n;
    ngx_pool_t             *pool;
    sqlite3_stmt           *stmt;
    ngx_http_async_task_t   task;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    stmt = NULL;

    /*
     * At a fresh start the whole nginx was stopped, so nothing runs: a
     * task that was RUNNING when it died goes back to the queue,
     * uncharged.  On a reload that made a new zone, old workers still
     * run theirs: they are loaded as running, owned by those processes.
     */

    if (fresh
        && sqlite3_exec(db, "UPDATE tasks SET status = 'QUEUED', "
                            "started_at = NULL, backend = NULL, "
                            "lease_owner = NULL, lease_expires = NULL "
                            "WHERE status = 'RUNNING'",
                        NULL, NULL, NULL)
           != SQLITE_OK)
    {
        goto failed;
    }

    if (sqlite3_prepare_v2(db, "SELECT " NGX_HTTP_ASYNC_TASK_COLUMNS
                               ", lease_owner FROM tasks "
                               "WHERE status IN ('QUEUED', 'RUNNING')",
                           -1, &stmt, NULL)
        != SQLITE_OK)
    {
        goto failed;
    }

    n = 0;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {

        if (ngx_http_async_task_sqlite_row(stmt, pool, &task) != NGX_OK) {
            goto failed;
        }

        owner = (u_char *) sqlite3_column_text(stmt, 14);

        if (owner) {
            task.owner = ngx_http_async_task_util_lease_pid(owner,
                                                    ngx_strlen(owner));
        }

        if (loader->task(loader->data, &task) != NGX_OK) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "async_task zone is too small for the live "
                          "tasks of the store: %ui fit", n);
            sqlite3_finalize(stmt);
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        n++;

        if (n % 1024 == 0) {
            ngx_reset_pool(pool);
        }
    }

    if (rc != SQLITE_DONE) {
        goto failed;
    }

    sqlite3_finalize(stmt);

    /* finished tasks are only counted */

    if (sqlite3_prepare_v2(db, "SELECT status, count(*) FROM tasks "
                               "WHERE status NOT IN ('QUEUED', 'RUNNING') "
                               "GROUP BY status",
                           -1, &stmt, NULL)
        != SQLITE_OK)
    {
        goto failed;
    }

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        name.data = (u_char *) sqlite3_column_text(stmt, 0);
        name.len = sqlite3_column_bytes(stmt, 0);

        status = ngx_http_async_task_util_status_index(&name);

        if (status != NGX_ERROR) {
            loader->count(loader->data, status,
                          (ngx_uint_t) sqlite3_column_int64(stmt, 1));
        }
    }

    if (rc != SQLITE_DONE) {
        goto failed;
    }

    sqlite3_finalize(stmt);
    ngx_destroy_pool(pool);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "async_task store: %ui live tasks loaded", n);

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "async_task store: cannot load tasks: %s",
                  sqlite3_errmsg(db));

    sqlite3_finalize(stmt);
    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


/*
 * Group commit: every new task and every outcome a worker has waiting
 * goes in one transaction, one flush.  A failed transaction fails them
 * all; an outcome whose lease is gone is NGX_DECLINED alone.  The commit
 * is not flushed: store.c calls sqlite_flush() once the process's next
 * batch may write, which is written during this one's flush.
 */

static void
ngx_http_async_task_sqlite_write(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_op_t **ops, ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t                     i;
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);

    if (sq != NULL
        && ngx_http_async_task_sqlite_batch(conf, sq, ops, n, log) == NGX_OK)
    {
        return;
    }

    for (i = 0; i < n; i++) {
        ops[i]->rc = NGX_ERROR;
    }
}


/* after a batch, in its thread: the log up to its commit on disk */

static ngx_int_t
ngx_http_async_task_sqlite_flush(ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log)
{
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_async_task_sqlite_sync(sq, log);
}


static ngx_int_t
ngx_http_async_task_sqlite_batch(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_sqlite_t *sq, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t  i, renamed;

    renamed = 0;

    if (ngx_http_async_task_sqlite_wal_pages
        >= ngx_http_async_task_sqlite_wal_next
        && (ngx_http_async_task_sqlite_copy == NGX_HTTP_ASYNC_TASK_COPY_DONE
            || ngx_http_async_task_sqlite_wal_pages
               >= NGX_HTTP_ASYNC_TASK_WAL_PAGES_MAX))
    {
        ngx_http_async_task_sqlite_checkpoint(sq, log);
    }

    if (ngx_http_async_task_sqlite_step(sq, sq->begin, log) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {

        if (ops[i]->type == ngx_http_async_task_op_insert) {
            ops[i]->rc = ngx_http_async_task_sqlite_insert(sq, &ops[i]->task,
                                                           log);

        } else if (ops[i]->type == ngx_http_async_task_op_claim) {
            ops[i]->rc = ngx_http_async_task_sqlite_claim(sq,
                                             ops[i]->filter.kind,
                                             ops[i]->owner, ops[i]->lease,
                                             ops[i]->filter.limit,
                                             ops[i]->pool, &ops[i]->tasks,
                                             log);
        } else {
            ops[i]->rc = ngx_http_async_task_sqlite_complete(sq,
                                                 &ops[i]->task, ops[i]->owner,
                                                 ops[i]->not_before, log);

            /*
             * The run's file takes the result's name only now: the lease
             * is this run's, under the write lock, so no run that won
             * before is overwritten, and a refused run leaves it alone.
             */

            if (ops[i]->rc == NGX_OK && ops[i]->temp.len) {
                ops[i]->rc = ngx_http_async_task_store_rename(conf, ops[i],
                                                              log);
                renamed = 1;
            }
        }

        if (ops[i]->rc == NGX_ERROR) {
            (void) ngx_http_async_task_sqlite_step(sq, sq->rollback, log);
            return NGX_ERROR;
        }
    }

    if (renamed) {

        /* the new names are on disk before the tasks say DONE */
        (void) ngx_http_async_task_util_sync_dir(conf->files.data, log);
    }

    if (ngx_http_async_task_sqlite_step(sq, sq->commit, log) != NGX_OK) {
        (void) ngx_http_async_task_sqlite_step(sq, sq->rollback, log);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The pool threads' connections commit without a flush (synchronous =
 * NORMAL): the writer flushes the log itself, on SQLite's own handle of
 * it, after its commit and before anything is answered.  Everything
 * committed to the log before this call is on disk when it returns.
 */

static ngx_int_t
ngx_http_async_task_sqlite_sync(ngx_http_async_task_sqlite_t *sq,
    ngx_log_t *log)
{
    sqlite3_file  *wal;

    wal = NULL;

    if (sqlite3_file_control(sq->db, "main", SQLITE_FCNTL_JOURNAL_POINTER,
                             &wal)
        != SQLITE_OK
        || wal == NULL
        || wal->pMethods == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "async_task store: the write-ahead log is not open");
        return NGX_ERROR;
    }

    if (wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL) != SQLITE_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "async_task store: cannot flush the write-ahead log");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_sqlite_insert(ngx_http_async_task_sqlite_t *sq,
    ngx_http_async_task_t *task, ngx_log_t *log)
{
    sqlite3_stmt  *stmt;

    stmt = sq->insert;

    sqlite3_bind_text(stmt, 1, (char *) task->id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2,
                      (char *) ngx_http_async_task_kind(task->kind)->name.data,
                      -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3,
                      (char *) ngx_http_async_task_statuses[task->status].data,
                      -1, SQLITE_STATIC);

    if (task->has_user) {
        sqlite3_bind_text(stmt, 4, (char *) task->user.data, task->user.len,
                          SQLITE_STATIC);
    }

    sqlite3_bind_int(stmt, 5, (int) task->priority);
    sqlite3_bind_text(stmt, 6, (char *) task->params.data, task->params.len,
                      SQLITE_STATIC);
    ngx_http_async_task_sqlite_bind_str(stmt, 7, &task->file);
    sqlite3_bind_int64(stmt, 8, task->created_at);

    return ngx_http_async_task_sqlite_step(sq, stmt, log);
}


static ngx_int_t
ngx_http_async_task_sqlite_get(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_pool_t *pool, ngx_http_async_task_t *task,
    ngx_log_t *log)
{
    int                            rc;
    ngx_int_t                      ret;
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    sqlite3_bind_text(sq->get, 1, (char *) id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);

    rc = sqlite3_step(sq->get);

    if (rc == SQLITE_ROW) {
        ret = ngx_http_async_task_sqlite_row(sq->get, pool, task);

    } else if (rc == SQLITE_DONE) {
        ret = NGX_DECLINED;

    } else {
        ngx_http_async_task_sqlite_error(sq, log, "get");
        ret = NGX_ERROR;
    }

    sqlite3_reset(sq->get);
    sqlite3_clear_bindings(sq->get);

    return ret;
}


static ngx_int_t
ngx_http_async_task_sqlite_list(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_filter_t *filter, ngx_pool_t *pool,
    ngx_array_t *tasks, ngx_log_t *log)
{
    int                             rc;
    sqlite3_stmt                   *stmt;
    ngx_http_async_task_t          *task;
    ngx_http_async_task_sqlite_t   *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    stmt = sq->list;

    if (filter->user) {
        sqlite3_bind_text(stmt, 1, (char *) filter->user->data,
                          filter->user->len, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(stmt, 1);
    }

    if (filter->status >= 0) {
        sqlite3_bind_text(stmt, 2, (char *)
                          ngx_http_async_task_statuses[filter->status].data,
                          -1, SQLITE_STATIC);
    }

    if (filter->kind >= 0) {
        sqlite3_bind_text(stmt, 3, (char *)
                          ngx_http_async_task_kind(filter->kind)->name.data,
                          -1, SQLITE_STATIC);
    }

    if (filter->has_cursor) {
        sqlite3_bind_text(stmt, 4, (char *) filter->cursor,
                          NGX_HTTP_ASYNC_TASK_ID_LEN, SQLITE_STATIC);
    } else {
        /* above every id: they are made of hex digits and dashes */
        sqlite3_bind_text(stmt, 4, "~", 1, SQLITE_STATIC);
    }

    sqlite3_bind_int(stmt, 5, (int) filter->limit + 1);

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        task = ngx_array_push(tasks);
        if (task == NULL
            || ngx_http_async_task_sqlite_row(stmt, pool, task) != NGX_OK)
        {
            rc = SQLITE_NOMEM;
            break;
        }
    }

    if (rc != SQLITE_DONE) {
        ngx_http_async_task_sqlite_error(sq, log, "list");
    }

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);

    return (rc == SQLITE_DONE) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_async_task_sqlite_finish(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_str_t *user, ngx_uint_t from, ngx_http_async_task_t *task,
    ngx_pool_t *pool, ngx_log_t *log)
{
    int                            rc;
    ngx_int_t                      ret;
    ngx_uint_t                     to;
    ngx_http_async_task_t          row;
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    to = task->status;

    if (ngx_http_async_task_sqlite_step(sq, sq->begin, log) != NGX_OK) {
        return NGX_ERROR;
    }

    sqlite3_bind_text(sq->get, 1, (char *) id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);

    rc = sqlite3_step(sq->get);

    if (rc == SQLITE_ROW) {
        ret = ngx_http_async_task_sqlite_row(sq->get, pool, &row);

    } else if (rc == SQLITE_DONE) {
        ret = NGX_DECLINED;

    } else {
        ngx_http_async_task_sqlite_error(sq, log, "finish");
        ret = NGX_ERROR;
    }

    sqlite3_reset(sq->get);
    sqlite3_clear_bindings(sq->get);

    if (ret == NGX_OK
        && !ngx_http_async_task_util_owner(user, row.has_user, row.user.data,
                                           row.user.len))
    {
        ret = NGX_DECLINED;
    }

    if (ret == NGX_OK && !(from & (1 << row.status))) {
        *task = row;
        ret = NGX_BUSY;
    }

    if (ret != NGX_OK) {
        (void) ngx_http_async_task_sqlite_step(sq, sq->rollback, log);
        return ret;
    }

    row.status = to;
    row.finished_at = ngx_http_async_task_util_now_ms();

    sqlite3_bind_text(sq->finish, 1,
                      (char *) ngx_http_async_task_statuses[to].data, -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(sq->finish, 2, row.finished_at);
    sqlite3_bind_text(sq->finish, 3, (char *) id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);

    if (ngx_http_async_task_sqlite_step(sq, sq->finish, log) != NGX_OK
        || ngx_http_async_task_sqlite_step(sq, sq->commit, log) != NGX_OK)
    {
        (void) ngx_http_async_task_sqlite_step(sq, sq->rollback, log);
        return NGX_ERROR;
    }

    if (ngx_http_async_task_sqlite_sync(sq, log) != NGX_OK) {
        return NGX_ERROR;
    }

    row.position = -1;
    *task = row;

    return NGX_OK;
}


/* up to n due tasks of a kind; NGX_DECLINED: none */

static ngx_int_t
ngx_http_async_task_sqlite_claim(ngx_http_async_task_sqlite_t *sq,
    ngx_uint_t kind, ngx_str_t *owner, int64_t lease, ngx_uint_t n,
    ngx_pool_t *pool, ngx_array_t *tasks, ngx_log_t *log)
{
    int                     rc;
    int64_t                 now;
    ngx_int_t               ret;
    ngx_http_async_task_t  *task;

    if (ngx_array_init(tasks, pool, n, sizeof(ngx_http_async_task_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    now = ngx_http_async_task_util_now_ms();

    sqlite3_bind_int64(sq->claim, 1, now);
    ngx_http_async_task_sqlite_bind_str(sq->claim, 2, owner);
    sqlite3_bind_int64(sq->claim, 3, now + lease);
    sqlite3_bind_text(sq->claim, 4,
                      (char *) ngx_http_async_task_kind(kind)->name.data, -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(sq->claim, 5, (int) n);

    ret = NGX_OK;

    /* the change is made by the first step; the rest read what it did */

    while ((rc = sqlite3_step(sq->claim)) == SQLITE_ROW) {
        task = ngx_array_push(tasks);

        if (task == NULL
            || ngx_http_async_task_sqlite_row(sq->claim, pool, task)
               != NGX_OK)
        {
            ret = NGX_ERROR;
        }
    }

    if (rc != SQLITE_DONE) {
        ngx_http_async_task_sqlite_error(sq, log, "claim");
        ret = NGX_ERROR;
    }

    sqlite3_reset(sq->claim);
    sqlite3_clear_bindings(sq->claim);

    if (ret == NGX_OK && tasks->nelts == 0) {
        return NGX_DECLINED;
    }

    return ret;
}


/*
 * NGX_DECLINED: the lease is not the runner's any more (the task was
 * canceled, or taken back), and nothing was written.
 */

static ngx_int_t
ngx_http_async_task_sqlite_complete(ngx_http_async_task_sqlite_t *sq,
    ngx_http_async_task_t *task, ngx_str_t *owner, int64_t not_before,
    ngx_log_t *log)
{
    sqlite3_stmt  *stmt;

    stmt = sq->complete;

    sqlite3_bind_text(stmt, 1,
                      (char *) ngx_http_async_task_statuses[task->status].data,
                      -1, SQLITE_STATIC);
    ngx_http_async_task_sqlite_bind_str(stmt, 2, &task->result);
    ngx_http_async_task_sqlite_bind_str(stmt, 3, &task->error);
    sqlite3_bind_int(stmt, 4, (int) task->attempts);
    ngx_http_async_task_sqlite_bind_str(stmt, 5, &task->backend);
    ngx_http_async_task_sqlite_bind_str(stmt, 6, &task->file);

    if (task->finished_at) {
        sqlite3_bind_int64(stmt, 7, task->finished_at);
    }

    if (not_before) {
        sqlite3_bind_int64(stmt, 8, not_before);
    }

    sqlite3_bind_text(stmt, 9, (char *) task->id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);
    ngx_http_async_task_sqlite_bind_str(stmt, 10, owner);

    if (ngx_http_async_task_sqlite_step(sq, stmt, log) != NGX_OK) {
        return NGX_ERROR;
    }

    return sqlite3_changes(sq->db) ? NGX_OK : NGX_DECLINED;
}


/* a runner that is gone: its task back to the queue, uncharged */

static ngx_int_t
ngx_http_async_task_sqlite_recover(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_str_t *owner, ngx_pool_t *pool,
    ngx_http_async_task_t *task, ngx_log_t *log)
{
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    sqlite3_bind_text(sq->recover, 1, (char *) id, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      SQLITE_STATIC);
    ngx_http_async_task_sqlite_bind_str(sq->recover, 2, owner);

    if (ngx_http_async_task_sqlite_step(sq, sq->recover, log) != NGX_OK
        || ngx_http_async_task_sqlite_sync(sq, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* whatever became of it, the caller learns its status now */

    return ngx_http_async_task_sqlite_get(conf, id, pool, task, log);
}


static ngx_int_t
ngx_http_async_task_sqlite_reclaim(ngx_http_async_task_store_conf_t *conf,
    ngx_pool_t *pool, ngx_array_t *tasks, ngx_log_t *log)
{
    int                            rc;
    ngx_http_async_task_t         *task;
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    sqlite3_bind_int64(sq->reclaim, 1, ngx_http_async_task_util_now_ms());

    while ((rc = sqlite3_step(sq->reclaim)) == SQLITE_ROW) {
        task = ngx_array_push(tasks);

        if (task == NULL
            || sqlite3_column_bytes(sq->reclaim, 0)
               != NGX_HTTP_ASYNC_TASK_ID_LEN)
        {
            continue;
        }

        ngx_memzero(task, sizeof(ngx_http_async_task_t));
        ngx_memcpy(task->id, sqlite3_column_text(sq->reclaim, 0),
                   NGX_HTTP_ASYNC_TASK_ID_LEN);
        task->attempts = sqlite3_column_int(sq->reclaim, 1);
    }

    if (rc != SQLITE_DONE) {
        ngx_http_async_task_sqlite_error(sq, log, "reclaim");
    }

    sqlite3_reset(sq->reclaim);
    sqlite3_clear_bindings(sq->reclaim);

    if (rc != SQLITE_DONE || ngx_http_async_task_sqlite_sync(sq, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Retention: up to n finished tasks older than "before" go; count[] gets
 * how many of each status went, "files" the files they leave behind.
 */

static ngx_int_t
ngx_http_async_task_sqlite_expire(ngx_http_async_task_store_conf_t *conf,
    int64_t before, ngx_uint_t n, ngx_uint_t *count, ngx_array_t *files,
    ngx_log_t *log)
{
    int                            rc;
    size_t                         len;
    ngx_int_t                      status;
    ngx_str_t                      text, *file;
    ngx_uint_t                     i, found;
    ngx_http_async_task_sqlite_t  *sq;
    u_char                         ids[64][NGX_HTTP_ASYNC_TASK_ID_LEN];

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    n = ngx_min(n, 64);
    found = 0;

    if (ngx_http_async_task_sqlite_step(sq, sq->begin, log) != NGX_OK) {
        return NGX_ERROR;
    }

    sqlite3_bind_int64(sq->expired, 1, before);
    sqlite3_bind_int(sq->expired, 2, (int) n);

    while ((rc = sqlite3_step(sq->expired)) == SQLITE_ROW) {

        if (sqlite3_column_bytes(sq->expired, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN)
        {
            continue;
        }

        ngx_memcpy(ids[found], sqlite3_column_text(sq->expired, 0),
                   NGX_HTTP_ASYNC_TASK_ID_LEN);

        text.data = (u_char *) sqlite3_column_text(sq->expired, 1);
        text.len = sqlite3_column_bytes(sq->expired, 1);
        status = ngx_http_async_task_util_status_index(&text);

        if (status != NGX_ERROR) {
            count[status]++;
        }

        len = sqlite3_column_bytes(sq->expired, 2);

        if (len && len <= NGX_HTTP_ASYNC_TASK_ID_LEN + 8) {
            file = ngx_array_push(files);
            if (file == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }

            file->data = ngx_pnalloc(files->pool, len);
            if (file->data == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }

            ngx_memcpy(file->data, sqlite3_column_text(sq->expired, 2), len);
            file->len = len;
        }

        found++;
    }

    sqlite3_reset(sq->expired);
    sqlite3_clear_bindings(sq->expired);

    if (rc != SQLITE_DONE) {
        goto failed;
    }

    for (i = 0; i < found; i++) {
        sqlite3_bind_text(sq->remove, 1, (char *) ids[i],
                          NGX_HTTP_ASYNC_TASK_ID_LEN, SQLITE_STATIC);

        if (ngx_http_async_task_sqlite_step(sq, sq->remove, log) != NGX_OK) {
            goto failed;
        }
    }

    if (ngx_http_async_task_sqlite_step(sq, sq->commit, log) != NGX_OK) {
        goto failed;
    }

    if (ngx_http_async_task_sqlite_sync(sq, log) != NGX_OK) {
        files->nelts = 0;
        return NGX_ERROR;
    }

    return found;

failed:

    /* nothing went: the files stay */

    (void) ngx_http_async_task_sqlite_step(sq, sq->rollback, log);
    files->nelts = 0;

    return NGX_ERROR;
}


static void
ngx_http_async_task_sqlite_bind_str(sqlite3_stmt *stmt, int col,
    ngx_str_t *value)
{
    if (value && value->len) {
        sqlite3_bind_text(stmt, col, (char *) value->data, value->len,
                          SQLITE_STATIC);
    }
}


static ngx_http_async_task_sqlite_t *
ngx_http_async_task_sqlite_connection(ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log)
{
    ngx_uint_t                     i;
    ngx_http_async_task_sqlite_t  *sq;

    static const char  *sql[] = {
        "BEGIN IMMEDIATE",
        "COMMIT",
        "ROLLBACK",

        "INSERT INTO tasks (id, kind, status, user, priority, params, file, "
        "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",

        "SELECT " NGX_HTTP_ASYNC_TASK_COLUMNS " FROM tasks WHERE id = ?1",

        "SELECT " NGX_HTTP_ASYNC_TASK_COLUMNS " FROM tasks "
        "WHERE user IS ?1 AND (?2 IS NULL OR status = ?2) "
        "AND (?3 IS NULL OR kind = ?3) AND id < ?4 "
        "ORDER BY id DESC LIMIT ?5",

        "UPDATE tasks SET status = ?1, finished_at = ?2, lease_owner = NULL, "
        "lease_expires = NULL WHERE id = ?3",

        /* the next task of a kind: priority, then age; atomically ours */
        "UPDATE tasks SET status = 'RUNNING', started_at = ?1, "
        "lease_owner = ?2, lease_expires = ?3 "
        "WHERE id IN (SELECT id FROM tasks WHERE status = 'QUEUED' "
        "AND kind = ?4 AND (not_before IS NULL OR not_before <= ?1) "
        "ORDER BY priority DESC, created_at, id LIMIT ?5) "
        "RETURNING " NGX_HTTP_ASYNC_TASK_COLUMNS,

        /* the runner's report: only while the lease is still its own */
        "UPDATE tasks SET status = ?1, result = ?2, error = ?3, "
        "attempts = ?4, backend = ?5, file = coalesce(?6, file), "
        "finished_at = ?7, not_before = ?8, "
        "started_at = CASE WHEN ?1 = 'QUEUED' THEN NULL ELSE started_at END, "
        "lease_owner = NULL, lease_expires = NULL "
        "WHERE id = ?9 AND status = 'RUNNING' AND lease_owner = ?10",

        "UPDATE tasks SET status = 'QUEUED', started_at = NULL, "
        "lease_owner = NULL, lease_expires = NULL "
        "WHERE id = ?1 AND status = 'RUNNING' AND lease_owner = ?2",

        "SELECT id, status, file FROM tasks "
        "WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2",

        "DELETE FROM tasks WHERE id = ?1",

        "UPDATE tasks SET status = 'QUEUED', started_at = NULL, "
        "lease_owner = NULL, lease_expires = NULL "
        "WHERE status = 'RUNNING' AND lease_expires < ?1 "
        "RETURNING id, attempts"
    };

    sq = ngx_http_async_task_sqlite;
    if (sq) {
        return sq;
    }

    sq = ngx_calloc(sizeof(ngx_http_async_task_sqlite_t), log);
    if (sq == NULL) {
        return NULL;
    }

    sq->db = ngx_http_async_task_sqlite_open(conf, log);
    if (sq->db == NULL) {
        ngx_free(sq);
        return NULL;
    }

    for (i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        if (sqlite3_prepare_v3(sq->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &(&sq->begin)[i], NULL)
            != SQLITE_OK)
        {
            ngx_http_async_task_sqlite_error(sq, log, "prepare");
            ngx_http_async_task_sqlite_close(sq);
            return NULL;
        }
    }

    /* each write flushes the log itself: see sqlite_sync() */

    if (sqlite3_exec(sq->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL)
        != SQLITE_OK)
    {
        ngx_http_async_task_sqlite_error(sq, log, "synchronous");
        ngx_http_async_task_sqlite_close(sq);
        return NULL;
    }

    (void) sqlite3_wal_hook(sq->db, ngx_http_async_task_sqlite_wal, NULL);

    ngx_http_async_task_sqlite = sq;

    (void) pthread_mutex_lock(&ngx_http_async_task_sqlite_mutex);
    sq->next = ngx_http_async_task_sqlite_all;
    ngx_http_async_task_sqlite_all = sq;
    (void) pthread_mutex_unlock(&ngx_http_async_task_sqlite_mutex);

    return sq;
}


/* at process exit: the thread pools have stopped */

static void
ngx_http_async_task_sqlite_exit(void)
{
    ngx_http_async_task_sqlite_t  *sq, *next;

    for (sq = ngx_http_async_task_sqlite_all; sq; sq = next) {
        next = sq->next;
        ngx_http_async_task_sqlite_close(sq);
    }

    ngx_http_async_task_sqlite_all = NULL;
}


static void
ngx_http_async_task_sqlite_close(ngx_http_async_task_sqlite_t *sq)
{
    sqlite3_stmt  **stmt;

    for (stmt = &sq->begin; stmt <= &sq->reclaim; stmt++) {
        sqlite3_finalize(*stmt);
    }

    sqlite3_close(sq->db);
    ngx_free(sq);
}


/*
 * SQLite's own busy handler sleeps up to 100 ms at a time: with several
 * worker processes taking turns at the write lock that is where the tail
 * latency of submissions came from.  Short sleeps take the lock soon
 * after it is released, until lock_timeout.
 */

static int
ngx_http_async_task_sqlite_busy(void *data, int n)
{
    ngx_http_async_task_store_conf_t *conf = data;

    ngx_msec_t  slept;

    slept = (ngx_msec_t) n / 5;        /* 200 us each */

    if (slept >= conf->lock_timeout) {
        return 0;
    }

    (void) usleep(200);

    return 1;
}


/* after each commit: how long the write-ahead log is */

static int
ngx_http_async_task_sqlite_wal(void *data, sqlite3 *db, const char *name,
    int pages)
{
    ngx_http_async_task_sqlite_wal_pages = pages;

    return SQLITE_OK;
}


/*
 * The writer's checkpoint, between two of its transactions, in its pool
 * thread.  RESTART: it waits for the other workers' writers (in this
 * thread, up to lock_timeout) and holds them off while it copies, so that
 * the log does start over.  PASSIVE ones, run beside the other workers'
 * commits, seldom finished and were tried again before most batches.
 */

static void
ngx_http_async_task_sqlite_checkpoint(ngx_http_async_task_sqlite_t *sq,
    ngx_log_t *log)
{
    int  rc, wal, done;

    rc = sqlite3_wal_checkpoint_v2(sq->db, NULL, SQLITE_CHECKPOINT_RESTART,
                                   &wal, &done);

    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        ngx_http_async_task_sqlite_error(sq, log, "checkpoint");
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async task store checkpoint: %d of %d pages, rc:%d",
                   done, wal, rc);

    if (ngx_http_async_task_sqlite_copy == NGX_HTTP_ASYNC_TASK_COPY_DONE) {
        ngx_http_async_task_sqlite_copy = NGX_HTTP_ASYNC_TASK_COPY_NONE;
    }

    if (rc == SQLITE_OK && done == wal) {
        /* the next commit tells how long the log is now */
        ngx_http_async_task_sqlite_wal_pages = 0;
        ngx_http_async_task_sqlite_wal_next = NGX_HTTP_ASYNC_TASK_WAL_PAGES;

    } else {
        /* readers or writers held it off: a little later, not each time */
        ngx_http_async_task_sqlite_wal_next =
                              ngx_http_async_task_sqlite_wal_pages
                              + NGX_HTTP_ASYNC_TASK_WAL_PAGES / 4;
    }
}


/*
 * In the event loop, after a batch: the log is long and its first step
 * (see WAL_PAGES) has not begun; maintain(), not idle, then runs it.
 */

static ngx_uint_t
ngx_http_async_task_sqlite_due(void)
{
    return ngx_http_async_task_sqlite_wal_pages
           >= ngx_http_async_task_sqlite_wal_next
           && ngx_http_async_task_sqlite_copy
              == NGX_HTTP_ASYNC_TASK_COPY_NONE;
}


/*
 * The timer's checkpoint, once the worker is idle: TRUNCATE, the log goes
 * back to zero bytes.  Automatic checkpoints are off: they ran inside
 * whichever commit crossed the threshold, and that submission waited for
 * them.
 */

static ngx_int_t
ngx_http_async_task_sqlite_maintain(ngx_http_async_task_store_conf_t *conf,
    ngx_uint_t idle, ngx_log_t *log)
{
    int                            rc, wal, done;
    ngx_http_async_task_sqlite_t  *sq;

    sq = ngx_http_async_task_sqlite_connection(conf, log);
    if (sq == NULL) {
        return NGX_ERROR;
    }

    if (!idle) {
        ngx_http_async_task_sqlite_copy = NGX_HTTP_ASYNC_TASK_COPY_RUNNING;
    }

    rc = sqlite3_wal_checkpoint_v2(sq->db, NULL,
                                   idle ? SQLITE_CHECKPOINT_TRUNCATE
                                        : SQLITE_CHECKPOINT_PASSIVE,
                                   &wal, &done);

    if (!idle) {
        if (rc == SQLITE_OK && done == wal) {
            ngx_http_async_task_sqlite_copy = NGX_HTTP_ASYNC_TASK_COPY_DONE;

        } else {
            /* readers held it off: the writer tries a little later */
            ngx_http_async_task_sqlite_copy = NGX_HTTP_ASYNC_TASK_COPY_NONE;
            ngx_http_async_task_sqlite_wal_next =
                              ngx_http_async_task_sqlite_wal_pages
                              + NGX_HTTP_ASYNC_TASK_WAL_PAGES / 4;
        }
    }

    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        ngx_http_async_task_sqlite_error(sq, log, "checkpoint");
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "async task store checkpoint%s: %d of %d pages",
                   idle ? " (truncate)" : "", done, wal);

    return (rc == SQLITE_OK) ? NGX_OK : NGX_BUSY;
}


static sqlite3 *
ngx_http_async_task_sqlite_open(ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log)
{
    char     *err;
    sqlite3  *db;

    if (sqlite3_open_v2((char *) conf->path.data, &db,
                        SQLITE_OPEN_READWRITE|SQLITE_OPEN_CREATE
                        |SQLITE_OPEN_NOMUTEX, NULL)
        != SQLITE_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "async_task store: cannot open \"%V\": %s",
                      &conf->path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return NULL;
    }

    if (sqlite3_busy_handler(db, ngx_http_async_task_sqlite_busy, conf)
        != SQLITE_OK)
    {
        sqlite3_close(db);
        return NULL;
    }

    /* a commit is on disk when it returns: the 202 depends on it */

    if (sqlite3_exec(db, "PRAGMA journal_mode = WAL; "
                         "PRAGMA synchronous = FULL; "
                         "PRAGMA wal_autocheckpoint = 0; "
                         "PRAGMA journal_size_limit = "
                         NGX_HTTP_ASYNC_TASK_WAL_LIMIT "; "
                         "PRAGMA cache_size = -16384",
                     NULL, NULL, &err)
        != SQLITE_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "async_task store: cannot set up \"%V\": %s",
                      &conf->path, err);
        sqlite3_free(err);
        sqlite3_close(db);
        return NULL;
    }

    return db;
}


static ngx_int_t
ngx_http_async_task_sqlite_row(sqlite3_stmt *stmt, ngx_pool_t *pool,
    ngx_http_async_task_t *task)
{
    ngx_str_t  value;

    ngx_memzero(task, sizeof(ngx_http_async_task_t));

    task->position = -1;

    if (sqlite3_column_bytes(stmt, 0) != NGX_HTTP_ASYNC_TASK_ID_LEN) {
        return NGX_ERROR;
    }

    ngx_memcpy(task->id, sqlite3_column_text(stmt, 0),
               NGX_HTTP_ASYNC_TASK_ID_LEN);

    value.data = (u_char *) sqlite3_column_text(stmt, 1);
    value.len = sqlite3_column_bytes(stmt, 1);
    task->kind = ngx_http_async_task_kind_index(&value);

    value.data = (u_char *) sqlite3_column_text(stmt, 2);
    value.len = sqlite3_column_bytes(stmt, 2);
    task->status = ngx_http_async_task_util_status_index(&value);

    if (task->kind == (ngx_uint_t) NGX_ERROR
        || task->status == (ngx_uint_t) NGX_ERROR)
    {
        return NGX_ERROR;
    }

    task->has_user = (sqlite3_column_type(stmt, 3) != SQLITE_NULL);
    task->priority = sqlite3_column_int(stmt, 4);
    task->created_at = sqlite3_column_int64(stmt, 7);
    task->started_at = sqlite3_column_int64(stmt, 8);
    task->finished_at = sqlite3_column_int64(stmt, 9);
    task->attempts = sqlite3_column_int(stmt, 10);

    if (ngx_http_async_task_sqlite_text(stmt, 3, pool, &task->user) != NGX_OK
        || ngx_http_async_task_sqlite_text(stmt, 5, pool, &task->params)
           != NGX_OK
        || ngx_http_async_task_sqlite_text(stmt, 6, pool, &task->file)
           != NGX_OK
        || ngx_http_async_task_sqlite_text(stmt, 11, pool, &task->backend)
           != NGX_OK
        || ngx_http_async_task_sqlite_text(stmt, 12, pool, &task->result)
           != NGX_OK
        || ngx_http_async_task_sqlite_text(stmt, 13, pool, &task->error)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_sqlite_text(sqlite3_stmt *stmt, int col, ngx_pool_t *pool,
    ngx_str_t *value)
{
    const u_char  *text;

    text = sqlite3_column_text(stmt, col);
    value->len = sqlite3_column_bytes(stmt, col);

    if (text == NULL || value->len == 0) {
        value->len = 0;
        value->data = NULL;
        return NGX_OK;
    }

    value->data = ngx_pnalloc(pool, value->len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, text, value->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_sqlite_step(ngx_http_async_task_sqlite_t *sq,
    sqlite3_stmt *stmt, ngx_log_t *log)
{
    int  rc;

    rc = sqlite3_step(stmt);

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);

    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        return NGX_OK;
    }

    ngx_http_async_task_sqlite_error(sq, log, sqlite3_sql(stmt));

    return NGX_ERROR;
}


static void
ngx_http_async_task_sqlite_error(ngx_http_async_task_sqlite_t *sq,
    ngx_log_t *log, const char *what)
{
    ngx_log_error(NGX_LOG_ERR, log, 0, "async_task store: \"%s\" failed: %s",
                  what, sqlite3_errmsg(sq->db));
}
