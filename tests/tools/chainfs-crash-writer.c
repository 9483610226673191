/* chainfs-crash-writer: random writes with fsyncs, and the check of what
 * survived a crash.
 *
 *   chainfs-crash-writer write DISK LOG SEED [OPS]
 *       Opens DISK (the disk file in the mount) and runs a sequence of
 *       requests that depends only on SEED: batches of 1-8 writes (random
 *       sector-aligned ranges up to 32 KiB) and hole punches, each batch
 *       followed by fsync.  After each fsync returns it appends
 *       "synced N\n" (N = requests issued so far) to LOG with O_APPEND
 *       and fdatasyncs LOG, before issuing anything else.  Runs until OPS
 *       requests (default: forever) or the first error (exit 1: the
 *       daemon was killed).
 *
 *   chainfs-crash-writer check IMAGE LOG SEED INITIAL
 *       IMAGE is what the disk reads as now (a raw file), INITIAL what it
 *       read as before `write` started.  Replays the same sequence and
 *       checks every 512-byte sector: it must hold the last value written
 *       to it by a request before the last "synced N" of LOG (or its
 *       INITIAL content if none), or a value written by one of the
 *       requests that may have been in flight after it (those of the next
 *       batch).  Anything else is lost or corrupted data: exit 1 with the
 *       sector and what it held.
 *
 * A written sector is self-describing (magic, request index, sector
 * number, then bytes derived from all three), so the check tells which
 * request's data a sector holds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

#define SECTOR 512
#define MAX_SECTORS_PER_REQUEST 64  /* 32 KiB */
#define MAX_BATCH 8
#define SECTOR_MAGIC 0x43525348u    /* "CRSH" */

struct request {
    bool punch;
    uint64_t first_sector;
    uint64_t sectors;
};

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The request sequence: each call gives the next request, and *sync_after
 * says whether an fsync follows it. */
struct generator {
    uint64_t state;
    uint64_t disk_sectors;
    unsigned left_in_batch;
};

static struct request next_request(struct generator *g, bool *sync_after)
{
    if (g->left_in_batch == 0) {
        g->left_in_batch = 1 + splitmix64(&g->state) % MAX_BATCH;
    }
    struct request r;
    uint64_t x = splitmix64(&g->state);
    r.punch = x % 10 == 0;
    r.sectors = 1 + (x >> 8) % MAX_SECTORS_PER_REQUEST;
    if (r.sectors > g->disk_sectors) {
        r.sectors = g->disk_sectors;
    }
    r.first_sector = splitmix64(&g->state) % (g->disk_sectors - r.sectors + 1);
    *sync_after = --g->left_in_batch == 0;
    return r;
}

/* The content request index writes into sector. */
static void fill_sector(uint8_t *out, uint64_t seed, uint64_t index,
                        uint64_t sector)
{
    uint32_t magic = SECTOR_MAGIC;
    uint32_t index32 = (uint32_t)index;
    memcpy(out, &magic, 4);
    memcpy(out + 4, &index32, 4);
    memcpy(out + 8, &sector, 8);
    uint64_t state = seed ^ (index * 0x100000001b3ull) ^ (sector << 20);
    for (unsigned i = 16; i < SECTOR; i += 8) {
        uint64_t v = splitmix64(&state);
        memcpy(out + i, &v, 8);
    }
}

static void die(const char *what)
{
    fprintf(stderr, "chainfs-crash-writer: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t file_size(int fd, const char *name)
{
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        die(name);
    }
    return end;
}

static int run_writer(const char *disk, const char *log, uint64_t seed,
                      uint64_t max_ops)
{
    int fd = open(disk, O_RDWR);
    if (fd < 0) {
        die(disk);
    }
    int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0) {
        die(log);
    }
    struct generator g = { .state = seed,
                           .disk_sectors = file_size(fd, disk) / SECTOR };
    if (g.disk_sectors == 0) {
        fprintf(stderr, "chainfs-crash-writer: %s: too small\n", disk);
        return 2;
    }
    static uint8_t buf[MAX_SECTORS_PER_REQUEST * SECTOR];

    for (uint64_t i = 0; max_ops == 0 || i < max_ops; i++) {
        bool sync_after;
        struct request r = next_request(&g, &sync_after);
        off_t offset = r.first_sector * SECTOR;
        size_t len = r.sectors * SECTOR;
        if (r.punch) {
            if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          offset, len) < 0) {
                die("fallocate");
            }
        } else {
            for (uint64_t s = 0; s < r.sectors; s++) {
                fill_sector(buf + s * SECTOR, seed, i, r.first_sector + s);
            }
            ssize_t n = pwrite(fd, buf, len, offset);
            if (n != (ssize_t)len) {
                if (n >= 0) {
                    errno = EIO;
                }
                die("pwrite");
            }
        }
        if (sync_after || i + 1 == max_ops) {
            if (fsync(fd) < 0) {
                die("fsync");
            }
            char line[64];
            int n = snprintf(line, sizeof(line), "synced %" PRIu64 "\n",
                             i + 1);
            if (write(log_fd, line, n) != n || fdatasync(log_fd) < 0) {
                die(log);
            }
        }
    }
    return close(fd) < 0 ? 1 : 0;
}

/* N of the last complete "synced N" line of log, 0 if none. */
static uint64_t last_synced(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f) {
        if (errno == ENOENT) {
            return 0;
        }
        die(log);
    }
    char line[128];
    uint64_t synced = 0;
    while (fgets(line, sizeof(line), f)) {
        uint64_t n;
        if (strchr(line, '\n') && sscanf(line, "synced %" SCNu64, &n) == 1) {
            synced = n;
        }
    }
    fclose(f);
    return synced;
}

/* What may be in one sector: INITIAL, zeros, or a request's data. */
enum { VERSION_INITIAL = -1, VERSION_ZERO = -2 };

struct sector_versions {
    int64_t settled;                /* value after the synced requests */
    unsigned pending_count;
    int64_t pending[MAX_BATCH];     /* values the next batch may have left */
};

static int run_check(const char *image, const char *log, uint64_t seed,
                     const char *initial)
{
    int fd = open(image, O_RDONLY);
    int init_fd = open(initial, O_RDONLY);
    if (fd < 0 || init_fd < 0) {
        die(fd < 0 ? image : initial);
    }
    uint64_t size = file_size(fd, image);
    if (file_size(init_fd, initial) != size) {
        fprintf(stderr, "chainfs-crash-writer: %s and %s differ in size\n",
                image, initial);
        return 1;
    }
    uint64_t synced = last_synced(log);
    struct generator g = { .state = seed, .disk_sectors = size / SECTOR };
    struct sector_versions *v = calloc(g.disk_sectors, sizeof(*v));
    if (!v) {
        die("calloc");
    }
    for (uint64_t s = 0; s < g.disk_sectors; s++) {
        v[s].settled = VERSION_INITIAL;
    }

    /* Replay up to the end of the batch after the last synced one. */
    for (uint64_t i = 0;; i++) {
        bool sync_after;
        struct request r = next_request(&g, &sync_after);
        int64_t version = r.punch ? VERSION_ZERO : (int64_t)i;
        for (uint64_t s = r.first_sector; s < r.first_sector + r.sectors;
             s++) {
            if (i < synced) {
                v[s].settled = version;
            } else {
                v[s].pending[v[s].pending_count++] = version;
            }
        }
        if (i >= synced && sync_after) {
            break;
        }
    }

    uint8_t have[SECTOR], want[SECTOR];
    unsigned bad = 0;
    for (uint64_t s = 0; s < g.disk_sectors; s++) {
        if (pread(fd, have, SECTOR, s * SECTOR) != SECTOR) {
            die(image);
        }
        bool ok = false;
        for (unsigned k = 0; k <= v[s].pending_count && !ok; k++) {
            int64_t version = k == 0 ? v[s].settled : v[s].pending[k - 1];
            if (version == VERSION_INITIAL) {
                if (pread(init_fd, want, SECTOR, s * SECTOR) != SECTOR) {
                    die(initial);
                }
            } else if (version == VERSION_ZERO) {
                memset(want, 0, SECTOR);
            } else {
                fill_sector(want, seed, version, s);
            }
            ok = memcmp(have, want, SECTOR) == 0;
        }
        if (!ok && bad++ < 10) {
            uint32_t magic, index;
            memcpy(&magic, have, 4);
            memcpy(&index, have + 4, 4);
            fprintf(stderr, "chainfs-crash-writer: sector %" PRIu64
                    " (offset %" PRIu64 "): expected version %" PRId64
                    " (+%u pending) after synced %" PRIu64 ", found %s %u\n",
                    s, s * SECTOR, v[s].settled, v[s].pending_count, synced,
                    magic == SECTOR_MAGIC ? "request" : "foreign data",
                    magic == SECTOR_MAGIC ? index : 0);
        }
    }
    free(v);
    if (bad) {
        fprintf(stderr, "chainfs-crash-writer: %u bad sectors (seed %" PRIu64
                ", synced %" PRIu64 ")\n", bad, seed, synced);
        return 1;
    }
    printf("synced %" PRIu64 ": every sector as expected\n", synced);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && argc <= 6 && strcmp(argv[1], "write") == 0) {
        return run_writer(argv[2], argv[3], strtoull(argv[4], NULL, 0),
                          argc == 6 ? strtoull(argv[5], NULL, 0) : 0);
    }
    if (argc == 6 && strcmp(argv[1], "check") == 0) {
        return run_check(argv[2], argv[3], strtoull(argv[4], NULL, 0),
                         argv[5]);
    }
    fprintf(stderr, "usage: chainfs-crash-writer write DISK LOG SEED [OPS]\n"
                    "       chainfs-crash-writer check IMAGE LOG SEED "
                    "INITIAL\n");
    return 2;
}
