#!/usr/bin/env bash
# A QEMU guest uses the chainfs disk (virtio-blk, cache=none, so O_DIRECT
# on the disk file) while the host mirrors it and switches it to the
# target.  The guest, a Debian kernel with a busybox initramfs built here,
# writes 32 blocks of 256 KiB, 2 MiB apart, of known content (a 4 KiB
# header naming the block and its generation, then a slice, chosen by
# both, of a random pool that the host also has), and goes on rewriting them
# while the mirror copies, gets ready and completes; told so on a second
# serial port, it rewrites half of them, re-reads all with O_DIRECT and
# prints OK or FAIL and which generation each block holds.  The host then
# finds the target clean, with no backing file, and holding exactly the
# backing file's data with those blocks written over it (qemu-img compare).
#
# Runs with KVM where the guest boots with it, else with TCG; skips
# without qemu-system-x86_64, busybox (static), cpio or a kernel in /boot,
# or when neither boots the guest within a minute.  Environment:
# CHAINFS_VM_TEST=0 skips it; CHAINFS_VM_ACCEL=kvm|tcg forces an
# accelerator; CHAINFS_VM_KERNEL picks the kernel image (its modules, if
# any, in /lib/modules/VERSION).
: "${CHAINFS_TIMEOUT:=60}"
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
[[ ${CHAINFS_VM_TEST:-} != 0 ]] || skip "CHAINFS_VM_TEST=0"
requires qemu-img qemu-system-x86_64 cpio gzip awk md5sum
requires_fuse

blocks=32   # 256 KiB blocks the guest writes, one every 2 MiB of a 64 MiB disk

# ---- what is needed to boot a guest -----------------------------------------

busybox=$(command -v busybox || true)
[[ -n $busybox ]] || skip "requires busybox (Debian: busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && skip "requires a static busybox (Debian: busybox-static), $busybox is dynamic"

kernel=${CHAINFS_VM_KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -n 1)}
[[ -n $kernel && -r $kernel ]] ||
    skip "requires a kernel in /boot (Debian: linux-image-cloud-amd64), or CHAINFS_VM_KERNEL"
kernel_version=${kernel##*/vmlinuz-}
modules=()
if [[ -d /lib/modules/$kernel_version ]]; then
    requires modprobe
    # The modules virtio-blk needs, dependencies first ("insmod PATH"
    # lines; "builtin NAME" for those compiled in).
    mapfile -t modules < <(modprobe -a -S "$kernel_version" --show-depends virtio_pci virtio_blk |
        awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
fi

# ---- the initramfs ------------------------------------------------------------

# block.sh, for the guest's busybox sh and the host's bash: "block B G"
# prints generation G of block B (256 KiB): a header, then 63 of the 4 KiB
# pieces of $pool (4 MiB of random data), from a piece that depends on B
# and G (distinct for each G of one B below 961); "block_offset B" is
# where it goes, in 256 KiB units.
mkdir -p initramfs/bin initramfs/modules
head -c 4M /dev/urandom >initramfs/pool
cat >initramfs/block.sh <<'EOF'
block()
{
    printf '%-4095s\n' "chainfs-vm block $1 generation $2"
    dd if="$pool" bs=4096 skip=$((($1 * 131 + $2 * 17) % 961)) count=63 2>/dev/null
}
block_offset()
{
    echo $(($1 * 8))
}
EOF
cp "$busybox" initramfs/bin/busybox
for module in "${modules[@]}"; do
    cp "$module" initramfs/modules/ || fail "cannot copy $module"
    basename "$module" >>initramfs/modules/order
done
touch initramfs/modules/order
cat >initramfs/init <<EOF
#!/bin/busybox sh
blocks=$blocks
pool=/pool
. /block.sh
EOF
cat >>initramfs/init <<'EOF'
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "CHAINFS-VM: $*" >/dev/ttyS0; }
finish() { sync; poweroff -f; }

for m in $(cat /modules/order); do
    insmod "/modules/$m" || { say "FAIL: insmod $m"; finish; }
done
i=0
until [ -b /dev/vda ]; do
    i=$((i + 1))
    [ $i -le 400 ] || { say "FAIL: no /dev/vda"; finish; }
    sleep 0.05
done

# write_block B G: write generation G of block B with O_DIRECT.
write_block()
{
    block "$1" "$2" |
        dd of=/dev/vda bs=256k seek="$(block_offset "$1")" count=1 iflag=fullblock oflag=direct 2>/tmp/dd.err ||
        { say "FAIL: writing block $1 generation $2: $(cat /tmp/dd.err)"; finish; }
    echo "$2" >"/tmp/gen.$1"
}

say "started"
b=0
while [ $b -lt $blocks ]; do write_block $b 1; b=$((b + 1)); done
say "writing"

# The host writes a line to the second serial port once the mirror has
# completed; until then rewrite every block, round after round.
stty -F /dev/ttyS1 raw -echo
(read -r line </dev/ttyS1; echo "$line" >/tmp/go) &
g=2
while [ ! -e /tmp/go ]; do
    b=0
    while [ $b -lt $blocks ]; do write_block $b $g; b=$((b + 1)); done
    say "round $g"
    g=$((g + 1))
done
say "told: $(cat /tmp/go)"

# After the switch: rewrite the even blocks; the odd ones stay as the
# mirror copied them.
b=0
while [ $b -lt $blocks ]; do write_block $b $g; b=$((b + 2)); done
say "rewrote the even blocks after the switch"

echo 3 >/proc/sys/vm/drop_caches
bad=0
gens=
b=0
while [ $b -lt $blocks ]; do
    g=$(cat /tmp/gen.$b)
    gens="$gens $g"
    want=$(block $b $g | md5sum)
    got=$(dd if=/dev/vda bs=256k skip="$(block_offset $b)" count=1 iflag=direct 2>/dev/null | md5sum)
    if [ "$want" != "$got" ]; then
        say "FAIL: block $b does not read as generation $g: $(dd if=/dev/vda bs=256k skip="$(block_offset $b)" count=1 iflag=direct 2>/dev/null | head -c 40)"
        bad=1
    fi
    b=$((b + 1))
done
say "generations$gens"
if [ $bad -eq 0 ]; then say "verify OK"; else say "verify FAIL"; fi
finish
EOF
# /probe: boots far enough to say so, and powers off.
cat >initramfs/probe <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /dev
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox echo "CHAINFS-VM: probe" >/dev/ttyS0
/bin/busybox poweroff -f
EOF
chmod +x initramfs/init initramfs/probe
(cd initramfs && find . | cpio -o -H newc --quiet | gzip -1) >initramfs.gz ||
    fail "cannot build the initramfs"

# ---- the accelerator ----------------------------------------------------------

# boots ACCEL SECONDS: the guest boots to its /probe within SECONDS.  (A
# nested /dev/kvm may open fine and still hang the guest's early boot.)
boots()
{
    rm -f probe.log
    timeout -k 5 "$2" qemu-system-x86_64 -accel "$1" -m 256 -smp 1 -nodefaults \
        -no-user-config -display none -no-reboot \
        -kernel "$kernel" -initrd initramfs.gz \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/probe" \
        -serial file:probe.log >probe-qemu.log 2>&1 </dev/null
    grep -qa '^CHAINFS-VM: probe' probe.log 2>/dev/null
}

accel=${CHAINFS_VM_ACCEL:-}
case $accel in
kvm | tcg)
    boots "$accel" 120 ||
        fail "the guest does not boot with CHAINFS_VM_ACCEL=$accel: $(cat probe-qemu.log probe.log)"
    ;;
'')
    if [[ -r /dev/kvm && -w /dev/kvm ]] && boots kvm 10; then
        accel=kvm
    elif boots tcg 60; then
        accel=tcg
        echo "note: KVM is not usable here (no /dev/kvm, or the guest hangs with it): TCG"
    else
        skip "neither KVM nor TCG boots $kernel within a minute"
    fi
    ;;
*) fail "CHAINFS_VM_ACCEL=$accel: kvm or tcg" ;;
esac
if [[ $accel == kvm ]]; then vm_timeout=60; else vm_timeout=180; fi

# ---- the run ------------------------------------------------------------------

head -c 64M /dev/urandom >base.raw
qcow2_create top.qcow2 64M 65536 "$tmpdir/base.raw" raw
base_md5=$(md5sum base.raw)
start_chainfs mnt -d vm=top.qcow2
ctl=mnt/.jobs/ctl

# console_has REGEX: the guest printed a line matching REGEX.
console_has()
{
    [[ -e console.log ]] && tr -d '\r' <console.log | grep -qE "^CHAINFS-VM: ($1)"
}

# wait_console REGEX WHAT: poll the console until the guest prints a line
# matching REGEX; fail if it reports a failure, powers off or times out.
wait_console()
{
    local deadline=$((SECONDS + vm_timeout))
    until console_has "$1"; do
        console_has FAIL && fail "the guest failed $2: $(grep -a 'CHAINFS-VM' console.log | tail -n 5)"
        _running "$qemu_pid" || fail "QEMU exited $2: $(tail -n 20 console.log)"
        ((SECONDS < deadline)) || fail "the guest did not get $2 in ${vm_timeout}s ($accel): $(tail -n 5 console.log)"
        sleep 0.05
    done
}

# guest_rounds: how many rounds of rewrites the guest has finished.
guest_rounds()
{
    if [[ -e console.log ]]; then grep -caE '^CHAINFS-VM: round ' console.log || true; else echo 0; fi
}

# wait_guest_round WHAT: poll until the guest finishes another round.
wait_guest_round()
{
    local n
    n=$(guest_rounds)
    wait_console "round $((n + 2))\$" "$1"
}

mkfifo guest-ctl.in guest-ctl.out
qemu-system-x86_64 -accel "$accel" -m 256 -smp 1 -nodefaults -no-user-config \
    -display none -no-reboot \
    -kernel "$kernel" -initrd initramfs.gz \
    -append "console=ttyS0 quiet loglevel=3 panic=-1" \
    -drive "file=$tmpdir/mnt/vm,format=raw,if=virtio,cache=none" \
    -serial file:console.log -serial pipe:guest-ctl \
    >qemu.log 2>&1 </dev/null &
qemu_pid=$!
cleanup_fn "kill $qemu_pid 2>/dev/null"

t0=$SECONDS
wait_console writing "to its first writes"
echo "the guest booted ($accel) and wrote its blocks in $((SECONDS - t0))s"
# At 4 MiB/s the copy takes 16 s: the guest writes a round meanwhile;
# then the mirror may go at full speed.
ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/t.qcow2 speed=4M
wait_guest_round "through a round of writes while the mirror copies"
assert_eq "$(job_state mnt m1)" running "state of the mirror after a round of guest writes"
ctl_ok mnt/.jobs/m1/ctl speed=0
wait_job_state mnt m1 ready
wait_guest_round "through a round of writes while the mirror is ready"
ctl_ok mnt/.jobs/m1/ctl complete
wait_job_state mnt m1 concluded
assert_eq "$(job_key mnt m1 result)" completed "result of the mirror"
assert_chain mnt vm "$tmpdir/t.qcow2"
wait_guest_round "through a round of writes after the switch"
echo "switched" >guest-ctl.in
wait_console "verify (OK|FAIL)" "to its verification"
console_has "verify OK" || fail "the guest's verification failed: $(grep -a 'CHAINFS-VM' console.log | tail -n 8)"
deadline=$((SECONDS + vm_timeout))
while _running "$qemu_pid"; do
    ((SECONDS < deadline)) || fail "QEMU still running ${vm_timeout}s after the guest powered off"
    sleep 0.05
done
wait "$qemu_pid" || fail "QEMU exited with status $?: $(cat qemu.log)"
echo "the guest wrote $(guest_rounds) rounds and verified its blocks in $((SECONDS - t0))s"
stop_chainfs mnt

# What the disk must hold: the backing file with the guest's blocks over it.
read -ra gens < <(sed -n 's/^CHAINFS-VM: generations //p' console.log | tr -d '\r')
assert_eq "${#gens[@]}" "$blocks" "generations the guest reported"
cp base.raw expected.raw
pool=initramfs/pool
source initramfs/block.sh
for ((b = 0; b < blocks; b++)); do
    block $b "${gens[b]}" |
        dd of=expected.raw bs=256k seek="$(block_offset $b)" count=1 iflag=fullblock conv=notrunc status=none ||
        fail "cannot build expected.raw"
done
qemu_check t.qcow2
qemu_check top.qcow2
assert_eq "$(qemu_chain t.qcow2)" "$tmpdir/t.qcow2" "the target has no backing file"
out=$(qemu-img compare -F raw t.qcow2 expected.raw 2>&1) ||
    fail "the target differs from what the guest wrote: $out"
assert_eq "$(md5sum base.raw)" "$base_md5" "base.raw modified"
