/* chainfs: operation blockers (INTERFACE.md section 4, "blockers").
 *
 * While a job runs, the disk it works on and the files it uses are held
 * by a blocker: another command that would change that disk's chain, or
 * that would write to one of those files, fails with EBUSY naming the
 * job.  Files are compared by (st_dev, st_ino), so any spelling of a path
 * (symlinks, "..", hard links) finds them.  A blocker is released when its
 * job concludes (job.c), so a concluded job blocks nothing even before it
 * is dismissed.  Guest I/O never looks at blockers.
 *
 * Thread-safety: every function on a blocker set takes the set's mutex
 * itself; a blocker under construction belongs to its builder alone.
 * Checking and installing are separate calls, so callers that must not
 * race each other (the control plane) serialize their commands.
 */
#ifndef CHAINFS_BLOCKER_H
#define CHAINFS_BLOCKER_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

struct block_node;
struct blocker_set;
struct op_blocker;

/* How a blocker uses a file. */
enum blocker_use {
    BLOCKER_USE_READ,   /* a source layer: read; others may read it too */
    BLOCKER_USE_WRITE,  /* a target: written; nobody else may use it */
};

/* A set of active blockers (one per daemon). */
struct blocker_set *blocker_set_new(void);
/* Free the set; every blocker must have been released. */
void blocker_set_free(struct blocker_set *set);

/* A new blocker held by `owner` (a job id) on disk_name (NULL: no disk),
 * not yet installed. */
struct op_blocker *op_blocker_new(const char *owner, const char *disk_name)
    __attribute__((nonnull(1)));
/* Add a file, by identity. */
void op_blocker_add_file(struct op_blocker *blocker, dev_t dev, ino_t ino,
                         enum blocker_use use) __attribute__((nonnull));
/* Add every layer of the chain under top, for reading.  Returns false
 * (errp set) if a layer cannot be fstat'ed. */
bool op_blocker_add_chain(struct op_blocker *blocker, struct block_node *top,
                          GError **errp) __attribute__((nonnull(1, 2)));
/* Make the blocker active in set.  It no longer belongs to the caller
 * but to whoever releases it (op_blocker_release). */
void op_blocker_install(struct blocker_set *set, struct op_blocker *blocker)
    __attribute__((nonnull));
/* Remove an installed blocker from its set and free it; frees a blocker
 * never installed too.  NULL is fine. */
void op_blocker_release(struct op_blocker *blocker);

/* EBUSY "disk 'NAME' is in use by job 'ID'" if a blocker holds the disk. */
bool blocker_check_disk(struct blocker_set *set, const char *disk_name,
                        GError **errp) __attribute__((nonnull(1, 2)));
/* EBUSY "PATH is in use by job 'ID'" if a blocker uses the file (dev, ino)
 * in a way that conflicts with `use` (reading conflicts with writing). */
bool blocker_check_file(struct blocker_set *set, dev_t dev, ino_t ino,
                        const char *path, enum blocker_use use,
                        GError **errp) __attribute__((nonnull(1, 4)));

#endif
