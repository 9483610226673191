/* chainfs: disks: guest I/O onto a chain, bounds, and dirty tracking.
 *
 * Every request holds io_lock for reading only while it runs, so drains
 * (jobs changing the chain) wait for requests in flight and the
 * writer-preferring rwlock keeps a stream of requests from starving them.
 * The rwlock is not recursive: no disk_* function calls another while
 * holding it, and none may be called by a thread that holds a drain.
 *
 * Marking bitmaps takes bitmaps_lock for the duration of the marking only
 * (setting bits in memory, no I/O).  A copy-on-write array of bitmaps would
 * save that mutex, but it needs a grace period before an old array can be
 * freed; one short, uncontended-in-practice mutex per write is cheaper than
 * that machinery.  Because marking happens under the same lock as
 * detaching, a bitmap is never touched once disk_detach_bitmap() returns,
 * and a bitmap attached before a write lands is always marked by it.
 */
#include <errno.h>
#include <inttypes.h>

#include "chain.h"
#include "copy-before-write.h"
#include "disk.h"
#include "named-bitmap.h"
#include "owner-map.h"

static void lock_bitmap_list(struct disk *disk)
{
    pthread_mutex_lock(&disk->bitmaps_lock);
}

static void unlock_bitmap_list(struct disk *disk)
{
    pthread_mutex_unlock(&disk->bitmaps_lock);
}

struct disk *disk_new(const char *name, struct block_node *top,
                      bool read_only)
{
    struct disk *disk = g_new0(struct disk, 1);
    pthread_rwlockattr_t attr;

    disk->name = g_strdup(name);
    disk->read_only = read_only;
    disk->top = top;

    pthread_rwlockattr_init(&attr);
    /* Without this glibc prefers readers, and a steady stream of guest
     * requests would keep a drain waiting for ever. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&disk->io_lock, &attr);
    pthread_rwlockattr_destroy(&attr);

    pthread_mutex_init(&disk->bitmaps_lock, NULL);
    disk->bitmaps = g_ptr_array_new();
    disk->named_bitmaps = named_bitmap_set_new();
    disk->write_hooks = g_ptr_array_new();
    disk->read_hooks = g_ptr_array_new();
    return disk;
}

/* Flush every writable layer; the first error wins.  Called with io_lock
 * held (either way). */
static int flush_chain(struct block_node *top)
{
    int first_error = 0;

    for (struct block_node *node = top; node; node = node->backing) {
        if (node->read_only) {
            continue;
        }
        int ret = node->driver->flush(node);
        if (ret < 0 && first_error == 0) {
            first_error = ret;
        }
    }
    return first_error;
}

int disk_close(struct disk *disk)
{
    if (!disk) {
        return 0;
    }
    int ret = named_bitmaps_close(disk);
    int flush_ret = flush_chain(disk->top);
    int close_ret = chain_close(disk->top);
    if (ret == 0) {
        ret = flush_ret;
    }
    if (ret == 0) {
        ret = close_ret;
    }
    named_bitmap_set_free(disk->named_bitmaps);
    cbw_disk_free(disk);
    pthread_rwlock_destroy(&disk->io_lock);
    pthread_mutex_destroy(&disk->bitmaps_lock);
    g_ptr_array_unref(disk->bitmaps);
    g_ptr_array_unref(disk->write_hooks);
    g_ptr_array_unref(disk->read_hooks);
    g_free(disk->name);
    g_free(disk);
    return ret;
}

uint64_t disk_size(struct disk *disk)
{
    pthread_rwlock_rdlock(&disk->io_lock);
    uint64_t size = disk->top->size;
    pthread_rwlock_unlock(&disk->io_lock);
    return size;
}

/* Whether [offset, offset + len) lies within size, without overflow. */
static bool range_fits(uint64_t offset, uint64_t len, uint64_t size)
{
    return offset <= size && len <= size - offset;
}

/* Mark [offset, offset + len) in every attached bitmap. */
static void mark_bitmaps(struct disk *disk, uint64_t offset, uint64_t len)
{
    lock_bitmap_list(disk);
    for (unsigned i = 0; i < disk->bitmaps->len; i++) {
        dirty_bitmap_set(g_ptr_array_index(disk->bitmaps, i), offset, len);
    }
    unlock_bitmap_list(disk);
}

int disk_read(struct disk *disk, uint64_t offset, uint64_t len, void *buf)
{
    int ret = 0;

    if (len == 0) {
        return 0;
    }
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *top = disk->top;
    /* The front end clips reads at the end; getting here past it is a
     * bug to report, not to paper over. */
    if (!range_fits(offset, len, top->size)) {
        ret = -EINVAL;
    } else {
        ret = top->driver->read(top, offset, len, buf);
    }
    for (unsigned i = 0; ret == 0 && i < disk->read_hooks->len; i++) {
        const struct disk_read_hook *hook =
            g_ptr_array_index(disk->read_hooks, i);
        hook->after(hook->opaque, offset, len, buf);
    }
    pthread_rwlock_unlock(&disk->io_lock);
    return ret;
}

static void release_extents(struct disk_map *map)
{
    for (unsigned i = 0; i < map->count; i++) {
        block_extent_release(&map->extents[i]);
    }
    map->count = 0;
}

int disk_map_read(struct disk *disk, uint64_t offset, uint64_t len,
                  struct disk_map *map)
{
    int ret = 0;

    map->count = 0;
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *top = disk->top;
    if (!range_fits(offset, len, top->size)) {
        ret = -EINVAL;
    } else if (disk->read_hooks->len > 0) {
        ret = -ENOTSUP;
    }
    while (ret == 0 && len > 0) {
        if (map->count == DISK_MAP_MAX_EXTENTS) {
            ret = -ENOTSUP;
            break;
        }
        struct block_extent *ext = &map->extents[map->count];
        ret = block_node_map(top, offset, len, ext);
        if (ret == 0) {
            map->count++;
            offset += ext->len;
            len -= ext->len;
        }
    }
    if (ret < 0) {
        release_extents(map);
        pthread_rwlock_unlock(&disk->io_lock);
    }
    return ret;
}

void disk_map_release(struct disk *disk, struct disk_map *map)
{
    release_extents(map);
    pthread_rwlock_unlock(&disk->io_lock);
}

/* Most disks have no hook; these keep that case to one length check.  A
 * few hooks at most exist (one per mirror), so fixed arrays suffice. */
#define DISK_MAX_WRITE_HOOKS 8

/* The write to the top itself, then the marking. */
static int disk_modify_top(struct disk *disk, struct block_node *top,
                           uint64_t offset, uint64_t len, const void *buf,
                           int zero_flags)
{
    int ret;

    if (zero_flags < 0) {
        ret = top->driver->write(top, offset, len, buf);
    } else {
        ret = block_node_write_zeroes(top, offset, len, zero_flags);
    }
    /* Even a failed write may have changed part of the range, and an
     * extra dirty chunk only costs a copy. */
    mark_bitmaps(disk, offset, len);
    return ret;
}

/* The write wrapped in the write hooks: every `before` in order, the
 * write, every `after` in reverse order. */
static int disk_modify_hooked(struct disk *disk, struct block_node *top,
                              uint64_t offset, uint64_t len, const void *buf,
                              int zero_flags)
{
    void *cookies[DISK_MAX_WRITE_HOOKS];
    unsigned n = disk->write_hooks->len;

    for (unsigned i = 0; i < n; i++) {
        const struct disk_write_hook *hook =
            g_ptr_array_index(disk->write_hooks, i);
        cookies[i] = hook->before(hook->opaque, offset, len);
    }
    int ret = disk_modify_top(disk, top, offset, len, buf, zero_flags);
    for (unsigned i = n; i-- > 0;) {
        const struct disk_write_hook *hook =
            g_ptr_array_index(disk->write_hooks, i);
        hook->after(hook->opaque, cookies[i], offset, len,
                    zero_flags < 0 ? buf : NULL,
                    zero_flags < 0 ? 0 : zero_flags, ret);
    }
    return ret;
}

/* The common part of writes and zero writes: checks, then the write (with
 * the hooks, if any), then the marking.  zero_flags < 0 means a data write
 * of buf. */
static int disk_modify(struct disk *disk, uint64_t offset, uint64_t len,
                       const void *buf, int zero_flags)
{
    int ret;

    if (disk->read_only) {
        return -EROFS;
    }
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *top = disk->top;
    if (!range_fits(offset, len, top->size)) {
        ret = -ENOSPC;
    } else if (len == 0) {
        ret = 0;
    } else if (disk->write_hooks->len == 0) {
        ret = disk_modify_top(disk, top, offset, len, buf, zero_flags);
    } else {
        ret = disk_modify_hooked(disk, top, offset, len, buf, zero_flags);
    }
    pthread_rwlock_unlock(&disk->io_lock);
    return ret;
}

int disk_write(struct disk *disk, uint64_t offset, uint64_t len,
               const void *buf)
{
    return disk_modify(disk, offset, len, buf, -1);
}

int disk_write_zeroes(struct disk *disk, uint64_t offset, uint64_t len,
                      int flags)
{
    return disk_modify(disk, offset, len, NULL, flags & BLOCK_ZERO_UNMAP);
}

int disk_flush(struct disk *disk)
{
    pthread_rwlock_rdlock(&disk->io_lock);
    int ret = flush_chain(disk->top);
    pthread_rwlock_unlock(&disk->io_lock);
    return ret;
}

int disk_block_status(struct disk *disk, uint64_t offset, uint64_t len,
                      uint64_t *pnum)
{
    int ret;

    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *top = disk->top;
    if (offset >= top->size || len == 0) {
        ret = -ENXIO; /* no run to describe, as lseek says past the end */
    } else {
        ret = block_chain_status(top, offset, MIN(len, top->size - offset),
                                 pnum);
    }
    pthread_rwlock_unlock(&disk->io_lock);
    return ret;
}

int disk_allocated_bytes(struct disk *disk, uint64_t *bytes)
{
    uint64_t total = 0;

    /* One status call per run, not per cluster: the cost follows the
     * allocation, so a huge sparse disk is cheap.  The lock is taken per
     * call so that a drain never waits for a whole walk. */
    for (uint64_t offset = 0;;) {
        uint64_t pnum;
        int flags = disk_block_status(disk, offset, UINT64_MAX - offset,
                                      &pnum);
        if (flags == -ENXIO) {
            break; /* the end of the disk */
        }
        if (flags < 0) {
            return flags;
        }
        if (flags & BLOCK_STATUS_DATA) {
            total += pnum;
        }
        offset += pnum;
    }
    *bytes = total;
    return 0;
}

struct block_node *disk_find_layer(struct disk *disk, const char *path,
                                   GError **errp)
{
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *layer = chain_find_layer(disk->top, path);
    pthread_rwlock_unlock(&disk->io_lock);
    if (!layer) {
        g_set_error(errp, CHAINFS_ERROR, ENOENT,
                    "layer %s is not in the chain of disk '%s'", path,
                    disk->name);
    }
    return layer;
}

char *disk_describe_chain(struct disk *disk)
{
    GString *text = g_string_new(NULL);
    unsigned depth = 0;

    pthread_rwlock_rdlock(&disk->io_lock);
    for (struct block_node *node = disk->top; node; node = node->backing) {
        g_string_append_printf(text, "%u %s %" PRIu64 " %s\n", depth++,
                               node->driver->format_name, node->size,
                               node->filename);
    }
    pthread_rwlock_unlock(&disk->io_lock);
    return g_string_free(text, false);
}

void disk_attach_bitmap(struct disk *disk, struct dirty_bitmap *bitmap)
{
    lock_bitmap_list(disk);
    g_ptr_array_add(disk->bitmaps, bitmap);
    unlock_bitmap_list(disk);
}

void disk_detach_bitmap(struct disk *disk, struct dirty_bitmap *bitmap)
{
    lock_bitmap_list(disk);
    g_ptr_array_remove(disk->bitmaps, bitmap);
    unlock_bitmap_list(disk);
}

void disk_drain_begin(struct disk *disk)
{
    pthread_rwlock_wrlock(&disk->io_lock);
}

void disk_drain_end(struct disk *disk)
{
    /* Owner maps a reopen under the drain made stale go before readers
     * come back (owner-map.h). */
    owner_maps_sweep_drained(disk->top);
    pthread_rwlock_unlock(&disk->io_lock);
}

void disk_add_write_hook_drained(struct disk *disk,
                                 const struct disk_write_hook *hook)
{
    g_assert(disk->write_hooks->len < DISK_MAX_WRITE_HOOKS);
    g_ptr_array_add(disk->write_hooks, (gpointer)hook);
}

void disk_remove_write_hook_drained(struct disk *disk,
                                    const struct disk_write_hook *hook)
{
    g_ptr_array_remove(disk->write_hooks, (gpointer)hook);
}

void disk_add_read_hook_drained(struct disk *disk,
                                const struct disk_read_hook *hook)
{
    g_ptr_array_add(disk->read_hooks, (gpointer)hook);
}

void disk_remove_read_hook_drained(struct disk *disk,
                                   const struct disk_read_hook *hook)
{
    g_ptr_array_remove(disk->read_hooks, (gpointer)hook);
}

/* Number the layers from the top down. */
static void renumber_depths(struct block_node *top)
{
    unsigned depth = 0;

    for (struct block_node *node = top; node; node = node->backing) {
        node->depth = depth++;
    }
}

int disk_remove_layers_drained(struct disk *disk, struct block_node *above,
                               struct block_node *below)
{
    struct block_node *node = above->backing;
    int first_error = 0;

    __atomic_add_fetch(&disk->chain_generation, 1, __ATOMIC_RELEASE);
    owner_maps_clear_drained(disk->top);
    above->backing = below;
    while (node && node != below) {
        struct block_node *backing = node->backing;
        node->backing = NULL;
        int ret = block_node_close(node);
        if (ret < 0 && first_error == 0) {
            first_error = ret;
        }
        node = backing;
    }
    renumber_depths(disk->top);
    return first_error;
}

/* Whether node is one of the layers of the chain under top. */
static bool chain_contains(struct block_node *top, struct block_node *node)
{
    for (; top; top = top->backing) {
        if (top == node) {
            return true;
        }
    }
    return false;
}

uint64_t disk_chain_generation(struct disk *disk)
{
    return __atomic_load_n(&disk->chain_generation, __ATOMIC_ACQUIRE);
}

int disk_switch_top_drained(struct disk *disk, struct block_node *new_top)
{
    struct block_node *old = disk->top;
    int first_error = 0;
    unsigned depth = 0;

    __atomic_add_fetch(&disk->chain_generation, 1, __ATOMIC_RELEASE);
    owner_maps_clear_drained(disk->top);
    owner_maps_clear_drained(new_top);
    disk->top = new_top;
    for (struct block_node *node = new_top; node; node = node->backing) {
        node->depth = depth++;
    }
    /* Layers shared by both chains are a common tail (a node's backing is
     * the same whichever chain reaches it), so the layers that leave are
     * the old chain's head, down to the first shared one. */
    while (old && !chain_contains(new_top, old)) {
        struct block_node *backing = old->backing;
        old->backing = NULL;
        int ret = block_node_close(old);
        if (ret < 0 && first_error == 0) {
            first_error = ret;
        }
        old = backing;
    }
    return first_error;
}
