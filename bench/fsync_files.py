#!/usr/bin/env python3
"""What a group commit costs when the writes it covers are spread over
several files, one per partition, instead of one shared log.

Each round appends BYTES in total, split evenly over N files, then makes
them durable: an fdatasync of every file, one after the other or all at once
from N threads, or one syncfs(2) for the whole file system. Prints the
median and p99 of a round for N = 1, 4 and 12.

usage: fsync_files.py [DIR] [--rounds R] [--kib K]
"""

import argparse
import ctypes
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

LIBC = ctypes.CDLL(None, use_errno=True)


def syncfs(fd):
    if LIBC.syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs")


def rounds(directory, files, total_kib, count, how):
    fds = [os.open(os.path.join(directory, f"log-{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
           for i in range(files)]
    chunk = b"x" * (total_kib * 1024 // files)
    times = []
    pool = ThreadPoolExecutor(files) if how == "at once" else None
    try:
        for _ in range(count):
            start = time.perf_counter()
            for fd in fds:
                os.write(fd, chunk)
            if how == "syncfs":
                syncfs(fds[0])
            elif pool:
                list(pool.map(os.fdatasync, fds))
            else:
                for fd in fds:
                    os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        if pool:
            pool.shutdown()
        for i, fd in enumerate(fds):
            os.close(fd)
            os.unlink(os.path.join(directory, f"log-{i}"))
    times.sort()
    return statistics.median(times) * 1000, times[int(0.99 * len(times))] * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", nargs="?", default=None)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--kib", type=int, default=256, help="bytes appended per round, in KiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(f"{args.kib} KiB appended per round, {args.rounds} rounds: median / p99 ms per round")
        for files, how in ((1, "in turn"), (1, "syncfs"), (4, "in turn"), (4, "at once"), (4, "syncfs"),
                           (12, "in turn"), (12, "at once"), (12, "syncfs")):
            median, p99 = rounds(directory, files, args.kib, args.rounds, how)
            label = ("one shared file" if files == 1 else f"{files} files") + {
                "in turn": ", fdatasyncs in turn" if files > 1 else "",
                "at once": ", fdatasyncs at once",
                "syncfs": ", one syncfs"}[how]
            print(f"  {label:<32} {median:6.2f} / {p99:6.2f}")


if __name__ == "__main__":
    main()
