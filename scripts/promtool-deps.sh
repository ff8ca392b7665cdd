#!/usr/bin/env bash
# Provides promtool, which `make lint` uses to check and unit-test the
# Prometheus rules of deploy/monitoring/: the one in PATH, else
# bin/tools/promtool, else it takes promtool out of Debian's package
# prometheus (apt-get download: no install, so no Prometheus server set up
# or started, and no root needed unless the package lists must be
# updated). Exits non-zero, loudly, when promtool cannot be had. Prints the
# path of the promtool to use.
set -euo pipefail

fail() { echo "promtool-deps: $*" >&2; exit 1; }

cd "$(dirname "$0")/.."
dest=bin/tools/promtool
if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
fi
if [ -x "$dest" ]; then
  echo "$dest"
  exit 0
fi
command -v apt-get >/dev/null || fail "promtool is missing and apt-get is not there: install promtool (Debian: package prometheus) by hand"
command -v dpkg-deb >/dev/null || fail "promtool is missing and dpkg-deb is not there to unpack Debian's prometheus"

tmp=$(mktemp -d)
# apt-get downloads as its _apt user where it can: let it into the directory.
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "promtool-deps: fetching Debian's prometheus for its promtool" >&2
# The package lists of a fresh image may be stale or absent: update only
# when the first attempt fails.
if ! (cd "$tmp" && apt-get download prometheus >&2); then
  [ "$(id -u)" -eq 0 ] || fail "apt-get download prometheus failed; updating the package lists (apt-get update) needs root"
  apt-get update >&2 || fail "apt-get update failed"
  (cd "$tmp" && apt-get download prometheus >&2) || fail "apt-get download prometheus failed"
fi
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" || fail "unpacking prometheus failed"
[ -x "$tmp/root/usr/bin/promtool" ] || fail "Debian's prometheus holds no usr/bin/promtool"
mkdir -p "$(dirname "$dest")"
cp "$tmp/root/usr/bin/promtool" "$dest"
"$dest" --version >&2 || fail "$dest does not run"
echo "$dest"
