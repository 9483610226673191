/* chainfs-io: run a few I/O requests on one open file and print, for each,
 * one line: "ok", "mismatch" (a read that did not return the expected
 * byte), or the errno's name ("EIO", "ENOSPC"), so that a shell test can
 * assert exactly which request failed and how.
 *
 * Usage: chainfs-io [-D] FILE REQUEST...
 *   -D                      open with O_DIRECT (the page cache hides
 *                           neither reads nor writes)
 *   write OFFSET LEN BYTE   pwrite LEN bytes of value BYTE
 *   read OFFSET LEN [BYTE]  pread LEN bytes (and check they are all BYTE)
 *   fsync | fdatasync
 *   zero OFFSET LEN         fallocate(ZERO_RANGE | KEEP_SIZE)
 *   punch OFFSET LEN        fallocate(PUNCH_HOLE | KEEP_SIZE)
 *   seek-data OFFSET        lseek(SEEK_DATA)
 * OFFSET and LEN take a K, M or G suffix.  Exit status 0 when every
 * request ran (whatever it returned), 2 on a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>

static void usage(void)
{
    fprintf(stderr, "usage: chainfs-io [-D] FILE REQUEST...\n");
    exit(2);
}

static uint64_t parse_size(const char *text)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 0);
    unsigned shift = 0;
    switch (*end) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default: break;
    }
    if (errno || end == text || *end) {
        fprintf(stderr, "chainfs-io: bad number '%s'\n", text);
        exit(2);
    }
    return (uint64_t)n << shift;
}

/* The next argument, or a usage error. */
static const char *arg(char **argv, int argc, int *i)
{
    if (*i >= argc) {
        usage();
    }
    return argv[(*i)++];
}

/* A buffer aligned for O_DIRECT. */
static uint8_t *buffer(size_t len)
{
    void *p;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0) {
        perror("chainfs-io: posix_memalign");
        exit(1);
    }
    return p;
}

/* Whole-range pread/pwrite; returns 0 or -errno. */
static int transfer(int fd, bool writing, uint8_t *buf, size_t len,
                    off_t offset)
{
    while (len > 0) {
        ssize_t n = writing ? pwrite(fd, buf, len, offset)
                            : pread(fd, buf, len, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return writing ? -ENOSPC : -ENODATA;
        }
        buf += n;
        len -= n;
        offset += n;
    }
    return 0;
}

static void print_result(int ret)
{
    if (ret == 0) {
        puts("ok");
    } else {
        const char *name = strerrorname_np(-ret);
        puts(name ? name : "unknown-errno");
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int i = 1, flags = O_RDWR;
    if (i < argc && strcmp(argv[i], "-D") == 0) {
        flags |= O_DIRECT;
        i++;
    }
    const char *file = arg(argv, argc, &i);
    int fd = open(file, flags);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
        fd = open(file, flags & ~O_RDWR);     /* read-only disks */
    }
    if (fd < 0) {
        fprintf(stderr, "chainfs-io: %s: %s\n", file, strerror(errno));
        return 1;
    }

    while (i < argc) {
        const char *req = arg(argv, argc, &i);
        int ret;
        if (strcmp(req, "write") == 0 || strcmp(req, "read") == 0) {
            bool writing = req[0] == 'w';
            uint64_t offset = parse_size(arg(argv, argc, &i));
            uint64_t len = parse_size(arg(argv, argc, &i));
            int byte = -1;
            if (writing || (i < argc && argv[i][0] >= '0' &&
                            argv[i][0] <= '9')) {
                byte = (int)parse_size(arg(argv, argc, &i)) & 0xff;
            }
            uint8_t *buf = buffer(len);
            memset(buf, writing ? byte : 0x5a, len);
            ret = transfer(fd, writing, buf, len, offset);
            if (ret == 0 && !writing && byte >= 0) {
                for (uint64_t k = 0; k < len; k++) {
                    if (buf[k] != byte) {
                        free(buf);
                        puts("mismatch");
                        goto next;
                    }
                }
            }
            free(buf);
        } else if (strcmp(req, "fsync") == 0) {
            ret = fsync(fd) < 0 ? -errno : 0;
        } else if (strcmp(req, "fdatasync") == 0) {
            ret = fdatasync(fd) < 0 ? -errno : 0;
        } else if (strcmp(req, "zero") == 0 || strcmp(req, "punch") == 0) {
            int mode = req[0] == 'z' ? FALLOC_FL_ZERO_RANGE
                                     : FALLOC_FL_PUNCH_HOLE;
            uint64_t offset = parse_size(arg(argv, argc, &i));
            uint64_t len = parse_size(arg(argv, argc, &i));
            ret = fallocate(fd, mode | FALLOC_FL_KEEP_SIZE, offset, len) < 0
                  ? -errno : 0;
        } else if (strcmp(req, "seek-data") == 0) {
            uint64_t offset = parse_size(arg(argv, argc, &i));
            ret = lseek(fd, offset, SEEK_DATA) < 0 ? -errno : 0;
        } else {
            fprintf(stderr, "chainfs-io: unknown request '%s'\n", req);
            return 2;
        }
        print_result(ret);
next:;
    }
    return close(fd) < 0 ? 1 : 0;
}
