/* chainfs: creating or opening a mirror's target (see mirror-target.h). */
#include "jobs/mirror-target.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/chain.h"
#include "jobs/mirror.h"
#include "jobs/remote-target.h"
#include "jobs/sparse-copy.h"

/* Default granularity bounds (the target's cluster size, clamped). */
#define MIRROR_MIN_DEFAULT_GRANULARITY 4096u
#define MIRROR_MAX_DEFAULT_GRANULARITY (64u * 1024)

/* The verb in messages: mirror, or backup, which shares this setup. */
#define VERB(cmd) command_verb_name((cmd)->verb)

/* The layer of the chain under top that is the file st describes. */
static struct block_node *chain_layer_of(struct block_node *top,
                                         const struct stat *st)
{
    for (struct block_node *node = top; node; node = node->backing) {
        struct stat layer;
        if (fstat(node->fd, &layer) == 0 && layer.st_dev == st->st_dev &&
            layer.st_ino == st->st_ino) {
            return node;
        }
    }
    return NULL;
}

void mirror_target_close(struct block_node *node, bool backing_owned)
{
    if (!node) {
        return;
    }
    if (!backing_owned) {
        node->backing = NULL;   /* a layer of the source chain */
    }
    chain_close(node);
}

void mirror_target_discard(struct mirror_target *target)
{
    g_autofree char *filename = NULL;

    if (target->node && target->created) {
        filename = g_strdup(target->node->filename);
    }
    mirror_target_close(target->node, target->backing_owned);
    if (filename) {
        unlink(filename);
    }
    target->node = NULL;
}

/* mode=absolute-paths: a new image backing onto `backing` (recorded by its
 * absolute path and format), or none. */
static bool create_target(struct block_node *source,
                          struct block_node *backing,
                          const struct command *cmd,
                          struct mirror_target *target, GError **errp)
{
    const char *format = cmd->format ? cmd->format : "qcow2";
    const struct block_driver *driver = block_driver_by_name(format);
    struct stat st;

    if (lstat(cmd->target, &st) == 0) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "%s: target %s exists",
                    VERB(cmd), cmd->target);
        return false;
    }
    if (!driver || !driver->create) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: format: cannot create '%s' images", VERB(cmd),
                    format);
        return false;
    }
    /* A format that cannot rewrite a backing file cannot record one. */
    if (backing && !driver->set_backing) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: a %s target cannot have a backing file "
                    "(sync=%s)", VERB(cmd), format,
                    cmd->sync == COMMAND_SYNC_TOP ? "top" : "none");
        return false;
    }

    struct block_create_opts opts = {
        .size = source->size,
        .backing_name = backing ? backing->filename : NULL,
        .backing_format = backing ? backing->driver->format_name : NULL,
    };
    GError *error = NULL;
    /* Durable directory entry now, so that complete can switch the disk
     * to the target without waiting for anything. */
    if (!block_create_durable(driver, cmd->target, &opts, &error)) {
        if (error->code == EEXIST) {
            g_clear_error(&error);
            g_set_error(&error, CHAINFS_ERROR, EEXIST,
                        "%s: target %s exists", VERB(cmd), cmd->target);
        }
        g_propagate_error(errp, error);
        return false;
    }
    target->created = true;
    target->node = block_node_open(cmd->target, format, false, errp);
    if (!target->node) {
        unlink(cmd->target);
        return false;
    }
    target->node->backing = backing;
    target->reads_zeros = backing == NULL;
    return true;
}

/* Link the backing file an existing target names: the source's node when
 * it is the same file, else its own chain (owned by the target). */
static bool open_target_backing(struct block_node *source,
                                const struct command *cmd,
                                struct mirror_target *target,
                                const char *spelled_name, GError **errp)
{
    struct block_node *node = target->node;
    g_autofree char *path = chain_resolve_backing(spelled_name,
                                                  node->backing_name, errp);
    struct stat st;

    if (!path) {
        return false;
    }
    if (stat(path, &st) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err,
                    "%s: %s: backing file of %s: %s", VERB(cmd), path,
                    node->filename, g_strerror(err));
        return false;
    }
    node->backing = chain_layer_of(source, &st);
    if (node->backing) {
        return true;
    }
    node->backing = chain_open(path, node->backing_format, true, errp);
    if (!node->backing) {
        return false;
    }
    target->backing_owned = true;
    for (struct block_node *layer = node->backing; layer;
         layer = layer->backing) {
        layer->depth++;
    }
    return true;
}

/* mode=existing: open the image as it is (format probed unless given). */
static bool open_existing_target(struct block_node *source,
                                 const struct command *cmd,
                                 struct mirror_target *target, GError **errp)
{
    struct stat st;

    if (stat(cmd->target, &st) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: target %s: %s",
                    VERB(cmd), cmd->target, g_strerror(err));
        return false;
    }
    if (chain_layer_of(source, &st)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: target %s is a layer of the disk", VERB(cmd),
                    cmd->target);
        return false;
    }
    target->node = block_node_open(cmd->target, cmd->format, false, errp);
    if (!target->node) {
        return false;
    }
    /* A backup writes a larger target up to the disk's size. */
    if (cmd->verb == COMMAND_BACKUP ? target->node->size < source->size
                                    : target->node->size != source->size) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: target %s is %" PRIu64 " bytes, the disk %"
                    PRIu64, VERB(cmd), target->node->filename,
                    target->node->size, source->size);
        mirror_target_discard(target);
        return false;
    }
    if (target->node->backing_name &&
        !open_target_backing(source, cmd, target, cmd->target, errp)) {
        mirror_target_discard(target);
        return false;
    }
    return true;
}

bool mirror_target_open(struct block_node *source, const struct command *cmd,
                        struct mirror_target *target, GError **errp)
{
    struct block_node *backing = NULL;

    *target = (struct mirror_target){ 0 };
    if (cmd->format && !block_driver_by_name(cmd->format)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: format: '%s' is not supported", VERB(cmd),
                    cmd->format);
        return false;
    }
    if (block_name_is_uri(cmd->target)) {
        target->node = remote_target_open(source, cmd, VERB(cmd), errp);
        if (!target->node) {
            return false;
        }
        target->cluster_size = sparse_copy_cluster_size(target->node);
        return true;
    }
    if (cmd->sync == COMMAND_SYNC_TOP) {
        backing = source->backing;
    } else if (cmd->sync == COMMAND_SYNC_NONE) {
        backing = source;
    }
    if (backing && block_node_is_remote(backing)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "mirror: sync=none: the disk runs on %s, which cannot "
                    "be a backing file", backing->filename);
        return false;
    }
    bool ok = cmd->mode == COMMAND_MODE_EXISTING
              ? open_existing_target(source, cmd, target, errp)
              : create_target(source, backing, cmd, target, errp);
    if (ok) {
        target->cluster_size = sparse_copy_cluster_size(target->node);
    }
    return ok;
}

void mirror_target_use_layer(struct block_node *layer,
                             struct mirror_target *target)
{
    *target = (struct mirror_target){
        .node = layer,
        .cluster_size = sparse_copy_cluster_size(layer),
    };
}

bool mirror_choose_sizes(const struct command *cmd, uint64_t target_cluster,
                         struct mirror_sizes *sizes, GError **errp)
{
    uint64_t granularity = cmd->granularity;

    if (granularity == 0) {
        granularity = MIN(MAX(target_cluster, MIRROR_MIN_DEFAULT_GRANULARITY),
                          MIRROR_MAX_DEFAULT_GRANULARITY);
    }
    if (cmd->buf_size != 0 && cmd->buf_size < granularity) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: buf-size: %" PRIu64 " is smaller than the "
                    "granularity (%" PRIu64 ")", VERB(cmd), cmd->buf_size,
                    granularity);
        return false;
    }
    sizes->granularity = granularity;
    sizes->buf_size = cmd->buf_size ? cmd->buf_size
                                    : MAX(MIRROR_DEFAULT_BUF_SIZE,
                                          granularity);
    sizes->target_cluster = 0;
    if (target_cluster > granularity) {
        sizes->target_cluster = target_cluster;
        sizes->buf_size = MAX(sizes->buf_size, target_cluster);
    }
    sizes->max_op_bytes = MAX(granularity,
                              ROUND_DOWN(MIN(sizes->buf_size,
                                             MIRROR_MAX_OP_BYTES),
                                         granularity));
    return true;
}
