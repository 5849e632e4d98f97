use super::*;

extern crate std;
use std::vec::Vec;

const T0: Instant = Instant::from_secs(100);

/// Two sessions joined by a lossless wire on virtual time.
struct Pair {
    now: Instant,
    s: [Session; 2],
    /// Packets from side i are dropped while cut[i].
    cut: [bool; 2],
    events: [Vec<(Instant, Event)>; 2],
    sent: [Vec<ControlPacket>; 2],
}

impl Pair {
    fn new(a: Config, b: Config) -> Pair {
        let mut p = Pair {
            now: T0,
            s: [Session::new(a, 0x1111, 1), Session::new(b, 0x2222, 2)],
            cut: [false, false],
            events: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
        };
        p.s[0].start(T0);
        p.s[1].start(T0);
        p
    }

    fn step(&mut self) {
        for i in 0..2 {
            self.s[i].handle_timeout(self.now);
            self.drain(i);
        }
    }

    /// Takes side `i`'s events and puts its packet on the wire.
    fn drain(&mut self, i: usize) {
        while let Some(ev) = self.s[i].poll_event() {
            self.events[i].push((self.now, ev));
        }
        while let Some(pkt) = self.s[i].poll_transmit() {
            self.sent[i].push(pkt);
            // Through the codec, as on the wire.
            let mut b = [0u8; PACKET_LEN];
            pkt.emit(&mut b).unwrap();
            let parsed = ControlPacket::parse(&b).unwrap();
            if !self.cut[i] && self.s[1 - i].handle_packet(self.now, &parsed, 255).is_ok() {
                self.drain(1 - i);
            }
        }
    }

    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.step();
            let next = self.s.iter().filter_map(|s| s.poll_timeout()).min();
            match next {
                Some(t) if t <= until => self.now = t.max(self.now),
                _ => {
                    self.now = until;
                    self.step();
                    return;
                }
            }
        }
        panic!("did not settle");
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }
}

#[test]
fn two_sessions_come_up_through_init() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.s[0].state(), State::Up);
    assert_eq!(p.s[1].state(), State::Up);
    assert_eq!(
        p.events[0].iter().map(|e| e.1).collect::<Vec<_>>(),
        [Event::Up]
    );
    // Once up, the fast rate: ~10 ms with jitter.
    assert_eq!(p.s[0].tx_interval(), Duration::from_millis(10));
    assert_eq!(p.s[0].detection_time(), Duration::from_millis(40));
}

#[test]
fn silence_for_the_detection_time_brings_the_session_down() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    let cut_at = p.now;
    p.cut[1] = true;
    p.run_for(Duration::from_millis(200));
    let (at, ev) = p.events[0].last().copied().unwrap();
    assert_eq!(ev, Event::Down(Diagnostic::ControlDetectionTimeExpired));
    let took = at.saturating_duration_since(cut_at);
    // Detection is 40 ms after the last packet heard, which came at most one
    // interval before the cut.
    assert!(
        took >= Duration::from_millis(30) && took <= Duration::from_millis(41),
        "detected after {} ms",
        took.as_millis()
    );
    // The peer hears our Down and goes down too.
    p.cut[1] = false;
    p.run_for(Duration::from_millis(50));
    assert!(p.events[1]
        .iter()
        .any(|e| e.1 == Event::Down(Diagnostic::NeighborSignaledSessionDown)));
}

/// A blip (one direction silent just past the detection time) is over in
/// one round trip once the path carries again: each side answers a state
/// change at once, Init included, instead of at its one-second pace.
#[test]
fn after_a_blip_the_session_is_up_again_within_a_round_trip() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    p.cut[1] = true;
    p.run_for(Duration::from_millis(1));
    // Side 1's packets arrive again just before side 0's detection time
    // runs out.
    let deadline = p.s[0].detect_deadline.unwrap();
    p.run_until(deadline - Duration::from_micros(1));
    p.cut[1] = false;
    let down_at = p.now;
    p.run_for(Duration::from_millis(10));
    // Side 0 went down; its Down took side 1 down, whose answer got through.
    assert!(p.events[0]
        .iter()
        .any(|e| e.0 >= down_at && matches!(e.1, Event::Down(_))));
    assert!(p.events[1]
        .iter()
        .any(|e| e.0 >= down_at && e.1 == Event::Down(Diagnostic::NeighborSignaledSessionDown)));
    let up_again = |ev: &[(Instant, Event)]| ev.iter().any(|e| e.1 == Event::Up && e.0 >= down_at);
    assert_eq!(
        p.s[0].state(),
        State::Up,
        "side 0 still {:?}",
        p.s[0].state()
    );
    assert_eq!(
        p.s[1].state(),
        State::Up,
        "side 1 still {:?}",
        p.s[1].state()
    );
    assert!(up_again(&p.events[0]) && up_again(&p.events[1]));
}

/// A session Down sends at its one-second pace; when the path under it
/// becomes usable it sends at once. Up, it keeps its schedule.
#[test]
fn a_path_that_comes_up_gets_a_packet_at_once_unless_the_session_is_up() {
    let mut s = Session::new(Config::GAMING, 0x1111, 1);
    s.start(T0);
    s.handle_timeout(T0);
    assert!(s.poll_transmit().is_some());
    let later = T0 + Duration::from_millis(100);
    s.handle_timeout(later);
    assert!(s.poll_transmit().is_none(), "paced: nothing due yet");
    s.path_up(later);
    let p = s.poll_transmit().expect("a packet when the path comes up");
    assert_eq!(p.state, State::Down);
    // Up: no extra packet.
    let mut pair = Pair::new(Config::GAMING, Config::GAMING);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.s[0].state(), State::Up);
    let due = pair.s[0].poll_timeout();
    pair.s[0].path_up(pair.now);
    assert!(pair.s[0].poll_transmit().is_none());
    assert_eq!(pair.s[0].poll_timeout(), due);
}

#[test]
fn a_restarted_peer_is_seen_as_down_then_up_again() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    p.s[1] = Session::new(Config::GAMING, 0x3333, 3);
    p.s[1].start(p.now);
    p.run_for(Duration::from_secs(4));
    let evs: Vec<Event> = p.events[0].iter().map(|e| e.1).collect();
    assert_eq!(evs[0], Event::Up);
    assert!(matches!(evs[1], Event::Down(_)), "{evs:?}");
    assert_eq!(*evs.last().unwrap(), Event::Up);
    assert_eq!(p.s[0].state(), State::Up);
}

#[test]
fn timers_negotiate_to_the_slower_side() {
    let slow = Config {
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
        max_detection: Duration::from_ticks(0),
    };
    let mut p = Pair::new(Config::GAMING, slow);
    p.run_for(Duration::from_secs(4));
    assert_eq!(p.s[0].state(), State::Up);
    // We may not send faster than the peer can take, and we detect on its pace.
    assert_eq!(p.s[0].tx_interval(), Duration::from_millis(100));
    assert_eq!(p.s[0].detection_time(), Duration::from_millis(300));
    assert_eq!(p.s[1].detection_time(), Duration::from_millis(400));
}

#[test]
fn a_poll_is_answered_with_final_and_ends_the_sequence() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    let n0 = p.sent[0].len();
    p.s[0].reconfigure(Config {
        desired_min_tx: Duration::from_millis(50),
        ..Config::GAMING
    });
    p.run_for(Duration::from_millis(300));
    let after = &p.sent[0][n0..];
    assert!(
        after.first().unwrap().poll,
        "the change is announced with P"
    );
    assert!(
        p.sent[1].iter().any(|x| x.final_),
        "the peer answers with F"
    );
    assert!(!after.last().unwrap().poll, "the sequence ended");
    // The slower rate took effect only after the Final.
    assert_eq!(p.s[0].tx_interval(), Duration::from_millis(50));
    assert!(p.sent.iter().flatten().all(|x| !(x.poll && x.final_)));
}

#[test]
fn transmit_jitter_stays_within_75_to_100_percent() {
    let mut s = Session::new(Config::GAMING, 9, 77);
    s.start(T0);
    let mut now = T0;
    // Force Up timing without a peer.
    s.state = State::Up;
    s.active_desired_min_tx = Duration::from_millis(10);
    let mut last = None;
    for _ in 0..500 {
        s.handle_timeout(now);
        if s.poll_transmit().is_some() {
            if let Some(l) = last {
                let d: Duration = now.saturating_duration_since(l);
                assert!(d >= Duration::from_micros(7_500) && d <= Duration::from_millis(10));
            }
            last = Some(now);
        }
        now = s.poll_timeout().unwrap();
    }
}

#[test]
fn malformed_packets_are_rejected() {
    let good = ControlPacket {
        diag: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 7,
        your_discriminator: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 1_000_000,
        required_min_echo_rx: 0,
    };
    let mut b = [0u8; PACKET_LEN];
    good.emit(&mut b).unwrap();
    assert_eq!(ControlPacket::parse(&b), Ok(good));
    let bad = |f: &dyn Fn(&mut [u8; 24]), e: PacketError| {
        let mut x = b;
        f(&mut x);
        assert_eq!(ControlPacket::parse(&x), Err(e));
    };
    bad(&|x| x[0] = 2 << 5, PacketError::BadVersion);
    bad(&|x| x[3] = 23, PacketError::BadLength);
    bad(&|x| x[3] = 40, PacketError::BadLength);
    bad(&|x| x[2] = 0, PacketError::ZeroDetectMult);
    bad(&|x| x[1] |= 0x01, PacketError::Multipoint);
    bad(&|x| x[4..8].fill(0), PacketError::ZeroMyDiscriminator);
    bad(
        &|x| {
            x[1] |= 0x04;
            x[3] = 26
        },
        PacketError::BadLength,
    );
    assert_eq!(ControlPacket::parse(&b[..20]), Err(PacketError::Truncated));
    // Session-level checks.
    let mut s = Session::new(Config::GAMING, 5, 1);
    assert_eq!(s.handle_packet(T0, &good, 254), Err(PacketError::BadTtl));
    let wrong = ControlPacket {
        your_discriminator: 99,
        ..good
    };
    assert_eq!(
        s.handle_packet(T0, &wrong, 255),
        Err(PacketError::WrongDiscriminator)
    );
    assert_eq!(s.stats.rx_discarded, 2);
}

#[test]
fn admin_down_from_the_peer_is_honoured() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    let admin = ControlPacket {
        diag: Diagnostic::AdministrativelyDown,
        state: State::AdminDown,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 4,
        my_discriminator: p.s[1].local_discriminator(),
        your_discriminator: p.s[0].local_discriminator(),
        desired_min_tx: 1_000_000,
        required_min_rx: 1_000_000,
        required_min_echo_rx: 0,
    };
    let now = p.now;
    p.s[0].handle_packet(now, &admin, 255).unwrap();
    // Down, as §6.8.6 says, but told apart from a failure: the client
    // takes no action on it (RFC 5882 §3.2).
    assert_eq!(p.s[0].poll_event(), Some(Event::PeerAdminDown));
    assert_eq!(p.s[0].state(), State::Down);
    assert_eq!(p.s[0].diagnostic(), Diagnostic::NeighborSignaledSessionDown);
}

#[test]
fn a_session_taken_out_of_service_tells_the_peer_at_once() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    let before = p.sent[0].len();
    let now = p.now;
    p.s[0].admin_down(now);
    p.drain(0);
    let told = &p.sent[0][before..];
    assert_eq!(told.len(), 1, "one packet, now: {told:?}");
    assert_eq!(told[0].state, State::AdminDown);
    assert_eq!(told[0].diag, Diagnostic::AdministrativelyDown);
    // The peer went Down without calling it a failure, and stays quiet
    // about it: no detection expiry follows.
    assert_eq!(p.events[1].last().map(|e| e.1), Some(Event::PeerAdminDown));
    p.run_for(Duration::from_secs(1));
    assert!(
        !p.events[1].iter().any(|e| matches!(e.1, Event::Down(_))),
        "{:?}",
        p.events[1]
    );
}

/// Two sessions over a path whose one-way delay is `base` ± `spread`
/// (uniform, per packet), in order like a real link: a packet never
/// overtakes the one before it.
struct JitterPair {
    now: Instant,
    s: [Session; 2],
    wire: [std::collections::VecDeque<(Instant, ControlPacket)>; 2],
    downs: [usize; 2],
    down_at: Vec<Instant>,
    rng: u64,
    base: Duration,
    spread: Duration,
    /// Every `hiccup_every`-th packet leaves `hiccup` late (a busy router's
    /// CPU); 0: never.
    hiccup_every: u64,
    hiccup: Duration,
    sent: u64,
}

impl JitterPair {
    fn new(config: Config, base: Duration, spread: Duration) -> JitterPair {
        let mut p = JitterPair {
            now: T0,
            s: [
                Session::new(config, 0x1111, 1),
                Session::new(config, 0x2222, 2),
            ],
            wire: Default::default(),
            downs: [0; 2],
            down_at: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            base,
            spread,
            hiccup_every: 0,
            hiccup: Duration::from_ticks(0),
            sent: 0,
        };
        p.s[0].start(T0);
        p.s[1].start(T0);
        p
    }

    fn delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = 2 * self.spread.as_micros() + 1;
        let off = self.rng % span;
        Duration::from_micros(self.base.as_micros() - self.spread.as_micros() + off)
    }

    fn drain(&mut self, i: usize) {
        while let Some(ev) = self.s[i].poll_event() {
            if matches!(ev, Event::Down(_)) {
                self.downs[i] += 1;
                self.down_at.push(self.now);
            }
        }
        while let Some(pkt) = self.s[i].poll_transmit() {
            self.sent += 1;
            let late = self.hiccup_every > 0 && self.sent % self.hiccup_every == 0;
            let at = self.now
                + self.delay()
                + if late {
                    self.hiccup
                } else {
                    Duration::from_ticks(0)
                };
            let at = self.wire[i].back().map_or(at, |(t, _)| at.max(*t));
            self.wire[i].push_back((at, pkt));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..10_000_000 {
            let arrivals = self.wire.iter().filter_map(|w| w.front().map(|(t, _)| *t));
            let timers = self.s.iter().filter_map(|s| s.poll_timeout());
            let Some(next) = arrivals.chain(timers).min().filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            for i in 0..2 {
                while self.wire[i].front().is_some_and(|(t, _)| *t <= self.now) {
                    let (_, pkt) = self.wire[i].pop_front().unwrap();
                    let _ = self.s[1 - i].handle_packet(self.now, &pkt, 255);
                    self.drain(1 - i);
                }
                self.s[i].handle_timeout(self.now);
                self.drain(i);
            }
        }
        panic!("did not settle");
    }
}

#[test]
fn on_a_steady_path_the_timers_stay_as_configured() {
    let mut p = JitterPair::new(
        Config::GAMING,
        Duration::from_millis(5),
        Duration::from_ticks(0),
    );
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.downs, [0, 0]);
    for s in &p.s {
        assert_eq!(s.state(), State::Up);
        assert_eq!(s.rx_interval(), Duration::from_millis(10));
        assert_eq!(s.detection_time(), Duration::from_millis(40));
        assert!(s.jitter() < Duration::from_millis(1), "{:?}", s.jitter());
    }
}

#[test]
fn a_busy_routers_odd_late_packet_keeps_the_configured_detection() {
    // What a lab of four routers on two cores sees: about every 3 s, one
    // packet 8 ms late (a gap of 18 ms, then one of 1 ms). 40 ms outlasts
    // that many times over; failover stays as fast as configured.
    let mut p = JitterPair::new(
        Config::GAMING,
        Duration::from_millis(1),
        Duration::from_ticks(0),
    );
    p.hiccup_every = 600;
    p.hiccup = Duration::from_millis(8);
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.downs, [0, 0]);
    for s in &p.s {
        assert_eq!(s.detection_time(), Duration::from_millis(40));
        assert!(s.stats.rx_packets > 5_000, "{:?}", s.stats);
    }
}

#[test]
fn a_path_that_stalls_near_the_detection_time_widens_it_before_a_stall_outlasts_it() {
    // A VM (or a router's CPU) that stops for tens of milliseconds about
    // once a second: one packet very late, the ones queued behind it at
    // once, calm in between. Its first stalls come close to the 40 ms
    // detection (gaps of about 34 ms); later ones would outlast it (about
    // 48 ms). Detection must widen and stay wide between the stalls (it
    // used to come down in a calm moment, and the next stall was a down).
    let stalls = |config: Config| {
        let mut p = JitterPair::new(config, Duration::from_millis(1), Duration::from_ticks(0));
        p.hiccup_every = 101;
        p.hiccup = Duration::from_millis(24);
        p.run_for(Duration::from_secs(20));
        let early = p.downs;
        p.hiccup = Duration::from_millis(38);
        p.run_for(Duration::from_secs(60));
        (early, p)
    };
    let fixed = Config {
        max_detection: Duration::from_ticks(0),
        ..Config::GAMING
    };
    let (_, f) = stalls(fixed);
    assert!(f.downs[0] + f.downs[1] >= 10, "fixed timers: {:?}", f.downs);
    let (early, a) = stalls(Config::GAMING);
    assert_eq!(early, [0, 0], "near misses only, in the first 20 s");
    assert_eq!(a.downs, [0, 0], "at {:?}", a.down_at);
    for s in &a.s {
        assert!(
            s.detection_time() > Duration::from_millis(48),
            "{:?}",
            s.detection_time()
        );
        assert!(s.detection_time() <= Config::GAMING.max_detection);
    }
}

#[test]
fn a_jittery_path_stretches_detection_through_a_poll_and_stops_false_downs() {
    let (base, spread) = (Duration::from_millis(40), Duration::from_millis(30));
    let fixed = Config {
        max_detection: Duration::from_ticks(0),
        ..Config::GAMING
    };
    let mut f = JitterPair::new(fixed, base, spread);
    f.run_for(Duration::from_secs(120));
    let mut a = JitterPair::new(Config::GAMING, base, spread);
    a.run_for(Duration::from_secs(120));
    std::println!(
        "40 ± 30 ms for 2 min: fixed 10 ms x 4: {:?} downs; adaptive: {:?} downs (at {:?}), detection {:?}/{:?}, jitter {:?}/{:?}",
        f.downs,
        a.downs,
        a.down_at,
        a.s[0].detection_time(),
        a.s[1].detection_time(),
        a.s[0].jitter(),
        a.s[1].jitter()
    );
    assert!(f.downs[0] + f.downs[1] >= 10, "fixed timers: {:?}", f.downs);
    // While it comes up, a session has measured nothing yet: a few downs in
    // the first seconds. None after that.
    let late: Vec<_> = a
        .down_at
        .iter()
        .filter(|t| **t > T0 + Duration::from_secs(5))
        .collect();
    assert!(late.is_empty(), "downs after the first 5 s: {late:?}");
    for (i, s) in a.s.iter().enumerate() {
        // Longer than the configured 40 ms, within the 200 ms bound, and the
        // peer sends at the interval we asked for (the poll went through).
        assert!(s.detection_time() > Duration::from_millis(40));
        assert!(s.detection_time() <= Config::GAMING.max_detection);
        assert_eq!(a.s[1 - i].tx_interval(), s.rx_interval());
        assert!(s.jitter() >= Duration::from_millis(5), "{:?}", s.jitter());
    }
}

#[test]
fn once_the_path_calms_down_detection_returns_to_the_configured_time() {
    let mut p = JitterPair::new(
        Config::GAMING,
        Duration::from_millis(40),
        Duration::from_millis(30),
    );
    p.run_for(Duration::from_secs(30));
    assert!(p.s[0].detection_time() > Duration::from_millis(60));
    let downs = p.downs;
    p.spread = Duration::from_ticks(0);
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.downs, downs, "a down while calming: {:?}", p.down_at);
    for s in &p.s {
        assert_eq!(s.rx_interval(), Duration::from_millis(10));
        assert_eq!(s.detection_time(), Duration::from_millis(40));
    }
}

/// Side 0's caller was stopped for 60 ms and then handled, stamped with
/// its last clock read before the stop, the packets side 1 sent meanwhile.
#[test]
fn packets_handled_with_a_stale_stamp_after_a_stall_do_not_expire_the_session() {
    let mut p = Pair::new(Config::GAMING, Config::GAMING);
    p.run_for(Duration::from_secs(3));
    let stamped = p.now;
    let after = stamped + Duration::from_millis(60);
    // What side 1 sent during the stall (as it sends every interval),
    // handled with the stale stamp.
    let pkt = p.sent[1].last().copied().unwrap();
    p.s[0].handle_packet(stamped, &pkt, 255).unwrap();
    // Without being told, the session would expire at once at `after`.
    let mut unaware = p.s[0].clone();
    unaware.handle_timeout(after);
    assert_eq!(unaware.state(), State::Down);
    // Told, it counts the detection time from `after`.
    assert!(p.s[0].resumed(stamped, after));
    p.s[0].handle_timeout(after);
    assert_eq!(p.s[0].state(), State::Up);
    assert_eq!(
        p.s[0]
            .poll_timeout()
            .map(|t| t <= after + p.s[0].detection_time()),
        Some(true)
    );
    // A session that took nothing since the stamp, its detection time run
    // out meanwhile (the whole machine held, the peer too): two of the
    // peer's intervals from the end of the stall, once; then Down if the
    // peer stays silent.
    let mut silent = p.s[0].clone();
    let later = after + Duration::from_millis(1);
    let woke = later + Duration::from_millis(60);
    assert!(silent.resumed(later, woke));
    silent.handle_timeout(woke);
    assert_eq!(silent.state(), State::Up);
    assert!(!silent.resumed(woke, woke + Duration::from_millis(30)));
    silent.handle_timeout(woke + Duration::from_millis(20));
    assert_eq!(silent.state(), State::Down);
    // One whose detection time has not run out keeps its deadline.
    let mut live = p.s[0].clone();
    assert!(!live.resumed(later, later + Duration::from_millis(5)));
}
