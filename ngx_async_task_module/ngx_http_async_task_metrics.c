
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_async_task_metrics.h"
#include "ngx_http_async_task_kind.h"
#include "ngx_http_async_task_shm.h"
#include "ngx_http_async_task_upstream.h"
#include "ngx_http_async_task_util.h"


/*
 * async_task_metrics: the gateway's figures in Prometheus' text format
 * (0.0.4), or in OpenMetrics when the scraper asks for it.  The figures
 * are kept in the zone (shm.c, and the instances' records in upstream.c),
 * so every worker process serves the same sums, and a reload keeps them.
 * The hooks below are what the rest of the module calls to count.
 */


#define NGX_HTTP_ASYNC_TASK_TEXT_TYPE                                         \
    "text/plain; version=0.0.4; charset=utf-8"
#define NGX_HTTP_ASYNC_TASK_OPENMETRICS_TYPE                                  \
    "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* a line of the exposition without its labels, at most */
#define NGX_HTTP_ASYNC_TASK_LINE_MAX     160

/* the lines of an instance: attempts, run time histogram, three gauges */
#define NGX_HTTP_ASYNC_TASK_INSTANCE_LINES                                    \
    (NGX_HTTP_ASYNC_TASK_NOUTCOMES + NGX_HTTP_ASYNC_TASK_BUCKETS + 2 + 3)

#define NGX_HTTP_ASYNC_TASK_LABELS_MAX                                        \
    (2 * (NGX_SOCKADDR_STRLEN + 64) + 128)


typedef struct {
    uint64_t                        bound;      /* in the unit of the sum */
    ngx_str_t                       le;
} ngx_http_async_task_bucket_t;


typedef struct {
    u_char                         *pos;
    u_char                         *last;
    ngx_uint_t                      openmetrics;
} ngx_http_async_task_metrics_out_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_uint_t                      kind;
} ngx_http_async_task_submission_t;


static ngx_int_t ngx_http_async_task_metrics_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_async_task_metrics_openmetrics(
    ngx_http_request_t *r);
static void ngx_http_async_task_metrics_write(
    ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_shm_metrics_t *m,
    ngx_http_async_task_instance_sh_t *ish);
static void ngx_http_async_task_metrics_instances(
    ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_instance_sh_t *ish);
static void ngx_http_async_task_metrics_kinds(
    ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf, const char *name,
    const char *suffix, uint64_t *values);
static void ngx_http_async_task_metrics_family(
    ngx_http_async_task_metrics_out_t *out, const char *name,
    const char *type, const char *help);
static void ngx_http_async_task_metrics_sample(
    ngx_http_async_task_metrics_out_t *out, const char *name,
    const char *suffix, u_char *labels, uint64_t value);
static void ngx_http_async_task_metrics_histogram(
    ngx_http_async_task_metrics_out_t *out, const char *name,
    u_char *labels, ngx_http_async_task_histogram_t *h,
    ngx_http_async_task_bucket_t *buckets, uint64_t unit);
static u_char *ngx_http_async_task_metrics_labels(u_char *labels,
    ngx_http_async_task_instance_t *in);
static u_char *ngx_http_async_task_metrics_escape(u_char *p, u_char *value,
    size_t len);
static ngx_uint_t ngx_http_async_task_metrics_bucket(
    ngx_http_async_task_bucket_t *buckets, uint64_t value);
static ngx_http_async_task_shm_t *ngx_http_async_task_metrics_shm(void);
static void ngx_http_async_task_metrics_submitted(void *data);
static ngx_int_t ngx_http_async_task_metrics_header_filter(
    ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/* GPU work, in ms: 0.1 s to 30 min */

static ngx_http_async_task_bucket_t  ngx_http_async_task_gpu_buckets[] = {
    { 100, ngx_string("0.1") },
    { 250, ngx_string("0.25") },
    { 500, ngx_string("0.5") },
    { 1000, ngx_string("1") },
    { 2500, ngx_string("2.5") },
    { 5000, ngx_string("5") },
    { 10000, ngx_string("10") },
    { 30000, ngx_string("30") },
    { 60000, ngx_string("60") },
    { 120000, ngx_string("120") },
    { 300000, ngx_string("300") },
    { 600000, ngx_string("600") },
    { 1200000, ngx_string("1200") },
    { 1800000, ngx_string("1800") },
    { 0, ngx_null_string }
};


/* a group commit, in microseconds: 0.5 ms to 10 s */

static ngx_http_async_task_bucket_t  ngx_http_async_task_commit_buckets[] = {
    { 500, ngx_string("0.0005") },
    { 1000, ngx_string("0.001") },
    { 2500, ngx_string("0.0025") },
    { 5000, ngx_string("0.005") },
    { 10000, ngx_string("0.01") },
    { 25000, ngx_string("0.025") },
    { 50000, ngx_string("0.05") },
    { 100000, ngx_string("0.1") },
    { 250000, ngx_string("0.25") },
    { 500000, ngx_string("0.5") },
    { 1000000, ngx_string("1") },
    { 2500000, ngx_string("2.5") },
    { 5000000, ngx_string("5") },
    { 10000000, ngx_string("10") },
    { 0, ngx_null_string }
};


/* operations in a group commit, up to the batch's limit of 512 */

static ngx_http_async_task_bucket_t  ngx_http_async_task_batch_buckets[] = {
    { 1, ngx_string("1") },
    { 2, ngx_string("2") },
    { 4, ngx_string("4") },
    { 8, ngx_string("8") },
    { 16, ngx_string("16") },
    { 32, ngx_string("32") },
    { 64, ngx_string("64") },
    { 128, ngx_string("128") },
    { 256, ngx_string("256") },
    { 512, ngx_string("512") },
    { 0, ngx_null_string }
};


static ngx_str_t  ngx_http_async_task_reasons[] = {
    ngx_string("queue_full"),
    ngx_string("invalid"),
    ngx_string("unavailable")
};


/* the order of ngx_http_async_task_run_e, then a run the store refused */

static ngx_str_t  ngx_http_async_task_outcomes[] = {
    ngx_string("done"),
    ngx_string("failed"),
    ngx_string("error"),
    ngx_string("requeued"),
    ngx_string("canceled")
};


/* the codes of a FAILED task's error (API.md), after DONE and CANCELED */

static ngx_str_t  ngx_http_async_task_error_codes[] = {
    ngx_string("backend_error"),
    ngx_string("backend_rejected"),
    ngx_string("bad_response"),
    ngx_string("timeout")
};


char *
ngx_http_async_task_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_async_task_main_conf_t  *amcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_async_task_metrics_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_async_task_metrics_handler;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_async_task_module);

    if (amcf->metrics_file == NULL) {
        amcf->metrics_file = cf->conf_file->file.name.data;
        amcf->metrics_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_async_task_metrics_handler(ngx_http_request_t *r)
{
    size_t                              size;
    ngx_int_t                           rc;
    ngx_buf_t                          *b;
    ngx_uint_t                          i;
    ngx_chain_t                         out;
    ngx_http_async_task_shm_t          *shm;
    ngx_http_async_task_instance_t     *in;
    ngx_http_async_task_main_conf_t    *amcf;
    ngx_http_async_task_instance_sh_t  *ish;
    ngx_http_async_task_shm_metrics_t   m;
    ngx_http_async_task_metrics_out_t   text;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_async_task_module);
    shm = amcf->store->shm_zone->data;
    in = amcf->instances.elts;

    ngx_http_async_task_shm_metrics(shm, &m);

    ish = ngx_palloc(r->pool, (amcf->instances.nelts + 1)
                              * sizeof(ngx_http_async_task_instance_sh_t));
    if (ish == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a bound of the text: fixed families, and the lines of instances */

    size = 32768;

    for (i = 0; i < amcf->instances.nelts; i++) {
        ngx_http_async_task_upstream_snapshot(shm, &in[i], &ish[i]);

        size += NGX_HTTP_ASYNC_TASK_INSTANCE_LINES
                * (NGX_HTTP_ASYNC_TASK_LINE_MAX + 2 * in[i].name.len);
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.pos = b->last;
    text.last = b->end;
    text.openmetrics = ngx_http_async_task_metrics_openmetrics(r);

    ngx_http_async_task_metrics_write(&text, amcf, &m, ish);

    b->last = text.pos;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    if (text.openmetrics) {
        ngx_str_set(&r->headers_out.content_type,
                    NGX_HTTP_ASYNC_TASK_OPENMETRICS_TYPE);

    } else {
        ngx_str_set(&r->headers_out.content_type,
                    NGX_HTTP_ASYNC_TASK_TEXT_TYPE);
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* Prometheus asks for OpenMetrics first in its Accept header */

static ngx_uint_t
ngx_http_async_task_metrics_openmetrics(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "application/openmetrics-text",
                                sizeof("application/openmetrics-text") - 2)
               != NULL)
        {
            return 1;
        }
    }
}


static void
ngx_http_async_task_metrics_write(ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_shm_metrics_t *m,
    ngx_http_async_task_instance_sh_t *ish)
{
    ngx_uint_t                         k, i, end;
    ngx_str_t                         *kind, *error, *status;
    ngx_http_async_task_metrics_sh_t  *s;
    u_char                             labels[NGX_HTTP_ASYNC_TASK_LABELS_MAX];

    static ngx_str_t                   empty = ngx_null_string;

    s = &m->metrics;

    ngx_http_async_task_metrics_family(out, "async_task_submitted", "counter",
                                       "Tasks accepted (202), by kind.");

    ngx_http_async_task_metrics_kinds(out, amcf, "async_task_submitted",
                                      "_total", s->submitted);

    ngx_http_async_task_metrics_family(out, "async_task_rejected", "counter",
                                       "Submissions refused, by kind and "
                                       "reason.");

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        if (amcf->backends[k].upstream == NULL) {
            continue;
        }

        kind = &ngx_http_async_task_kinds[k].name;

        for (i = 0; i < NGX_HTTP_ASYNC_TASK_NREASONS; i++) {
            ngx_sprintf(labels, "kind=\"%V\",reason=\"%V\"%Z", kind,
                        &ngx_http_async_task_reasons[i]);

            ngx_http_async_task_metrics_sample(out, "async_task_rejected",
                                               "_total", labels,
                                               s->rejected[k][i]);
        }
    }

    ngx_http_async_task_metrics_family(out, "async_task_finished", "counter",
                                       "Tasks that ended, by kind, status "
                                       "and error code.");

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        if (amcf->backends[k].upstream == NULL) {
            continue;
        }

        kind = &ngx_http_async_task_kinds[k].name;

        for (end = 0; end < NGX_HTTP_ASYNC_TASK_NENDS; end++) {
            status = &ngx_http_async_task_statuses[
                         end == NGX_HTTP_ASYNC_TASK_END_DONE
                         ? NGX_HTTP_ASYNC_TASK_DONE
                         : end == NGX_HTTP_ASYNC_TASK_END_CANCELED
                           ? NGX_HTTP_ASYNC_TASK_CANCELED
                           : NGX_HTTP_ASYNC_TASK_FAILED];

            error = end >= NGX_HTTP_ASYNC_TASK_END_FAILED
                    ? &ngx_http_async_task_error_codes[
                                        end - NGX_HTTP_ASYNC_TASK_END_FAILED]
                    : &empty;

            ngx_sprintf(labels, "kind=\"%V\",status=\"%V\",error=\"%V\"%Z",
                        kind, status, error);

            ngx_http_async_task_metrics_sample(out, "async_task_finished",
                                               "_total", labels,
                                               s->finished[k][end]);
        }
    }

    ngx_http_async_task_metrics_family(out, "async_task_queue_depth", "gauge",
                                       "Tasks waiting in the queue, by "
                                       "kind.");

    ngx_http_async_task_metrics_kinds(out, amcf, "async_task_queue_depth", "",
                                      m->queued);

    ngx_http_async_task_metrics_family(out, "async_task_queue_capacity",
                                       "gauge",
                                       "Queued tasks the gateway takes "
                                       "(max_queued=), all kinds.");

    ngx_http_async_task_metrics_sample(out, "async_task_queue_capacity", "",
                                       (u_char *) "",
                                       amcf->store->max_queued);

    ngx_http_async_task_metrics_family(out, "async_task_running", "gauge",
                                       "Tasks running on instances now, by "
                                       "kind.");

    ngx_http_async_task_metrics_kinds(out, amcf, "async_task_running", "",
                                      m->running);

    ngx_http_async_task_metrics_family(out, "async_task_queue_wait_seconds",
                                       "histogram",
                                       "From a task's creation to the start "
                                       "of its first attempt, by kind.");

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        if (amcf->backends[k].upstream == NULL) {
            continue;
        }

        ngx_sprintf(labels, "kind=\"%V\"%Z",
                    &ngx_http_async_task_kinds[k].name);

        ngx_http_async_task_metrics_histogram(out,
                                              "async_task_queue_wait_seconds",
                                              labels, &s->queue_wait[k],
                                              ngx_http_async_task_gpu_buckets,
                                              1000);
    }

    ngx_http_async_task_metrics_instances(out, amcf, ish);

    ngx_http_async_task_metrics_family(out, "async_task_store_commit_seconds",
                                       "histogram",
                                       "Group commits of the store: one "
                                       "transaction and its fsync.");

    ngx_http_async_task_metrics_histogram(out,
                                          "async_task_store_commit_seconds",
                                          (u_char *) "", &s->commit,
                                          ngx_http_async_task_commit_buckets,
                                          1000000);

    ngx_http_async_task_metrics_family(out, "async_task_store_batch_size",
                                       "histogram",
                                       "Operations written by one group "
                                       "commit.");

    ngx_http_async_task_metrics_histogram(out, "async_task_store_batch_size",
                                          (u_char *) "", &s->batch,
                                          ngx_http_async_task_batch_buckets,
                                          1);

    ngx_http_async_task_metrics_family(out, "async_task_store_errors",
                                       "counter",
                                       "Store operations that failed.");

    ngx_http_async_task_metrics_sample(out, "async_task_store_errors",
                                       "_total", (u_char *) "",
                                       s->store_errors);

    if (out->openmetrics) {
        out->pos = ngx_slprintf(out->pos, out->last, "# EOF\n");
    }
}


/* the families of the GPU instances, one series per instance each */

static void
ngx_http_async_task_metrics_instances(ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf,
    ngx_http_async_task_instance_sh_t *ish)
{
    u_char                          *p;
    int64_t                          now;
    ngx_uint_t                       i, o, n;
    ngx_http_async_task_instance_t  *in;
    u_char                           labels[NGX_HTTP_ASYNC_TASK_LABELS_MAX];

    in = amcf->instances.elts;
    n = amcf->instances.nelts;
    now = ngx_http_async_task_util_cached_ms();

    ngx_http_async_task_metrics_family(out, "async_task_attempts", "counter",
                                       "Attempts of tasks on an instance, "
                                       "by outcome.");

    for (i = 0; i < n; i++) {
        for (o = 0; o < NGX_HTTP_ASYNC_TASK_NOUTCOMES; o++) {
            p = ngx_http_async_task_metrics_labels(labels, &in[i]);
            ngx_sprintf(p, ",outcome=\"%V\"%Z",
                        &ngx_http_async_task_outcomes[o]);

            ngx_http_async_task_metrics_sample(out, "async_task_attempts",
                                               "_total", labels,
                                               ish[i].attempts[o]);
        }
    }

    ngx_http_async_task_metrics_family(out, "async_task_run_seconds",
                                       "histogram",
                                       "One attempt of a task on an "
                                       "instance, from its start to its "
                                       "outcome.");

    for (i = 0; i < n; i++) {
        *ngx_http_async_task_metrics_labels(labels, &in[i]) = '\0';

        ngx_http_async_task_metrics_histogram(out, "async_task_run_seconds",
                                              labels, &ish[i].run,
                                              ngx_http_async_task_gpu_buckets,
                                              1000);
    }

    ngx_http_async_task_metrics_family(out, "async_task_instance_up", "gauge",
                                       "1 when the instance takes tasks: "
                                       "not down, healthy, not resting "
                                       "after max_fails.");

    for (i = 0; i < n; i++) {
        *ngx_http_async_task_metrics_labels(labels, &in[i]) = '\0';

        ngx_http_async_task_metrics_sample(out, "async_task_instance_up", "",
                                           labels,
                                           !in[i].down && ish[i].healthy
                                           && ish[i].down_until <= now);
    }

    ngx_http_async_task_metrics_family(out, "async_task_instance_inflight",
                                       "gauge",
                                       "Tasks running on the instance now, "
                                       "over all worker processes.");

    for (i = 0; i < n; i++) {
        *ngx_http_async_task_metrics_labels(labels, &in[i]) = '\0';

        ngx_http_async_task_metrics_sample(out, "async_task_instance_inflight",
                                           "", labels, ish[i].inflight);
    }

    ngx_http_async_task_metrics_family(out, "async_task_instance_max_conns",
                                       "gauge",
                                       "Tasks the instance takes at once "
                                       "(max_conns=).");

    for (i = 0; i < n; i++) {
        *ngx_http_async_task_metrics_labels(labels, &in[i]) = '\0';

        ngx_http_async_task_metrics_sample(out,
                                           "async_task_instance_max_conns", "",
                                           labels, in[i].max_conns);
    }
}


/* a series for each kind that has a backend */

static void
ngx_http_async_task_metrics_kinds(ngx_http_async_task_metrics_out_t *out,
    ngx_http_async_task_main_conf_t *amcf, const char *name,
    const char *suffix, uint64_t *values)
{
    ngx_uint_t  k;
    u_char      labels[sizeof("kind=\"\"") + 16];

    for (k = 0; k < NGX_HTTP_ASYNC_TASK_NKINDS; k++) {
        if (amcf->backends[k].upstream == NULL) {
            continue;
        }

        ngx_sprintf(labels, "kind=\"%V\"%Z",
                    &ngx_http_async_task_kinds[k].name);

        ngx_http_async_task_metrics_sample(out, name, suffix, labels,
                                           values[k]);
    }
}


/*
 * "# HELP" and "# TYPE": in 0.0.4 a counter's family is named with its
 * "_total", in OpenMetrics without it.
 */

static void
ngx_http_async_task_metrics_family(ngx_http_async_task_metrics_out_t *out,
    const char *name, const char *type, const char *help)
{
    const char  *suffix;

    suffix = (!out->openmetrics && ngx_strcmp(type, "counter") == 0)
             ? "_total" : "";

    out->pos = ngx_slprintf(out->pos, out->last,
                            "# HELP %s%s %s\n# TYPE %s%s %s\n",
                            name, suffix, help, name, suffix, type);
}


static void
ngx_http_async_task_metrics_sample(ngx_http_async_task_metrics_out_t *out,
    const char *name, const char *suffix, u_char *labels, uint64_t value)
{
    if (*labels == '\0') {
        out->pos = ngx_slprintf(out->pos, out->last, "%s%s %uL\n",
                                name, suffix, value);
        return;
    }

    out->pos = ngx_slprintf(out->pos, out->last, "%s%s{%s} %uL\n",
                            name, suffix, labels, value);
}


/*
 * The buckets are cumulative in the exposition; the sum is written in
 * the base unit (seconds) from the unit it is kept in: "unit" of those
 * make one.
 */

static void
ngx_http_async_task_metrics_histogram(ngx_http_async_task_metrics_out_t *out,
    const char *name, u_char *labels, ngx_http_async_task_histogram_t *h,
    ngx_http_async_task_bucket_t *buckets, uint64_t unit)
{
    uint64_t     total;
    ngx_uint_t   i;
    const char  *comma;

    comma = (*labels == '\0') ? "" : ",";
    total = 0;

    for (i = 0; buckets[i].le.len; i++) {
        total += h->bucket[i];

        out->pos = ngx_slprintf(out->pos, out->last,
                                "%s_bucket{%s%sle=\"%V\"} %uL\n",
                                name, labels, comma, &buckets[i].le, total);
    }

    total += h->bucket[i];

    out->pos = ngx_slprintf(out->pos, out->last,
                            "%s_bucket{%s%sle=\"+Inf\"} %uL\n",
                            name, labels, comma, total);

    if (*labels == '\0') {
        out->pos = ngx_slprintf(out->pos, out->last, "%s_sum ", name);

    } else {
        out->pos = ngx_slprintf(out->pos, out->last, "%s_sum{%s} ",
                                name, labels);
    }

    if (unit == 1000) {
        out->pos = ngx_slprintf(out->pos, out->last, "%uL.%03uL\n",
                                h->sum / unit, h->sum % unit);

    } else if (unit == 1000000) {
        out->pos = ngx_slprintf(out->pos, out->last, "%uL.%06uL\n",
                                h->sum / unit, h->sum % unit);

    } else {
        out->pos = ngx_slprintf(out->pos, out->last, "%uL\n", h->sum);
    }

    ngx_http_async_task_metrics_sample(out, name, "_count", labels, total);
}


/*
 * kind="...",upstream="...",server="...": names from the configuration,
 * escaped as the format wants; "labels" has NGX_HTTP_ASYNC_TASK_LABELS_MAX
 * bytes, room for the longest name escaped and an outcome after it.
 */

static u_char *
ngx_http_async_task_metrics_labels(u_char *labels,
    ngx_http_async_task_instance_t *in)
{
    u_char  *p;

    p = ngx_sprintf(labels, "kind=\"%V\",upstream=\"",
                    &ngx_http_async_task_kinds[in->kind].name);
    p = ngx_http_async_task_metrics_escape(p, in->name.data,
                                      in->name.len - in->server.len - 1);
    p = ngx_cpymem(p, "\",server=\"", sizeof("\",server=\"") - 1);
    p = ngx_http_async_task_metrics_escape(p, in->server.data,
                                           in->server.len);
    *p++ = '"';

    return p;
}


static u_char *
ngx_http_async_task_metrics_escape(u_char *p, u_char *value, size_t len)
{
    while (len--) {

        switch (*value) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = *value;
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = *value;
        }

        value++;
    }

    return p;
}


static ngx_uint_t
ngx_http_async_task_metrics_bucket(ngx_http_async_task_bucket_t *buckets,
    uint64_t value)
{
    ngx_uint_t  i;

    for (i = 0; buckets[i].le.len; i++) {
        if (value <= buckets[i].bound) {
            break;
        }
    }

    return i;
}


/* the zone of the running cycle, for the hooks without a request */

static ngx_http_async_task_shm_t *
ngx_http_async_task_metrics_shm(void)
{
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_async_task_module);

    if (amcf == NULL || amcf->store == NULL) {
        return NULL;
    }

    return amcf->store->shm_zone->data;
}


/*
 * A submission is counted by the status it is answered with, as its
 * header goes out, so that a client that saw its 202 also sees it
 * counted; the pool cleanup only carries the kind there.  A client that
 * went away before an answer is not counted.
 */

void
ngx_http_async_task_metrics_submission(ngx_http_request_t *r,
    ngx_uint_t kind)
{
    ngx_pool_cleanup_t                *cln;
    ngx_http_async_task_submission_t  *s;

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_async_task_submission_t));
    if (cln == NULL) {
        return;
    }

    s = cln->data;
    s->request = r;
    s->kind = kind;

    cln->handler = ngx_http_async_task_metrics_submitted;
}


ngx_int_t
ngx_http_async_task_metrics_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_async_task_metrics_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_async_task_metrics_header_filter(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_async_task_metrics_submitted) {
            ngx_http_async_task_metrics_submitted(cln->data);
            cln->handler = NULL;
            break;
        }
    }

    return ngx_http_next_header_filter(r);
}


static void
ngx_http_async_task_metrics_submitted(void *data)
{
    ngx_http_async_task_submission_t *s = data;

    uint64_t                         *counter;
    ngx_uint_t                        status;
    ngx_http_async_task_shm_t        *shm;
    ngx_http_async_task_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(s->request,
                                         ngx_http_async_task_module);
    shm = amcf->store->shm_zone->data;
    status = s->request->headers_out.status;

    if (status == NGX_HTTP_ACCEPTED) {
        counter = &shm->sh->metrics.submitted[s->kind];

    } else if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        counter = &shm->sh->metrics.rejected[s->kind]
                                            [NGX_HTTP_ASYNC_TASK_QUEUE_FULL];

    } else if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        counter = &shm->sh->metrics.rejected[s->kind]
                                            [NGX_HTTP_ASYNC_TASK_UNAVAILABLE];

    } else if (status >= NGX_HTTP_BAD_REQUEST
               && status < NGX_HTTP_CLIENT_CLOSED_REQUEST
               && status != NGX_HTTP_REQUEST_TIME_OUT
               && status != NGX_HTTP_CLOSE)
    {
        counter = &shm->sh->metrics.rejected[s->kind]
                                            [NGX_HTTP_ASYNC_TASK_INVALID];

    } else {
        return;
    }

    ngx_http_async_task_shm_metric_add(shm, counter, 1);
}


/* a task's first attempt starts: how long it waited */

void
ngx_http_async_task_metrics_started(ngx_http_async_task_t *task)
{
    uint64_t                    ms;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_metrics_shm();

    if (shm == NULL || task->attempts || task->created_at == 0) {
        return;
    }

    ms = (task->started_at > task->created_at)
         ? (uint64_t) (task->started_at - task->created_at) : 0;

    ngx_http_async_task_shm_metric_observe(shm,
                             &shm->sh->metrics.queue_wait[task->kind],
                             ngx_http_async_task_metrics_bucket(
                                         ngx_http_async_task_gpu_buckets, ms),
                             ms);
}


/*
 * A run's outcome is applied: an attempt on an instance (if it got one),
 * and the end of the task when the store took a final status.
 */

void
ngx_http_async_task_metrics_run(ngx_http_async_task_instance_t *in,
    ngx_http_async_task_t *task, ngx_http_async_task_outcome_t *out,
    ngx_int_t rc)
{
    int64_t                     now;
    uint64_t                    ms;
    ngx_uint_t                  outcome;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_metrics_shm();

    if (shm == NULL) {
        return;
    }

    if (in) {
        outcome = (rc == NGX_DECLINED) ? NGX_HTTP_ASYNC_TASK_NOUTCOMES - 1
                                       : (ngx_uint_t) out->run;

        now = ngx_http_async_task_util_now_ms();
        ms = (task->started_at && now > task->started_at)
             ? (uint64_t) (now - task->started_at) : 0;

        ngx_http_async_task_upstream_observe(shm, in, outcome,
                             ngx_http_async_task_metrics_bucket(
                                         ngx_http_async_task_gpu_buckets, ms),
                             ms);
    }

    if (rc == NGX_OK
        && (task->status == NGX_HTTP_ASYNC_TASK_DONE
            || task->status == NGX_HTTP_ASYNC_TASK_FAILED))
    {
        ngx_http_async_task_metrics_finished(task, out->code);
    }
}


/* a task ended: DONE, CANCELED, or FAILED with its error's code */

void
ngx_http_async_task_metrics_finished(ngx_http_async_task_t *task,
    const char *code)
{
    size_t                      len;
    ngx_uint_t                  end, i;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_metrics_shm();

    if (shm == NULL || task->kind >= NGX_HTTP_ASYNC_TASK_NKINDS) {
        return;
    }

    switch (task->status) {

    case NGX_HTTP_ASYNC_TASK_DONE:
        end = NGX_HTTP_ASYNC_TASK_END_DONE;
        break;

    case NGX_HTTP_ASYNC_TASK_CANCELED:
        end = NGX_HTTP_ASYNC_TASK_END_CANCELED;
        break;

    case NGX_HTTP_ASYNC_TASK_FAILED:

        /* a code the list does not know counts as backend_error */

        end = NGX_HTTP_ASYNC_TASK_END_FAILED;
        len = code ? ngx_strlen(code) : 0;

        for (i = 0; i < NGX_HTTP_ASYNC_TASK_NENDS
                        - NGX_HTTP_ASYNC_TASK_END_FAILED; i++)
        {
            if (len == ngx_http_async_task_error_codes[i].len
                && ngx_strncmp(code, ngx_http_async_task_error_codes[i].data,
                               len) == 0)
            {
                end = NGX_HTTP_ASYNC_TASK_END_FAILED + i;
                break;
            }
        }

        break;

    default:
        return;
    }

    ngx_http_async_task_shm_metric_add(shm,
                                &shm->sh->metrics.finished[task->kind][end],
                                1);
}


/* a group commit came back: its size, its time (-1: not run), failures */

void
ngx_http_async_task_metrics_batch(ngx_http_async_task_op_t **ops,
    ngx_uint_t n, int64_t usec)
{
    ngx_uint_t                  i, failed;
    ngx_http_async_task_shm_t  *shm;

    shm = ngx_http_async_task_metrics_shm();

    if (shm == NULL || n == 0) {
        return;
    }

    failed = 0;

    for (i = 0; i < n; i++) {
        if (ops[i]->rc == NGX_ERROR) {
            failed++;
        }
    }

    ngx_http_async_task_shm_metric_observe(shm, &shm->sh->metrics.batch,
                             ngx_http_async_task_metrics_bucket(
                                         ngx_http_async_task_batch_buckets, n),
                             n);

    if (usec >= 0) {
        ngx_http_async_task_shm_metric_observe(shm, &shm->sh->metrics.commit,
                             ngx_http_async_task_metrics_bucket(
                                         ngx_http_async_task_commit_buckets,
                                         (uint64_t) usec),
                             (uint64_t) usec);
    }

    if (failed) {
        ngx_http_async_task_shm_metric_add(shm,
                                           &shm->sh->metrics.store_errors,
                                           failed);
    }
}


/* an operation outside the group commit (a read, a cancel) came back */

void
ngx_http_async_task_metrics_op(ngx_http_async_task_op_t *op)
{
    ngx_http_async_task_shm_t  *shm;

    if (op->rc != NGX_ERROR) {
        return;
    }

    shm = ngx_http_async_task_metrics_shm();

    if (shm) {
        ngx_http_async_task_shm_metric_add(shm,
                                           &shm->sh->metrics.store_errors, 1);
    }
}


/* microseconds of a monotonic clock, in a pool thread too */

int64_t
ngx_http_async_task_metrics_clock(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
        return 0;
    }

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
