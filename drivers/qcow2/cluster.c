/* chainfs qcow2: guest cluster -> L2 entry mapping, L2 table allocation,
 * and the list of in-flight data cluster allocations.
 *
 * L2 tables live in the table cache in on-disk byte order.  A new L2 table
 * is written (after its refcount is durable) before the L1 entry that
 * points to it; L1 entries are written through at once.
 */
#include <endian.h>
#include <errno.h>
#include <unistd.h>

#include "qcow2.h"

/* Host offset of the L2 table for l1_index, 0 if none; -EIO if damaged. */
static int64_t l2_table_offset(struct qcow2_state *s, uint64_t l1_index)
{
    if (l1_index >= s->l1_size) {
        return -EIO;
    }
    uint64_t entry = s->l1_table[l1_index];
    uint64_t offset = entry & QCOW2_L1E_OFFSET_MASK;
    if ((entry & ~(QCOW2_L1E_OFFSET_MASK | QCOW2_OFLAG_COPIED)) ||
        (offset & (s->cluster_size - 1)) || offset >= s->host_end ||
        (offset == 0 && entry != 0)) {
        return -EIO;
    }
    return offset;
}

int qcow2_get_l2_entry(struct qcow2_state *s, uint64_t guest_cluster,
                       uint64_t *entry)
{
    int64_t offset = l2_table_offset(s, guest_cluster >> s->l2_bits);
    if (offset <= 0) {
        *entry = 0;
        return offset;
    }
    struct table_entry *table;
    int ret = table_cache_get(s->l2_cache, offset, true, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t index = guest_cluster & ((1ull << s->l2_bits) - 1);
    *entry = be64toh(((uint64_t *)table->data)[index]);
    table_cache_put(s->l2_cache, table);
    return 0;
}

/* Allocate an empty L2 table for l1_index and hook it into the L1 table. */
static int alloc_l2_table(struct qcow2_state *s, uint64_t l1_index)
{
    uint64_t offset, got;
    int ret = qcow2_alloc_clusters(s, 1, false, &offset, &got);
    if (ret < 0) {
        return ret;
    }
    struct table_entry *table;
    qcow2_meta_add(s, QCOW2_META_L2, offset, s->cluster_size);
    ret = table_cache_get(s->l2_cache, offset, false, &table);
    if (ret < 0) {
        goto fail;
    }
    /* Refcount of the new table, then the table, durable before the L1
     * entry points to them. */
    ret = table_cache_flush(s->refblock_cache);
    if (ret == 0) {
        ret = table_cache_write(s->l2_cache, table);
    }
    if (ret == 0 && fdatasync(s->fd) < 0) {
        ret = -errno;
    }
    table_cache_put(s->l2_cache, table);
    if (ret < 0) {
        goto fail;
    }
    uint64_t be = htobe64(offset | QCOW2_OFLAG_COPIED);
    ret = qcow2_pwrite_checked(s, QCOW2_META_L1, &be, sizeof(be),
                               s->l1_offset + l1_index * 8);
    if (ret < 0) {
        goto fail;
    }
    s->l1_table[l1_index] = offset | QCOW2_OFLAG_COPIED;
    return 0;

fail:
    /* Nothing points at the cluster: it can be released at once. */
    qcow2_meta_remove(s, QCOW2_META_L2, offset, s->cluster_size);
    qcow2_free_clusters(s, offset, s->cluster_size);
    return ret;
}

int qcow2_set_l2_entry(struct qcow2_state *s, uint64_t guest_cluster,
                       uint64_t entry)
{
    uint64_t l1_index = guest_cluster >> s->l2_bits;
    int64_t offset = l2_table_offset(s, l1_index);
    if (offset < 0) {
        return offset;
    }
    if (offset == 0) {
        if (entry == 0) {
            return 0;
        }
        int ret = alloc_l2_table(s, l1_index);
        if (ret < 0) {
            return ret;
        }
        offset = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    }
    struct table_entry *table;
    int ret = table_cache_get(s->l2_cache, offset, true, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t index = guest_cluster & ((1ull << s->l2_bits) - 1);
    ((uint64_t *)table->data)[index] = htobe64(entry);
    table->dirty = true;
    table_cache_put(s->l2_cache, table);
    return 0;
}

int qcow2_classify(struct qcow2_state *s, uint64_t entry,
                   enum qcow2_cluster_kind *kind, uint64_t *host)
{
    *host = 0;
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint64_t offset, len;
        qcow2_compressed_range(s, entry, &offset, &len);
        if (offset >= s->host_end) {
            return -EIO;
        }
        *kind = QCOW2_COMPRESSED;
        return 0;
    }
    uint64_t offset = entry & QCOW2_L2E_OFFSET_MASK;
    if ((entry & QCOW2_OFLAG_ZERO) && s->version >= 3) {
        *kind = QCOW2_ZERO;
        *host = offset;
        return 0;
    }
    if (offset == 0) {
        *kind = QCOW2_UNALLOCATED;
        return 0;
    }
    if ((offset & (s->cluster_size - 1)) || offset >= s->host_end) {
        return -EIO;
    }
    *kind = QCOW2_NORMAL;
    *host = offset;
    return 0;
}

void qcow2_release_entry(struct qcow2_state *s, uint64_t entry)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint64_t offset, len;
        qcow2_compressed_range(s, entry, &offset, &len);
        qcow2_free_deferred(s, offset, len);
        return;
    }
    uint64_t offset = entry & QCOW2_L2E_OFFSET_MASK;
    if (offset != 0 && !(offset & (s->cluster_size - 1)) &&
        offset < s->host_end) {
        qcow2_free_deferred(s, offset, s->cluster_size);
    }
}

bool qcow2_inflight_overlaps(struct qcow2_state *s, uint64_t first,
                             uint64_t end)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        struct qcow2_inflight *a =
            &g_array_index(s->inflight, struct qcow2_inflight, i);
        if (a->first < end && first < a->end) {
            return true;
        }
    }
    return false;
}

void qcow2_inflight_wait(struct qcow2_state *s, uint64_t first, uint64_t end)
{
    while (qcow2_inflight_overlaps(s, first, end)) {
        pthread_cond_wait(&s->alloc_done, &s->lock);
    }
}

void qcow2_inflight_add(struct qcow2_state *s, uint64_t first, uint64_t end)
{
    struct qcow2_inflight a = { .first = first, .end = end };
    g_array_append_val(s->inflight, a);
}

void qcow2_inflight_remove(struct qcow2_state *s, uint64_t first)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        if (g_array_index(s->inflight, struct qcow2_inflight, i).first ==
            first) {
            g_array_remove_index_fast(s->inflight, i);
            break;
        }
    }
    pthread_cond_broadcast(&s->alloc_done);
}
