/* chainfs: dirty bitmaps.
 *
 * One bit per granularity-sized chunk of a disk, kept in levels like QEMU's
 * HBitmap: each bit of level n+1 says whether a 64-bit word of level n has
 * any bit set, so finding the next dirty chunk skips clean regions 64^n
 * chunks at a time.  A bitmap has its own mutex; every function below is
 * thread-safe.  Offsets and lengths are in bytes; a range marks or clears
 * every chunk it touches.
 */
#ifndef CHAINFS_DIRTY_BITMAP_H
#define CHAINFS_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct dirty_bitmap;

/* granularity: a power of two, at least 512. */
struct dirty_bitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity);
void dirty_bitmap_free(struct dirty_bitmap *bitmap);

uint64_t dirty_bitmap_size(const struct dirty_bitmap *bitmap);
uint32_t dirty_bitmap_granularity(const struct dirty_bitmap *bitmap);

/* Mark every chunk touching [offset, offset + len). */
void dirty_bitmap_set(struct dirty_bitmap *bitmap, uint64_t offset,
                      uint64_t len);
/* Clear every chunk touching [offset, offset + len). */
void dirty_bitmap_reset(struct dirty_bitmap *bitmap, uint64_t offset,
                        uint64_t len);
void dirty_bitmap_set_all(struct dirty_bitmap *bitmap);
void dirty_bitmap_reset_all(struct dirty_bitmap *bitmap);

/* Whether the chunk holding offset is dirty. */
bool dirty_bitmap_get(struct dirty_bitmap *bitmap, uint64_t offset);

/* Bytes covered by dirty chunks (the last chunk counts only up to size). */
uint64_t dirty_bitmap_count(struct dirty_bitmap *bitmap);

/* The start of the first dirty chunk at or after offset and before end, or
 * -1 if there is none. */
int64_t dirty_bitmap_next_dirty(struct dirty_bitmap *bitmap, uint64_t offset,
                                uint64_t end);

/* The first run of dirty chunks starting at or after *offset and before
 * end, at most max_len bytes long (rounded down to whole chunks, but at
 * least one chunk): sets *offset and *len and returns true, or returns
 * false if there is none.  The run is clipped to the bitmap's size. */
bool dirty_bitmap_next_dirty_area(struct dirty_bitmap *bitmap,
                                  uint64_t *offset, uint64_t end,
                                  uint64_t max_len, uint64_t *len);

/* Atomically find and clear such a run: what a copy job does before
 * reading the source, so that a write landing meanwhile dirties it again. */
bool dirty_bitmap_take_dirty_area(struct dirty_bitmap *bitmap,
                                  uint64_t *offset, uint64_t end,
                                  uint64_t max_len, uint64_t *len);

/* Call fn for each run of dirty chunks in ascending order, as bytes
 * (clipped to the size), all from one state of the bitmap: the lock is
 * held throughout, so writers wait and fn must be quick and must not use
 * this bitmap.  Stops early when fn returns false. */
void dirty_bitmap_for_each_run(struct dirty_bitmap *bitmap,
                               bool (*fn)(void *opaque, uint64_t offset,
                                          uint64_t len),
                               void *opaque);

/* OR the dirty byte ranges of src into dst (of any granularity and size),
 * rounded out to dst's chunks.  src is read in one state; dst may be
 * written meanwhile. */
void dirty_bitmap_merge(struct dirty_bitmap *dst, struct dirty_bitmap *src);

/* Chunks in the bitmap (the last one may extend past the size). */
uint64_t dirty_bitmap_chunks(const struct dirty_bitmap *bitmap);

/* The on-disk layout of qcow2 bitmap data: byte i, bit b (least
 * significant first) is chunk 8 * i + b.  first_chunk must be a multiple
 * of 64.  Serialize copies nbytes of bits starting at first_chunk into buf
 * (chunks past the end read as clear) and returns whether any was set;
 * deserialize sets (ORs) the bits of buf, ignoring those past the end. */
bool dirty_bitmap_serialize(struct dirty_bitmap *bitmap, uint64_t first_chunk,
                            size_t nbytes, void *buf);
void dirty_bitmap_deserialize(struct dirty_bitmap *bitmap,
                              uint64_t first_chunk, size_t nbytes,
                              const void *buf);

#endif
