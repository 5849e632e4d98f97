//! The TUN device.
