/* chainfs: what the files of the backup job share (backup.c: the job,
 * its copy-before-write callbacks, the bitmap and the start; backup-copier.c:
 * the background copier, its pool of workers and the error policies).
 *
 * Locking: b->lock (pthread) protects the first copy-before-write error,
 * the copier's queue, its counters and its pending error, and is never
 * held across I/O; job->lock is never taken while it is held.  Everything
 * else is set before the job starts or belongs to the job thread; the
 * sink and the workers touch only atomics, the needed set (its own lock)
 * and the target (whose driver takes its own locks).
 */
#ifndef CHAINFS_BACKUP_INTERNAL_H
#define CHAINFS_BACKUP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/copy-before-write.h"
#include "core/dirty-bitmap.h"
#include "jobs/command.h"
#include "jobs/job.h"
#include "jobs/mirror.h"
#include "jobs/mirror-target.h"

/* How long the loop waits before retrying a chunk whose error it ignored,
 * so that a lasting error does not make it spin. */
#define BACKUP_IGNORE_RETRY_NS (10ull * 1000000)
/* At most this many background copies in flight, within buf-size. */
#define BACKUP_MAX_IN_FLIGHT MIRROR_MAX_IN_FLIGHT

/* A background copy: what is still needed of [offset, end). */
struct backup_op {
    uint64_t offset;
    uint64_t end;
};

struct backup_job {
    struct job common;                  /* first: the framework's part */

    /* Set up before the job starts, then read-only. */
    struct disk *disk;
    struct block_node *target;
    bool target_backing_owned;
    bool target_reads_zeros;            /* fresh and without backing */
    int target_zero_flags;              /* UNMAP only without backing */
    uint64_t zero_align;
    uint64_t size;
    uint64_t granularity;
    uint64_t max_op_bytes;
    uint64_t buf_size;
    enum job_error_policy on_source_error;
    enum job_error_policy on_target_error;
    char *bitmap_name;                  /* NULL: no bitmap= */
    struct dirty_bitmap *bitmap;        /* its bits (held busy) */
    enum command_bitmap_mode bitmap_mode;

    struct dirty_bitmap *needed;        /* the consumer's */
    struct dirty_bitmap *copy_set;      /* needed at the instant (bitmap=) */
    struct dirty_bitmap *written;       /* writes since then (bitmap=) */
    struct dirty_bitmap *failed;        /* chunks a failed copy lost */
    struct cbw_consumer *consumer;
    struct block_writeback writeback;
    bool succeeded;                     /* prepare ran */

    /* Only the job thread touches these. */
    uint64_t cursor;                    /* where the next search starts */
    pthread_t *workers;
    unsigned n_workers;

    pthread_mutex_t lock;               /* never held across I/O */
    pthread_cond_t cond;                /* broadcast on every change below */
    /* Protected by lock: */
    char *cbw_error;                    /* the first failed copy before a
                                           guest write */
    int cbw_errno;
    GQueue queue;                       /* struct backup_op *, not taken */
    unsigned ops;                       /* queued or running */
    uint64_t ops_bytes;
    bool workers_stop;
    int pending_error;                  /* positive errno; 0 = none */
    bool pending_error_is_read;
};

static inline struct backup_job *backup_of(struct job *job)
{
    return (struct backup_job *)job;   /* common comes first */
}

/* The job's dirty count: what is still needed. */
void backup_update_progress(struct backup_job *b);
/* The first failed copy before a guest write as the job's error (a
 * negative errno with *errp set), or 0. */
int backup_take_cbw_error(struct backup_job *b, GError **errp);
/* Apply the side's policy to a failed copy or flush, with no copy in
 * flight: 0 to go on (retry), or a negative errno with *errp set. */
int backup_handle_error(struct backup_job *b, int ret, bool is_read,
                        GError **errp);
/* Start and stop the copier's workers (the job thread, in run). */
void backup_start_workers(struct backup_job *b);
void backup_stop_workers(struct backup_job *b);
/* Copy every chunk still needed through the workers; returns 0 when none
 * is left and none is in flight, or a negative errno (-ECANCELED) with
 * *errp set. */
int backup_copy_all(struct backup_job *b, GError **errp);

#endif
