#!/usr/bin/env bash
# The project's test command. On a fresh Debian machine it first installs
# what the tests drive (kcat, openssl, the Python Kafka clients, kafkajs, Chromium,
# librdkafka's examples), then runs formatting
# and lint checks, the Rust tests (unit, property and integration tests
# against the real binary), the Python client tests, and a benchmark smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v kcat >/dev/null 2>&1 || apt_packages+=(kcat)
# The Rust tests' rdkafka speaks TLS and SCRAM through OpenSSL; the tests make certificates with openssl.
command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
command -v pkg-config >/dev/null 2>&1 || apt_packages+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || apt_packages+=(libssl-dev)
# Debian's python3 refuses a system-wide pip install: the clients go into a virtualenv.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3 python3-venv)
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
# The console test renders the broker's web page in headless Chromium.
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
# librdkafka's own transactional examples are built with gcc and run against the broker.
command -v gcc >/dev/null 2>&1 || apt_packages+=(gcc libc6-dev)
[ -f /usr/include/librdkafka/rdkafka.h ] || apt_packages+=(librdkafka-dev)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "== installing ${apt_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
scripts/librdkafka-examples.sh
echo "== installing Python test dependencies into target/venv"
venv=target/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
echo "== installing kafkajs into target/js"
mkdir -p target/js
cp tests/js/package.json target/js/
(cd target/js && npm install --no-audit --no-fund --silent)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy -j 2 --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo build -j 2 --workspace --bins
cargo test -j 2 --workspace

echo "== Python client tests"
CHRONIK_BIN="$PWD/target/debug/chronik-server" "$venv/bin/python" -m pytest -q tests/python

echo "== benchmark smoke run"
bench/smoke.sh target/debug
