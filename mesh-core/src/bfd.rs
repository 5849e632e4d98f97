//! Bidirectional Forwarding Detection, asynchronous mode (RFC 5880), single hop
//! over IPv4/UDP (RFC 5881): one session per tunnel, to notice a dead path in
//! tens of milliseconds instead of a BGP hold time.
//!
//! - [`ControlPacket`]: the control packet codec (§4.1) with the reception
//!   checks of §6.8.6.
//! - [`Session`]: the state machine (§6.2, §6.8.6), its timers (§6.8.2-§6.8.4:
//!   negotiated transmit interval, detection time = remote multiplier × agreed
//!   interval, 75-100% jitter per §6.8.7), the poll sequence for timer changes
//!   (§6.5), the one-second pace while not Up (§6.8.3; a change of state,
//!   and a path that just became usable, are answered at once), and
//!   diagnostic codes.
//! - Detection that fits the path: while Up, the session measures the gaps
//!   between the peer's packets (smoothed gap and mean deviation, as TCP
//!   measures RTT: RFC 6298's α = 1/8, β = 1/4). When the path jitters more
//!   than the configured detection outlasts, it raises its Required Min RX
//!   Interval so that the detection time covers all the multiplier's
//!   packets but one lost and that one four deviations late, up to
//!   [`Config::max_detection`]. It takes [`RAISE_SAMPLES`] gaps in a row
//!   calling for it (one stall of a busy peer is not a jittery path); the
//!   peer learns it through a poll sequence and slows to match (§6.8.3), so
//!   BIRD and FRR peers follow it like any timer change. It lowers it again
//!   after [`LOWER_AFTER`] of calm; a lower value shortens the detection time
//!   only once the peer has acknowledged it (Final).
//!
//! Authentication is not supported; packets that carry it are discarded
//! (§6.7: "if the A bit is set and no authentication is in use").

use core::fmt;

use embassy_time::{Duration, Instant};

/// UDP destination port of single-hop BFD control packets (RFC 5881 §4).
pub const BFD_PORT: u16 = 3784;
/// The length of a control packet without authentication.
pub const PACKET_LEN: usize = 24;
/// Pace while the session is not Up (RFC 5880 §6.8.3: at least one second).
pub const SLOW_TX: Duration = Duration::from_secs(1);
/// Gaps measured before the receive interval adapts.
const ADAPT_SAMPLES: u32 = 8;
/// Consecutive gaps that must call for a longer receive interval before it
/// goes up: one stall of the peer's CPU (a late packet, then an early one)
/// is what the configured detection already outlasts.
const RAISE_SAMPLES: u8 = 4;
/// Gaps after the receive interval moved that do not bound how far it may
/// come down: the peer's rate and the mean gap are still following the move.
const SETTLE_SAMPLES: u32 = 16;
/// The receive interval goes up at most this often.
const RAISE_EVERY: Duration = Duration::from_millis(500);
/// The receive interval comes down only after this long without a raise.
pub const LOWER_AFTER: Duration = Duration::from_secs(10);

/// Session states (§4.1). A two-bit field: every value has a name, so unlike
/// the other code tables this one has no `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(v: u8) -> State {
        match v & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

enum_with_unknown! {
    /// Diagnostic codes (§4.1). Values 9-31 are reserved; one received is
    /// kept as `Unknown`.
    pub enum Diagnostic(u8) {
        None = 0,
        ControlDetectionTimeExpired = 1,
        EchoFunctionFailed = 2,
        NeighborSignaledSessionDown = 3,
        ForwardingPlaneReset = 4,
        PathDown = 5,
        ConcatenatedPathDown = 6,
        AdministrativelyDown = 7,
        ReverseConcatenatedPathDown = 8,
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Diagnostic::None => "no diagnostic",
            Diagnostic::ControlDetectionTimeExpired => "control detection time expired",
            Diagnostic::EchoFunctionFailed => "echo function failed",
            Diagnostic::NeighborSignaledSessionDown => "neighbor signaled session down",
            Diagnostic::ForwardingPlaneReset => "forwarding plane reset",
            Diagnostic::PathDown => "path down",
            Diagnostic::ConcatenatedPathDown => "concatenated path down",
            Diagnostic::AdministrativelyDown => "administratively down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diagnostic::Unknown(code) => return write!(f, "unknown diagnostic {code}"),
        })
    }
}

/// Why a received control packet was discarded (§6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    Truncated,
    BadVersion,
    BadLength,
    ZeroDetectMult,
    Multipoint,
    ZeroMyDiscriminator,
    /// Your Discriminator is not ours.
    WrongDiscriminator,
    /// Your Discriminator zero in a packet that says Init or Up.
    ZeroYourDiscriminator,
    /// Authentication requested, none configured.
    Authentication,
    /// Single-hop packets must arrive with TTL 255 (RFC 5881 §5).
    BadTtl,
}

/// A control packet (§4.1), without authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diagnostic,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
}

impl ControlPacket {
    /// Parses and applies the checks of §6.8.6 that need no session.
    pub fn parse(b: &[u8]) -> Result<ControlPacket, PacketError> {
        if b.len() < PACKET_LEN {
            return Err(PacketError::Truncated);
        }
        if b[0] >> 5 != 1 {
            return Err(PacketError::BadVersion);
        }
        let flags = b[1];
        let auth = flags & 0x04 != 0;
        let len = b[3] as usize;
        let min = if auth { 26 } else { PACKET_LEN };
        if len < min || len > b.len() {
            return Err(PacketError::BadLength);
        }
        if auth {
            return Err(PacketError::Authentication);
        }
        if b[2] == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = ControlPacket {
            diag: Diagnostic::from(b[0] & 0x1f),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: b[2],
            my_discriminator: u32_at(4),
            your_discriminator: u32_at(8),
            desired_min_tx: u32_at(12),
            required_min_rx: u32_at(16),
            required_min_echo_rx: u32_at(20),
        };
        if p.my_discriminator == 0 {
            return Err(PacketError::ZeroMyDiscriminator);
        }
        Ok(p)
    }

    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let b = out.get_mut(..PACKET_LEN)?;
        b[0] = 1 << 5 | (u8::from(self.diag) & 0x1f);
        b[1] = (self.state as u8) << 6
            | if self.poll { 0x20 } else { 0 }
            | if self.final_ { 0x10 } else { 0 }
            | if self.control_plane_independent {
                0x08
            } else {
                0
            }
            | if self.demand { 0x02 } else { 0 };
        b[2] = self.detect_mult;
        b[3] = PACKET_LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        Some(PACKET_LEN)
    }
}

/// Timer settings of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often we would like to send while Up.
    pub desired_min_tx: Duration,
    /// How often we can take packets.
    pub required_min_rx: Duration,
    /// Packets that may be missed before the session is declared down.
    pub detect_mult: u8,
    /// The longest detection time adaptation to a jittery path may reach
    /// (by raising our Required Min RX Interval). At or below the base
    /// detection time (remote multiplier × agreed interval): fixed timers.
    pub max_detection: Duration,
}

/// The default bound of the adapted detection time: a power cut on a
/// jittery path is still found within a fifth of a second.
pub const DEFAULT_MAX_DETECTION_MS: u64 = 200;

impl Config {
    /// Tuned for game traffic: 10 ms × 4 = 40 ms detection. Four in a row
    /// makes a false detection on a link losing 5% about once in 25 minutes.
    pub const GAMING: Config = Config {
        desired_min_tx: Duration::from_millis(10),
        required_min_rx: Duration::from_millis(10),
        detect_mult: 4,
        max_detection: Duration::from_millis(DEFAULT_MAX_DETECTION_MS),
    };
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Up,
    /// Down from Up, with the reason.
    Down(Diagnostic),
    /// Down from Up because the peer took the session out of service (it
    /// sent AdminDown, §6.8.6): not a failure of the path, so clients take
    /// no action on it (RFC 5882 §3.2).
    PeerAdminDown,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub rx_discarded: u64,
    pub ups: u64,
    pub downs: u64,
}

/// One BFD session (§6.8.1 state variables, named as in the RFC).
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    /// The last non-zero discriminator the peer used (kept across Down): a
    /// new value after a Down means a new instance of the peer.
    peer_discr: u32,
    local_diag: Diagnostic,
    /// µs, as the RFC's variables.
    remote_min_rx: u32,
    remote_desired_tx: u32,
    remote_detect_mult: u8,
    /// What we advertise now (1 s while not Up).
    desired_min_tx: Duration,
    /// The value in force for timing (changes after a poll sequence completes).
    active_desired_min_tx: Duration,
    /// The Required Min RX Interval we advertise: the configured one, or
    /// more on a jittery path.
    rx_interval: Duration,
    /// A larger receive interval still timing detection until the peer
    /// acknowledges a lower one.
    rx_interval_old: Option<Duration>,
    /// When the receive interval last went up.
    adapted_at: Option<Instant>,
    gaps: Gaps,
    poll_pending: bool,
    final_owed: bool,
    next_tx: Option<Instant>,
    detect_deadline: Option<Instant>,
    /// When the last packet that set `detect_deadline` was taken, on the
    /// caller's clock.
    rx_at: Option<Instant>,
    /// A stall of the caller's already postponed the detection deadline
    /// once since the last packet ([`Session::resumed`]).
    graced: bool,
    rng: u64,
    pub stats: Stats,
    up_since: Option<Instant>,
    /// The control packet due now, until the driver takes it.
    outgoing: Option<ControlPacket>,
    events: heapless::Deque<Event, EVENT_QUEUE>,
}

/// The gaps between the peer's packets while Up, smoothed (µs).
#[derive(Debug, Clone, Copy, Default)]
struct Gaps {
    last: Option<Instant>,
    mean_us: u32,
    dev_us: u32,
    /// Consecutive samples that called for a longer receive interval.
    over: u8,
    n: u32,
    /// The longest receive interval (µs) a gap called for in this window
    /// (it starts when the interval moves, and every [`LOWER_AFTER`]; the
    /// gaps while the peer and the mean gap follow a move do not count):
    /// how far the interval may come down at the window's end.
    peak_us: u64,
    window_at: Option<Instant>,
    /// Gaps since the interval last moved.
    since_move: u32,
}

impl Gaps {
    /// A packet arrived now: false for the first of a run (no gap yet).
    fn sample(&mut self, now: Instant) -> bool {
        let Some(last) = self.last.replace(now) else {
            return false;
        };
        let gap =
            u32::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u32::MAX);
        if self.n == 0 {
            self.mean_us = gap;
            self.dev_us = gap / 2;
        } else {
            let err = self.mean_us.abs_diff(gap);
            self.dev_us = ((3 * u64::from(self.dev_us) + u64::from(err)) / 4) as u32;
            self.mean_us = ((7 * u64::from(self.mean_us) + u64::from(gap)) / 8) as u32;
        }
        self.n = self.n.saturating_add(1);
        true
    }
}

/// Events a session holds until drained: one input makes at most one.
const EVENT_QUEUE: usize = 4;

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in Down; `discriminator` must be non-zero and unique among
    /// this node's sessions; `seed` drives the transmit jitter.
    pub fn new(config: Config, discriminator: u32, seed: u64) -> Session {
        Session {
            config,
            state: State::Down,
            remote_state: State::Down,
            local_discr: discriminator.max(1),
            remote_discr: 0,
            peer_discr: 0,
            local_diag: Diagnostic::None,
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_detect_mult: 0,
            desired_min_tx: SLOW_TX,
            active_desired_min_tx: SLOW_TX,
            rx_interval: config.required_min_rx,
            rx_interval_old: None,
            adapted_at: None,
            gaps: Gaps::default(),
            poll_pending: false,
            final_owed: false,
            next_tx: None,
            detect_deadline: None,
            rx_at: None,
            graced: false,
            rng: seed | 1,
            stats: Stats::default(),
            up_since: None,
            outgoing: None,
            events: heapless::Deque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn remote_state(&self) -> State {
        self.remote_state
    }
    pub fn diagnostic(&self) -> Diagnostic {
        self.local_diag
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn up_since(&self) -> Option<Instant> {
        self.up_since
    }
    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }
    /// The discriminator the peer last used (0 before any packet).
    pub fn peer_discriminator(&self) -> u32 {
        self.peer_discr
    }

    /// The interval we send at: the slower of what we want and what the peer
    /// can take (§6.8.2).
    pub fn tx_interval(&self) -> Duration {
        let remote = Duration::from_micros(self.remote_min_rx as u64);
        self.active_desired_min_tx.max(remote)
    }

    /// How long without a packet before Down (§6.8.4, asynchronous mode).
    pub fn detection_time(&self) -> Duration {
        let rx = self
            .rx_interval
            .max(self.rx_interval_old.unwrap_or(self.rx_interval));
        let agreed = rx.max(Duration::from_micros(self.remote_desired_tx as u64));
        Duration::from_micros(agreed.as_micros() * self.remote_detect_mult.max(1) as u64)
    }

    /// The Required Min RX Interval we advertise now (adapted to the path).
    pub fn rx_interval(&self) -> Duration {
        self.rx_interval
    }

    /// The path's measured jitter: the mean deviation of the gaps between
    /// the peer's packets (zero before enough were measured).
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.gaps.dev_us as u64)
    }

    /// The detection time the configuration alone gives: remote multiplier
    /// × the configured interval or the peer's, whichever is slower.
    fn base_detection(&self) -> Duration {
        let agreed = self
            .config
            .required_min_rx
            .max(Duration::from_micros(self.remote_desired_tx as u64));
        Duration::from_micros(agreed.as_micros() * self.remote_detect_mult.max(1) as u64)
    }

    /// After a packet while Up: measure its gap, and move the receive
    /// interval if the path's jitter calls for it.
    fn adapt(&mut self, now: Instant, scheduled: bool) {
        if !scheduled {
            self.gaps.last = Some(now);
            return;
        }
        if !self.gaps.sample(now) || self.gaps.n < ADAPT_SAMPLES {
            return;
        }
        let mult = u64::from(self.remote_detect_mult.max(1));
        let base = self.base_detection();
        if self.config.max_detection <= base {
            // Fixed timers (or a peer slower than the bound).
            return;
        }
        let limit = self.config.max_detection;
        // Detection outlasts all the multiplier's packets but one lost, and
        // that one four deviations late. Both at once are rare; the base
        // detection already outlasts every packet lost, so asking for that
        // and a late one too would double the margin, and a single late
        // packet on a calm path would slow failover for nothing. (The
        // configured interval, not the measured gap: that follows the
        // interval we raise, and would feed on itself.)
        let interval_us = base.as_micros() / mult;
        let dev_us = u64::from(self.gaps.dev_us);
        let want_detect = Duration::from_micros((mult - 1) * interval_us + 4 * dev_us)
            .max(base)
            .min(limit);
        let floor = self.config.required_min_rx;
        let want = Duration::from_micros(want_detect.as_micros().div_ceil(mult)).max(floor);
        // Close to the configured interval is the configured interval.
        let want = if want <= floor + floor / 8 {
            floor
        } else {
            want
        };
        self.gaps.since_move = self.gaps.since_move.saturating_add(1);
        if self.gaps.since_move > SETTLE_SAMPLES {
            self.gaps.peak_us = self.gaps.peak_us.max(want.as_micros());
        }
        let cur = self.rx_interval;
        let longer = want > cur + (cur / 8).max(Duration::from_millis(1));
        self.gaps.over = if longer {
            self.gaps.over.saturating_add(1)
        } else {
            0
        };
        let raise = self.gaps.over >= RAISE_SAMPLES
            && self
                .adapted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= RAISE_EVERY);
        // Down only as far as the worst gap of the window called for (a
        // path that stalls every second or so is calm between its stalls),
        // and to the configured interval once the window was that calm.
        let peak = Duration::from_micros(self.gaps.peak_us).max(floor);
        let peak = if peak <= floor + floor / 8 {
            floor
        } else {
            peak
        };
        let window_over = self
            .gaps
            .window_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOWER_AFTER);
        if window_over {
            self.gaps.peak_us = 0;
            self.gaps.window_at = Some(now);
        }
        let lower = window_over
            && self.gaps.since_move > SETTLE_SAMPLES
            && (peak + (cur / 4).max(Duration::from_millis(1)) < cur
                || peak == floor && floor < cur)
            && self
                .adapted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= LOWER_AFTER);
        let want = if raise { want } else { peak };
        if raise || lower {
            if lower {
                // Detection keeps the longer time until the peer has it.
                self.rx_interval_old = Some(cur.max(self.rx_interval_old.unwrap_or(cur)));
            }
            log::debug!(
                "bfd: path jitter {} µs: receive interval {} -> {} µs",
                self.gaps.dev_us,
                cur.as_micros(),
                want.as_micros()
            );
            self.rx_interval = want;
            self.adapted_at = Some(now);
            self.gaps.over = 0;
            self.gaps.peak_us = 0;
            self.gaps.since_move = 0;
            self.gaps.window_at = Some(now);
            self.poll_pending = true;
            self.next_tx = Some(now);
        }
    }

    /// Starts sending.
    pub fn start(&mut self, now: Instant) {
        if self.next_tx.is_none() {
            self.next_tx = Some(now);
        }
    }

    /// The path under the session just became usable (a new tunnel
    /// session): while Down or Init, the next packet goes now rather than
    /// at the one-second pace, since the ones before it could not leave.
    /// A session Up, taken out of service, or not started is not touched.
    pub fn path_up(&mut self, now: Instant) {
        if matches!(self.state, State::Down | State::Init) && self.next_tx.is_some() {
            self.next_tx = Some(now);
            self.transmit_if_due(now);
        }
    }

    /// Takes the session out of service (§6.8.16): AdminDown, diagnostic
    /// "administratively down", told to the peer at once, so that it does
    /// not wait out its detection time and takes no action (a clean
    /// shutdown of this router). No event: the client asked for it.
    pub fn admin_down(&mut self, now: Instant) {
        let _ = self.transition(now, State::AdminDown, Diagnostic::AdministrativelyDown);
        self.next_tx = Some(now);
        self.transmit_if_due(now);
    }

    /// Changes the timer settings; while Up, through a poll sequence (§6.8.3).
    pub fn reconfigure(&mut self, config: Config) {
        if config == self.config {
            return;
        }
        self.config = config;
        // Adaptation starts over from the new settings (a longer interval
        // still times detection until the peer has the new one).
        if config.required_min_rx < self.rx_interval {
            self.rx_interval_old = Some(self.rx_interval);
        }
        self.rx_interval = config.required_min_rx;
        self.adapted_at = None;
        if self.state == State::Up {
            self.desired_min_tx = config.desired_min_tx;
            // Faster at once; slower only once the peer has seen it (§6.8.3).
            if config.desired_min_tx < self.active_desired_min_tx {
                self.active_desired_min_tx = config.desired_min_tx;
            }
            self.poll_pending = true;
        }
    }

    fn jittered(&mut self, interval: Duration) -> Duration {
        // §6.8.7: 75-100% of the interval (75-90% with a multiplier of 1).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = if self.config.detect_mult == 1 { 15 } else { 25 };
        let pct = 100 - (self.rng % (span + 1));
        Duration::from_micros(interval.as_micros() * pct / 100)
    }

    /// Moves to `to`, queueing the event that makes, if any.
    fn go(&mut self, now: Instant, to: State, diag: Diagnostic) {
        if let Some(e) = self.transition(now, to, diag) {
            if self.events.push_back(e).is_err() {
                log::warn!("bfd: event queue full, dropping {e:?}");
            }
        }
    }

    fn transition(&mut self, now: Instant, to: State, diag: Diagnostic) -> Option<Event> {
        let from = self.state;
        self.state = to;
        match to {
            State::Up => {
                self.local_diag = Diagnostic::None;
                self.up_since = Some(now);
                self.stats.ups += 1;
                // The fast rate: announced with a poll, used at once (a
                // faster rate needs no wait, §6.8.3).
                self.desired_min_tx = self.config.desired_min_tx;
                self.active_desired_min_tx = self.config.desired_min_tx;
                self.poll_pending = true;
                Some(Event::Up)
            }
            State::Down | State::AdminDown => {
                self.local_diag = diag;
                self.up_since = None;
                self.detect_deadline = None;
                self.desired_min_tx = SLOW_TX;
                self.active_desired_min_tx = SLOW_TX;
                self.poll_pending = false;
                if to == State::Down {
                    self.remote_discr = 0;
                }
                // Only a session that was Up going down means anything to
                // its clients (RFC 5882 §3.2); Init falling back is bring-up.
                if from == State::Up {
                    self.stats.downs += 1;
                    Some(Event::Down(diag))
                } else {
                    None
                }
            }
            State::Init => None,
        }
    }

    /// A control packet from the peer (already parsed). `ttl` is the IP TTL
    /// it arrived with. A state change is queued for [`Session::poll_event`],
    /// and a packet due now (an answer, a Final) for [`Session::poll_transmit`].
    pub fn handle_packet(
        &mut self,
        now: Instant,
        p: &ControlPacket,
        ttl: u8,
    ) -> Result<(), PacketError> {
        let check = (|| {
            if ttl != 255 {
                return Err(PacketError::BadTtl);
            }
            if p.your_discriminator != 0 && p.your_discriminator != self.local_discr {
                return Err(PacketError::WrongDiscriminator);
            }
            // §6.8.6: a zero Your Discriminator is only valid from a peer that
            // says Down or AdminDown (it does not know us yet, or forgot us).
            if p.your_discriminator == 0 && !matches!(p.state, State::Down | State::AdminDown) {
                return Err(PacketError::ZeroYourDiscriminator);
            }
            Ok(())
        })();
        if let Err(e) = check {
            self.stats.rx_discarded += 1;
            return Err(e);
        }
        self.stats.rx_packets += 1;
        self.remote_discr = p.my_discriminator;
        self.peer_discr = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        let old_remote_rx = self.remote_min_rx;
        self.remote_min_rx = p.required_min_rx.max(1);
        if p.final_ && self.poll_pending {
            // Poll sequence complete: the new rate is in force.
            self.poll_pending = false;
            self.active_desired_min_tx = self.desired_min_tx;
            self.rx_interval_old = None;
        }
        if p.poll {
            self.final_owed = true;
        }
        // A slower remote receive rate applies at once; answer soon so the
        // peer's detection time is not exceeded (§6.8.3).
        if self.remote_min_rx > old_remote_rx {
            self.next_tx = Some(now);
        }
        if self.state == State::AdminDown {
            self.transmit_if_due(now);
            return Ok(());
        }
        let before = self.state;
        if p.state == State::AdminDown {
            if self.state != State::Down {
                // §6.8.6: Down, diagnostic 3; the client hears it apart.
                let event =
                    self.transition(now, State::Down, Diagnostic::NeighborSignaledSessionDown);
                if event.is_some() && self.events.push_back(Event::PeerAdminDown).is_err() {
                    log::warn!("bfd: event queue full, dropping PeerAdminDown");
                }
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => self.go(now, State::Init, Diagnostic::None),
                (State::Down, State::Init) => self.go(now, State::Up, Diagnostic::None),
                (State::Init, State::Init | State::Up) => self.go(now, State::Up, Diagnostic::None),
                (State::Up, State::Down) => {
                    self.go(now, State::Down, Diagnostic::NeighborSignaledSessionDown)
                }
                _ => {}
            }
        }
        // Every change of state, Down to Init included (it makes no event),
        // is told at once: the peer's next step waits on it.
        let changed = self.state != before;
        if self.state == State::Up {
            // A Poll or Final is sent out of schedule: its gap says nothing
            // about the path.
            // Only Up to Up at the fast rate measures the path: a peer
            // coming up still sends at its one-second pace.
            self.adapt(now, !(p.poll || p.final_) && p.state == State::Up);
        } else {
            self.gaps.last = None;
        }
        if matches!(self.state, State::Init | State::Up) {
            self.detect_deadline = Some(now + self.detection_time());
            self.rx_at = Some(now);
            self.graced = false;
        }
        if changed || self.final_owed {
            self.next_tx = Some(now);
        }
        self.transmit_if_due(now);
        Ok(())
    }

    /// The caller was kept off the CPU: packets it gave this session
    /// stamped `stamped` or later were taken while its clock had moved on
    /// to `now`. A packet taken since `stamped` came in by `now`, so
    /// detection counts from `now`. A session that took none and whose
    /// detection time ran out meanwhile gets two of the peer's intervals
    /// from `now`, once until its next packet: when a hypervisor holds the
    /// whole machine, the peer was held too, and sends again as we do. A
    /// peer that stays silent is found out that much later. Returns
    /// whether the deadline moved.
    pub fn resumed(&mut self, stamped: Instant, now: Instant) -> bool {
        let Some(deadline) = self.detect_deadline else {
            return false;
        };
        if self.rx_at.is_some_and(|r| r >= stamped) {
            self.detect_deadline = Some(now + self.detection_time());
            self.rx_at = Some(now);
            return true;
        }
        if deadline > now || self.graced {
            return false;
        }
        self.graced = true;
        let interval = Duration::from_micros(
            self.detection_time().as_micros() / u64::from(self.remote_detect_mult.max(1)),
        );
        self.detect_deadline = Some(now + interval * 2);
        true
    }

    /// Timers: detection expiry (an event), and the packet due now.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.detect_deadline.is_some_and(|d| d <= now) {
            self.detect_deadline = None;
            self.go(now, State::Down, Diagnostic::ControlDetectionTimeExpired);
            self.next_tx = Some(now);
        }
        self.transmit_if_due(now);
    }

    /// Builds the control packet if one is due (§6.8.7), and schedules the next.
    fn transmit_if_due(&mut self, now: Instant) {
        if self.next_tx.is_none_or(|t| t > now) {
            return;
        }
        let interval = if self.state == State::Up {
            self.tx_interval()
        } else {
            SLOW_TX.max(Duration::from_micros(self.remote_min_rx as u64))
        };
        let next = self.jittered(interval);
        self.next_tx = Some(now + next);
        let final_ = core::mem::take(&mut self.final_owed);
        self.stats.tx_packets += 1;
        self.outgoing = Some(ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // P and F are never set together (§6.5).
            poll: self.poll_pending && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: us(self.desired_min_tx),
            required_min_rx: us(self.rx_interval),
            required_min_echo_rx: 0,
        });
    }

    /// The control packet to send, if one became due in the last input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ControlPacket> {
        self.outgoing.take()
    }

    /// Up and Down, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant [`Session::handle_timeout`] must run: the next
    /// transmission or the detection deadline, whichever is first.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
