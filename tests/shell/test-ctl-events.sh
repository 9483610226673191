#!/usr/bin/env bash
# .jobs/events: one line per event, "SECONDS.MICROSECONDS EVENT key=value
# ...", oldest first; its size grows as events are appended and is never
# cached, so `tail -f | grep -m1` sees an event that comes later.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io tail timeout
requires_fuse

qcow2_create a.qcow2 8M 65536
qemu_io a.qcow2 "write -P 0x33 0 8M"
start_chainfs mnt -d vm=a.qcow2
events=mnt/.jobs/events
assert_eq "$(stat -c %s $events)" 0 "size of an empty log"

# A reader that starts before the job and waits for its READY event.
timeout "$CHAINFS_TIMEOUT" tail -n +1 -f $events > >(grep -m1 'JOB_READY id=m1' >ready.txt) &
tail_pid=$!
cleanup_fn "kill $tail_pid 2>/dev/null"
# tail has opened the file once it polls it; give it something to see
# first, so the READY line surely arrives after it started.
until [[ -n $(find /proc/[0-9]*/fd -lname "$tmpdir/mnt/.jobs/events" 2>/dev/null | head -1) ]]; do
    sleep 0.05
done
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2 speed=4M
# grep exits at the READY line; tail only at its next write (SIGPIPE).
deadline=$((SECONDS + CHAINFS_TIMEOUT))
until [[ -s ready.txt ]]; do
    ((SECONDS < deadline)) || fail "tail -f | grep -m1 did not see JOB_READY"
    sleep 0.05
done
grep -qE '^[0-9]+\.[0-9]{6} JOB_READY id=m1 offset=8388608 len=8388608$' ready.txt ||
    fail "READY line: $(cat ready.txt)"

size1=$(stat -c %s $events)
[[ $size1 -eq $(wc -c <$events) ]] || fail "st_size $size1 != $(wc -c <$events) bytes read"
ctl_ok mnt/.jobs/ctl pause m1
wait_job_state mnt m1 standby
size2=$(stat -c %s $events)
((size2 > size1)) || fail "size did not grow after pause: $size1 -> $size2"

# Every line has the format; the job's states come in order.
while read -r line; do
    [[ $line =~ ^[0-9]+\.[0-9]{6}\ [A-Z_]+(\ [a-z-]+=[^\ ]+)+$ ]] || fail "bad event line: $line"
done <$events
assert_eq "$(sed -n 's/.* JOB_STATE id=m1 state=//p' $events | paste -sd' ')" \
    "created running ready standby" "state events"

# Reading from an offset returns the rest of the log.
assert_eq "$(tail -c +$((size1 + 1)) $events)" "$(sed -n '$p' $events)" "read at an offset"

ctl_ok mnt/.jobs/ctl cancel m1
wait_job_state mnt m1 concluded
grep -qE ' JOB_COMPLETED id=m1 offset=[0-9]+ len=8388608$' $events ||
    fail "no JOB_COMPLETED after cancel of a ready mirror: $(cat $events)"
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" || true
stop_chainfs mnt
