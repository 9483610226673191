#!/usr/bin/env bash
# A mirror over a real network link: two network namespaces of the
# test's own, joined by a veth pair (10.250.0.1 <-> 10.250.0.2); qemu-nbd
# listens in one, chainfs (only its network: the mount stays visible
# here) runs in the other, and the export ends up equal to the disk.
# Skipped where namespaces cannot be made (no CAP_NET_ADMIN).
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-io qemu-nbd ip nsenter
requires_fuse

ns_a=chainfs-nbd-$$-a
ns_b=chainfs-nbd-$$-b
ip netns add "$ns_a" 2>/dev/null || skip "cannot create network namespaces here"
cleanup_fn "ip netns delete $ns_a"
ip netns add "$ns_b" || fail "ip netns add $ns_b"
cleanup_fn "ip netns delete $ns_b"
in_ns() { local ns=$1; shift; nsenter "--net=/run/netns/$ns" "$@"; }
ip link add "veth$$a" netns "$ns_a" type veth peer name "veth$$b" netns "$ns_b" 2>/dev/null ||
    skip "cannot create a veth pair here"
in_ns "$ns_a" ip addr add 10.250.0.1/24 dev "veth$$a"
in_ns "$ns_b" ip addr add 10.250.0.2/24 dev "veth$$b"
in_ns "$ns_a" ip link set "veth$$a" up
in_ns "$ns_b" ip link set "veth$$b" up

head -c 32M /dev/urandom >disk.raw
cp disk.raw before.raw
qcow2_create t.qcow2 32M 65536
nsenter "--net=/run/netns/$ns_b" qemu-nbd -t -b 10.250.0.2 -p 10809 -f qcow2 t.qcow2 >>qemu-nbd.log 2>&1 &
nbd_pid=$!
cleanup_fn "stop_server $nbd_pid"
deadline=$((SECONDS + CHAINFS_TIMEOUT))
until in_ns "$ns_b" ss -ltn | grep -q 10.250.0.2:10809; do
    _running "$nbd_pid" || fail "qemu-nbd exited: $(cat qemu-nbd.log)"
    ((SECONDS < deadline)) || fail "qemu-nbd not listening"
    sleep 0.05
done

CHAINFS_IN_NS=(nsenter "--net=/run/netns/$ns_a" "$CHAINFS")
mkdir mnt
_logs+=("$tmpdir/chainfs.log")
_mounts+=("$tmpdir/mnt")
env --default-signal=INT,QUIT "${CHAINFS_IN_NS[@]}" -f --allow-remote -d vm=disk.raw \
    "$tmpdir/mnt" >chainfs.log 2>&1 </dev/null &
chainfs_pid=$!
_daemon_mount[$chainfs_pid]=$tmpdir/mnt
until mountpoint -q mnt; do
    _running "$chainfs_pid" || fail "chainfs exited: $(cat chainfs.log)"
    sleep 0.02
done

start_writer mnt/vm before.raw 9 12000
uri=nbd://10.250.0.2:10809/
ctl_ok mnt/.jobs/ctl mirror id=m1 disk=vm "target=$uri" mode=existing
wait_job_state mnt m1 ready
wait_writer
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result"
assert_eq "$(cat mnt/.chains/vm)" "0 nbd 33554432 $uri" ".chains/vm"
to_raw mnt/vm mounted.raw
assert_equal_files mounted.raw model.raw "the disk after the writer"
stop_chainfs "$tmpdir/mnt"
stop_server "$nbd_pid"
qemu_check t.qcow2
assert_same_as_model t.qcow2
