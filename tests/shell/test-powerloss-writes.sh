#!/usr/bin/env bash
# Power loss under guest writes: record every write and flush chainfs makes
# to the image files while chainfs-crash-writer writes, punches holes and
# fsyncs (then a clean unmount), and check the crash states a machine that
# lost power could have kept (chainfs-powerloss.py: only what was flushed
# is sure to be there, anything else may be there or not, torn at 4 KiB).
# In every state:
#  - every image passes `qemu-img check` (leaked clusters allowed);
#  - every write acknowledged before an fsync returned reads back through
#    the chain, and each sector holds a value some request wrote
#    (chainfs-crash-writer check against the writer's own log);
#  - backing layers are untouched.
# Chains: a lone qcow2 with 512 B clusters (allocation and refcount growth
# at every turn), qcow2 with 64K clusters over raw (copy-on-write from the
# backing file), qcow2 with 4K clusters and 1-bit refcounts over a qcow2.
# POWERLOSS_STATES: crash states per chain (default 40).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/powerloss-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
requires_recorder

# check_state: the checks above, on the current crash state in img/.
check_state()
{
    local layer
    pl_check_image "img/$top"
    for layer in "${lower[@]}"; do
        assert_eq "$(md5sum <"img/$layer")" "${lower_sums[$layer]}" \
            "$pl_state: backing layer $layer changed"
    done
    pl_writes_survived "img/$top" initial.raw "$seed" ||
        fail "$pl_state: data lost or corrupted: $(cat check.out)"
}

# powerloss_run TOP SEED OPS [LOWER...]: record OPS writer requests on TOP's
# chain and a clean unmount, then check the crash states.
powerloss_run()
{
    top=$1 seed=$2
    local ops=$3 layer
    shift 3
    lower=("$@")
    declare -gA lower_sums=()
    for layer in "${lower[@]}"; do
        lower_sums[$layer]=$(md5sum <"img/$layer")
    done
    to_raw "img/$top" initial.raw
    pl_snapshot
    pl_start_chainfs mnt -d "vm=$tmpdir/img/$top"
    pl_writer mnt/vm "$seed" "$ops"
    pl_wait_writer
    stop_chainfs mnt
    pl_replay check_state 40
    rm -rf img img-initial replay-work record.log
    mkdir img
}

qemu-img create -q -f qcow2 -o cluster_size=512 img/small.qcow2 4M
powerloss_run small.qcow2 1000 300

qemu-img create -q -f raw img/base.raw 4M
qemu_io img/base.raw 'write -P 0x3c 0 4M'
qcow2_create img/over-raw.qcow2 4M 65536 "$tmpdir/img/base.raw" raw
powerloss_run over-raw.qcow2 2000 300 base.raw

qcow2_create img/mid.qcow2 4M 65536
qemu_io img/mid.qcow2 'write -P 0x4d 1M 2M'
qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=1 \
    -b "$tmpdir/img/mid.qcow2" -F qcow2 img/rc1.qcow2 4M
powerloss_run rc1.qcow2 3000 300 mid.qcow2
