#!/usr/bin/env bash
# Recipe: migrate a live disk to another machine through NBD.  Mount A
# mirrors its disk into an export that the destination serves with
# qemu-nbd (here a Unix socket; between machines nbd://HOST:PORT/), then
# switches to it; once A is stopped, mount B serves the destination's
# image directly.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

# Source side: the disk, written by a guest.
qemu-img create -q -f qcow2 src.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 16M' src.qcow2 >/dev/null

# Destination side: an empty image of the same size, exported.
qemu-img create -q -f qcow2 dest.qcow2 64M
qemu-nbd -t -k "$work/dest.sock" -f qcow2 dest.qcow2 &
server_pid=$!
while [[ ! -S $work/dest.sock ]]; do sleep 0.05; done

mount_chainfs --allow-remote -d vm=src.qcow2
( for ((i = 0; i < 100; i++)); do
      dd if=/dev/urandom of=mnt/vm bs=64k count=1 seek=$((RANDOM % 1024)) \
         conv=notrunc status=none
  done ) &
writer=$!

uri="nbd+unix:///?socket=$work/dest.sock"
ctl "mirror id=mig disk=vm target=$uri mode=existing"
wait_state mig ready
wait "$writer"
ctl "complete mig"
wait_state mig concluded
grep -x 'result: completed' mnt/.jobs/mig/status
cat mnt/.chains/vm                       # 0 nbd 67108864 nbd+unix:///?socket=...
cp --sparse=always mnt/vm seen.raw
unmount_chainfs                          # the source side lets go

kill "$server_pid"; wait "$server_pid" || true
server_pid=
qemu-img check -q dest.qcow2

# Mount B: the destination serves its image itself.
mv mnt mnt-a
mount_chainfs -d vm=dest.qcow2
cmp mnt/vm seen.raw
unmount_chainfs
echo "nbd-migrate: dest.qcow2 holds every write"
