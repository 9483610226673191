#!/usr/bin/env bash
# A server that stops answering without closing the socket (SIGSTOP):
# with --nbd-timeout 1, a guest request on a disk served by it fails with
# EIO after about a second (its connection dropped), later ones fail as
# quickly, and after SIGCONT the next request reconnects and works.  A
# backup to such a server with on-target-error=stop pauses within the
# timeout, and after SIGCONT resume completes it.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/error-policy-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd
requires_fuse

qemu-img create -q -f qcow2 e.qcow2 16M
qemu_io e.qcow2 "write -P 0x11 0 1M"
sock=$tmpdir/e.sock
uri=$(unix_uri "$sock")
start_qemu_nbd "$sock" e.qcow2
start_chainfs mnt --allow-remote --nbd-timeout 1 -d "vm=$uri"
qemu_io_disk() { qemu-io -f raw -t none "$@" mnt/vm; }
out=$(qemu_io_disk -c "read -P 0x11 0 1M") || fail "I/O on the export: $out"

# elapsed_ms START_NS: milliseconds since START_NS ($(date +%s%N)).
elapsed_ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
kill -STOP "$nbd_pid"
cleanup_fn "kill -CONT $nbd_pid 2>/dev/null || true"
start=$(date +%s%N)
out=$(dd if=mnt/vm of=/dev/null bs=64k count=1 iflag=direct 2>&1) || true
ms=$(elapsed_ms "$start")
[[ $out == *"Input/output error"* ]] || fail "a read from a hung server: $out"
((ms >= 900 && ms < 3000)) || fail "the read failed after ${ms} ms, not about 1000"
# The next request: one connection attempt (1 s), no reply.
start=$(date +%s%N)
out=$(dd if=/dev/zero of=mnt/vm bs=64k count=1 seek=16 oflag=direct conv=notrunc 2>&1) || true
ms=$(elapsed_ms "$start")
[[ $out == *"Input/output error"* ]] || fail "a write to a hung server: $out"
((ms < 3500)) || fail "the write failed after ${ms} ms"
grep -q "no reply within 1000 ms: dropping the connection" "$chainfs_log" ||
    fail "no timeout message in the log: $(cat "$chainfs_log")"
_running "$chainfs_pid" || fail "chainfs died"

kill -CONT "$nbd_pid"
out=$(qemu_io_disk -c "read -P 0x11 0 1M" -c "write -P 0x33 2M 1M" \
    -c "read -P 0x33 2M 1M") || fail "I/O after SIGCONT: $out"
stop_chainfs mnt

# A backup to the hung server, on-target-error=stop.
head -c 16M /dev/urandom >disk.raw
start_chainfs mnt --allow-remote --nbd-timeout 1 -d vm=disk.raw
ctl=mnt/.jobs/ctl
ctl_ok $ctl backup id=b1 disk=vm "target=$uri" mode=existing \
    on-target-error=stop speed=4M buf-size=64K
wait_job_progress mnt b1
kill -STOP "$nbd_pid"
start=$(date +%s%N)
wait_event mnt "JOB_ERROR id=b1 operation=write action=stop"
ms=$(elapsed_ms "$start")
((ms < 5000)) || fail "the job saw the error after ${ms} ms"
wait_job_state mnt b1 paused
kill -CONT "$nbd_pid"
ctl_ok $ctl resume b1
ctl_ok $ctl set-speed b1 0
wait_job_state mnt b1 concluded
assert_eq "$(job_key mnt b1 result)" completed "result of b1"
stop_chainfs mnt
stop_server "$nbd_pid"
qemu_check e.qcow2
out=$(qemu-img compare -f qcow2 -F raw e.qcow2 disk.raw 2>&1) || fail "the export differs from the disk: $out"
