#!/usr/bin/env bash
# st_blocks of the disk counts the chain's data (what qemu-img map calls
# data) in 512-byte units, so du sees the holes.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io du
requires_fuse

M=1048576
truncate -s $((64 * M)) base.raw
dd_write base.raw $M $M 1
qcow2_create top.qcow2 $((64 * M)) 65536 base.raw raw
qemu_io top.qcow2 "write -P 2 $((10 * M + 5)) 10" \
    "write -P 3 $((20 * M)) $((3 * M))" "write -z $M 65536"
data_bytes=$(data_extents top.qcow2 | awk '{ n += $2 } END { print n + 0 }')
((data_bytes >= 4 * M)) || fail "unexpected data size $data_bytes"

start_chainfs mnt -d vm=top.qcow2
assert_eq "$(stat -c %b mnt/vm)" $((data_bytes / 512)) "st_blocks"
assert_eq "$(stat -c %B mnt/vm)" 512 "st_blocks unit"
assert_eq "$(du -B1 mnt/vm | cut -f1)" "$data_bytes" "du of the disk"
stop_chainfs mnt
