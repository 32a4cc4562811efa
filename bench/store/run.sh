#!/usr/bin/env bash
# Store benchmark: report-to-applied latency on all three nodes, and sustained agent
# reports per second, on a three-node gslb-dns cluster on loopback (127.0.1.1-127.0.3.1).
# Knobs: REPORTS (300), CLIENTS (32), DURATION (5 seconds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release -p gslb-dns -p tests --examples --bins
exec target/release/examples/store_bench
