#!/usr/bin/env bash
# The fault layer fails one write with EIO: the writer gets EIO, nothing
# of that write lands, the daemon stays up, later writes and reads are
# exact, and the image is clean after unmount.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

qcow2_create top.qcow2 4M 4096
cat >faults.conf <<'CONF'
[image]
file=top.qcow2
format=qcow2

[rule eio-once]
op=write
errno=EIO
offset=1M
len=64K
count=1
CONF
head -c 4M /dev/zero >model.raw

start_chainfs mnt -d vm=faults.conf,format=fault
assert_eq "$(cat mnt/.chains/vm)" "0 fault 4194304 $tmpdir/faults.conf" \
    ".chains of a fault layer over a lone qcow2"

# Outside the range: fine.  Inside: EIO once, then fine.
out=$("$io" mnt/vm write 0 4K 0x11 write 1032K 8K 0x22 write 1032K 8K 0x33 \
      write 2M 4K 0x44)
assert_eq "$(echo $out)" "ok EIO ok ok" "results of the four writes"
dd_write model.raw 0 4096 $((0x11))
dd_write model.raw $((1032 * 1024)) 8192 $((0x33))
dd_write model.raw $((2 << 20)) 4096 $((0x44))

_running "$chainfs_pid" || fail "chainfs died after a failed write"
assert_equal_files mnt/vm model.raw "disk after one failed write"
"$io" mnt/vm fsync >/dev/null
stop_chainfs mnt
qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw model.raw "image after unmount"

# A rule without count fails every write that touches 3M, for good; dd
# reports the error and exits non-zero.
cat >>faults.conf <<'CONF'

[rule eio-forever]
op=write
offset=3M
len=1
CONF
start_chainfs mnt -d vm=faults.conf,format=fault
assert_fails "dd across 3M" dd if=/dev/zero of=mnt/vm bs=64K seek=47 count=2 \
    conv=notrunc,fsync status=none
[[ $fail_output == *"Input/output error"* ]] ||
    fail "dd did not report EIO: $fail_output"
out=$("$io" mnt/vm write 3M 512 0x55 write 3M 512 0x55 read 3M 4K 0)
assert_eq "$(echo $out)" "EIO EIO ok" "writes at 3M keep failing; reads work"
_running "$chainfs_pid" || fail "chainfs died"
stop_chainfs mnt
qemu_check top.qcow2
