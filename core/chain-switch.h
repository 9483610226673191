/* chainfs: chain changes that the control plane makes on a live disk.
 *
 * Each function drains the disk (disk.h) for the moment of the switch:
 * guest requests in flight finish first, new ones wait and then see the
 * new chain, so no write is lost.  Callers make sure nothing else changes
 * the disk's chain at the same time (op blockers, blocker.h).
 */
#ifndef CHAINFS_CHAIN_SWITCH_H
#define CHAINFS_CHAIN_SWITCH_H

#include <stdbool.h>
#include <glib.h>

#include "core/block.h"
#include "core/disk.h"

/* Put overlay (an open, writable layer without a backing node and of the
 * disk's size) on top of the disk's chain: the old top is flushed and
 * becomes overlay's read-only backing layer (QEMU's reader locks), and the
 * disk owns overlay.  On error (naming the file) nothing changed and
 * overlay still belongs to the caller. */
bool chain_push_overlay(struct disk *disk, struct block_node *overlay,
                        GError **errp) __attribute__((nonnull(1, 2)));

#endif
