/* chainfs: the file system: the tree of disks, .chains/ and .jobs/, served
 * through libfuse's low-level API.
 *
 *   /NAME          a disk (disk-file.h)
 *   /NAME@SNAP     a fleece view while its job runs (jobs-tree.h adds it)
 *   /.chains/NAME  the disk's backing chain, top first (disk_describe_chain)
 *   /.jobs/        the control plane (jobs-tree.h adds its files)
 *   /.bitmaps/     the disks' named bitmaps (bitmaps-tree.h adds them)
 *
 * The file system does not own the disks: the caller closes them once the
 * session has ended.  Thread-safety: the ops may run concurrently from any
 * number of FUSE worker threads.
 */
#ifndef CHAINFS_FS_H
#define CHAINFS_FS_H

#include <stdbool.h>
#include <fuse_lowlevel.h>
#include <glib.h>

#include "core/disk.h"
#include "tree.h"

struct chainfs_fs;

/* The low-level ops; pass the result of fs_new() as userdata. */
extern const struct fuse_lowlevel_ops fs_lowlevel_ops;

/* A tree holding the root, .chains/, .jobs/ and .bitmaps/. */
struct chainfs_fs *fs_new(void);

/* Add /NAME and /.chains/NAME for disk (not owned).  Before mounting
 * only.  Returns false if the name is taken. */
bool fs_add_disk(struct chainfs_fs *fs, struct disk *disk)
    __attribute__((nonnull));

/* Tell init the max_read mount option given with -o (libfuse wants it
 * repeated there).  Before mounting only. */
void fs_set_max_read(struct chainfs_fs *fs, unsigned max_read)
    __attribute__((nonnull));

/* Free the tree; the disks stay open. */
void fs_free(struct chainfs_fs *fs);

/* The tree, for code that adds nodes (the jobs control plane). */
struct tree *fs_tree(struct chainfs_fs *fs) __attribute__((nonnull));

/* The .jobs directory node. */
struct tree_node *fs_jobs_dir(struct chainfs_fs *fs) __attribute__((nonnull));

/* The .bitmaps directory node. */
struct tree_node *fs_bitmaps_dir(struct chainfs_fs *fs)
    __attribute__((nonnull));

#endif
