/* chainfs: writing what a copy job read without writing zeros as data
 * (see sparse-copy.h). */
#include "jobs/sparse-copy.h"

#include <string.h>

#include "core/buffer-zero.h"

/* The cluster size of a format without clusters. */
#define SPARSE_COPY_SECTOR_SIZE 512
/* The smallest zero alignment. */
#define SPARSE_COPY_MIN_ALIGN 4096

uint64_t sparse_copy_cluster_size(struct block_node *node)
{
    return node->cluster_size ? node->cluster_size : SPARSE_COPY_SECTOR_SIZE;
}

uint64_t sparse_copy_align(struct block_node *node)
{
    return MAX(sparse_copy_cluster_size(node), SPARSE_COPY_MIN_ALIGN);
}

/* What becomes of one piece (at most one cluster) of the buffer. */
enum piece_kind {
    PIECE_DATA,     /* written as data */
    PIECE_ZERO,     /* a whole cluster of zeros: a zero write */
    PIECE_SKIP,     /* part of a cluster, zeros, and node reads zeros
                       there already: nothing to write */
};

/* Whether node itself makes all of [offset, offset + len) read zeros: a
 * zero cluster, or a hole with no backing file.  What a backing layer
 * holds does not count: a stream changes the top's backing afterwards. */
static bool reads_zeros(struct block_node *node, uint64_t offset,
                        uint64_t len)
{
    uint64_t pnum;
    int status = node->driver->block_status(node, offset, len, &pnum);

    if (status < 0 || pnum < len) {
        return false;
    }
    if (status & BLOCK_STATUS_ALLOCATED) {
        return (status & BLOCK_STATUS_ZERO) != 0;
    }
    return node->backing == NULL;
}

static enum piece_kind classify(struct block_node *node, uint64_t offset,
                                uint64_t len, const uint8_t *buf,
                                uint64_t align)
{
    uint64_t end = offset + len;

    if (!buffer_is_zero(buf, len)) {
        return PIECE_DATA;
    }
    if (offset % align == 0 && (end % align == 0 || end >= node->size)) {
        return PIECE_ZERO;
    }
    return reads_zeros(node, offset, len) ? PIECE_SKIP : PIECE_DATA;
}

/* Write one run of pieces of the same kind. */
static int write_run(struct block_node *node, enum piece_kind kind,
                     uint64_t offset, uint64_t len, const uint8_t *buf,
                     int zero_flags, uint64_t *data_bytes)
{
    switch (kind) {
    case PIECE_DATA:
        *data_bytes += len;
        return node->driver->write(node, offset, len, buf);
    case PIECE_ZERO:
        return block_node_write_zeroes(node, offset, len, zero_flags);
    case PIECE_SKIP:
        break;
    }
    return 0;
}

int sparse_copy_write(struct block_node *node, uint64_t offset,
                      uint64_t len, const uint8_t *buf, uint64_t align,
                      int zero_flags, uint64_t *data_bytes)
{
    const uint64_t end = offset + len;
    uint64_t run_start = offset;
    enum piece_kind run_kind = PIECE_DATA;

    for (uint64_t pos = offset; pos < end;) {
        uint64_t piece_end = MIN(end, pos - pos % align + align);
        enum piece_kind kind = classify(node, pos, piece_end - pos,
                                        buf + (pos - offset), align);
        if (kind != run_kind && pos > run_start) {
            int ret = write_run(node, run_kind, run_start, pos - run_start,
                                buf + (run_start - offset), zero_flags,
                                data_bytes);
            if (ret < 0) {
                return ret;
            }
            run_start = pos;
        }
        run_kind = kind;
        pos = piece_end;
    }
    if (end == run_start) {
        return 0;
    }
    return write_run(node, run_kind, run_start, end - run_start,
                     buf + (run_start - offset), zero_flags, data_bytes);
}

uint64_t sparse_copy_data_bytes(struct block_node *node, uint64_t offset,
                                uint64_t len)
{
    uint64_t total = 0;

    for (uint64_t end = offset + len; offset < end;) {
        uint64_t pnum;
        int status = block_chain_status(node, offset, end - offset, &pnum);
        if (status < 0) {
            return total + (end - offset);
        }
        pnum = MAX(MIN(pnum, end - offset), 1);
        if (status & BLOCK_STATUS_DATA) {
            total += pnum;
        }
        offset += pnum;
    }
    return total;
}
