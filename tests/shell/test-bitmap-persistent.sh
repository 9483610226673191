#!/usr/bin/env bash
# Persistent bitmaps in the qcow2 image, with QEMU as the oracle: what
# chainfs stores, qemu-img info lists (marked in use while mounted, clean
# after unmount) and qemu-nbd exports with the same dirty ranges that
# .bitmaps/.../extents showed; what qemu-img bitmap made, chainfs loads.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io qemu-nbd nbdinfo python3
requires_fuse

qcow2_create a.qcow2 64M 65536
qemu_io a.qcow2 "write -P 0x11 0 8M"
start_chainfs mnt -d vm=a.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl bitmap-add disk=vm name=b1 persistent=on
ctl_ok $ctl bitmap-add disk=vm name=b2 persistent=on disabled=on granularity=4K
ctl_ok $ctl bitmap-add disk=vm name=mem
assert_eq "$(bitmap_field mnt vm b1 persistent)" yes "b1 persistent"
assert_eq "$(bitmap_field mnt vm mem persistent)" no "mem not persistent"
# Stored at once, marked in use while chainfs has the image.
assert_eq "$(qemu_bitmaps a.qcow2)" "b1 65536 auto,in-use
b2 4096 in-use" "bitmaps while mounted"

dd_write mnt/vm $((3 * 65536 + 100)) 70000 0xaa conv=fsync
qemu-io -f raw -t none -c "write -P 0xbb 40M 4k" -c "write -z 50M 1M" mnt/vm >/dev/null ||
    fail "qemu-io write"
ctl_ok $ctl bitmap-merge disk=vm name=b2 from=b1
b1_extents=$(cat mnt/.bitmaps/vm/b1/extents)
b2_extents=$(cat mnt/.bitmaps/vm/b2/extents)
assert_eq "$b1_extents" "196608 131072
41943040 65536
52428800 1048576" "b1 extents"
stop_chainfs mnt

qemu_check a.qcow2
assert_eq "$(qemu_bitmaps a.qcow2)" "b1 65536 auto
b2 4096 -" "bitmaps after a clean unmount"
assert_eq "$(nbd_dirty_extents a.qcow2 b1)" "$b1_extents" "b1 as qemu-nbd exports it"
assert_eq "$(nbd_dirty_extents a.qcow2 b2)" "$b2_extents" "b2 as qemu-nbd exports it"

# QEMU's edits are loaded: a new bitmap with b1's bits, a removed one.
qemu-img bitmap --add --granularity 32K a.qcow2 q1 || fail "qemu-img bitmap --add"
qemu-img bitmap --merge b1 a.qcow2 q1 || fail "qemu-img bitmap --merge"
qemu-img bitmap --disable a.qcow2 q1 || fail "qemu-img bitmap --disable"
qemu-img bitmap --remove a.qcow2 b2 || fail "qemu-img bitmap --remove"
start_chainfs mnt -d vm=a.qcow2
assert_eq "$(listing mnt/.bitmaps/vm)" "b1 q1" "loaded bitmaps"
assert_eq "$(cat mnt/.bitmaps/vm/b1/extents)" "$b1_extents" "b1 loaded"
assert_eq "$(cat mnt/.bitmaps/vm/q1/extents)" "$b1_extents" "q1 loaded"
assert_eq "$(bitmap_field mnt vm q1 granularity)" 32768 "q1 granularity"
assert_eq "$(bitmap_field mnt vm q1 recording)" no "q1 is disabled"
assert_eq "$(bitmap_field mnt vm b1 recording)" yes "b1 is enabled"
assert_eq "$(bitmap_field mnt vm b1 persistent)" yes "b1 persistent"
assert_eq "$(bitmap_field mnt vm b1 inconsistent)" no "b1 consistent"
assert_eq "$(qemu_bitmaps a.qcow2)" "b1 65536 auto,in-use
q1 32768 in-use" "loaded bitmaps are marked in use"
dd_write mnt/vm $((60 * 1048576)) 512 0xcc
ctl_ok $ctl bitmap-remove disk=vm name=q1
assert_eq "$(qemu_bitmaps a.qcow2)" "b1 65536 auto,in-use" "removed from the image at once"
stop_chainfs mnt
qemu_check a.qcow2
assert_eq "$(nbd_dirty_extents a.qcow2 b1)" "$b1_extents
62914560 65536" "b1 went on recording"

# A 1 TiB disk with a few dirty chunks: the walk skips the clean regions,
# and what is stored at unmount is what QEMU exports.
qemu-img create -q -f qcow2 big.qcow2 1T
start_chainfs mnt -d big=big.qcow2
ctl_ok $ctl bitmap-add disk=big name=b persistent=on
dd_write mnt/big 0 4096 0x01
dd_write mnt/big $((1024 ** 4 - 4096)) 4096 0x02
assert_eq "$(cat mnt/.bitmaps/big/b/extents)" "0 65536
$((1024 ** 4 - 65536)) 65536" "1 TiB extents"
stop_chainfs mnt
qemu_check big.qcow2
assert_eq "$(nbd_dirty_extents big.qcow2 b)" "0 65536
$((1024 ** 4 - 65536)) 65536" "1 TiB bitmap as qemu-nbd exports it"

# Where bitmaps cannot be stored: ENOTSUP, nothing changed.
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 8M
start_chainfs mnt -d v2=v2.qcow2 -d ro=a.qcow2,read-only=on
ctl_error ENOTSUP "persistent=on: .*v2.qcow2" $ctl bitmap-add disk=v2 name=p persistent=on
ctl_error ENOTSUP "persistent=on: disk 'ro' is read-only" $ctl bitmap-add disk=ro name=p persistent=on
# A read-only disk shows what its image holds, and changes nothing.
assert_eq "$(listing mnt/.bitmaps/ro)" "b1" "bitmaps of a read-only disk"
assert_eq "$(cat mnt/.bitmaps/ro/b1/extents)" "$b1_extents
62914560 65536" "read-only b1"
ctl_error ENOTSUP "disk 'ro' is read-only: its image keeps bitmap 'b1'" $ctl bitmap-remove disk=ro name=b1
stop_chainfs mnt
assert_eq "$(qemu_bitmaps a.qcow2)" "b1 65536 auto" "a read-only mount changed nothing"
qemu_check a.qcow2
exit 0
