//! The BGP message header, KEEPALIVE (a bare header) and the framing of a TCP
//! byte stream into messages (RFC 4271 §4.1, §4.4, §6.1). It needs nothing
//! from the other BGP modules; `message` ties the message kinds together.
//!
//! Panic contract: every function here takes untrusted bytes and returns an error
//! for anything malformed; none of them panics.

use core::ops::RangeInclusive;

/// Length of the fixed header: 16-octet marker, 2-octet length, 1-octet type.
pub const HEADER_LEN: usize = 19;
/// Largest message RFC 4271 allows (we do not negotiate RFC 8654 extended messages).
pub const MAX_MESSAGE_LEN: usize = 4096;
pub const MARKER: [u8; 16] = [0xff; 16];

/// Message Header errors (RFC 4271 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 19 octets where a header was required (never sent on the wire:
    /// framing waits for more bytes instead).
    Truncated,
    ConnectionNotSynchronized,
    /// The length field, which the NOTIFICATION carries back as data.
    BadMessageLength(u16),
    /// The type octet, carried back as data.
    BadMessageType(u8),
}

enum_with_unknown! {
    /// BGP message types (RFC 4271 §4.1, RFC 2918). A header with an
    /// `Unknown` type is refused (Bad Message Type, §6.1).
    pub enum MessageType(u8) {
        Open = 1,
        Update = 2,
        Notification = 3,
        Keepalive = 4,
        RouteRefresh = 5,
    }
}

impl MessageType {
    /// The total lengths allowed for this type (RFC 4271 §4.2-§4.5, RFC 2918
    /// §3); `None` for a type we do not know.
    fn valid_lengths(self) -> Option<RangeInclusive<usize>> {
        match self {
            MessageType::Open => Some(29..=MAX_MESSAGE_LEN),
            MessageType::Update => Some(23..=MAX_MESSAGE_LEN),
            MessageType::Notification => Some(21..=MAX_MESSAGE_LEN),
            MessageType::Keepalive => Some(19..=19),
            MessageType::RouteRefresh => Some(23..=23),
            MessageType::Unknown(_) => None,
        }
    }
}

/// Checks the header at the front of `buf` (which may hold a partial stream) and
/// returns the total length of the first message once all of it is in `buf`.
///
/// `Ok(None)` means "need more bytes". This is the whole of TCP framing: the caller
/// appends what it reads, calls this, and consumes `n` bytes when it says `Some(n)`.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
    if buf.len() < HEADER_LEN {
        // Reject a bad marker as soon as its bytes arrive, not after 19 of them.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(HeaderError::ConnectionNotSynchronized);
        }
        return Ok(None);
    }
    let header = Header::new_checked(buf)?;
    let len = header.length() as usize;
    if buf.len() < len {
        Ok(None)
    } else {
        Ok(Some(len))
    }
}

/// A read-only view of a message header. After `new_checked`, no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    buf: &'a [u8],
}

impl<'a> Header<'a> {
    /// Validates marker, length bounds and type (RFC 4271 §6.1).
    pub fn new_checked(buf: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if buf[..16] != MARKER {
            return Err(HeaderError::ConnectionNotSynchronized);
        }
        let len = u16::from_be_bytes([buf[16], buf[17]]);
        let ty = buf[18];
        let valid = MessageType::from(ty)
            .valid_lengths()
            .ok_or(HeaderError::BadMessageType(ty))?;
        if !valid.contains(&(len as usize)) {
            return Err(HeaderError::BadMessageLength(len));
        }
        Ok(Header { buf })
    }
    pub fn length(&self) -> u16 {
        u16::from_be_bytes([self.buf[16], self.buf[17]])
    }
    /// Never `Unknown`: `new_checked` refused those.
    pub fn message_type(&self) -> MessageType {
        MessageType::from(self.buf[18])
    }
}

/// Writes a header for a message of `total_len` bytes into `buf[..19]`.
pub fn emit_header(buf: &mut [u8], kind: MessageType, total_len: usize) -> Option<()> {
    let h = buf.get_mut(..HEADER_LEN)?;
    let len = u16::try_from(total_len).ok()?;
    h[..16].copy_from_slice(&MARKER);
    h[16..18].copy_from_slice(&len.to_be_bytes());
    h[18] = u8::from(kind);
    Some(())
}

/// Emits a KEEPALIVE (a bare header).
pub fn emit_keepalive(buf: &mut [u8]) -> Option<usize> {
    emit_header(buf, MessageType::Keepalive, HEADER_LEN)?;
    Some(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive() -> [u8; 19] {
        let mut b = [0u8; 19];
        emit_keepalive(&mut b).unwrap();
        b
    }

    #[test]
    fn framing_waits_for_the_whole_message() {
        let k = keepalive();
        assert_eq!(frame(&k[..5]), Ok(None));
        assert_eq!(frame(&k[..18]), Ok(None));
        assert_eq!(frame(&k), Ok(Some(19)));
        let mut two = [0u8; 38];
        two[..19].copy_from_slice(&k);
        two[19..].copy_from_slice(&k);
        assert_eq!(frame(&two), Ok(Some(19)));
    }

    #[test]
    fn bad_marker_is_rejected_before_the_header_is_complete() {
        assert_eq!(
            frame(&[0xff, 0xff, 0x00]),
            Err(HeaderError::ConnectionNotSynchronized)
        );
    }

    #[test]
    fn lengths_outside_the_rfc_bounds_are_rejected() {
        let mut k = keepalive();
        k[16..18].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(frame(&k), Err(HeaderError::BadMessageLength(20)));
        k[16..18].copy_from_slice(&4097u16.to_be_bytes());
        k[18] = 2;
        assert_eq!(frame(&k), Err(HeaderError::BadMessageLength(4097)));
        k[16..18].copy_from_slice(&18u16.to_be_bytes());
        assert_eq!(frame(&k), Err(HeaderError::BadMessageLength(18)));
    }

    #[test]
    fn unknown_type_is_reported_with_its_code() {
        let mut k = keepalive();
        k[18] = 9;
        assert_eq!(frame(&k), Err(HeaderError::BadMessageType(9)));
    }
}
