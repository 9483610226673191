/* chainfs qcow2: creating an image.  The whole new image is built in
 * memory and written with one pwrite, then synced: a version 3 header with
 * 16-bit refcounts, the refcount table and blocks covering every metadata
 * cluster, an empty L1 table, and the backing file name and format, if
 * any, in cluster 0 (qcow2_layout_cluster0, shared with set_backing).
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "qcow2.h"

#define CREATE_HEADER_LENGTH 112

/* Layout of a new image: header, refcount table, refcount blocks, L1. */
struct create_layout {
    uint64_t reftable_clusters;
    uint64_t refblocks;
    uint64_t l1_clusters;
    uint64_t total;
};

static void plan_layout(uint64_t cs, uint32_t l1_size,
                        struct create_layout *l)
{
    uint64_t per_block = cs * 8 / 16;
    l->l1_clusters = ((uint64_t)l1_size * 8 + cs - 1) / cs;
    l->reftable_clusters = 1;
    l->refblocks = 1;
    for (;;) {
        l->total = 1 + l->reftable_clusters + l->refblocks + l->l1_clusters;
        uint64_t blocks = (l->total + per_block - 1) / per_block;
        uint64_t rt = (blocks * 8 + cs - 1) / cs;
        if (blocks == l->refblocks && rt == l->reftable_clusters) {
            break;
        }
        l->refblocks = blocks;
        l->reftable_clusters = rt;
    }
}

bool qcow2_create(const char *filename, const struct block_create_opts *opts,
                  GError **errp)
{
    uint64_t cs = opts->cluster_size ? opts->cluster_size : 65536;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: invalid cluster size %" G_GUINT64_FORMAT
                    " (a power of two from 512 to 2M)", filename, cs);
        return false;
    }
    if (!qcow2_check_backing_strings(filename, opts->backing_name,
                                     opts->backing_format, errp)) {
        return false;
    }
    unsigned cluster_bits = __builtin_ctzll(cs);
    unsigned coverage_bits = cluster_bits + cluster_bits - 3;
    uint64_t l1_size = (opts->size + (1ull << coverage_bits) - 1) >>
                       coverage_bits;
    if (opts->size > QCOW2_MAX_SIZE || l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        g_set_error(errp, CHAINFS_ERROR, EFBIG,
                    "%s: size %" G_GUINT64_FORMAT
                    " too large for cluster size %" G_GUINT64_FORMAT,
                    filename, opts->size, cs);
        return false;
    }
    struct create_layout l;
    plan_layout(cs, l1_size, &l);

    g_autofree uint8_t *image = g_malloc0(l.total * cs);
    uint8_t *h = image;
    put_be32(h, QCOW2_MAGIC);
    put_be32(h + 4, 3);
    put_be32(h + 20, cluster_bits);
    put_be64(h + 24, opts->size);
    put_be32(h + 36, l1_size);
    put_be64(h + 40, (1 + l.reftable_clusters + l.refblocks) * cs);
    put_be64(h + 48, cs);
    put_be32(h + 56, l.reftable_clusters);
    put_be32(h + 96, 4);
    put_be32(h + 100, CREATE_HEADER_LENGTH);
    const char *name = opts->backing_name && *opts->backing_name ?
                       opts->backing_name : NULL;
    if (!qcow2_layout_cluster0(image, cs, CREATE_HEADER_LENGTH, NULL, 0,
                               NULL, 0,
                               name, name ? opts->backing_format : NULL)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: backing file name "
                    "does not fit in the header cluster", filename);
        return false;
    }
    uint8_t *reftable = image + cs;
    uint8_t *refblocks = reftable + l.reftable_clusters * cs;
    for (uint64_t b = 0; b < l.refblocks; b++) {
        put_be64(reftable + b * 8, (1 + l.reftable_clusters + b) * cs);
    }
    for (uint64_t c = 0; c < l.total; c++) {
        refblocks[c * 2 + 1] = 1;   /* 16-bit big-endian refcount 1 */
    }

    int fd = open(filename, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        g_set_error(errp, CHAINFS_ERROR, errno, "%s: cannot create: %s",
                    filename, g_strerror(errno));
        return false;
    }
    /* The tables first, then the header that points to them: a power
     * loss in between leaves a file that is no qcow2 image at all, never
     * one whose header points at refcounts not yet on disk. */
    int ret = host_pwrite(fd, image + cs, (l.total - 1) * cs, cs);
    if (ret == 0 && fdatasync(fd) < 0) {
        ret = -errno;
    }
    if (ret == 0) {
        ret = host_pwrite(fd, image, cs, 0);
    }
    if (ret == 0 && fdatasync(fd) < 0) {
        ret = -errno;
    }
    close(fd);
    if (ret < 0) {
        unlink(filename);
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot write: %s",
                    filename, g_strerror(-ret));
        return false;
    }
    return true;
}
