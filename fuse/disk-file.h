/* chainfs: a disk as a file in the mount: guest I/O from FUSE requests.
 *
 * Each function below answers its FUSE request itself (fuse_reply_*).
 * Offsets and sizes are checked here against the fixed virtual size: the
 * file never grows or shrinks.  Every function is thread-safe and may run
 * concurrently with any other on the same disk file; no lock is held
 * across I/O.
 */
#ifndef CHAINFS_DISK_FILE_H
#define CHAINFS_DISK_FILE_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include <time.h>

#include "core/disk.h"

struct disk_file;

/* Wrap disk (not owned: the caller closes it after the mount ends). */
struct disk_file *disk_file_new(struct disk *disk) __attribute__((nonnull));
void disk_file_free(struct disk_file *file);

struct disk *disk_file_disk(struct disk_file *file) __attribute__((nonnull));

/* Bytes of data through the whole chain (st_blocks * 512), recomputed
 * only after something was written.  Returns 0 or a negative errno. */
int disk_file_allocated_bytes(struct disk_file *file, uint64_t *bytes)
    __attribute__((nonnull));

/* Time of the last write (st_mtime), or of the mount if none. */
struct timespec disk_file_mtime(struct disk_file *file)
    __attribute__((nonnull));

void disk_file_read(fuse_req_t req, struct disk_file *file, size_t size,
                    off_t offset);
void disk_file_write(fuse_req_t req, struct disk_file *file, const char *buf,
                     size_t size, off_t offset);
void disk_file_fsync(fuse_req_t req, struct disk_file *file);
void disk_file_fallocate(fuse_req_t req, struct disk_file *file, int mode,
                         off_t offset, off_t length);
void disk_file_lseek(fuse_req_t req, struct disk_file *file, off_t offset,
                     int whence);

#endif
