#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and property tests, a short run of
# every fuzz target, the deterministic simulations, and the interop/lab
# tests against real peers in network
# namespaces. Installs what it needs on a fresh Debian 12 machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages "${LAB_PACKAGES[@]}" build-essential pkg-config file nodejs stun-client stun-server stress-ng busybox-static \
  chromium fonts-dejavu-core
command -v npm >/dev/null || ensure_packages npm
ensure_rust
for cmd in bird birdc ip nft; do
  command -v "$cmd" >/dev/null || die "$cmd missing after install"
done

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test (unit, property, interop and lab tests)"
# The failover tests, the impairment profiles and the packet loop's latency
# measure milliseconds, the NAT matrix runs eleven daemons, the game
# exits' lab waits out a two-minute mapping, and the discovery storm, power
# cut and hostile member count BFD downs and lost game packets, and the
# invite lab times a flood of join datagrams: they run below in a release
# build.
cargo test --workspace -- --skip failover_ --skip nat_matrix --skip consoles_get_an_open_nat \
  --skip silent_control_clients --skip a_reload_whose_endpoint_name --skip status_and_reloads_in_a_loop \
  --skip a_log_pipe_nobody_reads --skip a_router_kept_off_the_cpu --skip impaired_ --skip four_arm64_router_vms \
  --skip discovery_follows_the_new_paths --skip discovery_storm_from_c1 \
  --skip discovery_from_a_hostile_member --skip homes_join_by_invite --skip a_hand_written_mesh

say "the LuCI pages in headless Chromium, on a stand-in for LuCI (tests/openwrt/browser)"
npm ci --prefix tests/openwrt/browser --no-audit --no-fund --loglevel=error
node tests/openwrt/browser/run.js --screenshots target/luci-screenshots

say "fuzzing: every fuzz target for 20 s from its committed corpus (scripts/fuzz.sh)"
scripts/fuzz.sh 20

say "failover on real daemons: BFD with a stock BIRD member, power cuts (release build)"
cargo test --release --test lab_failover -- --test-threads=1

say "impairment profiles: jitter, an upload queue, 5% and 10% loss, SIGSTOP, a CPU hog: no BGP flap (release build)"
MESHD_IMPAIR_SECS=20 cargo test --release --test lab_impair -- --test-threads=1 --nocapture

say "the packet loop never waits for a control client, a name lookup or its log, nor takes its own stall for a member's silence (release build)"
cargo test --release --test lab_seed -- --nocapture --test-threads=1 \
  silent_control_clients a_reload_whose_endpoint_name status_and_reloads_in_a_loop \
  a_log_pipe_nobody_reads a_router_kept_off_the_cpu

say "invites: homes join by token; expired, reused, damaged and flooded tokens refused (release build)"
cargo test --release --test lab_invite -- --nocapture --test-threads=1

say "LAN discovery between homes: broadcasts, SSDP, a power cut, a storm, a hostile member (release build)"
cargo test --release --test lab_discovery -- --test-threads=1 --nocapture

say "through any NAT: the open/cone/forwarded/symmetric/cgnat matrix (release build)"
cargo test --release --test lab_nat -- --test-threads=1 --nocapture

say "game exits: consoles' NAT type through the mesh, hairpin, quota, exit power cut (release build)"
cargo test --release --test lab_exit -- --nocapture

say "deterministic simulations (seed square, power cuts, 16 and 64 nodes; release build)"
cargo test -p mesh-core --features sim --release --test sim

say "instructions per packet against boringtun alone (callgrind; fails 20 % above the recorded ratios)"
scripts/bench-cpu.sh --check

say "four arm64 router VMs of 64 MB (QEMU, TCG): the seed square, power cuts, a reset"
scripts/router-square.sh

say "the demo, non-interactive"
cargo build --release --bin meshd --example meshlab
target/release/examples/meshlab demo target/release/meshd --check

say "all tests passed"
