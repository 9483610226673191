#!/usr/bin/env bash
# nbdkit's memory plugin advertises multi-conn: a mirror to it under a
# writer spreads its requests over several connections (nbdkit's log
# shows more than one connection writing), and the export, read back
# through a connection of its own after the mirror's complete, holds the
# writer's model; the disk then runs on the export.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io nbdkit
requires_fuse

head -c 32M /dev/urandom >disk.raw
qemu_io disk.raw "write -z 8M 4M"
cp disk.raw before.raw
sock=$tmpdir/t.sock
uri=$(unix_uri "$sock")
start_nbdkit "$sock" --filter=log memory 32M "logfile=$tmpdir/log.txt"
start_chainfs mnt --allow-remote -d vm=disk.raw

start_writer mnt/vm before.raw 9 3000
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing
wait_job_state mnt m1 ready
wait_writer
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_eq "$(cat mnt/.chains/vm)" "0 nbd 33554432 $uri" ".chains/vm"
conns=$(grep -aE ' (Write|Zero) ' log.txt | grep -o 'connection=[0-9]*' | sort -u | wc -l)
((conns > 1)) || fail "the mirror wrote over $conns connection(s): $(grep -a -m3 ' Write ' log.txt)"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk on the export"
out=$(qemu-img compare -f raw -F raw "$uri" model.raw 2>&1) || fail "the export differs from the model: $out"
stop_chainfs mnt
