/* chainfs: the format drivers the core knows, in probing order. */
#include "core/block.h"

extern const struct block_driver qcow2_driver;
extern const struct block_driver raw_driver;
extern const struct block_driver fault_driver;    /* never probed */
extern const struct block_driver nbd_driver;      /* URIs only */

/* raw accepts anything, so it is probed last. */
const struct block_driver *const block_drivers[] = {
    &qcow2_driver,
    &fault_driver,
    &nbd_driver,
    &raw_driver,
    NULL,
};
