# shellcheck shell=bash
# Helpers for the control-plane tests (test-ctl-*.sh, test-snapshot-*.sh);
# source it after functions.sh.  Uses the tool ctl-write, which writes one
# command in one write(2) and prints the errno name (or OK) and the reply
# read back on the same open file.

requires_tool ctl-write

# ctl FILE WORD...: write a command; sets ctl_status (OK or an errno name
# such as EINVAL) and ctl_reply (the reply, newline stripped).
ctl()
{
    local out
    out=$("$CHAINFS_TOOLS/ctl-write" "$@") || [[ $? -eq 1 ]] ||
        fail "ctl-write $*: $out"
    ctl_status=${out%%$'\n'*}
    ctl_reply=${out#*$'\n'}
}

# ctl_ok FILE WORD...: the command succeeds; the reply is in ctl_reply.
ctl_ok()
{
    ctl "$@"
    [[ $ctl_status == OK ]] ||
        fail "'${*:2}' on $1 failed: $ctl_status: $ctl_reply"
    [[ $ctl_reply == ok* ]] || fail "'${*:2}': reply is '$ctl_reply'"
}

# ctl_error ERRNO REGEX FILE WORD...: the command fails with ERRNO, the
# reply is "error: MESSAGE" with MESSAGE matching REGEX, and last-error
# (beside .jobs/ctl) holds the command and the same error line.
ctl_error()
{
    local errno=$1 regex=$2 file=$3 last_error jobs_dir
    shift 3
    ctl "$file" "$@"
    [[ $ctl_status == "$errno" ]] ||
        fail "'$*' on $file: expected $errno, got $ctl_status: $ctl_reply"
    [[ $ctl_reply == "error: "* ]] || fail "'$*': reply is '$ctl_reply'"
    grep -qE -- "$regex" <<<"$ctl_reply" ||
        fail "'$*': error '$ctl_reply' does not match '$regex'"
    jobs_dir=$(dirname "$file")
    [[ $(basename "$jobs_dir") == .jobs ]] || jobs_dir=$(dirname "$jobs_dir")
    last_error=$(cat "$jobs_dir/last-error")
    [[ $(sed -n 2p <<<"$last_error") == "$ctl_reply" ]] ||
        fail "'$*': last-error is '$last_error', reply '$ctl_reply'"
    [[ $(sed -n 1p <<<"$last_error") == *"$*" ]] ||
        fail "'$*': last-error does not show the command: '$last_error'"
}

# job_state MOUNT ID: the job's state from its status file.
job_state()
{
    sed -n 's/^state: //p' "$1/.jobs/$2/status"
}

# wait_job_state MOUNT ID STATE: poll the status until the job is in
# STATE (fails after CHAINFS_TIMEOUT seconds).
wait_job_state()
{
    local mnt=$1 id=$2 state=$3 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until [[ $(job_state "$mnt" "$id") == "$state" ]]; do
        ((SECONDS < deadline)) ||
            fail "job $id not $state after ${CHAINFS_TIMEOUT}s: $(cat "$mnt/.jobs/$id/status")"
        sleep 0.05
    done
}

# chain_paths MOUNT DISK: the layer paths of .chains/DISK, top first.
chain_paths()
{
    awk '{ print $4 }' "$1/.chains/$2"
}

# qemu_chain_paths IMG: the chain qemu-img sees from IMG, as absolute
# paths, top first.
qemu_chain_paths()
{
    qemu-img info --backing-chain --output=json "$1" |
        sed -n 's/^ *"filename": "\(.*\)",$/\1/p' | xargs -r -n1 realpath
}

# qemu_chain_paths_shared IMG: the same for an image in use (qemu-img -U).
qemu_chain_paths_shared()
{
    qemu-img info -U --backing-chain --output=json "$1" |
        sed -n 's/^ *"filename": "\(.*\)",$/\1/p' | xargs -r -n1 realpath
}
