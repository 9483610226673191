#!/usr/bin/env bash
# Jobs on a 300-layer chain, four disks on copies of it: stream with a
# base 200 layers down, an intermediate commit of 200 layers, an active
# commit into a layer 20 down, and mirror sync=top.  The guest view never
# changes (qemu-img compare against the chain before) and .chains lists
# what qemu-img info --backing-chain finds on disk afterwards.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
requires qemu-img cmp
requires_fuse
requires_tool chainfs-mkchain

LAYERS=300
mkdir src
"$CHAINFS_TOOLS/chainfs-mkchain" -c 4K -k 3 src $LAYERS 4M >/dev/null ||
    fail "chainfs-mkchain failed"
to_raw src/layer0299.qcow2 before.raw
for d in s c a m; do
    cp -r src "$d"
done
L() { printf '%s/%s/layer%04u.qcow2' "$tmpdir" "$1" "$2"; }
# layers D FROM TO: the paths of layers FROM down to TO of copy D.
layers() { local i; for ((i = $2; i >= $3; i--)); do L "$1" $i; echo; done; }

start_chainfs mnt -d s="$(L s 299)" -d c="$(L c 299)" -d a="$(L a 299)" \
    -d m="$(L m 299)"
ctl_ok mnt/.jobs/ctl stream id=s disk=s "base=$(L s 99)"
ctl_ok mnt/.jobs/ctl commit id=c disk=c "top=$(L c 250)" "base=$(L c 50)"
ctl_ok mnt/.jobs/ctl commit id=a disk=a "base=$(L a 279)"
ctl_ok mnt/.jobs/ctl mirror id=m disk=m sync=top "target=$tmpdir/m/target.qcow2"
wait_job_state mnt a ready
echo complete >mnt/.jobs/a/ctl
wait_job_state mnt m ready
echo complete >mnt/.jobs/m/ctl
for id in s c a m; do
    wait_job_state mnt $id concluded
    assert_eq "$(job_key mnt $id result)" completed "result of job $id"
done
for d in s c a m; do
    cmp before.raw mnt/$d || fail "disk $d reads other data after its job"
done

assert_chain mnt s $(L s 299) $(layers s 99 0)
assert_chain mnt c $(layers c 299 251) $(layers c 50 0)
assert_chain mnt a $(layers a 279 0)
assert_chain mnt m "$tmpdir/m/target.qcow2" $(layers m 298 0)
for d in s c a m; do
    sed 's/^[^ ]* [^ ]* [^ ]* //' mnt/.chains/$d | paste -sd' ' >chains-$d
done
stop_chainfs mnt

for d in s c a m; do
    top=$(sed 's/ .*//' chains-$d)
    assert_eq "$(qemu_chain "$top")" "$(cat chains-$d)" \
        "qemu-img's chain of disk $d"
    qemu-img compare -q -f qcow2 -F raw "$top" before.raw ||
        fail "disk $d: $top differs from the chain before the job"
done
