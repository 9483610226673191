/* chainfs: what the files of the mirror job share (mirror.c: the job;
 * mirror-ops.c: operations in flight, the worker pool, copying).
 *
 * Locking: m->lock (pthread) protects the in-flight list, the work queue,
 * the counters of background operations and the pending error, and is
 * never held across I/O.  Lock order: job->lock is never taken while
 * m->lock is held; the bitmap's own lock nests inside m->lock.  Functions
 * named *_locked are called with m->lock held.
 */
#ifndef CHAINFS_MIRROR_INTERNAL_H
#define CHAINFS_MIRROR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/disk.h"
#include "core/dirty-bitmap.h"
#include "jobs/command.h"
#include "jobs/copy-pool.h"
#include "jobs/job.h"

/* How long an idle ready mirror sleeps; guest writes and every event of
 * interest kick it sooner, so this is only a safety net. */
#define MIRROR_IDLE_NS (10ull * 1000000000)

struct mirror_job;

/* One operation in flight: a background copy (run by the copy pool) or a
 * guest write. */
struct mirror_op {
    struct copy_task task;              /* first; background copies only */
    struct mirror_job *m;
    uint64_t offset;
    uint64_t bytes;
    bool is_guest_write;
};

struct mirror_job {
    struct job common;                  /* first: the framework's part */

    /* Set up before the job starts, then read-only. */
    struct disk *disk;
    struct block_node *source;          /* the disk's top at start */
    struct block_node *target;          /* owned until the switch */
    bool target_backing_owned;          /* target->backing opened by us */
    enum command_sync sync;
    enum job_error_policy on_source_error;
    enum job_error_policy on_target_error;
    uint64_t size;
    uint64_t granularity;
    uint64_t buf_size;
    uint64_t max_op_bytes;
    uint64_t target_cluster;            /* > granularity: copy it whole */
    bool target_reads_zeros;            /* fresh and without backing */
    int target_zero_flags;              /* UNMAP only without backing */
    uint64_t zero_align;                /* sparse_copy_align(target) */
    struct dirty_bitmap *dirty;
    struct disk_write_hook hook;
    struct block_node *commit_base;     /* active commit: the target is
                                           this layer of the source chain */

    struct block_writeback writeback;   /* of the target, by copies */
    int copy_mode;                      /* atomic enum job_copy_mode */
    bool stopping;                      /* atomic: guest writes stop
                                           copying to the target */

    /* Only the job thread touches these. */
    uint64_t *copied_clusters;          /* bit per target cluster, when
                                           target_cluster > granularity */
    uint64_t cursor;                    /* where the next search starts */
    bool ready;
    bool drained;                       /* holds the disk's drain */
    bool hook_installed;
    bool bitmap_attached;
    bool switched;                      /* the disk now owns the target */
    uint8_t *sync_buf;                  /* for copies under the drain */
    size_t sync_buf_len;
    bool uses_pool;                     /* holds a copy pool reference */

    pthread_mutex_t lock;
    pthread_cond_t cond;                /* broadcast on every change below */
    /* Protected by lock: */
    GPtrArray *in_flight;               /* struct mirror_op * */
    unsigned bg_ops;                    /* background ops not retired */
    uint64_t bg_bytes;
    int pending_error;                  /* positive errno; 0 = none */
    bool pending_error_is_read;
};

static inline struct mirror_job *mirror_of(struct job *job)
{
    return (struct mirror_job *)job;    /* common comes first */
}

static inline bool mirror_ranges_overlap(uint64_t a, uint64_t a_len,
                                         uint64_t b, uint64_t b_len)
{
    return a < b + b_len && b < a + a_len;
}

/* Whether an operation in flight overlaps the range. */
bool mirror_overlaps_in_flight_locked(struct mirror_job *m, uint64_t offset,
                                      uint64_t bytes);
/* Wait until nothing in flight overlaps op, then register it. */
void mirror_begin_op_locked(struct mirror_job *m, struct mirror_op *op);
/* Keep the first error until the run loop applies the policy to it. */
void mirror_set_pending_error_locked(struct mirror_job *m, int error,
                                     bool is_read);
/* Retire op (takes m->lock): on failure its range is dirty again. */
void mirror_end_op(struct mirror_job *m, struct mirror_op *op, int ret,
                   bool is_read);
/* Wait until no background operation is in flight. */
void mirror_wait_for_background_ops(struct mirror_job *m);
/* Copy a range from the source chain to the target, sparsely. */
int mirror_copy_range(struct mirror_job *m, uint64_t offset, uint64_t bytes,
                      uint8_t *buf, bool *is_read);
/* Grow *buf to hold len bytes. */
uint8_t *mirror_buffer_for(uint8_t **buf, size_t *buf_len, size_t len);
/* Start using the shared copy pool (copy-pool.h), and stop: no background
 * operation may be in flight then. */
void mirror_start_workers(struct mirror_job *m);
void mirror_stop_workers(struct mirror_job *m);
/* Hand a registered background copy to the pool. */
void mirror_submit_copy(struct mirror_job *m, struct mirror_op *op);

#endif
