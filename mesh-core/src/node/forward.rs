//! Forwarding: where a packet goes, as a verdict the root carries out.
//!
//! [`Router::for_lan_packet`] and [`Router::for_member_packet`] only look: at the packet,
//! the FIB ([`crate::rib`]) and the member table. They change nothing and do
//! no control-plane work; [`super::Node`] dispatches the [`Verdict`].
//!
//! - From a tunnel: the source must be inside some member's home, or ours (a
//!   reply to us) — anti-spoofing; relays never forward to martian
//!   destinations; for our overlay address → BFD, peer exchange, BGP, or
//!   (when the kernel holds the address) the kernel; else look up the
//!   destination: our LAN → the TUN device (once, of two redundant copies);
//!   another member → transit; no route → ICMP unreachable.
//! - From the LAN: look up; another member → its tunnel (small UDP also over
//!   a second first hop: redundant sending).

use core::hash::Hasher;
use core::net::IpAddr;

use embassy_time::{Duration, Instant};

use crate::bfd::BFD_PORT;
use crate::hash::Fnv;
use crate::ip::{self, IpInfo};
use crate::overlay::BGP_PORT;
use crate::pex::PEX_PORT;
use crate::rib::{PeerId, Source};
use crate::wg::Tunnel;

use super::engine::NodeRib;
use super::exchange::martian;
use super::slots::Slots;
use super::NodeConfig;

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To the LAN (the TUN device): our home, or the kernel's own address.
    ToLan,
    /// To the LAN, unless its redundant twin came first: this router is where
    /// small UDP packets sent over two paths leave the mesh.
    ToLanOnce,
    /// To the node's own stack (BGP).
    ToOverlay,
    /// Through member `to`'s tunnel, and a copy through `copy`'s (redundant
    /// sending over a second first hop).
    ToMember {
        to: PeerId,
        copy: Option<PeerId>,
    },
    /// From one member to another through us: relay policing, TTL, then
    /// member `to`'s tunnel.
    Transit {
        to: PeerId,
    },
    /// Control traffic for this node, from inside a tunnel.
    Control(Control),
    /// No route: the source hears ICMP net unreachable.
    Unreachable,
    Drop(DropReason),
}

/// Control traffic addressed to the node inside the tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// BFD (RFC 5881), UDP to port 3784.
    Bfd,
    /// Peer exchange, UDP between [`PEX_PORT`]s.
    Pex,
}

/// Why a packet is dropped; each has its counter in [`super::NodeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A broken IP header (`bad_inner`).
    BadHeader,
    /// From a tunnel, with a source no member's home holds (`spoofed`).
    Spoofed,
    /// A destination no relay serves: loopback, multicast, broadcast, link
    /// local (`relay_refused`).
    Martian,
    /// Transit with one of our own addresses as the source: a member posing
    /// as us (`relay_refused`).
    OwnSource,
    /// From the LAN, for our own LAN: a routing loop on the host (`no_route`).
    Loop,
    /// From the LAN, for our overlay address, which the kernel owns for all
    /// but BGP (`no_route`).
    NotOurs,
}

/// What forwarding reads: the FIB, the members, the node's settings.
pub(crate) struct Router<'v, T> {
    pub rib: &'v NodeRib,
    pub slots: &'v Slots<T>,
    pub config: &'v NodeConfig,
}

impl<T: Tunnel> Router<'_, T> {
    fn own_address(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v) => v == self.config.overlay,
            IpAddr::V6(v) => self.config.overlay_v6 == Some(v),
        }
    }

    fn own_home(&self, a: IpAddr) -> bool {
        self.own_address(a) || self.config.lan_prefixes.iter().any(|p| p.contains(a))
    }

    /// An IP packet from the LAN (the TUN device).
    pub fn for_lan_packet(&self, packet: &[u8], info: &IpInfo) -> Verdict {
        if self.own_address(info.dst) {
            return if self.config.overlay_in_kernel && !is_bgp(packet, info) {
                // The kernel owns the address for everything but BGP; it does
                // not route its own address into the TUN, so this is not for us.
                Verdict::Drop(DropReason::NotOurs)
            } else {
                Verdict::ToOverlay
            };
        }
        match self.route(packet, info) {
            Some(Source::Peer(to)) => Verdict::ToMember {
                to,
                copy: self
                    .redundant_candidate(packet, info)
                    .then(|| self.second_first_hop(info, to))
                    .flatten(),
            },
            // The kernel sent us a packet for our own LAN: a routing loop on
            // the host. Drop it rather than bounce it back.
            Some(Source::Local) => Verdict::Drop(DropReason::Loop),
            None => Verdict::Unreachable,
        }
    }

    /// An inner packet from a member's tunnel, trimmed to its IP length.
    pub fn for_member_packet(&self, packet: &[u8], info: &IpInfo) -> Verdict {
        if !self.source_allowed(info.src) {
            return Verdict::Drop(DropReason::Spoofed);
        }
        if martian(info.dst) {
            // Never relayed, never given to the kernel: the relay's loopback,
            // broadcast and the like are not the mesh's business.
            return Verdict::Drop(DropReason::Martian);
        }
        if self.own_address(info.dst) {
            return match ip::udp_parts(packet, info) {
                Some((_, BFD_PORT, _)) => Verdict::Control(Control::Bfd),
                Some((PEX_PORT, PEX_PORT, _)) => Verdict::Control(Control::Pex),
                _ if self.config.overlay_in_kernel && !is_bgp(packet, info) => Verdict::ToLan,
                _ => Verdict::ToOverlay,
            };
        }
        match self.route(packet, info) {
            Some(Source::Local) if self.redundant_candidate(packet, info) => Verdict::ToLanOnce,
            Some(Source::Local) => Verdict::ToLan,
            // Transit: we are a router on the path. The destination is a
            // member's announced prefix (nothing else is routed); one of our
            // own addresses as the source means a member is spoofing us.
            Some(Source::Peer(_)) if self.own_home(info.src) => {
                Verdict::Drop(DropReason::OwnSource)
            }
            Some(Source::Peer(to)) => Verdict::Transit { to },
            None => Verdict::Unreachable,
        }
    }

    /// The source of a packet from a tunnel must lie in some member's home,
    /// or be ours (a reply to us).
    fn source_allowed(&self, src: IpAddr) -> bool {
        self.own_home(src)
            || self
                .slots
                .iter()
                .any(|(_, s)| s.wg.config.owns_address(src))
    }

    /// The first hop towards the destination: one path, or one of several
    /// equal ones chosen by the flow (ECMP).
    pub fn route(&self, packet: &[u8], info: &IpInfo) -> Option<Source> {
        let entry = self.rib.lookup(info.dst)?;
        let set = entry.multipath();
        match set.len() {
            0 => None,
            1 => Some(set[0].source),
            n => Some(set[(ip::flow_hash(packet, info) as usize) % n].source),
        }
    }

    /// Redundant sending covers small UDP packets: game traffic.
    fn redundant_candidate(&self, packet: &[u8], info: &IpInfo) -> bool {
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
}

/// TCP to or from the BGP port.
pub(crate) fn is_bgp(packet: &[u8], info: &IpInfo) -> bool {
    let ports = packet.get(info.header_len..info.header_len + 4);
    info.protocol == ip::PROTO_TCP
        && !info.later_fragment
        && ports.is_some_and(|p| {
            u16::from_be_bytes([p[0], p[1]]) == BGP_PORT
                || u16::from_be_bytes([p[2], p[3]]) == BGP_PORT
        })
}

/// How long a delivered redundant packet is remembered, to drop its twin.
const DEDUP_WINDOW: Duration = Duration::from_millis(500);
const DEDUP_SLOTS: usize = 4096;
const DEDUP_PROBE: usize = 8;

/// Recently delivered small UDP packets, keyed by what identifies a packet
/// across paths (addresses, protocol, IPv4 identification, and the start of
/// the UDP datagram; never the TTL or checksum, which differ per path).
#[derive(Debug)]
pub(crate) struct Dedup {
    slots: [(u64, Instant); DEDUP_SLOTS],
}

impl Dedup {
    pub fn new() -> Dedup {
        Dedup {
            slots: [(0, Instant::from_ticks(0)); DEDUP_SLOTS],
        }
    }

    fn key(packet: &[u8], info: &IpInfo) -> u64 {
        let mut h = Fnv::new();
        match (info.src, info.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h.write(&s.octets());
                h.write(&d.octets());
                h.write(packet.get(4..6).unwrap_or(&[])); // identification
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                h.write(&s.octets());
                h.write(&d.octets());
            }
            _ => {}
        }
        h.write(&[info.protocol]);
        let end = info.total_len.min(info.header_len + 8 + 64);
        h.write(packet.get(info.header_len..end).unwrap_or(&[]));
        h.finish() | 1 // never the empty-slot key
    }

    /// Records the packet; false when it was seen within the window.
    pub fn first_sighting(&mut self, now: Instant, packet: &[u8], info: &IpInfo) -> bool {
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

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    use core::net::Ipv4Addr;

    use crate::bgp::attr::{AsPath, PathAttributes};
    use crate::prefix::Prefix;
    use crate::wg::boring::BoringTunnel;

    use super::super::engine::peer_info;
    use super::super::slots::testing::{asn, big_stack, lan, member, node_config, overlay, slots};

    const T0: Instant = Instant::from_secs(100);

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    /// A host in node `n`'s home.
    fn host(n: u8) -> Ipv4Addr {
        ip(192, 168, n, 10)
    }

    /// Node 1's view: members 2 and 3 have tunnels (slots 0 and 1) and
    /// announce their homes and overlay addresses; member 4 (slot 2) has
    /// none, and its home is reached through 2 (best: the lower router id)
    /// or 3.
    struct Net {
        rib: Box<NodeRib>,
        slots: Box<Slots<BoringTunnel>>,
        config: NodeConfig,
    }

    fn path(asns: &[u32], next_hop: Ipv4Addr) -> PathAttributes {
        PathAttributes {
            as_path: AsPath::from_sequence(asns).unwrap(),
            next_hop: Some(next_hop),
            ..Default::default()
        }
    }

    fn net() -> Net {
        let config = node_config(1);
        let members = [member(2), member(3), member(4)];
        let slots = slots(T0, 1, &members);
        let mut rib = Box::new(NodeRib::new(config.asn, config.max_paths));
        // What the engine originates.
        for p in [Prefix::host(IpAddr::V4(config.overlay)), lan(1)] {
            rib.update(Source::Local, p, &PathAttributes::default())
                .unwrap();
        }
        for (slot, m) in members.iter().enumerate() {
            rib.set_peer(slot as PeerId, peer_info(m, None));
        }
        for (slot, n) in [(0, 2), (1, 3)] {
            let p = path(&[asn(n)], overlay(n));
            rib.update(Source::Peer(slot), lan(n), &p).unwrap();
            rib.update(Source::Peer(slot), Prefix::host(IpAddr::V4(overlay(n))), &p)
                .unwrap();
            let through = path(&[asn(n), asn(4)], overlay(n));
            rib.update(Source::Peer(slot), lan(4), &through).unwrap();
        }
        Net { rib, slots, config }
    }

    impl Net {
        fn router(&self) -> Router<'_, BoringTunnel> {
            Router {
                rib: &self.rib,
                slots: &self.slots,
                config: &self.config,
            }
        }

        fn member_sends(&self, packet: &[u8]) -> Verdict {
            let info = ip::parse(packet).unwrap();
            self.router().for_member_packet(packet, &info)
        }

        fn lan_sends(&self, packet: &[u8]) -> Verdict {
            let info = ip::parse(packet).unwrap();
            self.router().for_lan_packet(packet, &info)
        }
    }

    /// A UDP packet with `len` bytes of payload.
    fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Vec<u8> {
        udp_ttl(src, dst, sport, dport, len, 64)
    }

    fn udp_ttl(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        len: usize,
        ttl: u8,
    ) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = std::vec![0u8; 28 + len];
        let n = ip::build_udp4(src, dst, sport, dport, ttl, &payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// A TCP segment (a bare SYN), header checksum and all.
    fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = std::vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[8] = 64;
        p[9] = ip::PROTO_TCP;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let c = ip::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[32] = 5 << 4; // data offset
        p[33] = 0x02; // SYN
        p
    }

    const GAME: u16 = 3074;

    // ---- from a member's tunnel ----

    #[test]
    fn a_packet_from_a_member_with_a_source_no_home_holds_is_spoofed() {
        big_stack(|| {
            let n = net();
            for src in [ip(8, 8, 8, 8), ip(192, 168, 5, 10), ip(10, 0, 0, 9)] {
                let p = udp(src, host(1), GAME, GAME, 50);
                assert_eq!(
                    n.member_sends(&p),
                    Verdict::Drop(DropReason::Spoofed),
                    "{src}"
                );
            }
            // Every member's home is fine, ours too (a reply to us).
            for src in [host(2), host(4), overlay(3), host(1), overlay(1)] {
                let p = udp(src, host(1), GAME, GAME, 50);
                assert_ne!(
                    n.member_sends(&p),
                    Verdict::Drop(DropReason::Spoofed),
                    "{src}"
                );
            }
        });
    }

    #[test]
    fn loopback_multicast_and_broadcast_destinations_are_martians() {
        big_stack(|| {
            let n = net();
            for dst in [ip(127, 0, 0, 1), ip(224, 0, 0, 5), ip(255, 255, 255, 255)] {
                let p = udp(host(2), dst, GAME, GAME, 50);
                assert_eq!(
                    n.member_sends(&p),
                    Verdict::Drop(DropReason::Martian),
                    "{dst}"
                );
            }
        });
    }

    #[test]
    fn bfd_and_peer_exchange_to_our_overlay_address_are_control_traffic() {
        big_stack(|| {
            let n = net();
            let bfd = udp(overlay(2), overlay(1), 49152, BFD_PORT, 24);
            assert_eq!(n.member_sends(&bfd), Verdict::Control(Control::Bfd));
            let pex = udp(overlay(2), overlay(1), PEX_PORT, PEX_PORT, 40);
            assert_eq!(n.member_sends(&pex), Verdict::Control(Control::Pex));
            // Peer exchange is between the two ports only.
            let half = udp(overlay(2), overlay(1), 40000, PEX_PORT, 40);
            assert_eq!(n.member_sends(&half), Verdict::ToOverlay);
        });
    }

    #[test]
    fn bgp_to_our_overlay_address_goes_to_our_stack_whoever_holds_the_address() {
        big_stack(|| {
            let mut n = net();
            for kernel in [false, true] {
                n.config.overlay_in_kernel = kernel;
                let open = tcp(overlay(2), overlay(1), 40000, BGP_PORT);
                assert_eq!(n.member_sends(&open), Verdict::ToOverlay, "kernel {kernel}");
                let reply = tcp(overlay(2), overlay(1), BGP_PORT, 40000);
                assert_eq!(
                    n.member_sends(&reply),
                    Verdict::ToOverlay,
                    "kernel {kernel}"
                );
            }
        });
    }

    #[test]
    fn other_traffic_to_our_overlay_address_goes_to_whoever_holds_it() {
        big_stack(|| {
            let mut n = net();
            let ssh = tcp(overlay(2), overlay(1), 40000, 22);
            let game = udp(host(2), overlay(1), GAME, GAME, 50);
            n.config.overlay_in_kernel = true;
            assert_eq!(n.member_sends(&ssh), Verdict::ToLan);
            assert_eq!(n.member_sends(&game), Verdict::ToLan);
            n.config.overlay_in_kernel = false;
            assert_eq!(n.member_sends(&ssh), Verdict::ToOverlay);
            assert_eq!(n.member_sends(&game), Verdict::ToOverlay);
        });
    }

    #[test]
    fn small_udp_to_our_lan_leaves_once_and_the_rest_leaves_as_it_comes() {
        big_stack(|| {
            let mut n = net();
            let small = udp(host(2), host(1), GAME, GAME, 100);
            let large = udp(host(2), host(1), GAME, GAME, 1000);
            let tcp = tcp(host(2), host(1), 40000, 443);
            assert_eq!(n.config.redundancy_max_len, Some(300));
            assert_eq!(n.member_sends(&small), Verdict::ToLanOnce);
            assert_eq!(n.member_sends(&large), Verdict::ToLan);
            assert_eq!(n.member_sends(&tcp), Verdict::ToLan);
            // The limit is the IP length: 28 + 272 fits, 28 + 273 does not.
            let edge = udp(host(2), host(1), GAME, GAME, 272);
            assert_eq!(n.member_sends(&edge), Verdict::ToLanOnce);
            let over = udp(host(2), host(1), GAME, GAME, 273);
            assert_eq!(n.member_sends(&over), Verdict::ToLan);
            n.config.redundancy_max_len = None;
            assert_eq!(n.member_sends(&small), Verdict::ToLan);
        });
    }

    #[test]
    fn to_another_members_home_is_transit_unless_it_poses_as_us() {
        big_stack(|| {
            let n = net();
            let p = udp(host(2), host(3), GAME, GAME, 50);
            assert_eq!(n.member_sends(&p), Verdict::Transit { to: 1 });
            let p = udp(host(3), host(4), GAME, GAME, 50);
            assert_eq!(n.member_sends(&p), Verdict::Transit { to: 0 });
            for ours in [host(1), overlay(1)] {
                let p = udp(ours, host(3), GAME, GAME, 50);
                assert_eq!(
                    n.member_sends(&p),
                    Verdict::Drop(DropReason::OwnSource),
                    "{ours}"
                );
            }
        });
    }

    #[test]
    fn a_destination_with_no_route_is_unreachable() {
        big_stack(|| {
            let n = net();
            let p = udp(host(2), ip(192, 168, 9, 10), GAME, GAME, 50);
            assert_eq!(n.member_sends(&p), Verdict::Unreachable);
            let p = udp(host(2), ip(93, 184, 216, 34), GAME, GAME, 50);
            assert_eq!(n.member_sends(&p), Verdict::Unreachable);
        });
    }

    // ---- from the LAN ----

    #[test]
    fn a_packet_from_the_lan_for_our_own_lan_is_a_loop() {
        big_stack(|| {
            let n = net();
            let p = udp(host(1), ip(192, 168, 1, 20), GAME, GAME, 50);
            assert_eq!(n.lan_sends(&p), Verdict::Drop(DropReason::Loop));
        });
    }

    #[test]
    fn from_the_lan_our_overlay_address_is_ours_only_for_bgp_when_the_kernel_holds_it() {
        big_stack(|| {
            let mut n = net();
            let ping = udp(host(1), overlay(1), GAME, GAME, 50);
            let bgp = tcp(host(1), overlay(1), 40000, BGP_PORT);
            n.config.overlay_in_kernel = true;
            assert_eq!(n.lan_sends(&ping), Verdict::Drop(DropReason::NotOurs));
            assert_eq!(n.lan_sends(&bgp), Verdict::ToOverlay);
            n.config.overlay_in_kernel = false;
            assert_eq!(n.lan_sends(&ping), Verdict::ToOverlay);
        });
    }

    #[test]
    fn small_udp_to_a_home_with_two_paths_gets_a_copy_over_the_second_best_first_hop() {
        big_stack(|| {
            let mut n = net();
            let small = udp(host(1), host(4), GAME, GAME, 100);
            let large = udp(host(1), host(4), GAME, GAME, 1000);
            let tcp = tcp(host(1), host(4), 40000, 443);
            assert_eq!(
                n.lan_sends(&small),
                Verdict::ToMember {
                    to: 0,
                    copy: Some(1)
                }
            );
            assert_eq!(n.lan_sends(&large), Verdict::ToMember { to: 0, copy: None });
            assert_eq!(n.lan_sends(&tcp), Verdict::ToMember { to: 0, copy: None });
            // One path: no second first hop.
            let one_path = udp(host(1), host(2), GAME, GAME, 100);
            assert_eq!(
                n.lan_sends(&one_path),
                Verdict::ToMember { to: 0, copy: None }
            );
            // Redundancy off.
            n.config.redundancy_max_len = None;
            assert_eq!(n.lan_sends(&small), Verdict::ToMember { to: 0, copy: None });
        });
    }

    #[test]
    fn from_the_lan_a_destination_with_no_route_is_unreachable() {
        big_stack(|| {
            let n = net();
            let p = udp(host(1), ip(192, 168, 9, 10), GAME, GAME, 50);
            assert_eq!(n.lan_sends(&p), Verdict::Unreachable);
        });
    }

    // ---- redundant copies at the egress ----

    #[test]
    fn the_twin_of_a_packet_within_500_ms_is_not_a_first_sighting() {
        let mut d = Dedup::new();
        let p = udp(host(4), host(1), GAME, GAME, 100);
        let info = ip::parse(&p).unwrap();
        assert!(d.first_sighting(T0, &p, &info));
        let twin_at = T0 + Duration::from_millis(499);
        assert!(!d.first_sighting(twin_at, &p, &info));
        // Another packet of the flow is new.
        let next = udp(host(4), host(1), GAME, GAME, 101);
        assert!(d.first_sighting(twin_at, &next, &ip::parse(&next).unwrap()));
    }

    #[test]
    fn a_twin_with_another_ttl_is_still_the_same_packet() {
        let mut d = Dedup::new();
        let p = udp_ttl(host(4), host(1), GAME, GAME, 100, 63);
        let longer_way = udp_ttl(host(4), host(1), GAME, GAME, 100, 62);
        assert_ne!(p, longer_way);
        assert!(d.first_sighting(T0, &p, &ip::parse(&p).unwrap()));
        let later = T0 + Duration::from_millis(30);
        assert!(!d.first_sighting(later, &longer_way, &ip::parse(&longer_way).unwrap()));
    }

    #[test]
    fn after_500_ms_the_same_packet_is_new_again() {
        let mut d = Dedup::new();
        let p = udp(host(4), host(1), GAME, GAME, 100);
        let info = ip::parse(&p).unwrap();
        assert!(d.first_sighting(T0, &p, &info));
        assert!(d.first_sighting(T0 + DEDUP_WINDOW, &p, &info));
        assert_eq!(DEDUP_WINDOW, Duration::from_millis(500));
    }
}
