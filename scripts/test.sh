#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and property tests, the deterministic
# simulations, and the interop/lab tests against real peers in network
# namespaces. Installs what it needs on a fresh Debian 12 machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential pkg-config
ensure_rust
for cmd in bird birdc ip nft; do
  command -v "$cmd" >/dev/null || die "$cmd missing after install"
done

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test (unit, property, interop and lab tests)"
# Lab tests build namespaces with unique names; running test binaries one
# after another keeps the 2-core CI machines from timing out BGP sessions.
cargo test --workspace -- --test-threads=2

say "all tests passed"
