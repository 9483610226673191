/* libFuzzer target: open a hostile qcow2 image and use it.
 *
 * Each input is written to a file and opened as one qcow2 layer with
 * block_node_open (never chain_open: a backing file name is only
 * recorded, no other file is opened).  Read-only: a few reads, a walk of
 * block_status over the disk.  Read-write on a second copy: a few writes,
 * a zeroing, a flush and the close, which exercise cluster allocation and
 * refcount updates on whatever metadata the input holds.  Both passes
 * list the persistent bitmaps and read them; the read-write one stores
 * them back, marked in use, then with the bits read, then removes them
 * all (bitmap tables and directories of any shape).  Every failure
 * must be a clean error; ASan and UBSan catch the rest.  The file
 * descriptor count must be the same after each input (nothing leaked,
 * nothing else opened and kept).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/block.h"
#include "core/chain.h"
#include "core/dirty-bitmap.h"
#include "drivers/qcow2/qcow2.h"

/* No request larger than this: a hostile size must not make the harness
 * itself allocate gigabytes. */
#define MAX_REQUEST (128u << 10)
#define MAX_STATUS_STEPS 64
/* Bitmaps with more chunks than this are not read (harness memory). */
#define MAX_BITMAP_CHUNKS (1u << 22)
#define MAX_BITMAPS_USED 8

static char *image_path;
static uint8_t *buffer;

static unsigned open_fd_count(void)
{
    unsigned n = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) {
        abort();
    }
    while (readdir(dir)) {
        n++;
    }
    closedir(dir);
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *dir = g_strdup_printf("%s/chainfs-fuzz.XXXXXX", base);
    if (!g_mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    image_path = g_build_filename(dir, "image.qcow2", NULL);
    /* Tiny caches: every table access goes through eviction and
     * write-back, where ordering bugs live. */
    qcow2_l2_cache_bytes = 0;
    qcow2_refblock_cache_bytes = 0;
    buffer = g_malloc(MAX_REQUEST);
    g_free(dir);
    return 0;
}

static void write_image(const uint8_t *data, size_t size)
{
    int fd = open(image_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size && host_pwrite(fd, data, size, 0) < 0)) {
        abort();
    }
    close(fd);
}

/* A few request offsets derived from the disk size and the input. */
static uint64_t pick_offset(struct block_node *node, unsigned which,
                            const uint8_t *data, size_t size)
{
    uint64_t seed = size > 8 ? data[size - 1] * 0x9e3779b97f4a7c15ull : 0;
    switch (which) {
    case 0: return 0;
    case 1: return node->size / 2;
    case 2: return node->size > MAX_REQUEST ? node->size - MAX_REQUEST : 0;
    default: return node->size ? seed % node->size : 0;
    }
}

/* List the bitmaps, read the readable ones, and on a writable image
 * store them back in use, then with their bits, then none. */
static void use_bitmaps(struct block_node *node)
{
    const struct block_driver *drv = node->driver;
    GError *err = NULL;
    GPtrArray *list = drv->bitmaps_list(node, &err);
    if (!list) {
        g_clear_error(&err);
        return;
    }
    struct block_bitmap_entry entries[MAX_BITMAPS_USED];
    size_t n = 0;
    for (guint i = 0; i < list->len && n < MAX_BITMAPS_USED; i++) {
        struct block_bitmap_info *info = g_ptr_array_index(list, i);
        if (node->size / info->granularity > MAX_BITMAP_CHUNKS) {
            continue;
        }
        struct dirty_bitmap *bits = dirty_bitmap_new(node->size,
                                                     info->granularity);
        if (!info->in_use && !drv->bitmap_read(node, info->name, bits,
                                               &err)) {
            g_clear_error(&err);
        }
        entries[n++] = (struct block_bitmap_entry){
            info->name, info->granularity, info->enabled, true, bits };
    }
    if (!node->read_only && drv->bitmaps_supported(node, &err)) {
        for (int round = 0; round < 2; round++) {
            if (!drv->bitmaps_store(node, entries, n, &err)) {
                g_clear_error(&err);
            }
            for (size_t i = 0; i < n; i++) {
                entries[i].in_use = false;
            }
        }
        if (!drv->bitmaps_store(node, NULL, 0, &err)) {
            g_clear_error(&err);
        }
    }
    g_clear_error(&err);
    for (size_t i = 0; i < n; i++) {
        dirty_bitmap_free(entries[i].bits);
    }
    g_ptr_array_unref(list);
}

static void use_read_only(struct block_node *node, const uint8_t *data,
                          size_t size)
{
    use_bitmaps(node);
    for (unsigned i = 0; i < 4; i++) {
        uint64_t offset = pick_offset(node, i, data, size);
        uint64_t len = MIN(MAX_REQUEST, node->size - offset);
        if (len) {
            (void)node->driver->read(node, offset, len, buffer);
        }
    }

    uint64_t offset = 0;
    for (unsigned steps = 0; steps < MAX_STATUS_STEPS && offset < node->size;
         steps++) {
        uint64_t pnum = 0;
        int flags = node->driver->block_status(node, offset,
                                               node->size - offset, &pnum);
        if (flags < 0) {
            break;
        }
        if (pnum == 0 || pnum > node->size - offset) {
            abort();    /* block_status broke its contract */
        }
        offset += pnum;
    }
}

static void use_read_write(struct block_node *node, const uint8_t *data,
                           size_t size)
{
    memset(buffer, 0xa5, MAX_REQUEST);
    for (unsigned i = 0; i < 4; i++) {
        uint64_t offset = pick_offset(node, i, data, size);
        uint64_t len = MIN(i == 0 ? 4096 : 70000, node->size - offset);
        if (len && node->driver->write(node, offset, len, buffer) < 0) {
            break;
        }
    }
    if (node->size > 8192) {
        (void)block_node_write_zeroes(node, 4096, 4096, BLOCK_ZERO_UNMAP);
        (void)block_node_write_zeroes(node, node->size / 2, 4096, 0);
    }
    (void)node->driver->flush(node);
    use_bitmaps(node);
    uint64_t len = MIN(MAX_REQUEST, node->size);
    if (len) {
        (void)node->driver->read(node, 0, len, buffer);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned fds_before = open_fd_count();

    write_image(data, size);
    GError *err = NULL;
    struct block_node *node = block_node_open(image_path, "qcow2", true,
                                              &err);
    if (node) {
        if (node->backing) {
            abort();    /* one layer: a backing name is only recorded */
        }
        use_read_only(node, data, size);
        block_node_close(node);
    } else {
        g_clear_error(&err);
    }

    /* The read-only pass must not have touched the file; write a fresh
     * copy anyway so the read-write pass sees exactly the input. */
    write_image(data, size);
    node = block_node_open(image_path, "qcow2", false, &err);
    if (node) {
        use_read_write(node, data, size);
        block_node_close(node);
    } else {
        g_clear_error(&err);
    }

    if (open_fd_count() != fds_before) {
        abort();    /* a file descriptor leaked */
    }
    return 0;
}
