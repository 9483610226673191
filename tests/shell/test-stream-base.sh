#!/usr/bin/env bash
# stream base=MID, MID spelled another way than in .chains (relative to
# the writer's working directory, through a symlink): the layers between
# the top and MID leave the chain, .chains lists the top then MID's chain,
# and the top's header names MID as backing-file= spelled it (a quoted
# string with a blank works too).  The guest view does not change.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

# backing_filename IMG: the backing file name in IMG's header.
backing_filename()
{
    qemu-img info -U --output=json "$1" | sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p'
}

mkdir -p img/sub
# vm: base.raw <- mid.qcow2 <- upper.qcow2 <- top.qcow2
head -c 8M /dev/urandom >img/base.raw
qcow2_create img/mid.qcow2 8M 65536 "$tmpdir/img/base.raw" raw
qemu_io img/mid.qcow2 "write -P 0x91 1M 1M"
qcow2_create img/upper.qcow2 8M 65536 "$tmpdir/img/mid.qcow2" qcow2
qemu_io img/upper.qcow2 "write -P 0x92 1536k 1M" "write -z 4M 64k"
qcow2_create img/top.qcow2 8M 65536 "$tmpdir/img/upper.qcow2" qcow2
qemu_io img/top.qcow2 "write -P 0x93 2M 64k"
# w: the same shape, its middle layer named with a blank.
head -c 8M /dev/urandom >img/w-base.raw
qcow2_create "img/w mid.qcow2" 8M 65536 "$tmpdir/img/w-base.raw" raw
qemu_io "img/w mid.qcow2" "write -P 0xa1 0 1M"
qcow2_create img/w-upper.qcow2 8M 65536 "$tmpdir/img/w mid.qcow2" qcow2
qemu_io img/w-upper.qcow2 "write -P 0xa2 512k 1M"
qcow2_create img/w-top.qcow2 8M 65536 "$tmpdir/img/w-upper.qcow2" qcow2
ln -s "w mid.qcow2" img/w-mid-link.qcow2
to_raw img/top.qcow2 vm-before.raw
to_raw img/w-top.qcow2 w-before.raw
upper_md5=$(md5sum img/upper.qcow2 img/w-upper.qcow2)
start_chainfs mnt -d vm=img/top.qcow2 -d w=img/w-top.qcow2

(cd img/sub && ctl_ok ../../mnt/.jobs/ctl stream id=s1 disk=vm base=../mid.qcow2 backing-file=mid.qcow2)
ctl_ok mnt/.jobs/ctl stream id=s2 disk=w "base=./img/w-mid-link.qcow2" 'backing-file="w mid.qcow2"'
wait_job_state mnt s1 concluded
wait_job_state mnt s2 concluded
assert_eq "$(job_key mnt s1 result) $(job_key mnt s2 result)" "completed completed" "results"
assert_chain mnt vm "$tmpdir/img/top.qcow2" "$tmpdir/img/mid.qcow2" "$tmpdir/img/base.raw"
assert_chain mnt w "$tmpdir/img/w-top.qcow2" "$tmpdir/img/w mid.qcow2" "$tmpdir/img/w-base.raw"
assert_eq "$(backing_filename img/top.qcow2)" "mid.qcow2" "backing file of top.qcow2 while mounted"
assert_eq "$(backing_filename img/w-top.qcow2)" "w mid.qcow2" "backing file of w-top.qcow2 while mounted"
to_raw mnt/vm vm-mounted.raw
assert_equal_files vm-mounted.raw vm-before.raw "vm after the stream"
to_raw mnt/w w-mounted.raw
assert_equal_files w-mounted.raw w-before.raw "w after the stream"
stop_chainfs mnt

assert_eq "$(backing_filename img/top.qcow2)" "mid.qcow2" "backing file of top.qcow2"
assert_eq "$(qemu_chain img/top.qcow2)" \
    "$tmpdir/img/top.qcow2 $tmpdir/img/mid.qcow2 $tmpdir/img/base.raw" "qemu-img's chain of top.qcow2"
assert_eq "$(qemu_chain img/w-top.qcow2)" \
    "$tmpdir/img/w-top.qcow2 $tmpdir/img/w mid.qcow2 $tmpdir/img/w-base.raw" "qemu-img's chain of w-top.qcow2"
for img in img/*.qcow2; do
    qemu_check "$img"
done
to_raw img/top.qcow2 vm-after.raw
assert_equal_files vm-after.raw vm-before.raw "vm after unmount"
to_raw img/w-top.qcow2 w-after.raw
assert_equal_files w-after.raw w-before.raw "w after unmount"
assert_eq "$(md5sum img/upper.qcow2 img/w-upper.qcow2)" "$upper_md5" "removed layers modified"
