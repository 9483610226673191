#!/usr/bin/env bash
# chainfs refuses an image that qemu-io holds open for writing, as the top
# (read-write or read-only) or as a backing layer, naming the file.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qemu-img create -q -f raw base.raw 1M
qcow2_create top.qcow2 1M 65536 base.raw raw
qcow2_create other.qcow2 1M 65536 base.raw raw

# hold IMG FORMAT: keep IMG open for writing in qemu-io until the cleanup,
# and wait until it holds QEMU's "write" permission lock (byte 101); polling
# with qemu-io itself would race with it for the lock.
hold()
{
    local img=$1 deadline=$((SECONDS + CHAINFS_TIMEOUT)) pid inode
    inode=$(stat -c %i "$img")
    qemu-io -f "$2" -c 'sleep 600000' "$img" </dev/null >/dev/null 2>&1 &
    pid=$!
    cleanup_fn "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    until awk -v ino=":$inode" '$2 == "OFDLCK" && substr($6, length($6) - length(ino) + 1) == ino &&
                               $7 <= 101 && $8 >= 101 { found = 1 } END { exit !found }' /proc/locks; do
        _running "$pid" || fail "qemu-io on $img exited"
        ((SECONDS < deadline)) || fail "qemu-io did not lock $img"
        sleep 0.02
    done
}

hold top.qcow2 qcow2
expect_refusal 'top\.qcow2' -d vm=top.qcow2
expect_refusal 'top\.qcow2' -d vm=top.qcow2,read-only=on

# other.qcow2 is free, but its backing file is being written.
hold base.raw raw
expect_refusal 'base\.raw' -d vm=other.qcow2
