#!/usr/bin/env bash
# While mounted, the chain is locked as QEMU locks it: qemu-io cannot write
# the top or a backing layer, qemu-img info needs -U for the top but may
# read the backing layers; after unmount the locks are gone.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qemu-img create -q -f raw base.raw 1M
qcow2_create top.qcow2 1M 65536 base.raw raw

start_chainfs mnt -d vm=top.qcow2
assert_fails "qemu-io writing the top" qemu-io -f qcow2 -c 'write 0 512' top.qcow2
[[ $fail_output == *lock* ]] || fail "no lock error for the top: $fail_output"
assert_fails "qemu-io writing the base" qemu-io -f raw -c 'write 0 512' base.raw
[[ $fail_output == *lock* ]] || fail "no lock error for the base: $fail_output"
assert_fails "qemu-img info on the top" qemu-img info top.qcow2
[[ $fail_output == *lock* ]] || fail "no lock error for info: $fail_output"
out=$(qemu-img info -U top.qcow2 2>&1) || fail "qemu-img info -U: $out"
out=$(qemu-img info -f raw base.raw 2>&1) || fail "qemu-img info on the base: $out"
out=$(qemu-io -r -f raw -c 'read 0 512' base.raw 2>&1) || fail "qemu-io -r on the base: $out"
stop_chainfs mnt

out=$(qemu-io -f qcow2 -c 'write 0 512' top.qcow2 2>&1) ||
    fail "top still locked after unmount: $out"
out=$(qemu-io -f raw -c 'write 0 512' base.raw 2>&1) ||
    fail "base still locked after unmount: $out"
