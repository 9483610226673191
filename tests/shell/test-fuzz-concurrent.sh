#!/usr/bin/env bash
# Four randomized differential testers at once on disjoint ranges of one
# disk whose boundaries fall inside 64K clusters (qcow2 over raw), so that
# allocation, copy-on-write and zeroing race on shared clusters and
# metadata; then every range and the unmounted chain match the models.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse
requires_tool chainfs-fuzz-io

K=1024
head -c 16M /dev/urandom >base.raw
qcow2_create top.qcow2 16M 65536 base.raw raw
to_raw top.qcow2 before.raw
cp before.raw expected.raw

# START LENGTH: 4K-aligned, not 64K-aligned.
ranges=("0 $((3 * 1024 * K + 4 * K))" "$((3 * 1024 * K + 4 * K)) $((5 * 1024 * K - 8 * K))"
        "$((8 * 1024 * K - 4 * K)) $((4 * 1024 * K + 12 * K))"
        "$((12 * 1024 * K + 8 * K)) $((4 * 1024 * K - 8 * K))")

start_chainfs mnt -d vm=top.qcow2
pids=()
for i in 0 1 2 3; do
    read -r start len <<<"${ranges[i]}"
    "$CHAINFS_TOOLS/chainfs-fuzz-io" -g 65536 -r "$start:$len" -d "model$i.raw" \
        mnt/vm before.raw $((10 + i)) 5000 >"fuzz$i.log" 2>&1 &
    pids+=($!)
done
for i in 0 1 2 3; do
    wait "${pids[i]}" || fail "tester $i found a difference: $(cat "fuzz$i.log")"
    read -r start len <<<"${ranges[i]}"
    dd if="model$i.raw" of=expected.raw bs=4096 skip=$((start / 4096)) \
       seek=$((start / 4096)) count=$((len / 4096)) conv=notrunc status=none
done
assert_equal_files mnt/vm expected.raw "disk after concurrent testers"
stop_chainfs mnt

qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "chain after unmount"
