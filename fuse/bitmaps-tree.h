/* chainfs: the .bitmaps directory (INTERFACE.md section 7).
 *
 *   .bitmaps/NAME/                 one directory per disk
 *   .bitmaps/NAME/BITMAP/status    0644  key: value lines
 *   .bitmaps/NAME/BITMAP/extents   0644  "OFFSET LENGTH" per dirty run,
 *                                        one state of the bitmap; EIO for
 *                                        an inconsistent one
 *
 * A bitmap's directory appears when it is added or loaded and vanishes
 * when it is removed (the disks' named-bitmap listeners).  Both files are
 * rendered at open and at each read from offset 0.
 *
 * Thread-safety: served from any FUSE thread; directories change under
 * the disk's named-bitmap lock, the tree keeps its own (tree.h).
 */
#ifndef CHAINFS_BITMAPS_TREE_H
#define CHAINFS_BITMAPS_TREE_H

#include "core/disk.h"
#include "tree.h"

struct bitmaps_tree;

/* Fill bitmaps_dir for disks (struct disk *, not owned) and become their
 * named bitmaps' listener. */
struct bitmaps_tree *bitmaps_tree_new(struct tree *tree,
                                      struct tree_node *bitmaps_dir,
                                      GPtrArray *disks)
    __attribute__((nonnull));

/* After the session ended and the disks are closed. */
void bitmaps_tree_free(struct bitmaps_tree *bitmaps_tree);

#endif
