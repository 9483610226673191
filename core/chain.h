/* chainfs: opening and closing image chains.
 *
 * A chain is opened from its top file downwards: each layer's backing file
 * is resolved as QEMU resolves it (relative to the directory of the image
 * that names it), its format taken from the header (qcow2's backing format
 * extension) and probed only when none is recorded.  A layer given or
 * recorded as raw is never probed.  Every layer is locked as QEMU locks it
 * (image-lock.h): the top for writing unless read-only, backing layers for
 * reading only, shared with other readers.
 */
#ifndef CHAINFS_CHAIN_H
#define CHAINFS_CHAIN_H

#include "block.h"

/* The default limit on the layers of a chain (chainfs --max-chain-depth):
 * far above what backup tools build (hourly snapshots for weeks), low
 * enough that a chain built by mistake or malice is refused before it
 * eats every file descriptor.  Nothing walks a chain recursively, so the
 * limit is not about the stack. */
#define CHAIN_DEFAULT_MAX_DEPTH 4096

/* Set the most layers (top included) that chain_open accepts; set once at
 * startup, before any chain is opened (not locked). */
void chain_set_max_depth(unsigned max_depth);
unsigned chain_max_depth(void);

/* Open one layer (not its backing chain): open and lock the file, check it
 * is a regular file or a block device, pick the driver (format NULL:
 * probe), and let the driver parse it.  A URI goes to block_node_open_uri
 * (format NULL or raw, else EINVAL).  Errors name the file. */
struct block_node *block_node_open(const char *filename, const char *format,
                                   bool read_only, GError **errp);

/* Open a remote layer (block_driver_for_uri): the driver connects to uri;
 * no file, no lock, no backing.  ENOTSUP for a scheme no driver serves;
 * errors name the URI and the reason. */
struct block_node *block_node_open_uri(const char *uri, bool read_only,
                                       GError **errp) __attribute__((nonnull(1)));

/* Turn an active layer into a backing layer in place (mirror with
 * sync=none leaves the old top under the new one): flush it, take QEMU's
 * reader locks instead of the writer's, and mark it read-only.  Errors
 * name the file; the node is unchanged on error. */
bool block_node_make_backing(struct block_node *node, GError **errp);

/* Reopen one layer read-write (read_only false) or read-only again, as
 * QEMU's commit does with its base: the fd number stays (dup3 of a new
 * open file description) so the driver's state stays valid, the image
 * locks move from QEMU's reader set to the writer's or back, and the
 * driver's reopen hook updates its state.  Going read-only flushes first.
 * Call with no I/O on the node (drained).  Errors name the file; the node
 * is unchanged on error. */
bool block_node_reopen(struct block_node *node, bool read_only,
                       GError **errp) __attribute__((nonnull(1)));

/* Whether [offset, offset + len) is allocated in a layer from top down to
 * just above base (base NULL: the whole chain), as QEMU's
 * bdrv_is_allocated_above: returns 1 (allocated) or 0 with *pnum the
 * length of the run that answers the same, or a negative errno.  A range
 * past the end of a layer below top counts as allocated: it reads as
 * zeros there whatever lies below.  offset must be below top->size. */
int chain_is_allocated_above(struct block_node *top, struct block_node *base,
                             uint64_t offset, uint64_t len, uint64_t *pnum);

/* The layer of the chain under top that is the file at path (compared by
 * st_dev and st_ino, so any spelling works), or NULL. */
struct block_node *chain_find_layer(struct block_node *top, const char *path);

/* Close one layer (not its backing chain).  Returns 0 or a negative errno
 * from the final flush. */
int block_node_close(struct block_node *node);

/* Open filename and its whole backing chain.  format NULL: probe the top.
 * A URI (block_name_is_uri) opens a remote layer with block_node_open_uri
 * (format NULL or raw). 
 * Loops, missing files, chains of more than chain_max_depth() layers,
 * backing names
 * with a protocol prefix (json:, nbd:, ...) and unsupported features are a
 * one-line error naming the file. */
struct block_node *chain_open(const char *filename, const char *format,
                              bool read_only, GError **errp);

/* Close a chain from top down.  Returns the first error, 0 if none. */
int chain_close(struct block_node *top);

/* Resolve a backing file name as QEMU does: absolute names as they are,
 * relative ones against the directory of overlay_filename.  Returns a newly
 * allocated path (not canonicalized), or NULL with errp set for names with a
 * protocol prefix. */
char *chain_resolve_backing(const char *overlay_filename,
                            const char *backing_name, GError **errp);

#endif
