/* chainfs: who owns each range of a read-only stretch of a chain.
 *
 * Layer maps (layer-map.h) answer one layer's status from memory, but a
 * read that falls through a deep chain still asks every layer above the
 * owner, one binary search each: hundreds per request.  The layers below
 * the top that are read-only never change while they stay so, and neither
 * does which of them owns a given range, so that is computed once per
 * stretch, as one sorted partition of the disk into runs with one owner
 * each: a read does one binary search for the whole stretch.
 *
 * A stretch starts at the node asked (read-only, below the top) and takes
 * the layers down to, not including, the first one that is writable, has
 * no layer map (too fragmented, remote, failing) or is the bottom (whose
 * reads need no status), or that would take the map past
 * OWNER_MAP_MAX_EXTENTS; what no layer of the stretch owns falls through
 * to that node, `below`, which the caller walks as before.  A stretch of
 * fewer than two layers gets an empty map (the layer map is as good).
 *
 * Locking: maps are built on first use by readers (any number at once,
 * all but the first drop theirs) and published with an atomic pointer;
 * readers take no lock.  A map is freed only when nothing can read it:
 * with its disk drained (owner_maps_clear_drained after layers are
 * removed or the top switches; owner_maps_sweep_drained at the end of
 * every drain) or when its node is closed.  A reopen (a commit base made
 * writable and back) or a layer made a backing layer bumps a global
 * epoch: a map is used only after it was checked at the current epoch
 * (its layers, their sizes and reopen counts, its `below` are what the
 * chain has now), so that no read, not even the draining thread's own,
 * sees a stale map, and maps of other disks check once and carry on.
 */
#ifndef CHAINFS_OWNER_MAP_H
#define CHAINFS_OWNER_MAP_H

#include "block.h"

/* The most layer extents (layer-map.h) that one owner map merges; the map
 * has at most twice as many runs, 16 bytes each (8 MiB at most). */
#define OWNER_MAP_MAX_EXTENTS (1u << 18)

/* What an owner map says about a run. */
enum owner_kind {
    OWNER_LAYER,    /* node owns the run; status is its block status */
    OWNER_PAST_END, /* node is shorter: the run reads as zeros */
    OWNER_BELOW,    /* no layer of the stretch owns it: walk from node */
};

struct owner_run {
    enum owner_kind kind;
    struct block_node *node;
    unsigned layer; /* node's place in the stretch, 0 for the node asked;
                       OWNER_BELOW: the number of layers of the stretch */
    int status;     /* OWNER_LAYER: BLOCK_STATUS_ALLOCATED | DATA or ZERO */
    uint64_t len;   /* > 0, at most the len asked */
};

/* Who owns [offset, offset + len) from node down (len > 0, offset below
 * node->size): false when node has no usable map (the caller walks node
 * by itself), else *run describes the first run. */
bool owner_map_lookup(struct block_node *node, uint64_t offset, uint64_t len,
                      struct owner_run *run) __attribute__((nonnull));

/* Note that a layer's access changed (reopened, made a backing layer):
 * maps get checked again before their next use.  Call with the disk
 * drained, after the change. */
void owner_maps_layer_changed(struct block_node *node)
    __attribute__((nonnull));

/* Free every map of the chain under top (layers removed or added; the
 * disk drained). */
void owner_maps_clear_drained(struct block_node *top);

/* Free the maps of the chain under top that no longer match it (the disk
 * drained, before readers resume). */
void owner_maps_sweep_drained(struct block_node *top);

/* Drop node's map (closing; no I/O on the node). */
void owner_map_clear(struct block_node *node) __attribute__((nonnull));

/* Bytes node's map holds (0: none or empty), and its layers, for the
 * tests and the benchmark. */
size_t owner_map_bytes(struct block_node *node, unsigned *layers)
    __attribute__((nonnull(1)));

#endif
