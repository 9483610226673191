#!/usr/bin/env bash
# Chains of 1 to 4 layers with mixed cluster sizes (512 B, 4K, 64K, 2M) and
# a raw base read exactly as `qemu-img convert -O raw` of the chain, four
# disks in one mount.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
size=$((16 * M))

# layer_writes IMG BYTE: data at offsets that straddle every cluster size,
# some of it partly overwritten by the layers above, and a zeroed range.
layer_writes()
{
    local img=$1 b=$2
    qemu_io "$img" \
        "write -P $b $((b * 4096 + 700)) $((300 * 1024 + 3))" \
        "write -P $((b + 1)) $((2 * M - 33000)) 66000" \
        "write -P $((b + 2)) $((b * M + 512)) 512" \
        "write -z $((b * 64 * 1024)) 65536" \
        "write -P $((b + 3)) $((size - 4096 * b)) $((4096 * b))"
}

# d1: one qcow2 layer, 64K clusters.
qcow2_create d1.qcow2 $size 65536
layer_writes d1.qcow2 1

# d2: 512-byte clusters under 2M clusters.
qcow2_create d2-base.qcow2 $size 512
layer_writes d2-base.qcow2 2
qcow2_create d2.qcow2 $size 2097152 d2-base.qcow2 qcow2
layer_writes d2.qcow2 5

# d3: raw, then 4K, then 64K clusters.
qemu-img create -q -f raw d3-base.raw $size
layer_writes d3-base.raw 3
qcow2_create d3-mid.qcow2 $size 4096 d3-base.raw raw
layer_writes d3-mid.qcow2 7
qcow2_create d3.qcow2 $size 65536 d3-mid.qcow2 qcow2
layer_writes d3.qcow2 9

# d4: 2M, 512 B, 64K, 4K clusters.
qcow2_create d4-l3.qcow2 $size 2097152
layer_writes d4-l3.qcow2 4
qcow2_create d4-l2.qcow2 $size 512 d4-l3.qcow2 qcow2
layer_writes d4-l2.qcow2 6
qcow2_create d4-l1.qcow2 $size 65536 d4-l2.qcow2 qcow2
layer_writes d4-l1.qcow2 8
qcow2_create d4.qcow2 $size 4096 d4-l1.qcow2 qcow2
layer_writes d4.qcow2 10

for d in d1 d2 d3 d4; do
    to_raw $d.qcow2 $d.expected
done

start_chainfs mnt -d d1=d1.qcow2 -d d2=d2.qcow2 -d d3=d3.qcow2 -d d4=d4.qcow2
for d in d1 d2 d3 d4; do
    assert_eq "$(stat -c %s mnt/$d)" $size "size of $d"
    assert_equal_files mnt/$d $d.expected "$d read through the mount"
done
stop_chainfs mnt
