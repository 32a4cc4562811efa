#!/usr/bin/env bash
# bench/dns/run.sh - DNS benchmark: Portico's gslb-dns side by side with gdnsd (geoip plugin)
# and Knot DNS (static zone), all serving the same data, loopback only.
#
#   install (Debian: dnsperf gdnsd knot dnsutils) -> render configs into $WORK ->
#   start each server on its own 127.0.0.1 port -> dig correctness matrix ->
#   dnsperf, REPS interleaved repetitions per test -> RSS -> stop by PID -> summary.md
#
# See README.md beside this file for what is measured and every knob.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CONF="$HERE/conf"
WORK="${WORK:-/tmp/portico-bench/dns}"
GSLB_DNS="${GSLB_DNS:-$REPO/target/release/gslb-dns}"
MMDB="${MMDB:-$REPO/geoip-data/test-data/test-city.mmdb}"
BASE_PORT="${BASE_PORT:-25300}"
SERVERS="${SERVERS:-gslb-dns gdnsd knot}"
export REPS="${REPS:-3}" DURATION="${DURATION:-10}" TESTS="${TESTS:-max ecs}"
export CLIENTS="${CLIENTS:-4}" THREADS="${THREADS:-1}" OUTSTANDING="${OUTSTANDING:-100}" TIMEOUT="${TIMEOUT:-1}"
export SRC="${SRC:-127.1.0.5}" ECS_SRC="${ECS_SRC:-127.0.0.1}" ECS_NET="${ECS_NET:-192.0.2.0/24}"
export NICE="${NICE:-}" PIN_CLIENT="${PIN_CLIENT:-}" PIN_SERVERS="${PIN_SERVERS:-}"
export QUERIES="$WORK/queries.txt"
PY="python3 $HERE/bench.py"
T0=$(date +%s)
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ install
PKGS="dnsperf gdnsd knot dnsutils"
install_pkgs() {
  local missing=() p
  for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing packages ${missing[*]} (run as root, or install them)"
  log "installing ${missing[*]}"
  # Package postinst scripts must never start daemons (they would take port 53): guard with a
  # policy-rc.d that denies every start, restoring whatever was there before.
  local rcd=/usr/sbin/policy-rc.d backup=""
  if [[ -e $rcd ]]; then backup="$WORK/policy-rc.d.orig"; cp -p "$rcd" "$backup"; fi
  printf '#!/bin/sh\nexit 101\n' > "$rcd"; chmod 755 "$rcd"
  local ok=0
  for p in "${missing[@]}"; do   # apt-get update only if some package has no candidate
    apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' || { apt-get update -qq; break; }
  done
  for _ in $(seq 1 30); do       # another job may hold the dpkg lock
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
         > "$WORK/apt.log" 2>&1; then ok=1; break; fi
    grep -q 'Could not get lock\|dpkg frontend lock' "$WORK/apt.log" || break
    sleep 10
  done
  if [[ -n $backup ]]; then cp -p "$backup" "$rcd"; rm -f "$backup"; else rm -f "$rcd"; fi
  ((ok)) || { cat "$WORK/apt.log"; die "apt-get install failed"; }
}

# ------------------------------------------------------------------ processes (by PID only)
declare -A PID PORT
# a pidfile's process is ours only if its command line names our work directory
is_ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$WORK/"; }
stop_pid() {
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}
stop_all() {
  local f p
  for f in "$WORK"/pids/*.pid; do
    [[ -e $f ]] || continue
    p=$(cat "$f")
    if [[ -n $p ]] && is_ours "$p"; then stop_pid "$p"; fi
    rm -f "$f"
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

render() { # template destination server-dir port
  sed -e "s|@PORT@|$4|g; s|@DIR@|$3|g; s|@MMDB@|$MMDB|g" "$1" > "$2"
}

start_bg() { # name cmd...   (nice / taskset exec the server: $! is the server's PID)
  local name=$1; shift
  local pre=()
  [[ -n $NICE ]] && pre+=(nice -n "$NICE")
  [[ -n $PIN_SERVERS ]] && pre+=(taskset -c "$PIN_SERVERS")
  "${pre[@]}" "$@" > "$WORK/logs/$name.log" 2>&1 < /dev/null &
  PID[$name]=$!
  echo "${PID[$name]}" > "$WORK/pids/$name.pid"
}

wait_ready() { # name port
  for _ in $(seq 1 100); do
    [[ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$2" static.storage.example A 2>/dev/null)" == 127.0.0.53 ]] && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.2
  done
  log "$1 did not come up on 127.0.0.1:$2; its log:"; tail -20 "$WORK/logs/$1.log"; return 1
}

start_server() { # name port
  local n=$1 port=$2 d="$WORK/srv/$1"
  mkdir -p "$d"
  case $n in
    gslb-dns)
      # the checked-in config, with the GeoIP database path made absolute
      sed -e "s|^database = \".*\"|database = \"$MMDB\"|" "$HERE/portico-bench.toml" > "$d/portico.toml"
      grep -qF "database = \"$MMDB\"" "$d/portico.toml" || die "could not set [geoip] database in $d/portico.toml"
      "$GSLB_DNS" -c "$d/portico.toml" --listen "127.0.0.1:$port" --check-config > "$d/check-config.txt" 2>&1 \
        || { cat "$d/check-config.txt"; die "gslb-dns rejects $d/portico.toml"; }
      start_bg "$n" "$GSLB_DNS" -c "$d/portico.toml" --listen "127.0.0.1:$port" ;;
    gdnsd)
      mkdir -p "$d/zones" "$d/run" "$d/state"
      render "$CONF/gdnsd/config" "$d/config" "$d" "$port"
      cp "$CONF/gdnsd/zones/storage.example" "$d/zones/storage.example"
      start_bg "$n" gdnsd -c "$d" start ;;
    knot)
      mkdir -p "$d/run" "$d/db"
      render "$CONF/knot/knot.conf" "$d/knot.conf" "$d" "$port"
      cp "$CONF/knot/storage.example.zone" "$d/storage.example.zone"
      start_bg "$n" knotd -c "$d/knot.conf" ;;
    *) die "unknown server $n (known: gslb-dns gdnsd knot)" ;;
  esac
  PORT[$n]=$port
  wait_ready "$n" "$port"
}

version_of() {
  case $1 in
    gslb-dns)
      local v rev dirty=""
      v=$("$GSLB_DNS" --version 2>/dev/null | awk '{print $2}')
      rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
      # uncommitted changes to the crates gslb-dns is built from (the binary may include them)
      git -C "$REPO" diff --quiet HEAD -- Cargo.lock gslb-dns topology geoip-data 2>/dev/null || dirty="+dirty"
      echo "$v (HEAD $rev$dirty)" ;;
    gdnsd) dpkg-query -W -f='${Version}' gdnsd 2>/dev/null ;;
    knot) dpkg-query -W -f='${Version}' knot 2>/dev/null ;;
  esac
}

# ------------------------------------------------------------------ main
mkdir -p "$WORK"
[[ -x $GSLB_DNS ]] || die "no $GSLB_DNS: build it first (cd $REPO && cargo build --release -p gslb-dns)"
[[ -r $MMDB ]] || die "no GeoIP test database at $MMDB"
[[ ${SKIP_INSTALL:-0} == 1 ]] || install_pkgs
for t in dnsperf dig gdnsd knotd taskset; do command -v "$t" > /dev/null || die "$t not found"; done

stop_all                                   # leftovers of an earlier run (pidfiles, checked)
rm -rf "$WORK/srv" "$WORK/logs" "$WORK/pids" "$WORK/results"
mkdir -p "$WORK/srv" "$WORK/logs" "$WORK/pids" "$WORK/results"
R="$WORK/results"
$PY queries "$QUERIES"

ARGS=()
i=0
: > "$R/versions.tsv"
for n in $SERVERS; do
  i=$((i + 1)); port=$((BASE_PORT + i))
  log "start $n on 127.0.0.1:$port"
  start_server "$n" "$port" || die "$n failed to start"
  ARGS+=("$n=$port:${PID[$n]}")
  printf '%s\t%s\n' "$n" "$(version_of "$n")" >> "$R/versions.tsv"
done
{
  echo "## run $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) CPUs"
  echo "## gslb-dns $GSLB_DNS ($(stat -c %y "$GSLB_DNS")), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  dpkg-query -W -f='${Package} ${Version}\n' dnsperf gdnsd knot dnsutils 2>/dev/null
} > "$R/environment.txt"

log "correctness: s3.storage.example A by source address (dig -b) and by ECS (dig +subnet)"
check_rc=0
$PY check "$R/check.md" "${ARGS[@]}" || check_rc=$?

log "dnsperf: REPS=$REPS TESTS='$TESTS' DURATION=${DURATION}s -c $CLIENTS -T $THREADS -q $OUTSTANDING"
$PY measure "$R/raw.tsv" "${ARGS[@]}"
$PY memory "$R/memory.tsv" "${ARGS[@]}"

stop_all
echo
$PY summary "$R"
{ echo; echo "## Correctness (dig)"; echo; cat "$R/check.md"; } >> "$R/summary.md"
echo
log "done in $(( $(date +%s) - T0 ))s; summary: $R/summary.md; raw: $R/raw.tsv, dnsperf output: $R/dnsperf.log, server logs: $WORK/logs/"
if ((check_rc)); then log "gslb-dns FAILED correctness checks (see above)"; exit 3; fi
