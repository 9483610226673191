#!/usr/bin/env bash
# Files in the mount belong to the user who mounted it: disks 0600 (0400
# read-only), .chains files 0644, directories searchable.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create rw.qcow2 1M 65536
qcow2_create ro.qcow2 1M 65536
owner="$(id -u) $(id -g)"

start_chainfs mnt -d rw=rw.qcow2 -d ro=ro.qcow2,read-only=on
assert_eq "$(stat -c '%F %a %u %g' mnt/rw)" "regular file 600 $owner" "disk rw"
assert_eq "$(stat -c '%F %a %u %g' mnt/ro)" "regular file 400 $owner" "disk ro"
for f in mnt/.chains/rw mnt/.chains/ro; do
    assert_eq "$(stat -c '%F %a %u %g' "$f")" "regular file 644 $owner" "$f"
done
for d in mnt mnt/.chains mnt/.jobs; do
    assert_eq "$(stat -c '%F %a %u %g' "$d")" "directory 755 $owner" "$d"
done
stop_chainfs mnt
