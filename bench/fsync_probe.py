"""Measures the disk under a directory: fsyncs per second (4 KiB write +
fsync), sequential write bandwidth with an fsync per 1 MiB, and dd's
bandwidth for 1 GiB written then fdatasynced once (`conv=fdatasync`)."""

import json
import os
import subprocess
import sys
import time


def measure(path, block, seconds):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    data = b"\0" * block
    count = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            os.write(fd, data)
            os.fsync(fd)
            count += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return count, time.monotonic() - start


def dd_mb_per_sec(path, mib=1024):
    start = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"],
                   check=True, capture_output=True, timeout=600)
    elapsed = time.monotonic() - start
    os.unlink(path)
    return mib * (1 << 20) / elapsed / 1e6


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    path = os.path.join(directory, "fsync-probe.tmp")
    fsyncs, elapsed = measure(path, 4096, seconds)
    blocks, elapsed_mb = measure(path, 1 << 20, seconds)
    dd = dd_mb_per_sec(path)
    print(json.dumps({
        "fsyncs_per_sec": fsyncs / elapsed,
        "seq_write_fsync_mb_per_sec": blocks * (1 << 20) / elapsed_mb / 1e6,
        "dd_fdatasync_mb_per_sec": dd,
    }))


if __name__ == "__main__":
    main()
