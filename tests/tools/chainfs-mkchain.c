/* chainfs-mkchain: build a deep qcow2 chain fast, for the deep-chain tests
 * and the benchmark.  One qemu-img and one qemu-io per layer cost about
 * 30 ms each: a thousand layers would take a minute.  This writes them
 * with chainfs's own qcow2 driver, every layer open at once and backing
 * onto the one below, so that zero writes leave real zero clusters.  The
 * result is an ordinary chain that qemu-img reads (the tests compare what
 * chainfs reads with what qemu-img convert reads).
 *
 * Usage: chainfs-mkchain [OPTIONS] DIR LAYERS SIZE
 *   creates DIR/layer0000.qcow2 (the base) .. DIR/layerNNNN.qcow2 (the top,
 *   printed on stdout), each backing onto the one before by a relative
 *   name, with the backing format recorded.
 *   -c BYTES  cluster size (default 65536)
 *   -k N      clusters each layer above the base writes (default 3), at
 *             places drawn by a fixed generator (same arguments, same
 *             chain); every fifth layer also zeroes one cluster
 *   -f        fill the base: it holds data everywhere (the benchmark)
 *   -s        make the base half the size: reads past its end are zeros
 *   -r SEED   seed of the generator (default 1)
 * SIZE takes a K, M or G suffix.  Exit status 0, or 1 with a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/block.h"
#include "core/chain.h"

struct mkchain {
    const char *dir;
    unsigned layers;
    uint64_t size;
    uint32_t cluster_size;
    unsigned clusters_per_layer;
    bool fill_base;
    bool short_base;
    uint64_t seed;
};

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void die(const char *what, GError *err)
{
    fprintf(stderr, "chainfs-mkchain: %s%s%s\n", what, err ? ": " : "",
            err ? err->message : "");
    exit(1);
}

static uint64_t parse_size(const char *arg)
{
    char *end;
    uint64_t value = strtoull(arg, &end, 10);
    switch (*end) {
    case 'G': value <<= 10; /* fall through */
    case 'M': value <<= 10; /* fall through */
    case 'K': value <<= 10; end++; break;
    default: break;
    }
    if (*end != '\0' || value == 0) {
        die("bad size", NULL);
    }
    return value;
}

/* Data that says which layer wrote it, and where. */
static void fill_pattern(uint8_t *buf, size_t len, unsigned layer,
                         uint64_t offset)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t word = ((uint64_t)(layer + 1) << 48) ^ (offset + i);
        memcpy(buf + i, &word, MIN(8, len - i));
    }
}

static void write_or_die(struct block_node *node, uint64_t offset,
                         uint64_t len, const void *buf)
{
    int ret = node->driver->write(node, offset, len, buf);
    if (ret < 0) {
        fprintf(stderr, "chainfs-mkchain: write to %s: %s\n",
                node->filename, g_strerror(-ret));
        exit(1);
    }
}

static void fill_base(struct block_node *base)
{
    const uint64_t chunk = 1 << 20;
    g_autofree uint8_t *buf = g_malloc(chunk);

    for (uint64_t offset = 0; offset < base->size; offset += chunk) {
        uint64_t n = MIN(chunk, base->size - offset);
        fill_pattern(buf, n, 0, offset);
        write_or_die(base, offset, n, buf);
    }
}

/* The layer's few clusters, and now and then a zeroed one. */
static void write_layer(const struct mkchain *m, struct block_node *node,
                        unsigned layer, uint64_t *rng)
{
    uint64_t clusters = node->size / m->cluster_size;
    g_autofree uint8_t *buf = g_malloc(m->cluster_size);

    for (unsigned i = 0; i < m->clusters_per_layer; i++) {
        uint64_t offset = next_random(rng) % clusters * m->cluster_size;
        fill_pattern(buf, m->cluster_size, layer, offset);
        write_or_die(node, offset, m->cluster_size, buf);
    }
    if (layer % 5 == 0) {
        uint64_t offset = next_random(rng) % clusters * m->cluster_size;
        int ret = block_node_write_zeroes(node, offset, m->cluster_size, 0);
        if (ret < 0) {
            fprintf(stderr, "chainfs-mkchain: zero %s: %s\n", node->filename,
                    g_strerror(-ret));
            exit(1);
        }
    }
}

static struct block_node *create_layer(const struct mkchain *m,
                                       unsigned layer)
{
    const struct block_driver *qcow2 = block_driver_by_name("qcow2");
    g_autofree char *path = g_strdup_printf("%s/layer%04u.qcow2", m->dir,
                                            layer);
    g_autofree char *backing = layer ? g_strdup_printf("layer%04u.qcow2",
                                                       layer - 1) : NULL;
    struct block_create_opts opts = {
        .size = layer == 0 && m->short_base ? m->size / 2 : m->size,
        .cluster_size = m->cluster_size,
        .backing_name = backing,
        .backing_format = backing ? "qcow2" : NULL,
    };
    GError *err = NULL;

    if (!qcow2->create(path, &opts, &err)) {
        die("create", err);
    }
    struct block_node *node = block_node_open(path, "qcow2", false, &err);
    if (!node) {
        die("open", err);
    }
    return node;
}

static void parse_args(struct mkchain *m, int argc, char **argv)
{
    int c;

    *m = (struct mkchain){ .cluster_size = 65536, .clusters_per_layer = 3,
                           .seed = 1 };
    while ((c = getopt(argc, argv, "c:k:fsr:")) != -1) {
        switch (c) {
        case 'c': m->cluster_size = parse_size(optarg); break;
        case 'k': m->clusters_per_layer = atoi(optarg); break;
        case 'f': m->fill_base = true; break;
        case 's': m->short_base = true; break;
        case 'r': m->seed = strtoull(optarg, NULL, 10); break;
        default: exit(2);
        }
    }
    if (argc - optind != 3) {
        fprintf(stderr, "usage: chainfs-mkchain [-c CLUSTER] [-k N] [-f] "
                "[-s] [-r SEED] DIR LAYERS SIZE\n");
        exit(2);
    }
    m->dir = argv[optind];
    m->layers = atoi(argv[optind + 1]);
    m->size = parse_size(argv[optind + 2]);
    if (m->layers < 1 || m->size < m->cluster_size) {
        die("need at least one layer and one cluster", NULL);
    }
}

int main(int argc, char **argv)
{
    struct mkchain m;
    struct rlimit lim;

    parse_args(&m, argc, argv);
    /* Every layer stays open until the end: one fd each. */
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &lim);
    }

    uint64_t rng = m.seed;
    struct block_node *top = NULL;
    for (unsigned layer = 0; layer < m.layers; layer++) {
        struct block_node *node = create_layer(&m, layer);
        node->backing = top;
        top = node;
        if (layer == 0 && m.fill_base) {
            fill_base(node);
        } else {
            write_layer(&m, node, layer, &rng);
        }
    }
    int ret = chain_close(top);
    if (ret < 0) {
        fprintf(stderr, "chainfs-mkchain: close: %s\n", g_strerror(-ret));
        return 1;
    }
    printf("%s/layer%04u.qcow2\n", m.dir, m.layers - 1);
    return 0;
}
