/* chainfs: the inode table of the mounted tree.
 *
 * Every file and directory in the mount is a tree_node with a fixed inode
 * number, a kind that says which code serves it, and kind-specific data.
 * Nodes can be added and removed while the file system is mounted (the
 * jobs control plane adds a directory per job).  A removed node leaves its
 * directory at once but stays allocated until tree_free(): the kernel may
 * still hold its inode number, and a request for it must find the node
 * (marked unlinked) rather than freed memory.
 *
 * Locking contract, stated once: tree->lock (a rwlock) protects the
 * structure, i.e. the inode table, every directory's children and every
 * node's `unlinked` flag.  All other node fields are set at creation and
 * never change, so a node pointer obtained under the lock may be used
 * without it for as long as the tree exists.
 */
#ifndef CHAINFS_TREE_H
#define CHAINFS_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#define TREE_ROOT_INO 1     /* FUSE_ROOT_ID */

enum tree_node_kind {
    TREE_NODE_DIR,      /* a directory; its children are tree nodes */
    TREE_NODE_DISK,     /* a disk; data is a struct disk_file */
    TREE_NODE_TEXT,     /* generated text; served through text_ops */
    TREE_NODE_VIEW,     /* a fleece view (NAME@SNAP); data is a struct
                           fleece_view (view-file.h) */
};

struct tree_node;

/* How a TREE_NODE_TEXT node produces its content.  Three shapes: a
 * rendered file (render: .chains/NAME, status), a stream read live at any
 * offset (size and read_at: events), a command file (write: ctl). */
struct tree_text_ops {
    /* The current content, NUL-terminated, g_free()d by the caller.  May
     * be NULL: the file reads as empty, or as the reply to its last write
     * on the same open file. */
    char *(*render)(struct tree_node *node);

    /* Whether a rendered file can be read now: 0, or the negative errno
     * that opening it and reading it from offset 0 fail with (an
     * inconsistent bitmap's extents: -EIO).  May be NULL: always. */
    int (*readable)(struct tree_node *node);

    /* A stream: its current size, and up to len bytes from offset into
     * buf (returns the count, 0 at the end).  Both NULL or both set. */
    uint64_t (*size)(struct tree_node *node);
    size_t (*read_at)(struct tree_node *node, uint64_t offset, size_t len,
                      void *buf);

    /* Execute one write of len bytes by process pid: returns 0 or a
     * negative errno, and in *reply (g_free()d by the caller) the text a
     * read on the same open file returns afterwards.  May be NULL: the
     * file cannot be opened for writing. */
    int (*write)(struct tree_node *node, const char *buf, size_t len,
                 pid_t pid, char **reply);
};

struct tree_node {
    uint64_t ino;
    enum tree_node_kind kind;
    char *name;                 /* "" for the root */
    struct tree_node *parent;   /* the root's parent is itself */
    mode_t mode;                /* permission bits only */
    double timeout;             /* entry and attribute cache timeout, s */
    void *data;                 /* kind-specific; not owned */
    const struct tree_text_ops *text_ops;   /* TREE_NODE_TEXT only */

    /* Under tree->lock. */
    bool unlinked;
    uint64_t dir_cookie;        /* position in the parent's listing, > 0 */
    GPtrArray *children;        /* directories: in creation order */
    GHashTable *children_by_name;
};

struct tree {
    GRWLock lock;
    GHashTable *nodes_by_ino;   /* uint64_t * -> struct tree_node * */
    GPtrArray *all_nodes;       /* every node ever made, for tree_free */
    uint64_t next_ino;
    uint64_t next_cookie;
    struct tree_node *root;
};

/* A tree holding only the root directory (mode 0755). */
struct tree *tree_new(void);

/* Free the tree and every node ever added (node data is not owned). */
void tree_free(struct tree *tree) __attribute__((nonnull));

/* Add a node under the directory parent.  Returns NULL if the name is
 * taken (a name is never reused while its node is linked). */
struct tree_node *tree_add(struct tree *tree, struct tree_node *parent,
                           const char *name, enum tree_node_kind kind,
                           mode_t mode, double timeout, void *data)
    __attribute__((nonnull(1, 2, 3)));

/* Add a TREE_NODE_TEXT node (never cached by the kernel: its content
 * changes) served by text_ops. */
struct tree_node *tree_add_text(struct tree *tree, struct tree_node *parent,
                                const char *name, mode_t mode,
                                const struct tree_text_ops *text_ops,
                                void *data) __attribute__((nonnull(1, 2, 3, 5)));

/* Unlink node (and, for a directory, everything below it) from the tree;
 * its memory lives on until tree_free(). */
void tree_remove(struct tree *tree, struct tree_node *node)
    __attribute__((nonnull));

/* The node with inode number ino, or NULL.  Unlinked nodes are found too:
 * the kernel may still use their inode numbers. */
struct tree_node *tree_find(struct tree *tree, uint64_t ino)
    __attribute__((nonnull));

/* The linked child called name of the directory dir, or NULL. */
struct tree_node *tree_lookup(struct tree *tree, struct tree_node *dir,
                              const char *name) __attribute__((nonnull));

/* Call fn for each linked child of dir whose dir_cookie is greater than
 * after, in dir_cookie order, until fn returns false.  fn runs with the
 * tree lock held for reading and must not change the tree. */
void tree_list(struct tree *tree, struct tree_node *dir, uint64_t after,
               bool (*fn)(struct tree_node *child, void *opaque),
               void *opaque) __attribute__((nonnull(1, 2, 4)));

/* Number of linked subdirectories of dir (for its link count). */
unsigned tree_count_subdirs(struct tree *tree, struct tree_node *dir)
    __attribute__((nonnull));

#endif
