//! WireGuard peer management: the member table and the crypto session per member.
//!
//! The crypto itself (Noise IK handshake, ChaCha20-Poly1305 transport, cookies)
//! is boringtun's `noise::Tunn`, one per member, behind the small [`Tunnel`]
//! trait; [`Crypto`] makes tunnels and identifies which member an incoming
//! datagram is for. The boringtun implementation ([`boring`]) needs `std` and
//! keeps its own clock (boringtun's `mock-instant` feature makes it follow a
//! simulated one). Nothing above this module sees boringtun types.
//!
//! What this module adds on top of a single tunnel is what a mesh needs:
//! - endpoint candidates per member, tried in turn until a handshake answers;
//! - roaming: the live endpoint follows the source address of the last
//!   authenticated datagram, as WireGuard does (whitepaper §2.1);
//! - identification of the member for every datagram (a handshake initiation
//!   by the initiator's static key, everything else by our receiver index,
//!   which the node's member table maps back to a slot);
//! - counters per member.

pub mod key;

#[cfg(feature = "std")]
pub mod boring;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use embassy_time::{Duration, Instant};

pub use key::Key;

use crate::prefix::Prefix;

/// Most members (friends) one node knows.
#[cfg(not(fuzzing))]
pub const MAX_MEMBERS: usize = 64;
/// Most members one node knows, in the fuzz builds (`--cfg fuzzing`, which
/// cargo-fuzz sets): their meshes have three members, and every scan of
/// the member slots and overlay sockets (several per event, the timer
/// cache's debug check among them) shrinks sixteenfold. The capacity
/// limits themselves get easier to reach.
#[cfg(fuzzing)]
pub const MAX_MEMBERS: usize = 4;
/// Most prefixes a member may originate.
pub const MAX_MEMBER_PREFIXES: usize = 8;
/// Most endpoint candidates per member.
pub const MAX_ENDPOINTS: usize = 8;
/// WireGuard's overhead on an inner packet: 16 header + 16 tag.
pub const WG_OVERHEAD: usize = 32;
/// The largest inner packet we carry; with IPv6+UDP+WireGuard headers it fits
/// a 1500-octet underlay (1420, WireGuard's default MTU).
pub const INNER_MTU: usize = 1420;
/// The largest datagram we send or accept on the mesh port.
pub const MAX_DATAGRAM: usize = INNER_MTU + WG_OVERHEAD;
/// How long a handshake may go unanswered before the next endpoint candidate
/// is tried (WireGuard's REKEY_TIMEOUT).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgError {
    /// Not a WireGuard message, or of the wrong length.
    InvalidPacket,
    /// Bad MAC or AEAD tag: not from the key it claims.
    Authentication,
    /// A replayed or too-old counter.
    Replay,
    /// No session for the receiver index (e.g. after our restart).
    NoSession,
    /// An initiation from a key that is not a member.
    UnknownKey,
    /// The handshake timestamp is not newer than the last (replayed initiation).
    StaleHandshake,
    /// Handshakes are rate limited under load; a cookie was sent instead.
    UnderLoad,
    /// The session expired (no handshake for too long).
    Expired,
    Other,
}

/// Output of a tunnel operation; the slice borrows the caller's buffer.
#[derive(Debug)]
pub enum TunnelResult<'o> {
    Done,
    /// Send this datagram to the member's endpoint.
    Network(&'o [u8]),
    /// A decrypted inner IP packet.
    Inner(&'o [u8]),
    Error(WgError),
}

/// One member's crypto session (a boringtun `Tunn`).
pub trait Tunnel {
    /// Encrypts `packet`. Without a session yet, the packet is queued inside
    /// and a handshake initiation comes out instead.
    fn encapsulate<'o>(&mut self, packet: &[u8], out: &'o mut [u8]) -> TunnelResult<'o>;
    /// Handles a datagram from the member. After `Network`, call again with an
    /// empty datagram until `Done` to flush packets queued during a handshake.
    fn decapsulate<'o>(
        &mut self,
        from: Option<IpAddr>,
        datagram: &[u8],
        out: &'o mut [u8],
    ) -> TunnelResult<'o>;
    /// Keepalives, rekeying, handshake retries. Call every [`TIMER_TICK`].
    fn update_timers<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o>;
    /// Starts a handshake now (even if one is in progress).
    fn initiate<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o>;
    /// Starts a handshake unless one is in progress.
    fn start_handshake<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o>;
    /// Time since the last completed handshake.
    fn since_handshake(&self) -> Option<Duration>;
    /// Smoothed handshake round-trip time, if known.
    fn rtt(&self) -> Option<Duration>;
}

/// How often tunnels want [`Tunnel::update_timers`] (boringtun's granularity).
pub const TIMER_TICK: Duration = Duration::from_millis(250);

/// Which member a datagram is for, before any tunnel sees it.
#[derive(Debug)]
pub enum Identified<'o> {
    /// A handshake initiation from this static key.
    Initiation(Key),
    /// A response, cookie reply or data for our receiver index.
    Index(u32),
    /// Under load: answer with this cookie reply instead.
    CookieReply(&'o [u8]),
    Drop(WgError),
}

/// Makes tunnels for our key, and identifies incoming datagrams.
pub trait Crypto {
    type Tunnel: Tunnel;
    fn public_key(&self) -> Key;
    /// A tunnel to `peer`; `index` is put in our receiver indices so that
    /// [`Crypto::identify`] can find the member again.
    fn tunnel(&self, peer: &Key, index: u32, keepalive: Option<u16>) -> Self::Tunnel;
    fn identify<'o>(&self, from: SocketAddr, datagram: &[u8], out: &'o mut [u8]) -> Identified<'o>;
    /// A transport data message's member index, read from its header alone
    /// (what [`Crypto::identify`] answers for one, without its scratch
    /// buffer): the path of every forwarded packet. None for anything else.
    fn data_index(&self, _datagram: &[u8]) -> Option<u32> {
        None
    }
    /// Once a second: resets the handshake rate limiter's counts.
    fn tick(&self);
}

/// What a node knows about a friend, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub name: heapless::String<32>,
    pub public_key: Key,
    pub overlay: Ipv4Addr,
    pub overlay_v6: Option<Ipv6Addr>,
    pub asn: u32,
    /// Prefixes the member may originate (its LAN). Its overlay address is
    /// always allowed.
    pub prefixes: heapless::Vec<Prefix, MAX_MEMBER_PREFIXES>,
    /// Where to reach it; empty when it must contact us (or cannot be reached
    /// directly at all).
    pub endpoints: heapless::Vec<SocketAddr, MAX_ENDPOINTS>,
    /// WireGuard persistent keepalive in seconds (keeps NAT mappings open).
    pub keepalive: Option<u16>,
    /// BGP hold time for this member's session, overriding the node's.
    pub hold_time: Option<u16>,
    /// BFD for this member's tunnel.
    pub bfd: BfdSetting,
    /// The member is a game exit: the only kind of member whose default
    /// route (0.0.0.0/0, tagged as an exit) is accepted.
    pub exit: bool,
    /// The member's group records count here: whom it invites or removes
    /// joins or leaves the group ([`crate::group`]). Default on.
    pub inviter: bool,
}

/// Whether a member's tunnel runs BFD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BfdSetting {
    /// As the node's configuration says.
    #[default]
    Inherit,
    Off,
    On(crate::bfd::Config),
}

impl MemberConfig {
    /// May this member originate `prefix`? Its overlay host route, or anything
    /// inside one of its configured prefixes.
    pub fn may_originate(&self, prefix: &Prefix) -> bool {
        *prefix == Prefix::host(IpAddr::V4(self.overlay))
            || self
                .overlay_v6
                .is_some_and(|a| *prefix == Prefix::host(IpAddr::V6(a)))
            || self.prefixes.iter().any(|p| p.covers(prefix))
    }

    /// Is `addr` one of the member's overlay addresses?
    pub fn has_overlay(&self, addr: IpAddr) -> bool {
        addr == IpAddr::V4(self.overlay) || self.overlay_v6.is_some_and(|a| addr == IpAddr::V6(a))
    }

    /// Does traffic from `addr` belong to this member's home?
    #[inline]
    pub fn owns_address(&self, addr: IpAddr) -> bool {
        addr == IpAddr::V4(self.overlay)
            || self.overlay_v6.is_some_and(|a| addr == IpAddr::V6(a))
            || self.prefixes.iter().any(|p| p.contains(addr))
    }
}

/// Counters per member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStats {
    /// Datagrams identified as the member's and handed to its tunnel,
    /// whatever became of them (a packet, a handshake, a keepalive, an error).
    pub rx_datagrams: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Datagrams that failed authentication or replay checks.
    pub rx_errors: u64,
    /// Times the live endpoint changed (roaming).
    pub roams: u64,
    /// Packets we could not send: no endpoint known.
    pub no_endpoint: u64,
    pub handshakes_sent: u64,
}

/// A member with its tunnel and where it lives now.
#[derive(Debug)]
pub struct Member<T> {
    pub config: MemberConfig,
    pub tunnel: T,
    /// Where datagrams go: the last authenticated source, else a candidate.
    pub endpoint: Option<SocketAddr>,
    /// True once an authenticated datagram came from `endpoint`.
    pub endpoint_confirmed: bool,
    candidate: usize,
    candidate_since: Option<Instant>,
    pub last_rx: Option<Instant>,
    /// When we last started a handshake to bring the tunnel up.
    pub last_initiation: Option<Instant>,
    pub stats: MemberStats,
    index: u32,
}

impl<T: Tunnel> Member<T> {
    /// A member with its tunnel; `index` is the receiver-index tag the
    /// tunnel was made with. It is tried first at its first endpoint.
    pub fn new(config: MemberConfig, tunnel: T, index: u32) -> Member<T> {
        let endpoint = config.endpoints.first().copied();
        Member {
            config,
            tunnel,
            endpoint,
            endpoint_confirmed: false,
            candidate: 0,
            candidate_since: None,
            last_rx: None,
            last_initiation: None,
            stats: MemberStats::default(),
            index,
        }
    }

    /// The receiver-index tag of this member's tunnel.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// An authenticated datagram came from `from`: follow it (roaming).
    /// Returns whether the endpoint changed.
    pub fn authenticated_from(&mut self, now: Instant, from: SocketAddr) -> bool {
        let changed = self.endpoint != Some(from);
        if changed {
            if self.endpoint.is_some() {
                self.stats.roams += 1;
            }
            log::info!("wg: member {} now at {from}", self.config.name.as_str());
            self.endpoint = Some(from);
        }
        self.endpoint_confirmed = true;
        self.last_rx = Some(now);
        changed
    }

    /// Called on every timer tick: while no endpoint answers, move to the next
    /// candidate every [`REKEY_TIMEOUT`].
    pub fn rotate_candidates(&mut self, now: Instant) {
        if self.endpoint_confirmed {
            // Silence on a confirmed endpoint for long enough (a restart with
            // new ports, a NAT rebinding) puts the candidates back in play.
            let silent = self
                .last_rx
                .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(30));
            if !silent || self.config.endpoints.is_empty() {
                return;
            }
            self.endpoint_confirmed = false;
            self.candidate_since = Some(now);
        }
        let n = self.config.endpoints.len();
        if n == 0 {
            return;
        }
        match self.candidate_since {
            None => {
                self.candidate_since = Some(now);
                self.endpoint = self.config.endpoints.get(self.candidate).copied();
            }
            Some(t) if now.saturating_duration_since(t) >= REKEY_TIMEOUT => {
                self.candidate = (self.candidate + 1) % n;
                self.candidate_since = Some(now);
                self.endpoint = self.config.endpoints.get(self.candidate).copied();
            }
            _ => {}
        }
    }
}

/// Why a member could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberError {
    Full,
    DuplicateKey,
    DuplicateAsn,
    DuplicateOverlay,
}
