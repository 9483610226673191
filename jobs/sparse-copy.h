/* chainfs: what the copy jobs (mirror, stream, commit) share when they
 * write what they read: ranges that read as zero are never written as
 * data, even where the source holds them as written zeros.
 *
 * A chunk read from the source is cut at the destination's cluster
 * boundaries (its "zero alignment"); a whole cluster of zeros becomes a
 * zero write (block_node_write_zeroes with the caller's flags: UNMAP for
 * a destination without backing, which leaves a hole; 0 with a backing
 * file, which leaves a zero cluster hiding the backing data), and
 * adjacent clusters of the same kind go out as one request.  A zero piece
 * smaller than a cluster (the chunk starts or ends inside one) is skipped
 * when the destination itself already reads zeros there (a zero cluster,
 * or a hole without backing file), else written as data
 * together with its neighbours: zeroing part of a cluster would allocate
 * it just the same.
 *
 * No state of its own; the destination driver takes its own locks, and
 * the caller holds the range against other writers to it.
 */
#ifndef CHAINFS_SPARSE_COPY_H
#define CHAINFS_SPARSE_COPY_H

#include <stdint.h>

#include "core/block.h"

/* The cluster size of node (block_node.cluster_size); 512 for formats
 * without clusters. */
uint64_t sparse_copy_cluster_size(struct block_node *node)
    __attribute__((nonnull(1)));

/* The zero alignment of node: its cluster size, at least 4 KiB (so a raw
 * destination is not cut into sectors). */
uint64_t sparse_copy_align(struct block_node *node)
    __attribute__((nonnull(1)));

/* Write the len bytes of buf read for [offset, offset + len) to node,
 * zero clusters as zero writes with zero_flags (see above).  Adds the
 * bytes written as data to *data_bytes.  Returns 0 or a negative errno. */
int sparse_copy_write(struct block_node *node, uint64_t offset,
                      uint64_t len, const uint8_t *buf, uint64_t align,
                      int zero_flags, uint64_t *data_bytes)
    __attribute__((nonnull(1, 4, 7)));

/* The bytes of [offset, offset + len) that the chain under node reports
 * as data (what the rate limit charges; a status error counts the rest as
 * data). */
uint64_t sparse_copy_data_bytes(struct block_node *node, uint64_t offset,
                                uint64_t len) __attribute__((nonnull(1)));

#endif
