#!/usr/bin/env bash
# An L1 table offset past the end of the file: either refused at start
# (naming the file) or every read fails with EIO, never zeros, and the
# daemon stays up.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create bad.qcow2 4M 65536
qemu_io bad.qcow2 "write -P 1 0 4M"
poke_be bad.qcow2 40 8 $((1 << 40))
before=$(tree_state .)

if try_start_chainfs mnt -d vm=bad.qcow2; then
    assert_fails "reading with an L1 table past EOF" \
        dd if=mnt/vm of=/dev/null bs=65536 count=1 iflag=direct status=none
    [[ $fail_output == *"Input/output error"* ]] || fail "expected EIO: $fail_output"
    mountpoint -q mnt || fail "mount gone after a bad read"
    stop_chainfs mnt
else
    [[ $chainfs_status -ne 0 ]] || fail "exited 0 without mounting"
    assert_eq "$(wc -l <"$chainfs_log")" 1 "lines of error output"
    grep -q 'bad\.qcow2' "$chainfs_log" || fail "error does not name the file: $(cat "$chainfs_log")"
    ! mountpoint -q mnt || fail "mnt mounted after a refusal"
    assert_eq "$(tree_state .)" "$before" "files after a refusal"
fi
