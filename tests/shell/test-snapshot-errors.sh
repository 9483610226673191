#!/usr/bin/env bash
# snapshot's refusals: overlay exists (EEXIST), outside --allow-dir or
# escaping it through ".." or a symlink (EACCES), unknown disk (ENOENT),
# and for mode=existing a file that is not a matching qcow2 overlay of the
# current top (ENOTSUP, EINVAL).  A refusal changes nothing.  Relative
# paths are resolved against the writer's working directory.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires qemu-img
requires_fuse

mkdir -p images allowed outside
qcow2_create images/a.qcow2 4M 65536
ln -s ../outside allowed/escape
ln -s ../outside/x.qcow2 allowed/dangling.qcow2
qcow2_create outside/real.qcow2 4M 65536 "$tmpdir/images/a.qcow2" qcow2
ln -s ../outside/real.qcow2 allowed/link.qcow2
qcow2_create allowed/exists.qcow2 4M 65536
qemu-img create -q -f raw allowed/raw.img 4M
qcow2_create allowed/other-backing.qcow2 4M 65536 "$tmpdir/allowed/exists.qcow2" qcow2
qcow2_create allowed/wrong-size.qcow2 8M 65536 "$tmpdir/images/a.qcow2" qcow2
# --allow-dir replaces the default (the images' directory).
start_chainfs mnt -d vm=images/a.qcow2 --allow-dir allowed
ctl=mnt/.jobs/ctl
a=$tmpdir/allowed
before=$(tree_state "$tmpdir/allowed"; tree_state "$tmpdir/outside"; tree_state "$tmpdir/images")

ctl_error EEXIST "overlay: $a/exists.qcow2 exists" $ctl snapshot disk=vm overlay=$a/exists.qcow2
ctl_error EEXIST "overlay: $a/dangling.qcow2 exists" $ctl snapshot disk=vm overlay=$a/dangling.qcow2
ctl_error EACCES "$tmpdir/images/s.qcow2 is outside the allowed directories \($a\)" \
    $ctl snapshot disk=vm overlay=$tmpdir/images/s.qcow2
ctl_error EACCES "$tmpdir/outside/s.qcow2 is outside" $ctl snapshot disk=vm overlay=$a/../outside/s.qcow2
ctl_error EACCES "$tmpdir/outside/s.qcow2 is outside" $ctl snapshot disk=vm overlay=$a/escape/s.qcow2
ctl_error EACCES "$tmpdir/outside/real.qcow2 is outside" $ctl snapshot disk=vm overlay=$a/link.qcow2 mode=existing
ctl_error EACCES "is outside" $ctl snapshot disk=vm overlay=$a/escape/real.qcow2 mode=existing
ctl_error EACCES "is outside" $ctl snapshot disk=vm overlay=/s.qcow2
ctl_error EACCES "inside the chainfs mount" $ctl snapshot disk=vm overlay=$tmpdir/mnt/../mnt/s.qcow2
ctl_error EINVAL "not a file name" $ctl snapshot disk=vm overlay=$a/..
ctl_error ENOENT "no such disk 'nosuch'" $ctl snapshot disk=nosuch overlay=$a/s.qcow2
ctl_error ENOENT "overlay: file $a/missing.qcow2" $ctl snapshot disk=vm overlay=$a/missing.qcow2 mode=existing
ctl_error ENOTSUP "overlay $a/raw.img is raw, not qcow2" $ctl snapshot disk=vm overlay=$a/raw.img mode=existing
ctl_error EINVAL "has no backing file" $ctl snapshot disk=vm overlay=$a/exists.qcow2 mode=existing
ctl_error EINVAL "backs onto $a/exists.qcow2, not onto the top of disk 'vm'" \
    $ctl snapshot disk=vm overlay=$a/other-backing.qcow2 mode=existing
ctl_error EINVAL "has size 8388608, disk 'vm' has size 4194304" \
    $ctl snapshot disk=vm overlay=$a/wrong-size.qcow2 mode=existing

after=$(tree_state "$tmpdir/allowed"; tree_state "$tmpdir/outside"; tree_state "$tmpdir/images")
assert_eq "$after" "$before" "files after the refusals"
assert_eq "$(chain_paths mnt vm)" "$tmpdir/images/a.qcow2" "chain after the refusals"

# A relative overlay is taken from the writer's working directory.
(cd allowed && "$CHAINFS_TOOLS/ctl-write" ../mnt/.jobs/ctl snapshot disk=vm overlay=rel.qcow2) >out.txt ||
    fail "relative overlay: $(cat out.txt)"
[[ -f allowed/rel.qcow2 ]] || fail "allowed/rel.qcow2 was not created"
assert_eq "$(chain_paths mnt vm | paste -sd' ')" "$a/rel.qcow2 $tmpdir/images/a.qcow2" "chain after the relative snapshot"
stop_chainfs mnt
qemu_check allowed/rel.qcow2
qemu_check images/a.qcow2
