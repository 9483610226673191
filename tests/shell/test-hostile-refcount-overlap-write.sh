#!/usr/bin/env bash
# An L2 table whose refcount says free: the next data cluster would be
# allocated over it.  The write fails with EIO before anything reaches the
# file; the image is marked corrupt (incompatible bit 1) and the file
# differs only in that bit, so qemu-img check shows the original damage
# and nothing new.  Further writes fail too, reads still work, and the
# image opens read-only only afterwards.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

# 64K clusters: header 0, refcount table 1, refcount block 2, L1 3; the
# first write puts the L2 table in cluster 4 and its data in cluster 5.
qcow2_create top.qcow2 4M 65536
qemu_io top.qcow2 "write -P 7 0 64k"
assert_eq "$(peek_be top.qcow2 $((196608)) 8)" \
    $(((1 << 63) | 262144)) "L1 entry 0 (the L2 table in cluster 4)"
poke_be top.qcow2 $((131072 + 4 * 2)) 2 0    # refcount of cluster 4: 0
to_raw top.qcow2 expected.raw
cp top.qcow2 damaged.qcow2
check_lines()
{
    qemu-img check "$1" 2>&1 | grep -E '^(ERROR|Leaked)' || true
}
damage=$(check_lines top.qcow2)
[[ $damage == *"ERROR cluster 4 refcount=0 reference=1"* ]] ||
    fail "the damage is not what qemu-img check sees: $damage"

start_chainfs mnt -d vm=top.qcow2
out=$("$io" -D mnt/vm write 1M 64K 0x55 write 0 4K 0x66 fsync)
assert_eq "$(echo $out)" "EIO EIO ok" \
    "write over the L2 table, a later write, fsync (nothing left unwritten)"
_running "$chainfs_pid" || fail "chainfs died after the overlap"
out=$("$io" -D mnt/vm read 0 64K 7 read 1M 64K 0)
assert_eq "$(echo $out)" "ok ok" "reads after the overlap"
grep -q 'metadata overlap.*an L2 table' "$chainfs_log" ||
    fail "no overlap message in the log: $(cat "$chainfs_log")"
stop_chainfs mnt

assert_eq $(($(peek_be top.qcow2 72 8) & 2)) 2 "corrupt bit"
qemu-img info top.qcow2 | grep -q 'corrupt: true' ||
    fail "qemu-img info does not say corrupt: $(qemu-img info top.qcow2)"
# Nothing but the incompatible features field (bytes 72..79) changed.
diffs=$(cmp -l top.qcow2 damaged.qcow2 | awk '$1 < 73 || $1 > 80' || true)
[[ -z $diffs ]] || fail "bytes other than the corrupt bit changed: $diffs"
assert_eq "$(check_lines top.qcow2)" "$damage" "qemu-img check: only the old damage"
expect_refusal 'top\.qcow2.*corrupt' -d vm=top.qcow2
start_chainfs mnt -d vm=top.qcow2,read-only=on
assert_equal_files mnt/vm expected.raw "corrupt image read read-only"
stop_chainfs mnt
