/* chainfs: the fleece job (INTERFACE.md section 8): while it runs, the
 * read-only file MOUNTPOINT/NAME@SNAP shows disk NAME frozen at the
 * instant the command was accepted (core/fleece-view.h does the work).
 *
 * The job itself only waits: it is running (no READY) until `cancel` or
 * unmount, which end it with result cancelled; then the file goes, the
 * view's consumer is unregistered and the store is removed.  The store is
 * a new qcow2 image (cluster size = the view's granularity: the active
 * layer's cluster size clamped to 4K..64K, else 64K): `store=PATH`, or a
 * temporary file in the directory of the active layer that is unlinked
 * as soon as it is open, so nothing is left behind even by a crash.
 *
 * A fleece never changes the disk's chain, so it holds no blocker on the
 * disk (every other job stays possible), only on a store=PATH file.
 *
 * Thread-safety: fleece_start runs on the control thread under the
 * control plane's lock; the listener's `removed` runs on the job's
 * thread when it ends.
 */
#ifndef CHAINFS_FLEECE_H
#define CHAINFS_FLEECE_H

#include <stdbool.h>
#include <glib.h>

#include "core/disk.h"
#include "core/fleece-view.h"
#include "jobs/command.h"
#include "jobs/job.h"

/* Who shows the view as a file (fuse/jobs-tree.c). */
struct fleece_listener {
    /* Whether file_name is free in the mount's root. */
    bool (*name_free)(void *opaque, const char *file_name);
    /* Show view as file_name (the listener takes its own reference). */
    void (*added)(void *opaque, const char *file_name,
                  struct fleece_view *view);
    /* Remove the file showing view. */
    void (*removed)(void *opaque, struct fleece_view *view);
    void *opaque;
};

/* Start `fleece id= disk= [name=] [bitmap=] [store=]`: cmd->store, when
 * given, is already resolved by the path policy (a file to create).
 * Errors (an errno code, naming the key): EINVAL for a bad name, EEXIST
 * for a file name or store taken, the bitmap's errors (see
 * named_bitmap_check_snapshot), the store's creation errors.  Returns
 * the job with a reference, running, its file shown (the caller adds the
 * blocker on the store file, which exists by then). */
struct job *fleece_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd,
                         const struct fleece_listener *listener,
                         GError **errp)
    __attribute__((nonnull(1, 2, 3, 4)));

#endif
