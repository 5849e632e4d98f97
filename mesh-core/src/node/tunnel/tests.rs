//! Two members' WireGuard peers back to back, real boringtun: handshakes
//! answered where the member is, what each datagram tells the node, and the
//! upkeep's schedule.

use super::*;
use crate::node::tests::fixtures::{crypto, member, underlay};
use crate::wg::{Crypto, MemberConfig, MAX_DATAGRAM};

extern crate std;
use std::vec::Vec;

const T0: Instant = Instant::from_secs(100);

/// Router `own`'s peer for member `n` (receiver-index tag `n`).
fn peer(own: u8, n: u8, endpoint: bool) -> Member<crate::wg::boring::BoringTunnel> {
    let mut m: MemberConfig = member(n);
    if !endpoint {
        m.endpoints.clear();
    }
    let tunnel = crypto(own).tunnel(&m.public_key, n as u32, m.keepalive);
    Member::new(m, tunnel, n as u32)
}

/// A UDP packet of `len` bytes (boringtun checks what it decrypts is IP).
fn packet(len: usize) -> Vec<u8> {
    let mut out = [0u8; 1500];
    let src = core::net::Ipv4Addr::new(192, 168, 1, 10);
    let dst = core::net::Ipv4Addr::new(192, 168, 2, 10);
    let n = crate::ip::build_udp4(src, dst, 9, 9, 64, &[7; 1500][..len - 28], &mut out);
    out[..n.unwrap()].to_vec()
}

fn sent(tx: &mut TxRing) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some((b, m)) = tx.pop() {
        v.push((m.to, b[..m.len as usize].to_vec()));
    }
    v
}

/// Router 1 (leads, knows router 2's endpoint) and router 2 (does not know
/// router 1's): router 1's upkeep initiates, router 2 answers.
struct Two {
    a: Member<crate::wg::boring::BoringTunnel>,
    b: Member<crate::wg::boring::BoringTunnel>,
    ua: Upkeep,
    ub: Upkeep,
    tx: TxRing,
    stats: NodeStats,
    buf: [u8; MAX_DATAGRAM],
}

impl Two {
    fn new() -> Two {
        Two {
            a: peer(1, 2, true),
            b: peer(2, 1, false),
            ua: Upkeep::new(T0),
            ub: Upkeep::new(T0),
            tx: TxRing::new(),
            stats: NodeStats::default(),
            buf: [0; MAX_DATAGRAM],
        }
    }

    /// Router 2 takes `datagram` from router 1.
    fn b_takes(&mut self, now: Instant, datagram: &[u8]) -> Received {
        let from = underlay(1);
        self.ub
            .receive(now, &mut self.b, from, datagram, &mut self.buf)
    }

    /// Router 1 takes `datagram` from router 2.
    fn a_takes(&mut self, now: Instant, datagram: &[u8]) -> Received {
        let from = underlay(2);
        self.ua
            .receive(now, &mut self.a, from, datagram, &mut self.buf)
    }

    /// The handshake, as the upkeep starts it: returns router 1's view of
    /// the response.
    fn handshake(&mut self, now: Instant) -> Received {
        self.ua
            .tick(now, &mut self.a, true, &mut self.tx, &mut self.stats);
        let init = sent(&mut self.tx).pop().expect("an initiation").1;
        let r = self.b_takes(now, &init);
        let (to, len) = r.answer.expect("an answer");
        assert_eq!(to, underlay(1));
        let response = self.buf[..len].to_vec();
        self.a_takes(now, &response)
    }
}

#[test]
fn an_idle_tunnel_we_lead_is_brought_up_at_once_and_answered_where_we_are() {
    let mut t = Two::new();
    t.ua.tick(T0, &mut t.a, true, &mut t.tx, &mut t.stats);
    let out = sent(&mut t.tx);
    assert_eq!(out.len(), 1);
    let (to, init) = &out[0];
    assert_eq!((*to, init.len(), init[0]), (underlay(2), 148, 1));
    // Router 2 did not know where router 1 is: now it does, and answers there.
    let r = t.b_takes(T0, init);
    assert!(r.authenticated && r.endpoint_changed && r.tunnel_up && r.flush);
    assert!(!r.new_session, "a first session replaces nothing");
    assert_eq!(r.answer.map(|(to, _)| to), Some(underlay(1)));
    assert_eq!(t.b.endpoint, Some(underlay(1)));
}

#[test]
fn the_side_that_does_not_lead_waits_out_its_grace() {
    let mut t = Two::new();
    let tick = |at: Instant, t: &mut Two| {
        t.ua.tick(at, &mut t.a, false, &mut t.tx, &mut t.stats);
        sent(&mut t.tx).len()
    };
    assert_eq!(tick(T0, &mut t), 0);
    assert_eq!(tick(T0 + Duration::from_millis(299), &mut t), 0);
    assert_eq!(tick(T0 + Duration::from_millis(300), &mut t), 1);
    // Unanswered: the next try waits WireGuard's REKEY_TIMEOUT.
    assert_eq!(tick(T0 + Duration::from_millis(600), &mut t), 0);
}

#[test]
fn a_forged_datagram_is_counted_and_not_followed() {
    let mut t = Two::new();
    t.handshake(T0);
    let before = t.b.stats.rx_errors;
    let mut forged = [0u8; 64];
    forged[0] = 4;
    let r = t.b_takes(T0, &forged);
    assert!(!r.authenticated && r.inner.is_none() && r.answer.is_none());
    assert_eq!(t.b.stats.rx_errors, before + 1);
    assert_eq!(t.b.endpoint, Some(underlay(1)), "not followed");
}

#[test]
fn a_packet_crosses_the_tunnel_into_the_buffer_once_both_sides_have_a_session() {
    let mut t = Two::new();
    let r = t.handshake(T0);
    assert!(r.authenticated && r.flush && !r.new_session);
    let packet = packet(100);
    send(&mut t.a, &packet, &mut t.tx, &mut t.stats);
    let (to, datagram) = sent(&mut t.tx).pop().unwrap();
    assert_eq!(to, underlay(2));
    let r = t.b_takes(T0, &datagram);
    assert_eq!(r.inner, Some(packet.len()));
    assert_eq!(&t.buf[..packet.len()], &packet);
    // The first data packet of a session router 2 answered releases what it
    // queued meanwhile; later ones do not ask boringtun again.
    assert!(r.flush);
    send(&mut t.a, &packet, &mut t.tx, &mut t.stats);
    let (_, datagram) = sent(&mut t.tx).pop().unwrap();
    assert!(!t.b_takes(T0, &datagram).flush);
}

#[test]
fn a_rekey_we_answer_is_a_new_session_with_its_first_data_packet() {
    let mut t = Two::new();
    t.handshake(T0);
    let packet = packet(60);
    send(&mut t.a, &packet, &mut t.tx, &mut t.stats);
    let (_, first) = sent(&mut t.tx).pop().unwrap();
    t.b_takes(T0, &first);
    // Router 1 starts over (say it restarted its tunnel): a new initiation.
    let n = initiate_to(T0, &mut t.a, &[underlay(2)], &mut t.tx, &mut t.stats);
    assert_eq!(n, 1);
    let (_, init) = sent(&mut t.tx).pop().unwrap();
    let r = t.b_takes(T0, &init);
    assert!(!r.new_session, "not usable before the first data packet");
    let (_, len) = r.answer.unwrap();
    let response = t.buf[..len].to_vec();
    let r = t.a_takes(T0, &response);
    assert!(
        r.new_session,
        "router 1 replaced its session and got the answer"
    );
    send(&mut t.a, &packet, &mut t.tx, &mut t.stats);
    let (_, data) = sent(&mut t.tx).pop().unwrap();
    assert!(t.b_takes(T0, &data).new_session, "the first data packet");
    send(&mut t.a, &packet, &mut t.tx, &mut t.stats);
    let (_, data) = sent(&mut t.tx).pop().unwrap();
    assert!(!t.b_takes(T0, &data).new_session, "and only the first");
}

#[test]
fn latency_is_adopted_once_and_not_again_for_the_same_measure() {
    let mut t = Two::new();
    assert_eq!(t.ua.adopt_latency(&t.a), None, "nothing measured yet");
    t.handshake(T0);
    assert!(
        t.ua.adopt_latency(&t.a).is_some(),
        "the handshake measured it"
    );
    assert_eq!(t.ua.adopt_latency(&t.a), None, "within the hysteresis");
}

#[test]
fn a_lower_latency_is_taken_at_once_a_higher_one_once_its_series_is_over() {
    let ms = |n: u32| n * 1000;
    // A first handshake slowed by a busy peer (3 ms on a 0 ms path) must
    // not stand against an equal path: the re-measurement's 0 ms is taken,
    // though within the hysteresis.
    assert!(adopts(Some(ms(3)), ms(0), true));
    assert!(adopts(Some(ms(3)), ms(2), false));
    assert!(!adopts(Some(ms(3)), ms(3), false));
    // A rekey's slow first sample waits for the series' re-measurements.
    assert!(!adopts(Some(ms(1)), ms(13), true));
    assert!(adopts(Some(ms(1)), ms(13), false));
    // Jitter on top of the path's latency never moves it.
    assert!(!adopts(Some(ms(20)), ms(24), false));
    assert!(adopts(Some(ms(20)), ms(26), false));
    // Something is better than nothing.
    assert!(adopts(None, ms(13), true));
}

#[test]
fn a_packet_with_no_endpoint_to_go_to_is_counted() {
    let mut b = peer(2, 1, false);
    let mut tx = TxRing::new();
    let mut stats = NodeStats::default();
    send(&mut b, &packet(40), &mut tx, &mut stats);
    // boringtun answers with a handshake initiation, which has nowhere to go.
    assert_eq!(stats.no_endpoint, 1);
    assert_eq!(tx.pop().map(|(_, m)| m.len), None);
}
