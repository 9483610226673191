/* chainfs-fuzz-io: a randomized differential test of a disk file.
 *
 * Keeps an in-memory model of the file, initialized from a reference raw
 * copy of the chain, and applies thousands of random writes, zero-range
 * and punch-hole fallocates, reads and fsyncs to both, through a buffered
 * and an O_DIRECT descriptor.  Every read is checked against the model,
 * and at the end the whole file.  The same seed gives the same operations.
 *
 * Usage: chainfs-fuzz-io [-g GRAIN] [-r START:LEN] [-d DUMP] [-v]
 *                        FILE REFERENCE SEED NOPS
 *   -g GRAIN  bias offsets towards multiples of GRAIN (the cluster size)
 *   -r START:LEN  touch and check only this range (multiples of 4096), so
 *             that several instances can run at once on disjoint ranges
 *   -d DUMP   write the final model to DUMP (a raw image)
 *   -v        print every operation
 * Exit status: 0 when every check passed, 1 on a mismatch or an I/O error
 * (with the last operations printed), 2 on bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

#define DIRECT_ALIGN 4096
#define MAX_IO (1 << 20)
#define HISTORY 32

enum op_kind {
    OP_WRITE,           /* buffered pwrite of random bytes */
    OP_READ,            /* buffered pread, checked against the model */
    OP_DIRECT_WRITE,    /* O_DIRECT pwrite, 4K-aligned */
    OP_DIRECT_READ,     /* O_DIRECT pread, 4K-aligned */
    OP_ZERO,            /* fallocate(ZERO_RANGE) */
    OP_PUNCH,           /* fallocate(PUNCH_HOLE | KEEP_SIZE) */
    OP_FSYNC,
    OP_COUNT,
};

static const char *const op_names[OP_COUNT] = {
    "write", "read", "direct-write", "direct-read", "zero", "punch", "fsync",
};

/* Relative frequency of each kind of operation. */
static const unsigned op_weights[OP_COUNT] = { 30, 25, 10, 10, 10, 10, 5 };

struct op {
    unsigned number;
    enum op_kind kind;
    uint64_t offset;
    uint64_t len;
};

static const char *file_name;
static struct op history[HISTORY];
static unsigned ops_done;
static bool verbose;

static uint64_t rng_state;

/* splitmix64: tiny, and the same sequence on every libc. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng_next() % n : 0;
}

static void print_history(void)
{
    unsigned first = ops_done > HISTORY ? ops_done - HISTORY : 0;
    fprintf(stderr, "last operations:\n");
    for (unsigned i = first; i < ops_done; i++) {
        const struct op *op = &history[i % HISTORY];
        fprintf(stderr, "  #%u %s offset=%" PRIu64 " len=%" PRIu64 "\n",
                op->number, op_names[op->kind], op->offset, op->len);
    }
}

static void __attribute__((format(printf, 1, 2), noreturn)) fail(
    const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "chainfs-fuzz-io: %s: ", file_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    print_history();
    exit(1);
}

static void read_all(int fd, void *buf, uint64_t len, uint64_t offset,
                     const char *what)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fail("%s: pread at %" PRIu64 ": %s", what, offset,
                 strerror(errno));
        }
        if (n == 0) {
            fail("%s: unexpected end of file at %" PRIu64, what, offset);
        }
        p += n;
        len -= n;
        offset += n;
    }
}

static void write_all(int fd, const void *buf, uint64_t len, uint64_t offset,
                      const char *what)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fail("%s: pwrite at %" PRIu64 ": %s", what, offset,
                 n < 0 ? strerror(errno) : "wrote nothing");
        }
        p += n;
        len -= n;
        offset += n;
    }
}

static void compare(const uint8_t *expected, const uint8_t *actual,
                    uint64_t len, uint64_t offset, const char *what)
{
    if (memcmp(expected, actual, len) == 0) {
        return;
    }
    uint64_t i = 0;
    while (expected[i] == actual[i]) {
        i++;
    }
    uint64_t end = i;
    while (end < len && expected[end] != actual[end]) {
        end++;
    }
    fail("%s: mismatch at offset %" PRIu64 " (%" PRIu64 " bytes differ "
         "from there): expected 0x%02x, read 0x%02x",
         what, offset + i, end - i, expected[i], actual[i]);
}

static enum op_kind pick_kind(void)
{
    unsigned total = 0;
    for (int k = 0; k < OP_COUNT; k++) {
        total += op_weights[k];
    }
    unsigned r = rng_below(total);
    for (int k = 0; k < OP_COUNT; k++) {
        if (r < op_weights[k]) {
            return k;
        }
        r -= op_weights[k];
    }
    return OP_READ;
}

/* Lengths from a byte to a few grains, favouring the interesting ones. */
static uint64_t pick_len(uint64_t grain)
{
    switch (rng_below(5)) {
    case 0:
        return 1 + rng_below(16);
    case 1:
        return 512 * (1 + rng_below(16));
    case 2:
        return grain;
    case 3:
        return 1 + rng_below(grain);
    default:
        return 1 + rng_below(3 * grain);
    }
}

/* The part of the file this instance works on. */
struct range {
    uint64_t start;
    uint64_t len;
};

/* Offsets in the range: anywhere, at or just before grain boundaries, and
 * near its end. */
static uint64_t pick_offset(const struct range *r, uint64_t grain)
{
    uint64_t end = r->start + r->len;
    uint64_t first = (r->start + grain - 1) / grain * grain;
    uint64_t boundaries = first < end ? (end - 1 - first) / grain + 1 : 0;
    uint64_t boundary = first + rng_below(boundaries) * grain;

    switch (boundaries ? rng_below(4) : 0) {
    case 0:
        return r->start + rng_below(r->len);
    case 1:
        return boundary;
    case 2: {
        uint64_t delta = 1 + rng_below(1024);
        return boundary >= r->start + delta ? boundary - delta : r->start;
    }
    default:
        return end - 1 - rng_below(r->len < 2 * grain ? r->len : 2 * grain);
    }
}

static void random_fill(uint8_t *buf, uint64_t len)
{
    uint64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = rng_next();
        memcpy(buf + i, &v, 8);
    }
    for (; i < len; i++) {
        buf[i] = rng_next();
    }
}

static void check_range(int fd, const uint8_t *model, const struct range *r,
                        uint8_t *buf, const char *what)
{
    uint64_t end = r->start + r->len;
    for (uint64_t offset = r->start; offset < end; offset += MAX_IO) {
        uint64_t len = end - offset < MAX_IO ? end - offset : MAX_IO;
        read_all(fd, buf, len, offset, what);
        compare(model + offset, buf, len, offset, what);
    }
}

static uint8_t *load_reference(const char *reference, uint64_t size)
{
    int fd = open(reference, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "chainfs-fuzz-io: %s: %s\n", reference,
                strerror(errno));
        exit(1);
    }
    if ((uint64_t)st.st_size != size) {
        fprintf(stderr, "chainfs-fuzz-io: %s is %jd bytes, %s is %" PRIu64
                "\n", reference, (intmax_t)st.st_size, file_name, size);
        exit(1);
    }
    uint8_t *model = malloc(size ? size : 1);
    if (!model) {
        fprintf(stderr, "chainfs-fuzz-io: out of memory\n");
        exit(1);
    }
    read_all(fd, model, size, 0, reference);
    close(fd);
    return model;
}

static void dump_model(const char *dump, const uint8_t *model, uint64_t size)
{
    int fd = open(dump, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "chainfs-fuzz-io: %s: %s\n", dump, strerror(errno));
        exit(1);
    }
    write_all(fd, model, size, 0, dump);
    if (close(fd) < 0) {
        fprintf(stderr, "chainfs-fuzz-io: %s: %s\n", dump, strerror(errno));
        exit(1);
    }
}

/* Run one operation on the file and the model. */
static void run_op(struct op *op, int fd, int direct_fd, uint8_t *model,
                   uint8_t *buf)
{
    const char *name = op_names[op->kind];
    int mode;

    switch (op->kind) {
    case OP_WRITE:
    case OP_DIRECT_WRITE:
        random_fill(buf, op->len);
        write_all(op->kind == OP_WRITE ? fd : direct_fd, buf, op->len,
                  op->offset, name);
        memcpy(model + op->offset, buf, op->len);
        return;
    case OP_READ:
    case OP_DIRECT_READ:
        read_all(op->kind == OP_READ ? fd : direct_fd, buf, op->len,
                 op->offset, name);
        compare(model + op->offset, buf, op->len, op->offset, name);
        return;
    case OP_ZERO:
    case OP_PUNCH:
        mode = op->kind == OP_ZERO ? FALLOC_FL_ZERO_RANGE
                                   : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        if (fallocate(fd, mode, op->offset, op->len) < 0) {
            fail("%s: fallocate at %" PRIu64 " len %" PRIu64 ": %s", name,
                 op->offset, op->len, strerror(errno));
        }
        memset(model + op->offset, 0, op->len);
        return;
    case OP_FSYNC:
        if (fsync(fd) < 0) {
            fail("fsync: %s", strerror(errno));
        }
        return;
    default:
        abort();
    }
}

/* Choose where an operation lands: clipped to the range, and 4K-aligned
 * for O_DIRECT. */
static void place_op(struct op *op, const struct range *r, uint64_t grain)
{
    uint64_t end = r->start + r->len;
    op->offset = pick_offset(r, grain);
    op->len = pick_len(grain);
    if (op->kind == OP_DIRECT_READ || op->kind == OP_DIRECT_WRITE) {
        op->offset &= ~(uint64_t)(DIRECT_ALIGN - 1);
        op->len = (op->len + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    }
    if (op->len > MAX_IO) {
        op->len = MAX_IO;
    }
    if (op->offset + op->len > end) {
        op->len = end - op->offset;
    }
    if (op->kind == OP_FSYNC) {
        op->offset = op->len = 0;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: chainfs-fuzz-io [-g GRAIN] [-r START:LEN] "
            "[-d DUMP] [-v] FILE REFERENCE SEED NOPS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t grain = 65536;
    const char *dump = NULL;
    struct range range = { 0, 0 };
    bool whole_file = true;
    char *end;
    int c;

    while ((c = getopt(argc, argv, "g:r:d:v")) != -1) {
        switch (c) {
        case 'g':
            grain = strtoull(optarg, NULL, 0);
            break;
        case 'r':
            range.start = strtoull(optarg, &end, 0);
            if (*end != ':') {
                usage();
            }
            range.len = strtoull(end + 1, NULL, 0);
            whole_file = false;
            break;
        case 'd':
            dump = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 4 || grain == 0) {
        usage();
    }
    file_name = argv[optind];
    const char *reference = argv[optind + 1];
    rng_state = strtoull(argv[optind + 2], NULL, 0);
    unsigned nops = strtoul(argv[optind + 3], NULL, 0);

    int fd = open(file_name, O_RDWR);
    int direct_fd = open(file_name, O_RDWR | O_DIRECT);
    struct stat st;
    if (fd < 0 || direct_fd < 0 || fstat(fd, &st) < 0) {
        fail("open: %s", strerror(errno));
    }
    uint64_t size = st.st_size;
    if (size < DIRECT_ALIGN || size % DIRECT_ALIGN) {
        fail("size %" PRIu64 " is not a positive multiple of %d", size,
             DIRECT_ALIGN);
    }
    if (whole_file) {
        range.len = size;
    }
    if (range.len == 0 || range.start % DIRECT_ALIGN ||
        range.len % DIRECT_ALIGN || range.start + range.len > size) {
        fail("range %" PRIu64 ":%" PRIu64 " is empty, not 4K-aligned or "
             "past the end (%" PRIu64 ")", range.start, range.len, size);
    }
    if (grain > range.len) {
        grain = range.len;
    }
    uint8_t *model = load_reference(reference, size);
    uint8_t *buf;
    if (posix_memalign((void **)&buf, DIRECT_ALIGN, MAX_IO) != 0) {
        fail("out of memory");
    }

    check_range(fd, model, &range, buf, "initial content");

    unsigned counts[OP_COUNT] = { 0 };
    for (unsigned i = 0; i < nops; i++) {
        struct op *op = &history[ops_done % HISTORY];
        op->number = i;
        op->kind = pick_kind();
        place_op(op, &range, grain);
        ops_done++;
        if (verbose) {
            printf("#%u %s offset=%" PRIu64 " len=%" PRIu64 "\n", i,
                   op_names[op->kind], op->offset, op->len);
        }
        run_op(op, fd, direct_fd, model, buf);
        counts[op->kind]++;
    }

    if (fsync(fd) < 0) {
        fail("final fsync: %s", strerror(errno));
    }
    check_range(fd, model, &range, buf, "final content");
    check_range(direct_fd, model, &range, buf, "final content (O_DIRECT)");
    if (dump) {
        dump_model(dump, model, size);
    }

    printf("chainfs-fuzz-io: %s: %u operations, seed %s:", file_name, nops,
           argv[optind + 2]);
    for (int k = 0; k < OP_COUNT; k++) {
        printf(" %s=%u", op_names[k], counts[k]);
    }
    printf("\n");
    close(direct_fd);
    close(fd);
    free(buf);
    free(model);
    return 0;
}
