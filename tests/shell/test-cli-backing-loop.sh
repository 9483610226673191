#!/usr/bin/env bash
# A loop in the backing chain (an image backing onto itself, or two onto
# each other): refused, naming a file of the loop.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create self.qcow2 1M 65536
qemu-img rebase -q -u -f qcow2 -b self.qcow2 -F qcow2 self.qcow2
expect_refusal 'self\.qcow2' -d vm=self.qcow2

qcow2_create a.qcow2 1M 65536
qcow2_create b.qcow2 1M 65536 a.qcow2 qcow2
qemu-img rebase -q -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2
expect_refusal '[ab]\.qcow2' -d vm=b.qcow2
