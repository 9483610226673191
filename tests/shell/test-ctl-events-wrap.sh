#!/usr/bin/env bash
# .jobs/events wraps cleanly: after more events than it keeps (at least
# 1024), the bytes of the dropped ones read as one line that starts with
# '#', as long as they were, then the kept events, whole lines, in order,
# each once, the newest there; the size only grows; `tail -f` meanwhile
# sees whole lines, and `tail -f | grep -m1` still finds a later event.
# The events are made cheaply: a ready mirror paused and resumed (each
# verb is one JOB_STATE event, standby or ready), the verbs written by the
# shell itself on one open .jobs/ctl, without a process per command.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img tail timeout awk
requires_fuse

cycles=600      # 1200 events, more than the 1024 kept
event_re='^[0-9]+\.[0-9]{6} [A-Z_]+( [a-z-]+=[^ ]+)+$'

# wait_state ID STATE: poll the job's status with shell builtins only.
wait_state()
{
    local line deadline=$((SECONDS + CHAINFS_TIMEOUT))
    while :; do
        while IFS= read -r line; do
            [[ $line == "state: $2" ]] && return 0
        done <"mnt/.jobs/$1/status"
        ((SECONDS < deadline)) || fail "job $1 not $2: $(cat "mnt/.jobs/$1/status")"
    done
}

# ctl_fd COMMAND: write a command on the open .jobs/ctl (fd 3).
ctl_fd()
{
    echo "$1" >&3 || fail "'$1': $(cat mnt/.jobs/last-error)"
}

qcow2_create a.qcow2 1M 65536
start_chainfs mnt -d vm=a.qcow2
events=mnt/.jobs/events

# A reader from the start that follows the whole run.
timeout 600 tail -n +1 -f $events >followed.txt 2>&1 &
tail_pid=$!
cleanup_fn "kill $tail_pid 2>/dev/null"

ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target="$tmpdir/t.qcow2"
wait_state m1 ready
# The events so far: none dropped yet.
before=$(wc -l <$events)
[[ $(head -c 1 $events) != '#' ]] || fail "dropped events after $before"

exec 3>mnt/.jobs/ctl
cleanup_fn "exec 3>&-"
last_size=$(stat -c %s $events)
for ((i = 0; i < cycles; i++)); do
    ctl_fd "pause m1"
    wait_state m1 standby
    ctl_fd "resume m1"
    wait_state m1 ready
    if ((i % 100 == 0)); then
        size=$(stat -c %s $events)
        ((size > last_size)) || fail "size did not grow: $last_size -> $size"
        last_size=$size
    fi
done
exec 3>&-

# A `tail -f | grep -m1` started after the wrap sees an event still to
# come (if tail starts late, the event is in the last lines it prints).
timeout 600 tail -f $events > >(grep -m1 'JOB_COMPLETED id=m1' >completed.txt) &
grep_tail_pid=$!
cleanup_fn "kill $grep_tail_pid 2>/dev/null"

cat $events >events.txt
size=$(stat -c %s $events)
assert_eq "$(wc -c <events.txt)" "$size" "bytes read from 0 and st_size"

# The first line stands for the dropped events and is as long as they
# were; every other line is an event, in time order.
head -n 1 events.txt >first.txt
grep -qE '^# [0-9]+ earlier events dropped *$' first.txt ||
    fail "first line: '$(cat first.txt)'"
dropped=$(awk '{ print $2 }' first.txt)
dropped_bytes=$(wc -c <first.txt)
kept=$(($(wc -l <events.txt) - 1))
((kept >= 1024)) || fail "only $kept events kept"
assert_eq "$((dropped + kept))" "$((before + 2 * cycles))" "dropped + kept events"
tail -n +2 events.txt >kept.txt
while IFS= read -r line; do
    [[ $line =~ $event_re ]] || fail "bad event line: '$line'"
done <kept.txt
awk '$1 < last { print "time goes back at line " NR + 1 ": " $0; exit 1 }
     { last = $1 }' kept.txt || fail "timestamps not in order"

# Each kept event once: the mirror's states alternate, ending on ready.
sed -n 's/.* JOB_STATE id=m1 state=//p' kept.txt | uniq -d >repeated.txt
[[ ! -s repeated.txt ]] || fail "a state twice in a row: $(head -3 repeated.txt)"
assert_eq "$(tail -n 1 kept.txt | sed 's/^[^ ]* //')" "JOB_STATE id=m1 state=ready" \
    "newest event"

# A reader at an offset inside the dropped prefix (a line start, then the
# middle of a line) gets blanks, a newline, then the same kept events.
for offset in $((dropped_bytes / 2)) $((dropped_bytes - 1)); do
    tail -c +$((offset + 1)) $events >from-offset.txt
    head -n 1 from-offset.txt | grep -qE '^ *$' ||
        fail "read from $offset: first line '$(head -n 1 from-offset.txt)'"
    assert_eq "$(wc -c <from-offset.txt)" "$((size - offset))" "bytes from $offset"
    tail -n +2 from-offset.txt | cmp -s - kept.txt ||
        fail "read from $offset: the kept events differ"
done

# The event that tail -f | grep -m1 waits for.
ctl_ok mnt/.jobs/ctl cancel m1
wait_state m1 concluded
deadline=$((SECONDS + CHAINFS_TIMEOUT))
until [[ -s completed.txt ]]; do
    ((SECONDS < deadline)) || fail "tail -f | grep -m1 did not see JOB_COMPLETED"
    sleep 0.05
done
grep -qE '^[0-9]+\.[0-9]{6} JOB_COMPLETED id=m1 ' completed.txt ||
    fail "COMPLETED line: $(cat completed.txt)"

# The reader that followed the whole run saw whole lines: events, the
# placeholder, or the blank rest of it where the log was dropped under it.
deadline=$((SECONDS + CHAINFS_TIMEOUT))
until grep -q ' JOB_COMPLETED id=m1 ' followed.txt; do
    ((SECONDS < deadline)) || fail "tail -f did not follow to the end"
    sleep 0.05
done
while IFS= read -r line; do
    [[ $line =~ $event_re || $line == '#'* || $line =~ ^\ *$ ]] ||
        fail "tail -f saw a broken line: '$line'"
done <followed.txt
assert_eq "$(grep -c 'JOB_COMPLETED id=m1' followed.txt)" 1 "COMPLETED events followed"

kill "$tail_pid" "$grep_tail_pid" 2>/dev/null || true
wait "$tail_pid" "$grep_tail_pid" 2>/dev/null || true
stop_chainfs mnt
