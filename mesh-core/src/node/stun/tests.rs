use super::*;

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

use crate::nat::Filtering;
use crate::stun::{ChangeRequest, Class, Message, TransactionId};
use crate::wg::boring::BoringTunnel;

use crate::node::tests::fixtures::{big_stack, member, slots, underlay};

const T0: Instant = Instant::from_secs(100);
const TICK: Duration = Duration::from_ticks(1);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Where the members see us.
fn mapped() -> SocketAddr {
    addr("203.0.113.7:40000")
}

/// Member 2's second port.
fn second_port() -> SocketAddr {
    addr("198.51.100.2:51821")
}

/// Node 1's STUN side, with its member table.
struct Client {
    stun: Stun,
    slots: Box<Slots<'static, BoringTunnel>>,
    ids: Ids,
    stats: NodeStats,
}

impl Client {
    /// With member 2 (at 198.51.100.2:51820) in slot 0.
    fn new() -> Client {
        Client::with(&[member(2)])
    }

    fn with(members: &[crate::wg::MemberConfig]) -> Client {
        Client {
            stun: Stun::new(false),
            slots: slots(T0, 1, members),
            ids: Ids::new(7),
            stats: NodeStats::default(),
        }
    }

    fn timeout(&mut self, now: Instant) {
        self.stun
            .handle_timeout(now, &mut self.slots, &mut self.ids, &mut self.stats);
    }

    /// The member due a request or test first, as the node sees it.
    fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.slots
            .iter()
            .filter(|(_, s)| s.wg.endpoint.is_some())
            .map(|(i, s)| (s.stun.poll_timeout(), Timer::Probe(i as u8)))
            .min_by_key(|(t, _)| *t)
    }

    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout().map(|(t, _)| t)
    }

    fn deliver(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stun
            .handle_datagram(now, from, bytes, &mut self.slots, &mut self.stats);
    }

    fn sent(&mut self) -> Vec<Datagram> {
        core::iter::from_fn(|| self.stun.poll_transmit()).collect()
    }

    /// Runs the timer that is due and returns the one request it sent.
    fn request_due(&mut self) -> (Instant, Datagram) {
        let at = self.deadline().expect("no deadline");
        self.timeout(at);
        let mut sent = self.sent();
        assert_eq!(sent.len(), 1, "one request at {at:?}");
        (at, sent.remove(0))
    }
}

/// What a request asks: its transaction id and CHANGE-REQUEST.
fn request_of(d: &Datagram) -> (TransactionId, Option<ChangeRequest>) {
    let m = Message::parse(&d.bytes).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Request, stun::BINDING));
    assert_eq!(m.fingerprint_ok(), Some(true));
    (m.transaction_id(), m.change_request().map(Result::unwrap))
}

const CHANGE_PORT: Option<ChangeRequest> = Some(ChangeRequest {
    ip: false,
    port: true,
});

/// The server's success answer to request `d`, seeing us at `mapped`.
fn answer(d: &Datagram, mapped: SocketAddr) -> Vec<u8> {
    let request = Message::parse(&d.bytes).unwrap();
    let mut out = [0u8; MAX_STUN];
    let n = stun::binding_success(&request, mapped, &mut out).unwrap();
    out[..n].to_vec()
}

/// A client's Binding request, with CHANGE-REQUEST if `change`.
fn binding_request(tid: u8, change: Option<ChangeRequest>) -> Vec<u8> {
    let mut out = [0u8; MAX_STUN];
    let n = stun::binding_request(TransactionId([tid; 12]), change, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn a_member_with_an_endpoint_is_asked_at_once() {
    big_stack(|| {
        let mut c = Client::new();
        assert_eq!(c.poll_timeout(), Some((T0, Timer::Probe(0))));
        let (at, d) = c.request_due();
        assert_eq!(at, T0);
        assert_eq!((d.to, d.from_alt_port), (underlay(2), false));
        assert_eq!(request_of(&d).1, None);
        assert_eq!(c.stats.stun_requests, 1);
    });
}

#[test]
fn a_member_without_an_endpoint_is_not_asked() {
    big_stack(|| {
        let mut unreachable = member(2);
        unreachable.endpoints.clear();
        let mut c = Client::with(&[unreachable]);
        assert_eq!(c.deadline(), None);
        c.timeout(T0 + Duration::from_secs(10));
        assert!(c.sent().is_empty());
    });
}

#[test]
fn unanswered_requests_repeat_after_2_4_8_16_and_32_seconds_then_every_32() {
    big_stack(|| {
        let mut c = Client::new();
        let (mut last, first) = c.request_due();
        let mut tids = std::vec![request_of(&first).0];
        let mut gaps = Vec::new();
        for _ in 0..7 {
            let at = c.deadline().unwrap();
            // Not a moment early.
            c.timeout(at - TICK);
            assert!(c.sent().is_empty());
            let (at, d) = c.request_due();
            let (tid, change) = request_of(&d);
            assert_eq!(change, None);
            assert!(!tids.contains(&tid), "a new transaction each time");
            tids.push(tid);
            gaps.push(at.saturating_duration_since(last).as_secs());
            last = at;
        }
        assert_eq!(gaps, [2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(STUN_RETRY, Duration::from_secs(1));
    });
}

#[test]
fn an_answer_resets_the_schedule_to_the_refresh_and_starts_the_filtering_test_at_once() {
    big_stack(|| {
        let mut c = Client::new();
        // Two unanswered, then the third is answered.
        let _ = c.request_due();
        let _ = c.request_due();
        let (asked_at, d) = c.request_due();
        assert_eq!(c.deadline(), Some(asked_at + Duration::from_secs(8)));
        let answered_at = asked_at + Duration::from_millis(300);
        c.deliver(answered_at, underlay(2), &answer(&d, mapped()));
        assert_eq!(c.stats.stun_unexpected, 0);
        assert_eq!(c.stun.report().observers, 1);
        // The port-change test goes out at once.
        let (at, test) = c.request_due();
        assert_eq!(at, answered_at);
        assert_eq!(test.to, underlay(2));
        assert_eq!(request_of(&test).1, CHANGE_PORT);
        // The server's second port gets through: no filtering. The test
        // is done; the next request is the refresh.
        c.deliver(
            answered_at + Duration::from_millis(20),
            second_port(),
            &answer(&test, mapped()),
        );
        assert_eq!(c.stun.report().filtering, Filtering::EndpointIndependent);
        assert_eq!(c.deadline(), Some(answered_at + STUN_REFRESH));
        let (_, refresh) = c.request_due();
        assert_eq!(request_of(&refresh).1, None);
    });
}

#[test]
fn three_unanswered_port_change_requests_mean_filtering_by_address_and_port() {
    big_stack(|| {
        let mut c = Client::new();
        let (t1, d) = c.request_due();
        c.deliver(t1, underlay(2), &answer(&d, mapped()));
        for i in 0..3u64 {
            let (at, test) = c.request_due();
            assert_eq!(at, t1 + STUN_RETRY * i as u32);
            assert_eq!(request_of(&test).1, CHANGE_PORT);
            assert_eq!(c.stun.report().filtering, Filtering::Unknown);
        }
        // The fourth step gives up and records the result.
        let at = c.deadline().unwrap();
        assert_eq!(at, t1 + STUN_RETRY * 3);
        c.timeout(at);
        assert!(c.sent().is_empty());
        assert_eq!(
            c.stun.report().filtering,
            Filtering::AddressAndPortDependent
        );
        assert_eq!(c.deadline(), Some(t1 + STUN_REFRESH));
    });
}

#[test]
fn an_answer_from_elsewhere_than_asked_is_unexpected_and_changes_nothing() {
    big_stack(|| {
        let mut c = Client::new();
        let (_, d) = c.request_due();
        let reply = answer(&d, mapped());
        let deadline = c.deadline();
        let now = T0 + Duration::from_millis(30);
        for from in [addr("198.51.100.99:51820"), second_port()] {
            c.deliver(now, from, &reply);
            assert!(c.sent().is_empty());
            assert_eq!(c.deadline(), deadline);
            assert_eq!(c.stun.report().observers, 0);
        }
        assert_eq!(c.stats.stun_unexpected, 2);
        // The transaction is still open: the server's own answer counts.
        c.deliver(now, underlay(2), &reply);
        assert_eq!(c.stats.stun_unexpected, 2);
        assert_eq!(c.stun.report().observers, 1);
        assert_eq!(c.deadline(), Some(now));
    });
}

#[test]
fn two_members_seeing_us_at_one_address_make_it_our_public_endpoint() {
    big_stack(|| {
        let mut c = Client::with(&[member(2), member(3)]);
        c.timeout(T0);
        let requests = c.sent();
        assert_eq!(
            requests.iter().map(|d| d.to).collect::<Vec<_>>(),
            [underlay(2), underlay(3)]
        );
        c.deliver(T0, underlay(2), &answer(&requests[0], mapped()));
        assert_eq!(c.stun.poll_event(), None);
        c.deliver(T0, underlay(3), &answer(&requests[1], mapped()));
        assert_eq!(
            c.stun.poll_event(),
            Some(Event::PublicEndpoint(Some(mapped())))
        );
        assert_eq!(c.stun.own_candidates().as_slice(), [mapped()]);
    });
}

/// A responder (no members needed) and what it sends back.
fn respond(
    stun: &mut Stun,
    stats: &mut NodeStats,
    now: Instant,
    from: SocketAddr,
    bytes: &[u8],
) -> Vec<Datagram> {
    let mut slots = Box::new(Slots::<BoringTunnel>::leak());
    stun.handle_datagram(now, from, bytes, &mut slots, stats);
    core::iter::from_fn(|| stun.poll_transmit()).collect()
}

#[test]
fn a_binding_request_is_answered_with_where_it_came_from() {
    big_stack(|| {
        let mut stun = Stun::new(false);
        let mut stats = NodeStats::default();
        let from = addr("203.0.113.9:5555");
        let out = respond(&mut stun, &mut stats, T0, from, &binding_request(1, None));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].to, out[0].from_alt_port), (from, false));
        let m = Message::parse(&out[0].bytes).unwrap();
        assert_eq!(m.class(), Class::SuccessResponse);
        assert_eq!(m.transaction_id(), TransactionId([1; 12]));
        assert_eq!(m.xor_mapped_address(), Some(Ok(from)));
        assert_eq!(stats.stun_answered, 1);
    });
}

#[test]
fn a_port_change_request_is_refused_with_420_without_a_second_port() {
    big_stack(|| {
        let mut stun = Stun::new(false);
        let mut stats = NodeStats::default();
        let from = addr("203.0.113.9:5555");
        let out = respond(
            &mut stun,
            &mut stats,
            T0,
            from,
            &binding_request(2, CHANGE_PORT),
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].to, out[0].from_alt_port), (from, false));
        let m = Message::parse(&out[0].bytes).unwrap();
        assert_eq!(m.class(), Class::ErrorResponse);
        assert_eq!(m.error_code().unwrap().unwrap().0, 420);
        let unknown: Vec<u16> = m.unknown_attributes().unwrap().unwrap().collect();
        assert_eq!(unknown, [stun::attr::CHANGE_REQUEST]);
        assert_eq!(m.xor_mapped_address(), None);
    });
}

#[test]
fn a_port_change_request_is_answered_from_the_second_port_when_there_is_one() {
    big_stack(|| {
        let mut stun = Stun::new(true);
        let mut stats = NodeStats::default();
        let from = addr("203.0.113.9:5555");
        let out = respond(
            &mut stun,
            &mut stats,
            T0,
            from,
            &binding_request(3, CHANGE_PORT),
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].to, out[0].from_alt_port), (from, true));
        let m = Message::parse(&out[0].bytes).unwrap();
        assert_eq!(m.class(), Class::SuccessResponse);
        assert_eq!(m.xor_mapped_address(), Some(Ok(from)));
        // An ordinary request still goes from the mesh port.
        let out = respond(&mut stun, &mut stats, T0, from, &binding_request(4, None));
        assert!(!out[0].from_alt_port);
    });
}

#[test]
fn at_most_200_answers_a_second_and_the_next_second_refills() {
    big_stack(|| {
        let mut stun = Stun::new(false);
        let mut stats = NodeStats::default();
        let from = addr("203.0.113.9:5555");
        let request = binding_request(5, None);
        let mut answered_in = |now: Instant, tries: u32| -> u32 {
            (0..tries)
                .map(|_| respond(&mut stun, &mut stats, now, from, &request).len() as u32)
                .sum()
        };
        assert_eq!(STUN_ANSWERS_PER_SECOND, 200);
        assert_eq!(answered_in(T0, 250), 200);
        // Still the same second.
        let late = T0 + Duration::from_secs(1) - TICK;
        assert_eq!(answered_in(late, 10), 0);
        // The next second refills.
        let next = T0 + Duration::from_secs(1);
        assert_eq!(answered_in(next, 250), 200);
        assert_eq!(stats.stun_answered, 400);
        assert_eq!(stats.stun_rate_limited, 110);
    });
}
