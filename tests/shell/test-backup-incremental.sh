#!/usr/bin/env bash
# An incremental backup chain with a bitmap (after QEMU's iotests 124 and
# 257): a full backup with bitmap=b1 clears b1; writes dirty it again; a
# sync=bitmap backup into a mode=existing target backed by the full one
# copies just those chunks, and the chain compares equal to the disk at
# that instant.  bitmap-mode=never leaves b1 alone; on-success with a
# cancel leaves it alone; always with a cancel clears only what was
# copied, and writes made during a job stay dirty in every mode.  A
# missing bitmap is ENOENT, a busy one EBUSY, bitmap-mode alone EINVAL.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create top.qcow2 32M 65536
qemu_io top.qcow2 "write -P 0x33 0 6M" "write -P 0x34 20M 1M"
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl
count() { bitmap_field mnt vm b1 count; }

ctl_error ENOENT "b1" $ctl backup id=x disk=vm target=$tmpdir/x.qcow2 sync=bitmap bitmap=b1
ctl_error EINVAL "bitmap-mode needs bitmap=" $ctl backup id=x disk=vm target=$tmpdir/x.qcow2 bitmap-mode=never
[[ ! -e x.qcow2 ]] || fail "a refused backup left its target"
ctl_ok $ctl bitmap-add disk=vm name=b1
dd_write mnt/vm 0 65536 0x35
assert_eq "$(count)" 65536 "count before the full backup"

# Full backup, b1 cleared of what it copied.
to_raw mnt/vm full.raw
ctl_ok $ctl backup id=f disk=vm target=$tmpdir/full.qcow2 bitmap=b1 speed=2M buf-size=64K
assert_eq "$(bitmap_field mnt vm b1 busy)" yes "b1 busy during the job"
ctl_error EBUSY "job 'f'" $ctl bitmap-remove disk=vm name=b1
# A write during the job stays dirty.
dd_write mnt/vm $((30 << 20)) 4096 0x36
ctl_ok $ctl set-speed f 0
wait_job_state mnt f concluded
assert_eq "$(job_key mnt f result)" completed "result of f"
assert_eq "$(count)" 65536 "b1 after the full backup: the write made meanwhile"
assert_eq "$(cat mnt/.bitmaps/vm/b1/extents)" "$((30 << 20)) 65536" "b1's extents"
out=$(qemu-img compare -U -F raw full.qcow2 full.raw 2>&1) || fail "full backup: $out"

# Incremental: sync=bitmap into an existing target backed by the full one.
dd_write mnt/vm $((1 << 20)) 131072 0x37
dd_write mnt/vm $((25 << 20)) 4096 0x38
to_raw mnt/vm inc1.raw
qemu-img create -q -f qcow2 -b "$tmpdir/full.qcow2" -F qcow2 inc1.qcow2 32M
ctl_ok $ctl backup id=i1 disk=vm target=$tmpdir/inc1.qcow2 mode=existing sync=bitmap bitmap=b1
wait_job_state mnt i1 concluded
assert_eq "$(job_key mnt i1 result)" completed "result of i1"
assert_eq "$(job_key mnt i1 len)" $((65536 * 2 + 131072)) "len of i1: the dirty chunks"
assert_eq "$(count)" 0 "b1 after the incremental backup"
out=$(qemu-img compare -U inc1.qcow2 inc1.raw 2>&1) || fail "incremental backup: $out"
assert_eq "$(own_extents inc1.qcow2)" \
    "$((1 << 20)) 131072 $((25 << 20)) 65536 $((30 << 20)) 65536" "data of inc1's own layer"

# bitmap-mode=never: b1 keeps its bits.
dd_write mnt/vm $((2 << 20)) 4096 0x39
qemu-img create -q -f qcow2 -b "$tmpdir/inc1.qcow2" -F qcow2 inc2.qcow2 32M
ctl_ok $ctl backup id=i2 disk=vm target=$tmpdir/inc2.qcow2 mode=existing sync=bitmap bitmap=b1 bitmap-mode=never
wait_job_state mnt i2 concluded
assert_eq "$(count)" 65536 "b1 after bitmap-mode=never"

# on-success, cancelled: b1 keeps its bits (and the new write).
ctl_ok $ctl backup id=c1 disk=vm target=$tmpdir/c1.qcow2 sync=full bitmap=b1 speed=1 buf-size=64K
dd_write mnt/vm $((3 << 20)) 4096 0x3a
ctl_ok $ctl cancel c1
wait_job_state mnt c1 concluded
assert_eq "$(job_key mnt c1 result)" cancelled "result of c1"
assert_eq "$(count)" 131072 "b1 after a cancelled on-success backup"

# always, cancelled after a part: what was copied is cleared, the rest and
# the writes made meanwhile stay.
dd_write mnt/vm $((10 << 20)) $((4 << 20)) 0x3b
before=$(count)
ctl_ok $ctl backup id=c2 disk=vm target=$tmpdir/c2.qcow2 sync=bitmap bitmap=b1 bitmap-mode=always speed=1M buf-size=64K
wait_job_progress mnt c2
dd_write mnt/vm $((13 << 20)) 4096 0x3c
ctl_ok $ctl cancel c2
wait_job_state mnt c2 concluded
assert_eq "$(job_key mnt c2 result)" cancelled "result of c2"
after=$(count)
((after < before && after > 0)) || fail "b1 after a cancelled always backup: $after (before: $before)"
awk -v w=$((13 << 20)) '$1 <= w && w < $1 + $2 { found = 1 } END { exit !found }' \
    mnt/.bitmaps/vm/b1/extents || fail "the write made during c2 is not dirty: $(cat mnt/.bitmaps/vm/b1/extents)"
assert_eq "$(bitmap_field mnt vm b1 busy)" no "b1 busy after the jobs"
stop_chainfs mnt
for img in top.qcow2 full.qcow2 inc1.qcow2 inc2.qcow2 c1.qcow2 c2.qcow2; do
    qemu_check "$img"
done
