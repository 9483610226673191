#!/usr/bin/env bash
# Recipe: a full and then an incremental backup of a live disk with fleece:
# each copy reads MOUNTPOINT/vm@SNAP, the disk frozen at the instant the
# fleece started, while the guest keeps writing; bitmap=B hands over, at
# that same instant, what changed since the previous one (B@SNAP).  Each
# restored backup is compared with the disk as it was at its instant.
source "$(dirname "${BASH_SOURCE[0]}")/recipe-lib.sh"

qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 8M' -c 'write -P 0x22 40M 1M' disk.qcow2 >/dev/null
mount_chainfs -d vm=disk.qcow2
ctl "bitmap-add disk=vm name=b persistent=on"

# Full backup: freeze, copy the frozen file (holes stay holes), let go.
cp mnt/vm full-instant.raw      # only to check: the disk at the instant
ctl "fleece id=full disk=vm bitmap=b"
qemu-io -f raw -t none -c 'write -P 0x33 4M 256k' mnt/vm >/dev/null  # the guest
cp --sparse=always mnt/vm@full backup.raw
ctl "cancel full"
wait_state full concluded
ctl "bitmap-remove disk=vm name=b@full"
qemu-img compare -q -f raw -F raw backup.raw full-instant.raw

# More guest writes, recorded in b.
qemu-io -f raw -t none -c 'write -P 0x44 60M 64k' -c 'write -z 40M 64k' mnt/vm >/dev/null
dd if=/dev/urandom of=mnt/vm bs=4k seek=2000 count=3 conv=notrunc,fsync status=none

# Incremental backup: b's bits move into b@inc at the instant; copy just
# those ranges out of the frozen file while the guest writes on.  Each
# range, once copied, is released from the store with a punch.
cp mnt/vm inc-instant.raw       # only to check: the disk at the instant
ctl "fleece id=inc disk=vm bitmap=b"
qemu-io -f raw -t none -c 'write -P 0x55 0 1M' mnt/vm >/dev/null      # the guest
cat mnt/.bitmaps/vm/b@inc/extents
while read -r off len; do
    dd if=mnt/vm@inc of=backup.raw bs=64K iflag=skip_bytes,count_bytes \
       oflag=seek_bytes skip="$off" seek="$off" count="$len" \
       conv=notrunc status=none
    fallocate -p -o "$off" -l "$len" mnt/vm@inc
done < mnt/.bitmaps/vm/b@inc/extents
sed -n 's/^store-bytes: //p' mnt/.jobs/inc/status
ctl "cancel inc"
wait_state inc concluded
ctl "bitmap-remove disk=vm name=b@inc"
unmount_chainfs

qemu-img check -q disk.qcow2
qemu-img compare -q -f raw -F raw backup.raw inc-instant.raw
echo "fleece-backup: backup.raw equals the disk at the second fleece's instant (full + incremental)"
