#!/usr/bin/env bash
# Without -f, chainfs returns once the mount is ready and keeps serving in
# the background; fusermount3 -u stops it and the image is left clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create top.qcow2 1M 65536
mkdir mnt
cleanup_fn "fusermount3 -u -z $tmpdir/mnt 2>/dev/null"
out=$("$CHAINFS" -d vm=top.qcow2 mnt 2>&1) || fail "chainfs failed: $out"
mountpoint -q mnt || fail "not mounted when chainfs returned"
dd_write mnt/vm 0 4096 7
fusermount3 -u mnt

# The daemon is not our child: its releasing the image lock shows it has
# closed the image.
deadline=$((SECONDS + CHAINFS_TIMEOUT))
until qemu-img info top.qcow2 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "image still locked after unmount"
    sleep 0.05
done
qemu_check top.qcow2
out=$(qemu-io -f qcow2 -c 'read -P 7 0 4096' top.qcow2 2>&1) || fail "data lost: $out"
