/* chainfs: a fleece view as a file (see view-file.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>

#include "log.h"
#include "view-file.h"

void view_file_read(fuse_req_t req, struct fleece_view *view, size_t size,
                    off_t offset)
{
    uint64_t view_bytes = fleece_view_size(view);
    g_autofree void *buf = NULL;
    uint64_t len;
    int ret;

    if (offset < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)offset >= view_bytes || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    len = MIN((uint64_t)size, view_bytes - offset);
    buf = g_try_malloc(len);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ret = fleece_view_read(view, offset, len, buf);
    if (ret < 0) {
        fuse_reply_err(req, -ret);
        return;
    }
    fuse_reply_buf(req, buf, len);
}

void view_file_fallocate(fuse_req_t req, struct fleece_view *view, int mode,
                         off_t offset, off_t length)
{
    uint64_t size = fleece_view_size(view);
    int ret;

    switch (mode) {
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
        break;
    case 0:
    case FALLOC_FL_KEEP_SIZE:
    case FALLOC_FL_ZERO_RANGE:
    case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
        fuse_reply_err(req, EROFS);
        return;
    default:
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (offset < 0 || length <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* Past the end there is nothing to release. */
    if ((uint64_t)offset >= size) {
        fuse_reply_err(req, 0);
        return;
    }
    ret = fleece_view_discard(view, offset,
                              MIN((uint64_t)length, size - offset));
    if (ret < 0) {
        log_error("fleece view: discard of %lld bytes at offset %lld: %s",
                  (long long)length, (long long)offset, g_strerror(-ret));
    }
    fuse_reply_err(req, -ret);
}

void view_file_lseek(fuse_req_t req, struct fleece_view *view, off_t offset,
                     int whence)
{
    uint64_t size = fleece_view_size(view);

    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (offset < 0 || (uint64_t)offset >= size) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    for (uint64_t pos = offset; pos < size;) {
        uint64_t run = 0;
        int data = fleece_view_status(view, pos, size - pos, &run);
        if (data < 0) {
            fuse_reply_err(req, -data);
            return;
        }
        if ((data == 1) == (whence == SEEK_DATA)) {
            fuse_reply_lseek(req, pos);
            return;
        }
        pos += MAX(run, 1);
    }
    if (whence == SEEK_DATA) {
        fuse_reply_err(req, ENXIO);
    } else {
        fuse_reply_lseek(req, size);
    }
}

uint64_t view_file_allocated_bytes(struct fleece_view *view)
{
    uint64_t bytes;

    if (fleece_view_allocated_bytes(view, &bytes) < 0) {
        /* Claim everything is data: no tool then skips any of it. */
        bytes = fleece_view_size(view);
    }
    return bytes;
}
