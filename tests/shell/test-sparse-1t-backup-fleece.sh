#!/usr/bin/env bash
# backup sync=full of a sparse 1 TiB chain completes in seconds with the
# daemon's peak RSS under 64 MiB and the target reads as the disk; a
# fleece of it, with clusters overwritten all over the disk, keeps showing
# the old data within the same memory.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/sparse-1t-functions.sh"
requires qemu-img qemu-io
requires_fuse

make_sparse_chain
start_chainfs mnt -d vm=$tmpdir/top.qcow2
ctl_ok mnt/.jobs/ctl backup id=b1 disk=vm target=$tmpdir/b1.qcow2
echo "backup: $(wait_job_done mnt b1)s"
assert_rss_bound "$chainfs_pid" "backup"
stop_chainfs mnt
qemu_check b1.qcow2
out=$(qemu-img compare b1.qcow2 orig/top.qcow2 2>&1) ||
    fail "backup: the target differs from the disk: $out"

start_chainfs mnt -d vm=$tmpdir/top.qcow2
ctl_ok mnt/.jobs/ctl fleece id=f1 disk=vm
# Overwrite the first 64 KiB of every 64 GiB (data of every layer, and
# holes), after saving what was there.
for ((i = 0; i < 16; i++)); do
    dd if=mnt/vm of=before-$i.raw bs=64k skip=$((i * SPARSE_STEP / 65536)) \
        count=1 iflag=direct status=none
    dd_write mnt/vm $((i * SPARSE_STEP)) 65536 $((i + 160)) oflag=direct
done
for ((i = 0; i < 16; i++)); do
    dd if=mnt/vm@f1 of=view-$i.raw bs=64k skip=$((i * SPARSE_STEP / 65536)) \
        count=1 iflag=direct status=none
    cmp view-$i.raw before-$i.raw || fail "fleece: vm@f1 at $((i * SPARSE_STEP)) is not the old data"
done
assert_rss_bound "$chainfs_pid" "fleece"
ctl_ok mnt/.jobs/ctl cancel f1
wait_job_state mnt f1 concluded
stop_chainfs mnt
qemu_check top.qcow2
