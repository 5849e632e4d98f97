#!/usr/bin/env bash
# Resident memory of meshd with 4, 16 and 64 members configured and 4
# established, and the size of the stripped release binary: the development
# build, then the static one the router image ships.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential file
ensure_rust
cargo build --release --bin meshd --example meshlab
echo "== the development build (glibc shared)"
target/release/examples/meshlab bench-footprint target/release/meshd
# The binary the router image ships (scripts/router-image.sh): glibc linked
# in statically, built where that script builds it.
target=$(uname -m)-unknown-linux-gnu
env_target=${target//-/_}
shipped_dir=target/router-image/cargo
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
  "CARGO_TARGET_${env_target^^}_RUSTFLAGS=-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin meshd --target-dir "$shipped_dir"
echo "== as the router image ships it (glibc linked in statically)"
target/release/examples/meshlab bench-footprint "$shipped_dir/$target/release/meshd"
