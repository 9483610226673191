#!/usr/bin/env bash
# An L1 entry pointing past the end of the file: reads of the range it
# maps fail with EIO (never zeros), other ranges still read right, and the
# daemon stays up and unmounts cleanly.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
# 4K clusters: one L2 table maps 2M, so L1[1] maps [2M, 4M).
qcow2_create bad.qcow2 $((8 * M)) 4096
qemu_io bad.qcow2 "write -P 1 0 $((8 * M))"
to_raw bad.qcow2 expected.raw
l1=$(peek_be bad.qcow2 40 8)
poke_be bad.qcow2 $((l1 + 8)) 8 $(((1 << 63) | (1 << 40)))

start_chainfs mnt -d vm=bad.qcow2
for offset in $((2 * M)) $((3 * M + 4096)) $((4 * M - 4096)); do
    assert_fails "read at $offset" dd if=mnt/vm of=/dev/null bs=4096 count=1 \
        skip="$offset" iflag=direct,skip_bytes status=none
    [[ $fail_output == *"Input/output error"* ]] ||
        fail "read at $offset: expected EIO, got: $fail_output"
done
dd if=mnt/vm of=head.raw bs=$M count=2 iflag=direct status=none ||
    fail "reading the intact first 2M failed"
cmp -n $((2 * M)) head.raw expected.raw || fail "first 2M differ"
dd if=mnt/vm of=tail.raw bs=$M skip=4 count=4 iflag=direct status=none ||
    fail "reading the intact last 4M failed"
cmp -i 0:$((4 * M)) tail.raw expected.raw || fail "last 4M differ"
mountpoint -q mnt || fail "mount gone after bad reads"
stop_chainfs mnt
