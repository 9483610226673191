/* chainfs qcow2: reading compressed clusters (zlib raw deflate), and the
 * pread used for data clusters. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "qcow2.h"

void qcow2_compressed_range(struct qcow2_state *s, uint64_t l2_entry,
                            uint64_t *offset, uint64_t *len)
{
    unsigned offset_bits = 62 - (s->cluster_bits - 8);
    uint64_t offset_mask = (1ull << offset_bits) - 1;
    uint64_t sectors_mask = (1ull << (s->cluster_bits - 8)) - 1;
    uint64_t host = l2_entry & offset_mask;
    uint64_t sectors = ((l2_entry >> offset_bits) & sectors_mask) + 1;

    /* The descriptor holds references on whole 512-byte sectors. */
    *offset = host;
    *len = sectors * 512 - (host & 511);
}

int qcow2_pread_data(int fd, void *buf, size_t len, uint64_t offset)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            /* The tail of the last cluster may be missing from the file;
             * callers have checked that the cluster starts inside it. */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        len -= n;
        offset += n;
    }
    return 0;
}

int qcow2_read_compressed(struct qcow2_state *s, uint64_t l2_entry,
                          uint8_t *out)
{
    uint64_t offset, len;
    qcow2_compressed_range(s, l2_entry, &offset, &len);

    g_autofree uint8_t *in = g_malloc(len);
    int ret = qcow2_pread_data(s->fd, in, len, offset);
    if (ret < 0) {
        return ret;
    }

    z_stream strm = {
        .next_in = in,
        .avail_in = len,
        .next_out = out,
        .avail_out = s->cluster_size,
    };
    if (inflateInit2(&strm, -15) != Z_OK) {
        return -ENOMEM;
    }
    ret = inflate(&strm, Z_FINISH);
    bool complete = (ret == Z_STREAM_END || ret == Z_BUF_ERROR) &&
                    strm.avail_out == 0;
    inflateEnd(&strm);
    /* Decompression must produce exactly one cluster; anything else is a
     * damaged descriptor or damaged data. */
    return complete ? 0 : -EIO;
}
