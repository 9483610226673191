#!/usr/bin/env bash
# Resource bounds at the mount: a thousand open file descriptors on one
# disk cost the daemon no host descriptor each and all work; requests of
# 16 MiB in one syscall (buffered and O_DIRECT, which the kernel splits)
# read and write exactly; and the daemon's memory stays bounded by its
# caches, not by the size of the requests.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img

qcow2_create top.qcow2 256M 65536
start_chainfs mnt -d vm=top.qcow2
pid=$chainfs_pid
daemon_fds()
{
    find "/proc/$pid/fd" -mindepth 1 | wc -l
}

# ---- many opens
before=$(daemon_fds)
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
count=1000
[[ $(ulimit -n) -gt $((count + 50)) ]] || count=$(($(ulimit -n) - 50))
fds=()
for ((i = 0; i < count; i++)); do
    exec {fd}<>mnt/vm || fail "open number $i of mnt/vm failed"
    fds+=("$fd")
done
assert_eq "$(daemon_fds)" "$before" "daemon descriptors with $count opens"
printf 'hello' >&"${fds[count - 1]}"      # writes at offset 0
assert_eq "$(head -c 5 <&"${fds[0]}")" hello "read through the first open"
for fd in "${fds[@]}"; do
    exec {fd}>&-
done
assert_eq "$(daemon_fds)" "$before" "daemon descriptors after closing"

# ---- large requests
head -c 48M /dev/urandom >data.bin
dd if=data.bin of=mnt/vm bs=16M seek=1 oflag=direct conv=notrunc,fsync status=none ||
    fail "16 MiB O_DIRECT writes failed"
dd if=data.bin of=mnt/vm bs=16M seek=5 conv=notrunc,fsync status=none ||
    fail "16 MiB buffered writes failed"
cmp <(dd if=mnt/vm bs=16M skip=1 count=3 iflag=direct status=none) data.bin ||
    fail "16 MiB O_DIRECT reads differ"
cmp <(dd if=mnt/vm bs=16M skip=5 count=3 status=none) data.bin ||
    fail "16 MiB buffered reads differ"
# Whole-disk reads in 64 MiB syscalls, twice: memory must not grow with
# what was read.
cat mnt/vm >/dev/null
hwm1=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
for _ in 1 2; do
    dd if=mnt/vm of=/dev/null bs=64M iflag=direct status=none ||
        fail "64 MiB O_DIRECT reads failed"
done
hwm2=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
echo "daemon peak RSS: ${hwm1} KiB, then ${hwm2} KiB"
((hwm2 < hwm1 + 32 * 1024)) ||
    fail "daemon memory grew from ${hwm1} to ${hwm2} KiB reading the disk"
stop_chainfs mnt
qemu_check top.qcow2
to_raw top.qcow2 out.raw
cmp -n $((48 << 20)) -i $((16 << 20)):0 out.raw data.bin || fail "image differs"
