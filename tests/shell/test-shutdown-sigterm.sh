#!/usr/bin/env bash
# SIGTERM shuts down cleanly: exit status 0, unmounted, the written data
# flushed and the image clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 4M /dev/urandom >base.raw
qcow2_create top.qcow2 4M 65536 base.raw raw
to_raw top.qcow2 expected.raw

start_chainfs mnt -d vm=top.qcow2
dd_write mnt/vm 1000 200000 3
dd_write expected.raw 1000 200000 3
signal_chainfs TERM mnt
assert_eq "$chainfs_status" 0 "exit status after SIGTERM"
! mountpoint -q mnt || fail "still mounted after SIGTERM"

qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "data after SIGTERM"
