/* chainfs: the fleece job (see fleece.h). */
#include "jobs/fleece.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "core/chain.h"
#include "core/named-bitmap.h"

/* The view's granularity: the active layer's cluster size clamped to
 * this range, else the upper bound (as a named bitmap's default). */
#define FLEECE_MIN_GRANULARITY 4096u
#define FLEECE_MAX_GRANULARITY 65536u

/* How long the job sleeps between looks at its cancel flag (it is woken
 * by cancel anyway). */
#define FLEECE_IDLE_NS (3600ULL * 1000 * 1000 * 1000)

/* Tries at a free temporary store name. */
#define FLEECE_TEMP_TRIES 16

struct fleece_job {
    struct job common;                  /* first: the framework's part */

    /* Set up before the job starts, then read-only. */
    struct fleece_view *view;           /* a reference */
    char *file_name;                    /* NAME@SNAP */
    char *store_path;                   /* store=PATH, removed at the end;
                                           NULL for a temporary store */
    struct fleece_listener listener;
    bool shown;                         /* listener.added was called */
};

static struct fleece_job *fleece_of(struct job *job)
{
    return (struct fleece_job *)job;    /* common comes first */
}

/* --- Driver hooks --------------------------------------------------------- */

/* Nothing to copy: the view lives until the job is cancelled. */
static int fleece_run(struct job *job, GError **errp)
{
    (void)errp;
    while (!job_sleep_ns(job, FLEECE_IDLE_NS)) {
    }
    return -ECANCELED;
}

/* The file goes first (no new opens), then the view (waits for the
 * requests in flight, closes the store), then the store's name. */
static void fleece_clean(struct job *job)
{
    struct fleece_job *f = fleece_of(job);

    if (f->shown && f->listener.removed) {
        f->listener.removed(f->listener.opaque, f->view);
    }
    f->shown = false;
    fleece_view_close(f->view);
    if (f->store_path) {
        unlink(f->store_path);
        (void)block_sync_parent_dir(f->store_path);
    }
}

static void fleece_status(struct job *job, GString *out)
{
    struct fleece_job *f = fleece_of(job);

    g_string_append_printf(out, "store-bytes: %" PRIu64 "\n",
                           fleece_view_store_bytes(f->view));
}

static void fleece_free(struct job *job)
{
    struct fleece_job *f = fleece_of(job);

    fleece_view_unref(f->view);
    g_free(f->file_name);
    g_free(f->store_path);
}

static const struct job_driver fleece_driver = {
    .job_type = "fleece",
    .instance_size = sizeof(struct fleece_job),
    .run = fleece_run,
    .clean = fleece_clean,
    .status = fleece_status,
    .free = fleece_free,
};

/* --- Start ---------------------------------------------------------------- */

static uint32_t fleece_granularity(struct block_node *top)
{
    if (!top->cluster_size) {
        return FLEECE_MAX_GRANULARITY;
    }
    return MIN(MAX(top->cluster_size, FLEECE_MIN_GRANULARITY),
               FLEECE_MAX_GRANULARITY);
}

/* Create the store image at path (EEXIST if it exists). */
static bool create_store_at(const char *path, uint64_t size,
                            uint32_t granularity, GError **errp)
{
    const struct block_driver *qcow2 = block_driver_by_name("qcow2");
    struct block_create_opts opts = {
        .size = size,
        .cluster_size = granularity,
    };

    if (!qcow2 || !qcow2->create) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "fleece: cannot create qcow2 images");
        return false;
    }
    return qcow2->create(path, &opts, errp);
}

/* Create and open the store: at path, or a temporary file in dir (the
 * active layer's), unlinked once open. */
static struct block_node *open_store(struct disk *disk, const char *dir,
                                     const char *path, const char *job_id,
                                     uint32_t granularity, GError **errp)
{
    g_autofree char *temp = NULL;
    struct block_node *store;

    if (path) {
        if (!create_store_at(path, disk_size(disk), granularity, errp)) {
            if (g_error_matches(*errp, CHAINFS_ERROR, EEXIST)) {
                g_clear_error(errp);
                g_set_error(errp, CHAINFS_ERROR, EEXIST,
                            "fleece: store %s exists", path);
            }
            return NULL;
        }
    } else {
        GError *error = NULL;

        for (int i = 0; i < FLEECE_TEMP_TRIES; i++) {
            g_clear_error(&error);
            g_free(temp);
            temp = g_strdup_printf("%s/.chainfs-fleece-%s-%08x.qcow2", dir,
                                   job_id, g_random_int());
            if (create_store_at(temp, disk_size(disk), granularity,
                                &error) ||
                !g_error_matches(error, CHAINFS_ERROR, EEXIST)) {
                break;
            }
        }
        if (error) {
            g_propagate_prefixed_error(errp, error, "fleece: store: ");
            return NULL;
        }
        path = temp;
    }
    store = block_node_open(path, "qcow2", false, errp);
    /* A temporary store needs no name: a crash leaves nothing behind,
     * and a power loss neither once the directory is synced. */
    if (!store || temp) {
        unlink(path);
        (void)block_sync_parent_dir(path);
    }
    return store;
}

/* The snapshot's name (name=, else the id) and the file's, checked. */
static bool check_names(struct disk *disk, const struct command *cmd,
                        const struct fleece_listener *listener,
                        char **file_name, GError **errp)
{
    const char *snap = cmd->name ? cmd->name : cmd->id;

    if (!command_valid_name(snap, COMMAND_MAX_DISK_LEN)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "fleece: name: '%s' is not a valid name ([A-Za-z0-9._-], "
                    "not starting with '.')", snap);
        return false;
    }
    *file_name = g_strdup_printf("%s@%s", disk->name, snap);
    if (strlen(*file_name) > COMMAND_MAX_DISK_LEN) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "fleece: name: the file name '%s' is longer than %d "
                    "bytes", *file_name, COMMAND_MAX_DISK_LEN);
        g_clear_pointer(file_name, g_free);
        return false;
    }
    if (listener->name_free &&
        !listener->name_free(listener->opaque, *file_name)) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST,
                    "fleece: name: the file '%s' exists", *file_name);
        g_clear_pointer(file_name, g_free);
        return false;
    }
    return true;
}

/* The instant: in one drain, the bitmap's bits move and the view
 * freezes, so no write falls between them. */
static bool freeze(struct disk *disk, struct fleece_view *view,
                   const char *bitmap, const char *snap, GError **errp)
{
    g_autofree char *snapshot_bitmap =
        bitmap ? g_strdup_printf("%s@%s", bitmap, snap) : NULL;
    bool ok = true;

    disk_drain_begin(disk);
    if (bitmap) {
        ok = named_bitmap_snapshot_drained(disk, bitmap, snapshot_bitmap,
                                           errp);
    }
    if (ok) {
        fleece_view_freeze_drained(view);
    }
    disk_drain_end(disk);
    return ok;
}

struct job *fleece_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd,
                         const struct fleece_listener *listener,
                         GError **errp)
{
    const char *snap = cmd->name ? cmd->name : cmd->id;
    g_autofree char *file_name = NULL;
    g_autofree char *snapshot_bitmap = NULL;
    g_autofree char *dir = NULL;
    struct block_node *store;
    uint32_t granularity;

    g_assert(cmd->verb == COMMAND_FLEECE);
    if (!check_names(disk, cmd, listener, &file_name, errp)) {
        return NULL;
    }
    if (cmd->bitmap) {
        snapshot_bitmap = g_strdup_printf("%s@%s", cmd->bitmap, snap);
        if (!named_bitmap_check_snapshot(disk, cmd->bitmap, snapshot_bitmap,
                                         errp)) {
            return NULL;
        }
    }
    struct job *job = job_create(list, &fleece_driver, cmd->id, disk->name,
                                 errp);
    if (!job) {
        return NULL;
    }
    /* A running job may switch the top meanwhile: copy what is needed. */
    pthread_rwlock_rdlock(&disk->io_lock);
    granularity = fleece_granularity(disk->top);
    dir = g_path_get_dirname(disk->top->filename);
    pthread_rwlock_unlock(&disk->io_lock);
    store = open_store(disk, dir, cmd->store, cmd->id, granularity, errp);
    if (!store) {
        job_early_fail(job);
        return NULL;
    }

    struct fleece_job *f = fleece_of(job);
    f->view = fleece_view_new(disk, store, granularity);
    f->file_name = g_steal_pointer(&file_name);
    f->store_path = g_strdup(cmd->store);
    f->listener = *listener;
    if (!freeze(disk, f->view, cmd->bitmap, snap, errp)) {
        fleece_view_close(f->view);
        if (f->store_path) {
            unlink(f->store_path);
        }
        job_early_fail(job);
        return NULL;
    }
    if (listener->added) {
        listener->added(listener->opaque, f->file_name, f->view);
        f->shown = true;
    }
    job_progress_set_len(job, fleece_view_size(f->view));
    job_start(job);
    return job;
}
