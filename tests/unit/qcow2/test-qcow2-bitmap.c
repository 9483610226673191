/* chainfs qcow2: persistent dirty bitmaps.  Round trips through
 * bitmaps_store / bitmaps_list / bitmap_read, interop with QEMU both
 * ways (qemu-img bitmap, qemu-img info and check, qemu-nbd -B with
 * nbdinfo --map), and hostile bitmap directories (clean errors or
 * bitmaps in use, never a crash). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/dirty-bitmap.h"
#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

static char *tmpdir;

static char *path_in_tmp(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void create_image(const char *path, uint64_t size, uint32_t cs)
{
    struct block_create_opts opts = { .size = size, .cluster_size = cs };
    GError *err = NULL;
    unlink(path);
    assert_true(qcow2_driver.create(path, &opts, &err));
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

static void store_ok(struct block_node *node,
                     const struct block_bitmap_entry *entries, size_t n)
{
    GError *err = NULL;
    if (!qcow2_driver.bitmaps_store(node, entries, n, &err)) {
        fail_msg("store: %s", err->message);
    }
}

static void check_clean(const char *path)
{
    g_autofree char *out = NULL;
    int ret = tu_check(path, &out);
    if (ret != 0) {
        fail_msg("qemu-img check %s: %d\n%s", path, ret, out);
    }
}

/* Random runs of dirty bytes (seeded), or every chunk when seed is 0. */
static struct dirty_bitmap *make_bits(uint64_t size, uint32_t granularity,
                                      uint32_t seed)
{
    struct dirty_bitmap *b = dirty_bitmap_new(size, granularity);
    if (seed == 0) {
        dirty_bitmap_set_all(b);
        return b;
    }
    GRand *rand = g_rand_new_with_seed(seed);
    for (int i = 0; i < 20 && size > 0; i++) {
        uint64_t off = g_rand_double(rand) * size;
        uint64_t len = g_rand_int_range(rand, 1, 1 << 20);
        dirty_bitmap_set(b, off, MIN(len, size - off));
    }
    g_rand_free(rand);
    return b;
}

static bool bits_equal(struct dirty_bitmap *a, struct dirty_bitmap *b)
{
    uint64_t chunks = dirty_bitmap_chunks(a);
    uint8_t x[4096], y[4096];
    for (uint64_t c = 0; c < chunks; c += sizeof(x) * 8) {
        dirty_bitmap_serialize(a, c, sizeof(x), x);
        dirty_bitmap_serialize(b, c, sizeof(y), y);
        if (memcmp(x, y, sizeof(x)) != 0) {
            return false;
        }
    }
    return dirty_bitmap_count(a) == dirty_bitmap_count(b);
}

static struct block_bitmap_info *find_info(GPtrArray *list, const char *name)
{
    for (guint i = 0; i < list->len; i++) {
        struct block_bitmap_info *info = g_ptr_array_index(list, i);
        if (strcmp(info->name, name) == 0) {
            return info;
        }
    }
    return NULL;
}

/* The stored set must be exactly entries: flags, granularity and bits. */
static void expect_set(struct block_node *node,
                       const struct block_bitmap_entry *entries, size_t n)
{
    GError *err = NULL;
    g_autoptr(GPtrArray) list = qcow2_driver.bitmaps_list(node, &err);
    assert_non_null(list);
    assert_int_equal(list->len, n);
    for (size_t i = 0; i < n; i++) {
        const struct block_bitmap_entry *e = &entries[i];
        struct block_bitmap_info *info = find_info(list, e->name);
        assert_non_null(info);
        assert_int_equal(info->granularity, e->granularity);
        assert_int_equal(info->enabled, e->enabled);
        assert_int_equal(info->in_use, e->in_use);
        struct dirty_bitmap *got = dirty_bitmap_new(node->size,
                                                    e->granularity);
        bool ok = qcow2_driver.bitmap_read(node, e->name, got, &err);
        if (e->in_use) {
            assert_false(ok);
            g_clear_error(&err);
        } else {
            if (!ok) {
                fail_msg("read %s: %s", e->name, err->message);
            }
            assert_true(bits_equal(got, e->bits));
        }
        dirty_bitmap_free(got);
    }
}

static uint64_t read_autoclear(const char *path)
{
    int fd = open(path, O_RDONLY);
    uint64_t v = 0;
    assert_int_equal(pread(fd, &v, 8, 88), 8);
    close(fd);
    return be64toh(v);
}

static void roundtrip_one(uint64_t size, uint32_t cs)
{
    g_autofree char *path = path_in_tmp("rt.qcow2");
    create_image(path, size, cs);
    struct block_node *node = open_ok(path, false);
    GError *err = NULL;
    assert_true(qcow2_driver.bitmaps_supported(node, &err));

    struct block_bitmap_entry e[] = {
        { "ones", 512, true, false, make_bits(size, 512, 0) },
        { "sparse", 4096, true, false, make_bits(size, 4096, 7) },
        { "empty", 65536, false, false, dirty_bitmap_new(size, 65536) },
        { "fine-off", 1024, false, false, make_bits(size, 1024, 9) },
        { "huge", 1u << 31, true, false, make_bits(size, 1u << 31, 3) },
        { "busy", 1u << 20, true, true, NULL },
    };
    size_t n = G_N_ELEMENTS(e);
    store_ok(node, e, n);
    expect_set(node, e, n);
    /* Replace with itself: tables move, the old ones are freed. */
    store_ok(node, e, n);
    expect_set(node, e, n);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        check_clean(path);
    }
    assert_int_equal(read_autoclear(path), 1);

    node = open_ok(path, true);
    expect_set(node, e, n);
    assert_false(qcow2_driver.bitmaps_supported(node, &err));
    assert_int_equal(err->code, ENOTSUP);
    g_clear_error(&err);
    tu_close(node);

    node = open_ok(path, false);
    expect_set(node, e, n);
    store_ok(node, NULL, 0);
    expect_set(node, NULL, 0);
    assert_int_equal(tu_close(node), 0);
    assert_int_equal(read_autoclear(path), 0);
    if (tu_have_qemu()) {
        check_clean(path);
    }
    node = open_ok(path, false);
    expect_set(node, NULL, 0);
    tu_close(node);
    for (size_t i = 0; i < n; i++) {
        if (e[i].bits) {
            dirty_bitmap_free(e[i].bits);
        }
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip_one((10u << 20) + 3333, 512);
    roundtrip_one((100u << 20) + 1, 65536);
    roundtrip_one(4096, 4096);
    roundtrip_one(3 * 512 + 7, 2u << 20);
}

static void test_many(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("many.qcow2");
    const uint64_t size = 64u << 20;
    create_image(path, size, 4096);
    struct block_node *node = open_ok(path, false);
    enum { N = 300 };
    struct block_bitmap_entry e[N];
    char *names[N];
    for (unsigned round = 0; round < 2; round++) {
        unsigned n = round ? N / 2 : N;
        for (unsigned i = 0; i < n; i++) {
            names[i] = g_strdup_printf("%0200u-%u", i, round);
            e[i] = (struct block_bitmap_entry){
                names[i], 65536, i % 2, i % 5 == 0,
                dirty_bitmap_new(size, 65536) };
            dirty_bitmap_set(e[i].bits, (uint64_t)i * 65536, 1);
        }
        store_ok(node, e, n);
        expect_set(node, e, n);
        for (unsigned i = 0; i < n; i++) {
            dirty_bitmap_free(e[i].bits);
            g_free(names[i]);
        }
    }
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        check_clean(path);
    }
}

/* Store refusals: version 2 images, bad entries. */
static void test_store_refused(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("refuse.qcow2");
    GError *err = NULL;
    create_image(path, 1 << 20, 65536);
    struct block_node *node = open_ok(path, false);
    struct block_bitmap_entry dup[] = {
        { "a", 65536, true, true, NULL }, { "a", 65536, true, true, NULL },
    };
    assert_false(qcow2_driver.bitmaps_store(node, dup, 2, &err));
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    struct block_bitmap_entry bad_gran = { "g", 1000, true, true, NULL };
    assert_false(qcow2_driver.bitmaps_store(node, &bad_gran, 1, &err));
    g_clear_error(&err);
    struct block_bitmap_entry no_bits = { "g", 65536, true, false, NULL };
    assert_false(qcow2_driver.bitmaps_store(node, &no_bits, 1, &err));
    g_clear_error(&err);
    expect_set(node, NULL, 0);
    tu_close(node);

    create_image(path, 511, 65536);
    node = open_ok(path, false);
    assert_false(qcow2_driver.bitmaps_store(node, dup, 1, &err));
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    tu_close(node);

    if (!tu_have_qemu()) {
        return;
    }
    g_autofree char *v2 = path_in_tmp("v2.qcow2");
    unlink(v2);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "qcow2",
                            "-o", "compat=0.10", v2, "1M", NULL), 0);
    node = open_ok(v2, false);
    assert_false(qcow2_driver.bitmaps_supported(node, &err));
    assert_int_equal(err->code, ENOTSUP);
    assert_non_null(strstr(err->message, v2));
    g_clear_error(&err);
    tu_close(node);
}

/* Whether nbdinfo --map output lists [offset, offset + len) as dirty. */
static bool map_has_dirty(const char *map, uint64_t offset, uint64_t len)
{
    g_auto(GStrv) lines = g_strsplit(map, "\n", -1);
    for (char **l = lines; *l; l++) {
        unsigned long long o, n;
        int type;
        if (sscanf(*l, "%llu %llu %d", &o, &n, &type) == 3 && type == 1 &&
            o == offset && n == len) {
            return true;
        }
    }
    return false;
}

static uint64_t map_dirty_bytes(const char *map)
{
    g_auto(GStrv) lines = g_strsplit(map, "\n", -1);
    uint64_t total = 0;
    for (char **l = lines; *l; l++) {
        unsigned long long o, n;
        int type;
        if (sscanf(*l, "%llu %llu %d", &o, &n, &type) == 3 && type == 1) {
            total += n;
        }
    }
    return total;
}

/* QEMU's bitmaps as we see them; ours as QEMU sees them. */
static void test_qemu_to_us(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    g_autofree char *path = path_in_tmp("fromqemu.qcow2");
    g_autofree char *base = path_in_tmp("base.raw");
    unlink(path);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "raw",
                            base, "8M", NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "qcow2",
                            "-b", "base.raw", "-F", "raw", "-u",
                            path, "8M", NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-img", "bitmap", "--add", path, "b1",
                            NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-img", "bitmap", "--add", "-g", "512",
                            path, "b2", NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-img", "bitmap", "--disable", path,
                            "b2", NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-io", "-f", "qcow2", "-c",
                            "write 1M 64k", path, NULL), 0);

    struct dirty_bitmap *b1 = dirty_bitmap_new(8 << 20, 65536);
    dirty_bitmap_set(b1, 1 << 20, 65536);
    struct dirty_bitmap *b2 = dirty_bitmap_new(8 << 20, 512);
    struct block_bitmap_entry e[] = {
        { "b1", 65536, true, false, b1 }, { "b2", 512, false, false, b2 },
    };
    struct block_node *node = open_ok(path, true);
    expect_set(node, e, 2);
    tu_close(node);

    /* Mounted: every bitmap marked in use, the old tables kept. */
    node = open_ok(path, false);
    assert_string_equal(node->backing_name, "base.raw");
    assert_int_equal(read_autoclear(path), 1);
    expect_set(node, e, 2);
    struct block_bitmap_entry busy[] = {
        { "b1", 65536, true, true, NULL }, { "b2", 512, false, true, NULL },
        { "b3", 4096, true, true, NULL },
    };
    store_ok(node, busy, 3);
    expect_set(node, busy, 3);
    tu_close(node);
    check_clean(path);
    g_autofree char *info = NULL;
    assert_int_equal(tu_run(&info, "qemu-img", "info", "--output=json",
                            "-U", path, NULL), 0);
    assert_non_null(strstr(info, "\"in-use\""));
    assert_non_null(strstr(info, "\"b3\""));

    /* Clean close: bits stored, flags cleared; QEMU reads the bits. */
    node = open_ok(path, false);
    assert_string_equal(node->backing_name, "base.raw");
    dirty_bitmap_set(b1, 5 << 20, 3 * 65536);
    dirty_bitmap_set(b2, 7 << 20, 512);
    store_ok(node, e, 2);
    tu_close(node);
    check_clean(path);
    g_autofree char *map = NULL;
    assert_int_equal(tu_run(&map, "nbdinfo", "--map=qemu:dirty-bitmap:b1",
                            "--", "[", "qemu-nbd", "-r", "-f", "qcow2",
                            "-B", "b1", path, "]", NULL), 0);
    assert_true(map_has_dirty(map, 1 << 20, 65536));
    assert_true(map_has_dirty(map, 5 << 20, 3 * 65536));
    assert_int_equal(map_dirty_bytes(map), 4 * 65536);
    g_free(g_steal_pointer(&info));
    assert_int_equal(tu_run(&info, "qemu-img", "info", "--output=json",
                            path, NULL), 0);
    assert_null(strstr(info, "\"in-use\""));
    assert_null(strstr(info, "\"b3\""));
    assert_non_null(strstr(info, "\"granularity\": 512"));

    /* And QEMU writes over what we stored: we read its result. */
    assert_int_equal(tu_run(NULL, "qemu-io", "-f", "qcow2", "-c",
                            "write 2M 512", path, NULL), 0);
    dirty_bitmap_set(b1, 2 << 20, 512);
    node = open_ok(path, true);
    expect_set(node, e, 2);
    tu_close(node);
    dirty_bitmap_free(b1);
    dirty_bitmap_free(b2);
}

/* Without autoclear bit 0 the extension is stale: no bitmaps, and a
 * read-write open drops it. */
static void test_stale_extension(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    g_autofree char *path = path_in_tmp("stale.qcow2");
    unlink(path);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "qcow2",
                            path, "1M", NULL), 0);
    assert_int_equal(tu_run(NULL, "qemu-img", "bitmap", "--add", path, "b1",
                            NULL), 0);
    int fd = open(path, O_WRONLY);
    uint64_t zero = 0;
    assert_int_equal(pwrite(fd, &zero, 8, 88), 8);
    close(fd);
    struct block_node *node = open_ok(path, false);
    expect_set(node, NULL, 0);
    struct block_bitmap_entry e = { "new", 65536, true, true, NULL };
    store_ok(node, &e, 1);
    expect_set(node, &e, 1);
    tu_close(node);
    g_autofree char *info = NULL;
    assert_int_equal(tu_run(&info, "qemu-img", "info", path, NULL), 0);
    assert_null(strstr(info, "b1"));
    assert_non_null(strstr(info, "new"));
    g_autofree char *out = NULL;
    int ret = tu_check(path, &out);
    assert_true(ret == 0 || ret == 3);    /* the stale tables leak */
}

/* set_backing keeps the bitmaps extension (first after the header). */
static void test_set_backing_keeps_bitmaps(void **state)
{
    (void)state;
    g_autofree char *path = path_in_tmp("backing.qcow2");
    create_image(path, 4 << 20, 4096);
    struct block_node *node = open_ok(path, false);
    struct block_bitmap_entry e = { "kept", 65536, true, false,
                                    make_bits(4 << 20, 65536, 5) };
    store_ok(node, &e, 1);
    GError *err = NULL;
    assert_true(qcow2_driver.set_backing(node, "some/base.raw", "raw", &err));
    expect_set(node, &e, 1);
    assert_int_equal(tu_close(node), 0);
    node = open_ok(path, false);
    assert_string_equal(node->backing_name, "some/base.raw");
    expect_set(node, &e, 1);
    assert_true(qcow2_driver.set_backing(node, NULL, NULL, &err));
    tu_close(node);
    node = open_ok(path, true);
    assert_null(node->backing_name);
    expect_set(node, &e, 1);
    tu_close(node);
    if (tu_have_qemu()) {
        check_clean(path);
    }
    dirty_bitmap_free(e.bits);
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_store_refused),
        cmocka_unit_test(test_qemu_to_us),
        cmocka_unit_test(test_stale_extension),
        cmocka_unit_test(test_set_backing_keeps_bitmaps),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
