#!/usr/bin/env bash
# Produce throughput over TLS as a ratio to plaintext, on one broker in one
# run: a single chronik-server with a PLAINTEXT, an SSL and a SASL_SSL
# (SCRAM-SHA-512) listener, and a confluent-kafka producer (an independent
# client, bench/produce_load.py: 1 KiB records, acks=all, linger 5 ms, full
# speed) run against each listener in turn. Rounds are interleaved
# (PLAINTEXT, SSL, SASL_SSL, PLAINTEXT, ...) and every run writes to a fresh
# 1-partition topic, so drift of the machine hits all three alike; the ratio
# is taken per round, then the median over the rounds.
# Usage: bench/tls_ratio.sh [seconds-per-round] [rounds]   (defaults 10 and 3)
# CHRONIK_BIN picks the broker (default target/release/chronik-server); it is
# never built here. PYTHON is the interpreter with confluent-kafka (default
# target/venv/bin/python). Exits non-zero if any run fails.
#
# At full speed the latency columns are mostly time queued in the client
# (see bench/produce_load.py); compare them between listeners, not to an SLO.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
warmup=2
bin=${CHRONIK_BIN:-target/release/chronik-server}
python=${PYTHON:-target/venv/bin/python}
case "$seconds$rounds" in *[!0-9]*) echo "usage: $0 [seconds-per-round] [rounds] (whole numbers)" >&2; exit 2 ;; esac
[ "$seconds" -gt 0 ] && [ "$rounds" -gt 0 ] || { echo "seconds and rounds must be positive" >&2; exit 2; }
if [ ! -x "$bin" ]; then
  echo "no broker binary at $bin; build it with: cargo build --release -j 2 -p chronik-server" >&2
  echo "(or point CHRONIK_BIN at one)" >&2
  exit 1
fi
[ -x "$python" ] || { echo "no python at $python (it needs confluent-kafka); set PYTHON" >&2; exit 1; }
command -v openssl >/dev/null || { echo "the openssl CLI is needed to make the certificates" >&2; exit 1; }

. bench/lib.sh
work=$(mktemp -d)
pids=()
cleanup() { stop_pids; rm -rf "$work"; }
trap cleanup EXIT

# A CA and a server certificate for 127.0.0.1 it signs, EC P-256 keys.
ssl() { openssl "$@" >>"$work/openssl.log" 2>&1 || { cat "$work/openssl.log" >&2; return 1; }; }
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/ca-key.pem" -out "$work/ca.pem" -subj "/CN=chronik-bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/key.pem" -out "$work/server.csr" -subj "/CN=127.0.0.1"
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$work/server.ext"
ssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$work/server.ext" -out "$work/cert.pem"

plain_port=$(free_port)
ssl_port=$(free_port)
sasl_port=$(free_port)
"$bin" --data-dir "$work/data" \
  --listeners "PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port,SASL_SSL://127.0.0.1:$sasl_port" \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --bootstrap-user bench:bench-password --allow-everyone-if-no-acl-found true \
  >"$work/out" 2>"$work/log" &
broker=$!
pids+=("$broker")
broker_failed() {
  echo "$1; last lines of its stdout and log:" >&2
  tail -n 5 "$work/out" >&2 || true
  tail -n 30 "$work/log" >&2 || true
  exit 1
}
for _ in $(seq 1 600); do
  grep -q "chronik-server ready" "$work/out" && break
  kill -0 "$broker" 2>/dev/null || broker_failed "the broker exited while starting"
  sleep 0.1
done
grep -q "chronik-server ready" "$work/out" || broker_failed "the broker was not ready within 60 s"
grep -q "SASL_SSL=127.0.0.1:$sasl_port" "$work/out" || broker_failed "the broker did not report the three listeners"

listeners=(PLAINTEXT SSL SASL_SSL)
declare -A addr=(
  [PLAINTEXT]=127.0.0.1:$plain_port
  [SSL]=127.0.0.1:$ssl_port
  [SASL_SSL]=127.0.0.1:$sasl_port
)
client_config() { # listener -> sets the array config: produce_load.py's --config flags
  config=()
  case $1 in
    SSL) config=(--config security.protocol=SSL --config "ssl.ca.location=$work/ca.pem") ;;
    SASL_SSL) config=(--config security.protocol=SASL_SSL --config "ssl.ca.location=$work/ca.pem"
      --config sasl.mechanism=SCRAM-SHA-512 --config sasl.username=bench --config sasl.password=bench-password) ;;
  esac
}
topic() { echo "tls-ratio-$(echo "$1" | tr 'A-Z_' 'a-z-')-r$2"; }

# A fresh 1-partition topic for every run, made before the first run so no
# run pays for a creation.
topics=()
for r in $(seq 1 "$rounds"); do
  for l in "${listeners[@]}"; do topics+=("$(topic "$l" "$r")"); done
done
create_topics "${addr[PLAINTEXT]}" 1 "${topics[@]}" || broker_failed "creating the topics failed"

failed=0
for r in $(seq 1 "$rounds"); do
  for l in "${listeners[@]}"; do
    kill -0 "$broker" 2>/dev/null || broker_failed "the broker exited during the runs"
    client_config "$l"
    # produce_load.py sends for warmup + seconds, then waits up to 120 s for
    # the acknowledgements of what it queued.
    if ! timeout $((warmup + seconds + 180)) "$python" bench/produce_load.py "${addr[$l]}" "$(topic "$l" "$r")" \
        --seconds "$seconds" --warmup "$warmup" "${config[@]}" >"$work/$l-$r.json" 2>"$work/$l-$r.err"; then
      echo "round $r $l: produce_load.py failed (exit or timeout); its last output:" >&2
      tail -n 20 "$work/$l-$r.err" >&2 || true
      failed=1
    fi
    echo "round $r $l: $(cat "$work/$l-$r.json")" >&2
    # Let the broker write out this run before the next one starts.
    sync
    sleep 2
  done
done

echo "cores: $(nproc); broker: $(realpath "$bin"); client: confluent-kafka $("$python" -c 'import confluent_kafka as c; print(c.version()[0], "/ librdkafka", c.libversion()[0])'); $rounds round(s) of $seconds s (+${warmup} s warmup) per listener, 1 KiB records, acks=all, linger 5 ms"
echo
python3 - "$work" "$rounds" "${listeners[@]}" <<'PY' || failed=1
import json, statistics, sys
work, rounds, listeners = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
bad = []
runs = {}
for l in listeners:
    for r in range(1, rounds + 1):
        try:
            with open(f"{work}/{l}-{r}.json") as f:
                run = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            run = None
        if run is None:
            bad.append(f"round {r} {l}: no result")
        elif run.get("failed", 0) > 0 or not run.get("records_per_s"):
            bad.append(f"round {r} {l}: {run.get('failed')} records failed, {run.get('records_per_s')} records/s")
        runs[l, r] = run

def mb(run):  # from records/s: mb_per_s is rounded to 0.1
    return run["records_per_s"] * 1024 / 1e6 if run and run.get("records_per_s") else None

def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"

print("| listener | MB/s per round | median MB/s | median ratio to PLAINTEXT | p50 / p99 / p99.9 / max ms (median round) |")
print("|---|---|---|---|---|")
for l in listeners:
    per_round = [mb(runs[l, r]) for r in range(1, rounds + 1)]
    good = [(v, r) for r, v in enumerate(per_round, 1) if v is not None]
    ratios = [mb(runs[l, r]) / mb(runs[listeners[0], r]) for r in range(1, rounds + 1)
              if mb(runs[l, r]) and mb(runs[listeners[0], r])]
    median = statistics.median(v for v, _ in good) if good else None
    ratio = statistics.median(ratios) if ratios else None
    latency = "-"
    if good:
        # the median round; of an even count, the upper of the middle two
        _, r = sorted(good)[len(good) // 2]
        run = runs[l, r]
        latency = " / ".join(fmt(run.get(k)) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")) + f" (round {r})"
    print(f"| {l} | {', '.join(fmt(v) for v in per_round)} | {fmt(median)} | {fmt(ratio, 3)} | {latency} |")
if bad:
    print("\nFAILED:\n" + "\n".join(bad), file=sys.stderr)
    sys.exit(1)
PY
exit "$failed"
