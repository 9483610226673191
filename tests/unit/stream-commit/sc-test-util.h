/* Helpers for the stream and commit tests, on top of the mirror tests'
 * (mirror-test-util.h): chains of layers with a model of the guest view,
 * starting stream/commit jobs from command text, a writer thread with its
 * own model, and qemu-img as an oracle for headers and chains. */
#ifndef CHAINFS_SC_TEST_UTIL_H
#define CHAINFS_SC_TEST_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/disk.h"
#include "jobs/job.h"

#include "../mirror/mirror-test-util.h"

/* Parse text and start the stream or commit it names; fails the test on
 * error. */
struct job *start_job(struct fixture *f, struct disk *disk, const char *text);
/* Parse and start, expecting an error with code; returns its message. */
char *start_job_error(struct fixture *f, struct disk *disk, const char *text,
                      int code);

/* Open the image at path alone (read-write), write a pattern at offset
 * through it and into model, and close it: builds a layer's own data. */
void write_layer(const char *path, uint8_t *model, uint64_t offset,
                 uint64_t len, unsigned seed);
/* Same, but zero the range (without unmapping). */
void zero_layer(const char *path, uint8_t *model, uint64_t offset,
                uint64_t len);

/* Same, but write zeros as data (data clusters full of zeros). */
void zero_data_layer(const char *path, uint8_t *model, uint64_t offset,
                     uint64_t len);

/* Wait until the job concluded with result; fails with its status. */
void wait_result(struct job *job, enum job_result result);

/* Lines "DEPTH FORMAT SIZE PATH" of `qemu-img info --backing-chain` on
 * path, as .chains/NAME writes them. */
char *qemu_img_chain(const char *path);
/* The "backing file: " value of `qemu-img info` on path (NULL: none). */
char *qemu_img_backing_file(const char *path);
/* Assert .chains/NAME of disk and qemu-img agree (skips without
 * qemu-img). */
void assert_chain_matches_qemu(struct disk *disk);
/* Write model to a raw file at path (an oracle for qemu-img compare). */
void write_raw_file(const char *path, const uint8_t *model, uint64_t size);

/* Free the first n strings of paths (an array of a test's image paths). */
void free_paths(char **paths, unsigned n);

/* After a job: the disk reads the model, qemu-img agrees on the chain, the
 * disk's top compares equal to the model and every qcow2 image in paths
 * passes qemu-img check. */
void check_after_job(struct fixture *f, struct disk *disk,
                     const uint8_t *model, uint64_t size, char **paths,
                     unsigned n);

/* A thread writing random patterns in [start, end) of a disk, into its
 * own model, until stopped (at least min_writes writes). */
struct writer {
    pthread_t thread;
    struct disk *disk;
    uint8_t *model;             /* the whole disk's model; only this range */
    uint64_t start, end;
    unsigned min_writes;
    unsigned writes;            /* atomic */
    bool stop;                  /* atomic */
};
void writer_start(struct writer *w);
void writer_stop(struct writer *w);

#endif
