/* chainfs: the stream job (see stream.h).
 *
 * The run loop walks the top by block status: a run the top allocates is
 * skipped whole, a run nothing above base allocates too, and the rest is
 * copied from the backing chain into the top, data as data and zeros as
 * zero writes, up to STREAM_MAX_IN_FLIGHT chunks at a time on the shared
 * copy pool (copy-pool.h).  So a huge sparse disk costs what its
 * allocation costs, in the pool's buffers of memory.
 *
 * Copies race with guest writes to the top: a copy that read old data
 * from below must not land after a guest write to the same range.  Every
 * copy (background or copy-on-read) therefore holds its range: it waits
 * for overlapping copies, registers, then waits for the guest writes in
 * flight on the range, and only then reads the top's allocation and
 * fills what is still unallocated.  Guest writes wait (in the write hook)
 * for an overlapping copy.  Nothing here takes io_lock: the chain cannot
 * change under a running stream (the caller's op blockers), and a copy
 * that took it could deadlock against a queued drain.
 *
 * Locking: s->lock (pthread) protects the list of held ranges and is
 * never held across I/O.
 */
#include "jobs/stream.h"

#include <errno.h>
#include <string.h>

#include "core/chain.h"
#include "jobs/copy-pool.h"
#include "jobs/sparse-copy.h"

/* A range held by a copy or by a guest write in flight. */
struct stream_range {
    uint64_t offset;
    uint64_t len;
    bool is_copy;
};

struct stream_job {
    struct job common;                  /* first: the framework's part */

    /* Set up before the job starts, then read-only. */
    struct disk *disk;
    struct block_node *top;
    struct block_node *base;            /* NULL: the whole chain */
    char *backing_file;                 /* NULL: base's path */
    enum job_error_policy on_error;
    uint64_t size;
    uint64_t zero_align;                /* sparse_copy_align(top) */
    struct disk_write_hook write_hook;
    struct disk_read_hook read_hook;
    bool copy_on_read;

    /* Only the job thread touches these (writeback: the copies, atomic). */
    struct block_writeback writeback;   /* of top */
    bool hooks_installed;

    pthread_mutex_t lock;
    pthread_cond_t cond;                /* broadcast when a range ends */
    GPtrArray *ranges;                  /* struct stream_range *, lock */
};

static struct stream_job *stream_of(struct job *job)
{
    return (struct stream_job *)job;    /* common comes first */
}

/* --- Held ranges (s->lock) ----------------------------------------------- */

/* Whether a held range of the kind asked for overlaps r. */
static bool overlaps_locked(struct stream_job *s,
                            const struct stream_range *r, bool copies)
{
    for (unsigned i = 0; i < s->ranges->len; i++) {
        const struct stream_range *q = g_ptr_array_index(s->ranges, i);
        if (q != r && q->is_copy == copies && q->offset < r->offset + r->len
            && r->offset < q->offset + q->len) {
            return true;
        }
    }
    return false;
}

/* Hold r.  A copy waits for copies, registers (so new guest writes wait
 * for it), then waits for the guest writes that registered before it;
 * a guest write waits only for copies, and never after registering, so
 * nothing waits in a circle. */
static void range_begin(struct stream_job *s, struct stream_range *r)
{
    pthread_mutex_lock(&s->lock);
    while (overlaps_locked(s, r, true)) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    g_ptr_array_add(s->ranges, r);
    while (r->is_copy && overlaps_locked(s, r, false)) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

static void range_end(struct stream_job *s, struct stream_range *r)
{
    pthread_mutex_lock(&s->lock);
    g_ptr_array_remove_fast(s->ranges, r);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* --- Copying ------------------------------------------------------------- */

/* Fill what the top does not allocate in [offset, offset + len), which
 * the caller holds, from the layers above base: zeros (by block status, or
 * found in what was read) as zero clusters, the rest as data.  With `data`
 * (copy-on-read) the guest view is already in data; otherwise buf (len
 * bytes) is used to read it.  Adds the bytes written as data to *copied.
 * Returns 0 or a negative errno, *is_read saying which side failed. */
static int fill_unallocated(struct stream_job *s, uint64_t offset,
                            uint64_t len, const uint8_t *data, uint8_t *buf,
                            uint64_t *copied, bool *is_read)
{
    struct block_node *top = s->top;
    const uint64_t start = offset;
    const uint64_t end = offset + len;

    while (offset < end) {
        uint64_t n;
        *is_read = true;
        int status = top->driver->block_status(top, offset, end - offset, &n);
        if (status < 0) {
            return status;
        }
        n = MAX(MIN(n, end - offset), 1);
        if (!(status & BLOCK_STATUS_ALLOCATED)) {
            status = chain_is_allocated_above(top->backing, s->base, offset,
                                              n, &n);
            if (status < 0) {
                return status;
            }
        } else {
            status = 0;
        }
        if (status == 0) {
            offset += n;
            continue;
        }
        int below = block_chain_status(top->backing, offset, n, &n);
        if (below < 0) {
            return below;
        }
        n = MAX(MIN(n, end - offset), 1);
        int ret;
        if (!(below & BLOCK_STATUS_DATA)) {
            *is_read = false;
            ret = block_node_write_zeroes(top, offset, n, 0);
        } else {
            const uint8_t *src = data ? data + (offset - start) : buf;
            if (!data) {
                ret = block_node_read_backing(top, offset, n, buf);
                if (ret < 0) {
                    return ret;
                }
            }
            *is_read = false;
            /* Flags 0: zeros become zero clusters over the backing data. */
            ret = sparse_copy_write(top, offset, n, src, s->zero_align, 0,
                                    copied);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
    }
    return 0;
}

/* Copy one chunk, holding it against guest writes; buf holds len bytes. */
static int copy_chunk(struct stream_job *s, uint64_t offset, uint64_t len,
                      uint8_t *buf, bool *is_read)
{
    struct stream_range range = { offset, len, true };
    uint64_t copied = 0;

    range_begin(s, &range);
    int ret = fill_unallocated(s, offset, len, NULL, buf, &copied,
                               is_read);
    range_end(s, &range);
    job_progress_add_copied(&s->common, copied);
    block_writeback_note(&s->writeback, s->top, copied);
    return ret;
}

/* --- Disk hooks ---------------------------------------------------------- */

static void *stream_write_before(void *opaque, uint64_t offset, uint64_t len)
{
    struct stream_job *s = opaque;
    struct stream_range *r = g_new(struct stream_range, 1);

    *r = (struct stream_range){ offset, len, false };
    range_begin(s, r);
    return r;
}

static void stream_write_after(void *opaque, void *cookie, uint64_t offset,
                               uint64_t len, const void *buf, int zero_flags,
                               int ret)
{
    (void)offset;
    (void)len;
    (void)buf;
    (void)zero_flags;
    (void)ret;
    range_end(opaque, cookie);
    g_free(cookie);
}

/* Copy-on-read: what the guest just read from below goes into the top.  A
 * failure only leaves the range for the run loop. */
static void stream_read_after(void *opaque, uint64_t offset, uint64_t len,
                              const void *buf)
{
    struct stream_job *s = opaque;
    struct stream_range range = { offset, len, true };
    uint64_t copied = 0;
    bool is_read;

    range_begin(s, &range);
    (void)fill_unallocated(s, offset, len, buf, NULL, &copied, &is_read);
    range_end(s, &range);
    job_progress_add_copied(&s->common, copied);
}

/* --- The run loop -------------------------------------------------------- */

/* Apply the policy to a failed chunk: 0 to retry it (after a stop), 1 to
 * skip it for a later pass (ignore), or a negative errno with *errp. */
static int handle_error(struct stream_job *s, int ret, bool is_read,
                        GError **errp)
{
    switch (job_handle_error(&s->common, s->on_error, is_read, -ret)) {
    case JOB_ERROR_ACTION_REPORT:
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s%s: %s",
                    is_read ? "read from the backing chain of "
                            : "write to ",
                    s->top->filename, g_strerror(-ret));
        return ret;
    case JOB_ERROR_ACTION_IGNORE:
        return 1;
    case JOB_ERROR_ACTION_STOP:
        return job_pause_point(&s->common) ? -ECANCELED : 0;
    }
    return ret;
}

/* Whether [offset, offset + len) needs a copy: the top does not allocate
 * it and a layer above base does. */
static int stream_needs_copy(void *opaque, uint64_t offset, uint64_t len,
                             uint64_t *n)
{
    struct stream_job *s = opaque;
    int status = s->top->driver->block_status(s->top, offset, len, n);

    if (status < 0 || (status & BLOCK_STATUS_ALLOCATED)) {
        return MIN(status, 0);
    }
    return chain_is_allocated_above(s->top->backing, s->base, offset,
                                    MIN(*n, len), n);
}

/* Zeros the backing chain holds as data are read, so they are charged. */
static uint64_t stream_charge(void *opaque, uint64_t offset, uint64_t len)
{
    struct stream_job *s = opaque;

    return sparse_copy_data_bytes(s->top, offset, len);
}

static int stream_handle_error(void *opaque, int ret, bool is_read,
                               GError **errp)
{
    return handle_error(opaque, ret, is_read, errp);
}

static int stream_copy(void *opaque, uint64_t offset, uint64_t len,
                       uint8_t *buf, bool *is_read)
{
    return copy_chunk(opaque, offset, len, buf, is_read);
}

static const struct copy_pass_ops stream_pass_ops = {
    .status = stream_needs_copy,
    .charge = stream_charge,
    .handle_error = stream_handle_error,
};

/* Passes until no ignored error left a chunk behind. */
static int stream_run(struct job *job, GError **errp)
{
    struct stream_job *s = stream_of(job);
    struct copy_batch batch;
    bool skipped;
    int ret;

    copy_batch_init(&batch, job, stream_copy, s, STREAM_MAX_IN_FLIGHT,
                    STREAM_MAX_IN_FLIGHT * STREAM_CHUNK_BYTES);
    do {
        ret = copy_batch_pass(&batch, &stream_pass_ops, s->size,
                              STREAM_CHUNK_BYTES, &skipped, errp);
    } while (ret == 0 && skipped);
    copy_batch_destroy(&batch);
    return ret;
}

/* --- Driver hooks -------------------------------------------------------- */

/* Under a drain: the top's header names base, then the layers in between
 * leave the chain.  The header write flushes the top's data first. */
static bool stream_prepare(struct job *job, GError **errp)
{
    struct stream_job *s = stream_of(job);
    struct block_node *top = s->top;
    struct block_node *base = s->base;
    const char *name = s->backing_file ? s->backing_file
                       : base ? base->filename : NULL;
    const char *format = base ? base->driver->format_name : NULL;

    disk_drain_begin(s->disk);
    if ((top->backing != base || s->backing_file) &&
        !top->driver->set_backing(top, name, format, errp)) {
        disk_drain_end(s->disk);
        return false;
    }
    int ret = disk_remove_layers_drained(s->disk, top, base);
    disk_drain_end(s->disk);
    if (ret < 0) {
        g_warning("stream '%s': closing the old layers: %s", job->id,
                  g_strerror(-ret));
    }
    return true;
}

static void stream_clean(struct job *job)
{
    struct stream_job *s = stream_of(job);

    if (s->hooks_installed) {
        disk_drain_begin(s->disk);
        disk_remove_write_hook_drained(s->disk, &s->write_hook);
        if (s->copy_on_read) {
            disk_remove_read_hook_drained(s->disk, &s->read_hook);
        }
        disk_drain_end(s->disk);
        s->hooks_installed = false;
    }
}

static void stream_free(struct job *job)
{
    struct stream_job *s = stream_of(job);

    g_assert(!s->hooks_installed);
    g_free(s->backing_file);
    if (s->ranges) {
        g_ptr_array_unref(s->ranges);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static const struct job_driver stream_driver = {
    .job_type = "stream",
    .instance_size = sizeof(struct stream_job),
    .run = stream_run,
    .prepare = stream_prepare,
    .clean = stream_clean,
    .free = stream_free,
};

/* --- Start --------------------------------------------------------------- */

/* Check cmd against the chain under top; sets *base. */
static bool stream_check(struct disk *disk, struct block_node *top,
                         const struct command *cmd, struct block_node **base,
                         GError **errp)
{
    *base = NULL;
    if (cmd->base) {
        *base = disk_find_layer(disk, cmd->base, errp);
        if (!*base) {
            return false;
        }
        if (*base == top) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "stream: base: %s is the top of disk '%s', not "
                        "below it", cmd->base, disk->name);
            return false;
        }
    } else if (cmd->backing_file) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "stream: backing-file: needs base= (streaming the "
                    "whole chain leaves no backing file)");
        return false;
    }
    if (top->backing && !top->driver->set_backing) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "stream: %s: a %s image cannot record a backing file",
                    top->filename, top->driver->format_name);
        return false;
    }
    if (disk->read_only) {
        g_set_error(errp, CHAINFS_ERROR, EROFS,
                    "stream: disk '%s' is read-only", disk->name);
        return false;
    }
    return true;
}

struct job *stream_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
{
    struct block_node *top;
    struct block_node *base;

    g_assert(cmd->verb == COMMAND_STREAM);
    pthread_rwlock_rdlock(&disk->io_lock);
    top = disk->top;
    pthread_rwlock_unlock(&disk->io_lock);
    if (!stream_check(disk, top, cmd, &base, errp)) {
        return NULL;
    }
    struct job *job = job_create(list, &stream_driver, cmd->id, disk->name,
                                 errp);
    if (!job) {
        return NULL;
    }

    struct stream_job *s = stream_of(job);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->ranges = g_ptr_array_new();
    s->disk = disk;
    s->top = top;
    s->base = base;
    s->backing_file = g_strdup(cmd->backing_file);
    s->on_error = cmd->on_error;
    s->size = top->size;
    s->zero_align = sparse_copy_align(top);
    s->copy_on_read = base == NULL;
    s->write_hook = (struct disk_write_hook){
        stream_write_before, stream_write_after, s,
    };
    s->read_hook = (struct disk_read_hook){ stream_read_after, s };

    disk_drain_begin(disk);
    disk_add_write_hook_drained(disk, &s->write_hook);
    if (s->copy_on_read) {
        disk_add_read_hook_drained(disk, &s->read_hook);
    }
    disk_drain_end(disk);
    s->hooks_installed = true;

    job_set_speed(job, cmd->speed, NULL);
    job_start(job);
    return job;
}
