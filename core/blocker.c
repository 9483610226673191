/* chainfs: operation blockers (see blocker.h). */
#include "core/blocker.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "core/block.h"

struct blocked_file {
    dev_t dev;
    ino_t ino;
    enum blocker_use use;
};

struct op_blocker {
    char *owner;
    char *disk_name;            /* NULL: no disk */
    GArray *files;              /* struct blocked_file */
    struct blocker_set *set;    /* NULL until installed */
};

struct blocker_set {
    pthread_mutex_t lock;
    GPtrArray *blockers;        /* struct op_blocker *; under lock */
};

struct blocker_set *blocker_set_new(void)
{
    struct blocker_set *set = g_new0(struct blocker_set, 1);

    pthread_mutex_init(&set->lock, NULL);
    set->blockers = g_ptr_array_new();
    return set;
}

void blocker_set_free(struct blocker_set *set)
{
    if (!set) {
        return;
    }
    g_assert(set->blockers->len == 0);
    g_ptr_array_unref(set->blockers);
    pthread_mutex_destroy(&set->lock);
    g_free(set);
}

struct op_blocker *op_blocker_new(const char *owner, const char *disk_name)
{
    struct op_blocker *blocker = g_new0(struct op_blocker, 1);

    blocker->owner = g_strdup(owner);
    blocker->disk_name = g_strdup(disk_name);
    blocker->files = g_array_new(FALSE, FALSE, sizeof(struct blocked_file));
    return blocker;
}

void op_blocker_add_file(struct op_blocker *blocker, dev_t dev, ino_t ino,
                         enum blocker_use use)
{
    struct blocked_file file = { .dev = dev, .ino = ino, .use = use };

    g_array_append_val(blocker->files, file);
}

bool op_blocker_add_chain(struct op_blocker *blocker, struct block_node *top,
                          GError **errp)
{
    for (struct block_node *node = top; node; node = node->backing) {
        struct stat st;

        if (block_node_is_remote(node)) {
            continue;           /* no file: blocked through its disk */
        }
        if (fstat(node->fd, &st) < 0) {
            int err = errno;
            g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot stat: %s",
                        node->filename, g_strerror(err));
            return false;
        }
        op_blocker_add_file(blocker, st.st_dev, st.st_ino, BLOCKER_USE_READ);
    }
    return true;
}

void op_blocker_install(struct blocker_set *set, struct op_blocker *blocker)
{
    g_assert(!blocker->set);
    pthread_mutex_lock(&set->lock);
    blocker->set = set;
    g_ptr_array_add(set->blockers, blocker);
    pthread_mutex_unlock(&set->lock);
}

void op_blocker_release(struct op_blocker *blocker)
{
    if (!blocker) {
        return;
    }
    if (blocker->set) {
        pthread_mutex_lock(&blocker->set->lock);
        g_ptr_array_remove(blocker->set->blockers, blocker);
        pthread_mutex_unlock(&blocker->set->lock);
    }
    g_array_unref(blocker->files);
    g_free(blocker->disk_name);
    g_free(blocker->owner);
    g_free(blocker);
}

bool blocker_check_disk(struct blocker_set *set, const char *disk_name,
                        GError **errp)
{
    bool ok = true;

    pthread_mutex_lock(&set->lock);
    for (guint i = 0; i < set->blockers->len && ok; i++) {
        struct op_blocker *blocker = g_ptr_array_index(set->blockers, i);

        if (blocker->disk_name && strcmp(blocker->disk_name, disk_name) == 0) {
            g_set_error(errp, CHAINFS_ERROR, EBUSY,
                        "disk '%s' is in use by job '%s'", disk_name,
                        blocker->owner);
            ok = false;
        }
    }
    pthread_mutex_unlock(&set->lock);
    return ok;
}

bool blocker_check_file(struct blocker_set *set, dev_t dev, ino_t ino,
                        const char *path, enum blocker_use use, GError **errp)
{
    bool ok = true;

    pthread_mutex_lock(&set->lock);
    for (guint i = 0; i < set->blockers->len && ok; i++) {
        struct op_blocker *blocker = g_ptr_array_index(set->blockers, i);

        for (guint j = 0; j < blocker->files->len; j++) {
            struct blocked_file *file =
                &g_array_index(blocker->files, struct blocked_file, j);

            if (file->dev == dev && file->ino == ino &&
                (use == BLOCKER_USE_WRITE ||
                 file->use == BLOCKER_USE_WRITE)) {
                g_set_error(errp, CHAINFS_ERROR, EBUSY,
                            "%s is in use by job '%s'", path, blocker->owner);
                ok = false;
                break;
            }
        }
    }
    pthread_mutex_unlock(&set->lock);
    return ok;
}
