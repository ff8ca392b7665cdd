#!/usr/bin/env bash
# Installs what the network lab of internal/fleet (Options.Netns) needs on a
# fresh Debian machine: iproute2 (ip: namespaces, veth, bridge) and nftables
# (nft: the cuts between instances). Runs as root; exits non-zero, loudly,
# when a tool is still missing afterwards. Idempotent: does nothing when both
# tools are there.
set -euo pipefail

fail() { echo "netlab-deps: $*" >&2; exit 1; }

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || fail "need root to install ${missing[*]} (the netns tests need root anyway)"
command -v apt-get >/dev/null || fail "apt-get not found: install ${missing[*]} by hand"

export DEBIAN_FRONTEND=noninteractive
echo "netlab-deps: installing ${missing[*]}"
# The package lists of a fresh image may be stale or absent: update only
# when the first attempt fails.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
  apt-get update || fail "apt-get update failed"
  apt-get install -y --no-install-recommends "${missing[@]}" || fail "apt-get install ${missing[*]} failed"
fi
command -v ip >/dev/null || fail "ip is still missing after installing iproute2"
command -v nft >/dev/null || fail "nft is still missing after installing nftables"
