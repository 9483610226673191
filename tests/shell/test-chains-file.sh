#!/usr/bin/env bash
# .chains/NAME lists the chain top first as "DEPTH FORMAT SIZE PATH" with
# canonical absolute paths, and cannot be written.
source "$(dirname "$0")/functions.sh"
requires qemu-img
requires_fuse

M=1048576
mkdir a b
qemu-img create -q -f raw b/base.raw $M
qcow2_create a/mid.qcow2 $((2 * M)) 4096 ../b/base.raw raw
qcow2_create a/top.qcow2 $((4 * M)) 65536 mid.qcow2 qcow2
qemu-img create -q -f raw solo.raw $((3 * M))
dir=$(realpath .)

start_chainfs mnt -d vm=./b/../a/top.qcow2 -d solo=solo.raw
expected="0 qcow2 $((4 * M)) $dir/a/top.qcow2
1 qcow2 $((2 * M)) $dir/a/mid.qcow2
2 raw $M $dir/b/base.raw"
assert_eq "$(cat mnt/.chains/vm)" "$expected" ".chains/vm"
assert_eq "$(cat mnt/.chains/solo)" "0 raw $((3 * M)) $dir/solo.raw" ".chains/solo"
# The file ends with a newline (one line per layer) and stat's size is
# what read returns.
assert_eq "$(tail -c 1 mnt/.chains/vm | od -An -c | tr -d ' ')" '\n' "last byte"
assert_eq "$(stat -c %s mnt/.chains/vm)" "$(wc -c <mnt/.chains/vm)" "size of .chains/vm"
assert_eq "$(listing mnt/.chains)" "solo vm" "listing of .chains"
assert_fails "writing .chains/vm" sh -c 'echo x >mnt/.chains/vm'
stop_chainfs mnt
