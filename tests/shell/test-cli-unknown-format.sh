#!/usr/bin/env bash
# An unknown format= or an unknown disk option: refused, naming it.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qemu-img create -q -f raw disk.raw 1M
expect_refusal 'vmdk' -d vm=disk.raw,format=vmdk
expect_refusal 'bogus' -d vm=disk.raw,bogus=1
expect_refusal 'read-only' -d vm=disk.raw,read-only=maybe
