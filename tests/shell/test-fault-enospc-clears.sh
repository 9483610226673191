#!/usr/bin/env bash
# ENOSPC after N writes, through a fault layer over qcow2 over raw: the
# first writes pass, the next fail with ENOSPC (writes elsewhere still
# work), and rewriting the config (rename over it) clears the fault at
# once.  The data is exact against a model throughout.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

qemu-img create -q -f raw base.raw 8M
qemu_io base.raw 'write -P 0x5a 0 8M'
qcow2_create top.qcow2 8M 65536 base.raw raw
mkdir conf
cat >conf/faults.conf <<'CONF'
# The image is named relative to this file's directory.
[image]
file=../top.qcow2

[rule disk-full]
op=write,zeroes
errno=ENOSPC
offset=4M
after=2
CONF
pattern $((8 << 20)) $((0x5a)) >model.raw

start_chainfs mnt -d vm=conf/faults.conf,format=fault
assert_eq "$(cat mnt/.chains/vm)" "0 fault 8388608 $tmpdir/conf/faults.conf
1 raw 8388608 $tmpdir/base.raw" ".chains: the fault layer, then the backing"

out=$("$io" mnt/vm write 4M 4K 1 write 5M 4K 2 write 6M 4K 3 zero 7M 64K \
      write 1M 4K 4 write 8188K 4K 5)
assert_eq "$(echo $out)" "ok ok ENOSPC ENOSPC ok ENOSPC" "ENOSPC after two writes"
dd_write model.raw $((4 << 20)) 4096 1
dd_write model.raw $((5 << 20)) 4096 2
dd_write model.raw $((1 << 20)) 4096 4
assert_equal_files mnt/vm model.raw "disk while the fault is active"

# The fault clears: the new config has no rule.
printf '[image]\nfile=../top.qcow2\n' >conf/new.conf
mv conf/new.conf conf/faults.conf
out=$("$io" mnt/vm write 6M 4K 3 zero 7M 64K write 8188K 4K 5 fsync)
assert_eq "$(echo $out)" "ok ok ok ok" "writes after the fault cleared"
dd_write model.raw $((6 << 20)) 4096 3
head -c 65536 /dev/zero | dd of=model.raw bs=64K seek=112 conv=notrunc status=none
dd_write model.raw $((8188 << 10)) 4096 5
assert_equal_files mnt/vm model.raw "disk after the fault cleared"

# A config that does not parse keeps the rules in force (none here).
printf '[image\n' >conf/new.conf
mv conf/new.conf conf/faults.conf
assert_eq "$("$io" mnt/vm write 4M 4K 1)" ok "write after a bad config"
_running "$chainfs_pid" || fail "chainfs died"
stop_chainfs mnt
qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw model.raw "image after unmount"
