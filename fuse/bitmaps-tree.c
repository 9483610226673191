/* chainfs: the files of the .bitmaps directory (see bitmaps-tree.h). */
#include "bitmaps-tree.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/named-bitmap.h"

struct bitmaps_tree {
    struct tree *tree;
    struct tree_node *bitmaps_dir;
    /* struct bitmap_entry *: every bitmap directory ever made, freed last
     * because the kernel may use a removed node until the end. */
    pthread_mutex_t entries_lock;
    GPtrArray *entries;
};

/* What the nodes of .bitmaps/NAME/BITMAP/ point to. */
struct bitmap_entry {
    struct disk *disk;
    char *name;
    struct tree_node *dir;
};

static char *render_status(struct tree_node *node)
{
    struct bitmap_entry *entry = node->data;
    char *text = named_bitmap_status(entry->disk, entry->name);

    /* A removed bitmap's files may still be open: they read as empty. */
    return text ? text : g_strdup("");
}

static int extents_readable(struct tree_node *node)
{
    struct bitmap_entry *entry = node->data;
    g_autofree char *text = NULL;
    int ret = named_bitmap_extents(entry->disk, entry->name, &text);

    return ret == -ENOENT ? 0 : ret;
}

static char *render_extents(struct tree_node *node)
{
    struct bitmap_entry *entry = node->data;
    char *text = NULL;

    named_bitmap_extents(entry->disk, entry->name, &text);
    return text ? text : g_strdup("");
}

static const struct tree_text_ops status_ops = { .render = render_status };
static const struct tree_text_ops extents_ops = {
    .render = render_extents,
    .readable = extents_readable,
};

static void bitmap_added(void *opaque, struct disk *disk, const char *name)
{
    struct bitmaps_tree *bt = opaque;
    struct tree_node *disk_dir = tree_lookup(bt->tree, bt->bitmaps_dir,
                                             disk->name);
    struct bitmap_entry *entry;

    /* Names loaded from an image that are no file name are not shown. */
    if (!disk_dir || strchr(name, '/') || !strcmp(name, ".") ||
        !strcmp(name, "..")) {
        return;
    }
    entry = g_new0(struct bitmap_entry, 1);
    entry->disk = disk;
    entry->name = g_strdup(name);
    entry->dir = tree_add(bt->tree, disk_dir, name, TREE_NODE_DIR, 0755, 0.0,
                          entry);
    if (entry->dir) {
        tree_add_text(bt->tree, entry->dir, "status", 0644, &status_ops,
                      entry);
        tree_add_text(bt->tree, entry->dir, "extents", 0644, &extents_ops,
                      entry);
    }
    pthread_mutex_lock(&bt->entries_lock);
    g_ptr_array_add(bt->entries, entry);
    pthread_mutex_unlock(&bt->entries_lock);
}

static void bitmap_removed(void *opaque, struct disk *disk, const char *name)
{
    struct bitmaps_tree *bt = opaque;

    pthread_mutex_lock(&bt->entries_lock);
    /* The newest entry of that name is the live one. */
    for (guint i = bt->entries->len; i-- > 0;) {
        struct bitmap_entry *entry = g_ptr_array_index(bt->entries, i);

        if (entry->disk == disk && strcmp(entry->name, name) == 0) {
            if (entry->dir) {
                tree_remove(bt->tree, entry->dir);
            }
            break;
        }
    }
    pthread_mutex_unlock(&bt->entries_lock);
}

static void bitmap_entry_free(gpointer data)
{
    struct bitmap_entry *entry = data;

    g_free(entry->name);
    g_free(entry);
}

struct bitmaps_tree *bitmaps_tree_new(struct tree *tree,
                                      struct tree_node *bitmaps_dir,
                                      GPtrArray *disks)
{
    struct bitmaps_tree *bt = g_new0(struct bitmaps_tree, 1);
    struct named_bitmap_listener listener = {
        .added = bitmap_added,
        .removed = bitmap_removed,
        .opaque = bt,
    };

    bt->tree = tree;
    bt->bitmaps_dir = bitmaps_dir;
    pthread_mutex_init(&bt->entries_lock, NULL);
    bt->entries = g_ptr_array_new_with_free_func(bitmap_entry_free);
    for (guint i = 0; i < disks->len; i++) {
        struct disk *disk = g_ptr_array_index(disks, i);
        g_auto(GStrv) names = NULL;

        tree_add(tree, bitmaps_dir, disk->name, TREE_NODE_DIR, 0755, 0.0,
                 NULL);
        /* Before the mount: nothing adds or removes bitmaps meanwhile. */
        names = named_bitmap_names(disk);
        for (unsigned j = 0; names[j]; j++) {
            bitmap_added(bt, disk, names[j]);
        }
        named_bitmaps_set_listener(disk, &listener);
    }
    return bt;
}

void bitmaps_tree_free(struct bitmaps_tree *bitmaps_tree)
{
    if (bitmaps_tree) {
        g_ptr_array_unref(bitmaps_tree->entries);
        pthread_mutex_destroy(&bitmaps_tree->entries_lock);
        g_free(bitmaps_tree);
    }
}
