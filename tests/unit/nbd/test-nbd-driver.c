/* Unit tests for the nbd driver (drivers/nbd.c) against an nbdkit memory
 * export on a Unix socket in a temporary directory; skipped without
 * nbdkit. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"

#define EXPORT_SIZE (64u << 20)

struct fixture {
    char *dir;
    char *uri;
    GPid server;
    struct block_node *node;
};

static int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    g_autofree char *nbdkit = g_find_program_in_path("nbdkit");

    if (!nbdkit) {
        g_free(f);
        skip();
    }
    f->dir = g_dir_make_tmp("chainfs-nbd-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(f->dir, "s.sock", NULL);
    g_autofree char *size = g_strdup_printf("%u", EXPORT_SIZE);
    /* maxdata: requests are split at the server's maximum. */
    char *argv[] = { nbdkit, "-f", "-U", sock, "--filter=blocksize",
                     "memory", size, "maxdata=1M", NULL };
    assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                              NULL, NULL, &f->server, NULL));
    for (int i = 0; i < 400 && !g_file_test(sock, G_FILE_TEST_EXISTS); i++) {
        g_usleep(10000);
    }
    f->uri = g_strdup_printf("nbd+unix:///?socket=%s", sock);
    GError *error = NULL;
    f->node = block_node_open_uri(f->uri, false, &error);
    if (!f->node) {
        fail_msg("%s", error->message);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f) {
        assert_int_equal(block_node_close(f->node), 0);
        kill(f->server, SIGTERM);
        waitpid(f->server, NULL, 0);
        g_autofree char *cmd = g_strdup_printf("rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->dir);
        g_free(f->uri);
        g_free(f);
    }
    return 0;
}

static void test_open(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(f->node->size, EXPORT_SIZE);
    assert_true(block_node_is_remote(f->node));
    assert_string_equal(f->node->filename, f->uri);
    assert_string_equal(f->node->driver->format_name, "nbd");
}

static void test_read_write_split(void **state)
{
    struct fixture *f = *state;
    const size_t len = 5u << 20;     /* > maxdata: split */
    g_autofree uint8_t *out = g_malloc(len);
    g_autofree uint8_t *in = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(i * 7 + 3);
    }
    assert_int_equal(f->node->driver->write(f->node, 3, len, out), 0);
    assert_int_equal(f->node->driver->read(f->node, 3, len, in), 0);
    assert_memory_equal(in, out, len);
    assert_int_equal(f->node->driver->flush(f->node), 0);
}

static void test_zeroes_and_status(void **state)
{
    struct fixture *f = *state;
    g_autofree uint8_t *buf = g_malloc(1 << 20);
    uint64_t pnum;

    memset(buf, 0xaa, 1 << 20);
    assert_int_equal(f->node->driver->write(f->node, 16 << 20, 1 << 20, buf),
                     0);
    int status = f->node->driver->block_status(f->node, 16 << 20, 1 << 20,
                                               &pnum);
    assert_true(status & BLOCK_STATUS_DATA);
    assert_int_equal(block_node_write_zeroes(f->node, (16 << 20) + 100,
                                             (1 << 20) - 200, 0), 0);
    assert_int_equal(f->node->driver->read(f->node, 16 << 20, 1 << 20, buf),
                     0);
    assert_int_equal(buf[99], 0xaa);
    for (size_t i = 100; i < (1 << 20) - 100; i++) {
        if (buf[i] != 0) {
            fail_msg("byte %zu is %#x, not zero", i, buf[i]);
        }
    }
    assert_int_equal(buf[(1 << 20) - 100], 0xaa);
    /* Never written: a hole, reported as zero. */
    status = f->node->driver->block_status(f->node, 40 << 20, 1 << 20, &pnum);
    assert_true(status & BLOCK_STATUS_ZERO);
    assert_true(status & BLOCK_STATUS_ALLOCATED);
    assert_true(pnum > 0 && pnum <= 1 << 20);
}

struct writer_arg {
    struct block_node *node;
    unsigned index;
};

static void *writer(void *opaque)
{
    struct writer_arg *arg = opaque;
    uint8_t buf[65536];

    for (unsigned i = 0; i < 64; i++) {
        memset(buf, arg->index * 64 + i, sizeof(buf));
        uint64_t offset = (32ull << 20) + (arg->index * 64 + i) * sizeof(buf);
        if (arg->node->driver->write(arg->node, offset, sizeof(buf), buf)) {
            return (void *)1;
        }
    }
    return NULL;
}

/* Many threads, one connection: every write lands where it should. */
static void test_concurrent(void **state)
{
    struct fixture *f = *state;
    pthread_t threads[4];
    struct writer_arg args[4];

    for (unsigned t = 0; t < 4; t++) {
        args[t] = (struct writer_arg){ f->node, t };
        assert_int_equal(pthread_create(&threads[t], NULL, writer, &args[t]),
                         0);
    }
    for (unsigned t = 0; t < 4; t++) {
        void *ret;
        pthread_join(threads[t], &ret);
        assert_null(ret);
    }
    uint8_t buf[65536];
    for (unsigned n = 0; n < 256; n++) {
        assert_int_equal(f->node->driver->read(f->node,
                                               (32ull << 20) + n * sizeof(buf),
                                               sizeof(buf), buf), 0);
        assert_int_equal(buf[0], (uint8_t)n);
        assert_int_equal(buf[sizeof(buf) - 1], (uint8_t)n);
    }
}

static void test_open_errors(void **state)
{
    struct fixture *f = *state;
    GError *error = NULL;
    g_autofree char *missing = g_strdup_printf("nbd+unix:///?socket=%s/none",
                                               f->dir);

    assert_null(block_node_open_uri(missing, false, &error));
    assert_int_equal(error->code, ENOENT);
    assert_non_null(strstr(error->message, missing));
    g_clear_error(&error);
    assert_null(block_node_open_uri("nbds://h/x", false, &error));
    assert_int_equal(error->code, ENOTSUP);
    g_clear_error(&error);
    assert_null(block_node_open_uri("gopher://h/x", false, &error));
    assert_int_equal(error->code, ENOTSUP);
    g_clear_error(&error);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_split, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zeroes_and_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
