#!/usr/bin/env bash
# fsync and fdatasync through the mount make writes durable, metadata
# included: after they return, even SIGKILL of the daemon loses nothing and
# the image has no errors (leaks allowed).
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
head -c $((8 * M)) /dev/urandom >base.raw
qcow2_create top.qcow2 $((8 * M)) 65536 base.raw raw
to_raw top.qcow2 expected.raw

start_chainfs mnt -d vm=top.qcow2
dd_write mnt/vm $((M + 100)) $M 1 conv=notrunc,fsync
dd_write mnt/vm $((5 * M)) 4096 2 conv=notrunc,fdatasync
dd_write expected.raw $((M + 100)) $M 1
dd_write expected.raw $((5 * M)) 4096 2
signal_chainfs KILL mnt
fusermount3 -u -z mnt

qemu_check_leaks_ok top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "synced data after SIGKILL"
