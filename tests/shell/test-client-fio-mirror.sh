#!/usr/bin/env bash
# A mirror runs and completes while fio writes and verifies 4 KiB random
# blocks (O_DIRECT with libaio, and buffered, rate-limited so that the
# writes outlast the job): the writes land before the mirror starts,
# while it copies, while it is ready and after the switch; fio's read-back
# then finds every block on the new chain, and so does a verify-only
# pass on the target mounted alone afterwards.  The target is clean and
# has no backing file.
: "${CHAINFS_TIMEOUT:=60}"
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/client-functions.sh"
requires qemu-img fio
requires_fuse

head -c 128M /dev/urandom >base.raw
qcow2_create top.qcow2 128M 65536 "$tmpdir/base.raw" raw
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

# bitmap_dirty: the bytes the named bitmap "w" has seen written.
bitmap_dirty()
{
    sed -n 's/^count: //p' mnt/.bitmaps/vm/w/status
}

# wait_writes WHAT: poll until fio has written since bitmap "w" was last
# cleared (fio must still be running).
wait_writes()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until [[ $(bitmap_dirty) -gt 0 ]]; do
        _running "$fio_pid" || fail "fio ended before writing $1: $(tail -n 20 fio-write.log)"
        ((SECONDS < deadline)) || fail "no write $1 in ${CHAINFS_TIMEOUT}s"
        sleep 0.05
    done
}

# 2 x 16384 writes at 2 x 2500 a second: some 6.5 s of writing.
ctl_ok $ctl bitmap-add disk=vm name=w
fio_verify_jobs write.fio mnt/vm
fio --rate_iops=2500 write.fio >fio-write.log 2>&1 &
fio_pid=$!
cleanup_fn "kill $fio_pid 2>/dev/null"
wait_writes "before the mirror"

ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2
wait_job_state mnt m1 ready
ctl_ok $ctl bitmap-clear disk=vm name=w
wait_writes "while the mirror is ready"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of the mirror"
assert_chain mnt vm "$tmpdir/t.qcow2"
ctl_ok $ctl bitmap-clear disk=vm name=w
wait_writes "after the switch to the target"

wait "$fio_pid" || fail "fio failed: $(grep -iE 'verify|err=|error' fio-write.log | head -n 20)"
grep -q 'err= 0' fio-write.log || fail "fio: $(tail -n 20 fio-write.log)"
assert_fio_verified fio-write.log 2
ctl_ok $ctl bitmap-remove disk=vm name=w
stop_chainfs mnt
qemu_check t.qcow2
qemu_check top.qcow2
assert_eq "$(qemu_chain t.qcow2)" "$tmpdir/t.qcow2" "the target has no backing file"

start_chainfs mnt -d vm=t.qcow2
run_fio "verify only, the target alone" fio-verify.log --verify_only write.fio
assert_fio_verified fio-verify.log 2
stop_chainfs mnt
