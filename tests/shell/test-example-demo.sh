#!/usr/bin/env bash
# examples/demo.sh runs to the end with this chainfs.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

CHAINFS=$CHAINFS "$srcdir/examples/demo.sh" >demo.log 2>&1 ||
    fail "demo failed: $(tail -n 30 demo.log)"
grep -q 'demo: all done' demo.log || fail "demo did not finish: $(tail -n 5 demo.log)"
