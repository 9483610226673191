/* chainfs: the file system served through libfuse's low-level API (see
 * fs.h).  This file maps FUSE requests onto tree nodes; the I/O of disk
 * files lives in disk-file.c.
 *
 * Caching: disk files are cached by the kernel (attributes for a second,
 * data in the page cache, kept across opens).  That is safe because every
 * change to a disk's content comes through this mount, and the kernel
 * keeps its cache coherent with the writes it sends, O_DIRECT included;
 * the size never changes.  Everything else changes behind the kernel's
 * back, so it is never cached: timeouts are 0 and text files are opened
 * with direct_io.  A rendered text file is rendered at open and again by
 * each read at offset 0 (so a reader that rereads from the start sees the
 * current state); a stream (.jobs/events) is read live at any offset; a
 * command file (ctl) reads back the reply to the last write on the same
 * open file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "disk-file.h"
#include "fs.h"
#include "log.h"
#include "view-file.h"

/* The largest read or write request.  The kernel splits a bigger O_DIRECT
 * request into requests of this size and sends them all at once, so
 * several worker threads copy the pieces of one 1 MiB read or write in
 * parallel; with 1 MiB requests one thread did both copies of the whole
 * request while the other CPUs idled (bench: +20% sequential reads). */
#define MAX_REQUEST_BYTES (256 * 1024)

/* Cache timeout of disk files' attributes and entries, seconds. */
#define DISK_TIMEOUT 1.0

/* st_blksize of disk files: the I/O size tools should use. */
#define DISK_BLKSIZE 65536

struct chainfs_fs {
    struct tree *tree;
    struct tree_node *chains_dir;
    struct tree_node *jobs_dir;
    struct tree_node *bitmaps_dir;
    GPtrArray *disk_files;      /* struct disk_file *, owned */
    uid_t uid;
    gid_t gid;
    struct timespec mount_time;
    char *statfs_path;          /* a directory on the top images' fs */
    unsigned max_read;          /* the max_read mount option, or 0 */

    /* Every open file, so that those still open when the session ends
     * (a client holding the disk at SIGTERM: no release will come) are
     * freed with the file system. */
    pthread_mutex_t open_files_lock;
    GQueue open_files;          /* struct open_file, by open_link */
};

/* What fi->fh points to while a file is open. */
struct open_file {
    struct tree_node *node;
    pthread_mutex_t lock;       /* text files: protects content and len */
    char *content;              /* text files: rendered, or a reply */
    size_t len;
    /* Command files: the file position after the last write, where the
     * reply starts for a reader that goes on reading from there. */
    uint64_t reply_start;
    GList open_link;            /* in chainfs_fs.open_files */
};

static struct chainfs_fs *req_fs(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct open_file *open_file_of(struct fuse_file_info *fi)
{
    return (struct open_file *)(uintptr_t)fi->fh;
}

static struct open_file *open_file_new(struct chainfs_fs *fs,
                                       struct tree_node *node)
{
    struct open_file *file = g_new0(struct open_file, 1);

    file->node = node;
    file->open_link.data = file;
    pthread_mutex_init(&file->lock, NULL);
    pthread_mutex_lock(&fs->open_files_lock);
    g_queue_push_tail_link(&fs->open_files, &file->open_link);
    pthread_mutex_unlock(&fs->open_files_lock);
    return file;
}

static void open_file_destroy(struct open_file *file)
{
    pthread_mutex_destroy(&file->lock);
    g_free(file->content);
    g_free(file);
}

static void open_file_free(struct chainfs_fs *fs, struct open_file *file)
{
    pthread_mutex_lock(&fs->open_files_lock);
    g_queue_unlink(&fs->open_files, &file->open_link);
    pthread_mutex_unlock(&fs->open_files_lock);
    open_file_destroy(file);
}

/* ---- building the tree ---- */

static char *render_chain(struct tree_node *node)
{
    return disk_describe_chain(node->data);
}

static const struct tree_text_ops chain_text_ops = {
    .render = render_chain,
};

struct chainfs_fs *fs_new(void)
{
    struct chainfs_fs *fs = g_new0(struct chainfs_fs, 1);

    fs->tree = tree_new();
    pthread_mutex_init(&fs->open_files_lock, NULL);
    g_queue_init(&fs->open_files);
    fs->disk_files = g_ptr_array_new_with_free_func(
        (GDestroyNotify)disk_file_free);
    fs->uid = getuid();
    fs->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &fs->mount_time);
    fs->chains_dir = tree_add(fs->tree, fs->tree->root, ".chains",
                              TREE_NODE_DIR, 0755, 0.0, NULL);
    fs->jobs_dir = tree_add(fs->tree, fs->tree->root, ".jobs",
                            TREE_NODE_DIR, 0755, 0.0, NULL);
    fs->bitmaps_dir = tree_add(fs->tree, fs->tree->root, ".bitmaps",
                               TREE_NODE_DIR, 0755, 0.0, NULL);
    fs->statfs_path = g_strdup("/");
    return fs;
}

bool fs_add_disk(struct chainfs_fs *fs, struct disk *disk)
{
    struct disk_file *file = disk_file_new(disk);

    if (!tree_add(fs->tree, fs->tree->root, disk->name, TREE_NODE_DISK,
                  disk->read_only ? 0400 : 0600, DISK_TIMEOUT, file)) {
        disk_file_free(file);
        return false;
    }
    g_ptr_array_add(fs->disk_files, file);
    tree_add_text(fs->tree, fs->chains_dir, disk->name, 0644,
                  &chain_text_ops, disk);
    if (fs->disk_files->len == 1 && !block_node_is_remote(disk->top)) {
        /* Before the mount nothing changes the chain: no lock needed.  (A
         * remote disk has no local file system: statfs stays on "/".) */
        g_free(fs->statfs_path);
        fs->statfs_path = g_path_get_dirname(disk->top->filename);
    }
    return true;
}

void fs_free(struct chainfs_fs *fs)
{
    if (fs) {
        GList *link;

        while ((link = g_queue_pop_head_link(&fs->open_files))) {
            open_file_destroy(link->data);
        }
        pthread_mutex_destroy(&fs->open_files_lock);
        tree_free(fs->tree);
        g_ptr_array_unref(fs->disk_files);
        g_free(fs->statfs_path);
        g_free(fs);
    }
}

struct tree *fs_tree(struct chainfs_fs *fs)
{
    return fs->tree;
}

struct tree_node *fs_jobs_dir(struct chainfs_fs *fs)
{
    return fs->jobs_dir;
}

struct tree_node *fs_bitmaps_dir(struct chainfs_fs *fs)
{
    return fs->bitmaps_dir;
}

/* ---- attributes ---- */

static mode_t node_type(const struct tree_node *node)
{
    return node->kind == TREE_NODE_DIR ? S_IFDIR : S_IFREG;
}

static void fill_attr(struct chainfs_fs *fs, struct tree_node *node,
                      struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = node->ino;
    st->st_mode = node_type(node) | node->mode;
    st->st_nlink = 1;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_blksize = 4096;
    st->st_atim = st->st_mtim = st->st_ctim = fs->mount_time;

    switch (node->kind) {
    case TREE_NODE_DIR:
        st->st_nlink = 2 + tree_count_subdirs(fs->tree, node);
        break;
    case TREE_NODE_DISK: {
        struct disk_file *file = node->data;
        uint64_t allocated;
        st->st_size = disk_size(disk_file_disk(file));
        /* Unreadable metadata fails the reads that need it, not stat:
         * claim everything is data, which makes no tool skip any. */
        if (disk_file_allocated_bytes(file, &allocated) < 0) {
            allocated = st->st_size;
        }
        st->st_blocks = (allocated + 511) / 512;
        st->st_blksize = DISK_BLKSIZE;
        st->st_mtim = st->st_ctim = disk_file_mtime(file);
        break;
    }
    case TREE_NODE_VIEW:
        st->st_size = fleece_view_size(node->data);
        st->st_blocks = (view_file_allocated_bytes(node->data) + 511) / 512;
        st->st_blksize = DISK_BLKSIZE;
        break;
    case TREE_NODE_TEXT:
        if (node->text_ops->size) {
            st->st_size = node->text_ops->size(node);
        } else if (node->text_ops->render) {
            g_autofree char *content = node->text_ops->render(node);
            st->st_size = strlen(content);
        }
        st->st_blocks = (st->st_size + 511) / 512;
        break;
    }
}

static struct tree_node *find_node(fuse_req_t req, fuse_ino_t ino)
{
    struct tree_node *node = tree_find(req_fs(req)->tree, ino);

    if (!node) {
        fuse_reply_err(req, ESTALE);
    }
    return node;
}

/* ---- ops ---- */

void fs_set_max_read(struct chainfs_fs *fs, unsigned max_read)
{
    fs->max_read = max_read;
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
    struct chainfs_fs *fs = userdata;

    conn->max_write = MAX_REQUEST_BYTES;
    /* libfuse insists that this repeats the mount option.  Without one,
     * reads are limited by max_pages, which libfuse derives from
     * max_write. */
    conn->max_read = fs->max_read;
    if (conn->capable & FUSE_CAP_ASYNC_READ) {
        conn->want |= FUSE_CAP_ASYNC_READ;
    }
    /* O_TRUNC arrives with open, where a disk ignores it like a block
     * device does, instead of as a truncate that would have to fail. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) {
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    }
    /* The page cache stays coherent by itself (see the top of this file):
     * no invalidation on attribute changes, and no writeback cache, whose
     * delayed writes would defeat fsync's meaning and the bitmaps' order. */
    conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE);
    if (conn->capable & FUSE_CAP_EXPLICIT_INVAL_DATA) {
        conn->want |= FUSE_CAP_EXPLICIT_INVAL_DATA;
    }
    /* Read replies splice the image files' pages (disk-file.c). */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    }
    /* More readahead and async direct I/O requests in flight at once. */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct chainfs_fs *fs = req_fs(req);
    struct tree_node *dir = find_node(req, parent);
    struct tree_node *node;
    struct fuse_entry_param entry;

    if (!dir) {
        return;
    }
    if (dir->kind != TREE_NODE_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    node = tree_lookup(fs->tree, dir, name);
    if (!node) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    memset(&entry, 0, sizeof(entry));
    entry.ino = node->ino;
    entry.generation = 1;
    entry.attr_timeout = node->timeout;
    entry.entry_timeout = node->timeout;
    fill_attr(fs, node, &entry.attr);
    fuse_reply_entry(req, &entry);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    struct tree_node *node = find_node(req, ino);
    struct stat st;

    (void)fi;
    if (node) {
        fill_attr(req_fs(req), node, &st);
        fuse_reply_attr(req, &st, node->timeout);
    }
}

/* Times may be set (as a no-op: touch works); nothing else can change.
 * A disk's size is fixed, so only a "truncate" to its size succeeds. */
static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    struct tree_node *node = find_node(req, ino);
    struct stat st;

    (void)fi;
    if (!node) {
        return;
    }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
                  FUSE_SET_ATTR_GID)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    fill_attr(req_fs(req), node, &st);
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (node->kind == TREE_NODE_DIR) {
            fuse_reply_err(req, EISDIR);
            return;
        }
        /* `echo cmd > ctl` may truncate first: a no-op for command
         * files. */
        bool command_file = node->kind == TREE_NODE_TEXT &&
                            node->text_ops->write && attr->st_size == 0;
        bool sized = node->kind == TREE_NODE_DISK ||
                     node->kind == TREE_NODE_VIEW;
        if (!command_file && (!sized || attr->st_size != st.st_size)) {
            fuse_reply_err(req, EPERM);
            return;
        }
    }
    fuse_reply_attr(req, &st, node->timeout);
}

struct dir_listing {
    fuse_req_t req;
    char *buf;
    size_t size;
    size_t used;
};

/* Add one entry; false when the reply buffer is full. */
static bool add_dir_entry(struct dir_listing *listing, const char *name,
                          fuse_ino_t ino, mode_t type, off_t next)
{
    struct stat st = { .st_ino = ino, .st_mode = type };
    size_t room = listing->size - listing->used;
    size_t len = fuse_add_direntry(listing->req, listing->buf + listing->used,
                                   room, name, &st, next);

    if (len > room) {
        return false;
    }
    listing->used += len;
    return true;
}

/* Offsets in a listing: 1 after ".", 2 after "..", and 2 + dir_cookie
 * after a child, so a listing resumes correctly even if entries were added
 * or removed in between. */
static bool add_child_entry(struct tree_node *child, void *opaque)
{
    return add_dir_entry(opaque, child->name, child->ino, node_type(child),
                         2 + child->dir_cookie);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
                       off_t offset, struct fuse_file_info *fi)
{
    struct tree_node *dir = find_node(req, ino);
    struct dir_listing listing = { .req = req, .size = size };

    (void)fi;
    if (!dir) {
        return;
    }
    if (dir->kind != TREE_NODE_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    listing.buf = g_malloc(size);
    if ((offset >= 1 || add_dir_entry(&listing, ".", dir->ino, S_IFDIR, 1)) &&
        (offset >= 2 || add_dir_entry(&listing, "..", dir->parent->ino,
                                      S_IFDIR, 2))) {
        tree_list(req_fs(req)->tree, dir, offset > 2 ? offset - 2 : 0,
                  add_child_entry, &listing);
    }
    fuse_reply_buf(req, listing.buf, listing.used);
    g_free(listing.buf);
}

/* Replace a text file's content (takes ownership); requires file->lock. */
static void set_content_locked(struct open_file *file, char *content)
{
    g_free(file->content);
    file->content = content;
    file->len = content ? strlen(content) : 0;
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct tree_node *node = find_node(req, ino);
    bool writing = (fi->flags & O_ACCMODE) != O_RDONLY;
    struct open_file *file;

    if (!node) {
        return;
    }
    switch (node->kind) {
    case TREE_NODE_DIR:
        fuse_reply_err(req, EISDIR);
        return;
    case TREE_NODE_DISK:
        if (writing && disk_file_disk(node->data)->read_only) {
            fuse_reply_err(req, EROFS);
            return;
        }
        file = open_file_new(req_fs(req), node);
        /* O_TRUNC is ignored: the size is fixed, as a block device's. */
        fi->keep_cache = 1;
        break;
    case TREE_NODE_VIEW:
        /* A writable open is what fallocate(PUNCH_HOLE) needs (the kernel
         * grants it by the mode); writes fail.  Pages cached from another
         * open may predate a discard or a failed copy: not kept. */
        file = open_file_new(req_fs(req), node);
        break;
    case TREE_NODE_TEXT:
    default:
        if (writing && !node->text_ops->write) {
            fuse_reply_err(req, EACCES);
            return;
        }
        if (node->text_ops->readable) {
            int ret = node->text_ops->readable(node);
            if (ret < 0) {
                fuse_reply_err(req, -ret);
                return;
            }
        }
        file = open_file_new(req_fs(req), node);
        if (node->text_ops->render) {
            set_content_locked(file, node->text_ops->render(node));
        }
        /* O_TRUNC is ignored: a write is a command, not file content. */
        fi->direct_io = 1;
        break;
    }
    fi->fh = (uintptr_t)file;
    if (fuse_reply_open(req, fi) == -ENOENT) {
        /* The open was interrupted: no release will follow. */
        open_file_free(req_fs(req), file);
    }
}

static void fs_release(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);

    (void)ino;
    open_file_free(req_fs(req), file);
    fuse_reply_err(req, 0);
}

/* A stream read live from the node. */
static void read_stream(fuse_req_t req, struct tree_node *node, size_t size,
                        off_t offset)
{
    g_autofree char *buf = g_malloc(size);
    size_t len = node->text_ops->read_at(node, offset, size, buf);

    fuse_reply_buf(req, buf, len);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size,
                    off_t offset, struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);
    g_autofree char *reply = NULL;

    (void)ino;
    if (file->node->kind == TREE_NODE_DISK) {
        disk_file_read(req, file->node->data, size, offset);
        return;
    }
    if (file->node->kind == TREE_NODE_VIEW) {
        view_file_read(req, file->node->data, size, offset);
        return;
    }
    if (offset < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (file->node->text_ops->read_at) {
        read_stream(req, file->node, size, offset);
        return;
    }
    if (offset == 0 && file->node->text_ops->readable) {
        int ret = file->node->text_ops->readable(file->node);
        if (ret < 0) {
            fuse_reply_err(req, -ret);
            return;
        }
    }
    pthread_mutex_lock(&file->lock);
    if (offset == 0 && file->node->text_ops->render) {
        set_content_locked(file, file->node->text_ops->render(file->node));
    }
    /* `exec 3<>ctl; echo CMD >&3; cat <&3` reads on from where the write
     * ended; pread(fd, buf, n, 0) reads from the start: both get the
     * reply. */
    if ((uint64_t)offset >= file->reply_start) {
        offset -= file->reply_start;
    }
    /* Reply from a copy: once the reader has the data, it may close the
     * file, and the release (freeing the content) may run while
     * fuse_reply_buf has not yet returned. */
    if ((uint64_t)offset < file->len) {
        size = MIN(size, file->len - offset);
        reply = g_memdup2(file->content + offset, size);
    } else {
        size = 0;
    }
    pthread_mutex_unlock(&file->lock);
    fuse_reply_buf(req, reply, size);
}

/* A write to a command file: execute it, keep the reply for reads on the
 * same open file.  Each write is one command, wherever it is written. */
static void write_command(fuse_req_t req, struct open_file *file,
                          const char *buf, size_t size, off_t offset)
{
    char *reply = NULL;
    int ret = file->node->text_ops->write(file->node, buf, size,
                                          fuse_req_ctx(req)->pid, &reply);

    pthread_mutex_lock(&file->lock);
    set_content_locked(file, reply);
    file->reply_start = ret < 0 ? (uint64_t)offset : (uint64_t)offset + size;
    pthread_mutex_unlock(&file->lock);
    if (ret < 0) {
        fuse_reply_err(req, -ret);
    } else {
        fuse_reply_write(req, size);
    }
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t offset, struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);

    (void)ino;
    if (file->node->kind == TREE_NODE_DISK) {
        disk_file_write(req, file->node->data, buf, size, offset);
    } else if (file->node->kind == TREE_NODE_VIEW) {
        fuse_reply_err(req, EROFS);
    } else if (file->node->kind == TREE_NODE_TEXT &&
               file->node->text_ops->write) {
        write_command(req, file, buf, size, offset);
    } else {
        fuse_reply_err(req, EBADF);
    }
}

/* close(2) does not sync: fsync does. */
static void fs_flush(fuse_req_t req, fuse_ino_t ino,
                     struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);

    (void)ino;
    (void)datasync;
    if (file->node->kind == TREE_NODE_DISK) {
        disk_file_fsync(req, file->node->data);
    } else {
        fuse_reply_err(req, 0);
    }
}

static void fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
                         off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);

    (void)ino;
    if (file->node->kind == TREE_NODE_DISK) {
        disk_file_fallocate(req, file->node->data, mode, offset, length);
    } else if (file->node->kind == TREE_NODE_VIEW) {
        view_file_fallocate(req, file->node->data, mode, offset, length);
    } else {
        fuse_reply_err(req, EBADF);
    }
}

/* Text files are all data.  Never answer ENOSYS: the kernel would stop
 * sending lseek for every file of the mount. */
static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t offset,
                     int whence, struct fuse_file_info *fi)
{
    struct open_file *file = open_file_of(fi);

    (void)ino;
    if (file->node->kind == TREE_NODE_DISK) {
        disk_file_lseek(req, file->node->data, offset, whence);
    } else if (file->node->kind == TREE_NODE_VIEW) {
        view_file_lseek(req, file->node->data, offset, whence);
    } else if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
    } else {
        uint64_t len;

        if (file->node->text_ops->size) {
            len = file->node->text_ops->size(file->node);
        } else {
            pthread_mutex_lock(&file->lock);
            len = file->len;
            pthread_mutex_unlock(&file->lock);
        }
        if (offset < 0 || (uint64_t)offset >= len) {
            fuse_reply_err(req, ENXIO);
        } else {
            fuse_reply_lseek(req, whence == SEEK_DATA ? offset : (off_t)len);
        }
    }
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs st;

    (void)ino;
    if (statvfs(req_fs(req)->statfs_path, &st) < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    st.f_namemax = NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* The tree's shape is fixed by the command line (and later by the control
 * plane): nothing can be created, removed or renamed. */
static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    fuse_reply_err(req, EPERM);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    fuse_reply_err(req, EPERM);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    fuse_reply_err(req, EPERM);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                       const char *name)
{
    (void)link, (void)parent, (void)name;
    fuse_reply_err(req, EPERM);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    fuse_reply_err(req, EPERM);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                    const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    fuse_reply_err(req, EPERM);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    fuse_reply_err(req, EPERM);
}

const struct fuse_lowlevel_ops fs_lowlevel_ops = {
    .init = fs_init,
    .lookup = fs_lookup,
    .getattr = fs_getattr,
    .setattr = fs_setattr,
    .readdir = fs_readdir,
    .fsyncdir = fs_fsyncdir,
    .open = fs_open,
    .release = fs_release,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .fsync = fs_fsync,
    .fallocate = fs_fallocate,
    .lseek = fs_lseek,
    .statfs = fs_statfs,
    .mknod = fs_mknod,
    .mkdir = fs_mkdir,
    .unlink = fs_unlink,
    .rmdir = fs_unlink,
    .symlink = fs_symlink,
    .rename = fs_rename,
    .link = fs_link,
    .create = fs_create,
};
