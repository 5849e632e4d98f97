//! One mesh router, as a pure state machine (see the crate docs for the driver
//! contract).
//!
//! Inputs: [`Node::handle_udp`] (the mesh port), [`Node::handle_lan_packet`]
//! (the TUN device), [`Node::handle_timeout`], and control calls
//! ([`Node::reconfigure`], [`Node::add_member`], ...).
//! Outputs: [`Node::poll_transmit`], [`Node::poll_lan_packet`],
//! [`Node::poll_event`], [`Node::poll_timeout`].
//!
//! This module is the composition root. It owns the output queues and the
//! member table ([`slots`]: one slot per member holding its part of every
//! child), and drains the children, each with its own `handle_*`, `poll_*`
//! and timers:
//!
//! | room | what |
//! |---|---|
//! | [`forward`] | where a packet goes: a [`Verdict`], no side effects |
//! | [`tunnel`] | WireGuard datagrams in and out, bringing tunnels up |
//! | [`supervision`] | BFD per tunnel, and the hold-down it puts on BGP |
//! | [`engine`] | the BGP sessions over the overlay stack, and the RIB |
//! | [`stun`] | the STUN responder and client on the mesh port |
//! | [`exchange`] | peer exchange inside the mesh, and hole punching |
//! | [`relay`] | the per-member cap on transit |
//! | [`config`] | settings, defaults, [`Node::reconfigure`] |
//! | [`output`] | the rings datagrams and packets are built in |
//!
//! Where to add: a BGP attribute → [`crate::bgp::attr`] and
//! [`crate::bgp::update`] (codec), [`crate::rib`] (decision), and the import
//! policy in [`engine`]; a new kind of packet on the mesh port → the
//! dispatch in [`Node::handle_udp`] and a child like [`stun`]; a new
//! per-member policy → a field of [`slots::Slot`] with its child, like
//! [`relay`] or [`supervision`]; a new kind of control traffic inside the
//! tunnels → [`forward::Control`].
//!
//! Routes a member may originate are limited to what its membership entry
//! allows, so a misconfigured or hostile friend cannot take another home's LAN.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embassy_time::{Duration, Instant};

mod config;
mod engine;
mod exchange;
mod forward;
mod output;
mod relay;
mod slots;
mod status;
mod stun;
mod supervision;
mod tunnel;

#[cfg(all(test, feature = "std"))]
mod tests;

pub use config::{
    Changes, MemberChange, NodeConfig, DEFAULT_BFD, DEFAULT_BFD_HOLD_DOWN, DEFAULT_CONNECT_RETRY,
    DEFAULT_HOLD_TIME, DEFAULT_KEEPALIVE, DEFAULT_MAX_PATHS, DEFAULT_REDUNDANCY_MAX_LEN,
    DEFAULT_RELAY_RATE_KBIT, MAX_LAN_PREFIXES,
};
pub use engine::NodeRib;
pub use exchange::{PEX_INTERVAL, PUNCH_BACKOFF_MAX, PUNCH_BACKOFF_MIN, PUNCH_WINDOW};
pub use forward::{Control, DropReason, Verdict};
pub use output::{Transmit, EVENT_QUEUE, LAN_QUEUE, TRANSMIT_QUEUE};
pub use relay::bytes_per_second;
pub use slots::DIRECT_FRESH;
pub use status::{BfdStatus, MemberStatus, TraversalStatus};
pub use stun::{STUN_ANSWERS_PER_SECOND, STUN_REFRESH, STUN_RETRY};
pub use supervision::{FLAP_MEMORY, MAX_HOLD_DOWN};

use crate::bfd;
use crate::bgp::error::DownReason;
use crate::ip::{self, IcmpError, IpInfo};
use crate::nat::NatReport;
use crate::overlay::OverlayStorage;
use crate::pex::{self, PEX_PORT};
use crate::prefix::Prefix;
use crate::rib::Source;
use crate::wg::{
    Crypto, Identified, Key, Member, MemberConfig, MemberError, Tunnel, INNER_MTU, MAX_DATAGRAM,
    MAX_MEMBERS,
};

use engine::{peer_info, session_config, BgpPeer, Engine, Local};
use exchange::{Exchange, Facts, Punch, Step};
use forward::{Dedup, Router};
use output::{Events, LanRing, TxMeta, TxRing};
use slots::{Slot, Slots};
use supervision::Supervision;
use tunnel::{Upkeep, TIMER_TICK};

/// BFD source ports (RFC 5881 §4: 49152-65535), one per member slot.
const BFD_SOURCE_PORT_BASE: u16 = 49152;
/// ICMP errors allowed per second (RFC 1812 §4.3.2.8 asks for a limit).
const ICMP_PER_SECOND: u32 = 50;

/// The lower overlay address of a pair leads: it dials the BGP connection
/// (one TCP connection per pair, never a collision: RFC 4271 §6.8 resolution
/// costs a round trip, and two sides backing off from each other's collisions
/// can keep missing each other), initiates the first WireGuard handshake (two
/// simultaneous initiations cancel each other out), sends BFD before the
/// tunnel is up, and arranges hole punches.
pub fn leads(own: Ipv4Addr, member: Ipv4Addr) -> bool {
    own < member
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
    /// Binding requests not answered (over [`STUN_ANSWERS_PER_SECOND`]).
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
    /// Rounds of the BGP engine (sockets ↔ sessions ↔ RIB); diagnostics.
    pub pump_rounds: u64,
}

/// Why [`Node::poll_timeout`] wants a wake-up: the child and its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// boringtun's timers (keepalive, rekey, handshake retransmission) and
    /// the tunnels' upkeep: boringtun offers no deadline of its own and asks
    /// to be polled every [`TIMER_TICK`] while there are members.
    WireGuard,
    /// A member's BFD session or its hold-down.
    Supervision {
        member: u8,
        timer: supervision::Timer,
    },
    /// A BGP session timer, or the overlay stack.
    Bgp(engine::Timer),
    /// A STUN request or filtering test step.
    Stun(stun::Timer),
    /// Peer exchange or a member's hole punch.
    Exchange(exchange::Timer),
}

pub use engine::Timer as BgpTimer;
pub use exchange::Timer as ExchangeTimer;
pub use stun::Timer as StunTimer;
pub use supervision::Timer as SupervisionTimer;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Identifiers drawn from the seed: STUN transaction ids, punch tokens.
#[derive(Debug)]
pub(crate) struct Ids {
    seed: u64,
    counter: u64,
}

impl Ids {
    fn new(seed: u64) -> Ids {
        Ids { seed, counter: 0 }
    }

    fn state(&mut self) -> u64 {
        let x = self.seed ^ self.counter.rotate_left(32);
        self.counter += 1;
        x
    }

    pub fn transaction_id(&mut self) -> crate::stun::TransactionId {
        let mut x = self.state();
        let a = splitmix(&mut x).to_be_bytes();
        let b = splitmix(&mut x).to_be_bytes();
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&a);
        t[8..].copy_from_slice(&b[..4]);
        crate::stun::TransactionId(t)
    }

    pub fn token(&mut self) -> u32 {
        let mut x = self.state();
        (splitmix(&mut x) >> 32) as u32
    }
}

/// One mesh router.
pub struct Node<'a, C: Crypto> {
    config: NodeConfig,
    crypto: C,
    slots: Slots<C::Tunnel>,
    engine: Engine<'a>,
    stun: stun::Stun,
    exchange: Exchange,
    dedup: Dedup,
    ids: Ids,
    tx: TxRing,
    lan: LanRing,
    events: Events,
    stats: NodeStats,
    /// boringtun's next tick.
    wg_tick: Instant,
    /// The start of the current second, for per-second budgets.
    second: Instant,
    icmp_budget: u32,
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
        let engine = Engine::new(storage, &config, now);
        Node {
            stun: stun::Stun::new(config.alt_port),
            exchange: Exchange::new(now),
            ids: Ids::new(config.seed),
            config,
            crypto,
            slots: Slots::new(),
            engine,
            dedup: Dedup::new(),
            tx: TxRing::new(),
            lan: LanRing::new(),
            events: Events::new(),
            stats: NodeStats::default(),
            wg_tick: now,
            second: now,
            icmp_budget: ICMP_PER_SECOND,
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
        &self.engine.rib
    }
    pub fn overlay_stats(&self) -> crate::overlay::OverlayStats {
        self.engine.overlay_stats()
    }

    pub fn member_name(&self, slot: u8) -> Option<&str> {
        self.slots
            .get(slot as usize)
            .map(|s| s.wg.config.name.as_str())
    }

    pub fn member_slot(&self, name: &str) -> Option<u8> {
        self.slots
            .iter()
            .find(|(_, s)| s.wg.config.name.as_str() == name)
            .map(|(i, _)| i as u8)
    }

    /// A member's WireGuard peer, for status and tests.
    pub fn member(&self, slot: u8) -> Option<&Member<C::Tunnel>> {
        self.slots.get(slot as usize).map(|s| &s.wg)
    }

    /// The member that carries traffic to `addr` now (the first hop).
    pub fn next_hop(&self, addr: IpAddr) -> Option<Source> {
        self.engine.rib.lookup(addr)?.best().map(|p| p.source)
    }

    /// The Loc-RIB, in prefix order.
    pub fn routes(&self) -> impl Iterator<Item = &crate::rib::Entry> + '_ {
        self.engine.rib.loc_rib()
    }

    /// Whether `prefix` is one this node originates.
    pub fn is_local(&self, prefix: &Prefix) -> bool {
        self.engine
            .rib
            .entry(prefix)
            .and_then(|e| e.best())
            .is_some_and(|p| p.source == Source::Local)
    }

    /// What this node knows about its NAT.
    pub fn nat_report(&self) -> NatReport {
        self.stun.report()
    }

    /// Where a packet from the LAN would go now (the forwarding decision,
    /// without carrying it out).
    pub fn verdict_from_lan(&self, packet: &[u8]) -> Verdict {
        match ip::parse(packet) {
            Ok(info) => self.router().for_lan_packet(packet, &info),
            Err(_) => Verdict::Drop(DropReason::BadHeader),
        }
    }

    fn router(&self) -> Router<'_, C::Tunnel> {
        Router {
            rib: &self.engine.rib,
            slots: &self.slots,
            config: &self.config,
        }
    }

    /// Whether our side dials the BGP connection to a member: when we lead
    /// and know where it is.
    fn dials(&self, wg: &Member<C::Tunnel>) -> bool {
        dials(self.config.overlay, wg)
    }

    // ---- control ----

    /// Adds a member and starts its BGP session.
    pub fn add_member(&mut self, now: Instant, config: MemberConfig) -> Result<u8, MemberError> {
        let config = self.config.member_defaults(config);
        let (slot, index) = self.slots.vacancy(&config)?;
        let tunnel = self
            .crypto
            .tunnel(&config.public_key, index, config.keepalive);
        let wg = Member::new(config, tunnel, index);
        let passive = !self.dials(&wg);
        let session = session_config(&self.config, &wg.config, passive);
        self.engine.add_peer(slot as u8, &wg.config);
        let bfd = Supervision::new(
            now,
            self.config.bfd_for(&wg.config),
            self.config.bfd_hold_down,
            self.config.seed,
            slot,
        );
        self.slots.fill(
            slot,
            Slot {
                wg,
                upkeep: Upkeep::new(now),
                bfd,
                bgp: BgpPeer::new(now, session),
                stun: stun::Probe::new(now),
                punch: Punch::new(now),
                relay: relay::Bucket::default(),
            },
        );
        self.engine.wake();
        self.pump(now);
        Ok(slot as u8)
    }

    /// Removes a member: its session is stopped with a Cease and its routes go.
    pub fn remove_member(&mut self, now: Instant, slot: u8) -> bool {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        s.bgp.session.stop(now, "member removed");
        self.engine.wake();
        // The Cease goes out through the member's tunnel while it exists.
        self.pump(now);
        let Some(mut gone) = self.slots.remove(slot as usize) else {
            return false;
        };
        self.engine.remove_peer(slot, &mut gone.bgp);
        if let Some(e) = gone.wg.endpoint {
            self.stun.forget(e);
        }
        self.pump(now);
        true
    }

    /// Applies a changed member entry without dropping what did not change:
    /// endpoints and keepalive apply in place; BGP settings reset the session
    /// only when they change what the OPEN carries; BFD takes new timers.
    pub fn update_member(&mut self, now: Instant, slot: u8, config: MemberConfig) -> bool {
        let config = self.config.member_defaults(config);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        if s.wg.config.public_key != config.public_key {
            return false; // a new key is a new member
        }
        let allowed_changed =
            s.wg.config.prefixes != config.prefixes || s.wg.config.asn != config.asn;
        s.wg.config = config;
        let passive = !dials(self.config.overlay, &s.wg);
        let sc = session_config(&self.config, &s.wg.config, passive);
        s.bgp.session.reconfigure(now, sc);
        s.bfd.reconfigure(
            now,
            self.config.bfd_for(&s.wg.config),
            self.config.bfd_hold_down,
        );
        if allowed_changed {
            // What the member may originate changed: ask for its routes again
            // so the import filter sees them anew.
            self.engine.rib.peer_down(slot);
            let _ = s
                .bgp
                .session
                .send_route_refresh(crate::prefix::Family::Ipv4);
        }
        self.supervision_outputs(now, slot as usize);
        self.engine.wake();
        self.pump(now);
        true
    }

    /// Stops every session with a Cease (Administrative Shutdown).
    pub fn shutdown(&mut self, now: Instant) {
        for (_, s) in self.slots.iter_mut() {
            s.bgp.session.stop(now, "meshd shutting down");
        }
        self.engine.wake();
        self.pump(now);
    }

    /// The host's own addresses (the driver reads them from the system): a
    /// STUN answer showing one of them means there is no NAT.
    pub fn set_local_addresses(&mut self, addrs: &[IpAddr]) {
        self.stun.set_local_addresses(addrs);
    }

    /// Whether a carrier-grade NAT is on the path (the driver probes hops).
    pub fn set_cgnat(&mut self, cgnat: Option<bool>) {
        self.stun.set_cgnat(cgnat);
    }

    // ---- inputs ----

    /// A datagram from the mesh port.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.udp_in += 1;
        if bytes.len() > MAX_DATAGRAM {
            self.stats.udp_oversized += 1;
            return;
        }
        self.new_second(now);
        if crate::stun::is_stun(bytes) {
            self.stun
                .handle_datagram(now, from, bytes, &mut self.slots, &mut self.stats);
            self.stun_outputs(now);
            return;
        }
        if let Some(slot) = self.identify(from, bytes) {
            self.receive(now, slot, from, bytes);
        }
        self.finish(now);
    }

    /// Which member a WireGuard datagram is for.
    fn identify(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<usize> {
        let mut reply = [0u8; 148];
        match self.crypto.identify(from, bytes, &mut reply) {
            Identified::CookieReply(c) => {
                self.stats.cookie_replies += 1;
                self.queue_datagram(from, c);
                None
            }
            Identified::Drop(_) => {
                self.stats.udp_invalid += 1;
                None
            }
            Identified::Initiation(key) => {
                let slot = self.slots.by_key(&key);
                if slot.is_none() {
                    self.stats.unknown_key += 1;
                }
                slot
            }
            Identified::Index(i) => {
                let slot = self.slots.by_index(i);
                if slot.is_none() {
                    self.stats.udp_invalid += 1;
                }
                slot
            }
        }
    }

    /// A WireGuard datagram for member `slot`: decrypted into the LAN ring's
    /// spare slot, where forwarding finds it.
    fn receive(&mut self, now: Instant, slot: usize, from: SocketAddr, bytes: &[u8]) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let r = s
            .upkeep
            .receive(now, &mut s.wg, from, bytes, self.lan.spare());
        if let Some((to, len)) = r.answer {
            if !self
                .tx
                .push(&self.lan.spare_ref()[..len], TxMeta::to(to, len))
            {
                self.stats.queue_full += 1;
            }
        }
        if r.tunnel_up {
            s.punch.poke(now);
            self.exchange.announce_now(now);
            self.event(NodeEvent::TunnelUp { member: slot as u8 });
        }
        if r.endpoint_changed {
            self.activate_session(now, slot);
        }
        if let Some(len) = r.inner {
            self.forward_from_member(now, slot, len);
        }
        if r.flush {
            if let Some(s) = self.slots.get_mut(slot) {
                s.upkeep.flush(&mut s.wg, &mut self.tx, &mut self.stats);
            }
        }
        if r.new_session {
            self.redial(now, slot);
        }
    }

    /// A member we could not reach has contacted us: now we can dial it, if
    /// dialing is our side's job.
    fn activate_session(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        if !self.dials(&s.wg) || !s.bgp.session.config().passive {
            return;
        }
        let sc = session_config(&self.config, &s.wg.config, false);
        if let Some(s) = self.slots.get_mut(slot) {
            s.bgp.session.reconfigure(now, sc);
            self.engine.wake();
        }
    }

    /// A new WireGuard session replaced an old one: the member is alive again
    /// and a connection attempt in flight went out under the old keys: if
    /// our side dials and the BGP session is down, dial now instead of at the
    /// next retry.
    fn redial(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        if !self.dials(&s.wg) || s.bgp.session.is_established() {
            return;
        }
        log::debug!("bgp: peer {slot}: new tunnel session, dialing now");
        if let Some(s) = self.slots.get_mut(slot) {
            s.bgp.session.connect_now(now);
            self.engine.wake();
        }
    }

    /// Carries out the verdict on the inner packet (`len` bytes in the LAN
    /// ring's spare slot) that member `from` sent.
    fn forward_from_member(&mut self, now: Instant, from: usize, len: usize) {
        let packet = &self.lan.spare_ref()[..len];
        let info = match ip::parse(packet) {
            Ok(i) => i,
            Err(_) => {
                self.stats.bad_inner += 1;
                return;
            }
        };
        let len = info.total_len;
        let verdict = self.router().for_member_packet(&packet[..len], &info);
        match verdict {
            Verdict::ToLan => self.commit_lan(len),
            Verdict::ToLanOnce => {
                let packet = &self.lan.spare_ref()[..len];
                if self.dedup.first_sighting(now, packet, &info) {
                    self.commit_lan(len);
                } else {
                    self.stats.duplicates_dropped += 1;
                }
            }
            Verdict::ToOverlay => {
                self.stats.to_overlay += 1;
                self.engine.handle_packet(&self.lan.spare_ref()[..len]);
            }
            Verdict::Control(Control::Bfd) => self.handle_bfd(now, from, len, &info),
            Verdict::Control(Control::Pex) => self.handle_pex(now, len, &info),
            Verdict::Transit { to } => self.transit(now, from, to as usize, len, &info),
            Verdict::Unreachable => {
                self.stats.no_route += 1;
                self.icmp_error_from_spare(IcmpError::NetUnreachable, len, &info);
            }
            Verdict::Drop(d) => self.count_drop(d),
            // Only the LAN sends to members on its own.
            Verdict::ToMember { .. } => self.stats.no_route += 1,
        }
    }

    fn count_drop(&mut self, d: DropReason) {
        let counter = match d {
            DropReason::BadHeader => &mut self.stats.bad_inner,
            DropReason::Spoofed => &mut self.stats.spoofed,
            DropReason::Martian | DropReason::OwnSource => &mut self.stats.relay_refused,
            DropReason::Loop | DropReason::NotOurs => &mut self.stats.no_route,
        };
        *counter += 1;
    }

    /// From one member to another through us: the relay's cap, TTL, then the
    /// next hop's tunnel. The packet is re-encrypted from where it was
    /// decrypted.
    fn transit(&mut self, now: Instant, from: usize, to: usize, len: usize, info: &IpInfo) {
        let rate = self.config.relay_rate_kbit;
        let allowed = self
            .slots
            .get_mut(from)
            .is_some_and(|s| s.relay.allow(now, rate, len));
        if !allowed {
            self.stats.relay_rate_limited += 1;
            return;
        }
        let packet = &mut self.lan.spare()[..len];
        if ip::decrement_ttl(packet).is_err() {
            self.stats.ttl_expired += 1;
            self.icmp_error_from_spare(IcmpError::TimeExceeded, len, info);
            return;
        }
        self.stats.forwarded += 1;
        match self.slots.get_mut(to) {
            Some(s) => tunnel::send(&mut s.wg, packet, &mut self.tx, &mut self.stats),
            None => self.stats.no_route += 1,
        }
    }

    /// An IP packet from the LAN (the TUN device).
    pub fn handle_lan_packet(&mut self, now: Instant, packet: &[u8]) {
        self.stats.from_lan += 1;
        self.new_second(now);
        let info = match ip::parse(packet) {
            Ok(i) => i,
            Err(_) => {
                self.stats.bad_inner += 1;
                return;
            }
        };
        match self.router().for_lan_packet(packet, &info) {
            Verdict::ToOverlay => {
                self.stats.to_overlay += 1;
                self.engine.handle_packet(packet);
            }
            Verdict::ToMember { to, copy } => {
                self.send_to_member(to as usize, packet);
                if let Some(second) = copy {
                    self.stats.redundant_copies += 1;
                    self.send_to_member(second as usize, packet);
                }
            }
            Verdict::Unreachable => {
                self.stats.no_route += 1;
                self.icmp_error(IcmpError::NetUnreachable, packet, &info);
            }
            Verdict::Drop(d) => self.count_drop(d),
            // Only members' packets are transit or control, or leave on the LAN.
            Verdict::Transit { .. } | Verdict::Control(_) | Verdict::ToLan | Verdict::ToLanOnce => {
                self.stats.no_route += 1
            }
        }
        self.finish(now);
    }

    /// Timers that are due, child by child.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.new_second(now);
        if !self.slots.is_empty() && self.wg_tick <= now {
            self.wg_tick = now + TIMER_TICK;
            self.tunnel_tick(now);
        }
        for slot in 0..MAX_MEMBERS {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.bfd.poll_timeout().is_some_and(|(t, _)| t <= now) {
                s.bfd.handle_timeout(now);
                self.supervision_outputs(now, slot);
            }
        }
        self.engine.handle_timeout(now, &mut self.slots);
        if self
            .stun
            .poll_timeout(&self.slots)
            .is_some_and(|(t, _)| t <= now)
        {
            self.stun
                .handle_timeout(now, &mut self.slots, &mut self.ids, &mut self.stats);
            self.stun_outputs(now);
        }
        // The engine runs before peer exchange: what it changes (a member
        // reachable, a route gone) is told and acted on in this same step.
        self.finish(now);
        if !self.slots.is_empty() && self.exchange.handle_timeout(now) {
            self.announce(now);
        }
        self.punch_timers(now);
    }

    /// boringtun's timers, the tunnels' upkeep, and their latency for the RIB.
    fn tunnel_tick(&mut self, now: Instant) {
        let own = self.config.overlay;
        for (slot, s) in self.slots.iter_mut() {
            let leads = leads(own, s.wg.config.overlay);
            s.upkeep
                .tick(now, &mut s.wg, leads, &mut self.tx, &mut self.stats);
            if let Some(latency) = s.upkeep.adopt_latency(&s.wg) {
                // Latency feeds the decision process (as interior cost).
                self.engine
                    .rib
                    .set_peer(slot as u8, peer_info(&s.wg.config, Some(latency)));
                self.engine.wake();
            }
        }
    }

    // ---- children's outputs ----

    /// After any input: the BGP engine runs if something woke it.
    fn finish(&mut self, now: Instant) {
        if self.engine.wants_pump() {
            self.pump(now);
        }
    }

    /// A member's BFD packet goes out through its tunnel; its events become
    /// the node's, and stop or start its BGP session.
    fn supervision_outputs(&mut self, now: Instant, slot: usize) {
        let own = self.config.overlay;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        while let Some(pkt) = s.bfd.poll_transmit() {
            let dst = s.wg.config.overlay;
            // Over a tunnel not up yet, a BFD packet would only start a
            // handshake of its own; the side that leads may.
            if !leads(own, dst) && s.wg.tunnel.since_handshake().is_none() {
                continue;
            }
            let mut payload = [0u8; bfd::PACKET_LEN];
            let mut out = [0u8; 64];
            if let Some(n) = pkt.emit(&mut payload).and_then(|n| {
                let sport = BFD_SOURCE_PORT_BASE + slot as u16;
                ip::build_udp4(own, dst, sport, bfd::BFD_PORT, 255, &payload[..n], &mut out)
            }) {
                tunnel::send(&mut s.wg, &out[..n], &mut self.tx, &mut self.stats);
            }
        }
        let member = slot as u8;
        while let Some(ev) = s.bfd.poll_event() {
            match ev {
                supervision::Event::BfdUp => {
                    s.punch.poke(now);
                    push_event(
                        &mut self.events,
                        &mut self.stats,
                        NodeEvent::BfdUp { member },
                    );
                }
                supervision::Event::BfdDown(diagnostic) => {
                    s.punch.poke(now);
                    let e = NodeEvent::BfdDown { member, diagnostic };
                    push_event(&mut self.events, &mut self.stats, e);
                }
                supervision::Event::StopBgp => {
                    // The session (and with it every route through the
                    // member) goes now: the FIB moves in this same step.
                    s.bgp.session.bfd_down(now);
                    self.engine.wake();
                }
                supervision::Event::StartBgp => {
                    s.bgp.session.start(now);
                    self.engine.wake();
                }
            }
        }
    }

    /// STUN answers and requests go out; a new public endpoint is told to
    /// the members.
    fn stun_outputs(&mut self, now: Instant) {
        while let Some(d) = self.stun.poll_transmit() {
            let meta = TxMeta {
                from_alt_port: d.from_alt_port,
                ..TxMeta::to(d.to, d.bytes.len())
            };
            if !self.tx.push(&d.bytes, meta) {
                self.stats.queue_full += 1;
            }
        }
        while let Some(stun::Event::PublicEndpoint(_)) = self.stun.poll_event() {
            self.exchange.announce_now(now);
        }
    }

    // ---- the BGP engine ----

    /// Runs the engine until quiet: sessions, sockets and RIB, carrying what
    /// the stack sends through the tunnels between rounds; then reports
    /// route changes.
    fn pump(&mut self, now: Instant) {
        let local = Local {
            asn: self.config.asn,
            overlay: self.config.overlay,
            overlay_v6: self.config.overlay_v6,
        };
        for _ in 0..self.engine.begin_pump() {
            let mut busy =
                self.engine
                    .round(now, &mut self.slots, local, &mut self.stats.hijacks_refused);
            while let Some(p) = self.engine.poll_transmit() {
                busy = true;
                self.route_overlay_packet(&p);
            }
            while let Some(ev) = self.engine.poll_event() {
                if let NodeEvent::SessionUp { member } | NodeEvent::SessionDown { member, .. } = ev
                {
                    if let Some(s) = self.slots.get_mut(member as usize) {
                        let up = matches!(ev, NodeEvent::SessionUp { .. });
                        s.bfd.bgp_changed(now, up);
                    }
                }
                self.event(ev);
            }
            if !busy {
                break;
            }
        }
        self.engine.end_pump(now);
        self.stats.pump_rounds = self.engine.rounds;
        let Node {
            engine,
            exchange,
            slots,
            events,
            stats,
            ..
        } = self;
        engine.sync_routes(|ev| {
            // Whether a member is reachable through others decides punching;
            // one newly reachable hears our endpoints at once.
            for (_, s) in slots.iter_mut() {
                s.punch.poke(now);
            }
            if matches!(ev, NodeEvent::RouteAdded { .. }) {
                exchange.announce_now(now);
            }
            push_event(events, stats, ev);
        });
    }

    /// Packets the overlay stack sends. BGP to a member goes through that
    /// member's own tunnel and nowhere else: one session per tunnel.
    fn route_overlay_packet(&mut self, packet: &[u8]) {
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        if forward::is_bgp(packet, &info) {
            if let Some(slot) = self.slots.by_overlay(info.dst) {
                self.send_to_member(slot, packet);
            }
            return;
        }
        self.originate(packet);
    }

    // ---- control traffic inside the tunnels ----

    /// A BFD control packet from `from`'s tunnel (RFC 5881: single hop, so it
    /// must come from the member's own address with TTL 255).
    fn handle_bfd(&mut self, now: Instant, from: usize, len: usize, info: &IpInfo) {
        let packet = &self.lan.spare_ref()[..len];
        let accepted = match (ip::udp_parts(packet, info), self.slots.get_mut(from)) {
            (Some((_, _, payload)), Some(s)) if info.src == IpAddr::V4(s.wg.config.overlay) => {
                s.bfd.handle_packet(now, payload, info.ttl)
            }
            _ => false,
        };
        if !accepted {
            self.stats.bfd_discarded += 1;
        }
        self.supervision_outputs(now, from);
    }

    /// A peer exchange datagram (`len` bytes in the LAN ring's spare slot).
    fn handle_pex(&mut self, now: Instant, len: usize, info: &IpInfo) {
        let packet = &self.lan.spare_ref()[..len];
        let Some(sender) = self.slots.by_overlay(info.src) else {
            self.stats.pex_invalid += 1;
            return;
        };
        let msg = match ip::udp_parts(packet, info).map(|(_, _, p)| pex::Message::decode(p)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                log::debug!("pex: bad message from {}: {e}", info.src);
                self.stats.pex_invalid += 1;
                return;
            }
            None => {
                self.stats.pex_invalid += 1;
                return;
            }
        };
        self.stats.pex_received += 1;
        match msg {
            pex::Message::Endpoints {
                nat,
                playstation,
                entries,
            } => {
                if let Some(s) = self.slots.get_mut(sender) {
                    s.punch.nat = Some((
                        crate::nat::Behaviour::from_code(nat),
                        (1..=3).contains(&playstation).then_some(playstation),
                    ));
                }
                for e in entries {
                    let Some(subject) = self.slots.by_overlay(IpAddr::V4(e.subject)) else {
                        continue; // about us, or someone we do not know
                    };
                    // A member speaks for itself only about itself.
                    if e.own && subject != sender {
                        self.stats.pex_invalid += 1;
                        continue;
                    }
                    if let Some(s) = self.slots.get_mut(subject) {
                        s.punch.learn(now, e.endpoint);
                    }
                }
            }
            pex::Message::Punch {
                token,
                answer,
                candidates,
            } => {
                let Some(s) = self.slots.get_mut(sender) else {
                    return;
                };
                for c in &candidates {
                    s.punch.learn(now, *c);
                }
                let direct = s.is_direct(now);
                let step = s.punch.handle_punch(now, token, answer, direct);
                if !direct && !answer {
                    let reply = pex::Message::Punch {
                        token,
                        answer: true,
                        candidates: self.stun.own_candidates(),
                    };
                    self.send_pex(sender, &reply);
                }
                self.punch_step(now, sender, step);
            }
        }
    }

    fn send_pex(&mut self, slot: usize, msg: &pex::Message) {
        let Some(dst) = self.slots.get(slot).map(|s| s.wg.config.overlay) else {
            return;
        };
        let mut payload = [0u8; pex::MAX_LEN];
        let mut out = [0u8; pex::MAX_LEN + 28];
        let Ok(n) = msg.encode(&mut payload) else {
            return;
        };
        let src = self.config.overlay;
        if let Some(len) = ip::build_udp4(src, dst, PEX_PORT, PEX_PORT, 64, &payload[..n], &mut out)
        {
            self.stats.pex_sent += 1;
            self.originate(&out[..len]);
        }
    }

    /// Tells every member we have a route to our NAT and endpoints, and where
    /// we see the members we reach directly.
    fn announce(&mut self, now: Instant) {
        let report = self.stun.report();
        let candidates = self.stun.own_candidates();
        let msg =
            exchange::announcement(now, self.config.overlay, &report, &candidates, &self.slots);
        for slot in 0..MAX_MEMBERS {
            let routed = self.slots.get(slot).is_some_and(|s| {
                let overlay = IpAddr::V4(s.wg.config.overlay);
                self.engine
                    .rib
                    .lookup(overlay)
                    .and_then(|e| e.best())
                    .is_some()
            });
            if routed {
                self.send_pex(slot, &msg);
            }
        }
    }

    /// Members' punches that are due.
    fn punch_timers(&mut self, now: Instant) {
        for slot in 0..MAX_MEMBERS {
            let Some(s) = self.slots.get(slot) else {
                continue;
            };
            if s.punch.due(now) {
                let facts = self.punch_facts(now, slot, s);
                let step = match self.slots.get_mut(slot) {
                    Some(s) => s.punch.handle_timeout(now, facts, &mut self.ids),
                    None => continue,
                };
                self.punch_step(now, slot, step);
            }
        }
    }

    fn punch_facts(&self, now: Instant, slot: usize, s: &Slot<C::Tunnel>) -> Facts {
        let overlay = s.wg.config.overlay;
        let transit = self
            .engine
            .rib
            .lookup(IpAddr::V4(overlay))
            .and_then(|e| e.best())
            .is_some_and(|b| matches!(b.source, Source::Peer(p) if p as usize != slot));
        Facts {
            direct: s.direct_or_coming_up(now),
            direct_until: s.direct_until(now),
            leads: leads(self.config.overlay, overlay),
            transit,
        }
    }

    fn punch_step(&mut self, now: Instant, slot: usize, step: Step) {
        if let Some(token) = step.ask {
            let ask = pex::Message::Punch {
                token,
                answer: false,
                candidates: self.stun.own_candidates(),
            };
            self.send_pex(slot, &ask);
        }
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if step.initiate {
            let targets = s.punch.learned.clone();
            let n = tunnel::initiate_to(now, &mut s.wg, &targets, &mut self.tx, &mut self.stats);
            self.stats.punch_packets += n as u64;
        }
        if let Some(took) = step.succeeded {
            log::info!(
                "punch: direct tunnel to {} after {} ms",
                s.wg.config.name.as_str(),
                took.as_millis()
            );
        }
        if step.failed {
            self.stats.punch_failures += 1;
        }
    }

    // ---- sending ----

    fn send_to_member(&mut self, slot: usize, packet: &[u8]) {
        match self.slots.get_mut(slot) {
            Some(s) => tunnel::send(&mut s.wg, packet, &mut self.tx, &mut self.stats),
            None => self.stats.no_route += 1,
        }
    }

    /// Sends a packet this node originates (ICMP errors, peer exchange,
    /// overlay traffic that is not BGP): looked up like any other.
    fn originate(&mut self, packet: &[u8]) {
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        match self.router().route(packet, &info) {
            Some(Source::Local) => self.queue_lan(packet),
            Some(Source::Peer(p)) => self.send_to_member(p as usize, packet),
            None => self.stats.no_route += 1,
        }
    }

    fn queue_datagram(&mut self, to: SocketAddr, bytes: &[u8]) {
        if !self.tx.push(bytes, TxMeta::to(to, bytes.len())) {
            self.stats.queue_full += 1;
        }
    }

    fn queue_lan(&mut self, packet: &[u8]) {
        if packet.len() <= INNER_MTU && self.lan.push(packet, packet.len() as u16) {
            self.stats.to_lan += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }

    /// Queues the packet decrypted into the LAN ring's spare slot. A packet
    /// longer than the TUN device's MTU is not (as a full queue, counted).
    fn commit_lan(&mut self, len: usize) {
        if len <= INNER_MTU && self.lan.commit(len as u16) {
            self.stats.to_lan += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }

    fn event(&mut self, e: NodeEvent) {
        push_event(&mut self.events, &mut self.stats, e);
    }

    fn new_second(&mut self, now: Instant) {
        if now.saturating_duration_since(self.second) >= Duration::from_secs(1) {
            self.second = now;
            self.icmp_budget = ICMP_PER_SECOND;
            self.crypto.tick();
        }
    }

    /// The ICMP error about `packet`, within the budget, into `out`.
    fn build_icmp(
        &mut self,
        kind: IcmpError,
        packet: &[u8],
        info: &IpInfo,
        out: &mut [u8; 1280],
    ) -> Option<usize> {
        build_icmp(
            &self.config,
            &mut self.icmp_budget,
            &mut self.stats,
            kind,
            packet,
            info,
            out,
        )
    }

    fn icmp_error(&mut self, kind: IcmpError, packet: &[u8], info: &IpInfo) {
        let mut out = [0u8; 1280];
        if let Some(n) = self.build_icmp(kind, packet, info, &mut out) {
            self.originate(&out[..n]);
        }
    }

    /// An ICMP error about the packet in the LAN ring's spare slot.
    fn icmp_error_from_spare(&mut self, kind: IcmpError, len: usize, info: &IpInfo) {
        let mut out = [0u8; 1280];
        let built = build_icmp(
            &self.config,
            &mut self.icmp_budget,
            &mut self.stats,
            kind,
            &self.lan.spare_ref()[..len],
            info,
            &mut out,
        );
        if let Some(n) = built {
            self.originate(&out[..n]);
        }
    }

    // ---- outputs ----

    /// The next datagram for the underlay, lent until the next call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let (buf, meta) = self.tx.pop()?;
        Some(Transmit {
            to: meta.to,
            bytes: &buf[..meta.len as usize],
            from_alt_port: meta.from_alt_port,
        })
    }

    /// The next IP packet for the TUN device, lent until the next call.
    #[must_use]
    pub fn poll_lan_packet(&mut self) -> Option<&[u8]> {
        let (buf, len) = self.lan.pop()?;
        Some(&buf[..len as usize])
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next, and why: the earliest
    /// deadline of any child.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Wake)> {
        let wireguard = (!self.slots.is_empty()).then_some((self.wg_tick, Wake::WireGuard));
        let supervision = self.slots.iter().filter_map(|(i, s)| {
            let (t, timer) = s.bfd.poll_timeout()?;
            Some((
                t,
                Wake::Supervision {
                    member: i as u8,
                    timer,
                },
            ))
        });
        let bgp = self
            .engine
            .poll_timeout(&self.slots)
            .map(|(t, w)| (t, Wake::Bgp(w)));
        let stun = self
            .stun
            .poll_timeout(&self.slots)
            .map(|(t, w)| (t, Wake::Stun(w)));
        let exchange = self
            .exchange
            .poll_timeout(&self.slots)
            .map(|(t, w)| (t, Wake::Exchange(w)));
        wireguard
            .into_iter()
            .chain(supervision)
            .chain(bgp)
            .chain(stun)
            .chain(exchange)
            .min_by_key(|(t, _)| *t)
    }

    /// Test hook (simulation only): this node plays a modified, hostile
    /// member and sends `packet` as is through member `slot`'s tunnel,
    /// whatever its own routing and checks would say.
    #[cfg(feature = "sim")]
    pub fn send_raw_to_member(&mut self, slot: u8, packet: &[u8]) {
        self.send_to_member(slot as usize, packet);
    }
}

/// Whether a node at overlay address `own` dials the BGP connection to a
/// member: when it leads and knows where the member is.
fn dials<T: Tunnel>(own: Ipv4Addr, wg: &Member<T>) -> bool {
    leads(own, wg.config.overlay) && (wg.endpoint.is_some() || !wg.config.endpoints.is_empty())
}

fn build_icmp(
    config: &NodeConfig,
    budget: &mut u32,
    stats: &mut NodeStats,
    kind: IcmpError,
    packet: &[u8],
    info: &IpInfo,
    out: &mut [u8; 1280],
) -> Option<usize> {
    if !ip::may_answer_with_error(packet, info) {
        return None;
    }
    if *budget == 0 {
        stats.icmp_rate_limited += 1;
        return None;
    }
    *budget -= 1;
    let from = match info.src {
        IpAddr::V4(_) => IpAddr::V4(config.overlay),
        IpAddr::V6(_) => IpAddr::V6(config.overlay_v6?),
    };
    let n = ip::build_icmp_error(kind, from, packet, info, out)?;
    stats.icmp_sent += 1;
    Some(n)
}

fn push_event(q: &mut Events, stats: &mut NodeStats, e: NodeEvent) {
    if q.push_back(e).is_err() {
        stats.events_dropped += 1;
    }
}

/// Inner MTU for the TUN device: what fits a 1500-octet underlay.
pub const TUN_MTU: usize = INNER_MTU;
