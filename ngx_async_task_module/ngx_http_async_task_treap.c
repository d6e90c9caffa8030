
/*
 * Copyright (C) ngx_async_task_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_async_task_treap.h"


/*
 * The queue of a kind: an order-statistic treap of the zone's task nodes,
 * keyed by the queue order, with subtree sizes for a task's position.
 * The caller holds the zone's lock and sets the node's weight (random).
 */


static ngx_int_t ngx_http_async_task_treap_before(
    ngx_http_async_task_node_t *a, ngx_http_async_task_node_t *b);
static ngx_http_async_task_node_t *ngx_http_async_task_treap_insert_node(
    ngx_http_async_task_node_t *root, ngx_http_async_task_node_t *node);
static ngx_http_async_task_node_t *ngx_http_async_task_treap_delete_node(
    ngx_http_async_task_node_t *root, ngx_http_async_task_node_t *node);
static ngx_http_async_task_node_t *ngx_http_async_task_treap_merge(
    ngx_http_async_task_node_t *a, ngx_http_async_task_node_t *b);


#define ngx_http_async_task_treap_count(n)  ((n) ? (n)->size : 0)

#define ngx_http_async_task_treap_update(n)                                   \
    (n)->size = 1 + ngx_http_async_task_treap_count((n)->left)                \
                  + ngx_http_async_task_treap_count((n)->right)


void
ngx_http_async_task_treap_insert(ngx_http_async_task_node_t **root,
    ngx_http_async_task_node_t *node)
{
    node->left = NULL;
    node->right = NULL;
    node->size = 1;

    *root = ngx_http_async_task_treap_insert_node(*root, node);
}


void
ngx_http_async_task_treap_delete(ngx_http_async_task_node_t **root,
    ngx_http_async_task_node_t *node)
{
    *root = ngx_http_async_task_treap_delete_node(*root, node);
}


/* how many tasks the queue holds */

ngx_uint_t
ngx_http_async_task_treap_size(ngx_http_async_task_node_t *root)
{
    return ngx_http_async_task_treap_count(root);
}


/*
 * The queue order of the contract: higher priority first, then older,
 * then the id, which makes the order total.
 */

static ngx_int_t
ngx_http_async_task_treap_before(ngx_http_async_task_node_t *a,
    ngx_http_async_task_node_t *b)
{
    if (a->priority != b->priority) {
        return a->priority > b->priority;
    }

    if (a->created_at != b->created_at) {
        return a->created_at < b->created_at;
    }

    return ngx_memcmp(a->id, b->id, NGX_HTTP_ASYNC_TASK_ID_LEN) < 0;
}


static ngx_http_async_task_node_t *
ngx_http_async_task_treap_insert_node(ngx_http_async_task_node_t *root,
    ngx_http_async_task_node_t *node)
{
    ngx_http_async_task_node_t  *child;

    if (root == NULL) {
        return node;
    }

    if (ngx_http_async_task_treap_before(node, root)) {
        child = ngx_http_async_task_treap_insert_node(root->left, node);
        root->left = child;

        if (child->weight > root->weight) {
            root->left = child->right;
            ngx_http_async_task_treap_update(root);
            child->right = root;
            ngx_http_async_task_treap_update(child);
            return child;
        }

    } else {
        child = ngx_http_async_task_treap_insert_node(root->right, node);
        root->right = child;

        if (child->weight > root->weight) {
            root->right = child->left;
            ngx_http_async_task_treap_update(root);
            child->left = root;
            ngx_http_async_task_treap_update(child);
            return child;
        }
    }

    ngx_http_async_task_treap_update(root);

    return root;
}


static ngx_http_async_task_node_t *
ngx_http_async_task_treap_delete_node(ngx_http_async_task_node_t *root,
    ngx_http_async_task_node_t *node)
{
    if (root == NULL) {
        return NULL;
    }

    if (root == node) {
        return ngx_http_async_task_treap_merge(root->left, root->right);
    }

    if (ngx_http_async_task_treap_before(node, root)) {
        root->left = ngx_http_async_task_treap_delete_node(root->left, node);

    } else {
        root->right = ngx_http_async_task_treap_delete_node(root->right, node);
    }

    ngx_http_async_task_treap_update(root);

    return root;
}


static ngx_http_async_task_node_t *
ngx_http_async_task_treap_merge(ngx_http_async_task_node_t *a,
    ngx_http_async_task_node_t *b)
{
    if (a == NULL) {
        return b;
    }

    if (b == NULL) {
        return a;
    }

    if (a->weight > b->weight) {
        a->right = ngx_http_async_task_treap_merge(a->right, b);
        ngx_http_async_task_treap_update(a);
        return a;
    }

    b->left = ngx_http_async_task_treap_merge(a, b->left);
    ngx_http_async_task_treap_update(b);

    return b;
}


/* how many queued tasks of the kind come before this one */

ngx_uint_t
ngx_http_async_task_treap_rank(ngx_http_async_task_node_t *root,
    ngx_http_async_task_node_t *node)
{
    ngx_uint_t  rank;

    rank = 0;

    while (root) {

        if (root == node) {
            return rank + ngx_http_async_task_treap_count(root->left);
        }

        if (ngx_http_async_task_treap_before(node, root)) {
            root = root->left;

        } else {
            rank += ngx_http_async_task_treap_count(root->left) + 1;
            root = root->right;
        }
    }

    return rank;
}
