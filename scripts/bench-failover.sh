#!/usr/bin/env bash
# The seed square twice in one run, once as the stock assembly (wireguard-go +
# BIRD 2, BFD 100 ms x 3) and once with meshd: power cuts of the transit
# router (10 each; RUNS=N to change), median and worst gap of a 200 pps probe
# stream for both and the ratio, zero-loss check with redundant sending, and
# BFD's cost per tunnel.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" wireguard-go build-essential
ensure_rust
cargo build --release --bin meshd --example meshlab
exec target/release/examples/meshlab bench-failover target/release/meshd
