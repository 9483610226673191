# Shared by the recipes in examples/: a scratch directory, a chainfs
# daemon started by the recipe and stopped by it, and a wait for a job's
# state.  Source it; it sets $work and cds into it.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHAINFS=${CHAINFS:-$src/build/fuse/chainfs}
if [[ ! -x $CHAINFS ]]; then
    "$src/scripts/build.sh"
fi
CHAINFS=$(realpath "$CHAINFS")

work=$(mktemp -d "${TMPDIR:-/tmp}/chainfs-recipe.XXXXXX")
chainfs_pid=
server_pid=     # an NBD server a recipe started, stopped with it
recipe_cleanup()
{
    local status=$?
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n $chainfs_pid ]] && kill -0 "$chainfs_pid" 2>/dev/null; then
        fusermount3 -u -z "$work/mnt" 2>/dev/null || true
        kill "$chainfs_pid" 2>/dev/null || true
        wait "$chainfs_pid" 2>/dev/null || true
    fi
    rm -rf --one-file-system "$work"
    [[ $status -eq 0 ]] || echo "recipe: FAILED (status $status)"
    exit "$status"
}
trap recipe_cleanup EXIT
cd "$work"

# mount_chainfs ARGS...: start chainfs -f on $work/mnt and wait for it.
mount_chainfs()
{
    mkdir -p mnt
    "$CHAINFS" -f "$@" mnt 2>chainfs.log &
    chainfs_pid=$!
    for ((i = 0; i < 200; i++)); do
        mountpoint -q mnt && return 0
        kill -0 "$chainfs_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "chainfs did not mount:"; cat chainfs.log; return 1
}

# unmount_chainfs: unmount and wait until the daemon has closed the images.
unmount_chainfs()
{
    fusermount3 -u mnt
    wait "$chainfs_pid"
    chainfs_pid=
}

# wait_state JOB STATE: poll .jobs/JOB/status until it shows STATE.
wait_state()
{
    for ((i = 0; i < 600; i++)); do
        grep -qx "state: $2" "mnt/.jobs/$1/status" && return 0
        sleep 0.05
    done
    echo "job $1 did not reach state $2:"; cat "mnt/.jobs/$1/status"
    return 1
}

# ctl COMMAND: send one command and show it.
ctl()
{
    echo "\$ echo \"$*\" > mnt/.jobs/ctl"
    echo "$*" > mnt/.jobs/ctl
}
