//! The root's control side: it drains the children (tunnel upkeep, BFD
//! supervision, the BGP engine, STUN, peer exchange and punching) and wires
//! what one says to the others.

use core::net::IpAddr;

use embassy_time::Instant;

use crate::bfd;
use crate::ip::{self, IpInfo};
use crate::pex::{self, PEX_PORT};
use crate::rib::Source;
use crate::wg::{Crypto, Tunnel, MAX_MEMBERS};

use super::engine::{peer_info, Local};
use super::event::push_event;
use super::exchange::{self, Facts, Step};
use super::output::{Port, TxMeta};
use super::slots::Slot;
use super::{forward, leads, stun, supervision, tunnel, Node, NodeEvent};

/// BFD source ports (RFC 5881 §4: 49152-65535), one per member slot.
const BFD_SOURCE_PORT_BASE: u16 = 49152;

impl<C: Crypto> Node<'_, C> {
    /// boringtun's timers, the tunnels' upkeep, and their latency for the RIB.
    pub(super) fn tunnel_tick(&mut self, now: Instant) {
        let own = self.config.overlay;
        for (slot, s) in self.slots.iter_mut() {
            let leads = leads(own, s.wg.config.overlay);
            let down = s
                .upkeep
                .tick(now, &mut s.wg, leads, &mut self.tx, &mut self.stats);
            if down {
                let e = NodeEvent::TunnelDown { member: slot as u8 };
                push_event(&mut self.events, &mut self.stats, e);
            }
            if let Some(latency) = s.upkeep.adopt_latency(&s.wg) {
                // Latency feeds the decision process (as interior cost).
                self.engine
                    .rib
                    .set_peer(slot as u8, peer_info(&s.wg.config, Some(latency)));
                self.engine.wake();
            }
        }
    }

    /// After any input: the BGP engine runs if something woke it.
    pub(super) fn finish(&mut self, now: Instant) {
        if self.engine.wants_pump() {
            self.pump(now);
        }
    }

    /// A member's BFD packet goes out through its tunnel; its events become
    /// the node's, and stop or start its BGP session.
    pub(super) fn supervision_outputs(&mut self, now: Instant, slot: usize) {
        self.slot_timers_changed(slot);
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
        let mut moved = false;
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
                supervision::Event::BfdAdminDown => push_event(
                    &mut self.events,
                    &mut self.stats,
                    NodeEvent::BfdAdminDown { member },
                ),
                supervision::Event::BfdDown(diagnostic) => {
                    s.punch.poke(now);
                    let e = NodeEvent::BfdDown { member, diagnostic };
                    push_event(&mut self.events, &mut self.stats, e);
                }
                supervision::Event::Moved(away) => {
                    // Forwarding reads it from the slot; exits may move.
                    moved = true;
                    let e = NodeEvent::TrafficMoved { member, away };
                    push_event(&mut self.events, &mut self.stats, e);
                }
                supervision::Event::StopBgp => {
                    // Confirmed dead: the session (and with it every route
                    // through the member) goes now.
                    s.bgp.session.bfd_down(now);
                    self.engine.wake();
                }
                supervision::Event::StartBgp => {
                    s.bgp.session.start(now);
                    self.engine.wake();
                }
            }
        }
        if moved {
            self.exit_availability();
        }
    }

    /// STUN answers and requests go out; a new public endpoint is told to
    /// the members.
    pub(super) fn stun_outputs(&mut self, now: Instant) {
        self.all_timers_changed();
        while let Some(d) = self.stun.poll_transmit() {
            let meta = TxMeta {
                from: if d.from_alt_port {
                    Port::Alt
                } else {
                    Port::Mesh
                },
                ..TxMeta::to(d.to, d.bytes.len())
            };
            if !self.tx.push(&d.bytes, meta) {
                self.stats.queue_full += 1;
            }
        }
        while let Some(stun::Event::PublicEndpoint(_)) = self.stun.poll_event() {
            self.exchange.announce_now(now);
        }
        // A classification may make us an exit, or stop us being one.
        self.refresh_offer(now);
    }

    /// Runs the engine until quiet: sessions, sockets and RIB, carrying what
    /// the stack sends through the tunnels between rounds; then reports
    /// route changes.
    pub(super) fn pump(&mut self, now: Instant) {
        self.all_timers_changed();
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
                        if up {
                            // Replay windows last a session: a member that
                            // restarted numbers its messages anew.
                            self.discovery.forget(member as usize);
                        }
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
            group,
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
                group.digest_soon = true;
            }
            push_event(events, stats, ev);
        });
        self.exit_availability();
    }

    /// Packets the overlay stack sends. BGP to a member goes through that
    /// member's own tunnel and nowhere else: one session per tunnel.
    pub(super) fn route_overlay_packet(&mut self, packet: &[u8]) {
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

    /// A BFD control packet from `from`'s tunnel (RFC 5881: single hop, so it
    /// must come from the member's own address with TTL 255).
    pub(super) fn handle_bfd(&mut self, now: Instant, from: usize, len: usize, info: &IpInfo) {
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
    pub(super) fn handle_pex(&mut self, now: Instant, len: usize, info: &IpInfo) {
        // Learned candidates and punches move the punches' deadlines.
        self.all_timers_changed();
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

    pub(super) fn send_pex(&mut self, slot: usize, msg: &pex::Message) {
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
    pub(super) fn announce(&mut self, now: Instant) {
        let report = self.stun.report();
        let candidates = self.stun.own_candidates();
        let msg =
            exchange::announcement(now, self.config.overlay, &report, &candidates, &self.slots);
        for slot in 0..MAX_MEMBERS {
            if self.routed(slot) {
                self.send_pex(slot, &msg);
            }
        }
    }

    /// Is there a route to `slot`'s overlay address (directly or through
    /// members)? Whom peer exchange and the group's records go to.
    pub(super) fn routed(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| {
            self.engine
                .rib
                .lookup(IpAddr::V4(s.wg.config.overlay))
                .and_then(|e| e.best())
                .is_some()
        })
    }

    /// Members' punches that are due.
    pub(super) fn punch_timers(&mut self, now: Instant) {
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
                self.slot_timers_changed(slot);
                self.punch_step(now, slot, step);
            }
        }
    }

    pub(super) fn punch_facts(&self, now: Instant, slot: usize, s: &Slot<C::Tunnel>) -> Facts {
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

    pub(super) fn punch_step(&mut self, now: Instant, slot: usize, step: Step) {
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
}
