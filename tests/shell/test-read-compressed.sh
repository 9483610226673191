#!/usr/bin/env bash
# Compressed clusters (64K and 4K cluster sizes, under an overlay with
# partial writes) read exactly as qemu-img reads them.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
# Compressible but not trivial data: text, zeros and random blocks.
{
    seq 1 200000
    head -c $M /dev/zero
    head -c $M /dev/urandom
} | head -c $((4 * M)) >source.raw
truncate -s $((4 * M)) source.raw

qemu-img convert -c -f raw -O qcow2 -o cluster_size=65536 source.raw c64.qcow2
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096 source.raw c4.qcow2
qcow2_create top.qcow2 $((4 * M)) 65536 c4.qcow2 qcow2
qemu_io top.qcow2 "write -P 3 $((65536 + 100)) 1000" "write -P 4 $((2 * M - 10)) 20"

to_raw c64.qcow2 c64.expected
to_raw top.qcow2 top.expected
assert_equal_files c64.expected source.raw "qemu-img's own round trip"

start_chainfs mnt -d c64=c64.qcow2,read-only=on -d top=top.qcow2
assert_equal_files mnt/c64 c64.expected "compressed 64K clusters"
assert_equal_files mnt/top top.expected "overlay on compressed 4K clusters"
stop_chainfs mnt
