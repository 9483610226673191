#!/usr/bin/env bash
# --max-chain-depth N: a chain of N layers opens, one of N+1 is refused
# with one line naming the top and the limit; a bad N is refused; a chain
# that needs more files than RLIMIT_NOFILE allows names the limit.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_tool chainfs-mkchain

mkdir img
"$CHAINFS_TOOLS/chainfs-mkchain" -c 4K -k 1 img 21 1M >/dev/null ||
    fail "chainfs-mkchain failed"
start_chainfs mnt --max-chain-depth 21 -d vm=img/layer0020.qcow2
assert_eq "$(wc -l <mnt/.chains/vm)" 21 "layers of a chain at the limit"
stop_chainfs mnt

expect_refusal 'layer0020\.qcow2: backing chain too deep \(more than 20 layers; see --max-chain-depth\)' \
    --max-chain-depth 20 -d vm=img/layer0020.qcow2
expect_refusal "--max-chain-depth '0': expected a number" \
    --max-chain-depth 0 -d vm=img/layer0020.qcow2
expect_refusal "--max-chain-depth 'x': expected a number" \
    --max-chain-depth x -d vm=img/layer0020.qcow2

# Too few file descriptors for the chain, even at the hard limit.
printf '#!/bin/sh\nulimit -n 16 && exec "%s" "$@"\n' "$CHAINFS" >low-fds.sh
chmod +x low-fds.sh
CHAINFS=$tmpdir/low-fds.sh expect_refusal \
    'layer00[0-9][0-9]\.qcow2: cannot open: Too many open files \(the limit is 16 open files, one per layer' \
    -d vm=img/layer0020.qcow2
