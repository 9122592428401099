"""A consumer from confluent-kafka (an independent client) reads COUNT
records of partition 0 of TOPIC from the beginning, with fetch.wait.max.ms
10, and prints one JSON object: the records, seconds and records per second
from the first record to the last.

Usage: consume_load.py BOOTSTRAP TOPIC COUNT [--timeout S]
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("count", type=int)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "consume-load",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    consumer.assign([TopicPartition(args.topic, 0, OFFSET_BEGINNING)])
    seen, first, last = 0, None, None
    deadline = time.monotonic() + args.timeout
    while seen < args.count and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=10000, timeout=0.5):
            if message.error():
                continue
            if message.offset() != seen:
                sys.exit(f"offset {message.offset()} where {seen} was due")
            seen += 1
            last = time.monotonic()
            if first is None:
                first = last
    consumer.close()
    if seen < args.count:
        sys.exit(f"read {seen} of {args.count} records in {args.timeout} s")
    seconds = max(last - first, 1e-9)
    print(json.dumps({"records": seen, "seconds": round(seconds, 3),
                      "records_per_s": round(seen / seconds)}))


if __name__ == "__main__":
    main()
