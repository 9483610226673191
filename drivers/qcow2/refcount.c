/* chainfs qcow2: refcounts of any width (refcount_order 0..6), cluster
 * allocation and freeing, refcount block creation and refcount table
 * growth.
 *
 * New refcount blocks are self-describing: the block for range t is placed
 * at the first cluster of range t (free by definition, since no block
 * counts it yet) and records its own reference.  A grown refcount table is
 * placed at the end of the image together with the new blocks that cover
 * it, and switched to with one header write once all of it is on disk.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"

static uint64_t refblock_entry_get(const struct qcow2_state *s,
                                   const uint8_t *block, uint64_t index)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = index * bits;
        return (block[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    case 3:
        return block[index];
    case 4:
        return be16toh(((const uint16_t *)block)[index]);
    case 5:
        return be32toh(((const uint32_t *)block)[index]);
    default:
        return be64toh(((const uint64_t *)block)[index]);
    }
}

static void refblock_entry_set(const struct qcow2_state *s, uint8_t *block,
                               uint64_t index, uint64_t value)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = index * bits;
        uint8_t mask = ((1u << bits) - 1) << (bit % 8);
        block[bit / 8] = (block[bit / 8] & ~mask) |
                         ((value << (bit % 8)) & mask);
        break;
    }
    case 3:
        block[index] = value;
        break;
    case 4:
        ((uint16_t *)block)[index] = htobe16(value);
        break;
    case 5:
        ((uint32_t *)block)[index] = htobe32(value);
        break;
    default:
        ((uint64_t *)block)[index] = htobe64(value);
        break;
    }
}

/* Host offset of refcount block t, 0 if none; -EIO if damaged. */
static int64_t refblock_offset(struct qcow2_state *s, uint64_t t)
{
    if (t >= s->reftable_entries) {
        return 0;
    }
    uint64_t offset = s->reftable[t] & QCOW2_REFT_OFFSET_MASK;
    if (offset & (s->cluster_size - 1) || offset >= s->host_end ||
        (offset == 0 && s->reftable[t] != 0)) {
        return -EIO;
    }
    return offset;
}

int qcow2_refcount_get(struct qcow2_state *s, uint64_t cluster,
                       uint64_t *refcount)
{
    uint64_t t = cluster >> s->refblock_bits;
    int64_t offset = refblock_offset(s, t);
    if (offset <= 0) {
        *refcount = 0;
        return offset;
    }
    struct table_entry *block;
    int ret = table_cache_get(s->refblock_cache, offset, true, &block);
    if (ret < 0) {
        return ret;
    }
    *refcount = refblock_entry_get(s, block->data,
                                   cluster & ((1ull << s->refblock_bits) - 1));
    table_cache_put(s->refblock_cache, block);
    return 0;
}

static int write_reftable_entry(struct qcow2_state *s, uint64_t t)
{
    uint64_t be = htobe64(s->reftable[t]);
    return qcow2_pwrite_checked(s, QCOW2_META_REFTABLE, &be, sizeof(be),
                                s->reftable_offset + t * 8);
}

static int grow_reftable(struct qcow2_state *s, uint64_t needed_t);

/* Make sure refcount block t exists; *created says if one was made. */
static int ensure_refblock(struct qcow2_state *s, uint64_t t, bool *created)
{
    if (t >= s->reftable_entries) {
        int ret = grow_reftable(s, t);
        if (ret < 0) {
            return ret;
        }
        *created = true;
    }
    int64_t existing = refblock_offset(s, t);
    if (existing != 0) {
        return existing < 0 ? existing : 0;
    }
    if (t == 0) {
        /* The header cluster must be counted by block 0. */
        return -EIO;
    }

    uint64_t offset = (t << s->refblock_bits) << s->cluster_bits;
    struct table_entry *block;
    /* Free by definition, unless the image is damaged: then it holds
     * other metadata, and writing the block there must fail. */
    int ret = qcow2_overlap_check(s, QCOW2_META_REFBLOCK, offset,
                                  s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    qcow2_meta_add(s, QCOW2_META_REFBLOCK, offset, s->cluster_size);
    ret = table_cache_get(s->refblock_cache, offset, false, &block);
    if (ret < 0) {
        qcow2_meta_remove(s, QCOW2_META_REFBLOCK, offset, s->cluster_size);
        return ret;
    }
    refblock_entry_set(s, block->data, 0, 1);
    ret = table_cache_write(s->refblock_cache, block);
    table_cache_put(s->refblock_cache, block);
    if (ret == 0 && fdatasync(s->fd) < 0) {
        ret = -errno;
    }
    if (ret < 0) {
        qcow2_meta_remove(s, QCOW2_META_REFBLOCK, offset, s->cluster_size);
        return ret;
    }
    s->host_end = MAX(s->host_end, offset + s->cluster_size);
    s->reftable[t] = offset;
    ret = write_reftable_entry(s, t);
    if (ret < 0) {
        s->reftable[t] = 0;
        return ret;
    }
    *created = true;
    return 0;
}

/* Set the refcount of a cluster whose block exists. */
static int refcount_set_existing(struct qcow2_state *s, uint64_t cluster,
                                 uint64_t value)
{
    int64_t offset = refblock_offset(s, cluster >> s->refblock_bits);
    if (offset <= 0) {
        return offset < 0 ? offset : -EIO;
    }
    struct table_entry *block;
    int ret = table_cache_get(s->refblock_cache, offset, true, &block);
    if (ret < 0) {
        return ret;
    }
    refblock_entry_set(s, block->data,
                       cluster & ((1ull << s->refblock_bits) - 1), value);
    block->dirty = true;
    table_cache_put(s->refblock_cache, block);
    return 0;
}

int qcow2_refcount_add(struct qcow2_state *s, uint64_t cluster,
                       int64_t delta)
{
    bool created = false;
    int ret = 0;
    if (delta > 0) {
        /* A missing block only needs creating to count something. */
        ret = ensure_refblock(s, cluster >> s->refblock_bits, &created);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t refcount;
    ret = qcow2_refcount_get(s, cluster, &refcount);
    if (ret < 0) {
        return ret;
    }
    if ((delta < 0 && refcount < (uint64_t)-delta) ||
        (delta > 0 && s->refcount_max - refcount < (uint64_t)delta)) {
        return delta < 0 ? -EIO : -ERANGE;
    }
    ret = refcount_set_existing(s, cluster, refcount + delta);
    if (ret == 0 && refcount + delta == 0 && cluster < s->free_hint) {
        s->free_hint = cluster;
    }
    return ret;
}

/* Find the first run of free clusters at or after start, up to want long
 * (exactly want unless allow_fewer). */
static int find_free_run(struct qcow2_state *s, uint64_t start, uint64_t want,
                         bool allow_fewer, uint64_t *first, uint64_t *len,
                         uint64_t *first_free_seen)
{
    uint64_t run_start = start, run_len = 0;
    bool seen = false;

    for (uint64_t c = start;; c++) {
        uint64_t refcount;
        int ret = qcow2_refcount_get(s, c, &refcount);
        if (ret < 0) {
            return ret;
        }
        if (refcount != 0) {
            if (run_len > 0 && allow_fewer) {
                break;
            }
            run_len = 0;
            continue;
        }
        if (!seen) {
            seen = true;
            *first_free_seen = c;
        }
        if (run_len == 0) {
            run_start = c;
        }
        if (++run_len == want) {
            break;
        }
    }
    *first = run_start;
    *len = run_len;
    return 0;
}

int qcow2_alloc_clusters(struct qcow2_state *s, uint64_t want,
                         bool allow_fewer, uint64_t *offset, uint64_t *got)
{
    for (;;) {
        uint64_t first = 0, len = 0, first_free = 0;
        int ret = find_free_run(s, s->free_hint, want, allow_fewer, &first,
                                &len, &first_free);
        if (ret < 0) {
            return ret;
        }
        if ((first + len) > (QCOW2_L2E_OFFSET_MASK >> s->cluster_bits)) {
            return -ENOSPC;
        }
        /* A refcount of 0 on a cluster that holds metadata: whatever is
         * written there next would destroy it. */
        ret = qcow2_overlap_check(s, 0, first << s->cluster_bits,
                                  len << s->cluster_bits);
        if (ret < 0) {
            return ret;
        }

        /* Counting these clusters may need new refcount blocks, which take
         * clusters themselves: then search again. */
        bool created = false;
        for (uint64_t t = first >> s->refblock_bits;
             t <= (first + len - 1) >> s->refblock_bits; t++) {
            ret = ensure_refblock(s, t, &created);
            if (ret < 0) {
                return ret;
            }
        }
        if (created) {
            continue;
        }

        for (uint64_t c = first; c < first + len; c++) {
            ret = refcount_set_existing(s, c, 1);
            if (ret < 0) {
                return ret;
            }
        }
        /* Everything between the hint and first_free is in use. */
        s->free_hint = first_free == first ? first + len : first_free;
        s->host_end = MAX(s->host_end, (first + len) << s->cluster_bits);
        *offset = first << s->cluster_bits;
        *got = len;
        return 0;
    }
}

int qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    if (len == 0) {
        return 0;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        int ret = qcow2_refcount_add(s, c, -1);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void qcow2_free_deferred(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    GArray *frees = s->pending_frees;
    if (frees->len > 0) {
        struct qcow2_host_range *last =
            &g_array_index(frees, struct qcow2_host_range, frees->len - 1);
        /* Only whole clusters merge: compressed ranges may share one. */
        if (last->offset + last->len == offset &&
            !(offset & (s->cluster_size - 1)) &&
            !(len & (s->cluster_size - 1))) {
            last->len += len;
            return;
        }
    }
    struct qcow2_host_range range = { .offset = offset, .len = len };
    g_array_append_val(frees, range);
}

int qcow2_refcounts_sync(struct qcow2_state *s)
{
    int ret = table_cache_flush(s->refblock_cache);
    if (ret < 0) {
        return ret;
    }
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

int qcow2_apply_pending_frees(struct qcow2_state *s)
{
    GArray *frees = s->pending_frees;
    int ret = 0;
    guint i;

    for (i = 0; i < frees->len && ret == 0; i++) {
        struct qcow2_host_range *r =
            &g_array_index(frees, struct qcow2_host_range, i);
        ret = qcow2_free_clusters(s, r->offset, r->len);
    }
    /* A failed free leaks clusters at worst; never retry it twice. */
    g_array_set_size(frees, 0);
    return ret;
}

/* Grow the refcount table so that it has an entry for needed_t, placing
 * the new table and the blocks that count it at the end of the image. */
static int grow_reftable(struct qcow2_state *s, uint64_t needed_t)
{
    const uint64_t cs = s->cluster_size;
    const uint64_t per_table_cluster = cs / 8;
    uint64_t coverage_end = s->reftable_entries << s->refblock_bits;
    uint64_t start = MAX(coverage_end,
                         (s->host_end + cs - 1) >> s->cluster_bits);
    uint64_t entries = MAX(needed_t + 1, s->reftable_entries * 2);
    uint64_t table_clusters = 0, new_blocks = 0;

    /* Fixed point: the table and its new blocks must all be counted. */
    for (int round = 0;; round++) {
        uint64_t k = (entries + per_table_cluster - 1) / per_table_cluster;
        uint64_t end = start + k + new_blocks;
        uint64_t t_lo = start >> s->refblock_bits;
        uint64_t t_hi = (end - 1) >> s->refblock_bits;
        uint64_t b = 0;
        for (uint64_t t = t_lo; t <= t_hi; t++) {
            if (t >= s->reftable_entries || s->reftable[t] == 0) {
                b++;
            }
        }
        uint64_t need_entries = MAX(entries, t_hi + 1);
        if (k == table_clusters && b == new_blocks &&
            need_entries == entries) {
            break;
        }
        table_clusters = k;
        new_blocks = b;
        entries = need_entries;
        if (round > 64) {
            return -EIO;
        }
    }
    if (table_clusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }

    uint64_t new_entries = table_clusters * per_table_cluster;
    g_autofree uint64_t *table = g_new0(uint64_t, new_entries);
    memcpy(table, s->reftable, s->reftable_entries * 8);

    uint64_t table_first = start;
    uint64_t blocks_first = start + table_clusters;
    uint64_t region_end = blocks_first + new_blocks;
    g_autofree uint8_t *block = g_malloc(cs);
    uint64_t next_block = blocks_first;
    int ret;

    for (uint64_t t = start >> s->refblock_bits;
         t <= (region_end - 1) >> s->refblock_bits; t++) {
        uint64_t range_first = t << s->refblock_bits;
        uint64_t range_end = range_first + (1ull << s->refblock_bits);
        uint64_t lo = MAX(range_first, start);
        uint64_t hi = MIN(range_end, region_end);
        if (t < s->reftable_entries && s->reftable[t] != 0) {
            /* An existing block (possibly cached) counts part of it. */
            for (uint64_t c = lo; c < hi; c++) {
                ret = refcount_set_existing(s, c, 1);
                if (ret < 0) {
                    return ret;
                }
            }
            continue;
        }
        memset(block, 0, cs);
        for (uint64_t c = lo; c < hi; c++) {
            refblock_entry_set(s, block, c - range_first, 1);
        }
        uint64_t offset = next_block++ << s->cluster_bits;
        ret = qcow2_pwrite_checked(s, QCOW2_META_REFBLOCK, block, cs,
                                   offset);
        if (ret < 0) {
            return ret;
        }
        table[t] = offset;
    }

    for (uint64_t i = 0; i < new_entries; i++) {
        table[i] = htobe64(table[i]);
    }
    ret = qcow2_pwrite_checked(s, QCOW2_META_REFTABLE, table,
                               new_entries * 8,
                               table_first << s->cluster_bits);
    for (uint64_t i = 0; i < new_entries; i++) {
        table[i] = be64toh(table[i]);
    }
    if (ret == 0) {
        ret = qcow2_refcounts_sync(s);
    }
    if (ret < 0) {
        return ret;
    }

    uint64_t old_offset = s->reftable_offset;
    uint64_t old_clusters = s->reftable_clusters;
    s->reftable_offset = table_first << s->cluster_bits;
    s->reftable_clusters = table_clusters;
    ret = qcow2_write_header_bytes(s, QCOW2_HDR_REFTABLE, 12);
    if (ret < 0) {
        s->reftable_offset = old_offset;
        s->reftable_clusters = old_clusters;
        return ret;
    }
    g_free(s->reftable);
    s->reftable = g_steal_pointer(&table);
    s->reftable_entries = new_entries;
    s->host_end = MAX(s->host_end, region_end << s->cluster_bits);
    for (uint64_t c = blocks_first; c < region_end; c++) {
        qcow2_meta_add(s, QCOW2_META_REFBLOCK, c << s->cluster_bits, cs);
    }
    qcow2_meta_add(s, QCOW2_META_REFTABLE, s->reftable_offset,
                   table_clusters * cs);

    /* The header no longer points at the old table: drop its clusters. */
    qcow2_meta_remove(s, QCOW2_META_REFTABLE, old_offset, old_clusters * cs);
    return qcow2_free_clusters(s, old_offset, old_clusters * cs);
}
