#!/usr/bin/env bash
# --help and --version succeed and print to stdout; no arguments, an
# unknown option or a missing mountpoint fail with a message.
source "$(dirname "$0")/functions.sh"
requires_fuse

out=$("$CHAINFS" --help 2>&1) || fail "--help failed: $out"
[[ $out == *--disk* && $out == *MOUNTPOINT* ]] || fail "--help does not describe usage: $out"
out=$("$CHAINFS" --version 2>&1) || fail "--version failed: $out"
[[ $out == *0.1* ]] || fail "--version does not print the version: $out"

qemu-img create -q -f raw disk.raw 1M
assert_fails "no arguments" "$CHAINFS"
[[ -n $fail_output ]] || fail "no message without arguments"
assert_fails "an unknown option" "$CHAINFS" --no-such-option -d vm=disk.raw mnt
[[ $fail_output == *no-such-option* ]] || fail "unknown option not named: $fail_output"
assert_fails "no mountpoint" "$CHAINFS" -f -d vm=disk.raw
