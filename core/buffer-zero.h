/* chainfs: whether a buffer holds only zero bytes.
 *
 * The copy jobs read a chunk, then ask this before writing it: a chunk of
 * zeros becomes a zero write (a hole or a zero cluster) instead of data.
 * No state, no locking.
 */
#ifndef CHAINFS_BUFFER_ZERO_H
#define CHAINFS_BUFFER_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the len bytes at buf are all zero (true for len 0).  The first
 * bytes are checked on their own first, as data rarely starts with many
 * zeros; the rest a machine word at a time. */
bool buffer_is_zero(const void *buf, size_t len)
    __attribute__((nonnull(1)));

#endif
