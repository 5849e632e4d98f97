//! NOTIFICATION messages: error codes and subcodes from RFC 4271 §4.5 and §6,
//! RFC 4486 (Cease subcodes), RFC 6608 (FSM error subcodes), RFC 7313
//! (ROUTE-REFRESH errors) and RFC 9003 (shutdown communication).

use core::fmt;

use super::wire::{emit_header, MessageType, HEADER_LEN, MAX_MESSAGE_LEN};

/// A NOTIFICATION error code with its subcode, as the RFCs name them.
/// Unknown code points are kept, not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MessageHeader(HeaderSubcode),
    Open(OpenSubcode),
    Update(UpdateSubcode),
    HoldTimerExpired,
    Fsm(FsmSubcode),
    Cease(CeaseSubcode),
    RouteRefresh(u8),
    Unknown(u8, u8),
}

enum_with_unknown! {
    /// Message Header Error subcodes (RFC 4271 §4.5).
    pub enum HeaderSubcode(u8) {
        Unspecific = 0,
        ConnectionNotSynchronized = 1,
        BadMessageLength = 2,
        BadMessageType = 3,
    }
}

enum_with_unknown! {
    /// OPEN Message Error subcodes (RFC 4271 §4.5, RFC 5492 §5, RFC 9234).
    pub enum OpenSubcode(u8) {
        Unspecific = 0,
        UnsupportedVersionNumber = 1,
        BadPeerAs = 2,
        BadBgpIdentifier = 3,
        UnsupportedOptionalParameter = 4,
        UnacceptableHoldTime = 6,
        UnsupportedCapability = 7,
        RoleMismatch = 11,
    }
}

enum_with_unknown! {
    /// UPDATE Message Error subcodes (RFC 4271 §4.5).
    pub enum UpdateSubcode(u8) {
        Unspecific = 0,
        MalformedAttributeList = 1,
        UnrecognizedWellKnownAttribute = 2,
        MissingWellKnownAttribute = 3,
        AttributeFlagsError = 4,
        AttributeLengthError = 5,
        InvalidOriginAttribute = 6,
        InvalidNextHopAttribute = 8,
        OptionalAttributeError = 9,
        InvalidNetworkField = 10,
        MalformedAsPath = 11,
    }
}

enum_with_unknown! {
    /// Finite State Machine Error subcodes (RFC 6608 §3).
    pub enum FsmSubcode(u8) {
        Unspecified = 0,
        UnexpectedMessageInOpenSent = 1,
        UnexpectedMessageInOpenConfirm = 2,
        UnexpectedMessageInEstablished = 3,
    }
}

enum_with_unknown! {
    /// Cease subcodes (RFC 4486 §4, RFC 8538, RFC 9384).
    pub enum CeaseSubcode(u8) {
        Unspecific = 0,
        MaximumNumberOfPrefixesReached = 1,
        AdministrativeShutdown = 2,
        PeerDeconfigured = 3,
        AdministrativeReset = 4,
        ConnectionRejected = 5,
        OtherConfigurationChange = 6,
        ConnectionCollisionResolution = 7,
        OutOfResources = 8,
        HardReset = 9,
        BfdDown = 10,
    }
}

impl ErrorCode {
    pub fn from_wire(code: u8, subcode: u8) -> ErrorCode {
        match code {
            1 => ErrorCode::MessageHeader(HeaderSubcode::from(subcode)),
            2 => ErrorCode::Open(OpenSubcode::from(subcode)),
            3 => ErrorCode::Update(UpdateSubcode::from(subcode)),
            4 => ErrorCode::HoldTimerExpired,
            5 => ErrorCode::Fsm(FsmSubcode::from(subcode)),
            6 => ErrorCode::Cease(CeaseSubcode::from(subcode)),
            7 => ErrorCode::RouteRefresh(subcode),
            c => ErrorCode::Unknown(c, subcode),
        }
    }

    /// The (code, subcode) pair on the wire.
    pub fn to_wire(self) -> (u8, u8) {
        match self {
            ErrorCode::MessageHeader(s) => (1, u8::from(s)),
            ErrorCode::Open(s) => (2, u8::from(s)),
            ErrorCode::Update(s) => (3, u8::from(s)),
            ErrorCode::HoldTimerExpired => (4, 0),
            ErrorCode::Fsm(s) => (5, u8::from(s)),
            ErrorCode::Cease(s) => (6, u8::from(s)),
            ErrorCode::RouteRefresh(s) => (7, s),
            ErrorCode::Unknown(c, s) => (c, s),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::MessageHeader(s) => write!(f, "message header error: {s:?}"),
            ErrorCode::Open(s) => write!(f, "OPEN message error: {s:?}"),
            ErrorCode::Update(s) => write!(f, "UPDATE message error: {s:?}"),
            ErrorCode::HoldTimerExpired => f.write_str("hold timer expired"),
            ErrorCode::Fsm(s) => write!(f, "FSM error: {s:?}"),
            ErrorCode::Cease(s) => write!(f, "cease: {s:?}"),
            ErrorCode::RouteRefresh(s) => write!(f, "ROUTE-REFRESH error {s}"),
            ErrorCode::Unknown(c, s) => write!(f, "error {c}/{s}"),
        }
    }
}

/// A NOTIFICATION body shorter than its code and subcode octets. A framed
/// message cannot be (the header's minimum length rules it out); the error
/// exists for a body parsed on its own, and becomes
/// `MessageError::NotificationLength`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationTooShort;

/// A NOTIFICATION message; `data` borrows from the received or caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationRepr<'a> {
    pub error: ErrorCode,
    pub data: &'a [u8],
}

impl<'a> NotificationRepr<'a> {
    pub fn new(error: ErrorCode, data: &'a [u8]) -> NotificationRepr<'a> {
        NotificationRepr { error, data }
    }

    /// Parses a NOTIFICATION body (after the 19-octet header).
    pub fn parse(body: &'a [u8]) -> Result<NotificationRepr<'a>, NotificationTooShort> {
        match body {
            [code, subcode, data @ ..] => Ok(NotificationRepr {
                error: ErrorCode::from_wire(*code, *subcode),
                data,
            }),
            _ => Err(NotificationTooShort),
        }
    }

    /// The shutdown communication of an Administrative Shutdown or Reset
    /// (RFC 9003 §2): a length octet and that many octets of UTF-8.
    pub fn shutdown_communication(&self) -> Option<&'a str> {
        match self.error {
            ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown)
            | ErrorCode::Cease(CeaseSubcode::AdministrativeReset) => {
                let (&len, rest) = self.data.split_first()?;
                let text = rest.get(..len as usize)?;
                core::str::from_utf8(text).ok()
            }
            _ => None,
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 2 + self.data.len()
    }

    /// Writes the whole message; data beyond the 4096-octet limit is cut.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len().min(MAX_MESSAGE_LEN);
        let out = buf.get_mut(..len)?;
        emit_header(out, MessageType::Notification, len)?;
        let (code, subcode) = self.error.to_wire();
        out[HEADER_LEN] = code;
        out[HEADER_LEN + 1] = subcode;
        let n = len - HEADER_LEN - 2;
        out[HEADER_LEN + 2..].copy_from_slice(&self.data[..n]);
        Some(len)
    }
}

/// Builds the data of an Administrative Shutdown carrying `text` (RFC 9003),
/// truncated on a character boundary to the 255 octets the length field allows.
pub fn shutdown_data<'b>(text: &str, buf: &'b mut [u8; 256]) -> &'b [u8] {
    let mut n = text.len().min(255);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    buf[0] = n as u8;
    buf[1..=n].copy_from_slice(&text.as_bytes()[..n]);
    &buf[..=n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::message::Message;

    #[test]
    fn every_rfc_code_survives_the_wire() {
        let codes = [
            ErrorCode::MessageHeader(HeaderSubcode::BadMessageType),
            ErrorCode::Open(OpenSubcode::UnacceptableHoldTime),
            ErrorCode::Update(UpdateSubcode::MalformedAsPath),
            ErrorCode::HoldTimerExpired,
            ErrorCode::Fsm(FsmSubcode::UnexpectedMessageInOpenConfirm),
            ErrorCode::Cease(CeaseSubcode::MaximumNumberOfPrefixesReached),
            ErrorCode::Cease(CeaseSubcode::BfdDown),
            ErrorCode::Cease(CeaseSubcode::Unknown(99)),
            ErrorCode::RouteRefresh(1),
            ErrorCode::Unknown(42, 7),
        ];
        for e in codes {
            let n = NotificationRepr::new(e, &[1, 2, 3]);
            let mut buf = [0u8; 64];
            let len = n.emit(&mut buf).unwrap();
            match Message::parse(&buf[..len]).unwrap() {
                Message::Notification(got) => assert_eq!(got, n),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn shutdown_communication_is_read_and_cut_on_a_char_boundary() {
        let mut b = [0u8; 256];
        let data = shutdown_data("meshd stopping", &mut b);
        let n = NotificationRepr::new(ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown), data);
        assert_eq!(n.shutdown_communication(), Some("meshd stopping"));

        let long = "é".repeat(200); // 400 octets
        let mut b = [0u8; 256];
        let data = shutdown_data(&long, &mut b);
        assert_eq!(data[0], 254);
        assert!(core::str::from_utf8(&data[1..]).is_ok());
    }
}
