#!/usr/bin/env bash
# A refcount table that overlaps the header (offset 0), or is not cluster
# aligned: refused, naming the file; writes must never land on metadata.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create zero.qcow2 1M 65536
poke_be zero.qcow2 48 8 0
expect_refusal 'zero\.qcow2' -d vm=zero.qcow2

qcow2_create unaligned.qcow2 1M 65536
poke_be unaligned.qcow2 48 8 $((65536 + 8))
expect_refusal 'unaligned\.qcow2' -d vm=unaligned.qcow2
