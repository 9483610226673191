/* Owner maps: one lookup per read-only stretch answers as the walk would.
 *
 * A test driver keeps each layer in memory: per cluster, unallocated,
 * data (one byte value) or zeros.  Random chains are built twice, once
 * with the layers below the top read-only (owner maps and layer maps
 * answer) and once all writable (every layer's driver is asked, as the
 * walk did before maps), and every read, chain status, allocated-above
 * answer must agree.  Then every kind of chain change (layers removed,
 * the top switched, a layer reopened writable, written and reopened
 * read-only) must be seen by the next read, even the draining thread's
 * own.  Last, reader threads race those changes (the 'thread' suite runs
 * this under TSan): each change keeps the content, so every read is
 * checked against it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"
#include "core/disk.h"
#include "core/layer-map.h"
#include "core/owner-map.h"

#define CLUSTER 4096
#define CLUSTERS 64
#define DISK_SIZE ((uint64_t)CLUSTER * CLUSTERS)

enum { UNALLOCATED, DATA, ZERO };

struct mem_layer {
    uint8_t state[CLUSTERS];    /* atomic: UNALLOCATED, DATA or ZERO */
    uint8_t data[CLUSTERS];     /* atomic: what a DATA cluster holds */
};

static int mem_state(const struct mem_layer *m, uint64_t cluster)
{
    return __atomic_load_n(&m->state[cluster], __ATOMIC_ACQUIRE);
}

/* Make cluster read as byte (0: zeros) in m; readers may be running. */
static void mem_set(struct mem_layer *m, uint64_t cluster, int state,
                    uint8_t byte)
{
    __atomic_store_n(&m->data[cluster], byte, __ATOMIC_RELAXED);
    __atomic_store_n(&m->state[cluster], state, __ATOMIC_RELEASE);
}

static int mem_read(struct block_node *node, uint64_t offset, uint64_t len,
                    void *buf)
{
    struct mem_layer *m = node->opaque;
    uint8_t *p = buf;

    while (len > 0) {
        uint64_t cluster = offset / CLUSTER;
        uint64_t n = MIN(len, CLUSTER - offset % CLUSTER);
        int state = offset < node->size ? mem_state(m, cluster) : ZERO;
        if (state == DATA) {
            memset(p, __atomic_load_n(&m->data[cluster], __ATOMIC_RELAXED),
                   n);
        } else if (state == ZERO) {
            memset(p, 0, n);
        } else {
            int ret = block_node_read_backing(node, offset, n, p);
            if (ret < 0) {
                return ret;
            }
        }
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

static int status_of(int state)
{
    return state == UNALLOCATED ? 0 : BLOCK_STATUS_ALLOCATED |
           (state == ZERO ? BLOCK_STATUS_ZERO : BLOCK_STATUS_DATA);
}

static int mem_block_status(struct block_node *node, uint64_t offset,
                            uint64_t len, uint64_t *pnum)
{
    struct mem_layer *m = node->opaque;
    uint64_t cluster = offset / CLUSTER;
    int state = mem_state(m, cluster);
    uint64_t end = offset + len;
    uint64_t run_end = (cluster + 1) * CLUSTER;

    while (run_end < end && mem_state(m, run_end / CLUSTER) == state) {
        run_end += CLUSTER;
    }
    *pnum = MIN(run_end, end) - offset;
    return status_of(state);
}

static int mem_flush(struct block_node *node)
{
    (void)node;
    return 0;
}

static int mem_close(struct block_node *node)
{
    g_free(node->opaque);
    return 0;
}

static const struct block_driver mem_driver = {
    .format_name = "mem",
    .read = mem_read,
    .block_status = mem_block_status,
    .flush = mem_flush,
    .close = mem_close,
};

static struct block_node *mem_node_new(uint64_t size)
{
    struct block_node *node = g_new0(struct block_node, 1);
    node->driver = &mem_driver;
    node->opaque = g_new0(struct mem_layer, 1);
    node->fd = -1;
    node->size = size;
    node->filename = g_strdup("mem");
    return node;
}

/* A chain of n layers, [0] the top (writable), the rest read-only unless
 * all_writable; layer i's content from the generator seeded seed; some
 * layers shorter if short_layers. */
static struct block_node *chain_new(unsigned n, uint64_t seed,
                                    bool all_writable, bool short_layers)
{
    GRand *rand = g_rand_new_with_seed(seed);
    struct block_node *top = NULL, *above = NULL;

    for (unsigned i = 0; i < n; i++) {
        uint64_t size = DISK_SIZE;
        if (i > 0 && g_rand_int_range(rand, 0, 8) == 0 && short_layers) {
            size = CLUSTER * (uint64_t)g_rand_int_range(rand, 1, CLUSTERS);
            size -= g_rand_int_range(rand, 0, 2) * 1000;    /* unaligned */
        }
        struct block_node *node = mem_node_new(size);
        struct mem_layer *m = node->opaque;
        unsigned owned = i + 1 == n ? CLUSTERS / 2 : g_rand_int_range(rand,
                                                                     0, 6);
        for (unsigned k = 0; k < owned; k++) {
            uint64_t cl = g_rand_int_range(rand, 0, CLUSTERS);
            bool zero = g_rand_int_range(rand, 0, 5) == 0;
            mem_set(m, cl, zero ? ZERO : DATA, (uint8_t)(i * 7 + cl) | 1);
        }
        node->depth = i;
        node->read_only = i > 0 && !all_writable;
        if (above) {
            above->backing = node;
        } else {
            top = node;
        }
        above = node;
    }
    g_rand_free(rand);
    return top;
}

static struct block_node *layer_at(struct block_node *top, unsigned depth)
{
    while (depth-- > 0) {
        top = top->backing;
    }
    return top;
}

/* Every cluster's chain status, one byte each, from per-run answers. */
static void chain_statuses(struct block_node *top, int *statuses)
{
    for (uint64_t offset = 0; offset < DISK_SIZE;) {
        uint64_t pnum;
        int status = block_chain_status(top, offset, DISK_SIZE - offset,
                                        &pnum);
        assert_true(status >= 0);
        assert_true(pnum > 0 && pnum <= DISK_SIZE - offset);
        for (uint64_t o = offset; o < offset + pnum; o += CLUSTER) {
            statuses[o / CLUSTER] = status;
        }
        offset += pnum;
    }
}

/* Whether each cluster is allocated above base (at depth). */
static void allocated_above(struct block_node *top, unsigned base_depth,
                            bool *allocated)
{
    struct block_node *base = layer_at(top, base_depth);
    for (uint64_t offset = 0; offset < DISK_SIZE;) {
        uint64_t pnum;
        int ret = chain_is_allocated_above(top, base, offset,
                                           DISK_SIZE - offset, &pnum);
        assert_true(ret >= 0);
        assert_true(pnum > 0 && pnum <= DISK_SIZE - offset);
        for (uint64_t o = offset; o < offset + pnum; o += CLUSTER) {
            allocated[o / CLUSTER] = ret;
        }
        offset += pnum;
    }
}

static void assert_chains_agree(struct block_node *a, struct block_node *b,
                                unsigned layers, GRand *rand)
{
    g_autofree uint8_t *buf_a = g_malloc(DISK_SIZE);
    g_autofree uint8_t *buf_b = g_malloc(DISK_SIZE);
    int status_a[CLUSTERS], status_b[CLUSTERS];
    bool alloc_a[CLUSTERS], alloc_b[CLUSTERS];

    assert_int_equal(a->driver->read(a, 0, DISK_SIZE, buf_a), 0);
    assert_int_equal(b->driver->read(b, 0, DISK_SIZE, buf_b), 0);
    assert_memory_equal(buf_a, buf_b, DISK_SIZE);
    for (unsigned i = 0; i < 20; i++) {
        uint64_t offset = g_rand_int_range(rand, 0, DISK_SIZE - 1);
        uint64_t len = g_rand_int_range(rand, 1, DISK_SIZE - offset + 1);
        assert_int_equal(a->driver->read(a, offset, len, buf_a), 0);
        assert_memory_equal(buf_a, buf_b + offset, len);
    }
    chain_statuses(a, status_a);
    chain_statuses(b, status_b);
    assert_memory_equal(status_a, status_b, sizeof(status_a));
    for (unsigned depth = 1; depth <= layers; depth++) {
        allocated_above(a, depth, alloc_a);
        allocated_above(b, depth, alloc_b);
        assert_memory_equal(alloc_a, alloc_b, sizeof(alloc_a));
    }
}

static void test_random_chains_agree(void **state)
{
    (void)state;
    GRand *rand = g_rand_new_with_seed(42);

    for (uint64_t seed = 1; seed <= 40; seed++) {
        unsigned layers = g_rand_int_range(rand, 2, 80);
        struct block_node *mapped = chain_new(layers, seed, false, true);
        struct block_node *walked = chain_new(layers, seed, true, true);
        assert_chains_agree(mapped, walked, layers, rand);
        if (layers > 3) {
            unsigned stretch;
            assert_true(owner_map_bytes(mapped->backing, &stretch) > 0);
            assert_int_equal(stretch, layers - 2);
        }
        assert_int_equal(chain_close(mapped), 0);
        assert_int_equal(chain_close(walked), 0);
    }
    g_rand_free(rand);
}

/* Expected content of the whole disk, and a check of it. */
static void read_all(struct disk *disk, uint8_t *buf)
{
    assert_int_equal(disk_read(disk, 0, DISK_SIZE, buf), 0);
}

static void read_drained(struct disk *disk, uint8_t *buf)
{
    struct block_node *top = disk->top;
    assert_int_equal(top->driver->read(top, 0, DISK_SIZE, buf), 0);
}

/* What a reopen does to maps, for a layer without a file (block_node_reopen
 * needs one): the access, its layer map, the epoch. */
static void mem_reopen(struct block_node *node, bool read_only)
{
    if (!read_only) {
        layer_map_clear(node);
    }
    node->read_only = read_only;
    owner_maps_layer_changed(node);
}

/* The content of the chain as seen from from, written into to (as stream
 * into a top or commit into a base do): every cluster, so that to owns
 * all of it and the layers between can go.  Reads through the chain stay
 * the same.  to must be writable, and as big as from. */
static void copy_down_to(struct block_node *from, struct block_node *to)
{
    uint8_t buf[CLUSTER];
    for (uint64_t cl = 0; cl < CLUSTERS; cl++) {
        assert_int_equal(block_chain_read(from, cl * CLUSTER, CLUSTER, buf),
                         0);
        mem_set(to->opaque, cl, buf[0] ? DATA : ZERO, buf[0]);
    }
}

/* A cluster that base shows through the layers above it, or -1. */
static int64_t visible_cluster(struct block_node *top, struct block_node *base)
{
    for (uint64_t cl = 0; cl < CLUSTERS; cl++) {
        uint64_t pnum;
        if (chain_is_allocated_above(top, base, cl * CLUSTER, CLUSTER,
                                     &pnum) == 0) {
            return cl;
        }
    }
    return -1;
}

static void test_changes_invalidate(void **state)
{
    (void)state;
    struct disk *disk = disk_new("t", chain_new(40, 7, false, false), false);
    g_autofree uint8_t *expected = g_malloc(DISK_SIZE);
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);

    read_all(disk, expected);
    assert_true(owner_map_bytes(disk->top->backing, NULL) > 0);

    /* Commit layers 5..9 into 10: base reopened writable (the drainer's
     * own reads see it at once), written, reopened read-only. */
    struct block_node *above = layer_at(disk->top, 4);
    struct block_node *base = layer_at(disk->top, 10);
    int64_t cl = visible_cluster(disk->top, base);
    assert_true(cl >= 0);
    memset(expected + cl * CLUSTER, 0xab, CLUSTER);
    disk_drain_begin(disk);
    mem_reopen(base, false);
    mem_set(base->opaque, cl, DATA, 0xab);
    read_drained(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    disk_drain_end(disk);
    assert_null(disk->top->backing->owner_map);  /* swept: base changed */
    read_all(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    copy_down_to(above->backing, base);
    disk_drain_begin(disk);
    assert_int_equal(disk_remove_layers_drained(disk, above, base), 0);
    read_drained(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    mem_reopen(base, true);
    disk_drain_end(disk);
    read_all(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    unsigned stretch;
    assert_true(owner_map_bytes(disk->top->backing, &stretch) > 0);
    assert_int_equal(stretch, 40 - 5 - 2);

    /* A snapshot: the old top becomes a backing layer under a new one,
     * which is written. */
    struct block_node *overlay = mem_node_new(DISK_SIZE);
    disk_drain_begin(disk);
    mem_reopen(disk->top, true);
    overlay->backing = disk->top;
    assert_int_equal(disk_switch_top_drained(disk, overlay), 0);
    read_drained(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    disk_drain_end(disk);
    memset(expected + 3 * CLUSTER, 0x5a, CLUSTER);
    mem_set(overlay->opaque, 3, DATA, 0x5a);
    read_all(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    assert_true(owner_map_bytes(disk->top->backing, &stretch) > 0);
    assert_int_equal(stretch, 40 - 5 - 1);

    /* A stream from base 20: the top takes what lies above it. */
    base = layer_at(disk->top, 20);
    copy_down_to(disk->top, disk->top);
    disk_drain_begin(disk);
    assert_int_equal(disk_remove_layers_drained(disk, disk->top, base), 0);
    disk_drain_end(disk);
    read_all(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    /* The top owns everything now; what lies below is mapped anew. */
    assert_null(disk->top->backing->owner_map);
    assert_int_equal(block_chain_read(disk->top->backing, 0, DISK_SIZE, buf),
                     0);
    assert_true(owner_map_bytes(disk->top->backing, &stretch) > 0);
    assert_int_equal(stretch, 40 - 5 + 1 - 20 - 1);

    assert_int_equal(disk_close(disk), 0);
}

/* Readers racing chain changes that keep the content. */
#define READERS 2
#define ROUNDS 30

struct race {
    struct disk *disk;
    const uint8_t *expected;
    bool stop;                  /* atomic */
    unsigned reads;             /* atomic */
    char *failure;              /* atomic: the first reader's failure */
};

/* cmocka's asserts belong to the main thread: readers report here. */
static void race_fail(struct race *r, char *message)
{
    char *expected = NULL;
    if (!__atomic_compare_exchange_n(&r->failure, &expected, message, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        g_free(message);
    }
    __atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
}

static void *race_reader(void *opaque)
{
    struct race *r = opaque;
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);
    GRand *rand = g_rand_new();

    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t offset = g_rand_int_range(rand, 0, DISK_SIZE - 1);
        uint64_t len = g_rand_int_range(rand, 1, 3 * CLUSTER);
        len = MIN(len, DISK_SIZE - offset);
        int ret = disk_read(r->disk, offset, len, buf);
        if (ret < 0) {
            race_fail(r, g_strdup_printf("read at %" PRIu64 ": %s", offset,
                                         g_strerror(-ret)));
        } else if (memcmp(buf, r->expected + offset, len) != 0) {
            race_fail(r, g_strdup_printf("read at %" PRIu64 " (%" PRIu64
                                         " bytes) differs", offset, len));
        }
        uint64_t pnum;
        if (disk_block_status(r->disk, offset, len, &pnum) < 0) {
            race_fail(r, g_strdup_printf("status at %" PRIu64 " failed",
                                         offset));
        }
        __atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
    }
    g_rand_free(rand);
    return NULL;
}

/* Wait (polling, at most ten seconds) until the readers made `reads`
 * reads or one of them failed. */
static void wait_for_reads(struct race *r, unsigned reads)
{
    for (int i = 0; i < 10000; i++) {
        if (__atomic_load_n(&r->reads, __ATOMIC_RELAXED) >= reads ||
            __atomic_load_n(&r->failure, __ATOMIC_ACQUIRE)) {
            return;
        }
        g_usleep(1000);
    }
}

/* One round: a snapshot, a commit of two layers (base written while
 * writable and readers run), and a stream of the top's backing layer. */
static void race_round(struct disk *disk)
{
    struct block_node *overlay = mem_node_new(DISK_SIZE);
    disk_drain_begin(disk);
    mem_reopen(disk->top, true);
    overlay->backing = disk->top;
    assert_int_equal(disk_switch_top_drained(disk, overlay), 0);
    disk_drain_end(disk);

    struct block_node *above = layer_at(disk->top, 2);
    struct block_node *base = layer_at(disk->top, 5);
    disk_drain_begin(disk);
    mem_reopen(base, false);
    disk_drain_end(disk);
    copy_down_to(above->backing, base);
    disk_drain_begin(disk);
    assert_int_equal(disk_remove_layers_drained(disk, above, base), 0);
    mem_reopen(base, true);
    disk_drain_end(disk);

    copy_down_to(disk->top, disk->top);
    disk_drain_begin(disk);
    assert_int_equal(disk_remove_layers_drained(disk, disk->top,
                                                disk->top->backing->backing),
                     0);
    disk_drain_end(disk);
}

static void test_readers_race_changes(void **state)
{
    (void)state;
    struct disk *disk = disk_new("t", chain_new(ROUNDS * 3 + 8, 11, false, false),
                                 false);
    g_autofree uint8_t *expected = g_malloc(DISK_SIZE);
    struct race r = { .disk = disk, .expected = expected };
    pthread_t threads[READERS];

    read_all(disk, expected);
    for (unsigned i = 0; i < READERS; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, race_reader, &r),
                         0);
    }
    for (unsigned round = 0; round < ROUNDS; round++) {
        /* Let the readers in between the changes: the drains prefer the
         * writer, and on a busy machine the rounds could otherwise all
         * run before any reader is scheduled. */
        wait_for_reads(&r, __atomic_load_n(&r.reads, __ATOMIC_RELAXED) + 1);
        race_round(disk);
    }
    __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < READERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    }
    if (r.failure) {
        fail_msg("%s", r.failure);
    }
    assert_true(__atomic_load_n(&r.reads, __ATOMIC_RELAXED) > 0);
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);
    read_all(disk, buf);
    assert_memory_equal(buf, expected, DISK_SIZE);
    assert_int_equal(disk_close(disk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_chains_agree),
        cmocka_unit_test(test_changes_invalidate),
        cmocka_unit_test(test_readers_race_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
