/* chainfs: named bitmaps in the image (see named-bitmap.h).
 *
 * The image always holds the whole persistent set: every change that adds
 * or removes a persistent bitmap stores the new set in one crash-atomic
 * step (the driver's bitmaps_store), so there is no partial state to
 * recover.  Bits are written only at a clean close; until then the image
 * says "in use", which is what makes a crash visible instead of silently
 * wrong.  Moves to a new active layer store first and remove second, so a
 * crash leaves each bitmap in one layer or both.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/dirty-bitmap.h"
#include "core/named-bitmap-internal.h"

/* Store the persistent bitmaps of the set in node, except `without`
 * (NULL: none).  clean: with their bits and the in-use mark cleared
 * (inconsistent ones stay marked); else all marked in use. */
bool named_store_locked(struct named_bitmap_set *set, struct block_node *node,
                        const struct named_bitmap *without, bool clean,
                        GError **errp)
{
    g_autoptr(GArray) entries =
        g_array_new(false, true, sizeof(struct block_bitmap_entry));

    for (guint i = 0; i < set->bitmaps->len; i++) {
        const struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

        if (b == without || !b->persistent) {
            continue;
        }
        struct block_bitmap_entry entry = {
            .name = b->name,
            .granularity = dirty_bitmap_granularity(b->bits),
            .enabled = b->enabled,
            .in_use = !clean || b->inconsistent,
            .bits = b->bits,
        };
        g_array_append_val(entries, entry);
    }
    if (!node->driver->bitmaps_store) {
        if (entries->len == 0) {
            return true;
        }
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: %s images cannot hold bitmaps", node->filename,
                    node->driver->format_name);
        return false;
    }
    return node->driver->bitmaps_store(
        node, (const struct block_bitmap_entry *)(void *)entries->data,
        entries->len, errp);
}

bool named_has_persistent_locked(struct named_bitmap_set *set)
{
    for (guint i = 0; i < set->bitmaps->len; i++) {
        struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

        if (b->persistent) {
            return true;
        }
    }
    return false;
}

/* Add the bitmaps that node stores as the set's, inconsistent ones as
 * such; skip names the set has.  Returns false only when listing fails. */
bool named_adopt_stored_locked(struct disk *disk, struct block_node *node,
                               bool read_bits, GError **errp)
{
    g_autoptr(GPtrArray) infos = node->driver->bitmaps_list(node, errp);

    if (!infos) {
        return false;
    }
    for (guint i = 0; i < infos->len; i++) {
        const struct block_bitmap_info *info = g_ptr_array_index(infos, i);
        GError *error = NULL;

        if (named_find_locked(disk->named_bitmaps, info->name)) {
            continue;
        }
        struct named_bitmap *b = named_append_locked(disk, info->name,
                                               info->granularity);
        b->persistent = true;
        b->enabled = info->enabled;
        b->inconsistent = info->in_use || !read_bits;
        if (!b->inconsistent &&
            !node->driver->bitmap_read(node, info->name, b->bits, &error)) {
            g_warning("bitmap '%s' of disk '%s' loads as inconsistent: %s",
                      info->name, disk->name, error->message);
            g_error_free(error);
            dirty_bitmap_reset_all(b->bits);
            b->inconsistent = true;
        }
        named_update_attachment(disk, b);
        named_announce_added_locked(disk, b->name);
    }
    return true;
}

/* ---- loading ---- */

bool named_bitmaps_load(struct disk *disk, GError **errp)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    struct block_node *top;
    bool ok = true;

    pthread_rwlock_rdlock(&disk->io_lock);
    pthread_mutex_lock(&set->lock);
    top = disk->top;
    if (top->driver->bitmaps_list) {
        ok = named_adopt_stored_locked(disk, top, true, errp);
        /* From now on the image says "in use" until a clean close. */
        if (ok && !disk->read_only && named_has_persistent_locked(set)) {
            ok = named_store_locked(set, top, NULL, false, errp);
        }
    }
    if (!ok) {
        /* The mount fails: the close that follows must store nothing. */
        for (guint i = 0; i < set->bitmaps->len; i++) {
            struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

            b->enabled = false;
            named_update_attachment(disk, b);
        }
        g_ptr_array_set_size(set->bitmaps, 0);
    }
    pthread_mutex_unlock(&set->lock);
    pthread_rwlock_unlock(&disk->io_lock);
    return ok;
}

/* ---- the active layer changes, the disk closes ---- */

/* Make the set's persistent bitmaps new_top's, keeping what new_top
 * already stores under other names as inconsistent bitmaps of the disk
 * (they missed the writes the job made).  False with errp set when
 * new_top cannot hold them. */
static bool store_in_new_top_locked(struct disk *disk,
                                    struct block_node *new_top, GError **errp)
{
    if (new_top->read_only || !new_top->driver->bitmaps_supported) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP, "%s: %s%s cannot hold "
                    "bitmaps", new_top->filename,
                    new_top->read_only ? "a read-only " : "",
                    new_top->driver->format_name);
        return false;
    }
    if (!new_top->driver->bitmaps_supported(new_top, errp) ||
        !named_adopt_stored_locked(disk, new_top, false, errp)) {
        return false;
    }
    return !named_has_persistent_locked(disk->named_bitmaps) ||
           named_store_locked(disk->named_bitmaps, new_top, NULL, false,
                        errp);
}

void named_bitmaps_move_drained(struct disk *disk, struct block_node *old_top,
                                struct block_node *new_top)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    GError *error = NULL;
    bool had_persistent;

    if (new_top == old_top || disk->read_only) {
        return;
    }
    pthread_mutex_lock(&set->lock);
    had_persistent = named_has_persistent_locked(set);
    if (!store_in_new_top_locked(disk, new_top, &error)) {
        for (guint i = 0; i < set->bitmaps->len; i++) {
            struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

            if (b->persistent) {
                b->persistent = false;
                named_event_locked(disk, "BITMAP_NOT_PERSISTENT", b->name,
                             "reason", error->message);
            }
        }
        g_clear_error(&error);
    }
    /* Only once they are safe in new_top (or could not be). */
    if (had_persistent && !old_top->read_only &&
        old_top->driver->bitmaps_store &&
        !old_top->driver->bitmaps_store(old_top, NULL, 0, &error)) {
        g_warning("disk '%s': removing the bitmaps from %s: %s", disk->name,
                  old_top->filename, error->message);
        g_clear_error(&error);
    }
    pthread_mutex_unlock(&set->lock);
}

bool named_bitmaps_mark_layer_in_use(struct block_node *node, GError **errp)
{
    g_autoptr(GPtrArray) infos = NULL;
    g_autoptr(GArray) entries = NULL;
    bool all_in_use = true;

    if (!node->driver->bitmaps_list) {
        return true;
    }
    infos = node->driver->bitmaps_list(node, errp);
    if (!infos) {
        return false;
    }
    entries = g_array_new(false, true, sizeof(struct block_bitmap_entry));
    for (guint i = 0; i < infos->len; i++) {
        const struct block_bitmap_info *info = g_ptr_array_index(infos, i);
        struct block_bitmap_entry entry = {
            .name = info->name,
            .granularity = info->granularity,
            .enabled = info->enabled,
            .in_use = true,
        };

        all_in_use &= info->in_use;
        g_array_append_val(entries, entry);
    }
    return all_in_use ||
           node->driver->bitmaps_store(
               node, (const struct block_bitmap_entry *)(void *)entries->data,
               entries->len, errp);
}

int named_bitmaps_close(struct disk *disk)
{
    struct named_bitmap_set *set = disk->named_bitmaps;
    GError *error = NULL;
    int ret = 0;

    pthread_mutex_lock(&set->lock);
    if (!disk->read_only && named_has_persistent_locked(set) &&
        !named_store_locked(set, disk->top, NULL, true, &error)) {
        g_warning("disk '%s': storing the bitmaps: %s", disk->name,
                  error->message);
        ret = -error->code;
        g_error_free(error);
    }
    for (guint i = 0; i < set->bitmaps->len; i++) {
        struct named_bitmap *b = g_ptr_array_index(set->bitmaps, i);

        b->enabled = false;
        named_update_attachment(disk, b);
    }
    pthread_mutex_unlock(&set->lock);
    return ret;
}
