#!/usr/bin/env python3
"""End-to-end latency tails of one release node under a steady load, with
an independent client (confluent-kafka), next to the disk's own floor.

Each run starts a fresh node and a one-partition topic. A producer process
sends RATE records/s of 1 KiB, acks=all, linger 0, each stamped with the
time it was handed to the client; a consumer process reads them with
fetch.wait.max.ms 10 and notes when each arrives. After a warm-up record
has gone through, SECONDS of load are measured. Also measured, in the same
run and on the same disk: 4 KiB write + fdatasync, back to back.

Prints p50/p99/p99.9/max per run and the median over the runs, writes the
latency histogram over time of the run with the median p99 as an SVG, and
(with --stalls) lists the writes of the node's Raft loop and checkpoints
that were slow, from its metrics.

usage: tail_latency.py CHRONIK_BIN [--seconds S] [--runs N] [--rate R] [--svg PATH]
"""

import argparse
import math
import multiprocessing
import os
import re
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

READY = re.compile(r"^chronik-server ready: kafka=(\S+):(\d+) .* http=(\S+)")
TOPIC = "latency"
STAMP = struct.Struct("<q")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def consume(bootstrap, expected, deadline_s, ready, out):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency", "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 10, "fetch.min.bytes": 1, "enable.auto.commit": False})
    consumer.subscribe([TOPIC])
    seen = []
    deadline = time.monotonic() + deadline_s
    while len(seen) < expected and time.monotonic() < deadline:
        # poll, not consume: consume waits to fill its batch or time out.
        message = consumer.poll(0.05)
        now = time.monotonic_ns()
        if message is not None and message.error() is None:
            sent = STAMP.unpack_from(message.value())[0]
            seen.append((sent, now - sent))
            if sent < 0:
                ready.set()
    consumer.close()
    out.send(seen)


def produce(bootstrap, rate, seconds, ready):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    pad = b"v" * (1024 - STAMP.size)
    # The warm-up record: connections, metadata and the consumer's group
    # join are not measured.
    producer.produce(TOPIC, value=STAMP.pack(-1) + pad)
    producer.flush(30)
    if not ready.wait(60):
        raise SystemExit("the consumer did not receive the warm-up record within 60 s")
    began = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        while sent < due:
            producer.produce(TOPIC, value=STAMP.pack(time.monotonic_ns()) + pad)
            sent += 1
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(60)
    return total


def fdatasync_tail(directory, seconds=3.0):
    """p99 and p99.9 of a 4 KiB write + fdatasync, in ms: the disk's own tail."""
    path = os.path.join(directory, "fdatasync-probe.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\0" * 4096
    samples = []
    began = time.monotonic()
    try:
        while time.monotonic() - began < seconds:
            at = time.monotonic_ns()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.monotonic_ns() - at)
    finally:
        os.close(fd)
        os.unlink(path)
    return [percentile(samples, 0.99) / 1e6, percentile(samples, 0.999) / 1e6]


def slow_writes(http):
    """The Raft loop's fsync histogram and the checkpoint histogram, from /metrics."""
    import urllib.request
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines()
             if line.startswith(("chronik_raft_fsync_seconds_bucket", "chronik_raft_loop_iteration_seconds_bucket",
                                 "chronik_partition_checkpoint_seconds_bucket"))]
    return lines


def one_run(binary, seconds, rate, keep_metrics):
    with tempfile.TemporaryDirectory(prefix="tail-latency-", dir=os.environ.get("TMPDIR")) as tmp:
        floor = fdatasync_tail(tmp)
        env = dict(os.environ, CHRONIK_HTTP_ADDR="127.0.0.1:0")
        proc = subprocess.Popen([binary, "--data-dir", str(Path(tmp) / "data"), "--kafka-port", "0"],
                                stdout=subprocess.PIPE, stderr=open(Path(tmp) / "broker.log", "ab"), env=env)
        try:
            match = READY.match(proc.stdout.readline().decode())
            bootstrap, http = f"{match[1]}:{match[2]}", match[3]
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
                future.result(30)
            total = int(rate * seconds)
            receiver, sender = multiprocessing.Pipe(duplex=False)
            ready = multiprocessing.Event()
            reader = multiprocessing.Process(target=consume, args=(bootstrap, total + 1, seconds + 90, ready, sender))
            reader.start()
            produce(bootstrap, rate, seconds, ready)
            seen = receiver.recv()
            reader.join(30)
            metrics = slow_writes(http) if keep_metrics else []
        finally:
            proc.terminate()
            proc.wait(60)
    measured = sorted((sent, lat) for sent, lat in seen if sent >= 0)
    return floor, measured, total, metrics


def summary(latencies_ns):
    ms = [x / 1e6 for x in latencies_ns]
    return [percentile(ms, 0.5), percentile(ms, 0.99), percentile(ms, 0.999), max(ms)]


def write_svg(path, measured, title):
    """Latency histogram over time: quarter-second columns, log-spaced
    latency rows from 0.1 ms to 1 s, shade by the share of the column's
    records, and each column's p99 as a line."""
    start = measured[0][0]
    width_s = 0.25
    columns = int((measured[-1][0] - start) / 1e9 / width_s) + 1
    rows = 32
    low, high = math.log10(0.1), math.log10(1000.0)
    counts = [[0] * rows for _ in range(columns)]
    per_column = [[] for _ in range(columns)]
    for sent, lat in measured:
        c = int((sent - start) / 1e9 / width_s)
        ms = max(lat / 1e6, 0.1)
        r = min(rows - 1, int((math.log10(ms) - low) / (high - low) * rows))
        counts[c][r] += 1
        per_column[c].append(ms)
    cell_w, cell_h, left, top = 8, 10, 60, 30
    w, h = max(left + columns * cell_w + 20, 720), top + rows * cell_h + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">{title}</text>']
    for c in range(columns):
        total = sum(counts[c]) or 1
        for r in range(rows):
            if counts[c][r]:
                share = counts[c][r] / total
                shade = int(230 - 200 * min(1.0, math.log10(1 + 99 * share) / 2))
                y = top + (rows - 1 - r) * cell_h
                out.append(f'<rect x="{left + c * cell_w}" y="{y}" width="{cell_w}" height="{cell_h}" '
                           f'fill="rgb({shade},{shade},255)"/>')
    # The p99 of each column, as a line.
    points = []
    for c in range(columns):
        if per_column[c]:
            p99 = max(percentile(per_column[c], 0.99), 0.1)
            y = top + rows * cell_h - (math.log10(p99) - low) / (high - low) * rows * cell_h
            points.append(f"{left + c * cell_w + cell_w / 2:.1f},{y:.1f}")
    out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="red" stroke-width="1.5"/>')
    for ms in (0.1, 1, 10, 100, 1000):
        y = top + rows * cell_h - (math.log10(ms) - low) / (high - low) * rows * cell_h
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + columns * cell_w}" y2="{y:.1f}" stroke="#ccc"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{ms:g} ms</text>')
    for s in range(0, int(columns * width_s) + 1, 5):
        x = left + s / width_s * cell_w
        out.append(f'<text x="{x:.1f}" y="{top + rows * cell_h + 15}" text-anchor="middle">{s} s</text>')
    out.append(f'<text x="{left}" y="{h - 8}">shade: share of each quarter second\'s records in a latency band; '
               'red: p99 of each quarter second</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--svg")
    parser.add_argument("--stalls", action="store_true")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        floor, measured, total, metrics = one_run(args.binary, args.seconds, args.rate, args.stalls)
        if len(measured) < total:
            raise SystemExit(f"only {len(measured)} of {total} records arrived")
        runs.append((floor, measured, metrics))
    print(f"{args.runs} runs of {args.seconds:.0f} s at {args.rate} records/s, 1 KiB, acks=all, linger 0, "
          "fetch.wait.max.ms 10 (confluent-kafka)")
    print("| run | p50 ms | p99 ms | p99.9 ms | max ms | 4 KiB fdatasync p99 ms | fdatasync p99.9 ms |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for i, (floor, measured, _) in enumerate(runs, 1):
        row = summary([lat for _, lat in measured]) + floor
        rows.append(row)
        print(f"| {i} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    medians = [statistics.median(col) for col in zip(*rows)]
    print("| median | " + " | ".join(f"{v:.2f}" for v in medians) + " |")
    if args.svg:
        middle = sorted(range(len(runs)), key=lambda i: rows[i][1])[len(runs) // 2]
        write_svg(args.svg, runs[middle][1],
                  f"end-to-end latency over time, {args.rate} records/s (run {middle + 1}, p99 {rows[middle][1]:.2f} ms)")
        print(f"histogram over time of run {middle + 1}: {args.svg}")
    if args.stalls:
        for i, (_, _, metrics) in enumerate(runs, 1):
            print(f"run {i} histograms:")
            for line in metrics:
                print("  " + line)


if __name__ == "__main__":
    main()
