//! ubus, OpenWrt's local message bus: meshd publishes its object (`ubus call
//! meshd status`, LuCI's status page) by speaking the protocol itself over
//! ubusd's unix socket; no Rust crate serves an object. See the "ubus"
//! section of `OPENWRT.md` and the captures in `tests/fixtures/ubus/`.
//!
//! - [`blob`]: libubox's blob_attr/blobmsg encoding, and JSON;
//! - [`msg`]: ubus frames and a stream splitter;
//! - [`object`]: the object owner as a sans-IO state machine;
//! - [`conn`]: the socket, with reconnection, for the epoll loop.

#![forbid(unsafe_code)]

pub mod blob;
pub mod conn;
pub mod msg;
pub mod object;

pub use conn::{UbusConn, DEFAULT_SOCKET};
pub use msg::{FrameSplitter, Msg, MsgType, Status, UBUS_MAX_MSGLEN};
pub use object::{ArgType, Event, UbusError, UbusObject};

#[cfg(test)]
mod tests;
