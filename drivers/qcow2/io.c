/* chainfs qcow2: the I/O callbacks.
 *
 * Each request is cut into runs of clusters that share one kind of L2
 * entry.  The mapping is looked up with the image lock held; the data
 * transfer runs unlocked.  A write that needs new clusters registers the
 * guest range as in flight, writes the data (with copy-on-write of partial
 * clusters) and only then publishes the L2 entries, so concurrent readers
 * see the old or the new content and concurrent writers never allocate the
 * same guest cluster twice.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qcow2.h"

/* At most this many clusters are allocated by one step of a write. */
#define MAX_ALLOC_CLUSTERS 256
/* Deferred frees beyond this trigger a flush so the list stays small. */
#define MAX_PENDING_FREES 4096
/* block_status looks at most this many clusters per call. */
#define MAX_STATUS_CLUSTERS (128u * 1024)

static uint64_t clusters_in_l2(struct qcow2_state *s, uint64_t cluster)
{
    uint64_t per_table = 1ull << s->l2_bits;
    return per_table - (cluster & (per_table - 1));
}

/* The L2 table holding guest cluster, pinned, or NULL if there is none. */
static int get_l2_table(struct qcow2_state *s, uint64_t cluster,
                        struct table_entry **table)
{
    uint64_t l1_index = cluster >> s->l2_bits;
    *table = NULL;
    if (l1_index >= s->l1_size) {
        return -EIO;
    }
    uint64_t l1e = s->l1_table[l1_index];
    uint64_t offset = l1e & QCOW2_L1E_OFFSET_MASK;
    if (l1e == 0) {
        return 0;
    }
    if ((l1e & ~(QCOW2_L1E_OFFSET_MASK | QCOW2_OFLAG_COPIED)) ||
        offset == 0 || (offset & (s->cluster_size - 1)) ||
        offset >= s->host_end) {
        return -EIO;
    }
    return table_cache_get(s->l2_cache, offset, true, table);
}

static uint64_t l2_at(struct table_entry *table, uint64_t cluster,
                      unsigned l2_bits)
{
    uint64_t index = cluster & ((1ull << l2_bits) - 1);
    return be64toh(((uint64_t *)table->data)[index]);
}

/* A run of clusters starting at guest offset that read the same way. */
struct run {
    enum qcow2_cluster_kind kind;
    uint64_t host;      /* NORMAL: host offset of the first byte */
    uint64_t entry;     /* the first cluster's L2 entry */
    uint64_t bytes;     /* length of the run from offset, <= len */
};

/* Find the run at offset (lock held).  Normal runs are host-contiguous. */
static int lookup_run(struct qcow2_state *s, uint64_t offset, uint64_t len,
                      struct run *run)
{
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t in_cluster = offset & (s->cluster_size - 1);
    uint64_t want = (in_cluster + len + s->cluster_size - 1) >>
                    s->cluster_bits;
    uint64_t limit = MIN(want, clusters_in_l2(s, cluster));
    struct table_entry *table;
    uint64_t n = 1;

    int ret = get_l2_table(s, cluster, &table);
    if (ret < 0) {
        return ret;
    }
    if (!table) {
        run->kind = QCOW2_UNALLOCATED;
        run->entry = 0;
        run->host = 0;
        n = limit;
    } else {
        run->entry = l2_at(table, cluster, s->l2_bits);
        ret = qcow2_classify(s, run->entry, &run->kind, &run->host);
        while (ret == 0 && n < limit && run->kind != QCOW2_COMPRESSED) {
            enum qcow2_cluster_kind kind;
            uint64_t host;
            uint64_t entry = l2_at(table, cluster + n, s->l2_bits);
            if (qcow2_classify(s, entry, &kind, &host) < 0 ||
                kind != run->kind ||
                ((entry ^ run->entry) & QCOW2_OFLAG_COPIED) ||
                (kind == QCOW2_NORMAL &&
                 host != run->host + (n << s->cluster_bits))) {
                break;
            }
            n++;
        }
        table_cache_put(s->l2_cache, table);
        if (ret < 0) {
            return ret;
        }
    }
    run->host += in_cluster;
    run->bytes = MIN(len, (n << s->cluster_bits) - in_cluster);
    return 0;
}

static void data_io_begin(struct qcow2_state *s)
{
    g_atomic_int_inc(&s->data_io_in_flight);
}

static void data_io_end(struct qcow2_state *s)
{
    g_atomic_int_dec_and_test(&s->data_io_in_flight);
}

static int read_run(struct block_node *node, struct qcow2_state *s,
                    uint64_t offset, const struct run *run, uint8_t *buf)
{
    switch (run->kind) {
    case QCOW2_UNALLOCATED:
        return block_node_read_backing(node, offset, run->bytes, buf);
    case QCOW2_ZERO:
        memset(buf, 0, run->bytes);
        return 0;
    case QCOW2_NORMAL:
        return qcow2_pread_data(s->fd, buf, run->bytes, run->host);
    case QCOW2_COMPRESSED: {
        g_autofree uint8_t *cluster = g_malloc(s->cluster_size);
        int ret = qcow2_read_compressed(s, run->entry, cluster);
        if (ret == 0) {
            memcpy(buf, cluster + (offset & (s->cluster_size - 1)),
                   run->bytes);
        }
        return ret;
    }
    }
    return -EIO;
}

int qcow2_read(struct block_node *node, uint64_t offset, uint64_t len,
               void *buf)
{
    struct qcow2_state *s = node->opaque;
    uint8_t *p = buf;

    while (len > 0) {
        struct run run;
        pthread_mutex_lock(&s->lock);
        int ret = lookup_run(s, offset, len, &run);
        bool uses_host = ret == 0 && (run.kind == QCOW2_NORMAL ||
                                      run.kind == QCOW2_COMPRESSED);
        if (uses_host) {
            data_io_begin(s);
        }
        pthread_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        ret = read_run(node, s, offset, &run, p);
        if (uses_host) {
            data_io_end(s);
        }
        if (ret < 0) {
            return ret;
        }
        p += run.bytes;
        offset += run.bytes;
        len -= run.bytes;
    }
    return 0;
}

int qcow2_map(struct block_node *node, uint64_t offset, uint64_t len,
              struct block_extent *ext)
{
    struct qcow2_state *s = node->opaque;
    struct run run;

    pthread_mutex_lock(&s->lock);
    int ret = lookup_run(s, offset, len, &run);
    if (ret == 0 && run.kind == QCOW2_NORMAL) {
        /* Held until unmap: no deferred free applies meanwhile, so the
         * clusters are not reused for other data while the kernel still
         * reads their pages. */
        data_io_begin(s);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    ext->len = run.bytes;
    switch (run.kind) {
    case QCOW2_UNALLOCATED:
        return BLOCK_MAP_BACKING;
    case QCOW2_ZERO:
        ext->kind = BLOCK_EXTENT_ZERO;
        return 0;
    case QCOW2_NORMAL:
        ext->kind = BLOCK_EXTENT_HOST;
        ext->fd = s->fd;
        ext->host_offset = run.host;
        return 0;
    case QCOW2_COMPRESSED:
        return -ENOTSUP;
    }
    return -EIO;
}

void qcow2_unmap(struct block_node *node, const struct block_extent *ext)
{
    (void)ext;
    data_io_end(node->opaque);
}

/* pwritev the whole iovec array, retrying short writes. */
static int host_pwritev(int fd, struct iovec *iov, int iovcnt,
                        uint64_t offset)
{
    while (iovcnt > 0) {
        ssize_t n = pwritev(fd, iov, iovcnt, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -ENOSPC;
        }
        offset += n;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

/* Old content of [from, to) of a guest cluster, for copy-on-write. */
static int read_old_cluster(struct block_node *node, struct qcow2_state *s,
                            uint64_t cluster, uint64_t entry, uint64_t from,
                            uint64_t to, uint8_t *buf)
{
    enum qcow2_cluster_kind kind;
    uint64_t host;
    uint64_t guest = cluster << s->cluster_bits;
    int ret = qcow2_classify(s, entry, &kind, &host);
    if (ret < 0) {
        return ret;
    }
    switch (kind) {
    case QCOW2_UNALLOCATED:
        return block_node_read_backing(node, guest + from, to - from,
                                       buf + from);
    case QCOW2_ZERO:
        memset(buf + from, 0, to - from);
        return 0;
    case QCOW2_NORMAL:
        return qcow2_pread_data(s->fd, buf + from, to - from, host + from);
    case QCOW2_COMPRESSED:
        return qcow2_read_compressed(s, entry, buf);
    }
    return -EIO;
}

/* Write data into n freshly allocated clusters at host, completing the
 * partial first and last clusters from their old content. */
static int write_new_clusters(struct block_node *node, struct qcow2_state *s,
                              uint64_t offset, uint64_t bytes,
                              const uint8_t *data, uint64_t first,
                              uint64_t n, uint64_t host, const uint64_t *olds)
{
    const uint64_t cs = s->cluster_size;
    uint64_t head = offset - (first << s->cluster_bits);
    uint64_t tail = ((first + n) << s->cluster_bits) - (offset + bytes);
    g_autofree uint8_t *head_buf = NULL;
    g_autofree uint8_t *tail_buf = NULL;
    struct iovec iov[3];
    int iovcnt = 0;
    int ret;

    if (head > 0) {
        head_buf = g_malloc(cs);
        ret = read_old_cluster(node, s, first, olds[0], 0, head, head_buf);
        if (ret < 0) {
            return ret;
        }
        iov[iovcnt++] = (struct iovec){ head_buf, head };
    }
    iov[iovcnt++] = (struct iovec){ (void *)data, bytes };
    if (tail > 0) {
        /* A single partial cluster shares one buffer for both ends. */
        uint8_t *buf = head_buf;
        if (n > 1 || !buf) {
            buf = tail_buf = g_malloc(cs);
        }
        ret = read_old_cluster(node, s, first + n - 1, olds[n - 1],
                               cs - tail, cs, buf);
        if (ret < 0) {
            return ret;
        }
        iov[iovcnt++] = (struct iovec){ buf + cs - tail, tail };
    }
    return host_pwritev(s->fd, iov, iovcnt, host);
}

/* Point the L2 entries at the new clusters and release the old ones. */
static int publish_clusters(struct qcow2_state *s, uint64_t first,
                            uint64_t n, uint64_t host, const uint64_t *olds)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t cluster_host = host + (i << s->cluster_bits);
        int ret = qcow2_set_l2_entry(s, first + i,
                                     cluster_host | QCOW2_OFLAG_COPIED);
        if (ret < 0) {
            qcow2_free_clusters(s, cluster_host, (n - i) << s->cluster_bits);
            return ret;
        }
        qcow2_release_entry(s, olds[i]);
    }
    return 0;
}

/* Keep the deferred-free list short: flush once it is long, when the
 * flush can actually apply it (no request using host clusters). */
static int flush_if_many_frees(struct qcow2_state *s)
{
    if (s->pending_frees->len <= MAX_PENDING_FREES ||
        g_atomic_int_get(&s->data_io_in_flight) != 0) {
        return 0;
    }
    return qcow2_flush_locked(s);
}

/* Data clusters only this L2 entry references can be overwritten. */
static bool writable_in_place(uint64_t entry, enum qcow2_cluster_kind kind)
{
    return kind == QCOW2_NORMAL && (entry & QCOW2_OFLAG_COPIED);
}

/* One step of a write at offset (lock held on entry and on return):
 * returns the number of bytes written or a negative errno. */
static int64_t write_step(struct block_node *node, struct qcow2_state *s,
                          uint64_t offset, uint64_t len, const uint8_t *data)
{
    const uint64_t cs = s->cluster_size;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    uint64_t olds[MAX_ALLOC_CLUSTERS];
    enum qcow2_cluster_kind kind;
    uint64_t host;
    int ret;

    qcow2_inflight_wait(s, first, last + 1);

    struct run run;
    ret = lookup_run(s, offset, len, &run);
    if (ret < 0) {
        return ret;
    }
    if (writable_in_place(run.entry, run.kind)) {
        ret = qcow2_overlap_check(s, 0, run.host, run.bytes);
        if (ret < 0) {
            return ret;
        }
        data_io_begin(s);
        pthread_mutex_unlock(&s->lock);
        ret = host_pwrite(s->fd, data, run.bytes, run.host);
        data_io_end(s);
        pthread_mutex_lock(&s->lock);
        return ret < 0 ? ret : (int64_t)run.bytes;
    }

    /* Gather the clusters from first on that need new host clusters. */
    uint64_t n = 0;
    while (first + n <= last && n < MAX_ALLOC_CLUSTERS) {
        uint64_t entry;
        ret = qcow2_get_l2_entry(s, first + n, &entry);
        if (ret == 0) {
            ret = qcow2_classify(s, entry, &kind, &host);
        }
        if (ret < 0) {
            if (n == 0) {
                return ret;
            }
            break;
        }
        if (writable_in_place(entry, kind)) {
            break;
        }
        olds[n++] = entry;
    }

    uint64_t got;
    ret = qcow2_alloc_clusters(s, n, true, &host, &got);
    if (ret < 0) {
        return ret;
    }
    n = got;
    uint64_t seg_end = MIN(offset + len, (first + n) << s->cluster_bits);
    uint64_t bytes = seg_end - offset;

    ret = qcow2_overlap_check(s, 0, host, n * cs);
    if (ret < 0) {
        qcow2_free_clusters(s, host, n * cs);
        return ret;
    }
    qcow2_inflight_add(s, first, first + n);
    pthread_mutex_unlock(&s->lock);
    ret = write_new_clusters(node, s, offset, bytes, data, first, n, host,
                             olds);
    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = publish_clusters(s, first, n, host, olds);
    } else {
        qcow2_free_clusters(s, host, n * cs);
    }
    qcow2_inflight_remove(s, first);
    if (ret == 0) {
        ret = flush_if_many_frees(s);
    }
    return ret < 0 ? ret : (int64_t)bytes;
}

int qcow2_write(struct block_node *node, uint64_t offset, uint64_t len,
                const void *buf)
{
    struct qcow2_state *s = node->opaque;
    const uint8_t *p = buf;

    if (s->read_only) {
        return -EROFS;
    }
    pthread_mutex_lock(&s->lock);
    while (len > 0) {
        if (s->corrupt) {
            pthread_mutex_unlock(&s->lock);
            return -EIO;
        }
        int64_t done = write_step(node, s, offset, len, p);
        if (done < 0) {
            pthread_mutex_unlock(&s->lock);
            return done;
        }
        p += done;
        offset += done;
        len -= done;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The entry that makes a cluster read zeros, given its current entry. */
static uint64_t zero_entry(struct qcow2_state *s, uint64_t old,
                           enum qcow2_cluster_kind kind, bool unmap,
                           bool has_backing, bool *release)
{
    *release = false;
    if (s->version < 3) {
        /* Only reached without a backing file: unallocated reads zero. */
        *release = true;
        return 0;
    }
    if (unmap) {
        *release = true;
        return has_backing ? QCOW2_OFLAG_ZERO : 0;
    }
    if (kind == QCOW2_NORMAL && (old & QCOW2_OFLAG_COPIED)) {
        return old | QCOW2_OFLAG_ZERO;   /* keep the preallocation */
    }
    if (kind == QCOW2_ZERO || (kind == QCOW2_UNALLOCATED && !has_backing)) {
        return old;
    }
    *release = true;
    return QCOW2_OFLAG_ZERO;
}

/* Whether unallocated clusters read from a backing file: the header names
 * one.  Not node->backing: a node may be written without its backing
 * linked (a backup target whose backing is a layer of the disk, never
 * read because only whole clusters are written), and a zero write there
 * must still leave zero clusters, not unallocated ones that read the
 * backing file once the image is opened with it. */
static bool has_backing_file(const struct block_node *node)
{
    return node->backing != NULL || node->backing_name != NULL;
}

/* Make whole clusters [first, end) read zeros through metadata only. */
static int zero_clusters(struct block_node *node, struct qcow2_state *s,
                         uint64_t first, uint64_t end, bool unmap)
{
    bool has_backing = has_backing_file(node);
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    if (s->corrupt) {
        ret = -EIO;
    }
    while (first < end && ret == 0) {
        uint64_t chunk_end = MIN(end, first + clusters_in_l2(s, first));
        qcow2_inflight_wait(s, first, chunk_end);
        for (; first < chunk_end && ret == 0; first++) {
            uint64_t old, host;
            enum qcow2_cluster_kind kind;
            bool release;
            ret = qcow2_get_l2_entry(s, first, &old);
            if (ret == 0) {
                ret = qcow2_classify(s, old, &kind, &host);
            }
            if (ret < 0) {
                break;
            }
            uint64_t new = zero_entry(s, old, kind, unmap, has_backing,
                                      &release);
            if (new == old) {
                continue;
            }
            ret = qcow2_set_l2_entry(s, first, new);
            if (ret == 0 && release) {
                qcow2_release_entry(s, old);
            }
        }
        if (ret == 0) {
            ret = flush_if_many_frees(s);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int write_zero_buffers(struct block_node *node, uint64_t offset,
                              uint64_t len)
{
    const uint64_t chunk = 1 << 20;
    g_autofree uint8_t *zeros = g_malloc0(MIN(len, chunk));
    while (len > 0) {
        uint64_t n = MIN(len, chunk);
        int ret = qcow2_write(node, offset, n, zeros);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

int qcow2_write_zeroes(struct block_node *node, uint64_t offset,
                       uint64_t len, int flags)
{
    struct qcow2_state *s = node->opaque;
    const uint64_t cs = s->cluster_size;

    if (s->read_only) {
        return -EROFS;
    }
    if (len == 0) {
        return 0;
    }
    /* v2 has no zero flag: with a backing file, zeros must be written. */
    if (s->version < 3 && has_backing_file(node)) {
        return write_zero_buffers(node, offset, len);
    }
    uint64_t end = offset + len;
    uint64_t first = (offset + cs - 1) >> s->cluster_bits;
    /* The last cluster may stop at the end of the disk: it is whole. */
    uint64_t end_cluster = end >= node->size ?
                           (end + cs - 1) >> s->cluster_bits :
                           end >> s->cluster_bits;
    if (first >= end_cluster) {
        return write_zero_buffers(node, offset, len);
    }
    uint64_t whole_start = first << s->cluster_bits;
    uint64_t whole_end = MIN(end, end_cluster << s->cluster_bits);
    int ret = 0;
    if (offset < whole_start) {
        ret = write_zero_buffers(node, offset, whole_start - offset);
    }
    if (ret == 0) {
        ret = zero_clusters(node, s, first, end_cluster,
                            flags & BLOCK_ZERO_UNMAP);
    }
    if (ret == 0 && whole_end < end) {
        ret = write_zero_buffers(node, whole_end, end - whole_end);
    }
    return ret;
}

static int status_of(enum qcow2_cluster_kind kind)
{
    switch (kind) {
    case QCOW2_ZERO:
        return BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO;
    case QCOW2_NORMAL:
    case QCOW2_COMPRESSED:
        return BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA;
    default:
        return 0;
    }
}

int qcow2_block_status(struct block_node *node, uint64_t offset,
                       uint64_t len, uint64_t *pnum)
{
    struct qcow2_state *s = node->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t in_cluster = offset & (s->cluster_size - 1);
    uint64_t want = MIN((in_cluster + len + s->cluster_size - 1) >>
                        s->cluster_bits, MAX_STATUS_CLUSTERS);
    uint64_t seen = 0;
    int status = -1;
    int ret = 0;

    len = MIN(len, node->size - MIN(offset, node->size));
    if (len == 0) {
        *pnum = 0;
        return -EINVAL;
    }
    want = MIN((in_cluster + len + s->cluster_size - 1) >> s->cluster_bits,
               MAX_STATUS_CLUSTERS);
    pthread_mutex_lock(&s->lock);
    while (seen < want) {
        struct table_entry *table;
        uint64_t c = cluster + seen;
        uint64_t n = MIN(want - seen, clusters_in_l2(s, c));
        ret = get_l2_table(s, c, &table);
        if (ret < 0) {
            break;
        }
        uint64_t i = 0;
        bool stop = false;
        if (!table) {
            if (status > 0) {
                stop = true;
            } else {
                status = 0;
                i = n;
            }
        }
        for (; table && i < n; i++) {
            enum qcow2_cluster_kind kind;
            uint64_t host;
            ret = qcow2_classify(s, l2_at(table, c + i, s->l2_bits), &kind,
                                 &host);
            if (ret < 0) {
                stop = true;
                break;
            }
            int st = status_of(kind);
            if (status >= 0 && st != status) {
                stop = true;
                break;
            }
            status = st;
        }
        if (table) {
            table_cache_put(s->l2_cache, table);
        }
        seen += i;
        if (stop) {
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);

    if (seen == 0) {
        return ret < 0 ? ret : -EIO;
    }
    *pnum = MIN(len, (seen << s->cluster_bits) - in_cluster);
    return status;
}

int qcow2_flush_locked(struct qcow2_state *s)
{
    if (s->read_only) {
        return 0;
    }
    if (s->corrupt) {
        /* Nothing more is written; what was written is made durable, and
         * the flush fails if metadata that acknowledged writes need is
         * left behind in the caches. */
        if (table_cache_is_dirty(s->l2_cache) ||
            table_cache_is_dirty(s->refblock_cache)) {
            return -EIO;
        }
        return fdatasync(s->fd) < 0 ? -errno : 0;
    }
    int ret = qcow2_refcounts_sync(s);
    if (ret < 0) {
        return ret;
    }
    if (table_cache_is_dirty(s->l2_cache)) {
        ret = table_cache_flush(s->l2_cache);
        if (ret == 0 && fdatasync(s->fd) < 0) {
            ret = -errno;
        }
        if (ret < 0) {
            return ret;
        }
    }
    /* The L2 changes are durable: the clusters they dropped may be freed,
     * unless a request may still be using one of them. */
    if (s->pending_frees->len > 0 &&
        g_atomic_int_get(&s->data_io_in_flight) == 0) {
        ret = qcow2_apply_pending_frees(s);
        if (ret == 0) {
            ret = qcow2_refcounts_sync(s);
        }
    }
    return ret;
}

int qcow2_flush(struct block_node *node)
{
    struct qcow2_state *s = node->opaque;
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return ret;
}
