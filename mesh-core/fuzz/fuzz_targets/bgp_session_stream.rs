//! An Established session fed the input as the peer's TCP byte stream.
//!
//! Input layout: byte 0 is the chunk size minus one (each `handle_data` call
//! gets up to 1..=256 bytes); byte 1 picks the peer (bit 0: 4-octet AS,
//! bit 1: iBGP, bit 2: max-prefix limit of 4); the rest is the stream. After
//! every chunk the outputs are drained as a driver would. Checked: no panic,
//! outputs drain, everything the session sends is well-formed BGP, and a
//! session that went down said so with a Down event.
#![no_main]

use core::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use mesh_core::bgp::message::Message;
use mesh_core::bgp::open::{Capability, OpenRepr};
use mesh_core::bgp::session::{
    ConnId, RibFull, Session, SessionBuffers, SessionConfig, SessionEvent, UpdateSink,
    SESSION_BUFFERS,
};
use mesh_core::bgp::update::Update;
use mesh_core::bgp::wire::{emit_keepalive, frame};
use mesh_core::{Duration, Instant};

#[derive(Default)]
struct CountingSink {
    announced: usize,
    withdrawn: usize,
}

impl UpdateSink for CountingSink {
    fn apply_update(&mut self, update: &Update<'_>) -> Result<usize, RibFull> {
        let announced = update.announced().count();
        if update.treat_as_withdraw.is_some() {
            assert_eq!(announced, 0);
        }
        self.announced += announced;
        self.withdrawn += update.withdrawn().count();
        Ok(self.announced.saturating_sub(self.withdrawn))
    }
}

const LOCAL_ASN: u32 = 65001;

fn established<'b>(
    setup: u8,
    now: Instant,
    sink: &mut CountingSink,
    buffers: &'b mut [u8],
) -> Session<'b> {
    let four_octet_as = setup & 1 != 0;
    let ibgp = setup & 2 != 0;
    let peer_asn = match (ibgp, four_octet_as) {
        (true, _) => LOCAL_ASN,
        (false, true) => 4_200_000_002,
        (false, false) => 65002,
    };
    let mut cfg = SessionConfig::new(LOCAL_ASN, Ipv4Addr::new(10, 0, 0, 1), peer_asn);
    cfg.passive = true;
    cfg.hold_time = 9;
    cfg.max_prefixes = (setup & 4 != 0).then_some(4);
    let mut s = Session::new(cfg, SessionBuffers::new(buffers));
    s.start(now);
    assert!(s.handle_accepted(now));
    take_all(&mut s, ConnId::Incoming);

    let caps = [
        Capability::Multiprotocol { afi: 1, safi: 1 },
        Capability::Multiprotocol { afi: 2, safi: 1 },
        Capability::RouteRefresh,
        Capability::FourOctetAs(peer_asn),
    ];
    let caps = if four_octet_as { &caps[..] } else { &caps[..3] };
    let open = OpenRepr {
        asn: peer_asn,
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: caps,
    };
    let mut b = [0u8; 128];
    let n = open.emit(&mut b).unwrap();
    let k = emit_keepalive(&mut b[n..]).unwrap();
    s.handle_data(now, ConnId::Incoming, &b[..n + k], sink);
    assert_eq!(s.poll_event(), Some(SessionEvent::Established));
    assert!(s.is_established());
    take_all(&mut s, ConnId::Incoming);
    s
}

/// Everything queued on `conn`, as a driver whose transport takes it all.
fn take_all(s: &mut Session<'_>, conn: ConnId) -> Vec<u8> {
    let mut buf = vec![0u8; mesh_core::bgp::session::TX_BUF];
    let n = s.poll_transmit(conn, &mut buf);
    buf.truncate(n);
    buf
}

fn take_tx(s: &mut Session, conn: ConnId) -> bool {
    let tx = take_all(s, conn);
    let mut rest = &tx[..];
    while !rest.is_empty() {
        let n = frame(rest)
            .expect("sent a bad header")
            .expect("sent a partial message");
        let msg = Message::parse(&rest[..n]).expect("sent an invalid message");
        assert!(matches!(msg, Message::Keepalive | Message::Notification(_)));
        rest = &rest[n..];
    }
    !tx.is_empty()
}

fn drain(s: &mut Session, now: Instant, downs: &mut usize, last: &mut Option<SessionEvent>) {
    for _ in 0..64 {
        let mut busy = false;
        for conn in [ConnId::Outgoing, ConnId::Incoming] {
            busy |= take_tx(s, conn);
        }
        while let Some(e) = s.poll_event() {
            busy = true;
            let e = match e {
                SessionEvent::Connect => panic!("a passive session connected"),
                SessionEvent::Close(conn) => {
                    take_tx(s, conn);
                    s.handle_transport_closed(now, conn);
                    continue;
                }
                e => e,
            };
            assert_ne!(e, SessionEvent::Established, "re-established by itself");
            if matches!(e, SessionEvent::Down(_)) {
                *downs += 1;
            }
            *last = Some(e);
        }
        if !busy {
            return;
        }
    }
    panic!("outputs did not drain");
}

fuzz_target!(|data: &[u8]| {
    let [chunk, setup, stream @ ..] = data else {
        return;
    };
    let chunk = *chunk as usize + 1;
    let mut now = Instant::from_secs(1000);
    let mut sink = CountingSink::default();
    let mut buffers = vec![0u8; SESSION_BUFFERS];
    let mut s = established(*setup, now, &mut sink, &mut buffers);
    let (mut downs, mut last) = (0, None);
    for piece in stream.chunks(chunk) {
        s.handle_data(now, ConnId::Incoming, piece, &mut sink);
        drain(&mut s, now, &mut downs, &mut last);
        now += Duration::from_millis(10);
    }
    if !s.is_established() {
        assert!(s.last_down().is_some());
        assert!(
            matches!(last, Some(SessionEvent::Down(_))),
            "down without Down"
        );
        assert_eq!(downs, 1);
    }
    // The peer goes silent: timers run, the hold timer ends the session.
    for _ in 0..32 {
        let Some(t) = s.poll_timeout() else { break };
        now = now.max(t);
        s.handle_timeout(now);
        drain(&mut s, now, &mut downs, &mut last);
    }
    assert!(!s.is_established());
    assert_eq!(downs, 1);
});
