#!/usr/bin/env bash
# Power loss around persistent dirty bitmaps: a qcow2 disk with a bitmap
# `old` that qemu-img added, mounted; while chainfs-crash-writer writes and
# fsyncs, bitmap-add b1 persistent=on, bitmap-add b2 persistent=on,
# bitmap-remove b1, then a clean unmount (which stores the bits and clears
# the in-use flags).  The writer is paused (SIGSTOP, its requests landed)
# around each add, and the disk read then (ref-NAME.raw).  Every write and
# flush chainfs made is recorded and each crash state a power loss could
# leave (chainfs-powerloss.py) must have:
#  - the image pass `qemu-img check` (leaks allowed) and hold every
#    acknowledged write;
#  - every persistent bitmap valid or marked in use, never wrong: one not
#    in use (read by qemu-nbd) is dirty at least wherever the disk differs
#    from what it read when the bitmap was added (`old`: before the mount);
#  - `old` always there; b2 there once its add was acknowledged; b1 there
#    from its add (acknowledged) until its remove was sent, gone after
#    the unmount;
#    after the unmount, `old` and b2 not in use.
# POWERLOSS_STATES: crash states (default 60).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io qemu-nbd nbdinfo
requires_tool chainfs-crash-writer
requires_recorder

# covers REF NOW EXTENTS: every 64K cluster where NOW differs from REF is
# inside one of EXTENTS ("OFFSET LENGTH" lines); prints the first that is
# not.
covers()
{
    python3 - "$1" "$2" "$3" <<'PY'
import sys
ref, now = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
ext = [tuple(map(int, l.split())) for l in open(sys.argv[3]) if l.strip()]
g = 65536
for c in range(0, len(now), g):
    if ref[c:c + g] != now[c:c + g] and not any(o <= c and c + g <= o + n for o, n in ext):
        print(f"cluster at {c} changed but is not dirty")
        sys.exit(1)
PY
}

check_state()
{
    local list name flags
    pl_check_image img/top.qcow2
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: data lost or corrupted: $(cat check.out)"
    list=$(qemu_bitmaps img/top.qcow2) ||
        fail "$pl_state: qemu-img info cannot read the bitmaps"
    grep -q '^old ' <<<"$list" || fail "$pl_state: bitmap old is gone: '$list'"
    if pl_marked b2-added; then
        grep -q '^b2 ' <<<"$list" || fail "$pl_state: bitmap b2 is gone: '$list'"
    fi
    if pl_marked b1-added && ! pl_marked b1-remove-sent; then
        grep -q '^b1 ' <<<"$list" || fail "$pl_state: bitmap b1 is gone: '$list'"
    fi
    if pl_marked unmounted; then
        ! grep -q '^b1 ' <<<"$list" || fail "$pl_state: bitmap b1 is back after the unmount"
    fi
    while read -r name _ flags; do
        [[ -n $name ]] || continue
        if [[ $flags == *in-use* ]]; then
            pl_marked unmounted && fail "$pl_state: $name still in use after the unmount"
            inuse=$((inuse + 1))
            continue
        fi
        nbd_dirty_extents img/top.qcow2 "$name" >extents.txt
        covers "ref-$name.raw" now.raw extents.txt >covers.out ||
            fail "$pl_state: bitmap $name is not in use and wrong: $(cat covers.out); extents: $(paste -sd' ' extents.txt)"
        clean=$((clean + 1))
    done <<<"$list"
}

seed=8100
mkdir -p img
qcow2_create img/top.qcow2 8M 65536
qemu_io img/top.qcow2 "write -P 0x5a 1M 2M"
qemu-img bitmap --add img/top.qcow2 old
to_raw img/top.qcow2 initial.raw
cp initial.raw ref-old.raw
pl_snapshot
pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
pl_writer mnt/vm "$seed" 0
pl_writer_fsyncs 5
for b in b1 b2; do
    pl_pause_writer
    cp mnt/vm "ref-$b.raw"
    ctl_ok mnt/.jobs/ctl bitmap-add disk=vm name=$b persistent=on
    pl_mark "$b-added"
    kill -CONT "$pl_writer_pid"
    pl_writer_fsyncs 10
done
pl_mark b1-remove-sent
ctl_ok mnt/.jobs/ctl bitmap-remove disk=vm name=b1
pl_writer_more 10
stop_chainfs mnt
pl_mark unmounted
clean=0 inuse=0
pl_replay check_state 60
echo "bitmaps: $clean clean bitmaps checked against the data, $inuse marked in use"
