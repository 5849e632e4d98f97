use super::*;

extern crate std;
use std::vec::Vec;

use crate::bfd::{Config, State, PACKET_LEN};

const T0: Instant = Instant::from_secs(100);
const BASE: Duration = Duration::from_secs(2);
/// As by default: BFD's bring-up after a blip runs at one packet a second
/// (RFC 5880 §6.8.3), so a blip is back Up within about a second.
const CONFIRM: Duration = Duration::from_secs(2);
const DAMPING: Damping = Damping {
    hold_down: BASE,
    confirm: CONFIRM,
};
/// Seeds whose discriminators differ (the low six bits are the slot's).
const SEED_A: u64 = 0x0101_0000;
const SEED_B: u64 = 0x0202_0000;
const SEED_B_RESTARTED: u64 = 0x0303_0000;

/// Two members' supervisions of one tunnel, back to back on virtual
/// time: every control packet goes through the codec as bytes and
/// arrives with TTL 255, as [`super::super::Node`] hands it over.
struct Pair {
    now: Instant,
    s: [Supervision; 2],
    /// Packets from side i are lost while cut[i].
    cut: [bool; 2],
    events: [Vec<(Instant, Event)>; 2],
    /// Side 0's wake-ups: when, and the reason `poll_timeout` gave.
    wakes: Vec<(Instant, Timer)>,
    /// The last bytes each side put on the wire.
    last_sent: [Option<[u8; PACKET_LEN]>; 2],
}

impl Pair {
    fn new(damping: Damping) -> Pair {
        Pair {
            now: T0,
            s: [
                Supervision::new(T0, Some(Config::GAMING), damping, SEED_A, 0),
                Supervision::new(T0, Some(Config::GAMING), damping, SEED_B, 1),
            ],
            cut: [false; 2],
            events: [Vec::new(), Vec::new()],
            wakes: Vec::new(),
            last_sent: [None; 2],
        }
    }

    fn step(&mut self) {
        for i in 0..2 {
            if let Some((at, timer)) = self.s[i].poll_timeout() {
                if at <= self.now {
                    if i == 0 {
                        self.wakes.push((at, timer));
                    }
                    self.s[i].handle_timeout(self.now);
                }
            }
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(ev) = self.s[i].poll_event() {
            self.events[i].push((self.now, ev));
        }
        while let Some(pkt) = self.s[i].poll_transmit() {
            let mut bytes = [0u8; PACKET_LEN];
            let n = pkt.emit(&mut bytes).unwrap();
            self.last_sent[i] = Some(bytes);
            if !self.cut[i] && self.s[1 - i].handle_packet(self.now, &bytes[..n], 255) {
                self.drain(1 - i);
            }
        }
    }

    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000_000 {
            self.step();
            let next = self
                .s
                .iter()
                .filter_map(|s| s.poll_timeout().map(|(t, _)| t))
                .min();
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

    /// Side 0's events at or after `since`.
    fn events_since(&self, since: Instant) -> Vec<(Instant, Event)> {
        self.events[0]
            .iter()
            .copied()
            .filter(|(t, _)| *t >= since)
            .collect()
    }

    fn count(&self, ev: Event) -> usize {
        self.events[0].iter().filter(|(_, e)| *e == ev).count()
    }

    /// When side 0 last saw `ev`.
    fn last(&self, ev: Event) -> Option<Instant> {
        self.events[0]
            .iter()
            .rev()
            .find(|(_, e)| *e == ev)
            .map(|(t, _)| *t)
    }

    /// Side 1 falls silent until side 0 finds the path dead and confirms
    /// it, then is heard again; returns when side 0's BFD came back Up.
    fn flap(&mut self) -> Instant {
        self.silence(CONFIRM + Duration::from_millis(500))
    }

    /// Side 1 falls silent for `d`, then is heard again; returns when side
    /// 0's BFD came back Up.
    fn silence(&mut self, d: Duration) -> Instant {
        self.cut[1] = true;
        self.run_for(d);
        self.cut[1] = false;
        let since = self.now;
        for _ in 0..300 {
            self.run_for(Duration::from_millis(10));
            if let Some((t, _)) = self
                .events_since(since)
                .iter()
                .find(|(_, e)| *e == Event::BfdUp)
            {
                return *t;
            }
        }
        panic!(
            "BFD did not come back up: {:?} {:?}",
            self.s[0].session(),
            self.s[1].session()
        )
    }

    /// Side 0's hold-down after the flap whose BFD Up came at `up`:
    /// when BGP was released, checked to be on the hold-down's
    /// deadline and not a moment early.
    fn released_after(&mut self, up: Instant) -> Duration {
        let at = self.s[0].held_until().expect("BGP is not held");
        if at > up {
            self.run_until(at - Duration::from_ticks(1));
            assert!(
                self.events_since(up)
                    .iter()
                    .all(|(_, e)| *e != Event::StartBgp),
                "BGP released before the hold-down ended"
            );
        }
        self.run_until(at + Duration::from_millis(1));
        assert_eq!(self.last(Event::StartBgp), Some(at));
        // Side 0 woke for it (the reason is `HoldDown` unless a BFD
        // packet falls due in the same microsecond).
        assert!(self.wakes.iter().any(|(t, _)| *t == at));
        assert_eq!(self.s[0].held_until(), None);
        at.saturating_duration_since(up)
    }
}

/// A pair whose BFD is Up.
fn up_pair() -> Pair {
    up_pair_with(DAMPING)
}

fn up_pair_with(damping: Damping) -> Pair {
    let mut p = Pair::new(damping);
    p.run_for(Duration::from_secs(3));
    assert_eq!(p.s[0].session().map(|b| b.state()), Some(State::Up));
    p
}

#[test]
fn bfd_coming_up_the_first_time_starts_nothing_because_nothing_was_held() {
    let p = up_pair();
    let events: Vec<Event> = p.events[0].iter().map(|(_, e)| *e).collect();
    assert_eq!(events, [Event::BfdUp]);
    assert_eq!(p.s[0].held_until(), None);
    assert!(p.s[0].up_or_off());
    // Only the session's own timer is left.
    assert!(matches!(p.s[0].poll_timeout(), Some((_, Timer::Bfd))));
}

#[test]
fn silence_moves_traffic_at_the_detection_time_and_stops_bgp_only_once_confirmed() {
    let mut p = up_pair();
    let cut_at = p.now;
    p.cut[1] = true;
    p.run_for(Duration::from_secs(5));
    let since = p.events_since(cut_at);
    assert_eq!(
        since.iter().map(|(_, e)| *e).collect::<Vec<_>>(),
        [
            Event::BfdDown(Diagnostic::ControlDetectionTimeExpired),
            Event::Moved(true),
            Event::StopBgp
        ]
    );
    // Traffic moves in the step BFD goes down, within the detection time
    // (40 ms) of the last packet heard; BGP goes the confirmation time
    // later, woken for it, and not a moment early.
    let (down_at, _) = since[0];
    assert_eq!(since[1].0, down_at);
    assert!(down_at.saturating_duration_since(cut_at) <= Duration::from_millis(41));
    assert_eq!(since[2].0, down_at + CONFIRM);
    assert!(p.wakes.contains(&(down_at + CONFIRM, Timer::Confirm)));
    assert!(!p.s[0].up_or_off());
    assert!(p.s[0].moved());
    assert_eq!(p.s[0].confirm_at(), None);
    // Held, but no release scheduled while BFD is down.
    assert_eq!(p.s[0].held_until(), None);
    assert_eq!((p.s[0].survived, p.s[0].confirmed), (0, 1));
}

#[test]
fn with_no_confirmation_time_bgp_stops_in_the_step_bfd_goes_down() {
    let mut p = up_pair_with(Damping {
        hold_down: BASE,
        confirm: Duration::from_ticks(0),
    });
    let cut_at = p.now;
    p.cut[1] = true;
    p.run_for(Duration::from_secs(1));
    let since = p.events_since(cut_at);
    let events: Vec<Event> = since.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        events,
        [
            Event::BfdDown(Diagnostic::ControlDetectionTimeExpired),
            Event::Moved(true),
            Event::StopBgp
        ]
    );
    assert!(since.iter().all(|(t, _)| *t == since[0].0));
}

#[test]
fn a_blip_shorter_than_the_confirmation_moves_traffic_and_back_and_leaves_bgp_alone() {
    let mut p = up_pair();
    let cut_at = p.now;
    // 600 ms of silence: an upload queue, a stalled router.
    let up = p.silence(Duration::from_millis(600));
    let down_at = p
        .last(Event::BfdDown(Diagnostic::ControlDetectionTimeExpired))
        .unwrap();
    // BFD Up cancelled the confirmation; traffic waits a second more.
    assert_eq!(p.s[0].confirm_at(), None);
    assert!(p.s[0].moved());
    assert_eq!(p.s[0].return_at(), Some(up + RETURN_AFTER));
    p.run_until(up + RETURN_AFTER - Duration::from_ticks(1));
    assert!(
        p.s[0].moved(),
        "traffic returned before the hysteresis ran out"
    );
    p.run_until(up + RETURN_AFTER + Duration::from_millis(1));
    assert!(!p.s[0].moved());
    assert!(p.wakes.contains(&(up + RETURN_AFTER, Timer::Return)));
    let events: Vec<(Instant, Event)> = p.events_since(cut_at);
    assert_eq!(
        events,
        [
            (
                down_at,
                Event::BfdDown(Diagnostic::ControlDetectionTimeExpired)
            ),
            (down_at, Event::Moved(true)),
            (up, Event::BfdUp),
            (up + RETURN_AFTER, Event::Moved(false)),
        ]
    );
    assert_eq!((p.s[0].survived, p.s[0].confirmed), (1, 0));
    assert_eq!(p.s[0].held_until(), None);
    assert_eq!(p.s[0].poll_timeout().map(|t| t.1), Some(Timer::Bfd));
}

#[test]
fn each_blip_within_the_flap_memory_doubles_the_wait_before_traffic_returns() {
    let mut p = up_pair();
    let waits: Vec<u64> = (0..7)
        .map(|_| {
            let up = p.silence(Duration::from_millis(200));
            let back = p.s[0].return_at().unwrap_or_else(|| {
                panic!(
                    "no return scheduled: {:?}",
                    p.events_since(up - Duration::from_secs(3))
                )
            });
            p.run_until(back + Duration::from_millis(1));
            assert!(!p.s[0].moved());
            back.saturating_duration_since(up).as_secs()
        })
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(p.count(Event::StopBgp), 0);
    // A minute of calm: the next blip is the first again.
    p.run_for(FLAP_MEMORY + Duration::from_secs(1));
    let up = p.silence(Duration::from_millis(200));
    assert_eq!(p.s[0].return_at(), Some(up + RETURN_AFTER));
}

#[test]
fn a_blip_while_traffic_waits_to_return_starts_the_wait_over() {
    let mut p = up_pair();
    let _ = p.silence(Duration::from_millis(200));
    assert!(p.s[0].return_at().is_some());
    p.run_for(Duration::from_millis(500));
    // Down again before the return: traffic stays away, no return is due,
    // and the next Up waits twice as long.
    let up = p.silence(Duration::from_millis(200));
    assert!(p.s[0].moved());
    assert_eq!(p.s[0].return_at(), Some(up + 2 * RETURN_AFTER));
    assert_eq!(p.count(Event::Moved(false)), 0);
    assert_eq!(p.count(Event::StopBgp), 0);
    // Silence that outlasts the confirmation still takes BGP down.
    let _ = p.flap();
    assert_eq!(p.count(Event::StopBgp), 1);
}

#[test]
fn bfd_up_again_releases_bgp_after_the_base_hold_down_and_not_before() {
    let mut p = up_pair();
    let up = p.flap();
    assert_eq!(p.s[0].held_until(), Some(up + BASE));
    // Up again is told at once; BGP waits.
    assert_eq!(p.last(Event::BfdUp), Some(up));
    assert_eq!(p.released_after(up), BASE);
    assert!(p.wakes.contains(&(up + BASE, Timer::HoldDown)));
    assert_eq!(p.count(Event::StartBgp), 1);
    assert_eq!(p.count(Event::StopBgp), 1);
}

#[test]
fn each_flap_doubles_the_hold_down_up_to_a_minute() {
    let mut p = up_pair();
    let holds: Vec<u64> = (0..7)
        .map(|_| {
            let up = p.flap();
            p.released_after(up).as_secs()
        })
        .collect();
    assert_eq!(holds, [2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(MAX_HOLD_DOWN, Duration::from_secs(60));
}

#[test]
fn a_peer_back_with_a_new_discriminator_is_released_at_once_and_its_flaps_start_over() {
    let mut p = up_pair();
    for _ in 0..2 {
        let up = p.flap();
        let _ = p.released_after(up);
    }
    // The member loses power: side 0 finds the path dead.
    let old = p.s[1].session().unwrap().local_discriminator();
    p.cut[1] = true;
    p.run_for(CONFIRM + Duration::from_millis(100));
    assert_eq!(p.count(Event::StopBgp), 3);
    // It comes back as a new instance.
    p.s[1] = Supervision::new(p.now, Some(Config::GAMING), DAMPING, SEED_B_RESTARTED, 1);
    assert_ne!(p.s[1].session().unwrap().local_discriminator(), old);
    p.cut[1] = false;
    let since = p.now;
    p.run_for(Duration::from_secs(2));
    let up = p.last(Event::BfdUp).unwrap();
    assert!(up >= since);
    // Released in the same instant, by the (zero) hold-down timer.
    assert_eq!(p.last(Event::StartBgp), Some(up));
    assert!(p.wakes.contains(&(up, Timer::HoldDown)));
    // The next flap is the first again: the base hold-down, not 8 s.
    let up = p.flap();
    assert_eq!(p.released_after(up), BASE);
}

#[test]
fn a_peer_that_restarts_within_the_detection_time_is_released_at_once() {
    let mut p = up_pair();
    let up = p.flap();
    let _ = p.released_after(up);
    // The member restarts faster than the detection time: the first
    // packet of its new instance (Down, knowing no discriminator of
    // ours) is what takes side 0 down, not silence.
    p.s[1] = Supervision::new(p.now, Some(Config::GAMING), DAMPING, SEED_B_RESTARTED, 1);
    let since = p.now;
    p.run_for(Duration::from_millis(100));
    let events: Vec<Event> = p.events_since(since).iter().map(|(_, e)| *e).collect();
    // Traffic moves at its first packet; once Up again with a new
    // discriminator, BGP (whose session died with the old instance)
    // restarts at once, well inside the confirmation time.
    assert_eq!(
        events,
        [
            Event::BfdDown(Diagnostic::NeighborSignaledSessionDown),
            Event::Moved(true),
            Event::BfdUp,
            Event::StopBgp,
            Event::StartBgp,
            Event::Moved(false),
        ]
    );
    assert!(p.last(Event::StartBgp).unwrap() < since + CONFIRM);
    // Not a flap of the path: the next one is the first again.
    let up = p.flap();
    assert_eq!(p.released_after(up), BASE);
}

#[test]
fn bgp_stable_for_longer_than_the_flap_memory_forgets_past_flaps() {
    let mut p = up_pair();
    let up = p.flap();
    let _ = p.released_after(up);
    p.s[0].bgp_changed(p.now, true);
    p.run_for(FLAP_MEMORY + Duration::from_secs(1));
    let up = p.flap();
    assert_eq!(p.released_after(up), BASE);
}

#[test]
fn bgp_up_for_less_than_the_flap_memory_keeps_counting_flaps() {
    let mut p = up_pair();
    let up = p.flap();
    let _ = p.released_after(up);
    p.s[0].bgp_changed(p.now, true);
    p.run_for(FLAP_MEMORY - Duration::from_secs(1));
    let up = p.flap();
    assert_eq!(p.released_after(up), 2 * BASE);
}

#[test]
fn turning_bfd_off_while_bgp_is_held_releases_it_at_once() {
    let mut p = up_pair();
    let up = p.flap();
    assert_eq!(p.s[0].held_until(), Some(up + BASE));
    let now = p.now;
    p.s[0].reconfigure(now, None, DAMPING);
    assert_eq!(p.s[0].poll_event(), Some(Event::StartBgp));
    assert_eq!(p.s[0].poll_event(), Some(Event::Moved(false)));
    assert_eq!(p.s[0].poll_event(), None);
    assert!(p.s[0].session().is_none());
    assert!(p.s[0].up_or_off());
    assert_eq!(p.s[0].held_until(), None);
    assert_eq!(p.s[0].poll_timeout(), None);
    // Nothing left to release it twice.
    p.s[0].handle_timeout(up + BASE + Duration::from_secs(1));
    assert_eq!(p.s[0].poll_event(), None);
}

#[test]
fn packets_with_ttl_254_or_garbage_are_refused_and_change_nothing() {
    let mut p = up_pair();
    let now = p.now;
    // What the member would say if it went down.
    let mut down = ControlPacket::parse(&p.last_sent[1].unwrap()).unwrap();
    down.state = State::Down;
    down.diag = Diagnostic::AdministrativelyDown;
    let mut bytes = [0u8; PACKET_LEN];
    down.emit(&mut bytes).unwrap();
    let timeout = p.s[0].poll_timeout();
    let inputs: [(&[u8], u8); 4] = [
        (&bytes, 254),
        (&bytes, 1),
        (b"not a BFD packet at all!", 255),
        (&bytes[..PACKET_LEN - 1], 255),
    ];
    for (packet, ttl) in inputs {
        assert!(!p.s[0].handle_packet(now, packet, ttl), "ttl {ttl}");
        assert_eq!(p.s[0].session().unwrap().state(), State::Up);
        assert_eq!(p.s[0].poll_event(), None);
        assert_eq!(p.s[0].poll_transmit(), None);
        assert_eq!(p.s[0].poll_timeout(), timeout);
    }
    // With TTL 255 the same packet is taken, and it would have counted.
    assert!(p.s[0].handle_packet(now, &bytes, 255));
    assert_eq!(
        p.s[0].poll_event(),
        Some(Event::BfdDown(Diagnostic::NeighborSignaledSessionDown))
    );
    assert_eq!(p.s[0].poll_event(), Some(Event::Moved(true)));
    assert_eq!(p.s[0].confirm_at(), Some(now + CONFIRM));
}
