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
//! - From the LAN: the source must be in our home (our LAN as it is, or
//!   our overlay address) — ingress filtering (RFC 3704, BCP 38): a host
//!   on our LAN never enters the mesh as someone else, such as a friend's
//!   console or router. Then look up; another member → its tunnel (small UDP also over
//!   a second first hop: redundant sending); only the default route, which
//!   game exits announce → to an exit (a console's internet traffic, which
//!   the kernel's policy routing sent us).
//! - Exits are reached only through encapsulation (IP in IP to the exit's
//!   overlay address, `exit.rs`): a member's bare packet for the internet
//!   is never forwarded along a default route.

use core::net::IpAddr;

use embassy_time::{Duration, Instant};

use crate::bfd::BFD_PORT;
use crate::discovery::DISCOVERY_PORT;
use crate::ip::{self, IpInfo};
use crate::overlay::BGP_PORT;
use crate::pex::PEX_PORT;

use super::group::GROUP_PORT;
use crate::rib::{Entry, Path, PeerId, Source, MAX_PATHS};
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
    /// From the LAN, for the internet: a console's traffic for its game
    /// exit (`exit.rs` picks the exit and carries it there).
    ToExit,
    /// From the LAN, on a game exit: the internet's answer to a console's
    /// TCP or ICMP that the kernel's masquerade took out (`exit_all`), for
    /// member `to`'s home: wrapped to that member's router.
    FromInternet {
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
    /// Relayed LAN discovery, UDP between [`DISCOVERY_PORT`]s.
    Discovery,
    /// Group records and digests, UDP between [`GROUP_PORT`]s.
    Group,
    /// IP in IP (RFC 2003) to our overlay address: a console's packet on
    /// its way to us as its game exit, or on its way back from its exit.
    Exit,
}

/// Why a packet is dropped; each has its counter in [`super::NodeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A broken IP header (`bad_inner`).
    BadHeader,
    /// From a tunnel, with a source no member's home holds, or from our
    /// own home to our own home (a member posing as one of our hosts to
    /// another): `spoofed`.
    Spoofed,
    /// A destination no relay serves: loopback, multicast, broadcast, link
    /// local (`relay_refused`).
    Martian,
    /// Transit with one of our own addresses as the source: a member posing
    /// as us (`relay_refused`).
    OwnSource,
    /// From the LAN, with a source outside our home (a LAN host posing as
    /// another home's host or router, or a subnet we do not announce):
    /// `lan_foreign_source`.
    ForeignSource,
    /// From the LAN, for our own LAN: a routing loop on the host (`no_route`).
    Loop,
    /// From the LAN, for our overlay address, which the kernel owns for all
    /// but BGP (`no_route`).
    NotOurs,
}

/// What forwarding reads: the FIB, the members, the node's settings.
pub(crate) struct Router<'v, 'a, T> {
    pub rib: &'v NodeRib,
    pub slots: &'v Slots<'a, T>,
    pub config: &'v NodeConfig,
}

impl<T: Tunnel> Router<'_, '_, T> {
    fn own_address(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v) => v == self.config.overlay,
            IpAddr::V6(v) => self.config.overlay_v6 == Some(v),
        }
    }

    pub(crate) fn own_home(&self, a: IpAddr) -> bool {
        self.own_address(a) || self.config.lan_prefixes.iter().any(|p| p.contains(a))
    }

    /// A source a packet from our LAN may have: our home as announced, or
    /// a mapped LAN as it is (mapped to its alias on the way out).
    fn lan_source(&self, a: IpAddr) -> bool {
        self.own_home(a)
            || match a {
                IpAddr::V4(v) => self.config.lan_map.iter().any(|m| m.to_alias(v).is_some()),
                IpAddr::V6(_) => false,
            }
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
        // One lookup serves the exit check, the first hop and the copy's.
        let entry = self.rib.lookup(info.dst);
        if entry.is_some_and(|e| e.prefix.is_default()) {
            return Verdict::ToExit;
        }
        if self.config.exit.is_some() && !self.source_allowed(info.src) {
            // Not from any home of the mesh: on an exit, that is the
            // internet answering a console through the kernel's masquerade.
            if let Some((to, _)) = self
                .slots
                .iter()
                .find(|(_, s)| s.wg.config.owns_address(info.dst))
            {
                return Verdict::FromInternet { to: to as PeerId };
            }
        }
        if !self.lan_source(info.src) {
            return Verdict::Drop(DropReason::ForeignSource);
        }
        match entry.and_then(|e| self.first_hop(e, || ip::flow_hash(packet, info))) {
            Some(Source::Peer(to)) => Verdict::ToMember {
                to,
                copy: match entry {
                    Some(e) if self.redundant_candidate(info) => self.second_first_hop_of(e, to),
                    _ => None,
                },
            },
            // The kernel sent us a packet for our own LAN: a routing loop on
            // the host. Drop it rather than bounce it back.
            Some(Source::Local) => Verdict::Drop(DropReason::Loop),
            None => Verdict::Unreachable,
        }
    }

    /// An inner packet from a member's tunnel, trimmed to its IP length.
    pub fn for_member_packet(&self, packet: &[u8], info: &IpInfo, from: PeerId) -> Verdict {
        let from_our_home = self.own_home(info.src);
        // Most packets come from the sender's own home: asked first, the
        // scan of every member's is left for transit.
        if !from_our_home && !self.sender_home(from, info.src) && !self.members_home(info.src) {
            return Verdict::Drop(DropReason::Spoofed);
        }
        if from_our_home && self.own_home(info.dst) {
            // Our home to our home never crosses a tunnel: a member posing
            // as one of our hosts (or as us) to another of them, which our
            // LAN and the kernel would take for local traffic.
            return Verdict::Drop(DropReason::Spoofed);
        }
        if martian(info.dst) {
            // Never relayed, never given to the kernel: the relay's loopback,
            // broadcast and the like are not the mesh's business.
            return Verdict::Drop(DropReason::Martian);
        }
        if self.own_address(info.dst) {
            if info.protocol == ip::PROTO_IPIP {
                return Verdict::Control(Control::Exit);
            }
            return match ip::udp_parts(packet, info) {
                Some((_, BFD_PORT, _)) => Verdict::Control(Control::Bfd),
                Some((PEX_PORT, PEX_PORT, _)) => Verdict::Control(Control::Pex),
                Some((DISCOVERY_PORT, DISCOVERY_PORT, _)) => Verdict::Control(Control::Discovery),
                Some((GROUP_PORT, GROUP_PORT, _)) => Verdict::Control(Control::Group),
                _ if self.config.overlay_in_kernel && !is_bgp(packet, info) => Verdict::ToLan,
                _ => Verdict::ToOverlay,
            };
        }
        let entry = self.rib.lookup(info.dst);
        if entry.is_some_and(|e| e.prefix.is_default()) {
            // Only encapsulated packets reach an exit: a bare one for the
            // internet is no member's home.
            return Verdict::Unreachable;
        }
        let hop =
            entry.and_then(|e| self.first_hop_from(e, || ip::flow_hash(packet, info), Some(from)));
        match hop {
            Some(Source::Local) if self.redundant_candidate(info) => Verdict::ToLanOnce,
            Some(Source::Local) => Verdict::ToLan,
            // Transit: we are a router on the path. The destination is a
            // member's announced prefix (nothing else is routed); one of our
            // own addresses as the source means a member is spoofing us.
            Some(Source::Peer(_)) if from_our_home => Verdict::Drop(DropReason::OwnSource),
            Some(Source::Peer(to)) => Verdict::Transit { to },
            None => Verdict::Unreachable,
        }
    }

    /// The source of a packet from a tunnel must lie in some member's home,
    /// or be ours (a reply to us).
    fn source_allowed(&self, src: IpAddr) -> bool {
        self.own_home(src) || self.members_home(src)
    }

    /// Member `from`'s home holds `src`.
    fn sender_home(&self, from: PeerId, src: IpAddr) -> bool {
        self.slots
            .get(usize::from(from))
            .is_some_and(|s| s.wg.config.owns_address(src))
    }

    /// Some member's home holds `src`.
    fn members_home(&self, src: IpAddr) -> bool {
        self.slots
            .iter()
            .any(|(_, s)| s.wg.config.owns_address(src))
    }

    /// The first hop towards the destination: one path, or one of several
    /// equal ones chosen by the flow (ECMP). A member whose BFD is down
    /// (its traffic moved, `supervision.rs`) is passed over while another
    /// path exists: the next-ranked one, which BGP already holds, carries
    /// the traffic until BFD comes back or BGP confirms the loss.
    pub fn route(&self, packet: &[u8], info: &IpInfo) -> Option<Source> {
        let entry = self.rib.lookup(info.dst)?;
        self.first_hop(entry, || ip::flow_hash(packet, info))
    }

    /// [`Router::route`] for one entry; `flow` picks among equal paths.
    pub(crate) fn first_hop(&self, entry: &Entry, flow: impl Fn() -> u32) -> Option<Source> {
        self.first_hop_from(entry, flow, None)
    }

    /// [`Router::first_hop`] for a packet member `came_from` sent: when
    /// every best path moved, the fallback is never that member. Its path
    /// leads back through us (the reason it sent the packet here), and two
    /// routers whose paths moved at once would bounce the traffic between
    /// them until BFD came back or BGP withdrew.
    fn first_hop_from(
        &self,
        entry: &Entry,
        flow: impl Fn() -> u32,
        came_from: Option<PeerId>,
    ) -> Option<Source> {
        let set = entry.multipath();
        let pick = |set: &[Path]| match set.len() {
            0 => None,
            1 => Some(set[0].source),
            n => Some(set[(flow() as usize) % n].source),
        };
        if set.iter().all(|p| !self.moved(p.source)) {
            return pick(set);
        }
        let mut usable: heapless::Vec<Path, MAX_PATHS> = heapless::Vec::new();
        for p in set.iter().filter(|p| !self.moved(p.source)) {
            let _ = usable.push(*p);
        }
        if usable.is_empty() {
            // Every path moved: one that is not moved, then one whose BFD
            // is Up again (a member back from a blip, waiting out its
            // return hysteresis) rather than one that is silent now; then
            // the one silent the shortest time. A member gone quiet a
            // second ago is likelier dead than one that blipped just now:
            // R2 lost power, traffic moved to R3, then the R1-R3 wire
            // blipped (the VM square under a busy host). R3 is the path
            // left; going back to R2 would lose everything until BGP gave
            // up on it.
            let paths = entry
                .paths()
                .iter()
                .filter(|p| came_from.is_none_or(|c| p.source != Source::Peer(c)));
            let alive = paths
                .clone()
                .find(|p| !self.moved(p.source))
                .or_else(|| paths.clone().find(|p| self.up_now(p.source)))
                .or_else(|| self.latest_down(paths));
            if let Some(p) = alive {
                let _ = usable.push(*p);
            }
        }
        // Nothing else: the silent member is still the best guess.
        pick(&usable).or_else(|| pick(set))
    }

    /// Of `paths`, the one whose member's BFD went down last (the best
    /// ranked among equals).
    fn latest_down<'p>(&self, paths: impl Iterator<Item = &'p Path>) -> Option<&'p Path> {
        let down_at = |s: Source| match s {
            Source::Local => None,
            Source::Peer(p) => self.slots.get(p as usize).and_then(|s| s.bfd.down_at()),
        };
        paths.fold(None, |best: Option<&Path>, p| match best {
            Some(b) if down_at(b.source) >= down_at(p.source) => Some(b),
            _ => Some(p),
        })
    }

    /// Forwarding avoids `source`: a member whose traffic moved.
    fn moved(&self, source: Source) -> bool {
        match source {
            Source::Local => false,
            Source::Peer(p) => self.slots.get(p as usize).is_some_and(|s| s.bfd.moved()),
        }
    }

    /// `source`'s tunnel is alive now: BFD Up (or off), moved or not.
    fn up_now(&self, source: Source) -> bool {
        match source {
            Source::Local => true,
            Source::Peer(p) => self
                .slots
                .get(p as usize)
                .is_some_and(|s| s.bfd.up_or_off()),
        }
    }

    /// Redundant sending covers small UDP packets: game traffic.
    /// (A whole UDP header inside the packet: what `ip::udp_parts` asks,
    /// read from the header alone, which `ip::parse` checked.)
    pub(crate) fn redundant_candidate(&self, info: &IpInfo) -> bool {
        self.config
            .redundancy_max_len
            .is_some_and(|max| info.total_len <= max as usize)
            && info.protocol == ip::PROTO_UDP
            && !info.later_fragment
            && info.total_len >= info.header_len + 8
    }

    /// The best path's first hop is `best`; the next-ranked path through
    /// another member, if any. Its advertiser did not route it through us (we
    /// would have been in its AS path), so the copy does not loop.
    ///
    /// A member whose traffic moved still takes copies, when no healthier
    /// second path exists: first one whose BFD is Up again (back from a
    /// blip, waiting out its hysteresis), then the one whose BFD went down
    /// last among those whose BGP session, and so its routes, still stand. A copy is
    /// insurance for the best path failing meanwhile (R2's power cut while
    /// the delayed R1-R3 wire of the VM square blips); into a tunnel that
    /// is really dead it costs one small packet, never a wrong delivery.
    pub(crate) fn second_first_hop(&self, info: &IpInfo, best: PeerId) -> Option<PeerId> {
        self.second_first_hop_of(self.rib.lookup(info.dst)?, best)
    }

    /// [`Router::second_first_hop`] in an entry already looked up. With one
    /// path there is no second first hop: nothing to search.
    fn second_first_hop_of(&self, entry: &Entry, best: PeerId) -> Option<PeerId> {
        let paths = entry.paths();
        if paths.len() < 2 {
            return None;
        }
        let other = |ok: &dyn Fn(Source) -> bool| {
            paths.iter().find_map(|p| match p.source {
                Source::Peer(q) if q != best && ok(p.source) => Some(q),
                _ => None,
            })
        };
        other(&|s| !self.moved(s))
            .or_else(|| other(&|s| self.up_now(s)))
            .or_else(|| {
                let others = paths
                    .iter()
                    .filter(|p| matches!(p.source, Source::Peer(q) if q != best));
                match self.latest_down(others)?.source {
                    Source::Peer(q) => Some(q),
                    Source::Local => None,
                }
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
const DEDUP_WAYS: usize = 4;

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

    /// The packet's key: a word at a time (every small UDP packet a
    /// router delivers is keyed, so this is on the receive path; a byte at
    /// a time cost some 700 instructions per packet). Equal keys of
    /// different packets are as unlikely as with FNV; neither is keyed, see
    /// [`crate::hash`].
    fn key(packet: &[u8], info: &IpInfo) -> u64 {
        let mut h = WordHash::new();
        match (info.src, info.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let id = packet
                    .get(4..6)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                h.word(u64::from(u32::from(s)) << 32 | u64::from(u32::from(d)));
                h.word(u64::from(id) << 8 | u64::from(info.protocol));
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                for a in [u128::from(s), u128::from(d)] {
                    h.word(a as u64);
                    h.word((a >> 64) as u64);
                }
                h.word(u64::from(info.protocol));
            }
            _ => h.word(u64::from(info.protocol)),
        }
        // The UDP header, whose checksum covers the whole datagram, and the
        // payload's first 8 octets; without a checksum (IPv4 allows none),
        // the payload's first 64.
        let udp_sum = packet
            .get(info.header_len + 6..info.header_len + 8)
            .is_some_and(|c| c != [0, 0]);
        let covered = if udp_sum { 8 } else { 64 };
        let end = info.total_len.min(info.header_len + 8 + covered);
        h.bytes(packet.get(info.header_len..end).unwrap_or(&[]));
        h.finish() | 1 // never the empty-slot key
    }

    /// Records the packet; false when it was seen within the window.
    ///
    /// The key picks a bucket of [`DEDUP_WAYS`] slots: a packet is looked
    /// for there only, and recorded in a free one (empty, expired, or its
    /// own old record), else over the oldest. A twin is missed only when
    /// `DEDUP_WAYS` later packets of the window took its bucket first (a
    /// duplicate delivered, which UDP allows); a packet is never taken for
    /// another's twin but for equal keys.
    #[inline]
    pub fn first_sighting(&mut self, now: Instant, packet: &[u8], info: &IpInfo) -> bool {
        let key = Self::key(packet, info);
        let start = (key as usize % (DEDUP_SLOTS / DEDUP_WAYS)) * DEDUP_WAYS;
        let Some(bucket) = self.slots.get_mut(start..start + DEDUP_WAYS) else {
            return true;
        };
        let expired = |at: Instant| now.saturating_duration_since(at) >= DEDUP_WINDOW;
        if bucket.iter().any(|&(k, at)| k == key && !expired(at)) {
            return false;
        }
        let slot = match bucket
            .iter()
            .position(|&(k, at)| k == 0 || k == key || expired(at))
        {
            Some(free) => free,
            None => (0..DEDUP_WAYS).min_by_key(|&i| bucket[i].1).unwrap_or(0),
        };
        if let Some(s) = bucket.get_mut(slot) {
            *s = (key, now);
        }
        true
    }
}

/// A multiply-rotate hash fed 64-bit words (the construction of rustc's
/// FxHasher, with a final avalanche so that the low bits, which pick the
/// slot, depend on every input bit).
struct WordHash(u64);

impl WordHash {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn new() -> WordHash {
        WordHash(0)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(Self::K);
    }

    /// Bytes, 8 at a time; the length goes in too, so that trailing zeros
    /// are not lost.
    fn bytes(&mut self, b: &[u8]) {
        let mut rest = b;
        while let Some((w, tail)) = rest.split_first_chunk::<8>() {
            self.word(u64::from_le_bytes(*w));
            rest = tail;
        }
        // The tail, zero-padded (a byte at a time: a copy of a variable
        // length is a call).
        let tail = rest
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &x)| w | u64::from(x) << (8 * i));
        self.word(tail);
        self.word(b.len() as u64);
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
