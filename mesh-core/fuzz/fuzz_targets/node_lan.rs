//! IP packets into a whole node: from its LAN (`Node::handle_lan_packet`,
//! the TUN device) and from inside a member's tunnel (what a modified,
//! hostile member can send: `Node::send_raw_to_member`, feature `sim`).
//!
//! R1 runs in the small mesh of `../src/lib.rs`. Byte 0 sets options (bit
//! 0: R1 may be a game exit; bit 1: STUN's second port; bit 2: R1's overlay
//! address is the kernel's; bit 3: R2 and R3 run, members of each other
//! with no path between them, so that what goes between them transits R1;
//! without, R1 is alone and only the LAN ops do anything). Then records,
//! the first byte modulo 8 picking what happens (at most 256 records):
//! - 0 `[delay]`: the mesh runs that long (0–127 ms, 0.25–16 s, 1–80 s);
//! - 1 `[packet]`: a packet from R1's LAN;
//! - 2 `[packet]`: R2 sends a packet as is through its tunnel to R1;
//! - 3 `[packet]`: R3 does;
//! - 4 `[packet]`: a packet from R2's LAN (R2 routes it: traffic that
//!   reaches R1 the ordinary way);
//! - 5 `[len, bytes…]`: those bytes from R1's LAN;
//! - 6 `[len, bytes…]`: those bytes through R2's tunnel to R1;
//! - 7 `[port, source, len, bytes…]`: a datagram from the internet to one
//!   of R1's exit ports.
//!
//! A `[packet]` is `[flags, source, destination, protocol, ttl, ports,
//! len, payload…]`: IPv4 or IPv6 (flag bit 0); addresses from a list of the
//! homes of R1–R4 (LAN hosts and overlay addresses), strangers, the
//! internet, loopback, multicast, broadcast, link-local and unspecified;
//! UDP, TCP, ICMP(v6), IP in IP (the inner packet built the same way from
//! the next bytes) or any protocol number; ports among BFD, peer exchange,
//! BGP, game and discovery ports; header checksum broken (bit 1), more
//! fragments (bit 2), a later fragment (bit 3), the total length a lie
//! (bit 4), or cut short (bit 5).
//!
//! Checked, besides what `World` checks after every input (every datagram
//! and every LAN packet counted once, outputs drain, time does not spin,
//! ICMP errors within their budget of 50 a second), on every packet any
//! node writes to its LAN:
//! - it parses (the header checksum is right after a TTL decrement);
//! - ingress filtering: a packet from R2's LAN whose source is not in R2's
//!   home comes out at no other node's LAN;
//! - a member's tunnel never brings a node a packet from its own home
//!   (what R2 or R3 sent raw with a source in R1's home does not come out
//!   at R1's LAN);
//! - anti-spoofing: its source lies in a home of the mesh, and its
//!   destination in that node's own home (unless R1 may be an exit: then
//!   the internet's answers reach consoles): nothing from outside the homes comes out of a
//!   tunnel, and no martian destination is ever delivered;
//! - TTL: a packet injected at R2 or R3 (from its LAN or raw through its
//!   tunnel) that comes out at R1's LAN kept its TTL; one that comes out at
//!   R2's or R3's LAN crossed R1 and lost exactly 1 (and had at least 2);
//! - ICMP: an error a node sends (from its overlay address, destination
//!   unreachable or time exceeded) goes to the source of the packet it
//!   quotes; that packet was not an ICMP error, nor from a multicast,
//!   broadcast or unspecified source, nor to a multicast or broadcast
//!   destination, nor a later fragment; time exceeded only quotes a packet
//!   whose TTL was 1 or 0.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mesh_core::bfd::BFD_PORT;
use mesh_core::ip;
use mesh_core::node::GROUP_PORT;
use mesh_core::pex::PEX_PORT;
use mesh_core::Duration;
use mesh_core_fuzz::{
    host, host6, in_home, in_some_home, on_big_stack, overlay, overlay6, source, with_world, Input,
    Options, World,
};

fuzz_target!(|data: &[u8]| on_big_stack(data, run));

/// A packet injected at a node other than R1, as it was sent.
struct Injected {
    at: usize,
    /// From that node's LAN (else raw through its tunnel).
    from_lan: bool,
    bytes: Vec<u8>,
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut options = Options::from_byte(input.u8());
    options.transit = options.peers;
    with_world(options, |w| {
        let mut injected = Vec::new();
        for _ in 0..256 {
            if input.done() {
                break;
            }
            step(w, &mut input, &mut injected);
            check_lans(w, &injected);
        }
        w.advance(Duration::from_millis(100));
        check_lans(w, &injected);
    });
}

fn step(w: &mut World<'_>, input: &mut Input<'_>, injected: &mut Vec<Injected>) {
    match input.u8() % 8 {
        0 => {
            let d = input.delay();
            w.advance(d);
        }
        1 => {
            let p = packet(input, 0);
            w.lan_packet(0, &p);
        }
        op @ (2 | 3) => {
            let at = op as usize - 1;
            let p = packet(input, 0);
            remember(injected, at, false, &p);
            w.raw_to_member(at, 0, &p);
        }
        4 => {
            let p = packet(input, 0);
            remember(injected, 1, true, &p);
            w.lan_packet(1, &p);
        }
        5 => {
            let len = input.length();
            let p = input.bytes(len).to_vec();
            w.lan_packet(0, &p);
        }
        6 => {
            let len = input.length();
            let p = input.bytes(len).to_vec();
            remember(injected, 1, false, &p);
            w.raw_to_member(1, 0, &p);
        }
        _ => {
            let sel = input.u8();
            let ports = w.exit_ports();
            let port = match ports.len() {
                0 => 5000 + u16::from(sel % 20),
                n => ports[sel as usize % n],
            };
            let from = source(input.u8());
            let len = input.length();
            let payload = input.bytes(len).to_vec();
            w.exit_datagram(port, from, &payload);
        }
    }
}

fn remember(injected: &mut Vec<Injected>, at: usize, from_lan: bool, p: &[u8]) {
    if injected.len() < 512 {
        injected.push(Injected {
            at,
            from_lan,
            bytes: p.to_vec(),
        });
    }
}

// ---- building packets ----

fn addr4(sel: u8) -> Ipv4Addr {
    let h = (sel >> 4) + 1;
    match sel % 16 {
        0 => host(1, h),
        1 => host(2, h),
        2 => host(3, h),
        3 => overlay(1),
        4 => overlay(2),
        5 => overlay(3),
        6 => host(4, h),
        7 => overlay(4),
        8 => Ipv4Addr::new(203, 0, 113, h),
        9 => Ipv4Addr::new(8, 8, 8, 8),
        10 => Ipv4Addr::LOCALHOST,
        11 => Ipv4Addr::new(224, 0, 0, 251),
        12 => Ipv4Addr::BROADCAST,
        13 => Ipv4Addr::new(169, 254, 1, h),
        14 => Ipv4Addr::UNSPECIFIED,
        _ => Ipv4Addr::new(192, 168, 2, 255),
    }
}

fn addr6(sel: u8) -> Ipv6Addr {
    let h = (sel >> 4) + 1;
    match sel % 16 {
        0 => host6(1, h),
        1 => host6(2, h),
        2 => host6(3, h),
        3 => overlay6(1),
        4 => overlay6(2),
        5 => overlay6(3),
        6 => host6(4, h),
        7 => overlay6(4),
        8 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, h as u16),
        9 => Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0x1111),
        10 => Ipv6Addr::LOCALHOST,
        11 => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        12 => Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 2),
        13 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, h as u16),
        14 => Ipv6Addr::UNSPECIFIED,
        _ => Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, 0xffff),
    }
}

fn port(sel: u8, input: &mut Input<'_>) -> u16 {
    match sel % 8 {
        0 => BFD_PORT,
        1 => PEX_PORT,
        2 => 179,
        3 => 9302,
        4 => GROUP_PORT,
        5 => 5353,
        6 => 1900,
        _ => input.u16(),
    }
}

/// One's complement sum for a checksum over a pseudo-header and data.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// A packet as described in the target's header; `depth` bounds IP in IP.
fn packet(input: &mut Input<'_>, depth: u8) -> Vec<u8> {
    let flags = input.u8();
    let (src_sel, dst_sel, proto_sel, ttl, ports) =
        (input.u8(), input.u8(), input.u8(), input.u8(), input.u8());
    let v6 = flags & 1 != 0;
    let protocol = match proto_sel % 6 {
        0 | 1 => ip::PROTO_UDP,
        2 => ip::PROTO_TCP,
        3 if v6 => ip::PROTO_ICMPV6,
        3 => ip::PROTO_ICMP,
        4 if depth == 0 => ip::PROTO_IPIP,
        _ => proto_sel,
    };
    let sport = port(ports, input);
    let dport = port(ports >> 3, input);
    let mut l4 = Vec::new();
    match protocol {
        ip::PROTO_UDP => {
            let len = input.length();
            let payload = input.bytes(len);
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(payload);
        }
        ip::PROTO_TCP => {
            let len = input.length();
            let payload = input.bytes(len);
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            l4.extend_from_slice(payload);
        }
        ip::PROTO_IPIP => l4 = packet(input, depth + 1),
        _ => {
            let len = input.length();
            l4.extend_from_slice(input.bytes(len));
        }
    }
    let mut p = Vec::with_capacity(40 + l4.len());
    if v6 {
        let (src, dst) = (addr6(src_sel), addr6(dst_sel));
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.push(if protocol == ip::PROTO_IPIP {
            41
        } else {
            protocol
        });
        p.push(ttl);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        if protocol == ip::PROTO_ICMPV6 && l4.len() >= 4 {
            l4[2..4].fill(0);
            let acc = sum(&p[8..40], l4.len() as u32 + u32::from(ip::PROTO_ICMPV6));
            let c = !fold(sum(&l4, acc));
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
    } else {
        let (src, dst) = (addr4(src_sel), addr4(dst_sel));
        let total = (20 + l4.len()) as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x12, src_sel]);
        let frag: u16 =
            (if flags & 4 != 0 { 0x2000 } else { 0 }) | (if flags & 8 != 0 { 185 } else { 0 });
        p.extend_from_slice(&frag.to_be_bytes());
        p.push(ttl);
        p.push(protocol);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let c = ip::checksum(&p[..20]);
        let c = if flags & 2 != 0 { c ^ 0x0101 } else { c };
        p[10..12].copy_from_slice(&c.to_be_bytes());
        if protocol == ip::PROTO_ICMP && l4.len() >= 4 {
            l4[2..4].fill(0);
            let c = ip::checksum(&l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    p.extend_from_slice(&l4);
    if flags & 16 != 0 {
        let lie = input.u16();
        let at = if v6 { 4 } else { 2 };
        p[at..at + 2].copy_from_slice(&lie.to_be_bytes());
    }
    if flags & 32 != 0 {
        let cut = input.u8() as usize;
        p.truncate(p.len().saturating_sub(cut));
    }
    p
}

// ---- the checks ----

/// The two packets are the same but for TTL (and the IPv4 header checksum,
/// which follows it); returns the TTL of each.
fn same_but_ttl(out: &[u8], sent: &[u8]) -> Option<(u8, u8)> {
    let sent = sent.get(..out.len())?;
    let ttl_at = match out.first()? >> 4 {
        4 => 8,
        6 => 7,
        _ => return None,
    };
    let differ = out
        .iter()
        .zip(sent)
        .enumerate()
        .any(|(i, (a, b))| a != b && i != ttl_at && !(ttl_at == 8 && (i == 10 || i == 11)));
    (!differ).then(|| (out[ttl_at], sent[ttl_at]))
}

fn is_icmp_error(p: &[u8], info: &ip::IpInfo) -> bool {
    let t = p.get(info.header_len).copied();
    match info.protocol {
        ip::PROTO_ICMP => matches!(t, Some(3 | 11)),
        ip::PROTO_ICMPV6 => matches!(t, Some(1 | 3)),
        _ => false,
    }
}

fn check_lans(w: &mut World<'_>, injected: &[Injected]) {
    let exit = w.options.exit;
    for i in 0..w.nodes.len() {
        for p in std::mem::take(&mut w.lan_out[i]) {
            let n = i as u8 + 1;
            let info = ip::parse(&p).unwrap_or_else(|e| {
                panic!("R{n} put on its LAN what does not parse ({e:?}): {p:02x?}")
            });
            assert_eq!(info.total_len, p.len(), "R{n}: length");
            if !exit {
                assert!(
                    in_some_home(info.src),
                    "R{n} put on its LAN a packet from {}",
                    info.src
                );
                assert!(
                    in_home(n, info.dst),
                    "R{n} put on its LAN a packet to {}",
                    info.dst
                );
            }
            // TTL, for what came from R2 or R3.
            let mut matched = false;
            let mut ttl_ok = false;
            let (mut foreign_from, mut other_way) = (None, false);
            for inj in injected {
                let Some((out_ttl, sent_ttl)) = same_but_ttl(&p, &inj.bytes) else {
                    continue;
                };
                matched = true;
                // A member's tunnel never brings a node's own home to its
                // own home (a hostile member posing as one of its hosts).
                assert!(
                    inj.from_lan || inj.at == i || !in_home(n, info.src),
                    "R{n} delivered to its LAN, from R{}'s tunnel, a packet posing as its own home ({} → {}): {p:02x?}",
                    inj.at + 1,
                    info.src,
                    info.dst
                );
                // Ingress filtering: from a node's LAN, only its home's
                // sources enter the mesh (the same bytes sent some other
                // way may come out).
                let foreign = inj.from_lan && i != inj.at && !in_home(inj.at as u8 + 1, info.src);
                if foreign {
                    foreign_from = Some(inj.at + 1);
                } else {
                    other_way = true;
                }
                ttl_ok |= if i == 0 {
                    out_ttl == sent_ttl
                } else if i != inj.at {
                    sent_ttl >= 2 && out_ttl == sent_ttl - 1
                } else {
                    // Sent back to its sender through R1 (a member's
                    // packet for its own home): R1 forwarded it once.
                    (sent_ttl >= 2 && out_ttl == sent_ttl - 1) || out_ttl == sent_ttl
                };
            }
            assert!(!matched || ttl_ok, "R{n}: TTL {} on {p:02x?}", info.ttl);
            if let (Some(at), false) = (foreign_from, other_way) {
                panic!(
                    "R{at} let a packet from its LAN with the source {} into the mesh; R{n} delivered it: {p:02x?}",
                    info.src
                );
            }
            if matched || !is_icmp_error(&p, &info) {
                continue;
            }
            // An ICMP error a node made: from its overlay address.
            let from_node = (1..=3)
                .any(|m| info.src == IpAddr::V4(overlay(m)) || info.src == IpAddr::V6(overlay6(m)));
            if !from_node {
                continue;
            }
            let quote = &p[info.header_len + 8..];
            check_icmp_quote(n, &p, &info, quote);
        }
    }
}

fn check_icmp_quote(n: u8, p: &[u8], info: &ip::IpInfo, quote: &[u8]) {
    let kind = p[info.header_len];
    let (qsrc, qdst, qttl, qproto, qhl, later) = match (info.dst, quote.first().map(|b| b >> 4)) {
        (IpAddr::V4(_), Some(4)) if quote.len() >= 20 => (
            IpAddr::V4(Ipv4Addr::new(quote[12], quote[13], quote[14], quote[15])),
            IpAddr::V4(Ipv4Addr::new(quote[16], quote[17], quote[18], quote[19])),
            quote[8],
            quote[9],
            ((quote[0] & 15) as usize) * 4,
            u16::from_be_bytes([quote[6], quote[7]]) & 0x1fff != 0,
        ),
        (IpAddr::V6(_), Some(6)) if quote.len() >= 40 => {
            let s: [u8; 16] = quote[8..24].try_into().unwrap();
            let d: [u8; 16] = quote[24..40].try_into().unwrap();
            (
                IpAddr::V6(s.into()),
                IpAddr::V6(d.into()),
                quote[7],
                quote[6],
                40,
                false,
            )
        }
        _ => panic!("R{n}: an ICMP error quoting no packet: {p:02x?}"),
    };
    assert_eq!(
        info.dst, qsrc,
        "R{n}: an ICMP error not to the quoted packet's source"
    );
    assert!(!later, "R{n}: an ICMP error about a later fragment");
    let bad_src = match qsrc {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    let bad_dst = match qdst {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    assert!(
        !bad_src && !bad_dst,
        "R{n}: an ICMP error about {qsrc} → {qdst}"
    );
    let qtype = quote.get(qhl).copied();
    match qproto {
        ip::PROTO_ICMP => assert!(
            matches!(qtype, Some(0 | 8 | 13 | 14)),
            "R{n}: an ICMP error about ICMP {qtype:?}"
        ),
        ip::PROTO_ICMPV6 => assert!(
            qtype.is_some_and(|t| t >= 128),
            "R{n}: an ICMPv6 error about ICMPv6 {qtype:?}"
        ),
        _ => {}
    }
    let time_exceeded = match info.protocol {
        ip::PROTO_ICMP => kind == 11,
        _ => kind == 3,
    };
    if time_exceeded {
        assert!(qttl <= 1, "R{n}: time exceeded for a packet of TTL {qttl}");
    }
}
