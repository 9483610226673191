#!/usr/bin/env bash
# Two disks with the same name: refused, naming the disk.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qemu-img create -q -f raw a.raw 1M
qemu-img create -q -f raw b.raw 1M
expect_refusal 'vm' -d vm=a.raw -d vm=b.raw
