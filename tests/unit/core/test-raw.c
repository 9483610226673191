/* Unit tests for drivers/raw.c: I/O, zeroing, block status of sparse
 * files, create and grow, and block devices (via a loop device when
 * losetup works). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"
#include "test-util.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

extern const struct block_driver raw_driver;

struct fixture {
    char *dir;
    char *path;
};

static int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    f->dir = test_dir_new();
    f->path = g_build_filename(f->dir, "disk.raw", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    test_dir_remove(f->dir);
    g_free(f->path);
    g_free(f->dir);
    g_free(f);
    return 0;
}

static struct block_node *open_raw(const char *path, bool read_only)
{
    GError *err = NULL;
    struct block_node *node = block_node_open(path, "raw", read_only, &err);
    if (!node) {
        fail_msg("%s", err->message);
    }
    return node;
}

static void expect_status(struct block_node *node, uint64_t offset,
                          uint64_t len, int flags, uint64_t pnum)
{
    uint64_t n = 0;
    int ret = node->driver->block_status(node, offset, len, &n);
    if (ret != flags || n != pnum) {
        fail_msg("status at %" G_GUINT64_FORMAT ": flags %d pnum %"
                 G_GUINT64_FORMAT ", expected %d %" G_GUINT64_FORMAT,
                 offset, ret, n, flags, pnum);
    }
}

static void expect_bytes(struct block_node *node, uint64_t offset,
                         uint64_t len, uint8_t value)
{
    g_autofree uint8_t *buf = g_malloc(len);
    assert_int_equal(node->driver->read(node, offset, len, buf), 0);
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != value) {
            fail_msg("byte %" G_GUINT64_FORMAT " is 0x%02x, expected 0x%02x",
                     offset + i, buf[i], value);
        }
    }
}

static void write_pattern(struct block_node *node, uint64_t offset,
                          uint64_t len, uint8_t value)
{
    g_autofree uint8_t *buf = g_malloc(len);
    memset(buf, value, len);
    assert_int_equal(node->driver->write(node, offset, len, buf), 0);
}

static uint64_t allocated_bytes(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static void test_probe_and_open(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(raw_driver.probe((const uint8_t *)"QFI\xfb", 4), 1);
    assert_int_equal(raw_driver.probe(NULL, 0), 1);

    test_create_sparse(f->path, 3 * MiB + 7);
    struct block_node *node = open_raw(f->path, true);
    assert_ptr_equal(node->driver, &raw_driver);
    assert_int_equal(node->size, 3 * MiB + 7);
    assert_false(node->is_block_device);
    assert_null(node->backing_name);
    assert_int_equal(block_node_close(node), 0);

    /* An empty file probes as raw. */
    g_autofree char *empty = g_build_filename(f->dir, "empty", NULL);
    test_create_sparse(empty, 0);
    GError *err = NULL;
    node = block_node_open(empty, NULL, false, &err);
    assert_non_null(node);
    assert_string_equal(node->driver->format_name, "raw");
    assert_int_equal(node->size, 0);
    block_node_close(node);
}

static void test_io_and_status(void **state)
{
    struct fixture *f = *state;
    test_create_sparse(f->path, 4 * MiB);
    struct block_node *node = open_raw(f->path, false);
    const int hole = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO;
    const int data = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA;

    expect_status(node, 0, 4 * MiB, hole, 4 * MiB);
    expect_status(node, 100, 512 * KiB, hole, 512 * KiB);

    write_pattern(node, 1 * MiB, 64 * KiB, 0xab);
    assert_int_equal(node->driver->flush(node), 0);
    expect_bytes(node, 1 * MiB, 64 * KiB, 0xab);
    expect_bytes(node, 1 * MiB - 4 * KiB, 4 * KiB, 0);

    expect_status(node, 0, 4 * MiB, hole, 1 * MiB);
    expect_status(node, 1 * MiB, 4 * MiB - 1 * MiB, data, 64 * KiB);
    expect_status(node, 1 * MiB + 4 * KiB, 8 * KiB, data, 8 * KiB);
    expect_status(node, 1 * MiB + 64 * KiB, 3 * MiB - 64 * KiB, hole,
                  3 * MiB - 64 * KiB);

    /* Unaligned I/O. */
    write_pattern(node, 3 * MiB + 3, 5000, 0x11);
    expect_bytes(node, 3 * MiB + 3, 5000, 0x11);
    expect_bytes(node, 3 * MiB, 3, 0);
    assert_int_equal(block_node_close(node), 0);
}

static void test_write_zeroes(void **state)
{
    struct fixture *f = *state;
    test_create_sparse(f->path, 4 * MiB);
    struct block_node *node = open_raw(f->path, false);
    const int hole = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO;

    write_pattern(node, 0, 4 * MiB, 0x5a);
    assert_int_equal(node->driver->flush(node), 0);
    uint64_t before = allocated_bytes(f->path);
    assert_true(before >= 4 * MiB);

    /* Unmap: the space is released and reads return zeros. */
    assert_int_equal(node->driver->write_zeroes(node, 1 * MiB, 1 * MiB,
                                                BLOCK_ZERO_UNMAP), 0);
    expect_bytes(node, 1 * MiB, 1 * MiB, 0);
    expect_bytes(node, 1 * MiB - 1, 1, 0x5a);
    expect_bytes(node, 2 * MiB, 1, 0x5a);
    expect_status(node, 1 * MiB, 1 * MiB, hole, 1 * MiB);
    assert_true(allocated_bytes(f->path) <= before - 1 * MiB);

    /* Without unmap: zeros, data around untouched, even unaligned. */
    assert_int_equal(node->driver->write_zeroes(node, 3 * MiB + 100, 10000,
                                                0), 0);
    expect_bytes(node, 3 * MiB + 100, 10000, 0);
    expect_bytes(node, 3 * MiB + 99, 1, 0x5a);
    expect_bytes(node, 3 * MiB + 10100, 1, 0x5a);

    /* The size never changes. */
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 4 * MiB);
    assert_int_equal(block_node_close(node), 0);
}

/* Another process truncating the file under us: reads past its end return
 * zeros rather than failing. */
static void test_read_past_shrunk_file(void **state)
{
    struct fixture *f = *state;
    test_create_sparse(f->path, 1 * MiB);
    struct block_node *node = open_raw(f->path, false);
    write_pattern(node, 0, 1 * MiB, 0x77);
    assert_int_equal(truncate(f->path, 512 * KiB), 0);

    expect_bytes(node, 512 * KiB - 10, 10, 0x77);
    expect_bytes(node, 512 * KiB, 512 * KiB, 0);
    expect_status(node, 768 * KiB, 256 * KiB,
                  BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO, 256 * KiB);

    /* A map never promises bytes the file no longer has. */
    struct block_extent ext;
    assert_int_equal(block_node_map(node, 512 * KiB - 10, 1 * MiB, &ext), 0);
    assert_int_equal(ext.kind, BLOCK_EXTENT_HOST);
    assert_int_equal(ext.host_offset, 512 * KiB - 10);
    assert_int_equal(ext.len, 10);
    block_extent_release(&ext);
    assert_int_equal(block_node_map(node, 512 * KiB, 512 * KiB, &ext), 0);
    assert_int_equal(ext.kind, BLOCK_EXTENT_ZERO);
    assert_int_equal(ext.len, 512 * KiB);
    block_node_close(node);
}

static void test_create_and_grow(void **state)
{
    struct fixture *f = *state;
    const struct block_create_opts opts = { .size = 5 * MiB + 1 };
    GError *err = NULL;

    assert_true(raw_driver.create(f->path, &opts, &err));
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 5 * MiB + 1);
    assert_int_equal(st.st_blocks, 0);

    /* O_EXCL: an existing file is never overwritten. */
    assert_false(raw_driver.create(f->path, &opts, &err));
    assert_int_equal(err->code, EEXIST);
    assert_non_null(strstr(err->message, f->path));
    g_clear_error(&err);

    struct block_node *node = open_raw(f->path, false);
    assert_true(node->driver->grow(node, 8 * MiB, &err));
    assert_int_equal(node->size, 8 * MiB);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 8 * MiB);
    assert_false(node->driver->grow(node, 1 * MiB, &err));
    g_clear_error(&err);
    assert_null(node->driver->set_backing);
    block_node_close(node);
}

/* A loop device as a raw block device. */
/* Writeback hints come once per BLOCK_WRITEBACK_BYTES written, however
 * the writes are cut, and a hint on a real file does no harm. */
static void test_writeback_hints(void **state)
{
    struct fixture *f = *state;
    struct block_node *node;
    struct block_writeback wb = { 0 };
    uint8_t buf[4096];
    unsigned hints = 0;

    test_create_sparse(f->path, 64 * MiB);
    node = open_raw(f->path, false);
    memset(buf, 0xa5, sizeof(buf));
    for (uint64_t off = 0; off < 3 * BLOCK_WRITEBACK_BYTES;
         off += sizeof(buf)) {
        assert_int_equal(node->driver->write(node, off, sizeof(buf), buf), 0);
        hints += block_writeback_note(&wb, node, sizeof(buf));
    }
    assert_int_equal(hints, 3);
    /* One note bigger than the interval crosses it once. */
    assert_false(block_writeback_note(&wb, node, 1));
    assert_true(block_writeback_note(&wb, node, 2 * BLOCK_WRITEBACK_BYTES));
    assert_int_equal(block_node_close(node), 0);
}

static void test_block_device(void **state)
{
    struct fixture *f = *state;
    test_create_sparse(f->path, 8 * MiB);

    const char *argv[] = { "losetup", "-f", "--show", f->path, NULL };
    GError *err = NULL;
    g_autofree char *out = NULL;
    int status;
    if (!test_have_program("losetup") ||
        !g_spawn_sync(NULL, (char **)argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                      NULL, NULL, &out, NULL, &status, NULL) ||
        !g_spawn_check_wait_status(status, NULL)) {
        skip();
    }
    g_strstrip(out);

    struct block_node *node = block_node_open(out, NULL, false, &err);
    const char *detach[] = { "losetup", "-d", out, NULL };
    if (!node) {
        test_run(detach, NULL);
        fail_msg("%s", err->message);
    }
    assert_true(node->is_block_device);
    assert_string_equal(node->driver->format_name, "raw");
    assert_int_equal(node->size, 8 * MiB);

    write_pattern(node, 1 * MiB, 1 * MiB, 0x42);
    expect_bytes(node, 1 * MiB, 1 * MiB, 0x42);
    expect_status(node, 0, 8 * MiB,
                  BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA, 8 * MiB);
    assert_int_equal(node->driver->write_zeroes(node, 1 * MiB, 512 * KiB,
                                                BLOCK_ZERO_UNMAP), 0);
    assert_int_equal(node->driver->write_zeroes(node, 1536 * KiB, 512 * KiB,
                                                0), 0);
    expect_bytes(node, 1 * MiB, 1 * MiB, 0);
    assert_int_equal(node->driver->flush(node), 0);
    block_node_close(node);
    assert_true(test_run(detach, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_probe_and_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_past_shrunk_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_and_grow, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_writeback_hints, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_block_device, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
