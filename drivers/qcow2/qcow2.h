/* chainfs qcow2 driver: state shared by the files of drivers/qcow2/.
 *
 * Layout of the driver:
 *   header.c      parse and validate the header, set_backing, grow
 *   create.c      new images
 *   table-cache.c bounded write-back cache of cluster-sized tables (L2
 *                 tables and refcount blocks)
 *   refcount.c    refcounts of any width, cluster allocation and freeing
 *   cluster.c     guest cluster -> L2 entry mapping, L2 table allocation,
 *                 in-flight allocations
 *   compress.c    reading compressed clusters
 *   bitmap.c      persistent dirty bitmaps: the bitmaps extension, its
 *                 directory and tables (parsed at open), list and read
 *   bitmap-store.c  replacing the whole set of bitmaps, crash-atomically
 *   io.c          read, write, write_zeroes, block_status, flush
 *   overlap.c     the map of metadata clusters; every write is checked
 *                 against it (QEMU's overlap checks)
 *   qcow2.c       the ops table, open and close
 *
 * Locking contract, stated once: every function declared below this
 * banner must be called with state->lock held, except qcow2_read_compressed,
 * qcow2_pread_data and the header.c entry points (open/create/set_backing/
 * grow run with no concurrent I/O).  The lock is never held across data I/O
 * to the host file; metadata I/O (tables, refcount blocks, header) happens
 * under it.
 *
 * Crash-safety ordering (no lazy refcounts):
 *  - a refcount increment reaches the disk (and is fdatasync'ed) before any
 *    L1/L2 entry pointing at the cluster: dirty L2 tables are written only
 *    after the refcount cache was written and the file synced;
 *  - a refcount decrement reaches the refcount cache only after the L2
 *    change that dropped the reference is durable (pending frees, applied
 *    by qcow2_flush_locked);
 *  - a new L2 table / refcount block / table is on disk before the pointer
 *    to it is written.
 *
 * Overlap checks: every write to the file goes through qcow2_pwrite_checked
 * (or, for data written unlocked, qcow2_overlap_check under the lock just
 * before), naming the structure it updates.  A structure is added to the
 * map (qcow2_meta_add) before its first write and removed when the header
 * or table that referenced it no longer does, before its clusters are
 * freed.  A write onto any other structure marks the image corrupt.
 */
#ifndef CHAINFS_QCOW2_H
#define CHAINFS_QCOW2_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "core/block.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SIZE (1ull << 61)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_BACKING_FORMAT 255

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)

/* Bitmap directory entry flags and bitmap table entries. */
#define QCOW2_BME_IN_USE (1u << 0)
#define QCOW2_BME_AUTO (1u << 1)
#define QCOW2_BME_EXTRA_DATA_COMPATIBLE (1u << 2)
#define QCOW2_BMT_ALL_ONES (1ull << 0)
#define QCOW2_BMT_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_BMT_RESERVED_MASK 0xff000000000001feull

/* Bitmaps: QEMU's limits, so that what one writes the other opens. */
#define QCOW2_BM_MAX_BITMAPS 65535u
#define QCOW2_BM_MAX_DIRECTORY_BYTES (64ull << 20)
#define QCOW2_BM_MAX_NAME_BYTES 1023u
#define QCOW2_BM_MAX_TABLE_ENTRIES 0x8000000u
#define QCOW2_BM_MAX_BITMAP_BYTES (512ull << 20) /* table entries * cluster */
#define QCOW2_BM_MIN_GRANULARITY_BITS 9
#define QCOW2_BM_MAX_GRANULARITY_BITS 31
#define QCOW2_BM_TYPE_DIRTY_TRACKING 1
#define QCOW2_BM_DIR_ENTRY_HEADER 24        /* fixed part of an entry */
#define QCOW2_BM_EXT_DATA_LEN 24            /* bitmaps extension payload */


#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* Header field offsets (bytes into cluster 0). */
#define QCOW2_HDR_SIZE 24
#define QCOW2_HDR_L1_SIZE 36
#define QCOW2_HDR_REFTABLE 48
#define QCOW2_HDR_AUTOCLEAR 88

/* Cache sizes used by the next open; tests shrink them to force eviction. */
extern size_t qcow2_l2_cache_bytes;
extern size_t qcow2_refblock_cache_bytes;

/* Kinds of metadata clusters (a mask: a damaged image may give one
 * cluster several); 0 stands for guest data and bitmap data. */
enum qcow2_meta_kind {
    QCOW2_META_HEADER = 1u << 0,       /* cluster 0 */
    QCOW2_META_L1 = 1u << 1,
    QCOW2_META_L2 = 1u << 2,           /* active L2 tables */
    QCOW2_META_REFTABLE = 1u << 3,
    QCOW2_META_REFBLOCK = 1u << 4,
    QCOW2_META_SNAPSHOTS = 1u << 5,    /* first cluster of the table */
    QCOW2_META_BITMAP_DIR = 1u << 6,
    QCOW2_META_BITMAP_TABLE = 1u << 7,
};

/* What a guest cluster's L2 entry says. */
enum qcow2_cluster_kind {
    QCOW2_UNALLOCATED, /* reads fall through to the backing chain */
    QCOW2_ZERO,        /* reads zeros (v3 zero flag, maybe preallocated) */
    QCOW2_NORMAL,      /* data in one host cluster */
    QCOW2_COMPRESSED,  /* data in a compressed descriptor */
};

struct table_cache;
struct table_entry {
    uint64_t offset;   /* host offset of the table */
    uint8_t *data;     /* cluster_size bytes, on-disk (big-endian) layout */
    bool dirty;        /* modified since read or written */
    unsigned pins;     /* users holding a pointer; never evicted while > 0 */
    GList lru_link;    /* position in the cache's LRU queue */
};

/* One entry of the bitmap directory, as parsed at open or last stored. */
struct qcow2_bitmap {
    char *name;
    uint32_t granularity_bits;
    uint32_t flags;             /* QCOW2_BME_* */
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    bool damaged;               /* table does not fit the disk: in use */
};

/* A guest cluster range [first, end) whose allocation is in flight. */
struct qcow2_inflight {
    uint64_t first;
    uint64_t end;
};

/* A host byte range whose refcounts drop once the L2 change is durable. */
struct qcow2_host_range {
    uint64_t offset;
    uint64_t len;
};

struct qcow2_state {
    struct block_node *node;
    int fd;
    const char *filename;
    bool read_only;

    pthread_mutex_t lock;       /* pthread, not GMutex: visible to TSan */
    pthread_cond_t alloc_done;  /* signalled when an allocation publishes */

    /* Header. header_raw keeps unknown v3 fields for rewrites. */
    uint8_t *header_raw;
    uint32_t header_length;
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint64_t size;
    uint64_t incompat;
    uint64_t compat;
    uint64_t autoclear;
    uint32_t refcount_order;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint8_t *extensions;        /* preserved extensions (not backing fmt,
                                   not bitmaps) */
    size_t extensions_len;

    /* Persistent bitmaps (struct qcow2_bitmap *): empty when the image
     * has no valid bitmaps extension.  Changed only by bitmaps_store. */
    GPtrArray *bitmaps;
    uint64_t bitmap_dir_offset;
    uint64_t bitmap_dir_size;

    uint32_t l2_bits;           /* log2 of entries per L2 table */
    uint64_t *l1_table;         /* host byte order */
    uint32_t l1_size;
    uint64_t l1_offset;

    uint64_t *reftable;         /* host byte order */
    uint64_t reftable_entries;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint32_t refblock_bits;     /* log2 of entries per refcount block */
    uint64_t refcount_max;

    struct table_cache *l2_cache;
    struct table_cache *refblock_cache;

    uint64_t free_hint;         /* no free cluster below this index */
    uint64_t host_end;          /* bytes: max(file size, allocated end) */

    GArray *inflight;           /* struct qcow2_inflight */
    GArray *pending_frees;      /* struct qcow2_host_range */
    gint data_io_in_flight;     /* reads/writes using host clusters
                                   (atomic) */

    /* Host cluster index -> mask of enum qcow2_meta_kind (overlap.c). */
    GHashTable *metadata;
    bool corrupt;               /* an overlap was found: no more writes */
};

static inline uint64_t qcow2_round_to_clusters(const struct qcow2_state *s,
                                               uint64_t bytes)
{
    return (bytes + s->cluster_size - 1) & ~(s->cluster_size - 1);
}

/* Big-endian fields of the on-disk structures. */
static inline uint32_t get_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

/* ---- header.c (no lock: no concurrent I/O) ---- */

/* Parse and validate the header, extensions, L1 and refcount tables. */
bool qcow2_read_header(struct qcow2_state *s, GError **errp);
/* Rewrite backing name and format (qcow2_driver.set_backing). */
bool qcow2_set_backing(struct block_node *node, const char *backing_name,
                       const char *backing_format, GError **errp);
/* Grow the virtual size (qcow2_driver.grow). */
bool qcow2_grow(struct block_node *node, uint64_t new_size, GError **errp);
/* Write one header field region (<= 24 bytes, one sector) and sync. */
int qcow2_write_header_bytes(struct qcow2_state *s, unsigned offset,
                             unsigned len);
/* Lay out cluster 0 after a header of header_length bytes: the extension
 * lead (bitmaps, may be NULL), the backing format extension, the
 * extensions exts, the end marker, the backing name.  Returns the bytes
 * used, or 0 if they do not fit. */
size_t qcow2_layout_cluster0(uint8_t *c0, uint64_t cluster_size,
                             uint32_t header_length, const uint8_t *lead,
                             size_t lead_len, const uint8_t *exts,
                             size_t exts_len, const char *backing_name,
                             const char *backing_format);
/* Rewrite cluster 0 from the in-memory header, bitmaps extension,
 * preserved extensions and the given backing strings, crash-atomically
 * (a new name first where the old header does not look, then one write
 * of sector 0).  When the extension area would change beyond sector 0, or
 * the name finds no room, the feature name table is dropped; if that is
 * not enough, -ENOSPC (-E2BIG: does not fit at all) with nothing
 * written.  Caller holds the lock (or runs with no I/O). */
int qcow2_rewrite_cluster0(struct qcow2_state *s, const char *backing_name,
                           const char *backing_format);
/* Tests: make the next cluster-0 rewrites stop after their first phase,
 * as a crash would, failing with -EIO. */
extern bool qcow2_cluster0_crash_after_first_phase;
/* Refuse backing names and formats too long for a header. */
bool qcow2_check_backing_strings(const char *filename, const char *name,
                                 const char *format, GError **errp);

/* ---- bitmap.c, bitmap-store.c ---- */

/* The entry of set called name, or NULL. */
struct qcow2_bitmap *qcow2_bitmap_find(GPtrArray *set, const char *name);
/* Table entries a bitmap of granularity 2^gbits needs for the disk, as
 * QEMU counts them (0 when the disk is smaller than a sector). */
uint64_t qcow2_bitmap_table_entries(struct qcow2_state *s, unsigned gbits);
/* Read a bitmap table (size entries), in host byte order. */
int qcow2_bitmap_read_table(struct qcow2_state *s, uint64_t offset,
                            uint32_t size, uint64_t **out);

/* An empty array of struct qcow2_bitmap * that frees its entries. */
GPtrArray *qcow2_bitmap_array_new(void);
/* At open (no lock): validate the bitmaps extension ext (ext_len bytes,
 * autoclear bit set) and its directory; fill s->bitmaps. */
bool qcow2_bitmaps_load(struct qcow2_state *s, const uint8_t *ext,
                        size_t ext_len, uint64_t file_size, GError **errp);
/* The bitmaps header extension for the current directory (32 bytes in
 * buf); 0 when there is none. */
size_t qcow2_bitmaps_ext_encode(struct qcow2_state *s, uint8_t *buf);
/* After a size change: bitmaps whose tables no longer fit are in use. */
void qcow2_bitmaps_resized(struct qcow2_state *s);
/* The bitmap ops of qcow2_driver (take the lock themselves). */
bool qcow2_bitmaps_supported(struct block_node *node, GError **errp);
GPtrArray *qcow2_bitmaps_list(struct block_node *node, GError **errp);
bool qcow2_bitmap_read(struct block_node *node, const char *name,
                       struct dirty_bitmap *bitmap, GError **errp);
bool qcow2_bitmaps_store(struct block_node *node,
                         const struct block_bitmap_entry *entries, size_t n,
                         GError **errp);

/* ---- create.c (no lock: no image open) ---- */

/* Create an image (qcow2_driver.create). */
bool qcow2_create(const char *filename, const struct block_create_opts *opts,
                  GError **errp);

/* ---- compress.c (no lock needed) ---- */

/* Decompress the cluster described by l2_entry into out (cluster_size). */
int qcow2_read_compressed(struct qcow2_state *s, uint64_t l2_entry,
                          uint8_t *out);
/* Host clusters that a compressed descriptor holds a reference on. */
void qcow2_compressed_range(struct qcow2_state *s, uint64_t l2_entry,
                            uint64_t *offset, uint64_t *len);
/* pread that reads zeros past the end of the file (data clusters). */
int qcow2_pread_data(int fd, void *buf, size_t len, uint64_t offset);

/* ======== state->lock must be held for everything below ======== */

/* ---- overlap.c ---- */

/* Fill the map of metadata clusters from the header, L1 table, refcount
 * table and bitmaps (at open, no lock); free it. */
void qcow2_meta_build(struct qcow2_state *s);
void qcow2_meta_free(struct qcow2_state *s);
/* Mark / unmark the clusters of [offset, offset+len) as holding kind. */
void qcow2_meta_add(struct qcow2_state *s, unsigned kind, uint64_t offset,
                    uint64_t len);
void qcow2_meta_remove(struct qcow2_state *s, unsigned kind, uint64_t offset,
                       uint64_t len);
/* Mark (add) or unmark the current bitmap directory and tables. */
void qcow2_meta_bitmaps(struct qcow2_state *s, bool add);
/* 0 if a write of kind (0: data) may touch [offset, offset+len); else
 * mark the image corrupt and return -EIO (always -EIO once corrupt). */
int qcow2_overlap_check(struct qcow2_state *s, unsigned kind,
                        uint64_t offset, uint64_t len);
/* qcow2_overlap_check, then host_pwrite. */
int qcow2_pwrite_checked(struct qcow2_state *s, unsigned kind,
                         const void *buf, size_t len, uint64_t offset);

/* ---- table-cache.c ---- */

/* A cache of tables of table_size bytes, bounded to max_bytes.
 * before_writeback runs before a dirty entry is evicted (may be NULL);
 * check_write before every write of a table (may be NULL: a failure
 * fails the write). */
struct table_cache *table_cache_new(int fd, size_t table_size,
                                    size_t max_bytes,
                                    int (*before_writeback)(void *opaque),
                                    int (*check_write)(void *opaque,
                                                       uint64_t offset),
                                    void *opaque);
/* Free the cache without writing anything. */
void table_cache_free(struct table_cache *cache);
/* Pin the table at offset; read it (load) or start from zeros. */
int table_cache_get(struct table_cache *cache, uint64_t offset, bool load,
                    struct table_entry **entry);
/* Unpin an entry. */
void table_cache_put(struct table_cache *cache, struct table_entry *entry);
/* Write one entry now (clean afterwards). */
int table_cache_write(struct table_cache *cache, struct table_entry *entry);
/* Write every dirty entry (no sync). Returns 0 or -errno. */
int table_cache_flush(struct table_cache *cache);
/* True when some entry is dirty. */
bool table_cache_is_dirty(struct table_cache *cache);
/* Number of entries currently cached (tests). */
unsigned table_cache_count(struct table_cache *cache);

/* ---- refcount.c ---- */

/* Refcount of the host cluster with index cluster. */
int qcow2_refcount_get(struct qcow2_state *s, uint64_t cluster,
                       uint64_t *refcount);
/* Add delta to the refcount of one host cluster (may create blocks). */
int qcow2_refcount_add(struct qcow2_state *s, uint64_t cluster,
                       int64_t delta);
/* Allocate want contiguous clusters (fewer if allow_fewer, at least 1). */
int qcow2_alloc_clusters(struct qcow2_state *s, uint64_t want,
                         bool allow_fewer, uint64_t *offset, uint64_t *got);
/* Drop one reference on every host cluster of [offset, offset+len) now. */
int qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len);
/* Queue a free that must wait until the L2 change is durable. */
void qcow2_free_deferred(struct qcow2_state *s, uint64_t offset,
                         uint64_t len);
/* Write dirty refcount blocks and fdatasync. */
int qcow2_refcounts_sync(struct qcow2_state *s);
/* Apply the deferred frees (caller made the L2 changes durable). */
int qcow2_apply_pending_frees(struct qcow2_state *s);

/* ---- cluster.c ---- */

/* Entry of one guest cluster (0 when no L2 table). */
int qcow2_get_l2_entry(struct qcow2_state *s, uint64_t guest_cluster,
                       uint64_t *entry);
/* Set the entry of one guest cluster, allocating the L2 table if needed. */
int qcow2_set_l2_entry(struct qcow2_state *s, uint64_t guest_cluster,
                       uint64_t entry);
/* Classify an entry; -EIO for a damaged one.  *host is the data offset. */
int qcow2_classify(struct qcow2_state *s, uint64_t entry,
                   enum qcow2_cluster_kind *kind, uint64_t *host);
/* Queue the frees that replacing entry implies. */
void qcow2_release_entry(struct qcow2_state *s, uint64_t entry);
/* True if [first, end) overlaps an in-flight allocation. */
bool qcow2_inflight_overlaps(struct qcow2_state *s, uint64_t first,
                             uint64_t end);
/* Wait (dropping the lock) until [first, end) has no in-flight overlap. */
void qcow2_inflight_wait(struct qcow2_state *s, uint64_t first,
                         uint64_t end);
/* Register / retire an in-flight allocation. */
void qcow2_inflight_add(struct qcow2_state *s, uint64_t first, uint64_t end);
void qcow2_inflight_remove(struct qcow2_state *s, uint64_t first);

/* ---- io.c ---- */

/* The I/O callbacks of qcow2_driver (take the lock themselves). */
int qcow2_read(struct block_node *node, uint64_t offset, uint64_t len,
               void *buf);
int qcow2_write(struct block_node *node, uint64_t offset, uint64_t len,
                const void *buf);
int qcow2_write_zeroes(struct block_node *node, uint64_t offset,
                       uint64_t len, int flags);
int qcow2_block_status(struct block_node *node, uint64_t offset,
                       uint64_t len, uint64_t *pnum);
int qcow2_flush(struct block_node *node);
int qcow2_map(struct block_node *node, uint64_t offset, uint64_t len,
              struct block_extent *ext);
void qcow2_unmap(struct block_node *node, const struct block_extent *ext);
/* Flush with the lock held: refcounts, sync, L2 tables, sync, frees. */
int qcow2_flush_locked(struct qcow2_state *s);

#endif
