/* chainfs: a mirror's setup: creating or opening its target, and the
 * sizes it copies in (which follow the target's cluster size).
 *
 * The target's backing layer is a node of the source chain whenever it is
 * the same file (never opened twice: our own image locks would conflict),
 * so the target node points at a node it does not own.  Only a backing
 * chain that is not part of the source (mode=existing naming another file)
 * is opened here, and then owned with the target.  No locking: called on
 * the control thread before the job starts, or after it stopped.
 */
#ifndef CHAINFS_MIRROR_TARGET_H
#define CHAINFS_MIRROR_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/block.h"
#include "jobs/command.h"

struct mirror_target {
    struct block_node *node;    /* read-write, WRITER-locked */
    bool backing_owned;         /* node->backing opened here, not shared */
    bool created;               /* created here: removed on failure */
    bool reads_zeros;           /* created here and without backing */
    uint64_t cluster_size;      /* qcow2: its cluster size; raw: 512 */
};

/* The sizes a mirror works in. */
struct mirror_sizes {
    uint64_t granularity;       /* one dirty bit per this many bytes */
    uint64_t buf_size;          /* bytes of the copies in flight */
    uint64_t max_op_bytes;      /* the largest single copy */
    uint64_t target_cluster;    /* 0: no whole-cluster copies needed */
};

/* Round n down / up to a multiple of align. */
#define ROUND_DOWN(n, align) ((n) / (align) * (align))
#define ROUND_UP(n, align) ROUND_DOWN((n) + (align) - 1, align)

/* Create (mode=absolute-paths) or open (mode=existing) cmd->target for a
 * mirror of the chain under source, with the backing layer sync= asks
 * for; a URI opens a remote export (remote-target.h).  Errors (an errno
 * code) name the file or the key. */
bool mirror_target_open(struct block_node *source, const struct command *cmd,
                        struct mirror_target *target, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

/* Use layer, a read-write layer of the source chain (active commit's
 * base), as the target: never created, closed or discarded here. */
void mirror_target_use_layer(struct block_node *layer,
                             struct mirror_target *target)
    __attribute__((nonnull(1, 2)));

/* The granularity (default: target_cluster clamped to 4K..64K), buffer
 * and operation sizes cmd and the target ask for; EINVAL when buf-size is
 * below the granularity. */
bool mirror_choose_sizes(const struct command *cmd, uint64_t target_cluster,
                         struct mirror_sizes *sizes, GError **errp)
    __attribute__((nonnull(1, 3)));

/* Close the target node (and its backing chain only if owned). */
void mirror_target_close(struct block_node *node, bool backing_owned);

/* Undo mirror_target_open: close, and remove the file if created here. */
void mirror_target_discard(struct mirror_target *target);

#endif
