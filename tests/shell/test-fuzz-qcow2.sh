#!/usr/bin/env bash
# Randomized differential test on a single qcow2 layer (64K clusters).
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create top.qcow2 16M 65536
qemu_io top.qcow2 "write -P 1 1M 3M" "write -z 8M 1M"
run_fuzz top.qcow2 65536 1 8000
