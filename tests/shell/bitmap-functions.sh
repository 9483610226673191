# shellcheck shell=bash
# Helpers for the dirty-bitmap tests (test-bitmap-*.sh); source it after
# functions.sh.

# qemu_bitmaps IMG: the image's bitmaps as QEMU reads them, one line
# "NAME GRANULARITY FLAG,FLAG" each (flags sorted, "-" for none), sorted
# by name; -U, so it works while chainfs has the image open.
qemu_bitmaps()
{
    qemu-img info -U --output=json "$1" | python3 -c '
import json, sys
info = json.load(sys.stdin)
for b in sorted(info.get("format-specific", {}).get("data", {}).get("bitmaps", []),
                key=lambda b: b["name"]):
    print(b["name"], b["granularity"], ",".join(sorted(b["flags"])) or "-")'
}

# nbd_dirty_extents IMG BITMAP: the bitmap's dirty ranges as qemu-nbd
# exports them (qemu:dirty-bitmap:BITMAP read by nbdinfo), merged, one
# "OFFSET LENGTH" a line: what .bitmaps/NAME/BITMAP/extents shows.
nbd_dirty_extents()
{
    local img=$1 bitmap=$2 sock=$tmpdir/nbd-$RANDOM.sock pid out
    qemu-nbd -r -f qcow2 -k "$sock" -B "$bitmap" "$img" &
    pid=$!
    cleanup_fn "kill $pid 2>/dev/null"
    for ((i = 0; i < 200; i++)); do
        [[ -S $sock ]] && break
        sleep 0.05
    done
    out=$(nbdinfo --map="qemu:dirty-bitmap:$bitmap" "nbd+unix:///?socket=$sock") ||
        fail "nbdinfo --map of $bitmap in $img failed"
    # qemu-nbd serves one client, then exits.
    wait "$pid" 2>/dev/null || true
    awk '$3 == 1 {
            if (n && $1 == start + len) { len += $2; next }
            if (n) printf "%.0f %.0f\n", start, len
            start = $1; len = $2; n = 1
        }
        END { if (n) printf "%.0f %.0f\n", start, len }' <<<"$out"
}

# bitmap_field MOUNT DISK BITMAP KEY: one line of a bitmap's status.
bitmap_field()
{
    sed -n "s/^$4: //p" "$1/.bitmaps/$2/$3/status"
}
