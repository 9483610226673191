/* ctl-write: write one command to a chainfs ctl file in a single write(2)
 * and show the outcome, for the shell tests.
 *
 *     ctl-write FILE WORD...    the words joined by blanks, plus "\n"
 *     ctl-write FILE -          the bytes of stdin as they are
 *
 * Prints the write's outcome on the first line (OK, or the errno's name,
 * e.g. EINVAL), then what a read on the same open file returns (the
 * reply).  Exit status: 0 if the write succeeded, 1 if it failed, 2 on a
 * usage or I/O error of the tool itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *read_stdin(size_t *len)
{
    size_t cap = 65536, used = 0;
    char *buf = malloc(cap);
    ssize_t n;

    while (buf && (n = read(STDIN_FILENO, buf + used, cap - used)) > 0) {
        used += n;
        if (used == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    *len = used;
    return buf;
}

static char *join_words(int argc, char **argv, size_t *len)
{
    size_t total = 1;
    char *buf;

    for (int i = 0; i < argc; i++) {
        total += strlen(argv[i]) + 1;
    }
    buf = calloc(1, total);
    for (int i = 0; buf && i < argc; i++) {
        strcat(buf, argv[i]);
        strcat(buf, i + 1 < argc ? " " : "\n");
    }
    *len = buf ? strlen(buf) : 0;
    return buf;
}

int main(int argc, char **argv)
{
    char reply[65536];
    size_t len;
    char *command;
    ssize_t n;
    int fd, err = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: ctl-write FILE WORD... | ctl-write FILE -\n");
        return 2;
    }
    command = strcmp(argv[2], "-") == 0 && argc == 3
        ? read_stdin(&len) : join_words(argc - 2, argv + 2, &len);
    fd = open(argv[1], O_RDWR);
    if (!command || fd < 0) {
        perror(argv[1]);
        return 2;
    }
    if (write(fd, command, len) < 0) {
        err = errno;
    }
    free(command);
    /* ENOTSUP and EOPNOTSUPP are one value on Linux; the interface says
     * ENOTSUP. */
    printf("%s\n", err == ENOTSUP ? "ENOTSUP"
                    : err ? strerrorname_np(err) : "OK");
    n = pread(fd, reply, sizeof(reply) - 1, 0);
    if (n < 0) {
        perror("reading the reply");
        return 2;
    }
    fwrite(reply, 1, n, stdout);
    close(fd);
    return err ? 1 : 0;
}
