#!/usr/bin/env bash
# Site-agent benchmark: CPU and memory of one agent probing MEMBERS (200) members with S3
# checks every 500 ms, against real s3-node processes on loopback. Knobs: MEMBERS, DURATION (seconds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release -p gslb-dns -p site-agent -p tests --examples --bins
exec target/release/examples/agent_bench
