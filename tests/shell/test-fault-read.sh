#!/usr/bin/env bash
# Reads failing with EIO through a fault layer: buffered and O_DIRECT
# readers get EIO (never zeros or stale data), other ranges read
# correctly, and once the rule's count is used up the same range reads
# its real data.  SEEK_DATA failures come back as the chosen errno too.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

qcow2_create base.qcow2 4M 4096
qemu_io base.qcow2 'write -P 0x61 0 4M'
qcow2_create top.qcow2 4M 65536 base.qcow2 qcow2
qemu_io top.qcow2 'write -P 0x62 1M 1M'
cat >faults.conf <<'CONF'
[image]
file=top.qcow2

[rule bad-sectors]
op=read
offset=1536K
len=512
count=3

[rule bad-forever]
op=read
offset=3M
len=1
CONF
to_raw top.qcow2 model.raw

start_chainfs mnt -d vm=faults.conf,format=fault,read-only=on
# O_DIRECT: one request per read, so the count is exact.
out=$("$io" -D mnt/vm read 1536K 4K read 0 64K 0x61 read 1M 64K 0x62 \
      read 1532K 8K read 1536K 4K read 1536K 4K 0x62 read 3M 4K)
assert_eq "$(echo $out)" "EIO ok ok EIO EIO ok EIO" "O_DIRECT reads"
# Buffered readers get EIO too, never zeros.
assert_fails "dd through the bad range" \
    dd if=mnt/vm of=/dev/null bs=64K skip=47 count=2 status=none
[[ $fail_output == *"Input/output error"* ]] || fail "dd: $fail_output"

# Block status failing: SEEK_DATA reports the errno.
printf '[image]\nfile=top.qcow2\n[rule status]\nop=status\nerrno=ENOMEM\n' >new.conf
mv new.conf faults.conf
assert_eq "$("$io" mnt/vm seek-data 0 seek-data 1M)" $'ENOMEM\nENOMEM' \
    "SEEK_DATA with failing block status"

# Clear the faults: the whole disk reads as it should.
printf '[image]\nfile=top.qcow2\n' >new.conf
mv new.conf faults.conf
assert_equal_files mnt/vm model.raw "the whole disk after the faults cleared"
_running "$chainfs_pid" || fail "chainfs died"
stop_chainfs mnt
qemu_check top.qcow2
