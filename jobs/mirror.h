/* chainfs: the mirror job (INTERFACE.md sections 3-5), as QEMU's mirror.
 *
 * A mirror copies a disk to a target image and then keeps the target in
 * sync with new writes until `complete` switches the disk to the target
 * (or `cancel` leaves the disk alone).  The job's dirty bitmap is attached
 * to the disk before anything is scanned, so no write is missed; copies
 * run on the copy threads all jobs share (copy-pool.h), up to
 * MIRROR_MAX_IN_FLIGHT at a time within buf-size.
 *
 * Target chain: sync=full: no backing; sync=top: the source top's backing
 * layer; sync=none: the source top.  That backing layer is the very node
 * of the source chain (opened once): the mirror owns the target node only,
 * and on `complete` the disk's chain becomes target -> shared layers, the
 * layers that left are closed, and an old top that stays (sync=none) is
 * downgraded to a read-only backing layer.  Cancelled or failed, the
 * mirror closes the target node and never a shared layer.
 *
 * WHAT THE CALLER (the control plane) MUST CHECK BEFORE mirror_start:
 *  - cmd was parsed by command_parse and cmd->verb is COMMAND_MIRROR;
 *  - cmd->disk names `disk` (ENOENT otherwise);
 *  - cmd->target is inside an allowed directory (--allow-dir) and not
 *    inside any chainfs mount (EACCES), resolved to an absolute path;
 *  - op blockers: no other job uses this disk's chain or the target file
 *    (EBUSY naming the job).  While the job is not concluded, nothing else
 *    may change the disk's chain (snapshot, stream, commit, another
 *    mirror) or drain it for a chain change: the mirror reads the source
 *    layers without io_lock and relies on that.  A concluded mirror blocks
 *    nothing.  Build the blocker from the disk, its chain (read) and the
 *    target file (write; stat cmd->target after mirror_start returns, as
 *    mode=absolute-paths creates it) and hand it over with
 *    job_attach_blocker before dropping the control plane's own lock.
 * mirror_start itself checks what needs the images: format (qcow2 or raw,
 * else ENOTSUP), the target existing (EEXIST) or not (ENOENT), sizes,
 * buf-size against the granularity, the target not being a layer of the
 * disk, raw targets with a backing layer (ENOTSUP).
 */
#ifndef CHAINFS_MIRROR_H
#define CHAINFS_MIRROR_H

#include <glib.h>

#include "core/disk.h"
#include "jobs/command.h"
#include "jobs/job.h"

/* At most this many copy operations in flight at once. */
#define MIRROR_MAX_IN_FLIGHT 16
/* The default buf-size: the total bytes of the operations in flight. */
#define MIRROR_DEFAULT_BUF_SIZE (16 * 1024 * 1024)
/* The largest single copy operation (adjacent dirty chunks are merged up
 * to this, or buf-size if smaller). */
#define MIRROR_MAX_OP_BYTES (1024 * 1024)

/* Validate cmd against disk, create or open the target, attach the dirty
 * bitmap and start the job (state running).  Returns the job with a
 * reference for the caller (job_unref it), or NULL with errp set (code an
 * errno) and nothing changed: a target created here is removed again.
 * The disk must outlive the job (until it is concluded). */
struct job *mirror_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

/* Active commit (jobs/commit.c): a mirror of the disk into base, one of
 * its own backing layers, which the caller has reopened read-write and
 * grown to at least the disk's size.  The initial copy is what the layers
 * above base allocate; cmd (a COMMAND_COMMIT) gives id, speed and on-error
 * (for both sides).  `complete` switches the disk to base (the layers
 * above it close); otherwise the job reopens base read-only when it ends.
 * On error (errp set) nothing changed and base is still read-write. */
struct job *mirror_start_commit(struct job_list *list, struct disk *disk,
                                const struct command *cmd,
                                struct block_node *base, GError **errp)
    __attribute__((nonnull(1, 2, 3, 4)));

#endif
