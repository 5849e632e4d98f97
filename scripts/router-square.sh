#!/usr/bin/env bash
# Four arm64 router VMs of 64 MB each (QEMU under TCG) wired as the seed
# square, booting the image scripts/router-image.sh builds: they converge, a
# console stream C1→C4 runs through the transit router, which loses power for
# real (SIGKILL of its qemu) and cold boots, once with redundant sending and
# once without, then once by the reset button (QMP system_reset). Prints the
# figures (boot, convergence, loss windows, rejoin, meshd's RSS and the VMs'
# free memory) and fails when a target is missed. Installs what it needs
# (Debian 12, as root). See tests/lab/vm.rs for the wiring.
#
#   scripts/router-square.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages qemu-system-arm
ensure_rust

scripts/router-image.sh aarch64

say "the square of four router VMs (release build of the test and meshd)"
cargo test --release --test lab_vm -- --nocapture --test-threads=1
