#!/usr/bin/env bash
# Target write errors (ENOSPC injected with the fault format):
# on-target-error=stop pauses the mirror with io-status nospace and a
# JOB_ERROR event until resume retries, after which it gets ready and
# completes with an exact copy; on-target-error=report fails the job
# (result failed, error: names the write and the reason) and leaves the
# disk on its source.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

# fault_conf FILE IMAGE [RULE-LINES]: a fault configuration over IMAGE,
# replaced atomically (rename).
fault_conf()
{
    local file=$1 image=$2
    shift 2
    printf '[image]\nfile=%s\nformat=qcow2\n' "$image" >"$file.new"
    [[ $# -eq 0 ]] || printf '%s\n' "$@" >>"$file.new"
    mv "$file.new" "$file"
}
enospc=("[rule full]" "op=write,zeroes" "errno=ENOSPC" "offset=4M" "len=1M")

qcow2_create a.qcow2 16M 65536
qemu_io a.qcow2 "write -P 0x31 0 16M"
qcow2_create b.qcow2 16M 65536
qemu_io b.qcow2 "write -P 0x32 0 16M"
qcow2_create ta.qcow2 16M 65536
qcow2_create tb.qcow2 16M 65536
fault_conf ta.conf ta.qcow2 "${enospc[@]}"
fault_conf tb.conf tb.qcow2 "${enospc[@]}"
start_chainfs mnt -d a=a.qcow2 -d b=b.qcow2
ctl=mnt/.jobs/ctl

# stop: paused with io-status nospace until resume.
ctl_ok $ctl mirror id=m1 disk=a target=$tmpdir/ta.conf format=fault mode=existing on-target-error=stop
wait_job_state mnt m1 paused
assert_eq "$(job_key mnt m1 io-status)" nospace "io-status of m1"
grep -qE ' JOB_ERROR id=m1 operation=write action=stop$' mnt/.jobs/events ||
    fail "no JOB_ERROR for m1: $(cat mnt/.jobs/events)"
dd_write mnt/a 4194304 65536 0x33    # guest I/O goes on
fault_conf ta.conf ta.qcow2
ctl_ok $ctl resume m1
wait_job_state mnt m1 ready
assert_eq "$(job_key mnt m1 io-status)" ok "io-status of m1 after resume"
ctl_ok $ctl complete m1
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of m1"
assert_chain mnt a "$tmpdir/ta.conf"
to_raw mnt/a a-guest.raw

# report: the job fails, the disk stays on its source.
ctl_ok $ctl mirror id=m2 disk=b target=$tmpdir/tb.conf format=fault mode=existing
wait_job_state mnt m2 concluded
assert_eq "$(job_key mnt m2 result)" failed "result of m2"
job_key mnt m2 error | grep -qE '^write to .*tb\.(conf|qcow2).*: No space left on device$' ||
    fail "error of m2: $(cat mnt/.jobs/m2/status)"
grep -qE " JOB_COMPLETED id=m2 .*error=\"write to .*No space left on device\"$" mnt/.jobs/events ||
    fail "no JOB_COMPLETED with an error for m2: $(cat mnt/.jobs/events)"
assert_chain mnt b "$tmpdir/b.qcow2"
to_raw mnt/b b-guest.raw
stop_chainfs mnt

for img in a.qcow2 b.qcow2 ta.qcow2 tb.qcow2; do
    qemu_check "$img"
done
out=$(qemu-img compare -F raw ta.qcow2 a-guest.raw 2>&1) || fail "ta.qcow2: $out"
to_raw b.qcow2 b-after.raw
assert_equal_files b-after.raw b-guest.raw "b after unmount"
