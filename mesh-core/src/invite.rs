//! Invites: a friend's router joins with one token (issue 17, part 3).
//!
//! The inviter's daemon makes a [`Token`]: its WireGuard public key and
//! name, where it can be reached, its [`Numbers`] when they are not derived
//! from its key, an invite id, a one-time secret, an expiry and the name it
//! gives the newcomer. The friend pastes it into `meshd
//! join`. The friend's router then sends a join request to the inviter's
//! mesh port, outside WireGuard (the two do not know each other's keys
//! yet), carrying its own public key and authenticated with the secret; the
//! inviter answers with an accept, authenticated the same way. Each side
//! then writes the other's member section, and WireGuard, BGP and the rest
//! follow as for any member.
//!
//! What holds:
//! - Only a holder of the token can join: requests and accepts carry a
//!   keyed BLAKE2s MAC (RFC 7693, 16-octet output) over every octet before
//!   it, keyed with the 16-octet secret, checked in constant time.
//! - A token is single use. The first valid request binds the invite to
//!   that joiner's key and nonce: the same request again (its accept was
//!   lost) is answered again; any other is refused as reused. Invites
//!   expire; a request after the expiry is refused as expired.
//! - Nothing an outsider sends costs more than a table lookup and one MAC
//!   before it is refused, and join datagrams are rate-capped (a token bucket
//!   of [`JOIN_RATE`] a second, burst [`JOIN_BURST`]) before anything else.
//! - The token's text form carries a checksum (4 octets of BLAKE2s): a
//!   damaged or mistyped token is refused where it is pasted.
//!
//! Encoding: postcard, after a version octet ([`Token`]) or the magic,
//! version and kind octets (join datagrams); the MAC covers the exact
//! encoded bytes. The text form is `MESHD1` and RFC 4648 base32 (upper case,
//! no padding): QR codes' alphanumeric mode holds it as it is.
//!
//! Sans-IO and allocation-free: the daemon supplies ids, secrets and nonces
//! (from the system's random source) and the time; [`Invites`] and
//! [`Joining`] are fixed-capacity state machines.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use blake2::digest::consts::{U16, U32};
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s, Blake2sMac, Digest};
use embassy_time::{Duration, Instant};
use serde::{Deserialize, Serialize};

/// First octet of every join datagram. WireGuard's messages start with
/// their type (1-4), STUN's with 0 or 1: the mesh port tells them apart.
pub const MAGIC: u8 = b'J';
/// The version of tokens and join datagrams.
pub const VERSION: u8 = 1;
/// Longest name (a UCI section name: `[A-Za-z0-9_]`).
pub const MAX_NAME: usize = 32;
/// Endpoints a token carries at most.
pub const MAX_ENDPOINTS: usize = 3;
/// Octets of an invite id, a secret, a nonce, a MAC.
pub const ID_LEN: usize = 8;
pub const SECRET_LEN: usize = 16;
pub const NONCE_LEN: usize = 8;
pub const MAC_LEN: usize = 16;
/// A token's encoded size, at most: version, postcard body, checksum.
pub const MAX_TOKEN: usize = 1
    + 32
    + (1 + MAX_NAME) * 2
    + 1
    + MAX_ENDPOINTS * 20
    + ID_LEN
    + SECRET_LEN
    + 10
    + Numbers::MAX_LEN
    + CHECKSUM_LEN;
/// A join datagram's size, at most.
pub const MAX_DATAGRAM: usize = 3 + ID_LEN + NONCE_LEN + 32 + 32 + Numbers::MAX_LEN + MAC_LEN;
/// Prefix of a token's text form.
pub const TEXT_PREFIX: &str = "MESHD1";
/// A token's text, at most: the prefix and base32 of [`MAX_TOKEN`] octets.
pub const MAX_TEXT: usize = TEXT_PREFIX.len() + (MAX_TOKEN * 8).div_ceil(5);
/// Join datagrams taken per second, and in a burst.
pub const JOIN_RATE: u32 = 10;
pub const JOIN_BURST: u32 = 20;
/// A joiner sends its request this often, and gives up after this long.
pub const JOIN_RETRY: Duration = Duration::from_secs(1);
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

const CHECKSUM_LEN: usize = 4;
const KIND_REQUEST: u8 = 1;
const KIND_ACCEPT: u8 = 2;
const KIND_REFUSE: u8 = 3;

/// Why bytes are not a token or a join datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not the text form (prefix, alphabet, length).
    NotAToken,
    /// The checksum does not match: damaged or mistyped.
    Checksum,
    /// Another version than [`VERSION`].
    Version,
    /// The body does not decode, or bytes follow it.
    Malformed,
    /// A name that is empty or not `[A-Za-z0-9_]`.
    BadName,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::NotAToken => "not an invite token (MESHD1 and base32)",
            Error::Checksum => "the token is damaged (its checksum does not match)",
            Error::Version => "an invite of another meshd version",
            Error::Malformed => "the token does not decode",
            Error::BadName => "a name in the token is not [A-Za-z0-9_]",
            Error::BufferTooSmall => "buffer too small",
        })
    }
}

/// A mesh port's address as a token carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Endpoint {
        match a.ip() {
            IpAddr::V4(v) => Endpoint::V4(v.octets(), a.port()),
            IpAddr::V6(v) => Endpoint::V6(v.octets(), a.port()),
        }
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(e: Endpoint) -> SocketAddr {
        match e {
            Endpoint::V4(a, p) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p),
            Endpoint::V6(a, p) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p),
        }
    }
}

pub type Name = heapless::String<MAX_NAME>;

/// A name as a UCI section name may be: 1..32 of `[A-Za-z0-9_]`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Prefixes a token's [`Numbers`] carry, at most.
pub const MAX_PREFIXES: usize = 4;

/// The inviter's own numbers, when it does not derive them from its key (a
/// mesh configured by hand, "wave 1"): the joiner writes them in its member
/// section for the inviter, which it could not derive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbers {
    /// Its overlay IPv4 address.
    pub overlay: [u8; 4],
    /// Its AS number.
    pub asn: u32,
    /// The IPv4 prefixes it announces (address, length).
    pub prefixes: heapless::Vec<([u8; 4], u8), MAX_PREFIXES>,
}

impl Numbers {
    /// Encoded inside a token, at most (with the option's tag).
    pub const MAX_LEN: usize = 1 + 4 + 5 + 1 + MAX_PREFIXES * 5;
}

/// What the inviter hands the friend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The inviter's WireGuard public key.
    pub inviter: [u8; 32],
    /// The inviter's name: the joiner's member section for it.
    pub inviter_name: Name,
    /// Where the inviter's mesh port is reached.
    pub endpoints: heapless::Vec<Endpoint, MAX_ENDPOINTS>,
    pub id: [u8; ID_LEN],
    pub secret: [u8; SECRET_LEN],
    /// Unix time (s) after which the inviter refuses it: for the joiner's
    /// message; the inviter keeps its own deadline.
    pub expires: u64,
    /// The name the inviter gives the joiner (its member section there).
    pub name: Name,
    /// The inviter's numbers, if not derived from its key.
    pub numbers: Option<Numbers>,
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let h = Blake2s::<U32>::new_with_prefix(b"meshd invite checksum")
        .chain_update(bytes)
        .finalize();
    let mut c = [0u8; CHECKSUM_LEN];
    c.copy_from_slice(&h[..CHECKSUM_LEN]);
    c
}

impl Token {
    /// The encoded token into `out`: version, postcard, checksum.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let (v, body) = out.split_first_mut().ok_or(Error::BufferTooSmall)?;
        *v = VERSION;
        let n = postcard::to_slice(self, body)
            .map_err(|_| Error::BufferTooSmall)?
            .len();
        let end = 1 + n;
        let c = checksum(&out[..end]);
        out.get_mut(end..end + CHECKSUM_LEN)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(&c);
        Ok(end + CHECKSUM_LEN)
    }

    /// A token from its encoded bytes.
    pub fn decode(bytes: &[u8]) -> Result<Token, Error> {
        if bytes.len() < 1 + CHECKSUM_LEN {
            return Err(Error::Malformed);
        }
        let (data, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if checksum(data) != sum {
            return Err(Error::Checksum);
        }
        if data[0] != VERSION {
            return Err(Error::Version);
        }
        let (t, rest): (Token, _) =
            postcard::take_from_bytes(&data[1..]).map_err(|_| Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        if !valid_name(&t.inviter_name) || !valid_name(&t.name) {
            return Err(Error::BadName);
        }
        Ok(t)
    }

    /// The text form: `MESHD1` and base32.
    pub fn to_text(&self) -> Result<heapless::String<MAX_TEXT>, Error> {
        let mut buf = [0u8; MAX_TOKEN];
        let n = self.encode(&mut buf)?;
        let mut s = heapless::String::new();
        s.push_str(TEXT_PREFIX).map_err(|_| Error::BufferTooSmall)?;
        base32_encode(&buf[..n], &mut s)?;
        Ok(s)
    }

    /// A token from its text form (surrounding white space and the case
    /// of the letters do not matter).
    pub fn from_text(text: &str) -> Result<Token, Error> {
        let t = text.trim();
        let body = t
            .get(..TEXT_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(TEXT_PREFIX))
            .and_then(|_| t.get(TEXT_PREFIX.len()..))
            .ok_or(Error::NotAToken)?;
        let mut buf = [0u8; MAX_TOKEN];
        let n = base32_decode(body, &mut buf)?;
        Token::decode(&buf[..n])
    }
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode<const N: usize>(bytes: &[u8], out: &mut heapless::String<N>) -> Result<(), Error> {
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let c = ALPHABET[((acc >> bits) & 31) as usize];
            out.push(c as char).map_err(|_| Error::BufferTooSmall)?;
        }
    }
    if bits > 0 {
        let c = ALPHABET[((acc << (5 - bits)) & 31) as usize];
        out.push(c as char).map_err(|_| Error::BufferTooSmall)?;
    }
    Ok(())
}

fn base32_decode(text: &str, out: &mut [u8]) -> Result<usize, Error> {
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(Error::NotAToken),
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n).ok_or(Error::NotAToken)? = (acc >> bits) as u8;
            n += 1;
        }
        acc &= (1 << bits) - 1;
    }
    // Only the zero bits that pad the last character may be left over
    // (canonical text: one token, one spelling).
    if bits >= 5 || acc != 0 {
        return Err(Error::NotAToken);
    }
    Ok(n)
}

// ---- the join datagrams ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Request {
    id: [u8; ID_LEN],
    joiner: [u8; 32],
    nonce: [u8; NONCE_LEN],
    /// The joiner's numbers, if not derived from its key.
    numbers: Option<Numbers>,
}

/// Why an inviter refused a request it could authenticate (told to the
/// joiner, under the same MAC: only a holder of the token learns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The invite expired.
    Expired,
    /// Another router (or another join) already used it.
    Used,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refusal::Expired => "the invite expired",
            Refusal::Used => "the invite was already used",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Refuse {
    id: [u8; ID_LEN],
    nonce: [u8; NONCE_LEN],
    /// The joiner it is for.
    joiner: [u8; 32],
    why: Refusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Accept {
    id: [u8; ID_LEN],
    nonce: [u8; NONCE_LEN],
    /// The joiner it is for.
    joiner: [u8; 32],
    inviter: [u8; 32],
}

fn mac(secret: &[u8; SECRET_LEN], bytes: &[u8]) -> Blake2sMac<U16> {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("16 octets is a BLAKE2s key length"));
    Mac::update(&mut m, bytes);
    m
}

/// Writes `[MAGIC, VERSION, kind] body MAC` into `out`.
fn seal<T: Serialize>(
    kind: u8,
    body: &T,
    secret: &[u8; SECRET_LEN],
    out: &mut [u8],
) -> Result<usize, Error> {
    let head = out.get_mut(..3).ok_or(Error::BufferTooSmall)?;
    head.copy_from_slice(&[MAGIC, VERSION, kind]);
    let n = postcard::to_slice(body, out.get_mut(3..).ok_or(Error::BufferTooSmall)?)
        .map_err(|_| Error::BufferTooSmall)?
        .len();
    let end = 3 + n;
    let tag = mac(secret, &out[..end]).finalize().into_bytes();
    out.get_mut(end..end + MAC_LEN)
        .ok_or(Error::BufferTooSmall)?
        .copy_from_slice(&tag);
    Ok(end + MAC_LEN)
}

/// A join datagram's kind and body, before its MAC is checked.
fn open<'d, T: Deserialize<'d>>(
    bytes: &'d [u8],
    kind: u8,
) -> Result<(T, &'d [u8], &'d [u8]), Error> {
    if bytes.len() < 3 + MAC_LEN || bytes[0] != MAGIC {
        return Err(Error::Malformed);
    }
    if bytes[1] != VERSION {
        return Err(Error::Version);
    }
    if bytes[2] != kind {
        return Err(Error::Malformed);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let (body, rest): (T, _) =
        postcard::take_from_bytes(&signed[3..]).map_err(|_| Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Error::Malformed);
    }
    Ok((body, signed, tag))
}

fn verify(secret: &[u8; SECRET_LEN], signed: &[u8], tag: &[u8]) -> bool {
    mac(secret, signed).verify_slice(tag).is_ok()
}

/// The kind octet of a join datagram (`None`: too short to have one).
pub fn kind_of(bytes: &[u8]) -> Option<u8> {
    bytes.get(2).copied()
}

/// Whether a mesh port datagram is a join request (for the inviter).
pub fn is_request(bytes: &[u8]) -> bool {
    kind_of(bytes) == Some(KIND_REQUEST)
}

// ---- the inviter ----

/// Counters of the inviter's side; each refused datagram lands in one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InviteStats {
    /// Invites made.
    pub issued: u64,
    /// Friends that joined.
    pub joined: u64,
    /// A joiner's request answered again (its accept was lost).
    pub answered_again: u64,
    /// Requests for an invite past its expiry.
    pub refused_expired: u64,
    /// Requests for an invite another joiner (or nonce) already used.
    pub refused_used: u64,
    /// Requests whose MAC the invite's secret does not make.
    pub refused_bad_mac: u64,
    /// Requests for no invite we know.
    pub refused_unknown: u64,
    /// Join datagrams that do not decode, and accepts that are not the
    /// one our join waits for.
    pub malformed: u64,
    /// The accept our join waited for.
    pub accepted: u64,
    /// Refusals our join got (the inviter said why).
    pub refusals: u64,
    /// Join datagrams over the rate cap, dropped unread.
    pub rate_limited: u64,
}

/// One invite the inviter holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: [u8; ID_LEN],
    secret: [u8; SECRET_LEN],
    pub name: Name,
    pub expires_at: Instant,
    /// The joiner's key and nonce once it joined.
    pub used_by: Option<([u8; 32], [u8; NONCE_LEN])>,
}

/// What a join request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A friend joined: write its member section (`name`, public key
    /// `key`, its `numbers` if it sent them) and send the accept (`len`
    /// bytes in the caller's buffer).
    Joined {
        name: Name,
        key: [u8; 32],
        numbers: Option<Numbers>,
        len: usize,
    },
    /// The same joiner asked again: send the accept again.
    Again { len: usize },
    /// Refused and counted, and the joiner (who holds the secret) is told
    /// why: send the `len` bytes.
    Told { len: usize },
    /// Refused and counted; nothing to send.
    Refused,
}

/// The invites a router has handed out: at most `N`, used ones kept until
/// they expire (so that a reuse is told apart from a stranger's guess).
#[derive(Debug)]
pub struct Invites<const N: usize> {
    held: heapless::Vec<Pending, N>,
    tokens: u32,
    refilled: Option<Instant>,
    pub stats: InviteStats,
}

/// The table is full of live invites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<const N: usize> Default for Invites<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Invites<N> {
    pub const fn new() -> Self {
        Invites {
            held: heapless::Vec::new(),
            tokens: JOIN_BURST,
            refilled: None,
            stats: InviteStats {
                issued: 0,
                joined: 0,
                answered_again: 0,
                refused_expired: 0,
                refused_used: 0,
                refused_bad_mac: 0,
                refused_unknown: 0,
                malformed: 0,
                accepted: 0,
                refusals: 0,
                rate_limited: 0,
            },
        }
    }

    /// Holds a new invite, valid for `valid_for`. Invites long expired
    /// make room; live ones never do.
    pub fn add(
        &mut self,
        now: Instant,
        id: [u8; ID_LEN],
        secret: [u8; SECRET_LEN],
        name: Name,
        valid_for: Duration,
    ) -> Result<(), Full> {
        if self.held.is_full() {
            // The one that expired first goes, if any did.
            let oldest = self
                .held
                .iter()
                .enumerate()
                .filter(|(_, p)| p.expires_at <= now)
                .min_by_key(|(_, p)| p.expires_at)
                .map(|(i, _)| i)
                .ok_or(Full)?;
            self.held.swap_remove(oldest);
        }
        let p = Pending {
            id,
            secret,
            name,
            expires_at: now + valid_for,
            used_by: None,
        };
        self.held.push(p).map_err(|_| Full)?;
        self.stats.issued += 1;
        Ok(())
    }

    /// Withdraws an invite by the name it gives; true if one was held.
    pub fn cancel(&mut self, name: &str) -> bool {
        let before = self.held.len();
        self.held
            .retain(|p| p.used_by.is_some() || p.name.as_str() != name);
        self.held.len() != before
    }

    /// Invites not used and not expired.
    pub fn pending(&self, now: Instant) -> impl Iterator<Item = &Pending> + '_ {
        self.held
            .iter()
            .filter(move |p| p.used_by.is_none() && p.expires_at > now)
    }

    /// Whether a live invite gives `name`.
    pub fn gives(&self, now: Instant, name: &str) -> bool {
        self.pending(now).any(|p| p.name.as_str() == name)
    }

    /// The rate cap, before anything else is done with a join datagram:
    /// false (and counted) when it must be dropped unread.
    pub fn admit(&mut self, now: Instant) -> bool {
        if self.take_token(now) {
            return true;
        }
        self.stats.rate_limited += 1;
        false
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let last = *self.refilled.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last).as_micros();
        let add = elapsed * u64::from(JOIN_RATE) / 1_000_000;
        if add > 0 {
            self.tokens = (self.tokens as u64 + add).min(JOIN_BURST as u64) as u32;
            // Keep the remainder: advance by what the tokens added cost.
            self.refilled =
                Some(last + Duration::from_micros(add * 1_000_000 / u64::from(JOIN_RATE)));
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// A join request from the mesh port, [`Invites::admit`]ted, for this
    /// router as inviter (`own`: its public key). An accept to send goes
    /// into `out`.
    pub fn handle(
        &mut self,
        now: Instant,
        bytes: &[u8],
        own: &[u8; 32],
        out: &mut [u8],
    ) -> Outcome {
        let Ok((req, signed, tag)) = open::<Request>(bytes, KIND_REQUEST) else {
            self.stats.malformed += 1;
            return Outcome::Refused;
        };
        let Some(p) = self.held.iter_mut().find(|p| p.id == req.id) else {
            self.stats.refused_unknown += 1;
            return Outcome::Refused;
        };
        if !verify(&p.secret, signed, tag) {
            self.stats.refused_bad_mac += 1;
            return Outcome::Refused;
        }
        let refuse = |why| Refuse {
            id: req.id,
            nonce: req.nonce,
            joiner: req.joiner,
            why,
        };
        if p.expires_at <= now {
            self.stats.refused_expired += 1;
            return seal(KIND_REFUSE, &refuse(Refusal::Expired), &p.secret, out)
                .map_or(Outcome::Refused, |len| Outcome::Told { len });
        }
        let accept = Accept {
            id: p.id,
            nonce: req.nonce,
            joiner: req.joiner,
            inviter: *own,
        };
        match p.used_by {
            Some(by) if by == (req.joiner, req.nonce) => {
                match seal(KIND_ACCEPT, &accept, &p.secret, out) {
                    Ok(len) => {
                        self.stats.answered_again += 1;
                        Outcome::Again { len }
                    }
                    Err(_) => Outcome::Refused,
                }
            }
            Some(_) => {
                self.stats.refused_used += 1;
                seal(KIND_REFUSE, &refuse(Refusal::Used), &p.secret, out)
                    .map_or(Outcome::Refused, |len| Outcome::Told { len })
            }
            None => match seal(KIND_ACCEPT, &accept, &p.secret, out) {
                Ok(len) => {
                    p.used_by = Some((req.joiner, req.nonce));
                    self.stats.joined += 1;
                    Outcome::Joined {
                        name: p.name.clone(),
                        key: req.joiner,
                        numbers: req.numbers.clone(),
                        len,
                    }
                }
                Err(_) => Outcome::Refused,
            },
        }
    }
}

// ---- the joiner ----

/// Where a join stands, on the joiner's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinState {
    /// Sending requests, waiting for the accept.
    Joining,
    /// The inviter accepted.
    Joined,
    /// The inviter refused, and said why.
    Refused(Refusal),
    /// No answer within [`JOIN_TIMEOUT`]: the inviter is not reachable,
    /// or the token is not one it made.
    TimedOut,
}

/// What a join datagram was to a joiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The inviter's accept.
    Accepted,
    /// The inviter's refusal.
    Refused(Refusal),
    /// Nothing for this join (the node counts it as malformed).
    Ignored,
}

/// A join in progress (the joiner's side).
#[derive(Debug, Clone)]
pub struct Joining {
    pub token: Token,
    /// Our numbers, if not derived from our key: the request carries them.
    pub numbers: Option<Numbers>,
    nonce: [u8; NONCE_LEN],
    /// Our key, as our requests carry it (an answer names it).
    own: Option<[u8; 32]>,
    pub state: JoinState,
    started: Instant,
    next_send: Instant,
}

impl Joining {
    /// Starts joining with `token`; `nonce` from the random source.
    pub fn new(now: Instant, token: Token, nonce: [u8; NONCE_LEN]) -> Joining {
        Joining {
            token,
            numbers: None,
            nonce,
            own: None,
            state: JoinState::Joining,
            started: now,
            next_send: now,
        }
    }

    /// When the request is due again (or the join times out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == JoinState::Joining).then(|| self.next_send.min(self.started + JOIN_TIMEOUT))
    }

    /// If due: the request into `out` (its length), to be sent to every
    /// endpoint of the token. Times out after [`JOIN_TIMEOUT`].
    pub fn poll_request(&mut self, now: Instant, own: &[u8; 32], out: &mut [u8]) -> Option<usize> {
        if self.state != JoinState::Joining || now < self.next_send {
            return None;
        }
        if now >= self.started + JOIN_TIMEOUT {
            self.state = JoinState::TimedOut;
            return None;
        }
        self.next_send = now + JOIN_RETRY;
        self.own = Some(*own);
        let req = Request {
            id: self.token.id,
            joiner: *own,
            nonce: self.nonce,
            numbers: self.numbers.clone(),
        };
        let n = seal(KIND_REQUEST, &req, &self.token.secret, out).ok()?;
        Some(n)
    }

    /// A join datagram for us: the inviter's accept or refusal (the join
    /// is over), or something to ignore (counted).
    pub fn handle(&mut self, bytes: &[u8]) -> Reply {
        let reply = self.reply(bytes);
        match reply {
            Reply::Accepted => self.state = JoinState::Joined,
            Reply::Refused(why) => self.state = JoinState::Refused(why),
            Reply::Ignored => {}
        }
        reply
    }

    fn reply(&self, bytes: &[u8]) -> Reply {
        if self.state != JoinState::Joining {
            return Reply::Ignored;
        }
        let ours = |id, nonce, joiner| {
            id == self.token.id && nonce == self.nonce && Some(joiner) == self.own
        };
        match kind_of(bytes) {
            Some(KIND_ACCEPT) => match open::<Accept>(bytes, KIND_ACCEPT) {
                Ok((a, signed, tag))
                    if ours(a.id, a.nonce, a.joiner)
                        && a.inviter == self.token.inviter
                        && verify(&self.token.secret, signed, tag) =>
                {
                    Reply::Accepted
                }
                _ => Reply::Ignored,
            },
            Some(KIND_REFUSE) => match open::<Refuse>(bytes, KIND_REFUSE) {
                Ok((r, signed, tag))
                    if ours(r.id, r.nonce, r.joiner) && verify(&self.token.secret, signed, tag) =>
                {
                    Reply::Refused(r.why)
                }
                _ => Reply::Ignored,
            },
            _ => Reply::Ignored,
        }
    }
}

#[cfg(test)]
mod tests;
