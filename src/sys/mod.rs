//! Linux system interfaces: the TUN device and kernel routes (netlink).

pub mod netlink;
pub mod tun;
