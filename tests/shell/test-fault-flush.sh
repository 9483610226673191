#!/usr/bin/env bash
# A flush failing once: fsync returns EIO, the next fsync succeeds and
# makes the writes durable (they survive a SIGKILL of the daemon).
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

qcow2_create top.qcow2 4M 512
cat >faults.conf <<'CONF'
[image]
file=top.qcow2
format=qcow2

[rule flush]
op=flush
errno=EIO
count=1

[rule ranged-never-matches-flush]
op=flush
offset=0
len=4M
CONF
start_chainfs mnt -d vm=faults.conf,format=fault
out=$("$io" mnt/vm write 100K 100K 0x77 fsync fdatasync write 1M 4K 0x78 fsync)
assert_eq "$(echo $out)" "ok EIO ok ok ok" "fsync fails once"
signal_chainfs KILL mnt
fusermount3 -u -z mnt 2>/dev/null || true
qemu_check_leaks_ok top.qcow2
to_raw top.qcow2 after.raw
cmp -n $((100 << 10)) -i $((100 << 10)):0 after.raw <(pattern $((100 << 10)) $((0x77))) ||
    fail "synced data lost after SIGKILL"
cmp -n 4096 -i $((1 << 20)):0 after.raw <(pattern 4096 $((0x78))) ||
    fail "synced data lost after SIGKILL"
