#!/usr/bin/env bash
# Bad compressed cluster descriptors (data past the end of the file, data
# that does not inflate) make reads of those clusters fail with EIO, never
# zeros; other clusters still read right and the daemon stays up.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io seq
requires_fuse

seq 1 150000 >source.raw
truncate -s 1M source.raw
qemu-img convert -c -f raw -O qcow2 -o cluster_size=65536 source.raw bad.qcow2
l1=$(peek_be bad.qcow2 40 8)
l2=$(($(peek_be bad.qcow2 "$l1" 8) & 0x00fffffffffffe00))
for cluster in 0 1 2; do
    entry=$(peek_be bad.qcow2 $((l2 + cluster * 8)) 8)
    (((entry >> 62) & 1)) || fail "cluster $cluster is not compressed"
done
# Cluster 0: compressed data at 1T, far past EOF.  Cluster 1: "compressed
# data" at offset 0, the header, which is not valid deflate.
poke_be bad.qcow2 "$l2" 8 $(((1 << 62) | (1 << 40)))
poke_be bad.qcow2 $((l2 + 8)) 8 $((1 << 62))

start_chainfs mnt -d vm=bad.qcow2,read-only=on
for cluster in 0 1; do
    assert_fails "reading cluster $cluster" dd if=mnt/vm of=/dev/null bs=65536 \
        count=1 skip=$cluster iflag=direct status=none
    [[ $fail_output == *"Input/output error"* ]] ||
        fail "cluster $cluster: expected EIO, got: $fail_output"
done
dd if=mnt/vm of=c2.raw bs=65536 count=1 skip=2 iflag=direct status=none ||
    fail "reading intact cluster 2 failed"
cmp -n 65536 -i 0:131072 c2.raw source.raw || fail "cluster 2 differs"
mountpoint -q mnt || fail "mount gone after bad reads"
stop_chainfs mnt
