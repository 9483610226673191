#!/usr/bin/env bash
# Power loss during stream and snapshot, on a 3-layer qcow2 chain while
# chainfs-crash-writer writes and fsyncs through the disk, then a clean
# unmount; every write and flush chainfs made is recorded and each crash
# state a power loss could leave (chainfs-powerloss.py) is checked:
#  - stream of the whole chain, and stream with base=base: every image
#    passes `qemu-img check` (leaks allowed); top's header names the old
#    backing (mid) or the new one (none, base), and top's chain holds every
#    acknowledged write with the content it had; after the unmount the new
#    chain;
#  - snapshot: top's chain holds the acknowledged writes, or the overlay's
#    does (it must, once the command was acknowledged: the overlay then
#    exists, is an image backed by top, and passes `qemu-img check`).
# POWERLOSS_STATES: crash states per run (default 40).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
requires_recorder

check_stream()
{
    local backing img
    for img in top mid base; do
        pl_check_image "img/$img.qcow2"
    done
    backing=$(pl_backing_of img/top.qcow2)
    [[ $backing == "$tmpdir/img/mid.qcow2" || $backing == "$new_backing" ]] ||
        fail "$pl_state: top's backing is '$backing', neither mid nor '$new_backing'"
    if pl_marked unmounted; then
        assert_eq "$backing" "$new_backing" "$pl_state: top's backing after unmount"
    fi
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: backing '${backing##*/}': data lost or corrupted: $(cat check.out)"
    [[ $backing == "$new_backing" ]] && switched=$((switched + 1))
    return 0
}

check_snapshot()
{
    local img
    for img in top mid base; do
        pl_check_image "img/$img.qcow2"
    done
    if pl_marked snapshot-ok; then
        pl_is_image img/ov.qcow2 ||
            fail "$pl_state: snapshot acknowledged, but ov.qcow2 is $( [[ -e img/ov.qcow2 ]] && echo "not an image" || echo missing)"
    fi
    if pl_is_image img/ov.qcow2; then
        pl_check_image img/ov.qcow2
        assert_eq "$(pl_backing_of img/ov.qcow2)" "$tmpdir/img/top.qcow2" \
            "$pl_state: the overlay's backing"
        if pl_writes_survived img/ov.qcow2 initial.raw "$seed"; then
            switched=$((switched + 1))
            return 0
        fi
        pl_marked snapshot-ok &&
            fail "$pl_state: snapshot acknowledged, the overlay's chain lost data: $(cat check.out)"
    fi
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: data lost or corrupted in top's chain: $(cat check.out)"
}

prepare()
{
    rm -rf img img-initial replay-work record.log
    mkdir img
    pl_make_chain
    pl_snapshot
    pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
}

# stream_run SEED [BASE]
stream_run()
{
    seed=$1
    local args=()
    new_backing=
    if [[ $# -gt 1 ]]; then
        new_backing=$tmpdir/img/$2
        args=(base="$new_backing")
    fi
    prepare
    pl_writer mnt/vm "$seed" 200
    ctl_ok mnt/.jobs/ctl stream id=j disk=vm speed=16M "${args[@]}"
    pl_wait_state mnt j concluded
    pl_mark concluded
    pl_wait_writer
    stop_chainfs mnt
    pl_mark unmounted
    switched=0
    pl_replay check_stream 40
    echo "stream ${2:-(all)}: $switched of $pl_states states on the new chain"
}

stream_run 6100
stream_run 6200 base.qcow2

seed=6300
prepare
pl_writer mnt/vm "$seed" 0
pl_writer_fsyncs 5
ctl_ok mnt/.jobs/ctl snapshot disk=vm overlay="$tmpdir/img/ov.qcow2"
pl_mark snapshot-ok
pl_writer_more 20
stop_chainfs mnt
switched=0
pl_replay check_snapshot 40
echo "snapshot: $switched of $pl_states states on the overlay"
