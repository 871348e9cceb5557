#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for Tocsin: the system tools the probe and the lab use
# and the Python packages (the project itself, editable, with every extra).  Idempotent; as root.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    # iproute2/nftables: the lab; fping/scamper: benchmark peers; libpcap: scapy's capture filters;
    # chromium: the dashboard's browser tests; procps: sysctl.
    $SUDO apt-get install -y -qq --no-install-recommends \
        iproute2 nftables fping scamper libpcap0.8 procps chromium ca-certificates >/dev/null
fi
python3 -m pip install -q -e '.[coordinator,traceroute,dev]'
