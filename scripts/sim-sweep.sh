#!/usr/bin/env bash
# Sweeps many seeds of the deterministic simulation (crates/chronik-sim)
# with an optimised build, one process per core. CI runs a fixed range in
# `cargo test`; this is the long search.
#
#   scripts/sim-sweep.sh [FIRST] [COUNT] [NODES] [SECONDS]
#
# Defaults: seeds 1..=2000 on 3 nodes, 20 simulated seconds each. Failing
# seeds are listed at the end with their replay command; the exit status is
# 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

first=${1:-1}
count=${2:-2000}
nodes=${3:-3}
seconds=${4:-20}
jobs=$(nproc)

cargo build -j "$jobs" --release -p chronik-sim
out=$(mktemp -d)
per_job=$(( (count + jobs - 1) / jobs ))
pids=()
for ((j = 0; j < jobs; j++)); do
  a=$(( first + j * per_job ))
  b=$(( a + per_job ))
  end=$(( first + count ))
  (( b > end )) && b=$end
  (( a >= b )) && continue
  target/release/chronik-sim --seeds "$a..$b" --nodes "$nodes" --seconds "$seconds" > "$out/$j.txt" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat "$out"/*.txt | grep -E '^seed ' | sort -n -k2 > "$out/all.txt"
ran=$(wc -l < "$out/all.txt")
failed=$(grep -c 'VIOLATION' "$out/all.txt" || true)
echo "$ran seeds on $nodes nodes, $seconds simulated seconds each: $failed failed"
if [ "$failed" -gt 0 ]; then
  cat "$out"/*.txt | grep -E 'first violated|replay:'
fi
echo "full output: $out"
exit $status
