#!/usr/bin/env bash
# A small write into an unallocated 2M cluster copies the rest of the
# cluster from the backing chain (copy-on-write), also where the backing
# file ends inside the cluster.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
mkdir img
head -c $((3 * M)) /dev/urandom >img/base.raw   # ends inside cluster 1
qcow2_create img/top.qcow2 $((8 * M)) 2097152 base.raw raw
cp -a img ref

start_chainfs mnt -d vm=img/top.qcow2
dd_write mnt/vm $((M + 1234)) 512 99               # inside cluster 0
dd_write mnt/vm $((3 * M + 7)) 100 98              # cluster 1, past base
dd_write mnt/vm $((6 * M - 1)) 2 97                # across clusters 2 and 3
stop_chainfs mnt

qemu_io ref/top.qcow2 "write -P 99 $((M + 1234)) 512" \
    "write -P 98 $((3 * M + 7)) 100" "write -P 97 $((6 * M - 1)) 2"
qemu_check img/top.qcow2
out=$(qemu-img compare img/top.qcow2 ref/top.qcow2 2>&1) ||
    fail "chain differs from the reference: $out"
# The written clusters now hold the data themselves: the base alone no
# longer decides them.
qemu-img map --output=json img/top.qcow2 | grep -q '"start": 0, "length": [0-9]*, "depth": 0' ||
    fail "cluster 0 not allocated in the top layer: $(qemu-img map img/top.qcow2)"
