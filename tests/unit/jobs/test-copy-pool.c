/* Unit tests for jobs/copy-pool.c: the shared copy threads (bounded, every
 * task runs, a client whose tasks hang leaves others a thread) and the
 * lowest-failure rule of batches. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <glib.h>

#include "jobs/copy-pool.h"

/* A task that counts itself, optionally blocking until released. */
struct counted_task {
    struct copy_task task;          /* first */
    int *ran;                       /* atomic */
    pthread_mutex_t *gate;          /* held by the test to block it; NULL */
};

static void counted_run(struct copy_task *task, uint8_t *buf)
{
    struct counted_task *t = (struct counted_task *)task;

    assert_non_null(buf);
    buf[0] = 1;
    buf[t->task.buf_len - 1] = 1;  /* the buffer holds buf_len bytes */
    if (t->gate) {
        pthread_mutex_lock(t->gate);
        pthread_mutex_unlock(t->gate);
    }
    __atomic_add_fetch(t->ran, 1, __ATOMIC_SEQ_CST);
}

static void wait_until(int *counter, int value)
{
    for (int i = 0; i < 10000 && __atomic_load_n(counter, __ATOMIC_SEQ_CST) <
                                     value; i++) {
        g_usleep(1000);
    }
    assert_int_equal(__atomic_load_n(counter, __ATOMIC_SEQ_CST), value);
}

/* 200 tasks all run, on at most COPY_POOL_MAX_THREADS + 1 threads; the
 * last reference stops the pool. */
static void test_every_task_runs_bounded(void **state)
{
    (void)state;
    enum { N = 200 };
    struct counted_task tasks[N];
    int ran = 0;

    copy_pool_ref();
    for (int i = 0; i < N; i++) {
        tasks[i] = (struct counted_task){
            .task = { .run = counted_run, .buf_len = 4096 + i },
            .ran = &ran,
        };
        copy_pool_submit(&tasks[i].task);
        assert_true(copy_pool_threads() <= COPY_POOL_MAX_THREADS + 1);
    }
    wait_until(&ran, N);
    copy_pool_unref();
    assert_int_equal(copy_pool_threads(), 0);
}

/* One client fills 16 threads with tasks that hang; a second client's task
 * still runs, on the thread its reference adds. */
static void test_hung_client_leaves_a_thread(void **state)
{
    (void)state;
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    struct counted_task hung[COPY_POOL_MAX_THREADS];
    struct counted_task other;
    int hung_ran = 0, other_ran = 0;

    pthread_mutex_lock(&gate);
    copy_pool_ref();
    copy_pool_ref();
    for (int i = 0; i < COPY_POOL_MAX_THREADS; i++) {
        hung[i] = (struct counted_task){
            .task = { .run = counted_run, .buf_len = 512 },
            .ran = &hung_ran,
            .gate = &gate,
        };
        copy_pool_submit(&hung[i].task);
    }
    other = (struct counted_task){
        .task = { .run = counted_run, .buf_len = 512 },
        .ran = &other_ran,
    };
    copy_pool_submit(&other.task);
    wait_until(&other_ran, 1);
    assert_int_equal(__atomic_load_n(&hung_ran, __ATOMIC_SEQ_CST), 0);
    pthread_mutex_unlock(&gate);
    wait_until(&hung_ran, COPY_POOL_MAX_THREADS);
    copy_pool_unref();
    copy_pool_unref();
    pthread_mutex_destroy(&gate);
}

/* A copy that fails at offsets 3 and 7 (of 10 ranges of 1 byte). */
static int failing_copy(void *opaque, uint64_t offset, uint64_t len,
                        uint8_t *buf, bool *is_read)
{
    int *calls = opaque;

    (void)len;
    (void)buf;
    __atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST);
    g_usleep(offset == 3 ? 20000 : 1000);   /* 3 fails after 7 does */
    *is_read = offset == 7;
    return offset == 3 ? -ENOSPC : offset == 7 ? -EIO : 0;
}

/* The batch keeps the lowest failed range, whichever failed first, and
 * never has more than max_ops in flight. */
static void test_batch_keeps_lowest_failure(void **state)
{
    (void)state;
    struct copy_batch batch;
    int calls = 0;
    uint64_t offset;
    bool is_read;

    copy_batch_init(&batch, NULL, failing_copy, &calls, 4, 4);
    for (uint64_t i = 0; i < 10; i++) {
        copy_batch_submit(&batch, i, 1);
        pthread_mutex_lock(&batch.lock);
        assert_true(batch.ops <= 4);
        pthread_mutex_unlock(&batch.lock);
    }
    assert_int_equal(copy_batch_take_error(&batch, &offset, &is_read),
                     -ENOSPC);
    assert_int_equal(offset, 3);
    assert_false(is_read);
    assert_int_equal(calls, 10);
    assert_int_equal(copy_batch_take_error(&batch, &offset, &is_read), 0);
    copy_batch_destroy(&batch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_runs_bounded),
        cmocka_unit_test(test_hung_client_leaves_a_thread),
        cmocka_unit_test(test_batch_keeps_lowest_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
