#!/usr/bin/env bash
# Four writers at once, interleaving 4K stripes inside the same 64K
# clusters over backing data (concurrent copy-on-write), and two readers
# meanwhile: every stripe holds its writer's data and the image is clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

M=1048576
head -c $((8 * M)) /dev/urandom >base.raw
qcow2_create top.qcow2 $((8 * M)) 65536 base.raw raw
to_raw top.qcow2 expected.raw
cp expected.raw untouched.raw

# Writer i writes pattern i+1 to stripes k*4+i of the first 4M; the
# expected image gets the same writes one after the other.
for i in 0 1 2 3; do
    for ((k = 0; k < 256; k++)); do
        echo "write -P $((i + 1)) $(((k * 4 + i) * 4096)) 4096"
    done >"writer$i.cmds"
    mapfile -t cmds <"writer$i.cmds"
    qemu_io expected.raw "${cmds[@]}"
done

start_chainfs mnt -d vm=top.qcow2
pids=()
for i in 0 1 2 3; do
    mapfile -t cmds <"writer$i.cmds"
    qemu-io --image-opts "${cmds[@]/#/-c}" \
        "driver=raw,file.driver=file,file.filename=mnt/vm,file.locking=off" \
        >"writer$i.log" 2>&1 &
    pids+=($!)
done
for i in 0 1; do
    cmp -i $((4 * M)):$((4 * M)) mnt/vm untouched.raw >"reader$i.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    wait "$pid" || fail "a writer or reader failed: $(cat writer*.log reader*.log)"
done
assert_equal_files mnt/vm expected.raw "disk after concurrent writes"
stop_chainfs mnt

qemu_check top.qcow2
to_raw top.qcow2 after.raw
assert_equal_files after.raw expected.raw "chain after unmount"
