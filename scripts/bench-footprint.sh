#!/usr/bin/env bash
# Resident memory of meshd with 16 members configured and 4 established, and
# the size of the stripped release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential file
ensure_rust
cargo build --release --bin meshd --example meshlab
exec target/release/examples/meshlab bench-footprint target/release/meshd
