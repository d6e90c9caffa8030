
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_


#include <cjson/cJSON.h>

#include "ngx_http_async_task_module.h"
#include "ngx_http_async_task_client.h"


/*
 * The largest answer a run takes, headers apart: a 2048x2048 PNG in
 * base64 is a few MB to some 22 MB (RGBA, incompressible); a transcript
 * with its segments is at most a few MB.  Each kind names its own in the
 * kind table.
 */

#define NGX_HTTP_ASYNC_TASK_IMAGE_ANSWER_MAX   (24 * 1024 * 1024)
#define NGX_HTTP_ASYNC_TASK_SPEECH_ANSWER_MAX  (8 * 1024 * 1024)


/* how much of an instance's own error message a task's error quotes */
#define NGX_HTTP_ASYNC_TASK_MESSAGE_MAX  200


/* a multipart boundary: a prefix and 128 bits from the kernel, in hex */
#define NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN  (sizeof("ngx-async-task-") - 1 + 32)


/* what a run of a task came to */

typedef enum {
    ngx_http_async_task_run_done = 0,
    ngx_http_async_task_run_failed,         /* not worth a retry: 4xx */
    ngx_http_async_task_run_error,          /* may be retried */
    ngx_http_async_task_run_requeue         /* not the task's fault */
} ngx_http_async_task_run_e;


typedef struct {
    /* in: the last exchange */
    ngx_http_async_task_client_e    result;
    ngx_uint_t                      status;
    ngx_str_t                       body;
    ngx_str_t                      *files;
    ngx_str_t                       suffix;     /* of this run's own file */

    /* out */
    ngx_http_async_task_run_e       run;
    const char                     *code;       /* the error's code */
    ngx_str_t                       message;
    ngx_str_t                       output;     /* the result, JSON */
    ngx_str_t                       file;       /* a result file's name */
} ngx_http_async_task_outcome_t;


typedef struct ngx_http_async_task_run_s  ngx_http_async_task_run_t;

typedef void (*ngx_http_async_task_protocol_thread_pt)(
    ngx_http_async_task_run_t *run, ngx_log_t *log);
typedef ngx_chain_t *(*ngx_http_async_task_protocol_request_pt)(
    ngx_http_async_task_run_t *run);
typedef ngx_int_t (*ngx_http_async_task_protocol_process_pt)(
    ngx_http_async_task_run_t *run);
typedef void (*ngx_http_async_task_protocol_cancel_pt)(
    ngx_http_async_task_run_t *run);


/*
 * The seam between the dispatcher and a wire protocol.  Each kind lists
 * its protocols in the kind table (ngx_http_async_task_kind.c), the
 * first being the default; "protocol=name" on async_task_backend picks
 * one.  A run goes:
 *
 *   prepare(run, log)      in a pool thread, before the run, for kinds
 *                          with an input file, once it is open (run->fd,
 *                          run->size): e.g. a multipart boundary that
 *                          the file does not hold.  NULL: nothing.
 *   create_request(run)    in the event loop: the request of exchange
 *                          number run->step (0 first), a chain from
 *                          run->pool; NULL fails the run.  It starts
 *                          with ngx_http_async_task_protocol_head(), so
 *                          that every request carries the same headers.
 *   process(run)           in the event loop, after each exchange that
 *                          got a whole answer (run->outcome.status and
 *                          .body): NGX_AGAIN, another exchange follows,
 *                          run->delay ms later, with run->step one more
 *                          (a protocol that posts a job, then polls it,
 *                          then fetches its result, keeps what it needs
 *                          in run->data, from run->pool); NGX_OK, this
 *                          answer is the last, or the run ended here
 *                          with ngx_http_async_task_protocol_fail().
 *                          NULL: a run is one exchange.  Each exchange
 *                          has what is left of the backend's timeout
 *                          (run->deadline), and its answer a pool of its
 *                          own, freed when process() asks for another:
 *                          what process() keeps goes to run->pool; an
 *                          exchange's answer cap is run->max_response,
 *                          which create_request() may set (0: the
 *                          kind's).
 *   finalize(run, log)     in a pool thread, on the last answer (or on
 *                          an exchange that failed): the outcome.
 *                          ngx_http_async_task_protocol_answer() sets it
 *                          for anything but a whole 2xx answer (4xx:
 *                          backend_rejected, 5xx: backend_error, ...),
 *                          ..._verdict() also for one that is not JSON;
 *                          ngx_http_async_task_protocol_png() keeps an
 *                          image as the task's result file.
 *
 *   cancel(run)            in the event loop, when a run that is under
 *                          way is dropped: its task was canceled, or the
 *                          worker shuts down between its steps.  It may
 *                          tell the instance, on a pool and a client of
 *                          its own: the run is freed right after.  NULL:
 *                          nothing is sent to the instance for it.
 *
 * An exchange that fails (refused, timed out, broken, too large) ends
 * the run at any step.
 */

struct ngx_http_async_task_protocol_s {
    ngx_str_t                                 name;
    ngx_str_t                                 health_uri; /* the default */
    ngx_http_async_task_protocol_thread_pt    prepare;
    ngx_http_async_task_protocol_request_pt   create_request;
    ngx_http_async_task_protocol_process_pt   process;
    ngx_http_async_task_protocol_thread_pt    finalize;
    ngx_http_async_task_protocol_cancel_pt    cancel;
};


struct ngx_http_async_task_run_s {
    ngx_pool_t                         *pool;
    ngx_log_t                          *log;
    ngx_http_async_task_t              *task;
    ngx_http_async_task_backend_t      *backend;
    ngx_http_async_task_instance_t     *instance;

    /* the task's input file, for kinds that have one */
    ngx_fd_t                            fd;
    off_t                               size;

    /* a multipart request's boundary checked against the input, or "" */
    u_char                              boundary[
                                            NGX_HTTP_ASYNC_TASK_BOUNDARY_LEN
                                            + 1];

    ngx_uint_t                          step;
    ngx_msec_t                          delay;      /* before the next step */
    ngx_msec_t                          deadline;   /* of the whole run */
    size_t                              max_response; /* 0: the kind's */
    void                               *data;       /* the protocol's own */

    ngx_http_async_task_outcome_t       outcome;
};


/* the protocols of the kind table */

ngx_chain_t *ngx_http_async_task_protocol_openai_image(
    ngx_http_async_task_run_t *run);
ngx_chain_t *ngx_http_async_task_protocol_sdcpp_image(
    ngx_http_async_task_run_t *run);
void ngx_http_async_task_protocol_image_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log);
ngx_chain_t *ngx_http_async_task_protocol_a1111_image(
    ngx_http_async_task_run_t *run);
void ngx_http_async_task_protocol_a1111_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log);

void ngx_http_async_task_protocol_boundary(ngx_http_async_task_run_t *run,
    ngx_log_t *log);
ngx_chain_t *ngx_http_async_task_protocol_openai_speech(
    ngx_http_async_task_run_t *run);
void ngx_http_async_task_protocol_speech_done(ngx_http_async_task_run_t *run,
    ngx_log_t *log);
ngx_chain_t *ngx_http_async_task_protocol_whispercpp_speech(
    ngx_http_async_task_run_t *run);
void ngx_http_async_task_protocol_whispercpp_done(
    ngx_http_async_task_run_t *run, ngx_log_t *log);

/* what protocols share */

ngx_buf_t *ngx_http_async_task_protocol_head(ngx_http_async_task_run_t *run,
    const char *method, ngx_str_t *path, const char *type,
    ngx_str_t *boundary, off_t length, size_t extra);
ngx_chain_t *ngx_http_async_task_protocol_chain(ngx_pool_t *pool,
    ngx_buf_t *b);
ngx_int_t ngx_http_async_task_protocol_answer(ngx_http_async_task_run_t *run);
cJSON *ngx_http_async_task_protocol_verdict(ngx_http_async_task_run_t *run);
ngx_int_t ngx_http_async_task_protocol_png(ngx_http_async_task_run_t *run,
    ngx_str_t *png, ngx_log_t *log);
void ngx_http_async_task_protocol_fail(ngx_http_async_task_outcome_t *out,
    ngx_http_async_task_run_e run, const char *code, ngx_pool_t *pool,
    const char *fmt, ...);


#endif /* _NGX_HTTP_ASYNC_TASK_PROTOCOL_H_INCLUDED_ */
