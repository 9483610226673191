#!/usr/bin/env bash
# A disk given with read-only=on has mode 0400, reads the chain, refuses
# writes, zeroing and discards, and leaves every image untouched.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io fallocate
requires_fuse

M=1048576
head -c $((2 * M)) /dev/urandom >base.raw
qcow2_create top.qcow2 $((2 * M)) 65536 base.raw raw
qemu_io top.qcow2 "write -P 1 0 65536"
to_raw top.qcow2 expected.raw
before=$(tree_state .)

start_chainfs mnt -d vm=top.qcow2,read-only=on
assert_eq "$(stat -c %a mnt/vm)" 400 "mode of a read-only disk"
assert_equal_files mnt/vm expected.raw "read-only disk"
assert_fails "write to a read-only disk" \
    dd if=/dev/zero of=mnt/vm bs=512 count=1 conv=notrunc status=none
assert_fails "punch a hole in a read-only disk" \
    fallocate -p -o 0 -l 65536 mnt/vm
assert_fails "open a read-only disk with O_DIRECT for writing" \
    qemu-io -f raw -t none -c "write 0 512" mnt/vm
assert_equal_files mnt/vm expected.raw "read-only disk after write attempts"
stop_chainfs mnt

after=$(tree_state .)
[[ $before == "$after" ]] ||
    fail "images changed: $(diff <(echo "$before") <(echo "$after"))"
