#!/usr/bin/env bash
# Idle CPU of a 3-node cluster holding many partitions (replication factor 3):
# starts the cluster, creates the partitions, lets it settle, then reports each
# node's CPU use over 30 s as a percentage of one core.
# Usage: bench/idle-cpu.sh [partitions]
set -euo pipefail
cd "$(dirname "$0")/.."
partitions=${1:-1000}
cargo build --release -j 2 --workspace --bins >&2
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_cluster "$work" --offsets-topic-partitions 1
target/release/chronik-bench --bootstrap "127.0.0.1:${cluster_kafka[0]}" --topic idle produce --records 1 \
  --partitions "$partitions" --replication 3 --create-topic >/dev/null
target/release/chronik-server cluster health --addr "127.0.0.1:${cluster_raft[0]}" >/dev/null || sleep 5
sleep 10
hz=$(getconf CLK_TCK)
before=(); for p in "${cluster_pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
sleep 30
echo "idle CPU with $partitions partitions (RF 3) on 3 nodes, over 30 s:"
for i in 0 1 2; do
  after=$(cpu_ticks "${cluster_pids[$i]}")
  python3 -c "print(f'  node $((i+1)): {100 * ($after - ${before[$i]}) / $hz / 30:.1f}% of a core')"
done
