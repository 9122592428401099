#!/usr/bin/env bash
# Produce throughput of two chronik-server binaries run alternately on this
# machine, each on a fresh data directory: 300,000 1 KiB records (acks=all,
# linger 5 ms) from chronik-bench, then 10 s at full speed from a
# confluent-kafka producer (bench/produce_load.py), per run.
# Usage: bench/ab_produce.sh OLD_BINARY NEW_BINARY [PAIRS]
# Prints one line per run: binary, chronik-bench records/s and the broker's
# CPU seconds over that run, confluent-kafka records/s and its p99 / max
# latency in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
old=$1
new=$2
pairs=${3:-5}
ab_tools

run() {
  local binary=$1 work
  work=$(mktemp -d)
  start_single "$binary" "$work"
  local broker=$single_pid addr=$single_addr
  local produce confluent
  produce=$("$bench" --bootstrap "$addr" --broker-pid "$broker" --topic ab --json produce \
    --records 300000 --record-size 1024 --acks all --linger-ms 5 --create-topic)
  confluent=$("$python" bench/produce_load.py "$addr" ab2 --seconds 10)
  kill "$broker"
  wait "$broker" 2>/dev/null || true
  rm -rf "$work"
  python3 - "$binary" "$produce" "$confluent" <<'PY'
import json, sys
binary, produce, confluent = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{binary}\t{produce['records_per_sec']:.0f}\t{produce['broker']['cpu_seconds']:.2f}\t{confluent['records_per_s']}"
      f"\t{confluent['p99_ms']}\t{confluent['max_ms']}", flush=True)
PY
}

alternate "$old" "$new" "$pairs"
