/* chainfs: a disk as a file in the mount (see disk-file.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "disk-file.h"
#include "log.h"

/* I/O errors are logged, but a failing disk must not flood the log. */
#define MAX_LOGGED_IO_ERRORS 100

struct disk_file {
    struct disk *disk;
    uint64_t write_generation;  /* atomic; bumped after each write */
    int64_t mtime_ns;           /* atomic */

    /* A pthread mutex rather than a GMutex, whose futex implementation
     * ThreadSanitizer cannot see. */
    pthread_mutex_t allocation_lock;    /* protects the fields below */
    bool allocation_valid;
    uint64_t allocation_generation;
    uint64_t allocation_bytes;
};

/* One read buffer per FUSE worker thread, grown to the largest request it
 * served, so reads allocate nothing in the steady state.  Freed when the
 * thread exits. */
struct read_buffer {
    size_t size;
    void *data;
};

static pthread_key_t read_buffer_key;
static pthread_once_t read_buffer_once = PTHREAD_ONCE_INIT;
static unsigned logged_io_errors;

static void read_buffer_free(void *opaque)
{
    struct read_buffer *buffer = opaque;

    free(buffer->data);
    free(buffer);
}

static void read_buffer_key_create(void)
{
    pthread_key_create(&read_buffer_key, read_buffer_free);
}

static void *read_buffer_get(size_t size)
{
    struct read_buffer *buffer;

    pthread_once(&read_buffer_once, read_buffer_key_create);
    buffer = pthread_getspecific(read_buffer_key);
    if (!buffer) {
        buffer = calloc(1, sizeof(*buffer));
        if (!buffer || pthread_setspecific(read_buffer_key, buffer) != 0) {
            free(buffer);
            return NULL;
        }
    }
    if (buffer->size < size) {
        void *data;
        /* Page-aligned, so drivers may hand it to O_DIRECT host I/O. */
        if (posix_memalign(&data, 4096, size) != 0) {
            return NULL;
        }
        free(buffer->data);
        buffer->data = data;
        buffer->size = size;
    }
    return buffer->data;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct disk_file *disk_file_new(struct disk *disk)
{
    struct disk_file *file = g_new0(struct disk_file, 1);

    file->disk = disk;
    file->mtime_ns = now_ns();
    pthread_mutex_init(&file->allocation_lock, NULL);
    return file;
}

void disk_file_free(struct disk_file *file)
{
    if (file) {
        pthread_mutex_destroy(&file->allocation_lock);
        g_free(file);
    }
}

struct disk *disk_file_disk(struct disk_file *file)
{
    return file->disk;
}

struct timespec disk_file_mtime(struct disk_file *file)
{
    int64_t ns = __atomic_load_n(&file->mtime_ns, __ATOMIC_RELAXED);

    return (struct timespec) {
        .tv_sec = ns / 1000000000,
        .tv_nsec = ns % 1000000000,
    };
}

/* Called after data changed: st_blocks and st_mtime must show it. */
static void note_write(struct disk_file *file)
{
    __atomic_add_fetch(&file->write_generation, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&file->mtime_ns, now_ns(), __ATOMIC_RELAXED);
}

int disk_file_allocated_bytes(struct disk_file *file, uint64_t *bytes)
{
    /* Read the generation before walking the chain: a write or a job's
     * chain switch during the walk bumps it, so the next call walks again.
     * Both counters only grow, so their sum changes whenever either does. */
    uint64_t generation = __atomic_load_n(&file->write_generation,
                                          __ATOMIC_ACQUIRE) +
                          disk_chain_generation(file->disk);
    uint64_t walked;
    int ret;

    pthread_mutex_lock(&file->allocation_lock);
    if (file->allocation_valid &&
        file->allocation_generation == generation) {
        *bytes = file->allocation_bytes;
        pthread_mutex_unlock(&file->allocation_lock);
        return 0;
    }
    pthread_mutex_unlock(&file->allocation_lock);

    ret = disk_allocated_bytes(file->disk, &walked);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&file->allocation_lock);
    file->allocation_valid = true;
    file->allocation_generation = generation;
    file->allocation_bytes = walked;
    pthread_mutex_unlock(&file->allocation_lock);
    *bytes = walked;
    return 0;
}

static void log_io_error(struct disk_file *file, const char *what,
                         uint64_t offset, uint64_t len, int err)
{
    unsigned n = __atomic_fetch_add(&logged_io_errors, 1, __ATOMIC_RELAXED);

    if (n < MAX_LOGGED_IO_ERRORS) {
        log_error("%s: %s of %" PRIu64 " bytes at offset %" PRIu64 ": %s",
                  file->disk->name, what, len, offset, g_strerror(err));
    } else if (n == MAX_LOGGED_IO_ERRORS) {
        log_error("further I/O errors are not logged");
    }
}

/* Whether [offset, offset + len) lies within the disk (overflow-safe). */
static bool range_within(struct disk_file *file, uint64_t offset,
                         uint64_t len)
{
    uint64_t size = disk_size(file->disk);

    return offset <= size && len <= size - offset;
}

/* The source of zero extents in spliced replies: a sparse memfd, whose
 * holes splice as references to the kernel's zero page (no allocation, no
 * copy), or, without memfd, a buffer that is never written, so its pages
 * stay the shared zero page too and cost no memory. */
#define ZERO_SOURCE_BYTES (1024 * 1024)
static uint8_t zero_source[ZERO_SOURCE_BYTES];
static int zero_source_fd = -1;
static pthread_once_t zero_source_once = PTHREAD_ONCE_INIT;

static void zero_source_open(void)
{
    int fd = memfd_create("chainfs-zeros", MFD_CLOEXEC);

    if (fd >= 0 && ftruncate(fd, ZERO_SOURCE_BYTES) < 0) {
        close(fd);
        fd = -1;
    }
    zero_source_fd = fd;
}

static void set_zero_source(struct fuse_buf *buf)
{
    buf->size = MIN(buf->size, ZERO_SOURCE_BYTES);
    pthread_once(&zero_source_once, zero_source_open);
    if (zero_source_fd >= 0) {
        buf->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
        buf->fd = zero_source_fd;
        buf->pos = 0;
    } else {
        buf->mem = zero_source;
    }
}

/* Smaller reads are copied: libfuse copies replies under two pages
 * anyway, and for a few pages one copy costs less than the pipe's three
 * system calls. */
#define SPLICE_MIN_BYTES (32 * 1024)

/* Buffers of a spliced reply: one per extent, or several for a zero
 * extent longer than zero_source. */
#define SPLICE_MAX_BUFS (DISK_MAP_MAX_EXTENTS * 2)

/* Reply to a read with the host files' pages, spliced, instead of copying
 * them through a buffer: one copy per byte (pipe to the reader) instead of
 * two.  Returns false when the read must take the copying path. */
static bool read_spliced(fuse_req_t req, struct disk_file *file,
                         uint64_t offset, uint64_t len)
{
    struct disk_map map;
    /* fuse_bufvec ends in a one-element array that stands for more. */
    alignas(struct fuse_bufvec) uint8_t
        storage[sizeof(struct fuse_bufvec) +
                (SPLICE_MAX_BUFS - 1) * sizeof(struct fuse_buf)];
    struct fuse_bufvec *vec = (struct fuse_bufvec *)storage;
    unsigned count = 0;

    if (disk_map_read(file->disk, offset, len, &map) < 0) {
        return false;   /* errors too: the copying path reports them */
    }
    for (unsigned i = 0; i < map.count; i++) {
        const struct block_extent *ext = &map.extents[i];
        for (uint64_t done = 0; done < ext->len;) {
            if (count == SPLICE_MAX_BUFS) {
                disk_map_release(file->disk, &map);
                return false;
            }
            struct fuse_buf *buf = &vec->buf[count++];
            *buf = (struct fuse_buf){ .size = ext->len - done };
            if (ext->kind == BLOCK_EXTENT_HOST) {
                buf->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK |
                             FUSE_BUF_FD_RETRY;
                buf->fd = ext->fd;
                buf->pos = ext->host_offset;
            } else {
                set_zero_source(buf);
            }
            done += buf->size;
        }
    }
    vec->count = count;
    vec->idx = 0;
    vec->off = 0;
    /* Synchronous: the kernel has the bytes when this returns, so the
     * extents (and the clusters they pin) can go. */
    fuse_reply_data(req, vec, 0);
    disk_map_release(file->disk, &map);
    return true;
}

void disk_file_read(fuse_req_t req, struct disk_file *file, size_t size,
                    off_t offset)
{
    uint64_t disk_bytes = disk_size(file->disk);
    uint64_t len;
    void *buf;
    int ret;

    if (offset < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)offset >= disk_bytes || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    len = MIN((uint64_t)size, disk_bytes - offset);
    if (len >= SPLICE_MIN_BYTES && read_spliced(req, file, offset, len)) {
        return;
    }
    buf = read_buffer_get(len);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ret = disk_read(file->disk, offset, len, buf);
    if (ret < 0) {
        log_io_error(file, "read", offset, len, -ret);
        fuse_reply_err(req, -ret);
        return;
    }
    fuse_reply_buf(req, buf, len);
}

void disk_file_write(fuse_req_t req, struct disk_file *file, const char *buf,
                     size_t size, off_t offset)
{
    int ret;

    if (offset < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* disk_write refuses a read-only disk (EROFS) and, since the size is
     * fixed, a write that does not fit as a whole (ENOSPC). */
    ret = disk_write(file->disk, offset, size, buf);
    if (ret < 0) {
        /* Writes past the end and to read-only disks are the caller's
         * mistake; a full host file system is worth a log line. */
        if (ret != -EROFS &&
            (ret != -ENOSPC || range_within(file, offset, size))) {
            log_io_error(file, "write", offset, size, -ret);
        }
        fuse_reply_err(req, -ret);
        return;
    }
    note_write(file);
    fuse_reply_write(req, size);
}

void disk_file_fsync(fuse_req_t req, struct disk_file *file)
{
    int ret = file->disk->read_only ? 0 : disk_flush(file->disk);

    if (ret < 0) {
        log_error("%s: flush: %s", file->disk->name, g_strerror(-ret));
    }
    fuse_reply_err(req, -ret);
}

/* What fallocate(2) asks of a disk whose size is fixed. */
enum fallocate_action {
    FALLOCATE_NOTHING,      /* the space is there already */
    FALLOCATE_DISCARD,      /* write zeroes, releasing the space */
    FALLOCATE_ZERO,         /* write zeroes, keeping the space */
    FALLOCATE_UNSUPPORTED,
};

static enum fallocate_action fallocate_action(int mode)
{
    switch (mode) {
    case 0:
    case FALLOC_FL_KEEP_SIZE:
        return FALLOCATE_NOTHING;
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
        return FALLOCATE_DISCARD;
    case FALLOC_FL_ZERO_RANGE:
    case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
        return FALLOCATE_ZERO;
    default:
        return FALLOCATE_UNSUPPORTED;
    }
}

void disk_file_fallocate(fuse_req_t req, struct disk_file *file, int mode,
                         off_t offset, off_t length)
{
    enum fallocate_action action = fallocate_action(mode);
    int ret;

    if (action == FALLOCATE_UNSUPPORTED) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (offset < 0 || length <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (file->disk->read_only) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!range_within(file, offset, length)) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    if (action == FALLOCATE_NOTHING) {
        fuse_reply_err(req, 0);
        return;
    }
    ret = disk_write_zeroes(file->disk, offset, length,
                            action == FALLOCATE_DISCARD ? BLOCK_ZERO_UNMAP : 0);
    if (ret < 0) {
        log_io_error(file, action == FALLOCATE_DISCARD ? "discard" : "zero",
                     offset, length, -ret);
        fuse_reply_err(req, -ret);
        return;
    }
    note_write(file);
    fuse_reply_err(req, 0);
}

/* SEEK_DATA/SEEK_HOLE: walk the chain-wide status from offset to the first
 * run of the kind asked for.  Past the last data there is the implicit
 * hole at the end of the file. */
void disk_file_lseek(fuse_req_t req, struct disk_file *file, off_t offset,
                     int whence)
{
    uint64_t size = disk_size(file->disk);
    uint64_t pos;

    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (offset < 0 || (uint64_t)offset >= size) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    for (pos = offset; pos < size;) {
        uint64_t run = 0;
        int status = disk_block_status(file->disk, pos, size - pos, &run);
        if (status < 0) {
            log_io_error(file, "block status", pos, size - pos, -status);
            fuse_reply_err(req, -status);
            return;
        }
        if (run == 0) {
            fuse_reply_err(req, EIO);
            return;
        }
        bool data = status & BLOCK_STATUS_DATA;
        if (data == (whence == SEEK_DATA)) {
            fuse_reply_lseek(req, pos);
            return;
        }
        pos += run;
    }
    if (whence == SEEK_DATA) {
        fuse_reply_err(req, ENXIO);
    } else {
        fuse_reply_lseek(req, size);
    }
}
