# shellcheck shell=bash
# Helpers for the job error-policy tests (test-error-policy-*.sh); source
# it after functions.sh, ctl-functions.sh and job-functions.sh.

requires_tool chainfs-io
io=$CHAINFS_TOOLS/chainfs-io

# fault_conf CONF IMAGE FORMAT [RULE-LINE...]: write a fault configuration
# wrapping IMAGE (relative to CONF's directory) next to CONF and rename it
# over CONF (a running daemon reads it again: rules and counters restart).
fault_conf()
{
    local conf=$1 image=$2 format=$3 line
    shift 3
    {
        printf '[image]\nfile=%s\nformat=%s\n' "$image" "$format"
        for line in "$@"; do
            printf '%s\n' "$line"
        done
    } >"$conf.new"
    mv "$conf.new" "$conf"
}

# wait_event MOUNT REGEX: poll .jobs/events until a line matches (grep -E).
wait_event()
{
    local mnt=$1 regex=$2 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until grep -qE -- "$regex" "$mnt/.jobs/events"; do
        ((SECONDS < deadline)) ||
            fail "no event '$regex' after ${CHAINFS_TIMEOUT}s: $(cat "$mnt/.jobs/events")"
        sleep 0.02
    done
}

# assert_no_event MOUNT REGEX
assert_no_event()
{
    ! grep -qE -- "$2" "$1/.jobs/events" ||
        fail "unexpected event '$2': $(grep -E -- "$2" "$1/.jobs/events")"
}

# assert_failed_job MOUNT ID ERROR: the job concluded with result failed
# and `error: ERROR`.
assert_failed_job()
{
    wait_job_state "$1" "$2" concluded
    assert_eq "$(job_key "$1" "$2" result)" failed "result of $2"
    assert_eq "$(job_key "$1" "$2" error)" "$3" "error of $2"
}

# make_fault_chain: base.raw <- mid.qcow2 <- top.qcow2 (8 MiB, data in
# every layer), and disk.conf, a fault layer over top.qcow2 with the rule
# lines given; model.raw is what the guest sees.
make_fault_chain()
{
    qemu-img create -q -f raw base.raw 8M
    qemu_io base.raw "write -P 0x11 0 8M"
    qcow2_create mid.qcow2 8M 65536 "$tmpdir/base.raw" raw
    qemu_io mid.qcow2 "write -P 0x22 1M 3M" "write -z 6M 256K"
    qcow2_create top.qcow2 8M 65536 "$tmpdir/mid.qcow2" qcow2
    qemu_io top.qcow2 "write -P 0x33 2M 512K"
    to_raw top.qcow2 model.raw
    fault_conf disk.conf top.qcow2 qcow2 "$@"
}

# backing_of IMG: the backing file named in IMG's header, as an absolute
# path (empty: none).
backing_of()
{
    local b
    b=$(qemu-img info -U --output=json "$1" |
        sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p' | head -n1)
    [[ -z $b ]] || realpath "$b"
}

# make_fault_base_chain RULE-LINE...: base.conf (a fault layer over
# base.raw, with the rules given) <- mid.qcow2 <- top.qcow2, 8 MiB, data
# in every layer.  qemu-img cannot create a backing file of format
# "fault": mid.qcow2 is made with backing format "qcow2" and the 5 bytes
# patched to "fault" in its header extension; the layers are written with
# qemu-io without their backing.  Writes mid.model (what mid's chain reads
# as) and model.raw (the whole chain).
make_fault_base_chain()
{
    local off
    pattern $((8 << 20)) $((0x11)) >base.raw
    fault_conf base.conf base.raw raw "$@"
    qemu-img create -q -f qcow2 -u -b "$tmpdir/base.conf" -F qcow2 mid.qcow2 8M
    qemu_io_alone mid.qcow2 "write -P 0x22 1M 3M" "write -z 6M 256K"
    off=$(grep -obUa qcow2 mid.qcow2 | head -n1 | cut -d: -f1)
    [[ -n $off ]] || fail "no backing format in mid.qcow2's header"
    printf fault | dd of=mid.qcow2 bs=1 seek="$off" conv=notrunc status=none
    qemu-img create -q -f qcow2 -u -b "$tmpdir/mid.qcow2" -F qcow2 top.qcow2 8M
    qemu_io_alone top.qcow2 "write -P 0x33 2M 512K" "write -P 0x34 5M 64K"
    cp base.raw mid.model
    dd_write mid.model $((1 << 20)) $((3 << 20)) $((0x22))
    head -c 262144 /dev/zero | dd of=mid.model bs=256K seek=24 conv=notrunc status=none
    cp mid.model model.raw
    dd_write model.raw $((2 << 20)) $((512 << 10)) $((0x33))
    dd_write model.raw $((5 << 20)) $((64 << 10)) $((0x34))
}

# qemu_io_alone IMG CMD...: qemu-io on a qcow2 image without its backing.
qemu_io_alone()
{
    local img=$1 cmd args=() out
    shift
    for cmd in "$@"; do
        args+=(-c "$cmd")
    done
    out=$(qemu-io "${args[@]}" "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": \"$img\"}}" 2>&1) ||
        fail "qemu-io $img: $out"
}

# qemu_check_alone IMG: qemu-img check of a qcow2 image without opening
# its backing file (which qemu-img cannot open when it is a fault layer).
qemu_check_alone()
{
    local out rc=0
    out=$(qemu-img check "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": \"$1\"}}" 2>&1) || rc=$?
    [[ $rc -eq 0 ]] || fail "qemu-img check $1: exit $rc: $out"
}

# header_backing IMG: the backing file and format in IMG's header, "FILE
# FORMAT", read without opening it (qemu-img info does not need it).
header_backing()
{
    qemu-img info -U --output=json "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": \"$1\"}}" |
        awk -F'"' '/"backing-filename":/ { f = $4 } /"backing-filename-format":/ { t = $4 } END { print f, t }'
}
