/* chainfs: the inode table of the mounted tree (see tree.h). */
#include <string.h>

#include "tree.h"

static struct tree_node *node_new(struct tree *tree, const char *name,
                                  enum tree_node_kind kind, mode_t mode,
                                  double timeout, void *data)
{
    struct tree_node *node = g_new0(struct tree_node, 1);

    node->ino = tree->next_ino++;
    node->kind = kind;
    node->name = g_strdup(name);
    node->mode = mode & 07777;
    node->timeout = timeout;
    node->data = data;
    if (kind == TREE_NODE_DIR) {
        node->children = g_ptr_array_new();
        node->children_by_name = g_hash_table_new(g_str_hash, g_str_equal);
    }
    g_hash_table_insert(tree->nodes_by_ino, &node->ino, node);
    g_ptr_array_add(tree->all_nodes, node);
    return node;
}

static void node_free(gpointer data)
{
    struct tree_node *node = data;

    if (node->children) {
        g_ptr_array_unref(node->children);
        g_hash_table_unref(node->children_by_name);
    }
    g_free(node->name);
    g_free(node);
}

struct tree *tree_new(void)
{
    struct tree *tree = g_new0(struct tree, 1);

    g_rw_lock_init(&tree->lock);
    tree->nodes_by_ino = g_hash_table_new(g_int64_hash, g_int64_equal);
    tree->all_nodes = g_ptr_array_new_with_free_func(node_free);
    tree->next_ino = TREE_ROOT_INO;
    tree->next_cookie = 1;
    tree->root = node_new(tree, "", TREE_NODE_DIR, 0755, 1.0, NULL);
    tree->root->parent = tree->root;
    return tree;
}

void tree_free(struct tree *tree)
{
    g_hash_table_unref(tree->nodes_by_ino);
    g_ptr_array_unref(tree->all_nodes);
    g_rw_lock_clear(&tree->lock);
    g_free(tree);
}

static struct tree_node *add_node(struct tree *tree, struct tree_node *parent,
                                  const char *name, enum tree_node_kind kind,
                                  mode_t mode, double timeout, void *data,
                                  const struct tree_text_ops *text_ops)
{
    struct tree_node *node = NULL;

    g_rw_lock_writer_lock(&tree->lock);
    if (parent->kind == TREE_NODE_DIR && !parent->unlinked &&
        !g_hash_table_contains(parent->children_by_name, name)) {
        node = node_new(tree, name, kind, mode, timeout, data);
        node->parent = parent;
        node->text_ops = text_ops;
        node->dir_cookie = tree->next_cookie++;
        g_ptr_array_add(parent->children, node);
        g_hash_table_insert(parent->children_by_name, node->name, node);
    }
    g_rw_lock_writer_unlock(&tree->lock);
    return node;
}

struct tree_node *tree_add(struct tree *tree, struct tree_node *parent,
                           const char *name, enum tree_node_kind kind,
                           mode_t mode, double timeout, void *data)
{
    return add_node(tree, parent, name, kind, mode, timeout, data, NULL);
}

struct tree_node *tree_add_text(struct tree *tree, struct tree_node *parent,
                                const char *name, mode_t mode,
                                const struct tree_text_ops *text_ops,
                                void *data)
{
    return add_node(tree, parent, name, TREE_NODE_TEXT, mode, 0.0, data,
                    text_ops);
}

/* Mark node and everything below it unlinked.  Called with the lock held
 * for writing. */
static void unlink_subtree(struct tree_node *node)
{
    node->unlinked = true;
    if (node->children) {
        for (guint i = 0; i < node->children->len; i++) {
            unlink_subtree(g_ptr_array_index(node->children, i));
        }
        g_ptr_array_set_size(node->children, 0);
        g_hash_table_remove_all(node->children_by_name);
    }
}

void tree_remove(struct tree *tree, struct tree_node *node)
{
    g_rw_lock_writer_lock(&tree->lock);
    if (!node->unlinked && node != tree->root) {
        struct tree_node *parent = node->parent;
        g_hash_table_remove(parent->children_by_name, node->name);
        g_ptr_array_remove(parent->children, node);
        unlink_subtree(node);
    }
    g_rw_lock_writer_unlock(&tree->lock);
}

struct tree_node *tree_find(struct tree *tree, uint64_t ino)
{
    struct tree_node *node;

    g_rw_lock_reader_lock(&tree->lock);
    node = g_hash_table_lookup(tree->nodes_by_ino, &ino);
    g_rw_lock_reader_unlock(&tree->lock);
    return node;
}

struct tree_node *tree_lookup(struct tree *tree, struct tree_node *dir,
                              const char *name)
{
    struct tree_node *node = NULL;

    g_rw_lock_reader_lock(&tree->lock);
    if (dir->children_by_name) {
        node = g_hash_table_lookup(dir->children_by_name, name);
    }
    g_rw_lock_reader_unlock(&tree->lock);
    return node;
}

void tree_list(struct tree *tree, struct tree_node *dir, uint64_t after,
               bool (*fn)(struct tree_node *child, void *opaque),
               void *opaque)
{
    g_rw_lock_reader_lock(&tree->lock);
    if (dir->children) {
        /* Children are kept in creation order, which is cookie order. */
        for (guint i = 0; i < dir->children->len; i++) {
            struct tree_node *child = g_ptr_array_index(dir->children, i);
            if (child->dir_cookie > after && !fn(child, opaque)) {
                break;
            }
        }
    }
    g_rw_lock_reader_unlock(&tree->lock);
}

unsigned tree_count_subdirs(struct tree *tree, struct tree_node *dir)
{
    unsigned count = 0;

    g_rw_lock_reader_lock(&tree->lock);
    if (dir->children) {
        for (guint i = 0; i < dir->children->len; i++) {
            struct tree_node *child = g_ptr_array_index(dir->children, i);
            count += child->kind == TREE_NODE_DIR;
        }
    }
    g_rw_lock_reader_unlock(&tree->lock);
    return count;
}
