#!/usr/bin/env bash
# Recipe: a full and then an incremental backup of a live disk with the
# backup job and a dirty bitmap, restored and checked with qemu-img.
# Each backup is the disk exactly as it was when the command was
# accepted, even while the guest writes: a write to a range not copied
# yet copies the old data to the target first.  The incremental backup
# is a qcow2 image backed by the full one, holding only what changed.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 8M' -c 'write -P 0x22 40M 1M' disk.qcow2 >/dev/null
mount_chainfs -d vm=disk.qcow2

# Full backup: the bitmap starts recording at the same instant as the
# copy (bitmap= with the default bitmap-mode=on-success clears what the
# job copied once it completes).
ctl "bitmap-add disk=vm name=since-full"
cp --sparse=always mnt/vm full-instant.raw      # only for the check below
ctl "backup id=full disk=vm target=$work/full.qcow2 bitmap=since-full"
# The guest writes while the job runs; the backup is not affected.
qemu-io -f raw -t none -c 'write -P 0x33 4M 256k' mnt/vm >/dev/null
wait_state full concluded
grep -E '^(type|result|copied):' mnt/.jobs/full/status
echo "dismiss full" > mnt/.jobs/ctl

# More writes, then an incremental backup of what changed since the full
# one, into a new image backed by it.
qemu-io -f raw -t none -c 'write -P 0x44 60M 64k' -c 'write -z 40M 64k' mnt/vm >/dev/null
cat mnt/.bitmaps/vm/since-full/extents
cp --sparse=always mnt/vm inc-instant.raw       # only for the check below
qemu-img create -q -f qcow2 -b "$work/full.qcow2" -F qcow2 inc.qcow2 64M
ctl "backup id=inc disk=vm target=$work/inc.qcow2 mode=existing sync=bitmap bitmap=since-full"
qemu-io -f raw -t none -c 'write -P 0x55 0 1M' mnt/vm >/dev/null
wait_state inc concluded
grep -E '^(result|len):' mnt/.jobs/inc/status
grep '^count:' mnt/.bitmaps/vm/since-full/status  # the write made during the job
unmount_chainfs

# Restore: the full backup is the disk at the first instant, the chain
# inc.qcow2 -> full.qcow2 the disk at the second.
qemu-img check -q full.qcow2
qemu-img check -q inc.qcow2
qemu-img compare -q -F raw full.qcow2 full-instant.raw
qemu-img convert -O raw inc.qcow2 restored.raw
qemu-img compare -q -f raw -F raw restored.raw inc-instant.raw
echo "backup-live: the full backup and the incremental chain equal the disk at their instants"
