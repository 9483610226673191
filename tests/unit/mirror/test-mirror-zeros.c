/* Unit tests for the mirror's zero rule (INTERFACE 4): ranges that read
 * as zero are never written to the target as data, even where the source
 * holds them as written zeros (data clusters full of zeros).  sync=full
 * leaves holes, sync=top zero clusters over the backing data, a chunk
 * that is partly zero is split at the target's clusters, and zeros the
 * guest writes as data while the job is ready stay out of the target's
 * data too.  The content always equals the source's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"
#include "jobs/mirror.h"

#include "mirror-test-util.h"

#define SIZE (4 * MiB)

static void complete_and_wait(struct job *job)
{
    GError *error = NULL;

    assert_true(job_complete(job, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
}

/* A qcow2 disk (64K clusters): data at 0, 2 MiB of written zeros at 1M,
 * data right after them (so one copy spans both), then a cluster with 4K
 * of data and 60K of zeros.  192K of it is data that is not zero. */
static struct disk *written_zeros_disk(struct fixture *f, uint8_t *model)
{
    g_autofree char *src = path_in(f, "src.qcow2");

    create_image(src, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    memset(model, 0, SIZE);
    write_pattern(disk, model, 0, 64 * KiB, 1);
    write_zeros_as_data(disk, model, MiB, 2 * MiB);
    write_pattern(disk, model, 3 * MiB, 64 * KiB, 2);
    write_pattern(disk, model, 3 * MiB + 64 * KiB, 4 * KiB, 3);
    /* The premise: the source holds the zeros as data. */
    assert_int_equal(node_data_bytes(disk->top, MiB, 2 * MiB), 2 * MiB);
    return disk;
}

/* sync=full: the written zeros leave no data in the target (holes), and
 * copied counts only what was written as data. */
static void test_full_written_zeros(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = written_zeros_disk(f, model);
    g_autofree char *src = g_strdup(disk->top->filename);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "196608");
    complete_and_wait(job);
    job_unref(job);

    assert_string_equal(disk->top->filename, target);
    assert_null(disk->top->backing);
    assert_node_zero_no_data(disk->top, MiB, 2 * MiB);
    assert_int_equal(node_data_bytes(disk->top, 0, SIZE), 192 * KiB);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_int_equal(qemu_img_data_bytes(target), 192 * KiB);
        assert_qemu_img_compare(src, target);
        assert_qemu_img_check(target);
    }
}

/* A raw target: the written zeros become holes. */
static void test_full_written_zeros_raw(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = written_zeros_disk(f, model);
    g_autofree char *src = g_strdup(disk->top->filename);
    g_autofree char *target = path_in(f, "t.raw");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s format=raw", target);

    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);

    assert_int_equal(node_data_bytes(disk->top, MiB, 2 * MiB), 0);
    assert_true(node_data_bytes(disk->top, 0, SIZE) <= 256 * KiB);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_true(qemu_img_data_bytes(target) <= 256 * KiB);
        assert_qemu_img_compare(src, target);
    }
}

/* sync=top: written zeros in the top over backing data become zero
 * clusters in the target (an unallocated cluster would show the backing
 * data); the target reads zeros there. */
static void test_top_written_zeros(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(base, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *base_disk = open_disk(base);
    write_pattern(base_disk, model, 0, 2 * MiB, 4);
    assert_int_equal(disk_close(base_disk), 0);
    create_image(top, "qcow2", SIZE, 0, base, "qcow2");
    struct disk *disk = open_disk(top);
    write_zeros_as_data(disk, model, 512 * KiB, 512 * KiB);
    write_pattern(disk, model, 1536 * KiB, 64 * KiB, 5);
    assert_int_equal(node_data_bytes(disk->top, 512 * KiB, 512 * KiB),
                     512 * KiB);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s sync=top", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "65536");
    complete_and_wait(job);
    job_unref(job);

    assert_string_equal(disk->top->filename, target);
    assert_non_null(disk->top->backing);
    assert_node_zero_no_data(disk->top, 512 * KiB, 512 * KiB);
    assert_int_equal(node_data_bytes(disk->top, 0, SIZE), 64 * KiB);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_compare(top, target);
        assert_qemu_img_check(target);
    }
}

/* Granularity 4K, target clusters 64K: a target cluster is copied whole
 * the first time, split into data and zero clusters; later 4K copies of
 * zeros the guest wrote as data leave a cluster that reads zeros without
 * data, and zeros in a data cluster stay data there. */
static void test_subcluster_written_zeros(void **state)
{
    struct fixture *f = *state;
    g_autofree char *src = path_in(f, "src.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(src, "qcow2", SIZE, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    write_pattern(disk, model, 0, 4 * KiB, 6);
    write_zeros_as_data(disk, model, 64 * KiB, 64 * KiB);

    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s granularity=4K", target);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    /* While ready: zeros as data in a zero cluster already copied, in a
     * cluster never touched, and in the data cluster. */
    write_zeros_as_data(disk, model, 64 * KiB + 8 * KiB, 4 * KiB);
    write_zeros_as_data(disk, model, 128 * KiB + 4 * KiB, 4 * KiB);
    write_zeros_as_data(disk, model, 8 * KiB, 4 * KiB);
    complete_and_wait(job);
    job_unref(job);

    assert_string_equal(disk->top->filename, target);
    assert_int_equal(node_data_bytes(disk->top, 0, 64 * KiB), 64 * KiB);
    assert_node_zero_no_data(disk->top, 64 * KiB, SIZE - 64 * KiB);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_int_equal(qemu_img_data_bytes(target), 64 * KiB);
        assert_qemu_img_compare(src, target);
        assert_qemu_img_check(target);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_written_zeros,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_full_written_zeros_raw,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_top_written_zeros,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_subcluster_written_zeros,
                                        mirror_setup, mirror_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
