#!/usr/bin/env bash
# mirror sync=top: the target backs onto the source top's backing layer
# and gets only the top's data; sync=none: the target backs onto the
# source's top and gets only new writes.  After complete, .chains lists the
# target's chain, qemu-img sees the same chain after unmount, and the
# chain reads as the disk did.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 32M /dev/urandom >base.raw
qcow2_create mid.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io mid.qcow2 "write -P 0x44 8M 4M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/mid.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x55 10M 1M" "write -P 0x56 20M 64k"
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

# sync=top
ctl_ok $ctl mirror id=mt disk=vm target=$tmpdir/t-top.qcow2 sync=top
wait_job_state mnt mt ready
assert_eq "$(qemu_chain_paths_shared t-top.qcow2 | paste -sd' ')" \
    "$tmpdir/t-top.qcow2 $tmpdir/mid.qcow2 $tmpdir/base.raw" "chain of the sync=top target"
dd_write mnt/vm 0 65536 0x57
ctl_ok $ctl complete mt
wait_job_state mnt mt concluded
assert_eq "$(job_key mnt mt result)" completed "result of mt"
assert_chain mnt vm "$tmpdir/t-top.qcow2" "$tmpdir/mid.qcow2" "$tmpdir/base.raw"
# Only the top's data was copied (1M + 64K + 64K), not the 32M below.
size=$(qemu-img info -U --output=json t-top.qcow2 | sed -n 's/^ *"actual-size": \([0-9]*\),*$/\1/p')
((size < 8 * 1048576)) || fail "sync=top target holds $size bytes: more than the top layer"
ctl_ok $ctl dismiss mt

# sync=none, on the new top
ctl_ok $ctl mirror id=mn disk=vm target=$tmpdir/t-none.qcow2 sync=none
wait_job_state mnt mn ready
assert_eq "$(qemu_chain_paths_shared t-none.qcow2 | paste -sd' ')" \
    "$tmpdir/t-none.qcow2 $tmpdir/t-top.qcow2 $tmpdir/mid.qcow2 $tmpdir/base.raw" \
    "chain of the sync=none target"
dd_write mnt/vm 3145728 131072 0x58
ctl_ok $ctl complete mn
wait_job_state mnt mn concluded
assert_eq "$(job_key mnt mn result)" completed "result of mn"
dd_write mnt/vm 5242880 65536 0x59
expected=$(chain_paths mnt vm | paste -sd' ')
assert_eq "$expected" \
    "$tmpdir/t-none.qcow2 $tmpdir/t-top.qcow2 $tmpdir/mid.qcow2 $tmpdir/base.raw" ".chains/vm after sync=none"
to_raw mnt/vm guest.raw
stop_chainfs mnt

assert_eq "$(qemu_chain_paths t-none.qcow2 | paste -sd' ')" "$expected" "qemu-img's chain after unmount"
for img in mid.qcow2 top.qcow2 t-top.qcow2 t-none.qcow2; do
    qemu_check "$img"
done
out=$(qemu-img compare -F raw t-none.qcow2 guest.raw 2>&1) || fail "the chain after unmount: $out"
# sync=none copied nothing but the write made while it ran.
assert_eq "$(own_extents t-none.qcow2)" "3145728 131072 5242880 65536" "data of the sync=none target's own layer"
