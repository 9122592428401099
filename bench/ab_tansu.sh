#!/usr/bin/env bash
# Single-node produce against tansu's in-memory engine, both brokers up side
# by side and their runs alternated, so that the machine's swings hit both:
# chronik-bench writes RECORDS 1 KiB records (acks=all, linger 5 ms) to a
# new one-partition topic on each in turn, RUNS times.
# Usage: bench/ab_tansu.sh [RUNS] [RECORDS]
# Prints one line per round: each broker's records/s and CPU seconds, and
# their ratio; then the median ratio. tansu comes from bench/compare.sh's
# cache (TANSU to use another binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
runs=${1:-6}
records=${2:-200000}
tansu=${TANSU:-${CHRONIK_BENCH_CACHE:-$HOME/.cache/chronik-bench}/tansu/bin/tansu}
[ -x "$tansu" ] || { echo "no tansu at $tansu: run bench/compare.sh once, or set TANSU" >&2; exit 1; }
ab_tools
cargo build --release -j 2 -p chronik-server >&2
work=$(mktemp -d)
pids=()
trap 'stop_pids; rm -rf "$work"' EXIT

start_single target/release/chronik-server "$work"
pids+=("$single_pid")
start_tansu "$work/tansu" "memory://tansu/"
pids+=("$tansu_pid")

produce() { # bootstrap topic pid -> one JSON report
  "$bench" --bootstrap "$1" --topic "$2" --broker-pid "$3" --json produce \
    --records "$records" --record-size 1024 --acks all --linger-ms 5 --create-topic
}

reports=()
for i in $(seq 1 "$runs"); do
  reports+=("$(produce "$single_addr" "ab-$i" "$single_pid")" "$(produce "$tansu_addr" "ab-$i" "$tansu_pid")")
done
python3 - "${reports[@]}" <<'PY'
import json, statistics, sys
reports = [json.loads(r) for r in sys.argv[1:]]
ratios = []
for chronik, tansu in zip(reports[0::2], reports[1::2]):
    ratio = chronik["records_per_sec"] / tansu["records_per_sec"]
    ratios.append(ratio)
    print(f"chronik {chronik['records_per_sec']:,.0f} records/s, {chronik['broker']['cpu_seconds']:.2f} CPU s"
          f"\ttansu memory {tansu['records_per_sec']:,.0f} records/s, {tansu['broker']['cpu_seconds']:.2f} CPU s"
          f"\tratio {ratio:.2f}")
print(f"median ratio chronik / tansu memory: {statistics.median(ratios):.2f}")
PY
