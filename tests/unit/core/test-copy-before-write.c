/* Unit tests for core/copy-before-write.c: the content frozen at
 * registration reaches the sink exactly once per chunk, whoever copies it
 * (guest writes, zero writes, a background copier), under concurrent
 * writers; straddling and overlapping writes; errors that never fail a
 * guest write; several consumers; registration under a drain while a
 * writer runs. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/chain.h"
#include "core/copy-before-write.h"
#include "core/disk.h"
#include "test-util.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define SIZE (4 * MiB)
#define BLOCK (4 * KiB)

struct fixture {
    char *dir;
    char *path;
    struct disk *disk;
};

/* A consumer's view: what its sink received, and how often per chunk. */
struct frozen {
    struct cbw_consumer *consumer;
    struct dirty_bitmap *needed;
    uint64_t granularity;
    uint8_t *copy;              /* SIZE bytes; written by the sink */
    int *sinks;                 /* per chunk (atomic) */
    int fail_chunk;             /* the sink fails this chunk (-1: none) */
    int errors;                 /* error callbacks (atomic) */
    uint64_t error_offset;
    /* Blocking the sink of one chunk, to hold a copy in flight. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int block_chunk;            /* -1: none */
    bool blocked;               /* a sink is waiting in block_chunk */
    bool release;
};

static int setup_format(void **state, const char *format)
{
    struct fixture *f = g_new0(struct fixture, 1);
    GError *err = NULL;

    f->dir = test_dir_new();
    f->path = g_build_filename(f->dir, "disk.img", NULL);
    struct block_create_opts opts = { .size = SIZE, .cluster_size = 64 * KiB };
    assert_true(block_driver_by_name(format)->create(f->path, &opts, &err));
    struct block_node *top = chain_open(f->path, format, false, &err);
    assert_non_null(top);
    f->disk = disk_new("vm", top, false);
    *state = f;
    return 0;
}

static int setup_raw(void **state)
{
    return setup_format(state, "raw");
}

static int setup_qcow2(void **state)
{
    return setup_format(state, "qcow2");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(disk_close(f->disk), 0);
    test_dir_remove(f->dir);
    g_free(f->dir);
    g_free(f->path);
    g_free(f);
    return 0;
}

static int frozen_sink(void *opaque, uint64_t offset, uint64_t len,
                       const void *buf)
{
    struct frozen *fz = opaque;
    uint64_t first = offset / fz->granularity;
    uint64_t last = (offset + len - 1) / fz->granularity;

    for (uint64_t c = first; c <= last; c++) {
        if ((int)c == fz->fail_chunk) {
            return -ENOSPC;
        }
    }
    pthread_mutex_lock(&fz->lock);
    if (fz->block_chunk >= 0 && first <= (uint64_t)fz->block_chunk &&
        (uint64_t)fz->block_chunk <= last) {
        fz->blocked = true;
        pthread_cond_broadcast(&fz->cond);
        while (!fz->release) {
            pthread_cond_wait(&fz->cond, &fz->lock);
        }
    }
    pthread_mutex_unlock(&fz->lock);
    if (buf) {
        memcpy(fz->copy + offset, buf, len);
    } else {
        memset(fz->copy + offset, 0, len);
    }
    /* A sink may be called for a run piece by piece (block status runs):
     * count a chunk when its first byte arrives. */
    for (uint64_t c = first; c <= last; c++) {
        if (c * fz->granularity >= offset) {
            __atomic_add_fetch(&fz->sinks[c], 1, __ATOMIC_SEQ_CST);
        }
    }
    return 0;
}

static void frozen_error(void *opaque, uint64_t offset, uint64_t len,
                         int error, bool is_read)
{
    struct frozen *fz = opaque;
    (void)len;
    (void)is_read;
    assert_true(error < 0);
    __atomic_store_n(&fz->error_offset, offset, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&fz->errors, 1, __ATOMIC_SEQ_CST);
}

/* Register a consumer needing every chunk, under a drain. */
static struct frozen *frozen_new(struct disk *disk, uint64_t granularity)
{
    struct frozen *fz = g_new0(struct frozen, 1);

    fz->granularity = granularity;
    fz->needed = dirty_bitmap_new(SIZE, granularity);
    dirty_bitmap_set_all(fz->needed);
    fz->copy = g_malloc0(SIZE);
    fz->sinks = g_new0(int, SIZE / granularity);
    fz->fail_chunk = -1;
    fz->block_chunk = -1;
    pthread_mutex_init(&fz->lock, NULL);
    pthread_cond_init(&fz->cond, NULL);
    struct cbw_consumer_ops ops = { frozen_sink, frozen_error, fz };
    disk_drain_begin(disk);
    fz->consumer = cbw_add_consumer_drained(disk, fz->needed, &ops);
    disk_drain_end(disk);
    return fz;
}

static void frozen_free(struct disk *disk, struct frozen *fz)
{
    disk_drain_begin(disk);
    cbw_remove_consumer_drained(disk, fz->consumer);
    disk_drain_end(disk);
    dirty_bitmap_free(fz->needed);
    pthread_cond_destroy(&fz->cond);
    pthread_mutex_destroy(&fz->lock);
    g_free(fz->copy);
    g_free(fz->sinks);
    g_free(fz);
}

/* Copy whatever is still needed with the background copier. */
static void copy_rest(struct frozen *fz)
{
    uint64_t offset = 0, len;
    bool is_read;
    int ret;

    while ((ret = cbw_copy_next(fz->consumer, &offset, SIZE, 256 * KiB,
                                &len, &is_read, NULL)) > 0) {
        offset += len;
    }
    assert_int_equal(ret, 0);
    assert_int_equal(dirty_bitmap_count(fz->needed), 0);
}

static void fill_pattern(uint8_t *buf, uint64_t offset, uint64_t len,
                         unsigned seed)
{
    for (uint64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((offset + i) / 512 * 31 + seed * 7 + 1);
    }
}

/* The disk's initial content: data in the first half, holes after. */
static uint8_t *write_initial(struct disk *disk)
{
    uint8_t *model = g_malloc0(SIZE);

    fill_pattern(model, 0, SIZE / 2, 0);
    assert_int_equal(disk_write(disk, 0, SIZE / 2, model), 0);
    return model;
}

static void assert_each_chunk_once(struct frozen *fz)
{
    for (uint64_t c = 0; c < SIZE / fz->granularity; c++) {
        if (fz->sinks[c] != 1) {
            fail_msg("chunk %" G_GUINT64_FORMAT " copied %d times", c,
                     fz->sinks[c]);
        }
    }
}

static void test_write_copies_touched_chunks(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = write_initial(f->disk);
    struct frozen *fz = frozen_new(f->disk, 64 * KiB);
    uint8_t buf[8 * KiB];

    /* One byte in chunk 1: chunk 1 only. */
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 64 * KiB + 100, 1, buf), 0);
    assert_int_equal(fz->sinks[0], 0);
    assert_int_equal(fz->sinks[1], 1);
    assert_int_equal(fz->sinks[2], 0);
    assert_memory_equal(fz->copy + 64 * KiB, model + 64 * KiB, 64 * KiB);
    assert_false(dirty_bitmap_get(fz->needed, 64 * KiB));
    /* Straddling chunks 1 (copied) and 2 (not): chunk 2 only. */
    assert_int_equal(disk_write(f->disk, 128 * KiB - 4 * KiB, sizeof(buf),
                                buf), 0);
    assert_int_equal(fz->sinks[1], 1);
    assert_int_equal(fz->sinks[2], 1);
    assert_memory_equal(fz->copy + 128 * KiB, model + 128 * KiB, 64 * KiB);
    /* A zero write and a discard copy first too. */
    assert_int_equal(disk_write_zeroes(f->disk, 5 * 64 * KiB, 64 * KiB, 0),
                     0);
    assert_int_equal(disk_write_zeroes(f->disk, 7 * 64 * KiB, 1,
                                       BLOCK_ZERO_UNMAP), 0);
    assert_int_equal(fz->sinks[5], 1);
    assert_int_equal(fz->sinks[7], 1);
    /* A hole is handed over as zeros. */
    assert_int_equal(disk_write(f->disk, SIZE - 1, 1, buf), 0);
    assert_int_equal(fz->sinks[SIZE / (64 * KiB) - 1], 1);

    copy_rest(fz);
    assert_each_chunk_once(fz);
    assert_memory_equal(fz->copy, model, SIZE);
    assert_int_equal(fz->errors, 0);
    frozen_free(f->disk, fz);
}

/* --- Concurrent writers and a copier against a model --------------------- */

#define WRITERS 3

struct writer {
    struct disk *disk;
    uint8_t *model;             /* blocks of this writer only */
    unsigned index;
    unsigned seed;
    int writes;
    int failures;
    const int *stop;
};

/* Writer i owns the 4K blocks with block % WRITERS == i: they interleave
 * within every chunk, so writers contend for the same chunks. */
static void *writer_thread(void *opaque)
{
    struct writer *w = opaque;
    uint8_t buf[BLOCK];

    while (!__atomic_load_n(w->stop, __ATOMIC_SEQ_CST) || w->writes < 200) {
        uint64_t block = g_random_int_range(0, SIZE / BLOCK / WRITERS) *
                         WRITERS + w->index;
        uint64_t offset = block * BLOCK;
        int ret;
        if (w->writes % 7 == 3) {
            ret = disk_write_zeroes(w->disk, offset, BLOCK, 0);
            memset(w->model + offset, 0, BLOCK);
        } else {
            fill_pattern(buf, offset, BLOCK, ++w->seed);
            ret = disk_write(w->disk, offset, BLOCK, buf);
            memcpy(w->model + offset, buf, BLOCK);
        }
        if (ret != 0) {
            w->failures++;
        }
        w->writes++;
        if (w->writes > 20000) {
            break;
        }
    }
    return NULL;
}

struct copier {
    struct frozen *fz;
    int result;
};

static void *copier_thread(void *opaque)
{
    struct copier *cp = opaque;
    uint64_t offset = 0, len;
    bool is_read;
    int ret;

    while ((ret = cbw_copy_next(cp->fz->consumer, &offset, SIZE, 64 * KiB,
                                &len, &is_read, NULL)) > 0) {
        offset += len;
        sched_yield();
    }
    cp->result = ret;
    return NULL;
}

static void run_concurrent(struct fixture *f, struct frozen **fzs,
                           unsigned n_consumers, const uint8_t *initial)
{
    pthread_t writers[WRITERS], copiers[4];
    struct writer w[WRITERS];
    struct copier cp[4];
    int stop = 0;
    g_autofree uint8_t *model = g_memdup2(initial, SIZE);

    for (unsigned i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){ f->disk, model, i, i * 1000, 0, 0, &stop };
        assert_int_equal(pthread_create(&writers[i], NULL, writer_thread,
                                        &w[i]), 0);
    }
    for (unsigned i = 0; i < n_consumers; i++) {
        cp[i] = (struct copier){ fzs[i], 1 };
        assert_int_equal(pthread_create(&copiers[i], NULL, copier_thread,
                                        &cp[i]), 0);
    }
    for (unsigned i = 0; i < n_consumers; i++) {
        pthread_join(copiers[i], NULL);
        assert_int_equal(cp[i].result, 0);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < WRITERS; i++) {
        pthread_join(writers[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    for (unsigned i = 0; i < n_consumers; i++) {
        assert_int_equal(dirty_bitmap_count(fzs[i]->needed), 0);
        assert_each_chunk_once(fzs[i]);
        assert_memory_equal(fzs[i]->copy, initial, SIZE);
        assert_int_equal(fzs[i]->errors, 0);
    }
    /* Every guest write landed. */
    g_autofree uint8_t *now = g_malloc(SIZE);
    assert_int_equal(disk_read(f->disk, 0, SIZE, now), 0);
    assert_memory_equal(now, model, SIZE);
}

static void test_concurrent_writers_and_copier(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *initial = write_initial(f->disk);
    struct frozen *fz = frozen_new(f->disk, 64 * KiB);

    run_concurrent(f, &fz, 1, initial);
    frozen_free(f->disk, fz);
}

static void test_several_consumers(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *initial = write_initial(f->disk);
    struct frozen *fzs[3] = {
        frozen_new(f->disk, 64 * KiB),
        frozen_new(f->disk, 4 * KiB),
        frozen_new(f->disk, 1 * MiB),
    };

    run_concurrent(f, fzs, 3, initial);
    for (unsigned i = 0; i < 3; i++) {
        frozen_free(f->disk, fzs[i]);
    }
}

/* --- Overlapping writes wait, others do not ------------------------------ */

struct one_write {
    struct disk *disk;
    uint64_t offset;
    int done;                   /* atomic */
};

static void *one_write_thread(void *opaque)
{
    struct one_write *ow = opaque;
    uint8_t buf[512];

    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(disk_write(ow->disk, ow->offset, sizeof(buf), buf), 0);
    __atomic_store_n(&ow->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static bool wait_done(struct one_write *ow, gint64 timeout_us)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    while (!__atomic_load_n(&ow->done, __ATOMIC_SEQ_CST)) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(1000);
    }
    return true;
}

static void test_overlapping_writes_wait(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = write_initial(f->disk);
    struct frozen *fz = frozen_new(f->disk, 64 * KiB);
    pthread_t a, b, c;
    struct one_write wa = { f->disk, 3 * 64 * KiB, 0 };
    struct one_write wb = { f->disk, 3 * 64 * KiB + 4096, 0 };
    struct one_write wc = { f->disk, 9 * 64 * KiB, 0 };

    fz->block_chunk = 3;
    assert_int_equal(pthread_create(&a, NULL, one_write_thread, &wa), 0);
    pthread_mutex_lock(&fz->lock);
    while (!fz->blocked) {
        pthread_cond_wait(&fz->cond, &fz->lock);
    }
    pthread_mutex_unlock(&fz->lock);
    /* A's copy of chunk 3 is in flight: B (same chunk) waits for it, C
     * (another chunk) does not. */
    assert_int_equal(pthread_create(&b, NULL, one_write_thread, &wb), 0);
    assert_int_equal(pthread_create(&c, NULL, one_write_thread, &wc), 0);
    assert_true(wait_done(&wc, 10 * G_USEC_PER_SEC));
    assert_false(wait_done(&wb, 100 * 1000));
    assert_false(__atomic_load_n(&wa.done, __ATOMIC_SEQ_CST));
    /* The copier skips the chunk in flight too. */
    uint64_t offset = 3 * 64 * KiB, len;
    bool is_read;
    assert_int_equal(cbw_copy_next(fz->consumer, &offset, 4 * 64 * KiB,
                                   64 * KiB, &len, &is_read, NULL), 0);

    pthread_mutex_lock(&fz->lock);
    fz->release = true;
    pthread_cond_broadcast(&fz->cond);
    pthread_mutex_unlock(&fz->lock);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    assert_int_equal(fz->sinks[3], 1);
    assert_memory_equal(fz->copy + 3 * 64 * KiB, model + 3 * 64 * KiB,
                        64 * KiB);
    copy_rest(fz);
    assert_each_chunk_once(fz);
    assert_memory_equal(fz->copy, model, SIZE);
    frozen_free(f->disk, fz);
}

/* --- Errors -------------------------------------------------------------- */

static void test_sink_error_does_not_fail_write(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = write_initial(f->disk);
    struct frozen *fz = frozen_new(f->disk, 64 * KiB);
    uint8_t buf[4096], back[4096];

    fz->fail_chunk = 2;
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 2 * 64 * KiB + 8192, sizeof(buf),
                                buf), 0);
    assert_int_equal(fz->errors, 1);
    assert_int_equal(fz->error_offset, 2 * 64 * KiB);
    assert_int_equal(disk_read(f->disk, 2 * 64 * KiB + 8192, sizeof(back),
                               back), 0);
    assert_memory_equal(back, buf, sizeof(buf));
    /* The chunk is given up: a second write does not try again. */
    assert_int_equal(disk_write(f->disk, 2 * 64 * KiB, 1, buf), 0);
    assert_int_equal(fz->errors, 1);

    /* The copier's error comes back to it, the chunk needed again. */
    fz->fail_chunk = 6;
    uint64_t offset = 5 * 64 * KiB, len;
    bool is_read = true;
    assert_int_equal(cbw_copy_next(fz->consumer, &offset, SIZE, 4 * 64 * KiB,
                                   &len, &is_read, NULL), -ENOSPC);
    assert_false(is_read);
    assert_int_equal(offset, 5 * 64 * KiB);
    assert_true(dirty_bitmap_get(fz->needed, 5 * 64 * KiB));
    assert_true(dirty_bitmap_get(fz->needed, 6 * 64 * KiB));
    fz->fail_chunk = -1;
    copy_rest(fz);
    assert_memory_equal(fz->copy + 5 * 64 * KiB, model + 5 * 64 * KiB,
                        SIZE - 5 * 64 * KiB);
    assert_int_equal(fz->errors, 1);
    frozen_free(f->disk, fz);
}

/* --- Registration under a drain while a writer runs ---------------------- */

struct busy_writer {
    struct disk *disk;
    const int *stop;
    unsigned counter;
};

static void *busy_writer_thread(void *opaque)
{
    struct busy_writer *bw = opaque;
    uint8_t buf[BLOCK];

    while (!__atomic_load_n(bw->stop, __ATOMIC_SEQ_CST)) {
        uint64_t offset = g_random_int_range(0, SIZE / BLOCK) * BLOCK;
        memset(buf, (int)(++bw->counter & 0xff), sizeof(buf));
        assert_int_equal(disk_write(bw->disk, offset, sizeof(buf), buf), 0);
    }
    return NULL;
}

static void test_register_while_drained(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = write_initial(f->disk);
    g_autofree uint8_t *instant = g_malloc(SIZE);
    struct frozen *fz = g_new0(struct frozen, 1);
    int stop = 0;
    pthread_t thread;
    struct busy_writer bw = { f->disk, &stop, 0 };

    (void)model;
    assert_int_equal(pthread_create(&thread, NULL, busy_writer_thread, &bw),
                     0);
    g_usleep(20 * 1000);
    fz->granularity = 64 * KiB;
    fz->needed = dirty_bitmap_new(SIZE, fz->granularity);
    dirty_bitmap_set_all(fz->needed);
    fz->copy = g_malloc0(SIZE);
    fz->sinks = g_new0(int, SIZE / fz->granularity);
    fz->fail_chunk = fz->block_chunk = -1;
    pthread_mutex_init(&fz->lock, NULL);
    pthread_cond_init(&fz->cond, NULL);
    struct cbw_consumer_ops ops = { frozen_sink, frozen_error, fz };
    /* The instant: what the disk holds while drained. */
    disk_drain_begin(f->disk);
    struct block_node *top = f->disk->top;
    assert_int_equal(top->driver->read(top, 0, SIZE, instant), 0);
    fz->consumer = cbw_add_consumer_drained(f->disk, fz->needed, &ops);
    disk_drain_end(f->disk);

    g_usleep(50 * 1000);
    copy_rest(fz);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(thread, NULL);
    assert_true(bw.counter > 0);
    assert_memory_equal(fz->copy, instant, SIZE);
    assert_each_chunk_once(fz);
    frozen_free(f->disk, fz);
}

/* --- Claims for views ---------------------------------------------------- */

static void test_view_claims(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = write_initial(f->disk);
    struct frozen *fz = frozen_new(f->disk, 64 * KiB);
    struct cbw_claim claim;
    uint8_t buf[1000];

    cbw_claim_begin(fz->consumer, 64 * KiB + 10, sizeof(buf), &claim);
    assert_int_equal(claim.offset, 64 * KiB);
    assert_int_equal(claim.len, 64 * KiB);
    assert_int_equal(cbw_read_claimed(fz->consumer, &claim, 64 * KiB + 10,
                                      sizeof(buf), buf), 0);
    assert_memory_equal(buf, model + 64 * KiB + 10, sizeof(buf));
    cbw_forget_claimed(fz->consumer, &claim, 64 * KiB, 64 * KiB);
    cbw_claim_end(fz->consumer, &claim);
    assert_false(dirty_bitmap_get(fz->needed, 64 * KiB));
    /* Forgotten: a write there copies nothing. */
    assert_int_equal(disk_write(f->disk, 64 * KiB, sizeof(buf), buf), 0);
    assert_int_equal(fz->sinks[1], 0);
    frozen_free(f->disk, fz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_copies_touched_chunks,
                                        setup_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_write_copies_touched_chunks,
                                        setup_raw, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_and_copier,
                                        setup_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_and_copier,
                                        setup_raw, teardown),
        cmocka_unit_test_setup_teardown(test_several_consumers, setup_qcow2,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_writes_wait,
                                        setup_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_sink_error_does_not_fail_write,
                                        setup_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_register_while_drained,
                                        setup_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_view_claims, setup_raw,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
