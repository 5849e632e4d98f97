//! meshd, the daemon: everything that touches the operating system around the
//! sans-IO `mesh_core::Node` (sockets, TUN, netlink, clock, signals, files,
//! control socket). See `../shared/design/ARCHITECTURE.md`.

pub mod config;
pub mod console_oui;
pub mod consoles;
pub mod control;
pub mod daemon;
pub mod files;
pub mod group;
pub mod invites;
pub mod json;
pub mod json_parse;
pub mod keys;
pub mod logger;
pub mod resolver;
pub mod status;
pub mod sys;
pub mod ubus;
pub mod ubus_api;
pub mod uci;
pub mod uci_edit;
