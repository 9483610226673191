#!/bin/bash
# Installs what the benchmark needs beyond scripts/deps.sh: qemu-storage-daemon
# (in qemu-system-common), socat (to talk QMP), fio, nbdkit (the nbd rows),
# and the profilers.
# Only missing packages are installed; apt-get update runs only if needed.
set -euo pipefail

want=(qemu-system-common socat fio qemu-utils nbdkit meson ninja-build gcc pkg-config
      libfuse3-dev fuse3 libglib2.0-dev zlib1g-dev)
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "bench/deps.sh: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
