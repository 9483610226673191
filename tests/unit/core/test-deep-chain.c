/* Deep chains: reads walk the layers in a loop, not on the stack.
 *
 * A test driver keeps each layer in memory (a few allocated clusters) and
 * reads its unallocated ranges through block_node_read_backing, as qcow2
 * does, with a stack frame as big as a real driver's under ASan.  A chain
 * of 2000 such layers is read in a thread with a 256 KiB stack: one frame
 * per layer would need about a megabyte.  The driver also checks that it
 * is only ever asked for ranges it allocates (or, at the bottom, anything):
 * each run is read from the layer that owns it, never by falling through.
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
#include "core/layer-map.h"
#include "core/owner-map.h"

#define LAYERS 2000
#define CLUSTER 4096
#define CLUSTERS 64
#define DISK_SIZE ((uint64_t)CLUSTER * CLUSTERS)
#define SMALL_STACK (256 * 1024)
/* What a driver's read keeps on the stack, about (qcow2 under ASan). */
#define DRIVER_FRAME 512

struct mem_layer {
    unsigned index;
    bool allocated[CLUSTERS];
    bool zero[CLUSTERS];        /* allocated as zeros */
    unsigned fallthrough_reads; /* reads of ranges it does not allocate */
};

static uint8_t layer_byte(unsigned index, uint64_t cluster)
{
    return (uint8_t)(index * 7 + cluster * 13 + 1) | 1;
}

static int mem_status_at(const struct mem_layer *m, uint64_t cluster)
{
    if (!m->allocated[cluster]) {
        return 0;
    }
    return BLOCK_STATUS_ALLOCATED |
           (m->zero[cluster] ? BLOCK_STATUS_ZERO : BLOCK_STATUS_DATA);
}

static int mem_read(struct block_node *node, uint64_t offset, uint64_t len,
                    void *buf)
{
    struct mem_layer *m = node->opaque;
    volatile uint8_t frame[DRIVER_FRAME];
    uint8_t *p = buf;

    frame[0] = 1;
    frame[DRIVER_FRAME - 1] = frame[0];
    while (len > 0) {
        uint64_t cluster = offset / CLUSTER;
        uint64_t n = MIN(len, CLUSTER - offset % CLUSTER);
        if (m->allocated[cluster]) {
            memset(p, m->zero[cluster] ? 0 : layer_byte(m->index, cluster),
                   n);
        } else {
            if (node->backing) {
                __atomic_add_fetch(&m->fallthrough_reads, 1,
                                   __ATOMIC_RELAXED);
            }
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

static int mem_block_status(struct block_node *node, uint64_t offset,
                            uint64_t len, uint64_t *pnum)
{
    struct mem_layer *m = node->opaque;
    uint64_t cluster = offset / CLUSTER;
    int status = mem_status_at(m, cluster);
    uint64_t end = offset + len;
    uint64_t run_end = (cluster + 1) * CLUSTER;

    while (run_end < end && mem_status_at(m, run_end / CLUSTER) == status) {
        run_end += CLUSTER;
    }
    *pnum = MIN(run_end, end) - offset;
    return status;
}

static const struct block_driver mem_driver = {
    .format_name = "mem",
    .read = mem_read,
    .block_status = mem_block_status,
};

struct chain {
    struct block_node *nodes[LAYERS];   /* [0] is the top */
    struct mem_layer layers[LAYERS];
};

/* Layer i (from the top) owns cluster (i * 5) % CLUSTERS when i % 3 == 0,
 * as zeros when i % 7 == 0; the bottom owns every even cluster; the last
 * cluster is owned by nobody. */
static struct chain *chain_new(void)
{
    struct chain *c = g_new0(struct chain, 1);

    for (unsigned i = 0; i < LAYERS; i++) {
        struct block_node *node = g_new0(struct block_node, 1);
        struct mem_layer *m = &c->layers[i];
        m->index = i;
        if (i % 3 == 0) {
            uint64_t cluster = (i * 5) % (CLUSTERS - 1);
            m->allocated[cluster] = true;
            m->zero[cluster] = i % 7 == 0;
        }
        node->driver = &mem_driver;
        node->opaque = m;
        node->fd = -1;
        node->size = DISK_SIZE;
        node->depth = i;
        /* Odd layers read-only: they answer from their layer maps. */
        node->read_only = i % 2 == 1;
        c->nodes[i] = node;
    }
    for (uint64_t cl = 0; cl < CLUSTERS - 1; cl += 2) {
        c->layers[LAYERS - 1].allocated[cl] = true;
    }
    for (unsigned i = 0; i + 1 < LAYERS; i++) {
        c->nodes[i]->backing = c->nodes[i + 1];
    }
    return c;
}

static void chain_free(struct chain *c)
{
    for (unsigned i = 0; i < LAYERS; i++) {
        layer_map_clear(c->nodes[i]);
        owner_map_clear(c->nodes[i]);
        g_free(c->nodes[i]);
    }
    g_free(c);
}

/* What the top reads at cluster: the topmost owner's content. */
static uint8_t expected_byte(const struct chain *c, uint64_t cluster)
{
    for (unsigned i = 0; i < LAYERS; i++) {
        const struct mem_layer *m = &c->layers[i];
        if (m->allocated[cluster]) {
            return m->zero[cluster] ? 0 : layer_byte(i, cluster);
        }
    }
    return 0;
}

struct read_job {
    struct chain *chain;
    uint64_t offset, len;
    uint8_t *buf;
    int ret;
    int status_ret;
    uint64_t status_pnum;
};

static void *read_thread(void *opaque)
{
    struct read_job *job = opaque;
    struct block_node *top = job->chain->nodes[0];

    job->ret = top->driver->read(top, job->offset, job->len, job->buf);
    job->status_ret = block_chain_status(top, DISK_SIZE - CLUSTER, CLUSTER,
                                         &job->status_pnum);
    return NULL;
}

/* Run the read in a thread whose stack is SMALL_STACK bytes. */
static void read_on_small_stack(struct read_job *job)
{
    pthread_attr_t attr;
    pthread_t thread;

    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
    assert_int_equal(pthread_create(&thread, &attr, read_thread, job), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    pthread_attr_destroy(&attr);
}

static void check_range(struct chain *c, uint64_t offset, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);
    struct read_job job = { .chain = c, .offset = offset, .len = len,
                            .buf = buf };

    read_on_small_stack(&job);
    assert_int_equal(job.ret, 0);
    for (uint64_t i = 0; i < len; i++) {
        uint8_t want = expected_byte(c, (offset + i) / CLUSTER);
        if (buf[i] != want) {
            fail_msg("byte %" PRIu64 ": read %u, expected %u", offset + i,
                     buf[i], want);
        }
    }
    /* Nobody owns the last cluster: it reads as zeros, as one run. */
    assert_int_equal(job.status_ret, BLOCK_STATUS_ZERO);
    assert_int_equal(job.status_pnum, CLUSTER);
}

static void test_deep_read_small_stack(void **state)
{
    (void)state;
    struct chain *c = chain_new();

    check_range(c, 0, DISK_SIZE);
    check_range(c, CLUSTER / 2 + 3, 5 * CLUSTER + 17);
    /* Only the top falls through (its driver reads what it does not own
     * via read_backing); every layer below is asked for its own runs. */
    for (unsigned i = 1; i + 1 < LAYERS; i++) {
        if (c->layers[i].fallthrough_reads) {
            fail_msg("layer %u was read %u times for ranges it does not "
                     "allocate", i, c->layers[i].fallthrough_reads);
        }
        /* The last cluster is walked to the bottom: every read-only
         * layer was asked, and answers from its map since. */
        if (c->nodes[i]->read_only) {
            assert_true(layer_map_bytes(c->nodes[i]) > 0);
        }
    }
    chain_free(c);
}

/* A backing layer shorter than the layer above: zeros past its end, even
 * where a layer further down has data. */
static void test_short_layer_reads_zeros(void **state)
{
    (void)state;
    struct chain *c = chain_new();
    struct block_node *mid = c->nodes[LAYERS / 2];
    g_autofree uint8_t *buf = g_malloc(DISK_SIZE);

    mid->size = DISK_SIZE / 2;
    struct read_job job = { .chain = c, .offset = 0, .len = DISK_SIZE,
                            .buf = buf };
    read_on_small_stack(&job);
    assert_int_equal(job.ret, 0);
    for (uint64_t i = DISK_SIZE / 2; i < DISK_SIZE; i++) {
        uint64_t cluster = i / CLUSTER;
        uint8_t want = 0;
        for (unsigned l = 0; l < LAYERS / 2; l++) {
            if (c->layers[l].allocated[cluster]) {
                want = c->layers[l].zero[cluster] ? 0
                                                  : layer_byte(l, cluster);
                break;
            }
        }
        if (buf[i] != want) {
            fail_msg("byte %" PRIu64 ": read %u, expected %u", i, buf[i],
                     want);
        }
    }
    chain_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deep_read_small_stack),
        cmocka_unit_test(test_short_layer_reads_zeros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
