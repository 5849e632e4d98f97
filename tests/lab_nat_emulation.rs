//! The emulated NATs of `lab/nat.rs` behave as named (LAB.md's table),
//! checked with plain UDP sockets, no meshd: an observer with a public
//! address reflects every datagram's source address and port (as a STUN
//! server would), the routers send to it from the mesh port 51820.
//!
//! - mapping: open shows the router's own address and port; cone and
//!   forwarded keep 51820 and show one mapping for every destination
//!   (endpoint-independent), even after an unsolicited datagram hit the
//!   mesh port first (no conntrack clash); symmetric and cgnat show a new
//!   port for every destination (endpoint-dependent);
//! - filtering: a datagram from an observer port or address the router never
//!   sent to reaches it only when open or forwarded;
//! - cgnat: a TTL-2 probe meets a hop in 100.64.0.0/10 (the carrier NAT),
//!   no other kind shows one.
//!
//! Needs root, iproute2, nftables, ping.

mod lab;

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab::nat::{NatKind, NatLab};
use lab::{require_cmd, require_root, Netns};

const KINDS: [NatKind; 6] = [
    NatKind::Open,
    NatKind::Cone,
    NatKind::Forwarded,
    NatKind::Symmetric,
    NatKind::Cgnat,
    NatKind::Open,
];
/// The last Open router is the observer.
const OBSERVER: usize = 6;
/// A second observer address, for the change-IP mapping test.
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 250);
/// An observer address no router ever sends to.
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 251);
const MESH_PORT: u16 = 51820;

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

/// Reflectors on the observer: each answers every datagram with
/// `seen <source addr:port>`, and on command sends a datagram of its own
/// (an unsolicited one, from its address and port).
struct Reflectors {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    commands: Vec<(SocketAddrV4, mpsc::Sender<(SocketAddrV4, String)>)>,
}

impl Reflectors {
    fn start(ns: &Netns, addrs: &[SocketAddrV4]) -> Reflectors {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut commands = Vec::new();
        for &addr in addrs {
            let (cmd_tx, cmd_rx) = mpsc::channel::<(SocketAddrV4, String)>();
            let (ready_tx, ready_rx) = mpsc::channel();
            let stop = stop.clone();
            threads.push(ns.spawn(move || {
                let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                ready_tx.send(()).unwrap();
                let start = Instant::now();
                let mut buf = [0u8; 256];
                // Bounded: the test takes seconds.
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
                    while let Ok((to, text)) = cmd_rx.try_recv() {
                        let _ = s.send_to(text.as_bytes(), to);
                    }
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(format!("seen {from}").as_bytes(), from);
                    }
                }
            }));
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("reflector ready");
            commands.push((addr, cmd_tx));
        }
        Reflectors {
            stop,
            threads,
            commands,
        }
    }

    /// Has the reflector on `from` send `text` to `to`.
    fn send(&self, from: SocketAddrV4, to: SocketAddrV4, text: &str) {
        let (_, tx) = self
            .commands
            .iter()
            .find(|(a, _)| *a == from)
            .expect("a reflector on that address");
        tx.send((to, text.into())).unwrap();
    }
}

impl Drop for Reflectors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

enum Step {
    Probe,
    Done,
}

/// Router n's side: a socket on 0.0.0.0:51820 that asks every destination
/// for its mapping, then listens until told the unsolicited datagrams were
/// sent (and a little longer).
fn mesh_socket(
    ns: &Netns,
    dests: Vec<SocketAddrV4>,
    ready: mpsc::Sender<()>,
    steps: mpsc::Receiver<Step>,
    mapped_tx: mpsc::Sender<Vec<(SocketAddrV4, Option<SocketAddrV4>)>>,
) -> JoinHandle<Vec<(SocketAddr, String)>> {
    ns.spawn(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, MESH_PORT)).expect("bind 51820");
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut unsolicited = Vec::new();
        let mut buf = [0u8; 256];
        let mut recv = |s: &UdpSocket, unsolicited: &mut Vec<(SocketAddr, String)>| {
            let (len, from) = s.recv_from(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            match text.strip_prefix("seen ") {
                Some(m) => Some((from, m.parse::<SocketAddrV4>().ok()?)),
                None => {
                    unsolicited.push((from, text));
                    None
                }
            }
        };
        ready.send(()).unwrap();
        if !matches!(steps.recv_timeout(Duration::from_secs(10)), Ok(Step::Probe)) {
            return unsolicited;
        }
        let mut mapped = Vec::new();
        for dest in dests {
            let mut seen = None;
            'attempts: for _ in 0..5 {
                s.send_to(b"probe", dest).unwrap();
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(300) {
                    if let Some((from, m)) = recv(&s, &mut unsolicited) {
                        if from == SocketAddr::V4(dest) {
                            seen = Some(m);
                            break 'attempts;
                        }
                    }
                }
            }
            mapped.push((dest, seen));
        }
        mapped_tx.send(mapped).unwrap();
        let start = Instant::now();
        let mut done_at = None;
        while start.elapsed() < Duration::from_secs(10) {
            if done_at.is_none() && matches!(steps.try_recv(), Ok(Step::Done)) {
                done_at = Some(Instant::now());
            }
            if done_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
                break;
            }
            recv(&s, &mut unsolicited);
        }
        unsolicited
    })
}

/// Sends one UDP datagram with IP TTL 2 to `dest` and returns the first
/// ICMP error it brings back: (offender, ICMP type, code). Time exceeded is
/// type 11; port unreachable (the probe reached `dest`) is 3/3.
fn ttl2_probe(ns: &Netns, dest: SocketAddrV4) -> Option<(Ipv4Addr, u8, u8)> {
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn,
    };
    ns.spawn(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        s.set_ttl(2).unwrap();
        setsockopt(&s, sockopt::Ipv4RecvErr, &true).unwrap();
        for _ in 0..3 {
            s.send_to(b"ttl probe", dest).unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(500) {
                let mut data = [0u8; 256];
                let mut iov = [IoSliceMut::new(&mut data)];
                let mut cmsg = vec![0u8; 256];
                if let Ok(msg) = recvmsg::<SockaddrIn>(
                    s.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
                ) {
                    for c in msg.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::Ipv4RecvErr(err, Some(from)) = c {
                            let addr = Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr));
                            return Some((addr, err.ee_type, err.ee_code));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        None
    })
    .join()
    .unwrap()
}

fn in_shared_space(a: Ipv4Addr) -> bool {
    // 100.64.0.0/10
    a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64
}

#[test]
fn emulated_nats_behave_as_named() {
    require_root();
    require_cmd("ip", "iproute2");
    require_cmd("nft", "nftables");
    require_cmd("ping", "iputils-ping");
    let began = Instant::now();
    let lab = NatLab::build("mdne", meshd(), &KINDS);
    println!("lab built in {:.2} s", began.elapsed().as_secs_f64());

    let observer = &lab.router(OBSERVER).ns;
    let obs = lab.public_addr(OBSERVER);
    for extra in [OTHER, STRANGER] {
        observer.ip(&["addr", "add", &format!("{extra}/24"), "dev", "wan"]);
    }
    let a = SocketAddrV4::new(obs, 3478);
    let b = SocketAddrV4::new(obs, 3479);
    let c = SocketAddrV4::new(OTHER, 3478);
    // Never probed: sources of unsolicited datagrams.
    let new_port = SocketAddrV4::new(obs, 3480);
    let new_addr = SocketAddrV4::new(STRANGER, 3478);
    let reflectors = Reflectors::start(observer, &[a, b, c, new_port, new_addr]);

    let mut failures = Vec::new();
    for n in 1..OBSERVER {
        let kind = lab.kind(n);
        let public = lab.public_addr(n);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (step_tx, step_rx) = mpsc::channel();
        let (mapped_tx, mapped_rx) = mpsc::channel();
        let t = mesh_socket(
            &lab.router(n).ns,
            vec![a, b, c],
            ready_tx,
            step_rx,
            mapped_tx,
        );
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("mesh socket ready");
        // The peer's first hole-punching datagram arrives before ours left:
        // it must not move the mapping we get next (the conntrack clash).
        reflectors.send(b, SocketAddrV4::new(public, MESH_PORT), "early punch");
        std::thread::sleep(Duration::from_millis(200));
        step_tx.send(Step::Probe).unwrap();
        let mapped = mapped_rx
            .recv_timeout(Duration::from_secs(15))
            .expect("mappings");
        let port_a = mapped[0].1.map_or(MESH_PORT, |m| m.port());
        let target = SocketAddrV4::new(public, port_a);
        reflectors.send(new_port, target, "from a new port");
        reflectors.send(new_addr, target, "from a new address");
        std::thread::sleep(Duration::from_millis(200));
        step_tx.send(Step::Done).unwrap();
        let unsolicited = t.join().expect("mesh socket thread");

        println!("r{n} ({}), public {public}:", kind.name());
        for (dest, m) in &mapped {
            match m {
                Some(m) => println!("  to {dest}: mapped {m}"),
                None => println!("  to {dest}: no answer"),
            }
        }
        let reached: Vec<&str> = unsolicited.iter().map(|(_, t)| t.as_str()).collect();
        for (from, text) in &unsolicited {
            println!("  unsolicited reached the router: {text:?} from {from}");
        }
        let blocked: Vec<&str> = ["early punch", "from a new port", "from a new address"]
            .into_iter()
            .filter(|t| !reached.contains(t))
            .collect();
        for text in &blocked {
            println!("  unsolicited dropped: {text:?}");
        }

        let mut fail = |what: String| {
            println!("  FAIL: {what}");
            failures.push(format!("r{n} ({}): {what}", kind.name()));
        };
        let Some(maps) = mapped.iter().map(|(_, m)| *m).collect::<Option<Vec<_>>>() else {
            fail("a reflector did not answer".into());
            continue;
        };
        if maps.iter().any(|m| *m.ip() != public) {
            fail(format!("mapped address is not {public}"));
        }
        let ports: Vec<u16> = maps.iter().map(|m| m.port()).collect();
        match kind {
            NatKind::Open | NatKind::Cone | NatKind::Forwarded => {
                if ports.iter().any(|&p| p != MESH_PORT) {
                    fail(format!(
                        "mapping is not {public}:{MESH_PORT} for every destination: {ports:?}"
                    ));
                }
            }
            NatKind::Symmetric | NatKind::Cgnat => {
                let mut distinct = ports.clone();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() != ports.len() {
                    fail(format!(
                        "mapping is not endpoint-dependent: ports {ports:?}"
                    ));
                }
            }
        }
        let expect_open = matches!(kind, NatKind::Open | NatKind::Forwarded);
        if expect_open && !blocked.is_empty() {
            fail(format!("unsolicited datagrams did not arrive: {blocked:?}"));
        }
        if !expect_open && !reached.is_empty() {
            fail(format!("unsolicited datagrams got through: {reached:?}"));
        }

        // What a TTL-limited probe meets on the way out.
        let hop = ttl2_probe(&lab.router(n).ns, SocketAddrV4::new(obs, 33434));
        match hop {
            Some((from, ty, code)) => {
                println!("  UDP with TTL 2 to {obs}: ICMP type {ty} code {code} from {from}")
            }
            None => println!("  UDP with TTL 2 to {obs}: no ICMP error"),
        }
        let carrier = Ipv4Addr::new(100, 64, n as u8, 1);
        match kind {
            NatKind::Cgnat => {
                if hop != Some((carrier, 11, 0)) {
                    fail(format!(
                        "TTL-2 UDP probe did not meet time exceeded from {carrier}: {hop:?}"
                    ));
                }
                let out = lab
                    .router(n)
                    .ns
                    .cmd("ping")
                    .args(["-n", "-t", "2", "-c1", "-W1"])
                    .arg(obs.to_string())
                    .output()
                    .expect("ping");
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find(|l| l.starts_with("From"))
                    .unwrap_or("(no hop answered)");
                println!("  ping -t 2 {obs}: {line}");
                if !(line.contains(&format!("From {carrier}"))
                    && line.contains("Time to live exceeded"))
                {
                    fail(format!(
                        "ping -t 2 did not meet time exceeded from {carrier}:\n{text}"
                    ));
                }
            }
            _ => {
                if hop.is_some_and(|(from, _, _)| in_shared_space(from)) {
                    fail(format!("a hop in 100.64.0.0/10 without a CGNAT: {hop:?}"));
                }
            }
        }
    }
    drop(reflectors);
    println!(
        "all checks done {:.2} s after start",
        began.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "the NATs do not behave as named:\n{}\n{}",
        failures.join("\n"),
        lab.nat_report()
    );
}
