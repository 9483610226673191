/* Prints qemu-io "write" commands that scatter extents over a disk, for the
 * benchmark's chain.  The same arguments always print the same commands: the
 * generator is a fixed splitmix64, not libc's rand(), so chains match across
 * machines and C libraries.
 *
 * usage: gen-extents SEED SIZE PPM MIN_EXTENT MAX_EXTENT PATTERN
 * Walks the disk in order, alternating a gap and an extent; extents are
 * multiples of 4 KiB in [MIN_EXTENT, MAX_EXTENT], gaps are drawn so that
 * about PPM parts per million of the disk end up written. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define ALIGN 4096ULL

static uint64_t state;

static uint64_t next_random(void)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A multiple of ALIGN, uniform in [lo, hi] (both multiples of ALIGN). */
static uint64_t aligned_between(uint64_t lo, uint64_t hi)
{
    uint64_t steps = (hi - lo) / ALIGN + 1;
    return lo + (next_random() % steps) * ALIGN;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s SEED SIZE PPM MIN_EXTENT MAX_EXTENT "
                "PATTERN\n", argv[0]);
        return 2;
    }
    state = strtoull(argv[1], NULL, 0);
    uint64_t size = strtoull(argv[2], NULL, 0);
    uint64_t ppm = strtoull(argv[3], NULL, 0);
    uint64_t min_ext = strtoull(argv[4], NULL, 0) / ALIGN * ALIGN;
    uint64_t max_ext = strtoull(argv[5], NULL, 0) / ALIGN * ALIGN;
    unsigned pattern = strtoul(argv[6], NULL, 0) & 0xff;

    if (ppm < 1 || ppm > 1000000 || min_ext < ALIGN || max_ext < min_ext) {
        fprintf(stderr, "gen-extents: bad arguments\n");
        return 2;
    }
    /* Mean gap so that extent / (extent + gap) = ppm / 1000000. */
    uint64_t mean_ext = (min_ext + max_ext) / 2;
    uint64_t mean_gap = mean_ext * (1000000 - ppm) / ppm;
    uint64_t max_gap = (2 * mean_gap) / ALIGN * ALIGN;

    uint64_t off = 0;
    for (;;) {
        off += max_gap ? aligned_between(0, max_gap) : 0;
        uint64_t len = aligned_between(min_ext, max_ext);
        if (off >= size) {
            break;
        }
        if (len > size - off) {
            len = size - off;
        }
        /* Vary the byte per extent so that misplaced data is visible. */
        unsigned byte = (pattern + (unsigned)(off / ALIGN)) & 0xff;
        printf("write -q -P 0x%02x %" PRIu64 " %" PRIu64 "\n",
               byte ? byte : 1, off, len);
        off += len;
    }
    return 0;
}
