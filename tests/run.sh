#!/usr/bin/env bash
# Portico's test command: installs the real tools the end-to-end tests drive (dig, kdig,
# unbound; samba and smbclient; libnfs's nfs-cp; Debian's python3 with boto3; chromium and
# python3-websocket for the dashboard test) and protoc (raft-rs builds its protocol with
# it), checks the formatting and the lints (the habits CI enforces, not only the hook),
# builds every binary and runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(dnsutils knot-dnsutils unbound iproute2 curl protobuf-compiler samba smbclient libnfs-utils python3-boto3 chromium python3-websocket)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "tests/run.sh: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    # Package scripts must not start an unbound service on port 53.
    guard=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    ((guard)) && $sudo rm -f /usr/sbin/policy-rc.d
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
