#!/usr/bin/env bash
# A backing file shorter than its overlay reads as zeros past its end,
# also inside an overlay cluster that straddles that end.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576

# vm1: a 1M raw base full of data under a 4M qcow2.
head -c $M /dev/urandom >base.raw
qcow2_create top1.qcow2 $((4 * M)) 65536 base.raw raw
qemu_io top1.qcow2 "write -P 7 $((3 * M)) 4096"

# vm2: a 1M+4K qcow2 with 2M clusters under an 8M qcow2 whose write
# straddles the base's end.
qcow2_create mid.qcow2 $((M + 4096)) 2097152
qemu_io mid.qcow2 "write -P 9 0 $((M + 4096))"
qcow2_create top2.qcow2 $((8 * M)) 65536 mid.qcow2 qcow2
qemu_io top2.qcow2 "write -P 5 $((M - 512)) 1024"

to_raw top1.qcow2 vm1.expected
to_raw top2.qcow2 vm2.expected

start_chainfs mnt -d vm1=top1.qcow2 -d vm2=top2.qcow2
assert_eq "$(stat -c %s mnt/vm1)" $((4 * M)) "size of vm1"
assert_eq "$(stat -c %s mnt/vm2)" $((8 * M)) "size of vm2"
assert_equal_files mnt/vm1 vm1.expected "vm1 read"
assert_equal_files mnt/vm2 vm2.expected "vm2 read"
assert_zeros mnt/vm1 $M $((2 * M))
assert_zeros mnt/vm2 $((M + 4096)) $((7 * M - 4096))
stop_chainfs mnt
