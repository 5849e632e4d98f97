//! One mesh router, as a pure state machine (see the crate docs for the driver
//! contract).
//!
//! Inputs: [`Node::handle_udp`] (the mesh port), [`Node::handle_lan_packet`]
//! (the TUN device), [`Node::handle_timeout`], and control calls.
//! Outputs: [`Node::poll_transmit`], [`Node::poll_lan_packet`],
//! [`Node::poll_event`], [`Node::poll_timeout`].
//!
//! Inside, per member: a WireGuard tunnel ([`crate::wg`]) and an eBGP session
//! ([`crate::bgp::session`]) carried over the node's own TCP/IP stack
//! ([`crate::overlay`]) through that member's tunnel only. The sessions feed
//! one [`Rib`]; forwarding looks packets up in it:
//!
//! - from a tunnel: decrypt; the source must be inside some member's home
//!   (anti-spoofing); for our overlay address → the overlay stack; else look
//!   up the destination: our LAN → the TUN device; another member → decrement
//!   TTL and re-encrypt to the next hop (transit); no route → ICMP unreachable;
//! - from the LAN: look up; another member → encrypt to the next hop.
//!
//! Routes a member may originate are limited to what its membership entry
//! allows, so a misconfigured or hostile friend cannot take another home's LAN.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use embassy_time::{Duration, Instant};
use smoltcp::iface::SocketHandle;

mod traversal;

pub use traversal::TraversalStatus;
use traversal::{Traversal, TraversalState};

use crate::bfd;
use crate::bgp::attr::PathAttributes;
use crate::bgp::error::DownReason;
use crate::bgp::session::{ConnId, Session, SessionConfig, SessionEvent, State};
use crate::bgp::speaker::{export, ExportPolicy, ImportFilter, ImportStats, RibImport};
use crate::ip::{self, IcmpError, IpInfo};
use crate::overlay::{Overlay, OverlayStorage, Packet};
use crate::prefix::{Family, Prefix};
use crate::rib::{PeerId, PeerInfo, Rib, Source};
use crate::wg::{
    Crypto, Identified, Key, Member, MemberConfig, MemberError, Members, Tunnel, TunnelResult,
    INNER_MTU, MAX_DATAGRAM, MAX_MEMBERS, TIMER_TICK,
};

/// Prefixes a node announces for its own home.
pub const MAX_LAN_PREFIXES: usize = 8;
/// Room in the output queues.
const TRANSMIT_QUEUE: usize = 64;
const LAN_QUEUE: usize = 64;
const EVENT_QUEUE: usize = 64;
/// How much a latency measurement must move (at least, and at least a
/// quarter) before route selection sees the change.
const LATENCY_HYSTERESIS_US: u32 = 5_000;
/// How long the higher overlay address of a pair waits for the lower one to
/// bring the tunnel up before it tries itself.
const RESPONDER_GRACE: Duration = Duration::from_millis(300);
/// A BFD discriminator: different per member slot and per start of the node
/// (the seed changes), never zero (RFC 5880 §6.3).
fn bfd_discriminator(seed: u64, slot: usize) -> u32 {
    let mixed = (seed ^ (seed >> 32)) as u32;
    ((mixed & !0x3f) | slot as u32).max(1)
}
/// BFD source ports (RFC 5881 §4: 49152-65535), one per member slot.
const BFD_SOURCE_PORT_BASE: u16 = 49152;
/// The longest hold-down before BGP restarts after BFD flaps.
const MAX_HOLD_DOWN: Duration = Duration::from_secs(60);
/// A session up this long forgets past flaps.
const FLAP_MEMORY: Duration = Duration::from_secs(60);
/// How long a delivered redundant packet is remembered, to drop its twin.
const DEDUP_WINDOW: Duration = Duration::from_millis(500);

/// Silence after which the next authenticated datagram counts as the tunnel
/// coming up (for events and logs).
const TUNNEL_SILENCE: Duration = Duration::from_secs(30);
/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);
/// ICMP errors allowed per second (RFC 1812 §4.3.2.8 asks for a limit).
const ICMP_PER_SECOND: u32 = 50;

pub type NodeRib = Rib<512, 1024>;

/// The node's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub private_key: Key,
    pub overlay: Ipv4Addr,
    pub overlay_v6: Option<Ipv6Addr>,
    pub asn: u32,
    pub lan_prefixes: heapless::Vec<Prefix, MAX_LAN_PREFIXES>,
    /// BGP hold time (seconds) proposed on every session.
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Multipath limit (1 = no ECMP).
    pub max_paths: u8,
    /// WireGuard persistent keepalive for members that set none.
    pub keepalive: Option<u16>,
    /// Seeds the TCP stack's sequence numbers and ports.
    pub seed: u64,
    /// The host's kernel also holds the overlay address (on the TUN device):
    /// only BGP reaches the node's own stack, everything else addressed to the
    /// overlay address goes to the kernel, which answers pings, ssh and the
    /// like. Without it (a simulation, a host with no kernel stack) the node's
    /// stack takes everything and answers pings itself.
    pub overlay_in_kernel: bool,
    /// BFD on every tunnel, unless a member says otherwise (`None`: off).
    pub bfd: Option<bfd::Config>,
    /// After BFD took a session down, BGP waits this long with BFD Up before
    /// it starts again; doubled for each further flap (up to a minute). A
    /// member that comes back restarted (a new BFD discriminator) is not a
    /// flapping path and is not held down.
    pub bfd_hold_down: Duration,
    /// Redundant sending: UDP packets from the LAN up to this size go over
    /// the two best first hops (`None`: off).
    pub redundancy_max_len: Option<u16>,
    /// The driver can send from a second UDP port, to answer STUN requests
    /// to change port (the NAT filtering test other members run).
    pub alt_port: bool,
    /// Transit traffic from one member is capped at this many bytes per
    /// second (`None`: no cap).
    pub relay_rate: Option<u32>,
}

impl NodeConfig {
    pub fn new(private_key: Key, overlay: Ipv4Addr, asn: u32) -> NodeConfig {
        NodeConfig {
            private_key,
            overlay,
            overlay_v6: None,
            asn,
            lan_prefixes: heapless::Vec::new(),
            hold_time: 9,
            connect_retry: Duration::from_secs(2),
            max_paths: 1,
            keepalive: Some(25),
            seed: 0,
            overlay_in_kernel: false,
            bfd: Some(bfd::Config::GAMING),
            bfd_hold_down: Duration::from_secs(2),
            redundancy_max_len: Some(300),
            alt_port: false,
            relay_rate: Some(2_500_000), // 20 Mbit/s
        }
    }
}

/// A datagram for the underlay.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub to: SocketAddr,
    pub bytes: heapless::Vec<u8, MAX_DATAGRAM>,
    /// Send from the second port (a STUN answer to a port-change request).
    pub from_alt_port: bool,
}

/// What changed, for logs, notifications and the kernel route programmer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// A member's tunnel completed a handshake after being silent.
    TunnelUp {
        member: u8,
    },
    BfdUp {
        member: u8,
    },
    /// BFD found the path to the member dead; its BGP session went with it.
    BfdDown {
        member: u8,
        diagnostic: bfd::Diagnostic,
    },
    SessionUp {
        member: u8,
    },
    SessionDown {
        member: u8,
        reason: DownReason,
    },
    /// A prefix of another home became reachable: route it to the mesh.
    RouteAdded {
        prefix: Prefix,
        via: u8,
    },
    /// The best path moved to another next hop.
    PathChanged {
        prefix: Prefix,
        from: u8,
        to: u8,
    },
    /// The prefix is no longer reachable through the mesh.
    RouteRemoved {
        prefix: Prefix,
    },
}

/// Counters of what the node did with packets; every drop has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub udp_in: u64,
    /// Datagrams that are not WireGuard, or that failed its checks.
    pub udp_invalid: u64,
    pub udp_oversized: u64,
    /// Handshakes from keys that are not members.
    pub unknown_key: u64,
    pub cookie_replies: u64,
    /// Inner packets with a broken IP header.
    pub bad_inner: u64,
    /// Inner packets whose source no member's home holds.
    pub spoofed: u64,
    pub forwarded: u64,
    pub to_lan: u64,
    pub to_overlay: u64,
    pub from_lan: u64,
    pub no_route: u64,
    pub ttl_expired: u64,
    pub icmp_sent: u64,
    pub icmp_rate_limited: u64,
    /// Packets for a member with no known endpoint.
    pub no_endpoint: u64,
    /// Output queue full: the driver did not drain in time.
    pub queue_full: u64,
    pub events_dropped: u64,
    /// Routes refused because the member may not originate them.
    pub hijacks_refused: u64,
    /// Copies sent over a second first hop (redundant sending).
    pub redundant_copies: u64,
    /// Second copies dropped at the egress router.
    pub duplicates_dropped: u64,
    /// BFD packets discarded (bad format, TTL, discriminator, unknown sender).
    pub bfd_discarded: u64,
    pub encrypt_errors: u64,
    /// STUN on the mesh port: malformed or not ours to answer.
    pub stun_invalid: u64,
    /// Binding requests not answered (over [`traversal::STUN_ANSWERS_PER_SECOND`]).
    pub stun_rate_limited: u64,
    pub stun_answered: u64,
    pub stun_requests: u64,
    /// Answers to no request of ours, or from elsewhere than asked.
    pub stun_unexpected: u64,
    pub pex_sent: u64,
    pub pex_received: u64,
    /// Peer exchange messages that did not decode, or that lied.
    pub pex_invalid: u64,
    /// Handshake initiations sent to punch through NATs.
    pub punch_packets: u64,
    /// Punch windows that ended without a tunnel.
    pub punch_failures: u64,
    /// Transit packets refused: a destination no relay serves (loopback,
    /// multicast, ...), or our own address as the source.
    pub relay_refused: u64,
    /// Transit packets over a member's rate cap.
    pub relay_rate_limited: u64,
    /// Rounds of the internal engine (sockets ↔ sessions ↔ RIB); diagnostics.
    pub pump_rounds: u64,
}

/// A BGP connection in flight on an overlay socket.
#[derive(Debug, Clone, Copy)]
struct Conn {
    socket: SocketHandle,
    /// `handle_connected`/`handle_accepted` was told.
    reported: bool,
}

/// The BGP side of a member.
struct Peer {
    session: Session,
    conns: [Option<Conn>; 2],
    end_of_rib_sent: bool,
    import: ImportStats,
    /// Latency (µs) last given to the RIB.
    latency: Option<u32>,
    /// We answered a handshake initiation; its session becomes usable with
    /// the member's first data packet.
    answered_handshake: bool,
    bfd: Option<bfd::Session>,
    /// BGP is stopped because BFD went down; it starts at `bgp_start_at`
    /// (set when BFD is Up again, a hold-down later).
    bgp_held: bool,
    bgp_start_at: Option<Instant>,
    /// Recent BFD flaps, for the growing hold-down.
    flaps: u32,
    /// The peer's BFD discriminator when its session last went down: if it
    /// comes back with another, it restarted (no flap to damp).
    down_discr: u32,
    started_at: Instant,
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Peer")
            .field("state", &self.session.state())
            .finish_non_exhaustive()
    }
}

/// Import policy: the origin AS must be a member allowed to originate the prefix.
struct Membership<'m, T> {
    members: &'m Members<T>,
    own_asn: u32,
    refused: &'m mut u64,
}

impl<T: Tunnel> ImportFilter for Membership<'_, T> {
    fn accept(&mut self, _peer: PeerId, prefix: &Prefix, attrs: &PathAttributes) -> bool {
        let ok = attrs
            .as_path
            .origin_as()
            .filter(|&asn| asn != self.own_asn)
            .and_then(|asn| self.members.by_asn(asn))
            .and_then(|slot| self.members.get(slot))
            .is_some_and(|m| m.config.may_originate(prefix));
        if !ok {
            *self.refused += 1;
        }
        ok
    }
}

/// Why a timeout was requested, for debugging wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    Bgp,
    Overlay,
    TunnelTimers,
    Bfd,
}

/// The state of one member, for status output.
#[derive(Debug, Clone)]
pub struct MemberStatus<'n> {
    pub slot: u8,
    pub config: &'n MemberConfig,
    pub endpoint: Option<SocketAddr>,
    pub endpoint_confirmed: bool,
    pub since_handshake: Option<Duration>,
    pub rtt: Option<Duration>,
    pub last_rx: Option<Instant>,
    pub stats: crate::wg::MemberStats,
    pub bgp_state: State,
    pub bgp_stats: crate::bgp::session::SessionStats,
    pub bgp_last_down: Option<DownReason>,
    pub bgp_established_since: Option<Instant>,
    pub prefixes_received: usize,
    pub import: ImportStats,
    pub bfd: Option<BfdStatus>,
    /// BGP is held down after BFD took it down; it restarts at this instant
    /// (if BFD is still Up then).
    pub bgp_held_until: Option<Instant>,
}

/// A member's BFD session, for status output.
#[derive(Debug, Clone, Copy)]
pub struct BfdStatus {
    pub state: bfd::State,
    pub remote_state: bfd::State,
    pub diagnostic: bfd::Diagnostic,
    pub tx_interval: Duration,
    pub detection_time: Duration,
    pub up_since: Option<Instant>,
    pub stats: bfd::Stats,
}

/// One mesh router.
pub struct Node<'a, C: Crypto> {
    config: NodeConfig,
    crypto: C,
    members: Members<C::Tunnel>,
    peers: [Option<Peer>; MAX_MEMBERS],
    rib: NodeRib,
    overlay: Overlay<'a>,
    transmit: heapless::Deque<Datagram, TRANSMIT_QUEUE>,
    lan_out: heapless::Deque<Packet, LAN_QUEUE>,
    events: heapless::Deque<NodeEvent, EVENT_QUEUE>,
    /// Non-local Loc-RIB prefixes with their next hop, as last reported.
    installed: heapless::Vec<(Prefix, u8), 512>,
    rib_version: u64,
    next_tick: Instant,
    last_second: Instant,
    icmp_budget: u32,
    stats: NodeStats,
    /// Something happened that the control plane (sockets, sessions, RIB) must
    /// look at; plain forwarding leaves it alone.
    needs_pump: bool,
    /// Recently delivered small UDP packets, to drop the redundant twin.
    dedup: Dedup,
    trav: TraversalState,
    member_trav: [Traversal; MAX_MEMBERS],
}

impl<C: Crypto> core::fmt::Debug for Node<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("overlay", &self.config.overlay)
            .field("asn", &self.config.asn)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Crypto> Node<'a, C> {
    pub fn new(
        config: NodeConfig,
        crypto: C,
        storage: &'a mut OverlayStorage<'a>,
        now: Instant,
    ) -> Self {
        let overlay = Overlay::new(storage, config.overlay, config.overlay_v6, config.seed, now);
        let mut rib = Rib::new(config.asn, config.max_paths);
        let local = PathAttributes::default();
        let mut own: heapless::Vec<Prefix, { MAX_LAN_PREFIXES + 2 }> = heapless::Vec::new();
        let _ = own.push(Prefix::host(IpAddr::V4(config.overlay)));
        if let Some(v6) = config.overlay_v6 {
            let _ = own.push(Prefix::host(IpAddr::V6(v6)));
        }
        for p in &config.lan_prefixes {
            let _ = own.push(*p);
        }
        for p in own {
            if rib.update(Source::Local, p, &local).is_err() {
                log::error!("node: cannot originate {p}: RIB full");
            }
        }
        Node {
            config,
            crypto,
            members: Members::new(),
            peers: [const { None }; MAX_MEMBERS],
            rib,
            overlay,
            transmit: heapless::Deque::new(),
            lan_out: heapless::Deque::new(),
            events: heapless::Deque::new(),
            installed: heapless::Vec::new(),
            rib_version: 0,
            next_tick: now,
            last_second: now,
            icmp_budget: ICMP_PER_SECOND,
            stats: NodeStats::default(),
            needs_pump: false,
            dedup: Dedup::new(),
            trav: TraversalState::new(),
            member_trav: core::array::from_fn(|_| Traversal::default()),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    pub fn public_key(&self) -> Key {
        self.crypto.public_key()
    }
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }
    pub fn rib(&self) -> &NodeRib {
        &self.rib
    }
    pub fn overlay_stats(&self) -> crate::overlay::OverlayStats {
        self.overlay.stats()
    }

    /// Status of every member.
    pub fn members(&self) -> impl Iterator<Item = MemberStatus<'_>> + use<'_, 'a, C> {
        self.members.iter().map(move |(slot, m)| {
            let peer = self.peers[slot].as_ref();
            MemberStatus {
                slot: slot as u8,
                config: &m.config,
                endpoint: m.endpoint,
                endpoint_confirmed: m.endpoint_confirmed,
                since_handshake: m.tunnel.since_handshake(),
                rtt: m.tunnel.rtt(),
                last_rx: m.last_rx,
                stats: m.stats,
                bgp_state: peer.map_or(State::Idle, |p| p.session.state()),
                bgp_stats: peer.map(|p| *p.session.stats()).unwrap_or_default(),
                bgp_last_down: peer.and_then(|p| p.session.last_down()),
                bgp_established_since: peer.and_then(|p| p.session.established_since()),
                prefixes_received: self.rib.count_from(slot as u8),
                import: peer.map(|p| p.import).unwrap_or_default(),
                bfd: peer.and_then(|p| p.bfd.as_ref()).map(|b| BfdStatus {
                    state: b.state(),
                    remote_state: b.remote_state(),
                    diagnostic: b.diagnostic(),
                    tx_interval: b.tx_interval(),
                    detection_time: b.detection_time(),
                    up_since: b.up_since(),
                    stats: b.stats,
                }),
                bgp_held_until: peer.and_then(|p| p.bgp_start_at),
            }
        })
    }

    pub fn member_name(&self, slot: u8) -> Option<&str> {
        self.members
            .get(slot as usize)
            .map(|m| m.config.name.as_str())
    }

    pub fn member_slot(&self, name: &str) -> Option<u8> {
        self.members
            .iter()
            .find(|(_, m)| m.config.name.as_str() == name)
            .map(|(i, _)| i as u8)
    }

    /// The member that carries traffic to `addr` now (the first hop).
    pub fn next_hop(&self, addr: IpAddr) -> Option<Source> {
        self.rib.lookup(addr)?.best().map(|p| p.source)
    }

    // ---- control ----

    /// Adds a member and starts its BGP session.
    pub fn add_member(&mut self, now: Instant, config: MemberConfig) -> Result<u8, MemberError> {
        let mut config = config;
        if config.keepalive.is_none() {
            config.keepalive = self.config.keepalive;
        }
        let slot = self.members.add(&self.crypto, config)?;
        if let Some(t) = self.member_trav.get_mut(slot) {
            t.reset();
        }
        self.start_peer(now, slot);
        self.pump(now);
        Ok(slot as u8)
    }

    /// Whether our side dials the BGP connection to `m`: only when we know
    /// where it is, and only the lower overlay address of the two, so each
    /// pair has one TCP connection and never a collision (RFC 4271 §6.8
    /// resolution costs a round trip, and two sides backing off from each
    /// other's collisions can keep missing each other).
    fn dials(&self, m: &Member<C::Tunnel>) -> bool {
        m.endpoint.is_some() && self.config.overlay < m.config.overlay
    }

    /// `passive`: the session waits for the member to connect.
    fn session_config(&self, m: &MemberConfig, passive: bool) -> SessionConfig {
        let mut s = SessionConfig::new(self.config.asn, self.config.overlay, m.asn);
        s.passive = passive;
        s.hold_time = m.hold_time.unwrap_or(self.config.hold_time);
        s.connect_retry = self.config.connect_retry;
        s.idle_hold = Duration::from_millis(250);
        s.max_idle_hold = Duration::from_secs(10);
        // A member announces its LAN and overlay addresses; many more is a
        // mistake or an attack.
        s.max_prefixes = Some(4 * MAX_LAN_PREFIXES as u32 * MAX_MEMBERS as u32);
        s.ipv6 = self.config.overlay_v6.is_some();
        s
    }

    fn start_peer(&mut self, now: Instant, slot: usize) {
        let Some(m) = self.members.get(slot) else {
            return;
        };
        let bfd_config = match m.config.bfd {
            crate::wg::BfdSetting::Inherit => self.config.bfd,
            crate::wg::BfdSetting::Off => None,
            crate::wg::BfdSetting::On(c) => Some(c),
        };
        let seed = self.config.seed ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let sc = self.session_config(&m.config, !self.dials(m));
        let info = PeerInfo {
            asn: m.config.asn,
            router_id: m.config.overlay,
            address: IpAddr::V4(m.config.overlay),
            ebgp: true,
            latency: None,
        };
        self.rib.set_peer(slot as u8, info);
        let mut session = Session::new(sc);
        session.start(now);
        self.peers[slot] = Some(Peer {
            session,
            conns: [None, None],
            end_of_rib_sent: false,
            import: ImportStats::default(),
            latency: None,
            answered_handshake: false,
            bfd: bfd_config.map(|c| {
                let mut b = bfd::Session::new(c, bfd_discriminator(seed, slot), seed);
                b.start(now);
                b
            }),
            bgp_held: false,
            bgp_start_at: None,
            flaps: 0,
            down_discr: 0,
            started_at: now,
        });
    }

    /// Removes a member: its session is stopped with a Cease and its routes go.
    pub fn remove_member(&mut self, now: Instant, slot: u8) -> bool {
        let s = slot as usize;
        if self.members.get(s).is_none() {
            return false;
        }
        if let Some(p) = self.peers[s].as_mut() {
            p.session.stop(now, "member removed");
        }
        self.pump(now);
        if let Some(p) = self.peers[s].take() {
            for c in p.conns.into_iter().flatten() {
                self.overlay.abort(c.socket);
            }
        }
        self.rib.remove_peer(slot);
        if let Some(m) = self.members.remove(s) {
            if let Some(e) = m.endpoint {
                self.trav.nat.forget(e);
            }
        }
        self.member_trav[s].reset();
        self.pump(now);
        true
    }

    /// Applies a changed member entry without dropping what did not change:
    /// endpoints and keepalive apply in place; BGP settings reset the session
    /// only when they change what the OPEN carries.
    pub fn update_member(&mut self, now: Instant, slot: u8, config: MemberConfig) -> bool {
        let s = slot as usize;
        let Some(m) = self.members.get_mut(s) else {
            return false;
        };
        if m.config.public_key != config.public_key {
            return false; // a new key is a new member
        }
        let allowed_changed = m.config.prefixes != config.prefixes || m.config.asn != config.asn;
        let passive = (config.endpoints.is_empty() && m.endpoint.is_none())
            || self.config.overlay > config.overlay;
        let sc = self.session_config(&config, passive);
        if let Some(m) = self.members.get_mut(s) {
            m.config = config;
        }
        if let Some(p) = self.peers[s].as_mut() {
            p.session.reconfigure(now, sc);
        }
        if allowed_changed {
            // What the member may originate changed: ask for its routes again
            // so the import filter sees them anew.
            self.rib.peer_down(slot);
            if let Some(p) = self.peers[s].as_mut() {
                let _ = p.session.send_route_refresh(Family::Ipv4);
            }
        }
        self.pump(now);
        true
    }

    /// Replaces the prefixes this home announces: new ones are originated,
    /// dropped ones withdrawn; sessions stay up.
    pub fn set_lan_prefixes(&mut self, now: Instant, prefixes: &[Prefix]) {
        let local = PathAttributes::default();
        for old in self.config.lan_prefixes.clone() {
            if !prefixes.contains(&old) {
                self.rib.withdraw(Source::Local, old);
            }
        }
        self.config.lan_prefixes.clear();
        for p in prefixes.iter().take(MAX_LAN_PREFIXES) {
            let _ = self.config.lan_prefixes.push(*p);
            if self.rib.update(Source::Local, *p, &local).is_err() {
                log::error!("node: cannot originate {p}: RIB full");
            }
        }
        self.pump(now);
    }

    /// Changes timers and limits for every session. A session is reset only
    /// when what its OPEN carried changes (the hold time).
    pub fn set_session_settings(
        &mut self,
        now: Instant,
        hold_time: u16,
        connect_retry: Duration,
        keepalive: Option<u16>,
        max_paths: u8,
    ) {
        self.config.hold_time = hold_time;
        self.config.connect_retry = connect_retry;
        self.config.keepalive = keepalive;
        if self.config.max_paths != max_paths {
            self.config.max_paths = max_paths;
            self.rib.set_max_paths(max_paths);
        }
        for slot in 0..MAX_MEMBERS {
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            let passive = self.peers[slot]
                .as_ref()
                .is_some_and(|p| p.session.config().passive);
            let sc = self.session_config(&m.config, passive);
            if let Some(p) = self.peers[slot].as_mut() {
                if *p.session.config() != sc {
                    p.session.reconfigure(now, sc);
                }
            }
        }
        self.pump(now);
    }

    /// Changes BFD and redundant sending: running BFD sessions take new timers
    /// through a poll sequence, new ones start, removed ones stop (a BGP
    /// session held for BFD then starts).
    pub fn set_fast_failover(
        &mut self,
        now: Instant,
        bfd: Option<bfd::Config>,
        hold_down: Duration,
        redundancy_max_len: Option<u16>,
        relay_rate: Option<u32>,
    ) {
        self.config.relay_rate = relay_rate;
        self.config.bfd = bfd;
        self.config.bfd_hold_down = hold_down;
        self.config.redundancy_max_len = redundancy_max_len;
        for slot in 0..MAX_MEMBERS {
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            let wanted = match m.config.bfd {
                crate::wg::BfdSetting::Inherit => bfd,
                crate::wg::BfdSetting::Off => None,
                crate::wg::BfdSetting::On(c) => Some(c),
            };
            let seed = self.config.seed ^ slot as u64;
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            match (p.bfd.as_mut(), wanted) {
                (Some(b), Some(c)) => b.reconfigure(c),
                (None, Some(c)) => {
                    let mut b = bfd::Session::new(c, bfd_discriminator(seed, slot), seed);
                    b.start(now);
                    p.bfd = Some(b);
                }
                (Some(_), None) => {
                    p.bfd = None;
                    if core::mem::take(&mut p.bgp_held) {
                        p.bgp_start_at = None;
                        p.session.start(now);
                        self.needs_pump = true;
                    }
                }
                (None, None) => {}
            }
        }
        self.pump(now);
    }

    /// Stops every session with a Cease (Administrative Shutdown).
    pub fn shutdown(&mut self, now: Instant) {
        for p in self.peers.iter_mut().flatten() {
            p.session.stop(now, "meshd shutting down");
        }
        self.pump(now);
    }

    // ---- inputs ----

    /// A datagram from the mesh port.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.udp_in += 1;
        if bytes.len() > MAX_DATAGRAM {
            self.stats.udp_oversized += 1;
            return;
        }
        if crate::stun::is_stun(bytes) {
            self.handle_stun(now, from, bytes);
            return;
        }
        let mut reply = [0u8; 148];
        let slot = match self.crypto.identify(from, bytes, &mut reply) {
            Identified::CookieReply(c) => {
                self.stats.cookie_replies += 1;
                let c: heapless::Vec<u8, 148> = heapless::Vec::from_slice(c).unwrap_or_default();
                self.queue_datagram(from, &c);
                return;
            }
            Identified::Drop(_) => {
                self.stats.udp_invalid += 1;
                return;
            }
            Identified::Initiation(key) => match self.members.by_key(&key) {
                Some(s) => s,
                None => {
                    self.stats.unknown_key += 1;
                    return;
                }
            },
            Identified::Index(i) => match self.members.by_index(i) {
                Some(s) => s,
                None => {
                    self.stats.udp_invalid += 1;
                    return;
                }
            },
        };
        self.decapsulate(now, slot, from, bytes);
        self.activate_session(now, slot);
        if self.needs_pump {
            self.pump(now);
        }
    }

    /// A member we could not reach has contacted us: now we can dial it, if
    /// dialing is our side's job.
    fn activate_session(&mut self, now: Instant, slot: usize) {
        let Some(m) = self.members.get(slot) else {
            return;
        };
        if !self.dials(m) {
            return;
        }
        let sc = self.session_config(&m.config, false);
        if let Some(p) = self.peers[slot].as_mut() {
            if p.session.config().passive {
                p.session.reconfigure(now, sc);
                self.needs_pump = true;
            }
        }
    }

    fn decapsulate(&mut self, now: Instant, slot: usize, from: SocketAddr, bytes: &[u8]) {
        let data_message = bytes.first() == Some(&4);
        let mut out = [0u8; MAX_DATAGRAM + 64];
        let Some(m) = self.members.get_mut(slot) else {
            return;
        };
        let was_silent = m
            .last_rx
            .is_none_or(|t| now.saturating_duration_since(t) > TUNNEL_SILENCE);
        // Whether a WireGuard session existed before this datagram: a new one
        // then replaces it (the member restarted, or a rekey).
        let had_session = m.tunnel.since_handshake().is_some();
        let result = m.tunnel.decapsulate(Some(from.ip()), bytes, &mut out);
        let authenticated = match result {
            TunnelResult::Done => data_message, // a keepalive
            TunnelResult::Network(_) | TunnelResult::Inner(_) => true,
            TunnelResult::Error(e) => {
                m.stats.rx_errors += 1;
                log::debug!(
                    "wg: {} dropped a datagram: {e:?} (type {:?}, {} bytes)",
                    m.config.name.as_str(),
                    bytes.first(),
                    bytes.len()
                );
                false
            }
        };
        if authenticated {
            m.authenticated_from(now, from);
            if was_silent {
                let member = slot as u8;
                push(
                    &mut self.events,
                    &mut self.stats,
                    NodeEvent::TunnelUp { member },
                );
                self.trav.pex_dirty = true;
            }
        }
        match result {
            TunnelResult::Network(b) => {
                m.stats.tx_packets += 1;
                let to = m.endpoint.unwrap_or(from);
                let b: heapless::Vec<u8, MAX_DATAGRAM> =
                    heapless::Vec::from_slice(b).unwrap_or_default();
                self.queue_datagram(to, &b);
            }
            TunnelResult::Inner(p) => {
                m.stats.rx_packets += 1;
                m.stats.rx_bytes += p.len() as u64;
                let len = p.len();
                self.forward_from_member(now, slot, &mut out[..len]);
            }
            _ => {}
        }
        if authenticated {
            self.flush_queued(slot);
            // A new WireGuard session that replaces an old one means the
            // member is alive again, perhaps freshly restarted, and that any
            // connection attempt in flight went out under the old keys and is
            // lost: if our side dials and the BGP session is down, dial now
            // instead of at the next retry. (A first session needs nothing:
            // what was queued during its handshake is sent on it.) The new
            // session is usable once we got its response (we initiated) or,
            // when we answered, once its first data packet arrived (boringtun
            // switches to it then).
            let kind = bytes.first().copied();
            let Some(p) = self.peers[slot].as_mut() else {
                return;
            };
            let usable = match kind {
                Some(1) => {
                    p.answered_handshake = had_session;
                    false
                }
                Some(2) => had_session,
                Some(4) => core::mem::take(&mut p.answered_handshake),
                _ => false,
            };
            let dials = self.members.get(slot).is_some_and(|m| self.dials(m));
            if let (true, true, Some(p)) = (usable, dials, self.peers[slot].as_mut()) {
                if !p.session.is_established() {
                    log::debug!("bgp: peer {slot}: new tunnel session, dialing now");
                    p.session.connect_now(now);
                    self.needs_pump = true;
                }
            }
        }
    }

    /// Sends what the tunnel queued while it had no session. boringtun keeps
    /// such packets until asked; asking after every authenticated datagram
    /// means the first packet that makes the session usable (a keepalive, a
    /// handshake response) also releases them, instead of the next retry.
    fn flush_queued(&mut self, slot: usize) {
        let mut out = [0u8; MAX_DATAGRAM + 64];
        for _ in 0..64 {
            let Some(m) = self.members.get_mut(slot) else {
                return;
            };
            let TunnelResult::Network(b) = m.tunnel.decapsulate(None, &[], &mut out) else {
                return;
            };
            m.stats.tx_packets += 1;
            let Some(to) = m.endpoint else {
                return;
            };
            let b: heapless::Vec<u8, MAX_DATAGRAM> =
                heapless::Vec::from_slice(b).unwrap_or_default();
            self.queue_datagram(to, &b);
        }
    }

    /// An IP packet from the LAN (the TUN device).
    pub fn handle_lan_packet(&mut self, now: Instant, packet: &[u8]) {
        self.stats.from_lan += 1;
        let info = match ip::parse(packet) {
            Ok(i) => i,
            Err(_) => {
                self.stats.bad_inner += 1;
                return;
            }
        };
        if self.overlay.has_addr(info.dst) {
            self.deliver_to_own_address(packet, &info);
            if self.needs_pump {
                self.pump(now);
            }
            return;
        }
        match self.route(packet, &info) {
            Some(Source::Peer(p)) => {
                self.send_to_member(p as usize, packet);
                if self.is_redundant_candidate(packet, &info) {
                    if let Some(second) = self.second_first_hop(&info, p) {
                        self.stats.redundant_copies += 1;
                        self.send_to_member(second as usize, packet);
                    }
                }
            }
            Some(Source::Local) => {
                // The kernel sent us a packet for our own LAN: a routing loop
                // on the host. Drop it rather than bounce it back.
                self.stats.no_route += 1;
            }
            None => {
                self.stats.no_route += 1;
                self.icmp_error(IcmpError::NetUnreachable, packet, &info);
            }
        }
        if self.needs_pump {
            self.pump(now);
        }
    }

    /// Redundant sending covers small UDP packets: game traffic.
    fn is_redundant_candidate(&self, packet: &[u8], info: &IpInfo) -> bool {
        self.config
            .redundancy_max_len
            .is_some_and(|max| info.total_len <= max as usize)
            && ip::udp_parts(packet, info).is_some()
    }

    /// The best path's first hop is `best`; the next-ranked path through
    /// another member, if any. Its advertiser did not route it through us (we
    /// would have been in its AS path), so the copy does not loop.
    fn second_first_hop(&self, info: &IpInfo, best: PeerId) -> Option<PeerId> {
        self.rib
            .lookup(info.dst)?
            .paths()
            .iter()
            .find_map(|p| match p.source {
                Source::Peer(q) if q != best => Some(q),
                _ => None,
            })
    }

    /// A BFD control packet from `slot`'s tunnel (RFC 5881: single hop, so it
    /// must come from the member's own address with TTL 255).
    fn handle_bfd(&mut self, now: Instant, slot: usize, info: &IpInfo, payload: &[u8]) {
        let from_member = self
            .members
            .get(slot)
            .is_some_and(|m| info.src == IpAddr::V4(m.config.overlay));
        let Some(b) = self.peers[slot].as_mut().and_then(|p| p.bfd.as_mut()) else {
            self.stats.bfd_discarded += 1;
            return;
        };
        if !from_member {
            self.stats.bfd_discarded += 1;
            return;
        }
        let handled =
            bfd::ControlPacket::parse(payload).and_then(|pkt| b.handle_packet(now, &pkt, info.ttl));
        let event = b.poll_event();
        match handled {
            Ok(()) => {
                if let Some(ev) = event {
                    self.on_bfd_event(now, slot, ev);
                }
            }
            Err(_) => self.stats.bfd_discarded += 1,
        }
        self.send_bfd(now, slot);
    }

    fn on_bfd_event(&mut self, now: Instant, slot: usize, ev: bfd::Event) {
        let member = slot as u8;
        let base = self.config.bfd_hold_down;
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        match ev {
            bfd::Event::Up => {
                push(
                    &mut self.events,
                    &mut self.stats,
                    NodeEvent::BfdUp { member },
                );
                // A peer that comes back as a new instance (it rebooted) is
                // not a flapping path: no hold-down, BGP starts at once (and
                // the flap count starts over).
                let peer_discr = p.bfd.as_ref().map_or(0, |b| b.peer_discriminator());
                let rebooted = peer_discr != p.down_discr;
                if rebooted {
                    p.flaps = 0;
                }
                if p.bgp_held {
                    let hold = if rebooted {
                        Duration::from_ticks(0)
                    } else {
                        let shift = p.flaps.saturating_sub(1).min(16);
                        Duration::from_ticks(base.as_ticks().saturating_mul(1 << shift))
                            .min(MAX_HOLD_DOWN)
                    };
                    p.bgp_start_at = Some(now + hold);
                }
            }
            bfd::Event::Down(diagnostic) => {
                push(
                    &mut self.events,
                    &mut self.stats,
                    NodeEvent::BfdDown { member, diagnostic },
                );
                p.flaps = p.flaps.saturating_add(1);
                p.down_discr = p.bfd.as_ref().map_or(0, |b| b.peer_discriminator());
                p.bgp_start_at = None;
                if !p.bgp_held {
                    p.bgp_held = true;
                    // The session (and with it every route through the
                    // member) goes now: the FIB moves in this same step.
                    p.session.bfd_down(now);
                    self.needs_pump = true;
                }
            }
        }
    }

    /// Sends whatever BFD control packet is due to `slot`, through its tunnel.
    fn send_bfd(&mut self, _now: Instant, slot: usize) {
        let Some(m) = self.members.get(slot) else {
            return;
        };
        let dst = m.config.overlay;
        // Over a tunnel not up yet, a BFD packet would only start a handshake
        // of its own; the side that initiates (the lower address) may.
        let quiet = self.config.overlay > dst && m.tunnel.since_handshake().is_none();
        let src = self.config.overlay;
        let Some(pkt) = self.peers[slot]
            .as_mut()
            .and_then(|p| p.bfd.as_mut())
            .and_then(|b| b.poll_transmit())
        else {
            return;
        };
        if quiet {
            return;
        }
        let mut payload = [0u8; bfd::PACKET_LEN];
        let mut out = [0u8; 64];
        if let Some(n) = pkt.emit(&mut payload).and_then(|n| {
            let sport = BFD_SOURCE_PORT_BASE + slot as u16;
            ip::build_udp4(src, dst, sport, bfd::BFD_PORT, 255, &payload[..n], &mut out)
        }) {
            self.send_to_member(slot, &out[..n]);
        }
    }

    /// BFD timers and transmissions, and the hold-down that restarts BGP.
    fn bfd_timers(&mut self, now: Instant) {
        for slot in 0..MAX_MEMBERS {
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            let event = p
                .bfd
                .as_mut()
                .filter(|b| b.poll_timeout().is_some_and(|t| t <= now))
                .and_then(|b| {
                    b.handle_timeout(now);
                    b.poll_event()
                });
            if let Some(ev) = event {
                self.on_bfd_event(now, slot, ev);
            }
            self.send_bfd(now, slot);
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            let bfd_up = p.bfd.as_ref().is_some_and(|b| b.state() == bfd::State::Up);
            if p.bgp_start_at.is_some_and(|t| t <= now) {
                p.bgp_start_at = None;
                if bfd_up {
                    p.bgp_held = false;
                    p.session.start(now);
                    self.needs_pump = true;
                }
            }
            // A session that has been stable a while forgets its flaps.
            if p.session
                .established_since()
                .is_some_and(|t| now.saturating_duration_since(t) > FLAP_MEMORY)
            {
                p.flaps = 0;
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + TIMER_TICK;
            self.tunnel_timers(now);
            self.stun_timers(now);
            self.punch_timers(now);
            self.pex_timers(now);
            self.needs_pump = true;
        }
        if now.saturating_duration_since(self.last_second) >= Duration::from_secs(1) {
            self.last_second = now;
            self.icmp_budget = ICMP_PER_SECOND;
            self.crypto.tick();
            self.trav.second();
        }
        // BFD runs every few milliseconds; it alone does not wake the engine.
        self.bfd_timers(now);
        for p in self.peers.iter_mut().flatten() {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
                self.needs_pump = true;
            }
        }
        if self.overlay.poll_at(now).is_some_and(|t| t <= now) {
            self.needs_pump = true;
        }
        if self.needs_pump {
            self.pump(now);
        }
    }

    fn tunnel_timers(&mut self, now: Instant) {
        let mut out = [0u8; MAX_DATAGRAM + 64];
        for slot in 0..MAX_MEMBERS {
            let Some(m) = self.members.get_mut(slot) else {
                continue;
            };
            m.rotate_candidates(now);
            if let TunnelResult::Network(b) = m.tunnel.update_timers(&mut out) {
                m.stats.tx_packets += 1;
                if let Some(to) = m.endpoint {
                    let b: heapless::Vec<u8, MAX_DATAGRAM> =
                        heapless::Vec::from_slice(b).unwrap_or_default();
                    self.queue_datagram(to, &b);
                }
                continue;
            }
            // Bring tunnels up on our own, not only when traffic needs them:
            // a restarted router is then heard from at once, and each side
            // learns the other's endpoint.
            let idle = m
                .tunnel
                .since_handshake()
                .is_none_or(|d| d > SESSION_LIFETIME);
            // The lower overlay address initiates (two simultaneous
            // initiations cancel each other out in WireGuard); the other side
            // waits a moment first, in case only it can reach.
            let first_due = if self.config.overlay < m.config.overlay {
                Duration::from_ticks(0)
            } else {
                RESPONDER_GRACE
            };
            let started = self.peers[slot].as_ref().map_or(now, |p| p.started_at);
            let due = now.saturating_duration_since(started) >= first_due
                && m.last_initiation
                    .is_none_or(|t| now.saturating_duration_since(t) >= crate::wg::REKEY_TIMEOUT);
            if let (true, true, Some(to)) = (idle, due, m.endpoint) {
                m.last_initiation = Some(now);
                if let TunnelResult::Network(b) = m.tunnel.start_handshake(&mut out) {
                    m.stats.handshakes_sent += 1;
                    let b: heapless::Vec<u8, MAX_DATAGRAM> =
                        heapless::Vec::from_slice(b).unwrap_or_default();
                    self.queue_datagram(to, &b);
                }
            }
        }
        // Latency feeds the decision process (as interior cost), with
        // hysteresis: a new measurement replaces the one in use only when it
        // differs clearly, so jitter cannot flap the best path.
        for slot in 0..MAX_MEMBERS {
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            let measured = m.tunnel.rtt().map(|d| d.as_micros() as u32);
            let adopt = match (p.latency, measured) {
                (None, Some(_)) => true,
                (Some(old), Some(new)) => old.abs_diff(new) > LATENCY_HYSTERESIS_US.max(old / 4),
                _ => false,
            };
            if adopt {
                p.latency = measured;
                let info = PeerInfo {
                    asn: m.config.asn,
                    router_id: m.config.overlay,
                    address: IpAddr::V4(m.config.overlay),
                    ebgp: true,
                    latency: measured,
                };
                self.rib.set_peer(slot as u8, info);
            }
        }
    }

    // ---- outputs ----

    /// The next datagram for the underlay.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmit.pop_front()
    }

    /// The next IP packet for the TUN device.
    #[must_use]
    pub fn poll_lan_packet(&mut self) -> Option<Packet> {
        self.lan_out.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next, and why.
    #[must_use]
    pub fn poll_timeout(&mut self, now: Instant) -> Option<(Instant, WakeReason)> {
        let mut best: Option<(Instant, WakeReason)> = None;
        let mut consider = |t: Option<Instant>, why| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, why));
                }
            }
        };
        if !self.members.is_empty() {
            consider(Some(self.next_tick), WakeReason::TunnelTimers);
        }
        for p in self.peers.iter().flatten() {
            consider(p.session.poll_timeout(), WakeReason::Bgp);
            consider(
                p.bfd.as_ref().and_then(|b| b.poll_timeout()),
                WakeReason::Bfd,
            );
            consider(p.bgp_start_at, WakeReason::Bfd);
        }
        consider(self.overlay.poll_at(now), WakeReason::Overlay);
        best
    }

    // ---- forwarding ----

    fn queue_datagram(&mut self, to: SocketAddr, bytes: &[u8]) {
        let Ok(bytes) = heapless::Vec::from_slice(bytes) else {
            return;
        };
        let d = Datagram {
            to,
            bytes,
            from_alt_port: false,
        };
        if self.transmit.push_back(d).is_err() {
            self.stats.queue_full += 1;
        }
    }

    fn queue_lan(&mut self, packet: &[u8]) {
        let queued = Packet::from_slice(packet)
            .ok()
            .is_some_and(|p| self.lan_out.push_back(p).is_ok());
        if queued {
            self.stats.to_lan += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }

    /// The source of a packet from a tunnel must lie in some member's home,
    /// or be ours (a reply to us).
    fn source_allowed(&self, src: IpAddr) -> bool {
        self.overlay.has_addr(src)
            || self.config.lan_prefixes.iter().any(|p| p.contains(src))
            || self.members.iter().any(|(_, m)| m.config.owns_address(src))
    }

    fn route(&self, packet: &[u8], info: &IpInfo) -> Option<Source> {
        let entry = self.rib.lookup(info.dst)?;
        let set = entry.multipath();
        match set.len() {
            0 => None,
            1 => Some(set[0].source),
            n => Some(set[(ip::flow_hash(packet, info) as usize) % n].source),
        }
    }

    fn forward_from_member(&mut self, now: Instant, slot: usize, packet: &mut [u8]) {
        let info = match ip::parse(packet) {
            Ok(i) => i,
            Err(_) => {
                self.stats.bad_inner += 1;
                return;
            }
        };
        let packet = &mut packet[..info.total_len];
        if !self.source_allowed(info.src) {
            self.stats.spoofed += 1;
            return;
        }
        if Self::martian_destination(&info) {
            // Never relayed, never given to the kernel: the relay's loopback,
            // broadcast and the like are not the mesh's business.
            self.stats.relay_refused += 1;
            return;
        }
        if self.overlay.has_addr(info.dst) {
            const PEX: u16 = crate::pex::PEX_PORT;
            match ip::udp_parts(packet, &info) {
                Some((_, bfd::BFD_PORT, payload)) => self.handle_bfd(now, slot, &info, payload),
                Some((PEX, PEX, payload)) => self.handle_pex(now, info.src, payload),
                _ if self.config.overlay_in_kernel && !is_bgp(packet, &info) => {
                    self.queue_lan(packet)
                }
                _ => self.deliver_to_own_address(packet, &info),
            }
            return;
        }
        match self.route(packet, &info) {
            Some(Source::Local) => {
                // The egress router: of two redundant copies, the first wins.
                if self.is_redundant_candidate(packet, &info)
                    && !self.dedup.first_sighting(now, packet, &info)
                {
                    self.stats.duplicates_dropped += 1;
                    return;
                }
                self.queue_lan(packet)
            }
            Some(Source::Peer(p)) => {
                // Transit: we are a router on the path. The destination is
                // a member's announced prefix (nothing else is routed).
                if !self.relay_allowed(now, slot, &info, packet.len()) {
                    return;
                }
                if ip::decrement_ttl(packet).is_err() {
                    self.stats.ttl_expired += 1;
                    self.icmp_error(IcmpError::TimeExceeded, packet, &info);
                    return;
                }
                self.stats.forwarded += 1;
                self.send_to_member(p as usize, packet);
            }
            None => {
                self.stats.no_route += 1;
                self.icmp_error(IcmpError::NetUnreachable, packet, &info);
            }
        }
    }

    fn send_to_member(&mut self, slot: usize, packet: &[u8]) {
        let mut out = [0u8; MAX_DATAGRAM + 64];
        let Some(m) = self.members.get_mut(slot) else {
            self.stats.no_route += 1;
            return;
        };
        match m.tunnel.encapsulate(packet, &mut out) {
            TunnelResult::Network(b) => {
                let Some(to) = m.endpoint else {
                    m.stats.no_endpoint += 1;
                    self.stats.no_endpoint += 1;
                    return;
                };
                m.stats.tx_packets += 1;
                m.stats.tx_bytes += packet.len() as u64;
                let b: heapless::Vec<u8, MAX_DATAGRAM> =
                    heapless::Vec::from_slice(b).unwrap_or_default();
                self.queue_datagram(to, &b);
            }
            TunnelResult::Error(_) => self.stats.encrypt_errors += 1,
            _ => {}
        }
    }

    /// Sends a packet this node originates (ICMP errors, overlay traffic that
    /// is not BGP): looked up like any other.
    fn originate(&mut self, packet: &[u8]) {
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        match self.route(packet, &info) {
            Some(Source::Local) => self.queue_lan(packet),
            Some(Source::Peer(p)) => self.send_to_member(p as usize, packet),
            None => self.stats.no_route += 1,
        }
    }

    fn icmp_error(&mut self, kind: IcmpError, packet: &[u8], info: &IpInfo) {
        if !ip::may_answer_with_error(packet, info) {
            return;
        }
        if self.icmp_budget == 0 {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        self.icmp_budget -= 1;
        let from = match info.src {
            IpAddr::V4(_) => IpAddr::V4(self.config.overlay),
            IpAddr::V6(_) => match self.config.overlay_v6 {
                Some(a) => IpAddr::V6(a),
                None => return,
            },
        };
        let mut out = [0u8; 1280];
        if let Some(n) = ip::build_icmp_error(kind, from, packet, info, &mut out) {
            self.stats.icmp_sent += 1;
            self.originate(&out[..n]);
        }
    }

    /// A packet for our overlay address, to the node's own stack.
    fn deliver_to_own_address(&mut self, packet: &[u8], info: &IpInfo) {
        if self.config.overlay_in_kernel && !is_bgp(packet, info) {
            // The kernel owns the address for everything but BGP; it does not
            // route its own address into the TUN, so this is not for us.
            self.stats.no_route += 1;
            return;
        }
        self.stats.to_overlay += 1;
        self.overlay.deliver(packet);
        self.needs_pump = true;
    }

    /// Packets the overlay stack sends. BGP (and BFD) to a member go through
    /// that member's own tunnel and nowhere else: one session per tunnel.
    fn route_overlay_packet(&mut self, packet: &[u8]) {
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        if is_bgp(packet, &info) {
            if let Some(slot) = self.members.by_overlay(info.dst) {
                self.send_to_member(slot, packet);
            }
            return;
        }
        self.originate(packet);
    }

    // ---- the engine: sockets ↔ sessions ↔ RIB, until quiet ----

    fn pump(&mut self, now: Instant) {
        self.needs_pump = false;
        for _ in 0..32 {
            self.stats.pump_rounds += 1;
            let mut busy = self.overlay.poll(now);
            busy |= self.accept_connections(now);
            for slot in 0..MAX_MEMBERS {
                if self.peers[slot].is_some() {
                    busy |= self.drive_peer(now, slot);
                }
            }
            while let Some(p) = self.overlay.pop_outbound() {
                busy = true;
                self.route_overlay_packet(&p);
            }
            if !busy {
                break;
            }
        }
        self.sync_routes();
    }

    fn accept_connections(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Some((h, remote)) = self.overlay.accepted() {
            busy = true;
            let slot = self.members.by_overlay(remote);
            let accepted = slot.and_then(|s| {
                let p = self.peers[s].as_mut()?;
                if p.conns[ConnId::Incoming as usize].is_some() {
                    return None;
                }
                p.session.handle_accepted(now).then_some(p)
            });
            log::debug!(
                "bgp: accepted a connection from {remote}: {}",
                accepted.is_some()
            );
            match accepted {
                Some(p) => {
                    p.conns[ConnId::Incoming as usize] = Some(Conn {
                        socket: h,
                        reported: true,
                    });
                    self.overlay.adopt(h);
                }
                None => self.overlay.reject(h),
            }
        }
        busy
    }

    /// Moves bytes between one member's session and its sockets, and acts on
    /// the session's outputs. Returns whether anything happened.
    fn drive_peer(&mut self, now: Instant, slot: usize) -> bool {
        let mut busy = false;
        let overlay_addr = match self.members.get(slot) {
            Some(m) => IpAddr::V4(m.config.overlay),
            None => return false,
        };
        let Some(peer) = self.peers[slot].as_mut() else {
            return false;
        };
        // Transport progress and received bytes.
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(mut conn) = peer.conns[id as usize] else {
                continue;
            };
            let sock = self.overlay.socket(conn.socket);
            use smoltcp::socket::tcp::State as S;
            let state = sock.state();
            if !conn.reported {
                match state {
                    S::Established => {
                        log::debug!("bgp: peer {slot}: connected");
                        conn.reported = true;
                        peer.conns[id as usize] = Some(conn);
                        peer.session.handle_connected(now);
                        busy = true;
                    }
                    S::Closed | S::TimeWait | S::Closing | S::CloseWait | S::LastAck => {
                        peer.conns[id as usize] = None;
                        self.overlay.abort(conn.socket);
                        peer.session.handle_transport_closed(now, id);
                        busy = true;
                    }
                    _ => {}
                }
                continue;
            }
            let mut sink = RibImport {
                rib: &mut self.rib,
                peer: slot as u8,
                filter: Membership {
                    members: &self.members,
                    own_asn: self.config.asn,
                    refused: &mut self.stats.hijacks_refused,
                },
                stats: &mut peer.import,
            };
            let sock = self.overlay.socket(conn.socket);
            while sock.can_recv() {
                let session = &mut peer.session;
                let r = sock.recv(|buf| {
                    session.handle_data(now, id, buf, &mut sink);
                    (buf.len(), buf.len())
                });
                match r {
                    Ok(n) if n > 0 => busy = true,
                    _ => break,
                }
            }
            if !sock.may_recv()
                && !matches!(sock.state(), S::Established | S::FinWait1 | S::FinWait2)
            {
                // The peer closed (or reset) the connection.
                peer.conns[id as usize] = None;
                self.overlay.abort(conn.socket);
                peer.session.handle_transport_closed(now, id);
                busy = true;
            }
        }
        // Session events: transport requests and what changed.
        while let Some(ev) = peer.session.poll_event() {
            busy = true;
            let member = slot as u8;
            match ev {
                SessionEvent::Connect => {
                    log::debug!("bgp: peer {slot}: connect to {overlay_addr}");
                    match self.overlay.connect(overlay_addr) {
                        Ok(h) => {
                            peer.conns[ConnId::Outgoing as usize] = Some(Conn {
                                socket: h,
                                reported: false,
                            });
                        }
                        Err(_) => peer.session.handle_transport_closed(now, ConnId::Outgoing),
                    }
                }
                SessionEvent::Close(id) => {
                    log::debug!("bgp: peer {slot}: close {id:?}");
                    if let Some(conn) = peer.conns[id as usize].take() {
                        let sock = self.overlay.socket(conn.socket);
                        let session = &mut peer.session;
                        let _ = sock.send(|buf| {
                            let n = session.poll_transmit(id, buf);
                            (n, n)
                        });
                        self.overlay.close(conn.socket);
                    }
                    peer.session.handle_transport_closed(now, id);
                }
                SessionEvent::Established => {
                    self.rib.peer_up(member);
                    peer.end_of_rib_sent = false;
                    push(
                        &mut self.events,
                        &mut self.stats,
                        NodeEvent::SessionUp { member },
                    );
                }
                SessionEvent::Down(reason) => {
                    self.rib.peer_down(member);
                    push(
                        &mut self.events,
                        &mut self.stats,
                        NodeEvent::SessionDown { member, reason },
                    );
                }
                SessionEvent::RouteRefresh(_) => self.rib.refresh(member),
                SessionEvent::EndOfRib(_) => {}
            }
        }
        // Export what changed.
        if peer.session.is_established() {
            let policy = ExportPolicy {
                local_asn: self.config.asn,
                next_hop_v4: Some(self.config.overlay),
                next_hop_v6: self.config.overlay_v6,
            };
            let progress = export(&mut peer.session, &mut self.rib, slot as u8, &policy);
            // Export blocked on a full send buffer resumes on the next input
            // (the peer's ACK): every input runs this again.
            busy |= progress.updates > 0;
            if progress.done && !peer.end_of_rib_sent {
                let _ = peer.session.send_end_of_rib(Family::Ipv4);
                if self.config.overlay_v6.is_some() {
                    let _ = peer.session.send_end_of_rib(Family::Ipv6);
                }
                peer.end_of_rib_sent = true;
            }
        }
        // Bytes out.
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(conn) = peer.conns[id as usize] else {
                continue;
            };
            if !conn.reported {
                continue;
            }
            if peer.session.queued_tx(id) == 0 {
                continue;
            }
            let sock = self.overlay.socket(conn.socket);
            let session = &mut peer.session;
            if let Ok(n) = sock.send(|buf| {
                let n = session.poll_transmit(id, buf);
                (n, n)
            }) {
                if n > 0 {
                    busy = true;
                }
            }
        }
        busy
    }

    /// Reports Loc-RIB changes of other homes' prefixes as events.
    fn sync_routes(&mut self) {
        let version = self.rib.stats.best_changes;
        if version == self.rib_version {
            return;
        }
        self.rib_version = version;
        let mut now_installed: heapless::Vec<(Prefix, u8), 512> = heapless::Vec::new();
        for e in self.rib.loc_rib() {
            if let Some(Source::Peer(p)) = e.best().map(|b| b.source) {
                let _ = now_installed.push((e.prefix, p));
            }
        }
        // Both lists are in prefix order (the RIB is sorted): merge.
        let (mut i, mut j) = (0, 0);
        let old = core::mem::take(&mut self.installed);
        while i < old.len() || j < now_installed.len() {
            let ev = match (old.get(i), now_installed.get(j)) {
                (Some(&(op, ov)), Some(&(np, nv))) if op == np => {
                    i += 1;
                    j += 1;
                    (ov != nv).then_some(NodeEvent::PathChanged {
                        prefix: np,
                        from: ov,
                        to: nv,
                    })
                }
                (Some(&(op, _)), Some(&(np, _))) if op < np => {
                    i += 1;
                    Some(NodeEvent::RouteRemoved { prefix: op })
                }
                (Some(_), Some(&(np, nv))) => {
                    j += 1;
                    Some(NodeEvent::RouteAdded {
                        prefix: np,
                        via: nv,
                    })
                }
                (Some(&(op, _)), None) => {
                    i += 1;
                    Some(NodeEvent::RouteRemoved { prefix: op })
                }
                (None, Some(&(np, nv))) => {
                    j += 1;
                    Some(NodeEvent::RouteAdded {
                        prefix: np,
                        via: nv,
                    })
                }
                (None, None) => None,
            };
            if let Some(ev) = ev {
                // A member newly reachable hears our endpoints at once.
                if matches!(ev, NodeEvent::RouteAdded { .. }) {
                    self.trav.pex_dirty = true;
                }
                push(&mut self.events, &mut self.stats, ev);
            }
        }
        self.installed = now_installed;
    }

    /// The RIB entry for `prefix` with each path's member name, for status.
    pub fn routes(&self) -> impl Iterator<Item = &crate::rib::Entry> + '_ {
        self.rib.loc_rib()
    }

    /// A member's tunnel, for status and tests.
    pub fn member(&self, slot: u8) -> Option<&Member<C::Tunnel>> {
        self.members.get(slot as usize)
    }

    /// Whether `prefix` is one this node originates.
    pub fn is_local(&self, prefix: &Prefix) -> bool {
        self.rib
            .entry(prefix)
            .and_then(|e| e.best())
            .is_some_and(|p| p.source == Source::Local)
    }
}

/// Recently delivered small UDP packets, keyed by what identifies a packet
/// across paths (addresses, protocol, IPv4 identification, and the start of
/// the UDP datagram; never the TTL or checksum, which differ per path).
#[derive(Debug)]
struct Dedup {
    slots: [(u64, Instant); DEDUP_SLOTS],
}

const DEDUP_SLOTS: usize = 4096;
const DEDUP_PROBE: usize = 8;

impl Dedup {
    fn new() -> Dedup {
        Dedup {
            slots: [(0, Instant::from_ticks(0)); DEDUP_SLOTS],
        }
    }

    fn key(packet: &[u8], info: &IpInfo) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |b: &[u8]| {
            for x in b {
                h ^= *x as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        match (info.src, info.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                feed(&s.octets());
                feed(&d.octets());
                feed(packet.get(4..6).unwrap_or(&[])); // identification
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                feed(&s.octets());
                feed(&d.octets());
            }
            _ => {}
        }
        feed(&[info.protocol]);
        let end = info.total_len.min(info.header_len + 8 + 64);
        feed(packet.get(info.header_len..end).unwrap_or(&[]));
        h | 1 // never the empty-slot key
    }

    /// Records the packet; false when it was seen within the window.
    fn first_sighting(&mut self, now: Instant, packet: &[u8], info: &IpInfo) -> bool {
        let key = Self::key(packet, info);
        let start = (key as usize) % DEDUP_SLOTS;
        let mut free = None;
        for i in 0..DEDUP_PROBE {
            let slot = (start + i) % DEDUP_SLOTS;
            let (k, at) = self.slots[slot];
            let live = k != 0 && now.saturating_duration_since(at) < DEDUP_WINDOW;
            if live && k == key {
                return false;
            }
            if !live && free.is_none() {
                free = Some(slot);
            }
        }
        // Full neighbourhood: overwrite the first probe position.
        self.slots[free.unwrap_or(start)] = (key, now);
        true
    }
}

/// TCP to or from the BGP port.
fn is_bgp(packet: &[u8], info: &IpInfo) -> bool {
    let ports = packet.get(info.header_len..info.header_len + 4);
    info.protocol == ip::PROTO_TCP
        && !info.later_fragment
        && ports.is_some_and(|p| {
            u16::from_be_bytes([p[0], p[1]]) == crate::overlay::BGP_PORT
                || u16::from_be_bytes([p[2], p[3]]) == crate::overlay::BGP_PORT
        })
}

fn push(q: &mut heapless::Deque<NodeEvent, EVENT_QUEUE>, stats: &mut NodeStats, e: NodeEvent) {
    if q.push_back(e).is_err() {
        stats.events_dropped += 1;
    }
}

/// Inner MTU for the TUN device: what fits a 1500-octet underlay.
pub const TUN_MTU: usize = INNER_MTU;
