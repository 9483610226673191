/* chainfs: the raw format: the file is the disk, byte for byte.
 *
 * Regular files and block devices both work.  Zeroing prefers to release
 * space (punch hole, discard) when asked to unmap, and the filesystem's
 * zero-range otherwise; either falls back to writing zeros.  Block status
 * comes from SEEK_DATA/SEEK_HOLE, so a hole in a sparse file is a hole
 * through the whole chain.  A raw layer has no backing, so it decides
 * every range (BLOCK_STATUS_ALLOCATED).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/block.h"

/* The file size, or the device size for a block device. */
static int raw_host_size(int fd, bool is_block_device, uint64_t *size)
{
    if (is_block_device) {
        if (ioctl(fd, BLKGETSIZE64, size) < 0) {
            return -errno;
        }
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    *size = st.st_size;
    return 0;
}

/* Anything can be raw: the lowest score, so any real format wins. */
static int raw_probe(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 1;
}

static bool raw_open(struct block_node *node, GError **errp)
{
    int ret = raw_host_size(node->fd, node->is_block_device, &node->size);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot get size: %s",
                    node->filename, g_strerror(-ret));
        return false;
    }
    return true;
}

static int raw_close(struct block_node *node)
{
    if (node->read_only) {
        return 0;
    }
    return fdatasync(node->fd) < 0 ? -errno : 0;
}

static int raw_read(struct block_node *node, uint64_t offset, uint64_t len,
                    void *buf)
{
    /* The size is the file size, but another process may have truncated
     * the file since: what is gone reads as zeros, as in QEMU. */
    while (len > 0) {
        ssize_t n = pread(node->fd, buf, len, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            memset(buf, 0, len);
            break;
        }
        buf = (uint8_t *)buf + n;
        offset += n;
        len -= n;
    }
    return 0;
}

static int raw_write(struct block_node *node, uint64_t offset, uint64_t len,
                     const void *buf)
{
    return host_pwrite(node->fd, buf, len, offset);
}

/* Write zero buffers: the fallback when the host cannot zero a range. */
static int raw_write_zero_buffers(struct block_node *node, uint64_t offset,
                                  uint64_t len)
{
    const uint64_t chunk = 1 << 20;
    g_autofree void *zeros = g_malloc0(MIN(len, chunk));

    while (len > 0) {
        uint64_t n = MIN(len, chunk);
        int ret = host_pwrite(node->fd, zeros, n, offset);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

/* Whether an errno from fallocate/ioctl means "not supported here" (so the
 * zero buffers fallback applies) rather than a real failure. */
static bool is_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOTTY ||
           err == EINVAL || err == ENOSYS;
}

static int raw_zero_block_device(struct block_node *node, uint64_t offset,
                                 uint64_t len, int flags)
{
    uint64_t range[2] = { offset, len };

    /* BLKDISCARD only guarantees zeros on some devices, so discard only
     * when the caller allows it and then make sure with BLKZEROOUT, which
     * the kernel implements with write-zeroes or unmap where it can. */
    if (flags & BLOCK_ZERO_UNMAP) {
        (void)ioctl(node->fd, BLKDISCARD, range);
    }
    if (ioctl(node->fd, BLKZEROOUT, range) == 0) {
        return 0;
    }
    if (!is_unsupported(errno)) {
        return -errno;
    }
    return raw_write_zero_buffers(node, offset, len);
}

static int raw_write_zeroes(struct block_node *node, uint64_t offset,
                            uint64_t len, int flags)
{
    if (len == 0) {
        return 0;
    }
    if (node->is_block_device) {
        return raw_zero_block_device(node, offset, len, flags);
    }

    int mode = (flags & BLOCK_ZERO_UNMAP) ? FALLOC_FL_PUNCH_HOLE
                                          : FALLOC_FL_ZERO_RANGE;
    if (fallocate(node->fd, mode | FALLOC_FL_KEEP_SIZE, offset, len) == 0) {
        return 0;
    }
    if (!is_unsupported(errno)) {
        return -errno;
    }
    if (mode == FALLOC_FL_ZERO_RANGE &&
        fallocate(node->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  offset, len) == 0) {
        /* No zero-range (tmpfs, older NFS): a hole reads as zeros too, and
         * nobody asked us to keep the space allocated. */
        return 0;
    }
    return raw_write_zero_buffers(node, offset, len);
}

static int raw_flush(struct block_node *node)
{
    return fdatasync(node->fd) < 0 ? -errno : 0;
}

static int raw_block_status(struct block_node *node, uint64_t offset,
                            uint64_t len, uint64_t *pnum)
{
    const int data = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA;

    *pnum = len;
    if (node->is_block_device) {
        return data;
    }

    off_t data_start = lseek(node->fd, offset, SEEK_DATA);
    if (data_start < 0) {
        if (errno == ENXIO) {
            /* No data from offset to the end of the file: one hole (the
             * file may have shrunk since open; that reads as zeros too). */
            return BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO;
        }
        return data; /* SEEK_DATA unsupported: assume everything is data */
    }
    if ((uint64_t)data_start > offset) {
        *pnum = MIN(len, (uint64_t)data_start - offset);
        return BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO;
    }

    off_t hole_start = lseek(node->fd, offset, SEEK_HOLE);
    if (hole_start < 0 || (uint64_t)hole_start <= offset) {
        /* Racing with a concurrent change to the file: err towards data,
         * which is always correct to report. */
        return data;
    }
    *pnum = MIN(len, (uint64_t)hole_start - offset);
    return data;
}

static bool raw_create(const char *filename,
                       const struct block_create_opts *opts, GError **errp)
{
    int fd = open(filename, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot create: %s",
                    filename, g_strerror(err));
        return false;
    }
    if (ftruncate(fd, opts->size) < 0 || fsync(fd) < 0) {
        int err = errno;
        close(fd);
        unlink(filename);
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot set size: %s",
                    filename, g_strerror(err));
        return false;
    }
    close(fd);
    return true;
}

static bool raw_grow(struct block_node *node, uint64_t new_size,
                     GError **errp)
{
    if (new_size < node->size) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: cannot shrink from %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT " bytes", node->filename, node->size,
                    new_size);
        return false;
    }
    if (node->is_block_device) {
        uint64_t device_size;
        int ret = raw_host_size(node->fd, true, &device_size);
        if (ret < 0 || device_size < new_size) {
            g_set_error(errp, CHAINFS_ERROR, ret < 0 ? -ret : ENOSPC,
                        "%s: block device is smaller than %" G_GUINT64_FORMAT
                        " bytes", node->filename, new_size);
            return false;
        }
    } else if (ftruncate(node->fd, new_size) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot grow: %s",
                    node->filename, g_strerror(err));
        return false;
    }
    node->size = new_size;
    return true;
}

static int raw_map(struct block_node *node, uint64_t offset, uint64_t len,
                   struct block_extent *ext)
{
    /* Host offsets are guest offsets and never move: nothing to hold. */
    ext->kind = BLOCK_EXTENT_HOST;
    ext->len = len;
    ext->fd = node->fd;
    ext->host_offset = offset;
    return 0;
}

const struct block_driver raw_driver = {
    .format_name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .read = raw_read,
    .write = raw_write,
    .write_zeroes = raw_write_zeroes,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .map = raw_map,
    .create = raw_create,
    .set_backing = NULL,
    .grow = raw_grow,
};
