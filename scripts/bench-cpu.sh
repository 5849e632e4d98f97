#!/usr/bin/env bash
# Instructions per forwarded packet (callgrind): meshd's R1 of two routers
# sending and receiving 128 B and 1400 B UDP, against boringtun alone on the
# same packets (examples/wg_floor.rs), in the same run; prints both, the
# ratio, and R1's top functions. Counts do not depend on the machine's load.
# --check: fail when a ratio is 20 % above the figures of 2026-12-02
# (examples/meshlab.rs, CPU_RATIO_LIMITS); scripts/test.sh runs it so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" valgrind build-essential
ensure_rust
cargo build --profile bench-cpu --bin meshd --example meshlab --example wg_floor
exec target/bench-cpu/examples/meshlab bench-cpu target/bench-cpu/meshd "$@"
