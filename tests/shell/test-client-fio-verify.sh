#!/usr/bin/env bash
# fio with verification on a qcow2-over-raw chain: two jobs at once write
# every 4 KiB block of their halves in random order (one with O_DIRECT
# and libaio 16 deep, one buffered), each block carrying a crc32c header
# with its offset, and read it all back.  After a remount a verify-only
# pass finds every block again; so does one on the chain converted to raw
# by qemu-img; the images are clean, the part of the disk fio did not
# touch still reads as the backing file, and the backing file is unchanged.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/client-functions.sh"
requires qemu-img fio
requires_fuse

head -c 160M /dev/urandom >base.raw
qcow2_create top.qcow2 160M 65536 "$tmpdir/base.raw" raw
base_md5=$(md5sum base.raw)
start_chainfs mnt -d vm=top.qcow2

fio_verify_jobs write.fio mnt/vm
run_fio "write and verify" fio-write.log write.fio
assert_fio_verified fio-write.log 2
stop_chainfs mnt
qemu_check top.qcow2
assert_eq "$(md5sum base.raw)" "$base_md5" "base.raw modified"

start_chainfs mnt -d vm=top.qcow2
run_fio "verify only, after a remount" fio-verify.log --verify_only write.fio
assert_fio_verified fio-verify.log 2
# The last 32 MiB were never written: they still read as the backing file.
cmp -n 32M -i 128M:128M mnt/vm base.raw || fail "the range fio did not write differs from base.raw"
stop_chainfs mnt

# qemu-img reads the same blocks (buffered: /tmp may refuse O_DIRECT).
to_raw top.qcow2 final.raw
fio_verify_jobs final.fio final.raw
sed -i 's/^direct=1$/direct=0/' final.fio
run_fio "verify only, the chain converted to raw" fio-final.log --verify_only final.fio
assert_fio_verified fio-final.log 2
