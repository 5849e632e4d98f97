//! One mesh router, as a pure state machine (see the crate docs for the driver
//! contract).
//!
//! Inputs: [`Node::handle_udp`] (the mesh port), [`Node::handle_lan_packet`]
//! (the TUN device), [`Node::handle_discovery_capture`] (the LAN's discovery
//! broadcasts), [`Node::handle_timeout`], and control calls
//! ([`Node::reconfigure`], [`Node::add_member`], ...).
//! Outputs: [`Node::poll_transmit`], [`Node::poll_lan_packet`],
//! [`Node::poll_discovery_packet`], [`Node::poll_event`], [`Node::poll_timeout`].
//!
//! This module is the composition root. It owns the output queues and the
//! member table (`slots.rs`: one slot per member holding its part of every
//! child), and drains the children, each with its own `handle_*`, `poll_*`
//! and timers:
//!
//! | room | what |
//! |---|---|
//! | `mod.rs` | the [`Node`]: its tables, inputs, outputs and control calls |
//! | `datapath.rs` | carrying out verdicts: datagrams in, packets out, ICMP |
//! | `control.rs` | draining the children and wiring them to each other |
//! | `event.rs` | what the node reports: events, counters, wake reasons |
//! | `forward.rs` | where a packet goes: a [`Verdict`], no side effects |
//! | `tunnel.rs` | WireGuard datagrams in and out, bringing tunnels up |
//! | `supervision.rs` | BFD per tunnel, and the hold-down it puts on BGP |
//! | `engine.rs` | the BGP sessions over the overlay stack, and the RIB |
//! | `stun.rs` | the STUN responder and client on the mesh port |
//! | `exchange.rs` | peer exchange inside the mesh, and hole punching |
//! | `relay.rs` | the per-member cap on transit |
//! | `discovery.rs` | LAN discovery relayed between homes: captured, sent to each member, re-emitted |
//! | `exit.rs` | game exits: the offer, each console's sticky exit, the way there and back |
//! | `exitnat.rs` | the exit's UDP NAT table (RFC 4787) |
//! | `config.rs` | settings, defaults, [`Node::reconfigure`] |
//! | `output.rs` | the rings datagrams and packets are built in |
//! | `slots.rs` | the member table: one slot per member, each child's part |
//! | `ids.rs` | STUN transaction ids and punch tokens from the seed |
//!
//! Where to add: a BGP attribute → [`crate::bgp::attr`] and
//! [`crate::bgp::update`] (codec), [`crate::rib`] (decision), and the import
//! policy in `engine.rs`; a new kind of packet on the mesh port → the
//! dispatch in [`Node::handle_udp`] and a child like `stun.rs`; a new
//! per-member policy → a field of `Slot` (`slots.rs`) with its child, like
//! `relay.rs` or `supervision.rs`; a new kind of control traffic inside the
//! tunnels → [`Control`].
//!
//! Routes a member may originate are limited to what its membership entry
//! allows, so a misconfigured or hostile friend cannot take another home's LAN.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embassy_time::{Duration, Instant};

mod config;
mod control;
mod datapath;
mod discovery;
mod engine;
mod event;
mod exchange;
mod exit;
pub mod exitnat;
mod forward;
mod group;
mod ids;
mod invite;
mod output;
mod relay;
mod slots;
mod status;
mod storage;
mod stun;
mod supervision;
mod tunnel;

#[cfg(all(test, feature = "std"))]
mod tests;

pub use config::{
    Changes, MemberChange, NodeConfig, DEFAULT_BFD, DEFAULT_BFD_CONFIRM, DEFAULT_BFD_HOLD_DOWN,
    DEFAULT_CONNECT_RETRY, DEFAULT_HOLD_TIME, DEFAULT_KEEPALIVE, DEFAULT_MAX_PATHS,
    DEFAULT_REDUNDANCY_MAX_LEN, DEFAULT_RELAY_RATE_KBIT, MAX_LAN_PREFIXES,
};
pub use engine::{NodeRib, Timer as BgpTimer};
pub use event::{NodeEvent, NodeStats, Wake};
pub use exchange::{
    Timer as ExchangeTimer, PEX_INTERVAL, PUNCH_BACKOFF_MAX, PUNCH_BACKOFF_MIN, PUNCH_WINDOW,
};
pub use exit::{
    ConsoleExit, ExitConfig, ExitStats, ExitView, Offer, Timer as ExitTimer, ENCAP_OVERHEAD,
    EXIT_MTU, EXIT_TAG, LOAD_TAG,
};
pub use forward::{Control, DropReason, Verdict};
pub use group::{DIGEST_INTERVAL, GROUP_PORT, MAX_ANSWER, MAX_RECORDS, WAITING};
pub use invite::{InviteOutcome, INVITE_OUTCOMES, MAX_INVITES};
pub use output::{Port, Transmit, DISCOVERY_QUEUE, EVENT_QUEUE, LAN_QUEUE, TRANSMIT_QUEUE};
pub use relay::bytes_per_second;
pub use slots::{MemberSlot, DIRECT_FRESH};
pub use status::{BfdStatus, MemberStatus, TraversalStatus};
#[cfg(feature = "std")]
pub use storage::NodeMemory;
pub use storage::NodeStorage;
pub use stun::{Timer as StunTimer, STUN_ANSWERS_PER_SECOND, STUN_REFRESH, STUN_RETRY};
pub use supervision::{
    Timer as SupervisionTimer, FLAP_MEMORY, MAX_HOLD_DOWN, MAX_RETURN_AFTER, RETURN_AFTER,
};

use crate::ip::{self, IcmpError};
use crate::nat::NatReport;
use crate::prefix::Prefix;
use crate::rib::Source;
use crate::wg::{
    Crypto, Key, Member, MemberConfig, MemberError, Tunnel, INNER_MTU, MAX_DATAGRAM, MAX_MEMBERS,
};

use engine::{session_config, Engine};
use event::push_event;
use exchange::Exchange;
use forward::{Dedup, Router};
use ids::Ids;
use output::{DiscoveryRing, Events, LanRing, TxRing};
use slots::Slots;
use tunnel::TIMER_TICK;
pub use tunnel::TUNNEL_SILENCE;

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

/// One mesh router.
pub struct Node<'a, C: Crypto> {
    config: NodeConfig,
    crypto: C,
    slots: Slots<'a, C::Tunnel>,
    engine: Engine<'a>,
    stun: stun::Stun,
    exchange: Exchange,
    exits: exit::Exits,
    /// LAN discovery: what is relayed, the replay windows and rate caps.
    discovery: crate::discovery::Relay,
    /// Invites handed out, and our own join.
    invite: invite::InviteRoom,
    /// The group's member list: the records held.
    group: group::GroupRoom,
    dedup: Dedup,
    ids: Ids,
    tx: TxRing,
    lan: LanRing,
    discovery_out: DiscoveryRing,
    events: Events,
    stats: NodeStats,
    /// boringtun's next tick.
    wg_tick: Instant,
    /// The earliest deadline of any child, as of the end of the last input.
    next: Option<(Instant, Wake)>,
    /// An input touched a timer: `next` is computed anew at its end, from
    /// the node's own timers and each member's cached deadline.
    timers_changed: bool,
    /// Members whose children's timers an input touched (bit = slot): their
    /// cached deadline is computed anew first.
    slots_changed: u64,
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
    /// A node for `config`, in `storage`: it can hold as many members as
    /// `storage` has slots for.
    pub fn new(
        config: NodeConfig,
        crypto: C,
        storage: NodeStorage<'a, C::Tunnel>,
        now: Instant,
    ) -> Self {
        let NodeStorage {
            members,
            bgp,
            overlay,
            rib,
        } = storage;
        let engine = Engine::new(overlay, rib, &config, now);
        Node {
            stun: stun::Stun::new(config.alt_port),
            exchange: Exchange::new(now),
            exits: exit::Exits::new(now, config.exit.map(|e| e.nat).unwrap_or_default()),
            ids: Ids::new(config.seed),
            discovery: crate::discovery::Relay::new(
                config.discovery.clone().unwrap_or_default(),
                config.overlay,
                config.boot,
            ),
            invite: invite::InviteRoom::default(),
            group: group::GroupRoom::new(crypto.public_key().0, now),
            config,
            crypto,
            slots: Slots::new(members, bgp),
            engine,
            dedup: Dedup::new(),
            tx: TxRing::new(),
            lan: LanRing::new(),
            discovery_out: DiscoveryRing::new(),
            events: Events::new(),
            stats: NodeStats::default(),
            wg_tick: now,
            next: None,
            timers_changed: false,
            slots_changed: 0,
            second: now,
            icmp_budget: ICMP_PER_SECOND,
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    /// How many members the node's storage holds.
    pub fn member_capacity(&self) -> usize {
        self.slots.capacity()
    }
    pub fn public_key(&self) -> Key {
        self.crypto.public_key()
    }
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }
    pub fn rib(&self) -> &NodeRib {
        self.engine.rib
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

    /// The member that carries traffic to `addr` now (the first hop): the
    /// best path's, or the next one while traffic is moved off it (BFD down,
    /// not yet confirmed).
    pub fn next_hop(&self, addr: IpAddr) -> Option<Source> {
        let entry = self.engine.rib.lookup(addr)?;
        self.router().first_hop(entry, || 0)
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

    fn router(&self) -> Router<'_, 'a, C::Tunnel> {
        Router {
            rib: self.engine.rib,
            slots: &self.slots,
            config: &self.config,
        }
    }

    // ---- control ----

    /// Adds a member and starts its BGP session.
    pub fn add_member(&mut self, now: Instant, config: MemberConfig) -> Result<u8, MemberError> {
        let slot = self.slots.add(now, &self.config, &self.crypto, config)?;
        // A slot reused: the previous member's replay window is not this one's.
        self.discovery.forget(slot);
        if let Some(s) = self.slots.get(slot) {
            self.engine.add_peer(slot as u8, &s.wg.config);
        }
        // Routes the new member originates, which the other members sent
        // before it was one, were refused by the import filter: a member
        // that had routes refused since we last asked is asked for its
        // routes again (a member joining by the group's records is reached
        // at once through the members that already know it). One that had
        // none refused is not: adding members costs the others nothing.
        for other in 0..MAX_MEMBERS {
            if other == slot {
                continue;
            }
            if let Some(s) = self.slots.get_mut(other) {
                let bgp = &mut s.bgp;
                if bgp.import.filtered > bgp.filtered_at_refresh
                    && bgp
                        .session
                        .send_route_refresh(crate::prefix::Family::Ipv4)
                        .is_ok()
                {
                    bgp.filtered_at_refresh = bgp.import.filtered;
                }
            }
        }
        // Records that came before their signer was a member.
        self.offer_waiting_records();
        self.engine.wake();
        self.pump(now);
        self.settle();
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
        // What it originated, learned through other members, goes too: the
        // import filter would refuse it now (a member removed from the group
        // may still be a member of one of them for a while).
        let asn = gone.wg.config.asn;
        self.engine
            .rib
            .withdraw_where(|a| a.as_path.origin_as() == Some(asn));
        self.engine.wake();
        let Node {
            exits,
            events,
            stats,
            ..
        } = self;
        exits.forget_home(gone.wg.config.overlay, |port| {
            push_event(events, stats, NodeEvent::MappingClosed { port })
        });
        if let Some(e) = gone.wg.endpoint {
            self.stun.forget(e);
        }
        self.pump(now);
        self.settle();
        true
    }

    /// Applies a changed member entry without dropping what did not change:
    /// new endpoints are the candidates tried when the live one goes quiet;
    /// BGP settings reset the session only when they change what the OPEN
    /// carries; BFD takes new timers. A new keepalive reaches boringtun only
    /// with the member's next tunnel (it is fixed when a tunnel is made).
    pub fn update_member(&mut self, now: Instant, slot: u8, config: MemberConfig) -> bool {
        let config = self.config.member_defaults(config);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        if s.wg.config.public_key != config.public_key {
            return false; // a new key is a new member
        }
        let allowed_changed = s.wg.config.prefixes != config.prefixes
            || s.wg.config.asn != config.asn
            || s.wg.config.exit != config.exit;
        s.wg.config = config;
        let passive = !dials(self.config.overlay, &s.wg);
        let sc = session_config(&self.config, &s.wg.config, passive);
        s.bgp.session.reconfigure(now, sc);
        s.bfd.reconfigure(
            now,
            self.config.bfd_for(&s.wg.config),
            self.config.damping(),
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
        // It may invite now: its records that came before count.
        self.offer_waiting_records();
        self.engine.wake();
        self.pump(now);
        self.settle();
        true
    }

    /// Stops every session with a Cease (Administrative Shutdown), and
    /// tells every BFD peer AdminDown first, so that none waits out its
    /// detection time or counts a failure.
    pub fn shutdown(&mut self, now: Instant) {
        for slot in 0..MAX_MEMBERS {
            if let Some(s) = self.slots.get_mut(slot) {
                s.bfd.admin_down(now);
                self.supervision_outputs(now, slot);
            }
        }
        for (_, s) in self.slots.iter_mut() {
            s.bgp.session.stop(now, "meshd shutting down");
        }
        self.engine.wake();
        self.pump(now);
        self.settle();
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
        self.udp(now, from, bytes);
        self.settle();
    }

    fn udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.udp_in += 1;
        if bytes.len() > MAX_DATAGRAM {
            self.stats.udp_oversized += 1;
            return;
        }
        self.new_second(now);
        if bytes.first() == Some(&crate::invite::MAGIC) {
            // Never WireGuard (its first octet is its type, 1-4) nor STUN
            // (0 or 1): a join request or accept.
            self.join_datagram(now, from, bytes);
            self.finish(now);
            return;
        }
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

    /// An IP packet from the LAN (the TUN device).
    pub fn handle_lan_packet(&mut self, now: Instant, packet: &[u8]) {
        self.lan_packet(now, packet);
        self.settle();
    }

    fn lan_packet(&mut self, now: Instant, packet: &[u8]) {
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
            Verdict::ToMember { to, copy } if self.config.lan_map.is_empty() => {
                self.send_to_members(to, copy, packet)
            }
            Verdict::ToMember { to, copy } => {
                // A mapped LAN's source goes out as its alias.
                let mut mapped = [0u8; INNER_MTU];
                let Some(buf) = mapped.get_mut(..packet.len()) else {
                    self.stats.queue_full += 1; // longer than the tunnel's MTU
                    return;
                };
                buf.copy_from_slice(packet);
                crate::netmap::map(buf, &self.config.lan_map, crate::netmap::Direction::Out);
                self.send_to_members(to, copy, buf);
            }
            Verdict::ToExit => self.send_to_exit(now, packet, &info),
            Verdict::FromInternet { to } => self.answer_from_internet(to as usize, packet, &info),
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

    /// A LAN packet to its first hop, and a redundant copy to `copy`.
    fn send_to_members(
        &mut self,
        to: crate::rib::PeerId,
        copy: Option<crate::rib::PeerId>,
        packet: &[u8],
    ) {
        self.send_to_member(to as usize, packet);
        if let Some(second) = copy {
            self.stats.redundant_copies += 1;
            self.send_to_member(second as usize, packet);
        }
    }

    /// The caller's loop was kept off the CPU: the inputs it stamped
    /// `stamped` were handled when its clock had reached `now` (a batch
    /// of datagrams is stamped once, and the machine can stop a process
    /// anywhere). Each member's BFD that took a packet since `stamped`
    /// counts its detection time from `now`, so that the stall is not
    /// taken for a member's silence. Call before [`Node::handle_timeout`]
    /// at `now`.
    pub fn resumed(&mut self, stamped: Instant, now: Instant) {
        for slot in 0..MAX_MEMBERS {
            if let Some(s) = self.slots.get_mut(slot) {
                if s.bfd.resumed(stamped, now) {
                    self.slot_timers_changed(slot);
                }
            }
        }
        self.settle();
    }

    /// Timers that are due, child by child.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.new_second(now);
        if !self.slots.is_empty() && self.wg_tick <= now {
            self.wg_tick = now + TIMER_TICK;
            self.tunnel_tick(now);
            // The upkeep may move a member to its next candidate endpoint.
            self.all_timers_changed();
        }
        let mut stun_due = false;
        for slot in 0..MAX_MEMBERS {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.deadline.is_none_or(|(t, _)| t > now) {
                continue;
            }
            stun_due |= s.wg.endpoint.is_some() && s.stun.poll_timeout() <= now;
            if s.bfd.poll_timeout().is_some_and(|(t, _)| t <= now) {
                s.bfd.handle_timeout(now);
                self.supervision_outputs(now, slot);
            }
            self.slot_timers_changed(slot);
        }
        self.engine.handle_timeout(now, &mut self.slots);
        if stun_due {
            self.stun
                .handle_timeout(now, &mut self.slots, &mut self.ids, &mut self.stats);
            self.stun_outputs(now);
        }
        // The engine runs before peer exchange: what it changes (a member
        // reachable, a route gone) is told and acted on in this same step.
        self.finish(now);
        if !self.slots.is_empty() && self.exchange.handle_timeout(now) {
            self.timers_changed = true;
            self.announce(now);
            self.group_digest(now);
        }
        self.punch_timers(now);
        self.exit_timeout(now);
        if self.join_timeout().is_some_and(|t| t <= now) {
            self.join_step(now);
            self.timers_changed = true;
        }
        self.finish(now);
        self.settle();
    }

    /// At the end of an input: the next deadline, if any child's timers
    /// changed. Plain forwarding touches none, so a data packet costs no
    /// walk over the members; a BFD packet costs its own member's.
    fn settle(&mut self) {
        if core::mem::take(&mut self.timers_changed) {
            let changed = core::mem::take(&mut self.slots_changed);
            if changed != 0 {
                for (i, s) in self.slots.iter_mut() {
                    if changed & (1 << i) != 0 {
                        s.deadline = s.poll_timeout(i);
                    }
                }
            }
            self.next = self.earliest(|_, s| s.deadline);
        }
        debug_assert_eq!(
            self.next,
            self.earliest(|i, s| s.poll_timeout(i)),
            "an input changed a timer without saying so"
        );
    }

    /// Member `slot`'s timers changed.
    fn slot_timers_changed(&mut self, slot: usize) {
        self.slots_changed |= 1 << slot;
        self.timers_changed = true;
    }

    /// Timers changed in ways no one member's tells (routes, the engine,
    /// STUN answers, peer exchange).
    fn all_timers_changed(&mut self) {
        self.slots_changed = u64::MAX;
        self.timers_changed = true;
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

    // ---- outputs ----

    /// The next datagram for the underlay, lent until the next call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let (buf, meta) = self.tx.pop()?;
        Some(Transmit {
            to: meta.to,
            bytes: &buf[..meta.len as usize],
            from: meta.from,
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

    /// Whether anything but datagrams and LAN packets waits: discovery
    /// packets, events, invite outcomes, a change of the group's records.
    /// One call instead of four empty polls after each forwarded packet.
    #[must_use]
    pub fn has_control_output(&self) -> bool {
        !self.discovery_out.is_empty()
            || !self.events.is_empty()
            || !self.invite.out.is_empty()
            || self.group.changed
    }

    /// When to call [`Node::handle_timeout`] next, and why: the earliest
    /// deadline of any child, as of the last input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Wake)> {
        self.next
    }

    /// The earliest deadline: the node's own, and each member's as `slot`
    /// says.
    fn earliest(
        &self,
        slot: impl Fn(usize, &slots::Slot<C::Tunnel>) -> Option<(Instant, Wake)>,
    ) -> Option<(Instant, Wake)> {
        let wireguard = (!self.slots.is_empty()).then_some((self.wg_tick, Wake::WireGuard));
        let bgp = self.engine.poll_timeout().map(|(t, w)| (t, Wake::Bgp(w)));
        let exchange = self
            .exchange
            .poll_timeout(&self.slots)
            .map(|(t, w)| (t, Wake::Exchange(w)));
        let members = self.slots.iter().filter_map(|(i, s)| slot(i, s));
        let exit = self.exits.poll_timeout().map(|(t, w)| (t, Wake::Exit(w)));
        let join = self.join_timeout().map(|t| (t, Wake::Join));
        wireguard
            .into_iter()
            .chain(bgp)
            .chain(exchange)
            .chain(exit)
            .chain(join)
            .chain(members)
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

/// Inner MTU for the TUN device: what fits a 1500-octet underlay.
pub const TUN_MTU: usize = INNER_MTU;
