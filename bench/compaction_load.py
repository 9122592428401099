#!/usr/bin/env python3
"""Produce latency while the cleaner compacts the partition being written,
against the same load on a topic that is never compacted.

One release node, cleaner every 100 ms. Two one-partition topics with 1 MiB
segments: `compacted` (cleanup.policy=compact, min.cleanable.dirty.ratio
0.01, so a pass runs nearly every time a segment closes) and `plain`
(cleanup.policy=delete). confluent-kafka writes SECONDS of 1 KiB records
over 10,000 keys to one topic, then to the other, alternating ROUNDS times,
at a fixed rate, acks=all, linger 1 ms. Reported: produce latency (produce
call to delivery report) per topic, and how long the cleaner's passes held
the partition's lock to install (`chronik_log_cleaner_locked_seconds`).

usage: compaction_load.py CHRONIK_BIN [SECONDS] [ROUNDS] [RATE]
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

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

READY = re.compile(r"^chronik-server ready: kafka=(\S+):(\d+) .* http=(\S+)")
KEYS = 10_000


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def load(bootstrap, topic, seconds, rate):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                         "enable.idempotence": True})
    latencies = []
    value = b"v" * 1024

    def delivered(err, msg, sent):
        if err is None:
            latencies.append(time.monotonic() - sent)

    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < seconds:
        due = int((time.monotonic() - began) * rate)
        while sent < due:
            at = time.monotonic()
            producer.produce(topic, key=str(sent % KEYS).encode(), value=value,
                             on_delivery=lambda err, msg, at=at: delivered(err, msg, at))
            sent += 1
        producer.poll(0.001)
    producer.flush(60)
    return latencies


def histogram(http, name):
    """(count, sum, largest bucket bound with observations above the one below)."""
    count = total = 0.0
    buckets = []
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "_count"):
                count = float(line.split()[-1])
            elif line.startswith(name + "_sum"):
                total = float(line.split()[-1])
            elif line.startswith(name + "_bucket"):
                bound = line.split('le="')[1].split('"')[0]
                buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1])))
    largest = next((bound for bound, seen in buckets if seen >= count), None)
    return count, total, largest


def main():
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    with tempfile.TemporaryDirectory(prefix="compaction-load-") as tmp:
        data = Path(tmp) / "data"
        env = dict(os.environ, CHRONIK_HTTP_ADDR="127.0.0.1:0")
        proc = subprocess.Popen([binary, "--data-dir", str(data), "--kafka-port", "0", "--log-cleaner-backoff-ms", "100"],
                                stdout=subprocess.PIPE, stderr=open(Path(tmp) / "broker.log", "ab"), env=env)
        try:
            match = READY.match(proc.stdout.readline().decode())
            bootstrap, http = f"{match[1]}:{match[2]}", match[3]
            admin = AdminClient({"bootstrap.servers": bootstrap})
            common = {"segment.bytes": str(1 << 20)}
            topics = [NewTopic("compacted", 1, 1, config={**common, "cleanup.policy": "compact",
                                                          "min.cleanable.dirty.ratio": "0.01"}),
                      NewTopic("plain", 1, 1, config={**common, "cleanup.policy": "delete"})]
            for future in admin.create_topics(topics).values():
                future.result(30)
            results = {"compacted": [], "plain": []}
            for _ in range(rounds):
                for topic in ("compacted", "plain"):
                    results[topic].append(load(bootstrap, topic, seconds, rate))
            count, total, largest = histogram(http, "chronik_log_cleaner_locked_seconds")
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"{rounds} rounds of {seconds:.0f} s per topic at {rate} records/s, 1 KiB, acks=all, linger 1 ms")
    print("| topic | records | p50 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for topic, runs in results.items():
        latencies = [x for run in runs for x in run]
        row = [percentile(latencies, q) * 1000 for q in (0.5, 0.99, 0.999)] + [max(latencies) * 1000]
        print(f"| {topic} | {len(latencies)} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    mean = total / count * 1000 if count else 0
    print(f"cleaner passes installed: {count:.0f}; lock held {mean:.2f} ms on average, "
          f"every install at most {largest * 1000 if largest else 0:.1f} ms (histogram bucket)")
    p99 = {t: percentile([x for run in r for x in run], 0.99) for t, r in results.items()}
    print(f"p99 ratio compacted/plain: {p99['compacted'] / p99['plain']:.2f}")
    print("medians per round (ms):", {t: [round(statistics.median(run) * 1000, 1) for run in r] for t, r in results.items()})


if __name__ == "__main__":
    main()
