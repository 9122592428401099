#!/usr/bin/env bash
# Keeps chronik-bench working: a few thousand records through a real broker.
# Usage: bench/smoke.sh [target dir with chronik-server and chronik-bench]
set -euo pipefail
# Its own free port for the HTTP endpoint, whatever else runs here.
export CHRONIK_HTTP_ADDR="${CHRONIK_HTTP_ADDR:-127.0.0.1:0}"
cd "$(dirname "$0")/.."
bin=${1:-target/debug}
work=$(mktemp -d)
"$bin/chronik-server" --data-dir "$work/data" --kafka-port 0 >"$work/ready" 2>"$work/broker.log" &
broker=$!
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q ready "$work/ready" && break; sleep 0.1; done
addr=$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$work/ready")
[ -n "$addr" ] || { echo "broker did not start" >&2; cat "$work/broker.log" >&2; exit 1; }
"$bin/chronik-bench" --bootstrap "$addr" --topic smoke produce --records 5000 --record-size 1024 --create-topic
"$bin/chronik-bench" --bootstrap "$addr" --topic smoke consume --records 5000 --timeout-secs 60
"$bin/chronik-bench" --bootstrap "$addr" --topic smoke --broker-pid "$broker" e2e --rate 1000 --seconds 2 --fetch-wait-max-ms 10
"$bin/chronik-bench" --bootstrap "$addr" --topic smoke-keyed produce --records 3000 --partitions 3 --create-topic \
  --producers 2 --keys 50 --key-distribution zipf
"$bin/chronik-bench" --bootstrap "$addr" --topic smoke-keyed consume --records 3000 --consumers 2 --timeout-secs 60
