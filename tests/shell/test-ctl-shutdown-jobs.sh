#!/usr/bin/env bash
# Unmounting or a signal with jobs running cancels them and waits: a
# mirror that was ready leaves its target a consistent copy, a paused or
# throttled one stops at once; the daemon exits 0 with every image clean.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io
requires_fuse

for name in a b c; do
    qcow2_create $name.qcow2 8M 65536
    qemu_io $name.qcow2 "write -P 0x6$name 0 8M"
done

run_round()
{
    local how=$1
    rm -f ta.qcow2 tb.qcow2 tc.qcow2
    start_chainfs mnt -d a=a.qcow2 -d b=b.qcow2 -d c=c.qcow2
    ctl_ok mnt/.jobs/ctl mirror id=slow disk=a target=$tmpdir/ta.qcow2 speed=16K buf-size=64K
    ctl_ok mnt/.jobs/ctl mirror id=ready disk=b target=$tmpdir/tb.qcow2
    ctl_ok mnt/.jobs/ctl mirror id=paused disk=c target=$tmpdir/tc.qcow2 speed=16K buf-size=64K
    ctl_ok mnt/.jobs/paused/ctl pause
    wait_job_state mnt ready ready
    wait_job_state mnt paused paused
    assert_eq "$(job_state mnt slow)" running "state of the throttled mirror"
    dd_write mnt/b 4096 8192 1
    to_raw mnt/b b-guest.raw
    case $how in
    unmount) stop_chainfs mnt ;;
    *)
        signal_chainfs "$how" mnt
        assert_eq "$chainfs_status" 0 "exit status after SIG$how"
        ;;
    esac
    for img in a.qcow2 b.qcow2 c.qcow2 ta.qcow2 tb.qcow2 tc.qcow2; do
        qemu_check $img
    done
    to_raw tb.qcow2 tb.raw
    assert_equal_files tb.raw b-guest.raw "target of the ready mirror ($how)"
}

run_round unmount
run_round TERM
run_round INT
