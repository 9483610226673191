/* chainfs: the mirror job (see mirror.h).
 *
 * The run loop, on the job thread, takes dirty areas from the job's bitmap
 * (clearing them before the source is read, so a write landing meanwhile
 * dirties them again) and hands them as copy operations to the shared
 * copy pool (copy-pool.h); it alone issues operations and decides when
 * the job is ready or finished.  Every operation in flight, background copy or guest
 * write in write-blocking mode, is in one list, and an operation that
 * overlaps another waits for it, so the same bytes are never copied twice
 * at once and concurrent writes reach the target in the order they reached
 * the source.
 *
 * The source layers are read directly, not through disk_read: the chain
 * cannot change under a running mirror (the caller's op blockers), and a
 * copy that took io_lock could deadlock a write-blocking guest write that
 * waits for it while a drain is queued on the writer-preferring rwlock.
 *
 * Active commit (mirror_start_commit) is this job with job type "commit"
 * and the target being the base layer of the source chain itself (the
 * caller reopened it read-write): the initial dirty set is what the layers
 * above base allocate, `complete` switches the disk to base (the layers
 * above it close), and otherwise clean reopens base read-only instead of
 * closing it.
 *
 * The state and the locking rules are in mirror-internal.h; operations in
 * flight, the use of the copy pool and the copy itself are in
 * mirror-ops.c.
 */
#include "jobs/mirror.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/chain.h"
#include "core/dirty-bitmap.h"
#include "core/named-bitmap.h"
#include "jobs/mirror-internal.h"
#include "jobs/mirror-target.h"
#include "jobs/sparse-copy.h"

/* Take the next dirty area (from the cursor, wrapping around), widened to
 * whole target clusters the first time a cluster is touched. */
static bool take_dirty_area(struct mirror_job *m, uint64_t *offset,
                            uint64_t *bytes)
{
    uint64_t start = m->cursor;

    if (!dirty_bitmap_take_dirty_area(m->dirty, &start, m->size,
                                      m->max_op_bytes, bytes)) {
        start = 0;
        if (!dirty_bitmap_take_dirty_area(m->dirty, &start, m->size,
                                          m->max_op_bytes, bytes)) {
            return false;
        }
    }
    uint64_t end = start + *bytes;
    if (m->copied_clusters) {
        uint64_t cs = m->target_cluster;
        uint64_t first = start / cs, last = (end - 1) / cs;
        bool all_copied = true;
        for (uint64_t c = first; c <= last; c++) {
            uint64_t bit = 1ull << (c % 64);
            all_copied &= (m->copied_clusters[c / 64] & bit) != 0;
            m->copied_clusters[c / 64] |= bit;
        }
        if (!all_copied) {
            start = first * cs;
            end = MIN(m->size, (last + 1) * cs);
            dirty_bitmap_reset(m->dirty, start, end - start);
        }
    }
    m->cursor = end < m->size ? end : 0;
    *offset = start;
    *bytes = end - start;
    return true;
}

/* Whether another background operation may start now. */
static bool can_issue(struct mirror_job *m)
{
    bool ok;

    pthread_mutex_lock(&m->lock);
    ok = m->bg_ops < MIRROR_MAX_IN_FLIGHT &&
         (m->bg_ops == 0 || m->bg_bytes + m->max_op_bytes <= m->buf_size);
    pthread_mutex_unlock(&m->lock);
    return ok;
}

/* Start one background copy.  Returns 1 if one started, 0 if nothing is
 * dirty, -ECANCELED if the job was cancelled while throttled. */
static int issue_copy(struct mirror_job *m)
{
    uint64_t offset, bytes;

    if (!take_dirty_area(m, &offset, &bytes)) {
        return 0;
    }
    /* Zeros the source holds as data are read, so they are charged. */
    if (job_throttle(&m->common,
                     sparse_copy_data_bytes(m->source, offset, bytes))) {
        dirty_bitmap_set(m->dirty, offset, bytes);
        return -ECANCELED;
    }
    struct mirror_op *op = g_new0(struct mirror_op, 1);
    op->offset = offset;
    op->bytes = bytes;
    pthread_mutex_lock(&m->lock);
    m->bg_ops++;
    m->bg_bytes += bytes;
    mirror_begin_op_locked(m, op);
    pthread_mutex_unlock(&m->lock);
    mirror_submit_copy(m, op);
    return 1;
}

/* --- Guest writes in write-blocking mode (disk write hook) --------------- */

static void *mirror_write_before(void *opaque, uint64_t offset, uint64_t len)
{
    struct mirror_job *m = opaque;

    if (__atomic_load_n(&m->copy_mode, __ATOMIC_ACQUIRE) !=
            JOB_COPY_MODE_WRITE_BLOCKING ||
        __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
        return NULL;
    }
    struct mirror_op *op = g_new0(struct mirror_op, 1);
    op->offset = offset;
    op->bytes = len;
    op->is_guest_write = true;
    pthread_mutex_lock(&m->lock);
    mirror_begin_op_locked(m, op);
    pthread_mutex_unlock(&m->lock);
    return op;
}

/* Write what the guest wrote to the target too, as the guest wrote it:
 * data as data (all zeros or not: the guest's business, and no cost added
 * to its write), zero writes as zero writes.  Then the chunks the write
 * covered whole are in sync (a partial chunk stays dirty).  A target error
 * is the job's (its policy applies; the range stays dirty): the guest
 * write itself succeeded. */
static void mirror_write_after(void *opaque, void *cookie, uint64_t offset,
                               uint64_t len, const void *buf, int zero_flags,
                               int ret)
{
    struct mirror_job *m = opaque;
    struct mirror_op *op = cookie;
    int target_ret = 0;

    if (!op) {
        job_kick(&m->common);   /* a ready job sleeps until dirty again */
        return;
    }
    if (ret < 0) {
        /* The bitmap is not attached in this mode, and a failed write may
         * still have changed part of the source. */
        dirty_bitmap_set(m->dirty, offset, len);
    } else {
        struct block_node *target = m->target;
        if (buf) {
            target_ret = target->driver->write(target, offset, len, buf);
        } else {
            target_ret = block_node_write_zeroes(target, offset, len,
                                                 zero_flags &
                                                 m->target_zero_flags);
        }
        if (target_ret == 0) {
            uint64_t first = ROUND_UP(offset, m->granularity);
            uint64_t end = offset + len == m->size
                           ? m->size : ROUND_DOWN(offset + len,
                                                  m->granularity);
            if (first < end) {
                dirty_bitmap_reset(m->dirty, first, end - first);
            }
            job_progress_add_offset(&m->common, len);
            job_progress_add_copied(&m->common, buf ? len : 0);
        }
    }
    mirror_end_op(m, op, target_ret, false);
    g_free(op);
}

/* --- The run loop -------------------------------------------------------- */

/* Whether the initial copy must do the run starting at offset: 1 yes,
 * 0 no, or a negative errno; *pnum as for block_status.  Active commit:
 * what the layers above base allocate; sync=full: what the guest sees as
 * data; sync=top: what the top layer allocates. */
static int initial_run_status(struct mirror_job *m, uint64_t offset,
                              uint64_t *pnum)
{
    uint64_t len = m->size - offset;
    int status;

    if (m->commit_base) {
        return chain_is_allocated_above(m->source, m->commit_base, offset,
                                        len, pnum);
    }
    if (m->sync == COMMAND_SYNC_FULL) {
        status = block_chain_status(m->source, offset, len, pnum);
        return status < 0 ? status : !!(status & BLOCK_STATUS_DATA);
    }
    status = m->source->driver->block_status(m->source, offset, len, pnum);
    return status < 0 ? status : !!(status & BLOCK_STATUS_ALLOCATED);
}

/* Mark what the initial copy must do (sync=none: nothing; sync=full onto
 * a target that does not read zeros: everything).  A status error marks
 * everything from there on: the copy then reports the read error through
 * the policy. */
static void mark_initial_dirty(struct mirror_job *m)
{
    if (!m->commit_base) {
        if (m->sync == COMMAND_SYNC_NONE) {
            return;
        }
        if (m->sync == COMMAND_SYNC_FULL && !m->target_reads_zeros) {
            dirty_bitmap_set_all(m->dirty);
            return;
        }
    }
    for (uint64_t offset = 0; offset < m->size;) {
        uint64_t pnum;
        int dirty = initial_run_status(m, offset, &pnum);

        if (dirty < 0) {
            dirty_bitmap_set(m->dirty, offset, m->size - offset);
            return;
        }
        pnum = MIN(MAX(pnum, 1), m->size - offset);
        if (dirty) {
            dirty_bitmap_set(m->dirty, offset, pnum);
        }
        offset += pnum;
        if (job_is_cancelled(&m->common)) {
            return;
        }
    }
}

/* len = done + still to do, which grows as guest writes dirty more. */
static void update_progress(struct mirror_job *m)
{
    uint64_t dirty = dirty_bitmap_count(m->dirty);
    uint64_t in_flight;

    pthread_mutex_lock(&m->lock);
    in_flight = m->bg_bytes;
    pthread_mutex_unlock(&m->lock);
    job_progress_set_dirty(&m->common, dirty);
    job_progress_set_len(&m->common,
                         __atomic_load_n(&m->common.progress_offset,
                                         __ATOMIC_RELAXED) +
                         dirty + in_flight);
}

static bool pause_requested(struct job *job)
{
    bool paused;

    pthread_mutex_lock(&job->lock);
    paused = job->user_paused || job->error_paused;
    pthread_mutex_unlock(&job->lock);
    return paused;
}

/* Whether no operation (background or guest write) is in flight. */
static bool idle(struct mirror_job *m)
{
    bool none;

    pthread_mutex_lock(&m->lock);
    none = m->in_flight->len == 0;
    pthread_mutex_unlock(&m->lock);
    return none;
}

/* Apply the policy to the first error reported by an operation, if any:
 * returns 0 to go on (the chunk is dirty again and will be retried) or a
 * negative errno with *errp set to fail the job. */
static int handle_pending_error(struct mirror_job *m, GError **errp)
{
    int error;
    bool is_read;

    pthread_mutex_lock(&m->lock);
    error = m->pending_error;
    is_read = m->pending_error_is_read;
    m->pending_error = 0;
    pthread_mutex_unlock(&m->lock);
    if (error == 0) {
        return 0;
    }

    enum job_error_policy policy = is_read ? m->on_source_error
                                           : m->on_target_error;
    switch (job_handle_error(&m->common, policy, is_read, error)) {
    case JOB_ERROR_ACTION_REPORT:
        g_set_error(errp, CHAINFS_ERROR, error, "%s %s: %s",
                    is_read ? "read from" : "write to",
                    is_read ? m->source->filename : m->target->filename,
                    g_strerror(error));
        return -error;
    case JOB_ERROR_ACTION_IGNORE:
        return 0;
    case JOB_ERROR_ACTION_STOP:
        /* Stop as a whole: what was in flight ends first, and its errors
         * are part of this stop rather than further ones. */
        mirror_wait_for_background_ops(m);
        pthread_mutex_lock(&m->lock);
        m->pending_error = 0;
        pthread_mutex_unlock(&m->lock);
        return job_pause_point(&m->common) ? -ECANCELED : 0;
    }
    return -EINVAL;
}

/* The last copy, with guest I/O held off: every remaining dirty chunk,
 * then a flush of the target.  Returns 0 with the drain held (prepare
 * switches and ends it), or a negative errno without it (-EAGAIN: an
 * error was left pending for the policy). */
static int final_sync(struct mirror_job *m)
{
    uint64_t offset, bytes;
    bool is_read = false;
    int ret = 0;

    mirror_wait_for_background_ops(m);
    pthread_mutex_lock(&m->lock);
    bool error_pending = m->pending_error != 0;
    pthread_mutex_unlock(&m->lock);
    if (error_pending) {
        return -EAGAIN;
    }
    disk_drain_begin(m->disk);
    m->drained = true;
    while (ret == 0 && take_dirty_area(m, &offset, &bytes)) {
        if (job_is_cancelled(&m->common)) {
            return -ECANCELED;
        }
        uint8_t *buf = mirror_buffer_for(&m->sync_buf, &m->sync_buf_len, bytes);
        ret = mirror_copy_range(m, offset, bytes, buf, &is_read);
        if (ret < 0) {
            dirty_bitmap_set(m->dirty, offset, bytes);
        }
    }
    if (ret == 0) {
        ret = m->target->driver->flush(m->target);
        is_read = false;
    }
    update_progress(m);
    if (ret == 0) {
        return 0;
    }
    disk_drain_end(m->disk);
    m->drained = false;
    pthread_mutex_lock(&m->lock);
    mirror_set_pending_error_locked(m, -ret, is_read);
    pthread_mutex_unlock(&m->lock);
    return -EAGAIN;
}

/* Copy until complete or cancel (soft, when ready) asks to finish. */
static int mirror_loop(struct mirror_job *m, GError **errp)
{
    struct job *job = &m->common;

    for (;;) {
        int ret = handle_pending_error(m, errp);
        if (ret < 0) {
            return ret;
        }
        if (job_is_cancelled(job)) {
            return -ECANCELED;
        }
        if (pause_requested(job)) {
            mirror_wait_for_background_ops(m);
            if (job_pause_point(job)) {
                return -ECANCELED;
            }
            continue;
        }
        update_progress(m);
        if (m->ready && (job_is_completing(job) ||
                         job_cancel_requested(job))) {
            ret = final_sync(m);
            if (ret != -EAGAIN) {
                return ret;
            }
            continue;
        }
        if (can_issue(m)) {
            ret = issue_copy(m);
            if (ret < 0) {
                return ret;
            }
            if (ret > 0) {
                continue;
            }
        }
        if (!m->ready && dirty_bitmap_count(m->dirty) == 0 && idle(m)) {
            update_progress(m);
            job_transition_to_ready(job);
            m->ready = true;
            continue;
        }
        if (job_sleep_ns(job, MIRROR_IDLE_NS)) {
            return -ECANCELED;
        }
    }
}

static int mirror_run(struct job *job, GError **errp)
{
    struct mirror_job *m = mirror_of(job);

    mark_initial_dirty(m);
    update_progress(m);
    mirror_start_workers(m);
    int ret = mirror_loop(m, errp);
    /* From here on guest writes leave the target alone; what is still in
     * flight ends before the target may be closed. */
    __atomic_store_n(&m->stopping, true, __ATOMIC_RELEASE);
    mirror_wait_for_background_ops(m);
    mirror_stop_workers(m);
    return ret;
}

/* --- Driver hooks -------------------------------------------------------- */

/* Soft (finish in sync, no switch) only when ready and not forced. */
static bool mirror_cancel(struct job *job, bool force)
{
    enum job_state state = job_get_state(job);

    return force || (state != JOB_STATE_READY && state != JOB_STATE_STANDBY);
}

static bool mirror_complete(struct job *job, GError **errp)
{
    (void)job;
    (void)errp;
    return true;    /* the run loop sees job_is_completing */
}

static bool mirror_change(struct job *job, const struct job_change_opts *opts,
                          GError **errp)
{
    struct mirror_job *m = mirror_of(job);

    if (!opts->has_copy_mode) {
        return true;
    }
    if (opts->copy_mode != JOB_COPY_MODE_WRITE_BLOCKING) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "job '%s': cannot change copy-mode to background",
                    job->id);
        return false;
    }
    /* Under a drain no guest write is half-way: each one either copies to
     * the target or does not, which keeps overlapping writes ordered. */
    disk_drain_begin(m->disk);
    __atomic_store_n(&m->copy_mode, JOB_COPY_MODE_WRITE_BLOCKING,
                     __ATOMIC_RELEASE);
    if (m->bitmap_attached) {
        /* From now on the hook copies every write (see mirror_create). */
        disk_detach_bitmap(m->disk, m->dirty);
        m->bitmap_attached = false;
    }
    disk_drain_end(m->disk);
    return true;
}

/* With the drain from final_sync held: switch the disk to the target
 * (complete), or leave it (a cancel when ready). */
static bool mirror_prepare(struct job *job, GError **errp)
{
    struct mirror_job *m = mirror_of(job);

    g_assert(m->drained);
    if (job_is_completing(job) && !job_cancel_requested(job)) {
        /* Before the source may become read-only. */
        named_bitmaps_move_drained(m->disk, m->disk->top, m->target);
        if (m->sync == COMMAND_SYNC_NONE &&
            !block_node_make_backing(m->source, errp)) {
            named_bitmaps_move_drained(m->disk, m->target, m->disk->top);
            return false;
        }
        int ret = disk_switch_top_drained(m->disk, m->target);
        m->switched = true;
        if (ret < 0) {
            /* The data is safe in the target; only the old layers' final
             * flush failed, after the switch. */
            g_warning("mirror '%s': closing the old layers: %s", job->id,
                      g_strerror(-ret));
        }
    }
    return true;
}

/* Release everything run and prepare used, drained or not. */
static void mirror_clean(struct job *job)
{
    struct mirror_job *m = mirror_of(job);

    __atomic_store_n(&m->stopping, true, __ATOMIC_RELEASE);
    if (!m->drained) {
        disk_drain_begin(m->disk);
        m->drained = true;
    }
    if (m->hook_installed) {
        disk_remove_write_hook_drained(m->disk, &m->hook);
        m->hook_installed = false;
    }
    if (m->bitmap_attached) {
        disk_detach_bitmap(m->disk, m->dirty);
        m->bitmap_attached = false;
    }
    if (m->commit_base && !m->switched) {
        /* The base stays a backing layer of the disk. */
        GError *error = NULL;
        if (!block_node_reopen(m->commit_base, true, &error)) {
            g_warning("commit '%s': %s", job->id, error->message);
            g_error_free(error);
        }
        m->target = NULL;
    }
    disk_drain_end(m->disk);
    m->drained = false;

    if (!m->switched) {
        mirror_target_close(m->target, m->target_backing_owned);
    }
    m->target = NULL;
}

static void mirror_status(struct job *job, GString *out)
{
    struct mirror_job *m = mirror_of(job);

    g_string_append_printf(out, "copy-mode: %s\n",
                           __atomic_load_n(&m->copy_mode, __ATOMIC_ACQUIRE) ==
                               JOB_COPY_MODE_WRITE_BLOCKING
                           ? "write-blocking" : "background");
}

static void mirror_free(struct job *job)
{
    struct mirror_job *m = mirror_of(job);

    g_assert(!m->uses_pool && !m->drained);
    if (!m->commit_base) {
        mirror_target_close(m->target, m->target_backing_owned);
    }
    dirty_bitmap_free(m->dirty);
    g_free(m->copied_clusters);
    g_free(m->sync_buf);
    if (m->in_flight) {
        g_ptr_array_unref(m->in_flight);
    }
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
}

static const struct job_driver mirror_driver = {
    .job_type = "mirror",
    .instance_size = sizeof(struct mirror_job),
    .run = mirror_run,
    .complete = mirror_complete,
    .cancel = mirror_cancel,
    .change = mirror_change,
    .prepare = mirror_prepare,
    .clean = mirror_clean,
    .status = mirror_status,
    .free = mirror_free,
};

/* Active commit is this mirror under another name. */
static const struct job_driver mirror_commit_driver = {
    .job_type = "commit",
    .instance_size = sizeof(struct mirror_job),
    .run = mirror_run,
    .complete = mirror_complete,
    .cancel = mirror_cancel,
    .change = mirror_change,
    .prepare = mirror_prepare,
    .clean = mirror_clean,
    .status = mirror_status,
    .free = mirror_free,
};

/* --- Start --------------------------------------------------------------- */

/* The disk's top, read as a request would. */
static struct block_node *disk_top(struct disk *disk)
{
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *top = disk->top;
    pthread_rwlock_unlock(&disk->io_lock);
    return top;
}

/* What the two entry points differ in. */
struct mirror_setup {
    const struct job_driver *driver;
    enum command_sync sync;
    enum job_error_policy on_source_error;
    enum job_error_policy on_target_error;
    struct block_node *commit_base;
};

/* Register, set up and start the job for an open target; on error the
 * target is the caller's. */
static struct job *mirror_create(struct job_list *list, struct disk *disk,
                                 struct block_node *source,
                                 const struct command *cmd,
                                 const struct mirror_setup *setup,
                                 struct mirror_target *target, GError **errp)
{
    struct mirror_sizes sizes;

    if (!mirror_choose_sizes(cmd, target->cluster_size, &sizes, errp)) {
        return NULL;
    }
    struct job *job = job_create(list, setup->driver, cmd->id, disk->name,
                                 errp);
    if (!job) {
        return NULL;
    }

    struct mirror_job *m = mirror_of(job);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->in_flight = g_ptr_array_new();
    m->disk = disk;
    m->source = source;
    m->size = source->size;
    m->sync = setup->sync;
    m->on_source_error = setup->on_source_error;
    m->on_target_error = setup->on_target_error;
    m->commit_base = setup->commit_base;
    m->copy_mode = cmd->copy_mode;
    m->granularity = sizes.granularity;
    m->buf_size = sizes.buf_size;
    m->max_op_bytes = sizes.max_op_bytes;
    m->target_cluster = sizes.target_cluster;
    if (m->target_cluster) {
        m->copied_clusters = g_new0(uint64_t,
                                    m->size / m->target_cluster / 64 + 1);
    }
    m->target = target->node;
    m->target_backing_owned = target->backing_owned;
    m->target_reads_zeros = target->reads_zeros;
    m->target_zero_flags = target->node->backing ? 0 : BLOCK_ZERO_UNMAP;
    m->zero_align = sparse_copy_align(target->node);
    m->dirty = dirty_bitmap_new(m->size, m->granularity);
    m->hook = (struct disk_write_hook){
        mirror_write_before, mirror_write_after, m,
    };

    /* The bitmap first, so that no write escapes the initial scan.  In
     * write-blocking mode every write is copied to the target by the
     * hook instead (and marks the bitmap itself only when that fails):
     * a write that lands whole on the target must not leave its partial
     * chunks dirty, or small writes would keep the job from converging. */
    if (m->copy_mode != JOB_COPY_MODE_WRITE_BLOCKING) {
        disk_attach_bitmap(disk, m->dirty);
        m->bitmap_attached = true;
    }
    disk_drain_begin(disk);
    disk_add_write_hook_drained(disk, &m->hook);
    disk_drain_end(disk);
    m->hook_installed = true;

    job_set_burst(job, m->buf_size);
    job_set_speed(job, cmd->speed, NULL);
    job_start(job);
    return job;
}

struct job *mirror_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
{
    struct block_node *source = disk_top(disk);
    struct mirror_target target;
    const struct mirror_setup setup = {
        .driver = &mirror_driver,
        .sync = cmd->sync,
        .on_source_error = cmd->on_source_error,
        .on_target_error = cmd->on_target_error,
    };

    g_assert(cmd->verb == COMMAND_MIRROR);
    /* Checked again by job_create, but before a target is created. */
    struct job *existing = job_list_lookup(list, cmd->id, NULL);
    if (existing) {
        job_unref(existing);
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    cmd->id);
        return NULL;
    }
    if (!mirror_target_open(source, cmd, &target, errp)) {
        return NULL;
    }
    struct job *job = mirror_create(list, disk, source, cmd, &setup, &target,
                                    errp);
    if (!job) {
        mirror_target_discard(&target);
    }
    return job;
}

struct job *mirror_start_commit(struct job_list *list, struct disk *disk,
                                const struct command *cmd,
                                struct block_node *base, GError **errp)
{
    struct block_node *source = disk_top(disk);
    struct mirror_target target;
    const struct mirror_setup setup = {
        .driver = &mirror_commit_driver,
        .sync = COMMAND_SYNC_FULL,
        .on_source_error = cmd->on_error,
        .on_target_error = cmd->on_error,
        .commit_base = base,
    };

    g_assert(cmd->verb == COMMAND_COMMIT);
    g_assert(!base->read_only && base->size >= source->size);
    mirror_target_use_layer(base, &target);
    return mirror_create(list, disk, source, cmd, &setup, &target, errp);
}
