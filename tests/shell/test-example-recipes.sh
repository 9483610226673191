#!/usr/bin/env bash
# The recipes in examples/ (mirror, stream, commit, incremental backup,
# backup job, backup with fleece, migration through NBD)
# run to their end with this chainfs, each verifying its result with
# qemu-img.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

for recipe in mirror-migrate stream-flatten commit-snapshot incremental-backup \
        backup-live fleece-backup nbd-migrate; do
    CHAINFS=$CHAINFS "$srcdir/examples/$recipe.sh" >"$recipe.log" 2>&1 ||
        fail "$recipe failed: $(tail -n 20 "$recipe.log")"
    grep -q "^$recipe: " "$recipe.log" ||
        fail "$recipe did not finish: $(tail -n 5 "$recipe.log")"
done
