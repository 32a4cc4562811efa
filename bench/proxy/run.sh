#!/usr/bin/env bash
# Proxy benchmarks (release build), figures for the issue note:
#  1. L4: our `proxy` next to HAProxy (splice auto, forced splice, no splice) and nginx
#     stream, all forwarding iperf3 over loopback: single stream and PARALLEL streams of
#     BYTES, CPU and peak RSS, REPS interleaved repetitions. Uses the shared peer runner
#     (PEERS, default ../shared/bench/peers) with its OURS_PROXY_* hook.
#  2. S3: STREAMS concurrent uploads of SIZE_MIB MiB to a real s3-node, directly and
#     through the proxy (tests/examples/s3_proxy_bench.rs).
# Knobs: REPS=3 BYTES=4G PARALLEL=16 STREAMS=16 SIZE_MIB=1024 SKIP_L4=1 SKIP_S3=1 NICE=-10
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PEERS="${PEERS:-$ROOT/../shared/bench/peers}"
WORK="${WORK:-${TMPDIR:-/tmp}/portico-bench-proxy}"
mkdir -p "$WORK"
cargo build --release -p proxy -p tests --bins --examples

if [[ "${SKIP_L4:-0}" != 1 ]]; then
  # Our proxy as the hook wants it: a command taking the listen and sink ports.
  cat > "$WORK/ours.sh" <<SH
#!/usr/bin/env bash
# Renders a one-listener configuration (L4, splice) and runs the proxy in place of this shell.
cat > "$WORK/ours-\$1.toml" <<TOML
[zone]
origin = "bench.example."
ns = ["ns1"]
[[site]]
name = "bench"
[[service]]
name = "sink"
members = [{ site = "bench", node = "sink", address = "127.0.0.1", port = \$2 }]
[proxy]
site = "bench"
[[proxy.listener]]
name = "l4"
protocol = "tcp"
listen = "127.0.0.1:\$1"
service = "sink"
TOML
PORTICO_LOG=warn exec "$ROOT/target/release/proxy" --config "$WORK/ours-\$1.toml"
SH
  chmod +x "$WORK/ours.sh"
  OURS_PROXY_PORT="${OURS_PROXY_PORT:-25499}" \
  OURS_PROXY_CMD="$WORK/ours.sh @PORT@ @SINK_PORT@" \
  REPS="${REPS:-3}" BYTES="${BYTES:-4G}" PARALLEL="${PARALLEL:-16}" NICE="${NICE:-}" \
    "$PEERS/run_proxy_peers.sh"
fi

if [[ "${SKIP_S3:-0}" != 1 ]]; then
  STREAMS="${STREAMS:-16}" SIZE_MIB="${SIZE_MIB:-1024}" REPS="${REPS:-3}" \
    ${NICE:+nice -n "$NICE"} target/release/examples/s3_proxy_bench
fi
