#!/usr/bin/env bash
# The cost of metrics on the produce path: produce throughput of a broker
# recording metrics as a ratio to one started with --metrics false, in one
# run. Both brokers (release build) run side by side on fresh data
# directories; a confluent-kafka producer (an independent client,
# bench/produce_load.py: 1 KiB records, acks=all, linger 5 ms, full speed)
# writes to each in turn, to a fresh 1-partition topic per run (deleted
# after it), rounds interleaved and the order flipped every round (on, off,
# off, on, ...) so that neither broker always runs after the other's
# writeback. The ratio is taken per round, then the median over rounds.
# During the "on" runs /metrics is scraped every SCRAPE_SECONDS (default 15,
# Prometheus' default; 0 scrapes not at all).
# Usage: bench/metrics_ratio.sh [seconds-per-round] [rounds]   (defaults 10 and 5)
# SCRAPE_SECONDS: how often /metrics is scraped during the "on" runs.
# CHRONIK_BIN picks the broker (default target/release/chronik-server); it is
# never built here. PYTHON is the interpreter with confluent-kafka (default
# target/venv/bin/python). Exits non-zero if any run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-5}
warmup=2
bin=${CHRONIK_BIN:-target/release/chronik-server}
python=${PYTHON:-target/venv/bin/python}
case "$seconds$rounds" in *[!0-9]*) echo "usage: $0 [seconds-per-round] [rounds] (whole numbers)" >&2; exit 2 ;; esac
[ "$seconds" -gt 0 ] && [ "$rounds" -gt 0 ] || { echo "seconds and rounds must be positive" >&2; exit 2; }
[ -x "$bin" ] || { echo "no broker binary at $bin; build it with: cargo build --release -j 2 -p chronik-server" >&2; exit 1; }
[ -x "$python" ] || { echo "no python at $python (it needs confluent-kafka); set PYTHON" >&2; exit 1; }

. bench/lib.sh
work=$(mktemp -d)
pids=()
cleanup() { stop_pids; rm -rf "$work"; }
trap cleanup EXIT

declare -A kafka http
for mode in on off; do
  flag=true
  [ "$mode" = off ] && flag=false
  "$bin" --data-dir "$work/$mode" --kafka-port 0 --http-addr 127.0.0.1:0 --metrics "$flag" \
    >"$work/$mode.out" 2>"$work/$mode.log" &
  pids+=("$!")
  for _ in $(seq 1 600); do grep -q "chronik-server ready" "$work/$mode.out" && break; sleep 0.1; done
  grep -q "chronik-server ready" "$work/$mode.out" || { echo "broker ($mode) not ready; its log:" >&2; tail -20 "$work/$mode.log" >&2; exit 1; }
  kafka[$mode]=$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$work/$mode.out")
  http[$mode]=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$work/$mode.out")
done
topic() { echo "metrics-$1-r$2"; }
for mode in on off; do
  names=()
  for r in $(seq 1 "$rounds"); do names+=("$(topic "$mode" "$r")"); done
  create_topics "${kafka[$mode]}" 1 "${names[@]}"
done

failed=0
for r in $(seq 1 "$rounds"); do
  order=(on off)
  [ $((r % 2)) -eq 0 ] && order=(off on)
  for mode in "${order[@]}"; do
    scraper=""
    if [ "$mode" = on ] && [ "${SCRAPE_SECONDS:-15}" -gt 0 ]; then
      ( while :; do curl -s -o /dev/null "http://${http[on]}/metrics"; sleep "${SCRAPE_SECONDS:-15}"; done ) &
      scraper=$!
    fi
    if ! timeout $((warmup + seconds + 180)) "$python" bench/produce_load.py "${kafka[$mode]}" "$(topic "$mode" "$r")" \
        --seconds "$seconds" --warmup "$warmup" >"$work/$mode-$r.json" 2>"$work/$mode-$r.err"; then
      echo "round $r $mode: produce_load.py failed; its last output:" >&2
      tail -n 20 "$work/$mode-$r.err" >&2 || true
      failed=1
    fi
    [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
    echo "round $r metrics $mode: $(cat "$work/$mode-$r.json")" >&2
    delete_topics "${kafka[$mode]}" "$(topic "$mode" "$r")"
    sync
    sleep 2
  done
done

echo "cores: $(nproc); broker: $(realpath "$bin"); client: confluent-kafka $("$python" -c 'import confluent_kafka as c; print(c.version()[0], "/ librdkafka", c.libversion()[0])'); $rounds round(s) of $seconds s (+${warmup} s warmup) per broker, 1 KiB records, acks=all, linger 5 ms"
echo
python3 - "$work" "$rounds" <<'PY' || failed=1
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def load(mode, r):
    try:
        with open(f"{work}/{mode}-{r}.json") as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
runs = {(m, r): load(m, r) for m in ("on", "off") for r in range(1, rounds + 1)}
bad = [f"round {r} {m}" for (m, r), run in runs.items() if not run or not run.get("records_per_s") or run.get("failed")]
rate = lambda m, r: runs[m, r]["records_per_s"] if runs[m, r] and runs[m, r].get("records_per_s") else None
ratios = [rate("on", r) / rate("off", r) for r in range(1, rounds + 1) if rate("on", r) and rate("off", r)]
print("| metrics | records/s per round | median records/s | p99 / p99.9 / max ms (median round) |")
print("|---|---|---|---|")
for m in ("on", "off"):
    per = [rate(m, r) for r in range(1, rounds + 1)]
    good = sorted((v, r) for r, v in enumerate(per, 1) if v)
    run = runs[m, good[len(good) // 2][1]] if good else {}
    tail = " / ".join(str(run.get(k, "-")) for k in ("p99_ms", "p999_ms", "max_ms"))
    median = f"{statistics.median(v for v, _ in good):.0f}" if good else "-"
    print(f"| {m} | {', '.join('-' if v is None else f'{v:.0f}' for v in per)} | {median} | {tail} |")
if ratios:
    print(f"\nratio on/off per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
if bad:
    print("FAILED: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
exit "$failed"
