#!/usr/bin/env bash
# A qcow2 file cut inside its header: refused, naming the file.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create short.qcow2 1M 65536
truncate -s 48 short.qcow2
expect_refusal 'short\.qcow2' -d vm=short.qcow2,format=qcow2
expect_refusal 'short\.qcow2' -d vm=short.qcow2

qcow2_create v3.qcow2 1M 65536
truncate -s 100 v3.qcow2                        # a v3 header needs 104
expect_refusal 'v3\.qcow2' -d vm=v3.qcow2
