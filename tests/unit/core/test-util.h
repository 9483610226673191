/* Helpers shared by the core unit tests: scratch directories, files, and
 * running qemu-img / qemu-io as oracles. */
#ifndef CHAINFS_TEST_UTIL_H
#define CHAINFS_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

/* A new empty scratch directory (absolute path). */
char *test_dir_new(void);
/* Remove a scratch directory and everything in it. */
void test_dir_remove(const char *dir);

/* Write len bytes of data at offset into path, creating it if needed. */
void test_write_file(const char *path, const void *data, size_t len,
                     uint64_t offset);
/* Create path as a sparse file of size bytes. */
void test_create_sparse(const char *path, uint64_t size);

/* Run argv (NULL-terminated); returns true if it exited with status 0.
 * stderr_out (may be NULL) receives its stderr. */
bool test_run(const char *const *argv, char **stderr_out);

/* Whether a program is on PATH. */
bool test_have_program(const char *name);

/* qemu-img create -f qcow2 [-u] [-b backing [-F backing_fmt]] path size.
 * size 0: take the backing's size. */
void test_qcow2_create(const char *path, uint64_t size, const char *backing,
                       const char *backing_fmt);

/* Replace the first occurrence of a 4-byte big-endian value in the first
 * 64 KiB of path (to patch header extensions). */
void test_patch_be32(const char *path, uint32_t from, uint32_t to);

#endif
