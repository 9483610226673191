/* Error policies of stream and commit (on-error=report|ignore|stop), with
 * the fault format (drivers/fault.c) making writes to the written layer
 * fail with ENOSPC: report fails the job and leaves the chain; ignore and
 * stop (then resume) finish with the right content. */
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

#define SIZE (4 * MiB)

static void write_text(const char *path, const char *text)
{
    GError *error = NULL;
    assert_true(g_file_set_contents(path, text, -1, &error));
}

/* A fault rule failing writes with ENOSPC: count 0 = forever. */
static void write_fault_conf(const char *conf, const char *image,
                             unsigned count)
{
    g_autofree char *text = g_strdup_printf(
        "[image]\nfile=%s\nformat=qcow2\n\n[rule full]\nop=write,zeroes\n"
        "errno=ENOSPC\ncount=%u\n", image, count);
    write_text(conf, text);
}

/* base.qcow2 (wrapped by base.conf) <- mid.qcow2 <- top.qcow2. */
static struct disk *chain_on_fault_base(struct fixture *f, uint8_t *model,
                                        unsigned count, char **conf)
{
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *mid = path_in(f, "mid.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");

    *conf = path_in(f, "base.conf");
    memset(model, 0, SIZE);
    create_image(base, "qcow2", SIZE, 0, NULL, NULL);
    write_layer(base, model, 0, 2 * MiB, 1);
    write_fault_conf(*conf, "base.qcow2", count);
    create_image(mid, "qcow2", SIZE, 0, *conf, "fault");
    write_layer(mid, model, 1 * MiB, 2 * MiB, 2);
    create_image(top, "qcow2", SIZE, 0, mid, "qcow2");
    write_layer(top, model, 3 * MiB, 4096, 3);
    return open_disk(top);
}

static void assert_fd_read_only(const char *path)
{
    int fd = fd_of(path);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
}

static void test_commit_report(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree char *conf = NULL;
    struct disk *disk = chain_on_fault_base(f, model, 0, &conf);
    g_autofree char *before = disk_describe_chain(disk);
    g_autofree char *mid = path_in(f, "mid.qcow2");
    g_autofree char *base = path_in(f, "base.qcow2");

    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           mid);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_FAILED);
    g_autofree char *error = status_value(job, "error");
    g_autofree char *want = g_strdup_printf(
        "write to %s: No space left on device", conf);
    assert_string_equal(error, want);
    job_unref(job);
    g_autofree char *after = disk_describe_chain(disk);
    assert_string_equal(before, after);
    assert_fd_read_only(base);
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

static void test_commit_ignore(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree char *conf = NULL;
    struct disk *disk = chain_on_fault_base(f, model, 2, &conf);
    g_autofree char *mid = path_in(f, "mid.qcow2");

    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s on-error=ignore", mid);
    struct job *job = start_job(f, disk, cmd);
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *events = events_text(f);
    assert_non_null(strstr(events, "JOB_ERROR id=c1 operation=write "
                                   "action=ignore"));
    g_autofree char *chain = disk_describe_chain(disk);
    assert_null(strstr(chain, mid));
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

static void test_commit_stop_resume(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc(SIZE);
    g_autofree char *conf = NULL;
    struct disk *disk = chain_on_fault_base(f, model, 1, &conf);
    g_autofree char *mid = path_in(f, "mid.qcow2");
    GError *error = NULL;

    g_autofree char *cmd = g_strdup_printf(
        "commit id=c1 disk=vm1 top=%s on-error=stop", mid);
    struct job *job = start_job(f, disk, cmd);
    wait_state(job, JOB_STATE_PAUSED);
    g_autofree char *io_status = status_value(job, "io-status");
    assert_string_equal(io_status, "nospace");
    assert_true(job_user_resume(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_null(strstr(chain, mid));
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
}

/* The top is the fault layer: stream's own writes fail once. */
static void test_stream_stop_resume(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *model = g_malloc0(SIZE);
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *conf = path_in(f, "top.conf");
    GError *error = NULL;

    create_image(base, "qcow2", SIZE, 0, NULL, NULL);
    write_layer(base, model, 0, 3 * MiB, 1);
    create_image(top, "qcow2", SIZE, 0, base, "qcow2");
    write_layer(top, model, 1 * MiB, 4096, 2);
    write_fault_conf(conf, "top.qcow2", 1);
    struct block_node *node = chain_open(conf, "fault", false, &error);
    assert_non_null(node);
    struct disk *disk = disk_new("vm1", node, false);

    struct job *job = start_job(f, disk, "stream id=s1 disk=vm1 "
                                         "on-error=stop");
    wait_state(job, JOB_STATE_PAUSED);
    g_autofree char *io_status = status_value(job, "io-status");
    assert_string_equal(io_status, "nospace");
    assert_true(job_user_resume(job, &error));
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_int_equal(strchr(chain, '\n')[1], '\0');     /* one layer */
    assert_disk_equals(disk, model, SIZE);
    assert_int_equal(disk_close(disk), 0);
    assert_image_equals(top, model, SIZE);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, mirror_setup, mirror_teardown)
    const struct CMUnitTest tests[] = {
        T(test_commit_report),
        T(test_commit_ignore),
        T(test_commit_stop_resume),
        T(test_stream_stop_resume),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
