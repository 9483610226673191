/* Unit tests for core/dirty-bitmap.c: exact results against a plain bool
 * array model, level boundaries, huge sparse sizes, and set/take from many
 * threads at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <glib.h>

#include "core/dirty-bitmap.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

static void test_basic_unaligned_size(void **state)
{
    (void)state;
    const uint64_t size = 1 * MiB + 1000;
    struct dirty_bitmap *bitmap = dirty_bitmap_new(size, 4096);

    assert_int_equal(dirty_bitmap_size(bitmap), size);
    assert_int_equal(dirty_bitmap_granularity(bitmap), 4096);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size), -1);

    dirty_bitmap_set(bitmap, 5000, 1);
    assert_false(dirty_bitmap_get(bitmap, 4095));
    assert_true(dirty_bitmap_get(bitmap, 4096));
    assert_true(dirty_bitmap_get(bitmap, 8191));
    assert_false(dirty_bitmap_get(bitmap, 8192));
    assert_int_equal(dirty_bitmap_count(bitmap), 4096);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size), 4096);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 8192, size), -1);
    /* end is exclusive: a chunk starting at end is not "before end". */
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, 4096), -1);

    /* A range straddling two chunks marks both. */
    dirty_bitmap_set(bitmap, 3 * 4096 - 1, 2);
    assert_true(dirty_bitmap_get(bitmap, 2 * 4096));
    assert_true(dirty_bitmap_get(bitmap, 3 * 4096));
    assert_int_equal(dirty_bitmap_count(bitmap), 3 * 4096);

    /* The last chunk counts only up to the size. */
    dirty_bitmap_set(bitmap, size - 1, 1);
    assert_int_equal(dirty_bitmap_count(bitmap), 3 * 4096 + 1000);
    assert_true(dirty_bitmap_get(bitmap, size - 1));
    assert_false(dirty_bitmap_get(bitmap, size)); /* past the end */

    /* Ranges past the end are clipped, not overflowing. */
    dirty_bitmap_set(bitmap, size + 4096, UINT64_MAX - size - 4096);
    dirty_bitmap_set(bitmap, size - 10, UINT64_MAX - size);
    assert_int_equal(dirty_bitmap_count(bitmap), 3 * 4096 + 1000);

    dirty_bitmap_reset(bitmap, 4096, 1);
    assert_false(dirty_bitmap_get(bitmap, 4096));
    assert_int_equal(dirty_bitmap_count(bitmap), 2 * 4096 + 1000);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size), 2 * 4096);

    dirty_bitmap_set_all(bitmap);
    assert_int_equal(dirty_bitmap_count(bitmap), size);
    dirty_bitmap_reset_all(bitmap);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size), -1);
    dirty_bitmap_free(bitmap);
}

static void test_zero_size(void **state)
{
    (void)state;
    struct dirty_bitmap *bitmap = dirty_bitmap_new(0, 65536);
    uint64_t offset = 0, len;

    dirty_bitmap_set_all(bitmap);
    dirty_bitmap_set(bitmap, 0, 100);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, UINT64_MAX), -1);
    assert_false(dirty_bitmap_take_dirty_area(bitmap, &offset, UINT64_MAX,
                                              GiB, &len));
    dirty_bitmap_free(bitmap);
}

/* Chunks at the edges of level-0 words and level-1 words. */
static void test_level_boundaries(void **state)
{
    (void)state;
    const uint64_t gran = 512;
    const uint64_t nchunks = 64 * 64 * 3 + 17; /* three level-1 words+ */
    const uint64_t size = nchunks * gran;
    const uint64_t probes[] = { 0, 63, 64, 4095, 4096, 4097, 8191, 8192,
                                nchunks - 1 };
    struct dirty_bitmap *bitmap = dirty_bitmap_new(size, gran);

    for (size_t i = 0; i < G_N_ELEMENTS(probes); i++) {
        uint64_t chunk = probes[i];
        dirty_bitmap_set(bitmap, chunk * gran, 1);
        assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size),
                         chunk * gran);
        if (chunk > 0) {
            assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, chunk * gran),
                             -1);
        }
        assert_int_equal(dirty_bitmap_next_dirty(bitmap, chunk * gran + gran,
                                                 size), -1);
        assert_int_equal(dirty_bitmap_count(bitmap), gran);
        dirty_bitmap_reset(bitmap, chunk * gran, gran);
        assert_int_equal(dirty_bitmap_count(bitmap), 0);
        assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size), -1);
    }

    /* A run across a level-1 word boundary is found and taken whole. */
    dirty_bitmap_set(bitmap, 4090 * gran, 10 * gran);
    uint64_t offset = 0, len = 0;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, size, GiB,
                                             &len));
    assert_int_equal(offset, 4090 * gran);
    assert_int_equal(len, 10 * gran);
    offset = 0;
    assert_true(dirty_bitmap_take_dirty_area(bitmap, &offset, size, GiB,
                                             &len));
    assert_int_equal(offset, 4090 * gran);
    assert_int_equal(len, 10 * gran);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    offset = 0;
    assert_false(dirty_bitmap_next_dirty_area(bitmap, &offset, size, GiB,
                                              &len));

    /* Resetting part of a word keeps the rest findable: the parent bit
     * must survive. */
    dirty_bitmap_set(bitmap, 4096 * gran, 64 * gran);
    dirty_bitmap_reset(bitmap, 4096 * gran, 63 * gran);
    assert_int_equal(dirty_bitmap_next_dirty(bitmap, 0, size),
                     (4096 + 63) * gran);
    dirty_bitmap_free(bitmap);
}

static void test_dirty_area_limits(void **state)
{
    (void)state;
    const uint64_t gran = 4096;
    const uint64_t size = 100 * gran + 123;
    struct dirty_bitmap *bitmap = dirty_bitmap_new(size, gran);
    uint64_t offset, len;

    dirty_bitmap_set(bitmap, 10 * gran, 20 * gran);

    /* max_len rounds down to whole chunks... */
    offset = 0;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, size,
                                             5 * gran + 100, &len));
    assert_int_equal(offset, 10 * gran);
    assert_int_equal(len, 5 * gran);
    /* ...but is at least one chunk. */
    offset = 0;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, size, 1,
                                             &len));
    assert_int_equal(offset, 10 * gran);
    assert_int_equal(len, gran);
    /* end stops the run, and a dirty chunk starting at end is not found. */
    offset = 0;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, 12 * gran,
                                             GiB, &len));
    assert_int_equal(len, 2 * gran);
    offset = 0;
    assert_false(dirty_bitmap_next_dirty_area(bitmap, &offset, 10 * gran,
                                              GiB, &len));
    /* Starting inside the run. */
    offset = 25 * gran;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, size, GiB,
                                             &len));
    assert_int_equal(offset, 25 * gran);
    assert_int_equal(len, 5 * gran);
    /* The last chunk is clipped to the size. */
    dirty_bitmap_set(bitmap, size - 1, 1);
    offset = 31 * gran;
    assert_true(dirty_bitmap_next_dirty_area(bitmap, &offset, UINT64_MAX,
                                             GiB, &len));
    assert_int_equal(offset, 100 * gran);
    assert_int_equal(len, 123);
    /* Taking the clipped chunk clears it. */
    assert_true(dirty_bitmap_take_dirty_area(bitmap, &offset, UINT64_MAX,
                                             GiB, &len));
    assert_int_equal(len, 123);
    assert_false(dirty_bitmap_get(bitmap, size - 1));
    assert_int_equal(dirty_bitmap_count(bitmap), 20 * gran);

    /* Taking with a limit leaves the rest of the run dirty. */
    offset = 0;
    assert_true(dirty_bitmap_take_dirty_area(bitmap, &offset, size,
                                             8 * gran, &len));
    assert_int_equal(offset, 10 * gran);
    assert_int_equal(len, 8 * gran);
    assert_false(dirty_bitmap_get(bitmap, 17 * gran));
    assert_true(dirty_bitmap_get(bitmap, 18 * gran));
    assert_int_equal(dirty_bitmap_count(bitmap), 12 * gran);
    dirty_bitmap_free(bitmap);
}

/* Random operations checked against a bool per chunk. */
static void test_against_model(void **state)
{
    (void)state;
    const uint64_t gran = 512;
    const uint64_t nchunks = 64 * 64 * 2 + 37;
    const uint64_t size = nchunks * gran - 100;
    struct dirty_bitmap *bitmap = dirty_bitmap_new(size, gran);
    bool *model = g_new0(bool, nchunks);
    GRand *rand = g_rand_new_with_seed(42);

    for (int round = 0; round < 3000; round++) {
        uint64_t offset = g_rand_int_range(rand, 0, size);
        uint64_t len = g_rand_boolean(rand)
                       ? (uint64_t)g_rand_int_range(rand, 1, 3 * gran)
                       : (uint64_t)g_rand_int_range(rand, 1, size / 8);
        bool set = g_rand_int_range(rand, 0, 3) != 0;
        uint64_t first = offset / gran;
        uint64_t last = MIN(offset + len, size) - 1;

        if (set) {
            dirty_bitmap_set(bitmap, offset, len);
        } else {
            dirty_bitmap_reset(bitmap, offset, len);
        }
        for (uint64_t c = first; c <= last / gran; c++) {
            model[c] = set;
        }

        uint64_t expected_count = 0;
        for (uint64_t c = 0; c < nchunks; c++) {
            if (model[c]) {
                expected_count += MIN(gran, size - c * gran);
            }
        }
        assert_int_equal(dirty_bitmap_count(bitmap), expected_count);

        uint64_t probe = g_rand_int_range(rand, 0, size);
        assert_int_equal(dirty_bitmap_get(bitmap, probe), model[probe / gran]);

        int64_t expected_next = -1;
        for (uint64_t c = probe / gran; c < nchunks; c++) {
            if (model[c]) {
                expected_next = c * gran;
                break;
            }
        }
        assert_int_equal(dirty_bitmap_next_dirty(bitmap, probe, size),
                         expected_next);

        uint64_t area = probe, area_len;
        uint64_t max_len = g_rand_int_range(rand, 1, 200) * gran;
        bool found = dirty_bitmap_next_dirty_area(bitmap, &area, size,
                                                  max_len, &area_len);
        assert_int_equal(found, expected_next >= 0);
        if (found) {
            uint64_t c = expected_next / gran;
            uint64_t run = 0;
            while (c + run < nchunks && model[c + run] &&
                   run < max_len / gran) {
                run++;
            }
            assert_int_equal(area, expected_next);
            assert_int_equal(area_len, MIN(run * gran, size - area));
        }
    }
    g_rand_free(rand);
    g_free(model);
    dirty_bitmap_free(bitmap);
}

static void test_one_tebibyte(void **state)
{
    (void)state;
    const uint64_t size = TiB;
    const uint64_t gran = 64 * KiB;
    struct dirty_bitmap *bitmap = dirty_bitmap_new(size, gran);
    const uint64_t marks[] = { 0, 7 * GiB + 3, 500 * GiB, TiB - 1 };

    for (size_t i = 0; i < G_N_ELEMENTS(marks); i++) {
        dirty_bitmap_set(bitmap, marks[i], 1);
    }
    assert_int_equal(dirty_bitmap_count(bitmap), 4 * gran);

    /* Iterating visits exactly the marked chunks (fast: the clean terabyte
     * is skipped a word of words at a time). */
    uint64_t offset = 0, len;
    size_t found = 0;
    while (dirty_bitmap_next_dirty_area(bitmap, &offset, size, GiB, &len)) {
        assert_true(found < G_N_ELEMENTS(marks));
        assert_int_equal(offset, marks[found] / gran * gran);
        assert_int_equal(len, gran);
        offset += len;
        found++;
    }
    assert_int_equal(found, G_N_ELEMENTS(marks));

    dirty_bitmap_set_all(bitmap);
    assert_int_equal(dirty_bitmap_count(bitmap), size);
    uint64_t taken = 0;
    offset = 0;
    while (dirty_bitmap_take_dirty_area(bitmap, &offset, size, 16 * GiB,
                                        &len)) {
        assert_int_equal(offset, taken);
        assert_int_equal(len, 16 * GiB);
        taken += len;
        offset += len;
    }
    assert_int_equal(taken, size);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    dirty_bitmap_free(bitmap);
}

/* Writers each set a disjoint set of chunks exactly once while a taker
 * takes concurrently: in the end every chunk was taken exactly once or is
 * still dirty, never both, never lost.  Plain pthreads and malloc: glib's
 * slice allocator and GThread internals confuse ThreadSanitizer. */
#define THREAD_CHUNKS (64 * 64 * 4)
#define WRITERS 3

struct thread_test {
    struct dirty_bitmap *bitmap;
    uint32_t gran;
    int writers_done;
    uint8_t taken[THREAD_CHUNKS];
};

struct writer_arg {
    struct thread_test *test;
    unsigned index;
};

static void *writer_thread(void *opaque)
{
    struct writer_arg *arg = opaque;
    struct thread_test *test = arg->test;
    /* This writer owns every chunk c with c % WRITERS == index; it marks
     * them in a shuffled order. */
    uint32_t chunks[THREAD_CHUNKS / WRITERS + 1];
    unsigned n = 0;
    unsigned seed = arg->index + 1;

    for (uint32_t c = arg->index; c < THREAD_CHUNKS; c += WRITERS) {
        chunks[n++] = c;
    }
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = rand_r(&seed) % (i + 1);
        uint32_t tmp = chunks[i];
        chunks[i] = chunks[j];
        chunks[j] = tmp;
    }
    for (unsigned i = 0; i < n; i++) {
        dirty_bitmap_set(test->bitmap, (uint64_t)chunks[i] * test->gran,
                         test->gran);
    }
    __atomic_add_fetch(&test->writers_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *taker_thread(void *opaque)
{
    struct thread_test *test = opaque;
    const uint64_t size = (uint64_t)THREAD_CHUNKS * test->gran;
    uint64_t offset = 0;

    for (;;) {
        bool writers_done = __atomic_load_n(&test->writers_done,
                                            __ATOMIC_SEQ_CST) == WRITERS;
        uint64_t len;
        if (dirty_bitmap_take_dirty_area(test->bitmap, &offset, size,
                                         7 * test->gran, &len)) {
            for (uint64_t c = offset / test->gran;
                 c < (offset + len) / test->gran; c++) {
                test->taken[c]++;
            }
            offset += len;
            continue;
        }
        if (offset == 0 && writers_done) {
            break; /* a full pass found nothing after the writers ended */
        }
        offset = 0;
    }
    return NULL;
}

static void test_threads_set_and_take(void **state)
{
    (void)state;
    struct thread_test *test = calloc(1, sizeof(*test));
    assert_non_null(test);
    struct writer_arg args[WRITERS];
    pthread_t writers[WRITERS], taker;

    test->gran = 512;
    test->bitmap = dirty_bitmap_new((uint64_t)THREAD_CHUNKS * test->gran,
                                    test->gran);
    assert_int_equal(pthread_create(&taker, NULL, taker_thread, test), 0);
    for (unsigned i = 0; i < WRITERS; i++) {
        args[i] = (struct writer_arg){ test, i };
        assert_int_equal(pthread_create(&writers[i], NULL, writer_thread,
                                        &args[i]), 0);
    }
    for (unsigned i = 0; i < WRITERS; i++) {
        pthread_join(writers[i], NULL);
    }
    pthread_join(taker, NULL);

    for (uint64_t c = 0; c < THREAD_CHUNKS; c++) {
        if (test->taken[c] != 1) {
            fail_msg("chunk %" PRIu64 " taken %u times", c, test->taken[c]);
        }
    }
    assert_int_equal(dirty_bitmap_count(test->bitmap), 0);
    dirty_bitmap_free(test->bitmap);
    free(test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_unaligned_size),
        cmocka_unit_test(test_zero_size),
        cmocka_unit_test(test_level_boundaries),
        cmocka_unit_test(test_dirty_area_limits),
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_one_tebibyte),
        cmocka_unit_test(test_threads_set_and_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
