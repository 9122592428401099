#!/usr/bin/env bash
# Consume throughput and the broker's CPU per consumed GiB, for two
# chronik-server binaries run alternately on this machine, each on a fresh
# data directory: chronik-bench writes RECORDS 1 KiB records to one
# partition, then reads them all from the start three times, then a
# confluent-kafka consumer (bench/consume_load.py) reads them once.
# Usage: bench/ab_consume.sh OLD_BINARY NEW_BINARY [PAIRS] [RECORDS]
# Prints one line per run: binary; chronik-bench's median records/s and
# the broker's median CPU seconds per GiB read; confluent-kafka's
# records/s and the broker's CPU seconds per GiB read.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
old=$1
new=$2
pairs=${3:-3}
records=${4:-1000000}
ab_tools

# User plus system CPU seconds of process $1 so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

run() {
  local binary=$1 work
  work=$(mktemp -d)
  start_single "$binary" "$work"
  local broker=$single_pid addr=$single_addr
  "$bench" --bootstrap "$addr" --topic ab --json produce \
    --records "$records" --record-size 1024 --acks all --linger-ms 5 --create-topic >/dev/null
  # chronik-bench reads them three times; each read's broker CPU is taken
  # from /proc.
  local reads=() read_cpus=() before after
  for _ in 1 2 3; do
    before=$(cpu_seconds "$broker")
    reads+=("$("$bench" --bootstrap "$addr" --topic ab --json consume --records "$records" --fetch-wait-max-ms 10)")
    after=$(cpu_seconds "$broker")
    read_cpus+=("$(python3 -c "print($after - $before)")")
  done
  before=$(cpu_seconds "$broker")
  local confluent
  confluent=$("$python" bench/consume_load.py "$addr" ab "$records")
  after=$(cpu_seconds "$broker")
  kill "$broker"
  wait "$broker" 2>/dev/null || true
  rm -rf "$work"
  python3 - "$binary" "$records" "$(python3 -c "print($after - $before)")" "$confluent" "${reads[@]}" "${read_cpus[@]}" <<'PY'
import json, statistics, sys
binary, records, confluent_cpu, confluent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
reads = [json.loads(r) for r in sys.argv[5:8]]
cpus = [float(c) for c in sys.argv[8:11]]
gib = records * 1024 / 2**30
rate = statistics.median(r["records_per_sec"] for r in reads)
print(f"{binary}\t{rate:.0f}\t{statistics.median(cpus) / gib:.3f}"
      f"\t{confluent['records_per_s']}\t{confluent_cpu / gib:.3f}", flush=True)
PY
}

alternate "$old" "$new" "$pairs"
