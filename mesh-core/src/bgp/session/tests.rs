//! Two sessions wired back to back through an in-memory transport, on virtual
//! time. Every byte between them is real BGP.

use super::*;
use crate::bgp::attr::AsPath;
use crate::bgp::message::Message;
use crate::bgp::notification::{FsmSubcode, HeaderSubcode, OpenSubcode};
use crate::bgp::PathAttributes;
use crate::prefix::Prefix;

extern crate std;
use std::vec::Vec;

#[derive(Default)]
struct CountingSink {
    prefixes: std::collections::BTreeSet<Prefix>,
    updates: usize,
}

impl UpdateSink for CountingSink {
    fn apply_update(&mut self, update: &Update<'_>) -> Result<usize, RibFull> {
        self.updates += 1;
        for p in update.withdrawn() {
            self.prefixes.remove(&p);
        }
        for p in update.announced() {
            self.prefixes.insert(p);
        }
        Ok(self.prefixes.len())
    }
}

/// Everything queued on `conn`, as a driver whose transport takes it all.
fn take_tx(s: &mut Session, conn: ConnId) -> Vec<u8> {
    let mut buf = [0u8; TX_BUF];
    let n = s.poll_transmit(conn, &mut buf);
    buf[..n].to_vec()
}

/// A session's full-size buffers, never freed.
fn buffers() -> SessionBuffers<'static> {
    SessionBuffers::new(Vec::leak(std::vec![0u8; SESSION_BUFFERS]))
}

struct Side {
    s: Session<'static>,
    sink: CountingSink,
    events: Vec<SessionEvent>,
    /// Notifications this side received (decoded from the wire).
    received: Vec<ErrorCode>,
}

/// A link: (side, conn) on each end.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Link {
    a: ConnId,
    b: ConnId,
}

struct Pair {
    now: Instant,
    sides: [Side; 2],
    links: Vec<Link>,
    /// Whether side 1 accepts connections (false emulates a peer not listening).
    listening: [bool; 2],
    /// Bytes in flight are held while frozen (a SIGSTOPped peer).
    frozen: [bool; 2],
    /// Connect attempts get no answer at all (SYNs into a black hole).
    stall_connects: bool,
    /// Whether a new connection may replace one still opening
    /// ([`Session::replace_incoming`]), as the node's engine does.
    replace: bool,
}

fn cfg(asn: u32, id: u8, peer_asn: u32) -> SessionConfig {
    let mut c = SessionConfig::new(asn, Ipv4Addr::new(10, 0, 0, id), peer_asn);
    c.hold_time = 9;
    c.connect_retry = Duration::from_secs(2);
    c
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let side = |c| Side {
            s: Session::new(c, buffers()),
            sink: CountingSink::default(),
            events: Vec::new(),
            received: Vec::new(),
        };
        Pair {
            now: Instant::from_secs(1000),
            sides: [side(a), side(b)],
            links: Vec::new(),
            listening: [true, true],
            frozen: [false, false],
            stall_connects: false,
            replace: true,
        }
    }

    fn start(&mut self) {
        let now = self.now;
        self.sides[0].s.start(now);
        self.sides[1].s.start(now);
        self.pump();
    }

    fn link_end(&self, side: usize, conn: ConnId) -> Option<(usize, ConnId)> {
        self.links.iter().find_map(|l| match side {
            0 if l.a == conn => Some((1, l.b)),
            1 if l.b == conn => Some((0, l.a)),
            _ => None,
        })
    }

    /// Moves bytes, actions and events until nothing changes.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            for i in 0..2 {
                if self.frozen[i] {
                    continue;
                }
                // Outgoing bytes.
                for conn in [ConnId::Outgoing, ConnId::Incoming] {
                    let bytes = take_tx(&mut self.sides[i].s, conn);
                    if bytes.is_empty() {
                        continue;
                    }
                    busy = true;
                    if let Some((j, peer_conn)) = self.link_end(i, conn) {
                        record_notifications(&bytes, &mut self.sides[j].received);
                        let now = self.now;
                        let side = &mut self.sides[j];
                        side.s.handle_data(now, peer_conn, &bytes, &mut side.sink);
                    }
                }
                while let Some(e) = self.sides[i].s.poll_event() {
                    busy = true;
                    match e {
                        SessionEvent::Connect | SessionEvent::Close(_) => self.act(i, e),
                        e => self.sides[i].events.push(e),
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Side `j` takes a connection as the node's engine does: a connection
    /// from the peer still opening gives way to a new one (its link is cut).
    fn accept(&mut self, j: usize) -> bool {
        let now = self.now;
        let side = &mut self.sides[j].s;
        if side.handle_accepted(now) {
            return true;
        }
        if !self.replace || !side.replace_incoming() {
            return false;
        }
        self.links.retain(|l| {
            if j == 0 {
                l.a != ConnId::Incoming
            } else {
                l.b != ConnId::Incoming
            }
        });
        self.sides[j].s.handle_accepted(now)
    }

    /// Carries out a transport request.
    fn act(&mut self, i: usize, a: SessionEvent) {
        let now = self.now;
        let j = 1 - i;
        match a {
            SessionEvent::Connect if self.stall_connects => {}
            SessionEvent::Connect => {
                if self.listening[j] && self.accept(j) {
                    let link = if i == 0 {
                        Link {
                            a: ConnId::Outgoing,
                            b: ConnId::Incoming,
                        }
                    } else {
                        Link {
                            a: ConnId::Incoming,
                            b: ConnId::Outgoing,
                        }
                    };
                    self.links.push(link);
                    self.sides[i].s.handle_connected(now);
                } else {
                    self.sides[i]
                        .s
                        .handle_transport_closed(now, ConnId::Outgoing);
                }
            }
            SessionEvent::Close(conn) => {
                // Deliver what is pending (the NOTIFICATION), then close both ends.
                let bytes = take_tx(&mut self.sides[i].s, conn);
                let peer = self.link_end(i, conn);
                if let Some((pj, pc)) = peer {
                    if !bytes.is_empty() && !self.frozen[pj] {
                        record_notifications(&bytes, &mut self.sides[pj].received);
                        let side = &mut self.sides[pj];
                        side.s.handle_data(now, pc, &bytes, &mut side.sink);
                    }
                    self.links
                        .retain(|l| !(if i == 0 { l.a == conn } else { l.b == conn }));
                    if !self.frozen[pj] {
                        self.sides[pj].s.handle_transport_closed(now, pc);
                    }
                }
                self.sides[i].s.handle_transport_closed(now, conn);
            }
            e => self.sides[i].events.push(e),
        }
    }

    /// Advances virtual time to `until`, firing timers on the way.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000 {
            let next = (0..2)
                .filter(|&i| !self.frozen[i])
                .filter_map(|i| self.sides[i].s.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = t.max(self.now);
                    for i in 0..2 {
                        if !self.frozen[i] {
                            self.sides[i].s.handle_timeout(self.now);
                        }
                    }
                    self.pump();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("timers did not settle");
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn announce(&mut self, i: usize, prefixes: &[Prefix]) {
        let asn = self.sides[i].s.config().local_asn;
        let attrs = PathAttributes {
            as_path: AsPath::from_sequence(&[asn]).unwrap(),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1 + i as u8)),
            ..Default::default()
        };
        self.sides[i]
            .s
            .send_update(&UpdateRepr {
                withdrawn: &[],
                attrs: Some(&attrs),
                announced: prefixes,
                four_octet_as: true,
            })
            .unwrap();
        self.pump();
    }
}

fn record_notifications(bytes: &[u8], out: &mut Vec<ErrorCode>) {
    let mut rest = bytes;
    while let Ok(Some(n)) = frame(rest) {
        if let Ok(Message::Notification(note)) = Message::parse(&rest[..n]) {
            out.push(note.error);
        }
        rest = &rest[n..];
    }
}

fn established_pair() -> Pair {
    let mut a = cfg(65001, 1, 65002);
    a.passive = true;
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.start();
    assert_eq!(p.sides[0].s.state(), State::Established);
    assert_eq!(p.sides[1].s.state(), State::Established);
    p
}

#[test]
fn an_active_and_a_passive_side_reach_established() {
    let p = established_pair();
    assert_eq!(p.sides[0].events, [SessionEvent::Established]);
    assert_eq!(p.sides[1].events, [SessionEvent::Established]);
    let n = p.sides[0].s.negotiated().unwrap();
    assert_eq!(n.hold_time, 9);
    assert!(n.four_octet_as && n.ipv4 && n.ipv6);
    assert_eq!(n.peer_router_id, Ipv4Addr::new(10, 0, 0, 2));
}

#[test]
fn hold_time_is_the_smaller_of_the_two() {
    let mut a = cfg(65001, 1, 65002);
    a.hold_time = 30;
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.start();
    assert_eq!(p.sides[0].s.negotiated().unwrap().hold_time, 9);
    assert_eq!(p.sides[1].s.negotiated().unwrap().hold_time, 9);
}

#[test]
fn keepalives_keep_an_idle_session_up() {
    let mut p = established_pair();
    p.run_for(Duration::from_secs(120));
    assert!(p.sides[0].s.is_established() && p.sides[1].s.is_established());
    // 9 s hold → a keepalive every 3 s: about 40 in 120 s each way.
    let ka = p.sides[0].s.stats().messages_out;
    assert!((38..=45).contains(&ka), "{ka} messages out");
}

#[test]
fn simultaneous_opens_resolve_to_one_connection() {
    let mut p = Pair::new(cfg(65001, 1, 65002), cfg(65002, 2, 65001));
    p.start();
    assert!(p.sides[0].s.is_established() && p.sides[1].s.is_established());
    assert_eq!(p.links.len(), 1, "exactly one connection survives");
    // The higher router id (10.0.0.2) keeps the connection it opened.
    assert_eq!(
        p.links[0],
        Link {
            a: ConnId::Incoming,
            b: ConnId::Outgoing
        }
    );
    assert!(p.sides[0].s.stats().collisions + p.sides[1].s.stats().collisions >= 1);
    assert_eq!(p.sides[0].events, [SessionEvent::Established]);
    assert_eq!(p.sides[1].events, [SessionEvent::Established]);
    // The session works.
    p.announce(0, &["192.168.1.0/24".parse().unwrap()]);
    assert_eq!(p.sides[1].sink.prefixes.len(), 1);
}

#[test]
fn routes_flow_both_ways() {
    let mut p = established_pair();
    p.announce(
        0,
        &[
            "192.168.1.0/24".parse().unwrap(),
            "fd00:1::/48".parse().unwrap(),
        ][..1],
    );
    p.announce(1, &["192.168.2.0/24".parse().unwrap()]);
    assert_eq!(p.sides[1].sink.prefixes.len(), 1);
    assert_eq!(p.sides[0].sink.prefixes.len(), 1);
}

#[test]
fn a_frozen_peer_trips_the_hold_timer() {
    let mut p = established_pair();
    p.frozen[1] = true;
    let t0 = p.now;
    p.run_for(Duration::from_secs(20));
    assert!(!p.sides[0].s.is_established());
    assert_eq!(
        p.sides[0].events.last(),
        Some(&SessionEvent::Down(DownReason::SentNotification(
            ErrorCode::HoldTimerExpired
        )))
    );
    assert_eq!(
        p.sides[0].s.last_down(),
        Some(DownReason::SentNotification(ErrorCode::HoldTimerExpired))
    );
    let _ = t0;
}

#[test]
fn hold_timer_fires_at_the_hold_time_not_later() {
    let mut p = established_pair();
    let last_heard = p.now;
    p.frozen[1] = true;
    p.run_for(Duration::from_millis(8_900));
    assert!(p.sides[0].s.is_established(), "down before the hold time");
    p.run_until(last_heard + Duration::from_millis(9_001));
    assert!(
        !p.sides[0].s.is_established(),
        "still up after the hold time"
    );
}

#[test]
fn wrong_peer_as_gets_bad_peer_as() {
    let mut p = Pair::new(cfg(65001, 1, 65009), cfg(65002, 2, 65001));
    p.start();
    assert!(!p.sides[0].s.is_established());
    assert!(p.sides[1]
        .received
        .contains(&ErrorCode::Open(OpenSubcode::BadPeerAs)));
}

#[test]
fn hold_time_of_two_is_unacceptable() {
    let mut b = cfg(65002, 2, 65001);
    b.hold_time = 2;
    let mut a = cfg(65001, 1, 65002);
    a.min_hold_time = 0;
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.sides[1]
        .received
        .contains(&ErrorCode::Open(OpenSubcode::UnacceptableHoldTime)));
}

#[test]
fn hold_time_below_our_minimum_is_unacceptable() {
    let mut b = cfg(65002, 2, 65001);
    b.hold_time = 3;
    let mut a = cfg(65001, 1, 65002);
    a.min_hold_time = 6;
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.sides[1]
        .received
        .contains(&ErrorCode::Open(OpenSubcode::UnacceptableHoldTime)));
}

#[test]
fn same_router_id_is_a_bad_identifier() {
    let mut p = Pair::new(cfg(65001, 1, 65002), cfg(65002, 1, 65001));
    p.start();
    // Whichever side reads the other's OPEN first refuses it.
    let bad_id = ErrorCode::Open(OpenSubcode::BadBgpIdentifier);
    assert!(p.sides.iter().any(|s| s.received.contains(&bad_id)));
    assert!(!p.sides[0].s.is_established() && !p.sides[1].s.is_established());
}

#[test]
fn garbage_on_the_wire_is_connection_not_synchronized() {
    let mut p = established_pair();
    let (i, conn) = (0, p.links[0].a);
    let now = p.now;
    let side = &mut p.sides[i];
    side.s.handle_data(now, conn, &[0x00; 19], &mut side.sink);
    p.pump();
    assert!(p.sides[1].received.contains(&ErrorCode::MessageHeader(
        HeaderSubcode::ConnectionNotSynchronized
    )));
    assert!(matches!(
        p.sides[0].events.last(),
        Some(SessionEvent::Down(DownReason::SentNotification(_)))
    ));
}

/// A caller may give smaller buffers than [`SESSION_BUFFERS`]: a message
/// that cannot fit the receive buffer closes the connection with a
/// NOTIFICATION (it does not wait forever for a frame that cannot come).
#[test]
fn a_message_larger_than_the_receive_buffer_closes_the_connection() {
    let mut p = Pair::new(cfg(65001, 1, 65002), cfg(65002, 2, 65001));
    let small = Vec::leak(std::vec![0u8; 2 * TX_BUF + 2 * 24]);
    p.sides[0].s = Session::new(cfg(65001, 1, 65002), SessionBuffers::new(small));
    p.start();
    // Side 1's OPEN is longer than side 0's 24-byte receive buffers.
    assert!(!p.sides[0].s.is_established());
    assert!(p.sides[1]
        .received
        .iter()
        .any(|e| matches!(e, ErrorCode::MessageHeader(HeaderSubcode::BadMessageLength))));
    assert!(p.sides[0].s.stats().notifications_out >= 1);
}

#[test]
fn update_before_established_is_an_fsm_error() {
    let mut a = cfg(65001, 1, 65002);
    a.passive = true;
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.sides[0].s.start(p.now);
    p.sides[1].s.start(p.now);
    // Let side 1 connect, but deliver nothing yet: side 0 is in OpenSent.
    while let Some(e) = p.sides[1].s.poll_event() {
        p.act(1, e);
    }
    let mut upd = [0u8; 64];
    let n = crate::bgp::update::emit_end_of_rib(Family::Ipv4, &mut upd).unwrap();
    let now = p.now;
    let side = &mut p.sides[0];
    side.s
        .handle_data(now, ConnId::Incoming, &upd[..n], &mut side.sink);
    p.pump();
    assert!(p.sides[1]
        .received
        .contains(&ErrorCode::Fsm(FsmSubcode::UnexpectedMessageInOpenSent)));
}

#[test]
fn max_prefix_ceases_and_waits_before_restarting() {
    let mut a = cfg(65001, 1, 65002);
    a.max_prefixes = Some(2);
    a.max_prefix_restart = Duration::from_secs(30);
    a.passive = true;
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.start();
    let prefixes: Vec<Prefix> = (1..=3)
        .map(|i| Prefix::v4(192, 168, i, 0, 24).unwrap())
        .collect();
    p.announce(1, &prefixes);
    assert!(p.sides[1].received.contains(&ErrorCode::Cease(
        CeaseSubcode::MaximumNumberOfPrefixesReached
    )));
    assert!(!p.sides[0].s.is_established());
    // Side 1 retries quickly, but side 0 refuses until the restart delay ends.
    p.run_for(Duration::from_secs(25));
    assert!(!p.sides[0].s.is_established());
    p.run_for(Duration::from_secs(10));
    assert!(p.sides[0].s.is_established());
}

#[test]
fn stop_sends_an_administrative_shutdown() {
    let mut p = established_pair();
    let now = p.now;
    p.sides[0].s.stop(now, "maintenance");
    p.pump();
    assert!(p.sides[1]
        .received
        .contains(&ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown)));
    assert_eq!(
        p.sides[0].events.last(),
        Some(&SessionEvent::Down(DownReason::Stopped))
    );
    assert_eq!(p.sides[0].s.state(), State::Idle);
    // The peer keeps trying; we stay down until started again.
    p.run_for(Duration::from_secs(30));
    assert!(!p.sides[0].s.is_established());
    let now = p.now;
    p.sides[0].s.start(now);
    p.run_for(Duration::from_secs(5));
    assert!(p.sides[0].s.is_established());
}

#[test]
fn a_session_lost_without_notification_restarts_with_backoff() {
    let mut p = established_pair();
    let now = p.now;
    // Cut the transport under both sides.
    let link = p.links.pop().unwrap();
    p.sides[0].s.handle_transport_closed(now, link.a);
    p.sides[1].s.handle_transport_closed(now, link.b);
    p.pump();
    assert_eq!(
        p.sides[0].events.last(),
        Some(&SessionEvent::Down(DownReason::ConnectionLost))
    );
    p.run_for(Duration::from_secs(5));
    assert!(p.sides[0].s.is_established(), "did not come back");
    assert_eq!(p.sides[0].s.stats().flaps, 1);
}

#[test]
fn an_unreachable_peer_is_retried_every_connect_retry() {
    let mut a = cfg(65001, 1, 65002);
    a.connect_retry = Duration::from_secs(2);
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.listening = [true, false];
    p.sides[0].s.start(p.now);
    p.pump();
    assert_eq!(p.sides[0].s.state(), State::Active);
    p.run_for(Duration::from_secs(7));
    assert_eq!(p.sides[0].s.state(), State::Active);
    p.listening = [true, true];
    p.sides[1].s.start(p.now);
    p.run_for(Duration::from_secs(3));
    assert!(p.sides[0].s.is_established());
}

#[test]
fn route_refresh_request_becomes_an_event() {
    let mut p = established_pair();
    p.sides[1].s.send_route_refresh(Family::Ipv6).unwrap();
    p.pump();
    assert_eq!(
        p.sides[0].events.last(),
        Some(&SessionEvent::RouteRefresh(Family::Ipv6))
    );
}

#[test]
fn a_full_transmit_buffer_is_reported_not_overrun() {
    let mut p = established_pair();
    let attrs = PathAttributes {
        as_path: AsPath::from_sequence(&[65001]).unwrap(),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..Default::default()
    };
    let many: Vec<Prefix> = (0..800u32)
        .map(|i| Prefix::v4(10, (i >> 8) as u8, i as u8, 0, 24).unwrap())
        .collect();
    let mut refused = false;
    for _ in 0..10 {
        match p.sides[0].s.send_update(&UpdateRepr {
            withdrawn: &[],
            attrs: Some(&attrs),
            announced: &many,
            four_octet_as: true,
        }) {
            Ok(()) => {}
            Err(SendError::BufferFull) => refused = true,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refused);
    assert!(p.sides[0].s.queued_tx(p.links[0].a) <= TX_BUF);
}

#[test]
fn a_burst_of_refreshes_and_end_of_ribs_cannot_crowd_out_down() {
    // Regression: the event queue holds 8. A peer that put 9 ROUTE-REFRESHes
    // (or End-of-RIBs) and then garbage in one read made the session go down
    // with its Down event dropped, so the RIB would have kept the routes.
    let mut p = established_pair();
    let mut bytes = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        for _ in 0..9 {
            let rr = RouteRefresh {
                afi: family.afi(),
                subtype: 0,
                safi: SAFI_UNICAST,
            };
            let mut b = [0u8; RouteRefresh::LEN];
            let n = rr.emit(&mut b).unwrap();
            bytes.extend_from_slice(&b[..n]);
            let mut b = [0u8; 32];
            let n = emit_end_of_rib(family, &mut b).unwrap();
            bytes.extend_from_slice(&b[..n]);
        }
    }
    bytes.extend_from_slice(&[0x00; 19]);
    let (i, conn) = (0, p.links[0].a);
    let now = p.now;
    let side = &mut p.sides[i];
    side.s.handle_data(now, conn, &bytes, &mut side.sink);
    p.pump();
    assert!(!p.sides[0].s.is_established());
    // Repeats still queued are coalesced; the Down comes last.
    assert_eq!(
        p.sides[0].events[1..],
        [
            SessionEvent::RouteRefresh(Family::Ipv4),
            SessionEvent::EndOfRib(Family::Ipv4),
            SessionEvent::RouteRefresh(Family::Ipv6),
            SessionEvent::EndOfRib(Family::Ipv6),
            SessionEvent::Down(DownReason::SentNotification(ErrorCode::MessageHeader(
                HeaderSubcode::ConnectionNotSynchronized
            ))),
        ]
    );
}

#[test]
fn a_refresh_after_it_was_drained_is_reported_again() {
    let mut p = established_pair();
    for _ in 0..2 {
        p.sides[1].s.send_route_refresh(Family::Ipv4).unwrap();
        p.pump();
    }
    assert_eq!(
        p.sides[0].events[1..],
        [
            SessionEvent::RouteRefresh(Family::Ipv4),
            SessionEvent::RouteRefresh(Family::Ipv4)
        ]
    );
}

#[test]
fn connect_now_replaces_a_stalled_attempt_as_soon_as_it_is_closed() {
    let mut a = cfg(65001, 1, 65002);
    a.connect_retry = Duration::from_secs(30);
    let mut b = cfg(65002, 2, 65001);
    b.passive = true;
    let mut p = Pair::new(a, b);
    p.stall_connects = true;
    p.sides[0].s.start(p.now);
    // The connect attempt goes nowhere and would only be retried after 30 s.
    p.pump();
    assert_eq!(p.sides[0].s.state(), State::Connect);
    p.stall_connects = false;
    p.sides[1].s.start(p.now);
    let now = p.now;
    p.sides[0].s.connect_now(now);
    p.pump();
    assert!(p.sides[0].s.is_established(), "did not dial again at once");
}

/// The passive side holds a connection from the peer that the peer has lost
/// (its RST went missing): our OPEN went out, theirs never comes. The peer
/// dials again.
fn peer_lost_a_connection_we_hold(replace: bool) -> Pair {
    let mut a = cfg(65001, 1, 65002);
    a.passive = true;
    let mut p = Pair::new(a, cfg(65002, 2, 65001));
    p.replace = replace;
    let now = p.now;
    p.sides[0].s.start(now);
    assert!(p.sides[0].s.handle_accepted(now));
    assert!(!take_tx(&mut p.sides[0].s, ConnId::Incoming).is_empty());
    assert_eq!(p.sides[0].s.state(), State::OpenSent);
    p.sides[1].s.start(now);
    p.pump();
    p
}

#[test]
fn a_peer_that_dials_again_replaces_its_connection_still_opening() {
    let mut p = peer_lost_a_connection_we_hold(true);
    assert!(p.sides[0].s.is_established());
    assert!(p.sides[1].s.is_established());
    assert_eq!(p.sides[0].s.stats().replaced_connections, 1);
    assert_eq!(p.sides[0].events, [SessionEvent::Established]);
    // An Established session is never replaced (RFC 4271 6.8).
    assert!(!p.sides[0].s.replace_incoming());
    p.run_for(Duration::from_secs(30));
    assert_eq!(p.sides[0].s.stats().flaps, 0);
    // Kept, the dead connection turns the peer away for its OPEN hold time.
    let mut p = peer_lost_a_connection_we_hold(false);
    p.run_for(Duration::from_secs(30));
    assert_eq!(p.sides[0].s.state(), State::OpenSent);
    assert!(!p.sides[1].s.is_established());
}
