#!/usr/bin/env bash
# Incremental backups into one NBD export (nbdkit's file plugin on a raw
# file): a full backup with bitmap=b1 clears b1; the writes made after it
# dirty it again; a sync=bitmap backup into the same export copies just
# those chunks (len), clears b1, and leaves the export equal to the disk
# at that instant.  Chunks the guest zeroed go out as write-zeroes.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io nbdkit
requires_fuse

qcow2_create top.qcow2 32M 65536
qemu_io top.qcow2 "write -P 0x33 0 6M" "write -P 0x34 20M 1M"
start_chainfs mnt --allow-remote -d vm=top.qcow2
ctl=mnt/.jobs/ctl
count() { bitmap_field mnt vm b1 count; }
qemu-img create -q -f raw t.raw 32M
sock=$tmpdir/t.sock
uri=$(unix_uri "$sock")
start_nbdkit "$sock" --filter=log file t.raw logfile="$tmpdir/log.txt"

ctl_ok $ctl bitmap-add disk=vm name=b1
to_raw mnt/vm full.raw
ctl_ok $ctl backup id=f disk=vm "target=$uri" mode=existing bitmap=b1
wait_job_state mnt f concluded
assert_eq "$(job_key mnt f result)" completed "result of f"
assert_eq "$(count)" 0 "b1 after the full backup"
cmp t.raw full.raw || fail "the export differs from the disk after the full backup"

# Some data, some zeros over data, some zeros over zeros.
dd_write mnt/vm $((1 << 20)) 131072 0x37
dd_write mnt/vm $((25 << 20)) 4096 0x38
dd_write mnt/vm $((20 << 20)) 65536 0
log_lines=$(wc -l <log.txt)
to_raw mnt/vm inc.raw
ctl_ok $ctl backup id=i disk=vm "target=$uri" mode=existing sync=bitmap bitmap=b1
wait_job_state mnt i concluded
assert_eq "$(job_key mnt i result)" completed "result of i"
assert_eq "$(job_key mnt i len)" $((131072 + 65536 * 2)) "len of i: the dirty chunks"
assert_eq "$(count)" 0 "b1 after the incremental backup"
cmp t.raw inc.raw || fail "the export differs from the disk after the incremental backup"
# The incremental backup wrote the dirty chunks only: the data as writes
# (1M, and the first 4K at 25M), the zeros as write-zeroes (the zeroed
# chunk at 20M, and the rest of the chunk at 25M).
requests=$(tail -n +$((log_lines + 1)) log.txt | grep -E ' (Write|Zero|Trim) ')
assert_eq "$(grep -c ' Write ' <<<"$requests") $(grep -c ' Zero ' <<<"$requests") $(grep -c ' Trim ' <<<"$requests")" \
    "2 2 0" "requests of i (Write Zero Trim): $requests"
stop_chainfs mnt
stop_server "$nbd_pid"
qemu_check top.qcow2
