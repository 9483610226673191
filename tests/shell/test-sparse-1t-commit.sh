#!/usr/bin/env bash
# commit (intermediate: mid into base; active: top and mid into base) of a
# sparse 1 TiB chain (a few MiB allocated) completes in seconds with the
# daemon's peak RSS under 64 MiB, and the disk reads as before.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/sparse-1t-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_sparse_chain
for kind in intermediate active; do
    fresh_sparse_chain
    start_chainfs mnt -d vm=$tmpdir/top.qcow2
    if [[ $kind == intermediate ]]; then
        ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm top=$tmpdir/mid.qcow2 base=$tmpdir/base.qcow2
    else
        ctl_ok mnt/.jobs/ctl commit id=c1 disk=vm base=$tmpdir/base.qcow2
    fi
    echo "commit, $kind: $(wait_job_done mnt c1)s"
    assert_rss_bound "$chainfs_pid" "commit, $kind"
    if [[ $kind == intermediate ]]; then
        assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.qcow2"
        img=top.qcow2
    else
        assert_chain mnt vm "$tmpdir/base.qcow2"
        img=base.qcow2
    fi
    stop_chainfs mnt
    qemu_check base.qcow2
    out=$(qemu-img compare $img orig/top.qcow2 2>&1) ||
        fail "commit, $kind: $img differs from the disk before: $out"
done
