/* Helpers shared by the core unit tests. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "test-util.h"

char *test_dir_new(void)
{
    GError *err = NULL;
    char *dir = g_dir_make_tmp("chainfs-core-XXXXXX", &err);
    assert_non_null(dir);
    return dir;
}

void test_dir_remove(const char *dir)
{
    const char *argv[] = { "rm", "-rf", "--", dir, NULL };
    assert_true(test_run(argv, NULL));
}

void test_write_file(const char *path, const void *data, size_t len,
                     uint64_t offset)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
    close(fd);
}

void test_create_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

bool test_run(const char *const *argv, char **stderr_out)
{
    GError *err = NULL;
    char *err_text = NULL;
    int status = -1;

    bool spawned = g_spawn_sync(NULL, (char **)argv, NULL,
                                G_SPAWN_SEARCH_PATH |
                                G_SPAWN_STDOUT_TO_DEV_NULL,
                                NULL, NULL, NULL, &err_text, &status, &err);
    if (!spawned) {
        fail_msg("cannot run %s: %s", argv[0], err->message);
    }
    bool ok = g_spawn_check_wait_status(status, NULL);
    if (stderr_out) {
        *stderr_out = err_text;
    } else {
        g_free(err_text);
    }
    return ok;
}

bool test_have_program(const char *name)
{
    g_autofree char *path = g_find_program_in_path(name);
    return path != NULL;
}

void test_qcow2_create(const char *path, uint64_t size, const char *backing,
                       const char *backing_fmt)
{
    g_autofree char *size_text = g_strdup_printf("%" PRIu64, size);
    const char *argv[16];
    int n = 0;

    argv[n++] = "qemu-img";
    argv[n++] = "create";
    argv[n++] = "-q";
    argv[n++] = "-f";
    argv[n++] = "qcow2";
    if (backing) {
        /* Unsafe: the backing may be missing, a loop or a protocol; the
         * tests want exactly those. */
        argv[n++] = "-u";
        argv[n++] = "-b";
        argv[n++] = backing;
        if (backing_fmt) {
            argv[n++] = "-F";
            argv[n++] = backing_fmt;
        }
    }
    argv[n++] = path;
    argv[n++] = size_text;
    argv[n] = NULL;

    g_autofree char *err_text = NULL;
    if (!test_run(argv, &err_text)) {
        fail_msg("qemu-img create %s failed: %s", path, err_text);
    }
}

void test_patch_be32(const char *path, uint32_t from, uint32_t to)
{
    uint8_t buf[65536];
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    assert_true(n >= 4);

    uint32_t from_be = GUINT32_TO_BE(from), to_be = GUINT32_TO_BE(to);
    for (ssize_t i = 0; i + 4 <= n; i++) {
        if (memcmp(buf + i, &from_be, 4) == 0) {
            assert_int_equal(pwrite(fd, &to_be, 4, i), 4);
            close(fd);
            return;
        }
    }
    close(fd);
    fail_msg("%s: 0x%08x not found", path, from);
}
