#!/usr/bin/env bash
# Several backups of one disk at once, each to its own target: a and b
# start back to back (the same instant), then the guest writes, c starts
# (a later instant) and d (sync=top of the same instant as c, onto a
# target backed by the disk's base); then a writer writes and fsyncs all
# over the disk while all four copy, slowly and at different speeds
# (the writer's copies before its writes are not limited).
# Every target, with its backing, compares identical to the disk at its
# own instant, the writer sees only its own data, and the disk holds its
# model afterwards.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 24M 65536
qemu_io base.qcow2 "write -P 0x61 0 16M" "write -P 0 16M 1M"
qcow2_create top.qcow2 24M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x62 4M 4M" "write -z 12M 2M"
to_raw top.qcow2 first.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=a disk=vm target=$tmpdir/a.qcow2 speed=2M buf-size=256K
ctl_ok $ctl backup id=b disk=vm target=$tmpdir/b.qcow2 speed=1M buf-size=128K granularity=128K
dd_write mnt/vm $((2 << 20)) 1048576 0x71
dd_write mnt/vm $((20 << 20)) 65536 0x72
to_raw mnt/vm second.raw
ctl_ok $ctl backup id=c disk=vm target=$tmpdir/c.qcow2 speed=3M
ctl_ok $ctl backup id=d disk=vm target=$tmpdir/d.qcow2 sync=top speed=512K buf-size=64K
start_writer mnt/vm second.raw 17 20000
# Copies before the writer's writes while the jobs crawl.
wait_writer_writes 200
# The writer's copies before its writes are not rate limited: a job may
# be done already.
for id in a b c d; do
    echo "$id: $(job_state mnt $id), $(job_key mnt $id offset) of $(job_key mnt $id len)"
    [[ $(job_state mnt $id) == concluded ]] || ctl_ok $ctl set-speed $id 0
done
for id in a b c d; do
    wait_job_state mnt $id concluded
    assert_eq "$(job_key mnt $id result)" completed "result of backup $id"
done
wait_writer
assert_equal_files mnt/vm model.raw "the disk after the writer"
stop_chainfs mnt
for id in a b c d; do
    qemu_check $id.qcow2
done
for id in a b; do
    out=$(qemu-img compare -F raw $id.qcow2 first.raw 2>&1) || fail "target $id: $out"
done
for id in c d; do
    out=$(qemu-img compare -F raw $id.qcow2 second.raw 2>&1) || fail "target $id: $out"
done
assert_eq "$(qemu_chain_paths_shared d.qcow2 | paste -sd' ')" \
    "$tmpdir/d.qcow2 $tmpdir/base.qcow2" "chain of the sync=top target"
qemu_check top.qcow2
