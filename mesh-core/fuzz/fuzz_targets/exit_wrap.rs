//! The game exit's packet handling: a console's packet as it reaches the
//! exit path (or the inner packet of a wrapped one, which the exit parses
//! again after unwrapping).
//!
//! The input is one IP packet. Checked: `ip::parse`, `ip::udp_parts` and
//! `ip::more_fragments` do not panic; an IPv4 packet that parses wraps
//! (`ip::build_ipip4`, when it fits) into an outer packet that parses as IP
//! in IP of exactly 20 + its length, whose payload is the packet byte for
//! byte; a first-fragment UDP packet rebuilt as the exit NAT rebuilds
//! datagrams (`ip::build_udp4_plain`, new addresses, same ports and payload)
//! parses back with the same ports and payload and a valid UDP checksum.
#![no_main]

use core::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use mesh_core::ip;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = ip::parse(data) else {
        return;
    };
    let packet = &data[..info.total_len];
    let _ = ip::more_fragments(packet);
    let udp = ip::udp_parts(packet, &info);
    let IpAddr::V4(_) = info.src else {
        return;
    };
    let mut outer = [0u8; 1500];
    let from = Ipv4Addr::new(10, 0, 0, 1);
    let to = Ipv4Addr::new(10, 0, 0, 2);
    if let Some(n) = ip::build_ipip4(from, to, packet, &mut outer) {
        assert_eq!(n, 20 + packet.len());
        let o = ip::parse(&outer[..n]).expect("the wrapping parses");
        assert_eq!(o.protocol, ip::PROTO_IPIP);
        assert_eq!((o.src, o.dst), (IpAddr::V4(from), IpAddr::V4(to)));
        assert_eq!(&outer[o.header_len..n], packet, "unwrapped differs");
    } else {
        assert!(
            20 + packet.len() > outer.len(),
            "a packet that fits must wrap"
        );
    }
    if let Some((sport, dport, payload)) = udp {
        let mut rebuilt = [0u8; 1500];
        let public = Ipv4Addr::new(198, 51, 100, 2);
        let console = Ipv4Addr::new(192, 168, 1, 10);
        let Some(n) =
            ip::build_udp4_plain(public, console, sport, dport, 64, payload, &mut rebuilt)
        else {
            assert!(
                28 + payload.len() > rebuilt.len(),
                "a datagram that fits must build"
            );
            return;
        };
        let r = ip::parse(&rebuilt[..n]).expect("the rebuilt datagram parses");
        let (s, d, p) = ip::udp_parts(&rebuilt[..n], &r).expect("and is UDP");
        assert_eq!((s, d, p), (sport, dport, payload));
        // The UDP checksum over the pseudo-header verifies (sums to zero).
        let mut pseudo = std::vec::Vec::with_capacity(12 + n - 20);
        pseudo.extend_from_slice(&public.octets());
        pseudo.extend_from_slice(&console.octets());
        pseudo.extend_from_slice(&[0, ip::PROTO_UDP]);
        pseudo.extend_from_slice(&((n - 20) as u16).to_be_bytes());
        pseudo.extend_from_slice(&rebuilt[20..n]);
        assert_eq!(ip::checksum(&pseudo), 0, "UDP checksum");
    }
});
