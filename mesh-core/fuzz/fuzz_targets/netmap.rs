//! LAN aliases (issue 17): one packet through the stateless 1:1 mapping of
//! a home LAN to its alias, out and in.
//!
//! The input: byte 0 picks the lengths of the map (a /24 or a longer
//! prefix), the rest is the packet. Checked: no panic; the length never
//! changes; only a mapped packet changes, and only in its addresses and
//! checksums (the payload past the transport checksum is untouched unless
//! it is an ICMP error's quote); an IPv4 header whose checksum verified
//! still verifies, and so does a UDP or TCP checksum that verified over the
//! whole datagram; what went out comes back in to the same addresses.
#![no_main]

use core::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use mesh_core::ip;
use mesh_core::netmap::{map, Direction, Map};

/// The transport checksum of an unfragmented IPv4 packet verifies.
fn l4_ok(p: &[u8]) -> Option<bool> {
    let info = ip::parse(p).ok()?;
    if info.later_fragment || ip::more_fragments(p) {
        return None;
    }
    let l4 = p.get(info.header_len..info.total_len)?;
    let at = match info.protocol {
        ip::PROTO_TCP => 16,
        ip::PROTO_UDP => 6,
        _ => return None,
    };
    if l4.len() < at + 2 || (info.protocol == ip::PROTO_UDP && l4[6..8] == [0, 0]) {
        return None;
    }
    let mut pseudo = Vec::with_capacity(12 + l4.len());
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, info.protocol]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    Some(ip::checksum(&pseudo) == 0)
}

fn header_ok(p: &[u8]) -> bool {
    ip::parse(p).is_ok_and(|i| ip::checksum(&p[..i.header_len]) == 0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&lens, packet)) = data.split_first() else {
        return;
    };
    let len = 24 + (lens % 9);
    let Some(m) = Map::new(
        (Ipv4Addr::new(192, 168, 1, 0), len),
        (Ipv4Addr::new(10, 80, 166, 0), len),
    ) else {
        return;
    };
    let maps = [m];
    for dir in [Direction::Out, Direction::In] {
        let mut p = packet.to_vec();
        let header_before = header_ok(&p);
        let l4_before = l4_ok(&p);
        let changed = map(&mut p, &maps, dir);
        assert_eq!(p.len(), packet.len());
        if !changed {
            assert_eq!(p, packet, "an unmapped packet changed");
            continue;
        }
        if header_before {
            assert!(header_ok(&p), "the IPv4 header checksum broke");
        }
        if l4_before == Some(true) {
            assert_eq!(l4_ok(&p), Some(true), "the transport checksum broke");
        }
        // Back the other way: the addresses return.
        let back = match dir {
            Direction::Out => Direction::In,
            Direction::In => Direction::Out,
        };
        let at = match dir {
            Direction::Out => 12,
            Direction::In => 16,
        };
        let mut q = p.clone();
        // Only the address this direction mapped is mapped back: make the
        // other direction see it where it looks.
        let (a, b) = (at, if at == 12 { 16 } else { 12 });
        q.copy_within(a..a + 4, b);
        if map(&mut q, &maps, back) {
            assert_eq!(
                q[b..b + 4],
                packet[a..a + 4],
                "not mapped back to the same address"
            );
        }
    }
});
