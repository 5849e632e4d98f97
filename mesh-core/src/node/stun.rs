//! STUN on the mesh port (RFC 8489, RFC 5780): the responder every member
//! runs, and the client that asks members where they see us.
//!
//! - **Responder**: a datagram on the mesh port that [`stun::is_stun`]
//!   recognises (WireGuard never can) is STUN. A Binding request is answered
//!   with the source the request came from, at most
//!   [`STUN_ANSWERS_PER_SECOND`]; a request to change port is answered from
//!   the driver's second port, or refused with 420 when there is none.
//! - **Client**: every member we can reach directly is asked, at once and
//!   every [`STUN_REFRESH`] ([`Probe`]); the answers feed [`NatState`], and
//!   one port-change test per member decides filtering.
//!
//! A new kind of packet on the mesh port is told apart in
//! [`super::Node::handle_udp`] (as STUN is here, by [`stun::is_stun`]) and
//! handled by a child like this one.

use core::net::{IpAddr, SocketAddr};

use embassy_time::{Duration, Instant};

use crate::nat::{NatReport, NatState};
use crate::pex::MAX_CANDIDATES;
use crate::stun;
use crate::wg::Tunnel;

use super::ids::Ids;
use super::slots::Slots;
use super::NodeStats;

/// Unanswered Binding requests are repeated after this (doubling).
pub const STUN_RETRY: Duration = Duration::from_secs(1);
/// An answered server is asked again after this.
pub const STUN_REFRESH: Duration = Duration::from_secs(60);
/// The filtering test repeats this often.
pub const FILTER_RETEST: Duration = Duration::from_secs(300);
/// Port-change requests sent before filtering counts as closed.
const FILTER_TRIES: u8 = 3;
pub const STUN_ANSWERS_PER_SECOND: u32 = 200;
/// Outstanding STUN transactions kept.
const MAX_PENDING: usize = 16;
/// A transaction not answered in this time is forgotten.
const PENDING_LIFETIME: Duration = Duration::from_secs(5);
/// The longest STUN message the node sends.
const MAX_STUN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binding,
    ChangePort,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    tid: stun::TransactionId,
    slot: u8,
    server: SocketAddr,
    kind: Kind,
    sent: Instant,
}

/// Asking one member where it sees us, and whether its second port gets
/// through our NAT.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The next Binding request.
    next: Instant,
    /// The last request was answered.
    answered: bool,
    tries: u8,
    /// The next step of the filtering test (when answered).
    filter_next: Option<Instant>,
    filter_tries: u8,
    filter_done: bool,
}

impl Probe {
    /// A probe due at once (it runs once the member has an endpoint).
    pub fn new(now: Instant) -> Probe {
        Probe {
            next: now,
            answered: false,
            tries: 0,
            filter_next: None,
            filter_tries: 0,
            filter_done: false,
        }
    }

    /// The next request or filtering test step (due at once when new).
    pub fn poll_timeout(&self) -> Instant {
        match self.filter_next {
            Some(f) if self.answered => f.min(self.next),
            _ => self.next,
        }
    }
}

/// Why the client wants to run (per member: [`Probe::poll_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// This member is due a Binding request or a filtering test step.
    Probe(u8),
}

/// What the STUN side tells the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Our public endpoint, as the members see it, changed.
    PublicEndpoint(Option<SocketAddr>),
}

/// A STUN message to send.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub to: SocketAddr,
    pub from_alt_port: bool,
    pub bytes: heapless::Vec<u8, MAX_STUN>,
}

/// The node's STUN client and responder.
#[derive(Debug)]
pub(crate) struct Stun {
    nat: NatState,
    /// The host's own addresses: an answer showing one means no NAT.
    local: heapless::Vec<IpAddr, 8>,
    pending: heapless::Vec<Pending, MAX_PENDING>,
    /// Answers left in the current second, and when it began.
    answers_left: u32,
    second: Option<Instant>,
    last_public: Option<SocketAddr>,
    /// The driver can send from a second port.
    alt_port: bool,
    out: heapless::Deque<Datagram, 8>,
    events: heapless::Deque<Event, 2>,
}

impl Stun {
    pub fn new(alt_port: bool) -> Stun {
        Stun {
            nat: NatState::new(),
            local: heapless::Vec::new(),
            pending: heapless::Vec::new(),
            answers_left: STUN_ANSWERS_PER_SECOND,
            second: None,
            last_public: None,
            alt_port,
            out: heapless::Deque::new(),
            events: heapless::Deque::new(),
        }
    }

    // ---- getters ----

    /// What this node knows about its NAT.
    pub fn report(&self) -> NatReport {
        let local = &self.local;
        self.nat.report(|a| local.contains(&a))
    }

    /// Where members may reach us: the public endpoint, then every mapping
    /// a member saw (with an endpoint-dependent NAT each sees another; they
    /// are still worth a try for a NAT that is only sometimes so).
    pub fn own_candidates(&self) -> heapless::Vec<SocketAddr, MAX_CANDIDATES> {
        let mut v = heapless::Vec::new();
        if let Some(p) = self.report().public {
            let _ = v.push(p);
        }
        for o in self.nat.observations() {
            if !v.contains(&o.mapped) && v.push(o.mapped).is_err() {
                break;
            }
        }
        v
    }

    // ---- control ----

    pub fn set_local_addresses(&mut self, addrs: &[IpAddr]) {
        self.local.clear();
        for a in addrs.iter().take(8) {
            let _ = self.local.push(*a);
        }
    }

    pub fn set_cgnat(&mut self, cgnat: Option<bool>) {
        self.nat.set_cgnat(cgnat);
    }

    /// A member with this endpoint is gone: its observations go too.
    pub fn forget(&mut self, endpoint: SocketAddr) {
        self.nat.forget(endpoint);
    }

    // ---- inputs ----

    /// A STUN datagram on the mesh port.
    pub fn handle_datagram<T: Tunnel>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        slots: &mut Slots<T>,
        stats: &mut NodeStats,
    ) {
        let msg = match stun::Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("stun: malformed datagram from {from}: {e}");
                stats.stun_invalid += 1;
                return;
            }
        };
        if msg.method() != stun::BINDING || msg.fingerprint_ok() == Some(false) {
            stats.stun_invalid += 1;
            return;
        }
        match msg.class() {
            stun::Class::Request => self.answer(now, from, &msg, stats),
            stun::Class::SuccessResponse => self.answered(now, from, &msg, slots, stats),
            stun::Class::ErrorResponse => self.refused(now, from, &msg, slots, stats),
            stun::Class::Indication => stats.stun_invalid += 1,
        }
    }

    fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &stun::Message<'_>,
        stats: &mut NodeStats,
    ) {
        if self
            .second
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1))
        {
            self.second = Some(now);
            self.answers_left = STUN_ANSWERS_PER_SECOND;
        }
        if self.answers_left == 0 {
            stats.stun_rate_limited += 1;
            return;
        }
        self.answers_left -= 1;
        let change = match msg.change_request() {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => {
                stats.stun_invalid += 1;
                return;
            }
        };
        let mut out = [0u8; MAX_STUN];
        let mut unknown = [0u16; 8];
        let mut n_unknown = 0;
        for (slot, t) in unknown.iter_mut().zip(msg.unknown_comprehension_required()) {
            *slot = t;
            n_unknown += 1;
        }
        // A server with one address cannot change it, and one without a
        // second port cannot change that: it answers 420 (Unknown
        // Attribute) naming CHANGE-REQUEST, as for any attribute it cannot
        // honour, so the client knows the test cannot be run here rather
        // than taking silence for filtering.
        if change.is_some_and(|c| c.ip || (c.port && !self.alt_port)) && n_unknown < 8 {
            unknown[n_unknown] = stun::attr::CHANGE_REQUEST;
            n_unknown += 1;
        }
        let unsupported = n_unknown > 0;
        let n = if unsupported {
            stun::error_response(
                msg,
                420,
                "Unknown Attribute",
                &unknown[..n_unknown],
                &mut out,
            )
        } else {
            stun::binding_success(msg, from, &mut out)
        };
        let Ok(n) = n else {
            stats.stun_invalid += 1;
            return;
        };
        stats.stun_answered += 1;
        let alt = !unsupported && change.is_some_and(|c| c.port);
        self.send(from, alt, &out[..n], stats);
    }

    fn prune(&mut self, now: Instant) {
        self.pending
            .retain(|p| now.saturating_duration_since(p.sent) < PENDING_LIFETIME);
    }

    /// Where in `pending` the transaction `msg` answers is (and `also`
    /// holds); answers to nothing outstanding are counted.
    fn transaction(
        &mut self,
        now: Instant,
        msg: &stun::Message<'_>,
        stats: &mut NodeStats,
        also: impl Fn(&Pending) -> bool,
    ) -> Option<usize> {
        self.prune(now);
        let tid = msg.transaction_id();
        let i = self.pending.iter().position(|p| p.tid == tid && also(p));
        if i.is_none() {
            stats.stun_unexpected += 1;
        }
        i
    }

    fn answered<T: Tunnel>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &stun::Message<'_>,
        slots: &mut Slots<T>,
        stats: &mut NodeStats,
    ) {
        let Some(i) = self.transaction(now, msg, stats, |_| true) else {
            return;
        };
        let p = self.pending[i];
        let from_server = match p.kind {
            Kind::Binding => from == p.server,
            Kind::ChangePort => from.ip() == p.server.ip() && from.port() != p.server.port(),
        };
        let Some(Ok(mapped)) = msg.xor_mapped_address().or_else(|| msg.mapped_address()) else {
            stats.stun_invalid += 1;
            return;
        };
        if !from_server {
            stats.stun_unexpected += 1;
            return;
        }
        stats.stun_responses += 1;
        self.pending.swap_remove(i);
        let Some(s) = slots.get_mut(p.slot as usize) else {
            return;
        };
        let name = s.wg.config.name.as_str();
        let probe = &mut s.stun;
        match p.kind {
            Kind::Binding => {
                log::debug!("stun: {name} ({}) sees us at {mapped}", p.server);
                self.nat.observe(p.server, mapped);
                probe.answered = true;
                probe.tries = 0;
                probe.next = now + STUN_REFRESH;
                probe.filter_next.get_or_insert(now);
            }
            Kind::ChangePort => {
                log::debug!("stun: {name} reached us from its second port {from}");
                self.nat.filtering_result(p.server.ip(), true);
                probe.filter_done = true;
                probe.filter_next = Some(now + FILTER_RETEST);
            }
        }
        let report = self.report();
        if report.public != self.last_public {
            log::info!(
                "nat: {} (public endpoint {:?})",
                report.behaviour.as_str(),
                report.public
            );
            self.last_public = report.public;
            let _ = self.events.push_back(Event::PublicEndpoint(report.public));
        }
    }

    /// An error answer: the server cannot run the port-change test.
    fn refused<T: Tunnel>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &stun::Message<'_>,
        slots: &mut Slots<T>,
        stats: &mut NodeStats,
    ) {
        let Some(i) = self.transaction(now, msg, stats, |p| p.server == from) else {
            return;
        };
        stats.stun_responses += 1;
        let p = self.pending.swap_remove(i);
        if let (Kind::ChangePort, Some(s)) = (p.kind, slots.get_mut(p.slot as usize)) {
            s.stun.filter_done = true;
            s.stun.filter_next = Some(now + FILTER_RETEST);
        }
    }

    /// Binding requests and filtering tests that are due.
    pub fn handle_timeout<T: Tunnel>(
        &mut self,
        now: Instant,
        slots: &mut Slots<T>,
        ids: &mut Ids,
        stats: &mut NodeStats,
    ) {
        self.prune(now);
        for (slot, s) in slots.iter_mut() {
            let Some(server) = s.wg.endpoint else {
                continue;
            };
            let probe = &mut s.stun;
            if probe.next <= now {
                if !probe.answered {
                    probe.tries = probe.tries.saturating_add(1);
                }
                let wait = if probe.answered {
                    STUN_REFRESH
                } else {
                    STUN_RETRY * (1u32 << probe.tries.min(5))
                };
                // The answer resets the schedule; an unanswered refresh
                // falls back to retrying.
                probe.answered = false;
                probe.next = now + wait;
                self.request(now, slot, server, Kind::Binding, ids, stats);
                continue;
            }
            if !probe.answered || probe.filter_next.is_some_and(|x| x > now) {
                continue;
            }
            if probe.filter_done {
                // Time to test again.
                probe.filter_done = false;
                probe.filter_tries = 0;
            }
            if probe.filter_tries >= FILTER_TRIES {
                // The ordinary answers come through, the ones from the other
                // port do not: our NAT filters by address and port.
                probe.filter_done = true;
                probe.filter_next = Some(now + FILTER_RETEST);
                self.nat.filtering_result(server.ip(), false);
                continue;
            }
            probe.filter_tries += 1;
            probe.filter_next = Some(now + STUN_RETRY);
            self.request(now, slot, server, Kind::ChangePort, ids, stats);
        }
    }

    fn request(
        &mut self,
        now: Instant,
        slot: usize,
        server: SocketAddr,
        kind: Kind,
        ids: &mut Ids,
        stats: &mut NodeStats,
    ) {
        let tid = ids.transaction_id();
        let change = (kind == Kind::ChangePort).then_some(stun::ChangeRequest {
            ip: false,
            port: true,
        });
        let mut out = [0u8; 64];
        let Ok(n) = stun::binding_request(tid, change, &mut out) else {
            return;
        };
        if self.pending.is_full() {
            self.pending.remove(0);
        }
        let _ = self.pending.push(Pending {
            tid,
            slot: slot as u8,
            server,
            kind,
            sent: now,
        });
        stats.stun_requests += 1;
        self.send(server, false, &out[..n], stats);
    }

    fn send(&mut self, to: SocketAddr, from_alt_port: bool, bytes: &[u8], stats: &mut NodeStats) {
        let queued = heapless::Vec::from_slice(bytes).ok().is_some_and(|bytes| {
            self.out
                .push_back(Datagram {
                    to,
                    from_alt_port,
                    bytes,
                })
                .is_ok()
        });
        if !queued {
            stats.queue_full += 1;
        }
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
