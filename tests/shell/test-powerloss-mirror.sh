#!/usr/bin/env bash
# Power loss during a mirror and its complete: mirror sync=full of a 3-layer
# chain into a new target while chainfs-crash-writer writes and fsyncs,
# wait for ready, complete, let the writer go on into the target, clean
# unmount; once in background copy mode, once in write-blocking.  Every
# write and flush chainfs made is recorded and each crash state a power
# loss could leave (chainfs-powerloss.py) must have:
#  - every image that is part of a chain pass `qemu-img check` (leaks
#    allowed); the target only may be missing or not yet an image while
#    complete was not sent (it is a new file);
#  - the acknowledged writes in the old chain (top), or, once complete was
#    sent, in the target; once the job was seen concluded (and after the
#    unmount), in the target, which must exist.
# POWERLOSS_STATES: crash states per run (default 50).
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
    elif pl_marked complete-sent; then
        fail "$pl_state: complete was sent but target t.qcow2 is $( [[ -e img/t.qcow2 ]] && echo "not an image" || echo missing)"
    fi
    if pl_marked concluded; then
        pl_writes_survived img/t.qcow2 initial.raw "$seed" ||
            fail "$pl_state: concluded, but the target lost data: $(cat check.out)"
    elif ! pl_writes_survived img/top.qcow2 initial.raw "$seed"; then
        local old
        old=$(cat check.out)
        pl_marked complete-sent ||
            fail "$pl_state: complete not sent, the old chain lost data: $old"
        pl_writes_survived img/t.qcow2 initial.raw "$seed" ||
            fail "$pl_state: neither chain holds the data: old: $old; target: $(cat check.out)"
    fi
}

# mirror_run SEED COPY_MODE
mirror_run()
{
    seed=$1
    rm -rf img img-initial replay-work record.log
    mkdir img
    pl_make_chain
    pl_snapshot
    pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
    ctl_ok mnt/.jobs/ctl mirror id=j disk=vm target="$tmpdir/img/t.qcow2" \
        copy-mode="$2"
    pl_writer mnt/vm "$seed" 0
    pl_wait_state mnt j ready
    pl_mark complete-sent
    ctl_ok mnt/.jobs/j/ctl complete
    pl_wait_state mnt j concluded
    pl_mark concluded
    pl_writer_more 20
    stop_chainfs mnt
    pl_mark unmounted
    pl_replay check_state 50
}

mirror_run 4100 background
mirror_run 4200 write-blocking
