/* chainfs: the synchronous `snapshot` command (INTERFACE.md section 3).
 *
 * A snapshot puts a new, empty qcow2 overlay on top of a disk's chain: the
 * overlay's backing file is the old top (its absolute path and format
 * recorded in the header), and from then on guest writes go to the
 * overlay while the old top stays untouched as a read-only backing layer.
 *
 * The caller (the control plane) checks first: the disk is writable and
 * no job uses its chain (op blockers), the overlay path is canonical,
 * inside an allowed directory, outside every chainfs mount, absent for
 * mode=absolute-paths and not a layer of any disk or job for
 * mode=existing.  Not thread-safe against other chain changes of the same
 * disk (the caller serializes commands).
 */
#ifndef CHAINFS_SNAPSHOT_H
#define CHAINFS_SNAPSHOT_H

#include <stdbool.h>
#include <glib.h>

#include "core/disk.h"
#include "jobs/command.h"

/* Create (mode absolute-paths, O_EXCL) or open and check (mode existing:
 * qcow2, the disk's size, backing file resolving to the current top) the
 * overlay at overlay_path, and switch the disk to it with no write lost.
 * On error nothing changed (a file created here is removed again). */
bool snapshot_run(struct disk *disk, const char *overlay_path,
                  enum command_mode mode, GError **errp)
    __attribute__((nonnull(1, 2)));

#endif
