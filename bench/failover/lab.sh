#!/usr/bin/env bash
# A whole site lost in a lab of network namespaces (root: `ip netns`): three sites behind a
# router, each with a gslb-dns node of the store, its agent, its S3 proxy and two real S3
# nodes (sin's IPv6-only), and unbound in a client namespace priming the zone's NS set and
# glue. fra's link goes down and comes back, then fra is partitioned from the other sites
# but not from its clients, and healed. Prints how long each step took and how many
# resolutions and S3 GETs failed (the end-to-end test
# `a_whole_site_lost_or_partitioned_in_a_lab_of_namespaces`, which asserts none did).
# Knobs: RUNS=1
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
cargo build -q --workspace --bins
for _ in $(seq "${RUNS:-1}"); do
  cargo test -q -p tests --test e2e a_whole_site_lost_or_partitioned_in_a_lab_of_namespaces \
    -- --nocapture 2>&1 | grep -E "site lab|test result|panicked"
done
