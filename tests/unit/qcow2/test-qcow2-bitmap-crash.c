/* chainfs qcow2: a process killed while it replaces the bitmap set (with
 * guest writes between the stores) leaves an image that qemu-img check
 * finds at worst leaking clusters, holding exactly the old set or the
 * new one. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/dirty-bitmap.h"
#include "qcow2-test-util.h"

extern const struct block_driver qcow2_driver;

#define SIZE (8u << 20)
#define MAX_SET 4
#define LOOKAHEAD 64    /* stores the child may finish before the kill */

static char *tmpdir;

static const char *const names[] = { "alpha", "beta", "gamma", "delta",
                                     "epsilon" };

/* The set number k of a run: deterministic, so the parent can rebuild
 * it.  Set 0 is what the image starts with (no bitmaps). */
struct test_set {
    size_t n;
    struct block_bitmap_entry e[MAX_SET];
};

static void make_set(uint32_t seed, unsigned k, struct test_set *set)
{
    memset(set, 0, sizeof(*set));
    if (k == 0) {
        return;
    }
    GRand *rand = g_rand_new_with_seed(seed * 7919 + k);
    set->n = g_rand_int_range(rand, 0, MAX_SET + 1);
    unsigned first = g_rand_int_range(rand, 0, 2);
    for (size_t i = 0; i < set->n; i++) {
        struct block_bitmap_entry *e = &set->e[i];
        e->name = names[first + i];
        e->granularity = 512u << g_rand_int_range(rand, 0, 8);
        e->enabled = g_rand_boolean(rand);
        e->in_use = g_rand_int_range(rand, 0, 4) == 0;
        if (!e->in_use) {
            e->bits = dirty_bitmap_new(SIZE, e->granularity);
            for (int r = 0; r < 8; r++) {
                uint64_t off = g_rand_int_range(rand, 0, SIZE);
                uint64_t len = g_rand_int_range(rand, 1, 1 << 20);
                dirty_bitmap_set(e->bits, off, MIN(len, SIZE - off));
            }
        }
    }
    g_rand_free(rand);
}

static void free_set(struct test_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->e[i].bits) {
            dirty_bitmap_free(set->e[i].bits);
        }
    }
}

static void child_run(const char *path, int report_fd, uint32_t seed)
{
    qcow2_l2_cache_bytes = 0;
    qcow2_refblock_cache_bytes = 0;
    struct block_node *node = tu_open(path, &qcow2_driver, false, NULL,
                                      NULL);
    if (!node) {
        _exit(2);
    }
    g_autofree uint8_t *buf = g_malloc(65536);
    for (unsigned k = 1;; k++) {
        struct test_set set;
        make_set(seed, k, &set);
        tu_fill(buf, 65536, k);
        if (qcow2_driver.write(node, (k * 65536ull) % SIZE, 65536, buf) < 0 ||
            !qcow2_driver.bitmaps_store(node, set.e, set.n, NULL)) {
            _exit(3);
        }
        free_set(&set);
        char c = 1;
        if (write(report_fd, &c, 1) != 1) {
            _exit(5);
        }
    }
}

/* Whether the image's set is set. */
static bool image_has_set(struct block_node *node, GPtrArray *list,
                          struct test_set *set)
{
    if (list->len != set->n) {
        return false;
    }
    for (size_t i = 0; i < set->n; i++) {
        struct block_bitmap_info *info = g_ptr_array_index(list, i);
        const struct block_bitmap_entry *e = &set->e[i];
        if (strcmp(info->name, e->name) != 0 ||
            info->granularity != e->granularity ||
            info->enabled != e->enabled) {
            return false;
        }
        /* An in-use entry keeps whatever bits it had: flags only. */
        if (info->in_use != e->in_use) {
            return false;
        }
        if (e->in_use) {
            continue;
        }
        struct dirty_bitmap *got = dirty_bitmap_new(SIZE, e->granularity);
        bool ok = qcow2_driver.bitmap_read(node, e->name, got, NULL);
        uint64_t count = dirty_bitmap_count(got);
        dirty_bitmap_merge(got, e->bits);   /* equal: the union adds none */
        ok = ok && count == dirty_bitmap_count(e->bits) &&
             dirty_bitmap_count(got) == count;
        dirty_bitmap_free(got);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static void crash_once(const char *path, unsigned cs, unsigned kill_after,
                       uint32_t seed)
{
    unlink(path);
    struct block_create_opts opts = { .size = SIZE, .cluster_size = cs };
    assert_true(qcow2_driver.create(path, &opts, NULL));
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
    unsigned seen = 0;
    char c;
    while (seen < kill_after && read(fds[0], &c, 1) == 1) {
        seen++;
    }
    /* Somewhere inside the next store (it syncs a few times). */
    usleep(g_random_int_range(0, 20000));
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(seen, kill_after);

    g_autofree char *out = NULL;
    int ret = tu_check(path, &out);
    if (ret != 0 && ret != 3) {
        fail_msg("kill after %u stores: qemu-img check %d\n%s", kill_after,
                 ret, out);
    }
    struct block_node *node = tu_open(path, &qcow2_driver, true, NULL, NULL);
    assert_non_null(node);
    g_autoptr(GPtrArray) list = qcow2_driver.bitmaps_list(node, NULL);
    bool found = false;
    for (unsigned k = kill_after; k <= kill_after + LOOKAHEAD && !found;
         k++) {
        struct test_set set;
        make_set(seed, k, &set);
        found = image_has_set(node, list, &set);
        free_set(&set);
    }
    tu_close(node);
    if (!found) {
        fail_msg("kill after %u stores: the image holds no set stored "
                 "then or later", kill_after);
    }
}

static void test_kill_during_stores(void **state)
{
    (void)state;
    if (!tu_have_qemu()) {
        skip();
    }
    g_autofree char *path = g_build_filename(tmpdir, "crash.qcow2", NULL);
    static const unsigned cluster_sizes[] = { 512, 4096, 65536 };
    for (unsigned c = 0; c < G_N_ELEMENTS(cluster_sizes); c++) {
        for (unsigned i = 0; i < 6; i++) {
            crash_once(path, cluster_sizes[c], i * 3, c * 100 + i);
        }
    }
}

int main(void)
{
    tmpdir = tu_tmpdir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_stores),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmpdir);
    return ret;
}
