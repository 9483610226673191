#!/usr/bin/env bash
# Power loss during a backup sync=full into a new target, while
# chainfs-crash-writer writes and fsyncs through the disk (started once the
# backup was accepted, so the target must hold the disk as it was before),
# then a clean unmount.  Every write and flush chainfs made is recorded and
# each crash state a power loss could leave (chainfs-powerloss.py) must
# have: every image pass `qemu-img check` (leaks allowed; the target may be
# missing or not yet an image before the job concluded), the disk's chain
# hold every acknowledged write, and, once the job was seen concluded, the
# target exist and read exactly as the disk did when the backup started.
# POWERLOSS_STATES: crash states per run (default 40).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
requires_recorder

check_state()
{
    local img
    for img in top mid base; do
        pl_check_image "img/$img.qcow2"
    done
    if pl_is_image img/t.qcow2; then
        pl_check_image img/t.qcow2
    elif pl_marked concluded; then
        fail "$pl_state: backup concluded, but t.qcow2 is $( [[ -e img/t.qcow2 ]] && echo "not an image" || echo missing)"
    fi
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: data lost or corrupted: $(cat check.out)"
    if pl_marked concluded; then
        to_raw img/t.qcow2 target.raw
        assert_equal_files target.raw initial.raw \
            "$pl_state: the concluded backup is not the disk at its start"
        completed=$((completed + 1))
    fi
    return 0
}

seed=7100
mkdir -p img
pl_make_chain
pl_snapshot
pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
ctl_ok mnt/.jobs/ctl backup id=j disk=vm target="$tmpdir/img/t.qcow2" \
    sync=full speed=16M
pl_writer mnt/vm "$seed" 0
pl_wait_state mnt j concluded
pl_mark concluded
pl_writer_more 10
stop_chainfs mnt
pl_mark unmounted
completed=0
pl_replay check_state 40
echo "backup: $completed of $pl_states states after the job concluded"
