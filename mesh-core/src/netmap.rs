//! Stateless 1:1 prefix mapping of a home's LAN to its mesh alias (issue
//! 17, part 2): two homes on the same LAN prefix (OpenWrt's default
//! 192.168.1.0/24 in both) reach each other's consoles at their aliases.
//!
//! Each mapped LAN has an alias prefix of the same length; an address keeps
//! its host bits (NETMAP, as in iptables' and nftables' `netmap`):
//! 192.168.1.10 in a LAN mapped to 10.64.7.0/24 is 10.64.7.10 in the mesh.
//! - **Out** (LAN → mesh): a source inside the LAN becomes its alias. For an
//!   ICMP error, the packet it quotes (which came from the mesh, to this
//!   LAN) gets its destination mapped the same way, so the sender can match
//!   the error.
//! - **In** (mesh → LAN): a destination inside the alias becomes the LAN
//!   address, and an ICMP error's quoted source likewise.
//!
//! Stateless, so every protocol, every fragment and both directions map
//! without a connection table, and the router's kernel keeps its LAN as it
//! is. Done in the node on the packet path (not by nftables rules meshd
//! would install): the node already holds the packet, the mapping follows
//! the node's own configuration with no rule set to keep in step, and the
//! simulation tests it like the rest of forwarding. Checksums are updated
//! incrementally (RFC 1624) for the IPv4 header, TCP and UDP (a UDP
//! checksum of zero stays zero); an ICMP message's is computed anew over the
//! message, since its quoted packet changed. IPv4 only: IPv6 homes have
//! unique prefixes already.

use core::net::Ipv4Addr;

use crate::ip::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// One home LAN and its alias in the mesh: both IPv4, the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Map {
    pub lan: (Ipv4Addr, u8),
    pub alias: (Ipv4Addr, u8),
}

impl Map {
    /// A map of `lan` to `alias`; `None` unless both are IPv4 prefixes of
    /// the same length (their host bits are ignored).
    pub fn new(lan: (Ipv4Addr, u8), alias: (Ipv4Addr, u8)) -> Option<Map> {
        (lan.1 == alias.1 && lan.1 <= 32).then(|| Map {
            lan: (network(lan), lan.1),
            alias: (network(alias), alias.1),
        })
    }

    /// `a` in the LAN, as it is known in the mesh.
    pub fn to_alias(&self, a: Ipv4Addr) -> Option<Ipv4Addr> {
        translate(a, self.lan, self.alias)
    }

    /// `a` in the alias, as it is on the LAN.
    pub fn to_lan(&self, a: Ipv4Addr) -> Option<Ipv4Addr> {
        translate(a, self.alias, self.lan)
    }
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - len as u32).unwrap_or(0)
}

fn network((a, len): (Ipv4Addr, u8)) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & mask(len))
}

fn translate(a: Ipv4Addr, from: (Ipv4Addr, u8), to: (Ipv4Addr, u8)) -> Option<Ipv4Addr> {
    let m = mask(from.1);
    let a = u32::from(a);
    (a & m == u32::from(from.0)).then(|| Ipv4Addr::from(u32::from(to.0) | (a & !m)))
}

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the LAN into the mesh: sources become aliases.
    Out,
    /// From the mesh to the LAN: destinations become LAN addresses.
    In,
}

/// Maps `packet` (IPv4, in place) by the first of `maps` that applies;
/// false when none does (or it is not IPv4), the packet untouched.
pub fn map(packet: &mut [u8], maps: &[Map], dir: Direction) -> bool {
    if packet.first().is_none_or(|b| b >> 4 != 4) {
        return false;
    }
    // The address this direction rewrites: the source going out, the
    // destination coming in.
    let at = match dir {
        Direction::Out => 12,
        Direction::In => 16,
    };
    let Some(old) = addr_at(packet, at) else {
        return false;
    };
    let Some(new) = maps.iter().find_map(|m| match dir {
        Direction::Out => m.to_alias(old),
        Direction::In => m.to_lan(old),
    }) else {
        return false;
    };
    let Ok(info) = ip::parse(packet) else {
        return false;
    };
    rewrite_ip(packet, at, old, new);
    let hl = info.header_len;
    let end = info.total_len.min(packet.len());
    if info.later_fragment || hl >= end {
        return true;
    }
    match info.protocol {
        PROTO_TCP => adjust_at(packet, hl + 16, end, old, new),
        // Zero: no checksum (RFC 768); it stays so. A computed zero is
        // sent as all ones.
        PROTO_UDP if packet.get(hl + 6..hl + 8).is_some_and(|c| c != [0, 0]) => {
            adjust_at(packet, hl + 6, end, old, new);
            if packet.get(hl + 6..hl + 8) == Some(&[0, 0]) {
                packet[hl + 6..hl + 8].copy_from_slice(&[0xff, 0xff]);
            }
        }
        PROTO_ICMP => map_icmp_error(packet, hl, end, maps, dir),
        _ => {}
    }
    true
}

fn addr_at(packet: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// Writes `new` over the address at `at` and updates the IPv4 header
/// checksum (the header starts at 0 of `packet`).
fn rewrite_ip(packet: &mut [u8], at: usize, old: Ipv4Addr, new: Ipv4Addr) {
    packet[at..at + 4].copy_from_slice(&new.octets());
    adjust_at(packet, 10, packet.len(), old, new);
}

/// RFC 1624 eq. 3 on the 16-bit checksum at `at` (if it lies before
/// `end`): `old` replaced by `new` in what it covers.
fn adjust_at(packet: &mut [u8], at: usize, end: usize, old: Ipv4Addr, new: Ipv4Addr) {
    if at + 2 > end {
        return;
    }
    let Some(field) = packet.get_mut(at..at + 2) else {
        return;
    };
    let hc = u16::from_be_bytes([field[0], field[1]]);
    let (o, n) = (old.octets(), new.octets());
    let mut acc = (!hc) as u32;
    for i in [0, 2] {
        acc += (!u16::from_be_bytes([o[i], o[i + 1]])) as u32;
        acc += u16::from_be_bytes([n[i], n[i + 1]]) as u32;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    field.copy_from_slice(&(!(acc as u16)).to_be_bytes());
}

/// ICMP errors (destination unreachable, time exceeded, parameter
/// problem) quote the packet they are about: its other address is mapped
/// back (the quote's destination going out, its source coming in), then
/// the ICMP checksum is computed anew.
fn map_icmp_error(packet: &mut [u8], hl: usize, end: usize, maps: &[Map], dir: Direction) {
    let Some(&kind) = packet.get(hl) else {
        return;
    };
    if !matches!(kind, 3 | 11 | 12) {
        return;
    }
    let inner = hl + 8;
    if packet.get(inner).is_none_or(|b| b >> 4 != 4) {
        return;
    }
    let inner_at = inner
        + match dir {
            Direction::Out => 16,
            Direction::In => 12,
        };
    let Some(old) = addr_at(&packet[..end], inner_at) else {
        return;
    };
    let Some(new) = maps.iter().find_map(|m| match dir {
        Direction::Out => m.to_alias(old),
        Direction::In => m.to_lan(old),
    }) else {
        return;
    };
    packet[inner_at..inner_at + 4].copy_from_slice(&new.octets());
    // The quote's own header checksum, and its transport checksum as far
    // as it is quoted.
    adjust_at(packet, inner + 10, end, old, new);
    let inner_hl = ((packet[inner] & 0x0f) as usize) * 4;
    let l4 = inner + inner_hl;
    match packet.get(inner + 9) {
        Some(&PROTO_TCP) => adjust_at(packet, l4 + 16, end, old, new),
        Some(&PROTO_UDP) if packet.get(l4 + 6..l4 + 8).is_some_and(|c| c != [0, 0]) => {
            adjust_at(packet, l4 + 6, end, old, new)
        }
        _ => {}
    }
    packet[hl + 2..hl + 4].copy_from_slice(&[0, 0]);
    let c = ip::checksum(&packet[hl..end]);
    packet[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn home() -> [Map; 1] {
        [Map::new((a("192.168.1.0"), 24), (a("10.64.7.0"), 24)).unwrap()]
    }

    fn udp(src: &str, dst: &str, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; 28 + payload.len()];
        let n = ip::build_udp4_plain(a(src), a(dst), 40000, 9302, 64, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// What a receiver checks: the IPv4 header and UDP checksums verify.
    fn verifies(p: &[u8]) -> bool {
        let info = ip::parse(p).unwrap();
        if ip::checksum(&p[..info.header_len]) != 0 {
            return false;
        }
        let l4 = &p[info.header_len..info.total_len];
        let mut pseudo = std::vec::Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, info.protocol]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(l4);
        ip::checksum(&pseudo) == 0
    }

    #[test]
    fn addresses_keep_their_host_bits() {
        let m = home()[0];
        assert_eq!(m.to_alias(a("192.168.1.10")), Some(a("10.64.7.10")));
        assert_eq!(m.to_lan(a("10.64.7.200")), Some(a("192.168.1.200")));
        assert_eq!(m.to_alias(a("192.168.2.10")), None);
        assert_eq!(Map::new((a("192.168.1.0"), 24), (a("10.64.0.0"), 16)), None);
        let wide = Map::new((a("10.1.2.3"), 8), (a("100.0.0.0"), 8)).unwrap();
        assert_eq!(wide.to_alias(a("10.200.3.4")), Some(a("100.200.3.4")));
    }

    #[test]
    fn out_and_back_in_leaves_valid_checksums_and_the_payload() {
        let maps = home();
        let mut p = udp("192.168.1.10", "10.64.9.10", b"hello, friend");
        assert!(verifies(&p));
        assert!(map(&mut p, &maps, Direction::Out));
        assert_eq!(addr_at(&p, 12), Some(a("10.64.7.10")));
        assert!(verifies(&p), "checksums after the source changed");
        // The reply, at the other home, comes in to the alias.
        let mut r = udp("10.64.9.10", "10.64.7.10", b"hi");
        assert!(map(&mut r, &maps, Direction::In));
        assert_eq!(addr_at(&r, 16), Some(a("192.168.1.10")));
        assert!(verifies(&r));
        assert_eq!(&r[28..], b"hi");
        // Not ours: untouched.
        let mut other = udp("192.168.5.10", "10.64.9.10", b"x");
        let before = other.clone();
        assert!(!map(&mut other, &maps, Direction::Out));
        assert_eq!(other, before);
    }

    #[test]
    fn a_udp_checksum_of_zero_stays_zero_and_tcp_is_adjusted() {
        let maps = home();
        let mut p = udp("192.168.1.10", "10.64.9.10", b"no checksum");
        p[26..28].copy_from_slice(&[0, 0]);
        assert!(map(&mut p, &maps, Direction::Out));
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(ip::checksum(&p[..20]), 0);
        // TCP: the same pseudo-header rule at offset 16.
        let mut t = udp("192.168.1.10", "10.64.9.10", &[0u8; 12]);
        t[9] = PROTO_TCP;
        t[10..12].copy_from_slice(&[0, 0]);
        let c = ip::checksum(&t[..20]);
        t[10..12].copy_from_slice(&c.to_be_bytes());
        t[36..38].copy_from_slice(&[0, 0]);
        let sum = {
            let mut pseudo = std::vec::Vec::new();
            pseudo.extend_from_slice(&t[12..20]);
            pseudo.extend_from_slice(&[0, PROTO_TCP, 0, 20]);
            pseudo.extend_from_slice(&t[20..]);
            ip::checksum(&pseudo)
        };
        t[36..38].copy_from_slice(&sum.to_be_bytes());
        assert!(verifies(&t));
        assert!(map(&mut t, &maps, Direction::Out));
        assert!(verifies(&t), "TCP checksum after the source changed");
    }

    #[test]
    fn an_icmp_error_maps_the_packet_it_quotes() {
        let maps = home();
        // A packet from the mesh reached our console, which answers with
        // port unreachable: out, the error's source is mapped, and the
        // quoted packet's destination (our console) too.
        let quoted = udp("10.64.9.10", "192.168.1.10", b"ping?");
        let mut e = std::vec![0u8; 28 + quoted.len()];
        e[0] = 0x45;
        e[2..4].copy_from_slice(&((28 + quoted.len()) as u16).to_be_bytes());
        e[8] = 64;
        e[9] = PROTO_ICMP;
        e[12..16].copy_from_slice(&a("192.168.1.10").octets());
        e[16..20].copy_from_slice(&a("10.64.9.10").octets());
        let c = ip::checksum(&e[..20]);
        e[10..12].copy_from_slice(&c.to_be_bytes());
        e[20] = 3;
        e[21] = 3;
        e[28..].copy_from_slice(&quoted);
        let c = ip::checksum(&e[20..]);
        e[22..24].copy_from_slice(&c.to_be_bytes());
        assert!(map(&mut e, &maps, Direction::Out));
        assert_eq!(addr_at(&e, 12), Some(a("10.64.7.10")));
        assert_eq!(
            addr_at(&e, 28 + 16),
            Some(a("10.64.7.10")),
            "quoted destination"
        );
        assert_eq!(ip::checksum(&e[..20]), 0);
        assert_eq!(ip::checksum(&e[20..]), 0, "ICMP checksum");
        assert!(verifies(&e[28..]), "the quoted packet's own checksums");
    }

    #[test]
    fn broken_packets_are_left_alone_without_panic() {
        let maps = home();
        for len in 0..40 {
            let mut p = udp("192.168.1.10", "10.64.9.10", b"0123456789ab");
            p.truncate(len);
            let _ = map(&mut p, &maps, Direction::Out);
            let _ = map(&mut p, &maps, Direction::In);
        }
        let mut v6 = std::vec![0x60u8; 60];
        assert!(!map(&mut v6, &maps, Direction::Out));
    }
}
