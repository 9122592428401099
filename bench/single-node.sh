#!/usr/bin/env bash
# Single-node produce and consume throughput (1 KiB records, acks=all) next to
# the disk's fsync rate and fsync'd write bandwidth, all measured in one run.
# Usage: bench/single-node.sh [records]
set -euo pipefail
# Its own free port for the HTTP endpoint, whatever else runs here.
export CHRONIK_HTTP_ADDR="${CHRONIK_HTTP_ADDR:-127.0.0.1:0}"
cd "$(dirname "$0")/.."
records=${1:-300000}
cargo build --release -j 2 --workspace --bins >&2
work=$(mktemp -d)
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; rm -rf "$work"' EXIT

disk=$(python3 bench/fsync_probe.py "$work" 3)

target/release/chronik-server --data-dir "$work/data" --kafka-port 0 >"$work/ready" 2>"$work/broker.log" &
broker=$!
for _ in $(seq 1 100); do grep -q ready "$work/ready" && break; sleep 0.1; done
addr=$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$work/ready")
[ -n "$addr" ] || { echo "broker did not start" >&2; cat "$work/broker.log" >&2; exit 1; }

produce=$(target/release/chronik-bench --bootstrap "$addr" --topic bench --json produce \
  --records "$records" --record-size 1024 --acks all --linger-ms 5 --create-topic)
consume=$(target/release/chronik-bench --bootstrap "$addr" --topic bench --json consume \
  --records "$records" --fetch-wait-max-ms 10)

python3 - "$disk" "$produce" "$consume" <<'PY'
import json, sys
disk, produce, consume = (json.loads(a) for a in sys.argv[1:4])
rows = [
    ("disk fsyncs/s (4 KiB write + fsync)", f"{disk['fsyncs_per_sec']:.0f}"),
    ("disk MB/s (1 MiB write + fsync)", f"{disk['seq_write_fsync_mb_per_sec']:.1f}"),
    ("produce records/s (1 KiB, acks=all)", f"{produce['records_per_sec']:.0f}"),
    ("produce MB/s", f"{produce['mb_per_sec']:.1f}"),
    ("consume records/s", f"{consume['records_per_sec']:.0f}"),
    ("consume MB/s", f"{consume['mb_per_sec']:.1f}"),
    ("produce MB/s / disk MB/s", f"{produce['mb_per_sec'] / disk['seq_write_fsync_mb_per_sec']:.2f}"),
    ("consume / produce", f"{consume['records_per_sec'] / produce['records_per_sec']:.2f}"),
]
width = max(len(k) for k, _ in rows)
for key, value in rows:
    print(f"{key:<{width}}  {value}")
PY
