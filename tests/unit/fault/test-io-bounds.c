/* Requests at the limits of the I/O path, driver level: requests of tens
 * of MiB that cross many L2 tables and the 4 GiB mark (jobs may use a
 * buf-size up to 1G), a zeroing of a whole large disk, and opening and
 * closing the same chain many times without leaking a descriptor or a
 * lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"
#include "drivers/qcow2/qcow2.h"

#define MiB (1024ULL * 1024)
#define GiB (1024 * MiB)
#define BIG (40 * MiB)

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = g_dir_make_tmp("chainfs-bounds-XXXXXX", NULL);
    assert_non_null(dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    g_free(dir);
    return 0;
}

static char *create(const char *name, const char *format, uint64_t size,
                    uint32_t cluster_size)
{
    char *path = g_build_filename(dir, name, NULL);
    struct block_create_opts opts = { .size = size,
                                      .cluster_size = cluster_size };
    GError *err = NULL;
    assert_true(block_driver_by_name(format)->create(path, &opts, &err));
    assert_null(err);
    return path;
}

static unsigned open_fd_count(void)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d)) {
        n++;
    }
    closedir(d);
    return n;
}

/* Fill with a pattern that differs in every 8 bytes and every run. */
static void fill(uint8_t *buf, uint64_t len, uint64_t salt)
{
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t v = (i + salt) * 0x9e3779b97f4a7c15ull;
        memcpy(buf + i, &v, 8);
    }
}

/* One big write, read back whole and in pieces, then zeroed. */
static void big_requests(struct block_node *node, uint64_t offset)
{
    g_autofree uint8_t *data = g_malloc(BIG);
    g_autofree uint8_t *back = g_malloc(BIG);
    fill(data, BIG, offset);
    assert_int_equal(node->driver->write(node, offset, BIG, data), 0);
    assert_int_equal(node->driver->read(node, offset, BIG, back), 0);
    assert_memory_equal(data, back, BIG);
    assert_int_equal(node->driver->flush(node), 0);

    /* Zero the whole disk in one request, then check the range. */
    assert_int_equal(block_node_write_zeroes(node, 0, node->size,
                                             BLOCK_ZERO_UNMAP), 0);
    assert_int_equal(node->driver->read(node, offset - 4096, BIG, back), 0);
    for (uint64_t i = 0; i < BIG; i++) {
        if (back[i]) {
            fail_msg("byte %llu not zero", (unsigned long long)i);
        }
    }
    /* Status runs may be capped per call; every one must say zero. */
    for (uint64_t pos = 0, pnum; pos < node->size; pos += pnum) {
        int flags = block_chain_status(node, pos, node->size - pos, &pnum);
        assert_true(flags >= 0 && (flags & BLOCK_STATUS_ZERO));
        assert_true(pnum > 0 && pnum <= node->size - pos);
    }
}

static void test_qcow2_big(void **state)
{
    (void)state;
    /* Tiny caches: a 40 MiB request walks 20 L2 tables through eviction. */
    size_t l2 = qcow2_l2_cache_bytes, rb = qcow2_refblock_cache_bytes;
    qcow2_l2_cache_bytes = 0;
    qcow2_refblock_cache_bytes = 0;
    g_autofree char *path = create("big.qcow2", "qcow2", 6 * GiB, 4096);
    GError *err = NULL;
    struct block_node *node = chain_open(path, "qcow2", false, &err);
    assert_null(err);
    big_requests(node, 4 * GiB - BIG / 2 + 512);
    assert_int_equal(chain_close(node), 0);
    qcow2_l2_cache_bytes = l2;
    qcow2_refblock_cache_bytes = rb;
}

static void test_raw_big(void **state)
{
    (void)state;
    g_autofree char *path = create("big.raw", "raw", 6 * GiB, 0);
    GError *err = NULL;
    struct block_node *node = chain_open(path, "raw", false, &err);
    assert_null(err);
    big_requests(node, 4 * GiB - BIG / 2 + 1);
    assert_int_equal(chain_close(node), 0);
}

static void test_fault_big(void **state)
{
    (void)state;
    g_autofree char *img = create("wrapped.qcow2", "qcow2", 5 * GiB, 65536);
    g_autofree char *conf = g_build_filename(dir, "f.conf", NULL);
    assert_true(g_file_set_contents(conf, "[image]\nfile=wrapped.qcow2\n"
                                    "[rule never]\nop=any\noffset=5G\n",
                                    -1, NULL));
    GError *err = NULL;
    struct block_node *node = chain_open(conf, "fault", false, &err);
    assert_null(err);
    big_requests(node, 4 * GiB - 7);
    assert_int_equal(chain_close(node), 0);
}

static void test_many_opens(void **state)
{
    (void)state;
    g_autofree char *base = create("base.qcow2", "qcow2", 64 * MiB, 65536);
    g_autofree char *top = g_build_filename(dir, "top.qcow2", NULL);
    struct block_create_opts opts = { .size = 64 * MiB,
                                      .backing_name = "base.qcow2",
                                      .backing_format = "qcow2" };
    GError *err = NULL;
    assert_true(block_driver_by_name("qcow2")->create(top, &opts, &err));

    unsigned fds = open_fd_count();
    uint8_t byte = 0;
    for (unsigned i = 0; i < 500; i++) {
        struct block_node *node = chain_open(top, NULL, i % 2, &err);
        assert_null(err);
        assert_non_null(node->backing);
        if (!node->read_only) {
            byte = i;
            assert_int_equal(node->driver->write(node, i * 4096, 1, &byte),
                             0);
        }
        assert_int_equal(chain_close(node), 0);
    }
    assert_int_equal(open_fd_count(), fds);

    /* 64 chains open at once share nothing that runs out. */
    struct block_node *nodes[64];
    for (unsigned i = 0; i < 64; i++) {
        nodes[i] = chain_open(top, NULL, true, &err);
        assert_null(err);
    }
    for (unsigned i = 0; i < 64; i++) {
        assert_int_equal(nodes[i]->driver->read(nodes[i], 498 * 4096, 1,
                                                &byte), 0);
        assert_int_equal(byte, 498 % 256);
        assert_int_equal(chain_close(nodes[i]), 0);
    }
    assert_int_equal(open_fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qcow2_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_opens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
