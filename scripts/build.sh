#!/usr/bin/env bash
# Configure (once) and build chainfs into build/ (or $BUILD_DIR).
# Extra arguments go to `meson setup`, e.g. scripts/build.sh -Dtests=disabled
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$src/build}

if [[ ! -f $build/build.ninja ]]; then
    meson setup "$build" "$src" "$@"
elif [[ $# -gt 0 ]]; then
    meson configure "$build" "$@"
fi
ninja -C "$build"
echo "build.sh: built $build/fuse/chainfs"
