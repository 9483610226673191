#!/usr/bin/env bash
# A disk that is neither a regular file nor a block device (a directory, a
# character device, a FIFO, which must not block the open): refused,
# naming it.
source "$(dirname "$0")/functions.sh"
requires mkfifo
requires_fuse

mkdir a-directory
mkfifo a-fifo
expect_refusal 'a-directory' -d vm=a-directory
expect_refusal '/dev/null' -d vm=/dev/null,format=raw
expect_refusal 'a-fifo' -d vm=a-fifo,format=raw
