#!/usr/bin/env bash
# Disk names must be [A-Za-z0-9._-]+ and not start with a dot: others are
# refused, naming the disk.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qemu-img create -q -f raw disk.raw 1M
expect_refusal '\.hidden' -d .hidden=disk.raw
expect_refusal 'a/b' -d a/b=disk.raw
expect_refusal 'sp ace' -d 'sp ace=disk.raw'
expect_refusal '.' -d =disk.raw
expect_refusal 'novalue' -d novalue
