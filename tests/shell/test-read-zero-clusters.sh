#!/usr/bin/env bash
# Zero clusters (qcow2 v3 zero flag, with and without an allocation) and
# discarded clusters hide or reveal the backing data as qemu-img says.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
head -c $((4 * M)) /dev/urandom >base.raw
qcow2_create mid.qcow2 $((4 * M)) 65536 base.raw raw
qemu_io mid.qcow2 "write -P 1 0 $M" "write -z $((256 * 1024)) 131072"
qcow2_create top.qcow2 $((4 * M)) 65536 mid.qcow2 qcow2
qemu_io top.qcow2 \
    "write -P 2 $((M / 2)) $M" \
    "write -z $((M / 2)) 65536" \
    "write -z -u $((M / 2 + 131072)) 65536" \
    "discard $((M / 2 + 262144)) 65536" \
    "write -z $((3 * M)) 196608"
to_raw top.qcow2 expected.raw

start_chainfs mnt -d vm=top.qcow2
assert_equal_files mnt/vm expected.raw "chain with zero clusters"
assert_zeros mnt/vm $((M / 2)) 65536
assert_zeros mnt/vm $((3 * M)) 196608
stop_chainfs mnt
