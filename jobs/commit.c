/* chainfs: the commit job (see commit.h).
 *
 * Intermediate commit: the layers from top to just above base never
 * change while the job runs (guest writes go to the active layer above
 * them, and the op blockers keep other jobs away), so the copies read
 * them directly, without io_lock, and write base where they allocate, up
 * to COMMIT_MAX_IN_FLIGHT ranges at a time on the shared copy pool.
 * Guest reads that reach base read only ranges nothing above base
 * allocates, which the job never writes, so they see no change.
 *
 * Crash safety: base is flushed before the header above top is
 * rewritten (one atomic write of its first sectors), so after a crash the
 * chain on disk is the old one or the new one, with the same content.
 *
 * Active commit is a mirror (mirror_start_commit); this file only
 * validates it and prepares base.
 */
#include "jobs/commit.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "core/chain.h"
#include "core/named-bitmap.h"
#include "jobs/copy-pool.h"
#include "jobs/mirror.h"
#include "jobs/sparse-copy.h"

struct commit_job {
    struct job common;                  /* first: the framework's part */

    /* Set up before the job starts, then read-only. */
    struct disk *disk;
    struct block_node *overlay;         /* the layer above top */
    struct block_node *top;
    struct block_node *base;            /* read-write while the job runs */
    char *backing_file;                 /* NULL: base's path */
    enum job_error_policy on_error;
    int base_zero_flags;                /* UNMAP only without backing */
    uint64_t zero_align;                /* sparse_copy_align(base) */

    struct block_writeback writeback;   /* of base, by the copies */
};

static struct commit_job *commit_of(struct job *job)
{
    return (struct commit_job *)job;    /* common comes first */
}

/* --- The run loop -------------------------------------------------------- */

/* Write [offset, offset + len), allocated above base, into base: data as
 * data, zeros (by block status, or found in what was read) as zero
 * writes.  Only bytes written as data count as copied.  *is_read says
 * which side failed. */
static int commit_range(struct commit_job *c, uint64_t offset, uint64_t len,
                        uint8_t *buf, bool *is_read)
{
    struct block_node *top = c->top;
    struct block_node *base = c->base;

    for (uint64_t end = offset + len; offset < end;) {
        uint64_t n;
        *is_read = true;
        int status = block_chain_status(top, offset, end - offset, &n);
        if (status < 0) {
            return status;
        }
        n = MAX(MIN(n, end - offset), 1);
        int ret;
        if (status & BLOCK_STATUS_DATA) {
            ret = top->driver->read(top, offset, n, buf);
            if (ret < 0) {
                return ret;
            }
            *is_read = false;
            uint64_t copied = 0;
            ret = sparse_copy_write(base, offset, n, buf, c->zero_align,
                                    c->base_zero_flags, &copied);
            job_progress_add_copied(&c->common, copied);
            block_writeback_note(&c->writeback, base, copied);
        } else {
            *is_read = false;
            ret = block_node_write_zeroes(base, offset, n,
                                          c->base_zero_flags);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
    }
    return 0;
}

/* Apply the policy to a failed range: 0 to retry it (after a stop), 1 to
 * skip it for a later pass (ignore), or a negative errno with *errp. */
static int handle_error(struct commit_job *c, int ret, bool is_read,
                        GError **errp)
{
    switch (job_handle_error(&c->common, c->on_error, is_read, -ret)) {
    case JOB_ERROR_ACTION_REPORT:
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s %s: %s",
                    is_read ? "read from" : "write to",
                    is_read ? c->top->filename : c->base->filename,
                    g_strerror(-ret));
        return ret;
    case JOB_ERROR_ACTION_IGNORE:
        return 1;
    case JOB_ERROR_ACTION_STOP:
        return job_pause_point(&c->common) ? -ECANCELED : 0;
    }
    return ret;
}

/* Whether [offset, offset + len) needs a copy: a layer from top down to
 * just above base allocates it. */
static int commit_needs_copy(void *opaque, uint64_t offset, uint64_t len,
                             uint64_t *n)
{
    struct commit_job *c = opaque;

    return chain_is_allocated_above(c->top, c->base, offset, len, n);
}

/* Zeros the layers hold as data are read, so they are charged. */
static uint64_t commit_charge(void *opaque, uint64_t offset, uint64_t len)
{
    struct commit_job *c = opaque;

    return sparse_copy_data_bytes(c->top, offset, len);
}

static int commit_handle_error(void *opaque, int ret, bool is_read,
                               GError **errp)
{
    return handle_error(opaque, ret, is_read, errp);
}

static int commit_copy(void *opaque, uint64_t offset, uint64_t len,
                       uint8_t *buf, bool *is_read)
{
    return commit_range(opaque, offset, len, buf, is_read);
}

static const struct copy_pass_ops commit_pass_ops = {
    .status = commit_needs_copy,
    .charge = commit_charge,
    .handle_error = commit_handle_error,
};

/* The overlay reads zeros past the end of a top smaller than it; once it
 * backs onto a bigger base, that range must read zeros there too. */
static int zero_past_top(struct commit_job *c)
{
    uint64_t start = c->top->size;
    uint64_t end = MIN(c->overlay->size, c->base->size);

    if (end <= start) {
        return 0;
    }
    return block_node_write_zeroes(c->base, start, end - start,
                                   c->base_zero_flags);
}

static int commit_run(struct job *job, GError **errp)
{
    struct commit_job *c = commit_of(job);
    struct copy_batch batch;
    bool skipped;
    int ret;

    copy_batch_init(&batch, job, commit_copy, c, COMMIT_MAX_IN_FLIGHT,
                    COMMIT_MAX_IN_FLIGHT * COMMIT_CHUNK_BYTES);
    do {
        ret = copy_batch_pass(&batch, &commit_pass_ops, c->top->size,
                              COMMIT_CHUNK_BYTES, &skipped, errp);
    } while (ret == 0 && skipped);
    copy_batch_destroy(&batch);
    if (ret < 0) {
        return ret;
    }
    ret = zero_past_top(c);
    if (ret == 0) {
        /* Base first: its data is durable before any header names it. */
        ret = c->base->driver->flush(c->base);
    }
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "write to %s: %s",
                    c->base->filename, g_strerror(-ret));
    }
    return ret;
}

/* --- Driver hooks -------------------------------------------------------- */

/* Rewrite the overlay's header to name base, reopening it read-write for
 * the moment if it is a backing layer.  Drained. */
static bool rewrite_overlay_header(struct commit_job *c, GError **errp)
{
    struct block_node *overlay = c->overlay;
    const char *name = c->backing_file ? c->backing_file : c->base->filename;
    bool was_read_only = overlay->read_only;

    if (!block_node_reopen(overlay, false, errp)) {
        return false;
    }
    bool ok = overlay->driver->set_backing(overlay, name,
                                           c->base->driver->format_name,
                                           errp);
    GError *error = NULL;
    if (was_read_only && !block_node_reopen(overlay, true, &error)) {
        g_warning("commit '%s': %s", c->common.id, error->message);
        g_error_free(error);
    }
    return ok;
}

/* Under a drain: the overlay backs onto base, the layers between leave. */
static bool commit_prepare(struct job *job, GError **errp)
{
    struct commit_job *c = commit_of(job);

    disk_drain_begin(c->disk);
    if (!rewrite_overlay_header(c, errp)) {
        disk_drain_end(c->disk);
        return false;
    }
    int ret = disk_remove_layers_drained(c->disk, c->overlay, c->base);
    disk_drain_end(c->disk);
    if (ret < 0) {
        g_warning("commit '%s': closing the old layers: %s", job->id,
                  g_strerror(-ret));
    }
    return true;
}

/* Base is a backing layer again, whatever the outcome. */
static void commit_clean(struct job *job)
{
    struct commit_job *c = commit_of(job);
    GError *error = NULL;

    disk_drain_begin(c->disk);
    if (!block_node_reopen(c->base, true, &error)) {
        g_warning("commit '%s': %s", job->id, error->message);
        g_error_free(error);
    }
    disk_drain_end(c->disk);
}

static void commit_free(struct job *job)
{
    struct commit_job *c = commit_of(job);

    g_free(c->backing_file);
}

static const struct job_driver commit_driver = {
    .job_type = "commit",
    .instance_size = sizeof(struct commit_job),
    .run = commit_run,
    .prepare = commit_prepare,
    .clean = commit_clean,
    .free = commit_free,
};

/* --- Start --------------------------------------------------------------- */

/* What commit_start resolved. */
struct commit_layers {
    struct block_node *overlay;         /* NULL: top is active */
    struct block_node *top;
    struct block_node *base;
};

/* Resolve top= and base= and check them against each other and cmd. */
static bool commit_check(struct disk *disk, struct block_node *active,
                         const struct command *cmd,
                         struct commit_layers *layers, GError **errp)
{
    *layers = (struct commit_layers){ 0 };
    layers->top = cmd->top ? disk_find_layer(disk, cmd->top, errp) : active;
    if (!layers->top) {
        return false;
    }
    if (cmd->base) {
        layers->base = disk_find_layer(disk, cmd->base, errp);
        if (!layers->base) {
            return false;
        }
    } else {
        for (layers->base = active; layers->base->backing;
             layers->base = layers->base->backing) {
        }
    }
    if (disk->read_only) {
        g_set_error(errp, CHAINFS_ERROR, EROFS,
                    "commit: disk '%s' is read-only", disk->name);
        return false;
    }
    bool below = false;
    for (struct block_node *n = layers->top->backing; n; n = n->backing) {
        below |= n == layers->base;
    }
    if (!below) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "commit: base %s is not below top %s in disk '%s'",
                    layers->base->filename, layers->top->filename,
                    disk->name);
        return false;
    }
    for (struct block_node *n = active; n != layers->top; n = n->backing) {
        layers->overlay = n;
    }
    if (!layers->overlay && cmd->backing_file) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "commit: backing-file: not allowed when top is the "
                    "active layer (%s)", layers->top->filename);
        return false;
    }
    if (layers->overlay && !layers->overlay->driver->set_backing) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "commit: %s: a %s image cannot record a backing file",
                    layers->overlay->filename,
                    layers->overlay->driver->format_name);
        return false;
    }
    if (layers->base->size < layers->top->size &&
        !layers->base->driver->grow) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "commit: %s: cannot grow a %s image to the size of %s",
                    layers->base->filename,
                    layers->base->driver->format_name,
                    layers->top->filename);
        return false;
    }
    return true;
}

/* Reopen base read-write and grow it to top's size.  Drains; on error
 * base is read-only again. */
static bool prepare_base(struct disk *disk, struct commit_layers *layers,
                         GError **errp)
{
    struct block_node *base = layers->base;
    bool ok;

    disk_drain_begin(disk);
    ok = block_node_reopen(base, false, errp);
    if (ok && !named_bitmaps_mark_layer_in_use(base, errp)) {
        (void)block_node_reopen(base, true, NULL);
        ok = false;
    }
    if (ok && base->size < layers->top->size) {
        ok = base->driver->grow(base, layers->top->size, errp);
        if (!ok) {
            (void)block_node_reopen(base, true, NULL);
        }
    }
    disk_drain_end(disk);
    return ok;
}

/* Undo prepare_base (the growth stays: it changes nothing visible). */
static void release_base(struct disk *disk, struct block_node *base)
{
    disk_drain_begin(disk);
    (void)block_node_reopen(base, true, NULL);
    disk_drain_end(disk);
}

struct job *commit_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
{
    struct commit_layers layers;

    g_assert(cmd->verb == COMMAND_COMMIT);
    /* Checked again by job_create, but before base is touched. */
    struct job *existing = job_list_lookup(list, cmd->id, NULL);
    if (existing) {
        job_unref(existing);
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    cmd->id);
        return NULL;
    }
    pthread_rwlock_rdlock(&disk->io_lock);
    struct block_node *active = disk->top;
    pthread_rwlock_unlock(&disk->io_lock);
    if (!commit_check(disk, active, cmd, &layers, errp) ||
        !prepare_base(disk, &layers, errp)) {
        return NULL;
    }

    struct job *job;
    if (!layers.overlay) {
        job = mirror_start_commit(list, disk, cmd, layers.base, errp);
        if (!job) {
            release_base(disk, layers.base);
        }
        return job;
    }
    job = job_create(list, &commit_driver, cmd->id, disk->name, errp);
    if (!job) {
        release_base(disk, layers.base);
        return NULL;
    }
    struct commit_job *c = commit_of(job);
    c->disk = disk;
    c->overlay = layers.overlay;
    c->top = layers.top;
    c->base = layers.base;
    c->backing_file = g_strdup(cmd->backing_file);
    c->on_error = cmd->on_error;
    c->base_zero_flags = layers.base->backing ? 0 : BLOCK_ZERO_UNMAP;
    c->zero_align = sparse_copy_align(layers.base);
    job_set_speed(job, cmd->speed, NULL);
    job_start(job);
    return job;
}
