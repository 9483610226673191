#!/usr/bin/env bash
# O_DIRECT writes and reads through the mount (qemu-io -f raw -t none, as
# QEMU with cache=none) match qemu-io's own writes on a reference chain.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
mkdir img
head -c $((4 * M)) /dev/urandom >img/base.raw
qcow2_create img/top.qcow2 $((4 * M)) 65536 base.raw raw
qemu_io img/top.qcow2 "write -P 1 $M 65536"
cp -a img ref

cmds=(
    "write -P 10 0 65536"
    "write -P 11 $((65536 + 4096)) 4096"
    "write -P 12 $((M - 512)) 1024"
    "write -P 13 $((M + 512)) 512"
    "write -P 14 $((2 * M + 100)) 5000"
    "write -z $((3 * M)) 131072"
    "write -P 15 $((4 * M - 4096)) 4096"
)
start_chainfs mnt -d vm=img/top.qcow2
out=$(qemu-io -f raw -t none "${cmds[@]/#/-c}" mnt/vm 2>&1) ||
    fail "qemu-io -t none on the mount: $out"
qemu_io ref/top.qcow2 "${cmds[@]}"
out=$(qemu-io -f raw -t none -c "read -P 12 $((M - 512)) 1024" \
      -c "read -P 13 $((M + 512)) 512" -c "read -P 0 $((3 * M)) 131072" \
      -c "read -P 14 $((2 * M + 100)) 5000" mnt/vm 2>&1) ||
    fail "O_DIRECT read back: $out"
to_raw ref/top.qcow2 expected.raw
assert_equal_files mnt/vm expected.raw "disk after O_DIRECT writes"
stop_chainfs mnt

qemu_check img/top.qcow2
out=$(qemu-img compare img/top.qcow2 ref/top.qcow2 2>&1) ||
    fail "chain differs from the reference: $out"
