//! meshd, the daemon: everything that touches the operating system around the
//! sans-IO `mesh_core::Node` (sockets, TUN, netlink, clock, signals, files,
//! control socket). See `../shared/design/ARCHITECTURE.md`.

pub mod config;
pub mod sys;
pub mod uci;
