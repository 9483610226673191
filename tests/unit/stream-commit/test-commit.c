/* Unit tests for the commit job, after QEMU's iotests 040: intermediate
 * commit (default and explicit base, backing-file strings, zeroed ranges,
 * base growth, with a writer), active commit (ready, complete, cancel
 * after ready, cancel force, with a writer), option errors, and base
 * reopened read-only afterwards; headers and chains checked with
 * qemu-img. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"

#include "sc-test-util.h"

#define SIZE (8 * MiB)

/* base <- mid <- top (base_size may be smaller); paths: base, mid, top. */
static struct disk *three_layers(struct fixture *f, uint8_t *model,
                                 char **paths, uint64_t base_size)
{
    paths[0] = path_in(f, "base.qcow2");
    paths[1] = path_in(f, "mid.qcow2");
    paths[2] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], "qcow2", base_size, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 1);
    write_layer(paths[0], model, base_size - 256 * KiB, 128 * KiB, 2);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "qcow2");
    write_layer(paths[1], model, 1 * MiB, 2 * MiB, 3);
    /* Zeros over base data: base must read zeros there afterwards. */
    zero_layer(paths[1], model, 256 * KiB, 128 * KiB);
    write_layer(paths[1], model, SIZE - 64 * KiB, 4096, 4);
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    write_layer(paths[2], model, 2 * MiB + 4096, 8192, 5);
    return open_disk(paths[2]);
}

/* The fd of path in this process is open read-only. */
static void assert_fd_read_only(const char *path)
{
    int fd = fd_of(path);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
}

static void test_intermediate_default_base(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);

    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    g_autofree char *type = status_value(job, "type");
    assert_string_equal(type, "commit");
    job_unref(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n", (unsigned long long)SIZE,
        paths[2], (unsigned long long)SIZE, paths[0]);
    assert_string_equal(chain, expected);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_fd_read_only(paths[0]);
    assert_int_equal(fd_of(paths[1]), -1);      /* closed */
    if (have_qemu_img()) {
        g_autofree char *backing = qemu_img_backing_file(paths[2]);
        assert_string_equal(backing, paths[0]);
        g_autofree char *mid_backing = qemu_img_backing_file(paths[1]);
        assert_string_equal(mid_backing, paths[0]);
    }
    /* Base alone holds everything but the top's data: the zeroed range
     * reads zeros in base itself. */
    g_autofree uint8_t *buf = g_malloc(128 * KiB);
    struct block_node *base = disk->top->backing;
    assert_int_equal(base->driver->read(base, 256 * KiB, 128 * KiB, buf), 0);
    assert_memory_equal(buf, model + 256 * KiB, 128 * KiB);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[2], model, SIZE);
    free_paths(paths, 3);
}

/* base < m1 < m2 < top: commit m2 into m1, backing-file= relative. */
static void test_intermediate_middle_backing_file(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[4];
    paths[0] = path_in(f, "base.qcow2");
    paths[1] = path_in(f, "m1.qcow2");
    paths[2] = path_in(f, "m2.qcow2");
    paths[3] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], "qcow2", SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 4 * MiB, 1);
    create_image(paths[1], "qcow2", SIZE, 4096, paths[0], "qcow2");
    write_layer(paths[1], model, 1 * MiB, 1 * MiB, 2);
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    write_layer(paths[2], model, 1 * MiB + 512 * KiB + 7, 1 * MiB, 3);
    create_image(paths[3], "qcow2", SIZE, 0, paths[2], "qcow2");
    write_layer(paths[3], model, 3 * MiB, 4096, 4);
    struct disk *disk = open_disk(paths[3]);

    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s/./m2.qcow2 base=%s backing-file=m1.qcow2",
        f->dir, paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n2 qcow2 %llu %s\n",
        (unsigned long long)SIZE, paths[3], (unsigned long long)SIZE,
        paths[1], (unsigned long long)SIZE, paths[0]);
    assert_string_equal(chain, expected);
    check_after_job(f, disk, model, SIZE, paths, 4);
    if (have_qemu_img()) {
        g_autofree char *backing = qemu_img_backing_file(paths[3]);
        assert_string_equal(backing, "m1.qcow2");
    }
    assert_fd_read_only(paths[1]);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[3], model, SIZE);
    free_paths(paths, 4);
}

/* A base smaller than top is grown first. */
static void test_base_growth(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, 4 * MiB);

    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    assert_int_equal(disk->top->backing->size, SIZE);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* A writer on the active layer while an intermediate commit runs. */
static void test_intermediate_with_writer(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    struct writer w = {
        .disk = disk, .model = model, .start = 0, .end = SIZE,
        .min_writes = 200,
    };

    writer_start(&w);
    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s speed=8M", paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    writer_stop(&w);
    job_unref(job);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

static void test_intermediate_cancel(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    g_autofree char *before = disk_describe_chain(disk);
    GError *error = NULL;

    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s speed=1M", paths[1]);
    struct job *job = start_job(f, disk, cmd);
    int64_t deadline = g_get_monotonic_time() + TIMEOUT_US;
    while (__atomic_load_n(&job->copied_bytes, __ATOMIC_RELAXED) == 0) {
        assert_true(g_get_monotonic_time() < deadline);
        job_wait_for_state(job, JOB_STATE_CONCLUDED, 1000);
    }
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_CANCELLED);
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(before, after);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_fd_read_only(paths[0]);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Active commit: ready, writes while ready, complete: the disk is base. */
static void test_active_complete(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, 4 * MiB);
    GError *error = NULL;

    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    g_autofree char *mode = status_value(job, "copy-mode");
    assert_string_equal(mode, "background");
    write_pattern(disk, model, 5 * MiB, 70000, 6);
    assert_true(job_complete(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_READY id=c1"));
    assert_non_null(strstr(events, "JOB_COMPLETED id=c1"));
    job_unref(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf("0 qcow2 %llu %s\n",
                                                (unsigned long long)SIZE,
                                                paths[0]);
    assert_string_equal(chain, expected);
    write_pattern(disk, model, 7 * MiB, 4096, 7);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[0], model, SIZE);
    free_paths(paths, 3);
}

/* Active commit with a writer, completed while it writes. */
static void test_active_with_writer(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    struct writer w = {
        .disk = disk, .model = model, .start = 0, .end = SIZE,
        .min_writes = 100,
    };
    GError *error = NULL;

    writer_start(&w);
    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    assert_true(job_complete(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    writer_stop(&w);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_non_null(strstr(chain, paths[0]));
    assert_int_equal(strchr(chain, '\n')[1], '\0');
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[0], model, SIZE);
    free_paths(paths, 3);
}

/* Cancel after ready: completed, the disk stays on top, base consistent
 * (it reads what the disk read at the cancel) and read-only again. */
static void test_active_cancel_after_ready(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    g_autofree char *before = disk_describe_chain(disk);
    GError *error = NULL;

    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    write_pattern(disk, model, 4 * MiB, 8192, 8);
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(before, after);
    assert_fd_read_only(paths[0]);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_image_equals(paths[0], model, SIZE);
    if (have_qemu_img()) {
        g_autofree char *ref = path_in(f, "ref.raw");
        assert_qemu_img_compare(ref, paths[0]);
    }
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

static void test_active_cancel_force(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    g_autofree char *before = disk_describe_chain(disk);
    GError *error = NULL;

    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    assert_true(job_cancel(job, true, &error));
    wait_result(job, JOB_RESULT_CANCELLED);
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(before, after);
    assert_fd_read_only(paths[0]);
    check_after_job(f, disk, model, SIZE, paths, 3);
    /* Cancel before ready, too. */
    job = start_job(f, disk, "commit id=c2 disk=vm1 speed=1");
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_CANCELLED);
    job_unref(job);
    g_autofree char *after2 = disk_describe_chain(disk);
    assert_string_equal(before, after2);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Whether `qemu-img info` without -U (which refuses to share writing)
 * opens path: it must not while we hold it for writing. */
static bool qemu_img_info_opens(const char *path)
{
    const char *argv[] = { "qemu-img", "info", path, NULL };
    int status = -1;

    assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                             G_SPAWN_SEARCH_PATH |
                             G_SPAWN_STDOUT_TO_DEV_NULL |
                             G_SPAWN_STDERR_TO_DEV_NULL,
                             NULL, NULL, NULL, NULL, &status, NULL));
    return g_spawn_check_wait_status(status, NULL);
}

/* Base moves from QEMU's reader locks to the writer's and back. */
static void test_active_base_locks(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    GError *error = NULL;

    if (!have_qemu_img()) {
        skip();
    }
    assert_true(qemu_img_info_opens(paths[0]));
    struct job *job = start_job(f, disk, "commit id=c1 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    assert_false(qemu_img_info_opens(paths[0]));
    assert_true(qemu_img_info_opens(paths[1]));
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    assert_true(qemu_img_info_opens(paths[0]));
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* base <- m1 <- m2 <- top: committing m1 rewrites m2, a backing layer,
 * which is reopened read-write for that and read-only again. */
static void test_intermediate_read_only_overlay(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[4];
    paths[0] = path_in(f, "base.raw");
    paths[1] = path_in(f, "m1.qcow2");
    paths[2] = path_in(f, "m2.qcow2");
    paths[3] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], "raw", SIZE / 2, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 1);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "raw");
    write_layer(paths[1], model, 1 * MiB, 5 * MiB, 2);
    zero_layer(paths[1], model, 512 * KiB, 64 * KiB);
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    write_layer(paths[2], model, 3 * MiB, 4096, 3);
    create_image(paths[3], "qcow2", SIZE, 0, paths[2], "qcow2");
    write_layer(paths[3], model, 7 * MiB, 4096, 4);
    struct disk *disk = open_disk(paths[3]);

    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           paths[1]);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf(
        "0 qcow2 %llu %s\n1 qcow2 %llu %s\n2 raw %llu %s\n",
        (unsigned long long)SIZE, paths[3], (unsigned long long)SIZE,
        paths[2], (unsigned long long)SIZE, paths[0]);
    assert_string_equal(chain, expected);
    assert_fd_read_only(paths[2]);
    assert_fd_read_only(paths[0]);
    assert_disk_equals(disk, model, SIZE);
    assert_chain_matches_qemu(disk);
    if (have_qemu_img()) {
        g_autofree char *backing = qemu_img_backing_file(paths[2]);
        assert_string_equal(backing, paths[0]);
        assert_qemu_img_check(paths[2]);
        assert_qemu_img_check(paths[3]);
        g_autofree char *ref = path_in(f, "ref.raw");
        write_raw_file(ref, model, SIZE);
        assert_qemu_img_compare(ref, paths[3]);
    }
    /* Then an active commit into the raw base. */
    job = start_job(f, disk, "commit id=c2 disk=vm1");
    wait_state(job, JOB_STATE_READY);
    GError *error = NULL;
    assert_true(job_complete(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *chain2 = disk_describe_chain(disk);
    g_autofree char *expected2 = g_strdup_printf(
        "0 raw %llu %s\n", (unsigned long long)SIZE, paths[0]);
    assert_string_equal(chain2, expected2);
    assert_disk_equals(disk, model, SIZE);
    assert_chain_matches_qemu(disk);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[0], model, SIZE);
    free_paths(paths, 4);
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, SIZE);
    g_autofree char *other = path_in(f, "other.qcow2");
    create_image(other, "qcow2", SIZE, 0, NULL, NULL);

    g_autofree char *m1 = start_job_error(
        f, disk, "commit id=c1 disk=vm1 backing-file=x", EINVAL);
    assert_non_null(strstr(m1, "backing-file"));
    g_autofree char *cmd2 = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                            other);
    g_autofree char *m2 = start_job_error(f, disk, cmd2, ENOENT);
    g_autofree char *want2 = g_strdup_printf(
        "layer %s is not in the chain of disk 'vm1'", other);
    assert_string_equal(m2, want2);
    g_autofree char *cmd3 = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s base=%s", paths[0], paths[1]);
    g_autofree char *m3 = start_job_error(f, disk, cmd3, EINVAL);
    g_autofree char *cmd4 = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s base=%s", paths[1], paths[1]);
    g_autofree char *m4 = start_job_error(f, disk, cmd4, EINVAL);
    g_autofree char *cmd5 = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                            paths[0]);
    g_autofree char *m5 = start_job_error(f, disk, cmd5, EINVAL);
    assert_fd_read_only(paths[0]);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, mirror_setup, mirror_teardown)
    const struct CMUnitTest tests[] = {
        T(test_intermediate_default_base),
        T(test_intermediate_middle_backing_file),
        T(test_base_growth),
        T(test_intermediate_with_writer),
        T(test_intermediate_cancel),
        T(test_active_complete),
        T(test_active_with_writer),
        T(test_active_cancel_after_ready),
        T(test_active_cancel_force),
        T(test_active_base_locks),
        T(test_intermediate_read_only_overlay),
        T(test_errors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
