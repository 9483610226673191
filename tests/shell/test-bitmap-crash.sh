#!/usr/bin/env bash
# A persistent bitmap whose daemon died (SIGKILL) is marked in use in the
# image; at the next mount it is inconsistent: it records nothing, its
# extents fail with EIO, only bitmap-remove works on it, and the rest of
# the image is used as usual.  QEMU agrees that it is in use.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io python3
requires_fuse

qcow2_create a.qcow2 16M 65536
start_chainfs mnt -d vm=a.qcow2
ctl=mnt/.jobs/ctl
ctl_ok $ctl bitmap-add disk=vm name=lost persistent=on
ctl_ok $ctl bitmap-add disk=vm name=kept persistent=on
dd_write mnt/vm 0 65536 0x55 conv=fsync
signal_chainfs KILL mnt
fusermount3 -u -z mnt 2>/dev/null || true
qemu_check_leaks_ok a.qcow2
assert_eq "$(qemu_bitmaps a.qcow2)" "kept 65536 auto,in-use
lost 65536 auto,in-use" "in use after the crash"

start_chainfs mnt -d vm=a.qcow2
for b in lost kept; do
    assert_eq "$(bitmap_field mnt vm $b inconsistent)" yes "$b inconsistent"
    assert_eq "$(bitmap_field mnt vm $b recording)" no "$b records nothing"
done
assert_fails "extents of an inconsistent bitmap" cat mnt/.bitmaps/vm/lost/extents
[[ $fail_output == *"Input/output error"* ]] || fail "extents: $fail_output"
ctl_error EINVAL "inconsistent" $ctl bitmap-clear disk=vm name=lost
ctl_error EINVAL "inconsistent" $ctl bitmap-enable disk=vm name=lost
ctl_error EINVAL "inconsistent" $ctl bitmap-disable disk=vm name=lost
ctl_error EINVAL "inconsistent" $ctl bitmap-merge disk=vm name=kept from=lost
ctl_ok $ctl bitmap-add disk=vm name=fresh persistent=on
ctl_error EINVAL "inconsistent" $ctl bitmap-merge disk=vm name=fresh from=lost
ctl_error EEXIST "already has a bitmap 'lost'" $ctl bitmap-add disk=vm name=lost
# The disk itself works.
dd_write mnt/vm 65536 4096 0x66
assert_eq "$(cat mnt/.bitmaps/vm/fresh/extents)" "65536 65536" "a new bitmap records"
ctl_ok $ctl bitmap-remove disk=vm name=lost
stop_chainfs mnt
qemu_check_leaks_ok a.qcow2
# Still in use until removed; the new one is clean.
assert_eq "$(qemu_bitmaps a.qcow2)" "fresh 65536 auto
kept 65536 auto,in-use" "after the clean unmount"
exit 0
