//! LAN discovery relayed between homes (issue 14): the sans-IO half.
//!
//! Consoles find each other with broadcast and multicast (PS4/PS5 Remote
//! Play, Switch LAN mode, SSDP, mDNS), which a routed mesh stops at each
//! home's edge. The daemon captures the few kinds games use on its LAN; this
//! module decides what to relay ([`Policy`]), wraps it in a small mesh
//! message ([`Relayed`]), and on the other side decides whether and where to
//! re-emit it ([`Relay::receive`]), with the console's own source address so
//! that replies come back as ordinary routed unicast. The daemon holds the
//! sockets; nothing here reads a clock (`now` comes in) or allocates.
//!
//! ## How a message reaches every member exactly once
//!
//! The origin sends one copy of the message to **each** member it has a
//! route to: overlay UDP from its own overlay address to the member's
//! overlay address, both on [`DISCOVERY_PORT`] (like peer exchange on
//! [`crate::pex::PEX_PORT`]). Each copy is plain unicast, so normal routing
//! carries it (through a transit member where there is no direct tunnel, and
//! along the new paths after a failure) and it arrives once; a receiver only
//! re-emits it on its own LAN and **never relays it again**. No message is
//! ever forwarded by its content, so there is nothing that can loop in any
//! topology (the square included), and nothing to de-duplicate across
//! paths. The alternatives were worse for a mesh of a handful of homes:
//! flooding with de-duplication sends every message over every tunnel and
//! needs a window per origin at every hop anyway; following the BGP tree
//! needs a tree that BGP (which picks paths per destination) does not give.
//! The cost of unicast fan-out is N−1 copies on the origin's uplink, bounded
//! by the per-port rate cap below.
//!
//! ## What a receiver checks, in order
//!
//! 1. The datagram decodes (`malformed` otherwise).
//! 2. The message's origin is the overlay address it came from, that address
//!    is a member, and the original source lies in one of that member's LAN
//!    prefixes: a member cannot speak for another (`forged`). The overlay
//!    source itself is only as good as the node's anti-spoofing: a transit
//!    member could still forge the IP source of another member's message
//!    (there is no end-to-end signature); these checks stop everyone else.
//! 3. Our own policy relays that port (and group): a member cannot make our
//!    router broadcast to arbitrary ports on our LAN; the source is a
//!    unicast address outside our LAN (`refused`).
//! 4. Its `(boot, seq)` is new: a sliding window of [`WINDOW`] per origin,
//!    a bitmap as in RFC 6479 and WireGuard (`replayed`).
//! 5. The origin's token bucket for that port has a token (`dropped_rate_in`).
//!
//! Then the caller re-emits it ([`Emit`]): to its LAN's broadcast address
//! for both broadcast kinds, or to the same multicast group, from the
//! original source address and port.
//!
//! ## Re-emitted packets are never captured again
//!
//! [`Policy::classify`] only takes packets whose source lies in our own LAN
//! prefix, and the receiver refuses any message whose source does, so a
//! packet we re-emit (its source is a remote LAN's) cannot pass
//! classification. The daemon should also keep its capture from seeing its
//! own transmissions at all: its packet socket's filter should match only
//! incoming frames (drop `PACKET_OUTGOING`) with an IP source inside the
//! LAN prefix, and its receive path must have no way into the send path (it
//! has none here: [`Relay::receive`] returns an [`Emit`], never a
//! [`Relayed`]). Where a home's LAN overlaps another's and is mapped to a
//! mesh alias, the origin must put the aliased (mesh-visible) source in the
//! message, or the replies could not come back either.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use embassy_time::Instant;
use serde::{Deserialize, Serialize};

use crate::ip;
use crate::prefix::{Family, Prefix};
use crate::wg::{INNER_MTU, MAX_MEMBERS};

/// The overlay UDP port of relayed discovery, next to peer exchange's.
pub const DISCOVERY_PORT: u16 = 51822;

/// The largest UDP payload relayed. The message must fit in one tunnel
/// datagram: 20 (IPv4) + 8 (UDP) + at most 33 bytes of header + the payload
/// stays well under the overlay MTU ([`INNER_MTU`], 1420), with room left for
/// fields a later version adds. 1200 is also a UDP payload every path and
/// every LAN carries unfragmented (QUIC's minimum), so the re-emitted packet
/// is never fragmented either. Discovery packets are small (PlayStation
/// searches and SSDP are a few hundred bytes); a bigger one is counted
/// `too_big`, never truncated.
pub const MAX_PAYLOAD: usize = 1200;

/// The largest encoding: magic and version (2), origin (4), boot and seq
/// (varints, 5 + 5), source address (4) and port (3), kind (1 + 4),
/// destination port (3), payload length (2) and payload.
pub const MAX_LEN: usize = 2 + 4 + 5 + 5 + 4 + 3 + 5 + 3 + 2 + MAX_PAYLOAD;
const _: () = assert!(20 + 8 + MAX_LEN <= INNER_MTU);

/// Most broadcast ports a policy relays.
pub const MAX_PORTS: usize = 8;
/// Most distinct destination ports relayed: the broadcast ports, SSDP's and
/// mDNS's. One row of counters and one token bucket each.
pub const MAX_CHANNELS: usize = MAX_PORTS + 2;

/// Broadcast ports relayed by default: PS4 Remote Play discovery and wake,
/// PS5, Switch LAN-mode browse.
pub const DEFAULT_PORTS: [u16; 3] = [987, 9302, 30000];
/// SSDP (UPnP discovery).
pub const SSDP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// Multicast DNS.
pub const MDNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// The replay window per origin, in sequence numbers.
pub const WINDOW: u64 = 128;

/// What the origin relays per port: 10 packets a second after a burst of 20.
/// Discovery is a handful of packets a second at most (a search repeated
/// every second or so; an SSDP device announcing its services in a burst at
/// boot), so this never touches it; a storm of 10,000 pps is cut to 0.1 %.
pub const SEND_RATE: u32 = 10;
pub const SEND_BURST: u32 = 20;
/// What a receiver re-emits per origin member and port: the same rate, and
/// twice the burst, so that jitter bunching a well-behaved origin's packets
/// on the way never costs one; a member ignoring its own cap is held here.
pub const RECEIVE_RATE: u32 = 10;
pub const RECEIVE_BURST: u32 = 40;

const MAGIC: u8 = b'D';
const VERSION: u8 = 1;

// ---- the message ----

/// Where the original packet was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// To 255.255.255.255.
    LimitedBroadcast,
    /// To the origin LAN's subnet-directed broadcast address.
    DirectedBroadcast,
    /// To an IPv4 multicast group (224.0.0.0/4; checked on decode).
    Multicast(Ipv4Addr),
}

/// One discovery packet captured on a member's LAN, on its way to the others.
///
/// Encoded with postcard after a magic byte `'D'` and a version byte, so a
/// stray datagram is rejected at its first byte. The IP TTL is not carried:
/// the receiver picks its own ([`Emit::ttl`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    /// The origin member's overlay address.
    pub origin: Ipv4Addr,
    /// The origin's boot, chosen by its daemon at start (say, wall-clock
    /// seconds): with `seq`, a 64-bit number that only grows, so a restarted
    /// origin (whose `seq` starts again at 0) is not taken for a replay.
    pub boot: u32,
    /// Per origin and boot, one more for each message.
    pub seq: u32,
    /// The original packet's source (a console on the origin's LAN).
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub kind: Kind,
    pub dst_port: u16,
    /// The original UDP payload.
    pub payload: heapless::Vec<u8, MAX_PAYLOAD>,
}

/// Why a message did not encode or decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// Not a discovery message (its first byte).
    BadMagic,
    UnsupportedVersion(u8),
    /// Postcard refused it (a bad varint or enum tag, a payload over
    /// [`MAX_PAYLOAD`]).
    Malformed,
    /// A multicast kind whose group is not a multicast address.
    NotMulticast,
    /// Bytes left over after the message.
    Trailing,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated"),
            Error::BadMagic => f.write_str("not a discovery message"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            Error::Malformed => f.write_str("malformed"),
            Error::NotMulticast => f.write_str("group is not a multicast address"),
            Error::Trailing => f.write_str("trailing bytes"),
            Error::BufferTooSmall => f.write_str("buffer too small"),
        }
    }
}

impl Error {
    fn from_postcard(e: postcard::Error) -> Error {
        match e {
            postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
            postcard::Error::SerializeBufferFull => Error::BufferTooSmall,
            _ => Error::Malformed,
        }
    }
}

impl Relayed {
    /// Encodes into `buf` (at most [`MAX_LEN`] bytes), returning the encoding.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
        if let Kind::Multicast(group) = self.kind {
            if !group.is_multicast() {
                return Err(Error::NotMulticast);
            }
        }
        let (head, body) = buf.split_at_mut_checked(2).ok_or(Error::BufferTooSmall)?;
        head.copy_from_slice(&[MAGIC, VERSION]);
        let n = postcard::to_slice(self, body)
            .map_err(Error::from_postcard)?
            .len();
        let buf: &'b [u8] = buf;
        buf.get(..2 + n).ok_or(Error::BufferTooSmall)
    }

    /// Decodes one message; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Relayed, Error> {
        let body = match bytes {
            [MAGIC, VERSION, body @ ..] => body,
            [MAGIC, v, ..] => return Err(Error::UnsupportedVersion(*v)),
            [] | [MAGIC] => return Err(Error::Truncated),
            _ => return Err(Error::BadMagic),
        };
        let (msg, rest): (Relayed, &[u8]) =
            postcard::take_from_bytes(body).map_err(Error::from_postcard)?;
        if !rest.is_empty() {
            return Err(Error::Trailing);
        }
        if let Kind::Multicast(group) = msg.kind {
            if !group.is_multicast() {
                return Err(Error::NotMulticast);
            }
        }
        Ok(msg)
    }

    /// `(boot, seq)` as one number that only grows.
    fn number(&self) -> u64 {
        ((self.boot as u64) << 32) | self.seq as u64
    }
}

// ---- the policy ----

/// Why a policy could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// More than [`MAX_PORTS`] broadcast ports.
    TooManyPorts,
    /// Port 0 is no destination.
    ZeroPort,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::TooManyPorts => write!(f, "more than {MAX_PORTS} discovery ports"),
            PolicyError::ZeroPort => f.write_str("port 0"),
        }
    }
}

/// What is relayed: broadcasts to a set of UDP ports, and SSDP and mDNS to
/// their groups, each switchable. The same policy decides what a receiver
/// re-emits on its own LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    ports: heapless::Vec<u16, MAX_PORTS>,
    ssdp: bool,
    mdns: bool,
    /// The distinct destination ports, in order: the broadcast ports, then
    /// SSDP's and mDNS's if switched on (and not already there).
    channels: heapless::Vec<u16, MAX_CHANNELS>,
}

impl Default for Policy {
    /// [`DEFAULT_PORTS`] and SSDP; mDNS off: every phone, printer and
    /// speaker in a home announces itself over mDNS, which would all reach
    /// every friend's LAN, and none of the consoles' discovery needs it.
    fn default() -> Policy {
        match Policy::new(&DEFAULT_PORTS, true, false) {
            Ok(p) => p,
            // Three ports fit; unreachable, but no panic either.
            Err(_) => Policy {
                ports: heapless::Vec::new(),
                ssdp: false,
                mdns: false,
                channels: heapless::Vec::new(),
            },
        }
    }
}

impl Policy {
    /// Broadcasts to `ports` (duplicates are taken once), SSDP and mDNS as
    /// switched.
    pub fn new(ports: &[u16], ssdp: bool, mdns: bool) -> Result<Policy, PolicyError> {
        let mut list: heapless::Vec<u16, MAX_PORTS> = heapless::Vec::new();
        for &p in ports {
            if p == 0 {
                return Err(PolicyError::ZeroPort);
            }
            if !list.contains(&p) {
                list.push(p).map_err(|_| PolicyError::TooManyPorts)?;
            }
        }
        let mut channels: heapless::Vec<u16, MAX_CHANNELS> = heapless::Vec::new();
        let groups = [(ssdp, SSDP.port()), (mdns, MDNS.port())];
        let extra = groups.iter().filter(|(on, _)| *on).map(|(_, p)| *p);
        for p in list.iter().copied().chain(extra) {
            if !channels.contains(&p) {
                // MAX_PORTS + 2 always fit.
                let _ = channels.push(p);
            }
        }
        Ok(Policy {
            ports: list,
            ssdp,
            mdns,
            channels,
        })
    }

    /// The broadcast ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
    pub fn ssdp(&self) -> bool {
        self.ssdp
    }
    pub fn mdns(&self) -> bool {
        self.mdns
    }
    /// The relayed destination ports, each once: the rows of
    /// [`Stats::ports`].
    pub fn channels(&self) -> &[u16] {
        &self.channels
    }

    fn channel(&self, port: u16) -> Option<usize> {
        self.channels.iter().position(|&p| p == port)
    }

    /// Is a packet to `dst`:`dst_port` discovery we relay, whatever its
    /// source? `lan` gives the subnet-directed broadcast address.
    pub fn kind_of(&self, dst: Ipv4Addr, dst_port: u16, lan: Prefix) -> Option<Kind> {
        let kind = if dst.is_broadcast() {
            Kind::LimitedBroadcast
        } else if broadcast(lan) == Some(dst) {
            Kind::DirectedBroadcast
        } else if dst.is_multicast() {
            Kind::Multicast(dst)
        } else {
            return None;
        };
        self.accepts(kind, dst_port).then_some(kind)
    }

    /// Is a packet captured on our LAN (`lan`) discovery to relay? Only if
    /// its source is a host of that LAN: a packet we re-emitted (whose
    /// source is another home's) never is.
    pub fn classify(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_port: u16,
        lan: Prefix,
    ) -> Option<Kind> {
        if !lan_host(lan, src) {
            return None;
        }
        self.kind_of(dst, dst_port, lan)
    }

    /// Does the policy relay (or re-emit) this kind to this port?
    pub fn accepts(&self, kind: Kind, dst_port: u16) -> bool {
        match kind {
            Kind::LimitedBroadcast | Kind::DirectedBroadcast => self.ports.contains(&dst_port),
            Kind::Multicast(g) => {
                (self.ssdp && SocketAddrV4::new(g, dst_port) == SSDP)
                    || (self.mdns && SocketAddrV4::new(g, dst_port) == MDNS)
            }
        }
    }
}

/// The subnet-directed broadcast address of an IPv4 LAN (none for /31 and
/// /32, RFC 3021, or IPv6).
pub fn broadcast(lan: Prefix) -> Option<Ipv4Addr> {
    match (lan.family(), lan.addr()) {
        (Family::Ipv4, IpAddr::V4(a)) if lan.prefix_len() <= 30 => {
            let host_bits = u32::MAX >> lan.prefix_len();
            Some(Ipv4Addr::from(u32::from(a) | host_bits))
        }
        _ => None,
    }
}

/// A host of `lan`: inside it, and neither its network nor its broadcast
/// address.
fn lan_host(lan: Prefix, a: Ipv4Addr) -> bool {
    lan.contains(IpAddr::V4(a))
        && (lan.prefix_len() > 30 || (lan.addr() != IpAddr::V4(a) && broadcast(lan) != Some(a)))
}

/// A source a console could have: unicast, not 0/8 (Original Xbox system
/// link's 0.0.0.1), loopback, or class E.
fn unicast(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first != 0 && first != 127 && first < 224
}

// ---- counters ----

/// Counters of one port, or of all. Sender side: `captured` = `relayed` +
/// `dropped_rate` + `too_big`. Receiver side: `received` = `emitted` +
/// `forged` + `refused` + `replayed` + `dropped_rate_in` + `malformed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// LAN packets classified as discovery to relay.
    pub captured: u64,
    /// Captured and sent to the members (once per packet, not per member).
    pub relayed: u64,
    /// Captured, but over our own rate cap ([`SEND_RATE`], [`SEND_BURST`]).
    pub dropped_rate: u64,
    /// Captured, but bigger than [`MAX_PAYLOAD`] (or fragmented).
    pub too_big: u64,
    /// Discovery to a relayed port from a source outside our LAN (our own
    /// re-emissions, if the capture sees them): not relayed.
    pub foreign: u64,
    /// Messages from members.
    pub received: u64,
    /// Received and handed back to be re-emitted on our LAN.
    pub emitted: u64,
    /// Over the origin's cap ([`RECEIVE_RATE`], [`RECEIVE_BURST`]).
    pub dropped_rate_in: u64,
    /// Origin is not the sender, not a member, or the source is not in its
    /// LAN.
    pub forged: u64,
    /// Seen before, or older than the window.
    pub replayed: u64,
    /// Our policy does not re-emit it, or its source is not a remote unicast
    /// address.
    pub refused: u64,
    /// Did not decode (counted in the totals only: no port is known).
    pub malformed: u64,
}

/// One relayed port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub port: u16,
    pub counters: Counters,
}

/// What the status page shows: totals, and a row per relayed port
/// ([`Policy::channels`]). Messages for ports we do not relay, and those
/// that did not decode, are in the totals only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: Counters,
    pub ports: heapless::Vec<PortCounters, MAX_CHANNELS>,
}

impl Stats {
    fn for_policy(policy: &Policy) -> Stats {
        let mut ports = heapless::Vec::new();
        for &port in policy.channels() {
            let _ = ports.push(PortCounters {
                port,
                counters: Counters::default(),
            });
        }
        Stats {
            total: Counters::default(),
            ports,
        }
    }

    /// The counters of one port, if it is relayed.
    pub fn port(&self, port: u16) -> Option<&Counters> {
        self.ports
            .iter()
            .find(|p| p.port == port)
            .map(|p| &p.counters)
    }

    fn count(&mut self, channel: Option<usize>, f: impl Fn(&mut Counters)) {
        f(&mut self.total);
        if let Some(row) = channel.and_then(|c| self.ports.get_mut(c)) {
            f(&mut row.counters);
        }
    }
}

// ---- token buckets and replay windows ----

/// Tokens in millionths, so that refills are exact in microseconds.
const UNIT: u64 = 1_000_000;

/// A token bucket of packets, full on first use.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    micro: u64,
    at: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let cap = burst as u64 * UNIT;
        self.micro = match self.at {
            None => cap,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_micros();
                self.micro
                    .saturating_add((rate as u64).saturating_mul(elapsed))
                    .min(cap)
            }
        };
        // Time going backwards (a caller's mistake) refills nothing twice.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.micro < UNIT {
            return false;
        }
        self.micro -= UNIT;
        true
    }
}

/// The last [`WINDOW`] message numbers of one origin (RFC 6479's bitmap, in
/// one word): bit `i` is number `top - i`.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    top: u64,
    seen: u128,
    started: bool,
}

impl Window {
    /// Takes `n` if it is new and not older than the window.
    fn accept(&mut self, n: u64) -> bool {
        if !self.started {
            *self = Window {
                top: n,
                seen: 1,
                started: true,
            };
            return true;
        }
        if n > self.top {
            let ahead = n - self.top;
            self.seen = if ahead >= WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.top = n;
            return true;
        }
        let behind = self.top - n;
        if behind >= WINDOW {
            return false;
        }
        let bit = 1u128 << behind;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// What a receiver keeps per origin member.
#[derive(Debug, Clone, Copy)]
struct Member {
    window: Window,
    buckets: [Bucket; MAX_CHANNELS],
}

impl Member {
    const NEW: Member = Member {
        window: Window {
            top: 0,
            seen: 0,
            started: false,
        },
        buckets: [Bucket { micro: 0, at: None }; MAX_CHANNELS],
    };
}

/// The sender side: numbering and the per-port cap.
#[derive(Debug, Clone)]
struct Outbox {
    origin: Ipv4Addr,
    /// The next `(boot, seq)`.
    next: u64,
    buckets: [Bucket; MAX_CHANNELS],
}

/// The receiver side: a window and buckets per origin member.
#[derive(Debug, Clone)]
struct Inbox<const M: usize> {
    members: [Member; M],
}

/// Carries buckets over to a new policy, by port.
fn remap(old: &Policy, new: &Policy, buckets: &mut [Bucket; MAX_CHANNELS]) {
    let before = *buckets;
    for (i, b) in buckets.iter_mut().enumerate() {
        let kept = new
            .channels()
            .get(i)
            .and_then(|&port| old.channel(port))
            .and_then(|j| before.get(j));
        *b = kept.copied().unwrap_or_default();
    }
}

// ---- the relay ----

/// A member as the caller's member table knows it: the overlay source of a
/// message, looked up.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Its slot, below the relay's `M` (the node's member slots).
    pub slot: usize,
    /// The prefixes it may originate ([`crate::wg::MemberConfig::prefixes`]).
    pub lans: &'a [Prefix],
}

/// Why a captured packet is not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRelayed {
    /// Not discovery the policy relays (not counted).
    NotDiscovery,
    /// Its source is not a host of our LAN (`foreign`).
    Foreign,
    /// Over [`MAX_PAYLOAD`], or a fragment (`too_big`).
    TooBig,
    /// Over our per-port cap (`dropped_rate`).
    RateCapped,
}

/// Why a message from a member is not re-emitted; each has its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Malformed(Error),
    Forged,
    Refused,
    Replayed,
    RateCapped,
}

/// A packet to write on our LAN: UDP from `src` to `dst` with `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    /// The member it came from.
    pub origin: Ipv4Addr,
    /// The console on the origin's LAN.
    pub src: SocketAddrV4,
    /// Our LAN's broadcast address or the group, and the original port.
    pub dst: SocketAddrV4,
    /// 255 for mDNS (RFC 6762 §11), 1 otherwise: it is for this link only.
    pub ttl: u8,
    pub kind: Kind,
    pub payload: heapless::Vec<u8, MAX_PAYLOAD>,
}

impl Emit {
    /// The IPv4/UDP packet (checksums included) into `out`, for a raw socket.
    pub fn build(&self, out: &mut [u8]) -> Option<usize> {
        ip::build_udp4_plain(
            *self.src.ip(),
            *self.dst.ip(),
            self.src.port(),
            self.dst.port(),
            self.ttl,
            &self.payload,
            out,
        )
    }
}

/// Discovery relaying for one node: the policy, the sender side (message
/// numbers, a token bucket per port) and the receiver side (a replay window
/// per origin member, a token bucket per origin member and port), and the
/// counters. `M` is the number of member slots ([`MAX_MEMBERS`]).
///
/// No timers: buckets refill when used, from the `now` passed in.
#[derive(Debug, Clone)]
pub struct Relay<const M: usize = MAX_MEMBERS> {
    policy: Policy,
    outbox: Outbox,
    inbox: Inbox<M>,
    stats: Stats,
}

impl<const M: usize> Relay<M> {
    /// A relay for the node at overlay address `origin`, whose daemon
    /// started at `boot` (greater than at any earlier start, e.g. wall-clock
    /// seconds; see [`Relayed::boot`]).
    pub fn new(policy: Policy, origin: Ipv4Addr, boot: u32) -> Self {
        Relay {
            stats: Stats::for_policy(&policy),
            policy,
            outbox: Outbox {
                origin,
                next: (boot as u64) << 32,
                buckets: [Bucket::default(); MAX_CHANNELS],
            },
            inbox: Inbox {
                members: [Member::NEW; M],
            },
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A new policy: ports still relayed keep their counters and buckets.
    pub fn set_policy(&mut self, policy: Policy) {
        let mut stats = Stats::for_policy(&policy);
        stats.total = self.stats.total;
        for row in stats.ports.iter_mut() {
            if let Some(old) = self.stats.port(row.port) {
                row.counters = *old;
            }
        }
        remap(&self.policy, &policy, &mut self.outbox.buckets);
        for m in self.inbox.members.iter_mut() {
            remap(&self.policy, &policy, &mut m.buckets);
        }
        self.stats = stats;
        self.policy = policy;
    }

    /// Forgets what the receiver knew of the member in `slot`: call it when
    /// the slot is given to another member (or one is re-added).
    pub fn forget(&mut self, slot: usize) {
        if let Some(m) = self.inbox.members.get_mut(slot) {
            *m = Member::NEW;
        }
    }

    // ---- sender side ----

    /// A UDP packet captured on our LAN `lan`: the message to send to every
    /// member (the same message to each), if it is discovery to relay and
    /// within the cap.
    pub fn capture(
        &mut self,
        now: Instant,
        lan: Prefix,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<Relayed, NotRelayed> {
        let (kind, channel) = self.captured_kind(lan, src, dst)?;
        self.stats.count(channel, |c| c.captured += 1);
        let payload = match heapless::Vec::from_slice(payload) {
            Ok(p) => p,
            Err(_) => {
                self.stats.count(channel, |c| c.too_big += 1);
                return Err(NotRelayed::TooBig);
            }
        };
        let bucket = channel.and_then(|c| self.outbox.buckets.get_mut(c));
        if !bucket.is_some_and(|b| b.take(now, SEND_RATE, SEND_BURST)) {
            self.stats.count(channel, |c| c.dropped_rate += 1);
            return Err(NotRelayed::RateCapped);
        }
        self.stats.count(channel, |c| c.relayed += 1);
        let n = self.outbox.next;
        self.outbox.next = n.saturating_add(1);
        Ok(Relayed {
            origin: self.outbox.origin,
            boot: (n >> 32) as u32,
            seq: n as u32,
            src: *src.ip(),
            src_port: src.port(),
            kind,
            dst_port: dst.port(),
            payload,
        })
    }

    /// [`Relay::capture`] of a whole IPv4 packet as the LAN capture sees it.
    /// Fragments of relayed discovery count as `too_big`.
    pub fn capture_packet(
        &mut self,
        now: Instant,
        lan: Prefix,
        packet: &[u8],
    ) -> Result<Relayed, NotRelayed> {
        let info = ip::parse(packet).map_err(|_| NotRelayed::NotDiscovery)?;
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else {
            return Err(NotRelayed::NotDiscovery);
        };
        if info.protocol != ip::PROTO_UDP {
            return Err(NotRelayed::NotDiscovery);
        }
        let Some((sport, dport, payload)) = ip::udp_parts(packet, &info) else {
            // A later fragment carries no ports: nothing to tell.
            return Err(NotRelayed::NotDiscovery);
        };
        let (src, dst) = (SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport));
        if ip::more_fragments(packet) {
            let (_, channel) = self.captured_kind(lan, src, dst)?;
            self.stats.count(channel, |c| {
                c.captured += 1;
                c.too_big += 1;
            });
            return Err(NotRelayed::TooBig);
        }
        self.capture(now, lan, src, dst, payload)
    }

    /// Classifies, counting foreign sources.
    fn captured_kind(
        &mut self,
        lan: Prefix,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<(Kind, Option<usize>), NotRelayed> {
        let kind = self
            .policy
            .kind_of(*dst.ip(), dst.port(), lan)
            .ok_or(NotRelayed::NotDiscovery)?;
        let channel = self.policy.channel(dst.port());
        if !lan_host(lan, *src.ip()) {
            self.stats.count(channel, |c| c.foreign += 1);
            return Err(NotRelayed::Foreign);
        }
        Ok((kind, channel))
    }

    // ---- receiver side ----

    /// A datagram on [`DISCOVERY_PORT`] from overlay address `from`, which
    /// the caller looked up in its member table (`origin`: `None` if not a
    /// member). Our LAN is `lan`. On success, the packet to write on it.
    pub fn receive(
        &mut self,
        now: Instant,
        lan: Prefix,
        from: Ipv4Addr,
        origin: Option<Origin<'_>>,
        bytes: &[u8],
    ) -> Result<Emit, Dropped> {
        match Relayed::decode(bytes) {
            Ok(msg) => self.receive_message(now, lan, from, origin, msg),
            Err(e) => {
                self.stats.count(None, |c| {
                    c.received += 1;
                    c.malformed += 1;
                });
                Err(Dropped::Malformed(e))
            }
        }
    }

    /// [`Relay::receive`] of a decoded message.
    pub fn receive_message(
        &mut self,
        now: Instant,
        lan: Prefix,
        from: Ipv4Addr,
        origin: Option<Origin<'_>>,
        msg: Relayed,
    ) -> Result<Emit, Dropped> {
        let channel = self.policy.channel(msg.dst_port);
        self.stats.count(channel, |c| c.received += 1);
        let verdict = self.judge(now, lan, from, origin, &msg, channel);
        self.stats.count(channel, |c| match verdict {
            Ok(_) => c.emitted += 1,
            Err(Dropped::Forged) => c.forged += 1,
            Err(Dropped::Refused) => c.refused += 1,
            Err(Dropped::Replayed) => c.replayed += 1,
            Err(Dropped::RateCapped) => c.dropped_rate_in += 1,
            Err(Dropped::Malformed(_)) => c.malformed += 1,
        });
        let dst = verdict?;
        Ok(Emit {
            origin: msg.origin,
            src: SocketAddrV4::new(msg.src, msg.src_port),
            dst: SocketAddrV4::new(dst, msg.dst_port),
            ttl: if SocketAddrV4::new(dst, msg.dst_port) == MDNS {
                255
            } else {
                1
            },
            kind: msg.kind,
            payload: msg.payload,
        })
    }

    /// The checks of the module docs, in order; the destination on our LAN.
    fn judge(
        &mut self,
        now: Instant,
        lan: Prefix,
        from: Ipv4Addr,
        origin: Option<Origin<'_>>,
        msg: &Relayed,
        channel: Option<usize>,
    ) -> Result<Ipv4Addr, Dropped> {
        let src = IpAddr::V4(msg.src);
        let Some(origin) = origin else {
            return Err(Dropped::Forged);
        };
        if msg.origin != from || !origin.lans.iter().any(|p| p.contains(src)) {
            return Err(Dropped::Forged);
        }
        let Some(member) = self.inbox.members.get_mut(origin.slot) else {
            return Err(Dropped::Forged);
        };
        if !unicast(msg.src) || lan.contains(src) || !self.policy.accepts(msg.kind, msg.dst_port) {
            return Err(Dropped::Refused);
        }
        let dst = match msg.kind {
            Kind::Multicast(group) => group,
            Kind::LimitedBroadcast | Kind::DirectedBroadcast => {
                broadcast(lan).ok_or(Dropped::Refused)?
            }
        };
        let bucket = channel
            .and_then(|c| member.buckets.get_mut(c))
            .ok_or(Dropped::Refused)?;
        if !member.window.accept(msg.number()) {
            return Err(Dropped::Replayed);
        }
        if !bucket.take(now, RECEIVE_RATE, RECEIVE_BURST) {
            return Err(Dropped::RateCapped);
        }
        Ok(dst)
    }
}

#[cfg(test)]
mod tests;
