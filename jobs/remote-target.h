/* chainfs: a remote (NBD) export as the target of a copy job (mirror,
 * backup): INTERFACE.md section 9.
 *
 * Two steps, as for a file target: remote_target_check on the control
 * thread before anything is opened (--allow-remote, the URI's form, and
 * a socket= path under the --allow-dir rule), then remote_target_open
 * from the job's start function (mode=existing, format raw, a sync mode
 * that needs no backing file, and an export at least as large as the
 * disk, used up to the disk's size).  No state; no locking.
 */
#ifndef CHAINFS_REMOTE_TARGET_H
#define CHAINFS_REMOTE_TARGET_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "core/block.h"
#include "jobs/command.h"
#include "jobs/path-policy.h"

/* Whether the command may name uri as its target: EACCES without
 * --allow-remote (allow_remote false) or for a socket outside the
 * allowed directories, ENOENT for a missing socket, EINVAL or ENOTSUP
 * for the URI's form.  verb names the command in messages. */
bool remote_target_check(const struct path_policy *policy, bool allow_remote,
                         const char *verb, const char *uri, pid_t writer_pid,
                         GError **errp) __attribute__((nonnull(1, 3, 4)));

/* Open cmd->target (a URI) as the target of a job copying the disk whose
 * top is source: EINVAL for a mode other than existing, a format other
 * than raw, or an export smaller than the disk (naming both sizes);
 * ENOTSUP for sync=top or none (an export has no backing file); the
 * connection's errors (ENOENT, EIO) otherwise.  The node's size is the
 * disk's. */
struct block_node *remote_target_open(struct block_node *source,
                                      const struct command *cmd,
                                      const char *verb, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

#endif
