# shellcheck shell=bash
# Helpers for the NBD tests (test-nbd-*.sh); source it after functions.sh.
# Servers listen on a Unix socket in the test's directory (or a veth
# address in the test's own network namespaces), and are stopped by PID
# in the cleanup.

# start_qemu_nbd SOCKET IMAGE [ARGS...]: serve IMAGE (qcow2) with
# qemu-nbd, persistent (-t: it serves a client that reconnects), and wait
# for the socket; sets nbd_pid.
start_qemu_nbd()
{
    local sock=$1 img=$2
    shift 2
    rm -f "$sock"
    qemu-nbd -t -k "$sock" -f qcow2 "$@" "$img" >>qemu-nbd.log 2>&1 &
    nbd_pid=$!
    cleanup_fn "stop_server $nbd_pid"
    wait_socket "$sock" "$nbd_pid"
}

# start_nbdkit SOCKET ARGS...: run nbdkit in the foreground on SOCKET
# with ARGS (plugin, filters, parameters); sets nbd_pid.
start_nbdkit()
{
    local sock=$1
    shift
    rm -f "$sock"
    nbdkit -f -U "$sock" "$@" >>nbdkit.log 2>&1 &
    nbd_pid=$!
    cleanup_fn "stop_server $nbd_pid"
    wait_socket "$sock" "$nbd_pid"
}

# wait_socket SOCKET PID: until SOCKET accepts connections (nbdinfo
# would take the only client slot of a plain qemu-nbd: only look).
wait_socket()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until [[ -S $1 ]]; do
        _running "$2" || fail "the NBD server (PID $2) exited: $(cat qemu-nbd.log nbdkit.log 2>/dev/null)"
        ((SECONDS < deadline)) || fail "no socket $1 after ${CHAINFS_TIMEOUT}s"
        sleep 0.02
    done
}

# stop_server PID: SIGTERM (a clean exit: qemu-nbd flushes the image)
# and wait.
stop_server()
{
    kill -TERM "$1" 2>/dev/null || return 0
    _wait_exit "$1" || { kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
    return 0
}

# unix_uri SOCKET [EXPORT]: the URI of an export on a Unix socket.
unix_uri()
{
    echo "nbd+unix:///${2:-}?socket=$1"
}
