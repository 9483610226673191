/* chainfs qcow2: hostile bitmap directories and tables.  Each one is
 * refused at open with one line naming the file, or (damage confined to
 * one bitmap's table) reported in use or as an EIO on read; a store over
 * whatever opened works or fails cleanly; nothing crashes (run under
 * ASan). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/dirty-bitmap.h"
#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

#define SIZE (4u << 20)
#define CS 4096
#define EXT 112             /* the bitmaps extension comes first */
#define EXT_NB (EXT + 8)
#define EXT_RESERVED (EXT + 12)
#define EXT_DIR_SIZE (EXT + 16)
#define EXT_DIR_OFFSET (EXT + 24)
#define ENTRY_LEN 32        /* 24 + a 2-byte name, padded */

static char *tmpdir;
static char *base;          /* image with bitmaps "aa" and "ab" */
static uint64_t dir_offset;

static void patch(const char *path, uint64_t offset, const void *data,
                  size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
    close(fd);
}

static void patch8(const char *path, uint64_t offset, uint8_t v)
{
    patch(path, offset, &v, 1);
}

static void patch16(const char *path, uint64_t offset, uint16_t v)
{
    v = htobe16(v);
    patch(path, offset, &v, 2);
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

static uint64_t peek64(const char *path, uint64_t offset)
{
    uint64_t v = 0;
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, &v, 8, offset), 8);
    close(fd);
    return be64toh(v);
}

static char *fresh_copy(void)
{
    char *path = g_build_filename(tmpdir, "hostile.qcow2", NULL);
    g_autofree char *data = NULL;
    gsize len;
    assert_true(g_file_get_contents(base, &data, &len, NULL));
    assert_true(g_file_set_contents(path, data, len, NULL));
    return path;
}

/* Open (read-only, then read-write) must fail: EINVAL-like code, one
 * line naming the file, containing needle. */
static void expect_refused(const char *path, const char *needle)
{
    for (int rw = 0; rw < 2; rw++) {
        GError *err = NULL;
        struct block_node *node = tu_open(path, &qcow2_driver, !rw, NULL,
                                          &err);
        if (node) {
            tu_close(node);
            fail_msg("%s opened, expected '%s'", path, needle);
        }
        if (!strstr(err->message, needle) || !strstr(err->message, path) ||
            strchr(err->message, '\n') ||
            (err->code != EINVAL && err->code != ENOTSUP)) {
            fail_msg("got %d '%s', expected '%s'", err->code, err->message,
                     needle);
        }
        g_error_free(err);
    }
}

/* Use whatever opened: list, read every bitmap, store it all in use, then
 * store nothing.  Only clean errors are allowed. */
static void exercise(struct block_node *node)
{
    GError *err = NULL;
    g_autoptr(GPtrArray) list = qcow2_driver.bitmaps_list(node, &err);
    assert_non_null(list);
    struct block_bitmap_entry *e = g_new0(struct block_bitmap_entry,
                                          list->len);
    for (guint i = 0; i < list->len; i++) {
        struct block_bitmap_info *info = g_ptr_array_index(list, i);
        struct dirty_bitmap *b = dirty_bitmap_new(node->size,
                                                  info->granularity);
        if (!qcow2_driver.bitmap_read(node, info->name, b, &err)) {
            assert_non_null(strstr(err->message, node->filename));
            g_clear_error(&err);
        }
        dirty_bitmap_free(b);
        e[i] = (struct block_bitmap_entry){ info->name, info->granularity,
                                            info->enabled, true, NULL };
    }
    if (!node->read_only) {
        if (!qcow2_driver.bitmaps_store(node, e, list->len, &err)) {
            g_clear_error(&err);
        }
        if (!qcow2_driver.bitmaps_store(node, NULL, 0, &err)) {
            g_clear_error(&err);
        }
    }
    g_free(e);
}

static void open_and_exercise(const char *path)
{
    for (int rw = 0; rw < 2; rw++) {
        GError *err = NULL;
        struct block_node *node = tu_open(path, &qcow2_driver, !rw, NULL,
                                          &err);
        if (!node) {
            g_clear_error(&err);
            continue;
        }
        exercise(node);
        tu_close(node);
    }
}

static void test_directory_refused(void **state)
{
    (void)state;
    uint64_t e1 = dir_offset + ENTRY_LEN;
    struct {
        uint64_t offset;
        unsigned width;
        uint64_t value;
        const char *needle;
    } cases[] = {
        { EXT_DIR_OFFSET, 8, 1ull << 40, "bitmap directory offset" },
        { EXT_DIR_OFFSET, 8, 0, "bitmap directory offset" },
        { EXT_DIR_OFFSET, 8, 0, "bitmap directory offset" },
        { EXT_DIR_SIZE, 8, 1ull << 40, "bitmap directory size" },
        { EXT_DIR_SIZE, 8, 24, "bitmap directory size" },
        { EXT_DIR_SIZE, 8, 72, "does not match" },
        { EXT_NB, 4, 0, "number of bitmaps" },
        { EXT_NB, 4, 65536, "number of bitmaps" },
        { EXT_NB, 4, 3, "bitmap directory size" },
        { EXT_NB, 4, 1, "does not match" },
        { EXT_RESERVED, 4, 1, "reserved" },
        { EXT + 4, 4, 16, "extension length" },
        { e1 + 18, 2, 2000, "name size" },
        { e1 + 18, 2, 0, "name size" },
        { e1 + 18, 2, 100, "does not fit" },
        { e1 + 25, 1, 'a', "two bitmaps are named" },
        { e1 + 24, 1, 0, "NUL" },
        { e1 + 16, 1, 2, "type" },
        { e1 + 17, 1, 8, "granularity" },
        { e1 + 17, 1, 32, "granularity" },
        { e1 + 12, 4, 8, "flags" },
        { e1 + 20, 4, 8, "extra data" },
        { e1, 8, 0, "invalid table" },
        { e1, 8, CS + 512, "invalid table" },
        { e1, 8, 1ull << 40, "past the end" },
        { e1 + 8, 4, 0, "invalid table" },
        { e1 + 8, 4, 0x7fffffff, "invalid table" },
        { e1, 8, 0, "overlap" },          /* value: entry 0's table */
        { e1, 8, 0, "overlap" },          /* value: the directory */
    };
    cases[2].value = dir_offset + 8;
    cases[27].value = peek64(base, dir_offset);
    cases[28].value = dir_offset;
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = fresh_copy();
        switch (cases[i].width) {
        case 1: patch8(path, cases[i].offset, cases[i].value); break;
        case 2: patch16(path, cases[i].offset, cases[i].value); break;
        case 4: patch32(path, cases[i].offset, cases[i].value); break;
        default: patch64(path, cases[i].offset, cases[i].value); break;
        }
        expect_refused(path, cases[i].needle);
    }
}

/* A table of the wrong size: the bitmap is in use, the image opens. */
static void test_table_size_in_use(void **state)
{
    (void)state;
    g_autofree char *path = fresh_copy();
    patch32(path, dir_offset + 8, 2);   /* "aa" needs 1 entry */
    struct block_node *node = tu_open(path, &qcow2_driver, false, NULL,
                                      NULL);
    assert_non_null(node);
    GError *err = NULL;
    g_autoptr(GPtrArray) list = qcow2_driver.bitmaps_list(node, &err);
    assert_int_equal(list->len, 2);
    struct block_bitmap_info *aa = g_ptr_array_index(list, 0);
    struct block_bitmap_info *ab = g_ptr_array_index(list, 1);
    assert_true(aa->in_use);
    assert_false(ab->in_use);
    struct dirty_bitmap *b = dirty_bitmap_new(SIZE, 65536);
    assert_false(qcow2_driver.bitmap_read(node, "aa", b, &err));
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    dirty_bitmap_free(b);
    exercise(node);
    assert_int_equal(tu_close(node), 0);
    if (tu_have_qemu()) {
        g_autofree char *out = NULL;
        int ret = tu_check(path, &out);
        assert_true(ret == 0 || ret == 3);
    }
}

/* Damaged table entries: EIO on read, never a crash; a store over them
 * replaces the set. */
static void test_bad_table_entries(void **state)
{
    (void)state;
    uint64_t values[] = {
        1ull << 60,                     /* reserved high bits */
        0x2,                            /* reserved low bits */
        (uint64_t)CS * 2 | 1,           /* all-ones with an offset */
        1ull << 40,                     /* past the end of the file */
        CS + 512,                       /* not cluster aligned */
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(values); i++) {
        g_autofree char *path = fresh_copy();
        uint64_t table = peek64(path, dir_offset + ENTRY_LEN);   /* "ab" */
        patch64(path, table, values[i]);
        struct block_node *node = tu_open(path, &qcow2_driver, false, NULL,
                                          NULL);
        assert_non_null(node);
        GError *err = NULL;
        struct dirty_bitmap *b = dirty_bitmap_new(SIZE, 512);
        assert_false(qcow2_driver.bitmap_read(node, "ab", b, &err));
        assert_int_equal(err->code, EIO);
        assert_non_null(strstr(err->message, path));
        g_clear_error(&err);
        dirty_bitmap_free(b);
        exercise(node);
        tu_close(node);
    }
}

/* Extra data is skipped when the entry says it is compatible. */
static void test_extra_data_compatible(void **state)
{
    (void)state;
    g_autofree char *path = fresh_copy();
    uint8_t dir[CS] = { 0 };
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, dir, 24, dir_offset), 24);    /* "aa" */
    close(fd);
    dir[15] |= 4;                       /* extra data compatible */
    dir[23] = 8;                        /* 8 bytes of extra data */
    memcpy(dir + 32, "aa", 2);
    uint64_t new_dir = peek64(path, dir_offset + ENTRY_LEN) + 16 * CS;
    patch(path, new_dir, dir, CS);
    patch32(path, EXT_NB, 1);
    patch64(path, EXT_DIR_SIZE, 40);
    patch64(path, EXT_DIR_OFFSET, new_dir);
    struct block_node *node = tu_open(path, &qcow2_driver, true, NULL, NULL);
    assert_non_null(node);
    GError *err = NULL;
    g_autoptr(GPtrArray) list = qcow2_driver.bitmaps_list(node, &err);
    assert_int_equal(list->len, 1);
    struct dirty_bitmap *b = dirty_bitmap_new(SIZE, 65536);
    assert_true(qcow2_driver.bitmap_read(node, "aa", b, &err));
    assert_true(dirty_bitmap_get(b, 65536 * 3));
    dirty_bitmap_free(b);
    tu_close(node);
}

/* Random damage to the directory and the tables: whatever opens is used;
 * everything else is a clean error. */
static void test_random_damage(void **state)
{
    (void)state;
    GRand *rand = g_rand_new_with_seed(42);
    uint64_t table = peek64(base, dir_offset);
    for (unsigned i = 0; i < 300; i++) {
        g_autofree char *path = fresh_copy();
        for (unsigned k = 0; k < 1 + i % 4; k++) {
            uint64_t where;
            switch (g_rand_int_range(rand, 0, 3)) {
            case 0: where = EXT + g_rand_int_range(rand, 0, 32); break;
            case 1: where = dir_offset + g_rand_int_range(rand, 0, 64); break;
            default: where = table + g_rand_int_range(rand, 0, 16); break;
            }
            patch8(path, where, g_rand_int(rand));
        }
        open_and_exercise(path);
    }
    g_rand_free(rand);
}

int main(void)
{
    tmpdir = tu_tmpdir();
    base = g_build_filename(tmpdir, "base.qcow2", NULL);
    struct block_create_opts opts = { .size = SIZE, .cluster_size = CS };
    assert_true(qcow2_driver.create(base, &opts, NULL));
    struct block_node *node = tu_open(base, &qcow2_driver, false, NULL, NULL);
    struct dirty_bitmap *aa = dirty_bitmap_new(SIZE, 65536);
    struct dirty_bitmap *ab = dirty_bitmap_new(SIZE, 512);
    dirty_bitmap_set(aa, 65536 * 3, 1);
    dirty_bitmap_set(ab, 1 << 20, 100000);
    struct block_bitmap_entry e[] = {
        { "aa", 65536, true, false, aa }, { "ab", 512, false, false, ab },
    };
    if (!node || !qcow2_driver.bitmaps_store(node, e, 2, NULL)) {
        return 1;
    }
    tu_close(node);
    dirty_bitmap_free(aa);
    dirty_bitmap_free(ab);
    dir_offset = peek64(base, EXT_DIR_OFFSET);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory_refused),
        cmocka_unit_test(test_table_size_in_use),
        cmocka_unit_test(test_bad_table_entries),
        cmocka_unit_test(test_extra_data_compatible),
        cmocka_unit_test(test_random_damage),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
