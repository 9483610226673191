/* The log written by libchainfs-record.so (tests/tools/chainfs-record.c)
 * and read by chainfs-powerloss.py: one record per completed call that
 * changed a file under $CHAINFS_RECORD_DIR, appended with one writev(2) to
 * the O_APPEND file $CHAINFS_RECORD_LOG, so that the records of every
 * thread and every process that preloads the library form one order.
 *
 * A record is this header, then path_len bytes of path (relative to the
 * recorded directory, "." for the directory itself, no NUL), then
 * data_len bytes of data (what a write wrote).  Integers are little
 * endian (the host's; the log never leaves the machine).
 */
#ifndef CHAINFS_RECORD_H
#define CHAINFS_RECORD_H

#include <stdint.h>

#define CHAINFS_RECORD_MAGIC 0x4c52464du    /* "MFRL" */

enum chainfs_record_op {
    RECORD_CREATE = 1,      /* a new file (open with O_CREAT made it) */
    RECORD_WRITE = 2,       /* offset, data: pwrite, pwritev, write */
    RECORD_FLUSH_BEGIN = 3, /* token: an fsync/fdatasync started */
    RECORD_FLUSH_END = 4,   /* token, result: that call returned */
    RECORD_TRUNCATE = 5,    /* length: ftruncate, O_TRUNC */
    RECORD_FALLOCATE = 6,   /* offset, length, arg = mode */
    RECORD_UNLINK = 7,      /* the name is gone; token: this unlink's.
                               Later records of a descriptor still open on
                               that file have path "NAME\0TOKEN" */
    RECORD_RENAME = 8,      /* path = "OLD\0NEW" */
    RECORD_HINT = 9,        /* sync_file_range: no durability */
    RECORD_FAILURE = 10,    /* an unsupported write path was used: path =
                               the call and file; the log is unusable */
};

/* Flags in arg of RECORD_FLUSH_BEGIN/END. */
#define RECORD_FLUSH_DIRECTORY 1u   /* the fd is the directory itself */
#define RECORD_FLUSH_DATA_ONLY 2u   /* fdatasync */

struct chainfs_record {
    uint32_t magic;
    uint16_t op;
    uint16_t path_len;
    uint32_t pid;
    uint32_t tid;
    uint64_t token;         /* pairs FLUSH_BEGIN and FLUSH_END */
    int64_t offset;
    uint64_t length;
    uint64_t arg;           /* fallocate mode, flush flags */
    int32_t result;         /* FLUSH_END: 0 or -errno */
    uint32_t data_len;
};

#endif
