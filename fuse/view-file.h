/* chainfs: a fleece view as a read-only file in the mount (NAME@SNAP):
 * FUSE requests on core/fleece-view.h.
 *
 * Each function answers its request itself (fuse_reply_*).  Reads take
 * the copying path (a view's chunks live in two places and must be read
 * under a claim, so they are not spliced); buffered and O_DIRECT reads
 * are the same to it.  Writes fail with EROFS; fallocate(PUNCH_HOLE |
 * KEEP_SIZE) releases chunks (fleece_view_discard), other modes fail with
 * EROFS (or EOPNOTSUPP for modes no disk supports).  Thread-safe: the
 * view takes its own locks.
 */
#ifndef CHAINFS_VIEW_FILE_H
#define CHAINFS_VIEW_FILE_H

#include <fuse_lowlevel.h>
#include <stdint.h>

#include "core/fleece-view.h"

void view_file_read(fuse_req_t req, struct fleece_view *view, size_t size,
                    off_t offset);
void view_file_fallocate(fuse_req_t req, struct fleece_view *view, int mode,
                         off_t offset, off_t length);
void view_file_lseek(fuse_req_t req, struct fleece_view *view, off_t offset,
                     int whence);
/* st_blocks * 512: the data as fleece_view_status says (errors: all). */
uint64_t view_file_allocated_bytes(struct fleece_view *view);

#endif
