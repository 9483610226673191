/* chainfs qcow2: a process killed in the middle of writing leaves an image
 * that qemu-img check finds at worst leaking clusters, never corrupt, and
 * everything flushed before the kill is still there. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

static char *tmpdir;

#define SIZE (4u << 20)
#define FLUSHED_LEN 65536   /* written and flushed before any other op */

/* The child: write, zero and discard at random, reporting each completed
 * operation with one byte on the pipe, until it is killed. */
static void child_run(const char *path, int report_fd, uint32_t seed)
{
    GError *err = NULL;
    qcow2_l2_cache_bytes = 0;         /* evict all the time */
    qcow2_refblock_cache_bytes = 0;
    struct block_node *node = tu_open(path, &qcow2_driver, false, NULL,
                                      &err);
    if (!node) {
        _exit(2);
    }
    uint8_t *buf = g_malloc(FLUSHED_LEN * 2);
    tu_fill(buf, FLUSHED_LEN, 1);
    if (qcow2_driver.write(node, 0, FLUSHED_LEN, buf) < 0 ||
        qcow2_driver.flush(node) < 0) {
        _exit(3);
    }
    GRand *rand = g_rand_new_with_seed(seed);
    for (;;) {
        uint64_t len = g_rand_int_range(rand, 1, FLUSHED_LEN * 2);
        uint64_t off = g_rand_int_range(rand, FLUSHED_LEN, SIZE - len);
        int kind = g_rand_int_range(rand, 0, 8);
        int ret;
        if (kind < 5) {
            tu_fill(buf, len, g_rand_int(rand));
            ret = qcow2_driver.write(node, off, len, buf);
        } else if (kind < 7) {
            ret = qcow2_driver.write_zeroes(node, off, len,
                                            kind == 5 ? BLOCK_ZERO_UNMAP : 0);
        } else {
            ret = qcow2_driver.flush(node);
        }
        if (ret < 0) {
            _exit(4);
        }
        char c = 1;
        if (write(report_fd, &c, 1) != 1) {
            _exit(5);
        }
    }
}

static void crash_once(const char *path, const char *opts_str,
                       unsigned ops_before_kill, uint32_t seed)
{
    g_autofree char *size = g_strdup_printf("%u", SIZE);
    unlink(path);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "qcow2",
                            "-o", opts_str, path, size, NULL), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_run(path, fds[1], seed);
        _exit(0);
    }
    close(fds[1]);
    /* Let the child get through some operations, then kill it while it
     * is in the middle of the next ones. */
    unsigned seen = 0;
    char c;
    while (seen < ops_before_kill && read(fds[0], &c, 1) == 1) {
        seen++;
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(seen, ops_before_kill);

    g_autofree char *out = NULL;
    int ret = tu_check(path, &out);
    if (ret != 0 && ret != 3) {   /* 3: leaked clusters only */
        fail_msg("after kill at op %u (%s): qemu-img check %d\n%s",
                 ops_before_kill, opts_str, ret, out);
    }
    GError *err = NULL;
    struct block_node *node = tu_open(path, &qcow2_driver, true, NULL, &err);
    assert_non_null(node);
    uint8_t *expect = g_malloc(FLUSHED_LEN);
    uint8_t *got = g_malloc(FLUSHED_LEN);
    tu_fill(expect, FLUSHED_LEN, 1);
    assert_int_equal(qcow2_driver.read(node, 0, FLUSHED_LEN, got), 0);
    assert_memory_equal(expect, got, FLUSHED_LEN);
    tu_close(node);
    g_free(expect);
    g_free(got);
}

static void test_kill_during_writes(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    g_autofree char *path = g_build_filename(tmpdir, "crash.qcow2", NULL);
    static const char *configs[] = {
        "cluster_size=4096",
        "cluster_size=512,refcount_bits=64",
        "cluster_size=1024,refcount_bits=1,compat=1.1",
    };
    for (unsigned c = 0; c < G_N_ELEMENTS(configs); c++) {
        for (unsigned i = 0; i < 6; i++) {
            crash_once(path, configs[c], 3 + i * 17, c * 100 + i);
        }
    }
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_writes),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
