/* chainfs: chain changes made on a live disk (see chain-switch.h). */
#include "core/chain-switch.h"

#include <errno.h>

#include "core/chain.h"
#include "core/named-bitmap.h"

bool chain_push_overlay(struct disk *disk, struct block_node *overlay,
                        GError **errp)
{
    struct block_node *old_top;
    int ret;

    g_assert(!overlay->backing && !overlay->read_only);
    /* Flush once without draining, so the flush under the drain (in
     * block_node_make_backing) finds little left and guests wait less. */
    ret = disk_flush(disk);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot flush: %s",
                    disk->top->filename, g_strerror(-ret));
        return false;
    }

    disk_drain_begin(disk);
    old_top = disk->top;
    /* While the old top is still writable: its bitmaps leave it. */
    named_bitmaps_move_drained(disk, old_top, overlay);
    if (!block_node_make_backing(old_top, errp)) {
        named_bitmaps_move_drained(disk, overlay, old_top);
        disk_drain_end(disk);
        return false;
    }
    overlay->backing = old_top;
    /* Nothing leaves the chain, so nothing is closed and this cannot
     * fail. */
    ret = disk_switch_top_drained(disk, overlay);
    g_assert(ret == 0);
    disk_drain_end(disk);
    return true;
}
