#!/usr/bin/env bash
# Failover benchmark (release build): three gslb-dns nodes, site agents with the default s3
# check, real S3 nodes; KILLS hard kills (SIGKILL, then restart) and KILLS hangs (SIGSTOP,
# then SIGCONT) of one storage node, and KILLS hard kills with a client on the site's S3
# proxy (passive health), and KILLS whole-site losses (the site's agent and both its S3
# nodes); p50/p95/max of kill -> the last DNS node stops answering it
# (tests/examples/failover_bench.rs); gdnsd with its fastest monitoring on the same kills.
# Knobs: KILLS=20, MODES=hard,hang,proxied,site, WATCH=true (false: the agents hold no watch
# connections, as for a host that dies rather than a process)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# gdnsd runs beside it on the same kills, with its fastest documented monitoring.
if ! dpkg-query -W -f='${Status}' gdnsd 2>/dev/null | grep -q "ok installed"; then
  # Package scripts must not start gdnsd on port 53.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdnsd >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
cargo build --release -q -p gslb-dns -p site-agent -p proxy -p tests --bins --examples
KILLS="${KILLS:-20}" target/release/examples/failover_bench
