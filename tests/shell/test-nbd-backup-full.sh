#!/usr/bin/env bash
# backup sync=full to an NBD export (mode=existing) under a writer, once
# into qemu-nbd serving an empty qcow2 image and once into nbdkit's file
# plugin on a raw file: the export holds exactly the disk as it was when
# the command was accepted, the writer sees no wrong data, and ranges
# that read as zero went out as write-zeroes (zero clusters in the qcow2
# image; NBD_CMD_WRITE_ZEROES and never a trim in nbdkit's log).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd nbdkit
requires_fuse

qemu-img create -q -f raw base.raw 32M
qemu_io base.raw "write -P 0x11 0 8M"
qcow2_create top.qcow2 32M 65536 "$tmpdir/base.raw" raw
qemu_io top.qcow2 "write -P 0x22 4M 4M" "write -P 0 12M 2M" "write -z 2M 1M"
start_chainfs mnt --allow-remote -d vm=top.qcow2
ctl=mnt/.jobs/ctl
sock=$tmpdir/t.sock
uri=$(unix_uri "$sock")

# backup_under_writer ID SEED: a backup of vm to $uri while a writer
# runs; leaves the instant in ID.instant.raw.
backup_under_writer()
{
    to_raw mnt/vm "$1.instant.raw"
    ctl_ok $ctl backup "id=$1" disk=vm "target=$uri" mode=existing speed=4M buf-size=64K
    assert_eq "$(job_key mnt "$1" type)" backup "type of $1"
    start_writer mnt/vm "$1.instant.raw" "$2" 3000
    ctl_ok $ctl set-speed "$1" 0
    wait_job_state mnt "$1" concluded
    assert_eq "$(job_key mnt "$1" result)" completed "result of $1"
    assert_eq "$(job_key mnt "$1" offset)" "$(job_key mnt "$1" len)" "offset = len of $1"
    wait_writer
    assert_equal_files mnt/vm model.raw "the disk after the writer of $1"
    ctl_ok $ctl dismiss "$1"
}

# qemu-nbd on an empty qcow2 image of the disk's size.
qcow2_create t.qcow2 32M 65536
start_qemu_nbd "$sock" t.qcow2
backup_under_writer q 7
stop_server "$nbd_pid"
qemu_check t.qcow2
out=$(qemu-img compare -f qcow2 -F raw t.qcow2 q.instant.raw 2>&1) || fail "qemu-nbd's image differs from the instant: $out"
# Data only where the disk held non-zero data: 0-2M and 3M-8M at most.
data=$(qemu-img map --output=json t.qcow2 | grep '"data": true' |
       sed 's/.*"length": \([0-9]*\).*/\1/' | awk '{ s += $1 } END { print s + 0 }')
((data <= 7 * 1048576)) || fail "the target holds $data bytes of data, more than the 7M the disk had"

# nbdkit's file plugin on a raw file full of garbage, logging requests.
head -c 32M /dev/urandom >t.raw
start_nbdkit "$sock" --filter=log file t.raw logfile="$tmpdir/log.txt"
backup_under_writer k 8
stop_server "$nbd_pid"
cmp t.raw k.instant.raw || fail "nbdkit's file differs from the instant"
grep -q ' Zero ' log.txt || fail "no write-zeroes in nbdkit's log"
! grep -q ' Trim ' log.txt || fail "a trim in nbdkit's log: $(grep -m1 ' Trim ' log.txt)"
stop_chainfs mnt
qemu_check top.qcow2
