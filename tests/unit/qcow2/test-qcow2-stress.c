/* chainfs qcow2: many threads writing, zeroing and reading one image,
 * checked against an in-memory model (fixed seeds). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

#define WRITERS 3
#define SUB 1024            /* sub-block: quarter t belongs to writer t */
#define OPS_PER_THREAD 400

static char *tmpdir;

struct shared {
    struct block_node *node;
    uint8_t *model;          /* expected content */
    const uint8_t *base;     /* backing content */
    uint64_t size;
    uint64_t chunk;          /* phase A: chunk i belongs to i % WRITERS */
    bool overlapping;        /* phase B: writers share clusters */
    gint writers_left;
    gint failures;
};

struct worker {
    struct shared *sh;
    unsigned id;
    GRand *rand;
    GRand *positions;   /* same seed in every writer: they collide */
};

static void record_failure(struct shared *sh, const char *what, int ret)
{
    g_printerr("%s: %s\n", what, g_strerror(-ret));
    g_atomic_int_inc(&sh->failures);
}

/* Phase A: a whole chunk of this writer, any op. */
static void disjoint_op(struct worker *w, uint8_t *buf)
{
    struct shared *sh = w->sh;
    uint64_t chunks = sh->size / sh->chunk;
    uint64_t c = g_rand_int_range(w->rand, 0, chunks / WRITERS) * WRITERS +
                 w->id;
    uint64_t start = c * sh->chunk;
    uint64_t off = start + g_rand_int_range(w->rand, 0, sh->chunk);
    uint64_t len = g_rand_int_range(w->rand, 1, start + sh->chunk - off + 1);
    int kind = g_rand_int_range(w->rand, 0, 10);
    int ret;

    if (kind < 5) {
        tu_fill(buf, len, g_rand_int(w->rand));
        ret = qcow2_driver.write(sh->node, off, len, buf);
        memcpy(sh->model + off, buf, len);
    } else if (kind < 7) {
        ret = qcow2_driver.write_zeroes(sh->node, off, len,
                                        kind == 5 ? BLOCK_ZERO_UNMAP : 0);
        memset(sh->model + off, 0, len);
    } else if (kind < 9) {
        ret = qcow2_driver.read(sh->node, off, len, buf);
        if (ret == 0 && memcmp(buf, sh->model + off, len) != 0) {
            record_failure(sh, "disjoint read mismatch", -EIO);
        }
    } else {
        ret = qcow2_driver.flush(sh->node);
    }
    if (ret < 0) {
        record_failure(sh, "disjoint op", ret);
    }
}

/* Phase B: this writer's quarter of a run of sub-blocks; all writers hit
 * the same clusters at once. */
static void overlapping_op(struct worker *w, uint8_t *buf)
{
    struct shared *sh = w->sh;
    uint64_t subs = sh->size / SUB;
    uint64_t first = g_rand_int_range(w->positions, 0, subs - 8);
    uint64_t count = g_rand_int_range(w->positions, 1, 8);
    bool zero = g_rand_int_range(w->rand, 0, 5) == 0;

    for (uint64_t s = first; s < first + count; s++) {
        uint64_t off = s * SUB + w->id * (SUB / 4);
        int ret;
        if (zero) {
            ret = qcow2_driver.write_zeroes(sh->node, off, SUB / 4, 0);
            memset(sh->model + off, 0, SUB / 4);
        } else {
            tu_fill(buf, SUB / 4, g_rand_int(w->rand));
            ret = qcow2_driver.write(sh->node, off, SUB / 4, buf);
            memcpy(sh->model + off, buf, SUB / 4);
        }
        if (ret < 0) {
            record_failure(sh, "overlapping write", ret);
        }
    }
}

static gpointer writer_thread(gpointer opaque)
{
    struct worker *w = opaque;
    uint8_t *buf = g_malloc(w->sh->chunk + SUB);
    for (int i = 0; i < OPS_PER_THREAD; i++) {
        if (w->sh->overlapping) {
            overlapping_op(w, buf);
        } else {
            disjoint_op(w, buf);
        }
    }
    g_free(buf);
    g_atomic_int_dec_and_test(&w->sh->writers_left);
    return NULL;
}

/* Reads the last quarter of sub-blocks, which no writer touches in phase
 * B: it must never change, even while its clusters are being allocated
 * and completed from the backing file. */
static gpointer reader_thread(gpointer opaque)
{
    struct worker *w = opaque;
    struct shared *sh = w->sh;
    uint8_t buf[SUB];
    /* Only phase B leaves bytes that no writer touches. */
    while (sh->overlapping && g_atomic_int_get(&sh->writers_left) > 0) {
        uint64_t s = g_rand_int_range(w->positions, 0, sh->size / SUB);
        uint64_t off = s * SUB + 3 * (SUB / 4);
        int ret = qcow2_driver.read(sh->node, off, SUB / 4, buf);
        if (ret < 0) {
            record_failure(sh, "reader", ret);
        } else if (memcmp(buf, sh->model + off, SUB / 4) != 0) {
            record_failure(sh, "reader saw garbage", -EIO);
        }
    }
    return NULL;
}

static void run_phase(struct shared *sh, bool overlapping, uint32_t seed)
{
    struct worker workers[WRITERS + 1];
    GThread *threads[WRITERS + 1];
    sh->overlapping = overlapping;
    sh->writers_left = WRITERS;
    for (unsigned i = 0; i <= WRITERS; i++) {
        workers[i] = (struct worker){ sh, i,
                                      g_rand_new_with_seed(seed + i),
                                      g_rand_new_with_seed(seed) };
        threads[i] = g_thread_new("qcow2-stress",
                                  i < WRITERS ? writer_thread : reader_thread,
                                  &workers[i]);
    }
    for (unsigned i = 0; i <= WRITERS; i++) {
        g_thread_join(threads[i]);
        g_rand_free(workers[i].rand);
        g_rand_free(workers[i].positions);
    }
}

static void verify_image(struct shared *sh)
{
    uint8_t *buf = g_malloc(sh->size);
    assert_int_equal(qcow2_driver.read(sh->node, 0, sh->size, buf), 0);
    for (uint64_t i = 0; i < sh->size; i++) {
        if (buf[i] != sh->model[i]) {
            g_free(buf);
            fail_msg("byte %" G_GUINT64_FORMAT " differs from the model", i);
        }
    }
    g_free(buf);
}

static void stress(uint32_t cluster_size, size_t cache_bytes, uint32_t seed)
{
    const uint64_t size = 8 << 20;
    g_autofree char *base = g_build_filename(tmpdir, "base.raw", NULL);
    g_autofree char *top = g_build_filename(tmpdir, "top.qcow2", NULL);
    uint8_t *base_data = g_malloc(size);
    tu_fill(base_data, size, seed);
    assert_true(g_file_set_contents(base, (char *)base_data, size, NULL));
    unlink(top);
    struct block_create_opts opts = {
        .size = size, .cluster_size = cluster_size,
        .backing_name = "base.raw", .backing_format = "raw",
    };
    GError *err = NULL;
    assert_true(qcow2_driver.create(top, &opts, &err));

    qcow2_l2_cache_bytes = cache_bytes;
    qcow2_refblock_cache_bytes = cache_bytes;
    struct block_node *raw = tu_open(base, &raw_driver, true, NULL, &err);
    assert_non_null(raw);
    struct shared sh = {
        .node = tu_open(top, &qcow2_driver, false, raw, &err),
        .model = g_memdup2(base_data, size),
        .base = base_data,
        .size = size,
        .chunk = MAX(cluster_size, 16384) * 2,
    };
    assert_non_null(sh.node);

    run_phase(&sh, false, seed);
    assert_int_equal(sh.failures, 0);
    verify_image(&sh);
    run_phase(&sh, true, seed + 100);
    assert_int_equal(sh.failures, 0);
    verify_image(&sh);
    assert_int_equal(tu_close(sh.node), 0);

    if (tu_have_qemu()) {
        g_autofree char *out = NULL;
        int ret = tu_check(top, &out);
        if (ret != 0) {
            fail_msg("qemu-img check: %d\n%s", ret, out);
        }
    }
    raw = tu_open(base, &raw_driver, true, NULL, &err);
    sh.node = tu_open(top, &qcow2_driver, true, raw, &err);
    assert_non_null(sh.node);
    verify_image(&sh);
    tu_close(sh.node);
    g_free(sh.model);
    g_free(base_data);
    qcow2_l2_cache_bytes = 4 << 20;
    qcow2_refblock_cache_bytes = 1 << 20;
}

static void test_stress_64k(void **state)
{
    (void)state;
    stress(65536, 4 << 20, 11);
}

static void test_stress_4k(void **state)
{
    (void)state;
    stress(4096, 4 << 20, 22);
}

static void test_stress_512_tiny_cache(void **state)
{
    (void)state;
    stress(512, 0, 33);
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_64k),
        cmocka_unit_test(test_stress_4k),
        cmocka_unit_test(test_stress_512_tiny_cache),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
