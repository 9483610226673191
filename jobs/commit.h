/* chainfs: the commit job (INTERFACE.md sections 3-5), as QEMU's commit.
 *
 * A commit writes the data of the layers from `top` down to just above
 * `base` into `base` (reopened read-write for the job, read-only again
 * after; grown first if smaller than top).  Ranges those layers read as
 * zero become zero in base.
 *  - Intermediate (top below the active layer): the job copies, flushes
 *    base, then under a drain rewrites the header of the layer above top
 *    to back onto base (backing-file= if given) and drops the layers in
 *    between from the chain (closed; their files untouched).  It finishes
 *    by itself.  Cancel or failure leaves the chain as it was (base holds
 *    extra data that nothing above it reads).
 *  - Active (top is the disk's top): a mirror into base (jobs/mirror.c,
 *    job type "commit"): READY when in sync, `complete` switches the disk
 *    to base with no write lost; cancel after ready leaves the disk on top
 *    and base consistent (completed), cancel force or before ready leaves
 *    the disk on top (cancelled).  backing-file= is EINVAL here.
 *
 * WHAT THE CALLER (the control plane) MUST CHECK BEFORE commit_start:
 *  - cmd was parsed by command_parse and cmd->verb is COMMAND_COMMIT;
 *  - cmd->disk names `disk` (ENOENT otherwise);
 *  - --allow-dir does not apply: top= and base= name layers in use;
 *  - op blockers: no other job uses this disk's chain (EBUSY naming it).
 *    While the job is not concluded nothing else may change the chain or
 *    use the layers from top down to base: those above base are read
 *    without io_lock and closed at the end, base is written and reopened,
 *    and the layer above top has its header rewritten.  An active commit
 *    blocks as a mirror does (the whole chain; base as its target).  Build
 *    the blocker from the disk and those layers and hand it over with
 *    job_attach_blocker.
 * commit_start itself checks: top and base are layers of the disk (ENOENT
 * "layer PATH is not in the chain of disk 'NAME'"), base below top
 * (EINVAL), backing-file with an active top (EINVAL), a read-only disk
 * (EROFS), formats that cannot grow or record a backing file (ENOTSUP).
 */
#ifndef CHAINFS_COMMIT_H
#define CHAINFS_COMMIT_H

#include <glib.h>

#include "core/disk.h"
#include "jobs/command.h"
#include "jobs/job.h"

/* The most bytes one copy of an intermediate commit moves, and at most
 * this many copies run at once (1 MiB in flight, as for stream). */
#define COMMIT_CHUNK_BYTES (256 * 1024)
#define COMMIT_MAX_IN_FLIGHT 4

/* Validate cmd against disk, reopen base read-write (growing it if
 * needed) and start the job (state running).  Returns the job with a
 * reference for the caller (job_unref it), or NULL with errp set (code an
 * errno) and nothing changed.  The disk must outlive the job (until it is
 * concluded). */
struct job *commit_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

#endif
