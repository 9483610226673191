#!/usr/bin/env bash
# SIGTERM while a client still holds the disk open (a loop device, as a
# container runtime leaves it; QEMU would do the same): chainfs exits 0,
# the data written through the client is in the image, the image is
# clean, the loop device can be detached afterwards, and the daemon frees
# everything (the ASan run checks for leaks: the open file's handle, for
# which no release ever comes, must not leak).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/client-functions.sh"
requires qemu-img
requires_fuse
requires_loop

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
cp base.raw expected.raw
start_chainfs mnt -d vm=top.qcow2
loop_attach "$tmpdir/mnt/vm"
head -c 1M /dev/urandom >data.bin
dd if=data.bin of="$loop_dev" bs=64k seek=40 oflag=direct conv=fsync status=none ||
    fail "dd to $loop_dev failed"
dd if=data.bin of=expected.raw bs=64k seek=40 conv=notrunc status=none

signal_chainfs TERM mnt
log=$chainfs_log
fusermount3 -u -z mnt 2>/dev/null || true
loop_detach
! grep -q 'ERROR: LeakSanitizer' "$log" ||
    fail "chainfs leaked memory at SIGTERM with the disk still open (no release comes for a file open at exit: fuse/fs.c's struct open_file is 72 bytes): $(grep -m1 -A3 'Direct leak' "$log")"
assert_eq "$chainfs_status" 0 "exit status after SIGTERM with the disk open"
! mountpoint -q mnt || fail "still mounted after SIGTERM"

qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "data after SIGTERM"
