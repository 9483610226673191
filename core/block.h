/* chainfs: block nodes and the driver ops table.
 *
 * A block node is one layer of an image chain: an open host file plus the
 * format driver that interprets it.  A node's backing node is the layer
 * below it.  The core never asks which driver a node has; everything a
 * format knows lives behind struct block_driver.
 *
 * Locking contract, stated once:
 *  - Driver I/O callbacks (read, write, write_zeroes, block_status, flush,
 *    map, unmap) may be called concurrently from many threads on the same
 *    node.  A driver protects its own metadata (qcow2: one mutex per
 *    image, held briefly, never across data I/O to the host file).
 *  - node->backing, node->backing_name and node->backing_format change only
 *    while the owning disk is drained (see disk.h), so I/O callbacks may
 *    read them without a lock.
 *  - open, close, create and set_backing are never called concurrently with
 *    I/O on the same node.
 *
 * I/O callbacks return 0 or a negative errno.  Offsets and lengths are in
 * bytes and need no alignment; drivers handle partial clusters themselves.
 */
#ifndef CHAINFS_BLOCK_H
#define CHAINFS_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

struct block_node;

/* Where a range of a node's content lives, for reads that hand the host
 * file's pages to the kernel (splice) instead of copying them through a
 * buffer.  See block_node_map. */
enum block_extent_kind {
    BLOCK_EXTENT_HOST,  /* bytes at host_offset in fd */
    BLOCK_EXTENT_ZERO,  /* reads as zeros */
};

struct block_extent {
    enum block_extent_kind kind;
    uint64_t len;
    struct block_node *node;    /* HOST: the layer that holds the bytes */
    int fd;
    uint64_t host_offset;
};

/* What a driver's map returns for a range that its backing file decides. */
#define BLOCK_MAP_BACKING 1

/* Flags returned by block_status. */
enum {
    BLOCK_STATUS_DATA      = 1 << 0, /* reads come from data stored here */
    BLOCK_STATUS_ZERO      = 1 << 1, /* reads return zeros */
    BLOCK_STATUS_ALLOCATED = 1 << 2, /* this layer decides the content;
                                        otherwise the backing layer does */
};

/* Flags for write_zeroes. */
enum {
    BLOCK_ZERO_UNMAP = 1 << 0, /* the space may be released (discard) */
};

/* Options for creating an image.  Zero or NULL means "the default". */
struct block_create_opts {
    uint64_t size;              /* virtual size in bytes */
    uint32_t cluster_size;      /* qcow2: power of two, 512 B..2 MiB; 64 KiB */
    const char *backing_name;   /* stored as given; NULL: no backing */
    const char *backing_format; /* recorded in the header when set */
};

struct dirty_bitmap;

/* A persistent dirty bitmap as an image stores it (qcow2's bitmaps
 * extension).  Owned strings; block_bitmap_info_free releases one. */
struct block_bitmap_info {
    char *name;
    uint32_t granularity;   /* bytes per bit, a power of two */
    bool enabled;           /* records writes once loaded (qcow2: auto) */
    bool in_use;            /* marked in use: the stored bits are not to
                               be trusted (the writer died) */
};
void block_bitmap_info_free(struct block_bitmap_info *info);

/* One bitmap of the set that bitmaps_store writes. */
struct block_bitmap_entry {
    const char *name;
    uint32_t granularity;
    bool enabled;
    /* Store it marked in use: bits is ignored (may be NULL), and a bitmap
     * of this name and granularity already stored keeps its stored bits,
     * else it gets an empty table. */
    bool in_use;
    struct dirty_bitmap *bits;  /* !in_use: the bits to store */
};

struct block_driver {
    const char *format_name;    /* "qcow2", "raw", "nbd" */

    /* Whether this driver serves name, a URI (block_name_is_uri), rather
     * than a host file: the whole scheme family it knows, including forms
     * its open refuses (ENOTSUP), so that the user gets its reason.  Such
     * a driver's open gets node->fd == -1 and node->filename = the URI as
     * given, and no image lock is taken.  May be NULL: a format of host
     * files. */
    bool (*handles_uri)(const char *uri);

    /* A remote driver: check uri's form without connecting (EINVAL when
     * malformed, ENOTSUP for a form it does not serve) and set
     * *local_path to the file on this host that it names (a Unix
     * socket; g_free it) or NULL.  Errors name the URI. */
    bool (*check_uri)(const char *uri, char **local_path, GError **errp);

    /* Score how likely the first bytes of a file are this format: 0 = not
     * at all, 100 = certain.  May be NULL (never chosen by probing). */
    int (*probe)(const uint8_t *buf, size_t len);

    /* Parse and validate the image on node->fd (a remote driver: connect
     * to node->filename); set node->size and, for
     * formats with a backing file, node->backing_name and
     * node->backing_format.  node->read_only says how fd was opened.
     * Errors name node->filename and the reason. */
    bool (*open)(struct block_node *node, GError **errp);

    /* Flush and release everything open allocated.  Must leave the image
     * consistent (qcow2: marked clean).  Returns 0 or a negative errno;
     * the node is released either way. */
    int (*close)(struct block_node *node);

    /* Read len bytes at offset into buf.  Ranges this layer does not
     * allocate are read with block_node_read_backing(). */
    int (*read)(struct block_node *node, uint64_t offset, uint64_t len,
                void *buf);

    /* Write len bytes at offset.  offset + len never exceeds node->size
     * (the core checks).  Partial clusters are completed from the backing
     * chain (copy-on-write). */
    int (*write)(struct block_node *node, uint64_t offset, uint64_t len,
                 const void *buf);

    /* Make the range read as zeros, without writing data where the format
     * allows.  May be NULL: the core writes zero buffers instead. */
    int (*write_zeroes)(struct block_node *node, uint64_t offset,
                        uint64_t len, int flags);

    /* Make every completed write durable, metadata included. */
    int (*flush)(struct block_node *node);

    /* Describe the range starting at offset, at most len bytes: returns
     * BLOCK_STATUS_* flags (or a negative errno) and sets *pnum (> 0) to
     * the length of the run that has the same flags. */
    int (*block_status)(struct block_node *node, uint64_t offset,
                        uint64_t len, uint64_t *pnum);

    /* Describe where the content at offset starts: fill *ext with its
     * kind and length (at most len) and return 0, or return
     * BLOCK_MAP_BACKING with ext->len set when the backing file decides
     * that much, or -ENOTSUP when the bytes exist only after decoding
     * (compressed clusters), or another negative errno.  A HOST extent
     * keeps its host clusters from being freed and reused until unmap.
     * May be NULL (with unmap): every read goes through read. */
    int (*map)(struct block_node *node, uint64_t offset, uint64_t len,
               struct block_extent *ext);
    void (*unmap)(struct block_node *node, const struct block_extent *ext);

    /* Create a new image at filename (which must not exist: O_EXCL).  May
     * be NULL: the format cannot be created. */
    bool (*create)(const char *filename, const struct block_create_opts *opts,
                   GError **errp);

    /* Rewrite the backing file name and format in the image header,
     * atomically with respect to crashes.  May be NULL (ENOTSUP). */
    bool (*set_backing)(struct block_node *node, const char *backing_name,
                        const char *backing_format, GError **errp);

    /* Grow the virtual size.  May be NULL (ENOTSUP). */
    bool (*grow)(struct block_node *node, uint64_t new_size, GError **errp);

    /* The node was just reopened (block_node_reopen): node->fd is the same
     * number but now a description opened for read_only, and
     * node->read_only says so.  Check that the image may be used that way
     * and update the driver's state; on error the core reopens the old
     * way.  Never called concurrently with I/O on the node.  May be NULL:
     * the driver keeps no state that depends on it (raw). */
    bool (*reopen)(struct block_node *node, bool read_only, GError **errp);

    /* Persistent dirty bitmaps.  All four may be NULL together: the format
     * stores none.  They may run while guest I/O goes on on the node (the
     * driver takes its own locks), never concurrently with each other,
     * with open/close/reopen or with set_backing. */

    /* Whether this image, as opened, can store bitmaps; ENOTSUP naming
     * the file and the reason if not (read-only, qcow2 version 2). */
    bool (*bitmaps_supported)(struct block_node *node, GError **errp);

    /* The bitmaps stored in the image, as a new array of struct
     * block_bitmap_info * (with its free function set). */
    GPtrArray *(*bitmaps_list)(struct block_node *node, GError **errp);

    /* OR the stored bits of the bitmap called name (not in use) into
     * bitmap, which has the disk's size and the stored granularity.
     * EIO naming the file for damage (a table entry past the end of the
     * file, reserved bits set). */
    bool (*bitmap_read)(struct block_node *node, const char *name,
                        struct dirty_bitmap *bitmap, GError **errp);

    /* Make the stored set exactly entries[0..n): new data, tables and
     * directory are written and made durable before one atomic header
     * write switches to them; then the clusters of what was replaced are
     * freed.  A crash at any point leaves the old set or the new one.
     * n == 0 removes the bitmaps extension. */
    bool (*bitmaps_store)(struct block_node *node,
                          const struct block_bitmap_entry *entries, size_t n,
                          GError **errp);
};

struct block_node {
    const struct block_driver *driver;
    void *opaque;               /* the driver's state */

    char *filename;             /* absolute, canonical path of the file;
                                   a remote node: its URI as given */
    int fd;                     /* host file; owned by the node; -1 for a
                                   remote node (block_node_is_remote) */
    bool read_only;
    bool is_block_device;
    uint64_t size;              /* virtual size in bytes */
    uint32_t cluster_size;      /* allocation unit (qcow2's cluster size),
                                   set by open; 0 for formats without */

    /* From the image header (NULL for none); owned by the node. */
    char *backing_name;
    char *backing_format;

    struct block_node *backing; /* next layer down, or NULL; owned */
    unsigned depth;             /* 0 for the top of a chain */

    /* What a read-only backing layer allocates (layer-map.h), or NULL. */
    struct layer_map *layer_map;

    /* Who owns each range of the read-only stretch from here down
     * (owner-map.h), or NULL; and how many times this node was reopened
     * or made a backing layer, which such maps check. */
    struct owner_map *owner_map;
    uint64_t reopens;
};

/* The drivers the core knows, NULL-terminated; probing tries them in
 * order. */
extern const struct block_driver *const block_drivers[];

const struct block_driver *block_driver_by_name(const char *format_name);

/* Whether name is a URI ("scheme://..."), not a file name.  A file whose
 * name merely contains ':' (QEMU's "nbd:..." pseudo-protocols) is not. */
bool block_name_is_uri(const char *name) __attribute__((nonnull));

/* The driver that serves URIs of uri's scheme, or NULL. */
const struct block_driver *block_driver_for_uri(const char *uri)
    __attribute__((nonnull));

/* Check uri as its driver would before connecting (block_driver.check_uri):
 * ENOTSUP for a scheme no driver serves. */
bool block_uri_check(const char *uri, char **local_path, GError **errp)
    __attribute__((nonnull(1, 2)));

/* Whether node is served over the network (no host file, no locks, no
 * backing file: nothing can name it as one). */
static inline bool block_node_is_remote(const struct block_node *node)
{
    return node->fd < 0;
}

/* Read [offset, offset + len) of the chain from node down (node NULL: an
 * empty chain) as a reader of node sees it: zeros past the end of a
 * shorter layer and where no layer allocates.  Iterative, whatever the
 * depth: for each run it finds, with block_status bounded by the runs of
 * the layers above, the one layer that allocates the run and reads the run
 * from that layer alone (a driver's read of a range it allocates never
 * touches its backing), so the stack does not grow with the chain and no
 * range is looked up twice in a layer. */
int block_chain_read(struct block_node *node, uint64_t offset, uint64_t len,
                     void *buf);

/* Read from node's backing chain as this node sees it: block_chain_read of
 * node->backing.  What drivers call for the ranges they do not allocate. */
int block_node_read_backing(struct block_node *node, uint64_t offset,
                            uint64_t len, void *buf);

/* Map the first extent of node's content at [offset, offset + len) as
 * its readers see it, going down the backing chain: zeros where there is
 * no backing node, past a shorter one's end and past the end of a host
 * file that is shorter than its data.  Returns 0 or a negative errno
 * (-ENOTSUP: read this range instead).  Every HOST extent must be given
 * to block_extent_release once the bytes are consumed. */
int block_node_map(struct block_node *node, uint64_t offset, uint64_t len,
                   struct block_extent *ext);
void block_extent_release(const struct block_extent *ext);

/* Chain-wide status from node downwards: BLOCK_STATUS_DATA or ZERO (and
 * ALLOCATED when some layer allocates it), *pnum as in block_status. */
int block_chain_status(struct block_node *node, uint64_t offset,
                       uint64_t len, uint64_t *pnum);

/* Counts what a job wrote to a node (any thread may note). */
struct block_writeback {
    uint64_t written;
};

/* Note that n more bytes were written to node; every few MiB, ask the
 * kernel to start writing the host file's dirty pages back, without
 * waiting.  A job that must flush at its end (before a header may name
 * the data) then waits for the tail only, and the copy overlaps the disk
 * instead of running before it.  A hint: errors are ignored.  Returns
 * whether this call started writeback. */
bool block_writeback_note(struct block_writeback *wb, struct block_node *node,
                          uint64_t n);

/* How much is written between two writeback hints. */
#define BLOCK_WRITEBACK_BYTES (8u << 20)

/* Write zeros through node->driver->write_zeroes, or with zero buffers
 * when the driver has none. */
int block_node_write_zeroes(struct block_node *node, uint64_t offset,
                            uint64_t len, int flags);

/* Host I/O helpers: pread/pwrite the whole range, retrying on EINTR and
 * short transfers.  Return 0 or a negative errno (-EIO for an unexpected
 * end of file on read). */
int host_pread(int fd, void *buf, size_t len, uint64_t offset);
int host_pwrite(int fd, const void *buf, size_t len, uint64_t offset);

/* Create an image with drv->create, then make its directory entry
 * durable: POSIX keeps a new file across power loss only once its parent
 * directory is fsynced, and a disk may switch to the file at any moment
 * after it exists.  On failure the new file is removed again. */
bool block_create_durable(const struct block_driver *drv,
                          const char *filename,
                          const struct block_create_opts *opts,
                          GError **errp);
/* fsync the directory that holds path (0 or a negative errno; a file
 * system that cannot sync directories counts as success). */
int block_sync_parent_dir(const char *path);
/* What block_sync_parent_dir calls on the directory's descriptor: fsync,
 * replaceable by tests to see which directories were synced. */
extern int (*block_dir_fsync)(int dir_fd);

/* The GError domain of chainfs: the code is an errno value. */
#define CHAINFS_ERROR chainfs_error_quark()
GQuark chainfs_error_quark(void);

#endif
