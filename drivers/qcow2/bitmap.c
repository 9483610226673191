/* chainfs qcow2: persistent dirty bitmaps (the bitmaps extension).
 *
 * On disk, the bitmaps header extension points at a directory of entries;
 * each names a bitmap table whose entries point at data clusters of bits
 * (or say that a cluster of bits is all zeros or all ones).  The
 * directory is validated at open, only when autoclear bit 0 says it is
 * current: a hostile one fails the open cleanly, a table that does not
 * fit the disk only makes its bitmap "in use".  It lives in s->bitmaps.
 *
 * bitmap-store.c replaces the whole set.  bitmap_read reads tables and
 * data without the lock: only a store changes them, and stores never run
 * concurrently with reads.
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

static void bitmap_free(gpointer p)
{
    struct qcow2_bitmap *bm = p;
    g_free(bm->name);
    g_free(bm);
}

GPtrArray *qcow2_bitmap_array_new(void)
{
    return g_ptr_array_new_with_free_func(bitmap_free);
}

struct qcow2_bitmap *qcow2_bitmap_find(GPtrArray *set, const char *name)
{
    for (guint i = 0; i < set->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(set, i);
        if (strcmp(bm->name, name) == 0) {
            return bm;
        }
    }
    return NULL;
}

/* Table entries a bitmap of granularity 2^gbits needs for the disk, as
 * QEMU counts them: it wants exactly this many, sees the size in whole
 * sectors, and refuses empty tables (so a disk under 512 bytes can have
 * no bitmap). */
uint64_t qcow2_bitmap_table_entries(struct qcow2_state *s, unsigned gbits)
{
    uint64_t size = s->size & ~511ull;
    uint64_t chunks = (size >> gbits) + ((size & ((1ull << gbits) - 1)) != 0);
    uint64_t bytes = (chunks + 7) / 8;
    return (bytes + s->cluster_size - 1) >> s->cluster_bits;
}


int qcow2_bitmap_read_table(struct qcow2_state *s, uint64_t offset,
                            uint32_t size, uint64_t **out)
{
    uint64_t *table = g_new(uint64_t, size);
    int ret = qcow2_pread_data(s->fd, table, (uint64_t)size * 8, offset);
    if (ret < 0) {
        g_free(table);
        return ret;
    }
    for (uint32_t i = 0; i < size; i++) {
        table[i] = be64toh(table[i]);
    }
    *out = table;
    return 0;
}

/* ---- parsing at open ---- */

/* Parse the directory entry at *pos; errors name the entry's index. */
static bool parse_dir_entry(struct qcow2_state *s, const uint8_t *dir,
                            uint64_t dir_size, uint64_t *pos, unsigned index,
                            uint64_t file_size, struct qcow2_bitmap **out,
                            GError **errp)
{
    const uint64_t cs = s->cluster_size;
    if (dir_size - *pos < QCOW2_BM_DIR_ENTRY_HEADER) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap directory entry %u is truncated", index);
        return false;
    }
    const uint8_t *e = dir + *pos;
    uint64_t table_offset = get_be64(e);
    uint32_t table_size = get_be32(e + 8);
    uint32_t flags = get_be32(e + 12);
    uint8_t type = e[16];
    uint8_t gbits = e[17];
    uint32_t name_size = ((uint32_t)e[18] << 8) | e[19];
    uint32_t extra = get_be32(e + 20);
    uint64_t len = ((uint64_t)QCOW2_BM_DIR_ENTRY_HEADER + extra + name_size +
                    7) &
                   ~7ull;

    if (name_size == 0 || name_size > QCOW2_BM_MAX_NAME_BYTES) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u has an invalid name size %u", index, name_size);
        return false;
    }
    if (extra != 0 && !(flags & QCOW2_BME_EXTRA_DATA_COMPATIBLE)) {
        set_error(errp, ENOTSUP, s->filename,
                  "bitmap %u has extra data of an unknown kind", index);
        return false;
    }
    if (len > dir_size - *pos) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u does not fit in the bitmap directory", index);
        return false;
    }
    const char *name = (const char *)e + QCOW2_BM_DIR_ENTRY_HEADER + extra;
    if (memchr(name, 0, name_size)) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u has a NUL byte in its name", index);
        return false;
    }
    if (type != QCOW2_BM_TYPE_DIRTY_TRACKING) {
        set_error(errp, ENOTSUP, s->filename,
                  "bitmap %u has an unknown type %u", index, type);
        return false;
    }
    if (gbits < QCOW2_BM_MIN_GRANULARITY_BITS ||
        gbits > QCOW2_BM_MAX_GRANULARITY_BITS) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u has an invalid granularity 2^%u", index, gbits);
        return false;
    }
    if (flags & ~(QCOW2_BME_IN_USE | QCOW2_BME_AUTO |
                  QCOW2_BME_EXTRA_DATA_COMPATIBLE)) {
        set_error(errp, ENOTSUP, s->filename,
                  "bitmap %u has unknown flags 0x%x", index, flags);
        return false;
    }
    if (table_offset < cs || (table_offset & (cs - 1)) ||
        table_size == 0 || table_size > QCOW2_BM_MAX_TABLE_ENTRIES ||
        (uint64_t)table_size * cs > QCOW2_BM_MAX_BITMAP_BYTES) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u has an invalid table (offset %" G_GUINT64_FORMAT
                  ", %u entries)", index, table_offset, table_size);
        return false;
    }
    if (table_offset >= file_size ||
        (uint64_t)table_size * 8 > file_size - table_offset) {
        set_error(errp, EINVAL, s->filename,
                  "the table of bitmap %u is past the end of the file",
                  index);
        return false;
    }

    struct qcow2_bitmap *bm = g_new0(struct qcow2_bitmap, 1);
    bm->name = g_strndup(name, name_size);
    bm->granularity_bits = gbits;
    bm->flags = flags;
    bm->table_offset = table_offset;
    bm->table_size = table_size;
    /* QEMU too tolerates a wrong size only for a bitmap in use. */
    bm->damaged = table_size != qcow2_bitmap_table_entries(s, gbits);
    *pos += len;
    *out = bm;
    return true;
}

static int compare_ranges(const void *a, const void *b)
{
    const struct qcow2_host_range *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Refuse tables overlapping each other, the directory or cluster 0. */
static bool check_overlaps(struct qcow2_state *s, GPtrArray *set,
                           uint64_t dir_offset, uint64_t dir_size,
                           GError **errp)
{
    guint n = set->len + 2;
    g_autofree struct qcow2_host_range *r = g_new(struct qcow2_host_range, n);
    r[0] = (struct qcow2_host_range){ 0, s->cluster_size };
    r[1] = (struct qcow2_host_range){
        dir_offset, qcow2_round_to_clusters(s, dir_size) };
    for (guint i = 0; i < set->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(set, i);
        r[i + 2] = (struct qcow2_host_range){
            bm->table_offset,
            qcow2_round_to_clusters(s, (uint64_t)bm->table_size * 8) };
    }
    qsort(r, n, sizeof(*r), compare_ranges);
    for (guint i = 1; i < n; i++) {
        if (r[i].offset < r[i - 1].offset + r[i - 1].len) {
            set_error(errp, EINVAL, s->filename,
                      "bitmap tables overlap each other or the bitmap "
                      "directory (at %" G_GUINT64_FORMAT ")", r[i].offset);
            return false;
        }
    }
    return true;
}

static bool parse_directory(struct qcow2_state *s, const uint8_t *dir,
                            uint64_t dir_size, uint32_t nb,
                            uint64_t file_size, GPtrArray *set,
                            GError **errp)
{
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    uint64_t pos = 0;

    for (uint32_t i = 0; i < nb; i++) {
        struct qcow2_bitmap *bm;
        if (!parse_dir_entry(s, dir, dir_size, &pos, i, file_size, &bm,
                             errp)) {
            return false;
        }
        g_ptr_array_add(set, bm);
        if (!g_hash_table_add(names, bm->name)) {
            g_autofree char *shown = g_strescape(bm->name, NULL);
            set_error(errp, EINVAL, s->filename,
                      "two bitmaps are named \"%s\"", shown);
            return false;
        }
    }
    if (pos != dir_size) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap directory size %" G_GUINT64_FORMAT " does not "
                  "match its %u entries", dir_size, nb);
        return false;
    }
    return true;
}

bool qcow2_bitmaps_load(struct qcow2_state *s, const uint8_t *ext,
                        size_t ext_len, uint64_t file_size, GError **errp)
{
    const uint64_t cs = s->cluster_size;
    if (ext_len != QCOW2_BM_EXT_DATA_LEN) {
        set_error(errp, EINVAL, s->filename,
                  "invalid bitmaps extension length %zu", ext_len);
        return false;
    }
    uint32_t nb = get_be32(ext);
    uint32_t reserved = get_be32(ext + 4);
    uint64_t dir_size = get_be64(ext + 8);
    uint64_t dir_offset = get_be64(ext + 16);
    if (reserved != 0) {
        set_error(errp, EINVAL, s->filename,
                  "reserved field of the bitmaps extension is not zero");
        return false;
    }
    if (nb == 0 || nb > QCOW2_BM_MAX_BITMAPS) {
        set_error(errp, EINVAL, s->filename,
                  "invalid number of bitmaps %u", nb);
        return false;
    }
    if (dir_size < (uint64_t)nb * QCOW2_BM_DIR_ENTRY_HEADER ||
        dir_size > QCOW2_BM_MAX_DIRECTORY_BYTES) {
        set_error(errp, EINVAL, s->filename,
                  "invalid bitmap directory size %" G_GUINT64_FORMAT,
                  dir_size);
        return false;
    }
    if (dir_offset < cs || (dir_offset & (cs - 1)) ||
        dir_offset >= file_size || dir_size > file_size - dir_offset) {
        set_error(errp, EINVAL, s->filename,
                  "invalid bitmap directory offset %" G_GUINT64_FORMAT,
                  dir_offset);
        return false;
    }

    g_autofree uint8_t *dir = g_malloc(dir_size);
    int ret = host_pread(s->fd, dir, dir_size, dir_offset);
    if (ret < 0) {
        set_error(errp, -ret, s->filename,
                  "cannot read the bitmap directory: %s", g_strerror(-ret));
        return false;
    }
    g_autoptr(GPtrArray) set = qcow2_bitmap_array_new();
    if (!parse_directory(s, dir, dir_size, nb, file_size, set, errp) ||
        !check_overlaps(s, set, dir_offset, dir_size, errp)) {
        return false;
    }
    g_ptr_array_unref(s->bitmaps);
    s->bitmaps = g_steal_pointer(&set);
    s->bitmap_dir_offset = dir_offset;
    s->bitmap_dir_size = dir_size;
    return true;
}

size_t qcow2_bitmaps_ext_encode(struct qcow2_state *s, uint8_t *buf)
{
    if (s->bitmaps->len == 0) {
        return 0;
    }
    put_be32(buf, QCOW2_EXT_BITMAPS);
    put_be32(buf + 4, QCOW2_BM_EXT_DATA_LEN);
    put_be32(buf + 8, s->bitmaps->len);
    put_be32(buf + 12, 0);
    put_be64(buf + 16, s->bitmap_dir_size);
    put_be64(buf + 24, s->bitmap_dir_offset);
    return 8 + QCOW2_BM_EXT_DATA_LEN;
}

void qcow2_bitmaps_resized(struct qcow2_state *s)
{
    for (guint i = 0; i < s->bitmaps->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(s->bitmaps, i);
        bm->damaged = bm->table_size !=
                      qcow2_bitmap_table_entries(s, bm->granularity_bits);
    }
}

/* ---- the ops ---- */

bool qcow2_bitmaps_supported(struct block_node *node, GError **errp)
{
    struct qcow2_state *s = node->opaque;
    if (s->version < 3) {
        set_error(errp, ENOTSUP, s->filename, "persistent bitmaps need a "
                  "qcow2 version 3 image (compat=1.1)");
        return false;
    }
    if (s->read_only) {
        set_error(errp, ENOTSUP, s->filename, "persistent bitmaps need an "
                  "image open read-write");
        return false;
    }
    return true;
}

GPtrArray *qcow2_bitmaps_list(struct block_node *node, GError **errp)
{
    struct qcow2_state *s = node->opaque;
    (void)errp;
    GPtrArray *list =
        g_ptr_array_new_with_free_func((GDestroyNotify)block_bitmap_info_free);

    pthread_mutex_lock(&s->lock);
    for (guint i = 0; i < s->bitmaps->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(s->bitmaps, i);
        struct block_bitmap_info *info = g_new0(struct block_bitmap_info, 1);
        info->name = g_strdup(bm->name);
        info->granularity = 1u << bm->granularity_bits;
        info->enabled = bm->flags & QCOW2_BME_AUTO;
        info->in_use = (bm->flags & QCOW2_BME_IN_USE) || bm->damaged;
        g_ptr_array_add(list, info);
    }
    pthread_mutex_unlock(&s->lock);
    return list;
}

/* OR the bits of a table into bitmap; -EIO (with *bad the entry) for
 * damage. */
static int read_bits(struct qcow2_state *s, const uint64_t *table,
                     uint64_t entries, uint64_t host_end,
                     struct dirty_bitmap *bitmap, uint64_t *bad)
{
    const uint64_t cs = s->cluster_size;
    g_autofree uint8_t *buf = g_malloc(cs);

    for (uint64_t i = 0; i < entries; i++) {
        uint64_t e = table[i];
        uint64_t offset = e & QCOW2_BMT_OFFSET_MASK;
        *bad = i;
        if ((e & QCOW2_BMT_RESERVED_MASK) ||
            (offset != 0 && (e & QCOW2_BMT_ALL_ONES)) ||
            (offset & (cs - 1)) || offset >= host_end) {
            return -EIO;
        }
        if (offset == 0 && !(e & QCOW2_BMT_ALL_ONES)) {
            continue;
        }
        if (offset == 0) {
            memset(buf, 0xff, cs);
        } else {
            int ret = qcow2_pread_data(s->fd, buf, cs, offset);
            if (ret < 0) {
                return ret;
            }
        }
        dirty_bitmap_deserialize(bitmap, i * cs * 8, cs, buf);
    }
    return 0;
}

bool qcow2_bitmap_read(struct block_node *node, const char *name,
                       struct dirty_bitmap *bitmap, GError **errp)
{
    struct qcow2_state *s = node->opaque;

    pthread_mutex_lock(&s->lock);
    struct qcow2_bitmap *found = qcow2_bitmap_find(s->bitmaps, name);
    struct qcow2_bitmap bm = found ? *found : (struct qcow2_bitmap){ 0 };
    uint64_t host_end = s->host_end;
    uint64_t needed =
        found ? qcow2_bitmap_table_entries(s, bm.granularity_bits) : 0;
    pthread_mutex_unlock(&s->lock);

    if (!found) {
        set_error(errp, ENOENT, s->filename, "no bitmap named %s", name);
        return false;
    }
    if ((bm.flags & QCOW2_BME_IN_USE) || bm.damaged) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %s is marked in use (inconsistent)", name);
        return false;
    }
    if (dirty_bitmap_granularity(bitmap) != 1u << bm.granularity_bits) {
        set_error(errp, EINVAL, s->filename, "bitmap %s has granularity %u",
                  name, 1u << bm.granularity_bits);
        return false;
    }
    g_autofree uint64_t *table = NULL;
    int ret = qcow2_bitmap_read_table(s, bm.table_offset, bm.table_size,
                                      &table);
    uint64_t bad = 0;
    if (ret == 0) {
        ret = read_bits(s, table, MIN(needed, bm.table_size), host_end,
                        bitmap, &bad);
    }
    if (ret < 0) {
        set_error(errp, EIO, s->filename,
                  "bitmap %s: damaged table (entry %" G_GUINT64_FORMAT
                  "): %s", name, bad, g_strerror(-ret));
        return false;
    }
    return true;
}
