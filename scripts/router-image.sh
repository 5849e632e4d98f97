#!/usr/bin/env bash
# A router image that boots in QEMU: Debian 12's cloud kernel, an initramfs
# with busybox and meshd, and nothing else. It boots in 64 MB.
#
#   scripts/router-image.sh [aarch64|x86_64|all]               builds (aarch64 by default)
#   scripts/router-image.sh --boot-check [aarch64|x86_64|all]  builds, boots once in QEMU,
#                                                              shows free and meshd --version
#
# Runs as root on Debian 12 and installs what it needs. A second run reuses
# the downloads (Debian's package index is read again after a day, or with
# REFRESH=1) and rebuilds only what changed. Output, under the repo root:
#
#   target/router-image/<arch>/Image or bzImage   the kernel (aarch64, x86_64)
#   target/router-image/<arch>/rootfs.cpio.gz     the initramfs (the whole root file system)
#   target/router-image/<arch>/qemu.sh            a QEMU command line for them (an example)
#
# cargo builds in $CARGO_TARGET_DIR if set, else in target/router-image/cargo
# (not target/, so that the host's own build is not invalidated). The aarch64
# meshd is built with Debian's rustc-web and its arm64 standard library,
# unpacked into target/router-image/toolchain (nothing foreign is installed,
# and no foreign architecture is added to dpkg: the arm64 packages come
# through apt with a private package index in target/router-image/apt).
#
# The image: busybox init runs /etc/init.d/rcS (proc, sys, devtmpfs, tmpfs on
# /tmp and /var/run, the hostname, sysctl settings, the modules in
# /etc/modules, then every /etc/init.d/S??* with start: S01syslogd, whose log
# `logread` shows, S40network, and the overlay's S50meshd), then prints the line
#   meshd-router: up <hostname>
# on the console and starts a root shell there (no login). The kernel command
# line sets it up:
#   console=ttyAMA0 (aarch64 virt) or console=ttyS0 (x86_64)
#   meshd.hostname=r1
#   meshd.ip=eth0:192.168.1.1/24,eth1:10.12.0.1/30    interface:address/length, any number
#   meshd.route=10.0.0.0/8:10.12.0.2,...              IPv4 destination/length:gateway
#   meshd.sysctl=net.core.rmem_max=1048576,...         set before the modules and services
# (Linux's default memory overcommit stays: meshd once failed to start in 64 MB
# because of a 256 MiB thread stack, and the square test is what keeps that
# fixed.)
# Give the VM its interfaces as virtio-net PCI devices at fixed addresses, in
# order (-device virtio-net-pci,netdev=n0,mac=...,addr=0x10,romfile= then
# addr=0x11, ...), so that eth0, eth1, ... are stable, and -device
# virtio-rng-pci. romfile= leaves out the network boot ROM, which -kernel
# does not need (and which Debian's QEMU has only with ipxe-qemu installed).
# /usr/sbin/meshd is a static binary; /etc/init.d/meshd and /etc/config/meshd
# are openwrt/meshd/files/meshd.init and meshd.config; the tree
# buildroot/board/meshd/rootfs-overlay/ is copied on top, as buildroot does.
#
# Per-VM files (a config, a private key): Linux unpacks every cpio archive of
# an initrd in turn, the later ones over the earlier, so append a small newc
# cpio (gzip'ed or not) to rootfs.cpio.gz:
#
#   mkdir -p vm/etc/config vm/etc/meshd
#   cp r1.config vm/etc/config/meshd
#   cp r1.key vm/etc/meshd/private.key && chmod 600 vm/etc/meshd/private.key
#   (cd vm && find etc | cpio -o -H newc -R 0:0 --quiet | gzip -n) > r1.cpio.gz
#   cat target/router-image/aarch64/rootfs.cpio.gz r1.cpio.gz > r1.initrd
#
# and boot with -initrd r1.initrd. List paths without a leading "./" entry (a
# "." entry would give the guest's / the mode of the directory it came from).
# An uncompressed cpio is taken only at an offset that is a multiple of 4:
# rootfs.cpio.gz is padded so (with zeros, which Linux skips); pad a gzip'ed
# one in the middle likewise (a cpio's own length is always a multiple of 4).
# BOOT_INITRD=r1.initrd scripts/router-image.sh --boot-check boots such an
# initrd; BOOT_CHECK_CMDS='ls -l /etc/meshd' runs more commands in the check
# (one a line), BOOT_APPEND='meshd.sysctl=...' adds to the kernel command line.
#
# Environment: REFRESH=1 reads Debian's package index again; EXTRA_MODULES
# (more kernel modules to load at boot); BOOT_TIMEOUT (seconds to the marker
# line, default 180); BOOT_MEM (MB; 64 for aarch64, 96 for x86_64, which needs
# more than 80); BOOT_INITRD; BOOT_CHECK_CMDS; BOOT_APPEND; BOOT_LOG (a file
# for the whole console output).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ROOT=$PWD
OUT=$ROOT/target/router-image
DEBS=$OUT/debs
APT_DIR=$OUT/apt
CARGO_DIR=${CARGO_TARGET_DIR:-$OUT/cargo}
HOST_DEB_ARCH=$(dpkg --print-architecture)
APT_UPDATED=0

usage() {
  echo "usage: $0 [--boot-check] [aarch64|x86_64|all]" >&2
  exit 2
}

deb_arch() {
  case "$1" in
    aarch64) echo arm64 ;;
    x86_64) echo amd64 ;;
    *) die "unknown architecture $1" ;;
  esac
}

rust_target() { echo "$1-unknown-linux-gnu"; }

kernel_file() {
  case "$1" in
    aarch64) echo Image ;;
    x86_64) echo bzImage ;;
  esac
}

console_tty() {
  case "$1" in
    aarch64) echo ttyAMA0 ;;
    x86_64) echo ttyS0 ;;
  esac
}

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# ---------------------------------------------------------------------------
# Debian packages of any architecture, through apt with a private state:
# the system's sources, its own lists for amd64 and arm64, and no dpkg status,
# so that nothing is installed and dpkg gets no foreign architecture.

apt_opts() {
  printf '%s\n' \
    -o "Dir::State=$APT_DIR/state" \
    -o "Dir::State::Lists=$APT_DIR/lists" \
    -o "Dir::State::status=$APT_DIR/status" \
    -o "Dir::Cache=$APT_DIR/cache" \
    -o "Dir::Cache::pkgcache=pkgcache.bin" \
    -o "APT::Architecture=$HOST_DEB_ARCH" \
    -o "APT::Architectures::=$HOST_DEB_ARCH" \
    -o "APT::Architectures::=amd64" \
    -o "APT::Architectures::=arm64" \
    -o "APT::Sandbox::User=root" \
    -o "Acquire::Retries=3" \
    -o "Acquire::http::Timeout=60" \
    -o "Acquire::https::Timeout=60"
}

papt_get() {
  local opts
  mapfile -t opts < <(apt_opts)
  timeout 900 apt-get -q "${opts[@]}" "$@"
}

papt_cache() {
  local opts
  mapfile -t opts < <(apt_opts)
  apt-cache "${opts[@]}" "$@"
}

# The private package index, read again when missing, older than a day, or
# with REFRESH=1 (once per run).
apt_index() {
  [ "$APT_UPDATED" = 1 ] && return
  mkdir -p "$APT_DIR/state" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  : >>"$APT_DIR/status"
  local stamp=$APT_DIR/lists/.updated
  if [ "${REFRESH:-0}" = 1 ] || [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
    say "reading Debian's package index (amd64 and arm64) into $APT_DIR"
    papt_get update >/dev/null || die "apt-get update (private index in $APT_DIR) failed"
    touch "$stamp"
    APT_UPDATED=1
  fi
}

# The candidate version of PACKAGE:ARCH in the private index.
deb_version() {
  papt_cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true
}

# The names in the Depends of PACKAGE:ARCH[=VERSION] that match a regex.
deb_depends() {
  local spec=$1 re=$2
  papt_cache show --no-all-versions "$spec" 2>/dev/null | sed -n 's/^Depends: //p' | head -n1 \
    | sed 's/[,|]/\n/g' | sed 's/^ *//; s/[ :(].*//' | grep -E "^($re)\$" || true
}

# Downloads NAME ARCH [VERSION] into $DEBS unless it is there; sets FETCHED
# to its path.
fetch_deb() {
  local name=$1 arch=$2 version=${3:-} file
  [ -n "$version" ] || version=$(deb_version "$name:$arch")
  [ -n "$version" ] || die "Debian has no package $name for $arch"
  file="$DEBS/${name}_${version//:/%3a}_${arch}.deb"
  if [ ! -s "$file" ]; then
    mkdir -p "$DEBS"
    say "downloading $name $version ($arch)"
    (cd "$DEBS" && papt_get download "$name:$arch=$version" >/dev/null) \
      || die "apt-get download $name:$arch=$version failed"
    [ -s "$file" ] || die "apt-get download left no $file"
    # Older versions of the same package are no longer used.
    find "$DEBS" -maxdepth 1 -name "${name}_*_${arch}.deb" ! -path "$file" -delete
  fi
  FETCHED=$file
}

# Unpacks the .deb files into DIR (created anew when the set changed).
unpack_debs() {
  local dir=$1 want
  shift
  want=$(printf '%s\n' "${@##*/}")
  if [ -f "$dir/.debs" ] && [ "$(cat "$dir/.debs")" = "$want" ]; then
    return
  fi
  say "unpacking ${*##*/} into $dir"
  rm -rf -- "$dir"
  mkdir -p "$dir"
  local d
  for d in "$@"; do
    dpkg-deb -x "$d" "$dir" || die "dpkg-deb -x $d failed"
  done
  printf '%s\n' "$want" >"$dir/.debs"
}

# ---------------------------------------------------------------------------
# meshd

# The aarch64 toolchain: Debian's rustc-web (amd64), its standard library for
# amd64 (build scripts) and arm64 (meshd), and the LLVM it is linked with.
# Sets RUSTC_WEB and RUSTC_WEB_LIBS.
aarch64_toolchain() {
  apt_index
  local version std llvm tc=$OUT/toolchain
  version=$(deb_version "rustc-web:$HOST_DEB_ARCH")
  [ -n "$version" ] || die "Debian has no rustc-web (it is in bookworm-security: is it in the apt sources?)"
  std=$(deb_depends "libstd-rust-web-dev:$HOST_DEB_ARCH=$version" 'libstd-rust-web-[0-9.]+')
  [ -n "$std" ] || die "cannot find the libstd-rust-web-1.xx that libstd-rust-web-dev $version needs"
  llvm=$(deb_depends "$std:$HOST_DEB_ARCH=$version" 'libllvm[0-9]+')
  [ -n "$llvm" ] || die "cannot find the libllvm that $std $version needs"
  local debs=()
  fetch_deb rustc-web "$HOST_DEB_ARCH" "$version" && debs+=("$FETCHED")
  fetch_deb libstd-rust-web-dev "$HOST_DEB_ARCH" "$version" && debs+=("$FETCHED")
  fetch_deb "$std" "$HOST_DEB_ARCH" "$version" && debs+=("$FETCHED")
  fetch_deb "$llvm" "$HOST_DEB_ARCH" && debs+=("$FETCHED")
  fetch_deb libstd-rust-web-dev arm64 "$version" && debs+=("$FETCHED")
  fetch_deb "$std" arm64 "$version" && debs+=("$FETCHED")
  unpack_debs "$tc" "${debs[@]}"

  RUSTC_WEB=$tc/usr/bin/rustc
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  [ -n "$multiarch" ] || multiarch=$(uname -m)-linux-gnu
  RUSTC_WEB_LIBS=$tc/usr/lib/$multiarch:$tc/usr/lib
  [ -x "$RUSTC_WEB" ] || die "no rustc in $tc/usr/bin"
  local missing
  missing=$(LD_LIBRARY_PATH=$RUSTC_WEB_LIBS ldd "$RUSTC_WEB" "$tc"/usr/lib/"$multiarch"/libLLVM*.so* 2>/dev/null \
    | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ' || true)
  [ -z "$missing" ] || die "rustc-web needs libraries that are not installed: $missing"
  [ -d "$tc/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib" ] \
    || die "no arm64 standard library in $tc/usr/lib/rustlib"
}

# Builds the static meshd for ARCH; sets MESHD_BIN.
build_meshd() {
  local arch=$1 target
  target=$(rust_target "$arch")
  local target_env=${target//-/_}
  target_env=${target_env^^}
  # RUSTFLAGS would replace the per-target flags: it is not passed on.
  local env=(
    -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS
    "CARGO_TARGET_DIR=$CARGO_DIR"
    "CARGO_TARGET_${target_env}_RUSTFLAGS=-C target-feature=+crt-static"
  )
  if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
    aarch64_toolchain
    env+=(
      "RUSTC=$RUSTC_WEB"
      "LD_LIBRARY_PATH=$RUSTC_WEB_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc"
    )
    say "building meshd for $target with $(env "${env[@]}" "$RUSTC_WEB" --version)"
  else
    say "building meshd for $target with $(rustc --version)"
  fi
  env "${env[@]}" cargo build --release --locked --target "$target" --bin meshd \
    || die "cargo build of meshd for $target failed"
  MESHD_BIN=$CARGO_DIR/$target/release/meshd
  [ -x "$MESHD_BIN" ] || die "no $MESHD_BIN after the build"
}

# ---------------------------------------------------------------------------
# The kernel and its modules

# What the image loads at boot, in this order: each is copied with what it
# depends on when it is a module, and left out when it is built in or absent.
# Debian's cloud kernels have virtio_pci itself as a module. EXTRA_MODULES
# adds more (e.g. EXTRA_MODULES='nf_tables wireguard': about 450 KB each on
# arm64, left out by default since the image has no nft to use nf_tables and
# meshd does WireGuard itself).
read -r -a WANTED_MODULES <<<"virtio_pci virtio_net virtio_rng tun ${EXTRA_MODULES:-}"

# Unpacks the kernel package for ARCH; sets KVER and KROOT.
kernel_package() {
  local arch=$1 darch meta pkg
  darch=$(deb_arch "$arch")
  apt_index
  meta=linux-image-cloud-$darch
  pkg=$(deb_depends "$meta:$darch" 'linux-image-[0-9][^ ]*')
  [ -n "$pkg" ] || die "cannot find the kernel package that $meta depends on"
  KVER=${pkg#linux-image-}
  KROOT=$OUT/pkgs/linux-$darch
  fetch_deb "$pkg" "$darch"
  unpack_debs "$KROOT" "$FETCHED"
  [ -f "$KROOT/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $pkg"
  if [ ! -f "$KROOT/lib/modules/$KVER/modules.dep" ]; then
    depmod -b "$KROOT" "$KVER" || die "depmod -b $KROOT $KVER failed"
  fi
}

# The kernel file for ARCH into DEST (Image is uncompressed: QEMU's -kernel
# takes it as it is; Debian's arm64 vmlinuz may be gzip'ed).
install_kernel() {
  local arch=$1 dest=$2 src tmp
  src=$KROOT/boot/vmlinuz-$KVER
  tmp=$dest.new
  if [ "$arch" = aarch64 ] && [ "$(head -c2 "$src" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
    gzip -dc "$src" >"$tmp"
  else
    cp "$src" "$tmp"
  fi
  if cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$dest"
  fi
}

# Copies the wanted modules that exist (and what they need) into the root
# STAGE; writes /etc/modules; prints what is built in and what is a module.
install_modules() {
  local stage=$1 m line path rel
  local config=$KROOT/boot/config-$KVER
  local -a loaded=() builtin=() absent=()
  for m in "${WANTED_MODULES[@]}"; do
    if ! line=$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null); then
      absent+=("$m")
      continue
    fi
    if ! grep -q '^insmod ' <<<"$line"; then
      builtin+=("$m")
      continue
    fi
    loaded+=("$m")
    while read -r _ path _; do
      rel=${path#"$KROOT"}
      mkdir -p "$stage$(dirname "$rel")"
      case "$rel" in
        *.xz) xz -dc "$path" >"$stage${rel%.xz}" ;;
        *.zst) zstd -qdc "$path" >"$stage${rel%.zst}" ;;
        *.gz) gzip -dc "$path" >"$stage${rel%.gz}" ;;
        *) cp "$path" "$stage$rel" ;;
      esac
    done < <(grep '^insmod ' <<<"$line")
  done
  local f
  mkdir -p "$stage/lib/modules/$KVER"
  for f in modules.builtin modules.builtin.modinfo modules.order; do
    [ -f "$KROOT/lib/modules/$KVER/$f" ] && cp "$KROOT/lib/modules/$KVER/$f" "$stage/lib/modules/$KVER/"
  done
  depmod -b "$stage" "$KVER" || die "depmod -b $stage $KVER failed"
  # depmod's binary indexes and the built-in modules' info are for kmod;
  # busybox's modprobe reads modules.dep.
  rm -f "$stage/lib/modules/$KVER"/*.bin "$stage/lib/modules/$KVER/modules.builtin.modinfo"
  {
    echo "# Loaded in order by /etc/init.d/rcS (scripts/router-image.sh)."
    printf '%s\n' "${loaded[@]}"
  } >"$stage/etc/modules"
  MODULES_REPORT="modules: ${loaded[*]:-none}; built in: ${builtin[*]:-none}; not in this kernel: ${absent[*]:-none}"
  local opt
  for opt in VIRTIO_PCI VIRTIO_NET HW_RANDOM_VIRTIO TUN NF_TABLES WIREGUARD RANDOM_TRUST_CPU; do
    MODULES_REPORT+=$'\n'"    $(grep -E "^(# )?CONFIG_${opt}[= ]" "$config" || echo "CONFIG_$opt absent")"
  done
}

# ---------------------------------------------------------------------------
# The root file system

build_rootfs() {
  local arch=$1 dest=$2 darch stage bbroot
  darch=$(deb_arch "$arch")
  stage=$OUT/$arch/rootfs
  bbroot=$OUT/pkgs/busybox-$darch
  fetch_deb busybox-static "$darch"
  unpack_debs "$bbroot" "$FETCHED"

  # The applets' paths (/bin/sh, /sbin/init, ...) from busybox itself, or,
  # for another CPU, from the same Debian version's busybox for the host.
  local lister=$bbroot/bin/busybox applets
  if [ "$(uname -m)" != "$arch" ]; then
    fetch_deb busybox-static "$HOST_DEB_ARCH" "$(deb_version "busybox-static:$darch")"
    unpack_debs "$OUT/pkgs/busybox-$HOST_DEB_ARCH" "$FETCHED"
    lister=$OUT/pkgs/busybox-$HOST_DEB_ARCH/bin/busybox
  fi
  applets=$("$lister" --list-full | sed 's|^/||') || die "$lister --list-full failed"

  rm -rf -- "$stage"
  mkdir -p "$stage"
  local d
  for d in bin sbin usr/bin usr/sbin lib proc sys dev tmp root mnt var/run var/log var/lib \
    etc/config etc/init.d etc/meshd usr/share/meshd; do
    mkdir -p "$stage/$d"
  done
  chmod 1777 "$stage/tmp"
  chmod 0700 "$stage/root" "$stage/etc/meshd"
  ln -s var/run "$stage/run"

  # busybox and a link for each applet; the kernel runs /init from an
  # initramfs, and that starts busybox's init.
  install -m 0755 "$bbroot/bin/busybox" "$stage/bin/busybox"
  local applet rel
  while read -r applet; do
    case "$applet" in '' | bin/busybox) continue ;; esac
    if [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ]; then continue; fi
    rel=$(realpath -m --relative-to="$stage/$(dirname "$applet")" "$stage/bin/busybox")
    ln -s "$rel" "$stage/$applet"
  done <<<"$applets"
  [ -L "$stage/sbin/init" ] || die "busybox has no init applet"
  # (A script rather than a link: busybox init names itself in the log from
  # its argv[0], and only a bare "init" comes out whole.)
  printf '#!/bin/sh\nexec -a init /sbin/init "$@"\n' >"$stage/init"
  chmod 0755 "$stage/init"

  # The kernel opens /dev/console for init before rcS mounts devtmpfs.
  mknod -m 600 "$stage/dev/console" c 5 1
  mknod -m 666 "$stage/dev/null" c 1 3

  # Ours: inittab, rcS, rcK, S40network, profile, passwd, group, hosts.
  cp -a scripts/router-image-rootfs/. "$stage/"

  install -m 0755 "$MESHD_BIN" "$stage/usr/sbin/meshd"
  install -m 0755 openwrt/meshd/files/meshd.init "$stage/etc/init.d/meshd"
  install -m 0644 openwrt/meshd/files/meshd.config "$stage/etc/config/meshd"

  install_modules "$stage"

  # Last, as buildroot's BR2_ROOTFS_OVERLAY: it may replace any of the above.
  local overlay=buildroot/board/meshd/rootfs-overlay
  if [ -d "$overlay" ]; then
    cp -a "$overlay/." "$stage/"
    say "copied $overlay onto the image"
  else
    say "no $overlay yet: the image has no S50meshd"
  fi

  # The same files give the same archive (modes, owners and times fixed).
  local epoch
  epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  find "$stage" -exec touch -h -d "@$epoch" {} +
  STAGE_BYTES=$(du -sb --apparent-size "$stage" | cut -f1)
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort \
    | cpio -o -H newc -R 0:0 --reproducible --quiet | gzip -9 -n) >"$dest.new" \
    || die "cpio of $stage failed"
  # Zeros up to a multiple of 4 bytes: Linux skips them, and takes an
  # uncompressed cpio appended after them only at such an offset.
  local size
  size=$(stat -c %s "$dest.new")
  head -c $(((4 - size % 4) % 4)) /dev/zero >>"$dest.new"
  if cmp -s "$dest.new" "$dest"; then
    rm -f "$dest.new"
    say "$dest unchanged"
  else
    mv -f "$dest.new" "$dest"
    say "wrote $dest"
  fi
}

write_qemu_example() {
  local arch=$1 dir=$2 mem
  if [ "$arch" = aarch64 ]; then
    mem=64
    cat >"$dir/qemu.sh" <<EOF
#!/bin/sh
# An example: the router image in QEMU, one interface (not connected), the
# console on this terminal (Ctrl-A X quits). Written by scripts/router-image.sh.
cd "\$(dirname "\$0")"
exec qemu-system-aarch64 -M virt -cpu cortex-a57 -m $mem -accel tcg -nographic -no-reboot \\
  -kernel Image -initrd rootfs.cpio.gz \\
  -append 'console=ttyAMA0 panic=1 quiet meshd.hostname=r1 meshd.ip=eth0:192.168.1.1/24' \\
  -device virtio-rng-pci \\
  -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01,addr=0x10,romfile=
EOF
  else
    mem=96
    cat >"$dir/qemu.sh" <<EOF
#!/bin/sh
# An example: the router image in QEMU, one interface (not connected), the
# console on this terminal (Ctrl-A X quits). Written by scripts/router-image.sh.
cd "\$(dirname "\$0")"
exec qemu-system-x86_64 -m $mem -accel tcg -nographic -no-reboot \\
  -kernel bzImage -initrd rootfs.cpio.gz \\
  -append 'console=ttyS0 panic=1 quiet meshd.hostname=r1 meshd.ip=eth0:192.168.1.1/24' \\
  -device virtio-rng-pci \\
  -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01,addr=0x10,romfile=
EOF
  fi
  chmod 0755 "$dir/qemu.sh"
}

build() {
  local arch=$1 dir kfile
  dir=$OUT/$arch
  mkdir -p "$dir"
  say "router image for $arch"
  local pkgs=(cpio gzip kmod xz-utils zstd file coreutils gcc libc6-dev)
  if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
    # The cross linker and C library, and what Debian's libLLVM links with.
    pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libedit2 libffi8 libxml2 libz3-4 libzstd1 zlib1g)
  fi
  ensure_packages "${pkgs[@]}"
  ensure_rust

  build_meshd "$arch"
  kernel_package "$arch"
  kfile=$(kernel_file "$arch")
  install_kernel "$arch" "$dir/$kfile"
  build_rootfs "$arch" "$dir/rootfs.cpio.gz"
  write_qemu_example "$arch" "$dir"

  local k i m
  k=$(stat -c %s "$dir/$kfile")
  i=$(stat -c %s "$dir/rootfs.cpio.gz")
  m=$(stat -c %s "$MESHD_BIN")
  say "router image for $arch in $dir (kernel $KVER)"
  printf '  kernel %-10s %10s (%s bytes)\n' "$kfile" "$(human "$k")" "$k"
  printf '  initramfs          %10s (%s bytes; %s unpacked in the guest'"'"'s RAM)\n' \
    "$(human "$i")" "$i" "$(human "$STAGE_BYTES")"
  printf '  total              %10s (%s bytes)\n' "$(human $((k + i)))" "$((k + i))"
  printf '  meshd binary       %10s (%s bytes, %s)\n' "$(human "$m")" "$m" \
    "$(file -b "$MESHD_BIN" 2>/dev/null | cut -d, -f1-2 || echo static)"
  printf '  %s\n' "$MODULES_REPORT"
}

# ---------------------------------------------------------------------------
# The boot check: one boot in QEMU, the console driven through a FIFO.

QEMU_PID=
CHECK_DIR=

# Debian 12's QEMU. Says first what installing it would remove (a newer
# qemu-utils from backports conflicts with Debian 12's qemu-system-common).
ensure_qemu() {
  if ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; then
    local removed
    removed=$(apt-get -s install --no-install-recommends "$1" 2>/dev/null | awk '/^Remv/ {print $2, $3}' || true)
    [ -z "$removed" ] || say "installing $1 removes: $removed"
  fi
  ensure_packages "$1"
}

cleanup() {
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null || true
    sleep 0.5
    kill -9 "$QEMU_PID" 2>/dev/null || true
  fi
  QEMU_PID=
  exec 3>&- 2>/dev/null || true
  if [ -n "$CHECK_DIR" ]; then
    rm -rf -- "$CHECK_DIR"
    CHECK_DIR=
  fi
}

# Waits up to SECONDS for a line matching REGEX on the console; fails when
# QEMU ends or the time is up.
wait_console() {
  local re=$1 secs=$2 deadline
  deadline=$((SECONDS + secs))
  while ! grep -qaE "$re" "$CHECK_DIR/console.log"; do
    kill -0 "$QEMU_PID" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

boot_check() {
  local arch=$1 dir kfile qemu mem tty initrd
  dir=$OUT/$arch
  kfile=$(kernel_file "$arch")
  tty=$(console_tty "$arch")
  initrd=${BOOT_INITRD:-$dir/rootfs.cpio.gz}
  if [ ! -f "$dir/$kfile" ] || [ ! -f "$initrd" ]; then die "no image in $dir"; fi
  local qargs
  if [ "$arch" = aarch64 ]; then
    ensure_qemu qemu-system-arm
    qemu='qemu-system-aarch64'
    mem=${BOOT_MEM:-64}
    qargs=(-M virt -cpu cortex-a57)
  else
    ensure_qemu qemu-system-x86
    qemu='qemu-system-x86_64'
    mem=${BOOT_MEM:-96}
    qargs=()
  fi
  CHECK_DIR=$(mktemp -d /tmp/router-image-check.XXXXXX)
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT TERM
  mkfifo "$CHECK_DIR/in"
  local cmdline="console=$tty panic=1 quiet meshd.hostname=r1"
  cmdline+=" meshd.ip=eth0:192.168.1.1/24,eth1:10.12.0.1/30 meshd.route=10.99.0.0/16:10.12.0.2"
  cmdline+=${BOOT_APPEND:+ $BOOT_APPEND}
  # shellcheck disable=SC2054 # the commas are in QEMU options
  qargs+=(-m "$mem" -accel tcg -nographic -no-reboot
    -kernel "$dir/$kfile" -initrd "$initrd" -append "$cmdline"
    -device virtio-rng-pci
    # Two interfaces, each alone on a hub of its own: no traffic leaves.
    -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01,addr=0x10,romfile=
    -netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,mac=52:54:00:00:01:02,addr=0x11,romfile=)

  say "boot check: $qemu -m $mem ($(basename "$initrd"))"
  local t0 t1 boot_ms timeout=${BOOT_TIMEOUT:-180}
  t0=$(date +%s%N)
  "$qemu" "${qargs[@]}" <"$CHECK_DIR/in" >"$CHECK_DIR/console.log" 2>&1 &
  QEMU_PID=$!
  exec 3>"$CHECK_DIR/in"
  if ! wait_console '^meshd-router: up ' "$timeout"; then
    tail -n 40 "$CHECK_DIR/console.log" >&2
    kill -0 "$QEMU_PID" 2>/dev/null || die "QEMU ended before the 'meshd-router: up' line"
    die "no 'meshd-router: up' line on the console within ${timeout} s"
  fi
  t1=$(date +%s%N)
  boot_ms=$(((t1 - t0) / 1000000))

  # The shell may start after the marker: ask until it answers. The markers
  # are split in the commands so that the echo of a command line never
  # matches.
  local n=0
  until grep -qa '^shell-ready' "$CHECK_DIR/console.log"; do
    n=$((n + 1))
    [ "$n" -le 30 ] || die "no shell on the console"
    echo 'echo shell""-ready' >&3
    wait_console '^shell-ready' 2 || true
  done
  # One command line at a time, each waited for, with no echo and no prompt:
  # the console then shows the output alone.
  local cmds=()
  # shellcheck disable=SC2016 # run by the guest's shell
  cmds=(
    'echo "uptime: $(cut -d" " -f1 /proc/uptime) s"; uname -r; hostname'
    'free'
    'meshd --version'
    'echo "meshd:"; for p in $(pidof meshd); do grep -E "^(Name|Pid|VmRSS|VmHWM)" /proc/$p/status; done'
    'ip -4 addr show | grep -E "^[0-9]|inet"; ip route'
    'echo "modules:"; cut -d" " -f1,2 /proc/modules'
    'dmesg | grep -E "crng|random:" | tail -n 3'
    'grep -E "MemTotal|MemFree|MemAvailable" /proc/meminfo'
  )
  if [ -n "${BOOT_CHECK_CMDS:-}" ]; then
    mapfile -t -O "${#cmds[@]}" cmds <<<"$BOOT_CHECK_CMDS"
  fi
  echo 'stty -echo; PS1=; PS2=; echo check""-begin' >&3
  wait_console '^check-begin' 10 || die "the guest's shell did not answer"
  local i=0 c
  for c in "${cmds[@]}"; do
    i=$((i + 1))
    printf '%s\necho check""-step-%s\n' "$c" "$i" >&3
    wait_console "^check-step-${i}[[:space:]]*\$" 30 || die "the check's command '$c' did not finish within 30 s"
  done
  echo 'echo check""-end' >&3
  wait_console '^check-end' 10 || die "the guest's shell did not answer"
  echo 'poweroff' >&3
  local deadline=$((SECONDS + 30))
  while kill -0 "$QEMU_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
  done
  local off=powered-off
  kill -0 "$QEMU_PID" 2>/dev/null && off="did not power off within 30 s (killed)"
  say "boot check of $arch"
  echo "  boot to 'meshd-router: up': ${boot_ms} ms (QEMU start to the marker line, TCG, ${mem} MB)"
  tr -d '\r' <"$CHECK_DIR/console.log" | sed -n '/^check-begin/,/^check-end/p' \
    | sed '1d;$d;/^check-step-[0-9]*$/d;s/^/  | /'
  echo "  qemu: $off"
  if [ -n "${BOOT_LOG:-}" ]; then
    tr -d '\r' <"$CHECK_DIR/console.log" >"$BOOT_LOG"
  fi
  cleanup
  trap - EXIT INT TERM
}

# ---------------------------------------------------------------------------

mode=build
arches=()
for a in "$@"; do
  case "$a" in
    --boot-check) mode=boot ;;
    aarch64 | x86_64) arches+=("$a") ;;
    all) arches+=(aarch64 x86_64) ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(aarch64)

need_root
for a in "${arches[@]}"; do
  build "$a"
  [ "$mode" = boot ] && boot_check "$a"
done
exit 0
