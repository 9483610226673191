# shellcheck shell=bash
# Helpers for the tests that use a chainfs disk as kernels and programs
# do (test-client-*.sh): a loop device with ext4 on it, a file tree with
# known checksums, and a writer that keeps changing files in it.  Source
# it after functions.sh, ctl-functions.sh and job-functions.sh.
#
# Loop devices, mounts and the writer are undone by the cleanup, in the
# right order: the writer is stopped, the ext4 unmounted, the loop device
# detached, and only then chainfs stops.

# requires_loop: skip unless loop devices can be made here.
requires_loop()
{
    requires losetup mount umount mountpoint
    [[ -e /dev/loop-control ]] || skip "requires /dev/loop-control"
    [[ $(id -u) -eq 0 ]] || skip "requires root (losetup, mount)"
}

# loop_attach FILE [LOSETUP-ARGS]: attach FILE to a free loop device, set
# loop_dev, and detach it at exit.
loop_attach()
{
    local file=$1 path inside=
    shift
    path=$(realpath "$file")
    # Once the file's FUSE mount is gone the loop device shows its path
    # inside that mount (/vm): recognise that too.
    mountpoint -q "$(dirname "$path")" && inside=/$(basename "$path")
    loop_dev=$(losetup --find --show "$@" "$path") ||
        fail "losetup $* $file failed"
    # Reverse order at exit: registered before the mount, runs after it.
    cleanup_fn "loop_detach_if_ours $loop_dev $path $inside"
}

# loop_detach_if_ours DEV FILE [INSIDE]: detach DEV if it still shows
# FILE, or INSIDE (the number may have been detached and reused by
# someone else since).
loop_detach_if_ours()
{
    local back
    back=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 0
    back=${back%% (deleted)}
    [[ $back == "$2" || ( -n ${3:-} && $back == "$3" ) ]] && losetup -d "$1"
}

# loop_detach: detach loop_dev (which must be unmounted) and wait until
# the kernel has let go of its backing file.
loop_detach()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    losetup -d "$loop_dev" || fail "losetup -d $loop_dev failed"
    # Detaching is asynchronous: the backing file is released once the
    # device has no opener left.
    while losetup "$loop_dev" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$loop_dev still attached after ${CHAINFS_TIMEOUT}s"
        sleep 0.05
    done
}

# fs_mount DEV DIR [MOUNT-ARGS]: mount, and unmount at exit.
fs_mount()
{
    local dev=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    mount "$@" "$dev" "$dir" || fail "mount $* $dev $dir failed"
    cleanup_fn "umount $dir 2>/dev/null || umount -l $dir 2>/dev/null"
}

# fs_umount DIR: unmount (retrying while busy, as a process that used it
# may still be exiting).
fs_umount()
{
    local dir=$1 out deadline=$((SECONDS + CHAINFS_TIMEOUT))
    until out=$(umount "$dir" 2>&1); do
        [[ $out == *busy* ]] || fail "umount $dir: $out"
        ((SECONDS < deadline)) || fail "umount $dir: $out"
        sleep 0.05
    done
}

# fsck_clean DEV WHAT: e2fsck -fn finds nothing to fix.
fsck_clean()
{
    local out
    out=$(e2fsck -fn "$1" 2>&1) || fail "e2fsck -fn $1 ($2): exit $?: $out"
}

# make_tree DIR: a file tree with files of many sizes (empty, under a
# block, a few blocks, up to 2 MiB), nested directories and a hard link.
make_tree()
{
    local dir=$1 d i size
    for d in 0 1 2 3 4 5; do
        mkdir -p "$dir/d$d/sub"
        for ((i = 0; i < 24; i++)); do
            case $((i % 6)) in
            0) size=0 ;;
            1) size=$((RANDOM % 4096 + 1)) ;;
            2) size=$(((RANDOM % 16 + 1) * 4096)) ;;
            3) size=$((RANDOM * 4 + 17)) ;;
            4) size=$((RANDOM % 64 * 32768 + 1)) ;;
            *) size=$((i * 1000 + d)) ;;
            esac
            head -c "$size" /dev/urandom >"$dir/d$d/f$i" || fail "cannot write $dir/d$d/f$i"
        done
        seq 1 $((d * 20000)) >"$dir/d$d/sub/numbers"
        ln "$dir/d$d/f1" "$dir/d$d/sub/link" || fail "cannot link in $dir/d$d"
    done
}

# tree_sums DIR: "MD5  ./PATH" of every regular file under DIR, sorted
# by path (writer.tmp files excluded: the writer's scratch).
tree_sums()
{
    (cd "$1" && find . -xdev -type f ! -name '*.tmp' ! -path './lost+found/*' -print0 |
        LC_ALL=C sort -z | xargs -0 -r md5sum) || fail "cannot checksum $1"
}

# start_fs_writer DIR: write files into DIR/w in the background until
# told to stop: each round writes fresh random data to a temporary file,
# fsyncs it (so that writes reach the disk during the jobs, not only at
# the next writeback), renames it over one of 48 names (freeing the blocks of the old file)
# and logs its checksum in $tmpdir/fs-writer.md5.  Sets fs_writer_pid.
start_fs_writer()
{
    local dir=$1
    mkdir -p "$dir/w"
    touch "$tmpdir/fs-writer.md5"
    rm -f "$tmpdir/fs-writer.stop"
    (
        set +e
        i=$(wc -l <"$tmpdir/fs-writer.md5")
        while [[ ! -e $tmpdir/fs-writer.stop ]]; do
            name=f$((i % 48))
            head -c $(((RANDOM % 64 + 1) * 4096 + RANDOM % 4096)) /dev/urandom \
                >"$tmpdir/fs-writer.buf" &&
                cp "$tmpdir/fs-writer.buf" "$dir/w/$name.tmp" &&
                sync "$dir/w/$name.tmp" &&
                mv -f "$dir/w/$name.tmp" "$dir/w/$name" || exit 1
            echo "$(md5sum <"$tmpdir/fs-writer.buf" | cut -d' ' -f1)  ./w/$name" \
                >>"$tmpdir/fs-writer.md5"
            i=$((i + 1))
        done
    ) &
    fs_writer_pid=$!
    cleanup_fn "kill $fs_writer_pid 2>/dev/null"
}

# fs_writer_rounds: how many files the writer has written so far.
fs_writer_rounds()
{
    if [[ -e $tmpdir/fs-writer.md5 ]]; then wc -l <"$tmpdir/fs-writer.md5"; else echo 0; fi
}

# wait_fs_writer_rounds N: poll until the writer has written N files.
wait_fs_writer_rounds()
{
    local n=$1 deadline=$((SECONDS + CHAINFS_TIMEOUT))
    while (($(fs_writer_rounds) < n)); do
        _running "$fs_writer_pid" || fail "the file writer died after $(fs_writer_rounds) files"
        ((SECONDS < deadline)) || fail "the file writer wrote $(fs_writer_rounds) files, not $n, in ${CHAINFS_TIMEOUT}s"
        sleep 0.05
    done
}

# stop_fs_writer: ask the writer to stop after its current file, wait,
# and require that it never failed.
stop_fs_writer()
{
    local deadline=$((SECONDS + CHAINFS_TIMEOUT))
    touch "$tmpdir/fs-writer.stop"
    while _running "$fs_writer_pid"; do
        ((SECONDS < deadline)) || fail "the file writer did not stop in ${CHAINFS_TIMEOUT}s"
        sleep 0.05
    done
    wait "$fs_writer_pid" || fail "the file writer failed (a write, cp or mv in the ext4 failed)"
}

# expected_sums: the checksums the tree must have now: the generated
# tree's, plus the last version the writer wrote of each of its files.
expected_sums()
{
    {
        cat "$tmpdir/tree.md5"
        [[ -s $tmpdir/fs-writer.md5 ]] &&
            awk '{ last[$2] = $0 } END { for (f in last) print last[f] }' "$tmpdir/fs-writer.md5"
    } | LC_ALL=C sort -k2
}

# assert_tree DIR WHAT: every file under DIR has the expected checksum,
# and there is no other file.
assert_tree()
{
    local dir=$1 what=$2 diff
    diff=$(diff <(expected_sums) <(tree_sums "$dir" | LC_ALL=C sort -k2)) ||
        fail "files in the ext4 differ $what (< expected, > found): $(head -n 20 <<<"$diff")"
}

# ---- ext4 on a loop device through the jobs (test-client-ext4-*.sh) -------

# ext4_phase_end WHAT: stop the writer, sync, check every file, unmount,
# e2fsck, and mount again.
ext4_phase_end()
{
    local what=$1
    stop_fs_writer
    sync
    assert_tree fs "$what"
    fs_umount fs
    fsck_clean "$loop_dev" "$what"
    fs_mount "$loop_dev" fs -o discard
    echo "ok: $what: $(wc -l <"$tmpdir/tree.md5") tree files and $(fs_writer_rounds) writer files checked, e2fsck clean"
}

# ext4_writer_going: start the writer and let it write 20 files.
ext4_writer_going()
{
    start_fs_writer fs
    wait_fs_writer_rounds $(($(fs_writer_rounds) + 20))
}

# ext4_writer_wrote_since N WHAT: the writer is still running and wrote
# files after round N (so the job ran under writes).
ext4_writer_wrote_since()
{
    local n=$1 what=$2
    _running "$fs_writer_pid" || fail "the file writer ended during $what"
    wait_fs_writer_rounds $((n + 5))
}

# ext4_jobs_test LOSETUP-ARGS...: the whole test: a 256 MiB qcow2 disk on
# a loop device (attached with LOSETUP-ARGS), ext4 with a tree of files;
# under a writer that keeps replacing files: a snapshot, an active commit
# to complete, a mirror to complete, a second snapshot and a stream (the
# jobs speed-limited, so that they copy for a second or more under the
# writes; the mirror less, as it must catch up with the writer).
# After each: the files read back, e2fsck -fn is clean.  At the end the
# final chain converted to raw is a clean ext4 with the same files.
ext4_jobs_test()
{
    local n
    qcow2_create base.qcow2 256M 65536
    start_chainfs mnt -d vm=base.qcow2
    ctl=mnt/.jobs/ctl
    loop_attach "$tmpdir/mnt/vm" "$@"
    if [[ " $* " == *" --direct-io=on "* ]]; then
        assert_eq "$(cat "/sys/block/${loop_dev#/dev/}/loop/dio")" 1 \
            "direct I/O of $loop_dev over the chainfs disk"
    fi
    mkfs.ext4 -q -F "$loop_dev" || fail "mkfs.ext4 $loop_dev failed"
    fs_mount "$loop_dev" fs -o discard
    make_tree fs
    sync
    tree_sums fs >tree.md5
    assert_tree fs "after writing the tree"

    # A snapshot: the disk goes on in s1.qcow2, base.qcow2 below it.
    ext4_writer_going
    n=$(fs_writer_rounds)
    ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/s1.qcow2
    ext4_writer_wrote_since "$n" "the snapshot"
    assert_chain mnt vm "$tmpdir/s1.qcow2" "$tmpdir/base.qcow2"
    ext4_phase_end "after the snapshot"

    # An active commit of s1 into base, completed: the disk on base.
    ext4_writer_going
    n=$(fs_writer_rounds)
    ctl_ok $ctl commit id=c1 disk=vm speed=16M
    wait_job_state mnt c1 ready
    ext4_writer_wrote_since "$n" "the commit"
    ctl_ok mnt/.jobs/c1/ctl complete
    wait_job_state mnt c1 concluded
    assert_eq "$(job_key mnt c1 result)" completed "result of the commit"
    assert_chain mnt vm "$tmpdir/base.qcow2"
    ext4_phase_end "after the active commit"

    # A mirror (sync=full) to m.qcow2, completed: the disk on m alone.
    ext4_writer_going
    n=$(fs_writer_rounds)
    ctl_ok $ctl mirror id=m1 disk=vm target=$tmpdir/m.qcow2 speed=64M
    wait_job_state mnt m1 ready
    ext4_writer_wrote_since "$n" "the mirror"
    ctl_ok mnt/.jobs/m1/ctl complete
    wait_job_state mnt m1 concluded
    assert_eq "$(job_key mnt m1 result)" completed "result of the mirror"
    assert_chain mnt vm "$tmpdir/m.qcow2"
    ext4_phase_end "after the mirror"

    # A snapshot s2 over m, then a stream that pulls m into s2.
    ext4_writer_going
    n=$(fs_writer_rounds)
    ctl_ok $ctl snapshot disk=vm overlay=$tmpdir/s2.qcow2
    ext4_writer_wrote_since "$n" "the second snapshot"
    n=$(fs_writer_rounds)
    ctl_ok $ctl stream id=st1 disk=vm speed=16M
    wait_job_state mnt st1 concluded
    ext4_writer_wrote_since "$n" "the stream"
    assert_eq "$(job_key mnt st1 result)" completed "result of the stream"
    assert_chain mnt vm "$tmpdir/s2.qcow2"
    ext4_phase_end "after the stream"

    # Unmount everything, in order.
    fs_umount fs
    loop_detach
    stop_chainfs mnt
    for img in base.qcow2 s1.qcow2 m.qcow2 s2.qcow2; do
        qemu_check "$img"
    done
    assert_eq "$(qemu_chain s2.qcow2)" "$tmpdir/s2.qcow2" "chain of s2.qcow2 after the stream"

    # The final chain, as raw: a clean ext4 with the same files.
    to_raw s2.qcow2 final.raw
    fsck_clean final.raw "the final chain converted to raw"
    loop_attach final.raw --read-only
    fs_mount "$loop_dev" final -o ro,noload
    assert_tree final "in the final chain converted to raw"
    fs_umount final
    loop_detach
    echo "ok: the final chain converted to raw holds the same files, e2fsck clean"
}

# ---- fio with verification (test-client-fio-*.sh) -------------------------

# fio_verify_jobs JOBFILE FILE: write a fio job file for FILE with two
# jobs at once, each writing every 4 KiB block of its own 64 MiB once in
# random order, with a crc32c header (which holds the block's offset) in
# each, then reading it all back to verify: "direct" with O_DIRECT and
# libaio 16 deep on [0, 64M), "buffered" with pwrite on [64M, 128M).
# The same file with --verify_only re-reads and verifies what they wrote.
fio_verify_jobs()
{
    cat >"$1" <<EOT
[global]
filename=$2
rw=randwrite
bs=4k
size=64M
verify=crc32c
verify_fatal=1
do_verify=1
[direct]
offset=0
direct=1
ioengine=libaio
iodepth=16
[buffered]
offset=64M
direct=0
ioengine=psync
EOT
}

# run_fio WHAT LOG FIO-ARGS...: run fio; it must exit 0 and report no error.
run_fio()
{
    local what=$1 log=$2
    shift 2
    fio "$@" >"$log" 2>&1 ||
        fail "fio ($what) failed: $(grep -iE 'verify|err=|error' "$log" | head -n 20)"
    grep -q 'err= 0' "$log" || fail "fio ($what): no job reported err= 0: $(tail -n 20 "$log")"
    ! grep -E 'err= *[1-9]' "$log" || fail "fio ($what) reported an error"
}

# assert_fio_verified LOG N: N jobs in LOG each read back (verified) 64 MiB.
assert_fio_verified()
{
    assert_eq "$(grep -cE '^ +read: .*\(64\.0MiB/' "$1")" "$2" \
        "jobs in $1 that read back all of their 64 MiB"
}
