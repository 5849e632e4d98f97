//! NAT traversal on the node: the STUN responder and client on the mesh
//! port, peer exchange inside the mesh, hole punching, and the relay's
//! safety checks.
//!
//! - **Responder**: a datagram on the mesh port that [`stun::is_stun`]
//!   recognises (WireGuard never can) is STUN. A Binding request is answered
//!   with the source the request came from, at most
//!   [`STUN_ANSWERS_PER_SECOND`]; a request to change port is answered from
//!   the driver's second port.
//! - **Client**: every member we can reach directly is asked, at start and
//!   every [`STUN_REFRESH`]; their answers feed [`NatState`], and one
//!   port-change test per member decides filtering.
//! - **Peer exchange** ([`crate::pex`]): every [`PEX_INTERVAL`] each member
//!   we have a route to hears our public endpoint and where we see the
//!   members we have tunnels to.
//! - **Hole punching**: for a member with no tunnel of its own but a route
//!   through others, the lower overlay address sends a Punch through that
//!   route and both sides send WireGuard handshake initiations to the other's
//!   candidates for [`PUNCH_WINDOW`]: each side's first packets open its own
//!   NAT for the other's. No tunnel by then: try again after a backoff
//!   (doubling up to [`PUNCH_BACKOFF_MAX`]), meanwhile traffic transits.

use super::*;
use crate::nat::{NatReport, NatState};
use crate::pex::{self, PEX_PORT};
use crate::stun;

/// Unanswered Binding requests are repeated after this (doubling).
pub const STUN_RETRY: Duration = Duration::from_secs(1);
/// An answered server is asked again after this.
pub const STUN_REFRESH: Duration = Duration::from_secs(60);
/// The filtering test repeats this often.
pub const FILTER_RETEST: Duration = Duration::from_secs(300);
/// Port-change requests sent before filtering counts as closed.
const FILTER_TRIES: u8 = 3;
pub const STUN_ANSWERS_PER_SECOND: u32 = 200;
pub const PEX_INTERVAL: Duration = Duration::from_secs(5);
pub const PUNCH_WINDOW: Duration = Duration::from_secs(3);
const PUNCH_SPACING: Duration = Duration::from_millis(200);
pub const PUNCH_BACKOFF_MIN: Duration = Duration::from_secs(5);
pub const PUNCH_BACKOFF_MAX: Duration = Duration::from_secs(120);
/// A tunnel heard from this recently is a direct path.
pub const DIRECT_FRESH: Duration = Duration::from_secs(15);
/// Outstanding STUN transactions kept.
const MAX_PENDING: usize = 16;
/// A transaction not answered in this time is forgotten.
const PENDING_LIFETIME: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    Binding,
    ChangePort,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    tid: stun::TransactionId,
    slot: u8,
    server: SocketAddr,
    kind: Probe,
    sent: Instant,
}

/// Traversal state per member.
#[derive(Debug, Clone, Default)]
pub(super) struct Traversal {
    stun_next: Option<Instant>,
    stun_answered: bool,
    stun_tries: u8,
    filter_next: Option<Instant>,
    filter_tries: u8,
    filter_done: bool,
    /// Endpoints of this member learned over peer exchange, newest last.
    pub(super) learned: heapless::Vec<SocketAddr, { pex::MAX_CANDIDATES }>,
    punch_until: Option<Instant>,
    punch_next_send: Option<Instant>,
    punch_started: Option<Instant>,
    next_attempt: Option<Instant>,
    backoff: Option<Duration>,
    token: u32,
    pub(super) punch_attempts: u32,
    pub(super) punch_successes: u32,
    /// The last punch that worked took this long.
    pub(super) last_punch: Option<Duration>,
    /// The NAT the member reported about itself, and its PlayStation type.
    pub(super) nat: Option<(crate::nat::Behaviour, Option<u8>)>,
    /// Transit token bucket (bytes) and when it was last filled.
    bucket: u32,
    bucket_at: Option<Instant>,
}

impl Traversal {
    pub(super) fn reset(&mut self) {
        *self = Traversal::default();
    }
}

/// Node-wide traversal state.
#[derive(Debug)]
pub(super) struct TraversalState {
    pub(super) nat: NatState,
    pub(super) local: heapless::Vec<IpAddr, 8>,
    pending: heapless::Vec<Pending, MAX_PENDING>,
    counter: u64,
    answers_left: u32,
    pex_next: Option<Instant>,
    pub(super) pex_dirty: bool,
    last_public: Option<SocketAddr>,
}

impl TraversalState {
    pub(super) fn new() -> TraversalState {
        TraversalState {
            nat: NatState::new(),
            local: heapless::Vec::new(),
            pending: heapless::Vec::new(),
            counter: 0,
            answers_left: STUN_ANSWERS_PER_SECOND,
            pex_next: None,
            pex_dirty: false,
            last_public: None,
        }
    }

    pub(super) fn second(&mut self) {
        self.answers_left = STUN_ANSWERS_PER_SECOND;
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

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Destinations a relay never forwards to: loopback, unspecified,
/// multicast, broadcast, link-local.
fn martian(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || v.is_broadcast()
                || v.is_link_local()
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl<C: Crypto> Node<'_, C> {
    // ---- driver inputs ----

    /// The host's own addresses (the driver reads them from the system): a
    /// STUN answer showing one of them means there is no NAT.
    pub fn set_local_addresses(&mut self, addrs: &[IpAddr]) {
        self.trav.local.clear();
        for a in addrs.iter().take(8) {
            let _ = self.trav.local.push(*a);
        }
    }

    /// Whether a carrier-grade NAT is on the path (the driver probes hops).
    pub fn set_cgnat(&mut self, cgnat: Option<bool>) {
        self.trav.nat.set_cgnat(cgnat);
    }

    /// What this node knows about its NAT.
    pub fn nat_report(&self) -> NatReport {
        let local = &self.trav.local;
        self.trav.nat.report(|a| local.contains(&a))
    }

    /// Traversal state of member `slot`.
    pub fn traversal(&self, slot: u8) -> Option<TraversalStatus> {
        self.members.get(slot as usize)?;
        let t = self.member_trav.get(slot as usize)?;
        Some(TraversalStatus {
            learned: t.learned.clone(),
            punching: t.punch_until.is_some(),
            punch_attempts: t.punch_attempts,
            punch_successes: t.punch_successes,
            last_punch: t.last_punch,
            next_attempt: t.next_attempt,
            nat: t.nat,
        })
    }

    // ---- STUN ----

    fn transaction_id(&mut self) -> stun::TransactionId {
        let mut x = self.config.seed ^ self.trav.counter.rotate_left(32);
        self.trav.counter += 1;
        let a = splitmix(&mut x).to_be_bytes();
        let b = splitmix(&mut x).to_be_bytes();
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&a);
        t[8..].copy_from_slice(&b[..4]);
        stun::TransactionId(t)
    }

    /// A STUN datagram on the mesh port.
    pub(super) fn handle_stun(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let msg = match stun::Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("stun: malformed datagram from {from}: {e}");
                self.stats.stun_invalid += 1;
                return;
            }
        };
        if msg.method() != stun::BINDING || msg.fingerprint_ok() == Some(false) {
            self.stats.stun_invalid += 1;
            return;
        }
        match msg.class() {
            stun::Class::Request => self.answer_binding(from, &msg),
            stun::Class::SuccessResponse => self.binding_answered(now, from, &msg),
            stun::Class::ErrorResponse => self.binding_refused(now, from, &msg),
            stun::Class::Indication => self.stats.stun_invalid += 1,
        }
    }

    fn answer_binding(&mut self, from: SocketAddr, msg: &stun::Message<'_>) {
        if self.trav.answers_left == 0 {
            self.stats.stun_rate_limited += 1;
            return;
        }
        self.trav.answers_left -= 1;
        let change = match msg.change_request() {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => {
                self.stats.stun_invalid += 1;
                return;
            }
        };
        let mut out = [0u8; 128];
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
        if change.is_some_and(|c| c.ip || (c.port && !self.config.alt_port)) && n_unknown < 8 {
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
            self.stats.stun_invalid += 1;
            return;
        };
        self.stats.stun_answered += 1;
        let alt = !unsupported && change.is_some_and(|c| c.port);
        if let Ok(bytes) = heapless::Vec::from_slice(&out[..n]) {
            if self
                .transmit
                .push_back(Datagram {
                    to: from,
                    bytes,
                    from_alt_port: alt,
                })
                .is_err()
            {
                self.stats.queue_full += 1;
            }
        }
    }

    fn binding_answered(&mut self, now: Instant, from: SocketAddr, msg: &stun::Message<'_>) {
        let tid = msg.transaction_id();
        let Some(i) = self.trav.pending.iter().position(|p| p.tid == tid) else {
            self.stats.stun_unexpected += 1;
            return;
        };
        let p = self.trav.pending[i];
        let from_server = match p.kind {
            Probe::Binding => from == p.server,
            Probe::ChangePort => from.ip() == p.server.ip() && from.port() != p.server.port(),
        };
        let Some(Ok(mapped)) = msg.xor_mapped_address().or_else(|| msg.mapped_address()) else {
            self.stats.stun_invalid += 1;
            return;
        };
        if !from_server {
            self.stats.stun_unexpected += 1;
            return;
        }
        self.trav.pending.swap_remove(i);
        let slot = p.slot as usize;
        let name = self.member_name(p.slot).unwrap_or("?");
        match p.kind {
            Probe::Binding => {
                log::debug!("stun: {name} ({}) sees us at {mapped}", p.server);
                self.trav.nat.observe(p.server, mapped);
                if let Some(t) = self.member_trav.get_mut(slot) {
                    t.stun_answered = true;
                    t.stun_tries = 0;
                    t.stun_next = Some(now + STUN_REFRESH);
                }
            }
            Probe::ChangePort => {
                log::debug!("stun: {name} reached us from its second port {from}");
                self.trav.nat.filtering_result(p.server.ip(), true);
                if let Some(t) = self.member_trav.get_mut(slot) {
                    t.filter_done = true;
                    t.filter_next = Some(now + FILTER_RETEST);
                }
            }
        }
        let report = self.nat_report();
        let public = report.public;
        if public != self.trav.last_public {
            log::info!(
                "nat: {} (public endpoint {:?})",
                report.behaviour.as_str(),
                public
            );
            self.trav.last_public = public;
            self.trav.pex_dirty = true;
        }
    }

    /// An error answer: the server cannot run the port-change test.
    fn binding_refused(&mut self, now: Instant, from: SocketAddr, msg: &stun::Message<'_>) {
        let tid = msg.transaction_id();
        let Some(i) = self
            .trav
            .pending
            .iter()
            .position(|p| p.tid == tid && p.server == from)
        else {
            self.stats.stun_unexpected += 1;
            return;
        };
        let p = self.trav.pending.swap_remove(i);
        if let (Probe::ChangePort, Some(t)) = (p.kind, self.member_trav.get_mut(p.slot as usize)) {
            t.filter_done = true;
            t.filter_next = Some(now + FILTER_RETEST);
        }
    }

    fn send_binding(&mut self, now: Instant, slot: usize, server: SocketAddr, kind: Probe) {
        let tid = self.transaction_id();
        let change = (kind == Probe::ChangePort).then_some(stun::ChangeRequest {
            ip: false,
            port: true,
        });
        let mut out = [0u8; 64];
        let Ok(n) = stun::binding_request(tid, change, &mut out) else {
            return;
        };
        if self.trav.pending.is_full() {
            self.trav.pending.remove(0);
        }
        let _ = self.trav.pending.push(Pending {
            tid,
            slot: slot as u8,
            server,
            kind,
            sent: now,
        });
        self.stats.stun_requests += 1;
        self.queue_datagram(server, &out[..n]);
    }

    /// Asks members we reach directly where they see us.
    pub(super) fn stun_timers(&mut self, now: Instant) {
        self.trav
            .pending
            .retain(|p| now.saturating_duration_since(p.sent) < PENDING_LIFETIME);
        for slot in 0..MAX_MEMBERS {
            let Some(server) = self.members.get(slot).and_then(|m| m.endpoint) else {
                continue;
            };
            let t = &mut self.member_trav[slot];
            if t.stun_next.is_none_or(|x| x <= now) {
                if !t.stun_answered {
                    t.stun_tries = t.stun_tries.saturating_add(1);
                }
                let wait = if t.stun_answered {
                    STUN_REFRESH
                } else {
                    STUN_RETRY * (1u32 << t.stun_tries.min(5))
                };
                // The answer resets the schedule; an unanswered refresh
                // falls back to retrying.
                t.stun_answered = false;
                t.stun_next = Some(now + wait);
                self.send_binding(now, slot, server, Probe::Binding);
                continue;
            }
            let t = &mut self.member_trav[slot];
            if !t.stun_answered || t.filter_next.is_some_and(|x| x > now) {
                continue;
            }
            if t.filter_done {
                // Time to test again.
                t.filter_done = false;
                t.filter_tries = 0;
            }
            if t.filter_tries >= FILTER_TRIES {
                // The ordinary answers come through, the ones from the other
                // port do not: our NAT filters by address and port.
                t.filter_done = true;
                t.filter_next = Some(now + FILTER_RETEST);
                self.trav.nat.filtering_result(server.ip(), false);
                continue;
            }
            t.filter_tries += 1;
            t.filter_next = Some(now + STUN_RETRY);
            self.send_binding(now, slot, server, Probe::ChangePort);
        }
    }

    // ---- peer exchange ----

    fn own_candidates(&self) -> heapless::Vec<SocketAddr, { pex::MAX_CANDIDATES }> {
        let mut v = heapless::Vec::new();
        if let Some(p) = self.nat_report().public {
            let _ = v.push(p);
        }
        // With an endpoint-dependent NAT every member sees another mapping;
        // they are still worth a try for a NAT that is only sometimes so.
        for o in self.trav.nat.observations() {
            if !v.contains(&o.mapped) && v.push(o.mapped).is_err() {
                break;
            }
        }
        v
    }

    /// Is `slot` reached over its own tunnel, recently heard from, and (if
    /// the tunnel runs BFD) with BFD Up?
    pub(super) fn is_direct(&self, now: Instant, slot: usize) -> bool {
        let bfd_up = self.peers[slot]
            .as_ref()
            .and_then(|p| p.bfd.as_ref())
            .is_none_or(|b| b.state() == bfd::State::Up);
        bfd_up
            && self.members.get(slot).is_some_and(|m| {
                m.endpoint_confirmed
                    && m.last_rx
                        .is_some_and(|t| now.saturating_duration_since(t) < DIRECT_FRESH)
            })
    }

    /// A route to the member's overlay address through someone else.
    fn transit_to(&self, slot: usize) -> Option<PeerId> {
        let m = self.members.get(slot)?;
        match self
            .rib
            .lookup(IpAddr::V4(m.config.overlay))?
            .best()?
            .source
        {
            Source::Peer(p) if p as usize != slot => Some(p),
            _ => None,
        }
    }

    fn send_pex(&mut self, slot: usize, msg: &pex::Message) {
        let Some(dst) = self.members.get(slot).map(|m| m.config.overlay) else {
            return;
        };
        let mut payload = [0u8; pex::MAX_LEN];
        let mut out = [0u8; pex::MAX_LEN + 28];
        let Ok(n) = msg.encode(&mut payload) else {
            return;
        };
        let src = self.config.overlay;
        if let Some(len) = ip::build_udp4(src, dst, PEX_PORT, PEX_PORT, 64, &payload[..n], &mut out)
        {
            self.stats.pex_sent += 1;
            self.originate(&out[..len]);
        }
    }

    pub(super) fn pex_timers(&mut self, now: Instant) {
        let due = self.trav.pex_next.is_none_or(|t| t <= now);
        if !due && !self.trav.pex_dirty {
            return;
        }
        self.trav.pex_next = Some(now + PEX_INTERVAL);
        self.trav.pex_dirty = false;
        let mut entries: heapless::Vec<pex::Entry, { pex::MAX_ENTRIES }> = heapless::Vec::new();
        for e in self.own_candidates() {
            let _ = entries.push(pex::Entry {
                subject: self.config.overlay,
                own: true,
                endpoint: e,
            });
        }
        for slot in 0..MAX_MEMBERS {
            if !self.is_direct(now, slot) {
                continue;
            }
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            if let Some(e) = m.endpoint {
                let entry = pex::Entry {
                    subject: m.config.overlay,
                    own: false,
                    endpoint: e,
                };
                if entries.push(entry).is_err() {
                    break;
                }
            }
        }
        let report = self.nat_report();
        let msg = pex::Message::Endpoints {
            nat: report.behaviour.code(),
            playstation: report.playstation.unwrap_or(0),
            entries,
        };
        for slot in 0..MAX_MEMBERS {
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            let routed = self
                .rib
                .lookup(IpAddr::V4(m.config.overlay))
                .and_then(|e| e.best())
                .is_some();
            if routed {
                self.send_pex(slot, &msg);
            }
        }
    }

    /// A peer exchange datagram from member `sender`.
    pub(super) fn handle_pex(&mut self, now: Instant, src: IpAddr, payload: &[u8]) {
        let Some(sender) = self.members.by_overlay(src) else {
            self.stats.pex_invalid += 1;
            return;
        };
        let msg = match pex::Message::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("pex: bad message from {src}: {e}");
                self.stats.pex_invalid += 1;
                return;
            }
        };
        self.stats.pex_received += 1;
        match msg {
            pex::Message::Endpoints {
                nat,
                playstation,
                entries,
            } => {
                self.member_trav[sender].nat = Some((
                    crate::nat::Behaviour::from_code(nat),
                    (1..=3).contains(&playstation).then_some(playstation),
                ));
                for e in entries {
                    let Some(s) = self.members.by_overlay(IpAddr::V4(e.subject)) else {
                        continue; // about us, or someone we do not know
                    };
                    // A member speaks for itself only about itself.
                    if e.own && s != sender {
                        self.stats.pex_invalid += 1;
                        continue;
                    }
                    self.learn(s, e.endpoint);
                }
            }
            pex::Message::Punch {
                token,
                answer,
                candidates,
            } => {
                for c in &candidates {
                    self.learn(sender, *c);
                }
                if self.is_direct(now, sender) {
                    return;
                }
                if !answer {
                    let reply = pex::Message::Punch {
                        token,
                        answer: true,
                        candidates: self.own_candidates(),
                    };
                    self.send_pex(sender, &reply);
                    self.start_punch(now, sender);
                } else if self.member_trav[sender].token == token {
                    self.start_punch(now, sender);
                }
            }
        }
    }

    fn learn(&mut self, slot: usize, endpoint: SocketAddr) {
        if endpoint.port() == 0 || martian(endpoint.ip()) {
            return;
        }
        let Some(t) = self.member_trav.get_mut(slot) else {
            return;
        };
        if let Some(i) = t.learned.iter().position(|e| *e == endpoint) {
            t.learned.remove(i);
        } else if t.learned.is_full() {
            t.learned.remove(0);
        }
        let _ = t.learned.push(endpoint);
    }

    // ---- hole punching ----

    fn start_punch(&mut self, now: Instant, slot: usize) {
        let Some(t) = self.member_trav.get_mut(slot) else {
            return;
        };
        if t.punch_until.is_none() {
            t.punch_started = Some(now);
            t.punch_attempts += 1;
        }
        t.punch_until = Some(now + PUNCH_WINDOW);
        t.punch_next_send = Some(now);
        self.punch_send(now, slot);
    }

    /// One round of handshake initiations to every candidate of `slot`.
    fn punch_send(&mut self, now: Instant, slot: usize) {
        let mut out = [0u8; MAX_DATAGRAM + 64];
        let (Some(m), Some(t)) = (self.members.get_mut(slot), self.member_trav.get_mut(slot))
        else {
            return;
        };
        if t.punch_next_send.is_some_and(|x| x > now) || t.learned.is_empty() {
            return;
        }
        t.punch_next_send = Some(now + PUNCH_SPACING);
        let TunnelResult::Network(b) = m.tunnel.initiate(&mut out) else {
            return;
        };
        m.last_initiation = Some(now);
        m.stats.handshakes_sent += 1;
        let b: heapless::Vec<u8, MAX_DATAGRAM> = heapless::Vec::from_slice(b).unwrap_or_default();
        let targets = t.learned.clone();
        for to in targets {
            self.stats.punch_packets += 1;
            self.queue_datagram(to, &b);
        }
    }

    pub(super) fn punch_timers(&mut self, now: Instant) {
        for slot in 0..MAX_MEMBERS {
            if self.members.get(slot).is_none() {
                continue;
            }
            if self.is_direct(now, slot) {
                let t = &mut self.member_trav[slot];
                if let Some(started) = t.punch_started.take() {
                    let took = now.saturating_duration_since(started);
                    t.punch_successes += 1;
                    t.last_punch = Some(took);
                    log::info!(
                        "punch: direct tunnel to {} after {} ms",
                        self.member_name(slot as u8).unwrap_or("?"),
                        took.as_millis()
                    );
                }
                let t = &mut self.member_trav[slot];
                t.punch_until = None;
                t.next_attempt = None;
                t.backoff = None;
                continue;
            }
            let t = &mut self.member_trav[slot];
            if let Some(until) = t.punch_until {
                if now >= until {
                    let backoff = t.backoff.unwrap_or(PUNCH_BACKOFF_MIN);
                    t.punch_until = None;
                    t.punch_started = None;
                    t.next_attempt = Some(now + backoff);
                    t.backoff = Some((backoff * 2).min(PUNCH_BACKOFF_MAX));
                    self.stats.punch_failures += 1;
                } else {
                    self.punch_send(now, slot);
                }
                continue;
            }
            // The lower overlay address arranges; the other answers.
            let Some(m) = self.members.get(slot) else {
                continue;
            };
            if self.config.overlay > m.config.overlay
                || t.learned.is_empty()
                || t.next_attempt.is_some_and(|x| x > now)
            {
                continue;
            }
            if self.transit_to(slot).is_none() {
                continue;
            }
            let token = (splitmix(&mut (self.config.seed ^ self.trav.counter)) >> 32) as u32;
            self.trav.counter += 1;
            self.member_trav[slot].token = token;
            let ask = pex::Message::Punch {
                token,
                answer: false,
                candidates: self.own_candidates(),
            };
            self.send_pex(slot, &ask);
            self.start_punch(now, slot);
        }
    }

    // ---- relay safety ----

    /// May a transit packet of `len` bytes from member `slot` go on? The
    /// destination was routed (a member's announced prefix); this checks the
    /// rest and the member's rate.
    pub(super) fn relay_allowed(
        &mut self,
        now: Instant,
        slot: usize,
        info: &IpInfo,
        len: usize,
    ) -> bool {
        // Our own addresses as the source of a packet we are to relay: a
        // member is spoofing us.
        if self.overlay.has_addr(info.src)
            || self
                .config
                .lan_prefixes
                .iter()
                .any(|p| p.contains(info.src))
        {
            self.stats.relay_refused += 1;
            return false;
        }
        let Some(rate) = self.config.relay_rate else {
            return true;
        };
        let Some(t) = self.member_trav.get_mut(slot) else {
            return false;
        };
        // A quarter of a second of burst, at least a few full packets.
        let cap = (rate / 4).max(8 * MAX_DATAGRAM as u32);
        let elapsed = t.bucket_at.map_or(Duration::from_secs(1), |at| {
            now.saturating_duration_since(at)
        });
        let refill = (rate as u64 * elapsed.as_micros() / 1_000_000).min(cap as u64) as u32;
        t.bucket = t.bucket.saturating_add(refill).min(cap);
        t.bucket_at = Some(now);
        let need = len as u32;
        if t.bucket < need {
            self.stats.relay_rate_limited += 1;
            return false;
        }
        t.bucket -= need;
        true
    }

    /// Test hook (simulation only): this node plays a modified, hostile
    /// member and sends `packet` as is through member `slot`'s tunnel,
    /// whatever its own routing and checks would say.
    #[cfg(feature = "sim")]
    pub fn send_raw_to_member(&mut self, slot: u8, packet: &[u8]) {
        self.send_to_member(slot as usize, packet);
    }

    /// Destinations no relay forwards to.
    pub(super) fn martian_destination(info: &IpInfo) -> bool {
        martian(info.dst)
    }
}
