//! What a router needs of IPv4 (RFC 791, RFC 1812) and IPv6 (RFC 8200): header
//! checks, TTL/hop-limit decrement, and ICMP errors (RFC 792, RFC 4443).
//!
//! Panic contract: everything takes untrusted bytes and returns errors.

use core::hash::Hasher;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::hash::Fnv;

pub const PROTO_ICMP: u8 = 1;
/// IP in IP (RFC 2003).
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// The facts about a packet the forwarding path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Protocol (IPv4) or next header (IPv6).
    pub protocol: u8,
    /// Octets up to the transport header.
    pub header_len: usize,
    /// Total length claimed by the header (at most the buffer length).
    pub total_len: usize,
    /// Not the first fragment (no transport header here).
    pub later_fragment: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpError {
    Truncated,
    BadVersion,
    BadHeaderLength,
    BadChecksum,
    /// The length field claims more than the buffer holds.
    BadTotalLength,
}

/// Validates the IP header at the front of `p` (RFC 1812 §5.2.2).
pub fn parse(p: &[u8]) -> Result<IpInfo, IpError> {
    let first = *p.first().ok_or(IpError::Truncated)?;
    match first >> 4 {
        4 => {
            let Some(h) = p.first_chunk::<20>() else {
                return Err(IpError::Truncated);
            };
            let ihl = ((first & 0x0f) as usize) * 4;
            if ihl < 20 || ihl > p.len() {
                return Err(IpError::BadHeaderLength);
            }
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if total < ihl || total > p.len() {
                return Err(IpError::BadTotalLength);
            }
            // Nearly every header is 20 octets: five words, summed in line.
            let valid = match p.get(20..ihl) {
                Some([]) => fold(header_sum(h)) == 0xffff,
                _ => checksum(&p[..ihl]) == 0,
            };
            if !valid {
                return Err(IpError::BadChecksum);
            }
            let p = h;
            let frag = u16::from_be_bytes([p[6], p[7]]);
            Ok(IpInfo {
                src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
                ttl: p[8],
                protocol: p[9],
                header_len: ihl,
                total_len: total,
                later_fragment: frag & 0x1fff != 0,
            })
        }
        6 => {
            if p.len() < 40 {
                return Err(IpError::Truncated);
            }
            let payload = u16::from_be_bytes([p[4], p[5]]) as usize;
            if 40 + payload > p.len() {
                return Err(IpError::BadTotalLength);
            }
            let mut src = [0u8; 16];
            src.copy_from_slice(&p[8..24]);
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&p[24..40]);
            Ok(IpInfo {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
                ttl: p[7],
                protocol: p[6],
                header_len: 40,
                total_len: 40 + payload,
                later_fragment: false,
            })
        }
        _ => Err(IpError::BadVersion),
    }
}

/// The Internet checksum (RFC 1071) of `data`, folded and complemented.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Adds `data` to `acc` as 16-bit big-endian words (an odd last octet is
/// the high half of a word); the result is folded to 16 bits, so callers
/// may add a few more terms before [`fold`], and zero only if all was zero.
///
/// Eight octets at a time with the carry wrapped around: RFC 1071 §2's sum
/// is the same for any word size, and every IPv4 packet forwarded has its
/// header summed.
fn sum(data: &[u8], acc: u32) -> u32 {
    // 32-bit words into 64 bits: no carry is lost below 2^32 words, and
    // 2^16 = 1 (mod 2^16 - 1) lets each word count as its two halves. An
    // IPv4 header is five words and no tail.
    let mut acc = u64::from(acc);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    // The tail starts at an even offset, in a word's high half.
    acc += match *words.remainder() {
        [a] => u64::from(a) << 24,
        [a, b] => u64::from(u16::from_be_bytes([a, b])) << 16,
        [a, b, c] => u64::from(u16::from_be_bytes([a, b])) << 16 | u64::from(c) << 8,
        _ => 0,
    };
    // 2^32 = 1 (mod 2^16 - 1): two folds of the halves fit 32 bits.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// The 16-bit ones' complement sum of a 20-octet header, unfolded past
/// 32 bits: as [`sum`], for the fixed size.
fn header_sum(h: &[u8; 20]) -> u32 {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    ((acc & 0xffff_ffff) + (acc >> 32)) as u32
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The packet's TTL would reach zero: answer Time Exceeded instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlExpired;

/// Decrements TTL / hop limit in place; the IPv4 checksum is updated
/// incrementally (RFC 1624 eqn. 3). `p` must have passed [`parse`].
pub fn decrement_ttl(p: &mut [u8]) -> Result<(), TtlExpired> {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            if p[8] <= 1 {
                return Err(TtlExpired);
            }
            let old = u16::from_be_bytes([p[8], p[9]]);
            p[8] -= 1;
            let new = u16::from_be_bytes([p[8], p[9]]);
            let hc = u16::from_be_bytes([p[10], p[11]]);
            let c = !fold(!hc as u32 + !old as u32 + new as u32);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        Some(6) if p.len() >= 40 => {
            if p[7] <= 1 {
                return Err(TtlExpired);
            }
            p[7] -= 1;
            Ok(())
        }
        _ => Err(TtlExpired),
    }
}

/// The ICMP errors a router sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// TTL exceeded in transit.
    TimeExceeded,
    /// No route to the destination network.
    NetUnreachable,
    /// Forwarding refused by policy (RFC 1812 §5.2.7.1 code 13; ICMPv6 code 1).
    AdminProhibited,
}

/// May an ICMP error be sent about this packet? Not about ICMP errors, later
/// fragments, or multicast/broadcast/unspecified sources (RFC 1812 §4.3.2.7,
/// RFC 4443 §2.4 e).
pub fn may_answer_with_error(p: &[u8], info: &IpInfo) -> bool {
    if info.later_fragment {
        return false;
    }
    let src_ok = match info.src {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    };
    let dst_ok = match info.dst {
        IpAddr::V4(a) => !(a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !a.is_multicast(),
    };
    if !src_ok || !dst_ok {
        return false;
    }
    // The packet as its header bounds it: octets past its total length are
    // not its own (and an error quotes only up to that length).
    let icmp_type = p
        .get(..info.total_len)
        .and_then(|p| p.get(info.header_len))
        .copied();
    match (info.protocol, icmp_type) {
        // Only informational ICMP may be answered with an error.
        (PROTO_ICMP, Some(t)) => matches!(t, 0 | 8 | 13 | 14),
        (PROTO_ICMPV6, Some(t)) => t >= 128,
        (PROTO_ICMP | PROTO_ICMPV6, None) => false,
        _ => true,
    }
}

/// Builds an ICMP error from `from` about `original` into `out`; returns its
/// length. The quote is as much of the original as fits in 576 octets (IPv4,
/// RFC 1812 §4.3.2.3) or 1280 (IPv6, RFC 4443 §2.4 c).
pub fn build_icmp_error(
    kind: IcmpError,
    from: IpAddr,
    original: &[u8],
    info: &IpInfo,
    out: &mut [u8],
) -> Option<usize> {
    let original = original.get(..info.total_len)?;
    match (from, info.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let (t, c) = match kind {
                IcmpError::TimeExceeded => (11, 0),
                IcmpError::NetUnreachable => (3, 0),
                IcmpError::AdminProhibited => (3, 13),
            };
            let quote = original.len().min(576 - 28);
            let len = 28 + quote;
            let o = out.get_mut(..len)?;
            o[0] = 0x45;
            o[1] = 0xc0; // DSCP CS6: network control
            o[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            o[4..8].fill(0);
            o[8] = 64;
            o[9] = PROTO_ICMP;
            o[10..12].fill(0);
            o[12..16].copy_from_slice(&from.octets());
            o[16..20].copy_from_slice(&to.octets());
            let hc = checksum(&o[..20]);
            o[10..12].copy_from_slice(&hc.to_be_bytes());
            o[20] = t;
            o[21] = c;
            o[22..28].fill(0);
            o[28..].copy_from_slice(&original[..quote]);
            let ic = checksum(&o[20..]);
            o[22..24].copy_from_slice(&ic.to_be_bytes());
            Some(len)
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            let (t, c) = match kind {
                IcmpError::TimeExceeded => (3, 0),
                IcmpError::NetUnreachable => (1, 0),
                IcmpError::AdminProhibited => (1, 1),
            };
            let quote = original.len().min(1280 - 48);
            let payload = 8 + quote;
            let len = 40 + payload;
            let o = out.get_mut(..len)?;
            o[0] = 0x6c; // version 6, traffic class CS6
            o[1..4].fill(0);
            o[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            o[6] = PROTO_ICMPV6;
            o[7] = 64;
            o[8..24].copy_from_slice(&from.octets());
            o[24..40].copy_from_slice(&to.octets());
            o[40] = t;
            o[41] = c;
            o[42..48].fill(0);
            o[48..].copy_from_slice(&original[..quote]);
            // Pseudo-header (RFC 8200 §8.1): addresses, length, next header.
            let mut acc = sum(&o[8..40], 0);
            acc += payload as u32;
            acc += PROTO_ICMPV6 as u32;
            let ic = !fold(sum(&o[40..], acc));
            o[42..44].copy_from_slice(&ic.to_be_bytes());
            Some(len)
        }
        _ => None,
    }
}

/// Builds an IPv4/UDP packet (RFC 768 checksum included) into `out`: the
/// node's own control traffic (CS6, don't fragment).
pub fn build_udp4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    ttl: u8,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    udp4(
        0xc0,
        0x4000,
        (src, src_port),
        (dst, dst_port),
        ttl,
        payload,
        out,
    )
}

/// Builds an ordinary IPv4/UDP packet (best effort, may be fragmented) into
/// `out`: a datagram a game exit passes on to a console.
pub fn build_udp4_plain(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    ttl: u8,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    udp4(0, 0, (src, src_port), (dst, dst_port), ttl, payload, out)
}

fn udp4(
    tos: u8,
    flags: u16,
    (src, src_port): (Ipv4Addr, u16),
    (dst, dst_port): (Ipv4Addr, u16),
    ttl: u8,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let len = 28 + payload.len();
    let o = out.get_mut(..len)?;
    o[0] = 0x45;
    o[1] = tos;
    o[2..4].copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    o[4..6].fill(0);
    o[6..8].copy_from_slice(&flags.to_be_bytes());
    o[8] = ttl;
    o[9] = PROTO_UDP;
    o[10..12].fill(0);
    o[12..16].copy_from_slice(&src.octets());
    o[16..20].copy_from_slice(&dst.octets());
    let hc = checksum(&o[..20]);
    o[10..12].copy_from_slice(&hc.to_be_bytes());
    let ulen = (8 + payload.len()) as u16;
    o[20..22].copy_from_slice(&src_port.to_be_bytes());
    o[22..24].copy_from_slice(&dst_port.to_be_bytes());
    o[24..26].copy_from_slice(&ulen.to_be_bytes());
    o[26..28].fill(0);
    o[28..].copy_from_slice(payload);
    // Pseudo-header: addresses, protocol, UDP length.
    let mut acc = sum(&o[12..20], 0) + PROTO_UDP as u32 + ulen as u32;
    acc = sum(&o[20..], acc);
    let c = match !fold(acc) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        c => c,
    };
    o[26..28].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// Wraps `inner` in an IPv4 header (IP in IP, RFC 2003) from `src` to
/// `dst` into `out`; the outer TTL is 64, the inner packet is not touched.
pub fn build_ipip4(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = 20 + inner.len();
    let o = out.get_mut(..len)?;
    o[0] = 0x45;
    // The inner packet's DSCP, so queues on the way treat it alike.
    o[1] = match inner.first() {
        Some(v) if v >> 4 == 4 => inner.get(1).copied().unwrap_or(0) & 0xfc,
        _ => 0,
    };
    o[2..4].copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    o[4..8].fill(0);
    o[8] = 64;
    o[9] = PROTO_IPIP;
    o[10..12].fill(0);
    o[12..16].copy_from_slice(&src.octets());
    o[16..20].copy_from_slice(&dst.octets());
    let hc = checksum(&o[..20]);
    o[10..12].copy_from_slice(&hc.to_be_bytes());
    o[20..].copy_from_slice(inner);
    Some(len)
}

/// An IPv4 packet with more fragments to come (MF set): the first fragment
/// of a fragmented datagram. Later fragments are [`IpInfo::later_fragment`].
pub fn more_fragments(p: &[u8]) -> bool {
    p.first().is_some_and(|v| v >> 4 == 4) && p.get(6).is_some_and(|f| f & 0x20 != 0)
}

/// The UDP ports and payload of a packet (`None` if not a first-fragment UDP).
pub fn udp_parts<'p>(p: &'p [u8], info: &IpInfo) -> Option<(u16, u16, &'p [u8])> {
    if info.protocol != PROTO_UDP || info.later_fragment {
        return None;
    }
    let u = p.get(info.header_len..info.total_len)?;
    let h = u.get(..8)?;
    let sport = u16::from_be_bytes([h[0], h[1]]);
    let dport = u16::from_be_bytes([h[2], h[3]]);
    let ulen = (u16::from_be_bytes([h[4], h[5]]) as usize).clamp(8, u.len());
    Some((sport, dport, &u[8..ulen]))
}

/// A hash of the flow (addresses, protocol, ports), to keep one flow on one
/// path when several are equally good.
pub fn flow_hash(p: &[u8], info: &IpInfo) -> u32 {
    let mut h = Fnv::new();
    match (info.src, info.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.write(&s.octets());
            h.write(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h.write(&s.octets());
            h.write(&d.octets());
        }
        _ => {}
    }
    h.write_u8(info.protocol);
    if matches!(info.protocol, PROTO_TCP | PROTO_UDP) && !info.later_fragment {
        if let Some(ports) = p.get(info.header_len..info.header_len + 4) {
            h.write(ports);
        }
    }
    // Callers pick a path with `% n`, i.e. by the low bits. FNV's low bits
    // see only the low bits of the input (bit 0 is the parity of the bytes'
    // bit 0s); folding the high half in makes them depend on all of it.
    let h = h.finish();
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP packet 192.168.1.10 → 192.168.4.10, TTL 64, 4 payload octets.
    fn udp4(ttl: u8) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[8] = ttl;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 4, 10]);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&5000u16.to_be_bytes());
        p[22..24].copy_from_slice(&6000u16.to_be_bytes());
        p
    }

    /// `sum` as it was, one 16-bit word at a time: the reference the wide
    /// one is checked against.
    fn sum_by_pairs(data: &[u8], mut acc: u32) -> u32 {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            acc += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [last] = chunks.remainder() {
            acc += (*last as u32) << 8;
        }
        acc
    }

    proptest::proptest! {
        /// A 20-octet header's checksum, summed in line, is judged as the
        /// general sum judges it: with its checksum right, wrong by one bit,
        /// or any at all.
        #[test]
        fn a_plain_header_is_checked_as_any_header(
            header in proptest::prelude::any::<[u8; 20]>(),
            how in 0u8..3,
            bit in 0usize..160,
        ) {
            let mut p = header;
            p[0] = 0x45;
            p[2..4].copy_from_slice(&20u16.to_be_bytes());
            if how > 0 {
                p[10..12].copy_from_slice(&[0, 0]);
                let c = checksum(&p);
                p[10..12].copy_from_slice(&c.to_be_bytes());
            }
            if how == 2 && bit / 8 >= 4 {
                p[bit / 8] ^= 1 << (bit % 8);
            }
            let general = checksum(&p) == 0;
            proptest::prop_assert_eq!(fold(header_sum(&p)) == 0xffff, general);
            proptest::prop_assert_eq!(parse(&p).is_ok(), general);
        }

        /// The wide sum folds to what the word-at-a-time one did, for any
        /// length (odd ones too), start in the buffer and starting sum; runs
        /// of one octet (0xff among them) carry on every word.
        #[test]
        fn wide_sum_folds_as_the_sum_of_words(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            fill in proptest::option::of(proptest::prelude::any::<u8>()),
            start in 0usize..8,
            acc in 0u32..=u32::MAX / 2,
        ) {
            let mut bytes = bytes;
            if let Some(b) = fill {
                bytes.fill(b);
            }
            let data = bytes.get(start..).unwrap_or(&[]);
            let wide = sum(data, acc);
            proptest::prop_assert!(wide <= 0xffff);
            proptest::prop_assert_eq!(fold(wide), fold(sum_by_pairs(data, acc)));
            proptest::prop_assert_eq!(checksum(data), !fold(sum_by_pairs(data, 0)));
        }
    }

    #[test]
    fn wide_sum_takes_any_starting_sum() {
        let ff = [0xffu8; 1501];
        // 0xffff_ffff = 0xffff (mod 0xffff), and 0xffff words add nothing.
        assert_eq!(sum(&ff[..1500], u32::MAX), 0xffff);
        assert_eq!(sum(&ff, u32::MAX), 0xff00);
        assert_eq!(sum(&[], 0), 0);
        assert_eq!(sum(&[0; 9], 0), 0);
        assert_eq!(sum(&[1], 0x10000), 0x101);
    }

    #[test]
    fn a_good_header_parses() {
        let p = udp4(64);
        let i = parse(&p).unwrap();
        assert_eq!(i.dst, IpAddr::V4(Ipv4Addr::new(192, 168, 4, 10)));
        assert_eq!(
            (i.ttl, i.protocol, i.header_len, i.total_len),
            (64, 17, 20, 32)
        );
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let mut p = udp4(64);
        p[15] ^= 1;
        assert_eq!(parse(&p), Err(IpError::BadChecksum));
        let p = udp4(64);
        assert_eq!(parse(&p[..19]), Err(IpError::Truncated));
        assert_eq!(parse(&p[..30]), Err(IpError::BadTotalLength));
        assert_eq!(parse(&[0x75]), Err(IpError::BadVersion));
        let mut p = udp4(64);
        p[0] = 0x44;
        assert_eq!(parse(&p), Err(IpError::BadHeaderLength));
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        for ttl in [2u8, 3, 64, 128, 255] {
            let mut p = udp4(ttl);
            decrement_ttl(&mut p).unwrap();
            assert_eq!(p[8], ttl - 1);
            assert_eq!(checksum(&p[..20]), 0, "ttl {ttl}");
        }
        let mut p = udp4(1);
        assert_eq!(decrement_ttl(&mut p), Err(TtlExpired));
    }

    #[test]
    fn time_exceeded_quotes_the_packet_and_checks_out() {
        let p = udp4(1);
        let info = parse(&p).unwrap();
        let mut out = [0u8; 600];
        let from = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let n = build_icmp_error(IcmpError::TimeExceeded, from, &p, &info, &mut out).unwrap();
        assert_eq!(n, 28 + 32);
        let reply = parse(&out[..n]).unwrap();
        assert_eq!(reply.src, from);
        assert_eq!(reply.dst, info.src);
        assert_eq!(reply.protocol, PROTO_ICMP);
        assert_eq!(out[20], 11);
        assert_eq!(checksum(&out[20..n]), 0);
        assert_eq!(&out[28..n], &p[..]);
    }

    #[test]
    fn icmpv6_unreachable_has_a_valid_pseudo_header_checksum() {
        let mut p = [0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&8u16.to_be_bytes());
        p[6] = PROTO_UDP;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd00:1::10".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:4::10".parse::<Ipv6Addr>().unwrap().octets());
        let info = parse(&p).unwrap();
        let from: IpAddr = "fd00::2".parse().unwrap();
        let mut out = [0u8; 200];
        let n = build_icmp_error(IcmpError::NetUnreachable, from, &p, &info, &mut out).unwrap();
        // Verify: sum over pseudo-header + ICMPv6 message is 0xffff.
        let mut acc = sum(&out[8..40], 0) + (n as u32 - 40) + PROTO_ICMPV6 as u32;
        acc = sum(&out[40..n], acc);
        assert_eq!(fold(acc), 0xffff);
        assert_eq!(out[40], 1);
    }

    #[test]
    fn no_error_about_an_error_or_a_broadcast() {
        let mut p = udp4(64);
        p[9] = PROTO_ICMP;
        p[20] = 3; // destination unreachable
        let c = {
            p[10..12].fill(0);
            checksum(&p[..20])
        };
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let info = parse(&p).unwrap();
        assert!(!may_answer_with_error(&p, &info));
        p[20] = 8; // echo request
        assert!(may_answer_with_error(&p, &info));
        let p = udp4(64);
        let mut info = parse(&p).unwrap();
        info.dst = IpAddr::V4(Ipv4Addr::BROADCAST);
        assert!(!may_answer_with_error(&p, &info));
    }

    #[test]
    fn no_error_about_icmp_whose_type_lies_past_its_total_length() {
        // An ICMP packet whose header claims only its IP header: the octet
        // after it (an echo request's type) is the frame's padding, not the
        // packet's; the error would quote no ICMP type (found by node_lan).
        let mut p = [0u8; 21];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&20u16.to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_ICMP;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 4, 10]);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20] = 8;
        let info = parse(&p).unwrap();
        assert!(!may_answer_with_error(&p, &info));
        let mut q = [0u8; 41];
        q[0] = 0x60;
        q[6] = PROTO_ICMPV6;
        q[7] = 64;
        q[8] = 0xfd;
        q[23] = 1;
        q[24] = 0xfd;
        q[39] = 2;
        q[40] = 128;
        let info = parse(&q).unwrap();
        assert!(!may_answer_with_error(&q, &info));
    }

    #[test]
    fn built_udp_parses_back_with_valid_checksums() {
        let mut out = [0u8; 100];
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let n = build_udp4(src, dst, 49152, 3784, 255, &[1, 2, 3, 4, 5], &mut out).unwrap();
        let info = parse(&out[..n]).unwrap();
        assert_eq!(
            (info.ttl, info.protocol, info.total_len),
            (255, PROTO_UDP, 33)
        );
        let (sp, dp, payload) = udp_parts(&out[..n], &info).unwrap();
        assert_eq!((sp, dp, payload), (49152, 3784, &[1u8, 2, 3, 4, 5][..]));
        // The UDP checksum verifies: pseudo-header + segment sums to 0xffff.
        let acc = sum(&out[12..20], 0) + PROTO_UDP as u32 + 13;
        assert_eq!(fold(sum(&out[20..n], acc)), 0xffff);
    }

    #[test]
    fn flow_hash_depends_on_ports() {
        let a = udp4(64);
        let mut b = udp4(64);
        b[20] = 9;
        let (ia, ib) = (parse(&a).unwrap(), parse(&b).unwrap());
        assert_eq!(flow_hash(&a, &ia), flow_hash(&a, &ia));
        assert_ne!(flow_hash(&a, &ia), flow_hash(&b, &ib));
    }

    #[test]
    fn flows_whose_bytes_differ_only_above_bit_0_still_spread_over_two_paths() {
        // Source ports 5000, 5002, ...: every byte keeps its bit 0, which is
        // all an unfolded FNV's bit 0 would see.
        let path = |sport: u16| {
            let mut p = udp4(64);
            p[20..22].copy_from_slice(&sport.to_be_bytes());
            flow_hash(&p, &parse(&p).unwrap()) % 2
        };
        let paths: std::vec::Vec<u32> = (0..16).map(|i| path(5000 + 2 * i)).collect();
        assert!(paths.contains(&0) && paths.contains(&1), "{paths:?}");
    }
}
