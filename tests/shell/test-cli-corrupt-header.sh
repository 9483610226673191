#!/usr/bin/env bash
# qcow2 images with a bad header (unknown version, backing file name past
# the end of the file, unknown incompatible feature): refused, naming the
# file, and left untouched.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create version.qcow2 1M 65536
poke_be version.qcow2 4 4 99
expect_refusal 'version\.qcow2' -d vm=version.qcow2

qemu-img create -q -f raw base.raw 1M
qcow2_create backing.qcow2 1M 65536 base.raw raw
poke_be backing.qcow2 8 8 $((1 << 40))          # backing_file_offset
expect_refusal 'backing\.qcow2' -d vm=backing.qcow2

qcow2_create feature.qcow2 1M 65536
poke_be feature.qcow2 72 8 $((1 << 20))         # unknown incompatible bit
expect_refusal 'feature\.qcow2' -d vm=feature.qcow2
