/* chainfs-readbench: CPU time of random reads through chainfs's own read
 * path, in process (no FUSE, no page cache copies to a client), for
 * comparing a deep chain with its flattened disk.
 *
 * Usage: chainfs-readbench IMAGE [READS [BLOCK]]
 *   opens IMAGE's chain read-only, warms up with READS random reads of
 *   BLOCK bytes (default 200000 reads of 4096), then times as many more
 *   and prints "NS_PER_READ cpu-ns/read" on stdout, then the memory of
 *   the owner map under the top (owner-map.h) and of the layer maps.
 *   Exit status 0, or 1 with a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/chain.h"
#include "core/disk.h"
#include "core/layer-map.h"
#include "core/owner-map.h"

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Read count random aligned blocks; 0 or the first error. */
static int read_random(struct disk *disk, uint64_t count, uint64_t block,
                       uint64_t *seed, void *buf)
{
    uint64_t blocks = disk_size(disk) / block;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t offset = next_random(seed) % blocks * block;
        int ret = disk_read(disk, offset, block, buf);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    GError *err = NULL;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: chainfs-readbench IMAGE [READS [BLOCK]]\n");
        return 1;
    }
    uint64_t reads = argc > 2 ? strtoull(argv[2], NULL, 0) : 200000;
    uint64_t block = argc > 3 ? strtoull(argv[3], NULL, 0) : 4096;
    struct block_node *top = chain_open(argv[1], NULL, true, &err);
    if (!top) {
        fprintf(stderr, "chainfs-readbench: %s\n", err->message);
        return 1;
    }
    struct disk *disk = disk_new("bench", top, true);
    g_autofree void *buf = g_malloc(block);
    uint64_t seed = 1;
    if (read_random(disk, reads, block, &seed, buf) < 0) {
        fprintf(stderr, "chainfs-readbench: read failed\n");
        return 1;
    }
    uint64_t t0 = thread_cpu_ns();
    int ret = read_random(disk, reads, block, &seed, buf);
    uint64_t t1 = thread_cpu_ns();
    if (ret < 0) {
        fprintf(stderr, "chainfs-readbench: read failed\n");
        return 1;
    }
    printf("%.0f cpu-ns/read\n", (double)(t1 - t0) / reads);
    unsigned stretch = 0;
    size_t owner_bytes = top->backing ? owner_map_bytes(top->backing,
                                                        &stretch) : 0;
    size_t layer_bytes = 0;
    for (struct block_node *node = top; node; node = node->backing) {
        layer_bytes += layer_map_bytes(node);
    }
    printf("owner map: %zu bytes over %u layers; layer maps: %zu bytes\n",
           owner_bytes, stretch, layer_bytes);
    disk_close(disk);
    return 0;
}
