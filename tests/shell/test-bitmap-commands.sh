#!/usr/bin/env bash
# The bitmap-* commands through .jobs/ctl and the .bitmaps/ tree: errnos
# and last-error for bad commands, BITMAP_* events, default granularity,
# status and extents after real writes (dd and qemu-io with O_DIRECT),
# merge, clear, enable/disable, remove.  Non-persistent bitmaps only.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create a.qcow2 64M 65536
qcow2_create small.qcow2 1M 512
qemu-img create -q -f raw b.raw 3M
start_chainfs mnt -d vm=a.qcow2 -d small=small.qcow2 -d r=b.raw
ctl=mnt/.jobs/ctl

assert_eq "$(listing mnt/.bitmaps)" "r small vm" "one directory per disk"
assert_eq "$(listing mnt/.bitmaps/vm)" "" "no bitmaps yet"

ctl_ok $ctl bitmap-add disk=vm name=b1
ctl_ok $ctl bitmap-add disk=vm name=b2 granularity=4K disabled=on
ctl_ok $ctl bitmap-add disk=small name=s
ctl_ok $ctl bitmap-add disk=r name=r1
assert_eq "$(listing mnt/.bitmaps/vm)" "b1 b2" "bitmap directories"
assert_eq "$(listing mnt/.bitmaps/vm/b1)" "extents status" "a bitmap's files"
assert_eq "$(stat -c %a mnt/.bitmaps/vm/b1/status)" 644 "status mode"
# QEMU's default: the qcow2 top's cluster size clamped to 4K..64K, else 64K.
assert_eq "$(sed -n 's/^granularity: //p' mnt/.bitmaps/vm/b1/status)" 65536 "default granularity"
assert_eq "$(sed -n 's/^granularity: //p' mnt/.bitmaps/small/s/status)" 4096 "clamped granularity"
assert_eq "$(sed -n 's/^granularity: //p' mnt/.bitmaps/r/r1/status)" 65536 "raw granularity"

ctl_error EEXIST "already has a bitmap 'b1'" $ctl bitmap-add disk=vm name=b1
ctl_error ENOENT "no such disk 'nope'" $ctl bitmap-add disk=nope name=x
ctl_error EINVAL "'@' is only for the bitmaps that fleece makes" $ctl bitmap-add disk=vm name=a@b
ctl_error EINVAL "not a valid bitmap name" $ctl bitmap-add disk=vm name=.hidden
ctl_error EINVAL "granularity: 1000 is not a power of two" $ctl bitmap-add disk=vm name=g granularity=1000
ctl_error EINVAL "persistent: 'maybe' is not one of off, on" $ctl bitmap-add disk=vm name=p persistent=maybe
ctl_error ENOTSUP "persistent=on: .*b.raw.* raw" $ctl bitmap-add disk=r name=p persistent=on
ctl_error ENOENT "disk 'vm' has no bitmap 'zz'" $ctl bitmap-remove disk=vm name=zz
ctl_error ENOENT "from: disk 'vm' has no bitmap 'zz'" $ctl bitmap-merge disk=vm name=b2 from=b1,zz
ctl_error EINVAL "missing required key 'from'" $ctl bitmap-merge disk=vm name=b2
assert_eq "$(listing mnt/.bitmaps/vm)" "b1 b2" "rejected commands changed nothing"

# Writes land in the enabled bitmap only, rounded out to its chunks.
dd_write mnt/vm $((3 * 65536 + 100)) 70000 0xaa conv=fsync
qemu-io -f raw -t none -c "write -P 0xbb 40M 4k" mnt/vm >/dev/null || fail "qemu-io write"
assert_eq "$(cat mnt/.bitmaps/vm/b1/extents)" "196608 131072
41943040 65536" "b1 extents"
assert_eq "$(sed -n 's/^count: //p' mnt/.bitmaps/vm/b1/status)" 196608 "b1 count"
assert_eq "$(sed -n 's/^recording: //p' mnt/.bitmaps/vm/b1/status)" yes "b1 records"
assert_eq "$(cat mnt/.bitmaps/vm/b2/extents)" "" "a disabled bitmap records nothing"
assert_eq "$(sed -n 's/^recording: //p' mnt/.bitmaps/vm/b2/status)" no "b2 does not record"
# A write crossing the disk's end of a 3M raw disk is refused and marks
# nothing; the last chunk is clipped to the size.
dd_write mnt/r $((3 * 1048576 - 512)) 512 0x11
assert_eq "$(cat mnt/.bitmaps/r/r1/extents)" "3080192 65536" "clipped last run"

ctl_ok $ctl bitmap-merge disk=vm name=b2 from=b1
assert_eq "$(cat mnt/.bitmaps/vm/b2/extents)" "196608 131072
41943040 65536" "merged into the finer bitmap"
ctl_ok $ctl bitmap-enable disk=vm name=b2
ctl_ok $ctl bitmap-disable disk=vm name=b1
dd_write mnt/vm $((50 * 1048576)) 4096 0xcc
assert_eq "$(tail -n 1 mnt/.bitmaps/vm/b2/extents)" "52428800 4096" "b2 records at 4K"
assert_eq "$(wc -l <mnt/.bitmaps/vm/b1/extents)" 2 "b1 no longer records"
ctl_ok $ctl bitmap-clear disk=vm name=b2
assert_eq "$(cat mnt/.bitmaps/vm/b2/extents)" "" "cleared"
assert_eq "$(sed -n 's/^count: //p' mnt/.bitmaps/vm/b2/status)" 0 "cleared count"

ctl_ok $ctl bitmap-remove disk=vm name=b1
assert_eq "$(listing mnt/.bitmaps/vm)" "b2" "removed"
[[ ! -e mnt/.bitmaps/vm/b1 ]] || fail "b1 still visible"
ctl_ok $ctl bitmap-add disk=vm name=b1
assert_eq "$(cat mnt/.bitmaps/vm/b1/extents)" "" "a new bitmap of an old name starts clean"

events=$(cut -d' ' -f2- mnt/.jobs/events)
assert_eq "$(grep -c '^BITMAP_' <<<"$events")" 10 "one event per accepted command"
grep -qx 'BITMAP_ADDED disk=vm name=b1' <<<"$events" || fail "no BITMAP_ADDED: $events"
grep -qx 'BITMAP_MERGED disk=vm name=b2 from=b1' <<<"$events" || fail "no BITMAP_MERGED: $events"
grep -qx 'BITMAP_DISABLED disk=vm name=b1' <<<"$events" || fail "no BITMAP_DISABLED"
grep -qx 'BITMAP_ENABLED disk=vm name=b2' <<<"$events" || fail "no BITMAP_ENABLED"
grep -qx 'BITMAP_CLEARED disk=vm name=b2' <<<"$events" || fail "no BITMAP_CLEARED"
grep -qx 'BITMAP_REMOVED disk=vm name=b1' <<<"$events" || fail "no BITMAP_REMOVED"

stop_chainfs mnt
qemu_check a.qcow2
# Non-persistent bitmaps leave nothing in the image.
qemu-img info a.qcow2 | grep -q bitmaps && fail "a non-persistent bitmap reached the image"
exit 0
