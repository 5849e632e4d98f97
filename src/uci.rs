//! UCI configuration files (OpenWrt syntax): parser and writer.
