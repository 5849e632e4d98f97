#!/usr/bin/env bash
# Runs every cargo-fuzz target of both fuzz projects (mesh-core/fuzz/ and
# fuzz/) for SECONDS each (default 60), starting from its committed seeds
# and minimized corpus (fuzz/seeds/T, fuzz/minimized/T), copied to a scratch
# directory so that the repository stays clean. Prints
# per target its executions, executions per second, coverage (libFuzzer's
# edges and features) and crashes; exits non-zero on any crash, after
# printing the one command that reproduces each.
#
#   scripts/fuzz.sh [SECONDS]
#
# FUZZ_JOBS targets run at once (default: the machine's cores), each a
# single libFuzzer process. FUZZ_TARGETS (e.g. "node_udp uci") runs only
# those. FUZZ_SANITIZER is cargo-fuzz's -s (default none: the code under
# test is safe Rust, and AddressSanitizer costs two to four times the
# speed; "address" works on stable too). While the file FUZZ_PAUSE_FILE
# exists, no new target starts (for a machine shared with timing-sensitive
# tests). Works on stable Rust:
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

secs=${1:-60}
limit=$((secs > 1 ? secs - 1 : secs))
jobs=${FUZZ_JOBS:-$(nproc)}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
started=$(date +%s)

ensure_rust
ensure_cargo_fuzz
host=$(rustc -vV | sed -n 's/^host: //p')
# One target directory for both projects: what they share (mesh-core,
# boringtun and the rest, built alike) is built once.
target_dir=$PWD/target/fuzz

# libFuzzer itself, prebuilt: libfuzzer-sys otherwise compiles its C++ (about
# 40 files, 20 s of the build's critical path on two cores). Debian ships
# the same library built by LLVM (libfuzzer-19-dev); its package pulls in all
# of clang, so only its .deb is fetched (200 kB) and the archive taken out of
# it. The instrumentation rustc emits calls the sanitizer-coverage hooks,
# whose interface LLVM keeps stable. FUZZ_BUNDLED_LIBFUZZER=1, or no package
# to fetch, builds the bundled C++ as before.
libfuzzer=/usr/lib/llvm-19/lib/libFuzzer.a
if [ -z "${FUZZ_BUNDLED_LIBFUZZER:-}" ] && [ ! -f "$libfuzzer" ]; then
  libfuzzer=$target_dir/libfuzzer-19/usr/lib/llvm-19/lib/libFuzzer.a
  if [ ! -f "$libfuzzer" ]; then
    mkdir -p "$target_dir/libfuzzer-19"
    if (cd "$target_dir/libfuzzer-19" && apt-get download -q libfuzzer-19-dev >/dev/null 2>&1 &&
        dpkg-deb -x libfuzzer-19-dev_*.deb .); then
      say "using Debian's prebuilt libFuzzer (libfuzzer-19-dev)"
    else
      say "could not fetch libfuzzer-19-dev: building libfuzzer-sys's bundled libFuzzer"
    fi
  fi
fi
if [ -z "${FUZZ_BUNDLED_LIBFUZZER:-}" ] && [ -f "$libfuzzer" ]; then
  export CUSTOM_LIBFUZZER_PATH=$libfuzzer
else
  unset CUSTOM_LIBFUZZER_PATH
fi
# The crypto crates without coverage instrumentation (see the wrapper).
export RUSTC_WRAPPER=$PWD/scripts/fuzz-rustc
# No line tables (cargo-fuzz asks for them; RUSTFLAGS come last and win):
# a tenth of the build. A panic still names its file and line, a backtrace
# its functions; the reproducing command below rebuilds with them.
export RUSTFLAGS="${RUSTFLAGS:-} -Cdebuginfo=0"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/meshd-fuzz.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

# The project (where `cargo fuzz` runs) of each target, and the list.
declare -A project
targets=()
# Decoders whose coverage saturates in a second or two go first: they run
# beside the daemon's build.
first="pex exit_wrap netmap nlri"
for p in mesh-core .; do
  for t in $(cd "$p" && cargo fuzz list | awk -v first="$first" \
    '{ print (index(" " first " ", " " $1 " ") ? 0 : 1), $1 }' | sort -s -k1,1n | cut -d' ' -f2); do
    if [ -z "${FUZZ_TARGETS:-}" ] || [[ " $FUZZ_TARGETS " == *" $t "* ]]; then
      project[$t]=$p
      targets+=("$t")
    fi
  done
done

build() {
  say "building the fuzz targets of $1/fuzz (-s $sanitizer)"
  (cd "$1" && cargo fuzz build -s "$sanitizer" --target-dir "$target_dir")
}

run() {
  local t=$1 p=${project[$1]} dir=$scratch/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  # The seeds (made by hand or by tests, each explained in the README) and
  # the campaigns' minimized corpus.
  if [ -d "$p/fuzz/seeds/$t" ]; then cp -r "$p/fuzz/seeds/$t/." "$dir/corpus/"; fi
  if [ -d "$p/fuzz/minimized/$t" ]; then cp -r "$p/fuzz/minimized/$t/." "$dir/corpus/"; fi
  # TMPDIR: what a target leaves there (the control socket) goes with it.
  # libFuzzer stops at its first whole-second check past max_total_time:
  # N runs N + 1 seconds.
  TMPDIR=$dir "$target_dir/$host/release/$t" "$dir/corpus" -max_total_time="$limit" \
    -timeout=30 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    >"$dir/log" 2>&1 || true
}

# mesh-core's targets are built first; the daemon's targets are built while
# mesh-core's first targets run, beside the job slots: that build is mostly
# one compiler process (meshd's crate), and the targets that run beside it
# saturate their coverage in a second or two. The daemon's targets wait for
# it.
build mesh-core
(build . && touch "$scratch/daemon-built" || touch "$scratch/daemon-failed") &
building() { [ ! -e "$scratch/daemon-built" ] && [ ! -e "$scratch/daemon-failed" ]; }
# Fuzzers running: background jobs, less the build while it runs.
fuzzing() { echo $(($(jobs -rp | wc -l) - $(building && echo 1 || echo 0))); }
say "running ${#targets[@]} targets, $secs s each, $jobs at a time (the daemon's build beside them)"
for t in "${targets[@]}"; do
  if [ "${project[$t]}" = . ]; then
    while building; do sleep 0.2; done
    [ -e "$scratch/daemon-built" ] || die "building the daemon's fuzz targets failed"
  fi
  while [ "$(fuzzing)" -ge "$jobs" ]; do wait -n || true; done
  while [ -n "${FUZZ_PAUSE_FILE:-}" ] && [ -e "$FUZZ_PAUSE_FILE" ]; do sleep 20; done
  run "$t" &
done
wait
[ -e "$scratch/daemon-built" ] || die "building the daemon's fuzz targets failed"

printf '%-20s %12s %9s %7s %8s  %s\n' target executions exec/s cov ft crashes
failed=0
for t in "${targets[@]}"; do
  p=${project[$t]} dir=$scratch/$t
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
  last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | cut -d' ' -f2 || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | cut -d' ' -f2 || true)
  found=$(ls "$dir/artifacts" 2>/dev/null | grep -E '^(crash|leak|timeout|oom)-' || true)
  last=${last%% *}
  printf '%-20s %12s %9s %7s %8s  %s\n' "$t" "${execs:-${last#\#}}" "${rate:--}" \
    "${cov:--}" "${ft:--}" "$(wc -w <<<"$found" | tr -d ' ')"
  if [ -z "$execs" ] && [ -z "$found" ]; then
    failed=1
    echo "    no final stats; the end of its log:"
    tail -5 "$dir/log" | sed 's/^/    /'
  fi
  if [ -n "$found" ]; then
    failed=1
    mkdir -p "$p/fuzz/artifacts/$t"
    for a in $found; do
      [ -f "$dir/artifacts/$a" ] || continue
      cp "$dir/artifacts/$a" "$p/fuzz/artifacts/$t/"
      echo "    reproduce: (cd $p && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer --target-dir $target_dir $t fuzz/artifacts/$t/$a)"
    done
    grep -E 'panicked|ERROR|Error|==[0-9]+==' "$dir/log" | head -5 | sed 's/^/    /'
  fi
done
[ "$failed" = 0 ] || die "the fuzzers found crashes (inputs kept under */fuzz/artifacts/, git-ignored)"
say "no crash in ${#targets[@]} targets ($(($(date +%s) - started)) s with the builds)"
