#!/usr/bin/env bash
# Make the seed corpus of the qcow2 fuzz targets: a dozen small images made
# by qemu-img and qemu-io, covering cluster sizes, v2 and v3, refcount
# widths, backing names and formats, compressed, zero and discarded
# clusters, and features chainfs refuses.  Each stays under 64 KiB (the
# fuzzer's -max_len).  Usage: make-corpus.sh OUTDIR
set -euo pipefail
out=${1:?usage: make-corpus.sh OUTDIR}
mkdir -p "$out"
cd "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# img NAME SIZE OPTIONS [QEMU-IO-COMMAND...]
img()
{
    local name=$1 size=$2 opts=$3 cmd args=()
    shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$work/$name" "$size"
    for cmd in "$@"; do
        args+=(-c "$cmd")
    done
    if [[ ${#args[@]} -gt 0 ]]; then
        qemu-io -f qcow2 "${args[@]}" "$work/$name" >/dev/null
    fi
    mv "$work/$name" "$name.qcow2"
}

img v3-512 1M cluster_size=512 'write -P 0x11 0 3k' 'write -P 0x22 100k 1k' \
    'write -z 200k 2k' 'discard 0 512'
img v2-1k 1M cluster_size=1024,compat=0.10 'write -P 0x33 10k 5k' \
    'write -z 20k 1k'
img refcount1-4k 2M cluster_size=4096,refcount_bits=1 'write -P 0x44 0 8k'
img refcount64-2k 1M cluster_size=2048,refcount_bits=64 \
    'write -P 0x55 4k 6k' 'discard 4k 2k'
img refcount8-1k 1M cluster_size=1024,refcount_bits=8 'write -P 0x56 0 2k'
img empty-4k 4G cluster_size=4096
qemu-img create -q -f qcow2 -u -o cluster_size=512 -b ../base.raw -F raw \
    "$work/backing" 1M
qemu-io -f qcow2 -c 'write -P 0x66 512 1k' "$work/backing" >/dev/null 2>&1 || true
mv "$work/backing" backing-raw.qcow2
qemu-img create -q -f qcow2 -u -o cluster_size=1024,compat=0.10 \
    -b /nonexistent/base.qcow2 -F qcow2 "$work/backing-v2" 1M
mv "$work/backing-v2" backing-v2.qcow2
img lazy-1k 1M cluster_size=1024,lazy_refcounts=on 'write -P 0x77 0 4k'
img extl2-16k 1M cluster_size=16384,extended_l2=on
qemu-img create -q -f qcow2 -o cluster_size=512,data_file="$work/data.raw" \
    "$work/datafile" 1M
mv "$work/datafile" data-file.qcow2

# Compressed clusters: a compressible raw image converted with -c.
qemu-img create -q -f raw "$work/plain.raw" 64k
qemu-io -f raw -c 'write -P 0x61 0 16k' -c 'write -P 0x62 32k 8k' \
    "$work/plain.raw" >/dev/null
qemu-img convert -q -c -O qcow2 -o cluster_size=4096 "$work/plain.raw" \
    compressed-4k.qcow2
qemu-img convert -q -c -O qcow2 -o cluster_size=512,compat=0.10 \
    "$work/plain.raw" compressed-v2-512.qcow2

# Persistent bitmaps: a directory of several entries (enabled, disabled,
# fine granularity) whose tables point at data clusters written by qemu-io
# through the enabled ones.
img bitmaps-1k 1M cluster_size=1024
qemu-img bitmap --add bitmaps-1k.qcow2 b1
qemu-img bitmap --add -g 512 bitmaps-1k.qcow2 fine
qemu-img bitmap --add --disable bitmaps-1k.qcow2 off
qemu-io -f qcow2 -c 'write -P 0x71 0 8k' -c 'write -P 0x72 300k 6k' \
    bitmaps-1k.qcow2 >/dev/null
img bitmaps-512 256k cluster_size=512
qemu-img bitmap --add -g 512 bitmaps-512.qcow2 a
qemu-io -f qcow2 -c 'write -P 0x73 0 16k' bitmaps-512.qcow2 >/dev/null

# Damaged copies: the fuzzer starts next to the checks that matter.
# poke FILE OFFSET NBYTES VALUE: write a big-endian integer.
poke()
{
    local file=$1 offset=$2 n=$3 value=$4 i bytes=
    for ((i = n - 1; i >= 0; i--)); do
        bytes+=$(printf '\\%03o' $(((value >> (8 * i)) & 255)))
    done
    printf "$bytes" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}
cp v3-512.qcow2 bad-l1-past-eof.qcow2
poke bad-l1-past-eof.qcow2 40 8 $((1 << 40))        # l1_table_offset
cp v3-512.qcow2 bad-l1-size.qcow2
poke bad-l1-size.qcow2 36 4 $((0x7fffffff))          # l1_size
cp refcount64-2k.qcow2 bad-reftable.qcow2
poke bad-reftable.qcow2 48 8 $((0x1200))             # unaligned reftable
cp backing-v2.qcow2 bad-backing-name.qcow2
poke bad-backing-name.qcow2 16 4 1000                # name past cluster
cp compressed-4k.qcow2 bad-refcount-order.qcow2
poke bad-refcount-order.qcow2 96 4 7                 # refcount_order 7

for f in *.qcow2; do
    if [[ $(stat -c %s "$f") -gt 65536 ]]; then
        echo "make-corpus.sh: $f is larger than 64 KiB" >&2
        exit 1
    fi
done
