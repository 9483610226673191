/* chainfs: the control plane: executes the commands written to
 * `.jobs/ctl` and `.jobs/ID/ctl` (INTERFACE.md sections 3 and 4).
 *
 * One write is one command.  The executor parses it (command.h), checks
 * everything that can be checked before acting, in this order: the verb is
 * implemented (ENOTSUP), the job id is free (EEXIST) or the job exists
 * (ENOENT), the disk exists (ENOENT) and is writable (EROFS), the path is
 * allowed (EACCES) and exists or not as the mode wants (ENOENT, EEXIST),
 * no job uses the disk (EBUSY naming the job), the file is no layer of any
 * disk or job (EBUSY); then it dispatches.  A rejected command changes
 * nothing and becomes the last error (`.jobs/last-error`).
 *
 * Thread-safety: every function may be called from any thread.  What is
 * in use is checked, and the action it allows taken, under one mutex per
 * control, so two commands cannot both pass those checks; paths are
 * resolved before, without it (see control.c).  The listener runs under
 * that mutex and must not execute commands.
 */
#ifndef CHAINFS_CONTROL_H
#define CHAINFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <glib.h>

#include "core/blocker.h"
#include "core/disk.h"
#include "jobs/fleece.h"
#include "jobs/job.h"

struct control;

/* Told when a job appears (created) and disappears (dismissed), e.g. to
 * add and remove `.jobs/ID/`. */
struct control_listener {
    void (*job_added)(void *opaque, const char *job_id);
    void (*job_removed)(void *opaque, const char *job_id);
    void *opaque;
};

/* A control plane over disks (struct disk *, not owned, fixed for its
 * lifetime), running jobs in jobs with blockers in blockers (neither
 * owned).  allow_dirs (canonical; copied) and mountpoint: see
 * path-policy.h. */
struct control *control_new(GPtrArray *disks, struct job_list *jobs,
                            struct blocker_set *blockers,
                            const GPtrArray *allow_dirs,
                            const char *mountpoint)
    __attribute__((nonnull(1, 2, 3)));
void control_free(struct control *ctl);

/* Whether job targets may be URIs (--allow-remote; default: no, EACCES).
 * Call before the first command. */
void control_set_allow_remote(struct control *ctl, bool allow_remote);

/* Set the listener (copied); before the first command. */
void control_set_listener(struct control *ctl,
                          const struct control_listener *listener)
    __attribute__((nonnull));

/* Set who shows fleece views as files (copied; see fleece.h: its
 * `removed` runs on the fleece job's thread, without the lock); before
 * the first command.  Without one, a fleece runs with no file. */
void control_set_view_listener(struct control *ctl,
                               const struct fleece_listener *listener)
    __attribute__((nonnull));

/* Execute one write of len bytes: to `.jobs/ctl` when job_id is NULL,
 * else to `.jobs/JOB_ID/ctl`.  writer_pid resolves relative paths (0:
 * none).  Returns the reply (`ok` or `ok id=ID`, g_free it), or NULL with
 * errp set (code an errno, one-line message). */
char *control_execute(struct control *ctl, const char *job_id,
                      const char *buf, size_t len, pid_t writer_pid,
                      GError **errp) __attribute__((nonnull(1, 3)));

/* The `.jobs/last-error` text: the last rejected command and a line
 * `error: MESSAGE`; empty before any (g_free it). */
char *control_last_error(struct control *ctl) __attribute__((nonnull));

#endif
