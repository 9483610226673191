/* Unit tests for core/chain.c: backing name resolution, opening chains,
 * and every way a chain can be refused.  Images are made with qemu-img. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"
#include "test-util.h"

#define MiB (1024ULL * 1024)

/* The qcow2 backing format header extension. */
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU

struct fixture {
    char *dir;
};

static int setup(void **state)
{
    if (!test_have_program("qemu-img")) {
        return 0;
    }
    struct fixture *f = g_new0(struct fixture, 1);
    f->dir = test_dir_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f) {
        test_dir_remove(f->dir);
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

static char *path_in(struct fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

/* Expect chain_open to fail with code and a one-line message containing
 * each of the NULL-terminated fragments. */
static void expect_open_error(const char *filename, const char *format,
                              bool read_only, int code, ...)
{
    GError *err = NULL;
    struct block_node *top = chain_open(filename, format, read_only, &err);
    if (top) {
        chain_close(top);
        fail_msg("%s: opened, but should fail", filename);
    }
    assert_non_null(err);
    if (err->code != code) {
        fail_msg("%s: error code %d, expected %d: %s", filename, err->code,
                 code, err->message);
    }
    assert_null(strchr(err->message, '\n'));

    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));) {
        if (!strstr(err->message, s)) {
            fail_msg("message '%s' lacks '%s'", err->message, s);
        }
    }
    va_end(ap);
    g_error_free(err);
}

static void expect_resolve(const char *overlay, const char *backing,
                           const char *expected)
{
    GError *err = NULL;
    g_autofree char *path = chain_resolve_backing(overlay, backing, &err);
    if (!path) {
        fail_msg("resolve %s from %s: %s", backing, overlay, err->message);
    }
    assert_string_equal(path, expected);
}

static void expect_resolve_error(const char *backing, int code)
{
    GError *err = NULL;
    char *path = chain_resolve_backing("/img/top.qcow2", backing, &err);
    assert_null(path);
    assert_non_null(err);
    assert_int_equal(err->code, code);
    assert_non_null(strstr(err->message, "/img/top.qcow2"));
    g_error_free(err);
}

static void test_resolve_backing(void **state)
{
    (void)state;
    expect_resolve("/img/vm/top.qcow2", "base.qcow2", "/img/vm/base.qcow2");
    expect_resolve("/img/vm/top.qcow2", "../base.qcow2",
                   "/img/vm/../base.qcow2");
    expect_resolve("/img/vm/top.qcow2", "/other/base.raw",
                   "/other/base.raw");
    expect_resolve("vm/top.qcow2", "base.qcow2", "vm/base.qcow2");
    expect_resolve("top.qcow2", "base.qcow2", "base.qcow2");
    /* A '/' before the ':' means no protocol. */
    expect_resolve("/img/top.qcow2", "./a:b.qcow2", "/img/./a:b.qcow2");
    expect_resolve("/img/top.qcow2", "dir/a:b", "/img/dir/a:b");
    /* file: is stripped. */
    expect_resolve("/img/top.qcow2", "file:base.qcow2", "/img/base.qcow2");
    expect_resolve("/img/top.qcow2", "file:/abs/base.qcow2",
                   "/abs/base.qcow2");

    expect_resolve_error("json:{\"driver\":\"qcow2\"}", ENOTSUP);
    expect_resolve_error("nbd:host:10809", ENOTSUP);
    expect_resolve_error("http://example.com/base.qcow2", ENOTSUP);
    expect_resolve_error(":base", ENOTSUP);
    expect_resolve_error("", EINVAL);
    expect_resolve_error("file:", EINVAL);
}

static void test_open_three_layers(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *base = path_in(f, "base.raw");
    g_autofree char *mid = path_in(f, "mid.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");

    test_create_sparse(base, 2 * MiB);
    test_write_file(base, "base", 4, 0);
    /* mid names base relatively, top names mid absolutely. */
    test_qcow2_create(mid, 3 * MiB, "base.raw", "raw");
    test_qcow2_create(top, 4 * MiB, mid, "qcow2");

    /* Open through a relative spelling from another directory. */
    g_autofree char *cwd = g_get_current_dir();
    assert_int_equal(chdir(f->dir), 0);
    GError *err = NULL;
    struct block_node *node = chain_open("top.qcow2", NULL, false, &err);
    assert_int_equal(chdir(cwd), 0);
    if (!node) {
        fail_msg("%s", err->message);
    }

    const char *names[] = { top, mid, base };
    const char *formats[] = { "qcow2", "qcow2", "raw" };
    const uint64_t sizes[] = { 4 * MiB, 3 * MiB, 2 * MiB };
    struct block_node *layer = node;
    for (unsigned depth = 0; depth < 3; depth++, layer = layer->backing) {
        assert_non_null(layer);
        assert_string_equal(layer->filename, names[depth]);
        assert_string_equal(layer->driver->format_name, formats[depth]);
        assert_int_equal(layer->size, sizes[depth]);
        assert_int_equal(layer->depth, depth);
        assert_int_equal(layer->read_only, depth > 0);
    }
    assert_null(layer);

    char buf[4];
    assert_int_equal(node->driver->read(node, 0, 4, buf), 0);
    assert_memory_equal(buf, "base", 4);
    assert_int_equal(chain_close(node), 0);
}

/* QEMU resolves a relative backing name against the overlay's name as
 * spelled, even if that is a symlink into another directory. */
static void test_resolve_through_symlink(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *dir_a = path_in(f, "a");
    g_autofree char *dir_b = path_in(f, "b");
    assert_int_equal(mkdir(dir_a, 0755), 0);
    assert_int_equal(mkdir(dir_b, 0755), 0);
    g_autofree char *base_a = g_build_filename(dir_a, "base.qcow2", NULL);
    g_autofree char *base_b = g_build_filename(dir_b, "base.qcow2", NULL);
    g_autofree char *top = g_build_filename(dir_a, "top.qcow2", NULL);
    g_autofree char *link = g_build_filename(dir_b, "link.qcow2", NULL);
    test_qcow2_create(base_a, 1 * MiB, NULL, NULL);
    test_qcow2_create(base_b, 2 * MiB, NULL, NULL);
    test_qcow2_create(top, 1 * MiB, "base.qcow2", "qcow2");
    assert_int_equal(symlink(top, link), 0);

    GError *err = NULL;
    struct block_node *node = chain_open(link, NULL, true, &err);
    if (!node) {
        fail_msg("%s", err->message);
    }
    assert_string_equal(node->filename, top); /* canonical */
    assert_string_equal(node->backing->filename, base_b);
    assert_int_equal(node->backing->size, 2 * MiB);
    chain_close(node);
}

static void test_protocol_refused(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *json = path_in(f, "json.qcow2");
    g_autofree char *nbd = path_in(f, "nbd.qcow2");

    test_qcow2_create(json, MiB,
                      "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":"
                      "\"file\",\"filename\":\"/etc/passwd\"}}", "qcow2");
    test_qcow2_create(nbd, MiB, "nbd:localhost:10809", "raw");
    expect_open_error(json, NULL, true, ENOTSUP, json,
                      "unsupported backing file protocol", NULL);
    expect_open_error(nbd, NULL, false, ENOTSUP, nbd, "nbd:", NULL);
    /* Nothing is left locked or open: the top opens read-write again. */
    GError *err = NULL;
    struct block_node *node = block_node_open(nbd, "qcow2", false, &err);
    assert_non_null(node);
    block_node_close(node);
}

static void test_file_prefix_stripped(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");

    test_qcow2_create(base, MiB, NULL, NULL);
    test_qcow2_create(top, MiB, "file:base.qcow2", "qcow2");
    GError *err = NULL;
    struct block_node *node = chain_open(top, NULL, false, &err);
    if (!node) {
        fail_msg("%s", err->message);
    }
    assert_string_equal(node->backing->filename, base);
    chain_close(node);
}

static void test_loops(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *a = path_in(f, "a.qcow2");
    g_autofree char *b = path_in(f, "b.qcow2");
    g_autofree char *self = path_in(f, "self.qcow2");
    g_autofree char *c = path_in(f, "c.qcow2");
    g_autofree char *hard = path_in(f, "hard.qcow2");

    test_qcow2_create(a, MiB, "b.qcow2", "qcow2");
    test_qcow2_create(b, MiB, "a.qcow2", "qcow2");
    test_qcow2_create(self, MiB, "self.qcow2", "qcow2");
    /* c -> hard, a hard link to c: the same inode under another name. */
    test_qcow2_create(c, MiB, "hard.qcow2", "qcow2");
    assert_int_equal(link(c, hard), 0);

    expect_open_error(a, NULL, false, ELOOP, "backing chain loop", a, NULL);
    expect_open_error(a, NULL, true, ELOOP, "backing chain loop", NULL);
    expect_open_error(self, NULL, false, ELOOP, "backing chain loop", self,
                      NULL);
    expect_open_error(c, NULL, false, ELOOP, "backing chain loop", hard,
                      NULL);
}

/* A limit small enough to build quickly; the default is tested by the
 * deep-chain shell tests. */
#define TEST_MAX_DEPTH 64

static void test_depth_limit(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    char name[32], prev[32];

    chain_set_max_depth(TEST_MAX_DEPTH);
    /* layer0 <- layer1 <- ... <- layerN: opening layerN opens N+1 layers. */
    for (unsigned i = 0; i <= TEST_MAX_DEPTH; i++) {
        g_snprintf(name, sizeof(name), "layer%u.qcow2", i);
        g_autofree char *path = path_in(f, name);
        test_qcow2_create(path, MiB, i ? prev : NULL, i ? "qcow2" : NULL);
        memcpy(prev, name, sizeof(name));
    }

    g_snprintf(name, sizeof(name), "layer%u.qcow2", TEST_MAX_DEPTH - 1);
    g_autofree char *deepest_ok = path_in(f, name);
    GError *err = NULL;
    struct block_node *node = chain_open(deepest_ok, NULL, true, &err);
    if (!node) {
        fail_msg("%u layers refused: %s", TEST_MAX_DEPTH, err->message);
    }
    unsigned layers = 0;
    for (struct block_node *n = node; n; n = n->backing) {
        assert_int_equal(n->depth, layers);
        layers++;
    }
    assert_int_equal(layers, TEST_MAX_DEPTH);
    chain_close(node);

    /* The error names the chain's top and the limit. */
    g_snprintf(name, sizeof(name), "layer%u.qcow2", TEST_MAX_DEPTH);
    g_autofree char *too_deep = path_in(f, name);
    expect_open_error(too_deep, NULL, true, ELOOP, "backing chain too deep",
                      name, "more than 64 layers", "--max-chain-depth",
                      NULL);
    chain_set_max_depth(CHAIN_DEFAULT_MAX_DEPTH);
}

static void test_missing_backing(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *missing = path_in(f, "sub/missing.qcow2");

    test_qcow2_create(top, MiB, "sub/missing.qcow2", "qcow2");
    expect_open_error(top, NULL, false, ENOENT, missing, top, NULL);

    g_autofree char *absent_top = path_in(f, "absent.qcow2");
    expect_open_error(absent_top, NULL, false, ENOENT, absent_top, NULL);
}

static void test_not_a_file(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *fifo = path_in(f, "fifo");
    g_autofree char *dir = path_in(f, "dir");

    test_qcow2_create(top, MiB, "/dev/null", "raw");
    expect_open_error(top, NULL, false, EINVAL, "/dev/null",
                      "not a regular file or block device", NULL);

    /* A FIFO must not block the open, read-only or not. */
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_open_error(fifo, NULL, true, EINVAL, fifo,
                      "not a regular file or block device", NULL);
    expect_open_error(fifo, "raw", false, EINVAL, fifo,
                      "not a regular file or block device", NULL);

    assert_int_equal(mkdir(dir, 0755), 0);
    expect_open_error(dir, NULL, true, EINVAL,
                      "not a regular file or block device", NULL);
    expect_open_error(dir, NULL, false, EINVAL,
                      "not a regular file or block device", NULL);
}

/* A raw layer whose content looks like qcow2 stays raw when it is given
 * or recorded as raw: probing it would let a guest read host files. */
static void test_raw_never_probed(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *fake = path_in(f, "fake.raw");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *secret = path_in(f, "secret.raw");

    /* fake.raw is, byte for byte, a qcow2 image backed by secret.raw. */
    test_create_sparse(secret, MiB);
    test_write_file(secret, "secret", 6, 0);
    test_qcow2_create(fake, 8 * MiB, "secret.raw", "raw");
    struct stat st;
    assert_int_equal(stat(fake, &st), 0);

    test_qcow2_create(top, 8 * MiB, "fake.raw", "raw");
    GError *err = NULL;
    struct block_node *node = chain_open(top, NULL, false, &err);
    if (!node) {
        fail_msg("%s", err->message);
    }
    assert_string_equal(node->backing->driver->format_name, "raw");
    assert_int_equal(node->backing->size, st.st_size);
    assert_null(node->backing->backing);
    chain_close(node);

    /* Given as raw on the command line: the same. */
    node = chain_open(fake, "raw", true, &err);
    assert_non_null(node);
    assert_string_equal(node->driver->format_name, "raw");
    assert_null(node->backing);
    chain_close(node);

    /* Without a format, the top is probed: qcow2. */
    node = chain_open(fake, NULL, true, &err);
    assert_non_null(node);
    assert_string_equal(node->driver->format_name, "qcow2");
    assert_string_equal(node->backing->driver->format_name, "raw");
    chain_close(node);
}

/* No backing format recorded: the backing layer is probed. */
static void test_backing_probed_without_format(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *raw = path_in(f, "base.raw");
    g_autofree char *top_raw = path_in(f, "top-raw.qcow2");

    test_qcow2_create(base, 2 * MiB, NULL, NULL);
    test_qcow2_create(top, MiB, "base.qcow2", "qcow2");
    /* Turn the backing format extension into an unknown one, which qcow2
     * readers ignore. */
    test_patch_be32(top, QCOW2_EXT_BACKING_FORMAT, 0x12345678);

    GError *err = NULL;
    struct block_node *node = chain_open(top, NULL, false, &err);
    if (!node) {
        fail_msg("%s", err->message);
    }
    assert_null(node->backing_format);
    assert_string_equal(node->backing->driver->format_name, "qcow2");
    assert_int_equal(node->backing->size, 2 * MiB);
    chain_close(node);

    test_create_sparse(raw, MiB);
    test_qcow2_create(top_raw, MiB, "base.raw", "raw");
    test_patch_be32(top_raw, QCOW2_EXT_BACKING_FORMAT, 0x12345678);
    node = chain_open(top_raw, NULL, false, &err);
    assert_non_null(node);
    assert_string_equal(node->backing->driver->format_name, "raw");
    chain_close(node);
}

static void test_unknown_format(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *base = path_in(f, "base.raw");
    g_autofree char *top = path_in(f, "top.qcow2");

    test_create_sparse(base, MiB);
    expect_open_error(base, "vmdk", false, EINVAL, base, "unknown format",
                      "vmdk", NULL);
    test_qcow2_create(top, MiB, "base.raw", "vmdk");
    expect_open_error(top, NULL, false, EINVAL, base, "unknown format",
                      NULL);
}

/* The top is locked for writing, backing layers for reading: a second
 * opener can share a backing layer read-only but not write anything. */
static void test_layers_locked(void **state)
{
    struct fixture *f = fixture_or_skip(state);
    g_autofree char *base = path_in(f, "base.qcow2");
    g_autofree char *top = path_in(f, "top.qcow2");
    g_autofree char *top2 = path_in(f, "top2.qcow2");

    test_qcow2_create(base, MiB, NULL, NULL);
    test_qcow2_create(top, MiB, "base.qcow2", "qcow2");
    test_qcow2_create(top2, MiB, "base.qcow2", "qcow2");

    GError *err = NULL;
    struct block_node *node = chain_open(top, NULL, false, &err);
    assert_non_null(node);

    expect_open_error(top, NULL, false, EBUSY, top, "in use", NULL);
    expect_open_error(top, NULL, true, EBUSY, top, "in use", NULL);
    expect_open_error(base, NULL, false, EBUSY, base, "in use", NULL);

    /* Two chains may share a backing layer. */
    struct block_node *node2 = chain_open(top2, NULL, false, &err);
    if (!node2) {
        fail_msg("%s", err->message);
    }
    chain_close(node2);
    chain_close(node);

    node = chain_open(base, NULL, false, &err);
    assert_non_null(node);
    chain_close(node);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_backing),
        cmocka_unit_test_setup_teardown(test_open_three_layers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolve_through_symlink, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_protocol_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_file_prefix_stripped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_loops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_backing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_never_probed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backing_probed_without_format,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_format, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_layers_locked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
