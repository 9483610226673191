#!/usr/bin/env bash
# A chain of 1024 qcow2 layers opens with the default --max-chain-depth,
# reads back what `qemu-img convert` reads of it (every layer owns a few
# clusters, some layers zero one, the base is half the size so the upper
# half falls through to zeros), reports the data extents that `qemu-img
# map` reports, and takes writes (copy-on-write of partial clusters reads
# through the whole chain).
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp
requires_fuse
requires_tool chainfs-mkchain
requires_tool chainfs-extents

LAYERS=1024
mkdir chain
top=$("$CHAINFS_TOOLS/chainfs-mkchain" -c 4K -k 3 -s chain $LAYERS 4M) ||
    fail "chainfs-mkchain failed"
# QEMU takes seconds per pass over a chain this deep (it opens it in
# quadratic time): run its two readers side by side.
to_raw "$top" expected.raw &
convert_pid=$!
data_extents "$top" >expected.extents
wait $convert_pid || fail "qemu-img convert failed"

start_chainfs mnt -d vm="$top"
layers=$(wc -l <mnt/.chains/vm)
assert_eq "$layers" $LAYERS "layers listed in .chains/vm"
cmp expected.raw mnt/vm || fail "the disk differs from qemu-img convert"
"$CHAINFS_TOOLS/chainfs-extents" mnt/vm >actual.extents ||
    fail "chainfs-extents failed"
diff=$(diff expected.extents actual.extents) ||
    fail "data extents differ from qemu-img map (< qemu-img, > chainfs): $diff"

# Partial-cluster writes: the rest of each cluster comes from deep below.
for off in 1000 $((1024 * 1024 + 7)) $((3 * 1024 * 1024 + 4000)); do
    dd_write mnt/vm $off 100 9
    dd_write expected.raw $off 100 9
done
cmp expected.raw mnt/vm || fail "the disk differs after partial writes"
stop_chainfs mnt

# The top alone (backing null: QEMU would open the chain for nothing),
# then the written ranges as QEMU reads them through the chain.
qemu_check "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": \"$top\"}}"
reads=()
for off in 0 $((1024 * 1024)) $((3 * 1024 * 1024)); do
    reads+=(-c "read -v $off 8192")
done
qemu-io -r -f qcow2 "${reads[@]}" "$top" | grep -E '^[0-9a-f]{8}:' >qemu.dump ||
    fail "qemu-io cannot read $top"
for off in 0 $((1024 * 1024)) $((3 * 1024 * 1024)); do
    od -An -v -tx1 -j $off -N 8192 expected.raw
done | tr -s ' ' '\n' | grep . >expected.bytes
cut -c12-58 qemu.dump | tr -s ' ' '\n' | grep . >qemu.bytes
cmp expected.bytes qemu.bytes || fail "qemu-io reads other data after writes"
