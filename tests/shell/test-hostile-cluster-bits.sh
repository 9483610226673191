#!/usr/bin/env bash
# cluster_bits outside 9..21 (512 B to 2M clusters): refused, naming the
# file.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

for bits in 0 8 22 63 255; do
    qcow2_create "bits$bits.qcow2" 1M 65536
    poke_be "bits$bits.qcow2" 20 4 "$bits"
    expect_refusal "bits$bits\\.qcow2" -d "vm=bits$bits.qcow2"
done
