#!/usr/bin/env bash
# lseek(SEEK_DATA/SEEK_HOLE) on the disk reports the data extents that
# `qemu-img map` reports for the chain: a sparse raw base, zero clusters
# and partially written clusters in the overlays.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse
requires_tool chainfs-extents

M=1048576
K=1024
truncate -s $((8 * M)) base.raw
dd_write base.raw 0 $((64 * K)) 1
dd_write base.raw $M $((128 * K)) 2
qcow2_create mid.qcow2 $((8 * M)) 65536 base.raw raw
qemu_io mid.qcow2 "write -P 3 $((2 * M)) $((64 * K))" \
    "write -z $((M + 64 * K)) $((64 * K))"
qcow2_create top.qcow2 $((8 * M)) 65536 mid.qcow2 qcow2
qemu_io top.qcow2 "write -P 4 $((3 * M + 100)) 10" \
    "write -P 5 $((5 * M)) $((256 * K))" "write -z 0 $((64 * K))" \
    "write -P 6 $((8 * M - 4 * K)) $((4 * K))"
data_extents top.qcow2 >expected.extents
[[ -s expected.extents ]] || fail "qemu-img map found no data"

start_chainfs mnt -d vm=top.qcow2
"$CHAINFS_TOOLS/chainfs-extents" mnt/vm >actual.extents ||
    fail "chainfs-extents failed"
stop_chainfs mnt

diff=$(diff expected.extents actual.extents) ||
    fail "data extents differ from qemu-img map (< qemu-img, > chainfs): $diff"
