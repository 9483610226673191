/* chainfs qcow2: bitmaps_store, the crash-atomic replacement of the
 * whole set of persistent bitmaps.
 *
 * New tables, data and directory go to newly allocated clusters, the
 * refcounts and the file are synced, then one write of sector 0 switches
 * to them: the bitmaps extension sits first after the header, so a new
 * directory changes only that sector (qcow2_rewrite_cluster0).  The
 * clusters only the old set referenced are freed afterwards.  A crash
 * leaves the old set or the new one, at worst with leaked clusters.  The
 * whole store runs under s->lock: guest I/O waits, allocations cannot
 * race with it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dirty-bitmap.h"
#include "qcow2.h"

static void G_GNUC_PRINTF(4, 5)
set_error(GError **errp, int code, const char *filename, const char *fmt,
          ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *reason = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, CHAINFS_ERROR, code, "%s: %s", filename, reason);
}

/* The clusters one store allocated: freed again if it fails before the
 * header switches, never freed by the clean-up of the old set. */
struct store {
    struct qcow2_state *s;
    GArray *allocated;      /* struct qcow2_host_range */
    uint8_t *cluster;       /* scratch, one cluster */
};

/* Allocate clusters for buf (len, a multiple of the cluster size) and
 * write it there; kind names what it is (0: bitmap data). */
static int alloc_write(struct store *st, unsigned kind, const void *buf,
                       uint64_t len, uint64_t *offset)
{
    struct qcow2_state *s = st->s;
    uint64_t got;
    int ret = qcow2_alloc_clusters(s, len >> s->cluster_bits, false, offset,
                                   &got);
    if (ret < 0) {
        return ret;
    }
    struct qcow2_host_range r = { *offset, len };
    g_array_append_val(st->allocated, r);
    return qcow2_pwrite_checked(s, kind, buf, len, *offset);
}

/* Write a table (host byte order, size entries) to new clusters. */
static int write_table(struct store *st, uint64_t *table, uint32_t size,
                       uint64_t *offset)
{
    uint64_t bytes = qcow2_round_to_clusters(st->s, (uint64_t)size * 8);
    g_autofree uint64_t *be = g_malloc0(bytes);
    for (uint32_t i = 0; i < size; i++) {
        be[i] = htobe64(table[i]);
    }
    return alloc_write(st, QCOW2_META_BITMAP_TABLE, be, bytes, offset);
}

static bool all_ones(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0xff) {
            return false;
        }
    }
    return true;
}

/* Write the bits of bitmap: a data cluster for each cluster of bits that
 * is neither all clear (entry 0) nor all set (the all-ones entry). */
static int write_bits(struct store *st, struct dirty_bitmap *bitmap,
                      uint32_t size, uint64_t *table_offset)
{
    const uint64_t cs = st->s->cluster_size;
    g_autofree uint64_t *table = g_new0(uint64_t, size);

    for (uint32_t i = 0; i < size; i++) {
        if (!dirty_bitmap_serialize(bitmap, (uint64_t)i * cs * 8, cs,
                                    st->cluster)) {
            continue;
        }
        if (all_ones(st->cluster, cs)) {
            table[i] = QCOW2_BMT_ALL_ONES;
            continue;
        }
        int ret = alloc_write(st, 0, st->cluster, cs, &table[i]);
        if (ret < 0) {
            return ret;
        }
    }
    return write_table(st, table, size, table_offset);
}

/* The new directory entry for e: its bits written, its old table kept
 * (in use, same name and granularity) or an empty table. */
static int store_entry(struct store *st, const struct block_bitmap_entry *e,
                       struct qcow2_bitmap *bm)
{
    struct qcow2_state *s = st->s;
    bm->name = g_strdup(e->name);
    bm->granularity_bits = __builtin_ctz(e->granularity);
    bm->flags = (e->enabled ? QCOW2_BME_AUTO : 0) |
                (e->in_use ? QCOW2_BME_IN_USE : 0);
    bm->table_size = qcow2_bitmap_table_entries(s, bm->granularity_bits);
    if (!e->in_use) {
        return write_bits(st, e->bits, bm->table_size, &bm->table_offset);
    }
    struct qcow2_bitmap *old = qcow2_bitmap_find(s->bitmaps, e->name);
    if (old && old->granularity_bits == bm->granularity_bits) {
        bm->table_offset = old->table_offset;
        bm->table_size = old->table_size;
        return 0;
    }
    g_autofree uint64_t *table = g_new0(uint64_t, bm->table_size);
    return write_table(st, table, bm->table_size, &bm->table_offset);
}

/* The directory of set, padded to whole clusters. */
static uint8_t *encode_directory(struct qcow2_state *s, GPtrArray *set,
                                 uint64_t *size, uint64_t *padded)
{
    GByteArray *dir = g_byte_array_new();
    for (guint i = 0; i < set->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(set, i);
        size_t name_len = strlen(bm->name);
        size_t len = (QCOW2_BM_DIR_ENTRY_HEADER + name_len + 7) & ~(size_t)7;
        uint8_t e[QCOW2_BM_DIR_ENTRY_HEADER + QCOW2_BM_MAX_NAME_BYTES + 8] =
            { 0 };
        put_be64(e, bm->table_offset);
        put_be32(e + 8, bm->table_size);
        put_be32(e + 12, bm->flags);
        e[16] = QCOW2_BM_TYPE_DIRTY_TRACKING;
        e[17] = bm->granularity_bits;
        e[18] = name_len >> 8;
        e[19] = name_len & 0xff;
        memcpy(e + QCOW2_BM_DIR_ENTRY_HEADER, bm->name, name_len);
        g_byte_array_append(dir, e, len);
    }
    *size = dir->len;
    *padded = qcow2_round_to_clusters(s, dir->len);
    g_byte_array_set_size(dir, *padded);
    memset(dir->data + *size, 0, *padded - *size);
    return g_byte_array_free(dir, false);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void add_clusters(struct qcow2_state *s, GArray *to, uint64_t offset,
                         uint64_t len)
{
    for (uint64_t c = offset >> s->cluster_bits;
         c < (offset + len + s->cluster_size - 1) >> s->cluster_bits; c++) {
        g_array_append_val(to, c);
    }
}

/* The table and data clusters of bm (damaged entries skipped). */
static int add_bitmap_clusters(struct qcow2_state *s,
                               const struct qcow2_bitmap *bm, GArray *to)
{
    g_autofree uint64_t *table = NULL;
    int ret = qcow2_bitmap_read_table(s, bm->table_offset, bm->table_size,
                                      &table);
    if (ret < 0) {
        return ret;
    }
    add_clusters(s, to, bm->table_offset, (uint64_t)bm->table_size * 8);
    for (uint32_t i = 0; i < bm->table_size; i++) {
        uint64_t offset = table[i] & QCOW2_BMT_OFFSET_MASK;
        if (offset && !(table[i] & QCOW2_BMT_RESERVED_MASK) &&
            !(offset & (s->cluster_size - 1)) && offset < s->host_end) {
            add_clusters(s, to, offset, s->cluster_size);
        }
    }
    return 0;
}

static void sort_unique(GArray *a)
{
    if (a->len == 0) {
        return;
    }
    qsort(a->data, a->len, sizeof(uint64_t), compare_u64);
    guint out = 1;
    for (guint i = 1; i < a->len; i++) {
        if (g_array_index(a, uint64_t, i) !=
            g_array_index(a, uint64_t, out - 1)) {
            g_array_index(a, uint64_t, out++) = g_array_index(a, uint64_t, i);
        }
    }
    g_array_set_size(a, out);
}

/* The clusters (indices) that only the current set references, given the
 * new set and what this store allocated: what to free after the switch.
 * Each counted once, even if a damaged image references it twice. */
static int clusters_to_free(struct store *st, GPtrArray *new_set,
                            GArray *frees)
{
    struct qcow2_state *s = st->s;
    g_autoptr(GArray) keep = g_array_new(false, false, sizeof(uint64_t));
    int ret = 0;

    for (guint i = 0; i < st->allocated->len; i++) {
        struct qcow2_host_range *r = &g_array_index(st->allocated,
                                              struct qcow2_host_range, i);
        add_clusters(s, keep, r->offset, r->len);
    }
    for (guint i = 0; i < new_set->len && ret == 0; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(new_set, i);
        struct qcow2_bitmap *old = qcow2_bitmap_find(s->bitmaps, bm->name);
        if (old && old->table_offset == bm->table_offset) {
            ret = add_bitmap_clusters(s, bm, keep);
        }
    }
    if (s->bitmaps->len > 0) {
        add_clusters(s, frees, s->bitmap_dir_offset, s->bitmap_dir_size);
    }
    for (guint i = 0; i < s->bitmaps->len && ret == 0; i++) {
        ret = add_bitmap_clusters(s, g_ptr_array_index(s->bitmaps, i),
                                  frees);
    }
    if (ret < 0) {
        return ret;
    }
    sort_unique(keep);
    sort_unique(frees);
    guint out = 0, k = 0;
    for (guint i = 0; i < frees->len; i++) {
        uint64_t c = g_array_index(frees, uint64_t, i);
        while (k < keep->len && g_array_index(keep, uint64_t, k) < c) {
            k++;
        }
        if (c != 0 &&
            (k == keep->len || g_array_index(keep, uint64_t, k) != c)) {
            g_array_index(frees, uint64_t, out++) = c;
        }
    }
    g_array_set_size(frees, out);
    return 0;
}

/* Switch the header to new_set (directory at dir_offset): one atomic
 * write of sector 0.  *maybe_written says whether a failure may have
 * left the new header on disk anyway. */
static int commit_header(struct store *st, GPtrArray **new_set,
                         uint64_t dir_offset, uint64_t dir_size,
                         bool *maybe_written)
{
    struct qcow2_state *s = st->s;
    struct block_node *node = s->node;
    GPtrArray *old_set = s->bitmaps;
    uint64_t old_offset = s->bitmap_dir_offset;
    uint64_t old_size = s->bitmap_dir_size;
    uint64_t old_autoclear = s->autoclear;

    qcow2_meta_bitmaps(s, false);
    s->bitmaps = *new_set;
    s->bitmap_dir_offset = dir_offset;
    s->bitmap_dir_size = dir_size;
    if (s->bitmaps->len > 0) {
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    int ret = qcow2_rewrite_cluster0(s, node->backing_name,
                                     node->backing_format);
    *maybe_written = ret < 0 && ret != -ENOSPC && ret != -E2BIG;
    if (ret < 0) {
        s->bitmaps = old_set;
        s->bitmap_dir_offset = old_offset;
        s->bitmap_dir_size = old_size;
        s->autoclear = old_autoclear;
        qcow2_meta_bitmaps(s, true);
        return ret;
    }
    /* The header names the new set: its structures are metadata now, the
     * old set's (freed next) no longer. */
    qcow2_meta_bitmaps(s, true);
    *new_set = old_set;
    return 0;
}

/* Everything bitmaps_store can refuse before touching the image. */
static bool check_entries(struct qcow2_state *s,
                          const struct block_bitmap_entry *entries, size_t n,
                          GError **errp)
{
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    uint64_t dir_size = 0;

    if (n > QCOW2_BM_MAX_BITMAPS) {
        set_error(errp, EINVAL, s->filename, "too many bitmaps (%zu)", n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct block_bitmap_entry *e = &entries[i];
        size_t name_len = e->name ? strlen(e->name) : 0;
        uint32_t g = e->granularity;
        if (name_len == 0 || name_len > QCOW2_BM_MAX_NAME_BYTES) {
            set_error(errp, EINVAL, s->filename, "invalid bitmap name");
            return false;
        }
        if (!g_hash_table_add(names, (gpointer)e->name)) {
            set_error(errp, EINVAL, s->filename,
                      "two bitmaps are named %s", e->name);
            return false;
        }
        if (g < (1u << QCOW2_BM_MIN_GRANULARITY_BITS) || (g & (g - 1))) {
            set_error(errp, EINVAL, s->filename,
                      "bitmap %s: invalid granularity %u", e->name, g);
            return false;
        }
        if (!e->in_use &&
            (!e->bits || dirty_bitmap_granularity(e->bits) != g)) {
            set_error(errp, EINVAL, s->filename,
                      "bitmap %s: no bits of granularity %u", e->name, g);
            return false;
        }
        uint64_t entries_needed =
            qcow2_bitmap_table_entries(s, __builtin_ctz(g));
        if (entries_needed == 0) {
            set_error(errp, EINVAL, s->filename, "bitmap %s: the disk is "
                      "smaller than a sector", e->name);
            return false;
        }
        if (entries_needed > QCOW2_BM_MAX_TABLE_ENTRIES ||
            entries_needed * s->cluster_size > QCOW2_BM_MAX_BITMAP_BYTES) {
            set_error(errp, EFBIG, s->filename, "bitmap %s: too large for "
                      "the image (granularity %u)", e->name, g);
            return false;
        }
        dir_size += (QCOW2_BM_DIR_ENTRY_HEADER + name_len + 7) & ~(size_t)7;
    }
    if (dir_size > QCOW2_BM_MAX_DIRECTORY_BYTES) {
        set_error(errp, EINVAL, s->filename, "bitmap directory too large");
        return false;
    }
    return true;
}

/* Free the clusters of the replaced set: leaks at worst on error. */
static void free_clusters_list(struct qcow2_state *s, GArray *frees)
{
    for (guint i = 0; i < frees->len; i++) {
        (void)qcow2_free_clusters(s, g_array_index(frees, uint64_t, i)
                                     << s->cluster_bits, s->cluster_size);
    }
}

static int store_locked(struct store *st,
                        const struct block_bitmap_entry *entries, size_t n)
{
    struct qcow2_state *s = st->s;
    g_autoptr(GPtrArray) new_set = qcow2_bitmap_array_new();
    g_autoptr(GArray) frees = g_array_new(false, false, sizeof(uint64_t));
    uint64_t dir_offset = 0, dir_size = 0;
    bool maybe_written = false;
    int ret = 0;

    for (size_t i = 0; i < n && ret == 0; i++) {
        struct qcow2_bitmap *bm = g_new0(struct qcow2_bitmap, 1);
        g_ptr_array_add(new_set, bm);
        ret = store_entry(st, &entries[i], bm);
    }
    if (ret == 0 && n > 0) {
        uint64_t padded;
        g_autofree uint8_t *dir = encode_directory(s, new_set, &dir_size,
                                                   &padded);
        ret = alloc_write(st, QCOW2_META_BITMAP_DIR, dir, padded,
                          &dir_offset);
    }
    if (ret == 0) {
        ret = clusters_to_free(st, new_set, frees);
    }
    if (ret == 0) {
        /* Refcounts (and with them data, tables, directory) durable
         * before the header names any of it. */
        ret = qcow2_refcounts_sync(s);
    }
    if (ret == 0) {
        ret = commit_header(st, &new_set, dir_offset, dir_size,
                            &maybe_written);
    }
    if (ret < 0) {
        for (guint i = 0; i < st->allocated->len && !maybe_written; i++) {
            struct qcow2_host_range *r = &g_array_index(st->allocated,
                                                  struct qcow2_host_range, i);
            (void)qcow2_free_clusters(s, r->offset, r->len);
        }
        return ret;
    }
    free_clusters_list(s, frees);
    /* On disk without leaks (qemu-img check) as soon as we return; the
     * set is stored either way, a failure here only leaks. */
    (void)qcow2_refcounts_sync(s);
    return 0;
}

bool qcow2_bitmaps_store(struct block_node *node,
                         const struct block_bitmap_entry *entries, size_t n,
                         GError **errp)
{
    struct qcow2_state *s = node->opaque;
    if (!qcow2_bitmaps_supported(node, errp) ||
        !check_entries(s, entries, n, errp)) {
        return false;
    }
    struct store st = {
        .s = s,
        .allocated = g_array_new(false, false,
                                 sizeof(struct qcow2_host_range)),
    };
    st.cluster = g_malloc(s->cluster_size);
    pthread_mutex_lock(&s->lock);
    int ret = store_locked(&st, entries, n);
    pthread_mutex_unlock(&s->lock);
    g_array_unref(st.allocated);
    g_free(st.cluster);
    if (ret == -ENOSPC || ret == -E2BIG) {
        set_error(errp, ret == -E2BIG ? E2BIG : ENOSPC, s->filename,
                  "cannot store bitmaps: %s", ret == -E2BIG ?
                  "the header cluster is full" :
                  "no space (or no atomic header update possible)");
        return false;
    }
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot store bitmaps: %s",
                  g_strerror(-ret));
        return false;
    }
    return true;
}
