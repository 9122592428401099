#!/usr/bin/env bash
# Produce throughput of a 3-node cluster (replication factor 3) for two
# chronik-server binaries run alternately on this machine, each on fresh
# data directories: chronik-bench writes RECORDS 1 KiB records (acks=all,
# linger 5 ms) to one partition, three times, then to 12 partitions from
# 4 producers once.
# Usage: bench/ab_cluster.sh OLD_BINARY NEW_BINARY [PAIRS] [RECORDS]
# Prints one line per run: binary, the median of the three single-partition
# runs in records/s, and the 12-partition run's records/s.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
old=$1
new=$2
pairs=${3:-3}
records=${4:-200000}
ab_tools
pids=()

run() {
  local work one=()
  work=$(mktemp -d)
  cluster_binary=$1 start_cluster "$work"
  local addr=127.0.0.1:${cluster_kafka[0]},127.0.0.1:${cluster_kafka[1]},127.0.0.1:${cluster_kafka[2]}
  for i in 1 2 3; do
    one+=("$("$bench" --bootstrap "$addr" --topic ab-$i --json produce --records "$records" --record-size 1024 \
      --acks all --linger-ms 5 --create-topic --replication 3)")
  done
  local twelve
  twelve=$("$bench" --bootstrap "$addr" --topic ab-12p --json produce --records "$records" --record-size 1024 \
    --acks all --linger-ms 5 --create-topic --replication 3 --partitions 12 --producers 4)
  stop_cluster
  rm -rf "$work"
  python3 - "$1" "$twelve" "${one[@]}" <<'PY'
import json, statistics, sys
binary, twelve = sys.argv[1], json.loads(sys.argv[2])
one = [json.loads(r)["records_per_sec"] for r in sys.argv[3:]]
print(f"{binary}\t{statistics.median(one):.0f}\t{twelve['records_per_sec']:.0f}", flush=True)
PY
}

alternate "$old" "$new" "$pairs"
