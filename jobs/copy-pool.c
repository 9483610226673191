/* chainfs: the shared copy threads and in-order batches (see copy-pool.h). */
#include "jobs/copy-pool.h"

#include <errno.h>
#include <glib.h>

#include "jobs/job.h"

/* One generation of the pool: from the first reference to the last. */
struct pool {
    pthread_t *threads;             /* grown as threads start */
    unsigned n_threads;
    unsigned idle;                  /* threads waiting for a task */
    unsigned queued;                /* tasks not taken yet */
    struct copy_task *head;
    struct copy_task *tail;
    bool stop;
    pthread_cond_t cond;            /* a task was queued, or stop */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
/* Protected by pool_lock: */
static struct pool *pool;           /* NULL while nobody holds a reference */
static unsigned pool_refs;

static void *pool_worker(void *opaque)
{
    struct pool *p = opaque;
    uint8_t *buf = NULL;
    size_t buf_len = 0;

    pthread_mutex_lock(&pool_lock);
    for (;;) {
        while (!p->head && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->cond, &pool_lock);
            p->idle--;
        }
        struct copy_task *task = p->head;
        if (!task) {
            break;
        }
        p->head = task->next;
        if (!p->head) {
            p->tail = NULL;
        }
        p->queued--;
        pthread_mutex_unlock(&pool_lock);

        if (buf_len < task->buf_len) {
            g_free(buf);
            buf = g_malloc(task->buf_len);
            buf_len = task->buf_len;
        }
        task->run(task, buf);
        pthread_mutex_lock(&pool_lock);
    }
    pthread_mutex_unlock(&pool_lock);
    g_free(buf);
    return NULL;
}

void copy_pool_ref(void)
{
    pthread_mutex_lock(&pool_lock);
    if (pool_refs++ == 0) {
        pool = g_new0(struct pool, 1);
        pthread_cond_init(&pool->cond, NULL);
    }
    pthread_mutex_unlock(&pool_lock);
}

void copy_pool_unref(void)
{
    struct pool *p = NULL;

    pthread_mutex_lock(&pool_lock);
    g_assert(pool_refs > 0);
    if (--pool_refs == 0) {
        p = pool;
        pool = NULL;
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&pool_lock);
    if (!p) {
        return;
    }
    /* No thread starts once stop is set: submitting needs a reference. */
    for (unsigned i = 0; i < p->n_threads; i++) {
        pthread_join(p->threads[i], NULL);
    }
    g_assert(!p->head);
    pthread_cond_destroy(&p->cond);
    g_free(p->threads);
    g_free(p);
}

void copy_pool_submit(struct copy_task *task)
{
    pthread_mutex_lock(&pool_lock);
    struct pool *p = pool;
    g_assert(p);
    task->next = NULL;
    if (p->tail) {
        p->tail->next = task;
    } else {
        p->head = task;
    }
    p->tail = task;
    p->queued++;
    if (p->queued > p->idle &&
        p->n_threads < COPY_POOL_MAX_THREADS + pool_refs) {
        p->threads = g_renew(pthread_t, p->threads, p->n_threads + 1);
        if (pthread_create(&p->threads[p->n_threads], NULL, pool_worker,
                           p) == 0) {
            p->n_threads++;
        }
    }
    bool no_thread = p->n_threads == 0;
    if (no_thread) {
        /* Not even one thread: run it here rather than never. */
        p->head = p->tail = NULL;
        p->queued = 0;
    }
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&pool_lock);
    if (no_thread) {
        uint8_t *buf = g_malloc(task->buf_len);
        task->run(task, buf);
        g_free(buf);
    }
}

unsigned copy_pool_threads(void)
{
    unsigned n;

    pthread_mutex_lock(&pool_lock);
    n = pool ? pool->n_threads : 0;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

/* --- Batches ------------------------------------------------------------- */

/* One range of a batch in flight. */
struct batch_op {
    struct copy_task task;          /* first */
    struct copy_batch *batch;
    uint64_t offset;
    uint64_t len;
};

static void batch_op_run(struct copy_task *task, uint8_t *buf)
{
    struct batch_op *op = (struct batch_op *)task;
    struct copy_batch *b = op->batch;
    bool is_read = false;
    int ret = b->copy(b->opaque, op->offset, op->len, buf, &is_read);

    if (ret == 0 && b->job) {
        job_progress_add_offset(b->job, op->len);
    }
    pthread_mutex_lock(&b->lock);
    b->ops--;
    b->bytes -= op->len;
    if (ret < 0 && (b->error == 0 || op->offset < b->error_offset)) {
        b->error = -ret;
        b->error_is_read = is_read;
        b->error_offset = op->offset;
    }
    pthread_cond_broadcast(&b->cond);
    /* From here on the batch may be gone (the run loop drains it). */
    pthread_mutex_unlock(&b->lock);
    g_free(op);
}

void copy_batch_init(struct copy_batch *batch, struct job *job,
                     copy_batch_fn *copy, void *opaque, unsigned max_ops,
                     uint64_t max_bytes)
{
    *batch = (struct copy_batch){
        .job = job,
        .copy = copy,
        .opaque = opaque,
        .max_ops = MAX(max_ops, 1),
        .max_bytes = max_bytes,
    };
    pthread_mutex_init(&batch->lock, NULL);
    pthread_cond_init(&batch->cond, NULL);
    copy_pool_ref();
}

void copy_batch_destroy(struct copy_batch *batch)
{
    copy_batch_drain(batch);
    copy_pool_unref();
    pthread_cond_destroy(&batch->cond);
    pthread_mutex_destroy(&batch->lock);
}

void copy_batch_submit(struct copy_batch *batch, uint64_t offset,
                       uint64_t len)
{
    pthread_mutex_lock(&batch->lock);
    while (batch->ops >= batch->max_ops ||
           (batch->ops > 0 && batch->bytes + len > batch->max_bytes)) {
        pthread_cond_wait(&batch->cond, &batch->lock);
    }
    batch->ops++;
    batch->bytes += len;
    pthread_mutex_unlock(&batch->lock);

    struct batch_op *op = g_new(struct batch_op, 1);
    *op = (struct batch_op){
        .task = { .run = batch_op_run, .buf_len = len },
        .batch = batch,
        .offset = offset,
        .len = len,
    };
    copy_pool_submit(&op->task);
}

void copy_batch_drain(struct copy_batch *batch)
{
    pthread_mutex_lock(&batch->lock);
    while (batch->ops > 0) {
        pthread_cond_wait(&batch->cond, &batch->lock);
    }
    pthread_mutex_unlock(&batch->lock);
}

bool copy_batch_failed(struct copy_batch *batch)
{
    bool failed;

    pthread_mutex_lock(&batch->lock);
    failed = batch->error != 0;
    pthread_mutex_unlock(&batch->lock);
    return failed;
}

int copy_batch_take_error(struct copy_batch *batch, uint64_t *offset,
                          bool *is_read)
{
    int error;

    copy_batch_drain(batch);
    pthread_mutex_lock(&batch->lock);
    error = batch->error;
    *offset = batch->error_offset;
    *is_read = batch->error_is_read;
    batch->error = 0;
    pthread_mutex_unlock(&batch->lock);
    return -error;
}

/* --- Passes -------------------------------------------------------------- */

/* Wait for what is in flight and apply the policy to the lowest failure:
 * 0 to go on (*offset rewound to a range to retry), or a negative errno. */
static int settle(struct copy_batch *batch, const struct copy_pass_ops *ops,
                  uint64_t *offset, bool *skipped, GError **errp)
{
    uint64_t failed_at;
    bool is_read;
    int ret = copy_batch_take_error(batch, &failed_at, &is_read);

    if (ret == 0) {
        return 0;
    }
    ret = ops->handle_error(batch->opaque, ret, is_read, errp);
    if (ret < 0) {
        return ret;
    }
    if (ret == 0) {
        /* Everything below the lowest failure is done. */
        *offset = failed_at;
        __atomic_store_n(&batch->job->progress_offset, failed_at,
                         __ATOMIC_RELAXED);
    } else {
        *skipped = true;
    }
    return 0;
}

int copy_batch_pass(struct copy_batch *batch, const struct copy_pass_ops *ops,
                    uint64_t size, uint64_t chunk, bool *skipped,
                    GError **errp)
{
    struct job *job = batch->job;
    int ret = 0;

    *skipped = false;
    job_progress_set_len(job, size);
    __atomic_store_n(&job->progress_offset, 0, __ATOMIC_RELAXED);
    for (uint64_t offset = 0; offset < size;) {
        if (copy_batch_failed(batch) || job_pause_requested(job)) {
            ret = settle(batch, ops, &offset, skipped, errp);
            if (ret < 0) {
                break;
            }
        }
        if (job_pause_point(job)) {
            ret = -ECANCELED;
            break;
        }
        /* Ask about everything left, so that a run needing no copy is
         * skipped in one step however long; copy a chunk at a time. */
        uint64_t n = size - offset;
        int status = ops->status(batch->opaque, offset, size - offset, &n);
        n = MAX(MIN(n, size - offset), 1);
        if (status != 0) {
            n = MIN(n, chunk);
        }
        if (status < 0) {
            /* Stop issuing: the policy sees one failure at a time. */
            copy_batch_drain(batch);
            if (copy_batch_failed(batch)) {
                continue;
            }
            int action = ops->handle_error(batch->opaque, status, true,
                                           errp);
            if (action < 0) {
                ret = action;
                break;
            }
            if (action == 0) {
                continue;       /* resumed after a stop: retry */
            }
            *skipped = true;
            job_progress_add_offset(job, n);
        } else if (status > 0) {
            if (job_throttle(job, ops->charge(batch->opaque, offset, n))) {
                ret = -ECANCELED;
                break;
            }
            copy_batch_submit(batch, offset, n);
        } else {
            job_progress_add_offset(job, n);
        }
        offset += n;
        if (offset >= size) {
            /* The end: what failed in flight may send us back. */
            ret = settle(batch, ops, &offset, skipped, errp);
            if (ret < 0) {
                break;
            }
        }
    }
    copy_batch_drain(batch);
    return ret;
}
