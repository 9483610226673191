#!/usr/bin/env bash
# fallocate -z (ZERO_RANGE) through the mount reads back as zeros and
# leaves the chain equal to a reference where qemu-io did `write -z`, over
# backing data, over the top's data, and in partial clusters.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io fallocate
requires_fuse

M=1048576
mkdir img
head -c $((4 * M)) /dev/urandom >img/base.raw
qcow2_create img/top.qcow2 $((4 * M)) 65536 base.raw raw
qemu_io img/top.qcow2 "write -P 1 $((2 * M)) $M"
cp -a img ref

# OFFSET LENGTH
ranges=(
    "0 131072"                              # whole clusters over the base
    "$((M + 1000)) 5000"                    # inside one cluster
    "$((2 * M - 4096)) 200704"              # straddling into top's data
    "$((3 * M + 65536)) 65536"              # a cluster the top allocates
)
start_chainfs mnt -d vm=img/top.qcow2
for r in "${ranges[@]}"; do
    read -r offset len <<<"$r"
    out=$(fallocate -z -o "$offset" -l "$len" mnt/vm 2>&1) ||
        fail "fallocate -z -o $offset -l $len: $out"
    assert_zeros mnt/vm "$offset" "$len"
    qemu_io ref/top.qcow2 "write -z $offset $len"
done
assert_eq "$(stat -c %s mnt/vm)" $((4 * M)) "size after zeroing"
stop_chainfs mnt

qemu_check img/top.qcow2
out=$(qemu-img compare img/top.qcow2 ref/top.qcow2 2>&1) ||
    fail "chain differs from the reference: $out"
# Whole clusters are zeroed without writing data (qcow2 zero clusters), as
# qemu-io's write -z does: the map shows no data there, not even the base's.
if data_extents img/top.qcow2 | awk '$1 < 131072 { found = 1 } END { exit !found }'; then
    fail "zeroed clusters [0, 128K) hold data: $(qemu-img map img/top.qcow2)"
fi
