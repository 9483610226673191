#!/usr/bin/env bash
# A sparse raw image reads back byte for byte through the mount, holes
# included, and reading leaves it untouched.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

truncate -s 8M disk.raw
dd_write disk.raw 0 4096 1
dd_write disk.raw $((3 * 1048576 + 100)) 70000 2
dd_write disk.raw $((8 * 1048576 - 512)) 512 3
cp disk.raw expected.raw
before=$(tree_state .)

start_chainfs mnt -d vm=disk.raw,format=raw
assert_eq "$(stat -c %s mnt/vm)" 8388608 "disk size"
assert_equal_files mnt/vm expected.raw "raw disk read"
stop_chainfs mnt

assert_eq "$(tree_state .)" "$before" "files after a read-only session"
