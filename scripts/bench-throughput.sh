#!/usr/bin/env bash
# iperf3 TCP C1→C2 over one tunnel: meshd, then wireguard-go (one interface,
# same namespaces), in the same run; prints both, the ratio, and ping RTTs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" iperf3 wireguard-go wireguard-tools build-essential
ensure_rust
cargo build --release --bin meshd --example meshlab
exec target/release/examples/meshlab bench-throughput target/release/meshd
