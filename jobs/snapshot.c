/* chainfs: the synchronous `snapshot` command (see snapshot.h). */
#include "jobs/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/chain-switch.h"
#include "core/chain.h"

/* Create the overlay file: qcow2, the disk's size, backed by top. */
static bool create_overlay(struct disk *disk, struct block_node *top,
                           const char *path, GError **errp)
{
    const struct block_driver *qcow2 = block_driver_by_name("qcow2");
    struct block_create_opts opts = {
        .size = disk_size(disk),
        .backing_name = top->filename,
        .backing_format = top->driver->format_name,
    };

    if (!qcow2 || !qcow2->create) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "snapshot: cannot create qcow2 images");
        return false;
    }
    /* The directory entry is durable before the disk switches to it. */
    return block_create_durable(qcow2, path, &opts, errp);
}

/* An existing overlay must be qcow2 of the disk's size and back onto top
 * (any spelling of its file), in top's format if one is recorded. */
static bool check_existing_overlay(struct disk *disk, struct block_node *top,
                                   struct block_node *overlay, GError **errp)
{
    g_autofree char *backing = NULL;
    struct stat top_st, backing_st;

    if (strcmp(overlay->driver->format_name, "qcow2") != 0) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "snapshot: overlay %s is %s, not qcow2", overlay->filename,
                    overlay->driver->format_name);
        return false;
    }
    if (overlay->size != disk_size(disk)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "snapshot: overlay %s has size %" PRIu64 ", disk '%s' "
                    "has size %" PRIu64, overlay->filename, overlay->size,
                    disk->name, disk_size(disk));
        return false;
    }
    if (!overlay->backing_name) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "snapshot: overlay %s has no backing file (it must be %s)",
                    overlay->filename, top->filename);
        return false;
    }
    backing = chain_resolve_backing(overlay->filename, overlay->backing_name,
                                    errp);
    if (!backing) {
        return false;
    }
    if (fstat(top->fd, &top_st) < 0 || stat(backing, &backing_st) < 0 ||
        top_st.st_dev != backing_st.st_dev ||
        top_st.st_ino != backing_st.st_ino) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "snapshot: overlay %s backs onto %s, not onto the top of "
                    "disk '%s' (%s)", overlay->filename, overlay->backing_name,
                    disk->name, top->filename);
        return false;
    }
    if (overlay->backing_format &&
        strcmp(overlay->backing_format, top->driver->format_name) != 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "snapshot: overlay %s records backing format %s, but %s "
                    "is %s", overlay->filename, overlay->backing_format,
                    top->filename, top->driver->format_name);
        return false;
    }
    return true;
}

bool snapshot_run(struct disk *disk, const char *overlay_path,
                  enum command_mode mode, GError **errp)
{
    /* The caller keeps every other chain change away: no lock needed. */
    struct block_node *top = disk->top;
    bool created = false;
    struct block_node *overlay;

    if (block_node_is_remote(top)) {
        /* An image header could only name it by its URI, and a chain
         * never opens a protocol backing file. */
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "snapshot: disk '%s' runs on %s, which cannot be a "
                    "backing file", disk->name, top->filename);
        return false;
    }
    if (mode == COMMAND_MODE_ABSOLUTE_PATHS) {
        if (!create_overlay(disk, top, overlay_path, errp)) {
            return false;
        }
        created = true;
    }
    overlay = block_node_open(overlay_path, created ? "qcow2" : NULL, false,
                              errp);
    if (overlay && !created &&
        !check_existing_overlay(disk, top, overlay, errp)) {
        block_node_close(overlay);
        overlay = NULL;
    }
    if (overlay && !chain_push_overlay(disk, overlay, errp)) {
        block_node_close(overlay);
        overlay = NULL;
    }
    if (!overlay && created) {
        unlink(overlay_path);
    }
    return overlay != NULL;
}
