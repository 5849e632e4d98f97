//! Game exits: a console's UDP leaves through a friend's router whose NAT
//! has endpoint-independent mapping and filtering, so the console gets
//! PlayStation NAT Type 2, Xbox Open and Switch A even when its own home
//! sits behind a carrier-grade NAT (`../shared/design/CONSOLES.md`).
//!
//! How a packet travels:
//! - **The offer.** A node configured as an exit ([`super::NodeConfig::exit`])
//!   originates 0.0.0.0/0, tagged with the large community
//!   `(own ASN, EXIT_TAG, public IPv4)` and `(own ASN, LOAD_TAG, consoles
//!   served)`, while its own NAT classification says the internet can reach
//!   it: no NAT, or a forwarding NAT whose forwarded port range the
//!   configuration names. Members accept a default route only from members
//!   configured as exits, with that community (`engine.rs`, `Membership`).
//! - **Out.** The kernel policy-routes a console's internet-bound UDP into
//!   the TUN device (the daemon's rules); the FIB's answer is the default
//!   route ([`super::Verdict::ToExit`]). The console's exit is chosen once
//!   and kept while it lives ([`Exits::choose`]: sticky, no preemption);
//!   the packet is wrapped in IP in IP (RFC 2003) to the exit's overlay
//!   address and routed there like any packet to that address (transit and
//!   redundant sending included). Exits are never reached hop by hop along
//!   default routes: each router on the way could pick another exit.
//! - **At the exit.** The inner source must lie in the sending member's home.
//!   UDP goes through [`ExitNat`] (RFC 4787, `exitnat.rs`) and out as a
//!   datagram from the mapping's own port ([`super::Transmit::from`]
//!   = [`super::Port::Exit`]): the driver keeps one UDP socket per mapping,
//!   so endpoint-independent filtering comes from the kernel's unconnected
//!   socket, with no kernel NAT state. A datagram to the exit's own public
//!   address and a mapped port is hairpinned (REQ-9) with the sender's
//!   mapped address as its source. Anything else (TCP, ICMP: consoles set
//!   to `exit_all`) is handed to the kernel through the TUN device, where
//!   the daemon's masquerade rule takes it.
//! - **Back.** A datagram to a mapping's port becomes a UDP packet from the
//!   remote to the console, wrapped to the console's router, which accepts
//!   wrapped packets only from members configured as exits and only for its
//!   own LAN.

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use embassy_time::{Duration, Instant};

use crate::bgp::attr::{LargeCommunity, PathAttributes};
use crate::ip::{self, IcmpError, IpInfo};
use crate::prefix::Prefix;
use crate::rib::{Entry, Path, Source};
use crate::wg::{Crypto, Tunnel, INNER_MTU};

use super::engine::NodeRib;
use super::exitnat::{ExitNat, ExitNatConfig, Internal, Refused};
use super::output::{Port, TxMeta};
use super::slots::Slots;
use super::{Node, NodeEvent};

/// The large community data part that says "game exit"; the second data
/// part is the exit's public IPv4 address.
pub const EXIT_TAG: u32 = 1;
/// The large community data part that carries an exit's load: how many
/// consoles it serves.
pub const LOAD_TAG: u32 = 2;
/// Consoles one router keeps an exit for (the least recently seen is
/// forgotten first).
pub const MAX_CONSOLES: usize = 32;
/// How often an exit's NAT is swept for idle mappings: a mapping outlives
/// its timeout by at most this.
pub const SWEEP: Duration = Duration::from_secs(5);
/// An exit announces a new load at most this often.
pub const LOAD_INTERVAL: Duration = Duration::from_secs(10);
/// What the wrapping costs.
pub const ENCAP_OVERHEAD: usize = 20;
/// The largest console packet an exit carries: the route MTU the daemon
/// gives the consoles' routing table, so the kernel sends "fragmentation
/// needed" for anything larger, as a router would.
pub const EXIT_MTU: usize = INNER_MTU - ENCAP_OVERHEAD;

/// This router as a game exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitConfig {
    pub nat: ExitNatConfig,
    /// The NAT in front of this router forwards `nat`'s port range to it
    /// (the user says so by naming the range): an exit behind a NAT that
    /// forwards ports is reachable, one that does not is not.
    pub ports_forwarded: bool,
}

/// Counters of the exit path, on both ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// Console packets sent towards an exit (wrapped, or through our own NAT).
    pub to_exit: u64,
    /// Packets from an exit delivered to a console of ours.
    pub from_exit: u64,
    /// Console packets for the internet with no live exit (ICMP net
    /// unreachable; the daemon takes the consoles' route away meanwhile).
    pub no_exit: u64,
    /// Packets too large for the exit path (`EXIT_MTU`).
    pub too_big: u64,
    /// Datagrams out of and into our NAT, and hairpinned through it.
    pub nat_out: u64,
    pub nat_in: u64,
    pub hairpin: u64,
    /// Non-UDP console packets handed to the kernel's masquerade, and the
    /// internet's answers to them.
    pub to_kernel: u64,
    pub from_kernel: u64,
    /// Wrapped packets whose inner source is outside the sender's home.
    pub spoofed: u64,
    /// Wrapped packets we have no business with: we are no exit, the
    /// sender is not one, or the inner destination is not our LAN.
    pub refused: u64,
    /// IP fragments for the NAT (not reassembled; games do not fragment).
    pub fragments: u64,
    /// NAT refusals: the member's mapping quota, a full table, no free port.
    pub quota: u64,
    pub full: u64,
    pub no_port: u64,
    /// Over the sending member's relay rate cap.
    pub rate_limited: u64,
    /// Consoles moved to another exit (theirs died).
    pub switches: u64,
}

/// A console this router sends to an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleExit {
    pub console: Ipv4Addr,
    /// The exit's overlay address (ours: local breakout).
    pub exit: Ipv4Addr,
    pub since: Instant,
    pub last_seen: Instant,
    pub packets: u64,
}

/// Whether this router offers itself as a game exit, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// `exit` is not set.
    NotConfigured,
    /// Announced, at this public address.
    Offered(Ipv4Addr),
    /// The NAT check has no verdict yet (no member has answered STUN).
    Waiting,
    /// The internet cannot reach this router unasked: it sits behind this
    /// kind of NAT (a forwarding one counts only with `exit_ports` set).
    Unreachable(crate::nat::Behaviour),
}

/// An exit the mesh offers, as this router's RIB has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitView {
    pub overlay: Ipv4Addr,
    pub asn: u32,
    /// Its public address, from its community.
    pub public: Option<Ipv4Addr>,
    /// Consoles it serves, from its community.
    pub load: Option<u32>,
    /// Ourselves.
    pub local: bool,
    /// The exit a new console would get.
    pub best: bool,
    /// Routers on the way (the AS path length).
    pub hops: usize,
}

/// The exit state of a node: the offer, the sticky choice per console, the
/// NAT.
pub(crate) struct Exits {
    pub nat: ExitNat,
    /// Our public address while we announce ourselves as an exit.
    offered: Option<Ipv4Addr>,
    /// The load last announced, and when a new one may go out.
    load: u32,
    load_at: Instant,
    consoles: heapless::Vec<ConsoleExit, MAX_CONSOLES>,
    /// Some exit is live for our consoles (as last reported).
    available: bool,
    /// The next sweep of the NAT, while it holds mappings.
    sweep_at: Option<Instant>,
    pub stats: ExitStats,
}

impl core::fmt::Debug for Exits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Exits")
            .field("offered", &self.offered)
            .field("mappings", &self.nat.len())
            .field("consoles", &self.consoles.len())
            .finish_non_exhaustive()
    }
}

/// Why the exit wants a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Idle NAT mappings expire.
    Sweep,
    /// A changed load may be announced.
    Load,
}

/// 0.0.0.0/0.
pub(crate) const fn default_v4() -> Prefix {
    Prefix::default_route(crate::prefix::Family::Ipv4)
}

/// The exit a path of the default route leads to: its origin, if that is a
/// member configured as an exit (the import policy let nothing else in), or
/// us.
fn path_exit<T: Tunnel>(
    rib: &NodeRib,
    slots: &Slots<T>,
    own: Ipv4Addr,
    p: &Path,
) -> Option<Ipv4Addr> {
    match p.source {
        Source::Local => Some(own),
        Source::Peer(_) => {
            let asn = rib.attrs(p.attrs)?.as_path.origin_as()?;
            slots
                .iter()
                .map(|(_, s)| &s.wg.config)
                .find(|c| c.asn == asn && c.exit)
                .map(|c| c.overlay)
        }
    }
}

fn default_entry(rib: &NodeRib) -> Option<&Entry> {
    rib.entry(&default_v4())
}

impl Exits {
    pub fn new(now: Instant, nat: ExitNatConfig) -> Exits {
        Exits {
            nat: ExitNat::new(nat),
            offered: None,
            load: 0,
            load_at: now,
            consoles: heapless::Vec::new(),
            available: false,
            sweep_at: None,
            stats: ExitStats::default(),
        }
    }

    /// A member left: its consoles' mappings go.
    pub fn forget_home(&mut self, home: Ipv4Addr, closed: impl FnMut(u16)) {
        self.nat.remove_home(home, closed);
    }

    /// New NAT settings; `enabled` false (no longer an exit) closes every
    /// mapping.
    pub fn set_nat(&mut self, nat: ExitNatConfig, enabled: bool, mut closed: impl FnMut(u16)) {
        if !enabled {
            let all: heapless::Vec<Ipv4Addr, { super::exitnat::EXIT_HOMES }> = self
                .nat
                .iter()
                .map(|m| m.internal.home)
                .fold(heapless::Vec::new(), |mut v, h| {
                    if !v.contains(&h) {
                        let _ = v.push(h);
                    }
                    v
                });
            for home in all {
                self.nat.remove_home(home, &mut closed);
            }
        }
        self.nat.set_config(nat, closed);
        self.sweep_at = self.sweep_at.filter(|_| !self.nat.is_empty());
    }

    pub fn offered(&self) -> Option<Ipv4Addr> {
        self.offered
    }

    pub fn consoles(&self) -> &[ConsoleExit] {
        &self.consoles
    }

    /// Is `exit` still a live exit: a path of the default route leads to it,
    /// its overlay address is routed, and, when it is a member of ours, its
    /// BFD has not gone down (traffic moved off it: a console does not wait
    /// for BGP to confirm that its exit lost power).
    fn live<T: Tunnel>(rib: &NodeRib, slots: &Slots<T>, own: Ipv4Addr, exit: Ipv4Addr) -> bool {
        let Some(e) = default_entry(rib) else {
            return false;
        };
        if slots
            .iter()
            .any(|(_, s)| s.wg.config.overlay == exit && s.bfd.moved())
        {
            return false;
        }
        e.paths()
            .iter()
            .any(|p| path_exit(rib, slots, own, p) == Some(exit))
            && (exit == own
                || rib
                    .lookup(IpAddr::V4(exit))
                    .and_then(|e| e.best())
                    .is_some_and(|p| matches!(p.source, Source::Peer(_))))
    }

    /// The exit a console gets now: ours when we offer one (local breakout),
    /// else the best path's.
    fn best<T: Tunnel>(rib: &NodeRib, slots: &Slots<T>, own: Ipv4Addr) -> Option<Ipv4Addr> {
        let e = default_entry(rib)?;
        e.paths()
            .iter()
            .filter_map(|p| path_exit(rib, slots, own, p))
            .find(|&x| Self::live(rib, slots, own, x))
    }

    /// The exit for `console`: the one it has while that lives (sticky: a
    /// better exit appearing changes nothing), else the best one now. An
    /// exit change is returned for the caller to report.
    #[allow(clippy::type_complexity)]
    fn choose<T: Tunnel>(
        &mut self,
        now: Instant,
        console: Ipv4Addr,
        rib: &NodeRib,
        slots: &Slots<T>,
        own: Ipv4Addr,
    ) -> (
        Option<Ipv4Addr>,
        Option<(Option<Ipv4Addr>, Option<Ipv4Addr>)>,
    ) {
        let i = self.consoles.iter().position(|c| c.console == console);
        if let Some(c) = i.and_then(|i| self.consoles.get_mut(i)) {
            c.last_seen = now;
            c.packets += 1;
            if Self::live(rib, slots, own, c.exit) {
                return (Some(c.exit), None);
            }
        }
        let best = Self::best(rib, slots, own);
        let old = i.and_then(|i| self.consoles.get(i)).map(|c| c.exit);
        match (i, best) {
            (Some(i), Some(exit)) => {
                if let Some(c) = self.consoles.get_mut(i) {
                    c.exit = exit;
                    c.since = now;
                }
                self.stats.switches += 1;
            }
            (Some(i), None) => {
                self.consoles.swap_remove(i);
            }
            (None, Some(exit)) => {
                if self.consoles.is_full() {
                    // Forget the console seen longest ago.
                    if let Some(j) = self
                        .consoles
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| c.last_seen)
                        .map(|(j, _)| j)
                    {
                        self.consoles.swap_remove(j);
                    }
                }
                let _ = self.consoles.push(ConsoleExit {
                    console,
                    exit,
                    since: now,
                    last_seen: now,
                    packets: 1,
                });
            }
            (None, None) => {}
        }
        let change = (old != best).then_some((old, best));
        (best, change)
    }

    /// The exits the mesh offers, for status: each once, by its best path.
    pub fn view<'r, 'a: 'r, T: Tunnel>(
        rib: &'r NodeRib,
        slots: &'r Slots<'a, T>,
        own: Ipv4Addr,
    ) -> impl Iterator<Item = ExitView> + use<'r, 'a, T> {
        let best = Self::best(rib, slots, own);
        let paths = default_entry(rib).map_or(&[][..], |e| e.paths());
        paths.iter().enumerate().filter_map(move |(i, p)| {
            let exit = path_exit(rib, slots, own, p)?;
            // Paths are ranked: an earlier one to the same exit is its best.
            let seen = paths
                .get(..i)
                .unwrap_or(&[])
                .iter()
                .any(|q| path_exit(rib, slots, own, q) == Some(exit));
            if seen {
                return None;
            }
            let attrs = rib.attrs(p.attrs);
            let community = |tag: u32| {
                attrs?
                    .large_communities
                    .iter()
                    .find(|c| c.local1 == tag)
                    .map(|c| c.local2)
            };
            Some(ExitView {
                overlay: exit,
                asn: attrs.and_then(|a| a.as_path.origin_as()).unwrap_or(0),
                public: community(EXIT_TAG).map(Ipv4Addr::from),
                load: community(LOAD_TAG),
                local: p.source == Source::Local,
                best: best == Some(exit),
                hops: attrs.map_or(0, |a| a.as_path.selection_len()),
            })
        })
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let load = (self.offered.is_some() && self.nat.consoles() as u32 != self.load)
            .then_some((self.load_at, Timer::Load));
        self.sweep_at
            .map(|t| (t, Timer::Sweep))
            .into_iter()
            .chain(load)
            .min_by_key(|(t, _)| *t)
    }
}

/// The attributes of our default route as an exit.
pub(crate) fn offer_attributes(asn: u32, public: Ipv4Addr, load: u32) -> PathAttributes {
    let mut attrs = PathAttributes::default();
    let _ = attrs.large_communities.push(LargeCommunity {
        global: asn,
        local1: EXIT_TAG,
        local2: u32::from(public),
    });
    let _ = attrs.large_communities.push(LargeCommunity {
        global: asn,
        local1: LOAD_TAG,
        local2: load,
    });
    attrs
}

/// Does a default route from `asn` carry the exit community?
pub(crate) fn tagged_as_exit(attrs: &PathAttributes, asn: u32) -> bool {
    attrs
        .large_communities
        .iter()
        .any(|c| c.global == asn && c.local1 == EXIT_TAG)
}

impl<'a, C: Crypto> Node<'a, C> {
    // ---- the offer ----

    /// Announces or withdraws us as an exit, as the configuration and our
    /// NAT classification now say.
    pub(super) fn refresh_offer(&mut self, now: Instant) {
        use crate::nat::Behaviour;
        let report = self.stun.report();
        let public = match report.public.map(|p| p.ip()) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let want = self.config.exit.and_then(|e| match report.behaviour {
            Behaviour::Open => public,
            Behaviour::Forwarded if e.ports_forwarded => public,
            _ => None,
        });
        if want == self.exits.offered {
            return;
        }
        self.exits.offered = want;
        match want {
            Some(public) => {
                let load = self.exits.nat.consoles() as u32;
                self.exits.load = load;
                self.exits.load_at = now + LOAD_INTERVAL;
                let attrs = offer_attributes(self.config.asn, public, load);
                self.engine.originate_with(default_v4(), &attrs);
                log::info!("exit: offering this router as a game exit at {public}");
            }
            None => {
                self.engine.withdraw(default_v4());
                log::info!("exit: no longer a game exit");
            }
        }
        self.event(NodeEvent::ExitOffered { public: want });
        self.all_timers_changed();
        self.pump(now);
    }

    /// After the RIB changed: whether our consoles have an exit at all (the
    /// daemon routes them to us only then).
    pub(super) fn exit_availability(&mut self) {
        let available = Exits::best(self.engine.rib, &self.slots, self.config.overlay).is_some();
        if available != self.exits.available {
            self.exits.available = available;
            self.event(NodeEvent::ExitAvailable { available });
        }
    }

    /// The exit's timers: the NAT sweep, the load announcement.
    pub(super) fn exit_timeout(&mut self, now: Instant) {
        if self.exits.sweep_at.is_some_and(|t| t <= now) {
            let Node {
                exits,
                events,
                stats,
                ..
            } = self;
            exits.nat.expire(now, |port| {
                super::event::push_event(events, stats, NodeEvent::MappingClosed { port })
            });
            exits.sweep_at = (!exits.nat.is_empty()).then_some(now + SWEEP);
            self.timers_changed = true;
        }
        if let Some(public) = self.exits.offered {
            let load = self.exits.nat.consoles() as u32;
            if load != self.exits.load && self.exits.load_at <= now {
                self.exits.load = load;
                self.exits.load_at = now + LOAD_INTERVAL;
                let attrs = offer_attributes(self.config.asn, public, load);
                self.engine.originate_with(default_v4(), &attrs);
                self.timers_changed = true;
            }
        }
    }

    // ---- out: a console's packet ----

    /// A console's packet for the internet, from the LAN: to its exit.
    pub(super) fn send_to_exit(&mut self, now: Instant, packet: &[u8], info: &IpInfo) {
        let IpAddr::V4(console) = info.src else {
            self.exits.stats.no_exit += 1;
            return self.icmp_error(IcmpError::NetUnreachable, packet, info);
        };
        let mapped = self
            .config
            .lan_map
            .iter()
            .any(|m| m.to_alias(console).is_some());
        if !mapped
            && !self
                .config
                .lan_prefixes
                .iter()
                .any(|p| p.contains(info.src))
        {
            // Not one of our hosts: nothing of ours to carry.
            self.exits.stats.refused += 1;
            return;
        }
        let own = self.config.overlay;
        let (exit, change) = self
            .exits
            .choose(now, console, self.engine.rib, &self.slots, own);
        if let Some((from, to)) = change {
            if from.is_some() {
                log::info!("exit: console {console} moves from {from:?} to {to:?}");
            }
            self.event(NodeEvent::ConsoleExit { console, exit: to });
        }
        let Some(exit) = exit else {
            self.exits.stats.no_exit += 1;
            return self.icmp_error(IcmpError::NetUnreachable, packet, info);
        };
        if info.total_len > EXIT_MTU {
            self.exits.stats.too_big += 1;
            return;
        }
        self.exits.stats.to_exit += 1;
        if exit == own {
            return self.nat_outbound(now, own, packet, info);
        }
        self.send_wrapped(exit, packet, info);
    }

    /// Sends `inner` wrapped in IP in IP to `to`'s overlay address, routed
    /// like any packet to it; small UDP goes over a second first hop too.
    fn send_wrapped(&mut self, to: Ipv4Addr, inner: &[u8], inner_info: &IpInfo) {
        let mut buf = [0u8; INNER_MTU];
        let Some(n) = ip::build_ipip4(self.config.overlay, to, inner, &mut buf) else {
            self.exits.stats.too_big += 1;
            return;
        };
        // A console of a mapped LAN goes to its exit by its alias (the
        // exit's NAT answers that, and it comes back mapped in).
        if !self.config.lan_map.is_empty() {
            let wrapped = n - inner.len();
            let maps = &self.config.lan_map;
            crate::netmap::map(&mut buf[wrapped..n], maps, crate::netmap::Direction::Out);
        }
        let outer = &buf[..n];
        let Ok(info) = ip::parse(outer) else {
            return;
        };
        let router = self.router();
        let (first, copy) = match router.route(outer, &info) {
            Some(Source::Peer(p)) => {
                let copy = router
                    .redundant_candidate(inner_info)
                    .then(|| router.second_first_hop(&info, p))
                    .flatten();
                (p, copy)
            }
            _ => {
                self.stats.no_route += 1;
                return;
            }
        };
        self.send_to_member(first as usize, outer);
        if let Some(second) = copy {
            self.stats.redundant_copies += 1;
            self.send_to_member(second as usize, outer);
        }
    }

    // ---- a wrapped packet for us ----

    /// IP in IP to our overlay address (`len` bytes in the LAN ring's spare
    /// slot): a console's packet for us as its exit, or one from a console's
    /// exit for our LAN.
    pub(super) fn handle_wrapped(&mut self, now: Instant, len: usize, info: &IpInfo) {
        let mut inner_buf = [0u8; INNER_MTU];
        let outer = &self.lan.spare_ref()[..len];
        let Some(inner) = outer.get(info.header_len..len) else {
            return;
        };
        let Some(dst) = inner_buf.get_mut(..inner.len()) else {
            return;
        };
        dst.copy_from_slice(inner);
        let inner = &inner_buf[..inner.len()];
        let Ok(inner_info) = ip::parse(inner) else {
            self.stats.bad_inner += 1;
            return;
        };
        let inner = &inner[..inner_info.total_len];
        let Some(sender) = self.slots.by_overlay(info.src) else {
            self.exits.stats.refused += 1;
            return;
        };
        if self.router().redundant_candidate(&inner_info) {
            let outer = &self.lan.spare_ref()[..len];
            if !self.dedup.first_sighting(now, outer, info) {
                self.stats.duplicates_dropped += 1;
                return;
            }
        }
        let Some(s) = self.slots.get(sender) else {
            return;
        };
        let home = s.wg.config.overlay;
        let from_exit = s.wg.config.exit;
        let owns_source = s.wg.config.owns_address(inner_info.src);
        let ours = self
            .config
            .lan_prefixes
            .iter()
            .any(|p| p.contains(inner_info.dst));
        if from_exit && ours {
            // Back from our console's exit.
            self.exits.stats.from_exit += 1;
            return self.queue_lan(inner);
        }
        if self.exits.offered.is_none() || ours {
            self.exits.stats.refused += 1;
            return;
        }
        if !owns_source || s.wg.config.has_overlay(inner_info.src) {
            self.exits.stats.spoofed += 1;
            return;
        }
        let rate = self.config.relay_rate_kbit;
        let allowed = self
            .slots
            .get_mut(sender)
            .is_some_and(|s| s.relay.allow(now, rate, len));
        if !allowed {
            self.exits.stats.rate_limited += 1;
            return;
        }
        self.nat_outbound(now, home, inner, &inner_info);
    }

    // ---- the NAT ----

    /// A console's packet leaves through our NAT. `home`: the console's
    /// router (ours for local breakout).
    fn nat_outbound(&mut self, now: Instant, home: Ipv4Addr, packet: &[u8], info: &IpInfo) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else {
            self.exits.stats.refused += 1;
            return;
        };
        if info.later_fragment || ip::more_fragments(packet) {
            self.exits.stats.fragments += 1;
            return;
        }
        let Some((sport, dport, payload)) = ip::udp_parts(packet, info) else {
            // TCP, ICMP: the kernel's masquerade (`exit_all` consoles).
            self.exits.stats.to_kernel += 1;
            return self.queue_lan(packet);
        };
        let internal = Internal {
            home,
            addr: SocketAddrV4::new(src, sport),
        };
        let port = match self.exits.nat.outbound_new(now, internal) {
            Ok((p, created)) => {
                if created {
                    // A new console changes the load; the first mapping
                    // starts the sweep.
                    if self.exits.sweep_at.is_none() {
                        self.exits.sweep_at = Some(now + SWEEP);
                    }
                    self.timers_changed = true;
                }
                p
            }
            Err(r) => {
                let s = &mut self.exits.stats;
                *match r {
                    Refused::Quota => &mut s.quota,
                    Refused::Full => &mut s.full,
                    Refused::NoPort => &mut s.no_port,
                } += 1;
                return;
            }
        };
        if Some(dst) == self.exits.offered {
            // Hairpinning (REQ-9): to another mapping of ours, from the
            // sender's mapped address.
            let Some(peer) = self.exits.nat.inbound(dport) else {
                return;
            };
            self.exits.stats.hairpin += 1;
            let from = SocketAddrV4::new(dst, port);
            return self.deliver_to_console(peer, from, payload);
        }
        let meta = TxMeta {
            from: Port::Exit(port),
            ..TxMeta::to(SocketAddr::V4(SocketAddrV4::new(dst, dport)), payload.len())
        };
        if self.tx.push(payload, meta) {
            self.exits.stats.nat_out += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }

    /// The kernel's masquerade brought the internet's answer to a console of
    /// member `slot`'s home (TCP or ICMP of an `exit_all` console): wrapped
    /// to that member's router, which takes it only from an exit.
    pub(super) fn answer_from_internet(&mut self, slot: usize, packet: &[u8], info: &IpInfo) {
        let Some(home) = self.slots.get(slot).map(|s| s.wg.config.overlay) else {
            return;
        };
        if info.total_len > EXIT_MTU {
            self.exits.stats.too_big += 1;
            return;
        }
        self.exits.stats.from_kernel += 1;
        self.send_wrapped(home, packet, info);
    }

    /// A datagram from the internet to exit port `port`, from `from`: to
    /// the console that holds the mapping, whoever sent it (endpoint-
    /// independent filtering, REQ-8).
    pub fn handle_exit_datagram(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddrV4,
        payload: &[u8],
    ) {
        self.new_second(now);
        if let Some(internal) = self.exits.nat.inbound(port) {
            self.exits.stats.nat_in += 1;
            self.deliver_to_console(internal, from, payload);
        }
        self.settle();
    }

    /// The driver could not open exit port `port` (another program holds
    /// it): the mapping on it is dropped; the console's next datagram gets
    /// another port.
    pub fn exit_port_unavailable(&mut self, port: u16) {
        if self.exits.nat.port_unavailable(port).is_some() {
            self.event(NodeEvent::MappingClosed { port });
            self.timers_changed = true;
        }
        self.settle();
    }

    /// A UDP packet from `from` to a console: onto our LAN, or wrapped to
    /// the console's router.
    fn deliver_to_console(&mut self, to: Internal, from: SocketAddrV4, payload: &[u8]) {
        let mut buf = [0u8; INNER_MTU];
        let built = ip::build_udp4_plain(
            *from.ip(),
            *to.addr.ip(),
            from.port(),
            to.addr.port(),
            64,
            payload,
            &mut buf,
        );
        let Some(n) = built.filter(|&n| n <= EXIT_MTU) else {
            self.exits.stats.too_big += 1;
            return;
        };
        let packet = &buf[..n];
        if to.home == self.config.overlay {
            return self.queue_lan(packet);
        }
        let Ok(info) = ip::parse(packet) else {
            return;
        };
        self.send_wrapped(to.home, packet, &info);
    }

    /// The consoles this router sends to exits, for status.
    pub fn console_exits(&self) -> &[ConsoleExit] {
        self.exits.consoles()
    }

    /// The exits the mesh offers, for status.
    pub fn exits(&self) -> impl Iterator<Item = ExitView> + use<'_, 'a, C> {
        Exits::view(self.engine.rib, &self.slots, self.config.overlay)
    }

    /// Our public address while we offer ourselves as an exit.
    pub fn exit_offered(&self) -> Option<Ipv4Addr> {
        self.exits.offered()
    }

    /// Whether we offer ourselves as an exit, and if not, why.
    pub fn exit_offer(&self) -> Offer {
        use crate::nat::Behaviour;
        if self.config.exit.is_none() {
            return Offer::NotConfigured;
        }
        match (self.exits.offered(), self.stun.report().behaviour) {
            (Some(public), _) => Offer::Offered(public),
            (None, Behaviour::Unknown) => Offer::Waiting,
            (None, b) => Offer::Unreachable(b),
        }
    }

    pub fn exit_stats(&self) -> &ExitStats {
        &self.exits.stats
    }

    /// Our NAT's mappings, for status.
    pub fn exit_mappings(&self) -> impl Iterator<Item = super::exitnat::MappingView> + '_ {
        self.exits.nat.iter()
    }

    /// Consoles our NAT serves (our load as an exit).
    pub fn exit_mapped_consoles(&self) -> usize {
        self.exits.nat.consoles()
    }

    pub fn exit_nat_stats(&self) -> &super::exitnat::ExitNatStats {
        self.exits.nat.stats()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
