#!/usr/bin/env bash
# The main job, shown on the lab: four routers running meshd carry console
# traffic over WireGuard + BGP + BFD; the transit router loses power, once with
# redundant sending (no probe lost) and once without (BFD moves the traffic in
# tens of milliseconds); the router comes back by itself each time. Installs what it needs (Debian 12, as root),
# builds, runs, cleans up.
#
#   scripts/demo.sh           narrated, with pauses to read
#   scripts/demo.sh --check   no pauses; prints the figures, exits non-zero on failure
#   scripts/demo.sh --vm      the same on four arm64 router VMs of 64 MB (QEMU):
#                             builds the router image first (scripts/router-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential pkg-config file
ensure_rust

vm=0
args=()
for a in "$@"; do
  case "$a" in
    --vm) vm=1 ;;
    *) args+=("$a") ;;
  esac
done

say "building meshd and the lab tool (release)"
cargo build --release --bin meshd --example meshlab

if [ "$vm" = 1 ]; then
  ensure_packages qemu-system-arm
  scripts/router-image.sh aarch64
  say "running the seed demo on router VMs"
  exec target/release/examples/meshlab demo-vm target/release/meshd "${args[@]}"
fi
say "running the seed demo"
exec target/release/examples/meshlab demo target/release/meshd "${args[@]}"
