#!/usr/bin/env bash
# backup sync=full of a 1 TiB sparse disk (a few MiB of data in two
# layers, spread across the disk) completes quickly: the copier skips what
# reads as zeros by block status, extent by extent, instead of stepping
# through the disk a chunk run at a time (a million runs of 1 MiB).  The
# target is sparse (data only where the disk has data), holds the disk's
# content, and passes qemu-img check; the job's offset reaches its len.
# The bound on the time is loose (60 s, on a loaded machine); it takes
# well under a second here.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io
requires_fuse

T=$((1 << 40)) G300=$((300 << 30))
qcow2_create base.qcow2 1T 65536
qemu_io base.qcow2 "write -P 0x61 0 1M" "write -P 0x62 $G300 2M" \
    "write -P 0x63 $((T - (1 << 20))) 1M"
qcow2_create top.qcow2 1T 65536 "$tmpdir/base.qcow2" qcow2
qemu_io top.qcow2 "write -P 0x71 $((T / 2)) 1M" "write -z $G300 64k"

# big_data_extents IMG: the merged data extents, "START LENGTH" (as
# data_extents, but awk prints offsets past 2^31 with %.0f, not %d).
big_data_extents()
{
    qemu-img map --output=json "$1" | grep '"data": true' |
        sed 's/.*"start": \([0-9]*\), "length": \([0-9]*\).*/\1 \2/' |
        awk '{ if (n && $1 == s + l) { l += $2; next }
               if (n) printf "%.0f %.0f\n", s, l
               s = $1; l = $2; n = 1 }
             END { if (n) printf "%.0f %.0f\n", s, l }'
}
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

start=$SECONDS
ctl_ok $ctl backup id=b disk=vm target=$tmpdir/t.qcow2
wait_job_state mnt b concluded
elapsed=$((SECONDS - start))
echo "1 TiB sparse backup: $elapsed s"
assert_eq "$(job_key mnt b result)" completed "result"
assert_eq "$(job_key mnt b offset)" "$(job_key mnt b len)" "offset = len"
assert_eq "$(job_key mnt b len)" "$T" "len"
((elapsed <= 60)) || fail "a 1 TiB sparse backup took $elapsed s"
stop_chainfs mnt

qemu_check t.qcow2
# Data only where the disk has non-zero data (the zeroed 64K at 300G not).
assert_eq "$(big_data_extents t.qcow2 | paste -sd' ')" \
    "0 1048576 $((G300 + 65536)) $((2097152 - 65536)) $((T / 2)) 1048576 $((T - (1 << 20))) 1048576" \
    "data extents of the target"
used=$(du -k t.qcow2 | cut -f1)
((used < 64 * 1024)) || fail "the target uses $used KiB on the host"
out=$(qemu-img compare top.qcow2 t.qcow2 2>&1) || fail "target: $out"
