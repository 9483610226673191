#!/usr/bin/env bash
# An image with the qcow2 corrupt bit set is refused read-write (naming the
# file) but opens with read-only=on and reads normally.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create top.qcow2 2M 65536
qemu_io top.qcow2 "write -P 5 65536 100000"
to_raw top.qcow2 expected.raw
features=$(peek_be top.qcow2 72 8)
poke_be top.qcow2 72 8 $((features | 2))

expect_refusal 'top\.qcow2' -d vm=top.qcow2
before=$(tree_state .)
start_chainfs mnt -d vm=top.qcow2,read-only=on
assert_equal_files mnt/vm expected.raw "corrupt image read read-only"
stop_chainfs mnt
assert_eq "$(tree_state .)" "$before" "files after a read-only session"
assert_eq $(($(peek_be top.qcow2 72 8) & 2)) 2 "corrupt bit"
