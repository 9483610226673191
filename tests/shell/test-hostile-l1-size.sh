#!/usr/bin/env bash
# An l1_size far too large (for the virtual size, or absurd): refused,
# naming the file, without trying to allocate it.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create huge.qcow2 1M 65536
poke_be huge.qcow2 36 4 $((0x7fffffff))
expect_refusal 'huge\.qcow2' -d vm=huge.qcow2

# l1_size smaller than the virtual size needs.
qcow2_create small.qcow2 8G 65536
poke_be small.qcow2 36 4 1
expect_refusal 'small\.qcow2' -d vm=small.qcow2
