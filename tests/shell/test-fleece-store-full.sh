#!/usr/bin/env bash
# A store that fills up (a 1 MiB tmpfs) never fails a guest write: the
# writes land, and the view fails every later read with EIO until it is
# cancelled (QEMU's on-cbw-error=break-snapshot); cancel still removes the
# store and the file.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io mount umount
requires_fuse
[[ $(id -u) -eq 0 ]] || skip "mounting a tmpfs needs root"

mkdir small
mount -t tmpfs -o size=1M chainfs-fleece-test "$tmpdir/small" || skip "cannot mount a tmpfs"
cleanup_fn "umount -l '$tmpdir/small'"
qcow2_create vm.qcow2 16M 65536
qemu_io vm.qcow2 "write -P 0x71 0 8M"
start_chainfs mnt -d vm=vm.qcow2 --allow-dir "$tmpdir"
ctl=mnt/.jobs/ctl

ctl_ok $ctl fleece id=f disk=vm store=$tmpdir/small/store.qcow2
dd if=mnt/vm@f bs=64K count=1 status=none | cmp -s - <(pattern 65536 0x71) ||
    fail "vm@f before the store filled"
# 4 MiB of old data cannot fit in 1 MiB: every write still succeeds.
for i in 0 1 2 3; do
    dd_write mnt/vm $((i * 1048576)) 1048576 0x72 oflag=direct
done
qemu-io -f raw -c "read -P 0x72 0 4M" mnt/vm | grep -q "Pattern verification failed" &&
    fail "a guest write was lost"
assert_fails "read of a broken view" dd if=mnt/vm@f of=/dev/null bs=64K count=1 status=none
[[ $fail_output == *"Input/output error"* ]] || fail "read of a broken view: $fail_output"
assert_fails "O_DIRECT read of a broken view" dd if=mnt/vm@f of=/dev/null bs=64K count=1 \
    skip=100 iflag=direct status=none
assert_eq "$(job_state mnt f)" running "state of the broken fleece"
ctl_ok $ctl cancel f
wait_job_state mnt f concluded
assert_eq "$(job_key mnt f result)" cancelled "result"
[[ ! -e small/store.qcow2 && ! -e mnt/vm@f ]] || fail "store or view left"
stop_chainfs mnt
qemu_check vm.qcow2
