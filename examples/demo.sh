#!/usr/bin/env bash
# A tour of chainfs: build a raw <- qcow2 <- qcow2 chain with qemu-img,
# mount it, look at the tree, read, write (plain, O_DIRECT, fsync), make a
# sparse copy, take a live snapshot, mirror the disk to a new image while a
# writer runs and switch to it, unmount, and check every image with
# qemu-img.
#
# Usage: examples/demo.sh      (CHAINFS=/path/to/chainfs to pick a binary;
#                               otherwise builds build/ if needed)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHAINFS=${CHAINFS:-$src/build/fuse/chainfs}
if [[ ! -x $CHAINFS ]]; then
    echo "== building chainfs"
    "$src/scripts/build.sh"
fi
CHAINFS=$(realpath "$CHAINFS")

work=$(mktemp -d "${TMPDIR:-/tmp}/chainfs-demo.XXXXXX")
pid=
cleanup()
{
    local status=$?
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        fusermount3 -u -z "$work/mnt" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s $work/chainfs.log ]]; then
        echo "-- chainfs log:"
        cat "$work/chainfs.log"
    fi
    rm -rf --one-file-system "$work"
    [[ $status -eq 0 ]] || echo "demo: FAILED (status $status)"
    exit "$status"
}
trap cleanup EXIT
cd "$work"

say() { printf '\n== %s\n' "$*"; }
# run CMD...: show the command (quoting arguments with blanks), then run it.
run()
{
    local arg line='$'
    for arg in "$@"; do
        [[ $arg == *' '* ]] && arg="'$arg'"
        line+=" $arg"
    done
    echo "$line"
    "$@"
}

say "1. An image chain: base.raw <- mid.qcow2 <- top.qcow2 (64 MiB)"
run qemu-img create -q -f raw base.raw 64M
run qemu-io -f raw -c 'write -P 0xaa 0 4M' base.raw
run qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
run qemu-io -f qcow2 -c 'write -P 0xbb 2M 4M' mid.qcow2
run qemu-img create -q -f qcow2 -o cluster_size=4096 -b mid.qcow2 -F qcow2 top.qcow2
run qemu-io -f qcow2 -c 'write -P 0xcc 5M 1M' top.qcow2
run qemu-img map top.qcow2
# What a guest sees, and the backing layers' checksums, for later.
qemu-img convert -O raw top.qcow2 guest.raw
md5sum base.raw mid.qcow2 >lower.md5

say "2. Mount it (foreground daemon in the background of this script)"
mkdir mnt
echo "\$ $CHAINFS -f -d vm=top.qcow2 mnt &"
"$CHAINFS" -f -d vm=top.qcow2 mnt 2>chainfs.log &
pid=$!
for ((i = 0; i < 200; i++)); do
    mountpoint -q mnt && break
    kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; echo "chainfs exited"; exit 1; }
    sleep 0.05
done
mountpoint -q mnt || { echo "mnt not mounted after 10s"; exit 1; }
run ls -la mnt
run cat mnt/.chains/vm
run ls -la mnt/.jobs

say "3. Read: the disk is what qemu-img convert sees"
run cmp mnt/vm guest.raw
echo "identical"
run od -A d -t x1 -j $((5 * 1048576)) -N 16 mnt/vm

say "4. Write with dd (unaligned, into the top layer; base and mid untouched)"
printf '%s\n' "\$ printf 'hello, chainfs\n' | dd of=mnt/vm bs=1 seek=1000 conv=notrunc"
printf 'hello, chainfs\n' | dd of=mnt/vm bs=1 seek=1000 conv=notrunc status=none
run dd if=mnt/vm bs=1 skip=1000 count=15 status=none

say "5. O_DIRECT I/O with qemu-io (as QEMU with cache=none)"
run qemu-io -f raw -t none -c 'write -P 0xdd 8M 64k' -c 'read -P 0xdd 8M 64k' mnt/vm

say "6. fsync: dd conv=fsync returns only when the write is durable"
run dd if=/dev/urandom of=mnt/vm bs=64k count=4 seek=200 conv=notrunc,fsync status=none

say "7. Sparse copy: holes are visible to du, cp and qemu-img"
run du -h --apparent-size mnt/vm
run du -h mnt/vm
run cp --sparse=always mnt/vm copy.raw
run du -h copy.raw

say "8. A live snapshot: later writes land in a new overlay"
run sh -c "echo 'snapshot disk=vm overlay=$work/snap.qcow2' > mnt/.jobs/ctl"
run cat mnt/.chains/vm

say "9. Mirror the disk to a new image while a writer keeps writing"
# wait_status JOB STATE: poll the job's status file until it shows STATE.
wait_status()
{
    for ((i = 0; i < 600; i++)); do
        grep -qx "state: $2" "mnt/.jobs/$1/status" && return 0
        sleep 0.05
    done
    echo "job $1 did not reach state $2"; cat "mnt/.jobs/$1/status"; return 1
}
(
    for ((i = 0; i < 200; i++)); do
        dd if=/dev/urandom of=mnt/vm bs=4k count=1 seek=$((RANDOM % 16384)) \
           conv=notrunc status=none
    done
) &
writer=$!
run sh -c "echo 'mirror id=m1 disk=vm target=$work/mirror.qcow2' > mnt/.jobs/ctl"
wait_status m1 ready
run cat mnt/.jobs/m1/status
wait "$writer"
echo "(the writer finished; the mirror kept the target in sync meanwhile)"
run sh -c "echo complete > mnt/.jobs/m1/ctl"
wait_status m1 concluded
run grep -E '^(state|result):' mnt/.jobs/m1/status
run cat mnt/.chains/vm
run cat mnt/.jobs/events
run sh -c "echo 'dismiss m1' > mnt/.jobs/ctl"
# What the guest sees now, to compare with the mirror after unmounting.
cp --sparse=always mnt/vm final.raw

say "10. Unmount"
run fusermount3 -u mnt
status=0
wait "$pid" || status=$?
pid=
echo "chainfs exited with status $status"
[[ $status -eq 0 ]]

say "11. The images are clean and hold what was written"
run qemu-img check top.qcow2
run qemu-img compare -f raw -F qcow2 copy.raw top.qcow2
run qemu-img check snap.qcow2
run qemu-img check mirror.qcow2
run qemu-img compare -f raw -F qcow2 final.raw mirror.qcow2
run md5sum -c lower.md5
echo "\$ qemu-img info --backing-chain mirror.qcow2"
qemu-img info --backing-chain mirror.qcow2 | grep -E '^(image|file format|virtual size|backing file):'
echo
echo "demo: all done"
