#!/usr/bin/env bash
# The same as test-client-ext4-jobs.sh with the loop device in direct I/O
# mode (losetup --direct-io=on): the kernel sends the ext4's I/O to the
# chainfs disk with O_DIRECT, bypassing the page cache of the disk file,
# as QEMU with cache=none does.
: "${CHAINFS_TIMEOUT:=60}"
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/client-functions.sh"
requires qemu-img mkfs.ext4 e2fsck md5sum
requires_fuse
requires_loop

ext4_jobs_test --direct-io=on
