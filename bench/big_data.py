#!/usr/bin/env python3
"""Memory while a single node takes and serves 10 GiB, and how long it
takes to be ready again with that data on disk.

Starts one release node on a fresh data directory and, with chronik-bench,
produces GIB GiB of 1 KiB records (acks=all, linger 5 ms) to a
one-partition topic, then consumes all of them, sampling the node's RSS
every second throughout. Then restarts the node twice, once after SIGTERM
and once after SIGKILL, and times each restart until the node is ready: its
ready line, then `/ready` answering 200, then one acks=all record produced
and read back at the end of the 10 GiB (confluent-kafka).

Prints the RSS after each GiB produced and at the end of the consumption,
and the restart times; --json prints them as JSON instead.

usage: big_data.py CHRONIK_BIN BENCH_BIN [--gib N] [--json]
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))
from fault_suite import free_port  # noqa: E402

READY = re.compile(r"^chronik-server ready: kafka=(\S+):(\d+) .* http=(\S+)")
TOPIC = "big"
RECORD = 1024
READY_TIMEOUT_S = 120.0


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(1.0):
            try:
                self.samples.append((time.monotonic(), rss_mib(self.pid)))
            except OSError:
                return

    def latest(self):
        return self.samples[-1][1] if self.samples else rss_mib(self.pid)


class Node:
    def __init__(self, binary, data_dir, port):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        self.proc = None
        self.http = None

    def start(self):
        """Starts the node; returns seconds until its ready line."""
        started = time.monotonic()
        self.proc = subprocess.Popen([self.binary, "--data-dir", str(self.data_dir), "--kafka-port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={"PATH": "/usr/bin:/bin", "CHRONIK_HTTP_ADDR": "127.0.0.1:0"})
        while True:
            line = self.proc.stdout.readline().decode()
            if not line:
                sys.exit("the node exited before it was ready")
            match = READY.match(line)
            if match:
                self.http = match[3]
                return time.monotonic() - started

    def stop(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"


def ready_probe(http, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http}/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


def produce_and_read_back(bootstrap, deadline):
    """One acks=all record at the log's end, then read back from its offset."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         "message.timeout.ms": int((deadline - time.monotonic()) * 1000)})
    acked = []
    producer.produce(TOPIC, b"after-restart", partition=0, on_delivery=lambda err, msg: acked.append((err, msg)))
    producer.flush(max(deadline - time.monotonic(), 1))
    if not acked or acked[0][0] is not None:
        sys.exit(f"the record produced after the restart was not acknowledged: {acked}")
    offset = acked[0][1].offset()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "big-data-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, offset)])
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                if message.value() != b"after-restart":
                    sys.exit(f"offset {offset} holds another value after the restart")
                return offset
    finally:
        consumer.close()
    sys.exit("the record produced after the restart was not read back")


def timed_restart(node, sig):
    node.stop(sig)
    started = time.monotonic()
    ready_line = node.start()
    deadline = started + READY_TIMEOUT_S
    if not ready_probe(node.http, deadline):
        sys.exit("/ready did not answer 200 after the restart")
    probe = time.monotonic() - started
    produce_and_read_back(node.bootstrap, deadline)
    return {"ready_line_s": round(ready_line, 2), "ready_probe_s": round(probe, 2),
            "produce_and_read_s": round(time.monotonic() - started, 2)}


def bench(bench_bin, bootstrap, *args):
    out = subprocess.run([bench_bin, "--bootstrap", bootstrap, "--topic", TOPIC, "--json", *args],
                         check=True, capture_output=True, text=True, timeout=3600).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("bench")
    parser.add_argument("--gib", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = args.gib * (1 << 30) // RECORD
    work = Path(tempfile.mkdtemp(prefix="big-data-"))
    node = Node(args.binary, work / "data", free_port())
    try:
        node.start()
        sampler = RssSampler(node.proc.pid)
        sampler.start()
        started = time.monotonic()
        produce = bench(args.bench, node.bootstrap, "produce", "--records", str(records), "--record-size",
                        str(RECORD), "--acks", "all", "--linger-ms", "5", "--create-topic")
        produced_at = time.monotonic()
        consume = bench(args.bench, node.bootstrap, "consume", "--records", str(records),
                        "--timeout-secs", "1800")
        sampler.done.set()
        sampler.join()
        produce_s = produced_at - started
        per_gib = []
        for gib in range(1, args.gib + 1):
            t = started + produce_s * gib / args.gib
            per_gib.append(round(min(sampler.samples, key=lambda s: abs(s[0] - t))[1]))
        rss = {"per_gib_produced_mib": per_gib, "after_consume_mib": round(sampler.samples[-1][1]),
               "max_mib": round(max(s for _, s in sampler.samples))}
        restarts = {"sigterm": timed_restart(node, 15), "sigkill": timed_restart(node, 9)}
        node.stop(15)
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    result = {"gib": args.gib, "produce_mb_per_sec": produce["mb_per_sec"],
              "consume_records_per_sec": consume["records_per_sec"], "rss": rss, "restart": restarts}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.gib} GiB produced at {produce['mb_per_sec']:.0f} MB/s and consumed at "
          f"{consume['records_per_sec']:.0f} records/s")
    print("RSS MiB after each GiB produced: " + " ".join(str(r) for r in per_gib)
          + f"; after consuming it all: {rss['after_consume_mib']}; max {rss['max_mib']}")
    for how, r in restarts.items():
        print(f"restart after {how}: ready line {r['ready_line_s']} s, /ready 200 at {r['ready_probe_s']} s, "
              f"a record produced and read back at {r['produce_and_read_s']} s")


if __name__ == "__main__":
    main()
