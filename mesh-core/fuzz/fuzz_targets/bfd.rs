//! A BFD session fed the input as datagrams from the peer.
//!
//! Input layout: a sequence of records `[delay, ttl_flag, len, bytes...]`:
//! `delay` milliseconds pass (timers run, packets are sent) before the
//! datagram of `len` bytes arrives, with TTL 255 unless bit 0 of `ttl_flag`
//! is set. Checked: no panic; every packet the session sends parses back to
//! itself; Poll and Final are never set together; Up and Down alternate
//! (a Down only from Up); the timers always move forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::bfd::{Config, ControlPacket, Event, Session, State, PACKET_LEN};
use mesh_core::{Duration, Instant};

struct Check {
    up: bool,
}

impl Check {
    fn event(&mut self, s: &Session, e: Option<Event>) {
        match e {
            Some(Event::Up) => {
                assert!(!self.up, "Up twice");
                assert_eq!(s.state(), State::Up);
                self.up = true;
            }
            Some(Event::Down(_) | Event::PeerAdminDown) => {
                assert!(self.up, "Down without Up");
                assert_ne!(s.state(), State::Up);
                self.up = false;
            }
            None => assert_eq!(self.up, s.state() == State::Up),
        }
    }
}

fn run_timers(s: &mut Session, now: Instant, check: &mut Check) {
    for _ in 0..64 {
        check.event(s, None);
        s.handle_timeout(now);
        let e = s.poll_event();
        check.event(s, e);
        assert_eq!(s.poll_event(), None, "one input, two events");
        match s.poll_transmit() {
            Some(p) => {
                assert!(!(p.poll && p.final_), "P and F together");
                let mut b = [0u8; PACKET_LEN];
                let n = p.emit(&mut b).expect("emit");
                assert_eq!(ControlPacket::parse(&b[..n]), Ok(p));
                if let Some(t) = s.poll_timeout() {
                    assert!(t > now, "a sent packet did not move the timer");
                }
            }
            None => return,
        }
    }
    panic!("transmit did not settle");
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::from_secs(100);
    let mut s = Session::new(Config::GAMING, 0x1234_5678, 7);
    s.start(now);
    let mut check = Check { up: false };
    let mut rest = data;
    while let [delay, ttl_flag, len, tail @ ..] = rest {
        let target = now + Duration::from_millis(*delay as u64);
        // Step through every deadline on the way, as the event loop does.
        loop {
            run_timers(&mut s, now, &mut check);
            match s.poll_timeout() {
                Some(t) if t <= target => now = now.max(t),
                _ => break,
            }
        }
        now = target;
        run_timers(&mut s, now, &mut check);
        let n = (*len as usize).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        let ttl = if ttl_flag & 1 == 0 { 255 } else { 254 };
        if let Ok(p) = ControlPacket::parse(datagram) {
            let before = s.stats;
            let state_before = s.state();
            match s.handle_packet(now, &p, ttl) {
                Ok(()) => {
                    let e = s.poll_event();
                    check.event(&s, e);
                    assert_eq!(s.poll_event(), None, "one packet, two events");
                    assert_eq!(s.stats.rx_packets, before.rx_packets + 1);
                    assert_eq!(s.peer_discriminator(), p.my_discriminator);
                }
                Err(_) => {
                    assert_eq!(s.stats.rx_discarded, before.rx_discarded + 1);
                    assert_eq!(s.state(), state_before, "a discarded packet changed state");
                }
            }
        }
    }
    // The peer goes silent: an Up session is Down once its detection time
    // has passed.
    if check.up {
        now += s.detection_time() + Duration::from_millis(1);
        run_timers(&mut s, now, &mut check);
        assert!(!check.up, "still Up after the detection time");
    }
});
