#!/usr/bin/env bash
# Without --allow-remote no URI is accepted anywhere: --disk NAME=URI is a
# one-line startup error, and a job target that is a URI is EACCES (even
# a malformed or TLS one), with no connection made to the server.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img nbdkit
requires_fuse

qemu-img create -q -f raw disk.raw 8M
# The log filter records every connection nbdkit accepts.
start_nbdkit "$tmpdir/s.sock" --filter=log memory 8M "logfile=$tmpdir/nbd.log"
uri=$(unix_uri "$tmpdir/s.sock")

expect_refusal "--disk 'vm=nbd\+unix:.*': a URI needs --allow-remote" -d "vm=$uri"
expect_refusal "format 'qcow2' is not supported for a URI" --allow-remote -d "vm=$uri,format=qcow2"

start_chainfs mnt -d vm=disk.raw
ctl_error EACCES "mirror: target .*: remote targets need --allow-remote" \
    mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing
ctl_error EACCES "remote targets need --allow-remote" \
    mnt/.jobs/ctl mirror id=m1 disk=vm target=nbds://localhost/x mode=existing
ctl_error EACCES "backup: target .*: remote targets need --allow-remote" \
    mnt/.jobs/ctl backup id=b1 disk=vm "target=$uri" mode=existing
stop_chainfs mnt
! grep -q connect nbd.log 2>/dev/null || fail "chainfs connected: $(cat nbd.log)"
