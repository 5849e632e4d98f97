//! BFD supervision of one member's tunnel (RFC 5882 §4.3): a [`bfd::Session`]
//! that moves traffic off the member the moment the path goes silent, and
//! takes its BGP session down only once the silence is confirmed.
//!
//! Forty milliseconds of silence is a dead router, or a scheduling hiccup,
//! a home uplink's upload queue, a burst of loss. The data plane cannot wait
//! to tell them apart; the control plane can:
//!
//! - BFD Down: traffic moves at once ([`Event::Moved`]`(true)`: forwarding
//!   skips the member's paths while another exists), and the confirmation
//!   timer starts. BGP, its routes and what we told others stay as they are.
//! - Silence outlasting the confirmation time (BFD still not Up): the path is
//!   dead. BGP stops ([`Event::StopBgp`], Cease/BFD Down) and the routes go.
//!   With a confirmation time of zero this happens in the step BFD goes Down.
//! - BFD Up again before that (a blip): BGP never moved. Traffic returns
//!   after the tunnel has stayed Up for a while (hysteresis: [`RETURN_AFTER`],
//!   doubled for each further blip within [`FLAP_MEMORY`], up to
//!   [`MAX_RETURN_AFTER`]), so a path that keeps blipping carries less and
//!   less until it settles.
//! - BFD Up after a confirmed down: BGP restarts ([`Event::StartBgp`]) after a
//!   hold-down that doubles with each confirmed flap, from the configured
//!   base up to [`MAX_HOLD_DOWN`]. Hold-downs are only for these: a tunnel
//!   that really went away, more than once. A member that comes back with a
//!   new discriminator restarted: it is not a flapping path and is not held
//!   down at all (and if it restarted within the confirmation time, its BGP
//!   session, which died with it, restarts at once).
//! - A BGP session that stayed up for [`FLAP_MEMORY`] forgets past flaps.
//!
//! A new per-member policy (what a member may do, how it is watched) is a
//! field of [`super::slots::Slot`] with its own child like this one.

use embassy_time::{Duration, Instant};

use crate::bfd::{self, ControlPacket, Diagnostic};

/// The longest hold-down before BGP restarts after BFD flaps.
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(60);
/// A session up this long forgets past flaps; blips older than this no
/// longer lengthen the return.
pub const FLAP_MEMORY: Duration = Duration::from_secs(60);
/// After a blip, traffic returns to the member once BFD has been Up this
/// long (the first blip in [`FLAP_MEMORY`]).
pub const RETURN_AFTER: Duration = Duration::from_secs(1);
/// The longest wait before traffic returns to a member that keeps blipping.
pub const MAX_RETURN_AFTER: Duration = Duration::from_secs(30);

/// How failures are damped: what a configuration sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damping {
    /// After a confirmed down, BGP waits this long with BFD Up before it
    /// starts again (doubled per flap).
    pub hold_down: Duration,
    /// BFD must stay down this long (after its own detection time) before
    /// BGP is taken down. Zero: at once.
    pub confirm: Duration,
}

/// What the supervision tells the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    BfdUp,
    BfdDown(Diagnostic),
    /// The peer took BFD out of service: no failure, no action.
    BfdAdminDown,
    /// Forwarding avoids the member (`true`) or may use it again.
    Moved(bool),
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
    /// BFD has been down for the confirmation time: BGP stops.
    Confirm,
    /// BFD has been Up long enough after a blip: traffic returns.
    Return,
}

const TIMERS: usize = 4;

impl Timer {
    const ALL: [Timer; TIMERS] = [Timer::Bfd, Timer::HoldDown, Timer::Confirm, Timer::Return];
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
    damping: Damping,
    /// BGP is stopped because BFD went down and stayed down.
    held: bool,
    /// When the hold-down ends (set once BFD is Up again).
    release_at: Option<Instant>,
    /// Recent confirmed flaps, for the growing hold-down.
    flaps: u32,
    /// Forwarding avoids the member.
    moved: bool,
    /// When BFD last went down: the member's last sign of life, give or
    /// take its detection time.
    down_at: Option<Instant>,
    /// BFD is down and BGP still up: BGP stops at this instant unless BFD
    /// comes Up first.
    confirm_at: Option<Instant>,
    /// BFD is Up again after a blip: traffic returns at this instant.
    return_at: Option<Instant>,
    /// Recent blips (downs BFD recovered from within the confirmation
    /// time), for the growing return wait; and when the last one began.
    blips: u32,
    last_blip: Option<Instant>,
    /// Downs BFD recovered from before BGP noticed, and downs that took BGP
    /// down, since the member was added.
    pub survived: u64,
    pub confirmed: u64,
    /// The peer's discriminator while BFD was last Up: if it comes back
    /// with another, it restarted. (Not the one BFD went down with: a peer
    /// that restarts within the detection time takes the session down with
    /// its new instance's first packet.)
    up_discr: u32,
    /// Since when the member's BGP session is Established.
    bgp_up_since: Option<Instant>,
    events: heapless::Deque<Event, 8>,
}

impl Supervision {
    /// Supervision of the member in `slot`, with BFD if `config` says so
    /// (started now).
    pub fn new(
        now: Instant,
        config: Option<bfd::Config>,
        damping: Damping,
        seed: u64,
        slot: usize,
    ) -> Supervision {
        let seed = seed ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut s = Supervision {
            session: None,
            seed,
            slot,
            damping,
            held: false,
            release_at: None,
            flaps: 0,
            moved: false,
            down_at: None,
            confirm_at: None,
            return_at: None,
            blips: 0,
            last_blip: None,
            survived: 0,
            confirmed: 0,
            up_discr: 0,
            bgp_up_since: None,
            events: heapless::Deque::new(),
        };
        s.reconfigure(now, config, damping);
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
            && !self.moved
            && self
                .session
                .as_ref()
                .is_some_and(|b| b.state() != bfd::State::Up)
    }

    /// Forwarding avoids this member while another path exists: BFD went
    /// down and the tunnel has not proven healthy since.
    pub fn moved(&self) -> bool {
        self.moved
    }

    /// When BFD last went down, if it ever did.
    pub fn down_at(&self) -> Option<Instant> {
        self.down_at
    }

    /// BFD is down with BGP still up: BGP stops at this instant unless BFD
    /// comes back first.
    pub fn confirm_at(&self) -> Option<Instant> {
        self.confirm_at
    }

    /// Traffic returns to the member at this instant (BFD is Up again).
    pub fn return_at(&self) -> Option<Instant> {
        self.return_at
    }

    /// BGP is held down after BFD took it down; it restarts at this instant
    /// (if BFD is still Up then).
    pub fn held_until(&self) -> Option<Instant> {
        self.release_at
    }

    // ---- control ----

    /// New settings: a running session takes new timers through a poll
    /// sequence, a new one starts, a removed one stops (and BGP held for it
    /// starts, traffic moved off returns).
    pub fn reconfigure(&mut self, now: Instant, config: Option<bfd::Config>, damping: Damping) {
        self.damping = damping;
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
                self.confirm_at = None;
                self.return_at = None;
                if core::mem::take(&mut self.held) {
                    self.push(Event::StartBgp);
                }
                self.set_moved(false);
            }
            (None, None) => {}
        }
        // A shorter confirmation time applies to a down in progress.
        if let Some(t) = self.confirm_at {
            self.confirm_at = Some(t.min(now + damping.confirm));
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

    /// The member's tunnel has a usable session again: see
    /// [`bfd::Session::path_up`].
    pub fn path_up(&mut self, now: Instant) {
        if let Some(b) = self.session.as_mut() {
            b.path_up(now);
        }
    }

    /// See [`bfd::Session::resumed`].
    pub fn resumed(&mut self, stamped: Instant, now: Instant) -> bool {
        self.session
            .as_mut()
            .is_some_and(|b| b.resumed(stamped, now))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(b) = self.session.as_mut() {
            if b.poll_timeout().is_some_and(|t| t <= now) {
                b.handle_timeout(now);
                self.after_session(now);
            }
        }
        if self.confirm_at.is_some_and(|t| t <= now) {
            self.confirm_at = None;
            if !self.up_or_off() {
                self.confirmed_down(now);
            }
        }
        if self.return_at.is_some_and(|t| t <= now) {
            self.return_at = None;
            if self.up_or_off() && !self.held {
                self.set_moved(false);
            }
        }
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_at = None;
            if self.held && self.up_or_off() {
                self.held = false;
                self.push(Event::StartBgp);
                self.set_moved(false);
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
        let rebooted = peer_discr != self.up_discr && self.up_discr != 0;
        self.up_discr = peer_discr;
        if rebooted {
            if self.confirm_at.is_some() {
                // It restarted within the confirmation time: its BGP
                // session died with it, ours is a ghost. Start anew.
                self.confirmed_down(now);
            }
            self.flaps = 0;
            self.blips = 0;
        }
        if self.held {
            let hold = if rebooted {
                Duration::from_ticks(0)
            } else {
                let shift = self.flaps.saturating_sub(1).min(16);
                Duration::from_ticks(self.damping.hold_down.as_ticks().saturating_mul(1 << shift))
                    .min(MAX_HOLD_DOWN)
            };
            self.release_at = Some(now + hold);
        } else if self.confirm_at.take().is_some() || self.moved {
            self.survived += 1;
            // A blip: BGP never noticed. Traffic returns once the tunnel
            // has been Up a while, the longer the more it blipped.
            let shift = self.blips.saturating_sub(1).min(16);
            let wait = Duration::from_ticks(RETURN_AFTER.as_ticks().saturating_mul(1 << shift))
                .min(MAX_RETURN_AFTER);
            self.return_at = Some(now + wait);
        }
    }

    fn bfd_down(&mut self, now: Instant, diagnostic: Diagnostic) {
        self.push(Event::BfdDown(diagnostic));
        self.down_at = Some(now);
        self.return_at = None;
        self.release_at = None;
        self.set_moved(true);
        if self.held {
            return;
        }
        if self
            .last_blip
            .is_some_and(|t| now.saturating_duration_since(t) > FLAP_MEMORY)
        {
            self.blips = 0;
        }
        self.blips = self.blips.saturating_add(1);
        self.last_blip = Some(now);
        if self.damping.confirm == Duration::from_ticks(0) {
            self.confirmed_down(now);
        } else if self.confirm_at.is_none() {
            self.confirm_at = Some(now + self.damping.confirm);
        }
    }

    /// The path is dead: BGP stops (a flap, for the hold-down).
    fn confirmed_down(&mut self, now: Instant) {
        self.confirm_at = None;
        self.return_at = None;
        // The session's stable stretch ended when BFD went down.
        self.forget_flaps_if_stable(self.last_blip.unwrap_or(now).min(now));
        // The session goes down: its stable stretch ends here.
        self.bgp_up_since = None;
        self.flaps = self.flaps.saturating_add(1);
        self.confirmed += 1;
        self.set_moved(true);
        if !self.held {
            self.held = true;
            self.push(Event::StopBgp);
        }
    }

    /// BFD went down at `now` (for tests of forwarding, which have no
    /// session to time out).
    #[cfg(all(test, feature = "std"))]
    pub(crate) fn went_down(&mut self, now: Instant) {
        self.bfd_down(now, Diagnostic::ControlDetectionTimeExpired);
    }

    pub(crate) fn set_moved(&mut self, moved: bool) {
        if self.moved != moved {
            self.moved = moved;
            self.push(Event::Moved(moved));
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
            self.confirm_at,
            self.return_at,
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
