/* chainfs: the control plane: checks and dispatch of one command (see
 * control.h).  Each verb is a row of a table: a job that runs
 * (mirror, stream, commit, backup), a synchronous command (snapshot) or a verb on
 * an existing job. */
#include "jobs/control.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "core/block.h"
#include "core/named-bitmap.h"
#include "jobs/backup.h"
#include "jobs/command.h"
#include "jobs/commit.h"
#include "jobs/fleece.h"
#include "jobs/mirror.h"
#include "jobs/path-policy.h"
#include "jobs/remote-target.h"
#include "jobs/snapshot.h"
#include "jobs/stream.h"

/* The last rejected command shown is cut to this many bytes. */
#define LAST_ERROR_MAX_COMMAND 4096

struct control {
    pthread_mutex_t lock;           /* one command at a time */
    GPtrArray *disks;               /* struct disk *, not owned */
    struct job_list *jobs;
    struct blocker_set *blockers;
    struct path_policy *paths;
    bool allow_remote;              /* --allow-remote: URI targets */
    struct control_listener listener;
    struct fleece_listener view_listener;

    pthread_mutex_t last_error_lock;
    char *last_error;               /* under last_error_lock */
};

/* What every command handler gets. */
struct command_context {
    struct control *ctl;
    const struct command *cmd;
    pid_t writer_pid;
};

/* Start a job of one type: returns it with a reference, as mirror_start
 * (see mirror.h for what the caller checked before). */
typedef struct job *job_start_fn(struct job_list *list, struct disk *disk,
                                 const struct command *cmd, GError **errp);

/* A verb that starts a job.  start NULL: not implemented yet (ENOTSUP). */
struct job_type_entry {
    job_start_fn *start;
    /* The key naming a file the job writes (mirror's target), or
     * COMMAND_KEY__MAX for none. */
    enum command_key target_key;
    /* Neither changes the disk's chain nor minds it changing (backup):
     * the disk stays free for other jobs and may be read-only; only the
     * file the job writes is blocked. */
    bool leaves_disk_free;
};

static const struct job_type_entry job_types[COMMAND__MAX] = {
    [COMMAND_MIRROR] = { mirror_start, COMMAND_KEY_TARGET, false },
    [COMMAND_STREAM] = { stream_start, COMMAND_KEY__MAX, false },
    [COMMAND_COMMIT] = { commit_start, COMMAND_KEY__MAX, false },
    [COMMAND_BACKUP] = { backup_start, COMMAND_KEY_TARGET, true },
};

/* Job ids that would clash with the files of .jobs/. */
static const char *const reserved_job_ids[] = {
    "ctl", "events", "last-error", NULL,
};

struct control *control_new(GPtrArray *disks, struct job_list *jobs,
                            struct blocker_set *blockers,
                            const GPtrArray *allow_dirs,
                            const char *mountpoint)
{
    struct control *ctl = g_new0(struct control, 1);

    pthread_mutex_init(&ctl->lock, NULL);
    pthread_mutex_init(&ctl->last_error_lock, NULL);
    ctl->disks = g_ptr_array_ref(disks);
    ctl->jobs = jobs;
    ctl->blockers = blockers;
    ctl->paths = path_policy_new(allow_dirs, mountpoint);
    ctl->last_error = g_strdup("");
    return ctl;
}

void control_free(struct control *ctl)
{
    if (!ctl) {
        return;
    }
    path_policy_free(ctl->paths);
    g_ptr_array_unref(ctl->disks);
    g_free(ctl->last_error);
    pthread_mutex_destroy(&ctl->last_error_lock);
    pthread_mutex_destroy(&ctl->lock);
    g_free(ctl);
}

void control_set_allow_remote(struct control *ctl, bool allow_remote)
{
    ctl->allow_remote = allow_remote;
}

void control_set_listener(struct control *ctl,
                          const struct control_listener *listener)
{
    ctl->listener = *listener;
}

void control_set_view_listener(struct control *ctl,
                               const struct fleece_listener *listener)
{
    ctl->view_listener = *listener;
}

/* ---- checks ---- */

/* The disk called name, or ENOENT. */
static struct disk *find_disk(struct control *ctl, const char *name,
                              GError **errp)
{
    for (guint i = 0; i < ctl->disks->len; i++) {
        struct disk *disk = g_ptr_array_index(ctl->disks, i);

        if (strcmp(disk->name, name) == 0) {
            return disk;
        }
    }
    g_set_error(errp, CHAINFS_ERROR, ENOENT, "no such disk '%s'", name);
    return NULL;
}

/* The disk of a command that changes its chain: it exists and is
 * writable (whether a job uses it is checked under the lock). */
static struct disk *find_disk_to_change(struct command_context *c,
                                        GError **errp)
{
    struct disk *disk = find_disk(c->ctl, c->cmd->disk, errp);

    if (disk && disk->read_only) {
        g_set_error(errp, CHAINFS_ERROR, EROFS,
                    "%s: disk '%s' is read-only",
                    command_verb_name(c->cmd->verb), disk->name);
        return NULL;
    }
    return disk;
}

/* Whether a layer of disk's chain is the file (dev, ino). */
static bool chain_has_file(struct disk *disk, dev_t dev, ino_t ino)
{
    bool found = false;
    struct stat st;

    pthread_rwlock_rdlock(&disk->io_lock);
    for (struct block_node *node = disk->top; node && !found;
         node = node->backing) {
        found = fstat(node->fd, &st) == 0 && st.st_dev == dev &&
                st.st_ino == ino;
    }
    pthread_rwlock_unlock(&disk->io_lock);
    return found;
}

/* EBUSY if (dev, ino) is a layer of a disk other than except (NULL: any). */
static bool check_not_a_layer(struct control *ctl, const char *path,
                              dev_t dev, ino_t ino, const struct disk *except,
                              GError **errp)
{
    for (guint i = 0; i < ctl->disks->len; i++) {
        struct disk *disk = g_ptr_array_index(ctl->disks, i);

        if (disk != except && chain_has_file(disk, dev, ino)) {
            g_set_error(errp, CHAINFS_ERROR, EBUSY,
                        "%s is a layer of disk '%s'", path, disk->name);
            return false;
        }
    }
    return true;
}

/* Resolve the file a command writes (key's value): allowed, and existing
 * or not as cmd->mode wants.  Without the lock: resolving may send
 * requests to this very mount (a symlink into it), served by other
 * threads, which may be waiting for the lock. */
static char *resolve_written_file(struct command_context *c,
                                  enum command_key key, const char *value,
                                  GError **errp)
{
    return path_policy_resolve(c->ctl->paths, command_key_name(key), value,
                               c->writer_pid,
                               c->cmd->mode == COMMAND_MODE_EXISTING, errp);
}

/* Under the lock: no job uses the disk (unless check_disk is false),
 * and an existing file to be written (path, or NULL) is used by no job
 * and no disk. */
static bool check_not_in_use_locked(struct command_context *c,
                                    struct disk *disk, bool check_disk,
                                    const char *path, GError **errp)
{
    struct stat st;

    if (check_disk &&
        !blocker_check_disk(c->ctl->blockers, disk->name, errp)) {
        return false;
    }
    if (!path || c->cmd->mode != COMMAND_MODE_EXISTING) {
        return true;
    }
    if (stat(path, &st) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: %s", path,
                    g_strerror(err));
        return false;
    }
    return blocker_check_file(c->ctl->blockers, st.st_dev, st.st_ino, path,
                              BLOCKER_USE_WRITE, errp) &&
           check_not_a_layer(c->ctl, path, st.st_dev, st.st_ino, NULL,
                             errp);
}

/* A commit writes into its base: no other disk may read that layer, or
 * its guest would see data change under it.  base NULL: the bottom of the
 * disk's chain.  A base that is not in the chain is left to the job to
 * refuse. */
static bool check_commit_base_unshared(struct control *ctl, struct disk *disk,
                                       const char *base, GError **errp)
{
    g_autofree char *path = NULL;
    struct stat st;
    int ret;

    if (base) {
        path = g_strdup(base);
        ret = stat(base, &st);
        if (ret == 0 && !chain_has_file(disk, st.st_dev, st.st_ino)) {
            return true;
        }
    } else {
        struct block_node *bottom;

        pthread_rwlock_rdlock(&disk->io_lock);
        for (bottom = disk->top; bottom->backing; bottom = bottom->backing) {
        }
        path = g_strdup(bottom->filename);
        ret = fstat(bottom->fd, &st);
        pthread_rwlock_unlock(&disk->io_lock);
    }
    return ret < 0 ||
           check_not_a_layer(ctl, path, st.st_dev, st.st_ino, disk, errp);
}

/* ---- commands ---- */

/* The blocker of a job just started: its disk's chain (unless it leaves
 * the disk free) and the file it writes. */
static struct op_blocker *job_blocker(struct disk *disk, const char *job_id,
                                      bool leaves_disk_free,
                                      const char *target_path)
{
    struct op_blocker *blocker =
        op_blocker_new(job_id, leaves_disk_free ? NULL : disk->name);
    struct stat st;

    /* Layers that cannot be stat'ed are still blocked through the disk. */
    if (!leaves_disk_free) {
        pthread_rwlock_rdlock(&disk->io_lock);
        op_blocker_add_chain(blocker, disk->top, NULL);
        pthread_rwlock_unlock(&disk->io_lock);
    }
    if (target_path && stat(target_path, &st) == 0) {
        op_blocker_add_file(blocker, st.st_dev, st.st_ino, BLOCKER_USE_WRITE);
    }
    return blocker;
}

/* mirror, stream, commit. */
static char *execute_start_job(struct command_context *c, GError **errp)
{
    const struct job_type_entry *type = &job_types[c->cmd->verb];
    struct command cmd = *c->cmd;
    g_autofree char *target = NULL;
    g_autofree char *base = NULL;
    g_autofree char *top = NULL;
    struct op_blocker *blocker;
    struct disk *disk;
    struct job *job;
    char *reply;

    if (!type->start) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP, "%s: not implemented yet",
                    command_verb_name(cmd.verb));
        return NULL;
    }
    if (g_strv_contains(reserved_job_ids, cmd.id)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: id: '%s' is reserved (a file in .jobs)",
                    command_verb_name(cmd.verb), cmd.id);
        return NULL;
    }
    job = job_list_lookup(c->ctl->jobs, cmd.id, NULL);
    if (job) {
        job_unref(job);
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    cmd.id);
        return NULL;
    }
    disk = type->leaves_disk_free ? find_disk(c->ctl, cmd.disk, errp)
                                  : find_disk_to_change(c, errp);
    if (!disk) {
        return NULL;
    }
    if (type->target_key == COMMAND_KEY_TARGET &&
        block_name_is_uri(cmd.target)) {
        /* A remote export: no file to resolve or block (NBD has no
         * locks); the job opens it. */
        if (!remote_target_check(c->ctl->paths, c->ctl->allow_remote,
                                 command_verb_name(cmd.verb), cmd.target,
                                 c->writer_pid, errp)) {
            return NULL;
        }
    } else if (type->target_key == COMMAND_KEY_TARGET) {
        target = resolve_written_file(c, COMMAND_KEY_TARGET, cmd.target,
                                      errp);
        if (!target) {
            return NULL;
        }
        cmd.target = target;
    }
    /* Layers are named as the writer spells them, relative to its working
     * directory like every other path; the job matches them by file. */
    if (cmd.base) {
        base = path_policy_absolute("base", cmd.base, c->writer_pid, errp);
        if (!base) {
            return NULL;
        }
        cmd.base = base;
    }
    if (cmd.top) {
        top = path_policy_absolute("top", cmd.top, c->writer_pid, errp);
        if (!top) {
            return NULL;
        }
        cmd.top = top;
    }

    pthread_mutex_lock(&c->ctl->lock);
    job = check_not_in_use_locked(c, disk, !type->leaves_disk_free, target,
                                  errp) &&
          (cmd.verb != COMMAND_COMMIT ||
           check_commit_base_unshared(c->ctl, disk, cmd.base, errp))
        ? type->start(c->ctl->jobs, disk, &cmd, errp) : NULL;
    if (job) {
        blocker = job_blocker(disk, cmd.id, type->leaves_disk_free, target);
        op_blocker_install(c->ctl->blockers, blocker);
        /* The job may have concluded already: then the blocker goes at
         * once. */
        job_attach_blocker(job, blocker);
        if (c->ctl->listener.job_added) {
            c->ctl->listener.job_added(c->ctl->listener.opaque, job->id);
        }
    }
    pthread_mutex_unlock(&c->ctl->lock);
    if (!job) {
        return NULL;
    }
    reply = g_strdup_printf("ok id=%s", job->id);
    job_unref(job);
    return reply;
}

/* fleece id= disk= [name=] [bitmap=] [store=].  A fleece never changes
 * the disk's chain: it is not refused because another job uses the disk,
 * and its blocker holds no disk (so it refuses no other job), only its
 * store file (when it has a name) against use as another job's target. */
static char *execute_fleece(struct command_context *c, GError **errp)
{
    struct command cmd = *c->cmd;
    g_autofree char *store = NULL;
    struct op_blocker *blocker;
    struct disk *disk;
    struct job *job;
    struct stat st;
    char *reply;

    if (g_strv_contains(reserved_job_ids, cmd.id)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "fleece: id: '%s' is reserved (a file in .jobs)", cmd.id);
        return NULL;
    }
    job = job_list_lookup(c->ctl->jobs, cmd.id, NULL);
    if (job) {
        job_unref(job);
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    cmd.id);
        return NULL;
    }
    disk = find_disk(c->ctl, cmd.disk, errp);
    if (!disk) {
        return NULL;
    }
    if (cmd.store) {
        store = path_policy_resolve(c->ctl->paths, "store", cmd.store,
                                    c->writer_pid, false, errp);
        if (!store) {
            g_prefix_error(errp, "fleece: ");
            return NULL;
        }
        cmd.store = store;
    }

    pthread_mutex_lock(&c->ctl->lock);
    job = fleece_start(c->ctl->jobs, disk, &cmd, &c->ctl->view_listener,
                       errp);
    if (job) {
        blocker = op_blocker_new(cmd.id, NULL);
        if (store && stat(store, &st) == 0) {
            op_blocker_add_file(blocker, st.st_dev, st.st_ino,
                                BLOCKER_USE_WRITE);
        }
        op_blocker_install(c->ctl->blockers, blocker);
        job_attach_blocker(job, blocker);
        if (c->ctl->listener.job_added) {
            c->ctl->listener.job_added(c->ctl->listener.opaque, job->id);
        }
    }
    pthread_mutex_unlock(&c->ctl->lock);
    if (!job) {
        return NULL;
    }
    reply = g_strdup_printf("ok id=%s", job->id);
    job_unref(job);
    return reply;
}

/* snapshot disk= overlay= [format=qcow2] [mode=]. */
static char *execute_snapshot(struct command_context *c, GError **errp)
{
    const struct command *cmd = c->cmd;
    g_autofree char *overlay = NULL;
    struct disk *disk;
    bool ok;

    if (cmd->format && strcmp(cmd->format, "qcow2") != 0) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "snapshot: format '%s' is not supported (qcow2 only)",
                    cmd->format);
        return NULL;
    }
    disk = find_disk_to_change(c, errp);
    if (!disk) {
        return NULL;
    }
    overlay = resolve_written_file(c, COMMAND_KEY_OVERLAY, cmd->overlay, errp);
    if (!overlay) {
        return NULL;
    }
    pthread_mutex_lock(&c->ctl->lock);
    ok = check_not_in_use_locked(c, disk, true, overlay, errp) &&
         snapshot_run(disk, overlay, cmd->mode, errp);
    pthread_mutex_unlock(&c->ctl->lock);
    return ok ? g_strdup("ok") : NULL;
}

/* bitmap-add, -remove, -clear, -enable, -disable, -merge.  Under the
 * lock, so that a job's check that a bitmap is free and its taking it
 * are one step. */
static char *execute_bitmap(struct command_context *c, GError **errp)
{
    const struct command *cmd = c->cmd;
    struct disk *disk = find_disk(c->ctl, cmd->disk, errp);
    g_auto(GStrv) from = NULL;
    bool ok = false;

    if (!disk) {
        return NULL;
    }
    pthread_mutex_lock(&c->ctl->lock);
    switch (cmd->verb) {
    case COMMAND_BITMAP_ADD:
        ok = named_bitmap_add(disk, cmd->name, cmd->granularity,
                              cmd->persistent, cmd->disabled, errp);
        break;
    case COMMAND_BITMAP_REMOVE:
        ok = named_bitmap_remove(disk, cmd->name, errp);
        break;
    case COMMAND_BITMAP_CLEAR:
        ok = named_bitmap_clear(disk, cmd->name, errp);
        break;
    case COMMAND_BITMAP_ENABLE:
    case COMMAND_BITMAP_DISABLE:
        ok = named_bitmap_enable(disk, cmd->name,
                                 cmd->verb == COMMAND_BITMAP_ENABLE, errp);
        break;
    case COMMAND_BITMAP_MERGE:
        from = g_strsplit(cmd->from, ",", -1);
        ok = named_bitmap_merge(disk, cmd->name, (const char *const *)from,
                                errp);
        break;
    default:
        g_assert_not_reached();
    }
    pthread_mutex_unlock(&c->ctl->lock);
    return ok ? g_strdup("ok") : NULL;
}

/* complete, cancel, pause, resume, set-speed, change, dismiss. */
static char *execute_job_verb(struct command_context *c, GError **errp)
{
    const struct command *cmd = c->cmd;
    struct job *job = job_list_lookup(c->ctl->jobs, cmd->id, errp);
    enum job_verb verb;
    bool ok = false;

    if (!job) {
        return NULL;
    }
    command_job_verb(cmd->verb, &verb);
    pthread_mutex_lock(&c->ctl->lock);
    switch (verb) {
    case JOB_VERB_COMPLETE:
        ok = job_complete(job, errp);
        break;
    case JOB_VERB_CANCEL:
        ok = job_cancel(job, cmd->force, errp);
        break;
    case JOB_VERB_PAUSE:
        ok = job_user_pause(job, errp);
        break;
    case JOB_VERB_RESUME:
        ok = job_user_resume(job, errp);
        break;
    case JOB_VERB_SET_SPEED:
        ok = job_set_speed(job, cmd->speed, errp);
        break;
    case JOB_VERB_CHANGE: {
        struct job_change_opts opts = {
            .has_copy_mode = command_has(cmd, COMMAND_KEY_COPY_MODE),
            .copy_mode = cmd->copy_mode,
        };
        ok = job_change(job, &opts, errp);
        break;
    }
    case JOB_VERB_DISMISS:
        ok = job_dismiss(job, errp);
        if (ok && c->ctl->listener.job_removed) {
            c->ctl->listener.job_removed(c->ctl->listener.opaque, job->id);
        }
        break;
    case JOB_VERB__MAX:
        g_assert_not_reached();
    }
    pthread_mutex_unlock(&c->ctl->lock);
    job_unref(job);
    return ok ? g_strdup("ok") : NULL;
}

/* ---- entry point ---- */

/* Remember a rejected command for `.jobs/last-error`, made printable. */
static void set_last_error(struct control *ctl, const char *job_id,
                           const char *buf, size_t len, const char *message)
{
    GString *text = g_string_sized_new(MIN(len, LAST_ERROR_MAX_COMMAND) + 64);

    if (len > 0 && buf[len - 1] == '\n') {
        len--;
    }
    if (job_id) {
        g_string_append_printf(text, "%s: ", job_id);
    }
    for (size_t i = 0; i < MIN(len, LAST_ERROR_MAX_COMMAND); i++) {
        unsigned char ch = buf[i];
        g_string_append_c(text, ch < 0x20 && ch != '\t' ? '?' : (char)ch);
    }
    if (len > LAST_ERROR_MAX_COMMAND) {
        g_string_append(text, "...");
    }
    g_string_append_printf(text, "\nerror: %s\n", message);

    pthread_mutex_lock(&ctl->last_error_lock);
    g_free(ctl->last_error);
    ctl->last_error = g_string_free(text, FALSE);
    pthread_mutex_unlock(&ctl->last_error_lock);
}

char *control_last_error(struct control *ctl)
{
    char *text;

    pthread_mutex_lock(&ctl->last_error_lock);
    text = g_strdup(ctl->last_error);
    pthread_mutex_unlock(&ctl->last_error_lock);
    return text;
}

/* Parse and dispatch; each handler takes the lock where it must. */
static char *execute_command(struct control *ctl, const char *job_id,
                            const char *buf, size_t len, pid_t writer_pid,
                            GError **errp)
{
    struct command cmd;
    struct command_context c = { ctl, &cmd, writer_pid };
    enum job_verb verb;
    char *reply;

    if (!(job_id ? command_parse_job_ctl(buf, len, job_id, &cmd, errp)
                 : command_parse(buf, len, &cmd, errp))) {
        return NULL;
    }
    if (command_job_verb(cmd.verb, &verb)) {
        reply = execute_job_verb(&c, errp);
    } else if (cmd.verb == COMMAND_SNAPSHOT) {
        reply = execute_snapshot(&c, errp);
    } else if (command_is_bitmap_verb(cmd.verb)) {
        reply = execute_bitmap(&c, errp);
    } else if (cmd.verb == COMMAND_FLEECE) {
        reply = execute_fleece(&c, errp);
    } else {
        reply = execute_start_job(&c, errp);
    }
    command_clear(&cmd);
    return reply;
}

char *control_execute(struct control *ctl, const char *job_id,
                      const char *buf, size_t len, pid_t writer_pid,
                      GError **errp)
{
    GError *error = NULL;
    char *reply;

    reply = execute_command(ctl, job_id, buf, len, writer_pid, &error);
    if (!reply) {
        g_assert(error);
        g_strdelimit(error->message, "\n", ' ');
        set_last_error(ctl, job_id, buf, len, error->message);
        g_propagate_error(errp, error);
    }
    return reply;
}
