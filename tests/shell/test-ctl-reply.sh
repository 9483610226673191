#!/usr/bin/env bash
# Reading .jobs/ctl on the open file a command was written to returns the
# reply to that command (ok, ok id=ID, error: MESSAGE); each open file has
# its own.  A job gets .jobs/ID/ with status and ctl (job verbs without
# the ID, speed=N short for set-speed) until it is dismissed.  Modes are
# 0600 for ctl files, 0644 for the rest.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img qemu-io
requires_fuse

qcow2_create a.qcow2 8M 65536
qemu_io a.qcow2 "write -P 0x5a 0 8M"
start_chainfs mnt -d vm=a.qcow2

assert_eq "$(stat -c %a mnt/.jobs/ctl mnt/.jobs/last-error mnt/.jobs/events | paste -sd' ')" \
    "600 644 644" "modes of .jobs files"
assert_eq "$(cat mnt/.jobs/last-error)" "" "last-error before any error"

# Two open files, each with its own reply, read on from where the write
# ended (as a shell does).
exec 3<>mnt/.jobs/ctl 4<>mnt/.jobs/ctl
assert_eq "$(cat <&3)" "" "reply before any command"
printf 'mirror id=m1 disk=vm target=%s/t.qcow2 speed=64K' "$tmpdir" >&3 ||
    fail "mirror command failed"
printf 'pause nosuchjob\n' >&4 2>/dev/null && fail "pause of a missing job succeeded"
assert_eq "$(cat <&3)" "ok id=m1" "reply on fd 3"
assert_eq "$(cat <&4)" "error: no such job 'nosuchjob'" "reply on fd 4"
printf 'pause m1\n' >&4 || fail "pause m1 failed"
assert_eq "$(cat <&4)" "ok" "second reply on fd 4"
printf 'resume m1\n' >&4 || fail "resume m1 failed"
read -r reply <&4
assert_eq "$reply" "ok" "reply read with read"
exec 3<&- 4<&-
# A new open file has no reply.
assert_eq "$(cat mnt/.jobs/ctl)" "" "reply on a new open file"

# ctl-write reads back on its own open file.
ctl_ok mnt/.jobs/ctl pause m1
assert_eq "$ctl_reply" "ok" "reply to pause"
ctl_error ENOENT "no such job 'm2'" mnt/.jobs/ctl resume m2
python3 - "$tmpdir/mnt/.jobs/ctl" <<'PY' || fail "reply on the same open file"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b"resume m1\n")
assert os.pread(fd, 100, 0) == b"ok\n", os.pread(fd, 100, 0)
try:
    os.write(fd, b"resume m1 now")
    raise SystemExit("an extra argument was accepted")
except OSError as e:
    assert e.errno == 22, e
reply = os.pread(fd, 200, 0)
assert reply == b"error: resume: unexpected argument 'now'\n", reply
# Several reads in small pieces see one reply.
assert os.pread(fd, 7, 0) + os.pread(fd, 200, 7) == reply
os.close(fd)
PY

# .jobs/m1/ and its files.
[[ -d mnt/.jobs/m1 ]] || fail ".jobs/m1 is missing"
assert_eq "$(listing mnt/.jobs/m1)" "ctl status" ".jobs/m1"
assert_eq "$(stat -c %a mnt/.jobs/m1/ctl mnt/.jobs/m1/status | paste -sd' ')" "600 644" \
    "modes of .jobs/m1 files"
status=$(cat mnt/.jobs/m1/status)
for key in id type disk state offset len speed io-status dirty copied copy-mode result; do
    grep -q "^$key: " <<<"$status" || fail "status has no '$key:' line: $status"
done
grep -qx "id: m1" <<<"$status" && grep -qx "type: mirror" <<<"$status" &&
    grep -qx "disk: vm" <<<"$status" && grep -qx "speed: 65536" <<<"$status" ||
    fail "status: $status"

# Job verbs through .jobs/m1/ctl; speed=N is set-speed.
ctl_ok mnt/.jobs/m1/ctl speed=1M
grep -qx "speed: 1048576" mnt/.jobs/m1/status || fail "speed=1M: $(cat mnt/.jobs/m1/status)"
echo "speed=2M" >mnt/.jobs/m1/ctl || fail "echo speed=2M > .jobs/m1/ctl failed"
grep -qx "speed: 2097152" mnt/.jobs/m1/status || fail "echo speed=2M: $(cat mnt/.jobs/m1/status)"
ctl_ok mnt/.jobs/m1/ctl set-speed 0
grep -qx "speed: 0" mnt/.jobs/m1/status || fail "set-speed 0: $(cat mnt/.jobs/m1/status)"
ctl_error EINVAL "not a job verb" mnt/.jobs/m1/ctl snapshot disk=vm overlay=x
ctl_error EINVAL "cannot dismiss" mnt/.jobs/m1/ctl dismiss
wait_job_state mnt m1 ready
# A status file held open shows the current state when reread from 0.
exec 5<mnt/.jobs/m1/status
grep -qx "state: ready" <&5 || fail "status through an open file"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
python3 -c 'import os; print(os.pread(5, 4096, 0).decode(), end="")' <&5 |
    grep -qx "result: completed" || fail "reread status: not completed"
exec 5<&-
ctl_ok mnt/.jobs/m1/ctl dismiss
[[ ! -e mnt/.jobs/m1 ]] || fail ".jobs/m1 still exists after dismiss"
assert_eq "$(listing mnt/.jobs)" "ctl events last-error" ".jobs after dismiss"
ctl_error ENOENT "no such job 'm1'" mnt/.jobs/ctl dismiss m1
# The id is free again.
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm target=$tmpdir/t2.qcow2
assert_eq "$ctl_reply" "ok id=m1" "reply to the second mirror"
wait_job_state mnt m1 ready
ctl_ok mnt/.jobs/ctl cancel m1
wait_job_state mnt m1 concluded
stop_chainfs mnt
qemu_check a.qcow2
qemu_check t.qcow2
qemu_check t2.qcow2
