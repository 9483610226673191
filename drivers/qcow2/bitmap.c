/* chainfs qcow2: persistent dirty bitmaps (the bitmaps extension).
 *
 * On disk, the bitmaps header extension points at a directory of entries;
 * each names a bitmap table whose entries point at data clusters of bits
 * (or say that a cluster of bits is all zeros or all ones).  The
 * directory is validated at open, only when autoclear bit 0 says it is
 * current: a hostile one fails the open cleanly, a table that does not
 * fit the disk only makes its bitmap "in use".  It lives in s->bitmaps.
 *
 * bitmaps_store replaces the whole set.  New tables, data and directory
 * go to newly allocated clusters, the refcounts and the file are synced,
 * then one write of sector 0 switches to them: the bitmaps extension sits
 * first after the header, so a new directory changes only that sector.
 * The clusters only the old set referenced are freed afterwards.  A crash
 * leaves the old set or the new one, at worst with leaked clusters.
 * bitmap_read reads tables and data without the lock: nothing changes
 * them while no store runs, and stores never run concurrently with it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dirty-bitmap.h"
#include "qcow2.h"

/* QEMU's limits, so that what one writes the other opens. */
#define MAX_BITMAPS 65535u
#define MAX_DIRECTORY_BYTES (64ull << 20)
#define MAX_NAME_BYTES 1023u
#define MAX_TABLE_ENTRIES 0x8000000u
#define MAX_BITMAP_BYTES (512ull << 20)     /* table entries * cluster */
#define MIN_GRANULARITY_BITS 9
#define MAX_GRANULARITY_BITS 31
#define BITMAP_TYPE_DIRTY_TRACKING 1
#define DIR_ENTRY_HEADER 24                 /* fixed part of an entry */
#define EXT_DATA_LEN 24                     /* bitmaps extension payload */

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

static struct qcow2_bitmap *find_bitmap(GPtrArray *set, const char *name)
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
static uint64_t table_entries_needed(struct qcow2_state *s, unsigned gbits)
{
    uint64_t size = s->size & ~511ull;
    uint64_t chunks = (size >> gbits) + ((size & ((1ull << gbits) - 1)) != 0);
    uint64_t bytes = (chunks + 7) / 8;
    return (bytes + s->cluster_size - 1) >> s->cluster_bits;
}

static uint64_t round_to_clusters(struct qcow2_state *s, uint64_t bytes)
{
    return (bytes + s->cluster_size - 1) & ~(s->cluster_size - 1);
}

/* Read a bitmap table (size entries), in host byte order. */
static int read_table(struct qcow2_state *s, uint64_t offset, uint32_t size,
                      uint64_t **out)
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
    if (dir_size - *pos < DIR_ENTRY_HEADER) {
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
    uint64_t len = ((uint64_t)DIR_ENTRY_HEADER + extra + name_size + 7) &
                   ~7ull;

    if (name_size == 0 || name_size > MAX_NAME_BYTES) {
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
    const char *name = (const char *)e + DIR_ENTRY_HEADER + extra;
    if (memchr(name, 0, name_size)) {
        set_error(errp, EINVAL, s->filename,
                  "bitmap %u has a NUL byte in its name", index);
        return false;
    }
    if (type != BITMAP_TYPE_DIRTY_TRACKING) {
        set_error(errp, ENOTSUP, s->filename,
                  "bitmap %u has an unknown type %u", index, type);
        return false;
    }
    if (gbits < MIN_GRANULARITY_BITS || gbits > MAX_GRANULARITY_BITS) {
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
        table_size == 0 || table_size > MAX_TABLE_ENTRIES ||
        (uint64_t)table_size * cs > MAX_BITMAP_BYTES) {
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
    bm->damaged = table_size != table_entries_needed(s, gbits);
    *pos += len;
    *out = bm;
    return true;
}

struct byte_range {
    uint64_t offset;
    uint64_t len;
};

static int compare_ranges(const void *a, const void *b)
{
    const struct byte_range *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Refuse tables overlapping each other, the directory or cluster 0. */
static bool check_overlaps(struct qcow2_state *s, GPtrArray *set,
                           uint64_t dir_offset, uint64_t dir_size,
                           GError **errp)
{
    guint n = set->len + 2;
    g_autofree struct byte_range *r = g_new(struct byte_range, n);
    r[0] = (struct byte_range){ 0, s->cluster_size };
    r[1] = (struct byte_range){ dir_offset, round_to_clusters(s, dir_size) };
    for (guint i = 0; i < set->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(set, i);
        r[i + 2] = (struct byte_range){
            bm->table_offset,
            round_to_clusters(s, (uint64_t)bm->table_size * 8) };
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
    if (ext_len != EXT_DATA_LEN) {
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
    if (nb == 0 || nb > MAX_BITMAPS) {
        set_error(errp, EINVAL, s->filename,
                  "invalid number of bitmaps %u", nb);
        return false;
    }
    if (dir_size < (uint64_t)nb * DIR_ENTRY_HEADER ||
        dir_size > MAX_DIRECTORY_BYTES) {
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
    put_be32(buf + 4, EXT_DATA_LEN);
    put_be32(buf + 8, s->bitmaps->len);
    put_be32(buf + 12, 0);
    put_be64(buf + 16, s->bitmap_dir_size);
    put_be64(buf + 24, s->bitmap_dir_offset);
    return 8 + EXT_DATA_LEN;
}

void qcow2_bitmaps_resized(struct qcow2_state *s)
{
    for (guint i = 0; i < s->bitmaps->len; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(s->bitmaps, i);
        bm->damaged = bm->table_size !=
                      table_entries_needed(s, bm->granularity_bits);
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
    struct qcow2_bitmap *found = find_bitmap(s->bitmaps, name);
    struct qcow2_bitmap bm = found ? *found : (struct qcow2_bitmap){ 0 };
    uint64_t host_end = s->host_end;
    uint64_t needed = found ? table_entries_needed(s, bm.granularity_bits)
                            : 0;
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
    int ret = read_table(s, bm.table_offset, bm.table_size, &table);
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

/* ---- bitmaps_store ---- */

/* The clusters one store allocated: freed again if it fails before the
 * header switches, never freed by the clean-up of the old set. */
struct store {
    struct qcow2_state *s;
    GArray *allocated;      /* struct byte_range */
    uint8_t *cluster;       /* scratch, one cluster */
};

/* Allocate clusters for buf (len, a multiple of the cluster size) and
 * write it there. */
static int alloc_write(struct store *st, const void *buf, uint64_t len,
                       uint64_t *offset)
{
    struct qcow2_state *s = st->s;
    uint64_t got;
    int ret = qcow2_alloc_clusters(s, len >> s->cluster_bits, false, offset,
                                   &got);
    if (ret < 0) {
        return ret;
    }
    struct byte_range r = { *offset, len };
    g_array_append_val(st->allocated, r);
    return host_pwrite(s->fd, buf, len, *offset);
}

/* Write a table (host byte order, size entries) to new clusters. */
static int write_table(struct store *st, uint64_t *table, uint32_t size,
                       uint64_t *offset)
{
    uint64_t bytes = round_to_clusters(st->s, (uint64_t)size * 8);
    g_autofree uint64_t *be = g_malloc0(bytes);
    for (uint32_t i = 0; i < size; i++) {
        be[i] = htobe64(table[i]);
    }
    return alloc_write(st, be, bytes, offset);
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
        int ret = alloc_write(st, st->cluster, cs, &table[i]);
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
    bm->table_size = table_entries_needed(s, bm->granularity_bits);
    if (!e->in_use) {
        return write_bits(st, e->bits, bm->table_size, &bm->table_offset);
    }
    struct qcow2_bitmap *old = find_bitmap(s->bitmaps, e->name);
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
        size_t len = (DIR_ENTRY_HEADER + name_len + 7) & ~(size_t)7;
        uint8_t e[DIR_ENTRY_HEADER + MAX_NAME_BYTES + 8] = { 0 };
        put_be64(e, bm->table_offset);
        put_be32(e + 8, bm->table_size);
        put_be32(e + 12, bm->flags);
        e[16] = BITMAP_TYPE_DIRTY_TRACKING;
        e[17] = bm->granularity_bits;
        e[18] = name_len >> 8;
        e[19] = name_len & 0xff;
        memcpy(e + DIR_ENTRY_HEADER, bm->name, name_len);
        g_byte_array_append(dir, e, len);
    }
    *size = dir->len;
    *padded = round_to_clusters(s, dir->len);
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
    int ret = read_table(s, bm->table_offset, bm->table_size, &table);
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
        struct byte_range *r = &g_array_index(st->allocated,
                                              struct byte_range, i);
        add_clusters(s, keep, r->offset, r->len);
    }
    for (guint i = 0; i < new_set->len && ret == 0; i++) {
        struct qcow2_bitmap *bm = g_ptr_array_index(new_set, i);
        struct qcow2_bitmap *old = find_bitmap(s->bitmaps, bm->name);
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

    s->bitmaps = *new_set;
    s->bitmap_dir_offset = dir_offset;
    s->bitmap_dir_size = dir_size;
    if (s->bitmaps->len > 0) {
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    int ret = qcow2_rewrite_cluster0(s, node->backing_name,
                                     node->backing_format, true);
    *maybe_written = ret < 0 && ret != -ENOSPC && ret != -E2BIG;
    if (ret < 0) {
        s->bitmaps = old_set;
        s->bitmap_dir_offset = old_offset;
        s->bitmap_dir_size = old_size;
        s->autoclear = old_autoclear;
        return ret;
    }
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

    if (n > MAX_BITMAPS) {
        set_error(errp, EINVAL, s->filename, "too many bitmaps (%zu)", n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct block_bitmap_entry *e = &entries[i];
        size_t name_len = e->name ? strlen(e->name) : 0;
        uint32_t g = e->granularity;
        if (name_len == 0 || name_len > MAX_NAME_BYTES) {
            set_error(errp, EINVAL, s->filename, "invalid bitmap name");
            return false;
        }
        if (!g_hash_table_add(names, (gpointer)e->name)) {
            set_error(errp, EINVAL, s->filename,
                      "two bitmaps are named %s", e->name);
            return false;
        }
        if (g < (1u << MIN_GRANULARITY_BITS) || (g & (g - 1))) {
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
        uint64_t entries_needed = table_entries_needed(s, __builtin_ctz(g));
        if (entries_needed == 0) {
            set_error(errp, EINVAL, s->filename, "bitmap %s: the disk is "
                      "smaller than a sector", e->name);
            return false;
        }
        if (entries_needed > MAX_TABLE_ENTRIES ||
            entries_needed * s->cluster_size > MAX_BITMAP_BYTES) {
            set_error(errp, EFBIG, s->filename, "bitmap %s: too large for "
                      "the image (granularity %u)", e->name, g);
            return false;
        }
        dir_size += (DIR_ENTRY_HEADER + name_len + 7) & ~(size_t)7;
    }
    if (dir_size > MAX_DIRECTORY_BYTES) {
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
        ret = alloc_write(st, dir, padded, &dir_offset);
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
            struct byte_range *r = &g_array_index(st->allocated,
                                                  struct byte_range, i);
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
        .allocated = g_array_new(false, false, sizeof(struct byte_range)),
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
