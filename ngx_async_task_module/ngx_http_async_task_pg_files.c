
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>

#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_util.h"
#include "ngx_http_async_task_upload.h"
#include "ngx_http_async_task_pg_files.h"


/*
 * Nodes of a PostgreSQL store need not share a directory: a task's input
 * ("<id>.in") and its result file ("<id>.png") also go into the table
 * "files", in pieces of NGX_HTTP_ASYNC_TASK_PG_CHUNK bytes, each written
 * in the transaction that makes the file part of the task (the task's
 * INSERT, the outcome's UPDATE), so that a 202 or a DONE never names a
 * file that another node cannot get.  files= is then each node's own
 * copy: a node that lacks a file fetches it piece by piece, into a
 * temporary file renamed when whole, before a run sends it or a client
 * gets it.  A file is never held whole in memory, here or in libpq.
 */


/* a file of files= that the sweep asks about: "<id>.<suffix>" */

typedef struct {
    size_t                          len;
    u_char                          data[NGX_HTTP_ASYNC_TASK_ID_LEN + 8];
} ngx_http_async_task_pg_files_name_t;


static ngx_int_t ngx_http_async_task_pg_files_put(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *name,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_files_copy(
    ngx_http_async_task_pg_t *pg, ngx_fd_t fd, u_char *temp, u_char *id,
    ngx_str_t *name, ngx_log_t *log);
static void ngx_http_async_task_pg_files_forget(
    ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_files_name_t *names, ngx_uint_t n, ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_files_path(
    ngx_http_async_task_store_conf_t *conf, ngx_str_t *name, u_char *path,
    ngx_log_t *log);
static ngx_int_t ngx_http_async_task_pg_files_name(u_char *id,
    ngx_str_t *name);


ngx_uint_t
ngx_http_async_task_pg_files_on(ngx_http_async_task_store_conf_t *conf)
{
    return conf->driver == &ngx_http_async_task_pg_driver
           && !conf->files_shared;
}


ngx_int_t
ngx_http_async_task_pg_files_insert(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t **ops,
    ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t              i;
    ngx_http_async_task_t  *task;

    if (!ngx_http_async_task_pg_files_on(conf)) {
        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        task = &ops[i]->task;

        if (ops[i]->type != ngx_http_async_task_op_insert
            || task->file.len == 0)
        {
            continue;
        }

        if (ngx_http_async_task_pg_files_put(pg, conf, task->id, &task->file,
                                             log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* an outcome that the store took, once its file has the result's name */

ngx_int_t
ngx_http_async_task_pg_files_result(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, ngx_http_async_task_op_t *op,
    ngx_log_t *log)
{
    ngx_str_t                         id;
    ngx_http_async_task_pg_params_t   p;

    if (!ngx_http_async_task_pg_files_on(conf) || op->task.file.len == 0) {
        return NGX_OK;
    }

    /*
     * A result is stored once, under the run's lease, so there should be
     * no pieces yet; if there are, they must not fail the batch (the key)
     */

    id.data = op->task.id;
    id.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &id);
    ngx_http_async_task_pg_str(&p, &op->task.file);

    if (ngx_http_async_task_pg_command(pg,
            "DELETE FROM files WHERE task = $1 AND name = $2", &p, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_async_task_pg_files_put(pg, conf, op->task.id,
                                            &op->task.file, log);
}


/* a file of files= into the table, piece by piece */

static ngx_int_t
ngx_http_async_task_pg_files_put(ngx_http_async_task_pg_t *pg,
    ngx_http_async_task_store_conf_t *conf, u_char *id, ngx_str_t *name,
    ngx_log_t *log)
{
    u_char                           *buf;
    size_t                            size;
    ssize_t                           n;
    ngx_fd_t                          fd;
    ngx_int_t                         rc;
    ngx_str_t                         task;
    ngx_uint_t                        seq;
    ngx_http_async_task_pg_params_t   p;
    u_char                            path[NGX_MAX_PATH];

    if (ngx_http_async_task_pg_files_path(conf, name, path, log) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path);
        return NGX_ERROR;
    }

    buf = ngx_alloc(NGX_HTTP_ASYNC_TASK_PG_CHUNK, log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    task.data = id;
    task.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    rc = NGX_OK;

    /* an empty file is one empty piece: the file is there */

    for (seq = 0; /* void */ ; seq++) {

        for (size = 0; size < NGX_HTTP_ASYNC_TASK_PG_CHUNK; size += n) {
            n = ngx_read_fd(fd, buf + size,
                            NGX_HTTP_ASYNC_TASK_PG_CHUNK - size);

            if (n == -1) {
                ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                              ngx_read_fd_n " \"%s\" failed", path);
                rc = NGX_ERROR;
                goto done;
            }

            if (n == 0) {
                break;
            }
        }

        if (size == 0 && seq > 0) {
            break;
        }

        p.n = 0;
        ngx_http_async_task_pg_str(&p, &task);
        ngx_http_async_task_pg_str(&p, name);
        ngx_http_async_task_pg_int(&p, (int64_t) seq);

        p.values[3] = (char *) buf;
        p.lengths[3] = (int) size;
        p.formats[3] = 1;
        p.n = 4;

        if (ngx_http_async_task_pg_command(pg,
                "INSERT INTO files (task, name, seq, data) "
                "VALUES ($1, $2, $3::integer, $4::bytea)", &p, log)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            goto done;
        }

        if (size < NGX_HTTP_ASYNC_TASK_PG_CHUNK) {
            break;
        }
    }

done:

    ngx_free(buf);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", path);
    }

    return rc;
}


/*
 * NGX_OK: the file is in files= (it was, or it is now); NGX_DECLINED: the
 * store has no such file; NGX_ERROR: it cannot be got now.  Two threads
 * (or nodes' runs) that fetch the same file each write their own
 * temporary file: the last rename wins, with the same bytes.
 */

ngx_int_t
ngx_http_async_task_pg_files_fetch(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_str_t *name, ngx_log_t *log)
{
    int64_t                           chunks, size;
    ngx_fd_t                          fd;
    ngx_err_t                         err;
    ngx_int_t                         rc;
    ngx_str_t                         task;
    PGresult                         *res;
    ngx_file_info_t                   fi;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;
    u_char                            path[NGX_MAX_PATH];
    u_char                            temp[NGX_MAX_PATH];

    if (!ngx_http_async_task_pg_files_on(conf) || name->len == 0) {
        return NGX_OK;
    }

    if (ngx_http_async_task_pg_files_name(id, name) != NGX_OK
        || ngx_http_async_task_pg_files_path(conf, name, path, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_file_info(path, &fi) != NGX_FILE_ERROR) {
        return NGX_OK;
    }

    err = ngx_errno;

    if (err != NGX_ENOENT) {
        ngx_log_error(NGX_LOG_CRIT, log, err,
                      ngx_file_info_n " \"%s\" failed", path);
        return NGX_ERROR;
    }

    if (conf->files.len + name->len + sizeof("/.-.part") + 2 * NGX_INT64_LEN
        > NGX_MAX_PATH)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(temp, "%s.%P-" NGX_TID_T_FMT ".part%Z", path, ngx_pid,
                ngx_thread_tid());

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    /* one snapshot: a file that retention takes meanwhile is not cut */

    if (ngx_http_async_task_pg_command(pg,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    task.data = id;
    task.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &task);
    ngx_http_async_task_pg_str(&p, name);

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT count(*), coalesce(sum(octet_length(data)), 0) "
              "FROM files WHERE task = $1 AND name = $2", &p, log);

    if (res == NULL) {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    chunks = ngx_http_async_task_pg_int64(res, 0, 0);
    size = ngx_http_async_task_pg_int64(res, 0, 1);

    PQclear(res);

    if (chunks == 0) {
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_DECLINED;
    }

    fd = ngx_open_file(temp, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN
                                              | NGX_FILE_TRUNCATE,
                       NGX_HTTP_ASYNC_TASK_FILE_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", temp);
        ngx_http_async_task_pg_rollback(pg, log);
        return NGX_ERROR;
    }

    rc = ngx_http_async_task_pg_files_copy(pg, fd, temp, id, name, log);

    if (rc == NGX_OK && fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "fsync() \"%s\" failed", temp);
        rc = NGX_ERROR;
    }

    if (rc == NGX_OK && lseek(fd, 0, SEEK_END) != size) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "async_task store: file \"%V\" of task %*s is not "
                      "whole in the store", name, NGX_HTTP_ASYNC_TASK_ID_LEN,
                      id);
        rc = NGX_ERROR;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", temp);
    }

    ngx_http_async_task_pg_rollback(pg, log);

    if (rc == NGX_OK && ngx_rename_file(temp, path) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      temp, path);
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK && ngx_delete_file(temp) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", temp);
    }

    return rc;
}


/*
 * The pieces in order, one statement each, their bytes in binary form:
 * libpq holds one piece at a time.
 */

static ngx_int_t
ngx_http_async_task_pg_files_copy(ngx_http_async_task_pg_t *pg, ngx_fd_t fd,
    u_char *temp, u_char *id, ngx_str_t *name, ngx_log_t *log)
{
    int                               len;
    char                             *data;
    ssize_t                           n;
    ngx_str_t                         task;
    PGresult                         *res;
    ngx_uint_t                        seq;
    ngx_http_async_task_pg_params_t   p;

    task.data = id;
    task.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    for (seq = 0; /* void */ ; seq++) {
        p.n = 0;
        ngx_http_async_task_pg_str(&p, &task);
        ngx_http_async_task_pg_str(&p, name);
        ngx_http_async_task_pg_int(&p, (int64_t) seq);

        res = PQexecParams(pg->conn,
                           "SELECT data FROM files "
                           "WHERE task = $1 AND name = $2 "
                           "AND seq = $3::integer",
                           p.n, NULL, p.values, p.lengths, p.formats, 1);

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "async_task store: cannot read file \"%V\": %s",
                          name, PQerrorMessage(pg->conn));
            PQclear(res);
            return NGX_ERROR;
        }

        if (PQntuples(res) == 0) {
            PQclear(res);
            return NGX_OK;
        }

        data = PQgetvalue(res, 0, 0);
        len = PQgetlength(res, 0, 0);

        while (len) {
            n = ngx_write_fd(fd, data, len);

            if (n == -1) {
                ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                              ngx_write_fd_n " \"%s\" failed", temp);
                PQclear(res);
                return NGX_ERROR;
            }

            data += n;
            len -= n;
        }

        PQclear(res);
    }
}


/* the file goes when its task will not run: canceled */

void
ngx_http_async_task_pg_files_remove(ngx_http_async_task_store_conf_t *conf,
    u_char *id, ngx_log_t *log)
{
    ngx_str_t                         task;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   p;

    if (!ngx_http_async_task_pg_files_on(conf)) {
        return;
    }

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return;
    }

    task.data = id;
    task.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

    p.n = 0;
    ngx_http_async_task_pg_str(&p, &task);

    /* what is left if this fails goes with the row, at retention */

    (void) ngx_http_async_task_pg_command(pg,
                               "DELETE FROM files WHERE task = $1", &p, log);
}


/*
 * The copies of a node's files= outlive their tasks on every node but
 * the one that removed them (retention, a cancel): once in a while, one
 * worker of each node asks the store which of the tasks its older files
 * belong to are gone (or canceled) and removes those files, and the
 * temporary files of fetches that a crash cut short.  Younger files are
 * left alone: an upload is there before its task's COMMIT, a result
 * before its outcome's.
 */

void
ngx_http_async_task_pg_files_sweep(ngx_http_async_task_store_conf_t *conf,
    ngx_log_t *log)
{
    u_char                               *name;
    size_t                                len;
    time_t                                old;
    ngx_dir_t                             dir;
    ngx_str_t                             text;
    ngx_uint_t                            n;
    u_char                                path[NGX_MAX_PATH];
    u_char                                id[NGX_HTTP_ASYNC_TASK_ID_LEN];
    ngx_http_async_task_pg_files_name_t   names[
                                          NGX_HTTP_ASYNC_TASK_PG_FILES_BATCH];

    if (!ngx_http_async_task_pg_files_on(conf) || ngx_worker != 0) {
        return;
    }

    if (ngx_open_dir(&conf->files, &dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_dir_n " \"%V\" failed", &conf->files);
        return;
    }

    old = time(NULL) - NGX_HTTP_ASYNC_TASK_PG_FILES_AGE;
    n = 0;

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            if (ngx_errno != NGX_ENOMOREFILES) {
                ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                              ngx_read_dir_n " \"%V\" failed", &conf->files);
            }

            break;
        }

        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        text.data = name;
        text.len = NGX_HTTP_ASYNC_TASK_ID_LEN;

        /* only the names the module gives: "<id>.<suffix>" */

        if (len <= NGX_HTTP_ASYNC_TASK_ID_LEN + 1
            || name[NGX_HTTP_ASYNC_TASK_ID_LEN] != '.'
            || ngx_http_async_task_util_parse_id(&text, id) != NGX_OK
            || ngx_memcmp(id, name, NGX_HTTP_ASYNC_TASK_ID_LEN) != 0
            || conf->files.len + 1 + len >= NGX_MAX_PATH)
        {
            continue;
        }

        ngx_sprintf(path, "%V/%*s%Z", &conf->files, len, name);

        if (ngx_de_info(path, &dir) == NGX_FILE_ERROR
            || !ngx_de_is_file(&dir)
            || ngx_de_mtime(&dir) > old)
        {
            continue;
        }

        if (len > sizeof(".part") - 1
            && ngx_strncmp(name + len - (sizeof(".part") - 1), ".part",
                           sizeof(".part") - 1) == 0)
        {
            (void) ngx_delete_file(path);
            continue;
        }

        /* a run's own result file (".tmp") is the dispatcher's */

        if (len > NGX_HTTP_ASYNC_TASK_ID_LEN + 8) {
            continue;
        }

        ngx_memcpy(names[n].data, name, len);
        names[n].len = len;
        n++;

        if (n == NGX_HTTP_ASYNC_TASK_PG_FILES_BATCH) {
            ngx_http_async_task_pg_files_forget(conf, names, n, log);
            n = 0;
        }
    }

    if (n) {
        ngx_http_async_task_pg_files_forget(conf, names, n, log);
    }

    if (ngx_close_dir(&dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_dir_n " \"%V\" failed", &conf->files);
    }
}


/* the files among "names" whose tasks are gone or canceled */

static void
ngx_http_async_task_pg_files_forget(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_pg_files_name_t *names, ngx_uint_t n, ngx_log_t *log)
{
    int                               i, rows;
    u_char                           *p, *arg;
    ngx_str_t                         file;
    ngx_uint_t                        k;
    PGresult                         *res;
    ngx_http_async_task_pg_t         *pg;
    ngx_http_async_task_pg_params_t   params;
    u_char                            live[NGX_HTTP_ASYNC_TASK_PG_FILES_BATCH];

    pg = ngx_http_async_task_pg_connection(conf, log);
    if (pg == NULL) {
        return;
    }

    /* the ids, checked to be UUIDs, as an array's text form */

    arg = ngx_alloc(3 + n * (NGX_HTTP_ASYNC_TASK_ID_LEN + 1), log);
    if (arg == NULL) {
        return;
    }

    p = arg;
    *p++ = '{';

    for (k = 0; k < n; k++) {
        p = ngx_cpymem(p, names[k].data, NGX_HTTP_ASYNC_TASK_ID_LEN);
        *p++ = ',';
    }

    p[-1] = '}';
    *p = '\0';

    params.n = 1;
    params.values[0] = (char *) arg;
    params.lengths[0] = 0;
    params.formats[0] = 0;

    res = ngx_http_async_task_pg_exec(pg,
              "SELECT id FROM tasks WHERE id = ANY($1::text[]) "
              "AND status <> 'CANCELED'", &params, log);

    ngx_free(arg);

    if (res == NULL) {
        return;
    }

    ngx_memzero(live, sizeof(live));
    rows = PQntuples(res);

    for (i = 0; i < rows; i++) {
        for (k = 0; k < n; k++) {
            if (PQgetlength(res, i, 0) == NGX_HTTP_ASYNC_TASK_ID_LEN
                && ngx_memcmp(PQgetvalue(res, i, 0), names[k].data,
                              NGX_HTTP_ASYNC_TASK_ID_LEN)
                   == 0)
            {
                live[k] = 1;
            }
        }
    }

    PQclear(res);

    for (k = 0; k < n; k++) {
        if (live[k]) {
            continue;
        }

        file.data = names[k].data;
        file.len = names[k].len;

        ngx_log_debug1(NGX_LOG_DEBUG_CORE, log, 0,
                       "async_task store: \"%V\" of a task gone", &file);

        ngx_http_async_task_upload_remove(conf, &file, log);
    }
}


/*
 * For GET /tasks/{id}/result: the result file of a DONE task that its
 * requester may read, made on another node.
 */

ngx_int_t
ngx_http_async_task_pg_files_get(ngx_http_async_task_store_conf_t *conf,
    ngx_http_async_task_op_t *op, ngx_log_t *log)
{
    ngx_http_async_task_t  *task;

    task = &op->task;

    if (op->rc != NGX_OK
        || task->status != NGX_HTTP_ASYNC_TASK_DONE
        || task->file.len == 0
        || ngx_http_async_task_kind(task->kind)->result_type.len == 0
        || !ngx_http_async_task_util_owner(op->filter.user, task->has_user,
                                           task->user.data, task->user.len))
    {
        return NGX_OK;
    }

    /* one the store does not have: the request answers it is gone */

    if (ngx_http_async_task_pg_files_fetch(conf, task->id, &task->file, log)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_pg_files_path(ngx_http_async_task_store_conf_t *conf,
    ngx_str_t *name, u_char *path, ngx_log_t *log)
{
    if (conf->files.len + 1 + name->len >= NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_CRIT, log, 0,
                      "too long file name \"%V/%V\"", &conf->files, name);
        return NGX_ERROR;
    }

    ngx_sprintf(path, "%V/%V%Z", &conf->files, name);

    return NGX_OK;
}


/* the driver checks the names it reads; a fetch checks again, cheaply */

static ngx_int_t
ngx_http_async_task_pg_files_name(u_char *id, ngx_str_t *name)
{
    if (name->len <= NGX_HTTP_ASYNC_TASK_ID_LEN + 1
        || name->len > NGX_HTTP_ASYNC_TASK_ID_LEN + 8
        || ngx_memcmp(name->data, id, NGX_HTTP_ASYNC_TASK_ID_LEN) != 0
        || name->data[NGX_HTTP_ASYNC_TASK_ID_LEN] != '.'
        || ngx_strlchr(name->data, name->data + name->len, '/') != NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
