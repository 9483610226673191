#!/usr/bin/env bash
# fleece, after QEMU's iotest 222: MOUNTPOINT/vm@SNAP shows the disk as it
# was when the command was accepted, byte for byte (buffered, O_DIRECT,
# SEEK_DATA/SEEK_HOLE), while guest writes, zero writes and discards
# change the disk and a writer hammers it; the disk itself is never
# affected; cancel ends the job (cancelled), removes the file and leaves
# no store behind.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io cmp
requires_tool chainfs-extents
requires_fuse

# iotest 222's patterns on a 64 MiB disk.
qcow2_create base.qcow2 64M 65536
qemu_io base.qcow2 "write -P 0x5d 0 64k" "write -P 0xd5 1M 64k" \
    "write -P 0xdc 32M 64k" "write -P 0xcd 0x3ff0000 64k"
to_raw base.qcow2 instant.raw
cp base.qcow2 instant.qcow2
start_chainfs mnt -d vm=base.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl fleece id=f1 disk=vm
assert_eq "$ctl_reply" "ok id=f1" "reply"
assert_eq "$(stat -c '%a %s' mnt/vm@f1)" "400 67108864" "mode and size of vm@f1"
assert_eq "$(job_state mnt f1)" running "state of f1"
assert_eq "$(job_key mnt f1 type)" fleece "type of f1"
assert_eq "$(job_key mnt f1 store-bytes)" 0 "store-bytes before any write"
ls -a mnt | grep -qx 'vm@f1' || fail "vm@f1 is not listed in the root"

# iotest 222's overwrites: data, zeros, discards, straddling clusters.
dd_write mnt/vm 0 65536 0xab
dd_write mnt/vm $((0xf8000)) 131072 0xad         # 992K..1120K: straddles 1M
fallocate -z -o 0x2000000 -l 65536 mnt/vm    # zero the 0xdc cluster
fallocate -p -o 0x3ff0000 -l 65536 mnt/vm    # discard the 0xcd cluster
dd_write mnt/vm $((0x2ff0000)) 65536 0xea oflag=direct

cmp mnt/vm@f1 instant.raw || fail "vm@f1 differs from the instant (buffered)"
dd if=mnt/vm@f1 bs=1M iflag=direct status=none | cmp - instant.raw ||
    fail "vm@f1 differs from the instant (O_DIRECT)"
assert_eq "$("$CHAINFS_TOOLS/chainfs-extents" mnt/vm@f1)" "$(data_extents instant.qcow2)" \
    "SEEK_DATA/SEEK_HOLE of vm@f1"
# st_blocks: the instant's data (4 clusters).
assert_eq "$(stat -c %b mnt/vm@f1)" $((4 * 65536 / 512)) "st_blocks of vm@f1"
# The 0x5d, 0xd5 and 0xdc clusters were copied (the 0xcd one too); holes
# overwritten were copied as zeros, which the store does not hold.
assert_eq "$(job_key mnt f1 store-bytes)" $((4 * 65536)) "store-bytes"
# The disk has what was written.
qemu-io -f raw -c "read -P 0xab 0 64k" -c "read -P 0xad 0xf8000 128k" \
    -c "read -P 0 0x2000000 64k" -c "read -P 0 0x3ff0000 64k" \
    -c "read -P 0xea 0x2ff0000 64k" mnt/vm | grep -q "Pattern verification failed" &&
    fail "the disk lost a write"

# Under a writer (buffered and O_DIRECT writes, zero writes, discards).
cp mnt/vm current.raw
start_writer mnt/vm current.raw 7 4000
wait_writer_writes 100
cp mnt/vm@f1 copy1.raw
cmp copy1.raw instant.raw || fail "cp of vm@f1 under a writer differs"
dd if=mnt/vm@f1 of=copy2.raw bs=256K iflag=direct status=none
cmp copy2.raw instant.raw || fail "O_DIRECT copy of vm@f1 under a writer differs"
wait_writer
cmp mnt/vm model.raw || fail "the disk differs from the writer's model"
cmp mnt/vm@f1 instant.raw || fail "vm@f1 differs after the writer"

# Writes to the view fail; the view cannot be truncated or chmod'ed.
assert_fails "write to vm@f1" dd if=/dev/zero of=mnt/vm@f1 bs=4k count=1 conv=notrunc status=none
assert_fails "chmod of vm@f1" chmod 600 mnt/vm@f1

# cancel: result cancelled, file gone, no store left next to the image.
ctl_ok $ctl cancel f1
wait_job_state mnt f1 concluded
assert_eq "$(job_key mnt f1 result)" cancelled "result of f1"
assert_eq "$(job_events mnt f1)" "created running aborting concluded JOB_CANCELLED" "events of f1"
[[ ! -e mnt/vm@f1 ]] || fail "vm@f1 still there after cancel"
assert_eq "$(listing .)" "base.qcow2 chainfs-1.log copy1.raw copy2.raw current.raw instant.qcow2 instant.raw mnt model.raw writer.log" \
    "files next to the image"
ctl_ok $ctl dismiss f1
# The same name can be used again.
ctl_ok $ctl fleece id=f2 disk=vm name=f1
cmp mnt/vm@f1 model.raw || fail "the new vm@f1 is not the disk now"

stop_chainfs mnt
assert_eq "$chainfs_status" 0 "exit status of an unmount with a running fleece"
qemu_check base.qcow2
