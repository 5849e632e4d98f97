//! Path attributes held by value (RFC 4271 §5): what the RIB stores and what an
//! UPDATE is built from. Capacities are fixed; a path that exceeds them is a
//! local resource limit, handled as treat-as-withdraw by the decoder.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Most ASNs an AS_PATH may hold here. Mesh paths are a handful of hops; 64 is
/// generous and keeps a path's storage small.
pub const MAX_AS_PATH_LEN: usize = 64;
pub const MAX_AS_PATH_SEGMENTS: usize = 8;
pub const MAX_COMMUNITIES: usize = 32;
pub const MAX_LARGE_COMMUNITIES: usize = 16;

enum_with_unknown! {
    /// ORIGIN (RFC 4271 §4.3, §5.1.1). Route selection prefers the lower value.
    /// The decoder refuses `Unknown` (an RFC 7606 §7.1 error); only a value
    /// made locally could carry it.
    #[derive(Default)]
    pub enum Origin(u8) {
        #[default]
        Igp = 0,
        Egp = 1,
        Incomplete = 2,
    }
}

enum_with_unknown! {
    /// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3). The decoder
    /// refuses `Unknown` as a malformed AS_PATH.
    pub enum SegmentKind(u8) {
        Set = 1,
        Sequence = 2,
        ConfedSequence = 3,
        ConfedSet = 4,
    }
}

impl SegmentKind {
    fn is_confed(self) -> bool {
        matches!(self, SegmentKind::ConfedSequence | SegmentKind::ConfedSet)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Segment {
    kind: SegmentKind,
    len: u8,
}

/// The resource a path ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityError;

/// An AS_PATH: segments stored flat, each a run of ASNs in `asns`.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct AsPath {
    asns: heapless::Vec<u32, MAX_AS_PATH_LEN>,
    segments: heapless::Vec<Segment, MAX_AS_PATH_SEGMENTS>,
}

impl AsPath {
    pub const fn new() -> AsPath {
        AsPath {
            asns: heapless::Vec::new(),
            segments: heapless::Vec::new(),
        }
    }

    /// A path of one AS_SEQUENCE.
    pub fn from_sequence(asns: &[u32]) -> Result<AsPath, CapacityError> {
        let mut p = AsPath::new();
        for chunk in asns.chunks(255) {
            p.push_segment(SegmentKind::Sequence, chunk)?;
        }
        Ok(p)
    }

    pub fn push_segment(&mut self, kind: SegmentKind, asns: &[u32]) -> Result<(), CapacityError> {
        if asns.is_empty() {
            return Ok(());
        }
        let len = u8::try_from(asns.len()).map_err(|_| CapacityError)?;
        self.asns
            .extend_from_slice(asns)
            .map_err(|_| CapacityError)?;
        self.segments
            .push(Segment { kind, len })
            .map_err(|_| CapacityError)
    }

    pub fn is_empty(&self) -> bool {
        self.asns.is_empty()
    }

    /// Segments in order, each as its kind and its ASNs.
    pub fn segments(&self) -> impl Iterator<Item = (SegmentKind, &[u32])> + '_ {
        let mut at = 0usize;
        self.segments.iter().map(move |s| {
            let run = &self.asns[at..at + s.len as usize];
            at += s.len as usize;
            (s.kind, run)
        })
    }

    /// Length for route selection (RFC 4271 §9.1.2.2 a): an AS_SET counts as
    /// one, confederation segments count zero (RFC 5065 §5.3).
    pub fn selection_len(&self) -> usize {
        self.segments()
            .map(|(k, run)| match k {
                SegmentKind::Sequence => run.len(),
                SegmentKind::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// The leftmost AS of a leading AS_SEQUENCE: the neighbor AS (for MED
    /// comparison and first-AS checks).
    pub fn first_as(&self) -> Option<u32> {
        match self.segments().next() {
            Some((SegmentKind::Sequence, run)) => run.first().copied(),
            _ => None,
        }
    }

    /// The AS that originated the route (rightmost of a trailing AS_SEQUENCE).
    pub fn origin_as(&self) -> Option<u32> {
        match self.segments().last() {
            Some((SegmentKind::Sequence, run)) => run.last().copied(),
            _ => None,
        }
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.asns.contains(&asn)
    }

    pub fn has_confed_segments(&self) -> bool {
        self.segments.iter().any(|s| s.kind.is_confed())
    }

    /// Prepends `asn` to the leading AS_SEQUENCE, or adds one (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32) -> Result<(), CapacityError> {
        if self.asns.is_full() {
            return Err(CapacityError);
        }
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentKind::Sequence && s.len < 255 => s.len += 1,
            _ => self
                .segments
                .insert(
                    0,
                    Segment {
                        kind: SegmentKind::Sequence,
                        len: 1,
                    },
                )
                .map_err(|_| CapacityError)?,
        }
        self.asns.insert(0, asn).map_err(|_| CapacityError)
    }

    /// Octets the path takes on the wire (without attribute header).
    pub fn wire_len(&self, four_octet: bool) -> usize {
        let w = if four_octet { 4 } else { 2 };
        self.segments.len() * 2 + self.asns.len() * w
    }

    /// Writes the segments; ASNs above 65535 become AS_TRANS on a 2-octet
    /// session (RFC 6793 §4.2.2).
    pub(crate) fn emit(&self, out: &mut [u8], four_octet: bool) {
        let mut at = 0;
        for (kind, run) in self.segments() {
            out[at] = u8::from(kind);
            out[at + 1] = run.len() as u8;
            at += 2;
            for &asn in run {
                if four_octet {
                    out[at..at + 4].copy_from_slice(&asn.to_be_bytes());
                    at += 4;
                } else {
                    let a = u16::try_from(asn).unwrap_or(super::open::AS_TRANS);
                    out[at..at + 2].copy_from_slice(&a.to_be_bytes());
                    at += 2;
                }
            }
        }
    }

    /// Does a 2-octet encoding lose information (so AS4_PATH must follow)?
    pub(crate) fn needs_as4(&self) -> bool {
        self.asns.iter().any(|&a| a > 0xffff)
    }

    pub(crate) fn truncate_front(&mut self, keep_from_front: usize) -> AsPath {
        // Returns the first `keep_from_front` ASNs as their own path (used by the
        // RFC 6793 §4.2.3 merge); segments are cut at the boundary.
        let mut out = AsPath::new();
        let mut left = keep_from_front;
        for (kind, run) in self.segments() {
            if left == 0 {
                break;
            }
            let take = match kind {
                SegmentKind::Set | SegmentKind::ConfedSet => run.len(),
                _ => run.len().min(left),
            };
            let _ = out.push_segment(kind, &run[..take]);
            left = left.saturating_sub(if kind == SegmentKind::Set { 1 } else { take });
        }
        out
    }

    pub(crate) fn append(&mut self, other: &AsPath) -> Result<(), CapacityError> {
        for (kind, run) in other.segments() {
            self.push_segment(kind, run)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for AsPath {
    /// BIRD's notation: `65001 65002 {65003 65004}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, run) in self.segments() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let (open, close) = match kind {
                SegmentKind::Sequence => ("", ""),
                SegmentKind::Set => ("{", "}"),
                SegmentKind::ConfedSequence => ("(", ")"),
                SegmentKind::ConfedSet => ("[", "]"),
                // Never decoded; only a path built locally can hold one.
                SegmentKind::Unknown(_) => ("<", ">"),
            };
            f.write_str(open)?;
            for (i, a) in run.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{a}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

/// A large community (RFC 8092): global administrator and two local data parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// The next hop carried in MP_REACH_NLRI (RFC 4760 §3; RFC 2545 §3 for IPv6's
/// optional link-local second address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl MpNextHop {
    pub fn addr(&self) -> IpAddr {
        match self {
            MpNextHop::V4(a) => IpAddr::V4(*a),
            MpNextHop::V6 { global, .. } => IpAddr::V6(*global),
        }
    }
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            MpNextHop::V4(_) => 4,
            MpNextHop::V6 {
                link_local: None, ..
            } => 16,
            MpNextHop::V6 { .. } => 32,
        }
    }
}

/// The attributes a route carries. Unknown attributes are not stored: meshd does
/// not propagate them (see the crate docs on RFC 7606).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: AsPath,
    /// NEXT_HOP, for IPv4 NLRI.
    pub next_hop: Option<Ipv4Addr>,
    /// The next hop from MP_REACH_NLRI, for multiprotocol NLRI.
    pub mp_next_hop: Option<MpNextHop>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: heapless::Vec<u32, MAX_COMMUNITIES>,
    pub large_communities: heapless::Vec<LargeCommunity, MAX_LARGE_COMMUNITIES>,
}

impl PathAttributes {
    /// The next hop for a route of `family`.
    pub fn next_hop_for(&self, family: crate::prefix::Family) -> Option<IpAddr> {
        match family {
            crate::prefix::Family::Ipv4 => self
                .next_hop
                .map(IpAddr::V4)
                .or(self.mp_next_hop.map(|n| n.addr())),
            crate::prefix::Family::Ipv6 => self.mp_next_hop.map(|n| n.addr()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn selection_length_counts_a_set_as_one() {
        let mut p = AsPath::from_sequence(&[1, 2, 3]).unwrap();
        p.push_segment(SegmentKind::Set, &[4, 5, 6]).unwrap();
        p.push_segment(SegmentKind::ConfedSequence, &[7]).unwrap();
        assert_eq!(p.selection_len(), 4);
        assert_eq!(p.to_string(), "1 2 3 {4 5 6} (7)");
    }

    #[test]
    fn prepend_extends_the_leading_sequence() {
        let mut p = AsPath::from_sequence(&[65002]).unwrap();
        p.prepend(65001).unwrap();
        assert_eq!(p.to_string(), "65001 65002");
        assert_eq!(p.first_as(), Some(65001));
        assert_eq!(p.origin_as(), Some(65002));

        let mut s = AsPath::new();
        s.push_segment(SegmentKind::Set, &[9, 8]).unwrap();
        s.prepend(7).unwrap();
        assert_eq!(s.to_string(), "7 {9 8}");
    }

    #[test]
    fn a_full_path_refuses_to_grow() {
        let asns: heapless::Vec<u32, MAX_AS_PATH_LEN> = (0..MAX_AS_PATH_LEN as u32).collect();
        let mut p = AsPath::from_sequence(&asns).unwrap();
        assert_eq!(p.prepend(1), Err(CapacityError));
    }
}
