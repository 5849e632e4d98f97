//! One framed BGP message, told apart by its type (RFC 4271 §4.1): the one
//! place that knows every message kind, so the codecs need not know each
//! other.

use super::error::MessageError;
use super::notification::NotificationRepr;
use super::open::OpenPacket;
use super::route_refresh::RouteRefresh;
use super::update::UpdatePacket;
use super::wire::{Header, HeaderError, MessageType, HEADER_LEN};

/// One message, decoded only as far as its type: the body stays borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Open(OpenPacket<'a>),
    Update(UpdatePacket<'a>),
    Notification(NotificationRepr<'a>),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl<'a> Message<'a> {
    /// Parses one whole framed message (as returned by [`frame`](super::wire::frame)).
    pub fn parse(msg: &'a [u8]) -> Result<Message<'a>, MessageError> {
        let header = Header::new_checked(msg).map_err(MessageError::Header)?;
        let len = header.length() as usize;
        let body = msg
            .get(HEADER_LEN..len)
            .ok_or(MessageError::Header(HeaderError::Truncated))?;
        Ok(match header.message_type() {
            MessageType::Open => Message::Open(OpenPacket::new_checked(body)?),
            MessageType::Update => Message::Update(UpdatePacket::new_checked(body)?),
            MessageType::Notification => Message::Notification(NotificationRepr::parse(body)?),
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => Message::RouteRefresh(RouteRefresh::parse(body)?),
            // Header::new_checked refused it already; kept total, not a panic.
            MessageType::Unknown(t) => {
                return Err(MessageError::Header(HeaderError::BadMessageType(t)))
            }
        })
    }
}
