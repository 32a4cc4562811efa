#!/usr/bin/env bash
# Failover benchmark (release build): three gslb-dns nodes, site agents with the default s3
# check, real S3 nodes; KILLS hard kills (SIGKILL, then restart) and KILLS hangs (SIGSTOP,
# then SIGCONT) of one storage node, and KILLS hard kills with a client on the site's S3
# proxy (passive health); p50/p95/max of kill -> the last DNS node stops answering it
# (tests/examples/failover_bench.rs).
# Knobs: KILLS=20
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
cargo build --release -q -p gslb-dns -p site-agent -p proxy -p tests --bins --examples
KILLS="${KILLS:-20}" target/release/examples/failover_bench
