/* chainfs: opening image chains, one layer at a time, top down.
 *
 * Backing names are resolved as QEMU resolves them: relative to the
 * directory of the overlay's filename as the chain spells it (the name
 * given for the top, then each resolved backing path), not its canonical
 * path.  The two differ when an overlay is reached through a symlink in
 * another directory, and QEMU follows the spelling, so images that work
 * with qemu-img work here.
 *
 * Loops are found by (st_dev, st_ino) before a layer is opened: opening a
 * file twice would make our own OFD locks conflict and hide the loop
 * behind an "in use" error.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "image-lock.h"
#include "layer-map.h"
#include "owner-map.h"

/* Probing looks at no more than this: every format's magic fits. */
#define PROBE_BYTES 512

/* The driver whose probe scores the first bytes of fd highest. */
static const struct block_driver *probe_driver(int fd, const char *filename,
                                               GError **errp)
{
    uint8_t buf[PROBE_BYTES];
    ssize_t n;

    do {
        n = pread(fd, buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot read: %s",
                    filename, g_strerror(err));
        return NULL;
    }

    const struct block_driver *best = NULL;
    int best_score = 0;
    for (unsigned i = 0; block_drivers[i]; i++) {
        if (!block_drivers[i]->probe) {
            continue;
        }
        int score = block_drivers[i]->probe(buf, n);
        if (score > best_score) {
            best = block_drivers[i];
            best_score = score;
        }
    }
    if (!best) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: unknown image format", filename);
    }
    return best;
}

/* Open filename without blocking on a FIFO or taking a controlling
 * terminal, and keep it only if it is a regular file or block device. */
static int open_image_file(const char *filename, bool read_only,
                           struct stat *st, GError **errp)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
                O_NOCTTY;
    int fd = open(filename, flags);
    if (fd < 0) {
        int err = errno;
        if (err == EISDIR) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: not a regular file or block device", filename);
        } else if (err == EMFILE) {
            struct rlimit lim = { 0 };
            (void)getrlimit(RLIMIT_NOFILE, &lim);
            g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot open: %s (the "
                        "limit is %llu open files, one per layer; raise "
                        "'ulimit -n')", filename, g_strerror(err),
                        (unsigned long long)lim.rlim_cur);
        } else {
            g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot open: %s",
                        filename, g_strerror(err));
        }
        return -1;
    }
    if (fstat(fd, st) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot stat: %s",
                    filename, g_strerror(err));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: not a regular file or block device", filename);
        close(fd);
        return -1;
    }
    /* Non-blocking was only for open(2); image I/O must block. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: fcntl: %s", filename,
                    g_strerror(err));
        close(fd);
        return -1;
    }
    return fd;
}

/* Free a node whose driver is not (or no longer) open. */
static void block_node_free(struct block_node *node)
{
    layer_map_clear(node);
    owner_map_clear(node);
    if (node->fd >= 0) {
        close(node->fd);
    }
    g_free(node->filename);
    g_free(node->backing_name);
    g_free(node->backing_format);
    g_free(node);
}

struct block_node *block_node_open_uri(const char *uri, bool read_only,
                                       GError **errp)
{
    const struct block_driver *driver = block_driver_for_uri(uri);

    if (!driver) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: unsupported protocol '%.*s'", uri,
                    (int)strcspn(uri, ":"), uri);
        return NULL;
    }
    struct block_node *node = g_new0(struct block_node, 1);
    node->fd = -1;
    node->read_only = read_only;
    node->filename = g_strdup(uri);
    node->driver = driver;
    if (!driver->open(node, errp)) {
        block_node_free(node);
        return NULL;
    }
    return node;
}

struct block_node *block_node_open(const char *filename, const char *format,
                                   bool read_only, GError **errp)
{
    struct stat st;

    if (block_name_is_uri(filename)) {
        /* No format sits on top of a remote disk: it is the raw disk. */
        if (format && strcmp(format, "raw") != 0) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: format '%s' is not supported for a URI (the "
                        "export is the raw disk)", filename, format);
            return NULL;
        }
        return block_node_open_uri(filename, read_only, errp);
    }
    int fd = open_image_file(filename, read_only, &st, errp);
    if (fd < 0) {
        return NULL;
    }

    struct block_node *node = g_new0(struct block_node, 1);
    node->fd = fd;
    node->read_only = read_only;
    node->is_block_device = S_ISBLK(st.st_mode);
    node->filename = realpath(filename, NULL);
    if (!node->filename) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot resolve path: %s",
                    filename, g_strerror(err));
        block_node_free(node);
        return NULL;
    }

    if (!image_lock(fd, node->filename,
                    read_only ? IMAGE_LOCK_READER : IMAGE_LOCK_WRITER,
                    errp)) {
        block_node_free(node);
        return NULL;
    }

    if (format) {
        node->driver = block_driver_by_name(format);
        if (!node->driver) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: unknown format '%s'", node->filename, format);
        } else if (node->driver->handles_uri) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: format '%s' needs a URI, not a file",
                        node->filename, format);
            node->driver = NULL;
        }
    } else {
        node->driver = probe_driver(fd, node->filename, errp);
    }
    if (!node->driver || !node->driver->open(node, errp)) {
        block_node_free(node);
        return NULL;
    }
    return node;
}

bool block_node_make_backing(struct block_node *node, GError **errp)
{
    if (node->read_only) {
        return true;
    }
    int ret = node->driver->flush(node);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot flush: %s",
                    node->filename, g_strerror(-ret));
        return false;
    }
    /* The fd stays open read-write: reopening would drop the locks for a
     * moment, and nothing writes through a read-only node. */
    if (!image_lock(node->fd, node->filename, IMAGE_LOCK_READER, errp)) {
        return false;
    }
    node->read_only = true;
    owner_maps_layer_changed(node);
    return true;
}

/* Drop fd's locks on the bytes that refuse permissions to others (200 +
 * bit): our own new description of the same file would otherwise conflict
 * with them, as OFD locks belong to the open file description. */
static int unlock_unshared_bytes(int fd)
{
    struct flock fl = {
        .l_type = F_UNLCK,
        .l_whence = SEEK_SET,
        .l_start = 200,
        .l_len = 100,
    };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* A new description of node's file for read_only, checked to be the same
 * file, locked as mode.  Returns the fd or -1 with errp set. */
static int open_same_file(struct block_node *node, bool read_only,
                          enum image_lock_mode mode, GError **errp)
{
    struct stat st_old, st_new;
    int fd = open(node->filename,
                  (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot reopen %s: %s",
                    node->filename, read_only ? "read-only" : "read-write",
                    g_strerror(err));
        return -1;
    }
    if (fstat(fd, &st_new) < 0 || fstat(node->fd, &st_old) < 0 ||
        st_new.st_dev != st_old.st_dev || st_new.st_ino != st_old.st_ino) {
        g_set_error(errp, CHAINFS_ERROR, ESTALE,
                    "%s: the file was replaced while open", node->filename);
        close(fd);
        return -1;
    }
    if (!image_lock(fd, node->filename, mode, errp)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Put fd's description under node->fd's number; the old description
 * closes, and its locks go with it. */
static bool replace_fd(struct block_node *node, int fd, GError **errp)
{
    if (dup3(fd, node->fd, O_CLOEXEC) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: dup3: %s", node->filename,
                    g_strerror(err));
        close(fd);
        return false;
    }
    close(fd);
    return true;
}

static bool reopen_read_write(struct block_node *node, GError **errp)
{
    /* Its allocation will change: the map of the read-only layer goes. */
    layer_map_clear(node);
    int ret = unlock_unshared_bytes(node->fd);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot unlock: %s",
                    node->filename, g_strerror(-ret));
        return false;
    }
    int fd = open_same_file(node, false, IMAGE_LOCK_WRITER, errp);
    if (fd < 0 || !replace_fd(node, fd, errp)) {
        /* Take back what we dropped; failing that, the node still works
         * and others can only gain the right to read it. */
        (void)image_lock(node->fd, node->filename, IMAGE_LOCK_READER, NULL);
        return false;
    }
    node->read_only = false;
    if (node->driver->reopen && !node->driver->reopen(node, false, errp)) {
        GError *ignored = NULL;
        if (!block_node_reopen(node, true, &ignored)) {
            g_error_free(ignored);
        }
        return false;
    }
    return true;
}

static bool reopen_read_only(struct block_node *node, GError **errp)
{
    int ret = node->driver->flush(node);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot flush: %s",
                    node->filename, g_strerror(-ret));
        return false;
    }
    if (!image_lock(node->fd, node->filename, IMAGE_LOCK_READER, errp)) {
        return false;
    }
    /* Past this point the node is a reader whatever happens: a failed
     * reopen keeps the read-write description, which nothing writes
     * through (as block_node_make_backing does). */
    node->read_only = true;
    int fd = open_same_file(node, true, IMAGE_LOCK_READER, NULL);
    if (fd >= 0) {
        (void)replace_fd(node, fd, NULL);
    }
    if (node->driver->reopen) {
        (void)node->driver->reopen(node, true, NULL);
    }
    return true;
}

bool block_node_reopen(struct block_node *node, bool read_only,
                       GError **errp)
{
    if (node->read_only == read_only) {
        return true;
    }
    bool ok = read_only ? reopen_read_only(node, errp)
                        : reopen_read_write(node, errp);
    /* Even a failed reopen may have passed through the other mode. */
    owner_maps_layer_changed(node);
    return ok;
}

/* chain_is_allocated_above's answer from the owner map of the stretch
 * that starts at node: 1 or 0, or -1 when the walk goes on from run->node
 * (below the stretch, and above base). */
static int allocated_above_in_stretch(struct block_node *node,
                                      struct block_node *base,
                                      const struct owner_run *run)
{
    /* base's place in the stretch (past it: UINT_MAX) */
    unsigned base_layer = base && base->depth > node->depth ?
        base->depth - node->depth : UINT_MAX;

    if (run->kind == OWNER_BELOW) {
        return run->layer >= base_layer ? 0 : -1;
    }
    /* An owner or a shorter layer above base: allocated. */
    return run->layer < base_layer;
}

int chain_is_allocated_above(struct block_node *top, struct block_node *base,
                             uint64_t offset, uint64_t len, uint64_t *pnum)
{
    struct block_node *node = top;

    while (node && node != base) {
        if (offset >= node->size) {
            *pnum = len;
            return 1;
        }
        struct owner_run owned;
        if (owner_map_lookup(node, offset, MIN(len, node->size - offset),
                             &owned)) {
            len = owned.len;
            int allocated = allocated_above_in_stretch(node, base, &owned);
            if (allocated >= 0) {
                *pnum = len;
                return allocated;
            }
            node = owned.node;
            continue;
        }
        uint64_t n;
        int status = layer_status(node, offset,
                                  MIN(len, node->size - offset), &n);
        if (status < 0) {
            return status;
        }
        n = MAX(MIN(n, len), 1);
        if (status & BLOCK_STATUS_ALLOCATED) {
            *pnum = n;
            return 1;
        }
        len = n;
        node = node->backing;
    }
    *pnum = len;
    return 0;
}

struct block_node *chain_find_layer(struct block_node *top, const char *path)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        return NULL;
    }
    for (struct block_node *node = top; node; node = node->backing) {
        struct stat layer;
        if (fstat(node->fd, &layer) == 0 && layer.st_dev == st.st_dev &&
            layer.st_ino == st.st_ino) {
            return node;
        }
    }
    return NULL;
}

int block_node_close(struct block_node *node)
{
    if (!node) {
        return 0;
    }
    int ret = node->driver->close(node);
    block_node_free(node);
    return ret;
}

/* QEMU's rule for a protocol prefix: text before the first ':' that holds
 * no '/'. */
static bool has_protocol_prefix(const char *name)
{
    return name[strcspn(name, ":/")] == ':';
}

char *chain_resolve_backing(const char *overlay_filename,
                            const char *backing_name, GError **errp)
{
    /* "file:" names the protocol we use anyway.  (QEMU would resolve a
     * relative name after it against its working directory, which means
     * nothing to a daemon; the overlay's directory is what users mean.) */
    if (g_str_has_prefix(backing_name, "file:")) {
        backing_name += strlen("file:");
    }
    if (backing_name[0] == '\0') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: empty backing file name", overlay_filename);
        return NULL;
    }
    if (has_protocol_prefix(backing_name)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: unsupported backing file protocol in '%s'",
                    overlay_filename, backing_name);
        return NULL;
    }
    if (backing_name[0] == '/') {
        return g_strdup(backing_name);
    }

    /* Like QEMU's path_combine: keep the overlay's directory exactly as
     * spelled, including none at all (then both are relative to the
     * working directory). */
    const char *slash = strrchr(overlay_filename, '/');
    if (!slash) {
        return g_strdup(backing_name);
    }
    return g_strdup_printf("%.*s%s", (int)(slash - overlay_filename + 1),
                           overlay_filename, backing_name);
}

static unsigned max_depth = CHAIN_DEFAULT_MAX_DEPTH;

void chain_set_max_depth(unsigned depth)
{
    max_depth = MAX(depth, 1);
}

unsigned chain_max_depth(void)
{
    return max_depth;
}

/* The layers opened so far, by (st_dev, st_ino): a set, so that loop
 * checks cost the same at the thousandth layer as at the first. */
static GHashTable *file_ids_new(void)
{
    return g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                 (GDestroyNotify)g_bytes_unref, NULL);
}

static GBytes *file_id_of(const struct stat *st)
{
    const uint64_t id[2] = { st->st_dev, st->st_ino };
    return g_bytes_new(id, sizeof(id));
}

/* Whether st is one of the layers opened so far. */
static bool file_id_seen(GHashTable *ids, const struct stat *st)
{
    g_autoptr(GBytes) id = file_id_of(st);
    return g_hash_table_contains(ids, id);
}

static void file_id_add(GHashTable *ids, const struct stat *st)
{
    g_hash_table_add(ids, file_id_of(st));
}

/* Open the backing layer of node, whose filename as the chain spells it is
 * spelled_name; *backing_spelled receives the backing's spelling.
 * top_filename names the chain in errors about its depth. */
static struct block_node *open_backing(struct block_node *node,
                                       const char *spelled_name,
                                       const char *top_filename,
                                       GHashTable *ids, char **backing_spelled,
                                       GError **errp)
{
    if (node->depth + 1 >= max_depth) {
        g_set_error(errp, CHAINFS_ERROR, ELOOP,
                    "%s: backing chain too deep (more than %u layers; "
                    "see --max-chain-depth)", top_filename, max_depth);
        return NULL;
    }

    g_autofree char *path = chain_resolve_backing(spelled_name,
                                                  node->backing_name, errp);
    if (!path) {
        return NULL;
    }

    struct stat st;
    if (stat(path, &st) < 0) {
        int err = errno;
        if (err == ENOENT) {
            g_set_error(errp, CHAINFS_ERROR, ENOENT,
                        "%s: backing file not found (named '%s' in %s)",
                        path, node->backing_name, node->filename);
        } else {
            g_set_error(errp, CHAINFS_ERROR, err, "%s: %s (backing file of "
                        "%s)", path, g_strerror(err), node->filename);
        }
        return NULL;
    }
    if (file_id_seen(ids, &st)) {
        g_set_error(errp, CHAINFS_ERROR, ELOOP,
                    "%s: backing chain loop at %s", node->filename, path);
        return NULL;
    }

    struct block_node *backing = block_node_open(path, node->backing_format,
                                                 true, errp);
    if (!backing) {
        return NULL;
    }
    /* The file may have been replaced since stat: the loop check must hold
     * for what we actually opened. */
    struct stat opened;
    if (fstat(backing->fd, &opened) == 0 &&
        (opened.st_dev != st.st_dev || opened.st_ino != st.st_ino)) {
        st = opened;
        if (file_id_seen(ids, &st)) {
            g_set_error(errp, CHAINFS_ERROR, ELOOP,
                        "%s: backing chain loop at %s", node->filename, path);
            block_node_close(backing);
            return NULL;
        }
    }
    file_id_add(ids, &st);
    backing->depth = node->depth + 1;
    *backing_spelled = g_steal_pointer(&path);
    return backing;
}

struct block_node *chain_open(const char *filename, const char *format,
                              bool read_only, GError **errp)
{
    struct block_node *top = block_node_open(filename, format, read_only,
                                             errp);
    if (!top) {
        return NULL;
    }
    if (block_node_is_remote(top)) {
        return top;             /* nothing below an export */
    }

    g_autoptr(GHashTable) ids = file_ids_new();
    struct stat st;
    if (fstat(top->fd, &st) < 0) {
        int err = errno;
        g_set_error(errp, CHAINFS_ERROR, err, "%s: cannot stat: %s",
                    top->filename, g_strerror(err));
        block_node_close(top);
        return NULL;
    }
    file_id_add(ids, &st);

    g_autofree char *spelled = g_strdup(filename);
    for (struct block_node *node = top; node->backing_name;
         node = node->backing) {
        char *backing_spelled = NULL;
        node->backing = open_backing(node, spelled, top->filename, ids,
                                     &backing_spelled, errp);
        if (!node->backing) {
            chain_close(top);
            return NULL;
        }
        g_free(spelled);
        spelled = backing_spelled;
    }
    return top;
}

int chain_close(struct block_node *top)
{
    int first_error = 0;

    while (top) {
        struct block_node *backing = top->backing;
        int ret = block_node_close(top);
        if (ret < 0 && first_error == 0) {
            first_error = ret;
        }
        top = backing;
    }
    return first_error;
}
