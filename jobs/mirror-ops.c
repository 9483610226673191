/* chainfs: the mirror job's operations in flight, its use of the shared
 * copy pool and the copy itself (see mirror-internal.h for the locking
 * rules). */
#include <errno.h>

#include "core/chain.h"
#include "jobs/mirror.h"
#include "jobs/mirror-internal.h"
#include "jobs/sparse-copy.h"

/* --- In-flight operations (m->lock) -------------------------------------- */

bool mirror_overlaps_in_flight_locked(struct mirror_job *m, uint64_t offset,
                                      uint64_t bytes)
{
    for (unsigned i = 0; i < m->in_flight->len; i++) {
        struct mirror_op *op = g_ptr_array_index(m->in_flight, i);
        if (mirror_ranges_overlap(op->offset, op->bytes, offset, bytes)) {
            return true;
        }
    }
    return false;
}

/* Wait until nothing in flight overlaps op, then register it. */
void mirror_begin_op_locked(struct mirror_job *m, struct mirror_op *op)
{
    while (mirror_overlaps_in_flight_locked(m, op->offset, op->bytes)) {
        pthread_cond_wait(&m->cond, &m->lock);
    }
    g_ptr_array_add(m->in_flight, op);
}

/* Keep the first error until the run loop applies the policy to it. */
void mirror_set_pending_error_locked(struct mirror_job *m, int error,
                                     bool is_read)
{
    if (m->pending_error == 0) {
        m->pending_error = error;
        m->pending_error_is_read = is_read;
    }
}

/* Retire op: on failure its range is dirty again, to be retried. */
void mirror_end_op(struct mirror_job *m, struct mirror_op *op, int ret,
                   bool is_read)
{
    pthread_mutex_lock(&m->lock);
    g_ptr_array_remove_fast(m->in_flight, op);
    if (!op->is_guest_write) {
        m->bg_ops--;
        m->bg_bytes -= op->bytes;
    }
    if (ret < 0) {
        dirty_bitmap_set(m->dirty, op->offset, op->bytes);
        mirror_set_pending_error_locked(m, -ret, is_read);
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    job_kick(&m->common);
}

/* Wait until no background operation is in flight. */
void mirror_wait_for_background_ops(struct mirror_job *m)
{
    pthread_mutex_lock(&m->lock);
    while (m->bg_ops > 0) {
        pthread_cond_wait(&m->cond, &m->lock);
    }
    pthread_mutex_unlock(&m->lock);
}

/* --- Copying ------------------------------------------------------------- */

/* Copy [offset, offset + bytes) from the source chain to the target, run
 * by run: ranges the chain reports as zero are zeroed without being read,
 * data is read and written by sparse_copy_write, so zeros the source holds
 * as data become zero writes too (never data: the target stays sparse).
 * Only bytes written as data count as copied.  buf holds bytes.  Returns 0
 * or a negative errno, with *is_read saying which side failed. */
int mirror_copy_range(struct mirror_job *m, uint64_t offset, uint64_t bytes,
                      uint8_t *buf, bool *is_read)
{
    struct block_node *source = m->source;
    struct block_node *target = m->target;
    const uint64_t start = offset;
    const uint64_t end = offset + bytes;
    uint64_t copied = 0;
    int ret = 0;

    while (offset < end) {
        uint64_t pnum;
        int status = block_chain_status(source, offset, end - offset, &pnum);
        if (status < 0) {
            *is_read = true;
            ret = status;
            break;
        }
        pnum = MIN(pnum, end - offset);
        if (status & BLOCK_STATUS_DATA) {
            uint8_t *data = buf + (offset - start);
            ret = source->driver->read(source, offset, pnum, data);
            if (ret < 0) {
                *is_read = true;
                break;
            }
            ret = sparse_copy_write(target, offset, pnum, data,
                                    m->zero_align, m->target_zero_flags,
                                    &copied);
        } else {
            ret = block_node_write_zeroes(target, offset, pnum,
                                          m->target_zero_flags);
        }
        if (ret < 0) {
            *is_read = false;
            break;
        }
        offset += pnum;
    }
    job_progress_add_copied(&m->common, copied);
    block_writeback_note(&m->writeback, target, copied);
    if (ret == 0) {
        job_progress_add_offset(&m->common, bytes);
    }
    return ret;
}

/* Grow *buf to hold len bytes. */
uint8_t *mirror_buffer_for(uint8_t **buf, size_t *buf_len, size_t len)
{
    if (*buf_len < len) {
        g_free(*buf);
        *buf = g_malloc(len);
        *buf_len = len;
    }
    return *buf;
}

/* A background copy, on a pool thread with its buffer. */
static void mirror_copy_task(struct copy_task *task, uint8_t *buf)
{
    struct mirror_op *op = (struct mirror_op *)task;
    struct mirror_job *m = op->m;
    bool is_read = false;
    int ret = mirror_copy_range(m, op->offset, op->bytes, buf, &is_read);

    mirror_end_op(m, op, ret, is_read);
    g_free(op);
}

void mirror_submit_copy(struct mirror_job *m, struct mirror_op *op)
{
    op->task = (struct copy_task){
        .run = mirror_copy_task,
        .buf_len = op->bytes,
    };
    op->m = m;
    copy_pool_submit(&op->task);
}

void mirror_start_workers(struct mirror_job *m)
{
    copy_pool_ref();
    m->uses_pool = true;
}

void mirror_stop_workers(struct mirror_job *m)
{
    if (m->uses_pool) {
        copy_pool_unref();
        m->uses_pool = false;
    }
}
