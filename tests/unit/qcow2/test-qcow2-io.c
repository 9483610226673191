/* chainfs qcow2: data path against qemu-io as the oracle (writes, zeroes,
 * discards, compressed clusters, backing chains), refcounts of every
 * width, L2/refcount cache eviction and growth, block status and damaged
 * metadata. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/chain.h"
#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

static char *tmpdir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

enum op_kind { OP_WRITE, OP_ZERO, OP_DISCARD };

struct op {
    enum op_kind kind;
    uint64_t offset;
    uint64_t len;
    uint8_t pattern;
};

static struct block_node *open_ok(const char *path, bool read_only,
                                  struct block_node *backing)
{
    GError *err = NULL;
    struct block_node *node = tu_open(path, &qcow2_driver, read_only,
                                      backing, &err);
    if (!node) {
        fail_msg("open %s: %s", path, err->message);
    }
    return node;
}

static void qemu_img_create(const char *path, const char *opts,
                            uint64_t size)
{
    g_autofree char *size_str = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    unlink(path);
    assert_int_equal(tu_run(NULL, "qemu-img", "create", "-q", "-f", "qcow2",
                            "-o", opts, path, size_str, NULL), 0);
}

static void copy_file(const char *from, const char *to)
{
    gchar *data;
    gsize len;
    assert_true(g_file_get_contents(from, &data, &len, NULL));
    assert_true(g_file_set_contents(to, data, len, NULL));
    g_free(data);
}

static void apply_ours(struct block_node *node, const struct op *ops,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct op *op = &ops[i];
        int ret;
        if (g_getenv("QCOW2_TEST_VERBOSE")) {
            g_printerr("op %zu: %d %" G_GUINT64_FORMAT " +%" G_GUINT64_FORMAT
                       " P%u\n", i, op->kind, op->offset, op->len,
                       op->pattern);
        }
        if (op->kind == OP_WRITE) {
            g_autofree uint8_t *buf = g_malloc(op->len);
            memset(buf, op->pattern, op->len);
            ret = qcow2_driver.write(node, op->offset, op->len, buf);
        } else {
            ret = qcow2_driver.write_zeroes(node, op->offset, op->len,
                                            op->kind == OP_DISCARD ?
                                            BLOCK_ZERO_UNMAP : 0);
        }
        if (ret != 0) {
            fail_msg("op %zu (%d at %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                     "): %s", i, op->kind, op->offset, op->len,
                     g_strerror(-ret));
        }
    }
}

static void apply_qemu(const char *path, const struct op *ops, size_t n)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup("qemu-io"));
    g_ptr_array_add(argv, g_strdup("-f"));
    g_ptr_array_add(argv, g_strdup("qcow2"));
    for (size_t i = 0; i < n; i++) {
        const struct op *op = &ops[i];
        g_ptr_array_add(argv, g_strdup("-c"));
        if (op->kind == OP_WRITE) {
            g_ptr_array_add(argv, g_strdup_printf(
                "write -q -P %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                op->pattern, op->offset, op->len));
        } else {
            g_ptr_array_add(argv, g_strdup_printf(
                "write -q -z %s %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                op->kind == OP_DISCARD ? "-u" : "", op->offset, op->len));
        }
    }
    g_ptr_array_add(argv, g_strdup(path));
    g_ptr_array_add(argv, NULL);
    assert_int_equal(tu_runv(NULL, (char **)argv->pdata), 0);
    g_ptr_array_free(argv, true);
}

static void random_ops(GRand *rand, uint64_t size, struct op *ops, size_t n,
                       bool with_zeroes)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t max_len = g_rand_boolean(rand) ? 9000 : 300000;
        uint64_t len = g_rand_int_range(rand, 1, MIN(max_len, size));
        ops[i].offset = g_rand_int_range(rand, 0, size - len + 1);
        ops[i].len = len;
        ops[i].pattern = g_rand_int_range(rand, 1, 256);
        int k = with_zeroes ? g_rand_int_range(rand, 0, 10) : 0;
        ops[i].kind = k < 7 ? OP_WRITE : k < 9 ? OP_ZERO : OP_DISCARD;
    }
}

static void expect_same(const char *ours, const char *ref)
{
    g_autofree char *out = NULL;
    int ret = tu_run(&out, "qemu-img", "compare", "-f", "qcow2", "-F",
                     "qcow2", ours, ref, NULL);
    if (ret != 0) {
        fail_msg("qemu-img compare %s %s: %d %s", ours, ref, ret, out);
    }
}

static void expect_clean(const char *path)
{
    g_autofree char *out = NULL;
    int ret = tu_check(path, &out);
    if (ret != 0) {
        fail_msg("qemu-img check %s: %d\n%s", path, ret, out);
    }
}

/* The same random writes through us and through qemu-io give the same
 * disk, and a clean image, for many geometries. */
static void test_writes_vs_qemu(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    static const char *configs[] = {
        "cluster_size=65536",
        "cluster_size=512,refcount_bits=1",
        "cluster_size=4096,refcount_bits=8",
        "cluster_size=1024,refcount_bits=64",
        "cluster_size=2048,refcount_bits=4",
        "cluster_size=512,compat=0.10",
        "cluster_size=16384,compat=0.10",
        "cluster_size=2097152",
    };
    g_autofree char *ours = tmp_path("ours.qcow2");
    g_autofree char *ref = tmp_path("ref.qcow2");
    GRand *rand = g_rand_new_with_seed(1234);
    for (unsigned c = 0; c < G_N_ELEMENTS(configs); c++) {
        uint64_t size = (8 << 20) + 4096 * c + 512;
        bool v2 = strstr(configs[c], "0.10") != NULL;
        for (int tiny_cache = 0; tiny_cache < 2; tiny_cache++) {
            struct op ops[60];
            random_ops(rand, size, ops, G_N_ELEMENTS(ops), true);
            qemu_img_create(ours, configs[c], size);
            copy_file(ours, ref);
            qcow2_l2_cache_bytes = tiny_cache ? 0 : 4 << 20;
            qcow2_refblock_cache_bytes = tiny_cache ? 0 : 1 << 20;
            struct block_node *node = open_ok(ours, false, NULL);
            apply_ours(node, ops, G_N_ELEMENTS(ops));
            if (tiny_cache) {
                struct qcow2_state *s = node->opaque;
                assert_true(table_cache_count(s->l2_cache) <= 4);
                assert_true(table_cache_count(s->refblock_cache) <= 4);
            }
            assert_int_equal(tu_close(node), 0);
            apply_qemu(ref, ops, G_N_ELEMENTS(ops));
            expect_same(ours, ref);
            expect_clean(ours);
            (void)v2;
        }
    }
    qcow2_l2_cache_bytes = 4 << 20;
    qcow2_refblock_cache_bytes = 1 << 20;
    g_rand_free(rand);
}

/* Refcounts of every width: allocated host clusters count 1, the rest 0;
 * L2 entries carry COPIED and aligned offsets. */
static void test_refcount_orders(void **state)
{
    (void)state;
    for (unsigned order = 0; order <= 6; order++) {
        g_autofree char *path = tmp_path("rc.qcow2");
        g_autofree char *opts = g_strdup_printf(
            "cluster_size=512,refcount_bits=%u", 1u << order);
        if (!tu_have_qemu()) {
            skip();
        }
        qemu_img_create(path, opts, 2 << 20);
        struct block_node *node = open_ok(path, false, NULL);
        struct qcow2_state *s = node->opaque;
        assert_int_equal(s->refcount_order, order);
        /* Enough clusters to need new refcount blocks and a bigger
         * refcount table (64-bit refcounts: 64 clusters per block). */
        g_autofree uint8_t *buf = g_malloc(1 << 20);
        tu_fill(buf, 1 << 20, order);
        assert_int_equal(qcow2_driver.write(node, 512 * 3, 1 << 20, buf), 0);

        pthread_mutex_lock(&s->lock);
        uint64_t refcount;
        for (uint64_t g = 3; g < 3 + (1 << 20) / 512; g++) {
            uint64_t entry;
            assert_int_equal(qcow2_get_l2_entry(s, g, &entry), 0);
            assert_true(entry & QCOW2_OFLAG_COPIED);
            uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
            assert_int_equal(host & 511, 0);
            assert_int_equal(qcow2_refcount_get(s, host >> 9, &refcount), 0);
            assert_int_equal(refcount, 1);
        }
        uint64_t unmapped;
        assert_int_equal(qcow2_get_l2_entry(s, 2, &unmapped), 0);
        assert_int_equal(unmapped, 0);
        /* Allocate, count, free and reuse a cluster by hand. */
        uint64_t off, got;
        assert_int_equal(qcow2_alloc_clusters(s, 3, false, &off, &got), 0);
        assert_int_equal(got, 3);
        assert_int_equal(qcow2_refcount_get(s, off >> 9, &refcount), 0);
        assert_int_equal(refcount, 1);
        if (order > 0) {
            assert_int_equal(qcow2_refcount_add(s, off >> 9, 1), 0);
            assert_int_equal(qcow2_refcount_get(s, off >> 9, &refcount), 0);
            assert_int_equal(refcount, 2);
            assert_int_equal(qcow2_refcount_add(s, off >> 9, -1), 0);
        } else {
            assert_int_equal(qcow2_refcount_add(s, off >> 9, 1), -ERANGE);
        }
        assert_int_equal(qcow2_free_clusters(s, off, 3 * 512), 0);
        assert_int_equal(qcow2_refcount_get(s, off >> 9, &refcount), 0);
        assert_int_equal(refcount, 0);
        uint64_t again;
        assert_int_equal(qcow2_alloc_clusters(s, 1, false, &again, &got), 0);
        assert_int_equal(again, off);
        assert_int_equal(qcow2_free_clusters(s, again, 512), 0);
        pthread_mutex_unlock(&s->lock);

        assert_int_equal(tu_close(node), 0);
        expect_clean(path);
        node = open_ok(path, true, NULL);
        g_autofree uint8_t *back = g_malloc(1 << 20);
        assert_int_equal(qcow2_driver.read(node, 512 * 3, 1 << 20, back), 0);
        assert_memory_equal(buf, back, 1 << 20);
        assert_int_equal(tu_close(node), 0);
    }
}

static int status_at(struct block_node *node, uint64_t off, uint64_t len,
                     uint64_t *pnum)
{
    return qcow2_driver.block_status(node, off, len, pnum);
}

/* Zeroing and discarding: reads return zeros, status says so, and
 * refcounts stay exact (v3 zero flag, v2 with and without backing). */
static void test_zeroes(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    const uint64_t cs = 4096, size = 1 << 20;
    g_autofree char *base = tmp_path("zbase.raw");
    g_autofree char *top = tmp_path("ztop.qcow2");
    g_autofree uint8_t *pattern = g_malloc(size);
    g_autofree uint8_t *buf = g_malloc(size);
    tu_fill(pattern, size, 99);
    assert_true(g_file_set_contents(base, (char *)pattern, size, NULL));

    for (int v2 = 0; v2 < 2; v2++) {
        for (int backed = 0; backed < 2; backed++) {
            g_autofree char *opts = g_strdup_printf(
                "cluster_size=4096,compat=%s%s", v2 ? "0.10" : "1.1",
                backed ? ",backing_file=zbase.raw,backing_fmt=raw" : "");
            qemu_img_create(top, opts, size);
            struct block_node *raw = NULL;
            if (backed) {
                GError *err = NULL;
                raw = tu_open(base, &raw_driver, true, NULL, &err);
                assert_non_null(raw);
            }
            struct block_node *node = open_ok(top, false, raw);
            assert_int_equal(qcow2_driver.write(node, 0, size / 2,
                                                pattern + 7), 0);
            /* Discard whole and partial clusters over data and backing. */
            assert_int_equal(qcow2_driver.write_zeroes(
                node, cs + 100, 10 * cs, BLOCK_ZERO_UNMAP), 0);
            assert_int_equal(qcow2_driver.write_zeroes(
                node, size / 2 - 2 * cs, 8 * cs, BLOCK_ZERO_UNMAP), 0);
            /* Zero without unmap over allocated data. */
            assert_int_equal(qcow2_driver.write_zeroes(
                node, 20 * cs, 4 * cs, 0), 0);
            assert_int_equal(qcow2_driver.read(node, 0, size, buf), 0);
            for (uint64_t i = 0; i < size; i++) {
                bool zero = (i >= cs + 100 && i < 11 * cs + 100) ||
                            (i >= size / 2 - 2 * cs &&
                             i < size / 2 + 6 * cs) ||
                            (i >= 20 * cs && i < 24 * cs);
                uint8_t expect = zero ? 0 : i < size / 2 ? pattern[i + 7] :
                                 backed ? pattern[i] : 0;
                if (buf[i] != expect) {
                    fail_msg("v2=%d backed=%d byte %" G_GUINT64_FORMAT
                             ": %u != %u", v2, backed, i, buf[i], expect);
                }
            }
            uint64_t pnum;
            int st = status_at(node, 2 * cs, size, &pnum);
            if (!v2) {
                assert_int_equal(st, backed ? BLOCK_STATUS_ALLOCATED |
                                              BLOCK_STATUS_ZERO : 0);
                assert_int_equal(pnum, 9 * cs);
                st = status_at(node, 20 * cs, size, &pnum);
                assert_int_equal(st, BLOCK_STATUS_ALLOCATED |
                                 BLOCK_STATUS_ZERO);
                assert_int_equal(pnum, 4 * cs);
            }
            st = status_at(node, 12 * cs, size, &pnum);
            assert_int_equal(st, BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA);
            /* v2 with a backing file can only write zeros as data. */
            assert_int_equal(pnum, v2 && backed ? size / 2 - 6 * cs
                                                : 8 * cs);
            st = status_at(node, size / 2 + 6 * cs, size / 2 - 6 * cs,
                           &pnum);
            assert_int_equal(st, 0);
            assert_int_equal(pnum, size / 2 - 6 * cs);
            assert_int_equal(tu_close(node), 0);
            expect_clean(top);
        }
    }
}

/* Reading compressed clusters, and overwriting them: the new cluster is
 * completed from the decompressed data, the old references dropped. */
static void test_compressed(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    const uint64_t size = 2 << 20;
    g_autofree char *raw = tmp_path("craw.raw");
    g_autofree char *ours = tmp_path("cours.qcow2");
    g_autofree char *ref = tmp_path("cref.qcow2");
    g_autofree uint8_t *data = g_malloc(size);
    /* Compressible but not trivial. */
    for (uint64_t i = 0; i < size; i++) {
        data[i] = (i / 100) * 7 + (i % 13);
    }
    memset(data + 100000, 0, 70000);
    assert_true(g_file_set_contents(raw, (char *)data, size, NULL));

    static const char *cluster_sizes[] = { "4096", "65536", "512" };
    for (unsigned c = 0; c < G_N_ELEMENTS(cluster_sizes); c++) {
        g_autofree char *opt = g_strdup_printf("cluster_size=%s",
                                               cluster_sizes[c]);
        unlink(ours);
        assert_int_equal(tu_run(NULL, "qemu-img", "convert", "-c", "-O",
                                "qcow2", "-o", opt, "-f", "raw", raw, ours,
                                NULL), 0);
        copy_file(ours, ref);
        struct block_node *node = open_ok(ours, false, NULL);
        g_autofree uint8_t *buf = g_malloc(size);
        assert_int_equal(qcow2_driver.read(node, 0, size, buf), 0);
        assert_memory_equal(buf, data, size);
        /* Compressed bytes exist only after inflating: no map. */
        struct block_extent ext;
        assert_int_equal(block_node_map(node, 0, size, &ext), -ENOTSUP);
        uint64_t pnum;
        assert_int_equal(status_at(node, 0, size, &pnum),
                         BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA);

        struct op ops[40];
        GRand *rand = g_rand_new_with_seed(c + 5);
        random_ops(rand, size, ops, G_N_ELEMENTS(ops), true);
        g_rand_free(rand);
        apply_ours(node, ops, G_N_ELEMENTS(ops));
        assert_int_equal(tu_close(node), 0);
        apply_qemu(ref, ops, G_N_ELEMENTS(ops));
        expect_same(ours, ref);
        expect_clean(ours);
    }
}

/* qcow2 over qcow2 over raw: reads fall through, partial writes copy
 * from the whole chain. */
/* Read [offset, offset + len) through block_node_map, as a spliced reply
 * would: host extents by pread from their files, zero extents as zeros. */
static int read_via_map(struct block_node *node, uint64_t offset,
                        uint64_t len, uint8_t *buf)
{
    while (len > 0) {
        struct block_extent ext;
        int ret = block_node_map(node, offset, len, &ext);
        if (ret < 0) {
            return ret;
        }
        assert_true(ext.len > 0 && ext.len <= len);
        if (ext.kind == BLOCK_EXTENT_HOST) {
            ret = qcow2_pread_data(ext.fd, buf, ext.len, ext.host_offset);
            block_extent_release(&ext);
            assert_int_equal(ret, 0);
        } else {
            memset(buf, 0, ext.len);
        }
        buf += ext.len;
        offset += ext.len;
        len -= ext.len;
    }
    return 0;
}

/* The map of a chain reads what read reads, at random offsets and
 * lengths and over the whole disk. */
static void expect_map_matches_read(struct block_node *node, GRand *rand)
{
    const uint64_t size = node->size;
    g_autofree uint8_t *want = g_malloc(size);
    g_autofree uint8_t *got = g_malloc(size);

    assert_int_equal(node->driver->read(node, 0, size, want), 0);
    assert_int_equal(read_via_map(node, 0, size, got), 0);
    assert_memory_equal(got, want, size);
    for (unsigned i = 0; i < 200; i++) {
        uint64_t offset = g_rand_int_range(rand, 0, size - 1);
        uint64_t len = g_rand_int_range(rand, 1, MIN(size - offset, 300000));
        memset(got, 0xee, len);
        assert_int_equal(read_via_map(node, offset, len, got), 0);
        assert_memory_equal(got, want + offset, len);
    }
}

static void test_chain_cow(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    const uint64_t size = 4 << 20;
    g_autofree char *base = tmp_path("chbase.raw");
    g_autofree char *mid = tmp_path("chmid.qcow2");
    g_autofree char *top = tmp_path("chtop.qcow2");
    g_autofree char *ref = tmp_path("chref.qcow2");
    g_autofree uint8_t *data = g_malloc(size);
    tu_fill(data, size - 300000, 5);   /* base shorter than the disk */
    assert_true(g_file_set_contents(base, (char *)data, size - 300000,
                                    NULL));
    qemu_img_create(mid, "cluster_size=16384,backing_file=chbase.raw,"
                    "backing_fmt=raw", size);
    GRand *rand = g_rand_new_with_seed(77);
    struct op mid_ops[20];
    random_ops(rand, size, mid_ops, G_N_ELEMENTS(mid_ops), true);
    apply_qemu(mid, mid_ops, G_N_ELEMENTS(mid_ops));

    struct block_create_opts opts = {
        .size = size, .cluster_size = 4096,
        .backing_name = "chmid.qcow2", .backing_format = "qcow2",
    };
    GError *err = NULL;
    unlink(top);
    assert_true(qcow2_driver.create(top, &opts, &err));
    copy_file(top, ref);

    struct block_node *raw = tu_open(base, &raw_driver, true, NULL, &err);
    assert_non_null(raw);
    struct block_node *mid_node = open_ok(mid, true, raw);
    struct block_node *node = open_ok(top, false, mid_node);
    assert_string_equal(node->backing_name, "chmid.qcow2");
    assert_string_equal(node->backing_format, "qcow2");
    struct op ops[50];
    random_ops(rand, size, ops, G_N_ELEMENTS(ops), true);
    apply_ours(node, ops, G_N_ELEMENTS(ops));
    expect_map_matches_read(node, rand);
    g_rand_free(rand);
    assert_int_equal(tu_close(node), 0);
    apply_qemu(ref, ops, G_N_ELEMENTS(ops));
    expect_same(top, ref);
    expect_clean(top);
    expect_clean(mid);
}

static void patch64(const char *path, uint64_t offset, uint64_t v)
{
    int fd = open(path, O_WRONLY);
    v = htobe64(v);
    assert_int_equal(pwrite(fd, &v, 8, offset), 8);
    close(fd);
}

static uint64_t read64(const char *path, uint64_t offset)
{
    int fd = open(path, O_RDONLY);
    uint64_t v = 0;
    assert_int_equal(pread(fd, &v, 8, offset), 8);
    close(fd);
    return be64toh(v);
}

/* Damaged metadata found while reading fails the request with EIO. */
static void test_damage(void **state)
{
    (void)state;
    g_autofree char *path = tmp_path("dmg.qcow2");
    struct block_create_opts opts = { .size = 1 << 20, .cluster_size = 4096 };
    GError *err = NULL;
    uint8_t buf[8192];

    struct {
        const char *what;
        int level;          /* 1: L1 entry, 2: L2 entry */
        uint64_t value;
    } cases[] = {
        { "L1 past EOF", 1, (1ull << 40) | QCOW2_OFLAG_COPIED },
        { "L1 misaligned", 1, 4096 * 3 + 512 },
        { "L1 reserved bits", 1, 4096 * 4 | (1ull << 60) },
        { "L2 past EOF", 2, (1ull << 40) | QCOW2_OFLAG_COPIED },
        { "L2 misaligned", 2, (4096 * 4 + 1024) | QCOW2_OFLAG_COPIED },
        { "compressed garbage", 2, QCOW2_OFLAG_COMPRESSED | 4096 * 2 },
        { "compressed past EOF", 2, QCOW2_OFLAG_COMPRESSED | (1ull << 40) },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        unlink(path);
        assert_true(qcow2_driver.create(path, &opts, &err));
        struct block_node *node = open_ok(path, false, NULL);
        tu_fill(buf, sizeof(buf), i);
        assert_int_equal(qcow2_driver.write(node, 0, sizeof(buf), buf), 0);
        struct qcow2_state *s = node->opaque;
        uint64_t l1_offset = s->l1_offset;
        uint64_t l2_offset = s->l1_table[0] & QCOW2_L1E_OFFSET_MASK;
        assert_int_equal(tu_close(node), 0);
        if (cases[i].level == 1) {
            patch64(path, l1_offset, cases[i].value);
        } else {
            patch64(path, l2_offset, cases[i].value);
        }
        node = open_ok(path, false, NULL);
        int ret = qcow2_driver.read(node, 0, sizeof(buf), buf);
        if (ret != -EIO) {
            fail_msg("%s: read returned %d", cases[i].what, ret);
        }
        uint64_t pnum;
        ret = qcow2_driver.block_status(node, 0, sizeof(buf), &pnum);
        if (cases[i].level == 1 || !strstr(cases[i].what, "compressed")) {
            assert_int_equal(ret, -EIO);
        }
        ret = qcow2_driver.write(node, 100, 100, buf);
        assert_true(ret == -EIO || (ret == 0 && cases[i].level == 2 &&
                                    strstr(cases[i].what, "compressed") &&
                                    0));
        tu_close(node);
    }

    /* A refcount table entry past the end of the file. */
    unlink(path);
    assert_true(qcow2_driver.create(path, &opts, &err));
    uint64_t reftable = read64(path, 48);
    patch64(path, reftable, 1ull << 40);
    struct block_node *node = open_ok(path, false, NULL);
    assert_int_equal(qcow2_driver.write(node, 0, 4096, buf), -EIO);
    tu_close(node);
}

/* Block status runs: pnum covers exactly one run of equal status. */
static void test_block_status_runs(void **state)
{
    (void)state;
    g_autofree char *path = tmp_path("bs.qcow2");
    struct block_create_opts opts = { .size = 64 << 20, .cluster_size = 512 };
    GError *err = NULL;
    unlink(path);
    assert_true(qcow2_driver.create(path, &opts, &err));
    struct block_node *node = open_ok(path, false, NULL);
    uint8_t buf[512 * 3];
    memset(buf, 1, sizeof(buf));
    /* Data straddling two L2 tables (32 KiB each). */
    assert_int_equal(qcow2_driver.write(node, 32768 - 512, sizeof(buf), buf),
                     0);
    /* Zeroing allocated data keeps the clusters, flagged zero. */
    uint8_t data[4096];
    memset(data, 2, sizeof(data));
    assert_int_equal(qcow2_driver.write(node, 40 << 10, 4096, data), 0);
    assert_int_equal(qcow2_driver.write_zeroes(node, 40 << 10, 4096, 0), 0);
    uint64_t pnum;
    assert_int_equal(qcow2_driver.block_status(node, 0, 64 << 20, &pnum), 0);
    assert_int_equal(pnum, 32768 - 512);
    assert_int_equal(qcow2_driver.block_status(node, 32768 - 100, 64 << 20,
                                               &pnum),
                     BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA);
    assert_int_equal(pnum, 100 + 1024);
    assert_int_equal(qcow2_driver.block_status(node, 32768 + 1024, 64 << 20,
                                               &pnum), 0);
    assert_int_equal(pnum, (40 << 10) - 32768 - 1024);
    assert_int_equal(qcow2_driver.block_status(node, 40 << 10, 100, &pnum),
                     BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO);
    assert_int_equal(pnum, 100);
    assert_int_equal(qcow2_driver.block_status(node, 44 << 10, 64 << 20,
                                               &pnum), 0);
    assert_int_equal(pnum, (64 << 20) - (44 << 10));
    assert_int_equal(tu_close(node), 0);
}

/* Through the real chain opener: what we read is what qemu-img reads. */
static void test_chain_open(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    const uint64_t size = 3 << 20;
    g_autofree char *base = tmp_path("cobase.raw");
    g_autofree char *mid = tmp_path("comid.qcow2");
    g_autofree char *top = tmp_path("cotop.qcow2");
    g_autofree char *flat = tmp_path("coflat.raw");
    g_autofree uint8_t *data = g_malloc(size);
    tu_fill(data, size, 8);
    assert_true(g_file_set_contents(base, (char *)data, size, NULL));
    qemu_img_create(mid, "cluster_size=65536,backing_file=cobase.raw,"
                    "backing_fmt=raw", size);
    GRand *rand = g_rand_new_with_seed(3);
    struct op ops[30];
    random_ops(rand, size, ops, G_N_ELEMENTS(ops), true);
    apply_qemu(mid, ops, G_N_ELEMENTS(ops));
    struct block_create_opts opts = {
        .size = size, .cluster_size = 8192,
        .backing_name = "comid.qcow2", .backing_format = "qcow2",
    };
    GError *err = NULL;
    unlink(top);
    assert_true(qcow2_driver.create(top, &opts, &err));

    struct block_node *node = chain_open(top, NULL, false, &err);
    if (!node) {
        fail_msg("chain_open: %s", err->message);
    }
    random_ops(rand, size, ops, G_N_ELEMENTS(ops), true);
    g_rand_free(rand);
    apply_ours(node, ops, G_N_ELEMENTS(ops));
    g_autofree uint8_t *ours = g_malloc(size);
    assert_int_equal(node->driver->read(node, 0, size, ours), 0);
    assert_int_equal(chain_close(node), 0);

    unlink(flat);
    assert_int_equal(tu_run(NULL, "qemu-img", "convert", "-O", "raw", top,
                            flat, NULL), 0);
    gchar *theirs;
    gsize len;
    assert_true(g_file_get_contents(flat, &theirs, &len, NULL));
    assert_int_equal(len, size);
    assert_memory_equal(ours, theirs, size);
    g_free(theirs);
    expect_clean(top);
}

/* The cache stays small for a scan that touches each table once and grows
 * for tables that come back, never past its ceiling. */
static void test_table_cache_growth(void **state)
{
    (void)state;
    enum { TABLE = 4096, TABLES = 256, CEILING = 64 };
    g_autofree char *path = tmp_path("tables");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, TABLES * TABLE), 0);
    struct table_cache *cache = table_cache_new(fd, TABLE, CEILING * TABLE,
                                                NULL, NULL, NULL);
    struct table_entry *entry;

    for (unsigned i = 0; i < TABLES; i++) {
        assert_int_equal(table_cache_get(cache, (uint64_t)i * TABLE, true,
                                         &entry), 0);
        table_cache_put(cache, entry);
        assert_true(table_cache_count(cache) <= 8);
    }
    /* A working set of 40 tables, visited over and over. */
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 40; i++) {
            assert_int_equal(table_cache_get(cache, (uint64_t)i * 3 * TABLE,
                                             true, &entry), 0);
            table_cache_put(cache, entry);
        }
    }
    assert_int_equal(table_cache_count(cache), 40);
    /* A working set bigger than the ceiling stops at the ceiling. */
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 100; i++) {
            assert_int_equal(table_cache_get(cache, (uint64_t)i * TABLE, true,
                                             &entry), 0);
            table_cache_put(cache, entry);
            assert_true(table_cache_count(cache) <= CEILING);
        }
    }
    assert_int_equal(table_cache_count(cache), CEILING);
    table_cache_free(cache);
    close(fd);
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_vs_qemu),
        cmocka_unit_test(test_refcount_orders),
        cmocka_unit_test(test_zeroes),
        cmocka_unit_test(test_compressed),
        cmocka_unit_test(test_chain_cow),
        cmocka_unit_test(test_damage),
        cmocka_unit_test(test_block_status_runs),
        cmocka_unit_test(test_chain_open),
        cmocka_unit_test(test_table_cache_growth),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
