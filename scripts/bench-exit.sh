#!/usr/bin/env bash
# A console's traffic to a server in the lab's internet, through a game exit
# and direct, alternating in the same run (3 rounds each; ROUNDS=N to
# change): UDP throughput at a fixed offered rate (UDP_RATE, default 1G)
# with loss, TCP throughput with exit_all, UDP round trips (median, p99),
# and the exit's CPU per packet through its NAT next to a plain tunnel to
# its LAN (PPS datagrams a second each way, default 10000), and its RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" iperf3 stun-server build-essential
ensure_rust
cargo build --release --bin meshd --example meshlab
exec target/release/examples/meshlab bench-exit target/release/meshd
