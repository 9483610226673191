/* chainfs qcow2 unit tests: shared helpers (temp dirs, qemu-img, nodes). */
#ifndef CHAINFS_QCOW2_TEST_UTIL_H
#define CHAINFS_QCOW2_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/block.h"
#include "drivers/qcow2/qcow2.h"

extern const struct block_driver raw_driver;

/* A fresh temp directory for one test, removed by tu_rmdir. */
char *tu_tmpdir(void);
void tu_rmdir(char *dir);

/* True if qemu-img and qemu-io are installed. */
bool tu_have_qemu(void);

/* Run argv; returns the exit status (-1 if it could not run), stdout in
 * *out if out is not NULL. */
int tu_run(char **out, const char *first, ...) G_GNUC_NULL_TERMINATED;

/* Run a NULL-terminated argv, as tu_run. */
int tu_runv(char **out, char **argv);

/* `qemu-img check` exit status (0: clean; 3: leaks only); stdout in out. */
int tu_check(const char *path, char **out);

/* Open one layer with driver drv, without locking (tests only). */
struct block_node *tu_open(const char *path,
                           const struct block_driver *drv, bool read_only,
                           struct block_node *backing, GError **errp);
/* Close a node and its backing chain; returns the first close error. */
int tu_close(struct block_node *node);

/* Fill buf with a pattern derived from seed. */
void tu_fill(void *buf, size_t len, uint32_t seed);

#endif
