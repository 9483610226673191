#!/usr/bin/env bash
# An overlay whose backing file does not exist: refused, naming the
# missing file.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qemu-img create -q -f raw gone.raw 1M
qcow2_create top.qcow2 1M 65536 gone.raw raw
rm gone.raw
expect_refusal 'gone\.raw' -d vm=top.qcow2
