#!/usr/bin/env bash
# Bad fault configs stop chainfs with one line naming the config and the
# problem, before anything is mounted or modified; and a fault config is
# never probed as the fault format.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires qemu-img

qcow2_create top.qcow2 1M 65536

conf()
{
    printf '%b' "$1" >bad.conf
}

conf '[rule x]\nop=write\n'
expect_refusal 'bad.conf: fault config has no \[image\] section' -d vm=bad.conf,format=fault
conf '[image]\nformat=qcow2\n'
expect_refusal 'bad.conf: \[image\]: file= is required' -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\nsize=1\n'
expect_refusal "bad.conf: \[image\]: unknown key 'size'" -d vm=bad.conf,format=fault
conf '[image]\nfile=missing.qcow2\n'
expect_refusal 'missing.qcow2: cannot open: No such file' -d vm=bad.conf,format=fault
conf '[image]\nfile=bad.conf\nformat=fault\n'
expect_refusal 'bad.conf: \[image\]: a fault layer cannot wrap another' -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[rule a]\nerrno=EIO\n'
expect_refusal 'bad.conf: \[rule a\]: op= is required' -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[rule a]\nop=scribble\n'
expect_refusal "bad.conf: \[rule a\] op: unknown operation 'scribble'" -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[rule a]\nop=read\nerrno=EWHATEVER\n'
expect_refusal "bad.conf: \[rule a\] errno: unknown error 'EWHATEVER'" -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[rule a]\nop=read\noffset=12Q\n'
expect_refusal "bad.conf: \[rule a\] offset: bad size '12Q'" -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[rule a]\nop=read\ncolour=red\n'
expect_refusal "bad.conf: \[rule a\]: unknown key 'colour'" -d vm=bad.conf,format=fault
conf '[image]\nfile=top.qcow2\n[other]\n'
expect_refusal 'bad.conf: unknown section \[other\]' -d vm=bad.conf,format=fault
conf 'not a key file\n'
expect_refusal 'bad.conf: bad fault config' -d vm=bad.conf,format=fault

# Probing never picks the fault format: a config is just a raw file.
conf '[image]\nfile=top.qcow2\n'
start_chainfs mnt -d vm=bad.conf
size=$(stat -c %s bad.conf)
assert_eq "$(cat mnt/.chains/vm)" "0 raw $size $tmpdir/bad.conf" "probed config"
stop_chainfs mnt
