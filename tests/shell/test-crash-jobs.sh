#!/usr/bin/env bash
# SIGKILL the daemon in the middle of block jobs while chainfs-crash-writer
# writes and fsyncs through the disk.  Jobs, on a 16 MiB chain of three
# qcow2 layers with data in each: mirror sync=full + complete (background
# and write-blocking), stream of the whole chain, stream with base,
# intermediate commit, active commit + complete, snapshot.  Kill points
# (fixed seed): 0: a random delay once the job copies (mid-copy); 1: right
# after `state: ready` (mirror, active commit) or a random moment once 7/8
# is copied (stream, commit); 2: right after `complete` is acknowledged
# (the switch) or as soon as a stream/commit is seen waiting or pending
# (the backing rewrite); snapshot: a random moment after the command.
# After every kill:
#  - every image (the three layers, the mirror target, the overlay)
#    passes `qemu-img check` (exit 0, or 3: leaked clusters only);
#  - the chain on disk is the old one or the new one: the top's header
#    names the old backing or the new one (stream/commit), and the chain
#    read with qemu-img holds every write acknowledged before an fsync
#    returned (chainfs-crash-writer check); for mirror and active commit
#    the old top's chain holds them, or (only once `complete` was
#    written) the target's/base's does, which it must once the job was
#    seen concluded; a snapshot acknowledged must be in the overlay;
#  - that chain mounts again and chainfs reads what qemu-img reads.
#
# CRASH_JOB_ITERATIONS (default 3) kills per job type; seed CRASH_JOB_SEED.
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
requires_fuse
requires qemu-img qemu-io
requires_tool chainfs-crash-writer
writer=$CHAINFS_TOOLS/chainfs-crash-writer
iterations=${CRASH_JOB_ITERATIONS:-3}
RANDOM=${CRASH_JOB_SEED:-1}
size=16M
speed=8M    # stream/commit: about a second, room for mid-copy kills

# make_chain: base.qcow2 <- mid.qcow2 <- top.qcow2, data in every layer
# (overlapping), 64K clusters; initial.raw = what the guest sees.
make_chain()
{
    rm -f base.qcow2 mid.qcow2 top.qcow2 t.qcow2 ov.qcow2
    qcow2_create base.qcow2 $size 65536
    qemu_io base.qcow2 "write -P 0x11 0 12M"
    qcow2_create mid.qcow2 $size 65536 "$tmpdir/base.qcow2" qcow2
    qemu_io mid.qcow2 "write -P 0x22 2M 6M" "write -P 0x23 13M 1M"
    qcow2_create top.qcow2 $size 65536 "$tmpdir/mid.qcow2" qcow2
    qemu_io top.qcow2 "write -P 0x33 5M 2M" "write -P 0x34 15M 512K"
    to_raw top.qcow2 initial.raw
}

# backing_of IMG: the backing file named in IMG's header (empty: none).
backing_of()
{
    qemu-img info -U --output=json "$1" |
        sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p' | head -n1
}

# wait_until MOUNT ID CONDITION: poll the job's status until the shell
# CONDITION (on $st, the status text) holds, or the job is gone/concluded.
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
    "$writer" check now.raw sync.log "$seed" initial.raw >check.out 2>&1
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

# one_crash JOB POINT: one run of JOB killed at POINT (0, 1 or 2).
one_crash()
{
    local job=$1 point=$2 wpid delay completed=0 switched=0 chosen img
    local old_backing new_backing backing ctl_pid
    seed=$((seed + 1))
    make_chain
    rm -f sync.log ctl.out
    start_chainfs mnt -d "vm=$tmpdir/top.qcow2"
    [[ $job == snapshot ]] && start_crash_writer
    delay=$(printf '0.%03d' $((RANDOM % 350)))
    case $job in
    mirror)
        # Unlimited speed: against this writer a limited background mirror
        # may never converge.  Every other run in write-blocking mode.
        ctl_ok mnt/.jobs/ctl mirror id=j disk=vm target="$tmpdir/t.qcow2" \
            copy-mode=$( ((seed % 2)) && echo write-blocking || echo background)
        delay=$(printf '0.%03d' $((RANDOM % 60))) ;;
    stream)
        ctl_ok mnt/.jobs/ctl stream id=j disk=vm speed=$speed
        old_backing=$tmpdir/mid.qcow2 new_backing= ;;
    stream-base)
        ctl_ok mnt/.jobs/ctl stream id=j disk=vm base="$tmpdir/base.qcow2" speed=$speed
        old_backing=$tmpdir/mid.qcow2 new_backing=$tmpdir/base.qcow2 ;;
    commit)
        ctl_ok mnt/.jobs/ctl commit id=j disk=vm top="$tmpdir/mid.qcow2" \
            base="$tmpdir/base.qcow2" speed=$speed
        old_backing=$tmpdir/mid.qcow2 new_backing=$tmpdir/base.qcow2 ;;
    active-commit)
        ctl_ok mnt/.jobs/ctl commit id=j disk=vm base="$tmpdir/base.qcow2"
        delay=$(printf '0.%03d' $((RANDOM % 60))) ;;
    snapshot)
        "$CHAINFS_TOOLS/ctl-write" mnt/.jobs/ctl snapshot disk=vm \
            overlay="$tmpdir/ov.qcow2" >ctl.out 2>&1 &
        ctl_pid=$!
        delay=$(printf '0.%03d' $((RANDOM % (point == 0 ? 5 : 40))))
        sleep "$delay"
        ;;
    esac
    if [[ $job != snapshot ]]; then
        # The writer starts once the job runs, so that the job has data of
        # its own to copy before the writer covers the disk.
        start_crash_writer
        case $job:$point in
        *:0)        # mid-copy: a random moment once copying started
            wait_until mnt j 'o=$(sed -n "s/^offset: //p" <<<"$st"); [[ $st == *"state: ready"* || ($st == *"state: running"* && ${o:-0} -gt 0) ]]'
            sleep "$delay" ;;
        mirror:1 | active-commit:1)
            wait_until mnt j '[[ $st == *"state: ready"* ]]' ;;
        mirror:2 | active-commit:2)
            wait_until mnt j '[[ $st == *"state: ready"* ]]'
            ctl_ok mnt/.jobs/j/ctl complete
            completed=1
            sleep "0.00$((RANDOM % 10))" ;;
        *:1)        # near the end: the backing rewrite comes next
            wait_until mnt j 'o=$(sed -n "s/^offset: //p" <<<"$st"); l=$(sed -n "s/^len: //p" <<<"$st"); [[ -n $o && $l -gt 0 && $((o * 8)) -ge $((l * 7)) ]]'
            sleep "0.0$((RANDOM % 100))" ;;
        *:2)        # finishing: the backing pointer is being rewritten
            wait_until mnt j '[[ $st == *"state: waiting"* || $st == *"state: pending"* ]]' ;;
        esac
    fi
    _running "$wpid" || fail "writer died while chainfs ran: $(cat writer.err)"
    local state
    state=$(sed -n 's/^state: //p' mnt/.jobs/j/status 2>/dev/null) || state=
    signal_chainfs KILL mnt
    wait "$wpid" && fail "writer did not notice that chainfs died"
    [[ -n ${ctl_pid:-} ]] && { wait "$ctl_pid" || true; }
    fusermount3 -u -z mnt 2>/dev/null || true

    for img in top.qcow2 mid.qcow2 base.qcow2 t.qcow2 ov.qcow2; do
        [[ -e $img ]] && qemu_check_leaks_ok "$img"
    done
    local what="$job point $point seed $seed (state '$state', delay $delay)"
    case $job in
    stream | stream-base | commit)
        backing=$(backing_of top.qcow2)
        [[ -n $backing ]] && backing=$(realpath "$backing")
        [[ $backing == "$old_backing" || $backing == "$new_backing" ]] ||
            fail "$what: top's backing is '$backing', neither '$old_backing' nor '$new_backing'"
        [[ $backing == "$new_backing" ]] && switched=1
        chosen=top.qcow2
        writes_survived top.qcow2 || fail "$what: data lost or corrupted: $(cat check.out)"
        ;;
    mirror | active-commit)
        local new=t.qcow2
        [[ $job == active-commit ]] && new=base.qcow2
        chosen=top.qcow2
        if [[ $state == concluded ]]; then
            # Switched before the kill: the new chain must hold everything.
            writes_survived "$new" ||
                fail "$what: concluded, but $new lost data: $(cat check.out)"
            chosen=$new switched=1
        elif ! writes_survived top.qcow2; then
            local old_out
            old_out=$(cat check.out)
            ((completed)) || fail "$what: not completed, old chain lost data: $old_out"
            writes_survived "$new" ||
                fail "$what: neither chain holds the data: old: $old_out; new: $(cat check.out)"
            chosen=$new switched=1
        fi
        ;;
    snapshot)
        chosen=top.qcow2
        if [[ $(head -n1 ctl.out 2>/dev/null) == OK ]]; then
            chosen=ov.qcow2 switched=1
            assert_eq "$(backing_of ov.qcow2)" "$tmpdir/top.qcow2" "$what: overlay's backing"
        elif [[ -e ov.qcow2 ]] && qemu-img info ov.qcow2 >/dev/null 2>&1 &&
             [[ $(backing_of ov.qcow2) == "$tmpdir/top.qcow2" ]] && writes_survived ov.qcow2; then
            chosen=ov.qcow2 switched=1
        fi
        writes_survived "$chosen" || fail "$what: data lost or corrupted in $chosen: $(cat check.out)"
        ;;
    esac
    echo "$what: switched=$switched: $(cat check.out)"
    # writes_survived left the chosen chain's content in now.raw.
    start_chainfs mnt -d "vm=$tmpdir/$chosen"
    assert_equal_files mnt/vm now.raw "$what: chainfs and qemu-img after the crash"
    stop_chainfs mnt
}

seed=7000
for job in mirror stream stream-base commit active-commit snapshot; do
    for ((i = 0; i < iterations; i++)); do
        one_crash "$job" $((i % 3))
    done
done
