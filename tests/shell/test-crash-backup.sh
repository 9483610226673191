#!/usr/bin/env bash
# SIGKILL the daemon in the middle of a backup while chainfs-crash-writer
# writes and fsyncs through the disk (after test-crash-jobs.sh).  Backups,
# on a 16 MiB chain of three qcow2 layers with data in each: sync=full to
# a new target, and sync=bitmap (a dirty bitmap of writes made after the
# mount) into a mode=existing target backed by a full copy made before.
# Kill points (fixed seed): 0: a random delay once the job copies
# (mid-copy); 1: a random moment once 7/8 is copied; 2: right after the
# job is seen concluded.  After every kill:
#  - every image of the disk (the three layers) passes `qemu-img check`
#    (exit 0, or 3: leaked clusters only), and the disk's chain holds
#    every write acknowledged before an fsync returned (chainfs-crash-writer
#    check): the backup never damages the disk;
#  - the target (and the full copy under it) passes `qemu-img check`,
#    leaks allowed, whatever the moment;
#  - if the job was seen concluded and completed, the target (with its
#    backing) compares identical to the disk at the backup's instant;
#  - the chain mounts again and chainfs reads what qemu-img reads.
#
# CRASH_BACKUP_ITERATIONS (default 3) kills per sync mode; seed
# CRASH_BACKUP_SEED.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
writer=$CHAINFS_TOOLS/chainfs-crash-writer
iterations=${CRASH_BACKUP_ITERATIONS:-3}
RANDOM=${CRASH_BACKUP_SEED:-1}
size=16M
speed=8M    # about two seconds of copying: room for mid-copy kills

# make_chain: base.qcow2 <- mid.qcow2 <- top.qcow2, data in every layer
# (overlapping), 64K clusters.
make_chain()
{
    rm -f base.qcow2 mid.qcow2 top.qcow2 t.qcow2 full.qcow2
    qcow2_create base.qcow2 $size 65536
    qemu_io base.qcow2 "write -P 0x11 0 12M"
    qcow2_create mid.qcow2 $size 65536 "$tmpdir/base.qcow2" qcow2
    qemu_io mid.qcow2 "write -P 0x22 2M 6M" "write -P 0x23 13M 1M"
    qcow2_create top.qcow2 $size 65536 "$tmpdir/mid.qcow2" qcow2
    qemu_io top.qcow2 "write -P 0x33 5M 2M" "write -P 0x34 15M 512K" "write -z 9M 1M"
}

# wait_until MOUNT ID CONDITION: poll the job's status until the shell
# CONDITION (on $st, the status text) holds, or the job is concluded.
wait_until()
{
    local mnt=$1 id=$2 cond=$3 st deadline=$((SECONDS + CHAINFS_TIMEOUT))
    while :; do
        st=$(cat "$mnt/.jobs/$id/status" 2>/dev/null) || st=
        eval "$cond" && return 0
        [[ $st == *"state: concluded"* ]] && return 0
        [[ $st == *"result: failed"* ]] && fail "job $id failed: $st"
        ((SECONDS < deadline)) || fail "job $id: '$cond' not reached: $st"
        sleep 0.002
    done
}

# writes_survived IMG: IMG's chain holds the acknowledged writes.
writes_survived()
{
    to_raw "$1" now.raw
    "$writer" check now.raw sync.log "$seed" instant.raw >check.out 2>&1
}

# start_crash_writer: run the crash writer on mnt/vm (sets wpid) and wait
# for its first fsync, so that something must survive the kill.
start_crash_writer()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    "$writer" write mnt/vm sync.log "$seed" 2>writer.err &
    wpid=$!
    until [[ -s sync.log ]]; do
        _running "$wpid" || fail "writer exited before its first fsync: $(cat writer.err)"
        ((SECONDS < deadline)) || fail "no fsync in ${CHAINFS_TIMEOUT}s"
        sleep 0.005
    done
}

# one_crash SYNC POINT: one backup with SYNC killed at POINT (0, 1 or 2).
one_crash()
{
    local sync=$1 point=$2 wpid delay state result img
    seed=$((seed + 1))
    make_chain
    rm -f sync.log
    if [[ $sync == bitmap ]]; then
        # The previous backup: the chain as it is before the mount.
        qemu-img convert -O qcow2 top.qcow2 full.qcow2
        qcow2_create t.qcow2 $size 65536 "$tmpdir/full.qcow2" qcow2
    fi
    start_chainfs mnt -d "vm=$tmpdir/top.qcow2"
    if [[ $sync == bitmap ]]; then
        ctl_ok mnt/.jobs/ctl bitmap-add disk=vm name=b1
        dd_write mnt/vm $((1 << 20)) 2097152 0x44
        dd_write mnt/vm $((9 << 20)) 65536 0
        dd_write mnt/vm $((12 << 20)) 3145728 0x45
        fallocate -p -o $((6 << 20)) -l 524288 mnt/vm
        to_raw mnt/vm instant.raw
        ctl_ok mnt/.jobs/ctl backup id=j disk=vm target="$tmpdir/t.qcow2" \
            mode=existing sync=bitmap bitmap=b1 speed=2M buf-size=256K
    else
        to_raw mnt/vm instant.raw
        ctl_ok mnt/.jobs/ctl backup id=j disk=vm target="$tmpdir/t.qcow2" \
            speed=$speed buf-size=1M
    fi
    start_crash_writer
    case $point in
    0)  delay=$(printf '0.%03d' $((RANDOM % 500)))
        wait_until mnt j 'o=$(sed -n "s/^offset: //p" <<<"$st"); ((${o:-0} > 0))'
        sleep "$delay" ;;
    1)  delay=$(printf '0.0%02d' $((RANDOM % 100)))
        wait_until mnt j 'o=$(sed -n "s/^offset: //p" <<<"$st"); l=$(sed -n "s/^len: //p" <<<"$st"); [[ -n $o && $l -gt 0 && $((o * 8)) -ge $((l * 7)) ]]'
        sleep "$delay" ;;
    2)  delay=0
        wait_until mnt j 'false' ;;
    esac
    _running "$wpid" || fail "writer died while chainfs ran: $(cat writer.err)"
    state=$(sed -n 's/^state: //p' mnt/.jobs/j/status 2>/dev/null) || state=
    result=$(sed -n 's/^result: //p' mnt/.jobs/j/status 2>/dev/null) || result=
    signal_chainfs KILL mnt
    wait "$wpid" && fail "writer did not notice that chainfs died"
    fusermount3 -u -z mnt 2>/dev/null || true

    local what="sync=$sync point $point seed $seed (state '$state', delay $delay)"
    for img in top.qcow2 mid.qcow2 base.qcow2 t.qcow2 full.qcow2; do
        [[ -e $img ]] && qemu_check_leaks_ok "$img"
    done
    writes_survived top.qcow2 || fail "$what: the disk lost or corrupted data: $(cat check.out)"
    if [[ $state == concluded ]]; then
        [[ $result == completed ]] || fail "$what: result '$result'"
        out=$(qemu-img compare -F raw t.qcow2 instant.raw 2>&1) ||
            fail "$what: completed, but the target is not the instant: $out"
    fi
    echo "$what: $(cat check.out)"
    # writes_survived left the disk's content in now.raw.
    start_chainfs mnt -d "vm=$tmpdir/top.qcow2"
    assert_equal_files mnt/vm now.raw "$what: chainfs and qemu-img after the crash"
    stop_chainfs mnt
}

seed=9000
for sync in full bitmap; do
    for ((i = 0; i < iterations; i++)); do
        one_crash "$sync" $((i % 3))
    done
done
