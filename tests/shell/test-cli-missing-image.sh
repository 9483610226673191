#!/usr/bin/env bash
# A disk whose image does not exist: refused, naming the file.
source "$(dirname "$0")/functions.sh"
requires_fuse

expect_refusal 'no-such\.qcow2' -d vm=no-such.qcow2
