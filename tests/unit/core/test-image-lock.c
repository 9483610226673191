/* Unit tests for core/image-lock.c, with qemu-io and qemu-img as the
 * oracle for QEMU compatibility (skipped when they are missing). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"
#include "core/image-lock.h"
#include "test-util.h"

struct fixture {
    char *dir;
    char *image;
};

static int setup(void **state)
{
    if (!test_have_program("qemu-io") || !test_have_program("qemu-img")) {
        return 0;
    }
    struct fixture *f = g_new0(struct fixture, 1);
    f->dir = test_dir_new();
    f->image = g_build_filename(f->dir, "disk.qcow2", NULL);
    test_qcow2_create(f->image, 1 << 20, NULL, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f) {
        test_dir_remove(f->dir);
        g_free(f->image);
        g_free(f->dir);
        g_free(f);
    }
    return 0;
}

static struct fixture *fixture_or_skip(void **state)
{
    if (!*state) {
        skip();
    }
    return *state;
}

static int open_image(const char *path, bool read_only)
{
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Run argv; returns whether it succeeded.  A failure must be a locking
 * failure, nothing else. */
static bool run_expecting_lock_errors(GPtrArray *argv)
{
    g_ptr_array_add(argv, NULL);
    g_autofree char *err_text = NULL;
    bool ok = test_run((const char *const *)argv->pdata, &err_text);
    if (!ok && !strstr(err_text, "lock")) {
        fail_msg("%s failed, but not for a lock: %s",
                 (char *)argv->pdata[0], err_text);
    }
    g_ptr_array_free(argv, true);
    return ok;
}

/* qemu-io [-r] -c command image. */
static bool qemu_io(const char *image, bool read_only, const char *command)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, "qemu-io");
    if (read_only) {
        g_ptr_array_add(argv, "-r");
    }
    g_ptr_array_add(argv, "-c");
    g_ptr_array_add(argv, (char *)command);
    g_ptr_array_add(argv, (char *)image);
    return run_expecting_lock_errors(argv);
}

/* qemu-img info [-U] image. */
static bool qemu_img_info(const char *image, bool force_share)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, "qemu-img");
    g_ptr_array_add(argv, "info");
    if (force_share) {
        g_ptr_array_add(argv, "-U");
    }
    g_ptr_array_add(argv, (char *)image);
    return run_expecting_lock_errors(argv);
}

static void lock_or_fail(int fd, const char *path, enum image_lock_mode mode)
{
    GError *err = NULL;
    if (!image_lock(fd, path, mode, &err)) {
        fail_msg("image_lock: %s", err->message);
    }
}

/* Expect image_lock to be refused with a one-line EBUSY naming path. */
static void expect_lock_refused(int fd, const char *path,
                                enum image_lock_mode mode,
                                const char *fragment)
{
    GError *err = NULL;
    assert_false(image_lock(fd, path, mode, &err));
    assert_non_null(err);
    assert_int_equal(err->code, EBUSY);
    assert_non_null(strstr(err->message, path));
    if (!strstr(err->message, fragment)) {
        fail_msg("message '%s' lacks '%s'", err->message, fragment);
    }
    assert_null(strchr(err->message, '\n'));
    g_error_free(err);
}

static void test_writer_blocks_qemu_writers(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    int fd = open_image(f->image, false);

    lock_or_fail(fd, f->image, IMAGE_LOCK_WRITER);
    assert_false(qemu_io(f->image, false, "write 0 512"));
    assert_false(qemu_io(f->image, true, "read 0 512"));
    assert_false(qemu_img_info(f->image, false));
    assert_true(qemu_img_info(f->image, true));

    /* Down to reader: QEMU may read now, still not write. */
    lock_or_fail(fd, f->image, IMAGE_LOCK_READER);
    assert_true(qemu_io(f->image, true, "read 0 512"));
    assert_false(qemu_io(f->image, false, "write 0 512"));
    assert_true(qemu_img_info(f->image, false));

    /* Back up to writer, then release by closing. */
    lock_or_fail(fd, f->image, IMAGE_LOCK_WRITER);
    assert_false(qemu_io(f->image, true, "read 0 512"));
    close(fd);
    assert_true(qemu_io(f->image, false, "write 0 512"));
}

static void test_reader_shares_reading(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    int fd = open_image(f->image, true);

    lock_or_fail(fd, f->image, IMAGE_LOCK_READER);
    assert_true(qemu_io(f->image, true, "read 0 512"));
    assert_false(qemu_io(f->image, false, "write 0 512"));
    close(fd);
}

static void test_own_locks_conflict(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    int writer = open_image(f->image, false);
    int other = open_image(f->image, false);
    int reader = open_image(f->image, true);

    lock_or_fail(writer, f->image, IMAGE_LOCK_WRITER);
    expect_lock_refused(other, f->image, IMAGE_LOCK_WRITER, "write");
    expect_lock_refused(reader, f->image, IMAGE_LOCK_READER, "write");

    lock_or_fail(writer, f->image, IMAGE_LOCK_READER);
    lock_or_fail(reader, f->image, IMAGE_LOCK_READER);
    /* Upgrading is refused while another reader is there, and the refused
     * upgrade keeps the reader locks it had. */
    expect_lock_refused(writer, f->image, IMAGE_LOCK_WRITER, "write");
    assert_false(qemu_io(f->image, false, "write 0 512"));
    close(reader);
    assert_false(qemu_io(f->image, false, "write 0 512"));
    lock_or_fail(writer, f->image, IMAGE_LOCK_WRITER);
    close(writer);
    lock_or_fail(other, f->image, IMAGE_LOCK_WRITER);
    close(other);
}

/* Whether some open file description holds a lock on byte offset. */
static bool byte_locked(const char *image, off_t offset)
{
    int fd = open_image(image, true);
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = offset,
        .l_len = 1,
    };
    assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

/* Whether every lock byte QEMU takes for an image opened read-only or
 * read-write is locked (seen in /proc/locks for qemu-io 7.2). */
static bool qemu_locks_taken(const char *image, bool read_only)
{
    static const off_t reader_bytes[] = { 100, 201, 203 };
    static const off_t writer_bytes[] = { 100, 101, 103, 201, 203 };
    const off_t *bytes = read_only ? reader_bytes : writer_bytes;
    size_t n = read_only ? G_N_ELEMENTS(reader_bytes)
                         : G_N_ELEMENTS(writer_bytes);

    for (size_t i = 0; i < n; i++) {
        if (!byte_locked(image, bytes[i])) {
            return false;
        }
    }
    return true;
}

/* Start qemu-io holding image open until killed, and wait (up to 20 s)
 * until it has taken all its locks. */
static GPid start_qemu_io_holder(const char *image, bool read_only)
{
    const char *argv[] = { "qemu-io", "-c", "sleep 600000", image, NULL,
                           NULL };
    if (read_only) {
        argv[1] = "-r";
        argv[2] = "-c";
        argv[3] = "sleep 600000";
        argv[4] = image;
    }
    GPid pid;
    GError *err = NULL;
    if (!g_spawn_async(NULL, (char **)argv, NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                       G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, &err)) {
        fail_msg("qemu-io: %s", err->message);
    }

    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (!qemu_locks_taken(image, read_only)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fail_msg("qemu-io exited before locking %s", image);
        }
        if (g_get_monotonic_time() > deadline) {
            fail_msg("qemu-io never locked %s", image);
        }
        g_usleep(10000); /* polling interval, not synchronisation */
    }
    return pid;
}

static void stop_qemu_io_holder(GPid pid)
{
    int status;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    g_spawn_close_pid(pid);
}

static void test_refuse_image_qemu_writes(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    GPid pid = start_qemu_io_holder(f->image, false);

    int fd = open_image(f->image, false);
    expect_lock_refused(fd, f->image, IMAGE_LOCK_WRITER, "write lock held");
    expect_lock_refused(fd, f->image, IMAGE_LOCK_READER, "write lock held");

    /* The same through block_node_open, which names the file. */
    GError *err = NULL;
    assert_null(block_node_open(f->image, NULL, true, &err));
    assert_int_equal(err->code, EBUSY);
    assert_non_null(strstr(err->message, "in use by another process"));
    g_clear_error(&err);

    stop_qemu_io_holder(pid);
    lock_or_fail(fd, f->image, IMAGE_LOCK_WRITER);
    close(fd);
}

static void test_share_image_qemu_reads(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    GPid pid = start_qemu_io_holder(f->image, true);

    int fd = open_image(f->image, false);
    lock_or_fail(fd, f->image, IMAGE_LOCK_READER);
    expect_lock_refused(fd, f->image, IMAGE_LOCK_WRITER, "write");
    close(fd);
    stop_qemu_io_holder(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writer_blocks_qemu_writers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_shares_reading, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_own_locks_conflict, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuse_image_qemu_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_share_image_qemu_reads, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
