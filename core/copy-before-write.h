/* chainfs: copy-before-write: freezing a disk's content at one instant
 * for any number of consumers (backup jobs, fleecing views).
 *
 * A consumer is registered while the disk is drained, so no guest write
 * falls between the instant it freezes and its registration.  It brings a
 * bitmap `needed` (granularity of its choice, the disk's size): the chunks
 * whose content as of that instant it still wants.  From then on, before
 * a guest write, zero write or discard of range R lands, every consumer's
 * needed chunks touching R are claimed, their current content is read
 * from the disk's chain (which still holds the frozen content there) and
 * handed to the consumer's sink, and they leave `needed`; then the write
 * proceeds.  A consumer's own background copier (cbw_copy_next) takes
 * chunks under the same claims, so each chunk is copied exactly once, by
 * whichever comes first.
 *
 * Claims: a claim holds a range of whole chunks of one consumer.  Anyone
 * (guest write, copier, a view's reader) about to use a range waits until
 * no claim of that consumer overlaps it, then claims it; a guest write
 * claims only the needed chunks it touches, so it waits only for copies of
 * chunks it touches and never serialises writes elsewhere.  Two writes to
 * the same uncopied chunk: the first copies, the second waits for that
 * copy and then finds the chunk no longer needed.  A write straddling
 * copied and uncopied chunks copies the uncopied ones only.
 *
 * Errors: a failed copy before a guest write (read error or sink error)
 * never fails the guest write, which then lands; the consumer's error
 * callback is told (the chunk is not needed any more: the consumer is
 * expected to treat its frozen view as broken).  A failed cbw_copy_next
 * makes its chunks needed again and returns the error to the caller,
 * whose policy applies.
 *
 * Chain changes (snapshot, stream, commit, a mirror's complete) need no
 * care: the hooks belong to the disk, and reads go through the chain that
 * is current under io_lock, whose content is the same before the write.
 *
 * Locking contract, stated once:
 *  - The list of consumers changes only while the disk is drained; guest
 *    writes walk it under io_lock (held for reading) without a lock.
 *  - Each consumer has a mutex for its claims (never held across I/O);
 *    `needed` has its own lock (dirty-bitmap.h) and may be read (counted,
 *    searched) by its owner at any time.
 *  - A claim is taken with io_lock held for reading, and keeps it until
 *    released: cbw_claim_begin takes it itself (so the caller must not
 *    hold it, nor a drain, and must not call disk_* functions until
 *    cbw_claim_end), while the guest-write path already holds it.  Since
 *    every claim holder holds io_lock for reading, a drain waits until no
 *    claim is held, and no claim holder ever waits for a drain: no
 *    deadlock with a writer-preferring rwlock.
 *  - Sinks and error callbacks run on the thread that copies (a guest
 *    writer or the copier), with io_lock held for reading and no claims
 *    lock: they may do I/O to other files, never to this disk, and must
 *    not wait for a drain.  Several run at once for different chunks.
 */
#ifndef CHAINFS_COPY_BEFORE_WRITE_H
#define CHAINFS_COPY_BEFORE_WRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/disk.h"
#include "core/dirty-bitmap.h"

struct cbw_consumer;

/* What a consumer is told. */
struct cbw_consumer_ops {
    /* The frozen content of [offset, offset + len): whole chunks (the
     * last one clipped to the disk's size), up to 1 MiB or one chunk at a
     * time, about to be overwritten or copied in the background.  buf
     * NULL: all of it reads as zeros (known from block status, not read).
     * Returns 0 or a negative errno. */
    int (*sink)(void *opaque, uint64_t offset, uint64_t len,
                const void *buf);
    /* A copy before a guest write failed (error: a negative errno; is_read:
     * reading the disk failed, else the sink).  The guest write lands
     * anyway.  May be NULL. */
    void (*error)(void *opaque, uint64_t offset, uint64_t len, int error,
                  bool is_read);
    void *opaque;
};

/* A range of whole chunks held against the consumer's other users; the
 * caller provides the storage, valid until cbw_claim_end. */
struct cbw_claim {
    uint64_t offset;            /* chunk-aligned */
    uint64_t len;               /* whole chunks, clipped to the size */
};

/* Register a consumer of disk, which must be drained (disk_drain_begin):
 * from now on every guest write copies the chunks set in needed first.
 * needed (the disk's size, any granularity) stays the caller's and must
 * outlive the consumer; ops is copied.  Returns the consumer. */
struct cbw_consumer *cbw_add_consumer_drained(struct disk *disk,
                                              struct dirty_bitmap *needed,
                                              const struct cbw_consumer_ops *ops)
    __attribute__((nonnull));

/* Unregister and free a consumer; the disk must be drained, so no copy is
 * in flight.  What is still in needed is left there. */
void cbw_remove_consumer_drained(struct disk *disk,
                                 struct cbw_consumer *consumer)
    __attribute__((nonnull));

/* The background copier: copy the first run of needed chunks at or after
 * *offset and before end (at most max_len bytes, at least one chunk)
 * through the sink, as a guest write would, with io_lock held for reading
 * meanwhile.  Returns 1 with *offset and *len set to the run copied, 0
 * when no chunk in [*offset, end) is needed, or a negative errno with
 * *offset and *len set to the run, which is needed again, and *is_read
 * saying which side failed.  *data_bytes (may be NULL) gets the bytes
 * read as data (zero runs known from block status are not read). */
int cbw_copy_next(struct cbw_consumer *consumer, uint64_t *offset,
                  uint64_t end, uint64_t max_len, uint64_t *len,
                  bool *is_read, uint64_t *data_bytes)
    __attribute__((nonnull(1, 2, 5, 6)));

/* For views that read the frozen content (fleecing): take io_lock for
 * reading, wait until no claim of this consumer overlaps the chunks
 * touching [offset, offset + len) (within the disk), and hold them all,
 * needed or not: guest writes to them wait until cbw_claim_end.  In
 * between, cbw_read_claimed reads what the disk holds now (for needed
 * chunks, the frozen content), dirty_bitmap_get(needed, ...) tells which
 * chunks are still needed, and cbw_forget_claimed drops chunks from
 * needed (nothing will be copied for them any more). */
void cbw_claim_begin(struct cbw_consumer *consumer, uint64_t offset,
                     uint64_t len, struct cbw_claim *claim)
    __attribute__((nonnull));
void cbw_claim_end(struct cbw_consumer *consumer, struct cbw_claim *claim)
    __attribute__((nonnull));
/* Read [offset, offset + len), within the claim, from the disk's current
 * chain.  Returns 0 or a negative errno. */
int cbw_read_claimed(struct cbw_consumer *consumer,
                     const struct cbw_claim *claim, uint64_t offset,
                     uint64_t len, void *buf) __attribute__((nonnull));
/* Clear the chunks lying wholly inside [offset, offset + len), within the
 * claim, from needed. */
void cbw_forget_claimed(struct cbw_consumer *consumer,
                        const struct cbw_claim *claim, uint64_t offset,
                        uint64_t len) __attribute__((nonnull));

/* The consumer's granularity (its needed bitmap's). */
uint64_t cbw_granularity(const struct cbw_consumer *consumer)
    __attribute__((nonnull));

/* Free the disk's copy-before-write state (disk_close; no consumer may be
 * left). */
void cbw_disk_free(struct disk *disk) __attribute__((nonnull));

#endif
