#!/usr/bin/env bash
# Writes at or past the end of the disk fail with ENOSPC and never change
# its size; the last bytes before the end are writable.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
qcow2_create top.qcow2 $((4 * M)) 65536

start_chainfs mnt -d vm=top.qcow2
for offset in $((4 * M)) $((4 * M + 512)) $((64 * M)); do
    assert_fails "write at $offset" \
        dd if=/dev/zero of=mnt/vm bs=512 count=1 seek="$offset" \
           oflag=seek_bytes conv=notrunc status=none
    [[ $fail_output == *"No space left on device"* ]] ||
        fail "write at $offset: expected ENOSPC, got: $fail_output"
    assert_eq "$(stat -c %s mnt/vm)" $((4 * M)) "size after a write at $offset"
done
dd_write mnt/vm $((4 * M - 512)) 512 7
stop_chainfs mnt

assert_eq "$(qemu-img info --output=json top.qcow2 | grep -o '"virtual-size": [0-9]*')" \
    "\"virtual-size\": $((4 * M))" "virtual size after unmount"
out=$(qemu-io -f qcow2 -c "read -P 7 $((4 * M - 512)) 512" top.qcow2 2>&1) ||
    fail "the last sector was not written: $out"
qemu_check top.qcow2
