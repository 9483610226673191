/* chainfs: remote (NBD) job targets (see remote-target.h). */
#include "jobs/remote-target.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "core/chain.h"

bool remote_target_check(const struct path_policy *policy, bool allow_remote,
                         const char *verb, const char *uri, pid_t writer_pid,
                         GError **errp)
{
    g_autofree char *socket = NULL;

    if (!allow_remote) {
        g_set_error(errp, CHAINFS_ERROR, EACCES,
                    "%s: target %s: remote targets need --allow-remote", verb,
                    uri);
        return false;
    }
    if (!block_uri_check(uri, &socket, errp)) {
        return false;
    }
    if (socket) {
        /* A socket is a file like any other: the --allow-dir rule. */
        g_autofree char *resolved = path_policy_resolve(policy, "socket",
                                                        socket, writer_pid,
                                                        true, errp);
        if (!resolved) {
            return false;
        }
    }
    return true;
}

/* The options a remote target takes, checked before connecting. */
static bool check_options(const struct command *cmd, const char *verb,
                          GError **errp)
{
    if (cmd->mode != COMMAND_MODE_EXISTING) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: target %s: an NBD export needs mode=existing", verb,
                    cmd->target);
        return false;
    }
    if (cmd->format && strcmp(cmd->format, "raw") != 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: format: '%s' is not possible for an NBD export (it "
                    "is the raw disk)", verb, cmd->format);
        return false;
    }
    if (cmd->sync == COMMAND_SYNC_TOP || cmd->sync == COMMAND_SYNC_NONE) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: sync=%s: an NBD export has no backing file", verb,
                    cmd->sync == COMMAND_SYNC_TOP ? "top" : "none");
        return false;
    }
    return true;
}

struct block_node *remote_target_open(struct block_node *source,
                                      const struct command *cmd,
                                      const char *verb, GError **errp)
{
    if (!check_options(cmd, verb, errp)) {
        return NULL;
    }
    GError *error = NULL;
    struct block_node *node = block_node_open_uri(cmd->target, false, &error);
    if (!node) {
        g_prefix_error(&error, "%s: target: ", verb);
        g_propagate_error(errp, error);
        return NULL;
    }
    if (node->size < source->size) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: target %s is %" PRIu64 " bytes, smaller than the "
                    "disk (%" PRIu64 " bytes)", verb, cmd->target, node->size,
                    source->size);
        block_node_close(node);
        return NULL;
    }
    /* A larger export is used up to the disk's size: the disk's size
     * never changes, even once it runs on the export. */
    node->size = source->size;
    return node;
}
