#!/usr/bin/env bash
# The main job, shown on the lab. Installs what it needs (as root, on Debian 12),
# builds, and runs the scenario with a narrative of what really happened.
#
# Until the seed demo lands this runs the BIRD interop scenario: mesh-core's BGP
# session against a real BIRD 2 in two network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential pkg-config
ensure_rust

say "building (release)"
cargo build --release --workspace --tests

say "running: mesh-core's BGP speaker peering with a real BIRD 2"
cargo test --release --test bird_interop -- --nocapture --test-threads=1 2>&1 \
  | grep -E '^\[|^test |test result' 
