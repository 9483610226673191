/* chainfs: the named dirty bitmaps of a disk (INTERFACE.md section 7).
 *
 * Anyone who wants to know what changed on a disk makes a named bitmap;
 * jobs keep their own, unnamed ones (disk_attach_bitmap).  A named bitmap
 * that records is attached to the disk like a job's, so every write marks
 * it once it has landed.  A persistent one also lives in the active
 * layer's image (the driver's bitmaps_* ops): while chainfs has that image
 * open read-write, every persistent bitmap is stored there marked in use,
 * and a clean close stores the bits and clears the mark.  A bitmap found
 * marked in use at mount (the writer died) is inconsistent: it records
 * nothing and cannot be read, merged, cleared, enabled or disabled, only
 * removed.
 *
 * Locking contract, stated once: each disk's set has one mutex.  Functions
 * that may store to the image take the disk's io_lock for reading first,
 * so that the active layer cannot change under them; the *_drained
 * functions run with io_lock held for writing.  So the order is io_lock,
 * then the set's mutex, then a bitmap's own lock.  The listener and the
 * event log are called with the set's mutex held and must not call back.
 */
#ifndef CHAINFS_NAMED_BITMAP_H
#define CHAINFS_NAMED_BITMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/disk.h"
#include "core/event-log.h"

#define NAMED_BITMAP_MAX 64             /* per disk */
#define NAMED_BITMAP_MAX_NAME 1023      /* bytes, qcow2's limit */

/* Told when a bitmap appears or goes (e.g. for .bitmaps/NAME/BITMAP/). */
struct named_bitmap_listener {
    void (*added)(void *opaque, struct disk *disk, const char *name);
    void (*removed)(void *opaque, struct disk *disk, const char *name);
    void *opaque;
};

/* The set every disk has (disk_new makes it, disk_close frees it). */
struct named_bitmap_set *named_bitmap_set_new(void);
void named_bitmap_set_free(struct named_bitmap_set *set);

/* Where BITMAP_* events go (NULL: nowhere), and who hears of changes.
 * Before the disk is used. */
void named_bitmaps_set_events(struct disk *disk, struct event_log *events)
    __attribute__((nonnull(1)));
void named_bitmaps_set_listener(struct disk *disk,
                                const struct named_bitmap_listener *listener)
    __attribute__((nonnull));

/* Load the bitmaps stored in the active layer, as their flags say, and
 * (read-write) mark them all in use in the image.  At mount, before any
 * guest I/O.  Errors name the file. */
bool named_bitmaps_load(struct disk *disk, GError **errp)
    __attribute__((nonnull(1)));

/* The commands.  Each returns false with errp set (an errno code and a
 * one-line message naming the disk and the bitmap) and changes nothing,
 * or changes the set and appends its BITMAP_* event. */
bool named_bitmap_add(struct disk *disk, const char *name,
                      uint64_t granularity, bool persistent, bool disabled,
                      GError **errp) __attribute__((nonnull(1, 2)));
bool named_bitmap_remove(struct disk *disk, const char *name, GError **errp)
    __attribute__((nonnull(1, 2)));
bool named_bitmap_clear(struct disk *disk, const char *name, GError **errp)
    __attribute__((nonnull(1, 2)));
bool named_bitmap_enable(struct disk *disk, const char *name, bool enable,
                         GError **errp) __attribute__((nonnull(1, 2)));
/* OR the dirty ranges of every bitmap in from (NULL-terminated) into
 * name. */
bool named_bitmap_merge(struct disk *disk, const char *name,
                        const char *const *from, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

/* The names of the disk's bitmaps, a NULL-terminated array (g_strfreev). */
char **named_bitmap_names(struct disk *disk) __attribute__((nonnull));

/* `.bitmaps/NAME/BITMAP/status`, or NULL when there is no such bitmap. */
char *named_bitmap_status(struct disk *disk, const char *name)
    __attribute__((nonnull));

/* `.bitmaps/NAME/BITMAP/extents`: "OFFSET LENGTH\n" for each dirty run,
 * all from one state of the bitmap.  0, -ENOENT, or -EIO for an
 * inconsistent bitmap. */
int named_bitmap_extents(struct disk *disk, const char *name, char **text)
    __attribute__((nonnull));

/* For a job that reads a bitmap: hold it busy (bitmap-remove and the other
 * commands then fail with EBUSY naming job_id) and return its bits, or
 * NULL with errp set (ENOENT, EBUSY, EINVAL when inconsistent). */
struct dirty_bitmap *named_bitmap_acquire(struct disk *disk, const char *name,
                                          const char *job_id, GError **errp)
    __attribute__((nonnull(1, 2, 3)));
void named_bitmap_release(struct disk *disk, const char *name)
    __attribute__((nonnull));

/* fleece bitmap=B: at the instant of a fleece, move B's bits into a new
 * disabled bitmap B@SNAP (persistent if B is; the only way a name with
 * '@' comes to be) and clear B, which goes on recording.  The check runs
 * first, before the caller changes anything (ENOENT: no B; EBUSY: a job
 * uses B; EINVAL: B is inconsistent or the disk has the most bitmaps;
 * EEXIST: B@SNAP exists; ENOTSUP: B@SNAP cannot be stored); the move
 * runs while drained (io_lock held for writing, so no write falls
 * between), stores the set in the active layer if B is persistent, and
 * appends BITMAP_ADDED for B@SNAP.  It fails only when storing fails,
 * and then changes nothing. */
bool named_bitmap_check_snapshot(struct disk *disk, const char *name,
                                 const char *snapshot_name, GError **errp)
    __attribute__((nonnull(1, 2, 3)));
bool named_bitmap_snapshot_drained(struct disk *disk, const char *name,
                                   const char *snapshot_name, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

/* The active layer is about to change from old_top to new_top (a
 * snapshot, a mirror's or an active commit's complete), while drained and
 * before old_top is reopened read-only or closed: persistent bitmaps are
 * stored in new_top (marked in use) and then removed from old_top, so a
 * crash leaves each in one of them or both, never in neither.  If new_top
 * cannot hold them they stay in memory, no longer persistent, with a
 * BITMAP_NOT_PERSISTENT event.  A switch that then fails moves them back
 * (old and new swapped). */
void named_bitmaps_move_drained(struct disk *disk, struct block_node *old_top,
                                struct block_node *new_top)
    __attribute__((nonnull));

/* A job is about to write into node, a layer below the active one that
 * was just reopened read-write (a commit's base): no disk records those
 * writes in the bitmaps node stores, so mark them all in use, which is
 * what they will be.  Errors name the file. */
bool named_bitmaps_mark_layer_in_use(struct block_node *node, GError **errp)
    __attribute__((nonnull(1)));

/* At a clean close, before the chain is flushed and closed: store every
 * persistent bitmap's bits and clear the in-use marks.  Returns 0 or the
 * first negative errno (logged). */
int named_bitmaps_close(struct disk *disk) __attribute__((nonnull));

#endif
