#!/usr/bin/env bash
# backup sync=top, where the top holds zeros over a backing that holds
# data (a zero cluster, a discarded range): the new target backs onto the
# top's backing, so those ranges must be zero clusters in it, not holes
# through which the backing's data shows.  (Found by test-soak.sh.)
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 4M 65536
qemu_io base.qcow2 "write -P 0x11 0 4M"
qcow2_create top.qcow2 4M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -z 64k 64k" "discard 256k 64k" "write -P 0x22 512k 64k"
to_raw top.qcow2 instant.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=b1 disk=vm target=$tmpdir/b1.qcow2 sync=top
wait_job_state mnt b1 concluded
assert_eq "$(job_key mnt b1 result)" completed "result"
ctl_ok $ctl dismiss b1
stop_chainfs mnt
qemu_check b1.qcow2
assert_eq "$(qemu_chain b1.qcow2)" "$tmpdir/b1.qcow2 $tmpdir/base.qcow2" "chain of the target"
out=$(qemu-img compare -F raw b1.qcow2 instant.raw 2>&1) ||
    fail "the target is not the disk at its instant: $out ($(qemu-img map b1.qcow2 | tr '\n' ' '))"
