#!/usr/bin/env bash
# backup speed=: 8 MiB at 2 MiB/s (bursts of at most buf-size=256K) takes
# about 4 s to complete, and at any moment the job has copied at most the
# rate times the time so far plus a burst; a crawling job sleeps (little
# CPU) rather than spins, a paused one copies nothing, and set-speed
# changes the limit live: raised, then lifted (0) so that the crawling job
# completes at once.  Both targets hold the disk.  Timings as loose as
# test-mirror-speed.sh's.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img qemu-io date bc
requires_fuse

qcow2_create a.qcow2 8M 65536
qemu_io a.qcow2 "write -P 0x61 0 8M"
start_chainfs mnt -d vm=a.qcow2
ctl=mnt/.jobs/ctl
# cpu_ticks PID: user + system time of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
pid=$(_pid_of mnt)

start=$(date +%s.%N)
ctl_ok $ctl backup id=b1 disk=vm target=$tmpdir/t1.qcow2 speed=2M buf-size=256K
assert_eq "$(job_key mnt b1 speed)" 2097152 "speed in the status"
sleep 1    # not synchronisation: the window the rate bound is checked over
offset=$(job_key mnt b1 offset)
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
bound=$(echo "2097152 * $elapsed + 2 * 262144" | bc | cut -d. -f1)
echo "after $elapsed s: $offset bytes copied (bound $bound)"
((offset <= bound)) || fail "copied $offset bytes in $elapsed s at speed=2M"
wait_job_state mnt b1 concluded
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "8 MiB at 2 MiB/s: concluded after $elapsed s"
(($(echo "$elapsed >= 3 && $elapsed <= 12" | bc))) ||
    fail "8 MiB at speed=2M concluded after $elapsed s (expected 3 to 12 s)"
assert_eq "$(job_key mnt b1 result)" completed "result of b1"

# A crawling job sleeps, pauses, goes faster, then is lifted.
ctl_ok $ctl backup id=b2 disk=vm target=$tmpdir/t2.qcow2 speed=64K buf-size=64K
wait_job_state mnt b2 running
ticks=$(cpu_ticks "$pid")
sleep 1    # not synchronisation: the window the CPU time is measured over
ticks=$(($(cpu_ticks "$pid") - ticks))
echo "a crawling backup used $ticks ticks of CPU in 1 s"
((ticks * 4 < $(getconf CLK_TCK))) || fail "a crawling backup used $ticks ticks of CPU in 1 s"
ctl_ok $ctl pause b2
wait_job_state mnt b2 paused
copied=$(job_key mnt b2 offset)
sleep 0.5    # not synchronisation: a paused job must not copy meanwhile
assert_eq "$(job_key mnt b2 offset)" "$copied" "bytes copied while paused"
ctl_ok mnt/.jobs/b2/ctl resume
wait_job_state mnt b2 running
ctl_ok $ctl set-speed b2 128K
assert_eq "$(job_key mnt b2 speed)" 131072 "speed after set-speed"
[[ $(job_state mnt b2) == running ]] || fail "b2 ended before its limit was lifted"
ctl_ok mnt/.jobs/b2/ctl speed=0
assert_eq "$(job_key mnt b2 speed)" 0 "speed after speed=0"
start=$(date +%s.%N)
wait_job_state mnt b2 concluded
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
(($(echo "$elapsed <= 3" | bc))) || fail "after set-speed 0, concluded only after $elapsed s"
assert_eq "$(job_key mnt b2 result)" completed "result of b2"
stop_chainfs mnt
for t in t1 t2; do
    qemu_check $t.qcow2
    out=$(qemu-img compare $t.qcow2 a.qcow2 2>&1) || fail "$t: $out"
done
