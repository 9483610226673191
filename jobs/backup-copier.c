/* chainfs: the backup job's background copier (see backup-internal.h).
 *
 * The job thread walks the needed set from a cursor: a run that reads as
 * zeros by block status is taken in one step under a claim (zeros
 * written to the target unless it reads zeros anyway, nothing read), so
 * a sparse disk costs a status call per extent, not per chunk; a run of
 * data (at most max_op_bytes) is charged to the rate limit and queued for
 * a pool of workers, up to BACKUP_MAX_IN_FLIGHT at a time within
 * buf-size, each copying it with cbw_copy_next under the consumer's
 * claims (a guest write that took chunks first wins them).  A pass ends
 * when nothing is needed after the cursor; the next starts from 0 once
 * what was in flight ended, so that chunks whose error was ignored are
 * retried after the others.
 */
#include <errno.h>

#include "core/block.h"
#include "jobs/backup-internal.h"

/* --- The background copier's pool (b->lock) ---------------------------- */

/* Copy what is still needed of one operation's range, run by run (a guest
 * write may have taken chunks in between). */
static int copy_op(struct backup_job *b, const struct backup_op *op,
                   bool *is_read)
{
    uint64_t offset = op->offset;

    while (offset < op->end) {
        uint64_t len = 0;
        int ret = cbw_copy_next(b->consumer, &offset, op->end,
                                op->end - offset, &len, is_read, NULL);
        if (ret <= 0) {
            return ret;
        }
        offset += len;
    }
    return 0;
}

/* Keep the first error of an operation until the run loop applies the
 * policy to it. */
static void set_pending_error_locked(struct backup_job *b, int error,
                                     bool is_read)
{
    if (b->pending_error == 0) {
        b->pending_error = error;
        b->pending_error_is_read = is_read;
    }
}

/* Retire an operation: on failure its chunks are needed again (the
 * copier made them so) and the error waits for the run loop. */
static void end_op(struct backup_job *b, struct backup_op *op, int ret,
                   bool is_read)
{
    pthread_mutex_lock(&b->lock);
    b->ops--;
    b->ops_bytes -= op->end - op->offset;
    if (ret < 0) {
        set_pending_error_locked(b, -ret, is_read);
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    g_free(op);
    if (ret < 0) {
        job_kick(&b->common);
    }
}

static void *backup_worker(void *opaque)
{
    struct backup_job *b = opaque;

    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (g_queue_is_empty(&b->queue) && !b->workers_stop) {
            pthread_cond_wait(&b->cond, &b->lock);
        }
        struct backup_op *op = g_queue_pop_head(&b->queue);
        if (!op) {
            break;
        }
        pthread_mutex_unlock(&b->lock);
        bool is_read = false;
        int ret = copy_op(b, op, &is_read);
        end_op(b, op, ret, is_read);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Up to BACKUP_MAX_IN_FLIGHT workers within buf-size; fewer threads only
 * mean less parallelism. */
void backup_start_workers(struct backup_job *b)
{
    unsigned n = MAX(1, MIN(BACKUP_MAX_IN_FLIGHT,
                            b->buf_size / b->max_op_bytes));

    b->workers = g_new0(pthread_t, n);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&b->workers[i], NULL, backup_worker, b) != 0) {
            break;
        }
        b->n_workers++;
    }
}

/* Drop what is queued (its chunks are still needed), let what runs end,
 * join the workers. */
void backup_stop_workers(struct backup_job *b)
{
    struct backup_op *op;

    pthread_mutex_lock(&b->lock);
    while ((op = g_queue_pop_head(&b->queue))) {
        b->ops--;
        b->ops_bytes -= op->end - op->offset;
        g_free(op);
    }
    b->workers_stop = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    for (unsigned i = 0; i < b->n_workers; i++) {
        pthread_join(b->workers[i], NULL);
    }
    g_clear_pointer(&b->workers, g_free);
    b->n_workers = 0;
}

/* Wait until no operation is queued or running. */
static void wait_for_ops(struct backup_job *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->ops > 0) {
        pthread_cond_wait(&b->cond, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

/* Wait until another operation of max_op_bytes may start. */
static void wait_for_room(struct backup_job *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->ops >= b->n_workers ||
           (b->ops > 0 && b->ops_bytes + b->max_op_bytes > b->buf_size)) {
        pthread_cond_wait(&b->cond, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

static void queue_op(struct backup_job *b, uint64_t offset, uint64_t end)
{
    struct backup_op *op = g_new(struct backup_op, 1);

    *op = (struct backup_op){ offset, end };
    pthread_mutex_lock(&b->lock);
    b->ops++;
    b->ops_bytes += end - offset;
    g_queue_push_tail(&b->queue, op);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* --- The run loop (the job thread) --------------------------------------- */

/* The first failed copy before a guest write, as the job's error. */
int backup_take_cbw_error(struct backup_job *b, GError **errp)
{
    int error = 0;

    pthread_mutex_lock(&b->lock);
    if (b->cbw_error) {
        error = b->cbw_errno;
        g_set_error(errp, CHAINFS_ERROR, error, "%s", b->cbw_error);
    }
    pthread_mutex_unlock(&b->lock);
    return -error;
}

void backup_update_progress(struct backup_job *b)
{
    job_progress_set_dirty(&b->common, dirty_bitmap_count(b->needed));
}

static bool pause_requested(struct job *job)
{
    bool paused;

    pthread_mutex_lock(&job->lock);
    paused = job->user_paused || job->error_paused;
    pthread_mutex_unlock(&job->lock);
    return paused;
}

/* Apply the side's policy to a failed copy or flush: 0 to go on (retry),
 * or a negative errno with *errp set.  No operation is in flight. */
int backup_handle_error(struct backup_job *b, int ret, bool is_read,
                        GError **errp)
{
    enum job_error_policy policy = is_read ? b->on_source_error
                                           : b->on_target_error;

    switch (job_handle_error(&b->common, policy, is_read, -ret)) {
    case JOB_ERROR_ACTION_REPORT:
        if (is_read) {
            /* The top at the time of the message, as for the guest. */
            pthread_rwlock_rdlock(&b->disk->io_lock);
            g_set_error(errp, CHAINFS_ERROR, -ret, "read from %s: %s",
                        b->disk->top->filename, g_strerror(-ret));
            pthread_rwlock_unlock(&b->disk->io_lock);
        } else {
            g_set_error(errp, CHAINFS_ERROR, -ret, "write to %s: %s",
                        b->target->filename, g_strerror(-ret));
        }
        return ret;
    case JOB_ERROR_ACTION_IGNORE:
        return job_sleep_ns(&b->common, BACKUP_IGNORE_RETRY_NS)
               ? -ECANCELED : 0;
    case JOB_ERROR_ACTION_STOP:
        return job_pause_point(&b->common) ? -ECANCELED : 0;
    }
    return -EINVAL;
}

/* The first error an operation reported, if any, once every operation
 * ended (so a stop is one stop, and its errors are not applied again):
 * 0 to go on, or a negative errno with *errp set. */
static int handle_pending_error(struct backup_job *b, GError **errp)
{
    int error;
    bool is_read;

    pthread_mutex_lock(&b->lock);
    error = b->pending_error;
    pthread_mutex_unlock(&b->lock);
    if (error == 0) {
        return 0;
    }
    wait_for_ops(b);
    pthread_mutex_lock(&b->lock);
    error = b->pending_error;
    is_read = b->pending_error_is_read;
    b->pending_error = 0;
    pthread_mutex_unlock(&b->lock);
    return backup_handle_error(b, -error, is_read, errp);
}

/* Take the needed chunks of [start, end), which read as zeros by block
 * status, without reading them: under a claim (guest writes there wait),
 * check again how far they read as zeros, write zeros to the target
 * unless it reads zeros anyway, and drop them from needed.  Returns where
 * it stopped: start when nothing there reads as zeros any more. */
static uint64_t skip_zero_run(struct backup_job *b, uint64_t start,
                              uint64_t end)
{
    struct cbw_claim claim;
    uint64_t pnum, stop = start;
    int ret = 0;

    cbw_claim_begin(b->consumer, start, end - start, &claim);
    int status = block_chain_status(b->disk->top, start, end - start, &pnum);
    if (status >= 0 && !(status & BLOCK_STATUS_DATA)) {
        stop = pnum >= end - start ? end
                                   : ROUND_DOWN(start + pnum, b->granularity);
    }
    uint64_t done = start;
    for (uint64_t pos = start, len;
         done < stop &&
         dirty_bitmap_next_dirty_area(b->needed, &pos, stop, stop - pos,
                                      &len);
         pos += len) {
        if (!b->target_reads_zeros) {
            ret = block_node_write_zeroes(b->target, pos, len,
                                          b->target_zero_flags);
            if (ret < 0) {
                stop = pos;
                break;
            }
        }
        job_progress_add_offset(&b->common, len);
        done = pos + len;
    }
    if (stop > start) {
        cbw_forget_claimed(b->consumer, &claim, start, stop - start);
    }
    cbw_claim_end(b->consumer, &claim);
    if (ret < 0) {
        pthread_mutex_lock(&b->lock);
        set_pending_error_locked(b, -ret, false);
        pthread_mutex_unlock(&b->lock);
    }
    return stop;
}

/* Issue the copy of the next needed run at or after the cursor, or skip
 * the zeros there.  A copy covers the data block status reports at its
 * start (rounded up to chunks, at most max_op_bytes), and the rate limit
 * is charged that much before it is queued.  Returns 1 if the cursor
 * moved, 0 if nothing is needed from the cursor on, or -ECANCELED. */
static int issue_next(struct backup_job *b)
{
    uint64_t pos = b->cursor, len, pnum;

    if (!dirty_bitmap_next_dirty_area(b->needed, &pos, b->size,
                                      b->max_op_bytes, &len)) {
        return 0;
    }
    int status = disk_block_status(b->disk, pos, b->size - pos, &pnum);
    if (status >= 0 && !(status & BLOCK_STATUS_DATA)) {
        uint64_t end = pnum >= b->size - pos
                       ? b->size : ROUND_DOWN(pos + pnum, b->granularity);
        if (end > pos) {
            uint64_t stop = skip_zero_run(b, pos, end);
            if (stop > pos) {
                b->cursor = stop;
                return 1;
            }
        }
    } else if (status >= 0) {
        len = MIN(len, ROUND_UP(MAX(pnum, 1), b->granularity));
    }
    uint64_t charge = status >= 0 && (status & BLOCK_STATUS_DATA)
                      ? MIN(len, pnum) : len;
    if (job_throttle(&b->common, charge)) {
        return -ECANCELED;
    }
    wait_for_room(b);
    queue_op(b, pos, pos + len);
    b->cursor = pos + len;
    return 1;
}

/* Copy every chunk still needed, a pass from the cursor to the end and
 * then again from 0 (so a chunk whose error was ignored is retried after
 * the others), keeping several operations in flight. */
int backup_copy_all(struct backup_job *b, GError **errp)
{
    struct job *job = &b->common;

    for (;;) {
        int ret = backup_take_cbw_error(b, errp);
        if (ret == 0) {
            ret = handle_pending_error(b, errp);
        }
        if (ret < 0) {
            return ret;
        }
        if (pause_requested(job)) {
            wait_for_ops(b);
        }
        if (job_pause_point(job)) {
            return -ECANCELED;
        }
        backup_update_progress(b);
        ret = issue_next(b);
        if (ret < 0) {
            return ret;
        }
        if (ret > 0) {
            continue;
        }
        /* The end of a pass: what is in flight ends first, so that the
         * next pass does not issue what is queued again. */
        wait_for_ops(b);
        pthread_mutex_lock(&b->lock);
        bool error_pending = b->pending_error != 0;
        pthread_mutex_unlock(&b->lock);
        if (error_pending) {
            continue;
        }
        if (b->cursor != 0) {
            b->cursor = 0;
            continue;
        }
        if (dirty_bitmap_count(b->needed) == 0) {
            return 0;
        }
    }
}
