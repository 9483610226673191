#!/usr/bin/env bash
# While a job runs, commands that would change its disk's chain or write
# to a file it uses fail with EBUSY naming the job, as does writing to a
# layer of any disk; guest I/O goes on.  A concluded job blocks nothing,
# even before it is dismissed.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 8M 65536
qemu_io base.qcow2 "write -P 0x44 0 8M"
qcow2_create a.qcow2 8M 65536 "$tmpdir/base.qcow2" qcow2
qcow2_create b.qcow2 8M 65536
start_chainfs mnt -d vm=a.qcow2 -d other=b.qcow2
ctl=mnt/.jobs/ctl

# A slow mirror keeps running.
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2 speed=64K buf-size=64K
wait_job_state mnt m1 running
ctl_error EBUSY "disk 'vm' is in use by job 'm1'" $ctl snapshot disk=vm overlay=$tmpdir/s.qcow2
ctl_error EBUSY "disk 'vm' is in use by job 'm1'" $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2
# Its target, under any name, is off limits for another job or snapshot.
ln -s t.qcow2 link.qcow2
ctl_error EBUSY "$tmpdir/t.qcow2 is in use by job 'm1'" $ctl mirror id=m2 disk=other target=$tmpdir/link.qcow2 mode=existing
ctl_error EBUSY "$tmpdir/t.qcow2 is in use by job 'm1'" $ctl snapshot disk=other overlay=$tmpdir/t.qcow2 mode=existing
# So are the layers it reads, and the layers of every disk.
ctl_error EBUSY "$tmpdir/base.qcow2 is in use by job 'm1'" $ctl mirror id=m2 disk=other target=$tmpdir/base.qcow2 mode=existing
ctl_error EBUSY "$tmpdir/a.qcow2 is in use by job 'm1'" $ctl snapshot disk=other overlay=$tmpdir/a.qcow2 mode=existing
qcow2_create b-next.qcow2 8M 65536 "$tmpdir/b.qcow2" qcow2
ctl_error EBUSY "$tmpdir/b.qcow2 is a layer of disk 'other'" $ctl mirror id=m2 disk=other target=$tmpdir/b.qcow2 mode=existing
# Rejected: no m2 and no s.qcow2 or t2.qcow2.
[[ ! -e mnt/.jobs/m2 && ! -e s.qcow2 && ! -e t2.qcow2 ]] || fail "a rejected command left something"

# Guest I/O is not blocked; another disk is free.
dd_write mnt/vm 65536 65536 7
ctl_ok $ctl snapshot disk=other overlay=$tmpdir/b-snap.qcow2
assert_eq "$(chain_paths mnt other | paste -sd' ')" "$tmpdir/b-snap.qcow2 $tmpdir/b.qcow2" "chain of other"

# Concluded (cancelled), m1 blocks nothing although it is still listed.
ctl_ok $ctl cancel m1 force
wait_job_state mnt m1 concluded
[[ -d mnt/.jobs/m1 ]] || fail "m1 vanished before dismiss"
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/s.qcow2
assert_eq "$(chain_paths mnt vm | paste -sd' ')" \
    "$tmpdir/s.qcow2 $tmpdir/a.qcow2 $tmpdir/base.qcow2" "chain of vm after snapshot"
# The old top now belongs to the chain as a backing layer.
ctl_error EBUSY "$tmpdir/a.qcow2 is a layer of disk 'vm'" $ctl mirror id=m3 disk=other target=$tmpdir/a.qcow2 mode=existing
ctl_ok $ctl dismiss m1

# A mirror that fails at once (mode=existing onto a file of another size)
# holds nothing afterwards either.
qcow2_create small.qcow2 1M 65536
ctl "$ctl" mirror id=m4 disk=vm target=$tmpdir/small.qcow2 mode=existing
if [[ $ctl_status == OK ]]; then
    wait_job_state mnt m4 concluded
fi
ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/s2.qcow2

to_raw mnt/vm guest.raw
stop_chainfs mnt
for img in base.qcow2 a.qcow2 s.qcow2 s2.qcow2 b.qcow2 b-snap.qcow2; do
    qemu_check "$img"
done
to_raw s2.qcow2 after.raw
assert_equal_files after.raw guest.raw "s2.qcow2 after unmount"
