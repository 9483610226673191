#!/usr/bin/env bash
# Every rejected command fails its write(2) with the errno of
# INTERFACE.md section 3, replies "error: MESSAGE" naming what was wrong,
# is shown in .jobs/last-error, and changes nothing.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img
requires_fuse

mkdir images other
qcow2_create images/a.qcow2 4M 65536
qcow2_create images/ro.qcow2 4M 65536
qcow2_create images/existing.qcow2 4M 65536
start_chainfs mnt -d vm=images/a.qcow2 -d ro=images/ro.qcow2,read-only=on
ctl=mnt/.jobs/ctl
img=$tmpdir/images
chain_before=$(cat mnt/.chains/vm)
state_before=$(tree_state images)

# Syntax and values: EINVAL.
ctl_error EINVAL "unknown command 'frobnicate'" $ctl frobnicate disk=vm
ctl_error EINVAL "unknown key 'colour'" $ctl snapshot disk=vm overlay=$img/s.qcow2 colour=red
ctl_error EINVAL "missing required key 'overlay'" $ctl snapshot disk=vm
ctl_error EINVAL "mode: 'sideways'" $ctl snapshot disk=vm overlay=$img/s.qcow2 mode=sideways
ctl_error EINVAL "granularity" $ctl mirror id=m disk=vm target=$img/t.qcow2 granularity=1000
ctl_error EINVAL "speed" $ctl mirror id=m disk=vm target=$img/t.qcow2 speed=9223372036854775808
ctl_error EINVAL "buf-size" $ctl mirror id=m disk=vm target=$img/t.qcow2 buf-size=100
ctl_error EINVAL "sync: 'most'" $ctl mirror id=m disk=vm target=$img/t.qcow2 sync=most
ctl_error EINVAL "not a valid job id" $ctl mirror id=.hidden disk=vm target=$img/t.qcow2
ctl_error EINVAL "reserved" $ctl mirror id=ctl disk=vm target=$img/t.qcow2
ctl_error EINVAL "missing job id" $ctl cancel
ctl_error EINVAL "empty command" $ctl ""
ctl_error EINVAL "unterminated quote" $ctl snapshot disk=vm 'overlay="x'

# A NUL byte, two lines, and more than 64 KiB are refused as a whole.
out=$(printf 'snapshot disk=vm\0 overlay=%s/s.qcow2' "$img" |
      "$CHAINFS_TOOLS/ctl-write" $ctl -) && fail "a NUL byte was accepted"
[[ $out == EINVAL$'\n'"error: command contains a NUL byte" ]] || fail "NUL: $out"
out=$(printf 'snapshot disk=vm overlay=%s/s.qcow2\nsnapshot disk=vm overlay=%s/s2.qcow2\n' "$img" "$img" |
      "$CHAINFS_TOOLS/ctl-write" $ctl -) && fail "two lines were accepted"
[[ $out == EINVAL$'\n'"error: one command per write"* ]] || fail "two lines: $out"
out=$( (printf 'snapshot disk=vm overlay="%s/s.qcow2" ' "$img"; head -c 70000 /dev/zero | tr '\0' ' ') |
      "$CHAINFS_TOOLS/ctl-write" $ctl -) && fail "a write of 70000 bytes was accepted"
[[ $out == EINVAL$'\n'"error: command is longer than 65536 bytes" ]] || fail "long: $out"
# ... while 64 KiB exactly is fine (blanks pad the command).
out=$( (printf 'cancel nosuchjob'; head -c $((65536 - 16)) /dev/zero | tr '\0' ' ') |
      "$CHAINFS_TOOLS/ctl-write" $ctl -) && fail "cancel of a missing job succeeded"
[[ $out == ENOENT$'\n'"error: no such job 'nosuchjob'" ]] || fail "64 KiB: $out"

# Existence: ENOENT, EEXIST.
ctl_error ENOENT "no such disk 'nope'" $ctl snapshot disk=nope overlay=$img/s.qcow2
ctl_error ENOENT "no such disk 'nope'" $ctl mirror id=m disk=nope target=$img/t.qcow2
ctl_error ENOENT "no such job 'nojob'" $ctl cancel nojob
ctl_error ENOENT "no such job 'nojob'" $ctl set-speed nojob 1M
ctl_error ENOENT "overlay: file $img/missing.qcow2" $ctl snapshot disk=vm overlay=$img/missing.qcow2 mode=existing
ctl_error ENOENT "target: directory $img/nodir" $ctl mirror id=m disk=vm target=$img/nodir/t.qcow2
ctl_error EEXIST "overlay: $img/existing.qcow2 exists" $ctl snapshot disk=vm overlay=$img/existing.qcow2
ctl_error EEXIST "target: $img/existing.qcow2 exists" $ctl mirror id=m disk=vm target=$img/existing.qcow2

# Paths: EACCES outside the allowed directories (default: the images'
# directories) and inside the mount.
ctl_error EACCES "outside the allowed directories \($img\)" $ctl snapshot disk=vm overlay=$tmpdir/other/s.qcow2
ctl_error EACCES "outside the allowed directories" $ctl snapshot disk=vm overlay=$img/../other/s.qcow2
ctl_error EACCES "inside the chainfs mount $tmpdir/mnt" $ctl snapshot disk=vm overlay=$tmpdir/mnt/s.qcow2
ctl_error EACCES "inside the chainfs mount" $ctl mirror id=m disk=vm target=$tmpdir/mnt/.jobs/t.qcow2

# Not supported: ENOTSUP; read-only disk: EROFS.
ctl_error ENOENT "not in the chain of disk 'vm'" $ctl stream id=s disk=vm base=$img/existing.qcow2
ctl_error EINVAL "backing-file: needs base=" $ctl stream id=s disk=vm backing-file=x
ctl_error EINVAL "is not below top" $ctl commit id=c disk=vm
ctl_error ENOTSUP "format 'raw' is not supported" $ctl snapshot disk=vm overlay=$img/s.qcow2 format=raw
ctl_error EROFS "disk 'ro' is read-only" $ctl snapshot disk=ro overlay=$img/s.qcow2

# Bash reports the errno of the failed write, and its text is last-error.
out=$(bash -c "printf 'snapshot disk=nope overlay=$img/s.qcow2' > $ctl" 2>&1) &&
    fail "bash's write succeeded"
[[ $out == *"write error: No such file or directory"* ]] || fail "bash: $out"
assert_eq "$(cat mnt/.jobs/last-error)" "snapshot disk=nope overlay=$img/s.qcow2
error: no such disk 'nope'" "last-error after bash's write"

# Nothing changed: no job, no file, the same chain.
assert_eq "$(listing mnt/.jobs)" "ctl events last-error" ".jobs after rejections"
assert_eq "$(cat mnt/.chains/vm)" "$chain_before" "chain after rejections"
assert_eq "$(tree_state images)" "$state_before" "images after rejections"
assert_eq "$(listing other)" "" "files made outside the allowed directories"
grep -q . mnt/.jobs/events && fail "events after rejections: $(cat mnt/.jobs/events)"
stop_chainfs mnt
qemu_check images/a.qcow2
