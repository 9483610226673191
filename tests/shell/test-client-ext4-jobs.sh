#!/usr/bin/env bash
# ext4 on a buffered loop device over a chainfs disk, as a container
# runtime would use it: a file tree and a writer that keeps replacing
# files (fsync, rename) through a snapshot, an active commit, a mirror
# and a stream.  After each job every file reads back and e2fsck -fn is
# clean; at the end the final chain, converted to raw, is the same clean
# ext4.
: "${CHAINFS_TIMEOUT:=60}"
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/client-functions.sh"
requires qemu-img mkfs.ext4 e2fsck md5sum
requires_fuse
requires_loop

ext4_jobs_test
