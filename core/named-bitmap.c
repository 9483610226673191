/* chainfs: the named dirty bitmaps of a disk (see named-bitmap.h): the
 * set, the commands, reading, and the bitmaps jobs use.  What reaches the
 * image lives in named-bitmap-persist.c.
 */
#include "core/named-bitmap.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "core/dirty-bitmap.h"
#include "core/named-bitmap-internal.h"

/* Default granularity: the active layer's cluster size clamped to this
 * range, else the upper bound (QEMU's rule). */
#define DEFAULT_GRANULARITY_MIN 4096u
#define DEFAULT_GRANULARITY_MAX 65536u

static void named_bitmap_free(gpointer data)
{
    struct named_bitmap *b = data;

    dirty_bitmap_free(b->bits);
    g_free(b->busy_job);
    g_free(b->name);
    g_free(b);
}

struct named_bitmap_set *named_bitmap_set_new(void)
{
    struct named_bitmap_set *set = g_new0(struct named_bitmap_set, 1);

    pthread_mutex_init(&set->lock, NULL);
    set->bitmaps = g_ptr_array_new_with_free_func(named_bitmap_free);
    return set;
}

void named_bitmap_set_free(struct named_bitmap_set *set)
{
    if (set) {
        g_ptr_array_unref(set->bitmaps);
        pthread_mutex_destroy(&set->lock);
        g_free(set);
    }
}

void named_bitmaps_set_events(struct disk *disk, struct event_log *events)
{
    disk->named_bitmaps->events = events;
}

void named_bitmaps_set_listener(struct disk *disk,
                                const struct named_bitmap_listener *listener)
{
    disk->named_bitmaps->listener = *listener;
}

/* ---- helpers; the set's lock is held ---- */

struct named_bitmap *named_find_locked(struct named_bitmap_set *set,
                                       const char *name)
{
    for (guint i = 0; i < set->bitmaps->len; i++) {
        struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

        if (strcmp(b->name, name) == 0) {
            return b;
        }
    }
    return NULL;
}

/* The bitmap called name, or ENOENT. */
static struct named_bitmap *lookup_locked(struct disk *disk, const char *verb,
                                          const char *name, GError **errp)
{
    struct named_bitmap *b = named_find_locked(disk->named_bitmaps, name);

    if (!b) {
        g_set_error(errp, CHAINFS_ERROR, ENOENT,
                    "%s: disk '%s' has no bitmap '%s'", verb, disk->name,
                    name);
    }
    return b;
}

/* A bitmap a command may change: not used by a job, not inconsistent. */
static bool check_changeable(struct disk *disk, const char *verb,
                             struct named_bitmap *b, GError **errp)
{
    if (b->busy_job) {
        g_set_error(errp, CHAINFS_ERROR, EBUSY,
                    "%s: bitmap '%s' of disk '%s' is in use by job '%s'",
                    verb, b->name, disk->name, b->busy_job);
        return false;
    }
    if (b->inconsistent) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: bitmap '%s' of disk '%s' is inconsistent (its "
                    "writer died); only bitmap-remove works on it", verb,
                    b->name, disk->name);
        return false;
    }
    return true;
}

/* Attach or detach as the flags now say. */
void named_update_attachment(struct disk *disk, struct named_bitmap *b)
{
    bool recording = b->enabled && !b->inconsistent;

    if (recording && !b->attached) {
        disk_attach_bitmap(disk, b->bits);
    } else if (!recording && b->attached) {
        disk_detach_bitmap(disk, b->bits);
    }
    b->attached = recording;
}

void named_event_locked(struct disk *disk, const char *event, const char *name,
                        const char *extra_key, const char *extra_value)
{
    struct event_log *events = disk->named_bitmaps->events;

    if (events) {
        event_log_append(events, event, "disk", disk->name, "name", name,
                         extra_key, extra_value, NULL);
    }
}

/* A bitmap of the disk's size (top's), added to the set. */
struct named_bitmap *named_append_locked(struct disk *disk, const char *name,
                                         uint32_t granularity)
{
    struct named_bitmap *b = g_new0(struct named_bitmap, 1);

    b->name = g_strdup(name);
    b->bits = dirty_bitmap_new(disk->top->size, granularity);
    g_ptr_array_add(disk->named_bitmaps->bitmaps, b);
    return b;
}

void named_announce_added_locked(struct disk *disk, const char *name)
{
    struct named_bitmap_listener *listener = &disk->named_bitmaps->listener;

    if (listener->added) {
        listener->added(listener->opaque, disk, name);
    }
}

/* ---- the commands ---- */

/* A qcow2 top's cluster size clamped, else the upper bound. */
static uint32_t default_granularity(struct block_node *top)
{
    if (!top->cluster_size) {
        return DEFAULT_GRANULARITY_MAX;
    }
    return MIN(MAX(top->cluster_size, DEFAULT_GRANULARITY_MIN),
               DEFAULT_GRANULARITY_MAX);
}

/* Whether the active layer can store a new persistent bitmap. */
static bool check_can_persist(struct disk *disk, GError **errp)
{
    struct block_node *top = disk->top;
    GError *error = NULL;

    if (disk->read_only) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "bitmap-add: persistent=on: disk '%s' is read-only",
                    disk->name);
        return false;
    }
    if (!top->driver->bitmaps_supported) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "bitmap-add: persistent=on: the active layer %s of disk "
                    "'%s' is %s, not qcow2 version 3", top->filename,
                    disk->name, top->driver->format_name);
        return false;
    }
    if (!top->driver->bitmaps_supported(top, &error)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "bitmap-add: persistent=on: %s", error->message);
        g_error_free(error);
        return false;
    }
    return true;
}

static bool add_locked(struct disk *disk, const char *name,
                       uint64_t granularity, bool persistent, bool disabled,
                       GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b;

    if (strchr(name, '@')) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "bitmap-add: name: '%s': '@' is only for the bitmaps "
                    "that fleece makes", name);
        return false;
    }
    if (named_find_locked(set, name)) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST,
                    "bitmap-add: disk '%s' already has a bitmap '%s'",
                    disk->name, name);
        return false;
    }
    if (set->bitmaps->len >= NAMED_BITMAP_MAX) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "bitmap-add: disk '%s' has %d bitmaps, the most it may "
                    "have", disk->name, NAMED_BITMAP_MAX);
        return false;
    }
    if (persistent && !check_can_persist(disk, errp)) {
        return false;
    }
    if (!granularity) {
        granularity = default_granularity(disk->top);
    }
    b = named_append_locked(disk, name, granularity);
    b->persistent = persistent;
    b->enabled = !disabled;
    if (persistent && !named_store_locked(set, disk->top, NULL, false, errp)) {
        g_ptr_array_remove(set->bitmaps, b);
        return false;
    }
    named_update_attachment(disk, b);
    named_announce_added_locked(disk, name);
    named_event_locked(disk, "BITMAP_ADDED", name, NULL, NULL);
    return true;
}

bool named_bitmap_add(struct disk *disk, const char *name,
                      uint64_t granularity, bool persistent, bool disabled,
                      GError **errp)
{
    bool ok;

    pthread_rwlock_rdlock(&disk->io_lock);
    pthread_mutex_lock(&disk->named_bitmaps->lock);
    ok = add_locked(disk, name, granularity, persistent, disabled, errp);
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    pthread_rwlock_unlock(&disk->io_lock);
    return ok;
}

static bool remove_locked(struct disk *disk, const char *name, GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b = lookup_locked(disk, "bitmap-remove", name, errp);

    if (!b) {
        return false;
    }
    if (b->busy_job) {
        g_set_error(errp, CHAINFS_ERROR, EBUSY,
                    "bitmap-remove: bitmap '%s' of disk '%s' is in use by "
                    "job '%s'", name, disk->name, b->busy_job);
        return false;
    }
    if (b->persistent && disk->read_only) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "bitmap-remove: disk '%s' is read-only: its image keeps "
                    "bitmap '%s'", disk->name, name);
        return false;
    }
    if (b->persistent && !named_store_locked(set, disk->top, b, false, errp)) {
        return false;
    }
    b->enabled = false;
    named_update_attachment(disk, b);
    if (set->listener.removed) {
        set->listener.removed(set->listener.opaque, disk, name);
    }
    named_event_locked(disk, "BITMAP_REMOVED", name, NULL, NULL);
    g_ptr_array_remove(set->bitmaps, b);
    return true;
}

bool named_bitmap_remove(struct disk *disk, const char *name, GError **errp)
{
    bool ok;

    pthread_rwlock_rdlock(&disk->io_lock);
    pthread_mutex_lock(&disk->named_bitmaps->lock);
    ok = remove_locked(disk, name, errp);
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    pthread_rwlock_unlock(&disk->io_lock);
    return ok;
}

bool named_bitmap_clear(struct disk *disk, const char *name, GError **errp)
{
    struct named_bitmap *b;
    bool ok = false;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    b = lookup_locked(disk, "bitmap-clear", name, errp);
    if (b && check_changeable(disk, "bitmap-clear", b, errp)) {
        dirty_bitmap_reset_all(b->bits);
        named_event_locked(disk, "BITMAP_CLEARED", name, NULL, NULL);
        ok = true;
    }
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    return ok;
}

bool named_bitmap_enable(struct disk *disk, const char *name, bool enable,
                         GError **errp)
{
    const char *verb = enable ? "bitmap-enable" : "bitmap-disable";
    struct named_bitmap *b;
    bool ok = false;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    b = lookup_locked(disk, verb, name, errp);
    if (b && check_changeable(disk, verb, b, errp)) {
        b->enabled = enable;
        named_update_attachment(disk, b);
        named_event_locked(disk, enable ? "BITMAP_ENABLED" : "BITMAP_DISABLED",
                     name, NULL, NULL);
        ok = true;
    }
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    return ok;
}

static bool merge_locked(struct disk *disk, const char *name,
                         const char *const *from, GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *dst = lookup_locked(disk, "bitmap-merge", name, errp);
    g_autoptr(GPtrArray) sources = g_ptr_array_new();

    if (!dst || !check_changeable(disk, "bitmap-merge", dst, errp)) {
        return false;
    }
    /* Every source is checked before anything is merged. */
    for (unsigned i = 0; from[i]; i++) {
        struct named_bitmap *src = named_find_locked(set, from[i]);

        if (!src) {
            g_set_error(errp, CHAINFS_ERROR, ENOENT,
                        "bitmap-merge: from: disk '%s' has no bitmap '%s'",
                        disk->name, from[i]);
            return false;
        }
        if (src->inconsistent) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "bitmap-merge: from: bitmap '%s' of disk '%s' is "
                        "inconsistent (its writer died)", from[i],
                        disk->name);
            return false;
        }
        g_ptr_array_add(sources, src);
    }
    for (guint i = 0; i < sources->len; i++) {
        struct named_bitmap *src = g_ptr_array_index(sources, i);

        if (src != dst) {
            dirty_bitmap_merge(dst->bits, src->bits);
        }
    }
    g_autofree char *list = g_strjoinv(",", (char **)from);
    named_event_locked(disk, "BITMAP_MERGED", name, "from", list);
    return true;
}

bool named_bitmap_merge(struct disk *disk, const char *name,
                        const char *const *from, GError **errp)
{
    bool ok;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    ok = merge_locked(disk, name, from, errp);
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    return ok;
}

/* ---- reading ---- */

char **named_bitmap_names(struct disk *disk)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    GStrvBuilder *builder = g_strv_builder_new();
    char **names;

    pthread_mutex_lock(&set->lock);
    for (guint i = 0; i < set->bitmaps->len; i++) {
        struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

        g_strv_builder_add(builder, b->name);
    }
    pthread_mutex_unlock(&set->lock);
    names = g_strv_builder_end(builder);
    g_strv_builder_unref(builder);
    return names;
}

char *named_bitmap_status(struct disk *disk, const char *name)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b;
    char *text = NULL;

    pthread_mutex_lock(&set->lock);
    b = named_find_locked(set, name);
    if (b) {
        text = g_strdup_printf(
            "name: %s\ngranularity: %" PRIu32 "\ncount: %" PRIu64 "\n"
            "recording: %s\npersistent: %s\nbusy: %s\ninconsistent: %s\n",
            b->name, dirty_bitmap_granularity(b->bits),
            b->inconsistent ? 0 : dirty_bitmap_count(b->bits),
            b->attached ? "yes" : "no", b->persistent ? "yes" : "no",
            b->busy_job ? "yes" : "no", b->inconsistent ? "yes" : "no");
    }
    pthread_mutex_unlock(&set->lock);
    return text;
}

static bool append_extent(void *opaque, uint64_t offset, uint64_t len)
{
    g_string_append_printf(opaque, "%" PRIu64 " %" PRIu64 "\n", offset, len);
    return true;
}

int named_bitmap_extents(struct disk *disk, const char *name, char **text)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b;
    int ret = 0;

    *text = NULL;
    pthread_mutex_lock(&set->lock);
    b = named_find_locked(set, name);
    if (!b) {
        ret = -ENOENT;
    } else if (b->inconsistent) {
        ret = -EIO;
    } else {
        GString *out = g_string_new(NULL);

        /* One walk under the bitmap's lock: one state, even under
         * writers (they wait for the walk). */
        dirty_bitmap_for_each_run(b->bits, append_extent, out);
        *text = g_string_free(out, false);
    }
    pthread_mutex_unlock(&set->lock);
    return ret;
}

/* ---- jobs ---- */

struct dirty_bitmap *named_bitmap_acquire(struct disk *disk, const char *name,
                                          const char *job_id, GError **errp)
{
    struct named_bitmap *b;
    struct dirty_bitmap *bits = NULL;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    b = lookup_locked(disk, "bitmap", name, errp);
    if (b && check_changeable(disk, "bitmap", b, errp)) {
        b->busy_job = g_strdup(job_id);
        bits = b->bits;
    }
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    return bits;
}

void named_bitmap_release(struct disk *disk, const char *name)
{
    struct named_bitmap *b;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    b = named_find_locked(disk->named_bitmaps, name);
    if (b) {
        g_clear_pointer(&b->busy_job, g_free);
    }
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
}

/* ---- fleece: the bits up to an instant ---- */

/* Whether B can be snapshotted as B@SNAP; the set's lock is held. */
static bool check_snapshot_locked(struct disk *disk, const char *name,
                                  const char *snapshot_name, GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b = lookup_locked(disk, "fleece: bitmap", name,
                                           errp);

    if (!b || !check_changeable(disk, "fleece: bitmap", b, errp)) {
        return false;
    }
    if (named_find_locked(set, snapshot_name)) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST,
                    "fleece: bitmap: disk '%s' already has a bitmap '%s'",
                    disk->name, snapshot_name);
        return false;
    }
    if (strlen(snapshot_name) > NAMED_BITMAP_MAX_NAME) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "fleece: bitmap: '%s' is longer than %d bytes",
                    snapshot_name, NAMED_BITMAP_MAX_NAME);
        return false;
    }
    if (set->bitmaps->len >= NAMED_BITMAP_MAX) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "fleece: bitmap: disk '%s' has %d bitmaps, the most it "
                    "may have (no room for '%s')", disk->name,
                    NAMED_BITMAP_MAX, snapshot_name);
        return false;
    }
    if (b->persistent && !check_can_persist(disk, errp)) {
        g_prefix_error(errp, "fleece: bitmap '%s': ", snapshot_name);
        return false;
    }
    return true;
}

bool named_bitmap_check_snapshot(struct disk *disk, const char *name,
                                 const char *snapshot_name, GError **errp)
{
    bool ok;

    pthread_mutex_lock(&disk->named_bitmaps->lock);
    ok = check_snapshot_locked(disk, name, snapshot_name, errp);
    pthread_mutex_unlock(&disk->named_bitmaps->lock);
    return ok;
}

bool named_bitmap_snapshot_drained(struct disk *disk, const char *name,
                                   const char *snapshot_name, GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct named_bitmap *b, *snap;
    bool ok = false;

    pthread_mutex_lock(&set->lock);
    if (!check_snapshot_locked(disk, name, snapshot_name, errp)) {
        goto out;
    }
    b = named_find_locked(set, name);
    snap = named_append_locked(disk, snapshot_name,
                         dirty_bitmap_granularity(b->bits));
    snap->persistent = b->persistent;
    snap->enabled = false;
    /* Drained: no write marks B between the copy and the clear. */
    dirty_bitmap_merge(snap->bits, b->bits);
    if (snap->persistent &&
        !named_store_locked(set, disk->top, NULL, false, errp)) {
        g_ptr_array_remove(set->bitmaps, snap);
        goto out;
    }
    dirty_bitmap_reset_all(b->bits);
    named_announce_added_locked(disk, snapshot_name);
    named_event_locked(disk, "BITMAP_ADDED", snapshot_name, "from", name);
    ok = true;
out:
    pthread_mutex_unlock(&set->lock);
    return ok;
}

