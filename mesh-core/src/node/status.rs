//! What the node shows of itself: per member, its tunnel, BFD, BGP session
//! and traversal; for status pages and tests.

use core::net::SocketAddr;

use embassy_time::{Duration, Instant};

use crate::bfd;
use crate::bgp::error::DownReason;
use crate::bgp::session::{SessionStats, State};
use crate::bgp::speaker::ImportStats;
use crate::pex;
use crate::wg::{Crypto, MemberConfig, MemberStats, Tunnel};

use super::slots::Slot;
use super::Node;

/// The state of one member, for status output.
#[derive(Debug, Clone)]
pub struct MemberStatus<'n> {
    pub slot: u8,
    pub config: &'n MemberConfig,
    pub endpoint: Option<SocketAddr>,
    pub endpoint_confirmed: bool,
    pub since_handshake: Option<Duration>,
    pub rtt: Option<Duration>,
    /// The path latency route selection uses: the least round trip of the
    /// latest series of handshakes, adopted with hysteresis.
    pub latency: Option<Duration>,
    pub last_rx: Option<Instant>,
    pub stats: MemberStats,
    pub bgp_state: State,
    pub bgp_stats: SessionStats,
    pub bgp_last_down: Option<DownReason>,
    pub bgp_established_since: Option<Instant>,
    pub prefixes_received: usize,
    pub import: ImportStats,
    pub bfd: Option<BfdStatus>,
    /// BGP is held down after BFD took it down; it restarts at this instant
    /// (if BFD is still Up then).
    pub bgp_held_until: Option<Instant>,
    /// Forwarding avoids the member: BFD went down and the tunnel has not
    /// proven healthy since.
    pub traffic_moved: bool,
    /// BFD is down with BGP up: BGP goes at this instant unless BFD returns.
    pub bgp_down_at: Option<Instant>,
    /// BFD is Up again after a blip: traffic returns at this instant.
    pub traffic_returns_at: Option<Instant>,
    /// BFD downs that BGP never saw (BFD Up again within the confirmation
    /// time), and those that took BGP down.
    pub bfd_survived: u64,
    pub bfd_confirmed: u64,
}

/// A member's BFD session, for status output.
#[derive(Debug, Clone, Copy)]
pub struct BfdStatus {
    pub state: bfd::State,
    pub remote_state: bfd::State,
    pub diagnostic: bfd::Diagnostic,
    pub tx_interval: Duration,
    pub detection_time: Duration,
    /// The Required Min RX Interval we advertise (raised on a jittery path).
    pub rx_interval: Duration,
    /// The path's measured jitter (mean deviation of the peer's gaps).
    pub jitter: Duration,
    pub up_since: Option<Instant>,
    pub stats: bfd::Stats,
}

impl BfdStatus {
    fn of(b: &bfd::Session) -> BfdStatus {
        BfdStatus {
            state: b.state(),
            remote_state: b.remote_state(),
            diagnostic: b.diagnostic(),
            tx_interval: b.tx_interval(),
            detection_time: b.detection_time(),
            rx_interval: b.rx_interval(),
            jitter: b.jitter(),
            up_since: b.up_since(),
            stats: b.stats,
        }
    }
}

/// What a member's traversal looks like, for status output.
#[derive(Debug, Clone)]
pub struct TraversalStatus {
    pub learned: heapless::Vec<SocketAddr, { pex::MAX_CANDIDATES }>,
    pub punching: bool,
    pub punch_attempts: u32,
    pub punch_successes: u32,
    pub last_punch: Option<Duration>,
    /// The next punch attempt, if one is scheduled.
    pub next_attempt: Option<Instant>,
    /// The NAT the member reported about itself (peer exchange), with the
    /// PlayStation type it gives its console.
    pub nat: Option<(crate::nat::Behaviour, Option<u8>)>,
}

impl<'n, T: Tunnel> Slot<'_, T> {
    fn status(&'n self, slot: usize, prefixes_received: usize) -> MemberStatus<'n> {
        let session = &self.bgp.session;
        MemberStatus {
            slot: slot as u8,
            config: &self.wg.config,
            endpoint: self.wg.endpoint,
            endpoint_confirmed: self.wg.endpoint_confirmed,
            since_handshake: self.wg.tunnel.since_handshake(),
            rtt: self.wg.tunnel.rtt(),
            latency: self
                .upkeep
                .latency()
                .map(|us| Duration::from_micros(us as u64)),
            last_rx: self.wg.last_rx,
            stats: self.wg.stats,
            bgp_state: session.state(),
            bgp_stats: *session.stats(),
            bgp_last_down: session.last_down(),
            bgp_established_since: session.established_since(),
            prefixes_received,
            import: self.bgp.import,
            bfd: self.bfd.session().map(BfdStatus::of),
            bgp_held_until: self.bfd.held_until(),
            traffic_moved: self.bfd.moved(),
            bgp_down_at: self.bfd.confirm_at(),
            traffic_returns_at: self.bfd.return_at(),
            bfd_survived: self.bfd.survived,
            bfd_confirmed: self.bfd.confirmed,
        }
    }
}

impl<'a, C: Crypto> Node<'a, C> {
    /// Status of every member.
    pub fn members(&self) -> impl Iterator<Item = MemberStatus<'_>> + use<'_, 'a, C> {
        self.slots
            .iter()
            .map(move |(i, s)| s.status(i, self.engine.rib.count_from(i as u8)))
    }

    /// Traversal state of member `slot`.
    pub fn traversal(&self, slot: u8) -> Option<TraversalStatus> {
        let t = &self.slots.get(slot as usize)?.punch;
        Some(TraversalStatus {
            learned: t.learned.clone(),
            punching: t.punching(),
            punch_attempts: t.attempts,
            punch_successes: t.successes,
            last_punch: t.last,
            next_attempt: t.next_attempt(),
            nat: t.nat,
        })
    }
}
