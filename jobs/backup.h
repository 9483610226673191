/* chainfs: the backup job (INTERFACE.md section 8), as QEMU's backup.
 *
 * A backup copies a disk as it was at the instant the command was
 * accepted to a target image, while the guest keeps writing: it registers
 * as a copy-before-write consumer (core/copy-before-write.h) under a
 * drain, with the chunks sync= asks for as its needed set, then copies
 * them in the background while guest writes to chunks not yet copied
 * copy them first.  No READY: the job completes by itself once every
 * chunk is in the target and the target is flushed.
 *
 * WHAT THE CALLER (the control plane) MUST CHECK BEFORE backup_start:
 *  - cmd was parsed by command_parse and cmd->verb is COMMAND_BACKUP
 *    (the parser checked sync=bitmap and bitmap-mode= against bitmap=);
 *  - cmd->disk names `disk` (ENOENT otherwise);
 *  - cmd->target is allowed (--allow-dir, EACCES) and absolute;
 *  - op blockers: the target file is used by no job and is no layer of a
 *    disk (EBUSY).  A backup does not block its disk: it never changes
 *    the chain and reads it under io_lock, so snapshots and every other
 *    job may run meanwhile.  Block the target file (write) with
 *    job_attach_blocker.
 * backup_start checks the rest: format, the target existing (EEXIST) or
 * not (ENOENT), its size (at least the disk's, EINVAL), the bitmap
 * (ENOENT, EBUSY when a job uses it).
 */
#ifndef CHAINFS_BACKUP_H
#define CHAINFS_BACKUP_H

#include <glib.h>

#include "core/disk.h"
#include "jobs/command.h"
#include "jobs/job.h"

/* Validate cmd against disk, create or open the target, freeze the disk
 * and start the job (state running).  Returns the job with a reference
 * for the caller, or NULL with errp set and nothing changed (a target
 * created here is removed again).  The disk must outlive the job. */
struct job *backup_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

#endif
