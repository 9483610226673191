/* Unit tests for core/fleece-view.c: reads return the content frozen at
 * the instant (a model) while writers hammer the disk with writes, zero
 * writes and discards, including writes straddling copied and uncopied
 * chunks; discard ("already read") semantics: whole chunks only, zeros and
 * holes afterwards, nothing copied for them any more, store space given
 * back; status and st_blocks as at the instant; a failing store breaks
 * the view (EIO) without failing a guest write; a closed view fails. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "core/chain.h"
#include "core/disk.h"
#include "core/fleece-view.h"
#include "test-util.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define SIZE (4 * MiB)
#define CHUNK (64 * KiB)
#define BLOCK (4 * KiB)

struct fixture {
    char *dir;
    char *store_path;
    struct disk *disk;
    uint8_t *instant;           /* the disk's content when frozen */
    struct fleece_view *view;
};

static void fill_pattern(uint8_t *buf, uint64_t offset, uint64_t len,
                         unsigned seed)
{
    for (uint64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((offset + i) / 512 * 31 + seed * 7 + 1);
    }
}

/* A qcow2 disk: data in the first half except chunk 3 (zeros written as
 * data) and chunk 5 (a hole); holes in the second half.  The store is a
 * new qcow2 of CHUNK clusters. */
static struct block_node *open_store(struct fixture *f, bool read_only)
{
    GError *err = NULL;
    struct block_create_opts opts = { .size = SIZE, .cluster_size = CHUNK };

    f->store_path = g_build_filename(f->dir, "store.qcow2", NULL);
    assert_true(block_driver_by_name("qcow2")->create(f->store_path, &opts,
                                                      &err));
    struct block_node *store = block_node_open(f->store_path, "qcow2",
                                               read_only, &err);
    assert_non_null(store);
    return store;
}

static int setup_common(void **state, bool store_read_only)
{
    struct fixture *f = g_new0(struct fixture, 1);
    g_autofree char *path = NULL;
    GError *err = NULL;

    f->dir = test_dir_new();
    path = g_build_filename(f->dir, "disk.qcow2", NULL);
    struct block_create_opts opts = { .size = SIZE, .cluster_size = CHUNK };
    assert_true(block_driver_by_name("qcow2")->create(path, &opts, &err));
    struct block_node *top = chain_open(path, "qcow2", false, &err);
    assert_non_null(top);
    f->disk = disk_new("vm", top, false);
    f->instant = g_malloc0(SIZE);
    fill_pattern(f->instant, 0, SIZE / 2, 0);
    memset(f->instant + 3 * CHUNK, 0, CHUNK);
    memset(f->instant + 5 * CHUNK, 0, CHUNK);
    assert_int_equal(disk_write(f->disk, 0, 5 * CHUNK, f->instant), 0);
    assert_int_equal(disk_write(f->disk, 6 * CHUNK, SIZE / 2 - 6 * CHUNK,
                                f->instant + 6 * CHUNK), 0);

    f->view = fleece_view_new(f->disk, open_store(f, store_read_only), CHUNK);
    disk_drain_begin(f->disk);
    fleece_view_freeze_drained(f->view);
    disk_drain_end(f->disk);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, false);
}

static int setup_failing_store(void **state)
{
    return setup_common(state, true);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    fleece_view_close(f->view);
    fleece_view_unref(f->view);
    assert_int_equal(disk_close(f->disk), 0);
    test_dir_remove(f->dir);
    g_free(f->dir);
    g_free(f->store_path);
    g_free(f->instant);
    g_free(f);
    return 0;
}

static void assert_view_is(struct fleece_view *view, const uint8_t *model,
                           uint64_t offset, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);

    assert_int_equal(fleece_view_read(view, offset, len, buf), 0);
    assert_memory_equal(buf, model + offset, len);
}

/* --- Single-threaded semantics -------------------------------------------- */

static void test_frozen_after_writes(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[3 * CHUNK];

    assert_view_is(f->view, f->instant, 0, SIZE);
    assert_int_equal(fleece_view_store_bytes(f->view), 0);
    memset(buf, 0xee, sizeof(buf));
    /* One byte in chunk 1, then a write straddling chunks 1 (copied), 2
     * and the first bytes of 4 (not copied). */
    assert_int_equal(disk_write(f->disk, CHUNK + 100, 1, buf), 0);
    assert_int_equal(fleece_view_store_bytes(f->view), CHUNK);
    assert_int_equal(disk_write(f->disk, CHUNK + 200, 3 * CHUNK, buf), 0);
    /* Chunk 3 was all zeros: copied, but not stored as data. */
    assert_int_equal(fleece_view_store_bytes(f->view), 3 * CHUNK);
    /* Zero writes and discards copy first too; holes are not stored. */
    assert_int_equal(disk_write_zeroes(f->disk, 6 * CHUNK, CHUNK, 0), 0);
    assert_int_equal(disk_write_zeroes(f->disk, 7 * CHUNK + 5, 10,
                                       BLOCK_ZERO_UNMAP), 0);
    assert_int_equal(disk_write(f->disk, SIZE - 10, 10, buf), 0);
    assert_int_equal(fleece_view_store_bytes(f->view), 5 * CHUNK);
    assert_view_is(f->view, f->instant, 0, SIZE);
    /* Unaligned reads across places (stored, zero, needed). */
    assert_view_is(f->view, f->instant, CHUNK - 7, 5 * CHUNK + 13);
    assert_view_is(f->view, f->instant, SIZE - 3, 3);
    assert_int_equal(fleece_view_error(f->view), 0);
}

/* The data runs of the view as status reports them, starting at 0. */
static uint64_t data_bytes_by_status(struct fleece_view *view, bool *data_at,
                                     uint64_t stride)
{
    uint64_t total = 0;

    for (uint64_t pos = 0; pos < SIZE;) {
        uint64_t n;
        int ret = fleece_view_status(view, pos, SIZE - pos, &n);
        assert_true(ret == 0 || ret == 1);
        assert_true(n > 0 && n <= SIZE - pos);
        for (uint64_t p = pos; p < pos + n; p += stride) {
            data_at[p / stride] = ret == 1;
        }
        total += ret == 1 ? n : 0;
        pos += n;
    }
    return total;
}

static void test_status(void **state)
{
    struct fixture *f = *state;
    bool data_at[SIZE / CHUNK];
    uint8_t buf[CHUNK];
    uint64_t bytes;

    /* As the disk: the first half but chunk 5 (chunk 3 holds written
     * zeros, which qcow2 keeps as data). */
    assert_int_equal(data_bytes_by_status(f->view, data_at, CHUNK),
                     SIZE / 2 - CHUNK);
    assert_false(data_at[5]);
    assert_true(data_at[3]);
    assert_false(data_at[SIZE / CHUNK / 2]);
    /* Guest writes change nothing: copied data is stored data, copied
     * holes stay holes. */
    memset(buf, 0x42, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 0, CHUNK, buf), 0);
    assert_int_equal(disk_write(f->disk, 5 * CHUNK, CHUNK, buf), 0);
    assert_int_equal(disk_write(f->disk, SIZE - CHUNK, CHUNK, buf), 0);
    assert_int_equal(data_bytes_by_status(f->view, data_at, CHUNK),
                     SIZE / 2 - CHUNK);
    assert_true(data_at[0]);
    assert_false(data_at[5]);
    assert_false(data_at[SIZE / CHUNK - 1]);
    assert_int_equal(fleece_view_allocated_bytes(f->view, &bytes), 0);
    assert_int_equal(bytes, SIZE / 2 - CHUNK);
    /* Bad arguments. */
    uint64_t n;
    assert_int_equal(fleece_view_status(f->view, SIZE, 1, &n), -EINVAL);
}

static uint64_t host_blocks(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_blocks;
}

static void test_discard(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_memdup2(f->instant, SIZE);
    uint8_t buf[3 * CHUNK];
    bool data_at[SIZE / CHUNK];

    /* Copy chunks 0..7 into the store. */
    memset(buf, 0x99, sizeof(buf));
    for (int c = 0; c < 8; c++) {
        assert_int_equal(disk_write(f->disk, c * CHUNK, CHUNK, buf), 0);
    }
    assert_int_equal(fleece_view_store_bytes(f->view), 6 * CHUNK);
    uint64_t blocks_before = host_blocks(f->store_path);

    /* [CHUNK + 1, 4 * CHUNK + 1): whole chunks 2 and 3 only (stored), and
     * [9 * CHUNK - 3, 12 * CHUNK): chunks 9..11 (still needed). */
    assert_int_equal(fleece_view_discard(f->view, CHUNK + 1, 3 * CHUNK), 0);
    assert_int_equal(fleece_view_discard(f->view, 9 * CHUNK - 3,
                                         3 * CHUNK + 3), 0);
    memset(model + 2 * CHUNK, 0, 2 * CHUNK);
    memset(model + 9 * CHUNK, 0, 3 * CHUNK);
    assert_view_is(f->view, model, 0, SIZE);
    assert_int_equal(fleece_view_store_bytes(f->view), 5 * CHUNK);
    /* The store's host file gave the space back (chunk 2; chunk 3 held
     * no data). */
    assert_true(host_blocks(f->store_path) + CHUNK / 512 <= blocks_before);
    /* Released chunks are holes. */
    data_bytes_by_status(f->view, data_at, CHUNK);
    assert_true(data_at[1]);
    assert_false(data_at[2]);
    assert_false(data_at[9]);
    assert_false(data_at[11]);
    assert_true(data_at[12]);
    /* Later guest writes there copy nothing. */
    assert_int_equal(disk_write(f->disk, 9 * CHUNK, 3 * CHUNK - 1, buf), 0);
    assert_int_equal(fleece_view_store_bytes(f->view), 5 * CHUNK);
    assert_view_is(f->view, model, 0, SIZE);
    /* Smaller than a chunk: nothing released; the end of the disk counts
     * as a chunk boundary. */
    assert_int_equal(fleece_view_discard(f->view, 20 * CHUNK + 1,
                                         CHUNK - 2), 0);
    assert_int_equal(fleece_view_discard(f->view, SIZE - CHUNK, CHUNK), 0);
    memset(model + SIZE - CHUNK, 0, CHUNK);
    assert_view_is(f->view, model, 0, SIZE);
    /* Everything: the store is empty. */
    assert_int_equal(fleece_view_discard(f->view, 0, SIZE), 0);
    assert_int_equal(fleece_view_store_bytes(f->view), 0);
    memset(model, 0, SIZE);
    assert_view_is(f->view, model, 0, SIZE);
}

static void test_failing_store(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[CHUNK];

    assert_view_is(f->view, f->instant, 0, SIZE);
    memset(buf, 0x77, sizeof(buf));
    /* The store was opened read-only: the copy fails, the write lands. */
    assert_int_equal(disk_write(f->disk, 0, CHUNK, buf), 0);
    assert_int_equal(fleece_view_error(f->view), -EROFS);
    g_autofree uint8_t *out = g_malloc(SIZE);
    assert_int_equal(fleece_view_read(f->view, 2 * CHUNK, CHUNK, out), -EIO);
    assert_int_equal(disk_read(f->disk, 0, CHUNK, out), 0);
    assert_memory_equal(out, buf, CHUNK);
    /* Later writes go on landing. */
    assert_int_equal(disk_write(f->disk, 2 * CHUNK, CHUNK, buf), 0);
}

static void test_closed(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[CHUNK];
    uint64_t n;

    fleece_view_close(f->view);
    assert_int_equal(fleece_view_read(f->view, 0, CHUNK, buf), -EIO);
    assert_int_equal(fleece_view_discard(f->view, 0, CHUNK), -EIO);
    assert_int_equal(fleece_view_status(f->view, 0, CHUNK, &n), -EIO);
    /* The disk no longer copies anything. */
    memset(buf, 0x55, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 0, CHUNK, buf), 0);
    assert_int_equal(fleece_view_store_bytes(f->view), 0);
}

/* --- Concurrent writers and readers against the model --------------------- */

#define WRITERS 3
#define READERS 2
#define DISCARD_START (SIZE - 8 * CHUNK)   /* the discarder's range */

struct shared {
    struct fixture *f;
    int stop;                   /* atomic */
    int write_failures;         /* atomic */
    int read_mismatches;        /* atomic */
    int read_failures;          /* atomic */
    int reads;                  /* atomic */
};

struct writer {
    struct shared *s;
    unsigned index;
    GRand *rand;
};

/* Writes of 1 byte to 3 chunks at random offsets, so they straddle copied
 * and uncopied chunks; every 5th a zero write, every 7th a discard. */
static void *writer_thread(void *opaque)
{
    struct writer *w = opaque;
    struct shared *s = w->s;
    g_autofree uint8_t *buf = g_malloc(3 * CHUNK);
    int writes = 0;

    while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST) && writes < 5000) {
        uint64_t len = g_rand_int_range(w->rand, 1, 3 * CHUNK);
        uint64_t offset = g_rand_int_range(w->rand, 0, SIZE - len);
        int ret;

        if (writes % 5 == 4) {
            ret = disk_write_zeroes(s->f->disk, offset, len, 0);
        } else if (writes % 7 == 6) {
            ret = disk_write_zeroes(s->f->disk, offset, len,
                                    BLOCK_ZERO_UNMAP);
        } else {
            fill_pattern(buf, offset, len, w->index * 1000 + writes);
            ret = disk_write(s->f->disk, offset, len, buf);
        }
        if (ret != 0) {
            __atomic_add_fetch(&s->write_failures, 1, __ATOMIC_SEQ_CST);
        }
        writes++;
    }
    return NULL;
}

struct reader {
    struct shared *s;
    GRand *rand;
};

/* Random reads outside the discarder's range, checked against the
 * instant. */
static void *reader_thread(void *opaque)
{
    struct reader *r = opaque;
    struct shared *s = r->s;
    g_autofree uint8_t *buf = g_malloc(256 * KiB);

    while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
        uint64_t len = g_rand_int_range(r->rand, 1, 256 * KiB);
        uint64_t offset = g_rand_int_range(r->rand, 0, DISCARD_START - len);

        if (fleece_view_read(s->f->view, offset, len, buf) != 0) {
            __atomic_add_fetch(&s->read_failures, 1, __ATOMIC_SEQ_CST);
        } else if (memcmp(buf, s->f->instant + offset, len) != 0) {
            __atomic_add_fetch(&s->read_mismatches, 1, __ATOMIC_SEQ_CST);
        }
        __atomic_add_fetch(&s->reads, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* Reads, then releases, the chunks of its range one by one, as a backup
 * tool that says "already read". */
static void *discarder_thread(void *opaque)
{
    struct shared *s = opaque;
    g_autofree uint8_t *buf = g_malloc(CHUNK);

    for (uint64_t offset = DISCARD_START; offset < SIZE; offset += CHUNK) {
        if (fleece_view_read(s->f->view, offset, CHUNK, buf) != 0) {
            __atomic_add_fetch(&s->read_failures, 1, __ATOMIC_SEQ_CST);
        } else if (memcmp(buf, s->f->instant + offset, CHUNK) != 0) {
            __atomic_add_fetch(&s->read_mismatches, 1, __ATOMIC_SEQ_CST);
        }
        if (fleece_view_discard(s->f->view, offset, CHUNK) != 0) {
            __atomic_add_fetch(&s->read_failures, 1, __ATOMIC_SEQ_CST);
        }
        sched_yield();
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    struct fixture *f = *state;
    struct shared s = { .f = f };
    struct writer writers[WRITERS];
    struct reader readers[READERS];
    pthread_t wt[WRITERS], rt[READERS], dt;

    for (unsigned i = 0; i < READERS; i++) {
        readers[i] = (struct reader){ &s, g_rand_new_with_seed(100 + i) };
        pthread_create(&rt[i], NULL, reader_thread, &readers[i]);
    }
    pthread_create(&dt, NULL, discarder_thread, &s);
    for (unsigned i = 0; i < WRITERS; i++) {
        writers[i] = (struct writer){ &s, i, g_rand_new_with_seed(i + 1) };
        pthread_create(&wt[i], NULL, writer_thread, &writers[i]);
    }
    /* Until the writers are done, with enough reads interleaved. */
    for (unsigned i = 0; i < WRITERS; i++) {
        pthread_join(wt[i], NULL);
        g_rand_free(writers[i].rand);
    }
    pthread_join(dt, NULL);
    while (__atomic_load_n(&s.reads, __ATOMIC_SEQ_CST) < 200) {
        sched_yield();
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < READERS; i++) {
        pthread_join(rt[i], NULL);
        g_rand_free(readers[i].rand);
    }
    assert_int_equal(s.write_failures, 0);
    assert_int_equal(s.read_failures, 0);
    assert_int_equal(s.read_mismatches, 0);
    assert_int_equal(fleece_view_error(f->view), 0);
    /* The whole view, once more: the instant, zeros where released. */
    g_autofree uint8_t *model = g_memdup2(f->instant, SIZE);
    memset(model + DISCARD_START, 0, SIZE - DISCARD_START);
    assert_view_is(f->view, model, 0, SIZE);
}

/* Two views frozen at different instants on one disk. */
static void test_two_views(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *second = g_memdup2(f->instant, SIZE);
    g_autofree char *store2 = g_build_filename(f->dir, "store2.qcow2", NULL);
    struct block_create_opts opts = { .size = SIZE, .cluster_size = 4 * KiB };
    uint8_t buf[CHUNK];
    GError *err = NULL;

    memset(buf, 0x31, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 10, CHUNK, buf), 0);
    memcpy(second + 10, buf, CHUNK);
    assert_true(block_driver_by_name("qcow2")->create(store2, &opts, &err));
    struct block_node *node = block_node_open(store2, "qcow2", false, &err);
    assert_non_null(node);
    struct fleece_view *view2 = fleece_view_new(f->disk, node, 4 * KiB);
    disk_drain_begin(f->disk);
    fleece_view_freeze_drained(view2);
    disk_drain_end(f->disk);

    memset(buf, 0x32, sizeof(buf));
    assert_int_equal(disk_write(f->disk, 5, CHUNK, buf), 0);
    assert_view_is(f->view, f->instant, 0, SIZE);
    assert_view_is(view2, second, 0, SIZE);
    fleece_view_close(view2);
    fleece_view_unref(view2);
    assert_view_is(f->view, f->instant, 0, SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_frozen_after_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_store,
                                        setup_failing_store, teardown),
        cmocka_unit_test_setup_teardown(test_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_views, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
