/* chainfs: where commands may create or open files (see path-policy.h). */
#include "jobs/path-policy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/block.h"

struct path_policy {
    GPtrArray *allow_dirs;  /* char *, canonical */
    char *mountpoint;       /* canonical, or NULL */
};

struct path_policy *path_policy_new(const GPtrArray *allow_dirs,
                                    const char *mountpoint)
{
    struct path_policy *policy = g_new0(struct path_policy, 1);

    policy->allow_dirs = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; allow_dirs && i < allow_dirs->len; i++) {
        g_ptr_array_add(policy->allow_dirs,
                        g_strdup(g_ptr_array_index(allow_dirs, i)));
    }
    policy->mountpoint = g_strdup(mountpoint);
    return policy;
}

void path_policy_free(struct path_policy *policy)
{
    if (policy) {
        g_ptr_array_unref(policy->allow_dirs);
        g_free(policy->mountpoint);
        g_free(policy);
    }
}

/* Whether path is dir or lies below it (both absolute, normalized). */
static bool path_is_under(const char *path, const char *dir)
{
    size_t len = strlen(dir);

    if (strcmp(dir, "/") == 0) {
        return true;
    }
    return strncmp(path, dir, len) == 0 &&
           (path[len] == '/' || path[len] == '\0');
}

/* abs with ".", ".." and repeated slashes removed without looking at the
 * file system (only for the early check against our own mount, which
 * must not make us send requests to ourselves). */
static char *normalize_lexically(const char *abs)
{
    g_auto(GStrv) parts = g_strsplit(abs, "/", -1);
    GPtrArray *kept = g_ptr_array_new();
    GString *out = g_string_new(NULL);

    for (char **part = parts; *part; part++) {
        if (**part == '\0' || strcmp(*part, ".") == 0) {
            continue;
        }
        if (strcmp(*part, "..") == 0) {
            if (kept->len > 0) {
                g_ptr_array_remove_index(kept, kept->len - 1);
            }
            continue;
        }
        g_ptr_array_add(kept, *part);
    }
    for (guint i = 0; i < kept->len; i++) {
        g_string_append_printf(out, "/%s",
                               (char *)g_ptr_array_index(kept, i));
    }
    if (out->len == 0) {
        g_string_append_c(out, '/');
    }
    g_ptr_array_unref(kept);
    return g_string_free(out, FALSE);
}

/* Undo mountinfo's octal escapes (\040 for a blank) in place. */
static void unescape_mountinfo(char *s)
{
    char *out = s;

    for (char *in = s; *in; in++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' &&
            in[2] >= '0' && in[2] <= '7' && in[3] >= '0' && in[3] <= '7') {
            *out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 +
                            (in[3] - '0'));
            in += 3;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
}

/* The mount points of every chainfs mount, ours first. */
static GPtrArray *chainfs_mounts(const struct path_policy *policy)
{
    GPtrArray *mounts = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *text = NULL;

    if (policy->mountpoint) {
        g_ptr_array_add(mounts, g_strdup(policy->mountpoint));
    }
    if (!g_file_get_contents("/proc/self/mountinfo", &text, NULL, NULL)) {
        return mounts;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **line = lines; *line; line++) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - TYPE SOURCE */
        g_auto(GStrv) fields = g_strsplit(*line, " ", -1);
        guint n = g_strv_length(fields);
        guint dash = 6;

        while (dash < n && strcmp(fields[dash], "-") != 0) {
            dash++;
        }
        if (n < 5 || dash + 2 >= n) {
            continue;
        }
        if (strcmp(fields[dash + 1], "fuse.chainfs") == 0 ||
            (g_str_has_prefix(fields[dash + 1], "fuse") &&
             strcmp(fields[dash + 2], "chainfs") == 0)) {
            unescape_mountinfo(fields[4]);
            g_ptr_array_add(mounts, g_strdup(fields[4]));
        }
    }
    return mounts;
}

/* EACCES if path lies in a chainfs mount. */
static bool check_outside_mounts(GPtrArray *mounts, const char *key,
                                 const char *path, GError **errp)
{
    for (guint i = 0; i < mounts->len; i++) {
        const char *mount = g_ptr_array_index(mounts, i);

        if (path_is_under(path, mount)) {
            g_set_error(errp, CHAINFS_ERROR, EACCES,
                        "%s: %s is inside the chainfs mount %s", key, path,
                        mount);
            return false;
        }
    }
    return true;
}

/* EACCES unless path lies below an allowed directory. */
static bool check_allowed(const struct path_policy *policy, const char *key,
                          const char *path, GError **errp)
{
    g_autoptr(GString) dirs = g_string_new(NULL);

    for (guint i = 0; i < policy->allow_dirs->len; i++) {
        const char *dir = g_ptr_array_index(policy->allow_dirs, i);

        if (path_is_under(path, dir) && strcmp(path, dir) != 0) {
            return true;
        }
        g_string_append_printf(dirs, "%s%s", i ? ", " : "", dir);
    }
    g_set_error(errp, CHAINFS_ERROR, EACCES,
                "%s: %s is outside the allowed directories (%s)", key, path,
                dirs->len ? dirs->str : "none");
    return false;
}

/* Both checks on one resolved path. */
static bool check_place(const struct path_policy *policy, GPtrArray *mounts,
                        const char *key, const char *path, GError **errp)
{
    return check_outside_mounts(mounts, key, path, errp) &&
           check_allowed(policy, key, path, errp);
}

char *path_policy_absolute(const char *key, const char *value,
                           pid_t writer_pid, GError **errp)
{
    g_autofree char *link = NULL;
    g_autofree char *cwd = NULL;

    if (value[0] == '/') {
        return g_strdup(value);
    }
    link = g_strdup_printf("/proc/%d/cwd", (int)writer_pid);
    cwd = writer_pid > 0 ? g_file_read_link(link, NULL) : NULL;
    if (!cwd) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: '%s' is relative and the writer's working directory "
                    "is unknown: give an absolute path", key, value);
        return NULL;
    }
    return g_build_filename(cwd, value, NULL);
}

/* realpath(3) as a GError naming key and path. */
static char *resolve_existing(const char *key, const char *path,
                              const char *what, GError **errp)
{
    char *resolved = realpath(path, NULL);
    char *result;

    if (!resolved) {
        int err = errno == ENOTDIR ? ENOENT : errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: %s %s: %s", key, what,
                    path, g_strerror(err));
        return NULL;
    }
    result = g_strdup(resolved);
    free(resolved);
    return result;
}

char *path_policy_resolve(const struct path_policy *policy, const char *key,
                          const char *value, pid_t writer_pid,
                          bool must_exist, GError **errp)
{
    g_autofree char *abs = NULL;
    g_autofree char *lexical = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *base = NULL;
    g_autofree char *canonical_dir = NULL;
    g_autofree char *path = NULL;
    g_autoptr(GPtrArray) mounts = chainfs_mounts(policy);
    struct stat st;

    abs = path_policy_absolute(key, value, writer_pid, errp);
    if (!abs) {
        return NULL;
    }
    /* Before anything looks at the file system: resolving a path inside
     * our own mount would send requests to ourselves. */
    lexical = normalize_lexically(abs);
    if (!check_outside_mounts(mounts, key, lexical, errp)) {
        return NULL;
    }
    base = g_path_get_basename(abs);
    if (g_str_has_suffix(abs, "/") || strcmp(base, ".") == 0 ||
        strcmp(base, "..") == 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: '%s' is not a file name",
                    key, value);
        return NULL;
    }
    dir = g_path_get_dirname(abs);
    canonical_dir = resolve_existing(key, dir, "directory", errp);
    if (!canonical_dir) {
        return NULL;
    }
    path = g_build_filename(canonical_dir, base, NULL);
    if (!check_place(policy, mounts, key, path, errp)) {
        return NULL;
    }
    if (must_exist) {
        char *resolved = resolve_existing(key, path, "file", errp);

        /* A symlink may lead elsewhere: check where it ends. */
        if (resolved && !check_place(policy, mounts, key, resolved, errp)) {
            g_clear_pointer(&resolved, g_free);
        }
        return resolved;
    }
    if (lstat(path, &st) == 0) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "%s: %s exists", key, path);
        return NULL;
    }
    if (errno != ENOENT) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: %s: %s", key, path,
                    g_strerror(err));
        return NULL;
    }
    return g_steal_pointer(&path);
}
