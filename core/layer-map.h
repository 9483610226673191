/* chainfs: what a backing layer allocates, kept in memory.
 *
 * Every read that falls through a deep chain asks each layer above the
 * owner for its status: in a chain of hundreds of layers that each own a
 * little data, that is hundreds of driver calls (a lock, an L2 lookup) per
 * request.  A layer that nobody writes any more (read-only, below the
 * top) never changes its allocation, so its status is computed once, as a
 * sorted array of allocated extents, and answered from memory after that,
 * without locks.  It is built on the first status asked of the layer,
 * with one driver status call per run; a layer more fragmented than
 * LAYER_MAP_MAX_EXTENTS keeps asking its driver (its map would cost more
 * memory than it saves time).
 *
 * Locking: the map is published with an atomic pointer; several threads
 * may build one at once and all but the first drop theirs.  It is freed
 * only when nothing can use it: when the node is closed or becomes
 * writable (block_node_reopen, with the disk drained).
 */
#ifndef CHAINFS_LAYER_MAP_H
#define CHAINFS_LAYER_MAP_H

#include "block.h"

/* Layers with more allocated extents than this are not mapped (16 bytes
 * each, plus flags). */
#define LAYER_MAP_MAX_EXTENTS 16384

/* One run that a layer allocates. */
struct layer_extent {
    uint64_t start;
    uint64_t end;
    int status;             /* BLOCK_STATUS_ALLOCATED | DATA or ZERO */
};

/* block_status of node, from its map when node may have one (read-only,
 * below the top of its chain), else from its driver. */
int layer_status(struct block_node *node, uint64_t offset, uint64_t len,
                 uint64_t *pnum) __attribute__((nonnull));

/* Whether node's map says that [offset, offset + *pnum) is unallocated
 * (*pnum <= len): false when it allocates offset, or has no map. */
bool layer_map_unallocated(struct block_node *node, uint64_t offset,
                           uint64_t len, uint64_t *pnum)
    __attribute__((nonnull));

/* node's allocated extents, sorted, from its map (built if need be):
 * false when node has none (writable, the top, too fragmented, or its
 * driver failed).  They stay valid until layer_map_clear. */
bool layer_map_extents(struct block_node *node,
                       const struct layer_extent **extents, size_t *count)
    __attribute__((nonnull));

/* Drop node's map (closing, or about to become writable; no I/O on the
 * node meanwhile). */
void layer_map_clear(struct block_node *node) __attribute__((nonnull));

/* Bytes node's map holds (0: none), for the tests and the benchmark. */
size_t layer_map_bytes(struct block_node *node) __attribute__((nonnull));

#endif
