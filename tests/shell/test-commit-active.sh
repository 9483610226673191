#!/usr/bin/env bash
# Active commit (no top=) works like a mirror into base: while a writer
# writes it gets ready, complete switches the disk to base (.chains lists
# base's chain) with no write lost.  Cancelled after ready, it leaves the
# disk on its top and base a consistent copy (result completed).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

# vm: base.qcow2 <- top.qcow2; w: w-base.raw <- w-mid.qcow2 <- w-top.qcow2
qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0xc1 0 16M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0xc2 0 8M" "write -z 10M 1M"
to_raw top.qcow2 before.raw
head -c 16M /dev/urandom >w-base.raw
qcow2_create w-mid.qcow2 16M 65536 "$tmpdir/w-base.raw" raw
qemu_io w-mid.qcow2 "write -P 0xc3 1M 2M"
qcow2_create w-top.qcow2 16M 65536 "$tmpdir/w-mid.qcow2" qcow2
qemu_io w-top.qcow2 "write -P 0xc4 2M 2M" "write -z 6M 64k"
w_base_md5=$(md5sum w-base.raw)
start_chainfs mnt -d vm=top.qcow2 -d w=w-top.qcow2
ctl=mnt/.jobs/ctl

# Complete after ready, under a writer.
start_writer mnt/vm before.raw 53 30000
ctl_ok $ctl commit id=c1 disk=vm
wait_job_state mnt c1 ready
writer_running
assert_eq "$(job_key mnt c1 copy-mode)" background "copy-mode of an active commit"
ctl_ok mnt/.jobs/c1/ctl complete
wait_job_state mnt c1 concluded
assert_eq "$(job_key mnt c1 result)" completed "result of c1"
assert_eq "$(job_events mnt c1)" \
    "created running ready JOB_READY waiting pending concluded JOB_COMPLETED" "events of c1"
assert_chain mnt vm "$tmpdir/base.qcow2"

# Cancel after ready: w stays on its top; w-mid's chain is a copy.
ctl_ok $ctl commit id=c2 disk=w base=$tmpdir/w-mid.qcow2
wait_job_state mnt c2 ready
dd_write mnt/w 8388608 65536 0xc5
to_raw mnt/w w-ready.raw
ctl_ok $ctl cancel c2
wait_job_state mnt c2 concluded
assert_eq "$(job_key mnt c2 result)" completed "result of c2"
assert_eq "$(job_events mnt c2)" \
    "created running ready JOB_READY waiting pending concluded JOB_COMPLETED" "events of c2"
assert_chain mnt w "$tmpdir/w-top.qcow2" "$tmpdir/w-mid.qcow2" "$tmpdir/w-base.raw"
dd_write mnt/w 9437184 65536 0xc6
to_raw mnt/w w-guest.raw
wait_writer
stop_chainfs mnt

for img in base.qcow2 top.qcow2 w-mid.qcow2 w-top.qcow2; do
    qemu_check "$img"
done
assert_eq "$(qemu_chain base.qcow2)" "$tmpdir/base.qcow2" "chain of base.qcow2"
assert_same_as_model base.qcow2
out=$(qemu-img compare -F raw w-mid.qcow2 w-ready.raw 2>&1) || fail "w-mid.qcow2's chain after the cancel: $out"
assert_eq "$(qemu_chain w-top.qcow2)" "$tmpdir/w-top.qcow2 $tmpdir/w-mid.qcow2 $tmpdir/w-base.raw" \
    "chain of w-top.qcow2"
to_raw w-top.qcow2 w-after.raw
assert_equal_files w-after.raw w-guest.raw "w after unmount"
assert_eq "$(md5sum w-base.raw)" "$w_base_md5" "w-base.raw modified"
