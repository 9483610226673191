#!/usr/bin/env bash
# Writes with dd through the mount (aligned, unaligned, straddling
# clusters, sub-cluster over backing data, the last bytes) land in the top
# layer only, leave the images clean and equal to a reference copy of the
# chain to which qemu-io applied the same writes.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
K=1024
mkdir img
head -c $((8 * M)) /dev/urandom >img/base.raw
qcow2_create img/mid.qcow2 $((8 * M)) 4096 base.raw raw
qemu_io img/mid.qcow2 "write -P 1 $((2 * M)) $M"
qcow2_create img/top.qcow2 $((8 * M)) 65536 mid.qcow2 qcow2
qemu_io img/top.qcow2 "write -P 2 $((5 * M)) $M"
cp -a img ref
lower_before=$(md5sum img/base.raw img/mid.qcow2)

# OFFSET LENGTH BYTE
writes=(
    "0 $((64 * K)) 17"                          # one whole cluster
    "$((M + 1000)) 3000 18"                     # unaligned, in one cluster
    "$((5 * 64 * K - 700)) 1400 19"             # straddling two clusters
    "$((10 * 64 * K + 4096)) 512 20"            # sub-cluster over backing
    "$((2 * M + 12345)) 300000 21"              # many clusters, over mid
    "$((5 * M + 100)) 200 22"                   # over top's own data
    "$((8 * M - 100)) 100 23"                   # the last bytes
)
start_chainfs mnt -d vm=img/top.qcow2
for w in "${writes[@]}"; do
    read -r offset len byte <<<"$w"
    dd_write mnt/vm "$offset" "$len" "$byte"
    qemu_io ref/top.qcow2 "write -P $byte $offset $len"
done
to_raw ref/top.qcow2 expected.raw
assert_equal_files mnt/vm expected.raw "disk after the writes"
stop_chainfs mnt

qemu_check img/top.qcow2
out=$(qemu-img compare img/top.qcow2 ref/top.qcow2 2>&1) ||
    fail "chain differs from the reference: $out"
assert_eq "$(md5sum img/base.raw img/mid.qcow2)" "$lower_before" \
    "backing layers after writes"
