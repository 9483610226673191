/* chainfs: copy-before-write (see copy-before-write.h).
 *
 * One disk write hook per disk, installed with the first consumer and
 * removed with the last, calls every consumer in turn: a guest write holds
 * claims of one consumer at a time, so two consumers never wait for each
 * other.  Claims are a short list per consumer (the copies in flight),
 * searched under the consumer's mutex; a waiter sleeps on the consumer's
 * condition variable, broadcast whenever a claim ends.
 */
#include "core/copy-before-write.h"

#include <errno.h>
#include <string.h>

#include "core/block.h"

/* The per-disk state. */
struct cbw_disk {
    struct disk_write_hook hook;
    GPtrArray *consumers;       /* struct cbw_consumer *; see disk.h */
};

struct cbw_consumer {
    struct disk *disk;
    struct dirty_bitmap *needed;    /* not owned */
    uint64_t granularity;
    uint64_t size;
    struct cbw_consumer_ops ops;

    pthread_mutex_t lock;
    pthread_cond_t cond;            /* broadcast when a claim ends */
    GPtrArray *claims;              /* struct cbw_claim *, under lock */
};

/* The needed runs one guest write claimed (most writes claim one). */
#define CBW_INLINE_RUNS 4
/* The most read into memory at once (a discard may claim gigabytes). */
#define CBW_MAX_READ (1024 * 1024)

static bool ranges_overlap(uint64_t a, uint64_t a_len, uint64_t b,
                           uint64_t b_len)
{
    return a < b + b_len && b < a + a_len;
}

/* [*start, *end): [offset, offset + len) rounded out to whole chunks and
 * clipped to the size. */
static void chunk_range(const struct cbw_consumer *c, uint64_t offset,
                        uint64_t len, uint64_t *start, uint64_t *end)
{
    uint64_t g = c->granularity;

    *start = offset / g * g;
    *end = MIN(c->size, (offset + len + g - 1) / g * g);
}

static bool overlaps_claim_locked(struct cbw_consumer *c, uint64_t offset,
                                  uint64_t len)
{
    for (unsigned i = 0; i < c->claims->len; i++) {
        struct cbw_claim *claim = g_ptr_array_index(c->claims, i);
        if (ranges_overlap(claim->offset, claim->len, offset, len)) {
            return true;
        }
    }
    return false;
}

static void wait_for_claims_locked(struct cbw_consumer *c, uint64_t offset,
                                   uint64_t len)
{
    while (overlaps_claim_locked(c, offset, len)) {
        pthread_cond_wait(&c->cond, &c->lock);
    }
}

/* Remove claims and wake their waiters. */
static void end_claims(struct cbw_consumer *c, struct cbw_claim *claims,
                       unsigned n)
{
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < n; i++) {
        g_ptr_array_remove_fast(c->claims, &claims[i]);
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Read [offset, offset + len) (at most one piece) from the chain under
 * top into buf, zeros where block status says so: returns 1 if all of it
 * reads as zeros (buf untouched), 0 if buf holds it, or a negative errno. */
static int read_piece(struct block_node *top, uint64_t offset, uint64_t len,
                      uint8_t **buf, size_t buf_len, uint64_t *data_bytes)
{
    const uint64_t start = offset, end = offset + len;
    bool all_zero = true;

    while (offset < end) {
        uint64_t pnum;
        int status = block_chain_status(top, offset, end - offset, &pnum);
        if (status < 0) {
            return status;
        }
        pnum = MAX(MIN(pnum, end - offset), 1);
        if (status & BLOCK_STATUS_DATA) {
            if (!*buf) {
                *buf = g_malloc(buf_len);
            }
            if (all_zero) {
                memset(*buf, 0, offset - start);
                all_zero = false;
            }
            int ret = top->driver->read(top, offset, pnum,
                                        *buf + (offset - start));
            if (ret < 0) {
                return ret;
            }
            if (data_bytes) {
                *data_bytes += pnum;
            }
        } else if (!all_zero) {
            memset(*buf + (offset - start), 0, pnum);
        }
        offset += pnum;
    }
    return all_zero ? 1 : 0;
}

/* Read the claimed run [offset, offset + len) from the disk's current
 * chain (io_lock held for reading) and hand it to the sink in pieces of
 * whole chunks (at most CBW_MAX_READ, or one chunk if larger); a piece
 * that reads as zeros by block status is not read.  Returns 0 or a
 * negative errno, *is_read saying which side failed. */
static int copy_run(struct cbw_consumer *c, uint64_t offset, uint64_t len,
                    bool *is_read, uint64_t *data_bytes)
{
    struct block_node *top = c->disk->top;
    const uint64_t end = offset + len;
    const uint64_t piece = MAX(c->granularity,
                               CBW_MAX_READ / c->granularity * c->granularity);
    uint8_t *buf = NULL;
    int ret = 0;

    while (offset < end) {
        uint64_t n = MIN(piece, end - offset);
        ret = read_piece(top, offset, n, &buf, MIN(piece, len), data_bytes);
        if (ret < 0) {
            *is_read = true;
            break;
        }
        ret = c->ops.sink(c->ops.opaque, offset, n, ret == 1 ? NULL : buf);
        if (ret < 0) {
            *is_read = false;
            break;
        }
        offset += n;
    }
    g_free(buf);
    return ret;
}

/* --- The guest write path (the disk write hook) -------------------------- */

/* Copy the needed chunks a guest write to [offset, offset + len) touches,
 * for one consumer. */
static void before_write_one(struct cbw_consumer *c, uint64_t offset,
                             uint64_t len)
{
    struct cbw_claim inline_claims[CBW_INLINE_RUNS];
    struct cbw_claim *claims = inline_claims;
    unsigned n = 0, capacity = CBW_INLINE_RUNS;
    uint64_t start, end;

    chunk_range(c, offset, len, &start, &end);
    if (start >= end) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    /* Copies of these chunks in flight end first; then what is still
     * needed is ours alone to copy. */
    wait_for_claims_locked(c, start, end - start);
    for (uint64_t pos = start, run_len;
         dirty_bitmap_take_dirty_area(c->needed, &pos, end, end - pos,
                                      &run_len);
         pos += run_len) {
        if (n == capacity) {
            capacity *= 2;
            struct cbw_claim *grown = g_new(struct cbw_claim, capacity);
            memcpy(grown, claims, n * sizeof(*claims));
            /* The claims registered so far point into the old array. */
            for (unsigned i = 0; i < n; i++) {
                g_ptr_array_remove_fast(c->claims, &claims[i]);
                g_ptr_array_add(c->claims, &grown[i]);
            }
            if (claims != inline_claims) {
                g_free(claims);
            }
            claims = grown;
        }
        claims[n] = (struct cbw_claim){ pos, run_len };
        g_ptr_array_add(c->claims, &claims[n]);
        n++;
    }
    pthread_mutex_unlock(&c->lock);

    for (unsigned i = 0; i < n; i++) {
        bool is_read = false;
        int ret = copy_run(c, claims[i].offset, claims[i].len, &is_read,
                           NULL);
        if (ret < 0 && c->ops.error) {
            c->ops.error(c->ops.opaque, claims[i].offset, claims[i].len, ret,
                         is_read);
        }
    }
    if (n > 0) {
        end_claims(c, claims, n);
    }
    if (claims != inline_claims) {
        g_free(claims);
    }
}

static void *cbw_write_before(void *opaque, uint64_t offset, uint64_t len)
{
    struct cbw_disk *state = opaque;

    for (unsigned i = 0; i < state->consumers->len; i++) {
        before_write_one(g_ptr_array_index(state->consumers, i), offset,
                         len);
    }
    return NULL;
}

static void cbw_write_after(void *opaque, void *cookie, uint64_t offset,
                            uint64_t len, const void *buf, int zero_flags,
                            int ret)
{
    (void)opaque;
    (void)cookie;
    (void)offset;
    (void)len;
    (void)buf;
    (void)zero_flags;
    (void)ret;
}

/* --- Consumers ----------------------------------------------------------- */

struct cbw_consumer *cbw_add_consumer_drained(struct disk *disk,
                                              struct dirty_bitmap *needed,
                                              const struct cbw_consumer_ops *ops)
{
    struct cbw_consumer *c = g_new0(struct cbw_consumer, 1);

    g_assert(ops->sink);
    c->disk = disk;
    c->needed = needed;
    c->granularity = dirty_bitmap_granularity(needed);
    c->size = disk->top->size;
    c->ops = *ops;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->claims = g_ptr_array_new();

    if (!disk->cbw) {
        disk->cbw = g_new0(struct cbw_disk, 1);
        disk->cbw->consumers = g_ptr_array_new();
        disk->cbw->hook = (struct disk_write_hook){
            cbw_write_before, cbw_write_after, disk->cbw,
        };
    }
    if (disk->cbw->consumers->len == 0) {
        disk_add_write_hook_drained(disk, &disk->cbw->hook);
    }
    g_ptr_array_add(disk->cbw->consumers, c);
    return c;
}

void cbw_remove_consumer_drained(struct disk *disk,
                                 struct cbw_consumer *consumer)
{
    g_assert(disk->cbw && consumer->claims->len == 0);
    g_ptr_array_remove(disk->cbw->consumers, consumer);
    if (disk->cbw->consumers->len == 0) {
        disk_remove_write_hook_drained(disk, &disk->cbw->hook);
    }
    g_ptr_array_unref(consumer->claims);
    pthread_cond_destroy(&consumer->cond);
    pthread_mutex_destroy(&consumer->lock);
    g_free(consumer);
}

void cbw_disk_free(struct disk *disk)
{
    if (!disk->cbw) {
        return;
    }
    g_assert(disk->cbw->consumers->len == 0);
    g_ptr_array_unref(disk->cbw->consumers);
    g_clear_pointer(&disk->cbw, g_free);
}

uint64_t cbw_granularity(const struct cbw_consumer *consumer)
{
    return consumer->granularity;
}

/* --- The background copier ----------------------------------------------- */

/* Find and claim the first needed run at or after *offset (before end,
 * at most max_len), waiting for claims that overlap it. */
static bool claim_next_run_locked(struct cbw_consumer *c, uint64_t *offset,
                                  uint64_t end, uint64_t max_len,
                                  struct cbw_claim *claim)
{
    for (;;) {
        uint64_t pos = *offset, len;
        if (!dirty_bitmap_next_dirty_area(c->needed, &pos, end, max_len,
                                          &len)) {
            return false;
        }
        if (overlaps_claim_locked(c, pos, len)) {
            /* A view's reader holds it; look again once it is done. */
            pthread_cond_wait(&c->cond, &c->lock);
            continue;
        }
        dirty_bitmap_reset(c->needed, pos, len);
        *claim = (struct cbw_claim){ pos, len };
        g_ptr_array_add(c->claims, claim);
        *offset = pos;
        return true;
    }
}

int cbw_copy_next(struct cbw_consumer *consumer, uint64_t *offset,
                  uint64_t end, uint64_t max_len, uint64_t *len,
                  bool *is_read, uint64_t *data_bytes)
{
    struct cbw_consumer *c = consumer;
    struct cbw_claim claim;
    int ret;

    end = MIN(end, c->size);
    if (*offset >= end) {
        return 0;
    }
    pthread_rwlock_rdlock(&c->disk->io_lock);
    pthread_mutex_lock(&c->lock);
    bool found = claim_next_run_locked(c, offset, end,
                                       MAX(max_len, c->granularity), &claim);
    pthread_mutex_unlock(&c->lock);
    if (!found) {
        pthread_rwlock_unlock(&c->disk->io_lock);
        return 0;
    }
    *is_read = false;
    ret = copy_run(c, claim.offset, claim.len, is_read, data_bytes);
    if (ret < 0) {
        /* Before the claim ends, so no guest write sees it copied. */
        dirty_bitmap_set(c->needed, claim.offset, claim.len);
    }
    end_claims(c, &claim, 1);
    pthread_rwlock_unlock(&c->disk->io_lock);
    *len = claim.len;
    return ret < 0 ? ret : 1;
}

/* --- Claims for views ---------------------------------------------------- */

void cbw_claim_begin(struct cbw_consumer *consumer, uint64_t offset,
                     uint64_t len, struct cbw_claim *claim)
{
    struct cbw_consumer *c = consumer;
    uint64_t start, end;

    chunk_range(c, offset, len, &start, &end);
    *claim = (struct cbw_claim){ start, end > start ? end - start : 0 };
    pthread_rwlock_rdlock(&c->disk->io_lock);
    pthread_mutex_lock(&c->lock);
    if (claim->len > 0) {
        wait_for_claims_locked(c, claim->offset, claim->len);
        g_ptr_array_add(c->claims, claim);
    }
    pthread_mutex_unlock(&c->lock);
}

void cbw_claim_end(struct cbw_consumer *consumer, struct cbw_claim *claim)
{
    if (claim->len > 0) {
        end_claims(consumer, claim, 1);
    }
    pthread_rwlock_unlock(&consumer->disk->io_lock);
}

int cbw_read_claimed(struct cbw_consumer *consumer,
                     const struct cbw_claim *claim, uint64_t offset,
                     uint64_t len, void *buf)
{
    struct block_node *top = consumer->disk->top;

    g_assert(offset >= claim->offset &&
             offset + len <= claim->offset + claim->len);
    return len ? top->driver->read(top, offset, len, buf) : 0;
}

void cbw_forget_claimed(struct cbw_consumer *consumer,
                        const struct cbw_claim *claim, uint64_t offset,
                        uint64_t len)
{
    uint64_t g = consumer->granularity;
    uint64_t start = (offset + g - 1) / g * g;
    uint64_t end = offset + len >= consumer->size
                   ? consumer->size : (offset + len) / g * g;

    g_assert(offset >= claim->offset &&
             offset + len <= claim->offset + claim->len);
    if (start < end) {
        dirty_bitmap_reset(consumer->needed, start, end - start);
    }
}
