/* Unit tests for the mirror job under guest I/O and control: a writer
 * thread during the whole job in both copy modes, convergence of
 * write-blocking under constant writes, live copy-mode change, pause and
 * resume, the speed limit, and the error policies on both sides (the
 * failing side's fd is swapped for /dev/full or a directory). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "jobs/mirror.h"

#include "mirror-test-util.h"

#define SIZE (8 * MiB)

struct writer {
    struct disk *disk;
    uint8_t *model;
    bool paced;         /* a short pause between writes */
    bool stop;          /* atomic */
    unsigned writes;    /* atomic */
    pthread_t thread;
};

/* Random writes (and some zero writes) of 512 B..64 KiB, kept in the
 * model; the only writer, so the model is exact. */
static void *writer_main(void *opaque)
{
    struct writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(42);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        uint64_t len = (uint64_t)g_rand_int_range(rand, 1, 129) * 512;
        uint64_t offset = (uint64_t)g_rand_int_range(rand, 0,
                              (SIZE - len) / 512 + 1) * 512;
        if (g_rand_int_range(rand, 0, 8) == 0) {
            assert_int_equal(disk_write_zeroes(w->disk, offset, len, 0), 0);
            memset(w->model + offset, 0, len);
        } else {
            uint8_t value = (uint8_t)g_rand_int(rand);
            memset(buf, value, len);
            buf[0] = (uint8_t)(offset >> 9);
            assert_int_equal(disk_write(w->disk, offset, len, buf), 0);
            memcpy(w->model + offset, buf, len);
        }
        __atomic_fetch_add(&w->writes, 1, __ATOMIC_RELEASE);
        if (w->paced) {
            g_usleep(300);  /* a rate, not a synchronisation */
        }
    }
    g_rand_free(rand);
    return NULL;
}

static void writer_start(struct writer *w, struct disk *disk, uint8_t *model,
                         bool paced)
{
    *w = (struct writer){ .disk = disk, .model = model, .paced = paced };
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_stop(struct writer *w)
{
    __atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
    pthread_join(w->thread, NULL);
}

/* Wait until the writer made n more writes. */
static void writer_wait(struct writer *w, unsigned n)
{
    unsigned target = __atomic_load_n(&w->writes, __ATOMIC_ACQUIRE) + n;
    int64_t deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (__atomic_load_n(&w->writes, __ATOMIC_ACQUIRE) < target) {
        assert_true(g_get_monotonic_time() < deadline);
        sched_yield();
    }
}

/* An 8 MiB raw or qcow2 source full of data. */
static struct disk *full_disk(struct fixture *f, const char *name,
                              const char *format, uint8_t *model)
{
    g_autofree char *src = path_in(f, name);

    create_image(src, format, SIZE, 0, NULL, NULL);
    struct disk *disk = open_disk(src);
    for (uint64_t offset = 0; offset < SIZE; offset += MiB) {
        write_pattern(disk, model, offset, MiB, (unsigned)(offset >> 20));
    }
    return disk;
}

static void complete_and_wait(struct job *job)
{
    GError *error = NULL;

    if (!job_complete(job, &error)) {
        fail_msg("complete: %s", error->message);
    }
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
}

/* A writer during the whole job, then complete, in one copy mode. */
static void run_with_writer(struct fixture *f, const char *mode, bool paced)
{
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s copy-mode=%s granularity=16K",
        target, mode);
    struct writer w;

    writer_start(&w, disk, model, paced);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    writer_wait(&w, 200);
    complete_and_wait(job);
    writer_wait(&w, 50);            /* onto the target now */
    writer_stop(&w);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
    if (have_qemu_img()) {
        assert_qemu_img_check(target);
    }
}

static void test_writer_background(void **state)
{
    run_with_writer(*state, "background", true);
}

/* Write-blocking converges under constant (unpaced) writes. */
static void test_writer_write_blocking(void **state)
{
    run_with_writer(*state, "write-blocking", false);
}

/* Cancel when ready with a writer: the target is a consistent copy of the
 * disk at the moment the job ended (checked against a model snapshot). */
static void test_cancel_ready_with_writer(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s copy-mode=write-blocking", target);
    struct writer w;

    writer_start(&w, disk, model, false);
    struct job *job = start_mirror(f, disk, cmd);
    wait_state(job, JOB_STATE_READY);
    writer_wait(&w, 100);
    writer_stop(&w);
    assert_true(job_cancel(job, false, NULL));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
    job_unref(job);
    assert_image_equals(target, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

/* `change copy-mode=write-blocking` under constant writes: ready. */
static void test_change_copy_mode(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s", target);
    struct job_change_opts opts = {
        .has_copy_mode = true, .copy_mode = JOB_COPY_MODE_BACKGROUND,
    };
    GError *error = NULL;
    struct writer w;

    writer_start(&w, disk, model, false);
    struct job *job = start_mirror(f, disk, cmd);
    writer_wait(&w, 100);
    assert_false(job_change(job, &opts, &error));
    assert_int_equal(error->code, ENOTSUP);
    g_clear_error(&error);
    opts.copy_mode = JOB_COPY_MODE_WRITE_BLOCKING;
    assert_true(job_change(job, &opts, &error));
    g_autofree char *mode = status_value(job, "copy-mode");
    assert_string_equal(mode, "write-blocking");
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    writer_stop(&w);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
}

static uint64_t progress_offset(struct job *job)
{
    return __atomic_load_n(&job->progress_offset, __ATOMIC_SEQ_CST);
}

static void test_pause_resume(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.raw", "raw", model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s speed=1M buf-size=64K", target);
    GError *error = NULL;

    struct job *job = start_mirror(f, disk, cmd);
    assert_true(job_user_pause(job, &error));
    wait_state(job, JOB_STATE_PAUSED);
    uint64_t paused_at = progress_offset(job);
    assert_true(paused_at < SIZE);
    /* Nothing moves while paused: a write is not copied. */
    write_pattern(disk, model, 0, 4096, 99);
    assert_int_equal(progress_offset(job), paused_at);
    assert_true(job_user_resume(job, &error));
    assert_true(job_set_speed(job, 0, &error));
    wait_state(job, JOB_STATE_READY);
    assert_true(job_user_pause(job, &error));
    wait_state(job, JOB_STATE_STANDBY);
    assert_true(job_user_resume(job, &error));
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=paused\n"
                                   "JOB_STATE id=m1 state=running\n"));
    assert_non_null(strstr(events, "JOB_STATE id=m1 state=standby\n"
                                   "JOB_STATE id=m1 state=ready\n"));
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

/* speed=1M with a 64K burst: 2 MiB take about 2 s; set-speed 0 then
 * finishes quickly. */
static void test_speed(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.raw", "raw", model);
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s speed=1M buf-size=64K", target);
    GError *error = NULL;

    int64_t start = g_get_monotonic_time();
    struct job *job = start_mirror(f, disk, cmd);
    while (progress_offset(job) < 2 * MiB) {
        assert_false(job_wait_for_state(job, JOB_STATE_READY, 10000));
        assert_true(g_get_monotonic_time() - start < TIMEOUT_US);
    }
    double seconds = (g_get_monotonic_time() - start) / 1e6;
    print_message("2 MiB at 1M/s took %.2f s\n", seconds);
    assert_true(seconds >= 1.5);
    assert_true(seconds < 8);
    g_autofree char *speed = status_value(job, "speed");
    assert_string_equal(speed, "1048576");
    assert_true(job_set_speed(job, 0, &error));
    start = g_get_monotonic_time();
    wait_state(job, JOB_STATE_READY);
    assert_true(g_get_monotonic_time() - start < 5 * G_USEC_PER_SEC);
    assert_true(job_cancel(job, false, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    job_unref(job);
    assert_int_equal(disk_close(disk), 0);
}

/* Swap fd for a file that fails I/O; returns a saved copy to restore. */
static int break_fd(int fd, const char *with)
{
    int saved = dup(fd);
    int bad = open(with, O_RDONLY | O_CLOEXEC | (strcmp(with, "/dev/full")
                                                 ? O_DIRECTORY : 0));
    if (strcmp(with, "/dev/full") == 0) {
        close(bad);
        bad = open(with, O_RDWR | O_CLOEXEC);
    }
    assert_true(saved >= 0 && bad >= 0);
    assert_int_equal(dup2(bad, fd), fd);
    close(bad);
    return saved;
}

static void restore_fd(int fd, int saved)
{
    assert_int_equal(dup2(saved, fd), fd);
    close(saved);
}

/* A slow mirror to a raw target whose fd then fails with ENOSPC. */
static struct job *start_failing(struct fixture *f, struct disk *disk,
                                 const char *policy, int *fd, int *saved)
{
    g_autofree char *target = path_in(f, "t.raw");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s format=raw speed=64K buf-size=64K "
        "on-target-error=%s", target, policy);

    struct job *job = start_mirror(f, disk, cmd);
    *fd = fd_of(target);
    assert_true(*fd >= 0);
    *saved = break_fd(*fd, "/dev/full");
    assert_true(job_set_speed(job, 0, NULL));
    return job;
}

static void test_target_error_report(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.raw");
    int fd, saved;

    struct job *job = start_failing(f, disk, "report", &fd, &saved);
    wait_state(job, JOB_STATE_CONCLUDED);
    restore_fd(fd, saved);
    assert_int_equal(job->result, JOB_RESULT_FAILED);
    g_autofree char *error = status_value(job, "error");
    g_autofree char *expected = g_strdup_printf(
        "write to %s: No space left on device", target);
    assert_string_equal(error, expected);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_ERROR id=m1 operation=write "
                                   "action=report\n"));
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

static void test_target_error_ignore(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.raw");
    int fd, saved;

    struct job *job = start_failing(f, disk, "ignore", &fd, &saved);
    wait_event(f, "JOB_ERROR id=m1 operation=write action=ignore");
    assert_int_equal(job_get_state(job), JOB_STATE_RUNNING);
    restore_fd(fd, saved);
    wait_state(job, JOB_STATE_READY);
    complete_and_wait(job);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
}

static void test_target_error_stop(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.qcow2", "qcow2", model);
    g_autofree char *target = path_in(f, "t.raw");
    GError *error = NULL;
    int fd, saved;

    struct job *job = start_failing(f, disk, "stop", &fd, &saved);
    wait_state(job, JOB_STATE_PAUSED);
    g_autofree char *io_status = status_value(job, "io-status");
    assert_string_equal(io_status, "nospace");
    restore_fd(fd, saved);
    assert_true(job_user_resume(job, &error));
    wait_state(job, JOB_STATE_READY);
    g_autofree char *io_status2 = status_value(job, "io-status");
    assert_string_equal(io_status2, "ok");
    complete_and_wait(job);
    job_unref(job);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_ERROR id=m1 operation=write "
                                   "action=stop\n"));
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(target, model, SIZE);
}

/* A source that fails reads (its fd now a directory): report. */
static void test_source_error_report(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    struct disk *disk = full_disk(f, "src.raw", "raw", model);
    g_autofree char *src = path_in(f, "src.raw");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree char *cmd = g_strdup_printf(
        "mirror id=m1 disk=vm1 target=%s speed=64K buf-size=64K "
        "on-source-error=report", target);

    struct job *job = start_mirror(f, disk, cmd);
    int fd = fd_of(src);
    int saved = break_fd(fd, f->dir);
    assert_true(job_set_speed(job, 0, NULL));
    wait_state(job, JOB_STATE_CONCLUDED);
    restore_fd(fd, saved);
    assert_int_equal(job->result, JOB_RESULT_FAILED);
    g_autofree char *error = status_value(job, "error");
    g_autofree char *expected = g_strdup_printf("read from %s: Is a directory",
                                                src);
    assert_string_equal(error, expected);
    job_unref(job);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writer_background, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_writer_write_blocking,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_ready_with_writer,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_change_copy_mode, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_speed, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_target_error_report,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_target_error_ignore,
                                        mirror_setup, mirror_teardown),
        cmocka_unit_test_setup_teardown(test_target_error_stop, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_source_error_report,
                                        mirror_setup, mirror_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
