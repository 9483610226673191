#!/usr/bin/env bash
# mirror never writes zeros as data: 2 MiB of zeros written with qemu-io
# as data (data clusters full of zeros) over backing data are mirrored
# (sync=full) and completed; qemu-img map of the target shows no data in
# that range, copied counts only the data written as data, and qemu-img
# compare finds the target identical to the source.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 16M 65536
qemu_io base.qcow2 "write -P 0xa1 0 4M"
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0 1M 2M" "write -P 0xa2 8M 64k"
# The premise: the top holds the zeros as data.
assert_eq "$(own_extents top.qcow2)" "1048576 2097152 8388608 65536" \
    "data extents of the source top"
to_raw top.qcow2 source.raw

start_chainfs mnt -d vm=top.qcow2
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2
wait_job_state mnt m1 ready
# Base data at [0, 1M) and [3M, 4M), top data at 8M: nothing else.
assert_eq "$(job_key mnt m1 copied)" 2162688 "copied of m1"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
assert_chain mnt vm "$tmpdir/t.qcow2"
stop_chainfs mnt

qemu_check t.qcow2
assert_eq "$(data_extents t.qcow2 | paste -sd' ')" \
    "0 1048576 3145728 1048576 8388608 65536" "data extents of the target"
qemu-img map --output=json t.qcow2 | awk '
    /"data": true/ {
        match($0, /"start": [0-9]+/); a = substr($0, RSTART + 9, RLENGTH - 9) + 0
        match($0, /"length": [0-9]+/); b = a + substr($0, RSTART + 10, RLENGTH - 10)
        if (a < 3145728 && 1048576 < b) bad = 1
    }
    END { exit bad }' || fail "the target has data in [1M, 3M)"
out=$(qemu-img compare top.qcow2 t.qcow2 2>&1) || fail "compare: $out"
out=$(qemu-img compare -F raw t.qcow2 source.raw 2>&1) || fail "compare with the source: $out"
