use super::*;

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

use core::net::Ipv4Addr;

use crate::bgp::attr::{AsPath, PathAttributes};
use crate::prefix::Prefix;
use crate::wg::boring::BoringTunnel;

use super::super::engine::peer_info;
use crate::node::tests::fixtures::{asn, big_stack, lan, member, node_config, overlay, slots};

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
    slots: Box<Slots<'static, BoringTunnel>>,
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
    fn router(&self) -> Router<'_, 'static, BoringTunnel> {
        Router {
            rib: &self.rib,
            slots: &self.slots,
            config: &self.config,
        }
    }

    fn member_sends(&self, packet: &[u8]) -> Verdict {
        // From no member whose path matters here.
        self.member_sends_from(PeerId::MAX, packet)
    }

    fn member_sends_from(&self, slot: PeerId, packet: &[u8]) -> Verdict {
        let info = ip::parse(packet).unwrap();
        self.router().for_member_packet(packet, &info, slot)
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

fn udp_ttl(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize, ttl: u8) -> Vec<u8> {
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
        // Every member's home is fine.
        for src in [host(2), host(4), overlay(3)] {
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
fn a_member_posing_as_our_own_home_to_our_own_home_is_spoofed() {
    big_stack(|| {
        let mut n = net();
        for kernel in [false, true] {
            n.config.overlay_in_kernel = kernel;
            for src in [host(1), ip(192, 168, 1, 1), overlay(1)] {
                for dst in [host(1), ip(192, 168, 1, 77), overlay(1)] {
                    let p = udp(src, dst, GAME, GAME, 50);
                    assert_eq!(
                        n.member_sends(&p),
                        Verdict::Drop(DropReason::Spoofed),
                        "{src} -> {dst}, kernel {kernel}"
                    );
                }
                let bfd = udp(src, overlay(1), 49152, BFD_PORT, 24);
                assert_eq!(n.member_sends(&bfd), Verdict::Drop(DropReason::Spoofed));
            }
        }
        // Our home as the source is not refused as such: where no route
        // leads, the source (ours) hears why.
        let p = udp(host(1), ip(10, 9, 9, 9), GAME, GAME, 50);
        assert_eq!(n.member_sends(&p), Verdict::Unreachable);
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
        // A UDP header cut short by the IP length is no game packet, nor is
        // a later fragment.
        let bare = udp(host(2), host(1), GAME, GAME, 0);
        assert_eq!(n.member_sends(&bare), Verdict::ToLanOnce);
        let short = with_ip_header(&bare[..27], |h| {
            h[2..4].copy_from_slice(&27u16.to_be_bytes())
        });
        assert_eq!(n.member_sends(&short), Verdict::ToLan);
        let fragment = with_ip_header(&small, |h| h[6..8].copy_from_slice(&1u16.to_be_bytes()));
        assert_eq!(n.member_sends(&fragment), Verdict::ToLan);
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
fn a_packet_from_the_lan_with_a_source_outside_our_home_never_enters_the_mesh() {
    big_stack(|| {
        let mut n = net();
        // A LAN host posing as a friend's console or router, a stranger,
        // a subnet we do not announce: dropped at the edge (BCP 38).
        for src in [host(2), overlay(3), ip(8, 8, 8, 8), ip(192, 168, 5, 10)] {
            let p = udp(src, host(4), GAME, GAME, 50);
            assert_eq!(
                n.lan_sends(&p),
                Verdict::Drop(DropReason::ForeignSource),
                "{src}"
            );
        }
        // Our LAN's hosts and the router itself go out.
        for src in [host(1), overlay(1)] {
            let p = udp(src, host(4), GAME, GAME, 50);
            assert!(
                matches!(n.lan_sends(&p), Verdict::ToMember { to: 0, .. }),
                "{src}"
            );
        }
        // A mapped LAN: announced as its alias, its hosts send as they are
        // on the LAN (the alias is put in on the way out).
        let alias = ip(10, 80, 1, 0);
        let map = crate::netmap::Map::new((ip(192, 168, 1, 0), 24), (alias, 24)).unwrap();
        n.config.lan_prefixes.clear();
        n.config
            .lan_prefixes
            .push(Prefix::new(IpAddr::V4(alias), 24).unwrap())
            .unwrap();
        n.config.lan_map.push(map).unwrap();
        let p = udp(host(1), host(4), GAME, GAME, 50);
        assert!(matches!(n.lan_sends(&p), Verdict::ToMember { to: 0, .. }));
        let p = udp(host(2), host(4), GAME, GAME, 50);
        assert_eq!(n.lan_sends(&p), Verdict::Drop(DropReason::ForeignSource));
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

#[test]
fn packets_that_differ_in_any_keyed_byte_are_different_packets() {
    // Every byte of the UDP header and of the first 8 payload bytes is in
    // the key, and so is the IPv4 identification; a payload that differs
    // further on carries another UDP checksum; without a checksum, every
    // byte of the first 64 payload bytes is in the key. A packet that
    // differs in one of them is no twin. (2,000 distinct packets, within
    // the window.)
    let mut d = Dedup::new();
    let base = udp(host(4), host(1), GAME, GAME, 100);
    assert_ne!(base[26..28], [0, 0], "built with a UDP checksum");
    let mut no_sum = base.clone();
    no_sum[26..28].copy_from_slice(&[0, 0]);
    let at = |i: u32| T0 + Duration::from_micros(u64::from(i));
    let mut n = 0;
    for (base, keyed) in [(&base, 8), (&no_sum, 64)] {
        for byte in 20..20 + 8 + keyed {
            for bit in [0x01u8, 0x80] {
                let mut p = base.clone();
                p[byte] ^= bit;
                if (26..28).contains(&byte) && p[26..28] == [0, 0] {
                    continue; // the checksummed packet made checksum-less
                }
                assert!(
                    d.first_sighting(at(n), &p, &ip::parse(&p).unwrap()),
                    "byte {byte} bit {bit:#x} of {keyed}"
                );
                n += 1;
            }
        }
    }
    // (Another port than the flips above, one of which made the checksum
    // these packets carry.)
    for last in 1..=20u8 {
        let mut payload: Vec<u8> = (0..100).map(|i| i as u8).collect();
        payload[99] = payload[99].wrapping_add(last);
        let mut p = std::vec![0u8; 128];
        let len = ip::build_udp4(host(4), host(1), GAME + 1, GAME, 64, &payload, &mut p).unwrap();
        p.truncate(len);
        assert!(
            d.first_sighting(at(n), &p, &ip::parse(&p).unwrap()),
            "last byte {last}"
        );
        n += 1;
    }
    for id in 1..=1800u16 {
        let mut p = base.clone();
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = ip::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(
            d.first_sighting(at(n), &p, &ip::parse(&p).unwrap()),
            "id {id}"
        );
        n += 1;
    }
    // And the original, still a first sighting, then a twin.
    assert!(d.first_sighting(at(n), &base, &ip::parse(&base).unwrap()));
    assert!(!d.first_sighting(at(n + 1), &base, &ip::parse(&base).unwrap()));
}

/// `n` packets of the game flow whose keys share `base`'s bucket.
fn same_bucket(base: &[u8], n: usize) -> Vec<Vec<u8>> {
    let bucket =
        |p: &[u8]| Dedup::key(p, &ip::parse(p).unwrap()) as usize % (DEDUP_SLOTS / DEDUP_WAYS);
    let want = bucket(base);
    (0..u16::MAX)
        .map(|id| {
            let mut p = base.to_vec();
            p[4..6].copy_from_slice(&id.to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let c = ip::checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        })
        .filter(|p| p[..] != base[..] && bucket(p) == want)
        .take(n)
        .collect()
}

#[test]
fn a_twin_is_caught_unless_its_whole_bucket_was_taken_meanwhile() {
    let base = udp(host(4), host(1), GAME, GAME, 100);
    let info = ip::parse(&base).unwrap();
    let others = same_bucket(&base, DEDUP_WAYS);
    assert_eq!(others.len(), DEDUP_WAYS);
    let at = |ms: u64| T0 + Duration::from_millis(ms);
    // The bucket's other slots taken: the twin is still caught.
    let mut d = Dedup::new();
    assert!(d.first_sighting(at(0), &base, &info));
    for (i, p) in others[..DEDUP_WAYS - 1].iter().enumerate() {
        assert!(d.first_sighting(at(1 + i as u64), p, &ip::parse(p).unwrap()));
    }
    assert!(!d.first_sighting(at(10), &base, &info));
    // One more packet of the bucket replaces the oldest record, ours: the
    // twin passes (a duplicate delivered), and the others are still known.
    let mut d = Dedup::new();
    assert!(d.first_sighting(at(0), &base, &info));
    for (i, p) in others.iter().enumerate() {
        assert!(d.first_sighting(at(1 + i as u64), p, &ip::parse(p).unwrap()));
    }
    assert!(d.first_sighting(at(10), &base, &info));
    let last = &others[DEDUP_WAYS - 1];
    assert!(!d.first_sighting(at(11), last, &ip::parse(last).unwrap()));
    // Expired records are free again: after the window, a full bucket
    // takes the packet without losing a live record.
    let later = at(0) + DEDUP_WINDOW + Duration::from_millis(20);
    assert!(d.first_sighting(later, &base, &info));
}

#[test]
fn among_200_packets_of_the_window_every_twin_is_caught() {
    // 200 live records in 1,024 buckets of 4: a bucket overflows for these
    // packets only if 4 more of them fall in it (none does here; for random
    // keys some 1 in 20,000).
    let mut d = Dedup::new();
    let packets: Vec<Vec<u8>> = (0..200u16)
        .map(|i| udp(host(4), host(1), GAME + i, GAME, 100))
        .collect();
    let at = |i: usize| T0 + Duration::from_micros(i as u64 * 100);
    for (i, p) in packets.iter().enumerate() {
        assert!(d.first_sighting(at(i), p, &ip::parse(p).unwrap()));
    }
    for (i, p) in packets.iter().enumerate() {
        assert!(
            !d.first_sighting(at(200 + i), p, &ip::parse(p).unwrap()),
            "twin {i}"
        );
    }
}

#[test]
fn short_payloads_that_differ_in_any_byte_are_different_packets() {
    // Under 8 payload octets the key takes a partial word: each octet of
    // it counts, with and without a UDP checksum.
    let mut d = Dedup::new();
    let mut n = 0u64;
    for len in 1..8usize {
        let base = udp(host(4), host(1), GAME, GAME + len as u16, len);
        for sum in [true, false] {
            for byte in 28..28 + len {
                let mut p = base.clone();
                if !sum {
                    p[26..28].copy_from_slice(&[0, 0]);
                }
                p[byte] ^= 0x80;
                if sum {
                    // Keep the checksum as it was: only the octet differs.
                    p[26..28].copy_from_slice(&base[26..28]);
                }
                let at = T0 + Duration::from_micros(n);
                assert!(
                    d.first_sighting(at, &p, &ip::parse(&p).unwrap()),
                    "payload {len}, octet {byte}, checksum {sum}"
                );
                n += 1;
            }
        }
    }
}

/// `p` with its IPv4 header changed by `edit` and its checksum made right.
fn with_ip_header(p: &[u8], edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut p = p.to_vec();
    edit(&mut p[..20]);
    p[10..12].copy_from_slice(&[0, 0]);
    let c = ip::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Node 1 is a transit for 4's home (4 has no tunnel here): best through 2,
/// else through 3. With 2's traffic moved (its BFD went down), a packet
/// from 3 for 4's home goes to 2 all the same: 3's path leads back through
/// us, and sending it back would bounce it between us until BFD or BGP
/// settled. From anyone else, 3's path is the one to take.
#[test]
fn with_every_best_path_moved_a_packet_never_goes_back_where_it_came_from() {
    big_stack(|| {
        let mut net = net();
        let to4 = udp(host(3), host(4), 5000, 6000, 20);
        assert_eq!(net.member_sends_from(1, &to4), Verdict::Transit { to: 0 });
        net.slots.get_mut(0).unwrap().bfd.set_moved(true);
        assert_eq!(net.member_sends(&to4), Verdict::Transit { to: 1 });
        assert_eq!(net.member_sends_from(1, &to4), Verdict::Transit { to: 0 });
    });
}

/// Member slot `slot`'s BFD went down `ms` after T0.
fn went_down(net: &mut Net, slot: usize, ms: u64) {
    net.slots
        .get_mut(slot)
        .unwrap()
        .bfd
        .went_down(T0 + Duration::from_millis(ms));
}

/// Both paths to 4's home moved: 2's BFD went down first (its router lost
/// power), then 3's blipped. Traffic stays on 3, the member heard from
/// last, rather than going back to 2, silent for longer and likelier dead
/// (the VM square lost C1→C4 for 475 ms this way until BGP gave up on 2).
/// In the other order, 2 is the one heard from last. A packet 3 sent is
/// still never sent back to 3.
#[test]
fn with_every_path_moved_the_member_heard_from_last_carries_the_traffic() {
    big_stack(|| {
        let mut net = net();
        net.config.redundancy_max_len = None;
        let game = udp(host(1), host(4), GAME, GAME, 100);
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember { to: 0, copy: None }
        );
        went_down(&mut net, 0, 0);
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember { to: 1, copy: None }
        );
        went_down(&mut net, 1, 1500);
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember { to: 1, copy: None }
        );
        let from3 = udp(host(3), host(4), 5000, 6000, 20);
        assert_eq!(net.member_sends_from(1, &from3), Verdict::Transit { to: 0 });
        assert_eq!(net.member_sends(&from3), Verdict::Transit { to: 1 });

        let mut net = self::net();
        net.config.redundancy_max_len = None;
        went_down(&mut net, 1, 0);
        went_down(&mut net, 0, 1500);
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember { to: 0, copy: None }
        );
    });
}

/// Three paths to 4's home, every one moved: 4 itself (slot 2, the best,
/// silent longest), 2 (slot 0) and 3 (slot 1, heard from last). A game
/// packet goes to 3, and its copy to 2, the next heard from last, not to
/// the best-ranked silent one.
#[test]
fn with_every_path_moved_the_copy_goes_to_the_next_member_heard_from_last() {
    big_stack(|| {
        let mut net = net();
        let direct = path(&[asn(4)], overlay(4));
        net.rib.update(Source::Peer(2), lan(4), &direct).unwrap();
        let game = udp(host(1), host(4), GAME, GAME, 100);
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember {
                to: 2,
                copy: Some(0)
            }
        );
        for (slot, ms) in [(2, 0), (0, 1000), (1, 1500)] {
            went_down(&mut net, slot, ms);
        }
        assert_eq!(
            net.lan_sends(&game),
            Verdict::ToMember {
                to: 1,
                copy: Some(0)
            }
        );
    });
}
