//! Peer exchange: what members tell each other about endpoints, inside the
//! mesh.
//!
//! The messages travel as UDP datagrams between overlay addresses on
//! [`PEX_PORT`], so they ride the WireGuard tunnels (hop by hop authenticated)
//! and, where two members have no tunnel, transit through members like any
//! other member-to-member traffic. They carry:
//! - [`Message::Endpoints`]: the sender's NAT (its behaviour and PlayStation
//!   type, for everyone's status page), its own public endpoints (learned
//!   with STUN, or its own address when it has no NAT), and the endpoints at
//!   which it sees other members (the source of their authenticated
//!   datagrams);
//! - [`Message::Punch`]: "start WireGuard handshakes to my candidates now, I
//!   am doing the same to yours" (hole punching), and its answer.
//!
//! The format is small and fixed, big-endian:
//!
//! ```text
//! magic 'M' 'X' | version 1 | type | body
//! type 1 Endpoints: NAT behaviour | PlayStation type (0: unknown) |
//!   count, count × entry
//!   entry: subject overlay (4) | flags (bit 0: the subject is the sender,
//!          reporting itself) | endpoint
//! type 2 Punch: token (4) | flags (bit 0: answer) | count, count × endpoint
//! endpoint: family (4 or 6) | address (4 or 16) | port (2)
//! ```
//!
//! Decoding never panics; anything malformed is an [`PexError`].
//!
//! Why not postcard, which the mesh's other messages use (invite tokens and
//! the join exchange, relayed discovery, group records): this format has
//! exactly one encoding per message (the `pex` fuzz target checks that what
//! decodes encodes back to the same octets), while postcard's decoder also
//! takes over-long varints. Moving it would make it no simpler and less
//! strict, and change the wire between versions for nothing (issue 17,
//! part 5).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The overlay UDP port of peer exchange.
pub const PEX_PORT: u16 = 51821;
/// Most entries in one Endpoints message.
pub const MAX_ENTRIES: usize = 32;
/// Most candidates in one Punch message.
pub const MAX_CANDIDATES: usize = 4;
/// The largest encoded message (32 IPv6 entries).
pub const MAX_LEN: usize = 7 + MAX_ENTRIES * (4 + 1 + 19);

const MAGIC: [u8; 2] = *b"MX";
const VERSION: u8 = 1;
const T_ENDPOINTS: u8 = 1;
const T_PUNCH: u8 = 2;

/// One endpoint of a member, as seen by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The member's overlay address.
    pub subject: Ipv4Addr,
    /// The sender reports its own endpoint (from STUN or its own address).
    pub own: bool,
    pub endpoint: SocketAddr,
}

/// A peer exchange message.
// No allocator to box the big variant into: a message lives briefly on the
// stack while it is encoded or handled.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Endpoints {
        /// The sender's NAT: [`crate::nat::Behaviour::code`].
        nat: u8,
        /// The PlayStation type it gives a console (1..=3; 0: unknown).
        playstation: u8,
        entries: heapless::Vec<Entry, MAX_ENTRIES>,
    },
    Punch {
        /// Chosen by the side that asks; the answer repeats it.
        token: u32,
        answer: bool,
        candidates: heapless::Vec<SocketAddr, MAX_CANDIDATES>,
    },
}

/// Why a message did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PexError {
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    UnknownType(u8),
    BadFamily(u8),
    /// Flag bits this version does not define.
    BadFlags(u8),
    TooMany,
    /// Bytes left over after the message.
    Trailing,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for PexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PexError::Truncated => f.write_str("truncated"),
            PexError::BadMagic => f.write_str("not a peer exchange message"),
            PexError::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            PexError::UnknownType(t) => write!(f, "unknown message type {t}"),
            PexError::BadFamily(x) => write!(f, "unknown address family {x}"),
            PexError::BadFlags(x) => write!(f, "unknown flags {x:#04x}"),
            PexError::TooMany => f.write_str("too many entries"),
            PexError::Trailing => f.write_str("trailing bytes"),
            PexError::BufferTooSmall => f.write_str("buffer too small"),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PexError> {
        let (a, b) = self.0.split_at_checked(n).ok_or(PexError::Truncated)?;
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, PexError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PexError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// A flags byte: bit 0 only.
    fn flag(&mut self) -> Result<bool, PexError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(PexError::BadFlags(x)),
        }
    }
    fn endpoint(&mut self) -> Result<SocketAddr, PexError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            x => return Err(PexError::BadFamily(x)),
        };
        let port = u16::from_be_bytes(self.array::<2>()?);
        Ok(SocketAddr::new(ip, port))
    }
}

struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), PexError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(PexError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
    fn endpoint(&mut self, e: &SocketAddr) -> Result<(), PexError> {
        match e.ip() {
            IpAddr::V4(a) => {
                self.put(&[4])?;
                self.put(&a.octets())?;
            }
            IpAddr::V6(a) => {
                self.put(&[6])?;
                self.put(&a.octets())?;
            }
        }
        self.put(&e.port().to_be_bytes())
    }
}

impl Message {
    pub fn decode(bytes: &[u8]) -> Result<Message, PexError> {
        let mut r = Reader(bytes);
        if r.array::<2>()? != MAGIC {
            return Err(PexError::BadMagic);
        }
        match r.u8()? {
            VERSION => {}
            v => return Err(PexError::UnsupportedVersion(v)),
        }
        let msg = match r.u8()? {
            T_ENDPOINTS => {
                let nat = r.u8()?;
                let playstation = r.u8()?;
                let count = r.u8()? as usize;
                if count > MAX_ENTRIES {
                    return Err(PexError::TooMany);
                }
                let mut entries = heapless::Vec::new();
                for _ in 0..count {
                    let subject = Ipv4Addr::from(r.array::<4>()?);
                    let own = r.flag()?;
                    let endpoint = r.endpoint()?;
                    entries
                        .push(Entry {
                            subject,
                            own,
                            endpoint,
                        })
                        .map_err(|_| PexError::TooMany)?;
                }
                Message::Endpoints {
                    nat,
                    playstation,
                    entries,
                }
            }
            T_PUNCH => {
                let token = u32::from_be_bytes(r.array::<4>()?);
                let answer = r.flag()?;
                let count = r.u8()? as usize;
                if count > MAX_CANDIDATES {
                    return Err(PexError::TooMany);
                }
                let mut candidates = heapless::Vec::new();
                for _ in 0..count {
                    candidates
                        .push(r.endpoint()?)
                        .map_err(|_| PexError::TooMany)?;
                }
                Message::Punch {
                    token,
                    answer,
                    candidates,
                }
            }
            t => return Err(PexError::UnknownType(t)),
        };
        if !r.0.is_empty() {
            return Err(PexError::Trailing);
        }
        Ok(msg)
    }

    /// Encodes into `out`, returning the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, PexError> {
        let mut w = Writer { buf: out, len: 0 };
        w.put(&MAGIC)?;
        w.put(&[VERSION])?;
        match self {
            Message::Endpoints {
                nat,
                playstation,
                entries,
            } => {
                w.put(&[T_ENDPOINTS, *nat, *playstation, entries.len() as u8])?;
                for e in entries {
                    w.put(&e.subject.octets())?;
                    w.put(&[e.own as u8])?;
                    w.endpoint(&e.endpoint)?;
                }
            }
            Message::Punch {
                token,
                answer,
                candidates,
            } => {
                w.put(&[T_PUNCH])?;
                w.put(&token.to_be_bytes())?;
                w.put(&[*answer as u8, candidates.len() as u8])?;
                for c in candidates {
                    w.endpoint(c)?;
                }
            }
        }
        Ok(w.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_round_trip_and_bytes() {
        let mut v = heapless::Vec::new();
        v.push(Entry {
            subject: Ipv4Addr::new(10, 0, 0, 2),
            own: true,
            endpoint: sa("203.0.113.7:51820"),
        })
        .unwrap();
        v.push(Entry {
            subject: Ipv4Addr::new(10, 0, 0, 3),
            own: false,
            endpoint: sa("[2001:db8::1]:4500"),
        })
        .unwrap();
        let m = Message::Endpoints {
            nat: 2,
            playstation: 2,
            entries: v,
        };
        let mut buf = [0u8; MAX_LEN];
        let n = m.encode(&mut buf).unwrap();
        assert_eq!(
            &buf[..18],
            &[b'M', b'X', 1, 1, 2, 2, 2, 10, 0, 0, 2, 1, 4, 203, 0, 113, 7, 0xca]
        );
        assert_eq!(n, 7 + 12 + 24);
        assert_eq!(Message::decode(&buf[..n]).unwrap(), m);
        // Every truncation is an error, never a panic.
        for cut in 0..n {
            assert!(Message::decode(&buf[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(
            Message::decode(&[&buf[..n], &[0][..]].concat()),
            Err(PexError::Trailing)
        );
    }

    #[test]
    fn punch_round_trip() {
        let mut c = heapless::Vec::new();
        c.push(sa("198.51.100.103:51820")).unwrap();
        let m = Message::Punch {
            token: 0xdead_beef,
            answer: true,
            candidates: c,
        };
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).unwrap();
        assert_eq!(Message::decode(&buf[..n]).unwrap(), m);
        assert_eq!(m.encode(&mut buf[..n - 1]), Err(PexError::BufferTooSmall));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Message::decode(b"XX\x01\x01\x00"), Err(PexError::BadMagic));
        assert_eq!(
            Message::decode(b"MX\x02\x01\x00"),
            Err(PexError::UnsupportedVersion(2))
        );
        assert_eq!(
            Message::decode(b"MX\x01\x09\x00"),
            Err(PexError::UnknownType(9))
        );
        assert_eq!(
            Message::decode(b"MX\x01\x01\x00\x00\x21"),
            Err(PexError::TooMany)
        );
        assert_eq!(
            Message::decode(b"MX\x01\x01\x00\x00\x01\x0a\x00\x00\x01\x00\x05"),
            Err(PexError::BadFamily(5))
        );
        assert_eq!(
            Message::decode(b"MX\x01\x01\x00\x00\x01\x0a\x00\x00\x01\x02"),
            Err(PexError::BadFlags(2))
        );
    }
}
