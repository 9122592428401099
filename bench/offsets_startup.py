#!/usr/bin/env python3
"""Startup time of a node holding many committed offsets, before and after
__consumer_offsets is compacted.

One node commits OFFSETS offsets (one group, PARTITIONS partitions per
OffsetCommit, each partition's offset rising every time) with the cleaner
held off, so __consumer_offsets keeps every record. The node is restarted
ROUNDS times and each start timed (process start to the ready line, which
follows loading the offsets). Then the cleaner runs, and the restarts are
timed again. __consumer_offsets gets 8 MiB segments so that compaction
reaches all but the last few MiB.

usage: offsets_startup.py CHRONIK_BIN [OFFSETS] [ROUNDS]
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

PARTITIONS = 100
READY = re.compile(r"^chronik-server ready: kafka=(\S+):(\d+) .* http=(\S+)")


def start(binary, data, backoff_ms, port=0):
    began = time.monotonic()
    env = dict(os.environ, CHRONIK_HTTP_ADDR="127.0.0.1:0")
    proc = subprocess.Popen(
        [binary, "--data-dir", str(data), "--kafka-port", str(port), "--offsets-topic-partitions", "1",
         "--log-cleaner-backoff-ms", str(backoff_ms)],
        stdout=subprocess.PIPE, stderr=open(data.parent / "broker.log", "ab"), env=env)
    line = proc.stdout.readline().decode()
    elapsed = time.monotonic() - began
    match = READY.match(line)
    if not match:
        proc.kill()
        sys.exit(f"no ready line: {line!r}")
    return proc, f"{match[1]}:{match[2]}", match[3], elapsed


def stop(proc):
    proc.terminate()
    proc.wait(60)


def metric(http, name):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def offsets_bytes(data):
    return sum(f.stat().st_size for f in (data / "partitions").glob("__consumer_offsets-*/*.log"))


def timed_starts(binary, data, backoff_ms, rounds, port):
    times = []
    for _ in range(rounds):
        proc, _, _, elapsed = start(binary, data, backoff_ms, port)
        times.append(elapsed)
        stop(proc)
    return times


def main():
    binary = sys.argv[1]
    offsets = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory(prefix="offsets-startup-") as tmp:
        data = Path(tmp) / "data"
        proc, bootstrap, _, _ = start(binary, data, backoff_ms=10**9)
        port = int(bootstrap.rsplit(":", 1)[1])
        admin = AdminClient({"bootstrap.servers": bootstrap})
        resource = ConfigResource("topic", "__consumer_offsets", set_config={
            "cleanup.policy": "compact", "segment.bytes": str(8 << 20), "min.cleanable.dirty.ratio": "0.01"})
        for future in admin.alter_configs([resource]).values():
            future.result(30)
        admin.create_topics([NewTopic("source", PARTITIONS, 1)])["source"].result(60)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "startup", "enable.auto.commit": False})
        began = time.monotonic()
        for i in range(1, offsets // PARTITIONS + 1):
            consumer.commit(offsets=[TopicPartition("source", p, i) for p in range(PARTITIONS)], asynchronous=False)
        commit_seconds = time.monotonic() - began
        consumer.close()
        stop(proc)
        before_bytes = offsets_bytes(data)
        before = timed_starts(binary, data, 10**9, rounds, port)

        proc, _, http, _ = start(binary, data, backoff_ms=200, port=port)
        deadline = time.monotonic() + 600
        while metric(http, "chronik_log_cleaner_passes_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        removed = metric(http, "chronik_log_cleaner_records_removed_total")
        stop(proc)
        after_bytes = offsets_bytes(data)
        after = timed_starts(binary, data, 10**9, rounds, port)

    print(f"committed {offsets} offsets in {commit_seconds:.1f} s; the cleaner removed {removed:.0f} records")
    print("| __consumer_offsets | log bytes | start (median of %d) | starts |" % rounds)
    print("|---|---|---|---|")
    for name, size, times in (("before compaction", before_bytes, before), ("after compaction", after_bytes, after)):
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {name} | {size / 2**20:.1f} MiB | {statistics.median(times):.2f} s | {runs} |")
    print(f"ratio after/before: {statistics.median(after) / statistics.median(before):.3f}")


if __name__ == "__main__":
    main()
