/* chainfs qcow2 unit tests: shared helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "core/layer-map.h"
#include "core/owner-map.h"
#include "qcow2-test-util.h"

char *tu_tmpdir(void)
{
    GError *err = NULL;
    char *dir = g_dir_make_tmp("chainfs-qcow2-XXXXXX", &err);
    g_assert_no_error(err);
    return dir;
}

void tu_rmdir(char *dir)
{
    if (g_getenv("QCOW2_TEST_KEEP")) {
        g_printerr("keeping %s\n", dir);
        g_free(dir);
        return;
    }
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_unlink(path);
    }
    if (d) {
        g_dir_close(d);
    }
    g_rmdir(dir);
    g_free(dir);
}

bool tu_have_qemu(void)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *io = g_find_program_in_path("qemu-io");
    return img && io;
}

int tu_runv(char **out, char **argv)
{
    int status = -1;
    char *stdout_buf = NULL;
    GError *err = NULL;
    if (!g_spawn_sync(NULL, argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                      NULL, NULL, &stdout_buf, NULL, &status, &err)) {
        g_clear_error(&err);
        return -1;
    }
    if (out) {
        *out = stdout_buf;
    } else {
        g_free(stdout_buf);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tu_run(char **out, const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, (char *)a);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    int ret = tu_runv(out, (char **)argv->pdata);
    g_ptr_array_free(argv, true);
    return ret;
}

int tu_check(const char *path, char **out)
{
    return tu_run(out, "qemu-img", "check", "-f", "qcow2", path, NULL);
}

struct block_node *tu_open(const char *path,
                           const struct block_driver *drv, bool read_only,
                           struct block_node *backing, GError **errp)
{
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(errp, CHAINFS_ERROR, errno, "%s: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    struct block_node *node = g_new0(struct block_node, 1);
    node->driver = drv;
    node->fd = fd;
    node->filename = g_strdup(path);
    node->read_only = read_only;
    node->backing = backing;
    if (backing) {
        backing->depth = 1;
    }
    if (!drv->open(node, errp)) {
        close(fd);
        g_free(node->filename);
        g_free(node->backing_name);
        g_free(node->backing_format);
        g_free(node);
        return NULL;
    }
    return node;
}

int tu_close(struct block_node *node)
{
    int first = 0;
    while (node) {
        struct block_node *backing = node->backing;
        int ret = node->driver->close(node);
        if (ret < 0 && first == 0) {
            first = ret;
        }
        /* What reads through the chain built for the node. */
        layer_map_clear(node);
        owner_map_clear(node);
        close(node->fd);
        g_free(node->filename);
        g_free(node->backing_name);
        g_free(node->backing_format);
        g_free(node);
        node = backing;
    }
    return first;
}

void tu_fill(void *buf, size_t len, uint32_t seed)
{
    uint8_t *p = buf;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = x;
    }
}
