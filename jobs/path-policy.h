/* chainfs: where commands may create or open files (INTERFACE.md section
 * 3: --allow-dir, EACCES).
 *
 * A path given in a command (a mirror target, a snapshot overlay) is made
 * absolute (a relative one against the writer's working directory, as a
 * shell user expects), then resolved with realpath(3) so that neither
 * ".." nor a symlink can lead out of the allowed directories: the file
 * (or, for a file to be created, its directory) must resolve to a place
 * under one of them, and outside every chainfs mount (this one, and every
 * fuse.chainfs mount in /proc/self/mountinfo), where a write would come
 * back to a daemon that may be waiting for it.
 *
 * Thread-safety: a policy never changes after path_policy_new; every
 * function may be called from any thread.
 */
#ifndef CHAINFS_PATH_POLICY_H
#define CHAINFS_PATH_POLICY_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

struct path_policy;

/* A policy allowing the canonical directories allow_dirs (char *; copied)
 * and refusing everything under mountpoint (canonical; NULL: none). */
struct path_policy *path_policy_new(const GPtrArray *allow_dirs,
                                    const char *mountpoint);
void path_policy_free(struct path_policy *policy);

/* Resolve the value of key (`target`, `overlay`) given by the process
 * writer_pid: returns the canonical absolute path, or NULL with errp set:
 * EACCES outside the allowed directories or inside a chainfs mount,
 * ENOENT for a missing directory (or file, if must_exist), EEXIST for an
 * existing file unless must_exist, EINVAL for a name that is no file. */
char *path_policy_resolve(const struct path_policy *policy, const char *key,
                          const char *value, pid_t writer_pid,
                          bool must_exist, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

/* value (of key) made absolute against the working directory of the
 * process writer_pid, with no confinement: for paths that name layers the
 * disk already uses (base=, top=). */
char *path_policy_absolute(const char *key, const char *value,
                           pid_t writer_pid, GError **errp)
    __attribute__((nonnull(1, 2)));

#endif
