/* chainfs: what named-bitmap.c and named-bitmap-persist.c share.  Every
 * function here needs the set's lock (see named-bitmap.h). */
#ifndef CHAINFS_NAMED_BITMAP_INTERNAL_H
#define CHAINFS_NAMED_BITMAP_INTERNAL_H

#include <pthread.h>

#include "core/named-bitmap.h"

struct named_bitmap {
    char *name;
    struct dirty_bitmap *bits;  /* the disk's size; never NULL */
    bool enabled;       /* records when consistent (qcow2's auto flag) */
    bool persistent;    /* stored in the active layer */
    bool inconsistent;  /* found in use: records nothing, cannot be read */
    bool attached;      /* marked by every write (disk_attach_bitmap) */
    char *busy_job;     /* the job using it, or NULL */
};

struct named_bitmap_set {
    pthread_mutex_t lock;
    GPtrArray *bitmaps;         /* struct named_bitmap *, owned */
    struct event_log *events;   /* not owned; may be NULL */
    struct named_bitmap_listener listener;
};

/* The bitmap called name, or NULL. */
struct named_bitmap *named_find_locked(struct named_bitmap_set *set,
                                 const char *name);
/* Attach or detach as the flags now say. */
void named_update_attachment(struct disk *disk, struct named_bitmap *b);
/* Append a BITMAP_* event with disk= and name= (and one more field when
 * extra_key is not NULL). */
void named_event_locked(struct disk *disk, const char *event, const char *name,
                  const char *extra_key, const char *extra_value);
/* A new bitmap of the disk's size (top's), added to the set. */
struct named_bitmap *named_append_locked(struct disk *disk, const char *name,
                                   uint32_t granularity);
/* Tell the listener about a new bitmap. */
void named_announce_added_locked(struct disk *disk, const char *name);

/* ---- named-bitmap-persist.c ---- */

/* Store the persistent bitmaps of the set in node, except `without`
 * (NULL: none).  clean: with their bits and the in-use mark cleared
 * (inconsistent ones stay marked); else all marked in use. */
bool named_store_locked(struct named_bitmap_set *set, struct block_node *node,
                  const struct named_bitmap *without, bool clean,
                  GError **errp);
/* Whether any bitmap of the set is persistent. */
bool named_has_persistent_locked(struct named_bitmap_set *set);
/* Add the bitmaps that node stores as the set's (inconsistent ones as
 * such, all of them when !read_bits); skip names the set has.  False only
 * when listing fails. */
bool named_adopt_stored_locked(struct disk *disk, struct block_node *node,
                         bool read_bits, GError **errp);

#endif
