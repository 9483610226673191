/* chainfs: image locking compatible with QEMU's.
 *
 * QEMU's file-posix driver takes open-file-description (OFD) byte-range
 * locks on every image it opens: one byte per permission it holds (at
 * offset 100 + bit) and one byte per permission it does not share with
 * others (at offset 200 + bit).  Taking the same locks makes qemu-img and
 * QEMU see our images as in use, and lets us refuse images that they hold.
 */
#ifndef CHAINFS_IMAGE_LOCK_H
#define CHAINFS_IMAGE_LOCK_H

#include <stdbool.h>
#include <glib.h>

enum image_lock_mode {
    IMAGE_LOCK_READER, /* a backing layer: read; others may read, not write */
    IMAGE_LOCK_WRITER, /* an active layer: read and write, not shared for
                          writing or resizing */
};

/* Take QEMU's locks for mode on fd, after checking that nobody else holds
 * locks that conflict with it.  Can be called again on the same fd to
 * change mode.  Errors name filename and say what is in the way. */
bool image_lock(int fd, const char *filename, enum image_lock_mode mode,
                GError **errp);

#endif
