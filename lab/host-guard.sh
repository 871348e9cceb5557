#!/usr/bin/env bash
# Put a blackhole route for the lab range (198.18.0.0/15) in the host's own namespace and verify
# it with `ip route get` (no packet is sent).  Idempotent.  Run as root before any lab traffic.
set -euo pipefail
ip route replace blackhole 198.18.0.0/15
for a in 198.18.0.1 198.19.255.254; do
    out=$(ip route get "$a" 2>&1 || true)
    # a blackhole route makes `ip route get` fail with "Invalid argument" (or print "blackhole")
    if ! grep -qE "blackhole|No route|unreachable|Invalid argument" <<<"$out"; then
        echo "host-guard: $a is routable from the host namespace: refusing" >&2
        echo "$out" >&2
        exit 1
    fi
done
echo "host-guard: 198.18.0.0/15 blackholed in the host namespace"
