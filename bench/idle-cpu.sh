#!/usr/bin/env bash
# Idle cost of a 3-node cluster holding many partitions (replication factor 3):
# starts the cluster, creates one topic with the partitions and times it until
# every partition has a leader, lets it settle, then reports each node's CPU
# use over 30 s as a percentage of one core, and its resident memory.
# Usage: bench/idle-cpu.sh [partitions]
set -euo pipefail
cd "$(dirname "$0")/.."
partitions=${1:-1000}
python=${PYTHON:-target/venv/bin/python}
cargo build --release -j 2 --workspace --bins >&2
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

start_cluster "$work" --offsets-topic-partitions 1
# Created with confluent-kafka's admin client, then timed until the metadata
# of every partition names a leader.
created=$(timeout 300 "$python" - "127.0.0.1:${cluster_kafka[0]}" "$partitions" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, count = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": bootstrap})
started = time.monotonic()
for future in admin.create_topics([NewTopic("idle", count, 3)], operation_timeout=120, request_timeout=150).values():
    future.result(timeout=200)
while True:
    topic = admin.list_topics(topic="idle", timeout=30).topics["idle"]
    led = sum(1 for p in topic.partitions.values() if p.leader >= 0 and p.error is None)
    if led == count:
        break
    if time.monotonic() - started > 240:
        sys.exit(f"only {led} of {count} partitions have a leader after 240 s")
    time.sleep(0.5)
print(f"{time.monotonic() - started:.1f}")
PY
)
sleep 15
hz=$(getconf CLK_TCK)
before=(); for p in "${cluster_pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
sleep 30
echo "$partitions partitions (RF 3) on 3 nodes: created and led in $created s; idle over 30 s:"
for i in 0 1 2; do
  after=$(cpu_ticks "${cluster_pids[$i]}")
  python3 -c "print(f'  node $((i+1)): {100 * ($after - ${before[$i]}) / $hz / 30:.1f}% of a core, RSS $(rss_mib "${cluster_pids[$i]}") MiB')"
done
