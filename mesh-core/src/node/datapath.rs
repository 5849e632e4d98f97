//! The root's data path: WireGuard datagrams in, forwarding verdicts carried
//! out, packets out through the tunnels or onto the LAN, ICMP errors.
//!
//! A datagram from a member is decrypted into the LAN ring's spare slot; a
//! verdict to the LAN queues that slot, transit re-encrypts from it into the
//! transmit ring: a packet is not copied on its way through.

use core::net::{IpAddr, SocketAddr};

use embassy_time::Instant;

use crate::ip::{self, IcmpError, IpInfo};
use crate::rib::{PeerId, Source};
use crate::wg::{Crypto, Identified, Tunnel, INNER_MTU};

use super::engine::session_config;
use super::forward::{Control, DropReason, Verdict};
use super::output::TxMeta;
use super::{tunnel, Node, NodeConfig, NodeEvent, NodeStats};

impl<C: Crypto> Node<'_, C> {
    /// Which member a WireGuard datagram is for.
    pub(super) fn identify(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<usize> {
        if let Some(i) = self.crypto.data_index(bytes) {
            return self.member_by_index(i);
        }
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
            Identified::Index(i) => self.member_by_index(i),
        }
    }

    /// The member whose tunnel has receiver index `i`; none is counted.
    fn member_by_index(&mut self, i: u32) -> Option<usize> {
        let slot = self.slots.by_index(i);
        if slot.is_none() {
            self.stats.udp_invalid += 1;
        }
        slot
    }

    /// A WireGuard datagram for member `slot`: decrypted into the LAN ring's
    /// spare slot, where forwarding finds it.
    pub(super) fn receive(&mut self, now: Instant, slot: usize, from: SocketAddr, bytes: &[u8]) {
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
        // A tunnel session we can send on, after a silence or new (the
        // member restarted): BFD, if not Up, need not wait out its
        // one-second pace (its packets could not leave before). Asked of
        // these rare datagrams only: boringtun reads the clock to answer.
        let path_up = (r.tunnel_up || r.new_session) && s.wg.tunnel.since_handshake().is_some();
        if path_up {
            s.bfd.path_up(now);
        }
        if r.tunnel_up {
            s.punch.poke(now);
            self.exchange.announce_now(now);
            self.group.digest_soon = true;
            self.event(NodeEvent::TunnelUp { member: slot as u8 });
        }
        if path_up {
            self.supervision_outputs(now, slot);
        }
        // What a member's datagram can change of the children's timers: a
        // tunnel up (punch, announcement), a new endpoint (STUN), a new
        // session (BGP dials). Plain data changes none.
        if r.tunnel_up || r.endpoint_changed || r.new_session {
            self.all_timers_changed();
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
    pub(super) fn activate_session(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        if !super::dials(self.config.overlay, &s.wg) || !s.bgp.session.config().passive {
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
    pub(super) fn redial(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        if !super::dials(self.config.overlay, &s.wg) || s.bgp.session.is_established() {
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
    pub(super) fn forward_from_member(&mut self, now: Instant, from: usize, len: usize) {
        let packet = &self.lan.spare_ref()[..len];
        let info = match ip::parse(packet) {
            Ok(i) => i,
            Err(_) => {
                self.stats.bad_inner += 1;
                return;
            }
        };
        let len = info.total_len;
        let verdict = self
            .router()
            .for_member_packet(&packet[..len], &info, from as PeerId);
        match verdict {
            Verdict::ToLan => self.lan_in(len),
            Verdict::ToLanOnce => {
                let packet = &self.lan.spare_ref()[..len];
                if self.dedup.first_sighting(now, packet, &info) {
                    self.lan_in(len);
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
            Verdict::Control(Control::Discovery) => self.handle_discovery(now, len, &info),
            Verdict::Control(Control::Group) => self.handle_group(now, len, &info),
            Verdict::Control(Control::Exit) => self.handle_wrapped(now, len, &info),
            Verdict::Transit { to } => self.transit(now, from, to as usize, len, &info),
            Verdict::Unreachable => {
                self.stats.no_route += 1;
                self.icmp_error_from_spare(IcmpError::NetUnreachable, len, &info);
            }
            Verdict::Drop(d) => self.count_drop(d),
            // Only the LAN sends to members, or to an exit, on its own.
            Verdict::ToMember { .. } | Verdict::ToExit | Verdict::FromInternet { .. } => {
                self.stats.no_route += 1
            }
        }
    }

    /// A member's packet for this home's LAN (`len` bytes in the LAN
    /// ring's spare slot): to a mapped LAN's alias, it goes in to the LAN
    /// address.
    pub(super) fn lan_in(&mut self, len: usize) {
        if !self.config.lan_map.is_empty() {
            let packet = &mut self.lan.spare()[..len];
            crate::netmap::map(packet, &self.config.lan_map, crate::netmap::Direction::In);
        }
        self.commit_lan(len);
    }

    pub(super) fn count_drop(&mut self, d: DropReason) {
        let counter = match d {
            DropReason::BadHeader => &mut self.stats.bad_inner,
            DropReason::Spoofed => &mut self.stats.spoofed,
            DropReason::ForeignSource => &mut self.stats.lan_foreign_source,
            DropReason::Martian | DropReason::OwnSource => &mut self.stats.relay_refused,
            DropReason::Loop | DropReason::NotOurs => &mut self.stats.no_route,
        };
        *counter += 1;
    }

    /// From one member to another through us: the relay's cap, TTL, then the
    /// next hop's tunnel. The packet is re-encrypted from where it was
    /// decrypted.
    pub(super) fn transit(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        len: usize,
        info: &IpInfo,
    ) {
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

    pub(super) fn send_to_member(&mut self, slot: usize, packet: &[u8]) {
        match self.slots.get_mut(slot) {
            Some(s) => tunnel::send(&mut s.wg, packet, &mut self.tx, &mut self.stats),
            None => self.stats.no_route += 1,
        }
    }

    /// Sends a packet this node originates (ICMP errors, peer exchange,
    /// overlay traffic that is not BGP): looked up like any other.
    pub(super) fn originate(&mut self, packet: &[u8]) {
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        match self.router().route(packet, &info) {
            Some(Source::Local) => self.queue_lan(packet),
            Some(Source::Peer(p)) => self.send_to_member(p as usize, packet),
            None => self.stats.no_route += 1,
        }
    }

    pub(super) fn queue_datagram(&mut self, to: SocketAddr, bytes: &[u8]) {
        if !self.tx.push(bytes, TxMeta::to(to, bytes.len())) {
            self.stats.queue_full += 1;
        }
    }

    /// Queues a packet built elsewhere for the LAN (an ICMP error, an
    /// exit's answer, overlay traffic); to a mapped LAN's alias, it goes in
    /// to the LAN address.
    pub(super) fn queue_lan(&mut self, packet: &[u8]) {
        let Some(buf) = self.lan.spare().get_mut(..packet.len()) else {
            self.stats.queue_full += 1;
            return;
        };
        buf.copy_from_slice(packet);
        self.lan_in(packet.len());
    }

    /// Queues the packet decrypted into the LAN ring's spare slot. A packet
    /// longer than the TUN device's MTU is not (as a full queue, counted).
    pub(super) fn commit_lan(&mut self, len: usize) {
        if len <= INNER_MTU && self.lan.commit(len as u16) {
            self.stats.to_lan += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }

    /// The ICMP error about `packet`, within the budget, into `out`.
    pub(super) fn build_icmp(
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

    pub(super) fn icmp_error(&mut self, kind: IcmpError, packet: &[u8], info: &IpInfo) {
        let mut out = [0u8; 1280];
        if let Some(n) = self.build_icmp(kind, packet, info, &mut out) {
            self.originate(&out[..n]);
        }
    }

    /// An ICMP error about the packet in the LAN ring's spare slot.
    pub(super) fn icmp_error_from_spare(&mut self, kind: IcmpError, len: usize, info: &IpInfo) {
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
