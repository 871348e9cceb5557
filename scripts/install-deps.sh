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
# The dashboard's small plotly.js bundle (scatter/bar/pie, MIT, 1.2 MB instead of the plotly package's
# 4.8 MB full bundle), pinned and checked; served from coordinator/dashboard/vendor/ (git-ignored).
# Optional: without npm or the registry the dashboard serves the full bundle (docs/dashboard.md).
PLOTLY_JS_PKG="plotly.js-basic-dist-min@4.1.1"
PLOTLY_JS_SHA256="99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"
PLOTLY_JS_DIR=coordinator/dashboard/vendor
if ! echo "$PLOTLY_JS_SHA256  $PLOTLY_JS_DIR/plotly-basic.min.js" | sha256sum -c --status 2>/dev/null; then
    npm_tmp="$(mktemp -d)"
    if command -v npm >/dev/null && (cd "$npm_tmp" && npm pack -q "$PLOTLY_JS_PKG" >/dev/null) \
            && tar -xzf "$npm_tmp"/*.tgz -C "$npm_tmp" package/plotly-basic.min.js package/LICENSE; then
        if ! echo "$PLOTLY_JS_SHA256  $npm_tmp/package/plotly-basic.min.js" | sha256sum -c --status; then
            echo "install-deps: $PLOTLY_JS_PKG does not match its pinned sha256; not installed" >&2
            rm -rf "$npm_tmp"
            exit 1
        fi
        mkdir -p "$PLOTLY_JS_DIR"
        cp "$npm_tmp/package/LICENSE" "$PLOTLY_JS_DIR/plotly-basic.LICENSE"
        cp "$npm_tmp/package/plotly-basic.min.js" "$PLOTLY_JS_DIR/plotly-basic.min.js"
    else
        echo "install-deps: could not fetch $PLOTLY_JS_PKG with npm; the dashboard serves the full plotly.js" >&2
    fi
    rm -rf "$npm_tmp"
fi
