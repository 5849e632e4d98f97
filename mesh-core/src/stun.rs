//! STUN message codec (RFC 8489), with the NAT behaviour discovery attributes
//! of RFC 5780 (CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS), checked
//! against the test vectors of RFC 5769.
//!
//! meshd answers and sends STUN Binding requests on the UDP port it shares
//! with WireGuard, so that members behind NAT learn their public endpoint:
//! [`is_stun`] tells the two protocols apart, [`Message::parse`] reads a
//! message without copying, [`Builder`] writes one into a caller's buffer, and
//! [`binding_success`], [`binding_request`] and [`error_response`] cover the
//! common cases.
//!
//! - [`Message`] validates the framing once (header, magic cookie, length,
//!   attributes that tile the body exactly) and then hands out attributes as
//!   slices of the input. Typed accessors return `None` when the attribute is
//!   absent and `Some(Err(_))` when it is present but malformed; nothing here
//!   panics on any input.
//! - Attributes that follow MESSAGE-INTEGRITY are ignored as RFC 8489 §14.5
//!   requires (except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT), and so are
//!   those after MESSAGE-INTEGRITY-SHA256 (except FINGERPRINT, §14.6) and after
//!   FINGERPRINT (which must be last, §14.7). [`Message::attributes`] and all
//!   typed accessors follow that rule; [`Message::raw_attributes`] does not.
//! - When an attribute appears more than once, the first occurrence counts
//!   (RFC 8489 §14).
//! - MESSAGE-INTEGRITY is HMAC-SHA1 (short-term key = the password, long-term
//!   key = MD5 of `username:realm:password`, computed by the caller);
//!   MESSAGE-INTEGRITY-SHA256, PASSWORD-ALGORITHM and USERHASH are not
//!   implemented, so [`Message::unknown_comprehension_required`] reports them.
//!
//! SHA-1, HMAC-SHA1 and CRC-32 are implemented in the private `hash` module;
//! no dependency is added.
#![warn(missing_docs)]

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

mod hash;

use hash::{crc32, ct_eq, HmacSha1, SHA1_LEN};

/// The magic cookie, bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the message header.
pub const HEADER_LEN: usize = 20;
/// FINGERPRINT is the CRC-32 of the message XORed with this ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// The Binding method (RFC 8489 §18.2), the only one meshd uses.
pub const BINDING: u16 = 0x001;
/// The largest method number: methods are 12 bits wide.
pub const MAX_METHOD: u16 = 0xFFF;
/// The SOFTWARE value meshd puts in what it sends.
pub const SOFTWARE_NAME: &str = "meshd";
/// Length of the MESSAGE-INTEGRITY value (an HMAC-SHA1 tag).
pub const INTEGRITY_LEN: usize = SHA1_LEN;

/// Attribute types (RFC 8489 §18.3, RFC 5780 §7).
///
/// Types below 0x8000 are comprehension-required: a request carrying one the
/// server does not understand gets a 420 (Unknown Attribute) error response.
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 §14.1), the address without XOR.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// CHANGE-REQUEST (RFC 5780 §7.2).
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5), HMAC-SHA1.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM (RFC 8489 §14.9).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6); not implemented here.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12); not implemented here.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH (RFC 8489 §14.4); not implemented here.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11); comprehension-optional.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16); comprehension-optional.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT (RFC 8489 §14.7), CRC-32 XOR 0x5354554E; must be last.
    pub const FINGERPRINT: u16 = 0x8028;
    /// RESPONSE-ORIGIN (RFC 5780 §7.3), same format as MAPPED-ADDRESS.
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// OTHER-ADDRESS (RFC 5780 §7.4), same format as MAPPED-ADDRESS.
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// The comprehension-required attributes this codec understands; any
    /// other type below 0x8000 is reported by
    /// [`Message::unknown_comprehension_required`](super::Message::unknown_comprehension_required).
    pub const UNDERSTOOD: [u16; 9] = [
        MAPPED_ADDRESS,
        CHANGE_REQUEST,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        REALM,
        NONCE,
        XOR_MAPPED_ADDRESS,
    ];

    /// Whether `ty` is comprehension-required (below 0x8000).
    pub const fn is_comprehension_required(ty: u16) -> bool {
        ty < 0x8000
    }
}

/// Why a message could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    /// Shorter than the 20-byte header, or than its length field says.
    Truncated,
    /// The two most significant bits of the first byte are not zero, so this
    /// is not STUN (RFC 8489 §5).
    NotStun,
    /// The magic cookie is not 0x2112A442: a classic RFC 3489 message, or not
    /// STUN at all.
    BadCookie,
    /// The length field is not a multiple of 4, or the datagram holds more
    /// bytes than it says.
    BadLength,
    /// An attribute runs past the end of the message, or its value is
    /// malformed for its type (wrong size, unknown address family, invalid
    /// UTF-8, error code out of range...).
    BadAttribute,
    /// The output buffer is too small for what was asked.
    BufferTooSmall,
    /// The message would be longer than its 16-bit length field allows, or a
    /// value longer than an attribute can hold.
    TooLong,
    /// A value that cannot be encoded: a method above 0xFFF, an error code
    /// outside 300..=699, a text over the limit RFC 8489 sets for it.
    InvalidValue,
    /// An attribute added after MESSAGE-INTEGRITY (only FINGERPRINT may
    /// follow it) or after FINGERPRINT (which must be last).
    AttributeOrder,
    /// A response was asked for a message that is not a request (or, for
    /// [`binding_success`], not a Binding request).
    NotARequest,
}

impl fmt::Display for StunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StunError::Truncated => "STUN message truncated",
            StunError::NotStun => "not a STUN message (leading bits not zero)",
            StunError::BadCookie => "STUN magic cookie missing",
            StunError::BadLength => "STUN length field does not match the message",
            StunError::BadAttribute => "malformed STUN attribute",
            StunError::BufferTooSmall => "buffer too small for the STUN message",
            StunError::TooLong => "STUN message or attribute too long",
            StunError::InvalidValue => "value cannot be encoded in STUN",
            StunError::AttributeOrder => "STUN attribute after MESSAGE-INTEGRITY or FINGERPRINT",
            StunError::NotARequest => "not a STUN request to answer",
        })
    }
}

/// The 96-bit transaction id that pairs a response with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// The class of a message, the two bits interleaved with the method in the
/// message type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 0b00.
    Request,
    /// 0b01: no response expected.
    Indication,
    /// 0b10.
    SuccessResponse,
    /// 0b11.
    ErrorResponse,
}

/// The 14-bit message type: method bits M11..M0 with the class bits C1 and C0
/// interleaved as `M11..M7 C1 M6..M4 C0 M3..M0` (RFC 8489 §5, figure 3).
/// `None` if the method does not fit in 12 bits.
pub const fn message_type(class: Class, method: u16) -> Option<u16> {
    if method > MAX_METHOD {
        return None;
    }
    let c = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::SuccessResponse => 0b10,
        Class::ErrorResponse => 0b11,
    };
    Some(
        ((method & 0xF80) << 2)
            | ((method & 0x070) << 1)
            | (method & 0x00F)
            | ((c & 0b10) << 7)
            | ((c & 0b01) << 4),
    )
}

/// Splits a message type into its class and method (the inverse of
/// [`message_type`]; the two leading bits are ignored).
pub const fn split_message_type(ty: u16) -> (Class, u16) {
    let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
    let c = ((ty >> 4) & 0b01) | ((ty >> 7) & 0b10);
    let class = match c {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::SuccessResponse,
        _ => Class::ErrorResponse,
    };
    (class, method)
}

/// The flags of a CHANGE-REQUEST attribute (RFC 5780 §7.2): ask the server
/// to answer from another IP address and/or port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeRequest {
    /// The "A" flag: change the IP address.
    pub ip: bool,
    /// The "B" flag: change the port.
    pub port: bool,
}

const CHANGE_IP: u8 = 0x04;
const CHANGE_PORT: u8 = 0x02;

/// The cheap test that demultiplexes STUN from WireGuard on a shared UDP
/// port: at least 20 bytes, a multiple of 4, the two leading bits zero, the
/// magic cookie at bytes 4..8, and the header's length field equal to the
/// datagram's length minus 20.
///
/// No WireGuard message can pass: every one starts with its type (1 to 4)
/// followed by three zero bytes, so its would-be length field (bytes 2..4) is
/// zero, which only a 20-byte datagram could match; the shortest WireGuard
/// message (a transport keepalive) is 32 bytes. This holds whatever the
/// random sender/receiver index in bytes 4..8 happens to be.
///
/// `true` does not mean the message is well formed; [`Message::parse`] says.
pub fn is_stun(datagram: &[u8]) -> bool {
    let Some(h) = datagram.first_chunk::<HEADER_LEN>() else {
        return false;
    };
    datagram.len() % 4 == 0
        && h[0] & 0xC0 == 0
        && u32::from_be_bytes([h[4], h[5], h[6], h[7]]) == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([h[2], h[3]])) == datagram.len() - HEADER_LEN
}

/// Rounds an attribute value length up to the 4-byte boundary.
const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute with its position.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    /// Offset of the attribute's type field from the start of the message.
    offset: usize,
    ty: u16,
    value: &'a [u8],
}

/// Walks the attributes of a message body; yields an error (once) for an
/// attribute that does not fit.
#[derive(Debug, Clone)]
struct Tlvs<'a> {
    /// The part of the body not yet walked.
    rest: &'a [u8],
    /// Offset of `rest` from the start of the message.
    offset: usize,
}

impl<'a> Tlvs<'a> {
    fn new(body: &'a [u8]) -> Tlvs<'a> {
        Tlvs {
            rest: body,
            offset: HEADER_LEN,
        }
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let (h, after) = match rest.split_first_chunk::<4>() {
            Some(x) => x,
            None => return Some(Err(StunError::BadAttribute)),
        };
        let ty = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let (Some(value), Some(next)) = (after.get(..len), after.get(padded(len)..)) else {
            return Some(Err(StunError::BadAttribute));
        };
        let tlv = Tlv {
            offset: self.offset,
            ty,
            value,
        };
        self.rest = next;
        self.offset += 4 + padded(len);
        Some(Ok(tlv))
    }
}

/// Where we are with respect to the attributes that end a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Nothing,
    /// After MESSAGE-INTEGRITY: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
    /// count.
    Integrity,
    /// After MESSAGE-INTEGRITY-SHA256: only FINGERPRINT counts.
    IntegritySha256,
    /// After FINGERPRINT: nothing counts.
    Fingerprint,
}

/// The attributes of a message that count, in order, as `(type, value)`:
/// those after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
/// FINGERPRINT are skipped (RFC 8489 §14.5), as are those after
/// MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT (§14.6) and everything
/// after FINGERPRINT. Values exclude padding.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    tlvs: Tlvs<'a>,
    seen: Seen,
}

impl<'a> Attributes<'a> {
    fn next_tlv(&mut self) -> Option<Tlv<'a>> {
        loop {
            if self.seen == Seen::Fingerprint {
                return None;
            }
            // A parsed message has no malformed attribute; stop if one shows
            // up anyway.
            let tlv = self.tlvs.next()?.ok()?;
            let counts = match (self.seen, tlv.ty) {
                (_, attr::FINGERPRINT) => {
                    self.seen = Seen::Fingerprint;
                    true
                }
                (Seen::Nothing, attr::MESSAGE_INTEGRITY) => {
                    self.seen = Seen::Integrity;
                    true
                }
                (Seen::Nothing | Seen::Integrity, attr::MESSAGE_INTEGRITY_SHA256) => {
                    self.seen = Seen::IntegritySha256;
                    true
                }
                (Seen::Nothing, _) => true,
                _ => false,
            };
            if counts {
                return Some(tlv);
            }
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_tlv().map(|t| (t.ty, t.value))
    }
}

/// Every attribute of a message as it appears, `(type, value)`, including
/// those the rules of [`Attributes`] ignore. Values exclude padding.
#[derive(Debug, Clone)]
pub struct RawAttributes<'a> {
    tlvs: Tlvs<'a>,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.tlvs.next()?.ok().map(|t| (t.ty, t.value))
    }
}

/// A parsed STUN message borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The whole message, header included (exactly 20 + length bytes).
    bytes: &'a [u8],
    ty: u16,
    tid: TransactionId,
}

impl<'a> Message<'a> {
    /// Parses one datagram as a STUN message: checks the leading zero bits,
    /// the magic cookie, that the length field is a multiple of 4 and equals
    /// the number of bytes after the header, and that the attributes tile
    /// the body exactly (padding bytes are not checked, as RFC 8489 says).
    /// Attribute values are only checked by the accessors that read them.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, StunError> {
        let (h, body) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(StunError::Truncated)?;
        if h[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        if u32::from_be_bytes([h[4], h[5], h[6], h[7]]) != MAGIC_COOKIE {
            return Err(StunError::BadCookie);
        }
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len % 4 != 0 {
            return Err(StunError::BadLength);
        }
        if body.len() < len {
            return Err(StunError::Truncated);
        }
        if body.len() > len {
            return Err(StunError::BadLength);
        }
        for tlv in Tlvs::new(body) {
            tlv?;
        }
        let (_, tid) = h.split_at(8);
        let tid: [u8; 12] = tid.try_into().map_err(|_| StunError::Truncated)?;
        Ok(Message {
            bytes,
            ty: u16::from_be_bytes([h[0], h[1]]),
            tid: TransactionId(tid),
        })
    }

    /// The whole message, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The 14-bit message type (class and method interleaved).
    pub fn message_type(&self) -> u16 {
        self.ty
    }

    /// The message class.
    pub fn class(&self) -> Class {
        split_message_type(self.ty).0
    }

    /// The method, 12 bits ([`BINDING`] is 0x001).
    pub fn method(&self) -> u16 {
        split_message_type(self.ty).1
    }

    /// Whether this is a Binding request.
    pub fn is_binding_request(&self) -> bool {
        self.class() == Class::Request && self.method() == BINDING
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    fn body(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }

    /// The attributes that count, in order (see [`Attributes`] for which
    /// ones are skipped).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            tlvs: Tlvs::new(self.body()),
            seen: Seen::Nothing,
        }
    }

    /// Every attribute in order, including those RFC 8489 says to ignore.
    pub fn raw_attributes(&self) -> RawAttributes<'a> {
        RawAttributes {
            tlvs: Tlvs::new(self.body()),
        }
    }

    fn find(&self, ty: u16) -> Option<Tlv<'a>> {
        let mut it = self.attributes();
        while let Some(t) = it.next_tlv() {
            if t.ty == ty {
                return Some(t);
            }
        }
        None
    }

    /// The value of the first attribute of type `ty` that counts, without
    /// padding.
    pub fn attribute(&self, ty: u16) -> Option<&'a [u8]> {
        self.find(ty).map(|t| t.value)
    }

    fn address(&self, ty: u16, xor: bool) -> Option<Result<SocketAddr, StunError>> {
        let value = self.attribute(ty)?;
        Some(decode_address(value, xor.then_some(&self.tid)))
    }

    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), IPv4 or IPv6: the source address
    /// of the request as the server saw it.
    pub fn xor_mapped_address(&self) -> Option<Result<SocketAddr, StunError>> {
        self.address(attr::XOR_MAPPED_ADDRESS, true)
    }

    /// MAPPED-ADDRESS (RFC 8489 §14.1), the same without XOR (old servers).
    pub fn mapped_address(&self) -> Option<Result<SocketAddr, StunError>> {
        self.address(attr::MAPPED_ADDRESS, false)
    }

    /// RESPONSE-ORIGIN (RFC 5780 §7.3): the address the response was sent
    /// from.
    pub fn response_origin(&self) -> Option<Result<SocketAddr, StunError>> {
        self.address(attr::RESPONSE_ORIGIN, false)
    }

    /// OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate address, used
    /// with CHANGE-REQUEST.
    pub fn other_address(&self) -> Option<Result<SocketAddr, StunError>> {
        self.address(attr::OTHER_ADDRESS, false)
    }

    /// CHANGE-REQUEST (RFC 5780 §7.2). Unassigned flag bits are ignored.
    pub fn change_request(&self) -> Option<Result<ChangeRequest, StunError>> {
        let value = self.attribute(attr::CHANGE_REQUEST)?;
        Some(match *value {
            [_, _, _, flags] => Ok(ChangeRequest {
                ip: flags & CHANGE_IP != 0,
                port: flags & CHANGE_PORT != 0,
            }),
            _ => Err(StunError::BadAttribute),
        })
    }

    /// ERROR-CODE (RFC 8489 §14.8): the code (300..=699) and the reason
    /// phrase. A class outside 3..=6, a number above 99 or a reason that is
    /// not UTF-8 is an error.
    pub fn error_code(&self) -> Option<Result<(u16, &'a str), StunError>> {
        let value = self.attribute(attr::ERROR_CODE)?;
        Some(decode_error_code(value))
    }

    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the attribute types a server did
    /// not understand. An odd-length value is an error.
    pub fn unknown_attributes(
        &self,
    ) -> Option<Result<impl Iterator<Item = u16> + Clone + 'a, StunError>> {
        let value = self.attribute(attr::UNKNOWN_ATTRIBUTES)?;
        if value.len() % 2 != 0 {
            return Some(Err(StunError::BadAttribute));
        }
        Some(Ok(value
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))))
    }

    fn text(&self, ty: u16) -> Option<Result<&'a str, StunError>> {
        let value = self.attribute(ty)?;
        Some(core::str::from_utf8(value).map_err(|_| StunError::BadAttribute))
    }

    /// SOFTWARE (RFC 8489 §14.14). Invalid UTF-8 is an error.
    pub fn software(&self) -> Option<Result<&'a str, StunError>> {
        self.text(attr::SOFTWARE)
    }

    /// USERNAME (RFC 8489 §14.3). Invalid UTF-8 is an error.
    pub fn username(&self) -> Option<Result<&'a str, StunError>> {
        self.text(attr::USERNAME)
    }

    /// REALM (RFC 8489 §14.9). Invalid UTF-8 is an error.
    pub fn realm(&self) -> Option<Result<&'a str, StunError>> {
        self.text(attr::REALM)
    }

    /// NONCE (RFC 8489 §14.10). Invalid UTF-8 is an error.
    pub fn nonce(&self) -> Option<Result<&'a str, StunError>> {
        self.text(attr::NONCE)
    }

    /// The comprehension-required attribute types (below 0x8000) that this
    /// codec does not understand, in order of appearance, for the
    /// UNKNOWN-ATTRIBUTES of a 420 response (RFC 8489 §6.3.1). Attributes the
    /// RFC says to ignore are not reported. A type that appears more than
    /// once is reported each time.
    pub fn unknown_comprehension_required(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        self.attributes()
            .map(|(ty, _)| ty)
            .filter(|ty| attr::is_comprehension_required(*ty) && !attr::UNDERSTOOD.contains(ty))
    }

    /// Checks FINGERPRINT (RFC 8489 §14.7): `None` if there is none, `Some(true)`
    /// if the first one is the last attribute, 4 bytes long, and equal to the
    /// CRC-32 of the message before it XOR 0x5354554E; `Some(false)` otherwise.
    pub fn fingerprint_ok(&self) -> Option<bool> {
        let mut tlvs = Tlvs::new(self.body());
        let fp = tlvs.find_map(|t| t.ok().filter(|t| t.ty == attr::FINGERPRINT))?;
        let last = tlvs.next().is_none();
        let Ok(got) = <[u8; 4]>::try_from(fp.value) else {
            return Some(false);
        };
        let covered = self.bytes.get(..fp.offset).unwrap_or_default();
        let want = crc32(covered) ^ FINGERPRINT_XOR;
        Some(last && u32::from_be_bytes(got) == want)
    }

    /// Checks MESSAGE-INTEGRITY (RFC 8489 §14.5) with `key` (the password for
    /// short-term credentials, MD5(username ":" realm ":" password) for
    /// long-term ones): `None` if the message has none that counts,
    /// otherwise whether the HMAC-SHA1 of the message up to the attribute,
    /// with the header's length field set to end just after it, matches.
    /// Attributes after it do not affect the result. The comparison takes
    /// the same time wherever the tags differ.
    pub fn verify_integrity(&self, key: &[u8]) -> Option<bool> {
        let mi = self.find(attr::MESSAGE_INTEGRITY)?;
        if mi.value.len() != INTEGRITY_LEN {
            return Some(false);
        }
        let Some(covered) = self.bytes.get(..mi.offset) else {
            return Some(false);
        };
        let (Some(head), Some(rest)) = (covered.get(..2), covered.get(4..)) else {
            return Some(false);
        };
        // The length as if MESSAGE-INTEGRITY were the last attribute.
        let Ok(len) = u16::try_from(mi.offset + 4 + INTEGRITY_LEN - HEADER_LEN) else {
            return Some(false);
        };
        let mut mac = HmacSha1::new(key);
        mac.update(head);
        mac.update(&len.to_be_bytes());
        mac.update(rest);
        Some(ct_eq(&mac.finalize(), mi.value))
    }
}

/// XOR key for addresses: the magic cookie, then the transaction id.
fn xor_key(tid: &TransactionId) -> [u8; 16] {
    let mut k = [0u8; 16];
    let (cookie, rest) = k.split_at_mut(4);
    cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    rest.copy_from_slice(&tid.0);
    k
}

fn xor_in_place(bytes: &mut [u8], key: &[u8]) {
    for (b, k) in bytes.iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Decodes a (XOR-)MAPPED-ADDRESS value: reserved byte (ignored), family
/// (1 = IPv4, 2 = IPv6), port, address; XORed with the cookie and the
/// transaction id when `xor` is given.
fn decode_address(value: &[u8], xor: Option<&TransactionId>) -> Result<SocketAddr, StunError> {
    let key = xor.map(xor_key);
    let Some(([_, family, p0, p1], addr)) = value.split_first_chunk::<4>().map(|(h, a)| (*h, a))
    else {
        return Err(StunError::BadAttribute);
    };
    let mut port = u16::from_be_bytes([p0, p1]);
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    match family {
        0x01 => {
            let mut a: [u8; 4] = addr.try_into().map_err(|_| StunError::BadAttribute)?;
            if let Some(k) = &key {
                xor_in_place(&mut a, k);
            }
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        0x02 => {
            let mut a: [u8; 16] = addr.try_into().map_err(|_| StunError::BadAttribute)?;
            if let Some(k) = &key {
                xor_in_place(&mut a, k);
            }
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                0,
                0,
            )))
        }
        _ => Err(StunError::BadAttribute),
    }
}

/// Encodes a (XOR-)MAPPED-ADDRESS value into `out`; returns its length (8 or
/// 20). The IPv6 flow info and scope id are not encoded.
fn encode_address(addr: SocketAddr, xor: Option<&TransactionId>, out: &mut [u8; 20]) -> usize {
    let key = xor.map(xor_key);
    let mut port = addr.port();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let (head, rest) = out.split_at_mut(4);
    let (family, len) = match addr.ip() {
        IpAddr::V4(ip) => {
            let a = rest.get_mut(..4).unwrap_or_default();
            a.copy_from_slice(&ip.octets());
            if let Some(k) = &key {
                xor_in_place(a, k);
            }
            (0x01, 8)
        }
        IpAddr::V6(ip) => {
            rest.copy_from_slice(&ip.octets());
            if let Some(k) = &key {
                xor_in_place(rest, k);
            }
            (0x02, 20)
        }
    };
    let [p0, p1] = port.to_be_bytes();
    head.copy_from_slice(&[0, family, p0, p1]);
    len
}

fn decode_error_code(value: &[u8]) -> Result<(u16, &str), StunError> {
    let Some(([_, _, class, number], reason)) =
        value.split_first_chunk::<4>().map(|(h, r)| (*h, r))
    else {
        return Err(StunError::BadAttribute);
    };
    let class = u16::from(class & 0x07);
    let number = u16::from(number);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(StunError::BadAttribute);
    }
    let reason = core::str::from_utf8(reason).map_err(|_| StunError::BadAttribute)?;
    Ok((class * 100 + number, reason))
}

/// Texts RFC 8489 limits to fewer than 128 characters (SOFTWARE, REALM,
/// NONCE, the ERROR-CODE reason phrase).
const MAX_TEXT_CHARS: usize = 127;
/// USERNAME must be fewer than 509 bytes (RFC 8489 §14.3).
const MAX_USERNAME_BYTES: usize = 508;

fn check_text(s: &str) -> Result<(), StunError> {
    if s.chars().count() > MAX_TEXT_CHARS {
        Err(StunError::InvalidValue)
    } else {
        Ok(())
    }
}

/// Where the builder is with respect to the attributes that must come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sealed {
    Open,
    Integrity,
    Fingerprint,
}

/// Writes a STUN message into a caller's buffer, attribute by attribute.
///
/// Every adder checks that the attribute fits before writing anything: on an
/// error the buffer holds the message as it was, and the builder can still
/// be used or finished. Padding is zero bytes. MESSAGE-INTEGRITY and
/// FINGERPRINT are computed over what was added before them, so add them
/// last, in that order; anything added after them is refused with
/// [`StunError::AttributeOrder`].
///
/// ```
/// use mesh_core::stun::{Builder, Class, Message, TransactionId, BINDING};
/// let mut buf = [0u8; 128];
/// let tid = TransactionId([7; 12]);
/// let mut b = Builder::new(&mut buf, Class::SuccessResponse, BINDING, tid)?;
/// b.xor_mapped_address("192.0.2.1:32853".parse().unwrap())?
///     .software("meshd")?
///     .fingerprint()?;
/// let n = b.finish()?;
/// let m = Message::parse(&buf[..n])?;
/// assert_eq!(m.xor_mapped_address(), Some(Ok("192.0.2.1:32853".parse().unwrap())));
/// assert_eq!(m.fingerprint_ok(), Some(true));
/// # Ok::<(), mesh_core::stun::StunError>(())
/// ```
#[derive(Debug)]
pub struct Builder<'b> {
    buf: &'b mut [u8],
    /// Bytes written so far, header included; always a multiple of 4.
    len: usize,
    tid: TransactionId,
    sealed: Sealed,
}

impl<'b> Builder<'b> {
    /// Starts a message of `class` and `method` (at most 0xFFF) with the
    /// transaction id `tid` and no attributes.
    pub fn new(
        buf: &'b mut [u8],
        class: Class,
        method: u16,
        tid: TransactionId,
    ) -> Result<Builder<'b>, StunError> {
        let ty = message_type(class, method).ok_or(StunError::InvalidValue)?;
        let h = buf
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(StunError::BufferTooSmall)?;
        let (head, id) = h.split_at_mut(8);
        let [t0, t1] = ty.to_be_bytes();
        let [c0, c1, c2, c3] = MAGIC_COOKIE.to_be_bytes();
        head.copy_from_slice(&[t0, t1, 0, 0, c0, c1, c2, c3]);
        id.copy_from_slice(&tid.0);
        Ok(Builder {
            buf,
            len: HEADER_LEN,
            tid,
            sealed: Sealed::Open,
        })
    }

    /// Appends the header of an attribute of type `ty` with a `value_len`-byte
    /// value, fills the value and its padding with `pad`, and updates the
    /// header's length field; returns the offset of the value. Writes
    /// nothing on error.
    fn reserve(&mut self, ty: u16, value_len: usize, pad: u8) -> Result<usize, StunError> {
        match (self.sealed, ty) {
            (Sealed::Open, _) | (Sealed::Integrity, attr::FINGERPRINT) => {}
            _ => return Err(StunError::AttributeOrder),
        }
        let vlen = u16::try_from(value_len).map_err(|_| StunError::TooLong)?;
        let end = self.len + 4 + padded(value_len);
        let body_len = u16::try_from(end - HEADER_LEN).map_err(|_| StunError::TooLong)?;
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(StunError::BufferTooSmall)?;
        let (h, value) = slot
            .split_first_chunk_mut::<4>()
            .ok_or(StunError::BufferTooSmall)?;
        let [t0, t1] = ty.to_be_bytes();
        let [l0, l1] = vlen.to_be_bytes();
        *h = [t0, t1, l0, l1];
        value.fill(pad);
        if let Some(l) = self.buf.get_mut(2..4) {
            l.copy_from_slice(&body_len.to_be_bytes());
        }
        let at = self.len + 4;
        self.len = end;
        match ty {
            attr::MESSAGE_INTEGRITY if self.sealed == Sealed::Open => {
                self.sealed = Sealed::Integrity;
            }
            attr::FINGERPRINT => self.sealed = Sealed::Fingerprint,
            _ => {}
        }
        Ok(at)
    }

    fn push(&mut self, ty: u16, value: &[u8], pad: u8) -> Result<&mut Self, StunError> {
        let at = self.reserve(ty, value.len(), pad)?;
        if let Some(dst) = self.buf.get_mut(at..at + value.len()) {
            dst.copy_from_slice(value);
        }
        Ok(self)
    }

    /// Appends any attribute, `value` as given (without padding; zero padding
    /// is added).
    pub fn attribute(&mut self, ty: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        self.push(ty, value, 0)
    }

    /// Like [`Builder::attribute`] with padding bytes of `pad`: RFC 5769's
    /// test vectors pad with spaces, and only the tests need this.
    #[cfg(test)]
    fn attribute_padded(&mut self, ty: u16, value: &[u8], pad: u8) -> Result<&mut Self, StunError> {
        self.push(ty, value, pad)
    }

    fn address(&mut self, ty: u16, addr: SocketAddr, xor: bool) -> Result<&mut Self, StunError> {
        let mut v = [0u8; 20];
        let tid = self.tid;
        let n = encode_address(addr, xor.then_some(&tid), &mut v);
        self.push(ty, v.get(..n).unwrap_or_default(), 0)
    }

    /// Appends XOR-MAPPED-ADDRESS (IPv6 flow info and scope id are dropped).
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        self.address(attr::XOR_MAPPED_ADDRESS, addr, true)
    }

    /// Appends MAPPED-ADDRESS.
    pub fn mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        self.address(attr::MAPPED_ADDRESS, addr, false)
    }

    /// Appends RESPONSE-ORIGIN (RFC 5780).
    pub fn response_origin(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        self.address(attr::RESPONSE_ORIGIN, addr, false)
    }

    /// Appends OTHER-ADDRESS (RFC 5780).
    pub fn other_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        self.address(attr::OTHER_ADDRESS, addr, false)
    }

    /// Appends CHANGE-REQUEST (RFC 5780).
    pub fn change_request(&mut self, change: ChangeRequest) -> Result<&mut Self, StunError> {
        let flags =
            if change.ip { CHANGE_IP } else { 0 } | if change.port { CHANGE_PORT } else { 0 };
        self.push(attr::CHANGE_REQUEST, &[0, 0, 0, flags], 0)
    }

    /// Appends ERROR-CODE: `code` in 300..=699, `reason` fewer than 128
    /// characters; otherwise [`StunError::InvalidValue`].
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, StunError> {
        if !(300..=699).contains(&code) {
            return Err(StunError::InvalidValue);
        }
        check_text(reason)?;
        let at = self.reserve(attr::ERROR_CODE, 4 + reason.len(), 0)?;
        let dst = self
            .buf
            .get_mut(at..at + 4 + reason.len())
            .unwrap_or_default();
        if let Some((h, r)) = dst.split_first_chunk_mut::<4>() {
            *h = [0, 0, (code / 100) as u8, (code % 100) as u8];
            r.copy_from_slice(reason.as_bytes());
        }
        Ok(self)
    }

    /// Appends SOFTWARE (fewer than 128 characters).
    pub fn software(&mut self, s: &str) -> Result<&mut Self, StunError> {
        check_text(s)?;
        self.push(attr::SOFTWARE, s.as_bytes(), 0)
    }

    /// Appends USERNAME (fewer than 509 bytes; SASLprep is the caller's).
    pub fn username(&mut self, s: &str) -> Result<&mut Self, StunError> {
        if s.len() > MAX_USERNAME_BYTES {
            return Err(StunError::InvalidValue);
        }
        self.push(attr::USERNAME, s.as_bytes(), 0)
    }

    /// Appends REALM (fewer than 128 characters).
    pub fn realm(&mut self, s: &str) -> Result<&mut Self, StunError> {
        check_text(s)?;
        self.push(attr::REALM, s.as_bytes(), 0)
    }

    /// Appends NONCE (fewer than 128 characters).
    pub fn nonce(&mut self, s: &str) -> Result<&mut Self, StunError> {
        check_text(s)?;
        self.push(attr::NONCE, s.as_bytes(), 0)
    }

    /// Appends UNKNOWN-ATTRIBUTES listing `types` (for a 420 response).
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<&mut Self, StunError> {
        let n = types.len().checked_mul(2).ok_or(StunError::TooLong)?;
        let at = self.reserve(attr::UNKNOWN_ATTRIBUTES, n, 0)?;
        let dst = self.buf.get_mut(at..at + n).unwrap_or_default();
        for (d, t) in dst.chunks_exact_mut(2).zip(types) {
            d.copy_from_slice(&t.to_be_bytes());
        }
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 under `key` of the message so
    /// far, with the length field counting this attribute (RFC 8489 §14.5).
    /// Only FINGERPRINT may follow.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, StunError> {
        let start = self.len;
        let at = self.reserve(attr::MESSAGE_INTEGRITY, INTEGRITY_LEN, 0)?;
        let mut mac = HmacSha1::new(key);
        mac.update(self.buf.get(..start).unwrap_or_default());
        let tag = mac.finalize();
        if let Some(dst) = self.buf.get_mut(at..at + INTEGRITY_LEN) {
            dst.copy_from_slice(&tag);
        }
        Ok(self)
    }

    /// Appends FINGERPRINT: CRC-32 of the message so far (length field
    /// counting this attribute) XOR 0x5354554E. Nothing may follow.
    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let start = self.len;
        let at = self.reserve(attr::FINGERPRINT, 4, 0)?;
        let crc = crc32(self.buf.get(..start).unwrap_or_default()) ^ FINGERPRINT_XOR;
        if let Some(dst) = self.buf.get_mut(at..at + 4) {
            dst.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(self)
    }

    /// The number of bytes written so far (the message is complete and valid
    /// at every step).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a message has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Ends the message; returns its length in bytes.
    pub fn finish(self) -> Result<usize, StunError> {
        Ok(self.len)
    }
}

/// Answers a Binding request: a success response with the request's
/// transaction id, XOR-MAPPED-ADDRESS = `from` (where the request came from),
/// SOFTWARE "meshd" and FINGERPRINT. [`StunError::NotARequest`] if `request`
/// is not a Binding request.
///
/// A responder should first answer a request whose
/// [`Message::unknown_comprehension_required`] is not empty with a 420 from
/// [`error_response`] (RFC 8489 §6.3.1). CHANGE-REQUEST is understood by the
/// codec but ignored here: a responder with a single address cannot honour
/// it, and what to answer instead is its own decision (RFC 5780).
pub fn binding_success(
    request: &Message,
    from: SocketAddr,
    out: &mut [u8],
) -> Result<usize, StunError> {
    if !request.is_binding_request() {
        return Err(StunError::NotARequest);
    }
    let mut b = Builder::new(
        out,
        Class::SuccessResponse,
        BINDING,
        request.transaction_id(),
    )?;
    b.xor_mapped_address(from)?
        .software(SOFTWARE_NAME)?
        .fingerprint()?;
    b.finish()
}

/// A Binding request with transaction id `tid`, an optional CHANGE-REQUEST
/// (RFC 5780), and FINGERPRINT.
pub fn binding_request(
    tid: TransactionId,
    change: Option<ChangeRequest>,
    out: &mut [u8],
) -> Result<usize, StunError> {
    let mut b = Builder::new(out, Class::Request, BINDING, tid)?;
    if let Some(c) = change {
        b.change_request(c)?;
    }
    b.fingerprint()?;
    b.finish()
}

/// An error response to `request` (any method): ERROR-CODE `code` with
/// `reason`, UNKNOWN-ATTRIBUTES `unknown` if not empty (for 420), SOFTWARE
/// "meshd" and FINGERPRINT. [`StunError::NotARequest`] if `request` is not a
/// request (indications and responses are never answered).
pub fn error_response(
    request: &Message,
    code: u16,
    reason: &str,
    unknown: &[u16],
    out: &mut [u8],
) -> Result<usize, StunError> {
    if request.class() != Class::Request {
        return Err(StunError::NotARequest);
    }
    let mut b = Builder::new(
        out,
        Class::ErrorResponse,
        request.method(),
        request.transaction_id(),
    )?;
    b.error_code(code, reason)?;
    if !unknown.is_empty() {
        b.unknown_attributes(unknown)?;
    }
    b.software(SOFTWARE_NAME)?.fingerprint()?;
    b.finish()
}

#[cfg(test)]
mod tests;
