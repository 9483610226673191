/* chainfs: a fleecing view: a disk frozen at one instant, read while the
 * guest keeps writing (INTERFACE.md section 8, `fleece`).
 *
 * The view is a copy-before-write consumer (copy-before-write.h) whose
 * `needed` bitmap starts as the whole disk.  Every chunk is in one of
 * three places:
 *   needed   the disk still holds the frozen content: read it from the
 *            disk's current chain under a claim, so that a guest write to
 *            it waits and copies it first;
 *   stored   a guest write copied it into the store (a qcow2 image of the
 *            disk's size, no backing, one cluster per chunk, the chunk at
 *            its own offset): read it from there;
 *   neither  it was all zeros when copied, or it was released by a
 *            discard: it reads as zeros and is a hole.
 * A claim on the chunks a request touches makes that state stable for the
 * request (the sink and discards run under claims too).
 *
 * A copy that fails (reading the disk, or the store full or failing)
 * never fails the guest's write (the core sees to that): the view is
 * broken from then on, and every read fails with EIO (QEMU's
 * on-cbw-error=break-snapshot).  Once closed, every request fails with
 * EIO too.
 *
 * Locking contract, stated once: view->lock (a rwlock) is held for
 * reading by every request from the outside and for writing by
 * fleece_view_close, so the consumer is never removed under a request;
 * it is taken before io_lock (the claims take that).  The sink runs on
 * guest writers' threads with io_lock held and never takes view->lock.
 * The counters are atomics; `stored` has its own lock (dirty-bitmap.h).
 */
#ifndef CHAINFS_FLEECE_VIEW_H
#define CHAINFS_FLEECE_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "core/block.h"
#include "core/disk.h"

struct fleece_view;

/* A view of disk in chunks of granularity (the store's cluster size),
 * storing into store (owned from now on: closed by fleece_view_close or
 * the last unref), not yet frozen. */
struct fleece_view *fleece_view_new(struct disk *disk, struct block_node *store,
                                    uint32_t granularity)
    __attribute__((nonnull));

/* Freeze: register the copy-before-write consumer.  The disk must be
 * drained (disk_drain_begin); the view shows the disk as it is now. */
void fleece_view_freeze_drained(struct fleece_view *view)
    __attribute__((nonnull));

/* End the view: wait for requests in flight, unregister the consumer
 * (under a drain it takes itself: the caller must not hold one), close
 * the store and make every later request fail with EIO.  Idempotent. */
void fleece_view_close(struct fleece_view *view) __attribute__((nonnull));

void fleece_view_ref(struct fleece_view *view) __attribute__((nonnull));
/* The last reference closes the view (if still open) and the store. */
void fleece_view_unref(struct fleece_view *view);

/* The disk's size. */
uint64_t fleece_view_size(const struct fleece_view *view)
    __attribute__((nonnull));

/* Read [offset, offset + len) (within the size) as the disk was at the
 * instant.  Returns 0 or a negative errno (-EIO once broken or closed). */
int fleece_view_read(struct fleece_view *view, uint64_t offset, uint64_t len,
                     void *buf) __attribute__((nonnull));

/* "Already read": release the whole chunks inside [offset, offset + len)
 * (the last one may end at the size); partial chunks at either end are
 * left as they are.  They read as zeros and are holes from then on, later
 * guest writes there copy nothing, and the store gives their space back
 * (clusters freed, host file punched).  Returns 0 or a negative errno. */
int fleece_view_discard(struct fleece_view *view, uint64_t offset,
                        uint64_t len) __attribute__((nonnull));

/* Whether offset holds data as the disk did at the instant (stored
 * chunks; for needed ones the disk's current block status, unchanged
 * there; released and zero chunks are holes): returns 1 (data) or 0
 * (hole), with *pnum (> 0) the bytes from offset that are alike, at most
 * len; or a negative errno. */
int fleece_view_status(struct fleece_view *view, uint64_t offset,
                       uint64_t len, uint64_t *pnum)
    __attribute__((nonnull));

/* The bytes fleece_view_status calls data (for st_blocks). */
int fleece_view_allocated_bytes(struct fleece_view *view, uint64_t *bytes)
    __attribute__((nonnull));

/* Guest data the store holds now (metadata excluded). */
uint64_t fleece_view_store_bytes(struct fleece_view *view)
    __attribute__((nonnull));

/* Whether a copy failed (reads fail with EIO), and the first error
 * (a negative errno; 0 if none). */
int fleece_view_error(struct fleece_view *view) __attribute__((nonnull));

#endif
