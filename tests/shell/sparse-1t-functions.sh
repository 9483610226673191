# shellcheck shell=bash
# Helpers for the tests of jobs on a sparse 1 TiB chain
# (test-sparse-1t-*.sh): a job there must cost what the allocation costs,
# not what the virtual size does: done in seconds, with a peak RSS of the
# daemon (VmHWM) under 64 MiB.  Source it after functions.sh,
# ctl-functions.sh and job-functions.sh.

# Generous: the jobs take well under a second on a quiet machine.
SPARSE_MAX_SECONDS=${SPARSE_MAX_SECONDS:-30}
SPARSE_MAX_RSS_KIB=$((64 * 1024))
SPARSE_SIZE=1T
SPARSE_STEP=$((64 << 30))       # the pieces are 64 GiB apart

# make_sparse_chain: base.qcow2 <- mid.qcow2 <- top.qcow2 in $tmpdir,
# 1 TiB each, 64 KiB clusters, 16 pieces of 256 KiB per layer spread over
# the whole disk (the top's first cluster overwrites the base's), and a
# copy of all three in orig/ (compare with qemu-img compare, which walks
# the allocation too).
make_sparse_chain()
{
    local i cmds=()
    qcow2_create base.qcow2 "$SPARSE_SIZE" 65536
    for ((i = 0; i < 16; i++)); do
        cmds+=("write -P $((i + 1)) $((i * SPARSE_STEP + i * 1048576)) 256k")
    done
    qemu_io base.qcow2 "${cmds[@]}"
    qcow2_create mid.qcow2 "$SPARSE_SIZE" 65536 "$tmpdir/base.qcow2" qcow2
    cmds=()
    for ((i = 0; i < 16; i++)); do
        cmds+=("write -P $((i + 40)) $((i * SPARSE_STEP + (1 << 30) + 4096)) 256k")
    done
    qemu_io mid.qcow2 "${cmds[@]}"
    qcow2_create top.qcow2 "$SPARSE_SIZE" 65536 "$tmpdir/mid.qcow2" qcow2
    cmds=("write -P 99 0 64k")
    for ((i = 0; i < 16; i++)); do
        cmds+=("write -P $((i + 80)) $((i * SPARSE_STEP + (2 << 30))) 256k")
    done
    qemu_io top.qcow2 "${cmds[@]}"
    mkdir orig
    cp --sparse=always base.qcow2 mid.qcow2 top.qcow2 orig/
}

# sanitized_daemon: whether $CHAINFS is a sanitizer build (run-all.sh runs
# the shell tests with build-asan/fuse/chainfs too), whose shadow memory
# and quarantine make its RSS no measure of chainfs's own.
sanitized_daemon()
{
    grep -qaE '__(asan|tsan|msan)_init' "$CHAINFS"
}

# wait_job_done MOUNT ID: wait until the job concludes, sending complete
# when it is ready; fails after SPARSE_MAX_SECONDS or unless the result is
# completed.  Prints the seconds it took (from the call).
wait_job_done()
{
    local mnt=$1 id=$2 t0 state
    t0=$(date +%s%N)
    while :; do
        state=$(job_state "$mnt" "$id")
        case $state in
        ready) ctl_ok "$mnt/.jobs/$id/ctl" complete ;;
        concluded) break ;;
        esac
        (($(date +%s%N) - t0 < SPARSE_MAX_SECONDS * 1000000000)) ||
            fail "job $id not done after ${SPARSE_MAX_SECONDS}s: $(cat "$mnt/.jobs/$id/status")"
        sleep 0.02
    done
    assert_eq "$(job_key "$mnt" "$id" result)" completed "result of $id"
    awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f\n", ns / 1e9 }'
}

# assert_rss_bound PID WHAT: the daemon's peak RSS is under 64 MiB (not
# checked for a sanitizer build); prints it.
assert_rss_bound()
{
    local hwm
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status")
    echo "$2: peak RSS $((hwm / 1024)) MiB"
    if sanitized_daemon; then
        echo "$2: sanitizer build, RSS bound not checked"
        return 0
    fi
    ((hwm < SPARSE_MAX_RSS_KIB)) ||
        fail "$2: peak RSS $((hwm / 1024)) MiB, not under $((SPARSE_MAX_RSS_KIB / 1024)) MiB"
}

# fresh_sparse_chain: the images back as make_sparse_chain left them.
fresh_sparse_chain()
{
    rm -f base.qcow2 mid.qcow2 top.qcow2
    cp --sparse=always orig/base.qcow2 orig/mid.qcow2 orig/top.qcow2 .
}
