#!/usr/bin/env bash
# Bitmaps stay with the disk when the active layer changes: a snapshot, a
# mirror's complete and an active commit's complete store the persistent
# ones in the new active layer and remove them from the old one, and the
# writes that follow are recorded.  A new active layer that cannot hold
# them (raw) keeps them in memory with a BITMAP_NOT_PERSISTENT event.
# Stream and intermediate commit change no bitmap.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io python3
requires_fuse

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0x11 0 16M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl
ctl_ok $ctl bitmap-add disk=vm name=p persistent=on
ctl_ok $ctl bitmap-add disk=vm name=m
dd_write mnt/vm 0 4096 0x22

# Snapshot: the bitmaps move to the overlay before the old top turns
# read-only; nothing is left in the old top.
ctl_ok $ctl snapshot disk=vm overlay="$tmpdir/snap.qcow2"
assert_eq "$(qemu_bitmaps snap.qcow2)" "p 65536 auto,in-use" "bitmaps in the overlay"
assert_eq "$(qemu_bitmaps top.qcow2)" "" "bitmaps left in the old top"
dd_write mnt/vm $((1 * 1048576)) 4096 0x33
assert_eq "$(cat mnt/.bitmaps/vm/p/extents)" "0 65536
1048576 65536" "p after the snapshot"
assert_eq "$(cat mnt/.bitmaps/vm/m/extents)" "0 65536
1048576 65536" "m after the snapshot"

# Stream changes no bitmap.
ctl_ok $ctl stream id=s1 disk=vm base="$tmpdir/base.qcow2"
wait_job_state mnt s1 concluded
ctl_ok $ctl dismiss s1
assert_eq "$(qemu_bitmaps snap.qcow2)" "p 65536 auto,in-use" "bitmaps after stream"

# Mirror complete: into the new qcow2 target (backed by base).
ctl_ok $ctl mirror id=m1 disk=vm target="$tmpdir/copy.qcow2" sync=top
wait_job_state mnt m1 ready
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
ctl_ok $ctl dismiss m1
assert_eq "$(qemu_bitmaps copy.qcow2)" "p 65536 auto,in-use" "bitmaps in the mirror target"
assert_eq "$(qemu_bitmaps snap.qcow2)" "" "bitmaps left in the mirror source"
dd_write mnt/vm $((2 * 1048576)) 4096 0x44
assert_eq "$(tail -n 1 mnt/.bitmaps/vm/p/extents)" "2097152 65536" "p after mirror"

# Active commit complete: into base.
ctl_ok $ctl commit id=c1 disk=vm
wait_job_state mnt c1 ready
ctl_ok mnt/.jobs/c1/ctl complete
wait_job_state mnt c1 concluded
ctl_ok $ctl dismiss c1
assert_eq "$(chain_paths mnt vm)" "$tmpdir/base.qcow2" "chain after the active commit"
assert_eq "$(qemu_bitmaps base.qcow2)" "p 65536 auto,in-use" "bitmaps in base"
assert_eq "$(qemu_bitmaps copy.qcow2)" "" "bitmaps left in the committed top"
dd_write mnt/vm $((3 * 1048576)) 4096 0x55

# A raw target cannot hold them: they stay, in memory only.
ctl_ok $ctl mirror id=m2 disk=vm target="$tmpdir/copy.raw" format=raw
wait_job_state mnt m2 ready
ctl_ok mnt/.jobs/m2/ctl complete
wait_job_state mnt m2 concluded
grep -qE ' BITMAP_NOT_PERSISTENT disk=vm name=p reason=".*copy.raw.*"$' mnt/.jobs/events ||
    fail "no BITMAP_NOT_PERSISTENT event: $(grep BITMAP mnt/.jobs/events)"
assert_eq "$(bitmap_field mnt vm p persistent)" no "p after the raw switch"
assert_eq "$(qemu_bitmaps base.qcow2)" "" "bitmaps left in base"
dd_write mnt/vm $((4 * 1048576)) 4096 0x66
assert_eq "$(cat mnt/.bitmaps/vm/p/extents)" "0 65536
1048576 65536
2097152 65536
3145728 65536
4194304 65536" "p recorded every write across the moves"
stop_chainfs mnt
for img in top.qcow2 snap.qcow2 copy.qcow2 base.qcow2; do
    qemu_check $img
done
exit 0
