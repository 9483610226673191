/* chainfs: the backup job (see backup.h).
 *
 * The instant: backup_start drains the disk, fills the needed set (every
 * chunk for sync=full, the top layer's allocated chunks for sync=top, a
 * copy of the bitmap's bits for sync=bitmap), registers the consumer, and
 * ends the drain.  sync=top scans the top before the drain, with a bitmap
 * recording the writes made meanwhile, so that on a big disk the drain
 * only merges that bitmap (and scans again only if the chain changed).  From then on the frozen content reaches the target
 * either through the background copier (backup-copier.c: several copies
 * in flight, zeros skipped by block status, rate limited, per-side error
 * policies) or through a guest write that touches a chunk first (the sink
 * below, on the guest's thread).  Both
 * write the target sparsely (jobs/sparse-copy.h): what reads as zero is
 * never written as data.
 *
 * The target's backing file: a new target of sync=top backs onto the top's
 * backing layer, and an existing target may name a layer of the disk.
 * Such a layer belongs to the disk's chain, which a stream or commit may
 * close while the backup runs, so the target node does not link it: it
 * is never read anyway, because then the chunks are at least the target's
 * clusters (no partial cluster is ever written, hence no copy-on-write
 * from the backing), and zeros are written as zero clusters.
 *
 * bitmap=: at the instant, a copy of the needed set is kept (copy_set) and
 * a bitmap of the writes made from then on is attached (written).  When
 * the job ends and bitmap-mode says so, the bitmap loses the chunks that
 * were copied (copy_set minus what is still needed or failed) and were
 * not written meanwhile, rounded in to its granularity, under a drain.
 *
 * The state and the locking rules are in backup-internal.h.
 */
#include "jobs/backup.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "core/named-bitmap.h"
#include "jobs/backup-internal.h"
#include "jobs/sparse-copy.h"

/* --- Copy-before-write callbacks (any thread, io_lock held) -------------- */

/* Write the frozen content of a range to the target, sparsely. */
static int backup_sink(void *opaque, uint64_t offset, uint64_t len,
                       const void *buf)
{
    struct backup_job *b = opaque;
    uint64_t copied = 0;
    int ret;

    if (!buf) {
        ret = b->target_reads_zeros
              ? 0 : block_node_write_zeroes(b->target, offset, len,
                                            b->target_zero_flags);
    } else {
        ret = sparse_copy_write(b->target, offset, len, buf, b->zero_align,
                                b->target_zero_flags, &copied);
    }
    if (ret == 0) {
        job_progress_add_offset(&b->common, len);
        job_progress_add_copied(&b->common, copied);
        block_writeback_note(&b->writeback, b->target, copied);
    }
    return ret;
}

/* A copy before a guest write failed: the job fails with it. */
static void backup_cbw_error(void *opaque, uint64_t offset, uint64_t len,
                             int error, bool is_read)
{
    struct backup_job *b = opaque;

    pthread_mutex_lock(&b->lock);
    dirty_bitmap_set(b->failed, offset, len);
    if (!b->cbw_error) {
        b->cbw_errno = -error;
        /* io_lock is held: the top cannot change under us. */
        b->cbw_error = g_strdup_printf("%s %s: %s",
                                       is_read ? "read from" : "write to",
                                       is_read ? b->disk->top->filename
                                               : b->target->filename,
                                       g_strerror(-error));
    }
    pthread_mutex_unlock(&b->lock);
    job_kick(&b->common);
}

static int backup_run(struct job *job, GError **errp)
{
    struct backup_job *b = backup_of(job);
    int ret;

    backup_start_workers(b);
    for (;;) {
        ret = backup_copy_all(b, errp);
        if (ret < 0) {
            break;
        }
        /* Copies before guest writes that took chunks from the needed
         * set may still be writing them: a drain waits for them. */
        disk_drain_begin(b->disk);
        disk_drain_end(b->disk);
        ret = backup_take_cbw_error(b, errp);
        if (ret < 0) {
            break;
        }
        if (dirty_bitmap_count(b->needed) != 0) {
            continue;   /* a chunk failed again after it was ignored */
        }
        ret = b->target->driver->flush(b->target);
        if (ret == 0) {
            backup_update_progress(b);
            break;
        }
        ret = backup_handle_error(b, ret, false, errp);
        if (ret < 0) {
            break;
        }
    }
    backup_stop_workers(b);
    return ret;
}

/* --- The bitmap ---------------------------------------------------------- */

struct clear_ctx {
    struct dirty_bitmap *bitmap;
    uint64_t size;
};

/* Clear the chunks of ctx->bitmap that lie wholly within a run. */
static bool clear_run_rounded_in(void *opaque, uint64_t offset, uint64_t len)
{
    struct clear_ctx *ctx = opaque;
    uint64_t g = dirty_bitmap_granularity(ctx->bitmap);
    uint64_t start = ROUND_UP(offset, g);
    uint64_t end = offset + len >= ctx->size ? ctx->size
                                             : ROUND_DOWN(offset + len, g);

    if (start < end) {
        dirty_bitmap_reset(ctx->bitmap, start, end - start);
    }
    return true;
}

static bool reset_run(void *opaque, uint64_t offset, uint64_t len)
{
    dirty_bitmap_reset(opaque, offset, len);
    return true;
}

/* Under the drain: clear from the bitmap what the job copied and nobody
 * wrote since the instant. */
static void clear_copied_from_bitmap_drained(struct backup_job *b)
{
    struct dirty_bitmap *done = dirty_bitmap_new(b->size, b->granularity);
    struct clear_ctx ctx = { b->bitmap, b->size };

    dirty_bitmap_merge(done, b->copy_set);
    dirty_bitmap_for_each_run(b->needed, reset_run, done);
    dirty_bitmap_for_each_run(b->failed, reset_run, done);
    dirty_bitmap_for_each_run(b->written, reset_run, done);
    dirty_bitmap_for_each_run(done, clear_run_rounded_in, &ctx);
    dirty_bitmap_free(done);
}

/* --- Driver hooks -------------------------------------------------------- */

static bool backup_prepare(struct job *job, GError **errp)
{
    (void)errp;
    backup_of(job)->succeeded = true;
    return true;
}

/* Leave the disk (under a drain: no copy in flight), settle the bitmap,
 * close the target. */
static void backup_clean(struct job *job)
{
    struct backup_job *b = backup_of(job);
    bool clear_bitmap = b->bitmap &&
        (b->bitmap_mode == COMMAND_BITMAP_MODE_ALWAYS ||
         (b->bitmap_mode == COMMAND_BITMAP_MODE_ON_SUCCESS && b->succeeded));

    disk_drain_begin(b->disk);
    if (b->consumer) {
        cbw_remove_consumer_drained(b->disk, b->consumer);
        b->consumer = NULL;
    }
    if (clear_bitmap) {
        clear_copied_from_bitmap_drained(b);
    }
    if (b->written) {
        disk_detach_bitmap(b->disk, b->written);
    }
    disk_drain_end(b->disk);
    if (b->bitmap_name) {
        named_bitmap_release(b->disk, b->bitmap_name);
        b->bitmap = NULL;
    }
    mirror_target_close(b->target, b->target_backing_owned);
    b->target = NULL;
}

static void backup_free(struct job *job)
{
    struct backup_job *b = backup_of(job);

    g_assert(!b->consumer);
    mirror_target_close(b->target, b->target_backing_owned);
    dirty_bitmap_free(b->needed);
    dirty_bitmap_free(b->copy_set);
    dirty_bitmap_free(b->written);
    dirty_bitmap_free(b->failed);
    g_free(b->bitmap_name);
    g_free(b->cbw_error);
    g_assert(b->n_workers == 0 && g_queue_is_empty(&b->queue));
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
}

static const struct job_driver backup_driver = {
    .job_type = "backup",
    .instance_size = sizeof(struct backup_job),
    .run = backup_run,
    .prepare = backup_prepare,
    .clean = backup_clean,
    .free = backup_free,
};

/* --- Start --------------------------------------------------------------- */

/* The chunks the top layer allocates, status call by status call; with
 * the disk drained (drained) or otherwise io_lock taken for each call.
 * Returns false, leaving needed partly marked, if not drained and the
 * chain changed since generation. */
static bool mark_top_allocated(struct backup_job *b, bool drained,
                               uint64_t generation)
{
    for (uint64_t offset = 0; offset < b->size;) {
        uint64_t pnum;
        int status;

        if (!drained) {
            pthread_rwlock_rdlock(&b->disk->io_lock);
            if (disk_chain_generation(b->disk) != generation) {
                pthread_rwlock_unlock(&b->disk->io_lock);
                return false;
            }
        }
        struct block_node *top = b->disk->top;
        status = top->driver->block_status(top, offset, b->size - offset,
                                           &pnum);
        if (!drained) {
            pthread_rwlock_unlock(&b->disk->io_lock);
        }
        if (status < 0) {
            /* Copy the rest: the copy reports the read error. */
            dirty_bitmap_set(b->needed, offset, b->size - offset);
            return true;
        }
        pnum = MIN(MAX(pnum, 1), b->size - offset);
        if (status & BLOCK_STATUS_ALLOCATED) {
            dirty_bitmap_set(b->needed, offset, pnum);
        }
        offset += pnum;
    }
    return true;
}

/* sync=top, before the drain: scan the top's allocation into needed while
 * a bitmap records the writes made meanwhile (a write allocates in the
 * top), so that the drain only adds those.  Returns the bitmap, attached
 * to the disk, or NULL if the chain changed during the scan (then the
 * drain scans again). */
static struct dirty_bitmap *scan_top_allocated(struct backup_job *b)
{
    struct dirty_bitmap *writes = dirty_bitmap_new(b->size, b->granularity);
    uint64_t generation = disk_chain_generation(b->disk);

    /* Attached first: a write the scan misses is marked. */
    disk_attach_bitmap(b->disk, writes);
    if (!mark_top_allocated(b, false, generation)) {
        disk_detach_bitmap(b->disk, writes);
        dirty_bitmap_free(writes);
        return NULL;
    }
    return writes;
}

/* Under the drain: finish sync=top's needed set from the scan made before
 * it (writes: NULL if there is none). */
static void finish_top_allocated_drained(struct backup_job *b,
                                         struct dirty_bitmap *writes,
                                         uint64_t generation)
{
    if (writes) {
        disk_detach_bitmap(b->disk, writes);
        if (disk_chain_generation(b->disk) == generation) {
            dirty_bitmap_merge(b->needed, writes);
            dirty_bitmap_free(writes);
            return;
        }
        dirty_bitmap_free(writes);
    }
    dirty_bitmap_reset_all(b->needed);
    mark_top_allocated(b, true, 0);
}

/* The instant: under one drain, the needed set, the bitmap copies and the
 * consumer (sync=top scans most of its set before). */
static void freeze(struct backup_job *b, enum command_sync sync)
{
    const struct cbw_consumer_ops ops = { backup_sink, backup_cbw_error, b };
    struct dirty_bitmap *top_writes = NULL;
    uint64_t generation = disk_chain_generation(b->disk);

    if (sync == COMMAND_SYNC_TOP) {
        top_writes = scan_top_allocated(b);
    }
    disk_drain_begin(b->disk);
    switch (sync) {
    case COMMAND_SYNC_FULL:
    case COMMAND_SYNC_NONE:
        dirty_bitmap_set_all(b->needed);
        break;
    case COMMAND_SYNC_TOP:
        finish_top_allocated_drained(b, top_writes, generation);
        break;
    case COMMAND_SYNC_BITMAP:
        dirty_bitmap_merge(b->needed, b->bitmap);
        break;
    }
    if (b->bitmap) {
        dirty_bitmap_merge(b->copy_set, b->needed);
        disk_attach_bitmap(b->disk, b->written);
    }
    b->consumer = cbw_add_consumer_drained(b->disk, b->needed, &ops);
    disk_drain_end(b->disk);
    job_progress_set_len(&b->common, dirty_bitmap_count(b->needed));
    backup_update_progress(b);
}

/* Create or open the target as a mirror's (sync=top: backing onto the
 * top's backing), then unlink a backing layer that belongs to the disk's
 * chain (see the top of this file). */
static bool open_target(struct block_node *source, const struct command *cmd,
                        struct mirror_target *target, bool *has_backing,
                        GError **errp)
{
    struct command target_cmd = *cmd;

    target_cmd.sync = cmd->sync == COMMAND_SYNC_TOP ? COMMAND_SYNC_TOP
                                                    : COMMAND_SYNC_FULL;
    if (!mirror_target_open(source, &target_cmd, target, errp)) {
        return false;
    }
    *has_backing = target->node->backing_name != NULL;
    if (!target->backing_owned) {
        target->node->backing = NULL;
    }
    return true;
}

/* Register and set up the job around an open target. */
static struct job *backup_create(struct job_list *list, struct disk *disk,
                                 struct block_node *source,
                                 const struct command *cmd,
                                 struct mirror_target *target,
                                 bool has_backing,
                                 struct dirty_bitmap *bitmap, GError **errp)
{
    struct mirror_sizes sizes;

    if (!mirror_choose_sizes(cmd, target->cluster_size, &sizes, errp)) {
        return NULL;
    }
    struct job *job = job_create(list, &backup_driver, cmd->id, disk->name,
                                 errp);
    if (!job) {
        return NULL;
    }
    struct backup_job *b = backup_of(job);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    g_queue_init(&b->queue);
    b->disk = disk;
    b->size = source->size;
    b->granularity = sizes.granularity;
    if (has_backing) {
        /* Whole target clusters only: never a copy-on-write from it. */
        b->granularity = MAX(b->granularity, target->cluster_size);
    }
    b->max_op_bytes = MAX(b->granularity,
                          ROUND_DOWN(MIN(sizes.buf_size, MIRROR_MAX_OP_BYTES),
                                     b->granularity));
    b->buf_size = MAX(sizes.buf_size, b->max_op_bytes);
    b->target = target->node;
    b->target_backing_owned = target->backing_owned;
    b->target_reads_zeros = target->reads_zeros;
    b->target_zero_flags = has_backing ? 0 : BLOCK_ZERO_UNMAP;
    b->zero_align = sparse_copy_align(target->node);
    b->on_source_error = cmd->on_source_error;
    b->on_target_error = cmd->on_target_error;
    b->needed = dirty_bitmap_new(b->size, b->granularity);
    b->failed = dirty_bitmap_new(b->size, b->granularity);
    if (bitmap) {
        b->bitmap_name = g_strdup(cmd->bitmap);
        b->bitmap = bitmap;
        b->bitmap_mode = cmd->bitmap_mode;
        b->copy_set = dirty_bitmap_new(b->size, b->granularity);
        b->written = dirty_bitmap_new(b->size, b->granularity);
    }

    freeze(b, cmd->sync);
    job_set_burst(job, sizes.buf_size);
    job_set_speed(job, cmd->speed, NULL);
    job_start(job);
    return job;
}

struct job *backup_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
{
    struct dirty_bitmap *bitmap = NULL;
    struct mirror_target target;
    bool has_backing = false;

    g_assert(cmd->verb == COMMAND_BACKUP);
    /* Checked again by job_create, but before a target is created. */
    struct job *existing = job_list_lookup(list, cmd->id, NULL);
    if (existing) {
        job_unref(existing);
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    cmd->id);
        return NULL;
    }
    if (cmd->bitmap) {
        bitmap = named_bitmap_acquire(disk, cmd->bitmap, cmd->id, errp);
        if (!bitmap) {
            g_prefix_error(errp, "backup: ");
            return NULL;
        }
    }
    /* Held while the target is made after the chain (the target is never
     * in a chainfs mount, so this sends no request to the disk). */
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *source = disk->top;
    bool opened = open_target(source, cmd, &target, &has_backing, errp);
    pthread_rwlock_unlock(&disk->io_lock);
    struct job *job = NULL;
    if (opened) {
        job = backup_create(list, disk, source, cmd, &target, has_backing,
                            bitmap, errp);
        if (!job) {
            mirror_target_discard(&target);
        }
    }
    if (!job && bitmap) {
        named_bitmap_release(disk, cmd->bitmap);
    }
    return job;
}
