#!/usr/bin/env bash
# Power loss while fleeces run: on a 3-layer qcow2 chain whose top has a
# persistent bitmap `b` (qemu-img added it), while chainfs-crash-writer
# writes and fsyncs through the disk: `fleece id=f bitmap=b` with the
# default temporary store (unlinked at once: the recorder follows the
# unlinked file), the view read whole and compared with the disk at the
# instant, half of it punched ("already read"), cancel; then `fleece id=g`
# with store=img/g-store.qcow2 (a named store), cancel; a clean unmount.
# Every write and flush chainfs made is recorded and each crash state a
# power loss could leave (chainfs-powerloss.py) must have:
#  - the disk undamaged: top, mid and base pass `qemu-img check` (leaks
#    allowed), mid and base unchanged, every acknowledged write in the
#    chain (the stores are scratch space: anything goes there);
#  - `b` always there; `b@f` there once the fleece was acknowledged;
#    each valid or marked in use, never wrong: `b@f` not in use covers
#    every change up to the instant, `b` not in use (with `b@f` when that
#    is not in use too) every change since the mount, and once the fleece
#    was acknowledged `b` alone every change since the instant; after the
#    unmount neither in use.
# POWERLOSS_STATES: crash states (default 50).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io qemu-nbd nbdinfo
requires_tool chainfs-crash-writer
requires_recorder

# covers REF NOW EXTENTS...: every 64K cluster where NOW differs from REF
# is inside one of the extents ("OFFSET LENGTH" lines) of the files
# EXTENTS; prints the first that is not.
covers()
{
    python3 - "$@" <<'PY'
import sys
ref, now = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
ext = [tuple(map(int, l.split())) for f in sys.argv[3:] for l in open(f)
       if l.strip()]
g = 65536
for c in range(0, len(now), g):
    if ref[c:c + g] != now[c:c + g] and not any(o <= c and c + g <= o + n for o, n in ext):
        print(f"cluster at {c} changed but is not dirty")
        sys.exit(1)
PY
}

# in_use NAME: the bitmap NAME of the current state's top is marked in use.
in_use() { grep -q "^$1 .*in-use" <<<"$list"; }

check_bitmaps()
{
    local snap_clean=0
    list=$(qemu_bitmaps img/top.qcow2) ||
        fail "$pl_state: qemu-img info cannot read the bitmaps"
    grep -q '^b ' <<<"$list" || fail "$pl_state: bitmap b is gone: '$list'"
    if pl_marked fleece-started; then
        grep -q '^b@f ' <<<"$list" || fail "$pl_state: bitmap b@f is gone: '$list'"
    fi
    if pl_marked unmounted && grep -q 'in-use' <<<"$list"; then
        fail "$pl_state: bitmaps still in use after the unmount: '$list'"
    fi
    : >extents-b@f.txt
    if grep -q '^b@f ' <<<"$list" && ! in_use b@f; then
        nbd_dirty_extents img/top.qcow2 b@f >extents-b@f.txt
        covers initial.raw ref-f.raw extents-b@f.txt >covers.out ||
            fail "$pl_state: b@f is not in use and wrong up to the instant: $(cat covers.out)"
        snap_clean=1
        clean=$((clean + 1))
    fi
    if in_use b; then
        inuse=$((inuse + 1))
        return 0
    fi
    nbd_dirty_extents img/top.qcow2 b >extents-b.txt
    if pl_marked fleece-started; then
        covers ref-f.raw now.raw extents-b.txt >covers.out ||
            fail "$pl_state: b is not in use and misses a change since the instant: $(cat covers.out)"
    fi
    if ! grep -q '^b@f ' <<<"$list" || ((snap_clean)); then
        covers initial.raw now.raw extents-b.txt extents-b@f.txt >covers.out ||
            fail "$pl_state: b (with b@f) is not in use and misses a change since the mount: $(cat covers.out)"
    fi
    clean=$((clean + 1))
}

check_state()
{
    local img
    for img in top mid base; do
        pl_check_image "img/$img.qcow2"
    done
    for img in mid base; do
        assert_eq "$(md5sum <"img/$img.qcow2")" "${sums[$img]}" \
            "$pl_state: backing layer $img changed"
    done
    pl_writes_survived img/top.qcow2 initial.raw "$seed" ||
        fail "$pl_state: data lost or corrupted: $(cat check.out)"
    check_bitmaps
    # Not a failure (the stores are scratch space), but counted: a power
    # loss can keep a store's name when its unlink was not made durable.
    if pl_marked unmounted && compgen -G 'img/.chainfs-fleece-*' >/dev/null; then
        leftover_temp=$((leftover_temp + 1))
    fi
    if pl_marked unmounted && [[ -e img/g-store.qcow2 ]]; then
        leftover_named=$((leftover_named + 1))
    fi
    return 0
}

seed=9100
mkdir -p img
pl_make_chain
qemu-img bitmap --add img/top.qcow2 b
declare -A sums=([mid]=$(md5sum <img/mid.qcow2) [base]=$(md5sum <img/base.qcow2))
pl_snapshot
pl_start_chainfs mnt -d "vm=$tmpdir/img/top.qcow2"
pl_writer mnt/vm "$seed" 0
pl_writer_fsyncs 5

# The instant, with the writer paused so that ref-f.raw is the disk then.
pl_pause_writer
cp mnt/vm ref-f.raw
ctl_ok mnt/.jobs/ctl fleece id=f disk=vm bitmap=b
pl_mark fleece-started
kill -CONT "$pl_writer_pid"
pl_writer_fsyncs 10
cp mnt/vm@f view.raw
assert_equal_files view.raw ref-f.raw "the view read under the writer"
if [[ $(id -u) == 0 ]]; then
    # "Already read" (fallocate needs CAP_DAC_OVERRIDE on the 0400 view):
    # the store's host file is punched too.
    fallocate -p -o 0 -l 4M mnt/vm@f
fi
pl_writer_fsyncs 10
ctl_ok mnt/.jobs/ctl cancel f
pl_wait_state mnt f concluded

# A named store in the image directory.
ctl_ok mnt/.jobs/ctl fleece id=g disk=vm store="$tmpdir/img/g-store.qcow2"
pl_writer_fsyncs 10
ctl_ok mnt/.jobs/ctl cancel g
pl_wait_state mnt g concluded
pl_writer_more 10
stop_chainfs mnt
pl_mark unmounted
[[ ! -e img/g-store.qcow2 ]] || fail "the store g-store.qcow2 is left after the job"
clean=0 inuse=0 leftover_temp=0 leftover_named=0
pl_replay check_state 50
echo "fleece: $clean clean bitmaps checked against the data, $inuse states with b in use"
echo "fleece: states after the unmount that kept a store's name: temporary $leftover_temp," \
    "g-store.qcow2 $leftover_named"

