/* Unit tests for the mirror job: sync modes, target modes, ready and
 * complete, cancel before and after ready, option errors, zero-length
 * disks, sparse targets, and the resulting chains. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"
#include "jobs/mirror.h"

#include "mirror-test-util.h"

#define SIZE (4 * MiB)

/* A qcow2 disk with data in a few places (and a zeroed range). */
static struct disk *scattered_disk(struct fixture *f, uint8_t *model)
{
    g_autofree char *src = path_in(f, "src.qcow2");

    create_image(src, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    memset(model, 0, SIZE);
    write_pattern(disk, model, 0, 4096, 1);
    write_pattern(disk, model, 100000, 70000, 2);
    write_pattern(disk, model, 2 * MiB, 512 * KiB, 3);
    write_pattern(disk, model, SIZE - 1000, 1000, 4);
    return disk;
}

static void complete_and_wait(struct job *job)
{
    GError *error = NULL;

    assert_true(job_complete(job, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
}

static void test_full_complete(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *copy = path_in(f, "copy.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    g_autofree char *mode = status_value(job, "copy-mode");
    assert_string_equal(mode, "background");
    g_autofree char *dirty = status_value(job, "dirty");
    assert_string_equal(dirty, "0");
    /* Writes while ready reach the target too. */
    write_pattern(disk, model, 3 * MiB, 8192, 5);
    complete_and_wait(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf("0 qcow2 %llu %s\n",
                                                (unsigned long long)SIZE,
                                                target);
    assert_string_equal(chain, expected);
    assert_disk_equals(disk, model, SIZE);
    g_autofree char *events = events_text(f);
    /* The READY offset is whatever was copied by then: check the shape. */
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=ready\n"
                                   "JOB_READY id=m1 offset="));
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=waiting\n"
                                   "JOB_STATE id=m1 state=pending\n"
                                   "JOB_STATE id=m1 state=concluded\n"
                                   "JOB_COMPLETED id=m1 offset="));
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=created\n"
                                   "JOB_STATE id=m1 state=running\n"
                                   "JOB_STATE id=m1 state=ready\n"));
    job_unref(job);

    /* The new top takes writes; then everything closes clean. */
    write_pattern(disk, model, 1 * MiB, 4096, 6);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_check(target);
    }
}

/* sync=full flattens a chain; the old layers are closed (their locks
 * gone: they can be opened for writing again). */
static void test_full_flattens_chain(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.raw");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(base, "raw", SIZE, 0, NULL, NULL);
    struct disk *base_disk = open_disk(base);
    write_pattern(base_disk, model, 0, MiB, 7);
    assert_int_equal(disk_close(base_disk), 0);
    create_image(top, "qcow2", SIZE, 0, base, "raw");
    struct disk *disk = open_disk(top);
    write_pattern(disk, model, 512 * KiB, MiB, 8);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s sync=full granularity=4K", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_int_equal(strchr(chain, '\n')[1], '\0');     /* one layer */
    assert_disk_equals(disk, model, SIZE);

    GError *error = NULL;
    struct block_node *reopened = block_node_open(top, NULL, false, &error);
    assert_non_null(reopened);
    block_node_close(reopened);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_compare(top, target);
        assert_qemu_img_check(target);
    }
}

/* sync=top: only the top's data; the target backs onto the top's backing
 * node, the very one of the source chain. */
static void test_top_complete(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(base, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *base_disk = open_disk(base);
    write_pattern(base_disk, model, 0, 2 * MiB, 9);
    assert_int_equal(disk_close(base_disk), 0);
    create_image(top, "qcow2", SIZE, 0, base, "qcow2");
    struct disk *disk = open_disk(top);
    write_pattern(disk, model, MiB, 128 * KiB, 10);
    assert_int_equal(disk_write_zeroes(disk, 0, 64 * KiB, 0), 0);
    memset(model, 0, 64 * KiB);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s sync=top", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    /* Only the top's allocation was copied: 128K data + 64K zeros. */
    g_autofree char *len = status_value(job, "len");
    assert_string_equal(len, "196608");
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "131072");
    complete_and_wait(job);
    job_unref(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n", (unsigned long long)SIZE,
        target, (unsigned long long)SIZE, base);
    assert_string_equal(chain, expected);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_compare(top, target);
        assert_qemu_img_check(target);
        assert_qemu_img_check(top);
    }
}

/* sync=none: nothing to copy, ready at once; new writes are mirrored; the
 * old top stays as the target's backing layer, read-only. */
static void test_none_complete(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s sync=none", target);

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    g_autofree char *len = status_value(job, "len");
    assert_string_equal(len, "0");
    write_pattern(disk, model, 100 * KiB, 64 * KiB, 11);
    complete_and_wait(job);
    job_unref(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n", (unsigned long long)SIZE,
        target, (unsigned long long)SIZE, src);
    assert_string_equal(chain, expected);
    assert_true(disk->top->backing->read_only);
    write_pattern(disk, model, 200 * KiB, 4 * KiB, 12);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_check(target);
        assert_qemu_img_check(src);
    }
}

/* mode=existing, sync=full: what the source has as zeros is zeroed in the
 * target, which held other data. */
static void test_existing_full(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree uint8_t *junk = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");

    create_image(target, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *target_disk = open_disk(target);
    write_pattern(target_disk, junk, 0, SIZE, 13);
    assert_int_equal(disk_close(target_disk), 0);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s mode=existing", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_compare(src, target);
        assert_qemu_img_check(target);
    }
}

/* mode=existing, sync=top, the target naming the source's backing file
 * (as a different spelling): that node is shared, not opened twice. */
static void test_existing_top_shares_backing(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(base, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *base_disk = open_disk(base);
    write_pattern(base_disk, model, 0, MiB, 14);
    assert_int_equal(disk_close(base_disk), 0);
    create_image(top, "qcow2", SIZE, 0, base, "qcow2");
    create_image(target, "qcow2", SIZE, 0, "./base.qcow2", "qcow2");
    struct disk *disk = open_disk(top);
    write_pattern(disk, model, 3 * MiB, 64 * KiB, 15);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s mode=existing sync=top", target);
    struct block_node *base_node = disk->top->backing;
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    assert_ptr_equal(disk->top->backing, base_node);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
}

/* A raw target, created. */
static void test_raw_target(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *target = path_in(f, "t.raw");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s format=raw", target);

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
}

/* Cancel before ready stops at once: cancelled, the disk unchanged. */
static void test_cancel_before_ready(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *before = disk_describe_chain(disk);
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s speed=4K buf-size=64K", target);
    GError *error = NULL;

    struct job *job = start_mirror(f, disk, cmd);
    /* Not ready: complete is refused, naming the state. */
    assert_false(job_complete(job, &error));
    assert_int_equal(error->code, EINVAL);
    assert_string_equal(error->message,
                        "job 'm1' is in state 'running': cannot complete");
    g_clear_error(&error);
    assert_true(job_cancel(job, false, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_CANCELLED);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=aborting\n"
                                   "JOB_STATE id=m1 state=concluded\n"
                                   "JOB_CANCELLED id=m1 "));
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(after, before);
    /* The target is closed (its lock gone) and the disk works. */
    struct block_node *node = block_node_open(target, NULL, false, &error);
    assert_non_null(node);
    block_node_close(node);
    write_pattern(disk, model, 0, 4096, 16);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

/* Cancel when ready: completed, no switch, the target a consistent copy. */
static void test_cancel_after_ready(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *before = disk_describe_chain(disk);
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s granularity=16K", target);
    GError *error = NULL;

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    write_pattern(disk, model, 5000, 3000, 17);
    assert_true(job_cancel(job, false, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_COMPLETED id=m1 "));
    assert_null(strstr(events, "JOB_CANCELLED"));
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(after, before);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_compare(src, target);
        assert_qemu_img_check(target);
    }
}

/* cancel force when ready: cancelled. */
static void test_cancel_force_when_ready(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);
    GError *error = NULL;

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    assert_true(job_cancel(job, true, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_CANCELLED);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    if (have_qemu_img()) {
        assert_qemu_img_check(target);
    }
}

static void test_zero_length(void **state)
{
    struct fixture *f = *state;
    g_autofree char *src = path_in(f, "empty.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);

    create_image(src, "qcow2", 0, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf("0 qcow2 0 %s\n", target);
    assert_string_equal(chain, expected);
    assert_int_equal(disk_close(disk), 0);
}

/* Bad options change nothing (no target file is left behind). */
static void test_option_errors(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *exists = path_in(f, "exists.raw");
    g_autofree char *missing = path_in(f, "missing.qcow2");
    g_autofree char *cmd = NULL;
    g_autofree char *message = NULL;
    struct stat st;

#define EXPECT(code, fmt, ...) do { \
        g_free(cmd); g_free(message); \
        cmd = g_strdup_printf(fmt, __VA_ARGS__); \
        message = start_mirror_error(f, disk, cmd, code); \
    } while (0)

    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s granularity=1000",
           target);
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s granularity=256",
           target);
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s granularity=128M",
           target);
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s granularity=64K "
           "buf-size=4K", target);
    /* Default granularity (64K, the target's cluster) above buf-size. */
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s buf-size=4K", target);
    assert_string_equal(message, "mirror: buf-size: 4096 is smaller than "
                                 "the granularity (65536)");
    assert_int_equal(stat(target, &st), -1);
    EXPECT(ENOTSUP, "mirror id=m1 disk=vm1 target=%s format=vmdk", target);
    EXPECT(ENOTSUP, "mirror id=m1 disk=vm1 target=%s format=raw sync=none",
           target);
    assert_int_equal(stat(target, &st), -1);

    create_image(exists, "raw", SIZE, 0, NULL, NULL);
    EXPECT(EEXIST, "mirror id=m1 disk=vm1 target=%s", exists);
    g_autofree char *want = g_strdup_printf("mirror: target %s exists",
                                            exists);
    assert_string_equal(message, want);
    EXPECT(ENOENT, "mirror id=m1 disk=vm1 target=%s mode=existing", missing);
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s mode=existing", src);
    g_autofree char *small = path_in(f, "small.raw");
    create_image(small, "raw", SIZE / 2, 0, NULL, NULL);
    EXPECT(EINVAL, "mirror id=m1 disk=vm1 target=%s mode=existing", small);

    /* The id is in use: nothing is created either. */
    g_autofree char *t2 = path_in(f, "t2.qcow2");
    g_autofree char *first = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s sync=none", t2);
    struct job *job = start_mirror(f, disk, first);
    EXPECT(EEXIST, "mirror id=m1 disk=vm1 target=%s", target);
    assert_string_equal(message, "job id 'm1' is in use");
    assert_int_equal(stat(target, &st), -1);
    assert_true(job_cancel(job, true, NULL));
    wait_state(job, JOB_STATE_CONCLUDED);
    job_unref(job);
#undef EXPECT
    assert_int_equal(disk_close(disk), 0);
}

/* What the source does not have, the target does not have either. */
static void test_sparse_target(void **state)
{
    struct fixture *f = *state;
    const uint64_t size = 64 * MiB;
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *raw_target = path_in(f, "t.raw");
    g_autofree uint8_t *model = g_malloc0(size);

    create_image(src, "qcow2", size, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    write_pattern(disk, model, 0, 64 * KiB, 18);
    write_pattern(disk, model, 40 * MiB, 128 * KiB, 19);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "196608");
    assert_true(job_cancel(job, false, NULL));
    wait_state(job, JOB_STATE_CONCLUDED);
    job_unref(job);

    g_autofree char *cmd2 = g_strdup_printf(
        "mirror id=m2 disk=vm1 target=%s format=raw", raw_target);
    job = start_mirror(f, disk, cmd2);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    uint64_t allocated;
    assert_int_equal(disk_allocated_bytes(disk, &allocated), 0);
    assert_true(allocated <= 256 * KiB);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, size);
    if (have_qemu_img()) {
        assert_int_equal(qemu_img_data_bytes(target), 192 * KiB);
        assert_true(qemu_img_data_bytes(raw_target) <= 256 * KiB);
    }
}

/* A target cluster larger than the granularity is copied whole. */
static void test_big_target_cluster(void **state)
{
    struct fixture *f = *state;
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    /* Existing target with 1M clusters; source data of 4K at 1M+8K. */
    create_image(src, "qcow2", SIZE, 4096, NULL, NULL);
    create_image(target, "qcow2", SIZE, 1024 * 1024, NULL, NULL);
    struct disk *disk = open_disk(src);
    write_pattern(disk, model, MiB + 8 * KiB, 4 * KiB, 20);
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s mode=existing sync=top "
        "granularity=4K", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    /* The whole 1M cluster was handled (as data or zeros). */
    g_autofree char *offset = status_value(job, "offset");
    assert_string_equal(offset, "1048576");
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "4096");
    complete_and_wait(job);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    if (have_qemu_img()) {
        assert_qemu_img_compare(src, target);
        assert_qemu_img_check(target);
    }
}

/* Directories block_dir_fsync was called on (dev, ino pairs). */
static struct stat synced_dirs[8];
static unsigned n_synced_dirs;
static int dir_fsync_errno;

static int recording_dir_fsync(int fd)
{
    if (n_synced_dirs < G_N_ELEMENTS(synced_dirs)) {
        fstat(fd, &synced_dirs[n_synced_dirs++]);
    }
    if (dir_fsync_errno) {
        errno = dir_fsync_errno;
        return -1;
    }
    return 0;
}

static bool dir_was_synced(const char *dir)
{
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    for (unsigned i = 0; i < n_synced_dirs; i++) {
        if (synced_dirs[i].st_dev == st.st_dev &&
            synced_dirs[i].st_ino == st.st_ino &&
            S_ISDIR(synced_dirs[i].st_mode)) {
            return true;
        }
    }
    return false;
}

/* A new target's directory entry is made durable when the target is
 * created (before any complete could switch the disk to it); a failing
 * directory sync refuses the mirror and removes the new file. */
static void test_new_target_dir_synced(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = scattered_disk(f, model);
    g_autofree char *sub = path_in(f, "sub");
    g_autofree char *target = path_in(f, "sub/t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);

    assert_int_equal(mkdir(sub, 0700), 0);
    block_dir_fsync = recording_dir_fsync;
    n_synced_dirs = 0;
    dir_fsync_errno = 0;
    struct job *job = start_mirror(f, disk, cmd);
    assert_true(dir_was_synced(sub));
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);

    g_autofree char *target2 = path_in(f, "sub/t2.qcow2");
    g_autofree char *cmd2 = g_strdup_printf(
        "mirror id=m2 disk=vm1 target=%s", target2);
    dir_fsync_errno = EIO;
    g_autofree char *msg = start_mirror_error(f, disk, cmd2, EIO);
    assert_non_null(strstr(msg, "cannot sync its directory"));
    assert_int_equal(access(target2, F_OK), -1);
    block_dir_fsync = fsync;
    assert_int_equal(disk_close(disk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_complete, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_full_flattens_chain,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_top_complete, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_none_complete, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_existing_full, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_existing_top_shares_backing,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_raw_target, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_before_ready,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_after_ready,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_force_when_ready,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_zero_length, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_option_errors, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_sparse_target, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_big_target_cluster,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_new_target_dir_synced,
                                        mirror_setup, mirror_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
