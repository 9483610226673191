/* Unit tests for core/named-bitmap.c and the dirty-bitmap functions it
 * uses: the commands' rules and errors, events, serialization in qcow2's
 * bit order, merge across granularities, and extents that come from one
 * state of the bitmap while writers keep marking it (suite 'thread'). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/chain.h"
#include "core/dirty-bitmap.h"
#include "core/disk.h"
#include "core/event-log.h"
#include "core/named-bitmap.h"
#include "test-util.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

struct fixture {
    char *dir;
    struct disk *disk;
    struct event_log *events;
};

static int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    g_autofree char *path = NULL;
    GError *err = NULL;
    struct block_node *top;

    f->dir = test_dir_new();
    path = g_build_filename(f->dir, "disk.raw", NULL);
    test_create_sparse(path, 64 * MiB);
    top = chain_open(path, "raw", false, &err);
    assert_non_null(top);
    f->disk = disk_new("vm", top, false);
    f->events = event_log_new(EVENT_LOG_MIN_KEPT);
    named_bitmaps_set_events(f->disk, f->events);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(disk_close(f->disk), 0);
    event_log_free(f->events);
    test_dir_remove(f->dir);
    g_free(f->dir);
    g_free(f);
    return 0;
}

/* The event log as one string. */
static char *events_text(struct fixture *f)
{
    uint64_t size = event_log_size(f->events);
    char *text = g_malloc0(size + 1);

    event_log_read(f->events, 0, size, text);
    return text;
}

/* errp is read only after the call has run (argument order). */
static void assert_fails(bool ok, GError **errp, int code, const char *part)
{
    GError *err = *errp;

    assert_false(ok);
    assert_non_null(err);
    if (err->code != code || !strstr(err->message, part)) {
        fail_msg("got '%s' (%d), want '%s' (%d)", err->message, err->code,
                 part, code);
    }
    g_clear_error(errp);
}

static void test_commands(void **state)
{
    struct fixture *f = *state;
    struct disk *disk = f->disk;
    uint8_t buf[4096] = { 0xaa };
    g_autofree char *status = NULL;
    g_autofree char *extents = NULL;
    g_autofree char *events = NULL;
    g_auto(GStrv) names = NULL;
    GError *err = NULL;

    assert_true(named_bitmap_add(disk, "b1", 0, false, false, &err));
    assert_true(named_bitmap_add(disk, "b2", 4 * KiB, false, true, &err));
    assert_fails(named_bitmap_add(disk, "b1", 0, false, false, &err), &err,
                 EEXIST, "already has a bitmap 'b1'");
    assert_fails(named_bitmap_add(disk, "x@y", 0, false, false, &err), &err,
                 EINVAL, "'@'");
    /* raw cannot hold bitmaps: persistent is ENOTSUP, nothing added. */
    assert_fails(named_bitmap_add(disk, "p", 0, true, false, &err), &err,
                 ENOTSUP, "not qcow2 version 3");

    /* Only the enabled bitmap records. */
    assert_int_equal(disk_write(disk, 100 * KiB, 4096, buf), 0);
    status = named_bitmap_status(disk, "b1");
    assert_string_equal(status, "name: b1\ngranularity: 65536\n"
                                "count: 65536\nrecording: yes\n"
                                "persistent: no\nbusy: no\n"
                                "inconsistent: no\n");
    g_free(status);
    status = named_bitmap_status(disk, "b2");
    assert_non_null(strstr(status, "count: 0\nrecording: no\n"));
    assert_int_equal(named_bitmap_extents(disk, "b1", &extents), 0);
    assert_string_equal(extents, "65536 65536\n");
    g_free(extents);

    /* A merge with a missing source merges nothing. */
    assert_fails(named_bitmap_merge(disk, "b2", (const char *const *)
                                    (const char *[]){ "b1", "nope", NULL },
                                    &err), &err, ENOENT, "no bitmap 'nope'");
    assert_int_equal(named_bitmap_extents(disk, "b2", &extents), 0);
    assert_string_equal(extents, "");
    g_free(extents);
    assert_true(named_bitmap_merge(disk, "b2", (const char *const *)
                                   (const char *[]){ "b1", NULL }, &err));
    assert_int_equal(named_bitmap_extents(disk, "b2", &extents), 0);
    assert_string_equal(extents, "65536 65536\n");
    g_free(extents);

    assert_true(named_bitmap_enable(disk, "b2", true, &err));
    assert_true(named_bitmap_enable(disk, "b1", false, &err));
    assert_int_equal(disk_write(disk, 1 * MiB, 512, buf), 0);
    assert_int_equal(named_bitmap_extents(disk, "b2", &extents), 0);
    assert_string_equal(extents, "65536 65536\n1048576 4096\n");
    g_free(extents);
    assert_int_equal(named_bitmap_extents(disk, "b1", &extents), 0);
    assert_string_equal(extents, "65536 65536\n");
    g_free(extents);

    assert_true(named_bitmap_clear(disk, "b2", &err));
    assert_int_equal(named_bitmap_extents(disk, "b2", &extents), 0);
    assert_string_equal(extents, "");
    g_free(extents);

    /* Busy bitmaps refuse every change but being merged from. */
    assert_non_null(named_bitmap_acquire(disk, "b1", "backup1", &err));
    assert_fails(named_bitmap_remove(disk, "b1", &err), &err, EBUSY,
                 "in use by job 'backup1'");
    assert_fails(named_bitmap_clear(disk, "b1", &err), &err, EBUSY,
                 "backup1");
    assert_null(named_bitmap_acquire(disk, "b1", "backup2", &err));
    g_clear_error(&err);
    assert_true(named_bitmap_merge(disk, "b2", (const char *const *)
                                   (const char *[]){ "b1", NULL }, &err));
    g_free(status);
    status = named_bitmap_status(disk, "b1");
    assert_non_null(strstr(status, "busy: yes"));
    named_bitmap_release(disk, "b1");

    assert_true(named_bitmap_remove(disk, "b1", &err));
    assert_fails(named_bitmap_remove(disk, "b1", &err), &err, ENOENT,
                 "disk 'vm' has no bitmap 'b1'");
    assert_null(named_bitmap_status(disk, "b1"));
    assert_int_equal(named_bitmap_extents(disk, "b1", &extents), -ENOENT);
    names = named_bitmap_names(disk);
    assert_int_equal(g_strv_length(names), 1);
    assert_string_equal(names[0], "b2");

    events = events_text(f);
    assert_non_null(strstr(events, " BITMAP_ADDED disk=vm name=b1\n"));
    assert_non_null(strstr(events, " BITMAP_ADDED disk=vm name=b2\n"));
    assert_non_null(strstr(events,
                           " BITMAP_MERGED disk=vm name=b2 from=b1\n"));
    assert_non_null(strstr(events, " BITMAP_ENABLED disk=vm name=b2\n"));
    assert_non_null(strstr(events, " BITMAP_DISABLED disk=vm name=b1\n"));
    assert_non_null(strstr(events, " BITMAP_CLEARED disk=vm name=b2\n"));
    assert_non_null(strstr(events, " BITMAP_REMOVED disk=vm name=b1\n"));
    /* Rejected commands leave no event. */
    assert_null(strstr(events, "name=p"));
    assert_null(strstr(events, "name=nope"));
}

static void test_limit(void **state)
{
    struct fixture *f = *state;
    GError *err = NULL;

    for (int i = 0; i < NAMED_BITMAP_MAX; i++) {
        g_autofree char *name = g_strdup_printf("b%d", i);
        assert_true(named_bitmap_add(f->disk, name, 0, false, true, &err));
    }
    assert_fails(named_bitmap_add(f->disk, "one-more", 0, false, false, &err),
                 &err, EINVAL, "has 64 bitmaps");
}

/* qcow2's layout: byte i, bit b (LSB first) is chunk 8i + b. */
static void test_serialize(void **state)
{
    const uint64_t gran = 512;
    const uint64_t size = 100000 * gran + 17;   /* a partial last chunk */
    struct dirty_bitmap *a = dirty_bitmap_new(size, gran);
    struct dirty_bitmap *b = dirty_bitmap_new(size, gran);
    size_t nbytes = (dirty_bitmap_chunks(a) + 7) / 8 + 64;
    g_autofree uint8_t *buf = g_malloc(nbytes);
    g_autofree uint8_t *again = g_malloc(nbytes);
    GRand *rand = g_rand_new_with_seed(7);

    (void)state;
    assert_int_equal(dirty_bitmap_chunks(a), 100001);
    assert_false(dirty_bitmap_serialize(a, 0, nbytes, buf));
    dirty_bitmap_set(a, 0, 1);                  /* chunk 0 */
    dirty_bitmap_set(a, 9 * gran, 1);           /* chunk 9 */
    dirty_bitmap_set(a, size - 1, 1);           /* the last chunk */
    assert_true(dirty_bitmap_serialize(a, 0, nbytes, buf));
    assert_int_equal(buf[0], 0x01);
    assert_int_equal(buf[1], 0x02);
    assert_int_equal(buf[100000 / 8], 1u << (100000 % 8));
    for (int i = 0; i < 200; i++) {
        uint64_t offset = g_rand_int_range(rand, 0, size);
        dirty_bitmap_set(a, offset, g_rand_int_range(rand, 1, 70 * gran));
    }
    /* In pieces of 64 chunks (8 bytes), the smallest step allowed. */
    for (size_t pos = 0; pos < nbytes; pos += 8) {
        dirty_bitmap_serialize(a, pos * 8, MIN(8, nbytes - pos), buf + pos);
        dirty_bitmap_deserialize(b, pos * 8, MIN(8, nbytes - pos), buf + pos);
    }
    /* Bits past the end are dropped, and never counted. */
    memset(buf + nbytes - 64, 0xff, 64);
    dirty_bitmap_deserialize(b, 0, nbytes, buf);
    assert_int_equal(dirty_bitmap_count(a), dirty_bitmap_count(b));
    dirty_bitmap_serialize(a, 0, nbytes, buf);
    dirty_bitmap_serialize(b, 0, nbytes, again);
    assert_memory_equal(buf, again, nbytes);
    g_rand_free(rand);
    dirty_bitmap_free(a);
    dirty_bitmap_free(b);
}

static bool count_run(void *opaque, uint64_t offset, uint64_t len)
{
    uint64_t *runs = opaque;

    (void)offset;
    (void)len;
    return ++*runs < 2;     /* stop after two */
}

static void test_merge_and_runs(void **state)
{
    struct dirty_bitmap *fine = dirty_bitmap_new(10 * MiB + 5, 4096);
    struct dirty_bitmap *coarse = dirty_bitmap_new(10 * MiB + 5, 1 * MiB);
    uint64_t runs = 0;

    (void)state;
    dirty_bitmap_set(fine, 4096, 1);
    dirty_bitmap_set(fine, 3 * MiB - 1, 2);
    dirty_bitmap_set(fine, 10 * MiB, 5);
    dirty_bitmap_merge(coarse, fine);
    /* Rounded out to the coarse chunks, clipped to the size. */
    assert_int_equal(dirty_bitmap_count(coarse), 3 * MiB + 5);
    assert_true(dirty_bitmap_get(coarse, 0));
    assert_true(dirty_bitmap_get(coarse, 2 * MiB));
    assert_true(dirty_bitmap_get(coarse, 3 * MiB));
    assert_false(dirty_bitmap_get(coarse, 1 * MiB));
    dirty_bitmap_for_each_run(coarse, count_run, &runs);
    assert_int_equal(runs, 2);
    dirty_bitmap_free(fine);
    dirty_bitmap_free(coarse);
}

/* Each writer marks a chunk and then the chunk after it, over and over
 * at a stride.  Any one state of the bitmap that holds the second chunk of
 * a pair holds the first; a walk torn by a writer (the first chunk read
 * before its write, the second after) would show the second alone. */
enum { WRITERS = 3, ROUNDS = 400, STRIDE = 4 * WRITERS };

struct writer_args {
    struct disk *disk;
    uint64_t first_chunk;
};

static void *writer_thread(void *opaque)
{
    struct writer_args *w = opaque;
    uint8_t buf[512] = { 1 };

    for (int i = 0; i < ROUNDS; i++) {
        uint64_t chunk = w->first_chunk + (uint64_t)i * STRIDE;

        assert_int_equal(disk_write(w->disk, chunk * 4096, 512, buf), 0);
        assert_int_equal(disk_write(w->disk, (chunk + 1) * 4096, 512, buf),
                         0);
    }
    return NULL;
}

/* Parse one extents text: sorted, merged runs; every pair complete. */
static void check_extents(const char *text, uint64_t *last_count)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autoptr(GHashTable) dirty = g_hash_table_new(g_int64_hash,
                                                   g_int64_equal);
    g_autofree gint64 *chunks = NULL;
    uint64_t end = 0, total = 0, n = 0;

    for (unsigned i = 0; lines[i] && *lines[i]; i++) {
        uint64_t off, len;
        assert_int_equal(sscanf(lines[i], "%" SCNu64 " %" SCNu64, &off,
                                &len), 2);
        assert_true(len > 0 && off % 4096 == 0 && len % 4096 == 0);
        assert_true(i == 0 || off > end);   /* merged and ascending */
        end = off + len;
        total += len;
    }
    chunks = g_new(gint64, total / 4096 + 1);
    for (unsigned i = 0; lines[i] && *lines[i]; i++) {
        uint64_t off, len;
        sscanf(lines[i], "%" SCNu64 " %" SCNu64, &off, &len);
        for (uint64_t c = off / 4096; c < (off + len) / 4096; c++) {
            chunks[n] = c;
            g_hash_table_add(dirty, &chunks[n++]);
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        gint64 first = chunks[i] - 1;
        if (chunks[i] % 4 == 1) {
            assert_true(g_hash_table_contains(dirty, &first));
        }
    }
    /* Bits are only ever added: each state holds at least the last. */
    assert_true(total >= *last_count);
    *last_count = total;
}

static void test_extents_under_writers(void **state)
{
    struct fixture *f = *state;
    struct writer_args args[WRITERS];
    pthread_t threads[WRITERS];
    uint64_t last_count = 0;
    GError *err = NULL;

    assert_true(named_bitmap_add(f->disk, "b", 4096, false, false, &err));
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (struct writer_args){ f->disk, 4 * i };
        assert_int_equal(pthread_create(&threads[i], NULL, writer_thread,
                                        &args[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        g_autofree char *text = NULL;
        g_autofree char *status = NULL;

        assert_int_equal(named_bitmap_extents(f->disk, "b", &text), 0);
        check_extents(text, &last_count);
        status = named_bitmap_status(f->disk, "b");
        assert_non_null(status);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(threads[i], NULL);
    }
    g_autofree char *text = NULL;
    assert_int_equal(named_bitmap_extents(f->disk, "b", &text), 0);
    check_extents(text, &last_count);
    assert_int_equal(last_count, (uint64_t)WRITERS * ROUNDS * 2 * 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        cmocka_unit_test(test_serialize),
        cmocka_unit_test(test_merge_and_runs),
        cmocka_unit_test_setup_teardown(test_extents_under_writers, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
