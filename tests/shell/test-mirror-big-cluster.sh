#!/usr/bin/env bash
# mirror onto an existing target whose clusters (2 MiB) are larger than
# the granularity (4K): a target cluster is copied whole the first time
# it is touched, so small guest writes during a sync=none mirror, and a
# sync=full mirror under a writer, leave no stale or zero bytes around
# them in the target.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
to_raw top.qcow2 before.raw
# sync=none onto a target that backs onto the same data (a copy of the
# disk): only what is written is copied, a 2M cluster at a time.
cp base.raw copy.raw
qcow2_create t1.qcow2 16M 2097152 "$tmpdir/copy.raw" raw
qcow2_create t2.qcow2 16M 2097152
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t1.qcow2 mode=existing sync=none granularity=4K
wait_job_state mnt m1 ready
dd_write mnt/vm 4096 4096 0x12
dd_write mnt/vm 5242880 512 0x13
dd_write mnt/vm 16773120 4096 0x14
ctl_ok $ctl complete m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
assert_chain mnt vm "$tmpdir/t1.qcow2" "$tmpdir/copy.raw"
to_raw mnt/vm guest1.raw
stop_chainfs mnt
qemu_check t1.qcow2
out=$(qemu-img compare -F raw t1.qcow2 guest1.raw 2>&1) || fail "t1.qcow2's chain: $out"
# Its own layer holds the three touched clusters, whole.
assert_eq "$(own_extents t1.qcow2)" "0 2097152 4194304 2097152 14680064 2097152" "clusters of t1.qcow2's own layer"

# sync=full under a writer, from t1.qcow2's chain.
start_chainfs mnt -d vm=t1.qcow2
start_writer mnt/vm guest1.raw 61 20000
ctl_ok $ctl mirror id=m2 disk=vm target=$tmpdir/t2.qcow2 mode=existing granularity=4K
wait_job_state mnt m2 ready
writer_running
ctl_ok $ctl complete m2
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" completed "result of m2"
wait_writer
stop_chainfs mnt

for img in top.qcow2 t1.qcow2 t2.qcow2; do
    qemu_check "$img"
done
assert_same_as_model t2.qcow2
