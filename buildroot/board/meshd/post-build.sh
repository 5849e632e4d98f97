#!/bin/sh
#
# Runs after buildroot has filled the target directory ($1) and before it
# makes the root filesystem image.

set -eu

TARGET_DIR="$1"

# A router forwards: the consoles behind it reach the mesh only with IPv4
# forwarding on (meshd warns at start when it is off). OpenWrt turns it
# on; buildroot does not. S02sysctl, busybox's or procps-ng's, applies
# /etc/sysctl.d/*.conf at boot.
mkdir -p "$TARGET_DIR/etc/sysctl.d"
echo "net.ipv4.ip_forward = 1" >"$TARGET_DIR/etc/sysctl.d/50-meshd.conf"
if [ ! -x "$TARGET_DIR/etc/init.d/S02sysctl" ]; then
	echo "post-build.sh: no /etc/init.d/S02sysctl: nothing will apply" \
		"/etc/sysctl.d/50-meshd.conf at boot (busybox needs CONFIG_BB_SYSCTL)" >&2
fi

# meshd's private key, when an overlay brings one (an image with a fixed
# identity, so that friends know its public key in advance): git keeps no
# file mode but the executable bit, and the key is root's alone, as the
# init script makes it.
if [ -d "$TARGET_DIR/etc/meshd" ]; then
	chmod 0700 "$TARGET_DIR/etc/meshd"
	find "$TARGET_DIR/etc/meshd" -type f -exec chmod 0600 {} +
fi
