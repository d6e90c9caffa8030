
/*
 * Copyright (C) ngx_async_task_module authors
 */


#ifndef _NGX_HTTP_ASYNC_TASK_TREAP_H_INCLUDED_
#define _NGX_HTTP_ASYNC_TASK_TREAP_H_INCLUDED_


#include "ngx_http_async_task_shm.h"


void ngx_http_async_task_treap_insert(ngx_http_async_task_node_t **root,
    ngx_http_async_task_node_t *node);
void ngx_http_async_task_treap_delete(ngx_http_async_task_node_t **root,
    ngx_http_async_task_node_t *node);
ngx_uint_t ngx_http_async_task_treap_rank(ngx_http_async_task_node_t *root,
    ngx_http_async_task_node_t *node);
ngx_uint_t ngx_http_async_task_treap_size(ngx_http_async_task_node_t *root);


#endif /* _NGX_HTTP_ASYNC_TASK_TREAP_H_INCLUDED_ */
