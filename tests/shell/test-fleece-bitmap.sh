#!/usr/bin/env bash
# fleece bitmap=B: at the instant, B's bits move into a new disabled
# B@SNAP (persistent if B is; BITMAP_ADDED) and B starts afresh, so a
# full backup with one fleece and an incremental one with the next,
# copying only .bitmaps/vm/B@SNAP/extents out of the view while a writer
# keeps changing the disk, restore exactly the disk at the second instant.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io cmp
requires_fuse

qcow2_create vm.qcow2 32M 65536
qemu_io vm.qcow2 "write -P 0x41 0 12M" "write -P 0x42 20M 4M"
start_chainfs mnt -d vm=vm.qcow2
ctl=mnt/.jobs/ctl
ctl_ok $ctl bitmap-add disk=vm name=b persistent=on

# Full backup from the first fleece.
ctl_ok $ctl fleece id=full disk=vm bitmap=b
assert_eq "$(bitmap_field mnt vm b@full recording)" no "b@full recording"
assert_eq "$(bitmap_field mnt vm b@full persistent)" yes "b@full persistent"
grep -q "BITMAP_ADDED disk=vm name=b@full" mnt/.jobs/events || fail "no BITMAP_ADDED for b@full"
cp mnt/vm current.raw
start_writer mnt/vm current.raw 11 3000
cp --sparse=always mnt/vm@full backup.raw
ctl_ok $ctl cancel full
wait_job_state mnt full concluded
ctl_ok $ctl bitmap-remove disk=vm name=b@full
wait_writer

# The second instant: the oracle is the disk then (no writer running).
cp mnt/vm instant.raw
count=$(bitmap_field mnt vm b count)
((count > 0)) || fail "b recorded nothing of the writer's writes"
ctl_ok $ctl fleece id=inc disk=vm bitmap=b
assert_eq "$(bitmap_field mnt vm b count)" 0 "b right after the fleece"
assert_eq "$(bitmap_field mnt vm b@inc count)" "$count" "b@inc holds b's bits"
# The guest goes on writing meanwhile.
start_writer mnt/vm instant.raw 12 3000
while read -r off len; do
    dd if=mnt/vm@inc of=backup.raw bs=64K iflag=skip_bytes,count_bytes,direct \
        oflag=seek_bytes skip="$off" seek="$off" count="$len" conv=notrunc status=none ||
        fail "copying $off+$len"
done < mnt/.bitmaps/vm/b@inc/extents
writer_running
cmp backup.raw instant.raw || fail "full + incremental differs from the disk at the instant"
wait_writer
((  $(bitmap_field mnt vm b count) > 0 )) || fail "b did not go on recording"
assert_eq "$(bitmap_field mnt vm b@inc count)" "$count" "b@inc changed"
ctl_ok $ctl cancel inc
wait_job_state mnt inc concluded
# B@SNAP outlives the job; removing it is the user's.
[[ -d mnt/.bitmaps/vm/b@inc ]] || fail "b@inc went with the job"
stop_chainfs mnt
qemu-img info vm.qcow2 | grep -q 'name: b@inc' || fail "b@inc is not in the image"
