#!/usr/bin/env bash
# fleece store=PATH: the store is a new file (EEXIST if it exists) that
# holds what guest writes copied (store-bytes), and is removed when the
# job ends; fallocate(PUNCH_HOLE) on the view, at any alignment, releases
# the whole chunks inside the range: the store gives the space back, the
# range reads as zeros and is a hole, and later guest writes there copy
# nothing.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io cmp fallocate du
requires_tool chainfs-extents
requires_fuse

qcow2_create vm.qcow2 16M 65536
qemu_io vm.qcow2 "write -P 0x61 0 8M"
start_chainfs mnt -d vm=vm.qcow2
ctl=mnt/.jobs/ctl
M=1048576

touch taken.qcow2
ctl_error EEXIST "fleece: store: .*taken.qcow2 exists" $ctl fleece id=f0 disk=vm store=$tmpdir/taken.qcow2
[[ ! -e mnt/.jobs/f0 && ! -e mnt/vm@f0 ]] || fail "a refused fleece left a job or a file"

ctl_ok $ctl fleece id=f1 disk=vm name=s1 store=$tmpdir/store.qcow2
[[ -f store.qcow2 ]] || fail "store.qcow2 was not created"
cp mnt/vm instant.raw
# Overwrite 0..6M: 6 MiB of data copied into the store.
dd_write mnt/vm 0 $((6 * M)) 0x62
assert_eq "$(job_key mnt f1 store-bytes)" $((6 * M)) "store-bytes after 6M of writes"
cmp mnt/vm@s1 instant.raw || fail "vm@s1 is not the instant"
du_before=$(du -k store.qcow2 | cut -f1)
((du_before >= 6 * 1024)) || fail "store.qcow2 holds only ${du_before}K"

# Release [1M + 100, 5M + 100): the whole chunks 1M+64K..5M; the
# partial chunks at either end stay.
fallocate -p -o $((M + 100)) -l $((4 * M)) mnt/vm@s1
assert_eq "$(job_key mnt f1 store-bytes)" $((2 * M + 65536)) "store-bytes after the punch"
du_after=$(du -k store.qcow2 | cut -f1)
((du_after <= du_before - 4 * 1024 + 64)) || fail "the store kept its space: ${du_before}K -> ${du_after}K"
cp instant.raw expected.raw
dd if=/dev/zero of=expected.raw bs=64K seek=17 count=63 conv=notrunc status=none
cmp mnt/vm@s1 expected.raw || fail "vm@s1 after the punch"
dd if=mnt/vm@s1 bs=64K iflag=direct status=none | cmp - expected.raw ||
    fail "vm@s1 after the punch (O_DIRECT)"
assert_eq "$("$CHAINFS_TOOLS/chainfs-extents" mnt/vm@s1 | paste -sd' ')" \
    "0 $((M + 65536)) $((5 * M)) $((3 * M))" "extents after the punch"
assert_eq "$(stat -c %b mnt/vm@s1)" $(((4 * M + 65536) / 512)) "st_blocks after the punch"

# Release still-needed chunks (6M..8M): nothing is copied for them later.
fallocate -p -o $((6 * M)) -l $((2 * M)) mnt/vm@s1
dd_write mnt/vm $((6 * M)) $((2 * M)) 0x63
assert_eq "$(job_key mnt f1 store-bytes)" $((2 * M + 65536)) "store-bytes after writes to released chunks"
dd if=/dev/zero of=expected.raw bs=1M seek=6 count=2 conv=notrunc status=none
cmp mnt/vm@s1 expected.raw || fail "vm@s1 after releasing needed chunks"
assert_eq "$("$CHAINFS_TOOLS/chainfs-extents" mnt/vm@s1 | paste -sd' ')" \
    "0 $((M + 65536)) $((5 * M)) $M" "extents after releasing needed chunks"

# Other fallocate modes and writes are refused; the disk is untouched.
assert_fails "zero range on the view" fallocate -z -o 0 -l 65536 mnt/vm@s1
assert_fails "write to the view" dd if=/dev/zero of=mnt/vm@s1 bs=512 count=1 conv=notrunc status=none
qemu-io -f raw -c "read -P 0x62 0 6M" -c "read -P 0x63 6M 2M" -c "read -P 0 8M 8M" mnt/vm |
    grep -q "Pattern verification failed" && fail "the disk changed"

ctl_ok $ctl cancel f1
wait_job_state mnt f1 concluded
[[ ! -e store.qcow2 ]] || fail "store.qcow2 left after cancel"
[[ ! -e mnt/vm@s1 ]] || fail "vm@s1 left after cancel"
stop_chainfs mnt
qemu_check vm.qcow2
