#!/usr/bin/env bash
# Every refusal of an NBD target, with its errno and a message naming the
# URI or the key, before anything is written: bad URIs (EINVAL), TLS and
# vsock (ENOTSUP), modes, formats and sync modes an export cannot take,
# an export smaller than the disk (EINVAL naming both sizes), a missing
# socket or export (ENOENT), a socket outside the allowed directories
# (EACCES), and a server that is not there (EIO); backup's refusals
# likewise.  Then a larger export
# is accepted and used up to the disk's size.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/nbd-functions.sh"
requires qemu-img qemu-nbd nbdkit python3
requires_fuse

qemu-img create -q -f raw disk.raw 8M
mkdir other
start_chainfs mnt --allow-remote -d vm=disk.raw
ctl=mnt/.jobs/ctl
sock=$tmpdir/s.sock
m="mirror id=m1 disk=vm mode=existing"

ctl_error EINVAL "nbd\+unix:///x: nbd\+unix:// needs \?socket=PATH" $ctl $m "target=nbd+unix:///x"
ctl_error EINVAL "takes no host" $ctl $m "target=nbd+unix://host/x?socket=$sock"
ctl_error EINVAL "must be an absolute path" $ctl $m "target=nbd+unix:///x?socket=rel.sock"
ctl_error EINVAL "bad port 'http'" $ctl $m "target=nbd://localhost:http/x"
ctl_error EINVAL "no host" $ctl $m "target=nbd:///x"
ctl_error EINVAL "unknown query parameter 'foo'" $ctl $m "target=nbd+unix:///?socket=$sock&foo=1"
ctl_error EINVAL "bad percent escape" $ctl $m "target=nbd://localhost/a%zz"
ctl_error ENOTSUP "TLS \(nbds://\) is not supported" $ctl $m "target=nbds://localhost/x"
ctl_error ENOTSUP "TLS \(nbds\+unix://\)" $ctl $m "target=nbds+unix:///x?socket=$sock"
ctl_error ENOTSUP "TLS \(tls=\) is not supported" $ctl $m "target=nbd://localhost/x?tls=require"
ctl_error ENOTSUP "vsock is not supported" $ctl $m "target=nbd+vsock://2/x"
ctl_error ENOTSUP "unsupported protocol 'http'" $ctl $m "target=http://localhost/x"
ctl_error ENOENT "socket: file $sock: No such file" $ctl $m "target=$(unix_uri "$sock")"

start_nbdkit "$sock" memory 8M
uri=$(unix_uri "$sock")
ctl_error EINVAL "needs mode=existing" $ctl mirror id=m1 disk=vm "target=$uri"
ctl_error EINVAL "format: 'qcow2' is not possible" $ctl $m format=qcow2 "target=$uri"
ctl_error ENOTSUP "sync=top: an NBD export has no backing file" $ctl $m sync=top "target=$uri"
ctl_error ENOTSUP "sync=none" $ctl $m sync=none "target=$uri"
# backup: the same rules, its own verb in the messages.
b="backup id=b1 disk=vm mode=existing"
ctl_error EINVAL "backup: target .*: an NBD export needs mode=existing" $ctl backup id=b1 disk=vm "target=$uri"
ctl_error EINVAL "backup: target .*: an NBD export needs mode=existing" $ctl backup id=b1 disk=vm mode=absolute-paths "target=$uri"
ctl_error EINVAL "backup: format: 'qcow2' is not possible" $ctl $b format=qcow2 "target=$uri"
ctl_error ENOTSUP "backup: sync=top: an NBD export has no backing file" $ctl $b sync=top "target=$uri"
[[ ! -e mnt/.jobs/b1 ]] || fail "a refused backup left a job"
stop_server "$nbd_pid"

start_nbdkit "$sock" memory 4M
ctl_error EINVAL "target nbd.*s.sock is 4194304 bytes, smaller than the disk \(8388608 bytes\)" $ctl $m "target=$uri"
ctl_error EINVAL "backup: target nbd.*s.sock is 4194304 bytes, smaller than the disk \(8388608 bytes\)" $ctl $b "target=$uri"
stop_server "$nbd_pid"

# The socket file is left, nobody listens: connection refused.
rm -f "$sock"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$sock"
ctl_error EIO "s.sock: cannot connect: .*Connection refused" $ctl $m "target=$uri"
rm -f "$sock"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ctl_error EIO "nbd://127.0.0.1:$port/: cannot connect" $ctl $m "target=nbd://127.0.0.1:$port/"

qemu-img create -q -f qcow2 small.qcow2 16M
start_qemu_nbd "$sock" small.qcow2 -x exp1
ctl_error ENOENT "no export named 'nope'" $ctl $m "target=$(unix_uri "$sock" nope)"
# Larger than the disk: accepted, the disk's size stays.
ctl_ok $ctl $m "target=$(unix_uri "$sock" exp1)"
wait_job_state mnt m1 ready
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(cat mnt/.chains/vm)" "0 nbd 8388608 $(unix_uri "$sock" exp1)" ".chains/vm"
assert_eq "$(stat -c %s mnt/vm)" 8388608 "size of the disk"

# Outside the allowed directories (the disk's): EACCES, nothing opened.
start_nbdkit "$tmpdir/other/o.sock" memory 8M
ctl_ok $ctl dismiss m1
stop_chainfs mnt
mkdir allowed
start_chainfs mnt --allow-remote --allow-dir "$tmpdir/allowed" -d vm=disk.raw
ctl_error EACCES "socket: .*other/o.sock" $ctl $m "target=$(unix_uri "$tmpdir/other/o.sock")"
stop_chainfs mnt
