#!/usr/bin/env python3
"""chainfs-powerloss: rebuild the states a machine that lost power could
have left on disk, from a log written by libchainfs-record.so.

    chainfs-powerloss.py --log LOG --dir DIR --initial COPY [--states N]
                         [--seed S] [--oracle GLOB ...]

COPY is a copy of DIR taken before the recorded run.  For each crash state
the files of DIR are rewritten in place (DIR is the directory the run used,
so absolute backing file names in the images stay right), then one line
describing the state is printed:

    state K point P/TOTAL kept=A/B torn=T vanished=NAMES last=RECORD

and one line is read from stdin before the next state is built (the test
checks the state in between; EOF stops).  After the last state: `done N`.
Exit 2 (and a message) if the log shows an unsupported write path.

The model (strict POSIX, like ALICE and CrashMonkey):
  * A crash happens after record P-1: nothing later happened.
  * fsync/fdatasync of a file makes durable the writes, truncates and
    fallocates of that file recorded before the flush *began*, once the
    flush has *ended* before the crash.  fsync of the directory makes the
    names created, unlinked or renamed before it began durable.
  * Everything else that happened before the crash may or may not be on
    disk: each pending write is kept or lost on its own (a write of several
    4 KiB blocks may also be torn: each 4 KiB-aligned block kept or lost on
    its own), in any combination.  Kept writes land in the order they were
    made (a block never goes back to an older version than one the disk
    already held: the page cache and the device keep only the newest).
    Pending name changes form a journal: some prefix of them survives.  A
    new file whose name is not durable may vanish, data and all.
  * A file whose name was unlinked while it was open goes on being
    written (records "NAME\0TOKEN", TOKEN the UNLINK's): it is the same
    file, which survives a crash only if the unlink did not.
  * Files matching an --oracle glob (the workload's own record of what was
    acknowledged: the writer's "synced N" log, the test's marks) are
    written exactly as they were at the crash, all records applied.
Crash points: a mix of uniform random points and points just before and
after flushes end, name changes and writes to a file's first 4 KiB (qcow2
headers); each state draws its own choice of pending records
(none kept, all kept, each kept with probability p, or torn).
"""
import argparse
import fnmatch
import mmap
import os
import random
import shutil
import struct
import sys

MAGIC = 0x4C52464D
HEADER = struct.Struct("<IHHIIQqQQiI")
(CREATE, WRITE, FLUSH_BEGIN, FLUSH_END, TRUNCATE, FALLOCATE, UNLINK, RENAME,
 HINT, FAILURE) = range(1, 11)
OP_NAMES = {CREATE: "create", WRITE: "write", FLUSH_BEGIN: "flush-begin",
            FLUSH_END: "flush-end", TRUNCATE: "truncate",
            FALLOCATE: "fallocate", UNLINK: "unlink", RENAME: "rename",
            HINT: "hint", FAILURE: "failure"}
FLUSH_DIRECTORY = 1
FALLOC_KEEP_SIZE = 0x01
FALLOC_PUNCH_HOLE = 0x02
FALLOC_ZERO_RANGE = 0x10
BLOCK = 4096


class Record:
    __slots__ = ("index", "op", "path", "token", "offset", "length", "arg",
                 "result", "data_at", "data_len", "file_id", "pid")

    def describe(self):
        path = self.path.split("\0")[0] + \
            (" (unlinked)" if "\0" in self.path and self.op != RENAME
             else "")
        if self.op == RENAME:
            path = self.path.replace("\0", " -> ")
        what = f"#{self.index} {OP_NAMES[self.op]} {path}"
        if self.op == WRITE:
            what += f" [{self.offset}, +{self.length})"
        elif self.op in (TRUNCATE, FALLOCATE):
            what += f" off={self.offset} len={self.length} mode={self.arg}"
        elif self.op in (FLUSH_BEGIN, FLUSH_END):
            what += f" token={self.pid}.{self.token}"
        return what


def parse(log):
    """The records of the log, with data left in the mmap."""
    records = []
    size = len(log)
    at = 0
    while at < size:
        if at + HEADER.size > size:
            sys.exit(f"chainfs-powerloss: truncated record at {at}")
        (magic, op, path_len, pid, _tid, token, offset, length, arg, result,
         data_len) = HEADER.unpack_from(log, at)
        if magic != MAGIC or op not in OP_NAMES:
            sys.exit(f"chainfs-powerloss: bad record at {at}")
        at += HEADER.size
        r = Record()
        r.index = len(records)
        r.op, r.pid, r.token, r.offset, r.length = op, pid, token, offset, length
        r.arg, r.result = arg, result
        r.path = bytes(log[at:at + path_len]).decode()
        at += path_len
        r.data_at, r.data_len = at, data_len
        at += data_len
        r.file_id = None
        if op == FAILURE:
            print(f"chainfs-powerloss: the recorded run used an unsupported "
                  f"write path: {r.path}", file=sys.stderr)
            sys.exit(2)
        records.append(r)
    return records


class Model:
    """Files (by identity: a name may be created anew), their content
    records, flushes and the name journal."""

    def __init__(self, records, initial, oracles):
        self.records = records
        self.oracles = oracles
        self.content = {}       # file id -> [records changing its content]
        self.flushes = {}       # file id or "." -> [(end index, begin index)]
        self.names = []         # name changes: CREATE, UNLINK, RENAME records
        self.initial_names = {}  # name -> file id
        self.initial_file = {}   # file id -> path of its initial copy
        unlinked = {}            # UNLINK token -> the file id it unlinked
        for name in sorted(os.listdir(initial)):
            path = os.path.join(initial, name)
            if os.path.isfile(path):
                file_id = f"{name}#0"
                self.initial_names[name] = file_id
                self.initial_file[file_id] = path
        live = dict(self.initial_names)
        generation = {}
        begins = {}

        def file_of(path):
            """The file a record's path names: "NAME\\0TOKEN" is a file
            whose name was unlinked while it was open."""
            if "\0" in path:
                return unlinked.get(int(path.split("\0")[1]))
            return live.get(path)

        for r in records:
            if "/" in r.path and r.op != RENAME:
                sys.exit(f"chainfs-powerloss: {r.path}: subdirectories are "
                         f"not modelled")
            if r.op == CREATE:
                generation[r.path] = generation.get(r.path, 0) + 1
                r.file_id = f"{r.path}#{generation[r.path]}"
                live[r.path] = r.file_id
                self.names.append(r)
            elif r.op == UNLINK:
                r.file_id = live.pop(r.path, None)
                unlinked[r.token] = r.file_id
                self.names.append(r)
            elif r.op == RENAME:
                old, new = r.path.split("\0")
                r.file_id = live.pop(old, None)
                if r.file_id is None:
                    sys.exit(f"chainfs-powerloss: rename of unknown {old}")
                live[new] = r.file_id
                self.names.append(r)
            elif r.op == FLUSH_BEGIN:
                key = "." if r.arg & FLUSH_DIRECTORY else file_of(r.path)
                if key is None:
                    sys.exit(f"chainfs-powerloss: flush of unknown {r.path}")
                r.file_id = key
                begins[(r.pid, r.token)] = (r.index, key)
            elif r.op == FLUSH_END:
                # The file the flush began on (its name may be gone now).
                begin, key = begins.pop((r.pid, r.token))
                r.file_id = key
                if r.result == 0:
                    self.flushes.setdefault(key, []).append((r.index, begin))
            elif r.op in (WRITE, TRUNCATE, FALLOCATE):
                r.file_id = file_of(r.path)
                if r.file_id is None:
                    sys.exit(f"chainfs-powerloss: {r.path}: written but "
                             f"neither in the initial copy nor created")
                self.content.setdefault(r.file_id, []).append(r)
        self.tracked_names = set(self.initial_names) | {
            n for r in self.names for n in r.path.split("\0")}

    def durable_before(self, key, point):
        """Records of key (a file id, or "." for the names) before this
        index are durable at a crash at point."""
        best = 0
        for end, begin in self.flushes.get(key, ()):
            if end < point:
                best = max(best, begin)
        return best

    def is_oracle(self, name):
        return any(fnmatch.fnmatch(name, g) for g in self.oracles)


class FileBuilder:
    """Applies content records to files, keeping one durable base copy per
    file id that only moves forward (crash points are visited in order)."""

    def __init__(self, model, log, work):
        self.model = model
        self.log = log
        self.work = work
        self.applied = {}       # file id -> count of content records in base

    def base_path(self, file_id):
        return os.path.join(self.work, file_id.replace("/", "_"))

    def advance_base(self, file_id, upto_index):
        recs = self.model.content.get(file_id, [])
        done = self.applied.get(file_id)
        path = self.base_path(file_id)
        if done is None:
            source = self.model.initial_file.get(file_id)
            if source:
                shutil.copyfile(source, path)
            else:
                open(path, "wb").close()
            done = 0
        with open(path, "r+b") as f:
            while done < len(recs) and recs[done].index < upto_index:
                self.apply(f.fileno(), recs[done], None)
                done += 1
        self.applied[file_id] = done
        return done

    def apply(self, fd, r, blocks):
        """Apply r; blocks: None for all of a write, else the set of 4 KiB
        block numbers of it to keep."""
        if r.op == WRITE:
            data = self.log[r.data_at:r.data_at + r.data_len]
            if blocks is None:
                os.pwrite(fd, data, r.offset)
                return
            start = r.offset
            end = r.offset + r.data_len
            for b in sorted(blocks):
                lo = max(start, b * BLOCK)
                hi = min(end, (b + 1) * BLOCK)
                os.pwrite(fd, data[lo - start:hi - start], lo)
        elif r.op == TRUNCATE:
            os.ftruncate(fd, r.length)
        elif r.op == FALLOCATE:
            mode = r.arg
            size = os.fstat(fd).st_size
            end = r.offset + r.length
            if mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE):
                zero_end = min(end, size) if mode & FALLOC_KEEP_SIZE else end
                if zero_end > r.offset:
                    os.pwrite(fd, bytes(zero_end - r.offset), r.offset)
            elif not mode & FALLOC_KEEP_SIZE and end > size:
                os.ftruncate(fd, end)

    def build(self, file_id, dest, point, choice, rng, stats):
        """Write file_id as it may be after a crash at point into dest."""
        if self.model.is_oracle(dest.rsplit("/", 1)[-1]):
            durable = point
        else:
            durable = self.model.durable_before(file_id, point)
        done = self.advance_base(file_id, durable)
        shutil.copyfile(self.base_path(file_id), dest)
        recs = self.model.content.get(file_id, [])
        pending = [r for r in recs[done:] if r.index < point]
        if not pending:
            return
        mode, p = choice
        with open(dest, "r+b") as f:
            for r in pending:
                stats["pending"] += 1
                if mode == "all" or durable == point:
                    keep, blocks = True, None
                elif mode == "none":
                    keep, blocks = False, None
                elif mode == "torn" and r.op == WRITE and \
                        (r.offset + r.data_len - 1) // BLOCK > r.offset // BLOCK:
                    first = r.offset // BLOCK
                    last = (r.offset + r.data_len - 1) // BLOCK
                    blocks = {b for b in range(first, last + 1)
                              if rng.random() < p}
                    keep = bool(blocks)
                    if keep and len(blocks) < last - first + 1:
                        stats["torn"] += 1
                    else:
                        blocks = None
                else:
                    keep, blocks = rng.random() < p, None
                if keep:
                    stats["kept"] += 1
                    self.apply(f.fileno(), r, blocks)


def choose_points(model, count, rng):
    """A third uniform, a third just before or after a flush ends, a third
    just before or after a name change or a write to a file's first 4 KiB
    (qcow2 headers: backing pointers, bitmap extensions); and the end."""
    total = len(model.records)
    flushes, headers = set(), set()
    for r in model.records:
        if r.op == FLUSH_END:
            flushes.update((r.index, r.index + 1))
        elif r.op in (CREATE, UNLINK, RENAME) or \
                (r.op == WRITE and r.offset < BLOCK and
                 not model.is_oracle(r.path)):
            headers.update((r.index, r.index + 1))
    pools = [sorted(flushes), sorted(headers)]
    points = {total}
    while len(points) < min(count, total + 1):
        x = rng.random()
        pool = pools[0] if x < 1 / 3 else pools[1] if x < 2 / 3 else None
        if pool:
            points.add(rng.choice(pool))
        else:
            points.add(rng.randint(0, total))
    return sorted(points)


def choose_pending(rng):
    x = rng.random()
    if x < 0.1:
        return ("none", 0.0)
    if x < 0.2:
        return ("all", 1.0)
    if x < 0.6:
        return ("each", rng.choice((0.25, 0.5, 0.75)))
    return ("torn", rng.choice((0.25, 0.5, 0.75)))


def names_at(model, point, rng, stats):
    """name -> file id after a crash at point: the durable name changes,
    then a random prefix of the pending ones (oracles: all of them)."""
    durable = model.durable_before(".", point)
    happened = [r for r in model.names if r.index < point]
    pending = [r for r in happened if r.index >= durable]
    keep = len(happened) - len(pending)
    if pending:
        keep += rng.randint(0, len(pending))
    names = dict(model.initial_names)
    for i, r in enumerate(happened):
        oracle = model.is_oracle(r.path.split("\0")[-1])
        if i >= keep and not oracle:
            if r.op == CREATE:
                stats["vanished"].append(r.path)
            continue
        if r.op == CREATE:
            names[r.path] = r.file_id
        elif r.op == UNLINK:
            names.pop(r.path, None)
        elif r.op == RENAME:
            old, new = r.path.split("\0")
            names.pop(old, None)
            names[new] = r.file_id
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--initial", required=True)
    ap.add_argument("--work", required=True,
                    help="scratch directory for the durable base copies")
    ap.add_argument("--states", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--oracle", action="append", default=[])
    args = ap.parse_args()

    rng = random.Random(args.seed)
    with open(args.log, "rb") as f:
        log = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
            if os.fstat(f.fileno()).st_size else b""
    records = parse(log)
    model = Model(records, args.initial, args.oracle)
    os.makedirs(args.work, exist_ok=True)
    builder = FileBuilder(model, log, args.work)
    points = choose_points(model, args.states, rng)
    total = len(records)
    for k, point in enumerate(points):
        stats = {"pending": 0, "kept": 0, "torn": 0, "vanished": []}
        choice = choose_pending(rng)
        names = names_at(model, point, rng, stats)
        for name in model.tracked_names - set(names):
            path = os.path.join(args.dir, name)
            if os.path.lexists(path):
                os.unlink(path)
        for name, file_id in sorted(names.items()):
            builder.build(file_id, os.path.join(args.dir, name), point,
                          choice, rng, stats)
        last = records[point - 1].describe() if point else "(none)"
        print(f"state {k} point {point}/{total} pending={choice[0]}:"
              f"{choice[1]} kept={stats['kept']}/{stats['pending']} "
              f"torn={stats['torn']} "
              f"vanished={','.join(stats['vanished']) or '-'} last={last}",
              flush=True)
        if not sys.stdin.readline():
            return 0
    print(f"done {len(points)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
