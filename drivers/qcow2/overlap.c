/* chainfs qcow2: metadata overlap checks, as QEMU makes them.
 *
 * Every write to the image file names the structure it is meant to update
 * (or none, for guest data and bitmap data); before it is issued, the map
 * of metadata clusters says whether it would land on any other structure:
 * the header, the L1 table, an L2 table, the refcount table, a refcount
 * block, the snapshot table, the bitmap directory or a bitmap table.  Such
 * a write only happens when refcounts or pointers are wrong (a hostile or
 * damaged image), and it would spread the damage: it fails with EIO
 * instead, the image is marked corrupt (incompatible bit 1, written at
 * once) and from then on nothing is written to it at all.
 *
 * The map is a hash table from host cluster index to a mask of the
 * structures the cluster holds (several when the image is damaged), filled
 * at open and kept up to date wherever a structure is placed or dropped.
 * A check costs one hash lookup per cluster written, and the map holds one
 * entry per metadata cluster (about one per 8192 data clusters for L2
 * tables, fewer for refcount blocks).
 */
#include <errno.h>
#include <unistd.h>

#include "qcow2.h"

#define INCOMPAT_OFFSET 72

static const char *meta_name(unsigned mask)
{
    static const char *const names[] = {
        "the header", "the L1 table", "an L2 table", "the refcount table",
        "a refcount block", "the snapshot table", "the bitmap directory",
        "a bitmap table",
    };
    unsigned bit = mask ? __builtin_ctz(mask) : 0;
    return bit < G_N_ELEMENTS(names) ? names[bit] : "metadata";
}

static gpointer cluster_key(uint64_t cluster)
{
    return (gpointer)(uintptr_t)cluster;
}

void qcow2_meta_add(struct qcow2_state *s, unsigned kind, uint64_t offset,
                    uint64_t len)
{
    if (len == 0 || !s->metadata) {
        return;
    }
    for (uint64_t c = offset >> s->cluster_bits;
         c <= (offset + len - 1) >> s->cluster_bits; c++) {
        unsigned mask = GPOINTER_TO_UINT(g_hash_table_lookup(s->metadata,
                                                             cluster_key(c)));
        g_hash_table_insert(s->metadata, cluster_key(c),
                            GUINT_TO_POINTER(mask | kind));
    }
}

void qcow2_meta_remove(struct qcow2_state *s, unsigned kind, uint64_t offset,
                       uint64_t len)
{
    if (len == 0 || !s->metadata) {
        return;
    }
    for (uint64_t c = offset >> s->cluster_bits;
         c <= (offset + len - 1) >> s->cluster_bits; c++) {
        unsigned mask = GPOINTER_TO_UINT(g_hash_table_lookup(s->metadata,
                                                             cluster_key(c)));
        mask &= ~kind;
        if (mask) {
            g_hash_table_insert(s->metadata, cluster_key(c),
                                GUINT_TO_POINTER(mask));
        } else {
            g_hash_table_remove(s->metadata, cluster_key(c));
        }
    }
}

void qcow2_meta_bitmaps(struct qcow2_state *s, bool add)
{
    void (*update)(struct qcow2_state *, unsigned, uint64_t, uint64_t) =
        add ? qcow2_meta_add : qcow2_meta_remove;

    if (s->bitmaps->len > 0) {
        update(s, QCOW2_META_BITMAP_DIR, s->bitmap_dir_offset,
               s->bitmap_dir_size);
    }
    for (guint i = 0; i < s->bitmaps->len; i++) {
        const struct qcow2_bitmap *bm = g_ptr_array_index(s->bitmaps, i);
        update(s, QCOW2_META_BITMAP_TABLE, bm->table_offset,
               (uint64_t)bm->table_size * 8);
    }
}

void qcow2_meta_build(struct qcow2_state *s)
{
    const uint64_t cs = s->cluster_size;

    s->metadata = g_hash_table_new(g_direct_hash, g_direct_equal);
    qcow2_meta_add(s, QCOW2_META_HEADER, 0, cs);
    qcow2_meta_add(s, QCOW2_META_L1, s->l1_offset, (uint64_t)s->l1_size * 8);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t offset = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK;
        if (offset && !(offset & (cs - 1))) {
            qcow2_meta_add(s, QCOW2_META_L2, offset, cs);
        }
    }
    qcow2_meta_add(s, QCOW2_META_REFTABLE, s->reftable_offset,
                   (uint64_t)s->reftable_clusters * cs);
    for (uint64_t t = 0; t < s->reftable_entries; t++) {
        uint64_t offset = s->reftable[t] & QCOW2_REFT_OFFSET_MASK;
        if (offset && !(offset & (cs - 1))) {
            qcow2_meta_add(s, QCOW2_META_REFBLOCK, offset, cs);
        }
    }
    if (s->nb_snapshots > 0 && s->snapshots_offset) {
        /* Only its first cluster: images with snapshots are read-only
         * here, the table is not parsed. */
        qcow2_meta_add(s, QCOW2_META_SNAPSHOTS, s->snapshots_offset, cs);
    }
    qcow2_meta_bitmaps(s, true);
}

void qcow2_meta_free(struct qcow2_state *s)
{
    g_clear_pointer(&s->metadata, g_hash_table_destroy);
}

/* Mark the image corrupt on disk (v3: incompatible bit 1) and stop
 * writing to it.  Written directly: the header field is exempt. */
static void mark_corrupt(struct qcow2_state *s)
{
    if (s->corrupt) {
        return;
    }
    s->corrupt = true;
    s->incompat |= QCOW2_INCOMPAT_CORRUPT;
    if (s->version < 3) {
        return;
    }
    uint8_t field[8];
    put_be64(field, s->incompat);
    if (host_pwrite(s->fd, field, sizeof(field), INCOMPAT_OFFSET) < 0 ||
        fdatasync(s->fd) < 0) {
        g_warning("%s: cannot set the corrupt bit in the header",
                  s->filename);
    }
}

int qcow2_overlap_check(struct qcow2_state *s, unsigned kind,
                        uint64_t offset, uint64_t len)
{
    if (s->corrupt) {
        return -EIO;
    }
    if (len == 0 || !s->metadata) {
        return 0;
    }
    for (uint64_t c = offset >> s->cluster_bits;
         c <= (offset + len - 1) >> s->cluster_bits; c++) {
        unsigned mask = GPOINTER_TO_UINT(g_hash_table_lookup(s->metadata,
                                                             cluster_key(c)));
        if (mask & ~kind) {
            g_warning("%s: metadata overlap: a write of %s at offset %"
                      G_GUINT64_FORMAT " would land on %s (cluster %"
                      G_GUINT64_FORMAT "); image marked corrupt, used "
                      "read-only from now on", s->filename,
                      kind ? meta_name(kind) : "data", offset,
                      meta_name(mask & ~kind), c);
            mark_corrupt(s);
            return -EIO;
        }
    }
    return 0;
}

int qcow2_pwrite_checked(struct qcow2_state *s, unsigned kind,
                         const void *buf, size_t len, uint64_t offset)
{
    int ret = qcow2_overlap_check(s, kind, offset, len);
    if (ret < 0) {
        return ret;
    }
    return host_pwrite(s->fd, buf, len, offset);
}
