/* chainfs-soak-writer: a writer for the soak test that runs until told to
 * stop, keeps a model of the disk, logs every range it changes, and can be
 * paused at an instant.
 *
 * Usage: chainfs-soak-writer [-g GRAIN] FILE REFERENCE SEED PREFIX
 *
 * The model starts as REFERENCE (a raw copy of what FILE reads now).  The
 * writer issues random buffered and O_DIRECT writes, zero-range and
 * punch-hole fallocates, reads (checked against the model) and fsyncs on
 * FILE, the sequence given by SEED, until SIGTERM.  Files it keeps:
 *   PREFIX.log     "OFFSET LENGTH" for each write, zero write or discard
 *                  that returned, in order (flushed whenever it pauses or
 *                  stops): the ranges a dirty bitmap must cover
 *   PREFIX.paused  written (by rename) once it is paused: the number of
 *                  lines in PREFIX.log at that instant
 *   PREFIX.instant the model at the instant of a pause asked for by SIGHUP
 *                  (written before PREFIX.paused)
 *   PREFIX.model   the model at the end
 * Signals, looked at between two operations only (they are blocked, so no
 * request is ever interrupted):
 *   SIGUSR1  pause: finish the operation under way, write PREFIX.paused,
 *            then issue nothing until SIGUSR2 (the caller removes
 *            PREFIX.paused before sending it)
 *   SIGHUP   the same, and write PREFIX.instant first
 *   SIGUSR2  resume
 *   SIGTERM  stop (also while paused): fsync, read the whole file back
 *            against the model, write PREFIX.model, exit
 * Exit status: 0 when every check passed, 1 on a mismatch or an I/O error
 * (with the last operations printed), 2 on bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
static const unsigned op_weights[OP_COUNT] = { 30, 25, 10, 10, 8, 8, 4 };

struct op {
    uint64_t number;
    enum op_kind kind;
    uint64_t offset;
    uint64_t len;
};

static const char *file_name;
static struct op history[HISTORY];
static uint64_t ops_done;
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
    uint64_t first = ops_done > HISTORY ? ops_done - HISTORY : 0;
    fprintf(stderr, "last operations:\n");
    for (uint64_t i = first; i < ops_done; i++) {
        const struct op *op = &history[i % HISTORY];
        fprintf(stderr, "  #%" PRIu64 " %s offset=%" PRIu64 " len=%" PRIu64
                "\n", op->number, op_names[op->kind], op->offset, op->len);
    }
}

static void __attribute__((format(printf, 1, 2), noreturn)) fail(
    const char *fmt, ...)
{
    va_list ap;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(stderr, "chainfs-soak-writer: %s: at %lld.%06ld: ", file_name,
            (long long)now.tv_sec, now.tv_nsec / 1000);
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

/* Offsets anywhere, at or just before grain boundaries, and near the end. */
static uint64_t pick_offset(uint64_t size, uint64_t grain)
{
    uint64_t boundary = rng_below((size - 1) / grain + 1) * grain;

    switch (rng_below(4)) {
    case 0:
        return rng_below(size);
    case 1:
        return boundary;
    case 2: {
        uint64_t delta = 1 + rng_below(1024);
        return boundary >= delta ? boundary - delta : 0;
    }
    default:
        return size - 1 - rng_below(size < 2 * grain ? size : 2 * grain);
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

static void check_all(int fd, const uint8_t *model, uint64_t size,
                      uint8_t *buf, const char *what)
{
    for (uint64_t offset = 0; offset < size; offset += MAX_IO) {
        uint64_t len = size - offset < MAX_IO ? size - offset : MAX_IO;
        read_all(fd, buf, len, offset, what);
        compare(model + offset, buf, len, offset, what);
    }
}

static uint8_t *load_reference(const char *reference, uint64_t size)
{
    int fd = open(reference, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fail("%s: %s", reference, strerror(errno));
    }
    if ((uint64_t)st.st_size != size) {
        fail("%s is %jd bytes, the disk %" PRIu64, reference,
             (intmax_t)st.st_size, size);
    }
    uint8_t *model = malloc(size);
    if (!model) {
        fail("out of memory");
    }
    read_all(fd, model, size, 0, reference);
    close(fd);
    return model;
}

/* Write data to PATH through PATH.tmp and a rename, so that whoever polls
 * for PATH sees it whole. */
static void publish(const char *path, const void *data, uint64_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fail("%s: %s", tmp, strerror(errno));
    }
    write_all(fd, data, len, 0, tmp);
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        fail("%s: %s", path, strerror(errno));
    }
}

/* Run one operation on the file and the model; log what it changed. */
static void run_op(const struct op *op, int fd, int direct_fd,
                   uint8_t *model, uint8_t *buf, FILE *log)
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
        break;
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
        while (fallocate(fd, mode, op->offset, op->len) < 0) {
            if (errno != EINTR) {
                fail("%s: fallocate at %" PRIu64 " len %" PRIu64 ": %s",
                     name, op->offset, op->len, strerror(errno));
            }
        }
        memset(model + op->offset, 0, op->len);
        break;
    case OP_FSYNC:
        while (fsync(fd) < 0) {
            if (errno != EINTR) {
                fail("fsync: %s", strerror(errno));
            }
        }
        return;
    default:
        abort();
    }
    fprintf(log, "%" PRIu64 " %" PRIu64 "\n", op->offset, op->len);
}

/* Choose where an operation lands: inside the file, and 4K-aligned for
 * O_DIRECT. */
static void place_op(struct op *op, uint64_t size, uint64_t grain)
{
    op->offset = pick_offset(size, grain);
    op->len = pick_len(grain);
    if (op->kind == OP_DIRECT_READ || op->kind == OP_DIRECT_WRITE) {
        op->offset &= ~(uint64_t)(DIRECT_ALIGN - 1);
        op->len = (op->len + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    }
    if (op->len > MAX_IO) {
        op->len = MAX_IO;
    }
    if (op->offset + op->len > size) {
        op->len = size - op->offset;
    }
    if (op->kind == OP_FSYNC) {
        op->offset = op->len = 0;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: chainfs-soak-writer [-g GRAIN] FILE REFERENCE "
            "SEED PREFIX\n");
    exit(2);
}

static char *path_with(const char *prefix, const char *suffix)
{
    size_t len = strlen(prefix) + strlen(suffix) + 1;
    char *path = malloc(len);
    if (!path) {
        fail("out of memory");
    }
    snprintf(path, len, "%s%s", prefix, suffix);
    return path;
}

/* Stay paused (the signals blocked) until SIGUSR2; true if SIGTERM came
 * instead. */
static bool pause_here(const sigset_t *signals, bool dump, FILE *log,
                       const uint8_t *model, uint64_t size,
                       const char *instant_path, const char *paused_path,
                       uint64_t log_lines)
{
    char count[32];
    int len;

    if (fflush(log) != 0) {
        fail("log: %s", strerror(errno));
    }
    if (dump) {
        publish(instant_path, model, size);
    }
    len = snprintf(count, sizeof(count), "%" PRIu64 "\n", log_lines);
    publish(paused_path, count, len);
    for (;;) {
        int sig = sigwaitinfo(signals, NULL);
        if (sig == SIGUSR2) {
            return false;
        }
        if (sig == SIGTERM) {
            return true;
        }
    }
}

int main(int argc, char **argv)
{
    uint64_t grain = 65536;
    int c;

    while ((c = getopt(argc, argv, "g:")) != -1) {
        switch (c) {
        case 'g':
            grain = strtoull(optarg, NULL, 0);
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
    const char *prefix = argv[optind + 3];
    char *log_path = path_with(prefix, ".log");
    char *paused_path = path_with(prefix, ".paused");
    char *instant_path = path_with(prefix, ".instant");
    char *model_path = path_with(prefix, ".model");

    /* Blocked for good: taken with sigtimedwait between operations. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &signals, NULL);

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
    if (grain > size) {
        grain = size;
    }
    FILE *log = fopen(log_path, "w");
    if (!log) {
        fail("%s: %s", log_path, strerror(errno));
    }
    uint8_t *model = load_reference(reference, size);
    uint8_t *buf;
    if (posix_memalign((void **)&buf, DIRECT_ALIGN, MAX_IO) != 0) {
        fail("out of memory");
    }
    check_all(fd, model, size, buf, "initial content");

    uint64_t counts[OP_COUNT] = { 0 };
    uint64_t log_lines = 0;
    const struct timespec no_wait = { 0, 0 };
    for (;;) {
        int sig = sigtimedwait(&signals, NULL, &no_wait);
        if (sig == SIGTERM) {
            break;
        }
        if ((sig == SIGUSR1 || sig == SIGHUP) &&
            pause_here(&signals, sig == SIGHUP, log, model, size,
                       instant_path, paused_path, log_lines)) {
            break;
        }
        struct op *op = &history[ops_done % HISTORY];
        op->number = ops_done;
        op->kind = pick_kind();
        place_op(op, size, grain);
        ops_done++;
        run_op(op, fd, direct_fd, model, buf, log);
        if (op->kind == OP_WRITE || op->kind == OP_DIRECT_WRITE ||
            op->kind == OP_ZERO || op->kind == OP_PUNCH) {
            log_lines++;
        }
        counts[op->kind]++;
    }

    if (fflush(log) != 0 || fclose(log) != 0) {
        fail("log: %s", strerror(errno));
    }
    if (fsync(fd) < 0) {
        fail("final fsync: %s", strerror(errno));
    }
    check_all(fd, model, size, buf, "final content");
    check_all(direct_fd, model, size, buf, "final content (O_DIRECT)");
    publish(model_path, model, size);

    printf("chainfs-soak-writer: %s: %" PRIu64 " operations, seed %s:",
           file_name, ops_done, argv[optind + 2]);
    for (int k = 0; k < OP_COUNT; k++) {
        printf(" %s=%" PRIu64, op_names[k], counts[k]);
    }
    printf("\n");
    close(direct_fd);
    close(fd);
    free(buf);
    free(model);
    free(model_path);
    free(instant_path);
    free(paused_path);
    free(log_path);
    return 0;
}
