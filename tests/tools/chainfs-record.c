/* libchainfs-record.so: an LD_PRELOAD interposer, for tests only, that
 * records every change a process makes to the files under one directory,
 * so that chainfs-powerloss.py can rebuild what a machine that lost power
 * at any moment could have kept on disk.
 *
 *   CHAINFS_RECORD_DIR=DIR CHAINFS_RECORD_LOG=LOG \
 *   LD_PRELOAD=.../libchainfs-record.so chainfs ...
 *
 * Without CHAINFS_RECORD_DIR every call passes straight through.  Record
 * format: chainfs-record.h.  What is recorded, once the call returned
 * successfully (so the log order is an order in which calls completed,
 * consistent with everything the process did after them):
 *   open/openat/creat with O_CREAT of a new name (CREATE), O_TRUNC of an
 *   existing file (TRUNCATE 0); pwrite, pwritev, pwritev2, write, writev
 *   (WRITE with the data); fsync and fdatasync of a file or of the
 *   directory (FLUSH_BEGIN before the call: only writes recorded before it
 *   are made durable by it; FLUSH_END after it); ftruncate; fallocate and
 *   posix_fallocate; unlink, unlinkat, rename, renameat, renameat2;
 *   sync_file_range (a HINT: no durability).  dup, dup2 and dup3 carry the
 *   file over to the new descriptor; close forgets it.  A descriptor whose
 *   name was unlinked while it was open (a temporary file) goes on being
 *   recorded, as "NAME\0TOKEN" with the UNLINK record's token, so that the
 *   replay tells that file from a new one of the same name.
 * Write paths the replay cannot model (mmap MAP_SHARED writable,
 * copy_file_range, sendfile, splice into a recorded file, truncate by
 * name, link, syncfs, sync, stdio streams opened for writing) abort the
 * process with a message on stderr and a FAILURE record, so that a test
 * never passes on a log that misses writes.
 *
 * Locking: one mutex (record_lock) protects the descriptor table and the
 * log appends; a call's own I/O never runs under it.
 */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chainfs-record.h"

#define MAX_FDS 65536
#define MAX_IOV 1000

struct tracked_fd {
    char *path;             /* relative to record_dir, "." for itself */
    bool is_directory;
    uint64_t unlinked;      /* the UNLINK record's token once the name is
                               gone (atomic), else 0 */
};

static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;
static char record_dir[PATH_MAX];   /* realpath; empty: not recording */
static size_t record_dir_len;
static int log_fd = -1;
static uint64_t next_token;
static struct tracked_fd *fd_table[MAX_FDS];

#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) { \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name); \
    }

/* Declared here: glibc's fortified entry points have no prototype. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

__attribute__((constructor)) static void record_init(void)
{
    const char *dir = getenv("CHAINFS_RECORD_DIR");
    const char *log = getenv("CHAINFS_RECORD_LOG");

    if (getenv("CHAINFS_RECORD_PROBE")) {
        fprintf(stderr, "chainfs-record: loaded\n");
    }
    if (!dir || !*dir) {
        return;
    }
    if (!log || !realpath(dir, record_dir)) {
        fprintf(stderr, "chainfs-record: need CHAINFS_RECORD_DIR (an existing "
                "directory) and CHAINFS_RECORD_LOG\n");
        abort();
    }
    record_dir_len = strlen(record_dir);
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, log,
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "chainfs-record: %s: %s\n", log, strerror(errno));
        abort();
    }
}

/* Append one record; record_lock held. */
static void append_locked(uint16_t op, const char *path, size_t path_len,
                          uint64_t token, int64_t offset, uint64_t length,
                          uint64_t arg, int32_t result,
                          const struct iovec *data, int data_count,
                          uint32_t data_len)
{
    struct chainfs_record r = {
        .magic = CHAINFS_RECORD_MAGIC,
        .op = op,
        .path_len = (uint16_t)path_len,
        .pid = (uint32_t)getpid(),
        .tid = (uint32_t)syscall(SYS_gettid),
        .token = token,
        .offset = offset,
        .length = length,
        .arg = arg,
        .result = result,
        .data_len = data_len,
    };
    struct iovec iov[MAX_IOV + 2];
    int count = 0;
    size_t total = sizeof(r) + path_len;
    char *flat = NULL;

    iov[count++] = (struct iovec){ &r, sizeof(r) };
    iov[count++] = (struct iovec){ (void *)path, path_len };
    if (data_count > MAX_IOV) {
        flat = malloc(data_len ? data_len : 1);
        if (!flat) {
            abort();
        }
        size_t at = 0;
        for (int i = 0; i < data_count && at < data_len; i++) {
            size_t n = data[i].iov_len < data_len - at ? data[i].iov_len
                                                       : data_len - at;
            memcpy(flat + at, data[i].iov_base, n);
            at += n;
        }
        iov[count++] = (struct iovec){ flat, data_len };
    } else {
        size_t left = data_len;
        for (int i = 0; i < data_count && left; i++) {
            size_t n = data[i].iov_len < left ? data[i].iov_len : left;
            iov[count++] = (struct iovec){ data[i].iov_base, n };
            left -= n;
        }
    }
    total += data_len;
    ssize_t n = (ssize_t)syscall(SYS_writev, log_fd, iov, count);
    free(flat);
    if (n != (ssize_t)total) {
        fprintf(stderr, "chainfs-record: cannot append to the log: %s\n",
                n < 0 ? strerror(errno) : "short write");
        abort();
    }
}

static void append(uint16_t op, const char *path, uint64_t token,
                   int64_t offset, uint64_t length, uint64_t arg,
                   int32_t result, const struct iovec *data, int data_count,
                   uint32_t data_len)
{
    pthread_mutex_lock(&record_lock);
    append_locked(op, path, strlen(path), token, offset, length, arg, result,
                  data, data_count, data_len);
    pthread_mutex_unlock(&record_lock);
}

/* The path to record for t in buf: its name, or "NAME\0TOKEN" once the
 * name was unlinked; returns its length. */
static size_t record_path(const struct tracked_fd *t, char *buf, size_t size)
{
    uint64_t unlinked = __atomic_load_n(&t->unlinked, __ATOMIC_ACQUIRE);
    int n = unlinked ? snprintf(buf, size, "%s%c%llu", t->path, '\0',
                                (unsigned long long)unlinked)
                     : snprintf(buf, size, "%s", t->path);

    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

/* append() for a record about the file behind t. */
static void append_fd(uint16_t op, const struct tracked_fd *t,
                      uint64_t token, int64_t offset, uint64_t length,
                      uint64_t arg, int32_t result, const struct iovec *data,
                      int data_count, uint32_t data_len)
{
    char path[PATH_MAX + 32];
    size_t path_len = record_path(t, path, sizeof(path));

    pthread_mutex_lock(&record_lock);
    append_locked(op, path, path_len, token, offset, length, arg, result,
                  data, data_count, data_len);
    pthread_mutex_unlock(&record_lock);
}

/* An unsupported write path on a recorded file: say so and stop. */
__attribute__((noreturn)) static void unsupported(const char *call,
                                                  const char *path)
{
    char what[PATH_MAX + 64];
    snprintf(what, sizeof(what), "%s %s", call, path);
    fprintf(stderr, "chainfs-record: unsupported write path: %s\n", what);
    if (log_fd >= 0) {
        append(RECORD_FAILURE, what, 0, 0, 0, 0, 0, NULL, 0, 0);
    }
    abort();
}

/* The recorded path of fd, or NULL. */
static struct tracked_fd *tracked(int fd)
{
    if (log_fd < 0 || fd < 0 || fd >= MAX_FDS) {
        return NULL;
    }
    return __atomic_load_n(&fd_table[fd], __ATOMIC_ACQUIRE);
}

/* path (relative to dirfd) made absolute and normalized, as a path under
 * record_dir ("." for the directory itself) in out; false if outside. */
static bool relative_name(int dirfd, const char *path, char *out,
                          size_t size)
{
    char full[PATH_MAX * 2], parent[PATH_MAX], resolved[PATH_MAX];

    if (log_fd < 0 || !path) {
        return false;
    }
    if (path[0] == '/') {
        snprintf(full, sizeof(full), "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof(base))) {
                return false;
            }
        } else {
            char link[64];
            snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof(base) - 1);
            if (n < 0) {
                return false;
            }
            base[n] = '\0';
        }
        snprintf(full, sizeof(full), "%s/%s", base, path);
    }
    /* Resolve the parent (the name itself may not exist yet). */
    char *slash = strrchr(full, '/');
    const char *leaf = slash + 1;
    if (slash == full) {
        snprintf(parent, sizeof(parent), "/");
    } else {
        *slash = '\0';
        if (strlen(full) >= sizeof(parent)) {
            return false;
        }
        memcpy(parent, full, strlen(full) + 1);
    }
    if (!realpath(parent, resolved)) {
        return false;
    }
    if (*leaf == '\0' || strcmp(leaf, ".") == 0) {
        snprintf(full, sizeof(full), "%s", resolved);
    } else if (strcmp(leaf, "..") == 0) {
        char *up = strrchr(resolved, '/');
        if (up && up != resolved) {
            *up = '\0';
        }
        snprintf(full, sizeof(full), "%s", resolved);
    } else {
        snprintf(full, sizeof(full), "%s%s%s", resolved,
                 strcmp(resolved, "/") == 0 ? "" : "/", leaf);
    }
    if (strcmp(full, record_dir) == 0) {
        snprintf(out, size, ".");
        return true;
    }
    if (strncmp(full, record_dir, record_dir_len) == 0 &&
        full[record_dir_len] == '/') {
        snprintf(out, size, "%s", full + record_dir_len + 1);
        return true;
    }
    return false;
}

/* Remember fd as name; record_lock held. */
static void track_locked(int fd, const char *name, bool is_directory)
{
    if (fd < 0 || fd >= MAX_FDS) {
        unsupported("open (descriptor number too large)", name);
    }
    struct tracked_fd *t = malloc(sizeof(*t));
    if (!t || !(t->path = strdup(name))) {
        abort();
    }
    t->is_directory = is_directory;
    t->unlinked = 0;
    struct tracked_fd *old = fd_table[fd];
    __atomic_store_n(&fd_table[fd], t, __ATOMIC_RELEASE);
    if (old) {
        free(old->path);
        free(old);
    }
}

static void untrack_locked(int fd)
{
    if (fd < 0 || fd >= MAX_FDS || !fd_table[fd]) {
        return;
    }
    struct tracked_fd *old = fd_table[fd];
    __atomic_store_n(&fd_table[fd], NULL, __ATOMIC_RELEASE);
    free(old->path);
    free(old);
}

/* Whether name exists now (before an open that may create it). */
static bool name_exists(int dirfd, const char *path)
{
    struct stat st;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The common part of every open: call it, then record what it did. */
static int opened(int dirfd, const char *path, int flags, bool existed,
                  const char *name, int fd)
{
    if (fd < 0 || !name) {
        return fd;
    }
    struct stat st;
    bool is_directory = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    pthread_mutex_lock(&record_lock);
    track_locked(fd, name, is_directory);
    if ((flags & O_CREAT) && !existed) {
        append_locked(RECORD_CREATE, name, strlen(name), 0, 0, 0, 0, 0, NULL,
                      0, 0);
    } else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY &&
               !is_directory) {
        append_locked(RECORD_TRUNCATE, name, strlen(name), 0, 0, 0, 0, 0,
                      NULL, 0, 0);
    }
    pthread_mutex_unlock(&record_lock);
    (void)dirfd;
    (void)path;
    return fd;
}

#define OPEN_BODY(real_call, dirfd) \
    char name_buf[PATH_MAX]; \
    const char *name = relative_name(dirfd, path, name_buf, \
                                     sizeof(name_buf)) ? name_buf : NULL; \
    bool existed = name && (flags & O_CREAT) ? name_exists(dirfd, path) \
                                             : true; \
    int fd = real_call; \
    return opened(dirfd, path, flags, existed, name, fd);

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    REAL(open);
    OPEN_BODY(real_open(path, flags, mode), AT_FDCWD)
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    REAL(open64);
    OPEN_BODY(real_open64(path, flags, mode), AT_FDCWD)
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    REAL(openat);
    OPEN_BODY(real_openat(dirfd, path, flags, mode), dirfd)
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    REAL(openat64);
    OPEN_BODY(real_openat64(dirfd, path, flags, mode), dirfd)
}

int __open_2(const char *path, int flags)
{
    REAL(__open_2);
    OPEN_BODY(real___open_2(path, flags), AT_FDCWD)
}

int __open64_2(const char *path, int flags)
{
    REAL(__open64_2);
    OPEN_BODY(real___open64_2(path, flags), AT_FDCWD)
}

int __openat_2(int dirfd, const char *path, int flags)
{
    REAL(__openat_2);
    OPEN_BODY(real___openat_2(dirfd, path, flags), dirfd)
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    REAL(__openat64_2);
    OPEN_BODY(real___openat64_2(dirfd, path, flags), dirfd)
}

int creat(const char *path, mode_t mode)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode)
{
    return open64(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    char name[PATH_MAX];
    REAL(fopen);
    if (strpbrk(mode, "wa+") && relative_name(AT_FDCWD, path, name,
                                              sizeof(name))) {
        unsupported("fopen for writing", name);
    }
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    char name[PATH_MAX];
    REAL(fopen64);
    if (strpbrk(mode, "wa+") && relative_name(AT_FDCWD, path, name,
                                              sizeof(name))) {
        unsupported("fopen for writing", name);
    }
    return real_fopen64(path, mode);
}

FILE *fdopen(int fd, const char *mode)
{
    struct tracked_fd *t = tracked(fd);
    REAL(fdopen);
    if (t && strpbrk(mode, "wa+")) {
        unsupported("fdopen for writing", t->path);
    }
    return real_fdopen(fd, mode);
}

int close(int fd)
{
    REAL(close);
    if (tracked(fd)) {
        pthread_mutex_lock(&record_lock);
        untrack_locked(fd);
        pthread_mutex_unlock(&record_lock);
    }
    return real_close(fd);
}

/* newfd now names what oldfd names (or nothing). */
static int duplicated(int oldfd, int newfd)
{
    if (newfd < 0 || log_fd < 0) {
        return newfd;
    }
    pthread_mutex_lock(&record_lock);
    struct tracked_fd *t = oldfd >= 0 && oldfd < MAX_FDS ? fd_table[oldfd]
                                                         : NULL;
    if (t) {
        track_locked(newfd, t->path, t->is_directory);
        fd_table[newfd]->unlinked = t->unlinked;
    } else {
        untrack_locked(newfd);
    }
    pthread_mutex_unlock(&record_lock);
    return newfd;
}

int dup(int oldfd)
{
    REAL(dup);
    return duplicated(oldfd, real_dup(oldfd));
}

int dup2(int oldfd, int newfd)
{
    REAL(dup2);
    return duplicated(oldfd, real_dup2(oldfd, newfd));
}

int dup3(int oldfd, int newfd, int flags)
{
    REAL(dup3);
    return duplicated(oldfd, real_dup3(oldfd, newfd, flags));
}

/* ---- writes ------------------------------------------------------------ */

static void record_write(struct tracked_fd *t, int64_t offset,
                         const struct iovec *iov, int iovcnt, ssize_t n)
{
    if (t->is_directory) {
        unsupported("write to a directory", t->path);
    }
    if (n > 0) {
        append_fd(RECORD_WRITE, t, 0, offset, (uint64_t)n, 0, 0, iov,
                  iovcnt, (uint32_t)n);
    }
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    REAL(pwrite);
    ssize_t n = real_pwrite(fd, buf, count, offset);
    struct tracked_fd *t = tracked(fd);
    if (t) {
        struct iovec iov = { (void *)buf, count };
        record_write(t, offset, &iov, 1, n);
    }
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
    REAL(pwrite64);
    ssize_t n = real_pwrite64(fd, buf, count, offset);
    struct tracked_fd *t = tracked(fd);
    if (t) {
        struct iovec iov = { (void *)buf, count };
        record_write(t, offset, &iov, 1, n);
    }
    return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    REAL(pwritev);
    ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
    struct tracked_fd *t = tracked(fd);
    if (t) {
        record_write(t, offset, iov, iovcnt, n);
    }
    return n;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt,
                  off64_t offset)
{
    REAL(pwritev64);
    ssize_t n = real_pwritev64(fd, iov, iovcnt, offset);
    struct tracked_fd *t = tracked(fd);
    if (t) {
        record_write(t, offset, iov, iovcnt, n);
    }
    return n;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset,
                 int flags)
{
    REAL(pwritev2);
    struct tracked_fd *t = tracked(fd);
    if (t && offset < 0) {
        unsupported("pwritev2 at the file position", t->path);
    }
    ssize_t n = real_pwritev2(fd, iov, iovcnt, offset, flags);
    if (t) {
        record_write(t, offset, iov, iovcnt, n);
    }
    return n;
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt,
                    off64_t offset, int flags)
{
    REAL(pwritev64v2);
    struct tracked_fd *t = tracked(fd);
    if (t && offset < 0) {
        unsupported("pwritev2 at the file position", t->path);
    }
    ssize_t n = real_pwritev64v2(fd, iov, iovcnt, offset, flags);
    if (t) {
        record_write(t, offset, iov, iovcnt, n);
    }
    return n;
}

/* write and writev at the file position: where it was is where it ended
 * minus what was written (O_APPEND included).  The position moves under
 * record_lock so that concurrent writers to one fd stay apart. */
ssize_t write(int fd, const void *buf, size_t count)
{
    REAL(write);
    struct tracked_fd *t = tracked(fd);
    if (!t) {
        return real_write(fd, buf, count);
    }
    char path[PATH_MAX + 32];
    size_t path_len;
    pthread_mutex_lock(&record_lock);
    ssize_t n = real_write(fd, buf, count);
    int err = errno;
    off_t end = lseek(fd, 0, SEEK_CUR);
    if (n > 0) {
        struct iovec iov = { (void *)buf, count };
        path_len = record_path(t, path, sizeof(path));
        append_locked(RECORD_WRITE, path, path_len, 0, end - n,
                      (uint64_t)n, 0, 0, &iov, 1, (uint32_t)n);
    }
    pthread_mutex_unlock(&record_lock);
    errno = err;
    return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    REAL(writev);
    struct tracked_fd *t = tracked(fd);
    if (!t) {
        return real_writev(fd, iov, iovcnt);
    }
    char path[PATH_MAX + 32];
    size_t path_len;
    pthread_mutex_lock(&record_lock);
    ssize_t n = real_writev(fd, iov, iovcnt);
    int err = errno;
    off_t end = lseek(fd, 0, SEEK_CUR);
    if (n > 0) {
        path_len = record_path(t, path, sizeof(path));
        append_locked(RECORD_WRITE, path, path_len, 0, end - n,
                      (uint64_t)n, 0, 0, iov, iovcnt, (uint32_t)n);
    }
    pthread_mutex_unlock(&record_lock);
    errno = err;
    return n;
}

/* ---- flushes ----------------------------------------------------------- */

static int flush(int fd, int (*real)(int), unsigned flags)
{
    struct tracked_fd *t = tracked(fd);
    if (!t) {
        return real(fd);
    }
    /* The end carries the begin's path: the replay pairs them by token. */
    char path[PATH_MAX + 32];
    size_t path_len = record_path(t, path, sizeof(path));
    if (t->is_directory) {
        flags |= RECORD_FLUSH_DIRECTORY;
    }
    pthread_mutex_lock(&record_lock);
    uint64_t token = ++next_token;
    append_locked(RECORD_FLUSH_BEGIN, path, path_len, token, 0, 0, flags,
                  0, NULL, 0, 0);
    pthread_mutex_unlock(&record_lock);
    int ret = real(fd);
    int err = errno;
    pthread_mutex_lock(&record_lock);
    append_locked(RECORD_FLUSH_END, path, path_len, token, 0, 0, flags,
                  ret < 0 ? -err : 0, NULL, 0, 0);
    pthread_mutex_unlock(&record_lock);
    errno = err;
    return ret;
}

int fsync(int fd)
{
    REAL(fsync);
    return flush(fd, real_fsync, 0);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    return flush(fd, real_fdatasync, RECORD_FLUSH_DATA_ONLY);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes,
                    unsigned int flags)
{
    REAL(sync_file_range);
    int ret = real_sync_file_range(fd, offset, nbytes, flags);
    struct tracked_fd *t = tracked(fd);
    if (t && ret == 0) {
        append_fd(RECORD_HINT, t, 0, offset, (uint64_t)nbytes, flags, 0,
                  NULL, 0, 0);
    }
    return ret;
}

int syncfs(int fd)
{
    REAL(syncfs);
    if (log_fd >= 0) {
        unsupported("syncfs", "(any)");
    }
    return real_syncfs(fd);
}

void sync(void)
{
    REAL(sync);
    if (log_fd >= 0) {
        unsupported("sync", "(any)");
    }
    real_sync();
}

/* ---- size and allocation ----------------------------------------------- */

static int sized(int fd, int ret, uint64_t length)
{
    struct tracked_fd *t = tracked(fd);
    if (t && ret == 0) {
        append_fd(RECORD_TRUNCATE, t, 0, 0, length, 0, 0, NULL, 0, 0);
    }
    return ret;
}

int ftruncate(int fd, off_t length)
{
    REAL(ftruncate);
    return sized(fd, real_ftruncate(fd, length), (uint64_t)length);
}

int ftruncate64(int fd, off64_t length)
{
    REAL(ftruncate64);
    return sized(fd, real_ftruncate64(fd, length), (uint64_t)length);
}

static int allocated(int fd, int ret, int mode, int64_t offset,
                     int64_t length)
{
    struct tracked_fd *t = tracked(fd);
    if (t && ret == 0) {
        append_fd(RECORD_FALLOCATE, t, 0, offset, (uint64_t)length,
                  (uint64_t)mode, 0, NULL, 0, 0);
    }
    return ret;
}

int fallocate(int fd, int mode, off_t offset, off_t len)
{
    REAL(fallocate);
    return allocated(fd, real_fallocate(fd, mode, offset, len), mode, offset,
                     len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len)
{
    REAL(fallocate64);
    return allocated(fd, real_fallocate64(fd, mode, offset, len), mode,
                     offset, len);
}

int posix_fallocate(int fd, off_t offset, off_t len)
{
    REAL(posix_fallocate);
    int ret = real_posix_fallocate(fd, offset, len);
    return ret ? ret : allocated(fd, 0, 0, offset, len);
}

int posix_fallocate64(int fd, off64_t offset, off64_t len)
{
    REAL(posix_fallocate64);
    int ret = real_posix_fallocate64(fd, offset, len);
    return ret ? ret : allocated(fd, 0, 0, offset, len);
}

/* ---- names ------------------------------------------------------------- */

/* The name is gone: record it with a token of its own, and mark the
 * descriptors still open on it (a file open under that name, not already
 * unlinked) with that token. */
static int removed(int ret, const char *name)
{
    if (ret == 0 && name) {
        pthread_mutex_lock(&record_lock);
        uint64_t token = ++next_token;
        append_locked(RECORD_UNLINK, name, strlen(name), token, 0, 0, 0, 0,
                      NULL, 0, 0);
        for (int fd = 0; fd < MAX_FDS; fd++) {
            struct tracked_fd *t = fd_table[fd];
            if (t && !t->is_directory && !t->unlinked &&
                strcmp(t->path, name) == 0) {
                __atomic_store_n(&t->unlinked, token, __ATOMIC_RELEASE);
            }
        }
        pthread_mutex_unlock(&record_lock);
    }
    return ret;
}

int unlink(const char *path)
{
    char buf[PATH_MAX];
    const char *name = relative_name(AT_FDCWD, path, buf, sizeof(buf))
                       ? buf : NULL;
    REAL(unlink);
    return removed(real_unlink(path), name);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    char buf[PATH_MAX];
    const char *name = relative_name(dirfd, path, buf, sizeof(buf))
                       ? buf : NULL;
    REAL(unlinkat);
    return removed(real_unlinkat(dirfd, path, flags), name);
}

static int renamed(int ret, const char *from, const char *to)
{
    if (ret == 0 && (from || to)) {
        if (!from || !to) {
            unsupported("rename across the recorded directory",
                        from ? from : to);
        }
        char both[2 * PATH_MAX + 1];
        size_t from_len = strlen(from), to_len = strlen(to);
        memcpy(both, from, from_len + 1);
        memcpy(both + from_len + 1, to, to_len);
        pthread_mutex_lock(&record_lock);
        append_locked(RECORD_RENAME, both, from_len + 1 + to_len, 0, 0, 0, 0,
                      0, NULL, 0, 0);
        pthread_mutex_unlock(&record_lock);
    }
    return ret;
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd,
              const char *newpath, unsigned int flags)
{
    char from_buf[PATH_MAX], to_buf[PATH_MAX];
    const char *from = relative_name(olddirfd, oldpath, from_buf,
                                     sizeof(from_buf)) ? from_buf : NULL;
    const char *to = relative_name(newdirfd, newpath, to_buf, sizeof(to_buf))
                     ? to_buf : NULL;
    REAL(renameat2);
    if ((from || to) && flags) {
        unsupported("renameat2 with flags", from ? from : to);
    }
    return renamed(real_renameat2(olddirfd, oldpath, newdirfd, newpath,
                                  flags), from, to);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd,
             const char *newpath)
{
    char from_buf[PATH_MAX], to_buf[PATH_MAX];
    const char *from = relative_name(olddirfd, oldpath, from_buf,
                                     sizeof(from_buf)) ? from_buf : NULL;
    const char *to = relative_name(newdirfd, newpath, to_buf, sizeof(to_buf))
                     ? to_buf : NULL;
    REAL(renameat);
    return renamed(real_renameat(olddirfd, oldpath, newdirfd, newpath), from,
                   to);
}

int rename(const char *oldpath, const char *newpath)
{
    return renameat(AT_FDCWD, oldpath, AT_FDCWD, newpath);
}

/* ---- write paths the replay does not model: refuse loudly --------------- */

#define REFUSE_BY_NAME(call, path) \
    do { \
        char refuse_buf[PATH_MAX]; \
        if (relative_name(AT_FDCWD, path, refuse_buf, sizeof(refuse_buf))) { \
            unsupported(call, refuse_buf); \
        } \
    } while (0)

#define REFUSE_BY_FD(call, fd) \
    do { \
        struct tracked_fd *refuse_t = tracked(fd); \
        if (refuse_t) { \
            unsupported(call, refuse_t->path); \
        } \
    } while (0)

int truncate(const char *path, off_t length)
{
    REAL(truncate);
    REFUSE_BY_NAME("truncate", path);
    return real_truncate(path, length);
}

int truncate64(const char *path, off64_t length)
{
    REAL(truncate64);
    REFUSE_BY_NAME("truncate", path);
    return real_truncate64(path, length);
}

int link(const char *oldpath, const char *newpath)
{
    REAL(link);
    REFUSE_BY_NAME("link", oldpath);
    REFUSE_BY_NAME("link", newpath);
    return real_link(oldpath, newpath);
}

int linkat(int olddirfd, const char *oldpath, int newdirfd,
           const char *newpath, int flags)
{
    char buf[PATH_MAX];
    REAL(linkat);
    if (relative_name(olddirfd, oldpath, buf, sizeof(buf)) ||
        relative_name(newdirfd, newpath, buf, sizeof(buf))) {
        unsupported("linkat", buf);
    }
    return real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
}

ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out,
                        off64_t *off_out, size_t len, unsigned int flags)
{
    REAL(copy_file_range);
    REFUSE_BY_FD("copy_file_range", fd_out);
    return real_copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    REAL(sendfile);
    REFUSE_BY_FD("sendfile", out_fd);
    return real_sendfile(out_fd, in_fd, offset, count);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
    REAL(sendfile64);
    REFUSE_BY_FD("sendfile", out_fd);
    return real_sendfile64(out_fd, in_fd, offset, count);
}

ssize_t splice(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out,
               size_t len, unsigned int flags)
{
    REAL(splice);
    REFUSE_BY_FD("splice", fd_out);
    return real_splice(fd_in, off_in, fd_out, off_out, len, flags);
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd,
           off_t offset)
{
    REAL(mmap);
    if ((prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        REFUSE_BY_FD("mmap shared writable", fd);
    }
    return real_mmap(addr, length, prot, flags, fd, offset);
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd,
             off64_t offset)
{
    REAL(mmap64);
    if ((prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        REFUSE_BY_FD("mmap shared writable", fd);
    }
    return real_mmap64(addr, length, prot, flags, fd, offset);
}
