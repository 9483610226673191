#!/usr/bin/env bash
# --disk NAME=URI serves an export as a disk (.chains: "0 nbd SIZE URI").
# While its server is gone, reads and writes fail with EIO (within a few
# seconds, the daemon stays up); once the server is back the next request
# reconnects and the disk works again, with what was written before.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

qemu-img create -q -f qcow2 e.qcow2 16M
qemu_io e.qcow2 "write -P 0x11 0 1M"
sock=$tmpdir/e.sock
uri=$(unix_uri "$sock")
start_qemu_nbd "$sock" e.qcow2
start_chainfs mnt --allow-remote -d "vm=$uri"
assert_eq "$(cat mnt/.chains/vm)" "0 nbd 16777216 $uri" ".chains/vm"
assert_eq "$(stat -c %a mnt/vm)" 600 "mode of the disk"
qemu_io_disk() { qemu-io -f raw -t none "$@" mnt/vm; }
out=$(qemu_io_disk -c "read -P 0x11 0 1M" -c "write -P 0x22 1M 1M" -c "read -P 0x22 1M 1M") ||
    fail "I/O on the export: $out"

stop_server "$nbd_pid"
start=$SECONDS
if out=$(qemu_io_disk -c "read 0 64k" 2>&1) && [[ $out != *"Input/output error"* ]]; then
    fail "a read with the server gone succeeded: $out"
fi
[[ $out == *"Input/output error"* ]] || fail "a read with the server gone: $out"
if out=$(qemu_io_disk -c "write -P 0x33 2M 64k" 2>&1) && [[ $out != *"Input/output error"* ]]; then
    fail "a write with the server gone succeeded: $out"
fi
((SECONDS - start < 15)) || fail "failing took $((SECONDS - start))s"
_running "$chainfs_pid" || fail "chainfs died"

start_qemu_nbd "$sock" e.qcow2
out=$(qemu_io_disk -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" \
    -c "write -P 0x44 3M 1M" -c "read -P 0x44 3M 1M") ||
    fail "I/O after the server came back: $out"
stop_chainfs mnt
stop_server "$nbd_pid"
qemu_check e.qcow2
qemu_io e.qcow2 "read -P 0x11 0 1M" "read -P 0x22 1M 1M" "read -P 0x44 3M 1M"
