#!/usr/bin/env bash
# snapshot while a writer runs: no write is lost (the disk reads as the
# writer's model throughout and afterwards), each snapshot puts a new
# qcow2 overlay on top whose backing file is the old top (absolute path,
# format recorded), qemu-img agrees with .chains, and every image is clean.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 "$tmpdir/base.raw" raw
to_raw top.qcow2 before.raw
start_chainfs mnt -d vm=top.qcow2

start_writer mnt/vm before.raw 7 20000
expected_chain="$tmpdir/top.qcow2 $tmpdir/base.raw"
for i in 1 2 3; do
    # Let the writer get going.
    wait_writer_writes 100
    ctl_ok mnt/.jobs/ctl snapshot disk=vm overlay=$tmpdir/snap$i.qcow2
    assert_eq "$ctl_reply" "ok" "reply to snapshot $i"
    expected_chain="$tmpdir/snap$i.qcow2 $expected_chain"
    assert_eq "$(chain_paths mnt vm | paste -sd' ')" "$expected_chain" "chain after snapshot $i"
    assert_eq "$(qemu_chain_paths_shared snap$i.qcow2 | paste -sd' ')" "$expected_chain" \
        "qemu-img's chain after snapshot $i"
done
wait_writer
# The overlays record their backing files as absolute paths, with formats.
assert_eq "$(qemu-img info -U --output=json snap1.qcow2 | sed -n 's/.*"backing-filename": "\(.*\)",*$/\1/p')" \
    "$tmpdir/top.qcow2" "backing file of snap1"
assert_eq "$(qemu-img info -U --output=json snap1.qcow2 | sed -n 's/.*"backing-filename-format": "\(.*\)",*$/\1/p')" \
    "qcow2" "backing format of snap1"
awk '{ print $1, $2 }' mnt/.chains/vm | paste -sd' ' |
    grep -qx "0 qcow2 1 qcow2 2 qcow2 3 qcow2 4 raw" || fail ".chains: $(cat mnt/.chains/vm)"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs mnt

for img in top.qcow2 snap1.qcow2 snap2.qcow2 snap3.qcow2; do
    qemu_check "$img"
done
assert_eq "$(qemu_chain_paths snap3.qcow2 | paste -sd' ')" "$expected_chain" "qemu-img's chain after unmount"
to_raw snap3.qcow2 after.raw
assert_equal_files after.raw model.raw "snap3.qcow2's chain after unmount"
