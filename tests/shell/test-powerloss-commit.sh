#!/usr/bin/env bash
# Power loss during commit, on a 3-layer qcow2 chain while
# chainfs-crash-writer writes and fsyncs through the disk, then a clean
# unmount; every write and flush chainfs made is recorded and each crash
# state a power loss could leave (chainfs-powerloss.py) is checked:
#  - intermediate commit (top=mid base=base): every image passes
#    `qemu-img check` (leaks allowed); top's header names mid (old chain)
#    or base (new chain, only once base holds mid's data), and top's chain
#    holds every acknowledged write with the content it had; after the
#    unmount the new chain;
#  - active commit + complete: the old chain (top) holds the acknowledged
#    writes, or, once complete was sent, base does; once the job was seen
#    concluded, base must.
# POWERLOSS_STATES: crash states per run (default 50).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
requires_recorder

check_images()
{
    local img
    for img in top mid base; do
        pl_check_image "img/$img.qcow2"
    done
}

check_intermediate()
{
    local backing
    check_images
    backing=$(pl_backing_of img/top.qcow2)
    [[ $backing == "$tmpdir/img/mid.qcow2" || $backing == "$tmpdir/img/base.qcow2" ]] ||
        fail "$pl_state: top's backing is '$backing', neither mid nor base"
    if pl_marked unmounted; then
        assert_eq "$backing" "$tmpdir/img/base.qcow2" "$pl_state: top's backing after unmount"
    fi
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: backing ${backing##*/}: data lost or corrupted: $(cat check.out)"
    [[ $backing == */base.qcow2 ]] && switched=$((switched + 1))
    return 0
}

check_active()
{
    check_images
    if pl_marked concluded; then
        pl_writes_survived img/base.qcow2 initial.raw "$seed" ||
            fail "$pl_state: concluded, but base lost data: $(cat check.out)"
    elif ! pl_writes_survived img/top.qcow2 initial.raw "$seed"; then
        local old
        old=$(cat check.out)
        pl_marked complete-sent ||
            fail "$pl_state: complete not sent, the old chain lost data: $old"
        pl_writes_survived img/base.qcow2 initial.raw "$seed" ||
            fail "$pl_state: neither chain holds the data: old: $old; base: $(cat check.out)"
        switched=$((switched + 1))
    fi
}

# prepare: a fresh chain and an empty record.
prepare()
{
    rm -rf img img-initial replay-work record.log
    mkdir img
    pl_make_chain
    pl_snapshot
    pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
}

# Intermediate commit, slowed down so that the writer runs during it.
seed=5100
prepare
pl_writer mnt/vm "$seed" 200
ctl_ok mnt/.jobs/ctl commit id=j disk=vm top="$tmpdir/img/mid.qcow2" \
    base="$tmpdir/img/base.qcow2" speed=16M
pl_wait_state mnt j concluded
pl_mark concluded
pl_wait_writer
stop_chainfs mnt
pl_mark unmounted
switched=0
pl_replay check_intermediate 50
echo "intermediate commit: $switched of $pl_states states on the new chain"

# Active commit and complete.
seed=5200
prepare
ctl_ok mnt/.jobs/ctl commit id=j disk=vm base="$tmpdir/img/base.qcow2"
pl_writer mnt/vm "$seed" 0
pl_wait_state mnt j ready
pl_mark complete-sent
ctl_ok mnt/.jobs/j/ctl complete
pl_wait_state mnt j concluded
pl_mark concluded
pl_writer_more 20
stop_chainfs mnt
pl_mark unmounted
switched=0
pl_replay check_active 50
echo "active commit: $switched of $pl_states states only on the new chain"
