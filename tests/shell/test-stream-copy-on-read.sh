#!/usr/bin/env bash
# While a whole-chain stream runs, guest reads copy what they read into
# the top (copy-on-read): after a crawling stream is cancelled, the top
# holds the ranges that were read, the chain is unchanged, and the guest
# view never changed.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x21 12M 64k"
to_raw top.qcow2 before.raw
base_md5=$(md5sum base.raw)
start_chainfs mnt -d vm=top.qcow2

# 1 byte/s: the stream copies its first chunk at most, then sleeps.
ctl_ok mnt/.jobs/ctl stream id=s1 disk=vm speed=1
wait_job_state mnt s1 running
dd if=mnt/vm of=read.raw bs=1M skip=8 count=1 status=none
cmp -n 1048576 -i 8388608:0 before.raw read.raw >/dev/null || fail "the read returned other data"
ctl_ok mnt/.jobs/ctl cancel s1
wait_job_state mnt s1 concluded
assert_eq "$(job_key mnt s1 result)" cancelled "result of s1"
assert_chain mnt vm "$tmpdir/top.qcow2" "$tmpdir/base.raw"
stop_chainfs mnt

qemu_check top.qcow2
assert_eq "$(md5sum base.raw)" "$base_md5" "base.raw modified"
out=$(qemu-img compare -F raw top.qcow2 before.raw 2>&1) || fail "the chain after unmount: $out"
own=$(own_extents top.qcow2)
# (The kernel's readahead may have read, and so copied, a little more.)
awk '{ for (i = 1; i < NF; i += 2) if ($i <= 8388608 && $i + $(i + 1) >= 9437184) ok = 1 }
     END { exit !ok }' <<<"$own" ||
    fail "the range read [8M, 9M) was not copied into the top: top's data: $own"
