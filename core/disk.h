/* chainfs: disks, the chains exposed as files.
 *
 * A disk is what a guest sees: a name, a chain whose top takes the writes,
 * and the dirty bitmaps that every write must mark.  All guest I/O enters
 * through the disk_* functions below, which is what lets jobs reshape the
 * chain underneath.
 *
 * Locking contract, stated once (pthread locks throughout chainfs rather
 * than GMutex: glib builds GMutex on raw futexes that ThreadSanitizer
 * cannot see):
 *  - io_lock (a writer-preferring rwlock) is held for reading across every
 *    guest request, and for writing by disk_drain_begin().  Holding it for
 *    writing means no guest request is in flight, so the chain (top and
 *    every backing pointer) may be changed; guest requests wait briefly.
 *  - bitmaps_lock protects the list of attached bitmaps; each bitmap has
 *    its own lock for its bits.
 *  - The list of write hooks changes only while drained, so requests read
 *    it under io_lock (for reading) with no lock of its own.
 */
#ifndef CHAINFS_DISK_H
#define CHAINFS_DISK_H

#include <pthread.h>
#include "block.h"
#include "dirty-bitmap.h"

/* A hook around every guest write and zero write (mirror's write-blocking
 * mode).  Both callbacks run on the writing thread with io_lock held for
 * reading, so they must never wait for a drain.  `before` runs ahead of
 * the write and may wait (e.g. for a conflicting copy); what it returns is
 * handed to `after`, which runs once the write landed on the top and
 * marked the bitmaps, before the guest sees the result (ret).  buf is NULL
 * for a zero write, whose flags are in zero_flags. */
struct disk_write_hook {
    void *(*before)(void *opaque, uint64_t offset, uint64_t len);
    void (*after)(void *opaque, void *cookie, uint64_t offset, uint64_t len,
                  const void *buf, int zero_flags, int ret);
    void *opaque;
};

/* A hook after every successful guest read (stream's copy-on-read).  It
 * runs on the reading thread with io_lock held for reading, before the
 * guest sees the data, so it must never wait for a drain; buf holds what
 * was read. */
struct named_bitmap_set;

struct disk_read_hook {
    void (*after)(void *opaque, uint64_t offset, uint64_t len,
                  const void *buf);
    void *opaque;
};

struct disk {
    char *name;
    bool read_only;

    pthread_rwlock_t io_lock;
    struct block_node *top;     /* the chain; owned; see io_lock */

    pthread_mutex_t bitmaps_lock;
    GPtrArray *bitmaps;         /* struct dirty_bitmap *, not owned */

    /* The named bitmaps (named-bitmap.h); owned, with a lock of its own. */
    struct named_bitmap_set *named_bitmaps;

    GPtrArray *write_hooks;     /* const struct disk_write_hook *, not
                                   owned; changed only while drained */
    GPtrArray *read_hooks;      /* const struct disk_read_hook *, as
                                   write_hooks */

    uint64_t chain_generation;  /* atomic; bumped by every chain change */

    /* Copy-before-write consumers (copy-before-write.h); NULL until the
     * first one registers; changed only while drained. */
    struct cbw_disk *cbw;
};

/* Take ownership of the chain under top. */
struct disk *disk_new(const char *name, struct block_node *top,
                      bool read_only);

/* Store the persistent named bitmaps, flush and close the chain and free
 * the disk.  Returns the first error
 * from flushing or closing, 0 if none. */
int disk_close(struct disk *disk);

uint64_t disk_size(struct disk *disk);

/* Guest I/O.  Return 0 or a negative errno.  Writes past the end fail
 * with -ENOSPC; writes to a read-only disk with -EROFS. */
int disk_read(struct disk *disk, uint64_t offset, uint64_t len, void *buf);

/* A guest read as extents of host files and zeros (see block_node_map),
 * for replies that splice the pages instead of copying them. */
#define DISK_MAP_MAX_EXTENTS 64
struct disk_map {
    unsigned count;
    struct block_extent extents[DISK_MAP_MAX_EXTENTS];
};

/* Map [offset, offset + len), which must lie within the disk.  On success
 * the disk is held as during a read (no switch, no drain completes) until
 * disk_map_release, and the host clusters stay where they are.  Returns
 * -ENOTSUP when the read must go through disk_read instead: some layer
 * cannot map a part (compressed clusters, drivers without map), the range
 * has more than DISK_MAP_MAX_EXTENTS extents, or read hooks want the
 * data (copy-on-read); another negative errno for an error. */
int disk_map_read(struct disk *disk, uint64_t offset, uint64_t len,
                  struct disk_map *map);
void disk_map_release(struct disk *disk, struct disk_map *map);
int disk_write(struct disk *disk, uint64_t offset, uint64_t len,
               const void *buf);
int disk_write_zeroes(struct disk *disk, uint64_t offset, uint64_t len,
                      int flags);
int disk_flush(struct disk *disk);

/* Chain-wide status at offset, as block_chain_status(). */
int disk_block_status(struct disk *disk, uint64_t offset, uint64_t len,
                      uint64_t *pnum);

/* Bytes of data in the disk (BLOCK_STATUS_DATA through the whole chain),
 * for st_blocks. */
int disk_allocated_bytes(struct disk *disk, uint64_t *bytes);

/* The layer of the disk's chain that is the file at path (any spelling of
 * it), or NULL with ENOENT "layer PATH is not in the chain of disk
 * 'NAME'". */
struct block_node *disk_find_layer(struct disk *disk, const char *path,
                                   GError **errp);

/* A number that changes whenever the chain does (switch, layers removed),
 * for callers that cache what they derived from the chain. */
uint64_t disk_chain_generation(struct disk *disk);

/* Lines "DEPTH FORMAT VIRTUAL_SIZE PATH\n", top first (.chains/NAME). */
char *disk_describe_chain(struct disk *disk);

/* Every write to the disk marks every attached bitmap after it lands. */
void disk_attach_bitmap(struct disk *disk, struct dirty_bitmap *bitmap);
void disk_detach_bitmap(struct disk *disk, struct dirty_bitmap *bitmap);

/* Wait for guest requests in flight and hold new ones off, so the chain can
 * be changed.  Not recursive. */
void disk_drain_begin(struct disk *disk);
void disk_drain_end(struct disk *disk);

/* Add or remove a write hook.  Call while drained. */
void disk_add_write_hook_drained(struct disk *disk,
                                 const struct disk_write_hook *hook);
void disk_remove_write_hook_drained(struct disk *disk,
                                    const struct disk_write_hook *hook);

/* Add or remove a read hook.  Call while drained. */
void disk_add_read_hook_drained(struct disk *disk,
                                const struct disk_read_hook *hook);
void disk_remove_read_hook_drained(struct disk *disk,
                                   const struct disk_read_hook *hook);

/* Make below the backing node of above (both in the disk's chain, below
 * under above; below NULL: no backing) while drained: the layers in
 * between are closed (top down) and the depths renumbered.  The caller
 * rewrites above's header first.  Returns the first error from closing,
 * 0 if none (the layers leave either way). */
int disk_remove_layers_drained(struct disk *disk, struct block_node *above,
                               struct block_node *below);

/* Make new_top the disk's top while drained: the layers of the old chain
 * that are not in new_top's chain are closed (top down), the depths are
 * renumbered, and the new chain is owned by the disk.  Returns the first
 * error from closing, 0 if none (the switch happens either way). */
int disk_switch_top_drained(struct disk *disk, struct block_node *new_top);

#endif
