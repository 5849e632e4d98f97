#!/usr/bin/env bash
# The main job, shown on the lab: four routers running meshd carry console
# traffic over WireGuard + BGP + BFD; the transit router loses power, once with
# redundant sending (no probe lost) and once without (BFD moves the traffic in
# tens of milliseconds); the router comes back by itself each time. Installs what it needs (Debian 12, as root),
# builds, runs, cleans up.
#
#   scripts/demo.sh           narrated, with pauses to read
#   scripts/demo.sh --check   no pauses; prints the figures, exits non-zero on failure
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential pkg-config file
ensure_rust

say "building meshd and the lab tool (release)"
cargo build --release --bin meshd --example meshlab

say "running the seed demo"
exec target/release/examples/meshlab demo target/release/meshd "$@"
