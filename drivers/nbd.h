/* chainfs: settings of the nbd driver (drivers/nbd.c) that the daemon
 * chooses at startup, before any export is opened.
 */
#ifndef CHAINFS_NBD_H
#define CHAINFS_NBD_H

#include <stdint.h>

/* The default per-request timeout. */
#define NBD_DEFAULT_REQUEST_TIMEOUT_MS (30 * 1000)

/* How long a request may wait for the server's reply (0: forever).  Past
 * it the request fails with EIO and its connection is dropped, so that
 * the next request reconnects; a connection attempt is bounded by it
 * too.  For every export opened afterwards. */
void nbd_set_request_timeout_ms(uint64_t timeout_ms);

#endif
