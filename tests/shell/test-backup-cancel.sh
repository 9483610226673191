#!/usr/bin/env bash
# cancel a backup at random points (from at once to nearly the end):
# the result is `cancelled`, the disk is untouched (the same content, no
# new bits in other bitmaps), the target passes qemu-img check, and the
# bitmap follows bitmap-mode: on-success keeps every bit, always clears
# exactly what was copied (the job's offset: whole chunks of the bitmap's
# granularity), never keeps every bit.  Before each run the guest rewrites
# the whole disk, so the bitmap is full.
#
# BACKUP_CANCEL_ITERATIONS (default 6) runs, modes in turn; seed
# BACKUP_CANCEL_SEED.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io
requires_fuse
iterations=${BACKUP_CANCEL_ITERATIONS:-6}
RANDOM=${BACKUP_CANCEL_SEED:-1}
size=$((16 << 20))

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0x11 0 16M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl
ctl_ok $ctl bitmap-add disk=vm name=b1
ctl_ok $ctl bitmap-add disk=vm name=other
modes=(on-success always never)

for ((i = 0; i < iterations; i++)); do
    mode=${modes[i % 3]}
    # The whole disk again, with holes and zeros: b1 is full.
    pattern $size $((0x20 + i)) >disk.raw
    dd if=/dev/zero of=disk.raw bs=64K seek=$((RANDOM % 200)) count=7 conv=notrunc status=none
    dd if=disk.raw of=mnt/vm bs=1M oflag=direct conv=notrunc status=none
    assert_eq "$(bitmap_field mnt vm b1 count)" $size "b1 before run $i"
    ctl_ok $ctl bitmap-clear disk=vm name=other
    delay=$(printf '%d.%03d' $((RANDOM % 3)) $((RANDOM % 1000)))
    ctl_ok $ctl backup id=c$i disk=vm target=$tmpdir/c$i.qcow2 bitmap=b1 \
        bitmap-mode=$mode speed=4M buf-size=256K
    sleep "$delay"
    ctl_ok $ctl cancel c$i
    wait_job_state mnt c$i concluded
    result=$(job_key mnt c$i result)
    offset=$(job_key mnt c$i offset)
    count=$(bitmap_field mnt vm b1 count)
    what="run $i ($mode, cancelled after $delay s, $offset bytes copied)"
    echo "$what: b1 count $count"
    assert_eq "$result" cancelled "result, $what"
    ((offset < size)) || fail "$what: the job copied everything before the cancel: lower the delays"
    case $mode in
    on-success | never) assert_eq "$count" $size "b1 after $what" ;;
    always) assert_eq "$count" $((size - offset)) "b1 after $what" ;;
    esac
    assert_eq "$(bitmap_field mnt vm other count)" 0 "another bitmap after $what"
    assert_eq "$(bitmap_field mnt vm b1 busy)" no "b1 busy after $what"
    cmp -s mnt/vm disk.raw || fail "$what: the disk changed"
    qemu_check c$i.qcow2
    ctl_ok $ctl dismiss c$i
done
stop_chainfs mnt
qemu_check top.qcow2
