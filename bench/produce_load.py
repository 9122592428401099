"""A produce load from confluent-kafka (an independent client): 1 KiB
records, acks=all, linger 5 ms, either as fast as the cluster acknowledges
them or at a fixed rate (--rate), until a file appears or a time passes.
Prints one JSON object: records and MB per second over the window, and
per-record latency percentiles (send to acknowledgement) in milliseconds.
At full speed the latency is mostly time queued in the client; measure
latency at a fixed rate below saturation.

Usage: produce_load.py BOOTSTRAP TOPIC (--seconds N | --until FILE) [--rate R] [--warmup S]
                       [--config KEY=VALUE]...
--config adds a setting to the producer's configuration (repeatable), e.g.
security.protocol=SSL, ssl.ca.location=ca.pem, sasl.mechanism=SCRAM-SHA-512.
"""

import argparse
import json
import os
import time

from confluent_kafka import Producer

RECORD = b"x" * 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--until")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, help="records per second; full speed without it")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a producer setting added to the configuration; repeatable")
    args = parser.parse_args()
    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "enable.idempotence": True,
        "queue.buffering.max.messages": 200000,
    }
    for pair in args.config:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--config wants KEY=VALUE, got {pair!r}")
        config[key] = value
    producer = Producer(config)
    latencies = []
    failed = [0]
    window = {"start": None}

    def delivered(sent):
        def report(error, _message):
            if error is not None:
                failed[0] += 1
            elif window["start"] is not None and sent >= window["start"]:
                latencies.append(time.monotonic() - sent)
        return report

    began = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        if window["start"] is None and now - began >= args.warmup:
            window["start"] = now
        if args.seconds is not None and window["start"] is not None and now - window["start"] >= args.seconds:
            break
        if args.until is not None and os.path.exists(args.until) and window["start"] is not None:
            break
        if now - began > args.max_seconds:
            break
        if args.rate is not None and sent >= args.rate * (now - began):
            producer.poll(0.001)
            continue
        try:
            producer.produce(args.topic, RECORD, on_delivery=delivered(now))
            sent += 1
        except BufferError:
            producer.poll(0.005)
        producer.poll(0)
    ended = time.monotonic()
    producer.flush(120)
    latencies.sort()
    seconds = ended - window["start"]

    def pct(q):
        if not latencies:
            return None
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    print(json.dumps({
        "seconds": round(seconds, 1),
        "records": len(latencies),
        "records_per_s": round(len(latencies) / seconds),
        "mb_per_s": round(len(latencies) * len(RECORD) / seconds / 1e6, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "failed": failed[0],
    }))


if __name__ == "__main__":
    main()
