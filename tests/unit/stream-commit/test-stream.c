/* Unit tests for the stream job, after QEMU's iotests 030: whole-chain
 * stream, stream to a base in the middle, backing-file strings, a raw
 * base, guest writes and copy-on-read during a stream, cancel, speed, and
 * option errors; headers and chains checked with qemu-img. */
#include <errno.h>
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

/* base <- mid <- top, each with data of its own and some overlap; returns
 * the disk on top.  paths[i]: base, mid, top. */
static struct disk *three_layers(struct fixture *f, uint8_t *model,
                                 char **paths, const char *base_format)
{
    paths[0] = path_in(f, strcmp(base_format, "raw") == 0 ? "base.raw"
                                                           : "base.qcow2");
    paths[1] = path_in(f, "mid.qcow2");
    paths[2] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], base_format, SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 2 * MiB, 1);
    write_layer(paths[0], model, 6 * MiB, 512 * KiB, 2);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], base_format);
    write_layer(paths[1], model, 1 * MiB, 2 * MiB, 3);
    zero_layer(paths[1], model, 6 * MiB + 64 * KiB, 128 * KiB);
    create_image(paths[2], "qcow2", SIZE, 0, paths[1], "qcow2");
    write_layer(paths[2], model, 2 * MiB + 4096, 8192, 4);
    write_layer(paths[2], model, SIZE - 100, 100, 5);
    return open_disk(paths[2]);
}

/* After a job: the disk reads the model, qemu-img agrees on the chain,
 * checks every image and compares the top with the model. */
static void test_whole_chain(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");

    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1");
    wait_result(job, JOB_RESULT_COMPLETED);
    g_autofree char *copied = status_value(job, "copied");
    assert_true(g_ascii_strtoull(copied, NULL, 10) > 0);
    job_unref(job);

    g_autofree char *chain = disk_describe_chain(disk);
    g_autofree char *expected = g_strdup_printf("0 qcow2 %llu %s\n",
                                                (unsigned long long)SIZE,
                                                paths[2]);
    assert_string_equal(chain, expected);
    assert_int_equal(fd_of(paths[1]), -1);      /* closed */
    assert_int_equal(fd_of(paths[0]), -1);
    check_after_job(f, disk, model, SIZE, paths, 3);
    if (have_qemu_img()) {
        assert_null(qemu_img_backing_file(paths[2]));
        /* The removed layers stay as they were. */
        g_autofree char *mid_backing = qemu_img_backing_file(paths[1]);
        assert_string_equal(mid_backing, paths[0]);
    }
    /* The stream did not turn zeros into data: the zeroed range is no
     * data in the top (it reads zeros without a backing file). */
    write_pattern(disk, model, 0, 4096, 9);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[2], model, SIZE);
    free_paths(paths, 3);
}

static void test_base_in_middle(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[4];
    paths[0] = path_in(f, "base.qcow2");
    paths[1] = path_in(f, "mid1.qcow2");
    paths[2] = path_in(f, "mid2.qcow2");
    paths[3] = path_in(f, "top.qcow2");
    memset(model, 0, SIZE);
    create_image(paths[0], "qcow2", SIZE, 0, NULL, NULL);
    write_layer(paths[0], model, 0, 4 * MiB, 1);
    create_image(paths[1], "qcow2", SIZE, 0, paths[0], "qcow2");
    write_layer(paths[1], model, 1 * MiB, 1 * MiB, 2);
    create_image(paths[2], "qcow2", SIZE, 4096, paths[1], "qcow2");
    write_layer(paths[2], model, 1 * MiB + 512 * KiB, 1 * MiB + 3, 3);
    zero_layer(paths[2], model, 256 * KiB, 64 * KiB);
    create_image(paths[3], "qcow2", SIZE, 0, paths[2], "qcow2");
    write_layer(paths[3], model, 3 * MiB, 4096, 4);
    struct disk *disk = open_disk(paths[3]);

    g_autofree char *cmd = g_strdup_printf("stream id=s1 disk=vm1 base=%s",
                                           paths[1]);
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
        assert_string_equal(backing, paths[1]);
    }
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[3], model, SIZE);
    free_paths(paths, 4);
}

/* backing-file= is written as given (a relative name, resolved against
 * the top's directory), with base's format; base= may be any spelling. */
static void test_backing_file_string(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "raw");

    g_autofree char *spelled = g_strdup_printf("%s/./base.raw", f->dir);
    g_autofree char *cmd = g_strdup_printf(
        "stream id=s1 disk=vm1 base=%s backing-file=base.raw", spelled);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    check_after_job(f, disk, model, SIZE, paths, 3);
    if (have_qemu_img()) {
        g_autofree char *backing = qemu_img_backing_file(paths[2]);
        assert_string_equal(backing, "base.raw");
    }
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[2], model, SIZE);
    free_paths(paths, 3);
}

/* Guest writes race with the copies (a writer thread with its own model)
 * and guest reads of the other half copy into the top (copy-on-read). */
static void test_stream_with_writer(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree uint8_t *buf = g_malloc(256 * KiB);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");
    struct writer w = {
        .disk = disk, .model = model, .start = 0, .end = SIZE / 2,
        .min_writes = 200,
    };

    writer_start(&w);
    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1 speed=4M");
    /* Reads of the upper half while streaming: what they return is the
     * model (nobody writes there), and they copy into the top. */
    for (unsigned i = 0; i < 64; i++) {
        uint64_t offset = SIZE / 2 + (uint64_t)i * 64 * KiB;
        assert_int_equal(disk_read(disk, offset, 64 * KiB, buf), 0);
        assert_memory_equal(buf, model + offset, 64 * KiB);
    }
    wait_result(job, JOB_RESULT_COMPLETED);
    writer_stop(&w);
    job_unref(job);
    assert_true(w.writes >= 200);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(paths[2], model, SIZE);
    free_paths(paths, 3);
}

/* Copy-on-read alone: a read of a range only the base holds makes the
 * top allocate it while the stream is paused. */
static void test_copy_on_read(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");
    GError *error = NULL;

    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1 speed=1");
    assert_true(job_user_pause(job, &error));
    wait_state(job, JOB_STATE_PAUSED);
    uint64_t pnum;
    struct block_node *top = disk->top;
    int status = top->driver->block_status(top, 6 * MiB + 256 * KiB,
                                           64 * KiB, &pnum);
    assert_false(status & BLOCK_STATUS_ALLOCATED);
    assert_int_equal(disk_read(disk, 6 * MiB + 256 * KiB, 64 * KiB, buf), 0);
    assert_memory_equal(buf, model + 6 * MiB + 256 * KiB, 64 * KiB);
    status = top->driver->block_status(top, 6 * MiB + 256 * KiB, 64 * KiB,
                                       &pnum);
    assert_true(status & BLOCK_STATUS_ALLOCATED);
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_CANCELLED);
    job_unref(job);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Cancel mid-way: the chain is unchanged and reads the same. */
static void test_cancel(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");
    g_autofree char *before = disk_describe_chain(disk);
    GError *error = NULL;

    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1 speed=1M");
    int64_t deadline = g_get_monotonic_time() + TIMEOUT_US;
    while (__atomic_load_n(&job->copied_bytes, __ATOMIC_RELAXED) == 0) {
        assert_true(g_get_monotonic_time() < deadline);
        job_wait_for_state(job, JOB_STATE_CONCLUDED, 1000);
    }
    assert_true(job_cancel(job, false, &error));
    wait_result(job, JOB_RESULT_CANCELLED);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_CANCELLED id=s1"));
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(before, after);
    check_after_job(f, disk, model, SIZE, paths, 3);
    if (have_qemu_img()) {
        g_autofree char *backing = qemu_img_backing_file(paths[2]);
        assert_string_equal(backing, paths[1]);
    }
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* speed= bounds the rate: 3.5 MiB of data at 2 MiB/s takes over a
 * second. */
static void test_speed(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");

    int64_t start = g_get_monotonic_time();
    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1 speed=2M");
    wait_result(job, JOB_RESULT_COMPLETED);
    int64_t elapsed = g_get_monotonic_time() - start;
    job_unref(job);
    assert_true(elapsed >= 1 * G_USEC_PER_SEC);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    char *paths[3];
    struct disk *disk = three_layers(f, model, paths, "qcow2");
    g_autofree char *other = path_in(f, "other.qcow2");
    create_image(other, "qcow2", SIZE, 0, NULL, NULL);

    g_autofree char *cmd1 = g_strdup_printf("stream id=s1 disk=vm1 base=%s",
                                            other);
    g_autofree char *msg1 = start_job_error(f, disk, cmd1, ENOENT);
    g_autofree char *want1 = g_strdup_printf(
        "layer %s is not in the chain of disk 'vm1'", other);
    assert_string_equal(msg1, want1);
    g_autofree char *cmd2 = g_strdup_printf("stream id=s1 disk=vm1 base=%s",
                                            paths[2]);
    g_autofree char *msg2 = start_job_error(f, disk, cmd2, EINVAL);
    g_autofree char *msg3 = start_job_error(
        f, disk, "stream id=s1 disk=vm1 backing-file=x", EINVAL);
    assert_non_null(strstr(msg3, "backing-file"));
    g_autofree char *missing = path_in(f, "missing.qcow2");
    g_autofree char *cmd4 = g_strdup_printf("stream id=s1 disk=vm1 base=%s",
                                            missing);
    g_autofree char *msg4 = start_job_error(f, disk, cmd4, ENOENT);
    /* Nothing changed: a stream still works. */
    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1");
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    check_after_job(f, disk, model, SIZE, paths, 3);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

/* Headers made by qemu-img (a feature table makes the extension area
 * longer than a sector) rewritten with long names, again and again: the
 * name alternates between two places so that each rewrite commits with
 * one sector write; qemu-img reads every result. */
static void test_header_rewrites_qemu_images(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    GError *error = NULL;

    if (!have_qemu_img()) {
        skip();
    }
    const char *argv1[] = { "qemu-img", "create", "-q", "-f", "qcow2", base,
                            "1M", NULL };
    const char *argv2[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b",
                            base, "-F", "qcow2", top, "1M", NULL };
    int status;
    assert_true(g_spawn_sync(NULL, (char **)argv1, NULL, G_SPAWN_SEARCH_PATH,
                             NULL, NULL, NULL, NULL, &status, NULL));
    assert_true(g_spawn_sync(NULL, (char **)argv2, NULL, G_SPAWN_SEARCH_PATH,
                             NULL, NULL, NULL, NULL, &status, NULL));
    uint64_t previous_offset = 0;
    for (unsigned i = 0; i < 6; i++) {
        size_t dots_len = 2 * (100 + 20 * i);
        g_autofree char *dots = g_strnfill(dots_len, '.');
        for (size_t j = 1; j < dots_len; j += 2) {
            dots[j] = '/';      /* "././././" */
        }
        g_autofree char *name = g_strdup_printf("%s/%sbase.qcow2", f->dir,
                                                dots);
        struct block_node *node = block_node_open(top, NULL, false, &error);
        assert_non_null(node);
        if (i == 5) {
            g_free(name);
            name = g_strdup("base.qcow2");
        }
        assert_true(node->driver->set_backing(node, name,
                                              i % 2 ? "qcow2" : "raw",
                                              &error));
        uint8_t be[8];
        assert_int_equal(host_pread(node->fd, be, 8, 8), 0);
        uint64_t name_offset = GUINT64_FROM_BE(*(uint64_t *)be);
        /* A new place each time: never over the name in use. */
        assert_true(name_offset != previous_offset);
        previous_offset = name_offset;
        assert_int_equal(block_node_close(node), 0);
        g_autofree char *backing = qemu_img_backing_file(top);
        assert_string_equal(backing, name);
        assert_qemu_img_check(top);
        node = block_node_open(top, NULL, true, &error);
        assert_non_null(node);
        assert_string_equal(node->backing_name, name);
        assert_string_equal(node->backing_format, i % 2 ? "qcow2" : "raw");
        assert_int_equal(block_node_close(node), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole_chain, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_base_in_middle, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_backing_file_string,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_stream_with_writer,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_copy_on_read, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_speed, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_errors, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_header_rewrites_qemu_images,
                                        mirror_setup, mirror_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
