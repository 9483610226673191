#!/usr/bin/env bash
# mirror sync=full and sync=top of a sparse 1 TiB chain (a few MiB
# allocated) complete in seconds with the daemon's peak RSS under 64 MiB,
# and the target reads as the disk did.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/sparse-1t-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_sparse_chain
for sync in full top; do
    fresh_sparse_chain
    start_chainfs mnt -d vm=$tmpdir/top.qcow2
    ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t-$sync.qcow2 sync=$sync
    echo "mirror sync=$sync: $(wait_job_done mnt m1)s"
    assert_rss_bound "$chainfs_pid" "mirror sync=$sync"
    assert_chain mnt vm "$tmpdir/t-$sync.qcow2" \
        $([[ $sync == top ]] && echo "$tmpdir/mid.qcow2 $tmpdir/base.qcow2")
    stop_chainfs mnt
    qemu_check t-$sync.qcow2
    out=$(qemu-img compare t-$sync.qcow2 orig/top.qcow2 2>&1) ||
        fail "mirror sync=$sync: the target differs from the disk: $out"
done
