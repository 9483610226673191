/* Helpers shared by the mirror tests: a scratch directory, a job list
 * with its event log, images and disks, a model of the guest-visible
 * content, and qemu-img as an oracle.  Every wait polls a state with a
 * timeout; nothing sleeps to synchronise. */
#ifndef CHAINFS_MIRROR_TEST_UTIL_H
#define CHAINFS_MIRROR_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/disk.h"
#include "jobs/job.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define TIMEOUT_US (60 * G_USEC_PER_SEC)

struct fixture {
    char *dir;
    struct event_log *log;
    struct job_list *list;
};

/* cmocka setup/teardown: scratch dir, event log, job list. */
int mirror_setup(void **state);
int mirror_teardown(void **state);

/* dir/name (g_free it). */
char *path_in(struct fixture *f, const char *name);
/* Create an image with our drivers (cluster 0: default). */
void create_image(const char *path, const char *format, uint64_t size,
                  uint32_t cluster_size, const char *backing,
                  const char *backing_format);
/* chain_open + disk_new as "vm1", read-write. */
struct disk *open_disk(const char *path);

/* Write len bytes of a pattern derived from seed at offset through the
 * disk and into model (which mirrors the guest view). */
void write_pattern(struct disk *disk, uint8_t *model, uint64_t offset,
                   uint64_t len, unsigned seed);
/* Write len zero bytes at offset through the disk as data (not as a zero
 * write: a qcow2 layer then holds data clusters full of zeros), and into
 * model. */
void write_zeros_as_data(struct disk *disk, uint8_t *model, uint64_t offset,
                         uint64_t len);
/* Bytes of [offset, offset + len) that node itself reports as data
 * (BLOCK_STATUS_DATA of its own block status, the backing not asked). */
uint64_t node_data_bytes(struct block_node *node, uint64_t offset,
                         uint64_t len);
/* Assert node itself makes [offset, offset + len) read zeros, without
 * data: allocated as zero clusters (with a backing file that could show
 * through), or unallocated without a backing file. */
void assert_node_zero_no_data(struct block_node *node, uint64_t offset,
                              uint64_t len);
/* Assert the disk reads exactly model (size bytes). */
void assert_disk_equals(struct disk *disk, const uint8_t *model,
                        uint64_t size);
/* Assert the image chain at path reads exactly model. */
void assert_image_equals(const char *path, const uint8_t *model,
                         uint64_t size);

/* Parse `text` as a command and start a mirror of disk; fails the test on
 * error. */
struct job *start_mirror(struct fixture *f, struct disk *disk,
                         const char *text);
/* Parse and start, expecting an error with code; returns its message. */
char *start_mirror_error(struct fixture *f, struct disk *disk,
                         const char *text, int code);

void wait_state(struct job *job, enum job_state state);
/* The events so far, without time stamps. */
char *events_text(struct fixture *f);
/* Wait until the events contain needle. */
void wait_event(struct fixture *f, const char *needle);
/* A status line's value ("key: value"), g_free it. */
char *status_value(struct job *job, const char *key);

/* Whether qemu-img is available (tests using it skip otherwise). */
bool have_qemu_img(void);
/* qemu-img compare / check exit 0 (asserted). */
void assert_qemu_img_compare(const char *a, const char *b);
void assert_qemu_img_check(const char *path);
/* Bytes qemu-img map reports as data in path's top layer and below. */
uint64_t qemu_img_data_bytes(const char *path);

/* The lowest fd of this process open on path, or -1. */
int fd_of(const char *path);

#endif
