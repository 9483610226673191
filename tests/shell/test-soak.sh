#!/usr/bin/env bash
# Soak: three disks (qcow2 chains over a raw base), each with a writer
# that keeps a model and a log of what it changed (chainfs-soak-writer),
# and named bitmaps (persistent and not), while a churn loop picks random
# operations: snapshots, mirrors (sync full/top, background or
# write-blocking, completed, cancelled when ready or early), streams
# (whole chain or down to a base), intermediate and active commits,
# backups (full and incremental, bitmap modes), fleeces (the view read
# and punched under the writer), bitmap add/remove/clear/enable/disable/
# merge, pause/resume, set-speed, and commands the blockers must refuse.
# Every job is polled to its end and dismissed; every reply is checked.
# Instants (a fleece's view, a backup's target, a mirror or active commit
# cancelled when ready) are taken with the writer paused, so the writer's
# model then is what they must read.  Bitmaps must cover every range
# written while they recorded.  At the end: every disk reads as its
# model, the bitmaps cover the log, fusermount3 -u exits 0, every image
# is clean, the persistent bitmaps are in the active layers without the
# in-use flag and hold what chainfs showed, and the chains on disk read as
# the models.
#
#   SOAK_SECONDS  how long the churn runs (default 20)
#   SOAK_SEED     the seed (default: random; printed at the start)
# Long mode: SOAK_SECONDS=1800 CHAINFS=build-asan/fuse/chainfs tests/shell/test-soak.sh
source "$(dirname "$0")/functions.sh"
source "$srcdir/tests/shell/ctl-functions.sh"
source "$srcdir/tests/shell/job-functions.sh"
source "$srcdir/tests/shell/bitmap-functions.sh"
requires qemu-img qemu-io python3 cmp
requires_fuse
requires_tool chainfs-soak-writer

: "${SOAK_SECONDS:=20}"
: "${SOAK_SEED:=$(((RANDOM << 15) | RANDOM))}"
echo "soak: SOAK_SEED=$SOAK_SEED SOAK_SECONDS=$SOAK_SECONDS CHAINFS=$CHAINFS"
# The churn's choices follow the seed (their timing does not).  $RANDOM
# is read in this shell only (rand), never in a subshell.
RANDOM=$SOAK_SEED
# Jobs may be slowed down on purpose; a job that takes longer than this
# is a hang.
job_timeout=$((CHAINFS_TIMEOUT * 6))

size=$((16 << 20))
disks=(0 1 2)
clusters=(65536 4096 32768)
mnt=$tmpdir/mnt
ctl=$mnt/.jobs/ctl
t0=$SECONDS

# rand N: a number in [0, N) in $r.
rand()
{
    r=$((RANDOM % $1))
}

# words LIST...: the words of the lists on one line, one blank apart
# (paths here hold no blanks).
words()
{
    local list joined=()
    for list in "$@"; do
        # shellcheck disable=SC2206 # splitting is the point
        joined+=($list)
    done
    echo "${joined[*]}"
}

# pick WORD...: one of the words in $r.
pick()
{
    rand $#
    local words=("$@")
    r=${words[r]}
}

# say MESSAGE: one line of the operation log, with the time since start.
say()
{
    printf '%4ds %s\n' $((SECONDS - t0)) "$*"
}

# ---- the writers -------------------------------------------------------------

declare -A wpid=() wpos=()

# start_soak_writer D: the writer of disk D (files w$D.*).
start_soak_writer()
{
    local d=$1
    "$CHAINFS_TOOLS/chainfs-soak-writer" -g "${clusters[d]}" "$mnt/d$d" \
        "d$d.initial" $((SOAK_SEED * 10 + d)) "w$d" >"w$d.out" 2>&1 &
    wpid[$d]=$!
    cleanup_fn "kill -TERM ${wpid[$d]} 2>/dev/null"
}

writer_alive()
{
    _running "${wpid[$1]}" ||
        fail "writer of d$1 stopped: $(tail -n 40 "w$1.out")"
}

# pause_writer D [dump]: the writer of D stops between two operations;
# its log length is then in wpos[D], and with dump its model is in
# w$D.instant.
pause_writer()
{
    local d=$1 sig=USR1 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    [[ ${2:-} == dump ]] && sig=HUP
    rm -f "w$d.instant"
    kill -s "$sig" "${wpid[$d]}"
    until [[ -e w$d.paused ]]; do
        writer_alive "$d"
        ((SECONDS < deadline)) || fail "writer of d$d did not pause in ${CHAINFS_TIMEOUT}s"
        sleep 0.01
    done
    wpos[$d]=$(<"w$d.paused")
}

resume_writer()
{
    rm -f "w$1.paused"
    kill -USR2 "${wpid[$1]}"
}

# ---- bitmaps: what each must cover ------------------------------------------
# req[D/B]: the writer's log lines B must cover, as intervals "FIRST:END"
# (END excluded); the last one may be open ("FIRST:"), while B records.
declare -A req=()

req_closed()    # D/B POS: the intervals, the open one ended at POS
{
    local s=${req[$1]}
    [[ $s == *: ]] && s+=$2
    echo "$s"
}

req_close()
{
    req[$1]=$(req_closed "$1" "$2")
}

req_open()
{
    [[ ${req[$1]} == *: ]] || req[$1]=$(words "${req[$1]}" "$2:")
}

# bitmap_names D: the disk's named bitmaps (sorted).
bitmap_names()
{
    find "$mnt/.bitmaps/d$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort
}

# check_bitmaps D: with D's writer paused, every bitmap of D covers the
# ranges its log lines say, its count is what its extents add up to, and
# we know exactly the bitmaps chainfs lists.
check_bitmaps()
{
    local d=$1 b n=${wpos[$1]} known=() spec count sum
    for b in "${!req[@]}"; do
        [[ $b == "$d/"* ]] && known+=("${b#*/}")
    done
    assert_eq "$(bitmap_names "$d" | paste -sd' ')" \
        "$(printf '%s\n' "${known[@]}" | LC_ALL=C sort | paste -sd' ')" "bitmaps of d$d"
    for b in "${known[@]}"; do
        cp "$mnt/.bitmaps/d$d/$b/extents" extents.txt ||
            fail "reading the extents of $b on d$d"
        count=$(bitmap_field "$mnt" "d$d" "$b" count)
        sum=$(awk '{ s += $2 } END { print s + 0 }' extents.txt)
        assert_eq "$sum" "$count" "count of $b on d$d against its extents"
        spec=$(req_closed "$d/$b" "$n")
        # shellcheck disable=SC2086 # one argument per interval
        python3 "$tmpdir/covers.py" "w$d.log" "$n" extents.txt $spec ||
            fail "bitmap $b of d$d misses writes (intervals of log lines: $spec)"
    done
}

cat >covers.py <<'EOF'
# covers.py LOG N EXTENTS INTERVAL...: every range logged on a line in one
# of the INTERVALs (FIRST:END, lines counted from 0, only the first N) is
# inside the union of EXTENTS ("OFFSET LENGTH" lines).
import bisect, sys
log, n, extents_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
intervals = sorted((int(a), int(b)) for a, b in (s.split(':') for s in sys.argv[4:]))
runs = []
for line in open(extents_file):
    off, length = map(int, line.split())
    if runs and runs[-1][1] >= off:
        runs[-1][1] = max(runs[-1][1], off + length)
    else:
        runs.append([off, off + length])
starts = [s for s, _ in runs]
k = 0
with open(log) as f:
    for i, line in enumerate(f):
        if i >= n:
            break
        while k < len(intervals) and intervals[k][1] <= i:
            k += 1
        if k == len(intervals):
            break
        if i < intervals[k][0]:
            continue
        off, length = map(int, line.split())
        j = bisect.bisect_right(starts, off) - 1
        if j < 0 or runs[j][1] < off + length:
            print("log line %d: [%d, +%d) is not dirty; extents around it: %s"
                  % (i, off, length, runs[max(j, 0):j + 2]), file=sys.stderr)
            sys.exit(1)
EOF

# ---- jobs ----------------------------------------------------------------------

njob=0
declare -A cj_id=() cj_kind=() cj_plan=() cj_chain0=() cj_expect=() cj_target=()
declare -A cj_deadline=() cj_cancelled=()
declare -A bj_id=() bj_target=() bj_kind=() bj_cancelled=() bj_deadline=()
declare -A fj_id=() fj_bitmap=() fj_deadline=() fj_chunk=()
declare -A bchain=()        # D -> the last target of D's backup chain ("": none)
declare -A bchain_files=()  # D -> the files of that chain
declare -A images=()        # D -> every image made for D's chain (checked at the end)

chain_of()
{
    chain_paths "$mnt" "d$1" | paste -sd' '
}

# check_chain_on_disk D: the backing chain written in the images is what
# .chains/D lists.
check_chain_on_disk()
{
    local d=$1 chain
    chain=$(chain_of "$d")
    assert_eq "$(qemu_chain "${chain%% *}")" "$chain" "chain of d$d on disk"
}

# job_done MOUNT ID: the job concluded; fail after its deadline.
wait_concluded()
{
    local id=$1 deadline=$((SECONDS + job_timeout))
    until [[ $(job_state "$mnt" "$id") == concluded ]]; do
        ((SECONDS < deadline)) ||
            fail "job $id not concluded after ${job_timeout}s: $(cat "$mnt/.jobs/$id/status")"
        sleep 0.02
    done
}

dismiss()
{
    ctl_ok "$ctl" dismiss "$1"
    [[ ! -e $mnt/.jobs/$1 ]] || fail "job $1 still listed after dismiss"
}

# verb_ok_or_late ID VERB...: a job verb succeeds, or fails with EINVAL
# naming a state in which the verb is not valid and the job is.
verb_ok_or_late()
{
    local id=$1 state
    shift
    ctl "$ctl" "$@"
    [[ $ctl_status == OK ]] && return 0
    state=$(job_state "$mnt" "$id")
    [[ $ctl_status == EINVAL && $state =~ ^(waiting|pending|concluded|aborting)$ ]] ||
        fail "'$*' failed with $ctl_status ($ctl_reply), job $id is $state"
    [[ $ctl_reply == *"$state"* || $ctl_reply == *concluded* || $ctl_reply == *pending* ||
       $ctl_reply == *waiting* || $ctl_reply == *aborting* ]] ||
        fail "'$*': the error does not name the state: $ctl_reply"
    return 1
}

# random_speed: " speed=N" or nothing, in $r.
random_speed()
{
    rand 4
    case $r in
    0) r=" speed=$((4 + RANDOM % 12))M" ;;
    *) r= ;;
    esac
}

# layer_at D DEPTH: the path of a layer of D's chain.
layer_at()
{
    local chain
    read -ra chain <<<"$(chain_of "$1")"
    echo "${chain[$2]}"
}

start_snapshot()
{
    local d=$1 overlay=$tmpdir/d$1/s$njob.qcow2
    njob=$((njob + 1))
    say "d$d: snapshot $overlay"
    ctl_ok "$ctl" snapshot disk="d$d" overlay="$overlay"
    images[$d]+=" $overlay"
    assert_eq "$(layer_at "$d" 0)" "$overlay" "top of d$d after the snapshot"
    check_chain_on_disk "$d"
}

start_mirror()
{
    local d=$1 id=j$njob target=$tmpdir/d$1/m$njob.qcow2 sync mode args chain
    njob=$((njob + 1))
    pick full top; sync=$r
    pick background background write-blocking; mode=$r
    args="sync=$sync copy-mode=$mode"
    random_speed; args+=$r
    pick "" "" " granularity=4K" " granularity=128K"; args+=$r
    pick "" "" " buf-size=1M"; args+=$r
    pick complete complete cancel-ready cancel-early; cj_plan[$d]=$r
    chain=$(chain_of "$d")
    say "d$d: mirror $id $args target=$target plan=${cj_plan[$d]}"
    # shellcheck disable=SC2086 # args are words
    ctl_ok "$ctl" mirror id=$id disk="d$d" target="$target" $args
    images[$d]+=" $target"
    cj_id[$d]=$id cj_kind[$d]=mirror cj_chain0[$d]=$chain cj_target[$d]=$target
    cj_cancelled[$d]=0 cj_deadline[$d]=$((SECONDS + job_timeout))
    if [[ $sync == full ]]; then
        cj_expect[$d]=$target
    else
        cj_expect[$d]=$(words "$target" "${chain#* }")
        [[ $chain == *" "* ]] || cj_expect[$d]=$target
    fi
}

start_stream()
{
    local d=$1 id=j$njob chain n base="" args
    njob=$((njob + 1))
    read -ra chain <<<"$(chain_of "$d")"
    n=${#chain[@]}
    rand "$n"
    # 0: the whole chain; else down to layer r (layers between go).
    if ((r == 0)); then
        args=
        cj_expect[$d]=${chain[0]}
    else
        base=${chain[r]}
        args="base=$base"
        cj_expect[$d]=$(words "${chain[0]}" "${chain[@]:r}")
    fi
    random_speed; args+=$r
    say "d$d: stream $id $args"
    # shellcheck disable=SC2086
    ctl_ok "$ctl" stream id=$id disk="d$d" $args
    cj_id[$d]=$id cj_kind[$d]=stream cj_plan[$d]=wait cj_chain0[$d]=${chain[*]}
    cj_cancelled[$d]=0 cj_deadline[$d]=$((SECONDS + job_timeout))
}

start_commit()
{
    local d=$1 id=j$njob chain n top base args i j formats qcow2_below=()
    njob=$((njob + 1))
    read -ra chain <<<"$(chain_of "$d")"
    read -ra formats <<<"$(awk '{ print $2 }' "$mnt/.chains/d$d" | paste -sd' ')"
    n=${#chain[@]}
    for ((j = 1; j < n; j++)); do
        [[ ${formats[j]} == qcow2 ]] && qcow2_below+=("$j")
    done
    rand 2
    if ((n >= 3 && r == 0)) || ((${#qcow2_below[@]} == 0)); then
        ((n >= 3)) || return 0
        # Intermediate: top at depth i (1..n-2), base below it.
        i=$((1 + RANDOM % (n - 2)))
        j=$((i + 1 + RANDOM % (n - 1 - i)))
        top=${chain[i]} base=${chain[j]}
        args="top=$top base=$base"
        cj_kind[$d]=commit cj_plan[$d]=wait
        cj_expect[$d]=$(words "${chain[@]:0:i}" "${chain[@]:j}")
    else
        # Active, into a qcow2 layer (a raw active layer could not keep
        # the persistent bitmaps).
        pick "${qcow2_below[@]}"; j=$r
        base=${chain[j]}
        args="base=$base"
        pick "" " top=${chain[0]}"; args+=$r
        cj_kind[$d]=active-commit cj_target[$d]=$base
        pick complete complete cancel-ready cancel-early; cj_plan[$d]=$r
        cj_expect[$d]=$(words "${chain[@]:j}")
    fi
    random_speed; args+=$r
    say "d$d: commit $id $args plan=${cj_plan[$d]}"
    # shellcheck disable=SC2086
    ctl_ok "$ctl" commit id=$id disk="d$d" $args
    cj_id[$d]=$id cj_chain0[$d]=${chain[*]}
    cj_cancelled[$d]=0 cj_deadline[$d]=$((SECONDS + job_timeout))
}

# finish_cjob D RESULT CHAIN: the chain job of D concluded as it should.
finish_cjob()
{
    local d=$1 id=${cj_id[$1]} result
    result=$(job_key "$mnt" "$id" result)
    [[ $result == "$2" ]] ||
        fail "job $id (${cj_kind[$d]}) ended '$result', expected '$2': $(cat "$mnt/.jobs/$id/status")"
    assert_eq "$(chain_of "$d")" "$3" "chain of d$d after $id ($result)"
    dismiss "$id"
    check_chain_on_disk "$d"
    say "d$d: $id $result; chain: $3"
    unset "cj_id[$d]"
}

# advance_cjob D: one step of D's chain job, if it has one.
advance_cjob()
{
    local d=$1 id=${cj_id[$1]:-} state result out
    [[ -n $id ]] || return 0
    state=$(job_state "$mnt" "$id")
    ((SECONDS < cj_deadline[$d])) ||
        fail "job $id not done after ${job_timeout}s: $(cat "$mnt/.jobs/$id/status")"
    case ${cj_plan[$d]}:$state in
    *:concluded)
        result=$(job_key "$mnt" "$id" result)
        if ((cj_cancelled[$d])); then
            # A cancel that found the job ready finishes it in sync.
            [[ $result == cancelled || $result == completed ]] ||
                fail "cancelled job $id ended '$result'"
            finish_cjob "$d" "$result" "${cj_chain0[$d]}"
        else
            finish_cjob "$d" completed "${cj_expect[$d]}"
        fi
        ;;
    complete:ready | complete:standby)
        verb_ok_or_late "$id" complete "$id" || return 0
        say "d$d: complete $id"
        wait_concluded "$id"
        finish_cjob "$d" completed "${cj_expect[$d]}"
        ;;
    cancel-ready:ready | cancel-ready:standby)
        # With the writer paused, the target (mirror) or base (active
        # commit) must end as the disk is now.
        pause_writer "$d" dump
        verb_ok_or_late "$id" cancel "$id" || { resume_writer "$d"; return 0; }
        say "d$d: cancel $id (ready)"
        wait_concluded "$id"
        cmp "$mnt/d$d" "w$d.instant" || fail "d$d differs from its model after cancelling $id"
        out=$(qemu-img compare -U -F raw "${cj_target[$d]}" "w$d.instant" 2>&1) ||
            fail "${cj_target[$d]} is not the disk at the cancel of $id: $out"
        resume_writer "$d"
        finish_cjob "$d" completed "${cj_chain0[$d]}"
        ;;
    cancel-early:*)
        if ((!cj_cancelled[$d])); then
            pick "" force
            # shellcheck disable=SC2086 # no word when not forced
            verb_ok_or_late "$id" cancel "$id" $r || return 0
            say "d$d: cancel $id $r (state was $state)"
            cj_cancelled[$d]=1
        fi
        ;;
    esac
}

# conflict D: while D's chain job runs, a snapshot is EBUSY naming it
# (or fine, if the job concluded in the meantime).
conflict()
{
    local d=$1 id=${cj_id[$1]} before after overlay=$tmpdir/d$1/s$njob.qcow2
    njob=$((njob + 1))
    before=$(job_state "$mnt" "$id")
    [[ $before == concluded ]] && return 0
    ctl "$ctl" snapshot disk="d$d" overlay="$overlay"
    after=$(job_state "$mnt" "$id")
    case $ctl_status in
    EBUSY)
        [[ $ctl_reply == *"'$id'"* || $ctl_reply == *" $id"* ]] ||
            fail "EBUSY does not name job $id: $ctl_reply"
        [[ ! -e $overlay ]] || fail "a refused snapshot left $overlay"
        say "d$d: snapshot refused while $id is $before: $ctl_reply"
        ;;
    OK)
        [[ $after == concluded ]] ||
            fail "snapshot of d$d accepted while $id is $after"
        say "d$d: snapshot accepted, $id concluded meanwhile"
        images[$d]+=" $overlay"
        # The job's chain then had the overlay on top: what we expected
        # plus it.
        cj_expect[$d]="$overlay ${cj_expect[$d]}"
        cj_chain0[$d]="$overlay ${cj_chain0[$d]}"
        ;;
    *) fail "snapshot during $id: $ctl_status $ctl_reply" ;;
    esac
}

# job_verbs D: pause/resume, set-speed or change on one of D's jobs.
job_verbs()
{
    local d=$1 id state
    pick "${cj_id[$d]:-}" "${bj_id[$d]:-}"
    id=$r
    [[ -n $id ]] || return 0
    state=$(job_state "$mnt" "$id")
    pick pause set-speed set-speed change
    case $r in
    pause)
        verb_ok_or_late "$id" pause "$id" || return 0
        say "d$d: pause $id"
        local deadline=$((SECONDS + CHAINFS_TIMEOUT))
        until [[ $(job_state "$mnt" "$id") =~ ^(paused|standby|concluded)$ ]]; do
            ((SECONDS < deadline)) || fail "job $id not paused in ${CHAINFS_TIMEOUT}s: $(cat "$mnt/.jobs/$id/status")"
            sleep 0.02
        done
        say "d$d: $id is $(job_state "$mnt" "$id"); resume"
        verb_ok_or_late "$id" resume "$id" || true
        ;;
    set-speed)
        pick 0 0 2M 64M
        verb_ok_or_late "$id" set-speed "$id" "$r" || return 0
        say "d$d: set-speed $id $r (state was $state)"
        ;;
    change)
        [[ $id == "${cj_id[$d]:-}" && ${cj_kind[$d]} != stream && ${cj_kind[$d]} != commit ]] ||
            return 0
        verb_ok_or_late "$id" change "$id" copy-mode=write-blocking || return 0
        say "d$d: change $id copy-mode=write-blocking"
        ;;
    esac
}

# ---- backups -------------------------------------------------------------------

start_backup()
{
    local d=$1 id=j$njob target=$tmpdir/d$1/b$njob.qcow2 args kind
    njob=$((njob + 1))
    if [[ -z ${bchain[$d]:-} ]] || ((RANDOM % 4 == 0)); then
        pick chain chain top full-plain; kind=$r
    else
        kind=inc
    fi
    # A sync=top target backs onto a layer of the disk, which a commit
    # would change under it.
    if [[ $kind == top && ${cj_kind[$d]:-} == *commit && -n ${cj_id[$d]:-} ]]; then
        kind=full-plain
    fi
    case $kind in
    chain) args="sync=full bitmap=inc bitmap-mode=on-success" ;;
    top) args="sync=top" ;;
    full-plain) args="sync=full" ;;
    inc)
        qemu-img create -q -f qcow2 -b "${bchain[$d]}" -F qcow2 "$target" "$size" ||
            fail "qemu-img create $target"
        pick on-success on-success always never
        args="sync=bitmap bitmap=inc bitmap-mode=$r mode=existing"
        ;;
    esac
    random_speed; args+=$r
    pick "" "" " granularity=128K"; args+=$r
    pause_writer "$d" dump
    mv "w$d.instant" "$id.instant"
    say "d$d: backup $id $args target=$target"
    # shellcheck disable=SC2086
    ctl_ok "$ctl" backup id=$id disk="d$d" target="$target" $args
    if [[ $kind == chain || $kind == inc ]] && [[ $args != *never* ]]; then
        # Cleared of what it copies (on success; a cancel with "always"
        # too): what is left to require are the writes from now on.
        req["$d/inc"]="${wpos[$d]}:"
    fi
    resume_writer "$d"
    bj_id[$d]=$id bj_target[$d]=$target bj_kind[$d]=$kind bj_cancelled[$d]=0
    bj_deadline[$d]=$((SECONDS + job_timeout))
    rand 6
    if ((r == 0)); then
        verb_ok_or_late "$id" cancel "$id" || return 0
        say "d$d: cancel $id"
        bj_cancelled[$d]=1
    fi
}

advance_bjob()
{
    local d=$1 id=${bj_id[$1]:-} state result target out
    [[ -n $id ]] || return 0
    target=${bj_target[$d]}
    ((SECONDS < bj_deadline[$d])) ||
        fail "job $id not done after ${job_timeout}s: $(cat "$mnt/.jobs/$id/status")"
    state=$(job_state "$mnt" "$id")
    [[ $state == concluded ]] || return 0
    result=$(job_key "$mnt" "$id" result)
    if ((bj_cancelled[$d])) && [[ $result == cancelled ]]; then
        say "d$d: $id cancelled"
        dismiss "$id"
        qemu_check_shared "$target"
        # The chain lost a link (and "always" cleared bits of inc).
        if [[ ${bj_kind[$d]} == chain || ${bj_kind[$d]} == inc ]]; then
            retire_backup_chain "$d"
        fi
        rm -f "$target" "$id.instant"
        unset "bj_id[$d]"
        return 0
    fi
    [[ $result == completed ]] ||
        fail "backup $id ended '$result': $(cat "$mnt/.jobs/$id/status")"
    dismiss "$id"
    # A sync=top target backs onto a layer of the disk: -U.
    qemu_check_shared "$target"
    out=$(qemu-img compare -U -F raw "$target" "$id.instant" 2>&1) ||
        fail "backup $id (${bj_kind[$d]}) is not the disk at its instant: $out"
    say "d$d: $id completed and matches its instant"
    rm -f "$id.instant"
    case ${bj_kind[$d]} in
    chain)
        retire_backup_chain "$d"
        bchain[$d]=$target bchain_files[$d]=$target
        ;;
    inc)
        bchain[$d]=$target bchain_files[$d]+=" $target"
        ;;
    *) rm -f "$target" ;;
    esac
    unset "bj_id[$d]"
}

# retire_backup_chain D: the backup chain is broken or replaced: check its
# files and remove them.
retire_backup_chain()
{
    local f
    for f in ${bchain_files[$1]:-}; do
        qemu_check "$f"
    done
    # shellcheck disable=SC2086 # a list of paths
    rm -f ${bchain_files[$1]:-}
    bchain[$1]='' bchain_files[$1]=''
}

# ---- fleece ----------------------------------------------------------------------

start_fleece()
{
    local d=$1 id=f$njob args=
    njob=$((njob + 1))
    # The bitmap leaves inc for inc@ID: not while a backup uses inc.
    if [[ -z ${bj_id[$d]:-} ]] && ((RANDOM % 2)); then
        args="bitmap=inc"
    fi
    pause_writer "$d" dump
    mv "w$d.instant" "$id.instant"
    say "d$d: fleece $id $args"
    # shellcheck disable=SC2086
    ctl_ok "$ctl" fleece id=$id disk="d$d" $args
    if [[ -n $args ]]; then
        req["$d/inc@$id"]=$(req_closed "$d/inc" "${wpos[$d]}")
        req["$d/inc"]="${wpos[$d]}:"
        fj_bitmap[$d]=1
    else
        fj_bitmap[$d]=0
    fi
    resume_writer "$d"
    fj_id[$d]=$id fj_deadline[$d]=$((SECONDS + 2 + RANDOM % 8))
    # The view's granularity: the active layer's cluster size, clamped to
    # 4K..64K.
    fj_chunk[$d]=$(qemu-img info -U --output=json "$(layer_at "$d" 0)" |
        sed -n 's/^ *"cluster-size": \([0-9]*\).*/\1/p')
    ((fj_chunk[$d] >= 4096)) || fj_chunk[$d]=4096
    ((fj_chunk[$d] <= 65536)) || fj_chunk[$d]=65536
    assert_eq "$(stat -c '%a %s' "$mnt/d$d@$id")" "400 $size" "mode and size of d$d@$id"
}

# check_fleece D: the view reads as the instant, under the writer.
check_fleece()
{
    local d=$1 id=${fj_id[$1]}
    cmp "$mnt/d$d@$id" "$id.instant" ||
        fail "d$d@$id differs from the disk at its instant"
    say "d$d: d$d@$id reads as its instant"
}

# punch_fleece D: the whole chunks in a punched range of the view read as
# zeros from then on; the partial ones at either end stay.
punch_fleece()
{
    local d=$1 id=${fj_id[$1]} off len chunk=${fj_chunk[$1]} first end
    off=$((RANDOM * 512 % size + RANDOM % 512))
    len=$((1 + RANDOM * 8 % (size - off)))
    fallocate -p -o "$off" -l "$len" "$mnt/d$d@$id" ||
        fail "punch [$off, +$len) of d$d@$id"
    first=$(((off + chunk - 1) / chunk * chunk))
    end=$(((off + len) / chunk * chunk))
    if ((end > first)); then
        head -c $((end - first)) /dev/zero |
            dd of="$id.instant" bs=64K seek="$first" oflag=seek_bytes \
               iflag=fullblock conv=notrunc status=none || fail "zeroing $id.instant"
    fi
    say "d$d: punch d$d@$id [$off, +$len): chunks of $chunk in [$first, $end)"
}

end_fleece()
{
    local d=$1 id=${fj_id[$1]}
    check_fleece "$d"
    ctl_ok "$ctl" cancel "$id"
    wait_concluded "$id"
    assert_eq "$(job_key "$mnt" "$id" result)" cancelled "result of fleece $id"
    [[ ! -e $mnt/d$d@$id ]] || fail "d$d@$id still there after its cancel"
    dismiss "$id"
    rm -f "$id.instant"
    if ((fj_bitmap[$d])); then
        if [[ -z ${bj_id[$d]:-} ]] && ((RANDOM % 2)); then
            # The copy "failed": the bits go back.
            pause_writer "$d"
            ctl_ok "$ctl" bitmap-merge disk="d$d" name=inc from="inc@$id"
            req["$d/inc"]=$(words "${req[$d/inc@$id]}" "${req[$d/inc]}")
            resume_writer "$d"
            say "d$d: fleece $id cancelled; inc@$id merged back into inc"
        else
            retire_backup_chain "$d"
            say "d$d: fleece $id cancelled; inc@$id dropped"
        fi
        ctl_ok "$ctl" bitmap-remove disk="d$d" name="inc@$id"
        unset "req[$d/inc@$id]"
    else
        say "d$d: fleece $id cancelled"
    fi
    unset "fj_id[$d]"
}

# ---- named bitmaps -------------------------------------------------------------

nbitmap=0

# bitmap_op D: one random bitmap command, with D's writer paused so that
# its log says exactly which writes came before it.
bitmap_op()
{
    local d=$1 b from key extra=() name
    for key in "${!req[@]}"; do
        [[ $key == "$d/x"* ]] && extra+=("${key#*/}")
    done
    pause_writer "$d"
    local pos=${wpos[$d]}
    pick add add remove clear clear disable enable merge merge errors
    case $r in
    add)
        if ((${#extra[@]} >= 4)); then
            resume_writer "$d"
            return 0
        fi
        name=x$nbitmap
        nbitmap=$((nbitmap + 1))
        local args=()
        pick "" "" granularity=4K granularity=1M granularity=512; [[ -n $r ]] && args+=("$r")
        pick off on; args+=("persistent=$r")
        pick off off on
        local disabled=$r
        args+=("disabled=$disabled")
        ctl_ok "$ctl" bitmap-add disk="d$d" name="$name" "${args[@]}"
        if [[ $disabled == on ]]; then req["$d/$name"]=; else req["$d/$name"]="$pos:"; fi
        say "d$d: bitmap-add $name ${args[*]}"
        ;;
    remove)
        ((${#extra[@]})) || { resume_writer "$d"; return 0; }
        pick "${extra[@]}"; b=$r
        ctl_ok "$ctl" bitmap-remove disk="d$d" name="$b"
        unset "req[$d/$b]"
        [[ ! -e $mnt/.bitmaps/d$d/$b ]] || fail "bitmap $b of d$d still there after remove"
        say "d$d: bitmap-remove $b"
        ;;
    clear | disable | enable)
        local verb=$r
        pick mem "${extra[@]}"; b=$r
        ctl_ok "$ctl" "bitmap-$verb" disk="d$d" name="$b"
        case $verb in
        clear)
            if [[ $(bitmap_field "$mnt" "d$d" "$b" recording) == yes ]]; then
                req["$d/$b"]="$pos:"
            else
                req["$d/$b"]=
            fi
            assert_eq "$(bitmap_field "$mnt" "d$d" "$b" count)" 0 "count of $b after clear"
            ;;
        disable) req_close "$d/$b" "$pos" ;;
        enable) req_open "$d/$b" "$pos" ;;
        esac
        say "d$d: bitmap-$verb $b"
        ;;
    merge)
        pick mem "${extra[@]}"; b=$r
        pick all mem "${extra[@]}"; from=$r
        [[ $from != "$b" ]] || from=all
        ctl_ok "$ctl" bitmap-merge disk="d$d" name="$b" from="$from"
        req["$d/$b"]=$(words "$(req_closed "$d/$from" "$pos")" "${req[$d/$b]}")
        say "d$d: bitmap-merge $b from=$from"
        ;;
    errors)
        ctl_error EEXIST "all" "$ctl" bitmap-add disk="d$d" name=all
        ctl_error ENOENT "nosuch" "$ctl" bitmap-merge disk="d$d" name=mem from=all,nosuch
        ctl_error EINVAL "" "$ctl" bitmap-add disk="d$d" name=bad granularity=3K
        if [[ -n ${bj_id[$d]:-} && $(bitmap_field "$mnt" "d$d" inc busy) == yes ]]; then
            ctl "$ctl" bitmap-clear disk="d$d" name=inc
            if [[ $ctl_status == OK ]]; then
                # The backup ended in between: inc is cleared now.
                [[ $(job_state "$mnt" "${bj_id[$d]}") == concluded ]] ||
                    fail "bitmap-clear of inc accepted while ${bj_id[$d]} uses it"
                req["$d/inc"]="$pos:"
                bchain[$d]=
            else
                assert_eq "$ctl_status" EBUSY "bitmap-clear of busy inc: $ctl_reply"
                [[ $ctl_reply == *"${bj_id[$d]}"* ]] || fail "EBUSY does not name ${bj_id[$d]}: $ctl_reply"
            fi
        fi
        say "d$d: bitmap errors as expected"
        ;;
    esac
    resume_writer "$d"
}

# ---- retiring images -------------------------------------------------------------

# retire_images D: with no job on D, the images made for D that left its
# chain are closed, clean, and removed (keeps a long soak's disk usage
# bounded).
retire_images()
{
    local d=$1 img chain keep= gone=() out
    [[ -z ${cj_id[$d]:-}${bj_id[$d]:-}${fj_id[$d]:-} ]] || return 0
    chain=" $(chain_of "$d") "
    for img in ${images[$d]}; do
        if [[ $chain == *" $img "* ]]; then
            keep+=" $img"
        elif [[ -e $img ]]; then
            # Nobody holds it (opening it for writing takes QEMU's locks).
            out=$(qemu-io --image-opts "driver=file,filename=$img" -c quit 2>&1) ||
                fail "$img left the chain of d$d but is still locked: $out"
            # Its backing may be d$d's active layer: -U.
            qemu_check_shared "$img"
            gone+=("$img")
        fi
    done
    # Only now: one may back another.
    rm -f "${gone[@]}"
    images[$d]=$keep
}

# qemu_check_shared IMG: qemu_check, for an image whose backing chain is
# in use.
qemu_check_shared()
{
    local img=$1 out rc=0
    [[ $img == *.raw ]] && return 0
    out=$(qemu-img check -U "$img" 2>&1) || rc=$?
    [[ $rc -eq 0 ]] || fail "qemu-img check -U $img: exit $rc: $out"
}

# check_disk D: with D's writer paused, the whole disk reads as its model.
check_disk()
{
    pause_writer "$1" dump
    cmp "$mnt/d$1" "w$1.instant" || fail "d$1 differs from its writer's model"
    resume_writer "$1"
    say "d$1: reads as its model"
}

# ---- setup -----------------------------------------------------------------------

disk_args=()
for d in "${disks[@]}"; do
    mkdir "d$d"
    # Raw base: data in the first 12M, a hole after.
    head -c 12M /dev/urandom >"d$d/base.raw"
    truncate -s "$size" "d$d/base.raw"
    qcow2_create "d$d/l1.qcow2" "$size" "${clusters[d]}" "$tmpdir/d$d/base.raw" raw
    qemu_io "d$d/l1.qcow2" "write -P 0x11 1M 2M" "write -z 4M 1M" "discard 8M 64k"
    qcow2_create "d$d/l2.qcow2" "$size" "${clusters[d]}" "$tmpdir/d$d/l1.qcow2" qcow2
    qemu_io "d$d/l2.qcow2" "write -P 0x22 2M 3M" "write -P 0x23 13M 1M" "write -z 6M 64k"
    qcow2_create "d$d/top.qcow2" "$size" "${clusters[d]}" "$tmpdir/d$d/l2.qcow2" qcow2
    qemu_io "d$d/top.qcow2" "write -P 0x33 5M 100k" "write -P 0x34 15M 1M"
    to_raw "d$d/top.qcow2" "d$d.initial"
    images[$d]="$tmpdir/d$d/base.raw $tmpdir/d$d/l1.qcow2 $tmpdir/d$d/l2.qcow2 $tmpdir/d$d/top.qcow2"
    disk_args+=(-d "d$d=d$d/top.qcow2")
done
start_chainfs "$mnt" "${disk_args[@]}"

for d in "${disks[@]}"; do
    # all: persistent, never cleared: covers every write.  mem: not
    # persistent, churned.  inc: persistent, the backups' bitmap.
    ctl_ok "$ctl" bitmap-add disk="d$d" name=all persistent=on
    ctl_ok "$ctl" bitmap-add disk="d$d" name=mem granularity=4K
    ctl_ok "$ctl" bitmap-add disk="d$d" name=inc persistent=on
    req["$d/all"]="0:" req["$d/mem"]="0:" req["$d/inc"]="0:"
    start_soak_writer "$d"
done

# ---- the churn -----------------------------------------------------------------

iterations=0
while ((SECONDS - t0 < SOAK_SECONDS)); do
    iterations=$((iterations + 1))
    for d in "${disks[@]}"; do
        writer_alive "$d"
        advance_cjob "$d"
        advance_bjob "$d"
        if [[ -n ${fj_id[$d]:-} ]] && ((SECONDS >= fj_deadline[$d])); then
            end_fleece "$d"
        fi
        retire_images "$d"
    done
    pick "${disks[@]}"; d=$r
    nlayers=$(wc -l <"$mnt/.chains/d$d")
    pick snapshot snapshot mirror mirror stream commit commit commit backup backup \
        fleece fleece-check fleece-punch bitmap bitmap bitmap bitmap verbs verbs \
        conflict check-bitmaps check-disk
    op=$r
    case $op in
    snapshot | mirror | stream | commit)
        if [[ -n ${cj_id[$d]:-} ]]; then
            conflict "$d"
        elif [[ $op == snapshot ]] || ((nlayers == 1 && RANDOM % 2)); then
            ((nlayers < 7)) && start_snapshot "$d"
        elif [[ $op == mirror ]]; then
            start_mirror "$d"
        elif [[ $op == commit && ${bj_kind[$d]:-} == top && -n ${bj_id[$d]:-} ]]; then
            : # it would change the backing of the backup's target
        elif ((nlayers > 1)); then
            "start_$op" "$d"
        fi
        ;;
    conflict) [[ -z ${cj_id[$d]:-} ]] || conflict "$d" ;;
    backup)
        # Not while inc's bits are out in a fleece's inc@ID.
        if [[ -z ${bj_id[$d]:-} ]] && [[ -z ${fj_id[$d]:-} || ${fj_bitmap[$d]} == 0 ]]; then
            start_backup "$d"
        fi
        ;;
    fleece) [[ -n ${fj_id[$d]:-} ]] || start_fleece "$d" ;;
    fleece-check) [[ -z ${fj_id[$d]:-} ]] || check_fleece "$d" ;;
    fleece-punch) [[ -z ${fj_id[$d]:-} ]] || punch_fleece "$d" ;;
    bitmap) bitmap_op "$d" ;;
    verbs) job_verbs "$d" ;;
    check-bitmaps)
        pause_writer "$d"
        check_bitmaps "$d"
        resume_writer "$d"
        say "d$d: bitmaps cover the log (${wpos[$d]} lines)"
        ;;
    check-disk) check_disk "$d" ;;
    esac
done

# ---- the end -------------------------------------------------------------------

say "churn over after $iterations iterations; finishing the jobs"
for d in "${disks[@]}"; do
    for id in ${cj_id[$d]:-} ${bj_id[$d]:-}; do
        [[ $(job_state "$mnt" "$id") =~ ^(concluded|waiting|pending|aborting)$ ]] ||
            verb_ok_or_late "$id" set-speed "$id" 0 || true
        [[ $(job_state "$mnt" "$id") != paused ]] || verb_ok_or_late "$id" resume "$id" || true
    done
    [[ -z ${fj_id[$d]:-} ]] || end_fleece "$d"
done
deadline=$((SECONDS + job_timeout))
while [[ -n ${cj_id[*]}${bj_id[*]} ]]; do
    ((SECONDS < deadline)) || fail "jobs still running at the end: ${cj_id[*]} ${bj_id[*]}"
    for d in "${disks[@]}"; do
        writer_alive "$d"
        advance_cjob "$d"
        advance_bjob "$d"
    done
    sleep 0.02
done

persistent_bitmaps=()
declare -A final_top=() final_chain=()
for d in "${disks[@]}"; do
    retire_images "$d"
    pause_writer "$d"
    check_bitmaps "$d"
    say "d$d: bitmaps cover the log (${wpos[$d]} lines)"
    kill -TERM "${wpid[$d]}"
    wait "${wpid[$d]}" || fail "writer of d$d: $(tail -n 40 "w$d.out")"
    cat "w$d.out"
    assert_equal_files "$mnt/d$d" "w$d.model" "d$d against its writer's model"
    # What the persistent bitmaps hold now is what the image must hold.
    final_top[$d]=$(layer_at "$d" 0)
    final_chain[$d]=$(chain_of "$d")
    for b in $(bitmap_names "$d"); do
        if [[ $(bitmap_field "$mnt" "d$d" "$b" persistent) == yes ]]; then
            persistent_bitmaps+=("$d/$b")
            cp "$mnt/.bitmaps/d$d/$b/extents" "d$d-$b.extents"
        fi
    done
    [[ " ${persistent_bitmaps[*]} " == *" $d/all "* && " ${persistent_bitmaps[*]} " == *" $d/inc "* ]] ||
        fail "d$d lost a persistent bitmap: $(bitmap_names "$d" | paste -sd' ')"
done
stop_chainfs "$mnt"
say "unmounted"

for d in "${disks[@]}"; do
    for img in ${images[$d]} ${bchain_files[$d]:-}; do
        qemu_check "$img"
    done
    assert_eq "$(qemu_chain "${final_top[$d]}")" "${final_chain[$d]}" "chain of d$d on disk after unmount"
    out=$(qemu-img compare -F raw "${final_top[$d]}" "w$d.model" 2>&1) ||
        fail "the chain of d$d on disk differs from its model: $out"
    # Every persistent bitmap, none of them in use.
    qemu_bitmaps "${final_top[$d]}" >bitmaps.txt
    ! grep -q in-use bitmaps.txt || fail "in-use bitmaps in ${final_top[$d]}: $(cat bitmaps.txt)"
    assert_eq "$(awk '{ print $1 }' bitmaps.txt | paste -sd' ')" \
        "$(for b in "${persistent_bitmaps[@]}"; do [[ $b == "$d/"* ]] && echo "${b#*/}"; done |
           LC_ALL=C sort | paste -sd' ')" "persistent bitmaps in ${final_top[$d]}"
    if command -v qemu-nbd >/dev/null && command -v nbdinfo >/dev/null; then
        for b in all inc; do
            assert_eq "$(nbd_dirty_extents "${final_top[$d]}" "$b")" "$(cat "d$d-$b.extents")" \
                "bitmap $b of d$d in ${final_top[$d]} against what chainfs showed"
        done
    fi
done
say "soak passed: seed $SOAK_SEED, $iterations iterations, $njob jobs and snapshots"
