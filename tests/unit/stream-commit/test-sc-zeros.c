/* Unit tests for the zero rule of stream and commit (INTERFACE 4):
 * written zeros (data clusters full of zeros) in the copied layers, over
 * data in the layers below, read as zeros afterwards and are written as
 * zero clusters or holes, never as data.  Stream with and without base,
 * intermediate commit into a base with and without its own backing, and
 * active commit; the content always equals the guest view before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"

#include "sc-test-util.h"

#define SIZE (4 * MiB)
/* The written zeros, over base data. */
#define ZEROS_AT (512 * KiB)
#define ZEROS_LEN (512 * KiB)

/* base (data in [0, 2M)) <- mid (written zeros at ZEROS_AT, 64K of data
 * at 1M+64K) <- top (empty); paths: base, mid, top. */
static struct disk *zeros_over_data(struct fixture *f, uint8_t *model,
                                    char **paths)
{
    paths[0] = path_in(f, "base.qcow2");
    paths[1] = path_in(f, "mid.qcow2");
    paths[2] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], "qcow2", SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 1);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "qcow2");
    zero_data_layer(paths[1], model, ZEROS_AT, ZEROS_LEN);
    write_layer(paths[1], model, MiB + 64 * KiB, 64 * KiB, 2);
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    struct disk *disk = open_disk(paths[2]);
    /* The premise: mid holds the zeros as data. */
    assert_int_equal(node_data_bytes(disk->top->backing, ZEROS_AT,
                                     ZEROS_LEN), ZEROS_LEN);
    return disk;
}

static struct block_node *layer(struct disk *disk, const char *path)
{
    GError *error = NULL;
    struct block_node *node = disk_find_layer(disk, path, &error);

    if (!node) {
        fail_msg("%s", error->message);
    }
    return node;
}

/* Stream down to base: the zeros become zero clusters in the top, which
 * keeps base's data as its backing. */
static void test_stream_base(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = zeros_over_data(f, model, paths);

    g_autofree char *cmd = g_strdup_printf("stream id=s1 disk=vm1 base=%s",
                                           paths[0]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "65536");
    job_unref(job);

    assert_string_equal(disk->top->backing->filename, paths[0]);
    assert_node_zero_no_data(disk->top, ZEROS_AT, ZEROS_LEN);
    assert_int_equal(node_data_bytes(disk->top, 0, SIZE), 64 * KiB);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Stream the whole chain: the base data is copied, the zeros over it are
 * not. */
static void test_stream_whole_chain(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = zeros_over_data(f, model, paths);

    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1");
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);

    assert_null(disk->top->backing);
    assert_node_zero_no_data(disk->top, ZEROS_AT, ZEROS_LEN);
    assert_int_equal(node_data_bytes(disk->top, 0, SIZE),
                     2 * MiB - ZEROS_LEN);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Intermediate commit of mid into base (no backing): holes in base. */
static void test_commit_intermediate(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = zeros_over_data(f, model, paths);

    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "65536");
    job_unref(job);

    struct block_node *base = layer(disk, paths[0]);
    assert_ptr_equal(disk->top->backing, base);
    assert_node_zero_no_data(base, ZEROS_AT, ZEROS_LEN);
    assert_int_equal(node_data_bytes(base, 0, SIZE), 2 * MiB - ZEROS_LEN);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Intermediate commit into a base that has its own backing with data:
 * zero clusters in base hide it. */
static void test_commit_base_with_backing(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc0(SIZE);
    char *paths[4] = {
        path_in(f, "bottom.qcow2"), path_in(f, "base.qcow2"),
        path_in(f, "mid.qcow2"), path_in(f, "top.qcow2"),
    };

    create_image(paths[0], "qcow2", SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 3);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "qcow2");
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    zero_data_layer(paths[2], model, ZEROS_AT, ZEROS_LEN);
    create_image(paths[3], "qcow2", SIZE, 0, paths[2], "qcow2");
    struct disk *disk = open_disk(paths[3]);

    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s base=%s", paths[2], paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);

    struct block_node *base = layer(disk, paths[1]);
    assert_ptr_equal(disk->top->backing, base);
    assert_non_null(base->backing);
    assert_node_zero_no_data(base, ZEROS_AT, ZEROS_LEN);
    assert_int_equal(node_data_bytes(base, 0, SIZE), 0);
    check_after_job(f, disk, model, SIZE, paths, 4);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 4);
}

/* Active commit (a mirror into base): written zeros in the active layer
 * leave holes in base. */
static void test_commit_active(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc0(SIZE);
    char *paths[2] = { path_in(f, "base.qcow2"), path_in(f, "top.qcow2") };
    GError *error = NULL;

    create_image(paths[0], "qcow2", SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 4);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "qcow2");
    struct disk *disk = open_disk(paths[1]);
    write_zeros_as_data(disk, model, ZEROS_AT, ZEROS_LEN);
    write_pattern(disk, model, 3 * MiB, 64 * KiB, 5);

    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    g_autofree char *copied = status_value(job, "copied");
    assert_string_equal(copied, "65536");
    assert_true(job_complete(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);

    assert_string_equal(disk->top->filename, paths[0]);
    assert_node_zero_no_data(disk->top, ZEROS_AT, ZEROS_LEN);
    assert_int_equal(node_data_bytes(disk->top, 0, SIZE),
                     2 * MiB - ZEROS_LEN + 64 * KiB);
    check_after_job(f, disk, model, SIZE, paths, 2);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, mirror_setup, \
                                              mirror_teardown)
    const struct CMUnitTest tests[] = {
        T(test_stream_base),
        T(test_stream_whole_chain),
        T(test_commit_intermediate),
        T(test_commit_base_with_backing),
        T(test_commit_active),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
