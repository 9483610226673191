/* chainfs: a fleecing view (see fleece-view.h).
 *
 * Two bitmaps of the view's granularity say where each chunk is: the
 * consumer's `needed` (still on the disk) and `stored` (in the store).
 * The store maps every chunk to the same offset, so a chunk is read back
 * or discarded by its own offset and the store needs no table of ours.
 */
#include "core/fleece-view.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <linux/falloc.h>

#include "core/buffer-zero.h"
#include "core/chain.h"
#include "core/copy-before-write.h"
#include "core/dirty-bitmap.h"

/* The most a status query or a discard claims at once: guest writes to
 * the claimed chunks wait meanwhile. */
#define FLEECE_MAX_CLAIM (64ULL * 1024 * 1024)

struct fleece_view {
    int refcount;                   /* atomic */
    struct disk *disk;
    struct block_node *store;       /* owned; NULL once closed */
    uint64_t size;
    uint32_t granularity;
    struct dirty_bitmap *needed;    /* the consumer's */
    struct dirty_bitmap *stored;    /* chunks held as data in the store */
    int error;                      /* atomic: the first failed copy */

    pthread_rwlock_t lock;
    /* Under lock (written only with it held for writing): */
    struct cbw_consumer *consumer;  /* NULL before freeze, after close */
    bool closed;
};

/* --- The sink: guest writes copy the frozen content here ------------------ */

/* Write the data chunks of buf ([offset, offset + len), whole chunks) to
 * the store, skipping the chunks that are all zeros. */
static int store_chunks(struct fleece_view *view, uint64_t offset,
                        uint64_t len, const uint8_t *buf)
{
    const uint64_t g = view->granularity, end = offset + len;
    uint64_t run_start = offset, run_len = 0;

    for (uint64_t pos = offset, n;; pos += n) {
        n = pos < end ? MIN(g, end - pos) : 0;
        bool data = n > 0 && !buffer_is_zero(buf + (pos - offset), n);

        if (data) {
            if (run_len == 0) {
                run_start = pos;
            }
            run_len += n;
            continue;
        }
        if (run_len > 0) {
            int ret = view->store->driver->write(view->store, run_start,
                                                 run_len,
                                                 buf + (run_start - offset));
            if (ret < 0) {
                return ret;
            }
            dirty_bitmap_set(view->stored, run_start, run_len);
            run_len = 0;
        }
        if (n == 0) {
            break;
        }
    }
    return 0;
}

static int fleece_sink(void *opaque, uint64_t offset, uint64_t len,
                       const void *buf)
{
    struct fleece_view *view = opaque;

    /* Zeros are not stored; a broken view keeps nothing more. */
    if (!buf || __atomic_load_n(&view->error, __ATOMIC_ACQUIRE) != 0) {
        return 0;
    }
    return store_chunks(view, offset, len, buf);
}

static void fleece_copy_error(void *opaque, uint64_t offset, uint64_t len,
                              int error, bool is_read)
{
    struct fleece_view *view = opaque;
    int none = 0;

    (void)offset;
    (void)len;
    (void)is_read;
    __atomic_compare_exchange_n(&view->error, &none, error, false,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* --- Lifetime ------------------------------------------------------------- */

struct fleece_view *fleece_view_new(struct disk *disk, struct block_node *store,
                                    uint32_t granularity)
{
    struct fleece_view *view = g_new0(struct fleece_view, 1);

    view->refcount = 1;
    view->disk = disk;
    view->store = store;
    view->size = disk_size(disk);
    view->granularity = granularity;
    view->needed = dirty_bitmap_new(view->size, granularity);
    view->stored = dirty_bitmap_new(view->size, granularity);
    pthread_rwlock_init(&view->lock, NULL);
    return view;
}

void fleece_view_freeze_drained(struct fleece_view *view)
{
    struct cbw_consumer_ops ops = { fleece_sink, fleece_copy_error, view };

    g_assert(!view->consumer && !view->closed);
    dirty_bitmap_set_all(view->needed);
    view->consumer = cbw_add_consumer_drained(view->disk, view->needed, &ops);
}

void fleece_view_close(struct fleece_view *view)
{
    struct cbw_consumer *consumer;

    /* Requests in flight hold the lock for reading: wait for them. */
    pthread_rwlock_wrlock(&view->lock);
    consumer = view->consumer;
    view->consumer = NULL;
    view->closed = true;
    pthread_rwlock_unlock(&view->lock);
    if (consumer) {
        disk_drain_begin(view->disk);
        cbw_remove_consumer_drained(view->disk, consumer);
        disk_drain_end(view->disk);
    }
    /* No request and no sink can use the store any more: give its space
     * back now, not when the last open file of the view goes. */
    if (view->store) {
        block_node_close(view->store);
        view->store = NULL;
    }
}

void fleece_view_ref(struct fleece_view *view)
{
    __atomic_add_fetch(&view->refcount, 1, __ATOMIC_RELAXED);
}

void fleece_view_unref(struct fleece_view *view)
{
    if (!view || __atomic_sub_fetch(&view->refcount, 1, __ATOMIC_ACQ_REL)) {
        return;
    }
    fleece_view_close(view);
    dirty_bitmap_free(view->needed);
    dirty_bitmap_free(view->stored);
    pthread_rwlock_destroy(&view->lock);
    g_free(view);
}

uint64_t fleece_view_size(const struct fleece_view *view)
{
    return view->size;
}

uint64_t fleece_view_store_bytes(struct fleece_view *view)
{
    return dirty_bitmap_count(view->stored);
}

int fleece_view_error(struct fleece_view *view)
{
    return __atomic_load_n(&view->error, __ATOMIC_ACQUIRE);
}

/* --- Requests ------------------------------------------------------------- */

/* Take view->lock for a request: false (lock not held) once closed. */
static bool request_begin(struct fleece_view *view)
{
    pthread_rwlock_rdlock(&view->lock);
    if (view->closed || !view->consumer) {
        pthread_rwlock_unlock(&view->lock);
        return false;
    }
    return true;
}

static void request_end(struct fleece_view *view)
{
    pthread_rwlock_unlock(&view->lock);
}

/* Where a chunk is, under a claim on it. */
enum chunk_place {
    CHUNK_NEEDED,       /* on the disk */
    CHUNK_STORED,       /* in the store */
    CHUNK_ZERO,         /* nowhere: zeros */
};

static enum chunk_place chunk_place(struct fleece_view *view, uint64_t offset)
{
    if (dirty_bitmap_get(view->needed, offset)) {
        return CHUNK_NEEDED;
    }
    return dirty_bitmap_get(view->stored, offset) ? CHUNK_STORED : CHUNK_ZERO;
}

/* Read one run of chunks alike, within the claim. */
static int read_run(struct fleece_view *view, const struct cbw_claim *claim,
                    enum chunk_place place, uint64_t offset, uint64_t len,
                    uint8_t *buf)
{
    switch (place) {
    case CHUNK_NEEDED:
        return cbw_read_claimed(view->consumer, claim, offset, len, buf);
    case CHUNK_STORED:
        return view->store->driver->read(view->store, offset, len, buf);
    case CHUNK_ZERO:
        memset(buf, 0, len);
        return 0;
    }
    return -EIO;
}

int fleece_view_read(struct fleece_view *view, uint64_t offset, uint64_t len,
                     void *buf)
{
    const uint64_t g = view->granularity, end = offset + len;
    struct cbw_claim claim;
    int ret = 0;

    g_assert(offset <= view->size && len <= view->size - offset);
    if (!request_begin(view)) {
        return -EIO;
    }
    cbw_claim_begin(view->consumer, offset, len, &claim);
    for (uint64_t pos = offset; pos < end && ret == 0;) {
        enum chunk_place place = chunk_place(view, pos);
        uint64_t run_end = MIN(end, pos / g * g + g);

        /* Extend the run over the following chunks in the same place. */
        while (run_end < end && chunk_place(view, run_end) == place) {
            run_end = MIN(end, run_end + g);
        }
        ret = read_run(view, &claim, place, pos, run_end - pos,
                       (uint8_t *)buf + (pos - offset));
        pos = run_end;
    }
    /* A copy that failed before this read ended breaks the view. */
    if (ret == 0 && fleece_view_error(view) != 0) {
        ret = -EIO;
    }
    cbw_claim_end(view->consumer, &claim);
    request_end(view);
    return ret;
}

/* Give the store's space for [offset, offset + len) back: punch the host
 * clusters, then free them in the image. */
static int store_discard(struct fleece_view *view, uint64_t offset,
                         uint64_t len)
{
    struct block_node *store = view->store;

    /* Punch first: once freed, a cluster may be reused by another copy. */
    for (uint64_t pos = offset; pos < offset + len;) {
        struct block_extent ext;

        if (block_node_map(store, pos, offset + len - pos, &ext) < 0) {
            break;              /* only the punch is lost */
        }
        if (ext.kind == BLOCK_EXTENT_HOST) {
            (void)fallocate(ext.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            (off_t)ext.host_offset, (off_t)ext.len);
            block_extent_release(&ext);
        }
        pos += MAX(ext.len, 1);
    }
    return block_node_write_zeroes(store, offset, len, BLOCK_ZERO_UNMAP);
}

/* Release [offset, offset + len), whole chunks, within one claim. */
static int discard_claimed(struct fleece_view *view,
                           const struct cbw_claim *claim, uint64_t offset,
                           uint64_t len)
{
    const uint64_t end = offset + len;
    uint64_t pos = offset, run_len;
    int ret = 0;

    cbw_forget_claimed(view->consumer, claim, offset, len);
    while (ret == 0 && dirty_bitmap_next_dirty_area(view->stored, &pos, end,
                                                    end - pos, &run_len)) {
        ret = store_discard(view, pos, run_len);
        if (ret == 0) {
            dirty_bitmap_reset(view->stored, pos, run_len);
        }
        pos += run_len;
    }
    return ret;
}

int fleece_view_discard(struct fleece_view *view, uint64_t offset,
                        uint64_t len)
{
    const uint64_t g = view->granularity;
    uint64_t start = (offset + g - 1) / g * g;
    uint64_t end = offset + len >= view->size ? view->size
                                              : (offset + len) / g * g;
    int ret = 0;

    g_assert(offset <= view->size && len <= view->size - offset);
    if (!request_begin(view)) {
        return -EIO;
    }
    for (uint64_t pos = start; pos < end && ret == 0;) {
        uint64_t n = MIN(end - pos, FLEECE_MAX_CLAIM);
        struct cbw_claim claim;

        cbw_claim_begin(view->consumer, pos, n, &claim);
        ret = discard_claimed(view, &claim, pos, n);
        cbw_claim_end(view->consumer, &claim);
        pos += n;
    }
    request_end(view);
    return ret;
}

/* The status at offset, within [offset, end) which the caller claimed. */
static int status_claimed(struct fleece_view *view, uint64_t offset,
                          uint64_t end, uint64_t *pnum)
{
    const uint64_t g = view->granularity;
    uint64_t chunk = offset / g * g, run_len;
    int64_t next;

    switch (chunk_place(view, offset)) {
    case CHUNK_NEEDED: {
        /* The disk is unchanged there: its status is the instant's.  The
         * claim holds io_lock, so its chain can be read directly. */
        dirty_bitmap_next_dirty_area(view->needed, &chunk, end, end - chunk,
                                     &run_len);
        uint64_t n = MIN(end, chunk + run_len) - offset;
        int status = block_chain_status(view->disk->top, offset, n, pnum);
        if (status < 0) {
            return status;
        }
        *pnum = MAX(MIN(*pnum, n), 1);
        return (status & BLOCK_STATUS_DATA) ? 1 : 0;
    }
    case CHUNK_STORED:
        dirty_bitmap_next_dirty_area(view->stored, &chunk, end, end - chunk,
                                     &run_len);
        next = dirty_bitmap_next_dirty(view->needed, offset, end);
        *pnum = MIN(next < 0 ? end : (uint64_t)next,
                    MIN(end, chunk + run_len)) - offset;
        return 1;
    case CHUNK_ZERO:
        next = dirty_bitmap_next_dirty(view->needed, offset, end);
        end = next < 0 ? end : (uint64_t)next;
        next = dirty_bitmap_next_dirty(view->stored, offset, end);
        *pnum = (next < 0 ? end : (uint64_t)next) - offset;
        return 0;
    }
    return -EIO;
}

int fleece_view_status(struct fleece_view *view, uint64_t offset,
                       uint64_t len, uint64_t *pnum)
{
    struct cbw_claim claim;
    uint64_t end;
    int ret;

    if (offset >= view->size || len == 0) {
        return -EINVAL;
    }
    end = offset + MIN(MIN(len, view->size - offset), FLEECE_MAX_CLAIM);
    if (!request_begin(view)) {
        return -EIO;
    }
    cbw_claim_begin(view->consumer, offset, end - offset, &claim);
    ret = status_claimed(view, offset, end, pnum);
    cbw_claim_end(view->consumer, &claim);
    request_end(view);
    return ret;
}

int fleece_view_allocated_bytes(struct fleece_view *view, uint64_t *bytes)
{
    uint64_t total = 0;

    for (uint64_t pos = 0; pos < view->size;) {
        uint64_t n;
        int ret = fleece_view_status(view, pos, view->size - pos, &n);
        if (ret < 0) {
            return ret;
        }
        if (ret == 1) {
            total += n;
        }
        pos += n;
    }
    *bytes = total;
    return 0;
}
