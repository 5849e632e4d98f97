//! BFD supervision of one member's tunnel (RFC 5882 §4.3): a [`bfd::Session`]
//! that takes the member's BGP session down the moment the path dies, and a
//! hold-down that keeps BGP down while the path flaps.
//!
//! - BFD Down: BGP stops at once ([`Event::StopBgp`], Cease/BFD Down), so
//!   the routes through the member go in the same step.
//! - BFD Up again: BGP restarts ([`Event::StartBgp`]) after a hold-down that
//!   doubles with each flap, from the configured base up to
//!   [`MAX_HOLD_DOWN`]. A member that comes back with a new discriminator
//!   restarted: it is not a flapping path and is not held down at all.
//! - A BGP session that stayed up for [`FLAP_MEMORY`] forgets past flaps.
//!
//! A new per-member policy (what a member may do, how it is watched) is a
//! field of [`super::slots::Slot`] with its own child like this one.

use embassy_time::{Duration, Instant};

use crate::bfd::{self, ControlPacket, Diagnostic};

/// The longest hold-down before BGP restarts after BFD flaps.
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(60);
/// A session up this long forgets past flaps.
pub const FLAP_MEMORY: Duration = Duration::from_secs(60);

/// What the supervision tells the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    BfdUp,
    BfdDown(Diagnostic),
    /// The peer took BFD out of service: no failure, no action.
    BfdAdminDown,
    /// Tear the member's BGP session down now (Cease/BFD Down).
    StopBgp,
    /// The hold-down is over with BFD Up: start BGP again.
    StartBgp,
}

/// The supervision's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The BFD session sends its next packet or finds the path dead.
    Bfd,
    /// The hold-down ends: BGP starts again if BFD is still Up.
    HoldDown,
}

const TIMERS: usize = 2;

impl Timer {
    const ALL: [Timer; TIMERS] = [Timer::Bfd, Timer::HoldDown];
}

/// A BFD discriminator: different per member slot and per start of the node
/// (the seed changes), never zero (RFC 5880 §6.3).
fn discriminator(seed: u64, slot: usize) -> u32 {
    let mixed = (seed ^ (seed >> 32)) as u32;
    ((mixed & !0x3f) | slot as u32).max(1)
}

/// One member's supervision.
#[derive(Debug)]
pub(crate) struct Supervision {
    session: Option<bfd::Session>,
    /// Seeds the session's discriminator and jitter.
    seed: u64,
    slot: usize,
    /// The base hold-down.
    hold_down: Duration,
    /// BGP is stopped because BFD went down.
    held: bool,
    /// When the hold-down ends (set once BFD is Up again).
    release_at: Option<Instant>,
    /// Recent flaps, for the growing hold-down.
    flaps: u32,
    /// The peer's discriminator while BFD was last Up: if it comes back
    /// with another, it restarted. (Not the one BFD went down with: a peer
    /// that restarts within the detection time takes the session down with
    /// its new instance's first packet.)
    up_discr: u32,
    /// Since when the member's BGP session is Established.
    bgp_up_since: Option<Instant>,
    events: heapless::Deque<Event, 4>,
}

impl Supervision {
    /// Supervision of the member in `slot`, with BFD if `config` says so
    /// (started now).
    pub fn new(
        now: Instant,
        config: Option<bfd::Config>,
        hold_down: Duration,
        seed: u64,
        slot: usize,
    ) -> Supervision {
        let seed = seed ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut s = Supervision {
            session: None,
            seed,
            slot,
            hold_down,
            held: false,
            release_at: None,
            flaps: 0,
            up_discr: 0,
            bgp_up_since: None,
            events: heapless::Deque::new(),
        };
        s.reconfigure(now, config, hold_down);
        s
    }

    // ---- getters ----

    pub fn session(&self) -> Option<&bfd::Session> {
        self.session.as_ref()
    }

    /// BFD is off for this tunnel, or Up.
    pub fn up_or_off(&self) -> bool {
        self.session
            .as_ref()
            .is_none_or(|b| b.state() == bfd::State::Up)
    }

    /// BFD runs on the tunnel and is still coming up: it has not been Up
    /// since it started, and has not taken BGP down.
    pub fn coming_up(&self) -> bool {
        !self.held
            && self
                .session
                .as_ref()
                .is_some_and(|b| b.state() != bfd::State::Up)
    }

    /// BGP is held down after BFD took it down; it restarts at this instant
    /// (if BFD is still Up then).
    pub fn held_until(&self) -> Option<Instant> {
        self.release_at
    }

    // ---- control ----

    /// New settings: a running session takes new timers through a poll
    /// sequence, a new one starts, a removed one stops (and BGP held for it
    /// starts).
    pub fn reconfigure(&mut self, now: Instant, config: Option<bfd::Config>, hold_down: Duration) {
        self.hold_down = hold_down;
        match (self.session.as_mut(), config) {
            (Some(b), Some(c)) => b.reconfigure(c),
            (None, Some(c)) => {
                let mut b = bfd::Session::new(c, discriminator(self.seed, self.slot), self.seed);
                b.start(now);
                self.session = Some(b);
            }
            (Some(_), None) => {
                self.session = None;
                self.release_at = None;
                if core::mem::take(&mut self.held) {
                    self.push(Event::StartBgp);
                }
            }
            (None, None) => {}
        }
    }

    /// The member's BGP session came up (`true`) or went down.
    pub fn bgp_changed(&mut self, now: Instant, up: bool) {
        if up {
            self.bgp_up_since = Some(now);
        } else {
            self.forget_flaps_if_stable(now);
            self.bgp_up_since = None;
        }
    }

    fn forget_flaps_if_stable(&mut self, now: Instant) {
        if self
            .bgp_up_since
            .is_some_and(|t| now.saturating_duration_since(t) > FLAP_MEMORY)
        {
            self.flaps = 0;
        }
    }

    // ---- inputs ----

    /// A BFD control packet from the member's tunnel. False when it was
    /// discarded (malformed, wrong TTL or discriminator, or BFD is off).
    pub fn handle_packet(&mut self, now: Instant, payload: &[u8], ttl: u8) -> bool {
        let Some(b) = self.session.as_mut() else {
            return false;
        };
        let ok = ControlPacket::parse(payload)
            .and_then(|pkt| b.handle_packet(now, &pkt, ttl))
            .is_ok();
        self.after_session(now);
        ok
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(b) = self.session.as_mut() {
            if b.poll_timeout().is_some_and(|t| t <= now) {
                b.handle_timeout(now);
                self.after_session(now);
            }
        }
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_at = None;
            if self.held && self.up_or_off() {
                self.held = false;
                self.push(Event::StartBgp);
            }
        }
    }

    fn after_session(&mut self, now: Instant) {
        while let Some(ev) = self.session.as_mut().and_then(|b| b.poll_event()) {
            match ev {
                bfd::Event::Up => self.bfd_up(now),
                bfd::Event::Down(d) => self.bfd_down(now, d),
                // The peer took BFD out of service (a clean shutdown, an
                // operator): BGP is not touched (RFC 5882 §3.2); its own
                // hold timer or a Cease decides.
                bfd::Event::PeerAdminDown => self.push(Event::BfdAdminDown),
            }
        }
    }

    fn bfd_up(&mut self, now: Instant) {
        self.push(Event::BfdUp);
        // A peer that comes back as a new instance (it rebooted) is not a
        // flapping path: no hold-down, BGP starts at once (and the flap
        // count starts over).
        let peer_discr = self.session.as_ref().map_or(0, |b| b.peer_discriminator());
        let rebooted = peer_discr != self.up_discr;
        self.up_discr = peer_discr;
        if rebooted {
            self.flaps = 0;
        }
        if self.held {
            let hold = if rebooted {
                Duration::from_ticks(0)
            } else {
                let shift = self.flaps.saturating_sub(1).min(16);
                Duration::from_ticks(self.hold_down.as_ticks().saturating_mul(1 << shift))
                    .min(MAX_HOLD_DOWN)
            };
            self.release_at = Some(now + hold);
        }
    }

    fn bfd_down(&mut self, now: Instant, diagnostic: Diagnostic) {
        self.push(Event::BfdDown(diagnostic));
        self.forget_flaps_if_stable(now);
        // The session goes down with BFD: its stable stretch ends here.
        self.bgp_up_since = None;
        self.flaps = self.flaps.saturating_add(1);
        self.release_at = None;
        if !self.held {
            self.held = true;
            self.push(Event::StopBgp);
        }
    }

    fn push(&mut self, e: Event) {
        if self.events.push_back(e).is_err() {
            log::warn!("bfd: supervision event queue full, dropping {e:?}");
        }
    }

    // ---- outputs ----

    /// This router shuts down cleanly: BFD tells the peer AdminDown now.
    pub fn admin_down(&mut self, now: Instant) {
        if let Some(b) = self.session.as_mut() {
            b.admin_down(now);
        }
    }

    /// The BFD control packet to send, if one is due.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ControlPacket> {
        self.session.as_mut()?.poll_transmit()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let table: [Option<Instant>; TIMERS] = [
            self.session.as_ref().and_then(|b| b.poll_timeout()),
            self.release_at,
        ];
        Timer::ALL
            .into_iter()
            .zip(table)
            .filter_map(|(t, at)| Some((at?, t)))
            .min_by_key(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests;
