#!/usr/bin/env bash
# Recipe: take a live snapshot before a risky change, then merge it back
# into the base image when the change turned out fine (active commit).
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -f qcow2 -c 'write -P 0x33 0 4M' base.qcow2 >/dev/null
mount_chainfs -d vm=base.qcow2

ctl "snapshot disk=vm overlay=$work/snap.qcow2"
cat mnt/.chains/vm                       # snap.qcow2 over base.qcow2
dd if=/dev/urandom of=mnt/vm bs=1M count=2 seek=8 conv=notrunc,fsync status=none
ctl "commit id=merge disk=vm"
wait_state merge ready
ctl "complete merge"
wait_state merge concluded
grep -x 'result: completed' mnt/.jobs/merge/status
cat mnt/.chains/vm                       # base.qcow2 alone again
cp --sparse=always mnt/vm seen.raw
unmount_chainfs

qemu-img check -q base.qcow2
qemu-img compare -q -f raw -F qcow2 seen.raw base.qcow2
echo "commit-snapshot: base.qcow2 holds the snapshot's writes"
