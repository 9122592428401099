#!/usr/bin/env bash
# Produce latency with acks=1 against acks=all, in one run, on a 3-node
# cluster (release build, one partition replicated 3 ways) and on a single
# node. A confluent-kafka producer (bench/produce_load.py: 1 KiB records,
# linger 5 ms, not idempotent, as acks=1 requires) sends at a fixed rate well below saturation, so the latency
# is the broker's, not time queued in the client. Rounds interleave the two
# settings, each on a fresh topic; the table shows the median round.
# Usage: bench/acks_latency.sh [seconds-per-round] [rounds] [records/s]   (defaults 10, 3, 2000)
# PYTHON is the interpreter with confluent-kafka (default target/venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
rate=${3:-2000}
warmup=2
python=${PYTHON:-target/venv/bin/python}
[ -x target/release/chronik-server ] || { echo "build it first: cargo build --release -j 2 -p chronik-server" >&2; exit 1; }
[ -x "$python" ] || { echo "no python at $python (it needs confluent-kafka); set PYTHON" >&2; exit 1; }

. bench/lib.sh
work=$(mktemp -d)
pids=()
cleanup() { stop_pids; rm -rf "$work"; }
trap cleanup EXIT

measure() { # label bootstrap replicas
  local label=$1 bootstrap=$2 replicas=$3 r acks names=()
  for r in $(seq 1 "$rounds"); do for acks in all 1; do names+=("acks-$label-$acks-r$r"); done; done
  create_topics "$bootstrap" "$replicas" "${names[@]}"
  for r in $(seq 1 "$rounds"); do
    for acks in all 1; do
      timeout $((warmup + seconds + 180)) "$python" bench/produce_load.py "$bootstrap" "acks-$label-$acks-r$r" \
        --seconds "$seconds" --warmup "$warmup" --rate "$rate" --config "acks=$acks" --config enable.idempotence=false >"$work/$label-$acks-$r.json"
      echo "$label acks=$acks round $r: $(cat "$work/$label-$acks-$r.json")" >&2
      sleep 1
    done
  done
}

start_cluster "$work/cluster"
measure cluster "127.0.0.1:${cluster_kafka[0]}" 3
stop_cluster
target/release/chronik-server --data-dir "$work/single" --kafka-port 0 >"$work/single.out" 2>"$work/single.log" &
pids+=("$!")
for _ in $(seq 1 300); do grep -q ready "$work/single.out" && break; sleep 0.1; done
measure single "$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$work/single.out")" 1

echo "cores: $(nproc); $rounds round(s) of $seconds s at $rate records/s, 1 KiB records, linger 5 ms; latency from send to acknowledgement"
echo
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
print("| topology | acks | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---|---|---|---|")
for label in ("cluster", "single"):
    for acks in ("all", "1"):
        runs = []
        for r in range(1, rounds + 1):
            with open(f"{work}/{label}-{acks}-{r}.json") as f:
                runs.append(json.loads(f.read().strip().splitlines()[-1]))
        runs.sort(key=lambda run: run["p99_ms"])
        median = runs[len(runs) // 2]
        cells = " | ".join(str(median[k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"))
        print(f"| {'3 nodes, RF 3' if label == 'cluster' else '1 node'} | {acks} | {cells} |")
PY
