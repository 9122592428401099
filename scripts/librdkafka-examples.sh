#!/usr/bin/env bash
# Puts librdkafka's transactional examples (examples/transactions.c and
# transactions-older-broker.c) into target/librdkafka-examples, taken from
# Debian's source package of the installed librdkafka-dev: Debian's binary
# packages do not ship them. Used by tests/python/test_librdkafka_examples.py.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

examples=target/librdkafka-examples
if [ -f "$examples/transactions.c" ] && [ -f "$examples/transactions-older-broker.c" ]; then
  exit 0
fi
echo "== extracting librdkafka's examples from its Debian source package into $examples"
src=$(mktemp -d)
mkdir -p "$src/sources" "$src/lists/partial" "$src/cache/archives/partial"
# deb-src twins of this machine's Debian entries, in a private apt configuration.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src/sources/debian.sources"
fi
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$src/sources/debian.list"
fi
apt_src=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$src/sources"
  -o Dir::State::Lists="$src/lists" -o Dir::Cache="$src/cache" -o APT::Sandbox::User=root)
as_root apt-get "${apt_src[@]}" update -qq
version=$(dpkg-query -W -f='${source:Version}' librdkafka-dev)
(cd "$src" && as_root apt-get "${apt_src[@]}" source --download-only -qq "librdkafka=$version" >/dev/null)
mkdir -p "$examples"
tar -xzf "$src"/librdkafka_*.orig.tar.gz -C "$examples" --strip-components=2 --wildcards \
  '*/examples/transactions.c' '*/examples/transactions-older-broker.c'
as_root rm -rf "$src"
