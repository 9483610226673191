#!/usr/bin/env bash
# backup sync=full under a writer: the target holds exactly the disk as it
# was when the command was accepted (the writer starts after it, while the
# job is slowed down, so most chunks are copied before the writer's first
# write to them), the writer sees no wrong data, the disk holds the
# writer's model afterwards, and the target is sparse where the disk read
# zeros (holes and zeros written as data alike).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qemu-img create -q -f raw base.raw 32M
qemu_io base.raw "write -P 0x11 0 8M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x22 4M 4M" "write -P 0 12M 2M" "write -z 2M 1M"
to_raw top.qcow2 instant.raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl backup id=b1 disk=vm target=$tmpdir/b1.qcow2 speed=4M buf-size=64K
assert_eq "$(job_key mnt b1 type)" backup "type"
start_writer mnt/vm instant.raw 7 3000
ctl_ok $ctl set-speed b1 0
wait_job_state mnt b1 concluded
assert_eq "$(job_key mnt b1 result)" completed "result"
assert_eq "$(job_key mnt b1 dirty)" 0 "dirty at the end"
assert_eq "$(job_key mnt b1 offset)" "$(job_key mnt b1 len)" "offset = len"
assert_eq "$(job_events mnt b1)" "created running waiting pending concluded JOB_COMPLETED" "events"
wait_writer
assert_equal_files mnt/vm model.raw "the disk after the writer"
qemu_check b1.qcow2
out=$(qemu-img compare -U -F raw b1.qcow2 instant.raw 2>&1) || fail "target differs from the instant: $out"
assert_eq "$(qemu_chain_paths_shared b1.qcow2 | paste -sd' ')" "$tmpdir/b1.qcow2" "target chain"
# Data only where the disk held non-zero data: 0-2M, 3M-8M (of which the
# writer may have made some zero: at most those).
data=$(qemu-img map -U --output=json b1.qcow2 | grep '"data": true' |
       sed 's/.*"length": \([0-9]*\).*/\1/' | awk '{ s += $1 } END { print s + 0 }')
((data <= 7 * 1048576)) || fail "target holds $data bytes of data, more than the 7M the disk had"
ctl_ok $ctl dismiss b1
stop_chainfs mnt
qemu_check top.qcow2
