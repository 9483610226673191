#!/usr/bin/env bash
# The same image as the active layer of two disks (it would be written by
# both): refused, naming the file.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create top.qcow2 1M 65536
expect_refusal 'top\.qcow2' -d vm1=top.qcow2 -d vm2=top.qcow2
