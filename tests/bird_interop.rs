//! Interop: a real BIRD 2 accepts mesh-core's BGP speaker as a peer.
//!
//! Two network namespaces joined by a veth pair. BIRD (Debian `bird2`) runs in
//! one with its own config and control socket in a temp dir; in the other, a
//! thread drives `mesh_core::bgp::session::Session` and a `Rib` over a kernel
//! TCP socket. The test checks, against BIRD's own view (`birdc`):
//! Established; our prefixes in `birdc show route`; BIRD's prefixes in our
//! Loc-RIB with the right AS path and next hop; withdrawals both ways; our hold
//! timer firing when BIRD is frozen with SIGSTOP; BIRD seeing a proper
//! NOTIFICATION (Cease, Administrative Shutdown with a message) when we stop.
//!
//! Needs root, `bird2`. Run with `--nocapture` to see the narrative.

mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use lab::{require_cmd, require_root, veth, wait_for, Bird, Netns, TempDir};
use mesh_core::bgp::error::DownReason;
use mesh_core::bgp::notification::ErrorCode;
use mesh_core::bgp::session::{
    ConnId, Session, SessionBuffers, SessionConfig, SessionEvent, State, SESSION_BUFFERS,
};
use mesh_core::bgp::speaker::{export, AcceptAll, ExportPolicy, ImportStats, RibImport};
use mesh_core::bgp::PathAttributes;
use mesh_core::rib::{PeerInfo, Rib, Source};
use mesh_core::{Duration, Family, Instant, Prefix};

const OUR_ASN: u32 = 65001;
const BIRD_ASN: u32 = 65002;
const HOLD: u16 = 3;

fn bird_conf() -> String {
    format!(
        r#"
router id 10.255.0.2;
protocol device {{ scan time 1; }}
ipv4 table master4;
ipv6 table master6;
protocol static static4 {{
  ipv4;
  route 192.168.2.0/24 blackhole;
  route 10.2.0.0/16 blackhole;
}}
protocol static static6 {{
  ipv6;
  route fd00:2::/48 blackhole;
}}
protocol bgp mesh {{
  local 10.255.0.2 as {BIRD_ASN};
  neighbor 10.255.0.1 as {OUR_ASN};
  hold time {HOLD};
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 4;
  ipv4 {{ import all; export all; }};
  ipv6 {{ import all; export all; next hop address fd00:255::2; }};
}}
"#
    )
}

/// What the speaker thread shows the test.
#[derive(Default)]
struct Shared {
    state: Option<State>,
    events: Vec<(StdDuration, SessionEvent)>,
    /// Loc-RIB: prefix, AS path, next hop, source.
    routes: Vec<(Prefix, String, Option<IpAddr>, Source)>,
    commands: Vec<Command>,
    quit: bool,
}

enum Command {
    Originate(Prefix),
    Withdraw(Prefix),
    Stop(&'static str),
}

fn speaker(shared: Arc<Mutex<Shared>>) {
    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as u64);
    let peer_addr: SocketAddr = "10.255.0.2:179".parse().unwrap();
    let listener = TcpListener::bind("10.255.0.1:179").expect("bind 179");
    listener.set_nonblocking(true).unwrap();

    let mut config = SessionConfig::new(OUR_ASN, Ipv4Addr::new(10, 255, 0, 1), BIRD_ASN);
    config.hold_time = HOLD;
    config.connect_retry = Duration::from_secs(1);
    config.idle_hold = Duration::from_millis(200);
    config.max_idle_hold = Duration::from_secs(2);
    let mut buffers = vec![0u8; SESSION_BUFFERS];
    let mut session = Session::new(config, SessionBuffers::new(&mut buffers));
    let mut rib = Box::new(Rib::<512, 1024>::new(OUR_ASN, 1));
    rib.set_peer(
        0,
        PeerInfo {
            asn: BIRD_ASN,
            router_id: Ipv4Addr::new(10, 255, 0, 2),
            address: IpAddr::V4(Ipv4Addr::new(10, 255, 0, 2)),
            ebgp: true,
            latency: None,
        },
    );
    let policy = ExportPolicy {
        local_asn: OUR_ASN,
        next_hop_v4: Some(Ipv4Addr::new(10, 255, 0, 1)),
        next_hop_v6: Some("fd00:255::1".parse().unwrap()),
    };
    let mut import_stats = ImportStats::default();
    let mut conns: [Option<TcpStream>; 2] = [None, None];
    // What the session handed over that the socket did not take yet.
    let mut outbox: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut eor_sent = false;
    session.start(now());

    loop {
        let t = now();
        {
            let mut sh = shared.lock().unwrap();
            if sh.quit {
                return;
            }
            for cmd in sh.commands.drain(..) {
                match cmd {
                    Command::Originate(p) => {
                        rib.update(Source::Local, p, &PathAttributes::default())
                            .unwrap();
                    }
                    Command::Withdraw(p) => {
                        rib.withdraw(Source::Local, p);
                    }
                    Command::Stop(msg) => session.stop(t, msg),
                }
            }
        }
        if let Ok((s, _)) = listener.accept() {
            if session.handle_accepted(t) {
                s.set_nonblocking(true).unwrap();
                conns[1] = Some(s);
                outbox[1].clear();
            }
        }
        let mut buf = [0u8; 8192];
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(stream) = conns[id as usize].as_mut() else {
                continue;
            };
            match stream.read(&mut buf) {
                Ok(0) => {
                    conns[id as usize] = None;
                    outbox[id as usize].clear();
                    session.handle_transport_closed(t, id);
                }
                Ok(n) => {
                    let mut sink = RibImport {
                        rib: &mut *rib,
                        peer: 0,
                        filter: AcceptAll,
                        stats: &mut import_stats,
                    };
                    session.handle_data(t, id, &buf[..n], &mut sink);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    conns[id as usize] = None;
                    outbox[id as usize].clear();
                    session.handle_transport_closed(t, id);
                }
            }
        }
        if session.poll_timeout().is_some_and(|d| d <= t) {
            session.handle_timeout(t);
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::Connect => {
                    match TcpStream::connect_timeout(&peer_addr, StdDuration::from_millis(300)) {
                        Ok(s) => {
                            s.set_nonblocking(true).unwrap();
                            conns[0] = Some(s);
                            outbox[0].clear();
                            session.handle_connected(t);
                        }
                        Err(_) => session.handle_transport_closed(t, ConnId::Outgoing),
                    }
                    continue;
                }
                SessionEvent::Close(id) => {
                    take_queued(&mut session, id, &mut outbox[id as usize]);
                    if let Some(mut s) = conns[id as usize].take() {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(&outbox[id as usize]);
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    outbox[id as usize].clear();
                    session.handle_transport_closed(t, id);
                    continue;
                }
                SessionEvent::Established => {
                    rib.peer_up(0);
                    eor_sent = false;
                }
                SessionEvent::Down(_) => {
                    rib.peer_down(0);
                }
                SessionEvent::RouteRefresh(_) => rib.refresh(0),
                SessionEvent::EndOfRib(_) => {}
            }
            shared.lock().unwrap().events.push((clock.elapsed(), ev));
        }
        if session.is_established() {
            let progress = export(&mut session, &mut rib, 0, &policy);
            if progress.done && !eor_sent {
                let _ = session.send_end_of_rib(Family::Ipv4);
                let _ = session.send_end_of_rib(Family::Ipv6);
                eor_sent = true;
            }
        }
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(stream) = conns[id as usize].as_mut() else {
                continue;
            };
            let pending = &mut outbox[id as usize];
            take_queued(&mut session, id, pending);
            if pending.is_empty() {
                continue;
            }
            match stream.write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    conns[id as usize] = None;
                    outbox[id as usize].clear();
                    session.handle_transport_closed(t, id);
                }
            }
        }
        {
            let mut sh = shared.lock().unwrap();
            sh.state = Some(session.state());
            sh.routes = rib
                .loc_rib()
                .filter_map(|e| {
                    let best = e.best()?;
                    let a = rib.attrs(best.attrs)?;
                    Some((
                        e.prefix,
                        a.as_path.to_string(),
                        a.next_hop_for(e.prefix.family()),
                        best.source,
                    ))
                })
                .collect();
        }
        std::thread::sleep(StdDuration::from_millis(2));
    }
}

/// Moves what the session queued on `id` to the end of `outbox`.
fn take_queued(session: &mut Session, id: ConnId, outbox: &mut Vec<u8>) {
    let mut buf = [0u8; mesh_core::bgp::session::TX_BUF];
    let n = session.poll_transmit(id, &mut buf);
    outbox.extend_from_slice(&buf[..n]);
}

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

struct Harness {
    shared: Arc<Mutex<Shared>>,
    bird: Bird,
    start: std::time::Instant,
}

impl Harness {
    fn send(&self, c: Command) {
        self.shared.lock().unwrap().commands.push(c);
    }
    fn state(&self) -> Option<State> {
        self.shared.lock().unwrap().state
    }
    fn route(&self, p: &str) -> Option<(String, Option<IpAddr>)> {
        let p = pfx(p);
        let sh = self.shared.lock().unwrap();
        sh.routes
            .iter()
            .find(|r| r.0 == p && r.3 != Source::Local)
            .map(|r| (r.1.clone(), r.2))
    }
    fn bird_protocol(&self) -> String {
        self.bird.birdc(&["show", "protocols", "all", "mesh"])
    }
    fn bird_route(&self, p: &str) -> String {
        self.bird.birdc_any(&["show", "route", "for", p, "all"])
    }
    fn events(&self) -> Vec<(StdDuration, SessionEvent)> {
        self.shared.lock().unwrap().events.clone()
    }
    fn say(&self, what: &str) {
        println!("[{:6.2}s] {what}", self.start.elapsed().as_secs_f64());
    }
}

const WAIT: StdDuration = StdDuration::from_secs(15);
const POLL: StdDuration = StdDuration::from_millis(50);

#[test]
fn bird_accepts_mesh_core_as_a_bgp_peer() {
    require_root();
    require_cmd("bird", "bird2");
    require_cmd("birdc", "bird2");
    let tag = lab::lab_prefix("mdb");
    let ours = Netns::new(&format!("{tag}a"));
    let theirs = Netns::new(&format!("{tag}b"));
    veth(
        &ours,
        "eth0",
        "10.255.0.1/30,fd00:255::1/64",
        &theirs,
        "eth0",
        "10.255.0.2/30,fd00:255::2/64",
    );
    let dir = TempDir::new("meshd-bird-interop");
    let bird = Bird::start(&theirs, dir.path(), &bird_conf());
    let shared = Arc::new(Mutex::new(Shared::default()));
    shared.lock().unwrap().commands.extend([
        Command::Originate(pfx("192.168.1.0/24")),
        Command::Originate(pfx("fd00:1::/48")),
    ]);
    let thread = {
        let shared = shared.clone();
        ours.spawn(move || speaker(shared))
    };
    let h = Harness {
        shared,
        bird,
        start: std::time::Instant::now(),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&h)));
    h.shared.lock().unwrap().quit = true;
    let _ = thread.join();
    if let Err(e) = result {
        println!("--- BIRD's view at failure ---\n{}", h.bird_protocol());
        println!("--- our events ---\n{:?}", h.events());
        std::panic::resume_unwind(e);
    }
}

fn scenario(h: &Harness) {
    // 1. Established, on both sides.
    let up = wait_for(WAIT, POLL, || {
        (h.state() == Some(State::Established) && h.bird_protocol().contains("Established"))
            .then_some(())
    });
    assert!(up.is_some(), "no session: {}", h.bird_protocol());
    h.say("session Established (mesh-core and BIRD agree)");
    let proto = h.bird_protocol();
    assert!(proto.contains("Hold timer:"), "{proto}");
    assert!(proto.contains("4-octet AS numbers"), "{proto}");

    // 2. Our prefixes in BIRD, with AS path 65001 and next hop us.
    let seen = wait_for(WAIT, POLL, || {
        let r4 = h.bird_route("192.168.1.0/24");
        let r6 = h.bird_route("fd00:1::/48");
        (r4.contains("BGP.as_path: 65001") && r6.contains("BGP.as_path: 65001")).then_some((r4, r6))
    });
    let (r4, r6) = seen.unwrap_or_else(|| {
        panic!(
            "BIRD did not import our routes:\n{}\n{}",
            h.bird_route("192.168.1.0/24"),
            h.bird_route("fd00:1::/48")
        )
    });
    assert!(r4.contains("via 10.255.0.1"), "{r4}");
    assert!(r4.contains("BGP.next_hop: 10.255.0.1"), "{r4}");
    assert!(r6.contains("BGP.next_hop: fd00:255::1"), "{r6}");
    h.say("BIRD imported 192.168.1.0/24 and fd00:1::/48 with AS path 65001, next hop us");

    // 3. BIRD's prefixes in our Loc-RIB with AS path 65002 and next hop BIRD.
    let learned = wait_for(WAIT, POLL, || {
        let a = h.route("192.168.2.0/24")?;
        let b = h.route("10.2.0.0/16")?;
        let c = h.route("fd00:2::/48")?;
        Some((a, b, c))
    })
    .expect("BIRD's routes did not reach our Loc-RIB");
    let bird_v4: IpAddr = "10.255.0.2".parse().unwrap();
    let bird_v6: IpAddr = "fd00:255::2".parse().unwrap();
    assert_eq!(learned.0, ("65002".to_string(), Some(bird_v4)));
    assert_eq!(learned.1, ("65002".to_string(), Some(bird_v4)));
    assert_eq!(learned.2, ("65002".to_string(), Some(bird_v6)));
    h.say("our Loc-RIB has 192.168.2.0/24, 10.2.0.0/16 (via 10.255.0.2) and fd00:2::/48 (via fd00:255::2), AS path 65002");

    // 4a. We withdraw; BIRD drops the route.
    h.send(Command::Withdraw(pfx("192.168.1.0/24")));
    let gone = wait_for(WAIT, POLL, || {
        (!h.bird_route("192.168.1.0/24").contains("BGP")).then_some(())
    });
    assert!(gone.is_some(), "BIRD kept our withdrawn route");
    assert!(h.bird_route("fd00:1::/48").contains("BGP.as_path: 65001"));
    h.say("we withdrew 192.168.1.0/24: BIRD dropped it (fd00:1::/48 stays)");

    // 4b. BIRD withdraws; our Loc-RIB drops the routes.
    h.bird.birdc(&["disable", "static4"]);
    let gone = wait_for(WAIT, POLL, || {
        (h.route("192.168.2.0/24").is_none() && h.route("10.2.0.0/16").is_none()).then_some(())
    });
    assert!(gone.is_some(), "our RIB kept BIRD's withdrawn routes");
    assert!(h.route("fd00:2::/48").is_some());
    h.say("BIRD withdrew its IPv4 routes: our Loc-RIB dropped them");
    h.bird.birdc(&["enable", "static4"]);
    wait_for(WAIT, POLL, || h.route("192.168.2.0/24")).expect("re-announced route");

    // 5. BIRD frozen: our hold timer fires after the negotiated hold time.
    let events_before = h.events().len();
    let frozen_at = h.start.elapsed();
    h.bird.signal(nix::sys::signal::Signal::SIGSTOP);
    let down = wait_for(
        StdDuration::from_secs(HOLD as u64 + 3),
        StdDuration::from_millis(10),
        || {
            h.events()[events_before..]
                .iter()
                .find(|(_, e)| matches!(e, SessionEvent::Down(_)))
                .cloned()
        },
    );
    h.bird.signal(nix::sys::signal::Signal::SIGCONT);
    let (at, ev) = down.expect("hold timer did not fire while BIRD was frozen");
    assert_eq!(
        ev,
        SessionEvent::Down(DownReason::SentNotification(ErrorCode::HoldTimerExpired))
    );
    let after = at.saturating_sub(frozen_at);
    // The last keepalive from BIRD came at most one keepalive interval (1 s)
    // before the freeze, so expiry lands in (hold - 1 s, hold + slack].
    assert!(
        after >= StdDuration::from_millis(HOLD as u64 * 1000 - 1200)
            && after <= StdDuration::from_millis(HOLD as u64 * 1000 + 500),
        "hold timer fired {after:?} after the freeze (hold {HOLD} s)"
    );
    h.say(&format!(
        "BIRD frozen (SIGSTOP): our hold timer fired {:.2} s later (hold time {HOLD} s), NOTIFICATION Hold Timer Expired sent",
        after.as_secs_f64()
    ));
    // BIRD wakes up and reads our NOTIFICATION...
    let heard = wait_for(WAIT, StdDuration::from_millis(20), || {
        let p = h.bird_protocol();
        p.contains("Received: Hold timer expired").then_some(())
    });
    assert!(
        heard.is_some(),
        "BIRD did not get our Hold Timer Expired: {}",
        h.bird_protocol()
    );
    // ...and the session comes back.
    let back = wait_for(StdDuration::from_secs(20), POLL, || {
        (h.state() == Some(State::Established) && h.bird_protocol().contains("Established"))
            .then_some(())
    });
    assert!(
        back.is_some(),
        "session did not recover: {}",
        h.bird_protocol()
    );
    h.say("BIRD resumed (SIGCONT); the session re-established by itself");

    // 6. We shut down: BIRD sees Cease / Administrative Shutdown with our text.
    h.send(Command::Stop("meshd interop test says goodbye"));
    let seen = wait_for(WAIT, POLL, || {
        let p = h.bird_protocol();
        (p.contains("Administrative shutdown") && p.contains("meshd interop test says goodbye"))
            .then_some(p)
    });
    let proto =
        seen.unwrap_or_else(|| panic!("BIRD did not report our shutdown:\n{}", h.bird_protocol()));
    let lines: Vec<&str> = proto
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("Administrative shutdown") || l.contains("says goodbye"))
        .collect();
    h.say(&format!("we stopped: BIRD reports {lines:?}"));
}
