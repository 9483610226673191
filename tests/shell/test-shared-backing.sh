#!/usr/bin/env bash
# Two disks whose chains share a backing file: both mount, writes to one
# never show in the other, and the shared base is not modified.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 2M /dev/urandom >base.raw
qcow2_create a.qcow2 2M 65536 base.raw raw
qcow2_create b.qcow2 2M 4096 base.raw raw
base_sum=$(md5sum base.raw)

start_chainfs mnt -d a=a.qcow2 -d b=b.qcow2
dd_write mnt/a 4096 8192 1
dd_write mnt/b 8192 8192 2
assert_equal_files <(head -c 4096 mnt/a) <(head -c 4096 base.raw) "a's first 4K"
cmp -s -n 8192 -i 4096:0 mnt/a <(pattern 8192 1) || fail "a lost its write"
cmp -s -n 8192 -i 8192:8192 mnt/b base.raw && fail "b sees nothing written"
cmp -s -n 8192 -i 8192:0 mnt/b <(pattern 8192 2) || fail "b lost its write"
cmp -s -n 4096 -i 16384:16384 mnt/a base.raw || fail "a shows b's write"
stop_chainfs mnt

assert_eq "$(md5sum base.raw)" "$base_sum" "shared base"
qemu_check a.qcow2
qemu_check b.qcow2
