#!/usr/bin/env bash
# Randomized differential test on a qcow2 (64K clusters) over a raw base
# with data everywhere: every partial write copies backing data.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 base.raw raw
run_fuzz top.qcow2 65536 2 8000 base.raw
