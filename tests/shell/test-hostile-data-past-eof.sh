#!/usr/bin/env bash
# An L2 entry pointing past the end of the file: reading that cluster fails
# with EIO (never zeros), its neighbours read right, the daemon stays up.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create bad.qcow2 1M 4096
qemu_io bad.qcow2 "write -P 1 0 1M"
to_raw bad.qcow2 expected.raw
l1=$(peek_be bad.qcow2 40 8)
l2=$(($(peek_be bad.qcow2 "$l1" 8) & 0x00fffffffffffe00))
((l2 > 0)) || fail "no L2 table found"
poke_be bad.qcow2 $((l2 + 5 * 8)) 8 $(((1 << 63) | (1 << 40)))   # cluster 5

start_chainfs mnt -d vm=bad.qcow2
assert_fails "reading cluster 5" dd if=mnt/vm of=/dev/null bs=4096 count=1 \
    skip=5 iflag=direct status=none
[[ $fail_output == *"Input/output error"* ]] || fail "expected EIO: $fail_output"
assert_fails "reading across cluster 5" dd if=mnt/vm of=/dev/null bs=65536 \
    count=1 iflag=direct status=none
for cluster in 4 6; do
    dd if=mnt/vm of=c$cluster.raw bs=4096 count=1 skip=$cluster iflag=direct status=none ||
        fail "reading cluster $cluster failed"
    cmp -n 4096 -i 0:$((cluster * 4096)) c$cluster.raw expected.raw ||
        fail "cluster $cluster differs"
done
mountpoint -q mnt || fail "mount gone after bad reads"
stop_chainfs mnt
