#!/usr/bin/env bash
# Many L4 sessions through the proxy as root and as an unprivileged user (`nobody`, as a
# systemd unit's User= runs it), under the kernel's default pipe-user-pages-soft: SESSIONS
# iperf3 streams (two clients of SESSIONS/2 each, to two sinks, through two listeners) for
# DURATION seconds, REPS interleaved repetitions; throughput, proxy CPU and bytes per CPU-second.
# With OLD_REV=<commit> the proxy of that commit is built (release, its own target dir)
# and run the same way, side by side.
# Knobs: SESSIONS=200 DURATION=8 REPS=3 OLD_REV= WORK=${TMPDIR:-/tmp}/portico-bench-sessions
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SESSIONS="${SESSIONS:-200}" SECONDS_EACH="${DURATION:-8}" REPS="${REPS:-3}"
WORK="${WORK:-${TMPDIR:-/tmp}/portico-bench-sessions}"
rm -rf "$WORK/run"; mkdir -p "$WORK/run"; chmod 755 "$WORK" "$WORK/run"
command -v iperf3 >/dev/null || { apt-get install -y -qq iperf3 >/dev/null; }
cargo build --release -q -p proxy
declare -A BIN=([new]="$ROOT/target/release/proxy")
if [[ -n "${OLD_REV:-}" ]]; then
  [[ -d "$WORK/old" ]] || git worktree add -f --detach "$WORK/old" "$OLD_REV" >/dev/null
  git -C "$WORK/old" checkout -q --detach "$OLD_REV"
  (cd "$WORK/old" && cargo build --release -q -p proxy --target-dir "$WORK/old-target")
  BIN[old]="$WORK/old-target/release/proxy"
fi
SINK_A=25601 SINK_B=25602 LISTEN_A=25611 LISTEN_B=25612
cat > "$WORK/run/proxy.toml" <<TOML
[zone]
origin = "bench.example."
ns = ["ns1"]
[[site]]
name = "bench"
[[service]]
name = "a"
members = [{ site = "bench", node = "a", address = "127.0.0.1", port = $SINK_A }]
[[service]]
name = "b"
members = [{ site = "bench", node = "b", address = "127.0.0.1", port = $SINK_B }]
[proxy]
site = "bench"
[[proxy.listener]]
name = "a"
protocol = "tcp"
listen = "127.0.0.1:$LISTEN_A"
service = "a"
[[proxy.listener]]
name = "b"
protocol = "tcp"
listen = "127.0.0.1:$LISTEN_B"
service = "b"
TOML
chmod 644 "$WORK/run/proxy.toml"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
iperf3 -s -B 127.0.0.1 -p $SINK_A >/dev/null 2>&1 & pids+=($!)
iperf3 -s -B 127.0.0.1 -p $SINK_B >/dev/null 2>&1 & pids+=($!)
sleep 0.5
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "kernel $(uname -r), $(nproc) cpus, pipe-user-pages-soft $(cat /proc/sys/fs/pipe-user-pages-soft)"
printf '%-4s %-7s %-4s %12s %10s %14s %8s\n' rep binary user "Gbit/s" "cpu s" "MB/cpu-s" "pipes"
results="$WORK/run/results.txt"; : > "$results"
for rep in $(seq 1 "$REPS"); do
  for bin in "${!BIN[@]}"; do
    for user in root nobody; do
      if [[ $user == root ]]; then
        "${BIN[$bin]}" --config "$WORK/run/proxy.toml" 2>"$WORK/run/proxy.log" &
      else
        setpriv --reuid=nobody --regid=nogroup --clear-groups \
          "${BIN[$bin]}" --config "$WORK/run/proxy.toml" 2>"$WORK/run/proxy.log" &
      fi
      proxy=$!
      for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$LISTEN_B) 2>/dev/null && break; sleep 0.1; done
      before=$(ticks $proxy)
      half=$((SESSIONS / 2))
      iperf3 -c 127.0.0.1 -p $LISTEN_A -P $half -t "$SECONDS_EACH" -J > "$WORK/run/a.json" &
      ca=$!
      iperf3 -c 127.0.0.1 -p $LISTEN_B -P $half -t "$SECONDS_EACH" -J > "$WORK/run/b.json" &
      cb=$!
      sleep $((SECONDS_EACH / 2))
      pipes=$(ls -l /proc/$proxy/fd 2>/dev/null | grep -c 'pipe:' || true)
      wait $ca $cb
      after=$(ticks $proxy)
      kill $proxy; wait $proxy 2>/dev/null || true
      python3 - "$WORK/run/a.json" "$WORK/run/b.json" "$before" "$after" "$rep" "$bin" "$user" "$pipes" >> "$results" <<'PY'
import json, sys, os
a, b, before, after, rep, binary, user, pipes = sys.argv[1:]
bits = sum(json.load(open(f))["end"]["sum_received"]["bits_per_second"] for f in (a, b))
seconds = json.load(open(a))["end"]["sum_received"]["seconds"]
cpu = (int(after) - int(before)) / os.sysconf("SC_CLK_TCK")
mb_per_cpu = bits / 8 * seconds / 1e6 / cpu if cpu else 0
print(f"{rep:<4} {binary:<7} {user:<6} {bits/1e9:10.2f} {cpu:10.2f} {mb_per_cpu:14.0f} {pipes:>8}")
PY
      tail -1 "$results"
    done
  done
done
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rep, binary, user, gbit, cpu, per_cpu, pipes = line.split()
    rows[(binary, user)].append((float(gbit), float(per_cpu)))
med = {k: (statistics.median(g for g, _ in v), statistics.median(p for _, p in v)) for k, v in rows.items()}
print("\nmedians: binary user Gbit/s MB/cpu-s")
for k, (g, p) in sorted(med.items()):
    print(f"  {k[0]:<4} {k[1]:<7} {g:8.2f} {p:8.0f}")
for binary in sorted({b for b, _ in med}):
    if (binary, "root") in med and (binary, "nobody") in med:
        g = med[(binary, "nobody")][0] / med[(binary, "root")][0]
        p = med[(binary, "nobody")][1] / med[(binary, "root")][1]
        print(f"{binary}: nobody/root throughput {g:.2f}, per CPU {p:.2f}")
if ("old", "nobody") in med and ("new", "nobody") in med:
    g = med[("new", "nobody")][0] / med[("old", "nobody")][0]
    p = med[("new", "nobody")][1] / med[("old", "nobody")][1]
    print(f"nobody: new/old throughput {g:.2f}, per CPU {p:.2f}")
PY
