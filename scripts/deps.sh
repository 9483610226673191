#!/usr/bin/env bash
# Install what building and testing chainfs needs, from Debian's apt only,
# and only the packages that are missing.  Runs as root on Debian 12 (or
# uses sudo when it is there).  Safe to run again: with everything present
# it changes nothing and needs no network.
set -euo pipefail

packages=(
    gcc meson ninja-build pkg-config          # build
    libfuse3-dev fuse3                        # FUSE library and fusermount3
    libglib2.0-dev zlib1g-dev                 # libraries
    libcmocka-dev                             # unit tests
    qemu-utils                                # qemu-img, qemu-io, qemu-nbd: test oracles
    libnbd-dev                                # the nbd driver (NBD exports as disks and targets)
    libnbd-bin nbdkit                         # nbdinfo (qemu-nbd's dirty bitmaps); nbdkit: NBD test servers
    iproute2                                  # ip netns/veth: the NBD-over-veth test
    util-linux coreutils diffutils            # mountpoint, fallocate, dd, cmp
    clang libclang-rt-14-dev fio              # fuzzing (libFuzzer runtime), benchmarks, fio tests
    e2fsprogs mount                           # mkfs.ext4, e2fsck, losetup: the ext4 tests
    qemu-system-x86 busybox-static cpio       # the VM test: QEMU, a static busybox initramfs
    linux-image-cloud-amd64 kmod              # ... and a guest kernel in /boot (modprobe)
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps.sh: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
        echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
