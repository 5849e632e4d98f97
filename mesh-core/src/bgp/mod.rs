//! BGP-4 (RFC 4271): the wire codec, the session state machine and its errors.
//!
//! - [`wire`]: the header, KEEPALIVE and TCP stream framing (§4.1, §4.4, §6.1)
//! - [`open`]: OPEN and capabilities (§4.2, RFC 5492, 6793, 4760, 2918, 4724)
//! - [`update`]: UPDATE with RFC 7606 error handling (§4.3, RFC 4760, 7606)
//! - [`notification`]: NOTIFICATION codes (§4.5, RFC 4486, 6608, 9003)
//! - [`route_refresh`]: ROUTE-REFRESH requests (RFC 2918, 7313)
//! - [`message`]: one framed message of any of these kinds
//! - [`error`]: decode errors and the NOTIFICATION each becomes (§6)
//! - [`attr`]: path attributes held by value
//! - [`session`]: the per-peer state machine (§8) with collision detection (§6.8)
//! - [`speaker`]: import into and export from the RIB for one session
//!
//! Imports run one way (`a ← b`: b uses a, and may use anything further left):
//! `wire ← notification ← error ← {open ← attr ← update, route_refresh} ← message ← session ← speaker`.

pub mod attr;
pub mod error;
pub mod message;
pub mod notification;
pub mod open;
pub mod route_refresh;
pub mod session;
pub mod speaker;
pub mod update;
pub mod wire;

#[cfg(test)]
mod testdata;

pub use attr::{AsPath, Origin, PathAttributes};
pub use error::{DownReason, ErrorAction, MessageError, UpdateError};
pub use message::Message;
pub use notification::{CeaseSubcode, ErrorCode, NotificationRepr};
pub use open::{Capability, OpenPacket, OpenRepr, PeerCapabilities};
pub use route_refresh::RouteRefresh;
pub use update::{DecodeContext, Update, UpdatePacket, UpdateRepr};
pub use wire::{frame, MessageType};
