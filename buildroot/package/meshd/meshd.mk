################################################################################
#
# meshd
#
################################################################################

# The source is this repository: buildroot/ is its br2-external tree and
# the Cargo workspace is the directory above. The version is Cargo.toml's.
MESHD_VERSION = 0.1.0
MESHD_SITE = $(BR2_EXTERNAL_MESHD_PATH)/..
MESHD_SITE_METHOD = local
MESHD_LICENSE = GPL-2.0-only
MESHD_LICENSE_FILES = LICENSE

# A developer's build products are not the source (fuzz/ is a Cargo
# workspace of its own).
MESHD_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /fuzz/target

# cargo-package builds --offline, with the crates that its download step
# vendors into the source tarball; a local site has no download step. The
# crates Cargo.lock names are fetched into buildroot's cargo home instead,
# where the --offline build finds them. This needs the network at build
# time, and only here.
define MESHD_CARGO_FETCH
	cd $(@D) && $(TARGET_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		cargo fetch --locked --manifest-path Cargo.toml
endef
MESHD_PRE_BUILD_HOOKS += MESHD_CARGO_FETCH

# A TUN device for the mesh; policy routing (ip rules) for the consoles
# that use a friend's router as their game exit.
define MESHD_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_TUN)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_ADVANCED_ROUTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_MULTIPLE_TABLES)
endef

# As on OpenWrt: the daemon in /usr/sbin (cargo-package's own install
# would put it in /usr/bin), OpenWrt's init script as /etc/init.d/meshd and
# the default configuration as /etc/config/meshd. What runs the init script
# here, /etc/init.d/S50meshd with procd-lite, comes from
# board/meshd/rootfs-overlay, which the QEMU router image shares.
define MESHD_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/meshd \
		$(TARGET_DIR)/usr/sbin/meshd
	$(INSTALL) -D -m 0755 $(@D)/openwrt/meshd/files/meshd.init \
		$(TARGET_DIR)/etc/init.d/meshd
	$(INSTALL) -D -m 0600 $(@D)/openwrt/meshd/files/meshd.config \
		$(TARGET_DIR)/etc/config/meshd
endef

$(eval $(cargo-package))
