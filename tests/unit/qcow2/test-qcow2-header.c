/* chainfs qcow2: create, reopen, set_backing, grow, feature bits, and
 * hostile headers (clean errors, never a crash). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

static char *tmpdir;

static char *path_in_tmp(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void create_image(const char *path, uint64_t size, uint32_t cs,
                         const char *backing, const char *backing_fmt)
{
    struct block_create_opts opts = {
        .size = size, .cluster_size = cs,
        .backing_name = backing, .backing_format = backing_fmt,
    };
    GError *err = NULL;
    unlink(path);
    assert_true(qcow2_driver.create(path, &opts, &err));
    assert_null(err);
}

static void patch(const char *path, uint64_t offset, const void *data,
                  size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
    close(fd);
}

static void patch32(const char *path, uint64_t offset, uint32_t v)
{
    v = htobe32(v);
    patch(path, offset, &v, 4);
}

static void patch64(const char *path, uint64_t offset, uint64_t v)
{
    v = htobe64(v);
    patch(path, offset, &v, 8);
}

/* Open must fail with code and a message that names the file and
 * contains needle. */
static void expect_open_error(const char *path, bool read_only, int code,
                              const char *needle)
{
    GError *err = NULL;
    struct block_node *node = tu_open(path, &qcow2_driver, read_only, NULL,
                                      &err);
    if (node) {
        tu_close(node);
        fail_msg("%s opened, expected error '%s'", path, needle);
    }
    assert_non_null(err);
    if (err->code != code || !strstr(err->message, needle) ||
        !strstr(err->message, path) || strchr(err->message, '\n')) {
        fail_msg("got error %d '%s', expected %d '%s'", err->code,
                 err->message, code, needle);
    }
    g_error_free(err);
}

static struct block_node *open_ok(const char *path, bool read_only)
{
    GError *err = NULL;
    struct block_node *node = tu_open(path, &qcow2_driver, read_only, NULL,
                                      &err);
    if (!node) {
        fail_msg("open %s: %s", path, err->message);
    }
    return node;
}

static void test_create_reopen(void **state)
{
    (void)state;
    static const uint32_t sizes[] = { 512, 4096, 65536, 2u << 20 };
    for (unsigned i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *path = path_in_tmp("c.qcow2");
        create_image(path, (1ull << 30) + 4096 * i, sizes[i], NULL, NULL);
        struct block_node *node = open_ok(path, false);
        assert_int_equal(node->size, (1ull << 30) + 4096 * i);
        assert_null(node->backing_name);
        uint8_t buf[4096];
        tu_fill(buf, sizeof(buf), i);
        assert_int_equal(qcow2_driver.write(node, 1000, sizeof(buf), buf), 0);
        assert_int_equal(tu_close(node), 0);

        node = open_ok(path, true);
        uint8_t back[4096];
        assert_int_equal(qcow2_driver.read(node, 1000, sizeof(back), back),
                         0);
        assert_memory_equal(buf, back, sizeof(buf));
        assert_int_equal(tu_close(node), 0);
        if (tu_have_qemu()) {
            g_autofree char *out = NULL;
            assert_int_equal(tu_check(path, &out), 0);
        }
    }
    /* Exclusive creation. */
    g_autofree char *path = path_in_tmp("c.qcow2");
    struct block_create_opts opts = { .size = 1 << 20 };
    GError *err = NULL;
    assert_false(qcow2_driver.create(path, &opts, &err));
    assert_int_equal(err->code, EEXIST);
    g_clear_error(&err);
    opts.cluster_size = 1000;
    g_autofree char *bad = path_in_tmp("bad.qcow2");
    assert_false(qcow2_driver.create(bad, &opts, &err));
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    /* Zero-sized images are valid too. */
    g_autofree char *empty = path_in_tmp("empty.qcow2");
    create_image(empty, 0, 0, NULL, NULL);
    struct block_node *node = open_ok(empty, false);
    assert_int_equal(node->size, 0);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        assert_int_equal(tu_check(empty, NULL), 0);
    }
}

static void test_create_backing_info(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    g_autofree char *path = path_in_tmp("b.qcow2");
    create_image(path, 1 << 20, 0, "base image.raw", "raw");
    g_autofree char *out = NULL;
    assert_int_equal(tu_run(&out, "qemu-img", "info", "--output=json",
                            "-U", path, NULL), 0);
    assert_non_null(strstr(out, "\"backing-filename\": \"base image.raw\""));
    assert_non_null(strstr(out, "\"backing-filename-format\": \"raw\""));
    assert_non_null(strstr(out, "\"cluster-size\": 65536"));
    assert_non_null(strstr(out, "\"compat\": \"1.1\""));

    struct block_node *node = open_ok(path, true);
    assert_string_equal(node->backing_name, "base image.raw");
    assert_string_equal(node->backing_format, "raw");
    assert_int_equal(tu_close(node), 0);
}

static void test_set_backing(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("sb.qcow2");
    create_image(path, 8 << 20, 4096, "old.qcow2", "qcow2");
    /* An unknown extension must survive the rewrite. */
    struct block_node *node = open_ok(path, false);
    uint8_t buf[8192];
    tu_fill(buf, sizeof(buf), 7);
    assert_int_equal(qcow2_driver.write(node, 4096 * 3, sizeof(buf), buf), 0);
    GError *err = NULL;
    assert_true(qcow2_driver.set_backing(node, "/some/where/new-base.raw",
                                         "raw", &err));
    assert_string_equal(node->backing_name, "/some/where/new-base.raw");
    assert_string_equal(node->backing_format, "raw");
    assert_int_equal(tu_close(node), 0);

    node = open_ok(path, false);
    assert_string_equal(node->backing_name, "/some/where/new-base.raw");
    assert_string_equal(node->backing_format, "raw");
    uint8_t back[8192];
    assert_int_equal(qcow2_driver.read(node, 4096 * 3, sizeof(back), back),
                     0);
    assert_memory_equal(buf, back, sizeof(buf));
    /* Too long a name is refused and changes nothing. */
    char longname[2000];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_false(qcow2_driver.set_backing(node, longname, NULL, &err));
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    /* Removing the backing file. */
    assert_true(qcow2_driver.set_backing(node, NULL, NULL, &err));
    assert_null(node->backing_name);
    assert_int_equal(tu_close(node), 0);
    node = open_ok(path, true);
    assert_null(node->backing_name);
    assert_null(node->backing_format);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        assert_int_equal(tu_check(path, NULL), 0);
        /* Back again, checked by qemu-img info. */
        node = open_ok(path, false);
        assert_true(qcow2_driver.set_backing(node, "x.qcow2", "qcow2",
                                             &err));
        assert_int_equal(tu_close(node), 0);
        g_autofree char *out = NULL;
        assert_int_equal(tu_run(&out, "qemu-img", "info", "--output=json",
                                "-U", path, NULL), 0);
        assert_non_null(strstr(out, "\"backing-filename\": \"x.qcow2\""));
        assert_non_null(strstr(out, "\"backing-filename-format\": \"qcow2\""));
    }
}

static void test_grow(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("g.qcow2");
    /* 512-byte clusters: one L2 table covers 32 KiB, so growing from 64 KiB
     * to 64 MiB needs a much bigger L1 table. */
    create_image(path, 64 << 10, 512, NULL, NULL);
    struct block_node *node = open_ok(path, false);
    uint8_t buf[3000];
    tu_fill(buf, sizeof(buf), 3);
    assert_int_equal(qcow2_driver.write(node, 40000, sizeof(buf), buf), 0);
    GError *err = NULL;
    assert_true(qcow2_driver.grow(node, 64 << 20, &err));
    assert_int_equal(node->size, 64 << 20);
    assert_int_equal(qcow2_driver.write(node, (64 << 20) - 3000, 3000, buf),
                     0);
    assert_false(qcow2_driver.grow(node, 1 << 20, &err));
    g_clear_error(&err);
    assert_int_equal(tu_close(node), 0);

    node = open_ok(path, true);
    assert_int_equal(node->size, 64 << 20);
    uint8_t back[3000];
    assert_int_equal(qcow2_driver.read(node, 40000, 3000, back), 0);
    assert_memory_equal(buf, back, 3000);
    assert_int_equal(qcow2_driver.read(node, (64 << 20) - 3000, 3000, back),
                     0);
    assert_memory_equal(buf, back, 3000);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        g_autofree char *out = NULL;
        if (tu_check(path, &out) != 0) {
            fail_msg("qemu-img check: %s", out);
        }
    }
    /* Growing within the same L1 table only rewrites the size. */
    node = open_ok(path, false);
    assert_true(qcow2_driver.grow(node, (64 << 20) + 512, &err));
    assert_int_equal(tu_close(node), 0);
    node = open_ok(path, true);
    assert_int_equal(node->size, (64 << 20) + 512);
    assert_int_equal(tu_close(node), 0);
}

static void test_feature_bits(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("f.qcow2");

    create_image(path, 1 << 20, 0, NULL, NULL);
    patch64(path, 72, QCOW2_INCOMPAT_DIRTY);
    tu_close(open_ok(path, true));
    expect_open_error(path, false, EINVAL, "qemu-img check -r all");

    patch64(path, 72, QCOW2_INCOMPAT_CORRUPT);
    tu_close(open_ok(path, true));
    expect_open_error(path, false, EROFS, "corrupt");

    patch64(path, 72, 1ull << 9);
    expect_open_error(path, true, ENOTSUP, "bit 9");
    patch64(path, 72, QCOW2_INCOMPAT_DATA_FILE);
    expect_open_error(path, true, ENOTSUP, "external data file");
    patch64(path, 72, QCOW2_INCOMPAT_EXTL2);
    expect_open_error(path, true, ENOTSUP, "extended L2");
    patch64(path, 72, QCOW2_INCOMPAT_COMPRESSION);
    expect_open_error(path, true, EINVAL, "compression type");
    uint8_t zstd = 1;
    patch(path, 104, &zstd, 1);
    expect_open_error(path, true, ENOTSUP, "compression type 1");
    patch64(path, 72, 0);
    zstd = 0;
    patch(path, 104, &zstd, 1);

    /* Unknown autoclear bits are cleared by a read-write open. */
    patch64(path, 88, 0xff00);
    tu_close(open_ok(path, true));
    tu_close(open_ok(path, false));
    int fd = open(path, O_RDONLY);
    uint64_t autoclear = 1;
    assert_int_equal(pread(fd, &autoclear, 8, 88), 8);
    close(fd);
    assert_int_equal(autoclear, 0);

    /* Internal snapshots: read-only only. */
    patch32(path, 60, 1);
    patch64(path, 64, 65536 * 3);
    tu_close(open_ok(path, true));
    expect_open_error(path, false, ENOTSUP, "snapshots");
    patch32(path, 60, 0);
    patch64(path, 64, 0);

    patch32(path, 32, 2);
    expect_open_error(path, true, ENOTSUP, "encrypt");
    patch32(path, 32, 0);
    tu_close(open_ok(path, false));
}

/* Append a header extension right after the 112-byte header. */
static void put_extension(const char *path, uint32_t type, uint32_t len,
                          const void *data, size_t data_len)
{
    uint8_t ext[64] = { 0 };
    uint32_t be = htobe32(type);
    memcpy(ext, &be, 4);
    be = htobe32(len);
    memcpy(ext + 4, &be, 4);
    if (data_len > 0) {
        memcpy(ext + 8, data, data_len);
    }
    patch(path, 112, ext, sizeof(ext));
}

static void test_hostile_headers(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("h.qcow2");
    const uint64_t cs = 65536;

    create_image(path, 1 << 20, 0, NULL, NULL);
    assert_int_equal(truncate(path, 50), 0);
    expect_open_error(path, true, EINVAL, "truncated");

#define FRESH() create_image(path, 1 << 20, 0, NULL, NULL)
    FRESH();
    patch32(path, 0, 0x12345678);
    expect_open_error(path, true, EINVAL, "magic");
    FRESH();
    patch32(path, 4, 4);
    expect_open_error(path, true, ENOTSUP, "unsupported qcow2 version 4");
    FRESH();
    patch32(path, 20, 8);
    expect_open_error(path, true, EINVAL, "cluster size");
    patch32(path, 20, 22);
    expect_open_error(path, true, EINVAL, "cluster size");
    patch32(path, 20, 200);
    expect_open_error(path, true, EINVAL, "cluster size");
    FRESH();
    patch32(path, 36, 0x10000000);
    expect_open_error(path, true, EINVAL, "L1 table size");
    FRESH();
    patch64(path, 24, 1ull << 40);  /* needs 2048 L1 entries, has 1 */
    expect_open_error(path, true, EINVAL, "L1 table size");
    FRESH();
    patch64(path, 24, 1ull << 62);
    expect_open_error(path, true, EINVAL, "too large");
    FRESH();
    patch64(path, 40, cs * 1000);
    expect_open_error(path, true, EINVAL, "L1 table");
    patch64(path, 40, cs * 3 + 8);
    expect_open_error(path, true, EINVAL, "L1 table");
    patch64(path, 40, 0);
    expect_open_error(path, true, EINVAL, "L1 table");
    FRESH();
    patch64(path, 48, 0);
    expect_open_error(path, true, EINVAL, "refcount table");
    patch64(path, 48, 1ull << 60);
    expect_open_error(path, true, EINVAL, "refcount table");
    FRESH();
    patch32(path, 56, 0x7fffffff);
    expect_open_error(path, true, EINVAL, "refcount table size");
    patch32(path, 56, 0);
    expect_open_error(path, true, EINVAL, "refcount table size");
    FRESH();
    patch64(path, 48, 3 * cs);   /* the refcount table on the L1 table */
    expect_open_error(path, true, EINVAL, "overlaps");
    FRESH();
    patch32(path, 96, 7);
    expect_open_error(path, true, EINVAL, "refcount order");
    FRESH();
    patch32(path, 100, 12);
    expect_open_error(path, true, EINVAL, "header length");
    patch32(path, 100, 0x7ffffff8);
    expect_open_error(path, true, EINVAL, "header length");
    FRESH();
    put_extension(path, 0x12345678, 0xffffffff, NULL, 0);
    expect_open_error(path, true, EINVAL, "header extension");
    put_extension(path, QCOW2_EXT_BACKING_FORMAT, 70000, "raw", 3);
    expect_open_error(path, true, EINVAL, "header extension");
    put_extension(path, QCOW2_EXT_BACKING_FORMAT, 5, "ra\0w", 5);
    expect_open_error(path, true, EINVAL, "backing format");
    put_extension(path, QCOW2_EXT_DATA_FILE, 4, "data", 4);
    expect_open_error(path, true, ENOTSUP, "external data");
    put_extension(path, QCOW2_EXT_CRYPTO, 16, "0123456789abcdef", 16);
    expect_open_error(path, true, ENOTSUP, "encrypt");
    /* An unknown extension of sane length is fine. */
    put_extension(path, 0x12345678, 20, "hello", 5);
    tu_close(open_ok(path, true));
    FRESH();
    patch64(path, 8, cs - 10);
    patch32(path, 16, 100);
    expect_open_error(path, true, EINVAL, "backing file name");
    patch64(path, 8, 200);
    patch32(path, 16, 1500);
    expect_open_error(path, true, EINVAL, "backing file name");
    patch32(path, 16, 4);
    patch(path, 200, "a\0bc", 4);
    expect_open_error(path, true, EINVAL, "NUL");
#undef FRESH
}

/* Random damage to the header and the tables behind it: open either
 * fails cleanly or works; reads and writes may fail, never crash. */
static void test_header_fuzz(void **state)
{
    (void)state;
    g_autofree char *orig = path_in_tmp("fz-orig.qcow2");
    g_autofree char *path = path_in_tmp("fz.qcow2");
    create_image(orig, 4 << 20, 4096, "base.raw", "raw");
    struct block_node *node = open_ok(orig, false);
    uint8_t *buf = g_malloc(1 << 20);
    tu_fill(buf, 1 << 20, 1);
    assert_int_equal(qcow2_driver.write(node, 12345, 1 << 20, buf), 0);
    assert_int_equal(tu_close(node), 0);
    gchar *image;
    gsize image_len;
    assert_true(g_file_get_contents(orig, &image, &image_len, NULL));

    GRand *rand = g_rand_new_with_seed(42);
    for (int iter = 0; iter < 1500; iter++) {
        g_autofree uint8_t *copy = g_memdup2(image, image_len);
        int flips = g_rand_int_range(rand, 1, 6);
        for (int f = 0; f < flips; f++) {
            /* Mostly the header, sometimes the tables behind it. */
            uint32_t limit = g_rand_boolean(rand) ? 128 : 4096 * 8;
            uint32_t at = g_rand_int_range(rand, 0, MIN(limit, image_len));
            copy[at] = g_rand_int(rand);
        }
        assert_true(g_file_set_contents(path, (char *)copy, image_len,
                                        NULL));
        GError *err = NULL;
        bool writable = iter % 3 == 0;
        node = tu_open(path, &qcow2_driver, !writable, NULL, &err);
        if (!node) {
            assert_non_null(err);
            assert_non_null(strstr(err->message, path));
            g_error_free(err);
            continue;
        }
        for (uint64_t off = 0; off < node->size; off += node->size / 7 + 1) {
            uint64_t len = MIN(65536, node->size - off);
            uint64_t pnum;
            qcow2_driver.read(node, off, len, buf);
            qcow2_driver.block_status(node, off, len, &pnum);
            if (writable) {
                qcow2_driver.write(node, off, len, buf);
                qcow2_driver.write_zeroes(node, off / 2, len,
                                          BLOCK_ZERO_UNMAP);
            }
        }
        tu_close(node);
    }
    g_rand_free(rand);
    g_free(image);
    g_free(buf);
}

/* Rewrite cluster 0 of path as: the image's own header, then exts (may
 * be NULL), then the backing name and format, as chainfs lays it out. */
static void relayout_cluster0(const char *path, uint32_t cs,
                              const uint8_t *exts, size_t exts_len,
                              const char *name, const char *fmt)
{
    g_autofree uint8_t *c0 = g_malloc0(cs);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, c0, 104, 0), 104);
    uint32_t hl = be32toh(*(uint32_t *)(c0 + 100));
    assert_int_equal(pread(fd, c0, hl, 0), (ssize_t)hl);
    memset(c0 + hl, 0, cs - hl);
    assert_true(qcow2_layout_cluster0(c0, cs, hl, NULL, 0, exts, exts_len,
                                      name, fmt) > 0);
    assert_int_equal(pwrite(fd, c0, cs, 0), (ssize_t)cs);
    close(fd);
}

/* The backing name and format the image at path records now. */
static void expect_backing(const char *path, const char *name,
                           const char *fmt)
{
    struct block_node *node = open_ok(path, true);
    assert_string_equal(node->backing_name, name);
    assert_string_equal(node->backing_format, fmt);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        g_autofree char *out = NULL;
        g_autofree char *want = g_strdup_printf("\"backing-filename\": "
                                                "\"%s\"", name);
        assert_int_equal(tu_run(&out, "qemu-img", "info", "--output=json",
                                "-U", path, NULL), 0);
        assert_non_null(strstr(out, want));
    }
}

/* set_backing from old to new: a crash after the first phase leaves the
 * old header; the rewrite then succeeds (ok) or is refused with ENOSPC
 * and nothing changed. */
static void rewrite_with_crash(const char *path, const char *old_name,
                               const char *old_fmt, const char *new_name,
                               const char *new_fmt, bool ok)
{
    GError *err = NULL;
    struct block_node *node = open_ok(path, false);
    qcow2_cluster0_crash_after_first_phase = true;
    assert_false(qcow2_driver.set_backing(node, new_name, new_fmt, &err));
    assert_int_equal(err->code, ok ? EIO : ENOSPC);
    g_clear_error(&err);
    qcow2_cluster0_crash_after_first_phase = false;
    assert_int_equal(tu_close(node), 0);
    expect_backing(path, old_name, old_fmt);

    node = open_ok(path, false);
    bool done = qcow2_driver.set_backing(node, new_name, new_fmt, &err);
    assert_int_equal(done, ok);
    if (!ok) {
        assert_int_equal(err->code, ENOSPC);
        assert_non_null(strstr(err->message, "crash-atomically"));
        assert_non_null(strstr(err->message, path));
        g_clear_error(&err);
    }
    assert_int_equal(tu_close(node), 0);
    expect_backing(path, ok ? new_name : old_name, ok ? new_fmt : old_fmt);
    if (tu_have_qemu()) {
        /* The backing files do not exist: check without them. */
        g_autofree char *spec = g_strdup_printf(
            "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
            "\"filename\":\"%s\"},\"backing\":null}", path);
        assert_int_equal(tu_run(NULL, "qemu-img", "check", spec, NULL), 0);
    }
}

/* A name of len bytes made of c. */
static char *name_of(size_t len, char c)
{
    char *name = g_malloc(len + 1);
    memset(name, c, len);
    name[len] = 0;
    return name;
}

/* Every layout of cluster 0 is rewritten crash-atomically or refused. */
static void test_rewrite_layouts(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("lay.qcow2");

    /* 512-byte clusters: all of cluster 0 is one sector. */
    create_image(path, 8 << 20, 512, "old.raw", "raw");
    rewrite_with_crash(path, "old.raw", "raw", "a-new-name.qcow2", "qcow2",
                       true);

    /* 4K clusters, a short name that spills past sector 0: the name goes
     * first to free bytes. */
    g_autofree char *long1 = name_of(600, 'a');
    g_autofree char *long2 = name_of(700, 'b');
    create_image(path, 8 << 20, 4096, long1, "raw");
    rewrite_with_crash(path, long1, "raw", long2, "qcow2", true);

    /* 2K clusters: no room for a 1000-byte name beside the old one. */
    g_autofree char *big1 = name_of(1000, 'c');
    g_autofree char *big2 = name_of(1000, 'd');
    create_image(path, 8 << 20, 2048, big1, "raw");
    rewrite_with_crash(path, big1, "raw", big2, "raw", false);

    /* A feature name table reaching past sector 0 and a backing format
     * that changes length: the table is dropped, then it fits. */
    uint8_t ftable[8 + 12 * 48] = { 0 };
    *(uint32_t *)ftable = htobe32(0x6803f857);
    *(uint32_t *)(ftable + 4) = htobe32(12 * 48);
    for (unsigned i = 0; i < 12; i++) {
        ftable[8 + i * 48] = 2;      /* autoclear */
        ftable[8 + i * 48 + 1] = 8 + i;
        memcpy(ftable + 8 + i * 48 + 2, "name", 4);
    }
    create_image(path, 8 << 20, 4096, "b.raw", "raw");
    relayout_cluster0(path, 4096, ftable, sizeof(ftable), "b.raw", "raw");
    expect_backing(path, "b.raw", "raw");
    rewrite_with_crash(path, "b.raw", "raw", "c.qcow2", "parallels",
                       true);

    /* An unknown extension (kept) reaching past sector 0, and the same
     * format change: refused, nothing written. */
    uint8_t unknown[8 + 600] = { 0 };
    *(uint32_t *)unknown = htobe32(0x12345678);
    *(uint32_t *)(unknown + 4) = htobe32(600);
    create_image(path, 8 << 20, 4096, "b.raw", "raw");
    relayout_cluster0(path, 4096, unknown, sizeof(unknown), "b.raw", "raw");
    rewrite_with_crash(path, "b.raw", "raw", "c.qcow2", "parallels",
                       false);
    /* With the same format length it only moves the name: fine. */
    rewrite_with_crash(path, "b.raw", "raw", "c.qcow2", "vpc", true);
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_reopen),
        cmocka_unit_test(test_create_backing_info),
        cmocka_unit_test(test_set_backing),
        cmocka_unit_test(test_rewrite_layouts),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_feature_bits),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_header_fuzz),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
