#!/usr/bin/env bash
# GeoIP at real size (release build): a generated GeoIP2-City-layout database of NETWORKS
# networks (default 3,500,000, the size of a GeoLite2-City file), served by gslb-dns and by
# gdnsd (geoip plugin) side by side in one run. For each: time from start to the first
# answer, resident memory once answering, peak memory (VmHWM); for gslb-dns also resident
# memory after REPORTS rounds of RTT reports (one per site per second, PREFIXES prefixes
# each) and how long each report took to answer. Figures: bench.py's table.
# Knobs: NETWORKS=3500000 REPORTS=30 PREFIXES=500 WORK=/tmp/portico-bench/geoip
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
export WORK="${WORK:-/tmp/portico-bench/geoip}" NETWORKS="${NETWORKS:-3500000}"
export REPORTS="${REPORTS:-30}" PREFIXES="${PREFIXES:-500}"
mkdir -p "$WORK"
for p in gdnsd dnsutils; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    # Package scripts must not start gdnsd on port 53.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
done
cargo build --release -q -p gslb-dns --bin gslb-dns -p geoip-data --bin make-test-mmdb
MMDB="$WORK/city-$NETWORKS.mmdb"
[[ -s $MMDB ]] || target/release/make-test-mmdb --networks "$NETWORKS" "$MMDB"
exec python3 "$HERE/bench.py" "$MMDB"
