//! LAN discovery relayed between homes (issue 14): the node's side of
//! [`crate::discovery`].
//!
//! The driver captures the discovery broadcasts and multicasts of its LAN
//! (a packet socket with a kernel filter) and hands each in
//! ([`Node::handle_discovery_capture`]). The node wraps it in a
//! [`Relayed`] message and sends one copy to each member it has a route to,
//! as overlay UDP between [`DISCOVERY_PORT`]s: ordinary unicast, which the
//! RIB carries (through a transit member where there is no tunnel, along
//! the new paths after a failure). A copy that arrives
//! ([`Control::Discovery`](super::Control)) is judged by the relay (origin,
//! policy, replay window, rate) and, if good, queued for the driver to send
//! on its LAN as a link-layer broadcast or multicast
//! ([`Node::poll_discovery_packet`]), with the console's own source address.
//! Nothing a member sends is ever relayed on: no loop in any topology.

use core::net::{IpAddr, Ipv4Addr};

use embassy_time::Instant;

use crate::discovery::{self, Origin, Relayed, DISCOVERY_PORT};
use crate::ip::{self, IpInfo};
use crate::prefix::{Family, Prefix};
use crate::wg::{Crypto, MAX_MEMBERS};

use super::{Node, MAX_LAN_PREFIXES};

impl<C: Crypto> Node<'_, C> {
    /// An IPv4 packet the driver captured on the LAN: a console's discovery
    /// broadcast or multicast (anything else is counted and dropped by the
    /// relay's policy).
    pub fn handle_discovery_capture(&mut self, now: Instant, packet: &[u8]) {
        self.discovery_capture(now, packet);
        self.settle();
    }

    fn discovery_capture(&mut self, now: Instant, packet: &[u8]) {
        if self.config.discovery.is_none() {
            return;
        }
        let lan = self.capture_lan(packet);
        let Ok(mut msg) = self.discovery.capture_packet(now, lan, packet) else {
            return; // counted by the relay
        };
        // A mapped LAN's console is known in the mesh by its alias: replies
        // go there.
        if let Some(alias) = self.config.lan_map.iter().find_map(|m| m.to_alias(msg.src)) {
            msg.src = alias;
        }
        self.send_relayed(&msg);
        self.finish(now);
    }

    /// One copy of `msg` to every member we have a route to.
    fn send_relayed(&mut self, msg: &Relayed) {
        let mut body = [0u8; discovery::MAX_LEN];
        let Ok(bytes) = msg.encode(&mut body) else {
            return; // cannot happen: MAX_LEN holds the largest message
        };
        let mut out = [0u8; discovery::MAX_LEN + 28];
        let own = self.config.overlay;
        for slot in 0..MAX_MEMBERS {
            let Some(dst) = self.slots.get(slot).map(|s| s.wg.config.overlay) else {
                continue;
            };
            let routed = self
                .engine
                .rib
                .lookup(IpAddr::V4(dst))
                .and_then(|e| e.best())
                .is_some();
            if !routed {
                continue;
            }
            let port = DISCOVERY_PORT;
            if let Some(n) = ip::build_udp4(own, dst, port, port, 64, bytes, &mut out) {
                self.stats.discovery_sent += 1;
                self.originate(&out[..n]);
            }
        }
    }

    /// The LAN prefix a captured packet's source lies in (the first IPv4
    /// one if none: the relay then counts the packet as foreign).
    fn capture_lan(&self, packet: &[u8]) -> Prefix {
        let src = packet
            .get(12..16)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| IpAddr::V4(Ipv4Addr::from(b)));
        self.lan_v4(src)
    }

    /// Our IPv4 LAN prefix holding `addr`, else the first one, else our
    /// overlay address alone (a home with no IPv4 LAN has no consoles to
    /// relay for: every packet is foreign, every message refused). The LAN
    /// as the LAN sees it: a mapped home's own prefix, not its alias.
    fn lan_v4(&self, addr: Option<IpAddr>) -> Prefix {
        let lans: heapless::Vec<Prefix, MAX_LAN_PREFIXES> = if self.config.lan_map.is_empty() {
            let v4 = |p: &&Prefix| p.family() == Family::Ipv4;
            self.config
                .lan_prefixes
                .iter()
                .filter(v4)
                .copied()
                .collect()
        } else {
            let lan = |m: &crate::netmap::Map| Prefix::new(IpAddr::V4(m.lan.0), m.lan.1).ok();
            self.config.lan_map.iter().filter_map(lan).collect()
        };
        addr.and_then(|a| lans.iter().find(|p| p.contains(a)))
            .or(lans.first())
            .copied()
            .unwrap_or_else(|| Prefix::host(IpAddr::V4(self.config.overlay)))
    }

    /// A relayed-discovery datagram from a member (`len` bytes in the LAN
    /// ring's spare slot), addressed to us.
    pub(super) fn handle_discovery(&mut self, now: Instant, len: usize, info: &IpInfo) {
        let IpAddr::V4(from) = info.src else {
            return; // for_member_packet only lets IPv4 UDP through
        };
        if self.config.discovery.is_none() {
            self.stats.discovery_off += 1;
            return;
        }
        let lan = self.lan_v4(None);
        let packet = &self.lan.spare_ref()[..len];
        let payload = ip::udp_parts(packet, info).map_or(&[][..], |(_, _, p)| p);
        let origin = self.slots.by_overlay(info.src).and_then(|slot| {
            let s = self.slots.get(slot)?;
            Some(Origin {
                slot,
                lans: &s.wg.config.prefixes,
            })
        });
        let Ok(emit) = self.discovery.receive(now, lan, from, origin, payload) else {
            return; // counted by the relay
        };
        match emit.build(self.discovery_out.spare()) {
            Some(n) if self.discovery_out.commit(n as u16) => {}
            _ => self.stats.queue_full += 1,
        }
    }

    /// The next packet to send on the LAN, lent until the next call: an
    /// IPv4 packet (UDP, the original console's source address and port) for
    /// the LAN's broadcast address, 255.255.255.255 or a multicast group.
    /// The driver sends it as a link-layer broadcast or the group's
    /// multicast, not through the host's routing.
    #[must_use]
    pub fn poll_discovery_packet(&mut self) -> Option<&[u8]> {
        let (buf, len) = self.discovery_out.pop()?;
        Some(&buf[..len as usize])
    }

    /// The relay's counters, in total and per port.
    pub fn discovery_stats(&self) -> &discovery::Stats {
        self.discovery.stats()
    }

    /// The relay's policy: which ports and groups the driver's capture
    /// should take (what it captures beyond is counted and dropped).
    pub fn discovery_policy(&self) -> Option<&discovery::Policy> {
        self.config.discovery.as_ref()
    }
}
