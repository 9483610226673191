#!/usr/bin/env bash
# Randomized differential test on three layers with different cluster
# sizes (raw, 4K, 2M on top) and a base shorter than the disk.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 6M /dev/urandom >base.raw
qcow2_create mid.qcow2 12M 4096 base.raw raw
qemu_io mid.qcow2 "write -P 1 1M 2M" "write -z 4M 64K" "write -P 2 7M 3M"
qcow2_create top.qcow2 16M 2097152 mid.qcow2 qcow2
qemu_io top.qcow2 "write -P 3 2M 100K"
run_fuzz top.qcow2 2097152 3 8000 base.raw mid.qcow2
