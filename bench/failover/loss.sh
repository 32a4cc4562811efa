#!/usr/bin/env bash
# Probe-path loss: three healthy S3 members probed through harness relays that lose 5% of
# segments and handshakes (delivered a retransmission timeout later) and add up to 50 ms of
# jitter, for LOSS_SECONDS (default 60), the check at its defaults. Prints the probes, the
# segments lost, the failed probes and the false removals (the end-to-end test
# `five_percent_loss_and_jitter_on_the_probe_path_remove_no_healthy_member`, which asserts
# that there are none).
# Knobs: LOSS_SECONDS=60
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
cargo build -q --workspace --bins
LOSS_SECONDS="${LOSS_SECONDS:-60}" cargo test -q -p tests --test e2e \
  five_percent_loss_and_jitter_on_the_probe_path_remove_no_healthy_member -- --nocapture 2>&1 \
  | grep -E "loss test|test result|panicked"
