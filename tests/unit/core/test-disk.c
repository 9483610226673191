/* Unit tests for core/disk.c: bounds, read-only disks, bitmap marking,
 * chain-wide status and allocation, the chain description, maps for
 * spliced reads, and swapping the chain under a drain while I/O runs. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"
#include "core/disk.h"
#include "test-util.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

struct fixture {
    char *dir;
};

static int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    f->dir = test_dir_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    test_dir_remove(f->dir);
    g_free(f->dir);
    g_free(f);
    return 0;
}

static char *path_in(struct fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

static struct disk *open_disk(const char *path, const char *format,
                              bool read_only)
{
    GError *err = NULL;
    struct block_node *top = chain_open(path, format, read_only, &err);
    if (!top) {
        fail_msg("%s", err->message);
    }
    return disk_new("vm", top, read_only);
}

static void test_bounds(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "disk.raw");
    test_create_sparse(path, 1 * MiB);
    struct disk *disk = open_disk(path, "raw", false);
    uint8_t buf[4096] = { 1 };

    assert_int_equal(disk_size(disk), 1 * MiB);
    assert_int_equal(disk_write(disk, 1 * MiB - 4096, 4096, buf), 0);
    assert_int_equal(disk_write(disk, 1 * MiB - 4095, 4096, buf), -ENOSPC);
    assert_int_equal(disk_write(disk, 1 * MiB, 1, buf), -ENOSPC);
    assert_int_equal(disk_write(disk, 1 * MiB, 0, buf), 0);
    assert_int_equal(disk_write(disk, 2 * MiB, 1, buf), -ENOSPC);
    assert_int_equal(disk_write(disk, 512, UINT64_MAX - 100, buf), -ENOSPC);
    assert_int_equal(disk_write_zeroes(disk, 1 * MiB - 1, 2, 0), -ENOSPC);
    assert_int_equal(disk_write_zeroes(disk, 0, 1 * MiB, 0), 0);

    assert_int_equal(disk_read(disk, 0, 0, buf), 0);
    assert_int_equal(disk_read(disk, 1 * MiB - 4096, 4096, buf), 0);
    assert_int_equal(disk_read(disk, 1 * MiB - 4095, 4096, buf), -EINVAL);
    assert_int_equal(disk_read(disk, UINT64_MAX - 1, 4096, buf), -EINVAL);

    uint64_t pnum;
    assert_int_equal(disk_block_status(disk, 1 * MiB, 512, &pnum), -ENXIO);
    /* The size never changed. */
    assert_int_equal(disk_size(disk), 1 * MiB);
    assert_int_equal(disk_flush(disk), 0);
    assert_int_equal(disk_close(disk), 0);
}

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "disk.raw");
    test_create_sparse(path, 1 * MiB);
    test_write_file(path, "data", 4, 0);
    struct disk *disk = open_disk(path, "raw", true);
    struct dirty_bitmap *bitmap = dirty_bitmap_new(1 * MiB, 65536);
    disk_attach_bitmap(disk, bitmap);
    char buf[4] = "xxxx";

    assert_int_equal(disk_write(disk, 0, 4, buf), -EROFS);
    assert_int_equal(disk_write_zeroes(disk, 0, 4, BLOCK_ZERO_UNMAP),
                     -EROFS);
    assert_int_equal(disk_read(disk, 0, 4, buf), 0);
    assert_memory_equal(buf, "data", 4);
    assert_int_equal(dirty_bitmap_count(bitmap), 0);
    assert_int_equal(disk_flush(disk), 0);
    disk_detach_bitmap(disk, bitmap);
    assert_int_equal(disk_close(disk), 0);
    dirty_bitmap_free(bitmap);
}

static void test_bitmap_marking(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "disk.raw");
    test_create_sparse(path, 4 * MiB);
    struct disk *disk = open_disk(path, "raw", false);
    struct dirty_bitmap *a = dirty_bitmap_new(4 * MiB, 65536);
    struct dirty_bitmap *b = dirty_bitmap_new(4 * MiB, 4096);
    uint8_t buf[100] = { 0 };

    /* Not attached yet: not marked. */
    assert_int_equal(disk_write(disk, 0, 100, buf), 0);
    disk_attach_bitmap(disk, a);
    disk_attach_bitmap(disk, b);

    assert_int_equal(disk_write(disk, 70000, 100, buf), 0);
    assert_true(dirty_bitmap_get(a, 65536));
    assert_true(dirty_bitmap_get(b, 69632));
    assert_int_equal(dirty_bitmap_count(a), 65536);
    assert_int_equal(dirty_bitmap_count(b), 4096);

    /* Zero writes mark too; refused writes do not. */
    assert_int_equal(disk_write_zeroes(disk, 1 * MiB, 8192,
                                       BLOCK_ZERO_UNMAP), 0);
    assert_int_equal(dirty_bitmap_count(b), 3 * 4096);
    assert_int_equal(disk_write(disk, 4 * MiB - 10, 100, buf), -ENOSPC);
    assert_int_equal(dirty_bitmap_count(b), 3 * 4096);
    assert_int_equal(dirty_bitmap_next_dirty(a, 0, 4 * MiB), 65536);

    disk_detach_bitmap(disk, a);
    assert_int_equal(disk_write(disk, 3 * MiB, 1, buf), 0);
    assert_false(dirty_bitmap_get(a, 3 * MiB));
    assert_true(dirty_bitmap_get(b, 3 * MiB));
    disk_detach_bitmap(disk, b);
    assert_int_equal(disk_close(disk), 0);
    dirty_bitmap_free(a);
    dirty_bitmap_free(b);
}

/* A terabyte of sparse raw file with one extent of data. */
static void test_allocated_bytes_sparse_raw(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "big.raw");
    test_create_sparse(path, 1 * TiB);
    uint8_t buf[64 * KiB];
    memset(buf, 0xcc, sizeof(buf));
    test_write_file(path, buf, sizeof(buf), 512 * GiB);

    struct disk *disk = open_disk(path, "raw", true);
    uint64_t bytes = 0;
    assert_int_equal(disk_allocated_bytes(disk, &bytes), 0);
    assert_int_equal(bytes, 64 * KiB);

    uint64_t pnum;
    assert_int_equal(disk_block_status(disk, 0, 1 * TiB, &pnum),
                     BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED);
    assert_int_equal(pnum, 512 * GiB);
    assert_int_equal(disk_block_status(disk, 512 * GiB, 1 * TiB, &pnum),
                     BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED);
    assert_int_equal(pnum, 64 * KiB);
    assert_int_equal(disk_close(disk), 0);
}

static void qemu_io_write(const char *path, const char *format,
                          const char *command)
{
    const char *argv[] = { "qemu-io", "-f", format, "-c", command, path,
                           NULL };
    g_autofree char *err = NULL;
    if (!test_run(argv, &err)) {
        fail_msg("qemu-io %s: %s", command, err);
    }
}

/* A 1 TiB qcow2 chain over a raw base: the walk must follow allocation,
 * and the description lists every layer. */
static void test_qcow2_chain(void **state)
{
    struct fixture *f = *state;
    if (!test_have_program("qemu-img") || !test_have_program("qemu-io")) {
        skip();
    }
    g_autofree char *base = path_in(f, "base.raw");
    g_autofree char *mid = path_in(f, "mid.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");

    test_create_sparse(base, 2 * GiB);
    uint8_t buf[128 * KiB];
    memset(buf, 0xba, sizeof(buf));
    test_write_file(base, buf, sizeof(buf), 1 * GiB);
    test_qcow2_create(mid, 1 * TiB, "base.raw", "raw");
    test_qcow2_create(top, 1 * TiB, "mid.qcow2", "qcow2");
    qemu_io_write(mid, "qcow2", "write -P 0x11 100G 128k");
    qemu_io_write(top, "qcow2", "write -P 0x22 900G 64k");
    /* Hides the first half of the base's data. */
    qemu_io_write(top, "qcow2", "write -z 1G 64k");

    struct disk *disk = open_disk(top, NULL, false);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n2 raw %llu %s\n",
        TiB, top, TiB, mid, 2 * GiB, base);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_string_equal(chain, expected);

    gint64 start = g_get_monotonic_time();
    uint64_t bytes = 0;
    assert_int_equal(disk_allocated_bytes(disk, &bytes), 0);
    gint64 elapsed = g_get_monotonic_time() - start;
    /* mid's 128k, top's 64k and the base's visible 64k. */
    assert_int_equal(bytes, 128 * KiB + 64 * KiB + 64 * KiB);
    /* A per-cluster walk of 1 TiB takes minutes; a per-run walk, ms. */
    if (elapsed > 5 * G_USEC_PER_SEC) {
        fail_msg("allocation walk of a sparse 1 TiB chain took %" G_GINT64_FORMAT
                 " us", elapsed);
    }

    uint8_t check[4];
    assert_int_equal(disk_read(disk, 100 * GiB, 4, check), 0);
    assert_int_equal(check[0], 0x11);
    assert_int_equal(disk_read(disk, 1 * GiB, 4, check), 0);
    assert_int_equal(check[0], 0);
    assert_int_equal(disk_read(disk, 1 * GiB + 64 * KiB, 4, check), 0);
    assert_int_equal(check[0], 0xba);
    assert_int_equal(disk_close(disk), 0);

    const char *argv[] = { "qemu-img", "check", "-q", top, NULL };
    assert_true(test_run(argv, NULL));
}

static void noop_read_hook(void *opaque, uint64_t offset, uint64_t len,
                           const void *buf)
{
    (void)opaque, (void)offset, (void)len, (void)buf;
}

/* disk_map_read: extents for a spliced read, or ENOTSUP when the read must
 * copy; the disk is held until the release and never after a failure. */
static void test_map_read(void **state)
{
    struct fixture *f = *state;
    if (!test_have_program("qemu-img") || !test_have_program("qemu-io")) {
        skip();
    }
    g_autofree char *path = path_in(f, "striped.qcow2");
    test_qcow2_create(path, 16 * MiB, NULL, NULL);
    /* Data in every other 64 KiB cluster of the first 10 MiB: 160
     * extents, more than one map holds. */
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("qemu-io"));
    for (uint64_t off = 0; off < 10 * MiB; off += 128 * KiB) {
        g_ptr_array_add(argv, g_strdup("-c"));
        g_ptr_array_add(argv, g_strdup_printf("write -P 0x5a %" PRIu64
                                              " 64k", off));
    }
    g_ptr_array_add(argv, g_strdup(path));
    g_ptr_array_add(argv, NULL);
    g_autofree char *err = NULL;
    if (!test_run((const char **)argv->pdata, &err)) {
        fail_msg("qemu-io: %s", err);
    }
    g_ptr_array_unref(argv);

    struct disk *disk = open_disk(path, "qcow2", false);
    struct disk_map map;
    assert_int_equal(disk_map_read(disk, 0, 256 * KiB, &map), 0);
    assert_int_equal(map.count, 4);
    assert_int_equal(map.extents[0].kind, BLOCK_EXTENT_HOST);
    assert_int_equal(map.extents[0].len, 64 * KiB);
    assert_int_equal(map.extents[1].kind, BLOCK_EXTENT_ZERO);
    uint8_t byte = 0;
    assert_int_equal(pread(map.extents[2].fd, &byte, 1,
                           map.extents[2].host_offset), 1);
    assert_int_equal(byte, 0x5a);
    disk_map_release(disk, &map);

    assert_int_equal(disk_map_read(disk, 0, 10 * MiB, &map), -ENOTSUP);
    assert_int_equal(disk_map_read(disk, 16 * MiB - 1, 2, &map), -EINVAL);
    assert_int_equal(disk_map_read(disk, 12 * MiB, 4 * MiB, &map), 0);
    assert_int_equal(map.count, 1);
    assert_int_equal(map.extents[0].kind, BLOCK_EXTENT_ZERO);
    disk_map_release(disk, &map);

    /* Copy-on-read needs the data in a buffer. */
    struct disk_read_hook hook = { noop_read_hook, NULL };
    disk_drain_begin(disk);
    disk_add_read_hook_drained(disk, &hook);
    disk_drain_end(disk);
    assert_int_equal(disk_map_read(disk, 0, 64 * KiB, &map), -ENOTSUP);
    /* Failed maps hold nothing: a drain still goes through. */
    disk_drain_begin(disk);
    disk_remove_read_hook_drained(disk, &hook);
    disk_drain_end(disk);
    assert_int_equal(disk_close(disk), 0);
}

/* Swap the chain under a drain while other threads read and write, and
 * attach and detach a bitmap meanwhile: every read sees one chain or the
 * other, whole, and a bitmap attached is marked by the writes after it.
 * Plain pthreads: GThread internals confuse ThreadSanitizer. */
struct swap_test {
    struct disk *disk;
    int stop;
    int requests;
    int failures; /* cmocka cannot fail from another thread */
};

static void *io_thread(void *opaque)
{
    struct swap_test *test = opaque;
    uint8_t buf[8 * KiB];

    while (!__atomic_load_n(&test->stop, __ATOMIC_SEQ_CST)) {
        bool ok = disk_read(test->disk, 0, sizeof(buf), buf) == 0 &&
                  (buf[0] == 0xaa || buf[0] == 0xbb);
        for (size_t i = 1; ok && i < sizeof(buf); i++) {
            ok = buf[i] == buf[0];
        }
        /* Writes go past the range the reads check: the chain may have
         * changed since the read. */
        ok = ok && disk_write(test->disk, 8 * KiB, 1, buf) == 0;
        if (!ok) {
            __atomic_add_fetch(&test->failures, 1, __ATOMIC_SEQ_CST);
            break;
        }
        __atomic_add_fetch(&test->requests, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* Wait (up to 10 s) until the I/O threads completed n more requests. */
static void wait_for_requests(struct swap_test *test, int n)
{
    int target = __atomic_load_n(&test->requests, __ATOMIC_SEQ_CST) + n;
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (__atomic_load_n(&test->requests, __ATOMIC_SEQ_CST) < target) {
        if (__atomic_load_n(&test->failures, __ATOMIC_SEQ_CST) ||
            g_get_monotonic_time() > deadline) {
            fail_msg("I/O threads stopped making progress");
        }
        sched_yield();
    }
}

static void test_drain_and_swap(void **state)
{
    struct fixture *f = *state;
    g_autofree char *a = path_in(f, "a.raw");
    g_autofree char *b = path_in(f, "b.raw");
    uint8_t buf[16 * KiB];
    memset(buf, 0xaa, sizeof(buf));
    test_write_file(a, buf, sizeof(buf), 0);
    memset(buf, 0xbb, sizeof(buf));
    test_write_file(b, buf, sizeof(buf), 0);

    GError *err = NULL;
    struct block_node *other = chain_open(b, "raw", false, &err);
    assert_non_null(other);
    struct swap_test test = { .disk = open_disk(a, "raw", false) };
    struct dirty_bitmap *bitmap = dirty_bitmap_new(16 * KiB, 4096);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, io_thread, &test),
                         0);
    }

    for (int round = 0; round < 200; round++) {
        disk_drain_begin(test.disk);
        struct block_node *old = test.disk->top;
        test.disk->top = other;
        other = old;
        disk_drain_end(test.disk);
        if (round % 2) {
            disk_attach_bitmap(test.disk, bitmap);
        } else {
            disk_detach_bitmap(test.disk, bitmap);
        }
    }
    /* The bitmap is attached now: writes from here on mark it. */
    dirty_bitmap_reset_all(bitmap);
    wait_for_requests(&test, 10);
    assert_true(dirty_bitmap_get(bitmap, 8 * KiB));
    assert_int_equal(dirty_bitmap_count(bitmap), 4096);

    __atomic_store_n(&test.stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(test.failures, 0);
    disk_detach_bitmap(test.disk, bitmap);
    assert_int_equal(disk_close(test.disk), 0);
    assert_int_equal(chain_close(other), 0);
    dirty_bitmap_free(bitmap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bitmap_marking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_allocated_bytes_sparse_raw,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_and_swap, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
