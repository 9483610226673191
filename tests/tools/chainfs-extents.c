/* chainfs-extents: print the data extents of a file as lseek(SEEK_DATA)
 * and lseek(SEEK_HOLE) report them, one "OFFSET LENGTH" line per extent,
 * so that a shell test can compare them with `qemu-img map`.
 *
 * Usage: chainfs-extents FILE
 * Exit status: 0, or 1 with a message when lseek fails or contradicts
 * itself (a hole before the data it was asked from, an extent past EOF).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *file, const char *what, off_t offset)
{
    fprintf(stderr, "chainfs-extents: %s: %s at %jd: %s\n", file, what,
            (intmax_t)offset, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: chainfs-extents FILE\n");
        return 2;
    }
    const char *file = argv[1];
    int fd = open(file, O_RDONLY);
    if (fd < 0) {
        die(file, "open", 0);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        die(file, "fstat", 0);
    }

    off_t offset = 0;
    while (offset < st.st_size) {
        off_t data = lseek(fd, offset, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) {
                break;          /* only a hole up to the end of the file */
            }
            die(file, "SEEK_DATA", offset);
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            die(file, "SEEK_HOLE", data);
        }
        if (data < offset || hole <= data || hole > st.st_size) {
            fprintf(stderr, "chainfs-extents: %s: inconsistent extent: "
                    "SEEK_DATA(%jd) = %jd, SEEK_HOLE(%jd) = %jd, size %jd\n",
                    file, (intmax_t)offset, (intmax_t)data, (intmax_t)data,
                    (intmax_t)hole, (intmax_t)st.st_size);
            return 1;
        }
        printf("%jd %jd\n", (intmax_t)data, (intmax_t)(hole - data));
        offset = hole;
    }
    /* SEEK_HOLE must find the implicit hole at end of file. */
    if (st.st_size > 0) {
        off_t end = lseek(fd, st.st_size - 1, SEEK_HOLE);
        if (end < 0) {
            die(file, "SEEK_HOLE", st.st_size - 1);
        }
    }
    close(fd);
    return 0;
}
