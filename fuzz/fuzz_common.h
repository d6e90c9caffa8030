
/*
 * Copyright (C) ngx_async_task_module authors
 */


/*
 * What every harness needs of nginx without starting it: the globals
 * nginx.c would set, a log that says nothing, and a pool per input.
 */

#ifndef _FUZZ_COMMON_H_INCLUDED_
#define _FUZZ_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>


/* nginx.c is not linked: what it defines that the other objects use */

ngx_module_t  ngx_core_module;


ngx_cpuset_t *
ngx_get_cpu_affinity(ngx_uint_t n)
{
    return NULL;
}


char **
ngx_set_environment(ngx_cycle_t *cycle, ngx_uint_t *last)
{
    return NULL;
}


ngx_pid_t
ngx_exec_new_binary(ngx_cycle_t *cycle, char *const *argv)
{
    return NGX_INVALID_PID;
}


static ngx_log_t        fuzz_log;
static ngx_open_file_t  fuzz_log_file;
static ngx_cycle_t      fuzz_cycle;


#define fuzz_assert(expr)                                                     \
    if (!(expr)) {                                                            \
        fprintf(stderr, "FAULT: %s:%d: %s\n", __FILE__, __LINE__, \
                #expr);                                                       \
        abort();                                                              \
    }


static void
fuzz_init(void)
{
    if (fuzz_cycle.log) {
        return;
    }

    ngx_pagesize = getpagesize();
    for (ngx_pagesize_shift = 0; (1 << ngx_pagesize_shift) < ngx_pagesize;
         ngx_pagesize_shift++)
    {
        /* void */
    }

    ngx_cacheline_size = NGX_CPU_CACHE_LINE;
    ngx_pid = getpid();

    (void) ngx_strerror_init();
    ngx_time_init();

    /* errors are expected: the log takes nothing but emergencies */

    fuzz_log_file.fd = ngx_stderr;
    fuzz_log.file = &fuzz_log_file;
    fuzz_log.log_level = NGX_LOG_STDERR;

    fuzz_cycle.log = &fuzz_log;
    ngx_cycle = &fuzz_cycle;
}


/*
 * A fresh pool, as nginx gives each request, with no room of its own:
 * every allocation is then a malloc() of its exact size, whose ends ASan
 * guards (a read past a buffer carved out of a pool block goes unseen).
 */

static ngx_pool_t *
fuzz_pool(void)
{
    ngx_pool_t  *pool;

    fuzz_init();

    pool = ngx_create_pool(sizeof(ngx_pool_t), &fuzz_log);
    fuzz_assert(pool != NULL);

    return pool;
}


/* reads every byte of a string: ASan tells if it is gone */

static ngx_inline void
fuzz_touch(ngx_str_t *s)
{
    size_t             i;
    volatile u_char    sum;

    sum = 0;

    for (i = 0; i < s->len; i++) {
        sum ^= s->data[i];
    }

    (void) sum;
}


/* an output that must be a JSON document */

static ngx_inline void
fuzz_assert_json(u_char *data, size_t len)
{
    cJSON  *json;

    json = cJSON_ParseWithLength((char *) data, len);

    if (json == NULL) {
        fprintf(stderr, "FAULT: not valid JSON: \"%.*s\"\n", (int) len,
                data);
        abort();
    }

    cJSON_Delete(json);
}


#endif /* _FUZZ_COMMON_H_INCLUDED_ */
