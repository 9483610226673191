#!/usr/bin/env bash
# Recipe: storage migration.  Move a live disk to a new image while a
# writer keeps writing, then run on the copy.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f qcow2 old.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 16M' old.qcow2 >/dev/null
mount_chainfs -d vm=old.qcow2

# A guest that keeps writing.
( for ((i = 0; i < 100; i++)); do
      dd if=/dev/urandom of=mnt/vm bs=64k count=1 seek=$((RANDOM % 1024)) \
         conv=notrunc status=none
  done ) &
writer=$!

ctl "mirror id=move disk=vm target=$work/new.qcow2"
wait_state move ready
wait "$writer"
ctl "complete move"
wait_state move concluded
grep -x 'result: completed' mnt/.jobs/move/status
cat mnt/.chains/vm                       # the disk now runs on new.qcow2
cp --sparse=always mnt/vm seen.raw
unmount_chainfs

qemu-img check -q new.qcow2
qemu-img compare -q -f raw -F qcow2 seen.raw new.qcow2
echo "mirror-migrate: new.qcow2 holds every write"
