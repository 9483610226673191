#!/usr/bin/env bash
# Recipe: flatten a live chain.  Pull the backing layers' data into the
# top image, so it no longer needs them.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f raw base.raw 32M
qemu-io -f raw -c 'write -P 0x11 0 8M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qemu-io -f qcow2 -c 'write -P 0x22 4M 8M' mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-img convert -O raw top.qcow2 before.raw
mount_chainfs -d vm=top.qcow2

cat mnt/.chains/vm
ctl "stream id=flat disk=vm"
wait_state flat concluded
grep -x 'result: completed' mnt/.jobs/flat/status
cat mnt/.chains/vm                       # top.qcow2 alone
unmount_chainfs

qemu-img info top.qcow2 | grep -q 'backing file' && { echo "still backed"; exit 1; }
qemu-img check -q top.qcow2
qemu-img compare -q -f raw -F qcow2 before.raw top.qcow2
echo "stream-flatten: top.qcow2 stands alone with the same content"
