#!/usr/bin/env bash
# fallocate -p (PUNCH_HOLE|KEEP_SIZE) through the mount discards: the range
# reads as zeros at once, still after unmount (qemu-img convert), the rest
# of the disk is unchanged and the image stays clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io fallocate
requires_fuse

M=1048576
head -c $((4 * M)) /dev/urandom >base.raw
qcow2_create top.qcow2 $((4 * M)) 65536 base.raw raw
qemu_io top.qcow2 "write -P 1 $M $M"
to_raw top.qcow2 expected.raw

# OFFSET LENGTH: over backing data, over top data, partial clusters
ranges=("0 65536" "$((M - 100)) 300000" "$((3 * M + 7)) 9")
start_chainfs mnt -d vm=top.qcow2
for r in "${ranges[@]}"; do
    read -r offset len <<<"$r"
    out=$(fallocate -p -o "$offset" -l "$len" mnt/vm 2>&1) ||
        fail "fallocate -p -o $offset -l $len: $out"
    assert_zeros mnt/vm "$offset" "$len"
    dd if=/dev/zero of=expected.raw bs="$len" count=1 seek="$offset" \
       oflag=seek_bytes conv=notrunc status=none
done
assert_eq "$(stat -c %s mnt/vm)" $((4 * M)) "size after punching"
assert_equal_files mnt/vm expected.raw "disk after punching holes"
stop_chainfs mnt

qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "chain after unmount"
