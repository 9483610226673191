/* chainfs: what every block node shares: the driver registry, reads that
 * fall through to the backing chain, chain-wide status, and host I/O. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block.h"
#include "layer-map.h"
#include "owner-map.h"

G_DEFINE_QUARK(chainfs-error-quark, chainfs_error)

const struct block_driver *block_driver_by_name(const char *format_name)
{
    for (unsigned i = 0; block_drivers[i]; i++) {
        if (strcmp(block_drivers[i]->format_name, format_name) == 0) {
            return block_drivers[i];
        }
    }
    return NULL;
}

bool block_name_is_uri(const char *name)
{
    /* RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
    if (!g_ascii_isalpha(name[0])) {
        return false;
    }
    const char *p = name + 1;
    while (g_ascii_isalnum(*p) || *p == '+' || *p == '-' || *p == '.') {
        p++;
    }
    return g_str_has_prefix(p, "://");
}

const struct block_driver *block_driver_for_uri(const char *uri)
{
    for (unsigned i = 0; block_drivers[i]; i++) {
        if (block_drivers[i]->handles_uri &&
            block_drivers[i]->handles_uri(uri)) {
            return block_drivers[i];
        }
    }
    return NULL;
}

bool block_uri_check(const char *uri, char **local_path, GError **errp)
{
    const struct block_driver *driver = block_driver_for_uri(uri);

    *local_path = NULL;
    if (!driver || !driver->check_uri) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: unsupported protocol '%.*s'", uri,
                    (int)strcspn(uri, ":"), uri);
        return false;
    }
    return driver->check_uri(uri, local_path, errp);
}

void block_bitmap_info_free(struct block_bitmap_info *info)
{
    if (info) {
        g_free(info->name);
        g_free(info);
    }
}

int host_pread(int fd, void *buf, size_t len, uint64_t offset)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            /* Metadata or data pointing past the end of the file: the image
             * is damaged, and the read must fail rather than invent zeros. */
            return -EIO;
        }
        p += n;
        len -= n;
        offset += n;
    }
    return 0;
}

int host_pwrite(int fd, const void *buf, size_t len, uint64_t offset)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -ENOSPC;
        }
        p += n;
        len -= n;
        offset += n;
    }
    return 0;
}

int (*block_dir_fsync)(int dir_fd) = fsync;

int block_sync_parent_dir(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int ret = block_dir_fsync(fd) < 0 ? -errno : 0;
    close(fd);
    /* Some file systems cannot sync a directory (EINVAL): nothing to do. */
    return ret == -EINVAL || ret == -ENOTSUP ? 0 : ret;
}

bool block_create_durable(const struct block_driver *drv,
                          const char *filename,
                          const struct block_create_opts *opts,
                          GError **errp)
{
    if (!drv->create(filename, opts, errp)) {
        return false;
    }
    int ret = block_sync_parent_dir(filename);
    if (ret < 0) {
        unlink(filename);
        g_set_error(errp, CHAINFS_ERROR, -ret,
                    "%s: cannot sync its directory: %s", filename,
                    g_strerror(-ret));
        return false;
    }
    return true;
}

/* The layer of the chain from node down that decides the run at offset:
 * *owner is that layer (NULL: no layer does, the run reads as zeros) and
 * *run the length, at most len, over which the answer holds.  *flags gets
 * the owner's status (BLOCK_STATUS_ZERO: it reads as zeros).  A read-only
 * stretch answers with one lookup in its owner map; other layers are
 * asked one status call each, bounded by the run found so far, as
 * block_chain_status walks; the bottom layer is asked nothing, as nothing
 * lies below it to fall through to. */
static int chain_find_owner(struct block_node *node, uint64_t offset,
                            uint64_t len, struct block_node **owner,
                            uint64_t *run, int *flags)
{
    *owner = NULL;
    *flags = BLOCK_STATUS_ZERO;
    while (node) {
        if (offset >= node->size) {
            break;              /* past a shorter layer: zeros */
        }
        len = MIN(len, node->size - offset);
        if (!node->backing) {
            *owner = node;
            *flags = 0;
            break;
        }
        struct owner_run owned;
        if (owner_map_lookup(node, offset, len, &owned)) {
            len = owned.len;
            if (owned.kind == OWNER_BELOW) {
                node = owned.node;
                continue;
            }
            if (owned.kind == OWNER_LAYER) {
                *owner = owned.node;
                *flags = owned.status;
            }
            break;
        }
        uint64_t n;
        int status = layer_status(node, offset, len, &n);
        if (status < 0) {
            return status;
        }
        len = MIN(len, MAX(n, 1));
        if (status & BLOCK_STATUS_ALLOCATED) {
            *owner = node;
            *flags = status;
            break;
        }
        node = node->backing;
    }
    *run = len;
    return 0;
}

int block_chain_read(struct block_node *node, uint64_t offset, uint64_t len,
                     void *buf)
{
    uint8_t *p = buf;

    while (len > 0) {
        struct block_node *owner;
        uint64_t run;
        int flags;
        int ret = chain_find_owner(node, offset, len, &owner, &run, &flags);
        if (ret < 0) {
            return ret;
        }
        if (!owner || (flags & BLOCK_STATUS_ZERO)) {
            memset(p, 0, run);
        } else {
            /* The owner allocates the whole run: its driver reads it
             * without falling through to its backing chain. */
            ret = owner->driver->read(owner, offset, run, p);
            if (ret < 0) {
                return ret;
            }
        }
        p += run;
        offset += run;
        len -= run;
    }
    return 0;
}

int block_node_read_backing(struct block_node *node, uint64_t offset,
                            uint64_t len, void *buf)
{
    return block_chain_read(node->backing, offset, len, buf);
}

/* A HOST extent past the end of its file reads as zeros (qcow2: the tail
 * of the last cluster may be missing; raw: the file shrank): clip it, so
 * that a splice never comes up short. */
static int clip_to_file(struct block_extent *ext)
{
    struct stat st;

    if (fstat(ext->fd, &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return 0;               /* a block device's size does not change */
    }
    uint64_t file_size = st.st_size;
    if (ext->host_offset >= file_size) {
        block_extent_release(ext);
        ext->kind = BLOCK_EXTENT_ZERO;
        ext->node = NULL;
    } else if (file_size - ext->host_offset < ext->len) {
        ext->len = file_size - ext->host_offset;
    }
    return 0;
}

int block_node_map(struct block_node *node, uint64_t offset, uint64_t len,
                   struct block_extent *ext)
{
    while (node) {
        if (offset >= node->size) {
            break;              /* past a shorter backing file: zeros */
        }
        len = MIN(len, node->size - offset);
        struct owner_run owned;
        if (owner_map_lookup(node, offset, len, &owned)) {
            len = owned.len;
            if (owned.kind == OWNER_PAST_END) {
                break;
            }
            node = owned.node;  /* the owner, or where to walk on */
            if (owned.kind == OWNER_BELOW) {
                continue;
            }
        } else {
            uint64_t skip;
            if (layer_map_unallocated(node, offset, len, &skip)) {
                len = skip;     /* decided below, without a driver call */
                node = node->backing;
                continue;
            }
        }
        if (!node->driver->map) {
            return -ENOTSUP;
        }
        int ret = node->driver->map(node, offset, len, ext);
        if (ret < 0) {
            return ret;
        }
        if (ret == 0) {
            if (ext->kind == BLOCK_EXTENT_HOST) {
                ext->node = node;
                ret = clip_to_file(ext);
                if (ret < 0) {
                    block_extent_release(ext);
                }
            }
            return ret;
        }
        len = ext->len;         /* BLOCK_MAP_BACKING for this much */
        node = node->backing;
    }
    ext->kind = BLOCK_EXTENT_ZERO;
    ext->len = len;
    ext->node = NULL;
    return 0;
}

void block_extent_release(const struct block_extent *ext)
{
    if (ext->kind == BLOCK_EXTENT_HOST && ext->node->driver->unmap) {
        ext->node->driver->unmap(ext->node, ext);
    }
}

int block_chain_status(struct block_node *node, uint64_t offset,
                       uint64_t len, uint64_t *pnum)
{
    uint64_t run = len;

    while (node) {
        if (offset >= node->size) {
            break;
        }
        struct owner_run owned;
        if (owner_map_lookup(node, offset, MIN(run, node->size - offset),
                             &owned)) {
            run = owned.len;
            if (owned.kind == OWNER_BELOW) {
                node = owned.node;
                continue;
            }
            if (owned.kind == OWNER_PAST_END) {
                break;
            }
            *pnum = run;
            return owned.status;
        }
        uint64_t n;
        int flags = layer_status(node, offset, MIN(run, node->size - offset),
                                 &n);
        if (flags < 0) {
            return flags;
        }
        /* A run found in a lower layer holds only as long as every layer
         * above it leaves the range unallocated. */
        run = MIN(run, n);
        if (flags & BLOCK_STATUS_ALLOCATED) {
            *pnum = run;
            return flags;
        }
        node = node->backing;
    }
    /* Nothing in the chain allocates it: it reads as zeros. */
    *pnum = run;
    return BLOCK_STATUS_ZERO;
}

bool block_writeback_note(struct block_writeback *wb, struct block_node *node,
                          uint64_t n)
{
    uint64_t after = __atomic_add_fetch(&wb->written, n, __ATOMIC_RELAXED);

    if (after / BLOCK_WRITEBACK_BYTES != (after - n) / BLOCK_WRITEBACK_BYTES &&
        !block_node_is_remote(node)) {
        /* Whole file: the host offsets are the driver's business, and
         * pages already under writeback are skipped by the kernel. */
        (void)sync_file_range(node->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        return true;
    }
    return false;
}

int block_node_write_zeroes(struct block_node *node, uint64_t offset,
                            uint64_t len, int flags)
{
    if (node->driver->write_zeroes) {
        return node->driver->write_zeroes(node, offset, len, flags);
    }

    const uint64_t chunk = 1 << 20;
    g_autofree void *zeros = g_malloc0(MIN(len, chunk));
    while (len > 0) {
        uint64_t n = MIN(len, chunk);
        int ret = node->driver->write(node, offset, n, zeros);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        len -= n;
    }
    return 0;
}
