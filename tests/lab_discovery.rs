//! LAN discovery relayed between homes (issue 14) on real meshd processes in
//! network namespaces (LAB.md), the "Must reach" list:
//! - in the seed square, c1's limited broadcast, subnet-directed broadcast
//!   and SSDP search each reach c2, c3 and c4 exactly once, from c1's own
//!   address and port, and c4's unicast reply comes back to c1;
//! - after a power cut of the router that carries R1's traffic to R4 (the
//!   issue's R2) the relay follows the new paths, and reaches that router's
//!   console again once it is back;
//! - a 10,000 pps storm from c1 reaches the other LANs at most at the cap,
//!   while game traffic between c2 and c4 loses nothing;
//! - a member (a stock wireguard-go + BIRD router whose inner traffic the
//!   test writes) that replays, forges another member's origin or sends
//!   garbage is dropped and counted, and its sessions stay up.
//!
//! Needs root, iproute2, nftables (and bird2, wireguard-go, wireguard-tools
//! for the hostile member). The storm and the power cut measure time:
//! `scripts/test.sh` runs this file in a release build. One lab at a time.

mod lab;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::seed::{console_addr, Probe, SeedLab, Topology};
use lab::stock::{self, BirdBfd, StockTunnel};
use lab::{require_cmd, require_root, wait_for, Netns};
use mesh_core::discovery::{Kind, Relayed, DISCOVERY_PORT, MAX_LEN, SEND_BURST, SEND_RATE, SSDP};
use serde_json::Value;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// BFD (on by default) detects a power cut; BGP's hold time only confirms it.
const HOLD: u16 = 9;
/// PS5 discovery, one of the default ports.
const PS5: u16 = 9302;

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

fn needs() {
    require_root();
    require_cmd("ip", "iproute2");
    require_cmd("nft", "nftables");
    require_cmd("ping", "iputils-ping");
}

/// Every router's main section: its LAN is the `lan` veth (not `br-lan`);
/// discovery itself keeps its defaults (on; 987, 9302, 30000; SSDP on).
fn discovery_options() -> Vec<(&'static str, String)> {
    vec![("lan_interface", "lan".into())]
}

/// The seed square (BFD and redundant sending on, as shipped), converged,
/// every router's capture open.
fn square(tag: &str) -> SeedLab {
    needs();
    let mut topo = Topology::seed_square();
    topo.main_options = discovery_options();
    let mut lab = SeedLab::build_topology(tag, meshd(), HOLD, &topo);
    lab.start_all();
    converge(&lab);
    for n in 1..=4 {
        capture_open(&lab, n);
    }
    lab
}

fn converge(lab: &SeedLab) -> Duration {
    lab.wait_all_reachable(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the square did not converge\n{}", lab.logs()))
}

/// The last `lines` lines of every router's log, and every router's
/// discovery status: what a failure message shows.
fn evidence(lab: &SeedLab) -> String {
    let mut s = String::new();
    for r in &lab.routers {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(120);
        s.push_str(&format!(
            "--- r{} log (last {}) ---\n",
            r.n,
            lines.len() - from
        ));
        for l in &lines[from..] {
            s.push_str(l);
            s.push('\n');
        }
    }
    for r in &lab.routers {
        let d = lab
            .status(r.n)
            .map(|s| s["discovery"].to_string())
            .unwrap_or_else(|| "(no status)".into());
        s.push_str(&format!("--- r{} discovery: {d}\n", r.n));
    }
    s
}

/// Router `n`'s `discovery` status object.
fn discovery(lab: &SeedLab, n: usize) -> Value {
    let status = lab
        .status(n)
        .unwrap_or_else(|| panic!("r{n} gives no status\n{}", evidence(lab)));
    let d = status["discovery"].clone();
    assert!(
        d.is_object(),
        "r{n}'s status has no `discovery` object:\n{status:#}"
    );
    d
}

/// Waits until router `n` relays discovery from its `lan` veth.
fn capture_open(lab: &SeedLab, n: usize) {
    let open = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let d = lab.status(n)?["discovery"].clone();
        (d["capture"] == "open").then_some(d)
    });
    let d = open.unwrap_or_else(|| {
        panic!(
            "r{n}'s discovery capture is not open: {}\n{}",
            lab.status(n)
                .map(|s| s["discovery"].to_string())
                .unwrap_or_default(),
            evidence(lab)
        )
    });
    assert_eq!(d["enabled"], true, "r{n}: {d}");
    assert_eq!(d["interface"], "lan", "r{n}: {d}");
}

/// A counter of a `discovery` object: the total (`port` None) or one
/// port's row (0 if the row is missing: the caller's assertion says so).
fn count(d: &Value, port: Option<u16>, name: &str) -> u64 {
    let row = match port {
        None => &d["total"],
        Some(p) => d["ports"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["port"] == p))
            .unwrap_or(&Value::Null),
    };
    row[name].as_u64().unwrap_or(0)
}

/// A counter of the daemon's own, beside the relay's (`send_errors`,
/// `kernel_drops`).
fn daemon_count(d: &Value, name: &str) -> u64 {
    d[name].as_u64().unwrap_or(0)
}

/// How much each counter moved between two `discovery` objects.
fn moved(before: &Value, after: &Value, port: Option<u16>, name: &str) -> u64 {
    count(after, port, name).saturating_sub(count(before, port, name))
}

const ORIGIN_COUNTERS: [&str; 5] = ["captured", "relayed", "dropped_rate", "too_big", "foreign"];
const RECEIVER_COUNTERS: [&str; 7] = [
    "received",
    "emitted",
    "dropped_rate_in",
    "forged",
    "replayed",
    "refused",
    "malformed",
];

/// `name=+delta` for every counter, for the figures printed.
fn deltas(before: &Value, after: &Value, port: Option<u16>) -> String {
    ORIGIN_COUNTERS
        .iter()
        .chain(RECEIVER_COUNTERS.iter())
        .map(|c| format!("{c}=+{}", moved(before, after, port, c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// BFD downs and BGP flaps summed over router `n`'s members.
fn session_trouble(lab: &SeedLab, n: usize) -> (u64, u64) {
    let s = lab
        .status(n)
        .unwrap_or_else(|| panic!("r{n} gives no status"));
    let members = s["members"].as_array().cloned().unwrap_or_default();
    let sum = |f: &dyn Fn(&Value) -> Option<u64>| members.iter().filter_map(f).sum();
    (
        sum(&|m| m["bfd"]["downs"].as_u64()),
        sum(&|m| m["bgp"]["flaps"].as_u64()),
    )
}

// ---- consoles ----

/// One datagram a console heard.
#[derive(Debug, Clone)]
struct Heard {
    from: SocketAddrV4,
    /// The IP destination of the packet (IP_PKTINFO).
    to: Ipv4Addr,
    payload: Vec<u8>,
    at: Instant,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A console's UDP socket on 0.0.0.0:`port` (joined to `group` on its LAN),
/// recording what it hears; with `reply`, it answers each datagram by
/// unicast to its source, from the same socket, with `reply:` + the payload.
struct Listener {
    stop: Arc<AtomicBool>,
    heard: Arc<Mutex<Vec<Heard>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(console: &Netns, n: usize, port: u16, group: Option<Ipv4Addr>, reply: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, heard) = (stop.clone(), heard.clone());
            console.spawn(move || {
                use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned};
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                    .unwrap_or_else(|e| panic!("c{n}: bind 0.0.0.0:{port}: {e}"));
                if let Some(g) = group {
                    s.join_multicast_v4(&g, &console_addr(n))
                        .unwrap_or_else(|e| panic!("c{n}: join {g}: {e}"));
                }
                setsockopt(&s, sockopt::Ipv4PacketInfo, &true).expect("IP_PKTINFO");
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
                while !stop.load(Ordering::Relaxed) {
                    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                    let Ok(msg) = recvmsg::<nix::sys::socket::SockaddrIn>(
                        s.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        nix::sys::socket::MsgFlags::empty(),
                    ) else {
                        continue;
                    };
                    let len = msg.bytes;
                    let Some(from) = msg.address.map(|a| SocketAddrV4::new(a.ip(), a.port()))
                    else {
                        continue;
                    };
                    let mut to = Ipv4Addr::UNSPECIFIED;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                                to = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                            }
                        }
                    }
                    let payload = buf[..len].to_vec();
                    let mut answer = b"reply:".to_vec();
                    answer.extend_from_slice(&payload);
                    // Recorded before the reply goes, so whoever got the
                    // reply finds it recorded.
                    heard.lock().unwrap().push(Heard {
                        from,
                        to,
                        payload,
                        at: Instant::now(),
                    });
                    if reply {
                        let _ = s.send_to(&answer, from);
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("listener ready");
        Listener {
            stop,
            heard,
            thread: Some(thread),
        }
    }

    /// What it heard whose payload contains `marker`.
    fn heard(&self, marker: &[u8]) -> Vec<Heard> {
        self.heard
            .lock()
            .unwrap()
            .iter()
            .filter(|h| contains(&h.payload, marker))
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket of console `n` on an ephemeral port, broadcasts allowed,
/// created in its namespace (a socket stays in the namespace it was made in).
fn console_socket(console: &Netns) -> UdpSocket {
    console
        .spawn(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
            s.set_broadcast(true).expect("SO_BROADCAST");
            s.set_multicast_ttl_v4(1).expect("IP_MULTICAST_TTL");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .join()
        .expect("console socket")
}

/// A payload no other test run sends.
fn marker(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// What one relayed datagram did.
struct Delivery {
    /// Per receiving console: (n, time from the send to its arrival, the
    /// packet's IP destination).
    arrivals: Vec<(usize, Duration, Ipv4Addr)>,
    reply: Option<Duration>,
}

/// One datagram c1 sends.
struct Datagram<'a> {
    to: SocketAddrV4,
    /// The group the receivers join (multicast).
    group: Option<Ipv4Addr>,
    payload: &'a [u8],
    /// What in the payload marks it as this test's.
    mark: &'a str,
}

/// c1 sends `datagram`; each console in `receivers` (listening on its port,
/// joined to its group) hears it exactly once, from c1's address and port,
/// addressed to one of `destinations(n)`; with `reply_from`, that console's
/// unicast reply reaches c1. r1 relays it once, each receiver's router
/// emits it once.
fn deliver_once(
    lab: &SeedLab,
    datagram: Datagram<'_>,
    receivers: &[usize],
    reply_from: Option<usize>,
    destinations: impl Fn(usize) -> Vec<Ipv4Addr>,
) -> Delivery {
    let Datagram {
        to,
        group,
        payload,
        mark,
    } = datagram;
    let port = to.port();
    let listeners: Vec<(usize, Listener)> = receivers
        .iter()
        .map(|&n| {
            let l = Listener::start(
                &lab.router(n).console,
                n,
                port,
                group,
                reply_from == Some(n),
            );
            (n, l)
        })
        .collect();
    let c1 = console_socket(&lab.router(1).console);
    let c1_port = c1.local_addr().unwrap().port();
    let expected_from = SocketAddrV4::new(console_addr(1), c1_port);
    let routers: Vec<usize> = std::iter::once(1)
        .chain(receivers.iter().copied())
        .collect();
    let before: Vec<Value> = routers.iter().map(|&n| discovery(lab, n)).collect();
    let mark = mark.as_bytes();

    let sent = Instant::now();
    c1.send_to(payload, to)
        .unwrap_or_else(|e| panic!("c1 cannot send to {to}: {e}"));
    let reply = reply_from.map(|r| {
        let mut answer = b"reply:".to_vec();
        answer.extend_from_slice(payload);
        let mut buf = [0u8; 2048];
        let got = wait_for(Duration::from_secs(5), Duration::ZERO, || {
            let (len, from) = c1.recv_from(&mut buf).ok()?;
            (buf[..len] == answer[..] && from == (console_addr(r), port).into())
                .then(|| sent.elapsed())
        });
        got.unwrap_or_else(|| {
            panic!(
                "c{r}'s unicast reply did not reach c1 ({expected_from}); c{r} heard {:?}\n{}",
                listeners
                    .iter()
                    .find(|(n, _)| *n == r)
                    .map(|(_, l)| l.all()),
                evidence(lab)
            )
        })
    });
    let all_heard = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        listeners
            .iter()
            .all(|(_, l)| !l.heard(mark).is_empty())
            .then_some(())
    });
    if all_heard.is_none() {
        let got: Vec<String> = listeners
            .iter()
            .map(|(n, l)| format!("c{n} heard {} (all: {:?})", l.heard(mark).len(), l.all()))
            .collect();
        panic!(
            "c1's datagram to {to} did not reach every console within 5 s: {}\n{}",
            got.join("; "),
            evidence(lab)
        );
    }
    // Long enough for any second copy (another path, a redundant copy,
    // a re-capture) to arrive.
    std::thread::sleep(Duration::from_secs(2));

    let mut arrivals = Vec::new();
    for (n, l) in &listeners {
        let heard = l.heard(mark);
        assert_eq!(
            heard.len(),
            1,
            "c{n} heard c1's datagram {} times: {heard:?}\n{}",
            heard.len(),
            evidence(lab)
        );
        let h = &heard[0];
        assert_eq!(
            h.from, expected_from,
            "c{n} heard it from {} (not c1's address and port)",
            h.from
        );
        assert_eq!(h.payload, payload, "c{n} heard another payload");
        let allowed = destinations(*n);
        assert!(
            allowed.contains(&h.to),
            "c{n} heard it addressed to {} (expected one of {allowed:?})",
            h.to
        );
        arrivals.push((*n, h.at.duration_since(sent), h.to));
    }

    // Each router's counters moved by exactly one datagram (counters are
    // read once everything arrived, so they are final).
    let after: Vec<Value> = routers.iter().map(|&n| discovery(lab, n)).collect();
    for (i, &n) in routers.iter().enumerate() {
        println!(
            "  r{n} discovery counters moved: total {}; port {port}: {}",
            deltas(&before[i], &after[i], None),
            deltas(&before[i], &after[i], Some(port))
        );
    }
    for (i, &n) in routers.iter().enumerate() {
        let errors =
            daemon_count(&after[i], "send_errors") - daemon_count(&before[i], "send_errors");
        assert_eq!(errors, 0, "r{n}'s LAN socket refused {errors} packets");
    }
    let (b1, a1) = (&before[0], &after[0]);
    for p in [None, Some(port)] {
        for c in ["captured", "relayed"] {
            assert_eq!(
                moved(b1, a1, p, c),
                1,
                "r1's {c} ({}) moved by {}, not 1\n{}",
                p.map_or("total".into(), |p| format!("port {p}")),
                moved(b1, a1, p, c),
                evidence(lab)
            );
        }
    }
    for (i, &n) in routers.iter().enumerate().skip(1) {
        for p in [None, Some(port)] {
            for c in ["received", "emitted"] {
                assert_eq!(
                    moved(&before[i], &after[i], p, c),
                    1,
                    "r{n}'s {c} ({}) moved by {}, not 1\n{}",
                    p.map_or("total".into(), |p| format!("port {p}")),
                    moved(&before[i], &after[i], p, c),
                    evidence(lab)
                );
            }
        }
    }
    Delivery { arrivals, reply }
}

fn print_delivery(what: &str, d: &Delivery) {
    let arrivals: Vec<String> = d
        .arrivals
        .iter()
        .map(|(n, t, to)| format!("c{n} (to {to}) after {:.1} ms", t.as_secs_f64() * 1e3))
        .collect();
    println!(
        "{what}: heard once each: {}{}",
        arrivals.join(", "),
        d.reply.map_or(String::new(), |r| format!(
            "; the reply reached c1 {:.1} ms after the send",
            r.as_secs_f64() * 1e3
        ))
    );
}

/// A receiving LAN's broadcast address.
fn lan_broadcast(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n as u8, 255)
}

#[test]
fn limited_broadcast_from_c1_reaches_every_other_lan_once_and_c4_replies() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = square("dsc1");
    let mark = marker("limited");
    let d = deliver_once(
        &lab,
        Datagram {
            to: SocketAddrV4::new(Ipv4Addr::BROADCAST, PS5),
            group: None,
            payload: mark.as_bytes(),
            mark: &mark,
        },
        &[2, 3, 4],
        Some(4),
        // Both kinds of broadcast are re-emitted to the receiving LAN's own
        // broadcast address (issue 14).
        |n| vec![lan_broadcast(n)],
    );
    print_delivery("c1 -> 255.255.255.255:9302", &d);
}

#[test]
fn subnet_directed_broadcast_from_c1_reaches_every_other_lan_once() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = square("dsc2");
    let mark = marker("directed");
    let d = deliver_once(
        &lab,
        Datagram {
            to: SocketAddrV4::new(lan_broadcast(1), PS5),
            group: None,
            payload: mark.as_bytes(),
            mark: &mark,
        },
        &[2, 3, 4],
        Some(4),
        |n| vec![lan_broadcast(n)],
    );
    print_delivery("c1 -> 192.168.1.255:9302", &d);
}

#[test]
fn ssdp_search_from_c1_reaches_every_other_lan_once_and_c4_replies() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = square("dsc3");
    let mark = marker("ssdp");
    let search = format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
         MX: 1\r\nST: urn:dial-multiscreen-org:service:dial:1\r\nX-LAB: {mark}\r\n\r\n"
    );
    let d = deliver_once(
        &lab,
        Datagram {
            to: SSDP,
            group: Some(*SSDP.ip()),
            payload: search.as_bytes(),
            mark: &mark,
        },
        &[2, 3, 4],
        Some(4),
        |_| vec![*SSDP.ip()],
    );
    print_delivery("c1 -> SSDP M-SEARCH 239.255.255.250:1900", &d);
}

/// The "after R2's power cut": R2 there is the router that carries
/// R1's traffic to R4 (LAB.md: cut whichever of R2/R3 does), so that the
/// copy for r4 has to take the new path.
#[test]
fn discovery_follows_the_new_paths_after_the_transit_routers_power_cut() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = square("dsc4");
    let transit = lab
        .settled_first_hop(1, 4, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no settled path r1 -> c4\n{}", evidence(&lab)));
    let other = if transit == 2 { 3 } else { 2 };
    println!("before the cut, r1 reaches 192.168.4.0/24 via r{transit}: cutting r{transit}");
    let cut = Instant::now();
    lab.power_cut(transit);
    let moved = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        (lab.first_hop(1, 4) == Some(other)).then_some(())
    })
    .and_then(|_| lab.settled_first_hop(1, 4, Duration::from_secs(10)));
    assert_eq!(
        moved,
        Some(other),
        "r1's path to c4 did not settle on r{other} after r{transit}'s power cut\n{}",
        evidence(&lab)
    );
    println!(
        "r{transit} cut: r1's path to c4 settled on r{other} after {:.1} s",
        cut.elapsed().as_secs_f64()
    );
    let mark = marker("after-cut");
    let d = deliver_once(
        &lab,
        Datagram {
            to: SocketAddrV4::new(Ipv4Addr::BROADCAST, PS5),
            group: None,
            payload: mark.as_bytes(),
            mark: &mark,
        },
        &[other, 4],
        Some(4),
        |n| vec![lan_broadcast(n)],
    );
    print_delivery(&format!("r{transit} off, c1 -> 255.255.255.255:9302"), &d);

    let on = Instant::now();
    lab.power_on(transit);
    let back = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let sessions = ["r1", "r4"]
            .iter()
            .all(|m| lab.bgp_state(transit, m).as_deref() == Some("Established"));
        (sessions
            && lab.first_hop(1, transit).is_some()
            && lab.ping(1, transit)
            && lab.ping(transit, 1))
        .then_some(())
    });
    assert!(
        back.is_some(),
        "r{transit} did not rejoin within 30 s\n{}",
        evidence(&lab)
    );
    converge(&lab);
    capture_open(&lab, transit);
    println!(
        "r{transit} back: sessions up and c1 <-> c{transit} after {:.1} s",
        on.elapsed().as_secs_f64()
    );
    let mark = marker("after-return");
    let d = deliver_once(
        &lab,
        Datagram {
            to: SocketAddrV4::new(Ipv4Addr::BROADCAST, PS5),
            group: None,
            payload: mark.as_bytes(),
            mark: &mark,
        },
        &[2, 3, 4],
        Some(transit),
        |n| vec![lan_broadcast(n)],
    );
    print_delivery(&format!("r{transit} back, c1 -> 255.255.255.255:9302"), &d);
}

/// CPU time (user + system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |r| r.1);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// c1's storm: broadcasts to 255.255.255.255:`port` at `rate` for `secs`,
/// each payload `mark` + a sequence number. Returns (sent, send errors,
/// how long it took).
fn storm(c1: &Netns, port: u16, rate: f64, secs: f64, mark: String) -> (u64, u64, Duration) {
    c1.spawn(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        s.set_broadcast(true).expect("SO_BROADCAST");
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, port);
        let mut payload = mark.into_bytes();
        payload.push(b'#');
        let head = payload.len();
        payload.extend_from_slice(&[0u8; 8]);
        let (mut sent, mut errors) = (0u64, 0u64);
        let start = Instant::now();
        let end = Duration::from_secs_f64(secs);
        loop {
            let now = start.elapsed();
            if now >= end {
                break;
            }
            // Paced against the clock: whatever is due goes now, then a
            // short sleep, so a late wake-up is caught up at once.
            let due = (now.as_secs_f64() * rate) as u64;
            while sent + errors < due {
                payload[head..].copy_from_slice(&(sent + errors).to_be_bytes());
                match s.send_to(&payload, to) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        (sent, errors, start.elapsed())
    })
    .join()
    .expect("storm")
}

#[test]
fn discovery_storm_from_c1_is_cut_to_the_cap_and_game_traffic_loses_nothing() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = square("dsc5");
    let rate = 10_000.0;
    let secs: f64 = std::env::var("MESHD_STORM_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let listeners: Vec<(usize, Listener)> = [2, 3, 4]
        .iter()
        .map(|&n| {
            (
                n,
                Listener::start(&lab.router(n).console, n, PS5, None, false),
            )
        })
        .collect();
    let before: Vec<Value> = (1..=4).map(|n| discovery(&lab, n)).collect();
    let trouble_before: Vec<(u64, u64)> = (1..=4).map(|n| session_trouble(&lab, n)).collect();
    let loop_before = lab.status(1).map(|s| s["loop"].clone()).unwrap_or_default();
    // Game traffic both ways between c2 and c4, 100 pps each.
    let (c2, c4) = (&lab.router(2).console, &lab.router(4).console);
    let to_c4 = Probe::start(c2, c4, console_addr(4), Duration::from_millis(10));
    let to_c2 = Probe::start(c4, c2, console_addr(2), Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(500));

    let mark = marker("storm");
    let r1_pid = lab.router(1).process.as_ref().expect("r1 runs").id();
    let r1_cpu = cpu_time(r1_pid);
    let (sent, errors, took) = storm(&lab.router(1).console, PS5, rate, secs, mark.clone());
    let storm_secs = took.as_secs_f64();
    let r1_cpu = cpu_time(r1_pid).saturating_sub(r1_cpu);
    // What is still queued drains; nothing more is captured.
    std::thread::sleep(Duration::from_secs(3));
    let game = [("c2 -> c4", to_c4.finish()), ("c4 -> c2", to_c2.finish())];
    let after: Vec<Value> = (1..=4).map(|n| discovery(&lab, n)).collect();
    let trouble_after: Vec<(u64, u64)> = (1..=4).map(|n| session_trouble(&lab, n)).collect();
    let heard: Vec<(usize, usize)> = listeners
        .iter()
        .map(|(n, l)| (*n, l.heard(mark.as_bytes()).len()))
        .collect();

    println!(
        "storm: c1 sent {sent} broadcasts to 255.255.255.255:{PS5} in {storm_secs:.2} s ({:.0} pps; {errors} send errors)",
        sent as f64 / storm_secs
    );
    for n in 1..=4 {
        println!(
            "  r{n} discovery counters moved: total {}",
            deltas(&before[n - 1], &after[n - 1], None)
        );
    }
    println!("  consoles heard: {heard:?}");
    for (what, r) in &game {
        println!(
            "  game traffic {what}: {} of {} lost, longest gap {} ms",
            r.lost,
            r.sent,
            r.longest_gap.as_millis()
        );
    }
    println!("  (BFD downs, BGP flaps) per router: {trouble_before:?} -> {trouble_after:?}");
    println!(
        "  r1's meshd used {:.2} s of CPU during the {storm_secs:.1} s storm ({:.1} µs per broadcast sent)",
        r1_cpu.as_secs_f64(),
        r1_cpu.as_secs_f64() * 1e6 / sent.max(1) as f64
    );
    println!(
        "  r1's loop in the last minute: before the storm {}; after it {}",
        loop_before,
        lab.status(1).map(|s| s["loop"].clone()).unwrap_or_default()
    );

    // The cap: a burst, then the rate, over the storm and a second of the
    // capture's lag behind it (a paused capture reads the storm's last
    // queued packets in the next second), and one token for the timing of
    // that second's end.
    let cap = SEND_BURST as f64 + SEND_RATE as f64 * (storm_secs + 1.0) + 1.0;
    let floor = (SEND_BURST as f64 + SEND_RATE as f64 * storm_secs) / 2.0;
    let (b1, a1) = (&before[0], &after[0]);
    let captured = moved(b1, a1, None, "captured");
    let relayed = moved(b1, a1, None, "relayed");
    let dropped = moved(b1, a1, None, "dropped_rate");
    let kernel_drops = daemon_count(a1, "kernel_drops") - daemon_count(b1, "kernel_drops");
    let send_errors: Vec<u64> = (0..4)
        .map(|i| daemon_count(&after[i], "send_errors") - daemon_count(&before[i], "send_errors"))
        .collect();
    println!(
        "  r1 captured {captured} of {sent} ({:.1} %; the kernel dropped {kernel_drops} before meshd read them), relayed {relayed} (cap {cap:.0}), dropped {dropped} ({:.2} % of those captured); LAN send errors per router {send_errors:?}",
        100.0 * captured as f64 / sent.max(1) as f64,
        100.0 * dropped as f64 / captured.max(1) as f64,
    );
    for (what, r) in &game {
        assert_eq!(
            r.lost,
            0,
            "game traffic {what} lost {} of {} during the storm\n{}",
            r.lost,
            r.sent,
            evidence(&lab)
        );
    }
    assert!(
        relayed as f64 <= cap,
        "r1 relayed {relayed} (cap {cap:.0})\n{}",
        evidence(&lab)
    );
    assert_eq!(
        captured,
        relayed + dropped,
        "r1: captured is not relayed + dropped_rate"
    );
    // meshd reads at most 200 a second (then leaves the rest of the second
    // to the kernel, which drops and counts it): every broadcast sent is
    // either read or counted as dropped by the kernel (a few may still sit
    // in the socket's queue), and nearly all of what was read was cut.
    let reads_cap = 200.0 * (storm_secs + 1.0);
    let pauses = daemon_count(a1, "capture_pauses") - daemon_count(b1, "capture_pauses");
    println!("  r1 paused its capture {pauses} times (reads cap {reads_cap:.0})");
    assert!(
        captured as f64 <= reads_cap,
        "r1 read {captured} captured packets, over its {reads_cap:.0}\n{}",
        evidence(&lab)
    );
    assert!(
        pauses as f64 >= storm_secs - 1.0,
        "r1 paused its capture only {pauses} times in a {storm_secs:.1} s storm"
    );
    assert!(
        (captured + kernel_drops) as f64 >= 0.97 * sent as f64,
        "of {sent} sent, r1 read {captured} and its kernel dropped {kernel_drops}\n{}",
        evidence(&lab)
    );
    assert!(
        dropped as f64 >= 0.9 * captured as f64,
        "r1 dropped only {dropped} of {captured} captured"
    );
    assert!(
        (dropped + kernel_drops) as f64 >= 0.9 * sent as f64,
        "of {sent} sent, r1 cut {dropped} and its kernel dropped {kernel_drops}"
    );
    assert_eq!(send_errors, [0; 4], "LAN send errors per router");
    for (i, (n, count)) in heard.iter().enumerate() {
        let emitted = moved(&before[i + 1], &after[i + 1], None, "emitted");
        assert!(
            *count as f64 <= cap && emitted as f64 <= cap,
            "c{n} heard {count}, r{n} emitted {emitted}: over the cap {cap:.0}"
        );
        assert!(
            *count as f64 >= floor,
            "c{n} heard only {count} (expected at least {floor:.0}): is anything relayed?\n{}",
            evidence(&lab)
        );
        assert!(
            *count as u64 <= emitted,
            "c{n} heard {count}, more than r{n} emitted ({emitted})"
        );
    }
    for n in 1..=4 {
        assert_eq!(
            trouble_before[n - 1].1,
            trouble_after[n - 1].1,
            "r{n}: a BGP session flapped during the storm\n{}",
            evidence(&lab)
        );
    }
}

/// Sends `bytes` from the stock member's overlay address (port
/// DISCOVERY_PORT) through its tunnel to meshd r1's overlay address.
fn send_from_member(sock: &UdpSocket, bytes: &[u8]) {
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), DISCOVERY_PORT);
    sock.send_to(bytes, to)
        .unwrap_or_else(|e| panic!("the stock member cannot send to {to}: {e}"));
}

fn relayed_message(origin: Ipv4Addr, seq: u32, src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let msg = Relayed {
        origin,
        boot: 1,
        seq,
        src,
        src_port: PS5,
        kind: Kind::LimitedBroadcast,
        dst_port: PS5,
        payload: heapless::Vec::from_slice(payload).expect("a small payload"),
    };
    let mut buf = [0u8; MAX_LEN];
    msg.encode(&mut buf).expect("encode").to_vec()
}

#[test]
fn discovery_from_a_hostile_member_is_dropped_and_counted_and_sessions_stay_up() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    needs();
    require_cmd("bird", "bird2");
    require_cmd("wireguard-go", "wireguard-go");
    require_cmd("wg", "wireguard-tools");
    // r1 and r2 run meshd; r3 is a stock router (wireguard-go + BIRD) with
    // one tunnel, to r1: a real member whose inner traffic this test writes.
    let topo = Topology {
        routers: 3,
        links: vec![(1, 2), (1, 3)],
        blocked: vec![],
        extra_members: 0,
        main_options: discovery_options(),
    };
    let mut lab = SeedLab::build_topology("dsc6", meshd(), HOLD, &topo);
    lab.start(1);
    lab.start(2);
    let member = Ipv4Addr::new(10, 0, 0, 3);
    let tunnel = StockTunnel {
        peer: 1,
        local: member,
        remote: Ipv4Addr::new(10, 0, 0, 1),
        listen_port: 51820,
        peer_endpoint: "198.51.100.1:51820".into(),
        peer_key: lab.router(1).public_key.clone(),
        peer_asn: 65001,
    };
    stock::start(
        &mut lab,
        3,
        std::slice::from_ref(&tunnel),
        BirdBfd::STOCK,
        HOLD,
    )
    .unwrap();
    let up = |lab: &SeedLab| {
        ["r2", "r3"]
            .iter()
            .all(|m| lab.bgp_state(1, m).as_deref() == Some("Established"))
            && lab.status(1).is_some_and(|s| {
                s["members"].as_array().is_some_and(|ms| {
                    ms.iter()
                        .filter(|m| m["name"] == "r2" || m["name"] == "r3")
                        .all(|m| m["bfd"]["state"] == "Up")
                })
            })
    };
    let ready = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (up(&lab) && lab.ping(1, 3) && lab.ping(3, 1)).then_some(())
    });
    assert!(
        ready.is_some(),
        "r1 has no BGP+BFD with r2 and the stock r3, or c1 and c3 do not reach each other\n{}\n{}",
        lab.status_text(1),
        stock::birdc(&lab, 3, &["show", "protocols", "all", "t1"])
    );
    capture_open(&lab, 1);
    // Let BFD settle before counting its downs.
    std::thread::sleep(Duration::from_secs(1));

    let c1 = Listener::start(&lab.router(1).console, 1, PS5, None, false);
    let sock = lab
        .router(3)
        .ns
        .spawn(move || UdpSocket::bind((member, DISCOVERY_PORT)).expect("bind 10.0.0.3:51822"))
        .join()
        .unwrap();
    let trouble_before = session_trouble(&lab, 1);
    let start = discovery(&lab, 1);
    let c3 = console_addr(3);
    // Waits until r1's `counter` has moved by `by` since the start.
    let counted = |counter: &str, by: u64, what: &str| {
        let got = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            let now = discovery(&lab, 1);
            (moved(&start, &now, None, counter) >= by).then_some(now)
        });
        let now = got.unwrap_or_else(|| {
            panic!(
                "{what}: r1's {counter} did not move by {by}: {}\n{}",
                deltas(&start, &discovery(&lab, 1), None),
                evidence(&lab)
            )
        });
        println!(
            "  {what}: r1's counters since the start: {}",
            deltas(&start, &now, None)
        );
    };

    // (a) A valid message from the member, for its own console.
    let valid_mark = marker("member-valid");
    let valid = relayed_message(member, 1, c3, valid_mark.as_bytes());
    send_from_member(&sock, &valid);
    let heard = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        c1.heard(valid_mark.as_bytes()).first().cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "the member's valid message was not re-emitted on c1's LAN\n{}",
            evidence(&lab)
        )
    });
    assert_eq!(heard.from, SocketAddrV4::new(c3, PS5), "c1 heard {heard:?}");
    counted("emitted", 1, "(a) valid");

    // (b) The same bytes again: a replay.
    send_from_member(&sock, &valid);
    counted("replayed", 1, "(b) replayed");

    // (c) Another member's origin (r2's overlay and console), and the
    // member's own origin speaking for another member's console.
    let forged_mark = marker("member-forged");
    let forged = relayed_message(
        Ipv4Addr::new(10, 0, 0, 2),
        2,
        console_addr(2),
        forged_mark.as_bytes(),
    );
    send_from_member(&sock, &forged);
    counted("forged", 1, "(c) r2's origin");
    let foreign_src = relayed_message(member, 3, console_addr(2), forged_mark.as_bytes());
    send_from_member(&sock, &foreign_src);
    counted("forged", 2, "(c) r2's console");

    // (d) Garbage, and a valid message cut short.
    send_from_member(&sock, b"not a discovery message");
    counted("malformed", 1, "(d) garbage");
    let fresh = relayed_message(member, 4, c3, forged_mark.as_bytes());
    send_from_member(&sock, &fresh[..fresh.len() / 2]);
    counted("malformed", 2, "(d) truncated");

    // Nothing but (a) reached c1's LAN.
    std::thread::sleep(Duration::from_secs(2));
    let end = discovery(&lab, 1);
    let heard_valid = c1.heard(valid_mark.as_bytes()).len();
    let heard_forged = c1.heard(forged_mark.as_bytes()).len();
    let trouble_after = session_trouble(&lab, 1);
    println!(
        "hostile member: c1 heard the valid message {heard_valid} time(s), the forged ones {heard_forged}; r1's counters moved: {}; r1's (BFD downs, BGP flaps) {trouble_before:?} -> {trouble_after:?}",
        deltas(&start, &end, None)
    );
    assert_eq!(
        heard_valid, 1,
        "c1 heard the valid message {heard_valid} times"
    );
    assert_eq!(heard_forged, 0, "a forged message reached c1's LAN");
    let expect = [
        ("received", 6),
        ("emitted", 1),
        ("replayed", 1),
        ("forged", 2),
        ("malformed", 2),
        ("refused", 0),
        ("dropped_rate_in", 0),
    ];
    for (c, n) in expect {
        assert_eq!(
            moved(&start, &end, None, c),
            n,
            "r1's {c}: {}",
            deltas(&start, &end, None)
        );
    }
    // The member's sessions never noticed.
    assert!(up(&lab), "a session of r1 is down\n{}", lab.status_text(1));
    assert_eq!(
        trouble_before,
        trouble_after,
        "r1's BFD went down or BGP flapped\n{}",
        evidence(&lab)
    );
    assert!(
        lab.ping(1, 3) && lab.ping(3, 1),
        "c1 <-> c3 after the hostile input"
    );
}
