#!/usr/bin/env bash
# Layers of different sizes: a commit into a base smaller than top grows
# the base first (active and intermediate), a stream over shorter backing
# layers keeps reading zeros past their ends; the guest view never changes.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

# virtual_size IMG
virtual_size()
{
    qemu-img info -U --output=json "$1" | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p'
}

# a: base.qcow2 (16M) <- top.qcow2 (32M), active commit
qcow2_create a-base.qcow2 16M 65536
qemu_io a-base.qcow2 "write -P 0xe1 0 16M"
qcow2_create a-top.qcow2 32M 65536 "$tmpdir/a-base.qcow2" qcow2
qemu_io a-top.qcow2 "write -P 0xe2 15M 2M" "write -P 0xe3 30M 64k"
# b: base.raw (8M) <- mid.qcow2 (16M) <- top.qcow2 (32M), stream
head -c 8M /dev/urandom >b-base.raw
qcow2_create b-mid.qcow2 16M 65536 "$tmpdir/b-base.raw" raw
qemu_io b-mid.qcow2 "write -P 0xe4 7M 2M"
qcow2_create b-top.qcow2 32M 65536 "$tmpdir/b-mid.qcow2" qcow2
qemu_io b-top.qcow2 "write -P 0xe5 20M 1M"
# c: base.qcow2 (8M) <- mid.qcow2 (16M) <- top.qcow2 (32M), commit top=mid
qcow2_create c-base.qcow2 8M 65536
qemu_io c-base.qcow2 "write -P 0xe6 0 8M"
qcow2_create c-mid.qcow2 16M 65536 "$tmpdir/c-base.qcow2" qcow2
qemu_io c-mid.qcow2 "write -P 0xe7 6M 4M"
qcow2_create c-top.qcow2 32M 65536 "$tmpdir/c-mid.qcow2" qcow2
qemu_io c-top.qcow2 "write -P 0xe8 0 64k"
for d in a b c; do
    to_raw $d-top.qcow2 $d-before.raw
done
start_chainfs mnt -d a=a-top.qcow2 -d b=b-top.qcow2 -d c=c-top.qcow2
ctl=mnt/.jobs/ctl

ctl_ok $ctl commit id=ca disk=a
ctl_ok $ctl stream id=sb disk=b
ctl_ok $ctl commit id=cc disk=c top=$tmpdir/c-mid.qcow2 base=$tmpdir/c-base.qcow2
wait_job_state mnt ca ready
ctl_ok $ctl complete ca
for id in ca sb cc; do
    wait_job_state mnt $id concluded
    assert_eq "$(job_key mnt $id result)" completed "result of $id"
done
assert_chain mnt a "$tmpdir/a-base.qcow2"
assert_chain mnt b "$tmpdir/b-top.qcow2"
assert_chain mnt c "$tmpdir/c-top.qcow2" "$tmpdir/c-base.qcow2"
assert_eq "$(awk '{ print $3 }' mnt/.chains/a) $(stat -c %s mnt/a)" "33554432 33554432" "size of a"
for d in a b c; do
    to_raw mnt/$d $d-mounted.raw
    assert_equal_files $d-mounted.raw $d-before.raw "disk $d after its job"
done
stop_chainfs mnt

assert_eq "$(virtual_size a-base.qcow2)" 33554432 "a-base.qcow2 grown"
assert_eq "$(virtual_size c-base.qcow2)" 16777216 "c-base.qcow2 grown to c-mid's size"
assert_eq "$(qemu_chain c-top.qcow2)" "$tmpdir/c-top.qcow2 $tmpdir/c-base.qcow2" "chain of c"
for img in *.qcow2; do
    qemu_check "$img"
done
for img in a-base.qcow2 b-top.qcow2 c-top.qcow2; do
    d=${img%%-*}
    to_raw $img $d-after.raw
    assert_equal_files $d-after.raw $d-before.raw "disk $d after unmount"
done
