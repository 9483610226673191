#!/usr/bin/env bash
# A backing file that is a character device (/dev/zero): refused, naming
# it; chainfs must not read a device it was not given.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qemu-img create -q -f qcow2 -u -b /dev/zero -F raw top.qcow2 1M
expect_refusal '/dev/zero' -d vm=top.qcow2
