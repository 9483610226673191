/* chainfs: the stream job (INTERFACE.md sections 3-5), as QEMU's stream.
 *
 * A stream copies into the disk's top layer every range that a layer
 * between the top and `base` allocates and the top does not, found by
 * block status so that the cost follows the allocated data, not the
 * virtual size.  Then, under a drain, the top's header is rewritten to
 * back onto base (its path, or backing-file=) with base's format, and the
 * layers in between leave the chain (closed; their files untouched).
 * Without base the whole chain is flattened into the top, and guest reads
 * meanwhile copy what they read into the top (copy-on-read).  Copies into
 * the top never overwrite a newer guest write: each copy holds its range
 * against guest writes (a disk write hook) and re-reads the top's
 * allocation under it.  Cancel or failure leaves the chain as it was (the
 * top's extra data reads the same).
 *
 * WHAT THE CALLER (the control plane) MUST CHECK BEFORE stream_start:
 *  - cmd was parsed by command_parse and cmd->verb is COMMAND_STREAM;
 *  - cmd->disk names `disk` (ENOENT otherwise); the disk is not read-only;
 *  - --allow-dir does not apply: base= names a layer already in use;
 *  - op blockers: no other job uses this disk's chain (EBUSY naming it).
 *    While the job is not concluded nothing else may change the disk's
 *    chain, write the top's header, or use the layers from the top down to
 *    just above base (they are read without io_lock and closed at the
 *    end); base itself is only read and stays.  Build the blocker from the
 *    disk and those layers and hand it over with job_attach_blocker.
 * stream_start itself checks: base is a layer of the disk below the top
 * (ENOENT "layer PATH is not in the chain of disk 'NAME'", EINVAL if it is
 * the top), backing-file only with base (EINVAL), a top format that can
 * record a backing file (ENOTSUP).
 */
#ifndef CHAINFS_STREAM_H
#define CHAINFS_STREAM_H

#include <glib.h>

#include "core/disk.h"
#include "jobs/command.h"
#include "jobs/job.h"

/* The most bytes one copy holds from guest writes and copies at once,
 * and at most this many copies run at once: 1 MiB in flight keeps a
 * source with some latency busy, and each copy in flight costs a pool
 * thread and its buffer in resident memory (16 copies measured 13 MiB of
 * peak RSS for a stream against 10.6 MiB for 4, with the same time on
 * the bench machine, where the two CPUs are the limit: see
 * tests/bench/README.md). */
#define STREAM_CHUNK_BYTES (256 * 1024)
#define STREAM_MAX_IN_FLIGHT 4

/* Validate cmd against disk and start the job (state running).  Returns
 * the job with a reference for the caller (job_unref it), or NULL with
 * errp set (code an errno) and nothing changed.  The disk must outlive the
 * job (until it is concluded). */
struct job *stream_start(struct job_list *list, struct disk *disk,
                         const struct command *cmd, GError **errp)
    __attribute__((nonnull(1, 2, 3)));

#endif
