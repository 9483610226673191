/* chainfs: the threads that run the copy jobs' operations, shared by all
 * jobs of the process, and the in-order batches stream and commit use.
 *
 * The pool: a job that copies takes a reference (copy_pool_ref) while it
 * runs; the first reference starts the pool, which grows a thread at a
 * time, when a task is queued and no thread is idle, up to
 * COPY_POOL_MAX_THREADS plus one per reference; the last reference
 * (copy_pool_unref, with none of the caller's tasks queued or running)
 * stops and joins them.  Tasks run in the order they were queued, so jobs
 * that each keep at most 16 tasks in flight share the threads fairly; and
 * since one job can occupy at most 16 threads, the one extra thread per
 * job leaves every other job a thread even when one job's copies hang
 * (a remote target that stopped answering).  Each thread owns one buffer,
 * grown to the largest task it ran, lent to the task it runs: the memory
 * of the copies in flight is bounded by the threads, not the jobs.  With
 * 16 busy jobs the daemon runs at most 32 copy threads, not 16 per job.
 *
 * A batch (struct copy_batch) is a job's copies in flight: at most max_ops
 * tasks and max_bytes bytes at once, submitted in ascending offset order,
 * with the lowest failed range kept for the run loop's error policy.
 *
 * Locking: the pool's lock protects its queue and threads; a batch's lock
 * its counters and error.  Neither is held while a task runs, and a task
 * may take any lock but the pool's.
 */
#ifndef CHAINFS_COPY_POOL_H
#define CHAINFS_COPY_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

/* The pool runs at most this many threads plus one per reference (a job
 * keeps at most 16 copies in flight: MIRROR_MAX_IN_FLIGHT). */
#define COPY_POOL_MAX_THREADS 16

/* One unit of work; embed it in the caller's own operation. */
struct copy_task {
    /* Runs on a pool thread with buf holding buf_len bytes (the thread's,
     * valid until run returns); may free the task. */
    void (*run)(struct copy_task *task, uint8_t *buf);
    size_t buf_len;
    struct copy_task *next;         /* the pool's queue */
};

/* A job starts using the pool (starts it if needed). */
void copy_pool_ref(void);
/* A job stops using it; none of its tasks may be queued or running.  The
 * last reference stops and joins the threads. */
void copy_pool_unref(void);
/* Queue task; the caller holds a reference. */
void copy_pool_submit(struct copy_task *task) __attribute__((nonnull));
/* The pool's threads now (for tests and the thread bound). */
unsigned copy_pool_threads(void);

/* --- Batches: a job's in-order copies in flight -------------------------- */

struct job;

/* Copy [offset, offset + len) with buf (len bytes); 0 or a negative errno,
 * *is_read saying which side failed. */
typedef int copy_batch_fn(void *opaque, uint64_t offset, uint64_t len,
                          uint8_t *buf, bool *is_read);

struct copy_batch {
    struct job *job;                /* progress: offset on success;
                                       NULL: none (tests) */
    copy_batch_fn *copy;
    void *opaque;
    unsigned max_ops;
    uint64_t max_bytes;

    pthread_mutex_t lock;
    pthread_cond_t cond;            /* broadcast when an operation ends */
    /* Protected by lock: */
    unsigned ops;
    uint64_t bytes;
    int error;                      /* positive errno of the lowest failed
                                       range; 0 = none */
    bool error_is_read;
    uint64_t error_offset;
};

/* Set up batch; it takes a pool reference until copy_batch_destroy. */
void copy_batch_init(struct copy_batch *batch, struct job *job,
                     copy_batch_fn *copy, void *opaque, unsigned max_ops,
                     uint64_t max_bytes) __attribute__((nonnull(1, 3)));
/* Wait until nothing is in flight, then release the batch. */
void copy_batch_destroy(struct copy_batch *batch) __attribute__((nonnull));
/* Wait for room, then start copying the range on the pool. */
void copy_batch_submit(struct copy_batch *batch, uint64_t offset,
                       uint64_t len) __attribute__((nonnull));
/* Wait until nothing is in flight. */
void copy_batch_drain(struct copy_batch *batch) __attribute__((nonnull));
/* Whether an operation failed (its error is not taken yet). */
bool copy_batch_failed(struct copy_batch *batch) __attribute__((nonnull));
/* Drain, then take the lowest failed range's error: 0 if none, else a
 * negative errno with *offset and *is_read set. */
int copy_batch_take_error(struct copy_batch *batch, uint64_t *offset,
                          bool *is_read) __attribute__((nonnull));

/* --- One front-to-back pass of a job that copies ranges in order --------- */

struct copy_pass_ops {
    /* Whether [offset, offset + len) needs a copy: 1 yes, 0 no, or a
     * negative errno (of a read); *pnum: how far the answer holds. */
    int (*status)(void *opaque, uint64_t offset, uint64_t len,
                  uint64_t *pnum);
    /* The bytes the rate limit charges for copying the range. */
    uint64_t (*charge)(void *opaque, uint64_t offset, uint64_t len);
    /* Apply the job's error policy to a failed range (ret a negative
     * errno): 0 to retry it (resumed after a stop), 1 to leave it for
     * another pass (ignore), or a negative errno with *errp to fail. */
    int (*handle_error)(void *opaque, int ret, bool is_read, GError **errp);
};

/* Copy what needs a copy in [0, size) in pieces of at most chunk bytes,
 * several in flight on the pool, with pause points, the rate limit and
 * progress; nothing is in flight when it returns.  A failure stops the
 * issuing, waits for what is in flight, and applies the policy to the
 * lowest failed range: a retry starts again from there.  Returns 0 (with
 * *skipped set when an ignored error left a range for another pass) or a
 * negative errno (-ECANCELED on a hard cancel). */
int copy_batch_pass(struct copy_batch *batch, const struct copy_pass_ops *ops,
                    uint64_t size, uint64_t chunk, bool *skipped,
                    GError **errp) __attribute__((nonnull(1, 2, 5)));

#endif
