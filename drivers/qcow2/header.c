/* chainfs qcow2: the image header.  Parsing and validating it (hostile
 * images must fail cleanly), rewriting the backing file and growing the
 * virtual size.  create.c creates images.
 *
 * Cluster 0 holds the header, the header extensions and the backing file
 * name.  A backing rewrite builds the new content of cluster 0 in memory,
 * writes the new name where the old header does not point, then commits
 * with one 512-byte write of sector 0; layouts where that cannot be
 * arranged are refused (write_cluster0), never written non-atomically.
 * Single header fields are updated with one small pwrite.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"

#define V2_HEADER_LENGTH 72
#define V3_HEADER_LENGTH 104

/* One-line error "FILE: REASON" with errno code. */
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

/* Name of an incompatible feature bit from the image's feature table. */
static char *feature_name(const uint8_t *table, size_t len, unsigned bit)
{
    for (size_t pos = 0; table && pos + 48 <= len; pos += 48) {
        if (table[pos] == 0 && table[pos + 1] == bit) {
            return g_strndup((const char *)table + pos + 2, 46);
        }
    }
    return g_strdup_printf("bit %u", bit);
}

static bool check_incompat(struct qcow2_state *s, const uint8_t *ftable,
                           size_t ftable_len, GError **errp)
{
    const uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
                           QCOW2_INCOMPAT_COMPRESSION;
    uint64_t unknown = s->incompat & ~known;

    if (unknown) {
        unsigned bit = __builtin_ctzll(unknown);
        g_autofree char *name = feature_name(ftable, ftable_len, bit);
        const char *what = name;
        if (bit == 2) {
            what = "external data file";
        } else if (bit == 4) {
            what = "extended L2 entries";
        }
        set_error(errp, ENOTSUP, s->filename,
                  "unsupported qcow2 feature: %s (incompatible bit %u)",
                  what, bit);
        return false;
    }
    if ((s->incompat & QCOW2_INCOMPAT_COMPRESSION) &&
        (s->header_length <= V3_HEADER_LENGTH ||
         s->header_raw[V3_HEADER_LENGTH] == 0)) {
        set_error(errp, EINVAL, s->filename,
                  "compression type bit set without a compression type");
        return false;
    }
    if (s->header_length > V3_HEADER_LENGTH &&
        s->header_raw[V3_HEADER_LENGTH] != 0) {
        set_error(errp, ENOTSUP, s->filename,
                  "unsupported compression type %u (only zlib)",
                  s->header_raw[V3_HEADER_LENGTH]);
        return false;
    }
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT && !s->read_only) {
        set_error(errp, EROFS, s->filename,
                  "image is marked corrupt; it can only be opened "
                  "read-only (repair with qemu-img check -r all)");
        return false;
    }
    if (s->incompat & QCOW2_INCOMPAT_DIRTY && !s->read_only) {
        set_error(errp, EINVAL, s->filename,
                  "image is marked dirty (refcounts may be inconsistent); "
                  "repair it with qemu-img check -r all");
        return false;
    }
    return true;
}

/* Where parse_extensions found the bitmaps extension (NULL: none). */
struct bitmaps_ext_ref {
    const uint8_t *data;
    size_t len;
};

/* Walk the header extensions of cluster 0, keeping the ones to preserve.
 * The bitmaps extension is kept apart (bitmaps), and only when autoclear
 * bit 0 says it is current: otherwise a program that knows nothing of
 * bitmaps wrote the image since, and the extension is stale. */
static bool parse_extensions(struct qcow2_state *s, const uint8_t *c0,
                             uint64_t end, struct bitmaps_ext_ref *bitmaps,
                             GError **errp)
{
    const uint8_t *ftable = NULL;
    size_t ftable_len = 0;
    GByteArray *kept = g_byte_array_new();
    uint64_t pos = s->header_length;
    bool ok = false;

    while (pos + 8 <= end) {
        uint32_t type = get_be32(c0 + pos);
        uint64_t len = get_be32(c0 + pos + 4);
        uint64_t padded = (len + 7) & ~7ull;
        if (type == QCOW2_EXT_END) {
            break;
        }
        if (len > end - pos - 8) {
            set_error(errp, EINVAL, s->filename,
                      "header extension 0x%08x is %" G_GUINT64_FORMAT
                      " bytes, past the end of the header area", type, len);
            goto out;
        }
        const uint8_t *data = c0 + pos + 8;
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (len == 0 || len > QCOW2_MAX_BACKING_FORMAT ||
                memchr(data, 0, len)) {
                set_error(errp, EINVAL, s->filename,
                          "invalid backing format extension");
                goto out;
            }
            g_free(s->node->backing_format);
            s->node->backing_format = g_strndup((const char *)data, len);
            break;
        case QCOW2_EXT_DATA_FILE:
            set_error(errp, ENOTSUP, s->filename,
                      "external data files are not supported");
            goto out;
        case QCOW2_EXT_CRYPTO:
            set_error(errp, ENOTSUP, s->filename,
                      "encrypted images are not supported");
            goto out;
        case QCOW2_EXT_BITMAPS:
            if (bitmaps->data) {
                set_error(errp, EINVAL, s->filename,
                          "two bitmaps extensions in the header");
                goto out;
            }
            if (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) {
                bitmaps->data = data;
                bitmaps->len = len;
            }
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            ftable = data;
            ftable_len = len;
            /* fallthrough */
        default:
            g_byte_array_append(kept, c0 + pos,
                                8 + MIN(padded, end - pos - 8));
            break;
        }
        pos += 8 + MIN(padded, end - pos - 8);
    }
    if (!check_incompat(s, ftable, ftable_len, errp)) {
        goto out;
    }
    ok = true;
out:
    s->extensions_len = kept->len;
    s->extensions = g_byte_array_free(kept, false);
    return ok;
}

static bool parse_backing_name(struct qcow2_state *s, const uint8_t *c0,
                               uint64_t c0_len, GError **errp)
{
    uint64_t offset = get_be64(c0 + 8);
    uint32_t len = get_be32(c0 + 16);

    if (offset == 0) {
        return true;
    }
    if (len > QCOW2_MAX_BACKING_NAME || offset < s->header_length ||
        offset > s->cluster_size || len > s->cluster_size - offset ||
        offset + len > c0_len) {
        set_error(errp, EINVAL, s->filename,
                  "backing file name out of bounds (offset %" G_GUINT64_FORMAT
                  ", length %u)", offset, len);
        return false;
    }
    if (memchr(c0 + offset, 0, len)) {
        set_error(errp, EINVAL, s->filename,
                  "backing file name contains a NUL byte");
        return false;
    }
    if (len > 0) {
        g_free(s->node->backing_name);
        s->node->backing_name = g_strndup((const char *)c0 + offset, len);
    }
    return true;
}

/* Check a table's placement: aligned, after cluster 0, inside the file. */
static bool check_table(struct qcow2_state *s, const char *what,
                        uint64_t offset, uint64_t bytes, uint64_t file_size,
                        GError **errp)
{
    if ((offset & (s->cluster_size - 1)) || offset < s->cluster_size ||
        offset > QCOW2_L1E_OFFSET_MASK || offset >= file_size ||
        bytes > file_size - offset + s->cluster_size) {
        set_error(errp, EINVAL, s->filename,
                  "invalid %s offset %" G_GUINT64_FORMAT, what, offset);
        return false;
    }
    return true;
}

static bool read_tables(struct qcow2_state *s, uint64_t file_size,
                        GError **errp)
{
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    uint64_t rt_bytes = (uint64_t)s->reftable_clusters * s->cluster_size;

    if (s->reftable_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
        set_error(errp, EINVAL, s->filename,
                  "invalid refcount table size (%u clusters)",
                  s->reftable_clusters);
        return false;
    }
    if (!check_table(s, "refcount table", s->reftable_offset, rt_bytes,
                     file_size, errp)) {
        return false;
    }
    if (s->l1_size > 0) {
        if (!check_table(s, "L1 table", s->l1_offset, l1_bytes, file_size,
                         errp)) {
            return false;
        }
        if (s->l1_offset + l1_bytes > file_size) {
            set_error(errp, EINVAL, s->filename,
                      "L1 table extends past the end of the file");
            return false;
        }
        if (s->l1_offset < s->reftable_offset + rt_bytes &&
            s->reftable_offset < s->l1_offset + l1_bytes) {
            set_error(errp, EINVAL, s->filename,
                      "L1 table overlaps the refcount table");
            return false;
        }
    }

    s->l1_table = g_new0(uint64_t, MAX(s->l1_size, 1));
    int ret = host_pread(s->fd, s->l1_table, l1_bytes, s->l1_offset);
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot read the L1 table: %s",
                  g_strerror(-ret));
        return false;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        s->l1_table[i] = be64toh(s->l1_table[i]);
    }

    s->reftable_entries = rt_bytes / 8;
    s->reftable = g_new0(uint64_t, s->reftable_entries);
    ret = qcow2_pread_data(s->fd, s->reftable, rt_bytes, s->reftable_offset);
    if (ret < 0) {
        set_error(errp, -ret, s->filename,
                  "cannot read the refcount table: %s", g_strerror(-ret));
        return false;
    }
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        s->reftable[i] = be64toh(s->reftable[i]);
    }
    return true;
}

/* The fixed fields, checked in order of how fundamental they are. */
static bool parse_fixed_fields(struct qcow2_state *s, const uint8_t *h,
                               uint64_t file_size, GError **errp)
{
    if (get_be32(h) != QCOW2_MAGIC) {
        set_error(errp, EINVAL, s->filename, "not a qcow2 image (bad magic)");
        return false;
    }
    s->version = get_be32(h + 4);
    if (s->version != 2 && s->version != 3) {
        set_error(errp, ENOTSUP, s->filename,
                  "unsupported qcow2 version %u", s->version);
        return false;
    }
    s->cluster_bits = get_be32(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        set_error(errp, EINVAL, s->filename,
                  "unsupported cluster size 2^%u (512 B to 2 MiB)",
                  s->cluster_bits);
        return false;
    }
    s->cluster_size = 1ull << s->cluster_bits;
    s->header_length = V2_HEADER_LENGTH;
    s->refcount_order = 4;
    if (s->version == 3) {
        s->header_length = get_be32(h + 100);
        s->incompat = get_be64(h + 72);
        s->compat = get_be64(h + 80);
        s->autoclear = get_be64(h + 88);
        s->refcount_order = get_be32(h + 96);
        if (s->header_length < V3_HEADER_LENGTH ||
            s->header_length % 8 || s->header_length > s->cluster_size ||
            s->header_length > file_size) {
            set_error(errp, EINVAL, s->filename,
                      "invalid header length %u", s->header_length);
            return false;
        }
        if (s->refcount_order > 6) {
            set_error(errp, EINVAL, s->filename,
                      "invalid refcount order %u (at most 6)",
                      s->refcount_order);
            return false;
        }
    }
    s->size = get_be64(h + 24);
    if (s->size > QCOW2_MAX_SIZE) {
        set_error(errp, EINVAL, s->filename,
                  "virtual size %" G_GUINT64_FORMAT " is too large", s->size);
        return false;
    }
    if (get_be32(h + 32) != 0) {
        set_error(errp, ENOTSUP, s->filename,
                  "encrypted images are not supported");
        return false;
    }
    s->l2_bits = s->cluster_bits - 3;
    s->l1_size = get_be32(h + 36);
    s->l1_offset = get_be64(h + 40);
    uint64_t l2_coverage_bits = s->cluster_bits + s->l2_bits;
    uint64_t needed = (s->size + (1ull << l2_coverage_bits) - 1) >>
                      l2_coverage_bits;
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
        s->l1_size < needed) {
        set_error(errp, EINVAL, s->filename,
                  "invalid L1 table size %u for virtual size %"
                  G_GUINT64_FORMAT, s->l1_size, s->size);
        return false;
    }
    s->reftable_offset = get_be64(h + 48);
    s->reftable_clusters = get_be32(h + 56);
    s->nb_snapshots = get_be32(h + 60);
    s->snapshots_offset = get_be64(h + 64);
    if (s->nb_snapshots > 0 &&
        (s->snapshots_offset & (s->cluster_size - 1))) {
        set_error(errp, EINVAL, s->filename, "invalid snapshot table offset");
        return false;
    }
    if (s->nb_snapshots > 0 && !s->read_only) {
        set_error(errp, ENOTSUP, s->filename,
                  "images with internal snapshots can only be opened "
                  "read-only");
        return false;
    }
    s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX :
                      (1ull << (1u << s->refcount_order)) - 1;
    return true;
}

bool qcow2_read_header(struct qcow2_state *s, GError **errp)
{
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        set_error(errp, errno, s->filename, "%s", g_strerror(errno));
        return false;
    }
    uint64_t file_size = st.st_size;
    if (s->node->is_block_device) {
        off_t end = lseek(s->fd, 0, SEEK_END);
        file_size = end < 0 ? 0 : end;
    }
    if (file_size < V2_HEADER_LENGTH) {
        set_error(errp, EINVAL, s->filename,
                  "truncated qcow2 header (file is %" G_GUINT64_FORMAT
                  " bytes)", file_size);
        return false;
    }

    uint8_t fixed[V3_HEADER_LENGTH] = { 0 };
    int ret = qcow2_pread_data(s->fd, fixed, sizeof(fixed), 0);
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot read the header: %s",
                  g_strerror(-ret));
        return false;
    }
    if (!parse_fixed_fields(s, fixed, file_size, errp)) {
        return false;
    }

    uint64_t c0_len = MIN(s->cluster_size, file_size);
    g_autofree uint8_t *c0 = g_malloc0(s->cluster_size);
    ret = host_pread(s->fd, c0, c0_len, 0);
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot read the header: %s",
                  g_strerror(-ret));
        return false;
    }
    s->header_raw = g_memdup2(c0, s->header_length);

    if (!parse_backing_name(s, c0, c0_len, errp)) {
        return false;
    }
    uint64_t ext_end = c0_len;
    uint64_t backing_offset = get_be64(c0 + 8);
    if (backing_offset != 0) {
        ext_end = MIN(ext_end, backing_offset);
    }
    struct bitmaps_ext_ref bitmaps = { 0 };
    if (!parse_extensions(s, c0, ext_end, &bitmaps, errp)) {
        return false;
    }
    s->host_end = file_size;
    if (!read_tables(s, file_size, errp)) {
        return false;
    }
    if (bitmaps.data &&
        !qcow2_bitmaps_load(s, bitmaps.data, bitmaps.len, file_size, errp)) {
        return false;
    }
    return true;
}

/* Put the in-memory values of the mutable fields into header_raw. */
static void encode_header(struct qcow2_state *s)
{
    uint8_t *h = s->header_raw;
    put_be64(h + 24, s->size);
    put_be32(h + 36, s->l1_size);
    put_be64(h + 40, s->l1_offset);
    put_be64(h + 48, s->reftable_offset);
    put_be32(h + 56, s->reftable_clusters);
    if (s->version >= 3) {
        put_be64(h + 72, s->incompat);
        put_be64(h + 80, s->compat);
        put_be64(h + 88, s->autoclear);
    }
}

int qcow2_write_header_bytes(struct qcow2_state *s, unsigned offset,
                             unsigned len)
{
    encode_header(s);
    int ret = qcow2_pwrite_checked(s, QCOW2_META_HEADER,
                                   s->header_raw + offset, len, offset);
    if (ret == 0 && fdatasync(s->fd) < 0) {
        ret = -errno;
    }
    return ret;
}

/* Lay out cluster 0 after the header: the lead (bitmaps) extension,
 * backing format extension, the preserved extensions, the end marker, then the backing name.  Returns
 * the number of bytes used, or 0 if it does not fit. */
size_t qcow2_layout_cluster0(uint8_t *c0, uint64_t cluster_size,
                             uint32_t header_length, const uint8_t *lead,
                             size_t lead_len, const uint8_t *exts,
                             size_t exts_len, const char *backing_name,
                             const char *backing_format)
{
    size_t pos = header_length;
    size_t fmt_len = backing_format ? strlen(backing_format) : 0;
    size_t name_len = backing_name ? strlen(backing_name) : 0;
    size_t need = pos + lead_len +
                  (fmt_len ? 8 + ((fmt_len + 7) & ~7u) : 0) +
                  exts_len + 8 + name_len;
    if (need > cluster_size) {
        return 0;
    }
    if (lead_len > 0) {
        memcpy(c0 + pos, lead, lead_len);
        pos += lead_len;
    }
    if (fmt_len) {
        put_be32(c0 + pos, QCOW2_EXT_BACKING_FORMAT);
        put_be32(c0 + pos + 4, fmt_len);
        memcpy(c0 + pos + 8, backing_format, fmt_len);
        pos += 8 + ((fmt_len + 7) & ~7u);
    }
    if (exts_len > 0) {
        memcpy(c0 + pos, exts, exts_len);
        pos += exts_len;
    }
    memset(c0 + pos, 0, 8);
    pos += 8;
    put_be64(c0 + 8, name_len ? pos : 0);
    put_be32(c0 + 16, name_len);
    memcpy(c0 + pos, backing_name ? backing_name : "", name_len);
    return pos + name_len;
}

bool qcow2_check_backing_strings(const char *filename, const char *name,
                                 const char *format, GError **errp)
{
    if (name && strlen(name) > QCOW2_MAX_BACKING_NAME) {
        set_error(errp, EINVAL, filename,
                  "backing file name longer than %d bytes",
                  QCOW2_MAX_BACKING_NAME);
        return false;
    }
    if (format && strlen(format) > QCOW2_MAX_BACKING_FORMAT) {
        set_error(errp, EINVAL, filename, "backing format name too long");
        return false;
    }
    return true;
}

/* Where the extension area of a cluster 0 ends: just past its end
 * marker (or at limit when there is none). */
static size_t extension_area_end(const uint8_t *c0, size_t pos, size_t limit)
{
    while (pos + 8 <= limit) {
        uint32_t type = get_be32(c0 + pos);
        uint64_t len = get_be32(c0 + pos + 4);
        if (type == QCOW2_EXT_END) {
            return pos + 8;
        }
        pos += 8 + ((len + 7) & ~7ull);
    }
    return limit;
}

static bool ranges_overlap(uint64_t a, uint64_t a_len, uint64_t b,
                           uint64_t b_len)
{
    return a < b + b_len && b < a + a_len;
}

bool qcow2_cluster0_crash_after_first_phase;

/* Write the new cluster 0 (c0, used bytes) so that a crash leaves the old
 * header or the new one, never a mix.  Only one sector is written
 * atomically, so when the new content spans more: the extension area
 * must not differ from the file's beyond sector 0, and the name goes
 * first (phase one, synced) to bytes the old header does not reference,
 * then one write of sector 0 switches to it (phase two).  When that
 * cannot be arranged (the extension area would change beyond sector 0,
 * or the cluster has no room for the new name beside the old one),
 * returns -ENOSPC before writing anything: never a non-atomic write. */
static int write_cluster0(struct qcow2_state *s, uint8_t *c0, size_t used)
{
    const size_t sector = 512;
    uint64_t cs = s->cluster_size;

    if (used > sector) {
        g_autofree uint8_t *old = g_malloc(cs);
        int ret = qcow2_pread_data(s->fd, old, cs, 0);
        if (ret < 0) {
            return ret;
        }
        uint64_t old_name = get_be64(old + 8);
        uint32_t old_name_len = get_be32(old + 16);
        size_t old_ext_end = extension_area_end(old, s->header_length, cs);
        uint64_t name = get_be64(c0 + 8);
        uint32_t name_len = get_be32(c0 + 16);
        size_t ext_end = name_len ? name : used;
        if (ext_end > sector &&
            memcmp(c0 + sector, old + sector, ext_end - sector) != 0) {
            return -ENOSPC;
        }
        /* Free bytes start after both extension areas, and after the old
         * name; the end of the cluster is the last resort. */
        uint64_t slots[3] = { MAX(ext_end, old_ext_end),
                              old_name ? old_name + old_name_len : 0,
                              (cs - name_len) & ~7ull };
        bool placed = name_len == 0;
        for (unsigned i = 0; !placed && i < G_N_ELEMENTS(slots); i++) {
            uint64_t slot = slots[i];
            if (slot < ext_end || slot < old_ext_end ||
                slot + name_len > cs ||
                (old_name && ranges_overlap(slot, name_len, old_name,
                                            old_name_len))) {
                continue;
            }
            memmove(c0 + slot, c0 + name, name_len);
            if (slot > name) {
                memset(c0 + name, 0, MIN(name_len, slot - name));
            }
            put_be64(c0 + 8, slot);
            ret = qcow2_pwrite_checked(s, QCOW2_META_HEADER, c0 + slot,
                                       name_len, slot);
            if (ret == 0 && fdatasync(s->fd) < 0) {
                ret = -errno;
            }
            if (ret < 0) {
                return ret;
            }
            placed = true;
        }
        if (!placed) {
            return -ENOSPC;
        }
    }
    if (qcow2_cluster0_crash_after_first_phase) {
        return -EIO;
    }
    int ret = qcow2_pwrite_checked(s, QCOW2_META_HEADER, c0, sector, 0);
    if (ret == 0 && fdatasync(s->fd) < 0) {
        ret = -errno;
    }
    return ret;
}

/* Preserved extensions without the feature name table (a copy). */
static uint8_t *extensions_without_ftable(const uint8_t *exts, size_t len,
                                          size_t *out_len)
{
    GByteArray *kept = g_byte_array_new();
    size_t pos = 0;
    while (pos + 8 <= len) {
        uint64_t ext_len = 8 + ((get_be32(exts + pos + 4) + 7ull) & ~7ull);
        ext_len = MIN(ext_len, len - pos);
        if (get_be32(exts + pos) != QCOW2_EXT_FEATURE_TABLE) {
            g_byte_array_append(kept, exts + pos, ext_len);
        }
        pos += ext_len;
    }
    *out_len = kept->len;
    return g_byte_array_free(kept, false);
}

int qcow2_rewrite_cluster0(struct qcow2_state *s, const char *backing_name,
                           const char *backing_format)
{
    uint8_t lead[32];
    size_t lead_len = qcow2_bitmaps_ext_encode(s, lead);
    g_autofree uint8_t *c0 = g_malloc0(s->cluster_size);
    size_t stripped_len = 0;
    g_autofree uint8_t *stripped =
        extensions_without_ftable(s->extensions, s->extensions_len,
                                  &stripped_len);
    int ret = 0;

    encode_header(s);
    /* First with every preserved extension; then without the feature
     * name table (it only names bits for humans), which may leave the
     * extension area unchanged past sector 0 or make room for the name. */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool strip = attempt == 1;
        if (strip && stripped_len == s->extensions_len) {
            break;
        }
        memset(c0, 0, s->cluster_size);
        memcpy(c0, s->header_raw, s->header_length);
        size_t used = qcow2_layout_cluster0(
            c0, s->cluster_size, s->header_length, lead, lead_len,
            strip ? stripped : s->extensions,
            strip ? stripped_len : s->extensions_len, backing_name,
            backing_format);
        ret = used == 0 ? -E2BIG : write_cluster0(s, c0, used);
        if (ret == 0 && strip) {
            g_free(s->extensions);
            s->extensions = g_steal_pointer(&stripped);
            s->extensions_len = stripped_len;
        }
        if (ret != -ENOSPC && ret != -E2BIG) {
            break;
        }
    }
    if (ret == 0) {
        memcpy(s->header_raw, c0, s->header_length);
    }
    return ret;
}

bool qcow2_set_backing(struct block_node *node, const char *backing_name,
                       const char *backing_format, GError **errp)
{
    struct qcow2_state *s = node->opaque;

    if (s->read_only) {
        set_error(errp, EROFS, s->filename, "image is open read-only");
        return false;
    }
    if (backing_name && !*backing_name) {
        backing_name = NULL;
    }
    if (!backing_name) {
        backing_format = NULL;
    }
    if (!qcow2_check_backing_strings(s->filename, backing_name,
                                     backing_format, errp)) {
        return false;
    }
    /* Everything written so far must be durable before the chain that
     * interprets it changes. */
    int ret = qcow2_flush(node);
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "flush failed: %s",
                  g_strerror(-ret));
        return false;
    }

    pthread_mutex_lock(&s->lock);
    ret = qcow2_rewrite_cluster0(s, backing_name, backing_format);
    pthread_mutex_unlock(&s->lock);
    if (ret == -E2BIG) {
        set_error(errp, EINVAL, s->filename,
                  "backing file name does not fit in the header cluster");
        return false;
    }
    if (ret == -ENOSPC) {
        set_error(errp, ENOSPC, s->filename,
                  "cannot rewrite the backing file crash-atomically: the "
                  "%" G_GUINT64_FORMAT "-byte header cluster has no room "
                  "for the new name beside the old one, or its header "
                  "extensions would change past the first sector",
                  s->cluster_size);
        return false;
    }
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot rewrite the header: %s",
                  g_strerror(-ret));
        return false;
    }
    g_free(node->backing_name);
    g_free(node->backing_format);
    node->backing_name = g_strdup(backing_name);
    node->backing_format = g_strdup(backing_format);
    return true;
}

/* Switch to a bigger L1 table: written and synced before the header. */
static int grow_l1(struct qcow2_state *s, uint32_t new_l1_size)
{
    uint64_t cs = s->cluster_size;
    uint64_t clusters = ((uint64_t)new_l1_size * 8 + cs - 1) / cs;
    uint64_t offset, got;
    int ret = qcow2_alloc_clusters(s, clusters, false, &offset, &got);
    if (ret < 0) {
        return ret;
    }
    g_autofree uint64_t *table = g_malloc0(clusters * cs);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        table[i] = htobe64(s->l1_table[i]);
    }
    ret = qcow2_pwrite_checked(s, QCOW2_META_L1, table, clusters * cs,
                               offset);
    if (ret == 0) {
        ret = qcow2_refcounts_sync(s);
    }
    if (ret < 0) {
        qcow2_free_clusters(s, offset, clusters * cs);
        return ret;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        table[i] = be64toh(table[i]);
    }

    uint64_t old_offset = s->l1_offset;
    uint64_t old_bytes = (uint64_t)s->l1_size * 8;
    uint32_t old_size = s->l1_size;
    s->l1_offset = offset;
    s->l1_size = new_l1_size;
    ret = qcow2_write_header_bytes(s, QCOW2_HDR_SIZE, 24);
    if (ret < 0) {
        s->l1_offset = old_offset;
        s->l1_size = old_size;
        return ret;
    }
    g_free(s->l1_table);
    s->l1_table = g_steal_pointer(&table);
    qcow2_meta_add(s, QCOW2_META_L1, offset, clusters * cs);
    qcow2_meta_remove(s, QCOW2_META_L1, old_offset, old_bytes);
    if (old_bytes == 0) {
        return 0;
    }
    return qcow2_free_clusters(s, old_offset,
                               (old_bytes + cs - 1) / cs * cs);
}

bool qcow2_grow(struct block_node *node, uint64_t new_size, GError **errp)
{
    struct qcow2_state *s = node->opaque;

    if (s->read_only) {
        set_error(errp, EROFS, s->filename, "image is open read-only");
        return false;
    }
    if (new_size < s->size) {
        set_error(errp, ENOTSUP, s->filename, "shrinking is not supported");
        return false;
    }
    uint64_t coverage_bits = s->cluster_bits + s->l2_bits;
    uint64_t needed = (new_size + (1ull << coverage_bits) - 1) >>
                      coverage_bits;
    if (new_size > QCOW2_MAX_SIZE || needed * 8 > QCOW2_MAX_L1_BYTES) {
        set_error(errp, EFBIG, s->filename,
                  "size %" G_GUINT64_FORMAT " too large for this cluster "
                  "size", new_size);
        return false;
    }

    pthread_mutex_lock(&s->lock);
    int ret = 0;
    uint64_t old_size = s->size;
    if (needed > s->l1_size) {
        s->size = new_size;
        ret = grow_l1(s, needed);
    } else if (new_size != s->size) {
        s->size = new_size;
        ret = qcow2_write_header_bytes(s, QCOW2_HDR_SIZE, 8);
    }
    if (ret < 0) {
        s->size = old_size;
    } else {
        node->size = new_size;
        qcow2_bitmaps_resized(s);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        set_error(errp, -ret, s->filename, "cannot grow the image: %s",
                  g_strerror(-ret));
        return false;
    }
    return true;
}
