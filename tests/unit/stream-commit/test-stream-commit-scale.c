/* Scale tests for stream and commit: a 1 TiB virtual disk of qcow2 layers
 * with a few MiB allocated in each streams and commits in seconds and in
 * bounded memory, because the jobs walk the allocation (block status),
 * not the virtual size. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"

#include "sc-test-util.h"

#define TiB (1024 * 1024 * MiB)
#define SIZE (1 * TiB)
#define PIECES 16
#define PIECE (256 * KiB)
#define MAX_SECONDS 60
#define MAX_RSS_GROWTH (64 * MiB)

/* Where layer `layer` writes piece i (disjoint across layers, except that
 * the top's piece 0 overwrites the base's). */
static uint64_t piece_offset(unsigned layer, unsigned i)
{
    if (layer == 2 && i == 0) {
        return 0;
    }
    return (uint64_t)i * (SIZE / PIECES) + (uint64_t)layer * 1024 * MiB +
           (layer == 1 ? 4096 : 0);
}

static void fill(uint8_t *buf, unsigned layer, unsigned i)
{
    for (uint64_t j = 0; j < PIECE; j++) {
        buf[j] = (uint8_t)(layer * 71 + i * 29 + j % 253 + 1);
    }
}

static void write_pieces(const char *path, unsigned layer)
{
    GError *error = NULL;
    struct block_node *node = chain_open(path, NULL, false, &error);
    g_autofree uint8_t *buf = g_malloc(PIECE);

    assert_non_null(node);
    for (unsigned i = 0; i < PIECES; i++) {
        fill(buf, layer, i);
        assert_int_equal(node->driver->write(node, piece_offset(layer, i),
                                             PIECE, buf), 0);
    }
    assert_int_equal(chain_close(node), 0);
}

/* base <- mid <- top, 1 TiB each, 4 MiB of data each. */
static struct disk *huge_chain(struct fixture *f, char **paths)
{
    const char *names[] = { "base.qcow2", "mid.qcow2", "top.qcow2" };

    for (unsigned layer = 0; layer < 3; layer++) {
        paths[layer] = path_in(f, names[layer]);
        create_image(paths[layer], "qcow2", SIZE, 0,
                     layer ? paths[layer - 1] : NULL,
                     layer ? "qcow2" : NULL);
        write_pieces(paths[layer], layer);
    }
    return open_disk(paths[2]);
}

/* Every piece reads as written (the top's piece 0 over the base's), and a
 * range between pieces reads zeros. */
static void assert_content(struct disk *disk)
{
    g_autofree uint8_t *buf = g_malloc(PIECE);
    g_autofree uint8_t *want = g_malloc(PIECE);

    for (unsigned layer = 0; layer < 3; layer++) {
        for (unsigned i = 0; i < PIECES; i++) {
            if (layer == 0 && i == 0) {
                continue;
            }
            fill(want, layer, i);
            assert_int_equal(disk_read(disk, piece_offset(layer, i), PIECE,
                                       buf), 0);
            assert_memory_equal(buf, want, PIECE);
        }
    }
    assert_int_equal(disk_read(disk, SIZE / 2 + 3 * 1024 * MiB, PIECE, buf),
                     0);
    memset(want, 0, PIECE);
    assert_memory_equal(buf, want, PIECE);
}

static uint64_t max_rss_bytes(void)
{
    struct rusage usage;

    assert_int_equal(getrusage(RUSAGE_SELF, &usage), 0);
    return (uint64_t)usage.ru_maxrss * 1024;
}

/* Run the job to its end in bounded time and memory. */
static void run_bounded(struct fixture *f, struct disk *disk,
                        const char *cmd, bool active)
{
    uint64_t rss_before = max_rss_bytes();
    int64_t start = g_get_monotonic_time();
    GError *error = NULL;

    struct job *job = start_job(f, disk, cmd);
    if (active) {
        wait_state(job, JOB_STATE_READY);
        assert_true(job_complete(job, &error));
    }
    wait_result(job, JOB_RESULT_COMPLETED);
    job_unref(job);
    int64_t elapsed = g_get_monotonic_time() - start;
    uint64_t growth = max_rss_bytes() - rss_before;
    print_message("%s: %.2f s, max RSS growth %llu KiB\n", cmd,
                  elapsed / 1e6, (unsigned long long)(growth / KiB));
    assert_true(elapsed < MAX_SECONDS * G_USEC_PER_SEC);
    assert_true(growth < MAX_RSS_GROWTH);
}

static void check_images(struct disk *disk, char **paths)
{
    assert_int_equal(disk_flush(disk), 0);
    assert_chain_matches_qemu(disk);
    if (have_qemu_img()) {
        for (unsigned i = 0; i < 3; i++) {
            assert_qemu_img_check(paths[i]);
        }
    }
}

static void test_stream_huge(void **state)
{
    struct fixture *f = *state;
    char *paths[3];
    struct disk *disk = huge_chain(f, paths);

    run_bounded(f, disk, "stream id=s1 disk=vm1", false);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_int_equal(strchr(chain, '\n')[1], '\0');
    assert_content(disk);
    check_images(disk, paths);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

static void test_intermediate_commit_huge(void **state)
{
    struct fixture *f = *state;
    char *paths[3];
    struct disk *disk = huge_chain(f, paths);
    g_autofree char *cmd = g_strdup_printf("commit id=c1 disk=vm1 top=%s",
                                           paths[1]);

    run_bounded(f, disk, cmd, false);
    assert_content(disk);
    check_images(disk, paths);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

static void test_active_commit_huge(void **state)
{
    struct fixture *f = *state;
    char *paths[3];
    struct disk *disk = huge_chain(f, paths);

    run_bounded(f, disk, "commit id=c1 disk=vm1", true);
    g_autofree char *chain = disk_describe_chain(disk);
    assert_non_null(strstr(chain, paths[0]));
    assert_content(disk);
    check_images(disk, paths);
    assert_int_equal(disk_close(disk), 0);
    free_paths(paths, 3);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, mirror_setup, mirror_teardown)
    const struct CMUnitTest tests[] = {
        T(test_stream_huge),
        T(test_intermediate_commit_huge),
        T(test_active_commit_huge),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
