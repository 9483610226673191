#!/usr/bin/env bash
# The mount holds exactly the disks, .bitmaps, .chains and .jobs
# (directories); disks have their virtual size; nothing can be created in
# it, nor in .bitmaps.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

qcow2_create a.qcow2 3M 65536
qemu-img create -q -f raw b.raw 5M

start_chainfs mnt -d vm1=a.qcow2 -d vm2=b.raw
assert_eq "$(listing mnt)" ".bitmaps .chains .jobs vm1 vm2" "root listing"
[[ -d mnt/.jobs ]] || fail ".jobs is not a directory"
[[ -d mnt/.bitmaps/vm1 ]] || fail ".bitmaps/vm1 is not a directory"
assert_fails "creating a bitmap directory by hand" mkdir mnt/.bitmaps/vm1/b
assert_eq "$(stat -c %s mnt/vm1) $(stat -c %s mnt/vm2)" "3145728 5242880" "sizes"
assert_fails "creating a file in the mount" touch mnt/new
assert_fails "removing a disk" rm -f mnt/vm1
assert_fails "renaming a disk" mv mnt/vm1 mnt/vm3
[[ -e mnt/vm1 && ! -e mnt/vm3 && ! -e mnt/new ]] || fail "the tree changed"
stop_chainfs mnt
