//! Peer exchange inside the mesh ([`crate::pex`]) and hole punching.
//!
//! - **Peer exchange**: every [`PEX_INTERVAL`], and at once when something
//!   worth telling changed (a tunnel came up, a member became reachable, our
//!   public endpoint moved), each member we have a route to hears our NAT,
//!   our public endpoints and where we see the members we have tunnels to
//!   ([`announcement`]).
//! - **Hole punching** ([`Punch`], one per member): for a member with no
//!   tunnel of its own but a route through others, the side that leads (the
//!   lower overlay address) sends a Punch through that route and both sides
//!   send WireGuard handshake initiations to the other's candidates for
//!   [`PUNCH_WINDOW`]: each side's first packets open its own NAT for the
//!   other's. No tunnel by then: try again after a backoff (doubling up to
//!   [`PUNCH_BACKOFF_MAX`]); meanwhile traffic transits.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embassy_time::{Duration, Instant};

use crate::nat::NatReport;
use crate::pex::{self, MAX_CANDIDATES};
use crate::wg::Tunnel;

use super::ids::Ids;
use super::slots::Slots;

pub const PEX_INTERVAL: Duration = Duration::from_secs(5);
pub const PUNCH_WINDOW: Duration = Duration::from_secs(3);
const PUNCH_SPACING: Duration = Duration::from_millis(200);
pub const PUNCH_BACKOFF_MIN: Duration = Duration::from_secs(5);
pub const PUNCH_BACKOFF_MAX: Duration = Duration::from_secs(120);

/// The node-wide side: when members hear from us next.
#[derive(Debug)]
pub(crate) struct Exchange {
    next_announce: Instant,
}

/// Why peer exchange wants to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Tell every member we have a route to what we know.
    Announce,
    /// This member's punch: a round of initiations, the window's end, the
    /// next attempt, or a look at whether one is needed.
    Punch(u8),
}

impl Exchange {
    pub fn new(now: Instant) -> Exchange {
        Exchange { next_announce: now }
    }

    /// Something worth telling changed: announce at the next timeout.
    pub fn announce_now(&mut self, now: Instant) {
        self.next_announce = self.next_announce.min(now);
    }

    /// Whether the announcement is due; if so, the next one is scheduled.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.next_announce > now {
            return false;
        }
        self.next_announce = now + PEX_INTERVAL;
        true
    }

    /// The next announcement (each member's punch has its own
    /// [`Punch::poll_timeout`]).
    pub fn poll_timeout<T: Tunnel>(&self, slots: &Slots<T>) -> Option<(Instant, Timer)> {
        // With no members there is nobody to tell.
        (!slots.is_empty()).then_some((self.next_announce, Timer::Announce))
    }
}

/// The Endpoints message: our NAT and candidates, and where we see each
/// member we reach directly.
pub(crate) fn announcement<T: Tunnel>(
    now: Instant,
    own: Ipv4Addr,
    report: &NatReport,
    candidates: &[SocketAddr],
    slots: &Slots<T>,
) -> pex::Message {
    let mut entries: heapless::Vec<pex::Entry, { pex::MAX_ENTRIES }> = heapless::Vec::new();
    for e in candidates {
        let _ = entries.push(pex::Entry {
            subject: own,
            own: true,
            endpoint: *e,
        });
    }
    for (_, s) in slots.iter() {
        if !s.is_direct(now) {
            continue;
        }
        if let Some(e) = s.wg.endpoint {
            let entry = pex::Entry {
                subject: s.wg.config.overlay,
                own: false,
                endpoint: e,
            };
            if entries.push(entry).is_err() {
                break;
            }
        }
    }
    pex::Message::Endpoints {
        nat: report.behaviour.code(),
        playstation: report.playstation.unwrap_or(0),
        entries,
    }
}

/// What the node knows about a member, for its punch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// Reached over its own tunnel now, or about to be
    /// ([`super::slots::Slot::direct_or_coming_up`]).
    pub direct: bool,
    /// When that ends by itself (silence), if direct.
    pub direct_until: Option<Instant>,
    /// This side arranges punches with it (the lower overlay address).
    pub leads: bool,
    /// A route to it through another member exists (so a Punch reaches it).
    pub transit: bool,
}

/// What a punch step asks of the node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Send the member a Punch with this token (through the mesh).
    pub ask: Option<u32>,
    /// Send handshake initiations to its candidates now.
    pub initiate: bool,
    /// A punch worked after this long.
    pub succeeded: Option<Duration>,
    /// A punch window ended without a tunnel.
    pub failed: bool,
}

/// Hole punching towards one member, and what peer exchange taught us of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Punch {
    /// Endpoints of this member learned over peer exchange, newest last.
    pub learned: heapless::Vec<SocketAddr, MAX_CANDIDATES>,
    /// The NAT the member reported about itself, and its PlayStation type.
    pub nat: Option<(crate::nat::Behaviour, Option<u8>)>,
    until: Option<Instant>,
    next_send: Option<Instant>,
    started: Option<Instant>,
    next_attempt: Option<Instant>,
    backoff: Option<Duration>,
    /// Look again whether a punch is needed (something changed).
    check_at: Option<Instant>,
    token: u32,
    pub attempts: u32,
    pub successes: u32,
    /// The last punch that worked took this long.
    pub last: Option<Duration>,
}

impl Punch {
    pub fn new(now: Instant) -> Punch {
        Punch {
            check_at: Some(now),
            ..Punch::default()
        }
    }

    pub fn punching(&self) -> bool {
        self.until.is_some()
    }

    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Something that decides whether a punch is needed changed (a route, a
    /// tunnel, BFD): look again now.
    pub fn poke(&mut self, now: Instant) {
        self.check_at = Some(self.check_at.map_or(now, |t| t.min(now)));
    }

    /// Whether [`Punch::handle_timeout`] has something to do.
    pub fn due(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|t| t <= now)
    }

    /// When this punch next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let step = match self.until {
            // Punching: the next round of initiations, or the window's end.
            Some(u) => Some(self.next_send.map_or(u, |n| n.min(u))),
            None => self.next_attempt,
        };
        [step, self.check_at].into_iter().flatten().min()
    }

    /// A candidate endpoint of the member, from peer exchange.
    pub fn learn(&mut self, now: Instant, endpoint: SocketAddr) {
        if endpoint.port() == 0 || martian(endpoint.ip()) {
            return;
        }
        if let Some(i) = self.learned.iter().position(|e| *e == endpoint) {
            self.learned.remove(i);
        } else if self.learned.is_full() {
            self.learned.remove(0);
        }
        let _ = self.learned.push(endpoint);
        self.poke(now);
    }

    /// The member asks us to punch (`answer` false; we answer and start), or
    /// answers our request (with our token: we start).
    pub fn handle_punch(&mut self, now: Instant, token: u32, answer: bool, direct: bool) -> Step {
        if direct || (answer && token != self.token) {
            return Step::default();
        }
        self.start(now)
    }

    fn start(&mut self, now: Instant) -> Step {
        // An attempt is under way: the one scheduled after the last failure
        // is this one (the member may have asked first).
        self.next_attempt = None;
        if self.until.is_none() {
            self.started = Some(now);
            self.attempts += 1;
        }
        self.until = Some(now + PUNCH_WINDOW);
        self.next_send = Some(now);
        self.send(now)
    }

    /// A round of initiations, if one is due and there is anyone to send to
    /// (candidates may still arrive during the window).
    fn send(&mut self, now: Instant) -> Step {
        if self.next_send.is_some_and(|x| x > now) {
            return Step::default();
        }
        self.next_send = Some(now + PUNCH_SPACING);
        Step {
            initiate: !self.learned.is_empty(),
            ..Step::default()
        }
    }

    /// The member's punch timers. `facts` as the node sees the member now.
    pub fn handle_timeout(&mut self, now: Instant, facts: Facts, ids: &mut Ids) -> Step {
        if !self.due(now) {
            return Step::default();
        }
        self.check_at = None;
        if facts.direct {
            let mut step = Step::default();
            if let Some(started) = self.started.take() {
                let took = now.saturating_duration_since(started);
                self.successes += 1;
                self.last = Some(took);
                step.succeeded = Some(took);
            }
            self.until = None;
            self.next_send = None;
            self.next_attempt = None;
            self.backoff = None;
            // Look again when the tunnel would count as silent.
            self.check_at = facts.direct_until;
            return step;
        }
        if let Some(until) = self.until {
            if now >= until {
                let backoff = self.backoff.unwrap_or(PUNCH_BACKOFF_MIN);
                self.until = None;
                self.next_send = None;
                self.started = None;
                self.next_attempt = Some(now + backoff);
                self.backoff = Some((backoff * 2).min(PUNCH_BACKOFF_MAX));
                return Step {
                    failed: true,
                    ..Step::default()
                };
            }
            return self.send(now);
        }
        if self.next_attempt.is_some_and(|x| x > now) {
            return Step::default();
        }
        self.next_attempt = None;
        // The side that leads arranges; the other answers. A member nobody
        // can forward a Punch to cannot be asked.
        if !facts.leads || self.learned.is_empty() || !facts.transit {
            return Step::default();
        }
        self.token = ids.token();
        let mut step = self.start(now);
        step.ask = Some(self.token);
        step
    }
}

/// Destinations a relay never forwards to, and endpoints never worth a
/// punch: loopback, unspecified, multicast, broadcast, link-local.
pub(crate) fn martian(a: IpAddr) -> bool {
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

#[cfg(test)]
mod tests;
