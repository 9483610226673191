#!/usr/bin/env bash
# mirror sync=full keeps the target sparse: ranges that read as zero
# (never written, zeroed, discarded, or zeros written as data) are not
# written as data, so qemu-img map of the target shows data where the
# source's chain has data that is not zero, and nowhere else; the content
# is equal.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create base.qcow2 32M 65536
qemu_io base.qcow2 "write -P 0xf1 0 4M" "write -P 0xf2 16M 1M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.qcow2" qcow2
# zeroed over base data, discarded, zeros written as data, new data
qemu_io top.qcow2 "write -z 1M 1M" "write -P 0 3M 512k" "write -P 0xf3 24M 128k" \
    "write -P 0 26M 1M"
start_chainfs mnt -d vm=top.qcow2
# The guest writes zeros as data too, and punches a hole.
dd_write mnt/vm 8388608 1048576 0
fallocate -p -o 16777216 -l 524288 mnt/vm
to_raw mnt/vm guest.raw

ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2
wait_job_state mnt m1 ready
ctl_ok mnt/.jobs/ctl complete m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
stop_chainfs mnt

qemu_check t.qcow2
out=$(qemu-img compare -F raw t.qcow2 guest.raw 2>&1) || fail "target: $out"
# The target has data where the source's chain has data that is not zero
# (base data at [0, 1M), [2M, 3M), [3.5M, 4M) and [16.5M, 17M), top data
# at 24M), nowhere else: not where it was never written, zeroed, punched,
# or where zeros were written as data (3M, 8M by the guest, 26M).
assert_eq "$(data_extents t.qcow2 | paste -sd' ')" \
    "0 1048576 2097152 1048576 3670016 524288 17301504 524288 25165824 131072" \
    "data extents of the target"
for range in "1048576 1048576" "3145728 524288" "4194304 4194304" \
    "8388608 1048576" "16777216 524288" "27262976 1048576" "30000000 1000"; do
    qemu-img map --output=json t.qcow2 | awk -v s=${range% *} -v l=${range#* } '
        /"data": true/ {
            match($0, /"start": [0-9]+/); a = substr($0, RSTART + 9, RLENGTH - 9) + 0
            match($0, /"length": [0-9]+/); b = a + substr($0, RSTART + 10, RLENGTH - 10)
            if (a < s + l && s < b) bad = 1
        }
        END { exit bad }' || fail "the target has data in [$range)"
done
