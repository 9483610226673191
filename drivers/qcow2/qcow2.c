/* chainfs qcow2: the driver ops table, probing, open and close. */
#include <errno.h>
#include <string.h>

#include "qcow2.h"

size_t qcow2_l2_cache_bytes = 4u << 20;
size_t qcow2_refblock_cache_bytes = 1u << 20;

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    static const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };
    return len >= 4 && memcmp(buf, magic, 4) == 0 ? 100 : 0;
}

/* Dirty L2 tables may only reach the disk after the refcounts of the
 * clusters they point to (and the data) are durable. */
static int before_l2_writeback(void *opaque)
{
    return qcow2_refcounts_sync(opaque);
}

/* Tables are written only where the map says they are (overlap.c). */
static int check_l2_write(void *opaque, uint64_t offset)
{
    struct qcow2_state *s = opaque;
    return qcow2_overlap_check(s, QCOW2_META_L2, offset, s->cluster_size);
}

static int check_refblock_write(void *opaque, uint64_t offset)
{
    struct qcow2_state *s = opaque;
    return qcow2_overlap_check(s, QCOW2_META_REFBLOCK, offset,
                               s->cluster_size);
}

static void state_free(struct qcow2_state *s)
{
    qcow2_meta_free(s);
    table_cache_free(s->l2_cache);
    table_cache_free(s->refblock_cache);
    g_free(s->header_raw);
    g_free(s->extensions);
    if (s->bitmaps) {
        g_ptr_array_unref(s->bitmaps);
    }
    g_free(s->l1_table);
    g_free(s->reftable);
    g_array_unref(s->inflight);
    g_array_unref(s->pending_frees);
    pthread_cond_destroy(&s->alloc_done);
    pthread_mutex_destroy(&s->lock);
    g_free(s);
}

/* The autoclear bits a writer may keep: bit 0 while the image has a
 * valid bitmaps extension (this driver maintains it), no other. */
static uint64_t autoclear_to_keep(struct qcow2_state *s)
{
    return s->bitmaps->len > 0 ? s->autoclear & QCOW2_AUTOCLEAR_BITMAPS : 0;
}

static bool qcow2_open(struct block_node *node, GError **errp)
{
    struct qcow2_state *s = g_new0(struct qcow2_state, 1);

    s->node = node;
    s->fd = node->fd;
    s->filename = node->filename;
    s->read_only = node->read_only;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->alloc_done, NULL);
    s->inflight = g_array_new(false, false, sizeof(struct qcow2_inflight));
    s->pending_frees = g_array_new(false, false,
                                   sizeof(struct qcow2_host_range));
    s->bitmaps = qcow2_bitmap_array_new();

    if (!qcow2_read_header(s, errp)) {
        g_clear_pointer(&node->backing_name, g_free);
        g_clear_pointer(&node->backing_format, g_free);
        state_free(s);
        return false;
    }
    s->l2_cache = table_cache_new(s->fd, s->cluster_size,
                                  qcow2_l2_cache_bytes, before_l2_writeback,
                                  check_l2_write, s);
    s->refblock_cache = table_cache_new(s->fd, s->cluster_size,
                                        qcow2_refblock_cache_bytes, NULL,
                                        check_refblock_write, s);
    if (!s->read_only) {
        qcow2_meta_build(s);
    }
    if (!s->read_only && s->autoclear != autoclear_to_keep(s)) {
        /* Of the autoclear features we maintain only bitmaps: clear the
         * others (and a bitmaps bit without bitmaps) before the first
         * write. */
        s->autoclear = autoclear_to_keep(s);
        int ret = qcow2_write_header_bytes(s, QCOW2_HDR_AUTOCLEAR, 8);
        if (ret < 0) {
            g_set_error(errp, CHAINFS_ERROR, -ret,
                        "%s: cannot update the header: %s", s->filename,
                        g_strerror(-ret));
            g_clear_pointer(&node->backing_name, g_free);
            g_clear_pointer(&node->backing_format, g_free);
            state_free(s);
            return false;
        }
    }
    node->size = s->size;
    node->cluster_size = s->cluster_size;
    node->opaque = s;
    return true;
}

static int qcow2_close(struct block_node *node)
{
    struct qcow2_state *s = node->opaque;
    if (!s) {
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    /* A corrupt image is left as the overlap found it: nothing more is
     * written (dirty tables are dropped, and the flush says so). */
    int ret = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    state_free(s);
    node->opaque = NULL;
    return ret;
}

/* Header checks that open makes for a writable image, then the autoclear
 * bits cleared as open clears them. */
static bool qcow2_reopen(struct block_node *node, bool read_only,
                         GError **errp)
{
    struct qcow2_state *s = node->opaque;
    int ret = 0;

    if (!read_only && s->incompat & QCOW2_INCOMPAT_CORRUPT) {
        g_set_error(errp, CHAINFS_ERROR, EROFS, "%s: image is marked "
                    "corrupt; it can only be used read-only", s->filename);
        return false;
    }
    if (!read_only && s->incompat & QCOW2_INCOMPAT_DIRTY) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: image is marked dirty "
                    "(refcounts may be inconsistent)", s->filename);
        return false;
    }
    if (!read_only && s->nb_snapshots > 0) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP, "%s: images with internal "
                    "snapshots can only be used read-only", s->filename);
        return false;
    }
    pthread_mutex_lock(&s->lock);
    s->read_only = read_only;
    if (!read_only && !s->metadata) {
        qcow2_meta_build(s);
    }
    if (!read_only && s->autoclear != autoclear_to_keep(s)) {
        uint64_t old = s->autoclear;
        s->autoclear = autoclear_to_keep(s);
        ret = qcow2_write_header_bytes(s, QCOW2_HDR_AUTOCLEAR, 8);
        if (ret < 0) {
            s->autoclear = old;
            s->read_only = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret,
                    "%s: cannot update the header: %s", s->filename,
                    g_strerror(-ret));
        return false;
    }
    return true;
}

const struct block_driver qcow2_driver = {
    .format_name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .read = qcow2_read,
    .write = qcow2_write,
    .write_zeroes = qcow2_write_zeroes,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .map = qcow2_map,
    .unmap = qcow2_unmap,
    .create = qcow2_create,
    .set_backing = qcow2_set_backing,
    .grow = qcow2_grow,
    .reopen = qcow2_reopen,
    .bitmaps_supported = qcow2_bitmaps_supported,
    .bitmaps_list = qcow2_bitmaps_list,
    .bitmap_read = qcow2_bitmap_read,
    .bitmaps_store = qcow2_bitmaps_store,
};
