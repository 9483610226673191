#!/usr/bin/env bash
# Recipe: a full and then incremental backups of a live disk, with nothing
# but a persistent dirty bitmap, dd and the shell.  The bitmap starts
# recording before each copy, so a write that lands during a copy is
# copied again by the next increment; the bitmap survives unmounting.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 8M' -c 'write -P 0x22 40M 1M' disk.qcow2 >/dev/null
mount_chainfs -d vm=disk.qcow2

# copy_extents BITMAP BACKUP: copy the ranges BITMAP lists into BACKUP.
copy_extents()
{
    local off len
    while read -r off len; do
        dd if=mnt/vm of="$2" bs=64K iflag=skip_bytes,count_bytes \
           oflag=seek_bytes skip="$off" seek="$off" count="$len" \
           conv=notrunc status=none
    done < "mnt/.bitmaps/vm/$1/extents"
}

# Full backup: record first, then copy everything.
ctl "bitmap-add disk=vm name=inc1 persistent=on"
cp --sparse=always mnt/vm backup.raw

# The guest goes on writing (O_DIRECT, as QEMU with cache=none would).
qemu-io -f raw -t none -c 'write -P 0x33 4M 256k' -c 'write -P 0x44 60M 64k' mnt/vm >/dev/null

# First increment: a new bitmap takes over recording, then the old one's
# ranges are copied and it is dropped.
ctl "bitmap-add disk=vm name=inc2 persistent=on"
ctl "bitmap-disable disk=vm name=inc1"
cat mnt/.bitmaps/vm/inc1/extents
copy_extents inc1 backup.raw
ctl "bitmap-remove disk=vm name=inc1"

# More writes; the disk is unmounted and mounted again in between: the
# persistent bitmap inc2 goes on from where it was.
dd if=/dev/urandom of=mnt/vm bs=4k seek=2000 count=3 conv=notrunc,fsync status=none
unmount_chainfs
qemu-img info disk.qcow2 | grep -A3 'bitmaps:'
mount_chainfs -d vm=disk.qcow2
qemu-io -f raw -t none -c 'write -z 40M 64k' mnt/vm >/dev/null

# Second increment, with the disk quiet: the backup is now exact.
ctl "bitmap-add disk=vm name=inc3 persistent=on"
ctl "bitmap-disable disk=vm name=inc2"
copy_extents inc2 backup.raw
ctl "bitmap-remove disk=vm name=inc2"
unmount_chainfs

qemu-img check -q disk.qcow2
qemu-img compare -q -f raw -F qcow2 backup.raw disk.qcow2
echo "incremental-backup: backup.raw equals the disk after a full and two incremental copies"
