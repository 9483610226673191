#!/usr/bin/env bash
# An L2 entry (marked COPIED, so written in place) that points at the
# refcount block: a guest write there would overwrite refcounts.  It fails
# with EIO instead, the image is marked corrupt and nothing else of the
# file changes; qemu-img check shows only the original damage.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

# 64K clusters: refcount block in cluster 2, the L2 table in cluster 4.
qcow2_create top.qcow2 4M 65536
qemu_io top.qcow2 "write -P 7 0 128k"
poke_be top.qcow2 $((262144 + 8)) 8 $(((1 << 63) | 131072))
cp top.qcow2 damaged.qcow2
check_lines()
{
    qemu-img check "$1" 2>&1 | grep -E '^(ERROR|Leaked)' || true
}
damage=$(check_lines top.qcow2)
[[ -n $damage ]] || fail "qemu-img check sees no damage"

start_chainfs mnt -d vm=top.qcow2
out=$("$io" -D mnt/vm write 64K 4K 0x55 write 0 4K 0x66 read 0 64K 7)
assert_eq "$(echo $out)" "EIO EIO ok" \
    "in-place write onto the refcount block, a later write, a read"
grep -q 'metadata overlap.*a refcount block' "$chainfs_log" ||
    fail "no overlap message in the log: $(cat "$chainfs_log")"
stop_chainfs mnt

qemu-img info top.qcow2 | grep -q 'corrupt: true' ||
    fail "qemu-img info does not say corrupt: $(qemu-img info top.qcow2)"
diffs=$(cmp -l top.qcow2 damaged.qcow2 | awk '$1 < 73 || $1 > 80' || true)
[[ -z $diffs ]] || fail "bytes other than the corrupt bit changed: $diffs"
assert_eq "$(check_lines top.qcow2)" "$damage" "qemu-img check: only the old damage"
