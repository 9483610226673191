#!/usr/bin/env bash
# Randomized differential test on 512-byte clusters over a 64K-cluster
# qcow2: many L2 tables and refcount blocks get allocated.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 8M 65536
qemu_io base.qcow2 "write -P 9 0 8M"
qcow2_create top.qcow2 8M 512 base.qcow2 qcow2
run_fuzz top.qcow2 512 4 8000 base.qcow2
