#!/usr/bin/env bash
# Power loss while persistent bitmaps move to a new active layer: a qcow2
# top over a base, with two bitmaps qemu-img left in the top (`old`,
# enabled, and `d`, disabled, holding known bits), mounted; while
# chainfs-crash-writer writes and fsyncs: bitmap-add p persistent=on, a
# snapshot onto img/snap.qcow2, a mirror sync=full into img/t.qcow2 and its
# complete, then a clean unmount.  Every write and flush chainfs made is
# recorded and each crash state a power loss could leave
# (chainfs-powerloss.py) must have:
#  - every image that is one pass `qemu-img check` (leaks allowed); snap
#    once the snapshot was acknowledged, t once complete was sent;
#  - the acknowledged writes in the active chain: top; top or snap while
#    the snapshot runs; snap; snap or t once complete was sent; t once the
#    job concluded;
#  - every persistent bitmap (old, d, and p once its add was acknowledged)
#    in the old layer or the new (or both), never gone without a trace;
#    each copy marked in use, or right: `d` holds exactly its bits, `old`
#    and `p` cover every change of their layer's chain since they were
#    made; a copy is also right for the disk (covers the active chain)
#    when the active layer has none; after the unmount, all in t, not in
#    use.
# POWERLOSS_STATES: crash states (default 40).
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

# active_layer: which of top, snap and t may be the disk's active layer in
# this state (newest first), given the marks; the first whose chain holds
# every acknowledged write is it (its content stays in now.raw).
active_layer()
{
    local candidates layer
    if pl_marked concluded; then
        candidates="t"
    elif pl_marked complete-sent; then
        candidates="t snap"
    elif pl_marked snap-done; then
        candidates="snap"
    elif pl_marked snap-sent; then
        candidates="snap top"
    else
        candidates="top"
    fi
    for layer in $candidates; do
        pl_is_image "img/$layer.qcow2" || continue
        if pl_writes_survived "img/$layer.qcow2" initial.raw "$seed"; then
            active=$layer
            return 0
        fi
        echo "$layer: $(cat check.out)" >>lost.txt
    done
    fail "$pl_state: no chain among '$candidates' holds the acknowledged writes: $(cat lost.txt)"
}

# check_copy LAYER NAME FLAGS: the copy of bitmap NAME in LAYER is in use
# or right for LAYER's chain, and for the disk if the active layer has no
# copy.
check_copy()
{
    local layer=$1 name=$2 flags=$3 ref
    if [[ $flags == *in-use* ]]; then
        inuse=$((inuse + 1))
        return 0
    fi
    nbd_dirty_extents "img/$layer.qcow2" "$name" >extents.txt
    if [[ $name == d ]]; then
        assert_equal_files extents.txt d-expected.txt \
            "$pl_state: disabled bitmap d in $layer is not in use and wrong"
    else
        ref=initial.raw
        [[ $name == p ]] && ref=ref-p.raw
        [[ -f $layer.raw ]] || to_raw "img/$layer.qcow2" "$layer.raw"
        covers "$ref" "$layer.raw" extents.txt >covers.out ||
            fail "$pl_state: bitmap $name in $layer is not in use and wrong for $layer: $(cat covers.out); extents: $(paste -sd' ' extents.txt)"
        if ! grep -q "^$name " <<<"${lists[$active]}"; then
            covers "$ref" now.raw extents.txt >covers.out ||
                fail "$pl_state: bitmap $name is not in the active layer $active, and its copy in $layer (not in use) misses writes of the disk: $(cat covers.out)"
        fi
    fi
    clean=$((clean + 1))
}

check_state()
{
    local layer name want flags found
    rm -f lost.txt top.raw snap.raw t.raw
    declare -gA lists=()
    for layer in top snap t; do
        if pl_is_image "img/$layer.qcow2"; then
            pl_check_image "img/$layer.qcow2"
            lists[$layer]=$(qemu_bitmaps "img/$layer.qcow2") ||
                fail "$pl_state: qemu-img info cannot read the bitmaps of $layer"
        elif [[ $layer == snap ]] && pl_marked snap-done; then
            fail "$pl_state: the snapshot was acknowledged but snap.qcow2 is $( [[ -e img/snap.qcow2 ]] && echo "not an image" || echo missing)"
        elif [[ $layer == t ]] && pl_marked complete-sent; then
            fail "$pl_state: complete was sent but t.qcow2 is $( [[ -e img/t.qcow2 ]] && echo "not an image" || echo missing)"
        fi
    done
    pl_check_image img/base.qcow2
    active_layer
    want="old d"
    pl_marked p-added && want="$want p"
    for name in $want; do
        found=
        for layer in "${!lists[@]}"; do
            flags=$(awk -v n="$name" '$1 == n { print $3 }' <<<"${lists[$layer]}")
            [[ -n $flags ]] || continue
            found="$found $layer"
            check_copy "$layer" "$name" "$flags"
        done
        [[ -n $found ]] ||
            fail "$pl_state: bitmap $name is gone without a trace (active layer $active; top: '${lists[top]:-}', snap: '${lists[snap]:-}', t: '${lists[t]:-}')"
        if pl_marked unmounted; then
            [[ $found == *t* ]] || fail "$pl_state: after the unmount, $name is not in t but in$found"
            [[ $(awk -v n="$name" '$1 == n { print $3 }' <<<"${lists[t]}") != *in-use* ]] ||
                fail "$pl_state: after the unmount, $name in t is still in use"
        fi
        [[ $found == *" "*" "* ]] && both=$((both + 1))
    done
    return 0
}

seed=9500
mkdir -p img
qcow2_create img/base.qcow2 8M 65536
qemu_io img/base.qcow2 "write -P 0x11 0 6M"
qcow2_create img/top.qcow2 8M 65536 "$tmpdir/img/base.qcow2" qcow2
qemu-img bitmap --add img/top.qcow2 d
qemu_io img/top.qcow2 "write -P 0x33 1M 1M" "write -P 0x34 7M 64K"
qemu-img bitmap --disable img/top.qcow2 d
qemu-img bitmap --add img/top.qcow2 old
nbd_dirty_extents img/top.qcow2 d >d-expected.txt
[[ $(cat d-expected.txt) == $'1048576 1048576\n7340032 65536' ]] ||
    fail "setup: d holds '$(cat d-expected.txt)'"
to_raw img/top.qcow2 initial.raw
pl_snapshot
pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
pl_writer mnt/vm "$seed" 0
pl_writer_fsyncs 5
pl_pause_writer
cp mnt/vm ref-p.raw
ctl_ok mnt/.jobs/ctl bitmap-add disk=vm name=p persistent=on
pl_mark p-added
kill -CONT "$pl_writer_pid"
pl_writer_fsyncs 5

pl_mark snap-sent
ctl_ok mnt/.jobs/ctl snapshot disk=vm overlay="$tmpdir/img/snap.qcow2"
pl_mark snap-done
pl_writer_fsyncs 10

ctl_ok mnt/.jobs/ctl mirror id=j disk=vm target="$tmpdir/img/t.qcow2"
pl_wait_state mnt j ready
pl_mark complete-sent
ctl_ok mnt/.jobs/j/ctl complete
pl_wait_state mnt j concluded
pl_mark concluded
pl_writer_more 10
stop_chainfs mnt
pl_mark unmounted
assert_eq "$(qemu_bitmaps img/t.qcow2)" "d 65536 -
old 65536 auto
p 65536 auto" "the bitmaps in t after the unmount"
clean=0 inuse=0 both=0
pl_replay check_state 40
echo "bitmap move: $clean clean copies checked against the data, $inuse copies in use," \
    "$both times a bitmap in two layers"
