# Shared by scripts/*.sh: set-up steps that are idempotent and say what they do.
# Sourced, not run.

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "run as root: the lab builds network namespaces (try: sudo $0)"
}

# apt packages, installed only when missing (one apt-get update per run).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages present: $*"
    return
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# The Rust toolchain: rustup's cargo if present, otherwise install rustup.
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v cargo >/dev/null 2>&1; then
    say "installing the Rust toolchain with rustup"
    ensure_packages curl ca-certificates gcc libc6-dev
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
      || die "rustup install failed; install Rust >= 1.82 by hand"
    . "$HOME/.cargo/env"
  fi
  if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$c" \
        || { say "adding rustup component $c"; rustup component add "$c"; }
    done
  fi
  say "using $(cargo --version)"
}

# cargo-fuzz, which builds and runs the fuzz targets (scripts/fuzz.sh): from
# crates.io when missing. It needs no nightly: fuzz.sh sets RUSTC_BOOTSTRAP.
ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install --locked)"
    cargo install cargo-fuzz --locked || die "cargo install cargo-fuzz failed"
  fi
  say "using $(cargo fuzz --version)"
}

# What the lab tests and demos run.
LAB_PACKAGES=(bird2 iproute2 nftables iputils-ping procps psmisc wireguard-tools wireguard-go)
