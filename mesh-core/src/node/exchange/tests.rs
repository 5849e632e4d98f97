use super::*;

extern crate std;
use std::vec::Vec;

const T0: Instant = Instant::from_secs(100);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Where the member may be reached, as peer exchange told us.
fn candidate() -> SocketAddr {
    addr("203.0.113.20:40000")
}

/// A member with no tunnel of its own but a route through another.
fn transit(leads: bool) -> Facts {
    Facts {
        direct: false,
        direct_until: None,
        leads,
        transit: true,
    }
}

/// A member reached over its own tunnel until `until`.
fn direct(leads: bool, until: Instant) -> Facts {
    Facts {
        direct: true,
        direct_until: Some(until),
        leads,
        transit: false,
    }
}

/// A punch towards a member we learned a candidate of.
fn punch() -> Punch {
    let mut p = Punch::new(T0);
    p.learn(T0, candidate());
    p
}

/// Runs the punch's timers up to `until` as the node does (at each
/// deadline), with the member as `facts` says; the steps that asked
/// something. After every timeout nothing may be left due at that
/// instant: the node would spin.
fn run(p: &mut Punch, ids: &mut Ids, facts: Facts, until: Instant) -> Vec<(Instant, Step)> {
    let mut steps = Vec::new();
    let mut last = None;
    while let Some(now) = p.poll_timeout().filter(|t| *t <= until) {
        assert!(
            last.is_none_or(|l| now > l),
            "deadline {now:?} not after {last:?}"
        );
        let step = p.handle_timeout(now, facts, ids);
        assert!(!p.due(now), "still due at {now:?} after its timeout");
        if step != Step::default() {
            steps.push((now, step));
        }
        last = Some(now);
    }
    steps
}

fn ms(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis()
}

#[test]
fn the_side_that_leads_asks_and_initiates_at_once_then_every_200_ms_for_the_window() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    let steps = run(&mut p, &mut ids, transit(true), T0 + PUNCH_WINDOW);
    let (at, first) = steps[0];
    assert_eq!(at, T0);
    assert!(first.ask.is_some());
    assert!(first.initiate);
    assert_eq!(p.attempts, 1);
    // Initiations every 200 ms through the window, asking only once.
    let rounds: Vec<u64> = steps
        .iter()
        .filter(|(_, s)| s.initiate)
        .map(|(t, _)| ms(T0, *t))
        .collect();
    assert_eq!(rounds, (0..15).map(|i| i * 200).collect::<Vec<_>>());
    assert_eq!(steps.iter().filter(|(_, s)| s.ask.is_some()).count(), 1);
    // The window's end, without a tunnel: failed.
    let (end, last) = *steps.last().unwrap();
    assert_eq!(end, T0 + PUNCH_WINDOW);
    assert!(last.failed && !last.initiate);
    assert!(!p.punching());
    assert_eq!(p.next_attempt(), Some(end + PUNCH_BACKOFF_MIN));
}

#[test]
fn failed_attempts_back_off_from_5_seconds_doubling_up_to_2_minutes() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    let steps = run(
        &mut p,
        &mut ids,
        transit(true),
        T0 + Duration::from_secs(900),
    );
    let asks: Vec<Instant> = steps
        .iter()
        .filter(|(_, s)| s.ask.is_some())
        .map(|(t, _)| *t)
        .collect();
    let failures: Vec<Instant> = steps
        .iter()
        .filter(|(_, s)| s.failed)
        .map(|(t, _)| *t)
        .collect();
    // Each attempt fails a window after it starts...
    for (ask, fail) in asks.iter().zip(&failures) {
        assert_eq!(*fail, *ask + PUNCH_WINDOW);
    }
    // ...and the next starts a backoff after that.
    let backoffs: Vec<u64> = failures
        .iter()
        .zip(&asks[1..])
        .map(|(f, a)| a.saturating_duration_since(*f).as_secs())
        .collect();
    assert_eq!(backoffs[..8], [5, 10, 20, 40, 80, 120, 120, 120]);
    assert_eq!(PUNCH_BACKOFF_MAX, Duration::from_secs(120));
    // A new token for each attempt.
    let mut tokens: Vec<u32> = steps.iter().filter_map(|(_, s)| s.ask).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), asks.len());
}

#[test]
fn becoming_direct_records_the_success_and_its_duration_and_clears_the_backoff() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    // One failure (the next wait would be 10 s), and a second attempt
    // under way.
    let started = T0 + PUNCH_WINDOW + PUNCH_BACKOFF_MIN;
    let steps = run(
        &mut p,
        &mut ids,
        transit(true),
        started + Duration::from_millis(800),
    );
    assert_eq!(steps.iter().filter(|(t, _)| *t >= started).count(), 5);
    assert!(p.punching());
    // The tunnel comes up a second into it.
    let now = started + Duration::from_secs(1);
    assert_eq!(p.poll_timeout(), Some(now));
    let heard_until = now + Duration::from_secs(15);
    let step = p.handle_timeout(now, direct(true, heard_until), &mut ids);
    assert_eq!(step.succeeded, Some(Duration::from_millis(1000)));
    assert!(!step.failed && !step.initiate && step.ask.is_none());
    assert_eq!(
        (p.successes, p.last),
        (1, Some(Duration::from_millis(1000)))
    );
    assert!(!p.punching());
    assert_eq!(p.next_attempt(), None);
    // Nothing until the tunnel would count as silent.
    assert_eq!(p.poll_timeout(), Some(heard_until));
    // It does fall silent: a new attempt at once, and its failure waits
    // the first backoff again, not the 10 s the old one had reached.
    let steps = run(&mut p, &mut ids, transit(true), heard_until + PUNCH_WINDOW);
    assert_eq!(steps[0].0, heard_until);
    assert!(steps[0].1.ask.is_some());
    assert_eq!(
        p.next_attempt(),
        Some(heard_until + PUNCH_WINDOW + PUNCH_BACKOFF_MIN)
    );
    assert_eq!(p.successes, 1);
}

#[test]
fn the_side_that_does_not_lead_never_asks_but_punches_when_asked() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    let steps = run(
        &mut p,
        &mut ids,
        transit(false),
        T0 + Duration::from_secs(600),
    );
    assert_eq!(steps, []);
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.attempts, 0);
    // The member asks: punch at once, without asking back.
    let now = T0 + Duration::from_secs(600);
    let step = p.handle_punch(now, 0xfeed, false, false);
    assert!(step.initiate);
    assert_eq!(step.ask, None);
    assert!(p.punching());
    let steps = run(&mut p, &mut ids, transit(false), now + PUNCH_WINDOW);
    assert!(steps.iter().all(|(_, s)| s.ask.is_none()));
    assert!(steps.last().unwrap().1.failed);
}

#[test]
fn an_answer_with_a_wrong_token_does_not_start_a_punch() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    let steps = run(&mut p, &mut ids, transit(true), T0 + PUNCH_WINDOW);
    let token = steps[0].1.ask.unwrap();
    let now = T0 + PUNCH_WINDOW + Duration::from_secs(1);
    assert!(!p.punching());
    assert_eq!(p.handle_punch(now, token ^ 1, true, false), Step::default());
    assert!(!p.punching());
    assert_eq!(
        p.next_attempt(),
        Some(T0 + PUNCH_WINDOW + PUNCH_BACKOFF_MIN)
    );
    // The right token does (a late answer to our own request).
    assert!(p.handle_punch(now, token, true, false).initiate);
    assert!(p.punching());
    // Nor does anything once the member is direct.
    let mut q = punch();
    assert_eq!(q.handle_punch(now, 0, false, true), Step::default());
    assert!(!q.punching());
}

#[test]
fn learn_ignores_port_0_and_martians_and_keeps_the_newest_candidates() {
    let mut p = Punch::new(T0);
    for bad in [
        "203.0.113.20:0",
        "127.0.0.1:51820",
        "0.0.0.0:51820",
        "224.0.0.5:51820",
        "255.255.255.255:51820",
        "169.254.1.1:51820",
        "[::1]:51820",
        "[::]:51820",
        "[ff02::1]:51820",
        "[fe80::1]:51820",
    ] {
        p.learn(T0, addr(bad));
    }
    assert_eq!(p.learned.as_slice(), []);
    let c = |n: u16| addr(&std::format!("203.0.113.20:{}", 40000 + n));
    for n in 0..MAX_CANDIDATES as u16 + 2 {
        p.learn(T0, c(n));
    }
    let kept: Vec<SocketAddr> = (2..MAX_CANDIDATES as u16 + 2).map(c).collect();
    assert_eq!(p.learned.as_slice(), kept);
    // Learned again, an old one becomes the newest, nothing is lost.
    p.learn(T0, c(2));
    assert_eq!(p.learned.last(), Some(&c(2)));
    assert_eq!(p.learned.len(), MAX_CANDIDATES);
    // A v6 candidate is as good as a v4 one.
    p.learn(T0, addr("[2001:db8::20]:40000"));
    assert_eq!(p.learned.last(), Some(&addr("[2001:db8::20]:40000")));
}

/// This hung the simulation once: the member asked for a punch while
/// ours was scheduled after a failure, inside the window that ask
/// opened; the schedule, left behind, was a deadline in the past (the
/// node woke, had nothing to do, and woke again at the same instant).
/// `start` clears it; `deadline` also looks past it while punching, so
/// today a stale schedule would show in status only, which this checks
/// too.
#[test]
fn a_punch_the_member_asks_for_while_ours_is_scheduled_leaves_no_deadline_in_the_past() {
    let mut p = punch();
    let mut ids = Ids::new(1);
    let steps = run(&mut p, &mut ids, transit(true), T0 + PUNCH_WINDOW);
    let failed = steps.last().unwrap().0;
    let scheduled = failed + PUNCH_BACKOFF_MIN;
    assert_eq!(p.next_attempt(), Some(scheduled));
    // The member asks 2.9 s after our failure: our attempt falls inside
    // that window, between two rounds of initiations.
    let asked = failed + Duration::from_millis(2900);
    assert!(p.handle_punch(asked, 0xfeed, false, false).initiate);
    // `run` checks that nothing is left due after each timeout.
    let mut steps = run(&mut p, &mut ids, transit(true), scheduled);
    // Nor is an attempt left scheduled in the past (status shows it).
    assert!(p.punching());
    assert!(
        p.next_attempt().is_none_or(|t| t > scheduled),
        "next attempt {:?} while punching at {scheduled:?}",
        p.next_attempt()
    );
    steps.extend(run(&mut p, &mut ids, transit(true), asked + PUNCH_WINDOW));
    // The member's window ran out and counts as the attempt: no ask of
    // ours at the scheduled instant.
    assert!(steps.iter().all(|(_, s)| s.ask.is_none()));
    assert_eq!(steps.last().unwrap().0, asked + PUNCH_WINDOW);
    assert!(steps.last().unwrap().1.failed);
    assert_eq!(
        p.next_attempt(),
        Some(asked + PUNCH_WINDOW + 2 * PUNCH_BACKOFF_MIN)
    );
    assert_eq!(p.attempts, 2);
}

// ---- the node-wide side and the announcement (real member table) ----

#[cfg(feature = "std")]
mod with_members {
    use super::*;

    use crate::nat::NatState;
    use crate::wg::BfdSetting;

    use super::super::super::slots::Slots;
    use crate::node::tests::fixtures::{big_stack, member, overlay, slots, underlay};

    #[test]
    fn there_is_no_announcement_timer_without_members() {
        big_stack(|| {
            let ex = Exchange::new(T0);
            let empty = Slots::<crate::wg::boring::BoringTunnel>::leak();
            assert_eq!(ex.poll_timeout(&empty), None);
            let one = slots(T0, 1, &[member(2)]);
            assert_eq!(ex.poll_timeout(&one), Some((T0, Timer::Announce)));
        });
    }

    #[test]
    fn announce_now_pulls_the_next_announcement_to_now() {
        big_stack(|| {
            let mut ex = Exchange::new(T0);
            assert!(ex.handle_timeout(T0));
            let later = T0 + Duration::from_secs(1);
            assert!(!ex.handle_timeout(later));
            assert_eq!(ex.next_announce, T0 + PEX_INTERVAL);
            ex.announce_now(later);
            let one = slots(T0, 1, &[member(2)]);
            assert_eq!(ex.poll_timeout(&one), Some((later, Timer::Announce)));
            assert!(ex.handle_timeout(later));
            assert_eq!(ex.next_announce, later + PEX_INTERVAL);
            // It never puts one off.
            ex.announce_now(later + Duration::from_secs(60));
            assert_eq!(ex.next_announce, later + PEX_INTERVAL);
        });
    }

    #[test]
    fn the_announcement_lists_our_candidates_as_own_and_only_members_reached_directly() {
        big_stack(|| {
            // Member 2 and 3 without BFD (so heard from is direct), 4 with
            // BFD (still down).
            let mut two = member(2);
            two.bfd = BfdSetting::Off;
            let mut three = member(3);
            three.bfd = BfdSetting::Off;
            let mut s = slots(T0, 1, &[two, three, member(4)]);
            let now = T0 + Duration::from_secs(60);
            let seen_at = addr("198.51.100.222:6000");
            // Member 2 heard from just now, at an address of its own.
            s.get_mut(0).unwrap().wg.authenticated_from(now, seen_at);
            // Member 3 heard from, but long ago.
            s.get_mut(1)
                .unwrap()
                .wg
                .authenticated_from(now - Duration::from_secs(20), underlay(3));
            // Member 4 heard from just now, but its BFD is not Up.
            s.get_mut(2)
                .unwrap()
                .wg
                .authenticated_from(now, underlay(4));
            let report = NatState::new().report(|_| false);
            let ours = [addr("203.0.113.7:40000"), addr("203.0.113.7:40001")];
            let msg = announcement(now, overlay(1), &report, &ours, &s);
            let pex::Message::Endpoints {
                nat,
                playstation,
                entries,
            } = msg
            else {
                panic!("not an Endpoints message: {msg:?}");
            };
            assert_eq!((nat, playstation), (report.behaviour.code(), 0));
            let own = |endpoint| pex::Entry {
                subject: overlay(1),
                own: true,
                endpoint,
            };
            assert_eq!(
                entries.as_slice(),
                [
                    own(ours[0]),
                    own(ours[1]),
                    pex::Entry {
                        subject: overlay(2),
                        own: false,
                        endpoint: seen_at,
                    },
                ]
            );
        });
    }
}
