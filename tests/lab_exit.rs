//! Game exits in the lab: real meshd routers behind emulated NATs, Debian's
//! `stund` in the lab's internet, Debian's `stun` client and plain UDP
//! sockets in the console namespaces (see `../shared/design/CONSOLES.md`).
//!
//! ```text
//!   c1 ─ r1 ─ symmetric NAT ─┐
//!        r2 (open, exit) ────┤
//!        r3 (open, exit) ────┼─ inet (stund on 203.0.113.1 and .2)
//!   c4 ─ r4 ─ CGNAT ─────────┤
//!   c5 ─ r5 ─ CGNAT ─────────┘
//! ```
//!
//! r1 lists r2 and r3 as exits, r4 only r2, r5 only r3 (so r5 refuses r2's
//! default route: a member it does not list as an exit). Every router lists
//! its console (`list console`); consoles and routers 1, 4, 5 sit behind a
//! home router's masquerade and WAN policy (`home_router_nat`), as at home.
//!
//! One test, in order, because each step builds on the last (and a mapping
//! made early must sit idle for two minutes before the end):
//! 1. without meshd, c1 is behind a symmetric NAT: PlayStation type 3;
//! 2. with exit r2: independent mapping and filtering, r2's address, c1's
//!    own port (the reference test);
//! 3. two consoles on one exit (c1, c4 on r2: hairpinning) and on two (c4
//!    on r2, c5 on r3) send to each other's mapped addresses at once: every
//!    datagram arrives, from the other's mapped address; c5 (`exit_all`)
//!    downloads over TCP through r3 at full size;
//! 4. r2 loses power while c1 asks stund every 10 ms: the gap between the
//!    last answer through r2 and the first through r3 is at most 2 s (tens
//!    of ms in practice), and a fresh stun test reports independent mapping
//!    and filtering at r3's address; c4, whose only exit was r2, falls back
//!    to its home's own uplink; r2 comes back and c1 stays on r3;
//! 5. hostile input: r5 refused r2's default route and counted it; c1
//!    opening 1000 mappings is capped at r3 (quota 256 per home) and c5 (on
//!    r3 too) is not disturbed; a datagram to an exit port with no mapping
//!    is refused by the exit's kernel and counted there (and reaches no
//!    console);
//! 6. c5's mapping, idle for two minutes, still lets an unsolicited datagram
//!    from a new address through.
//!
//! (A member wrapping a source outside its home cannot be produced by a
//! real meshd; `mesh-core`'s node tests send one and check it is refused.)
//!
//! Needs root, iproute2, nftables, stun-client, stun-server.

mod lab;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lab::nat::{NatKind, NatLab};
use lab::stun::{
    attach_stun, binding_request, home_router_nat, parse_binding_response, stun_binding, stun_test,
    Filtering, UdpPeer, STUN_ALTERNATE, STUN_PORT, STUN_PRIMARY,
};
use lab::{json_path_present, luci_contract, require_cmd, require_root, sh, wait_for, Netns};

/// Waits up to `limit` for `f`; fails with the routers' logs.
fn until<T>(lab: &NatLab, limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for(limit, Duration::from_millis(200), f)
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}\n{}", lab.logs()))
}

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

const R2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const R3: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

fn primary() -> SocketAddrV4 {
    SocketAddrV4::new(STUN_PRIMARY, STUN_PORT)
}

/// The `exit` part of router `n`'s status.
fn exit_status(lab: &NatLab, n: usize) -> serde_json::Value {
    lab.status(n)
        .map(|s| s["exit"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// The names of the exits router `n` sees.
fn exits_seen(lab: &NatLab, n: usize) -> Vec<String> {
    exit_status(lab, n)["exits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn counter(lab: &NatLab, n: usize, name: &str) -> u64 {
    exit_status(lab, n)["counters"][name].as_u64().unwrap_or(0)
}

/// UDP datagrams the kernel of `ns` refused for want of a socket
/// (`Udp: NoPorts` in /proc/net/snmp).
fn udp_no_ports(ns: &Netns) -> u64 {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Two consoles learn their mapped addresses from stund, then send 100
/// datagrams each to the other's at once; each must hear all 100 of the
/// other's, from the other's mapped address.
fn consoles_meet(a: &UdpPeer, b: &UdpPeer, what: &str) -> (SocketAddrV4, SocketAddrV4) {
    let a_mapped = a
        .learn_mapped(primary())
        .expect("a learns its mapped address");
    let b_mapped = b
        .learn_mapped(primary())
        .expect("b learns its mapped address");
    let ha = a.start_blast(b_mapped, 100, Duration::from_millis(10));
    let hb = b.start_blast(a_mapped, 100, Duration::from_millis(10));
    let (got_a, got_b) = (ha.join().unwrap(), hb.join().unwrap());
    for (got, from, who) in [(&got_a, b_mapped, "a"), (&got_b, a_mapped, "b")] {
        let mut seqs: Vec<u32> = got.iter().map(|(_, s)| *s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 100, "{what}: {who} heard {} of 100", seqs.len());
        assert!(
            got.iter().all(|(src, _)| *src == from),
            "{what}: {who} heard sources other than {from}: {:?}",
            got.iter().find(|(src, _)| *src != from)
        );
    }
    (a_mapped, b_mapped)
}

/// Sends Binding requests to stund every 10 ms (for at most 10 s) until
/// an answer shows `exit`'s address; returns when the last answer through
/// another exit and that first one arrived.
fn probe_until_through(peer: &UdpPeer, exit: Ipv4Addr) -> (Option<Instant>, Option<Instant>) {
    let start = Instant::now();
    let mut last_other = None;
    let mut seq = 0u32;
    while start.elapsed() < Duration::from_secs(10) {
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&seq.to_be_bytes());
        peer.send(primary(), &binding_request(tid));
        seq += 1;
        let next = Instant::now() + Duration::from_millis(10);
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            let Some((_, msg)) = peer.recv(left.max(Duration::from_millis(1))) else {
                break;
            };
            let answered = (0..seq).rev().take(500).find_map(|s| {
                let mut tid = [0u8; 12];
                tid[..4].copy_from_slice(&s.to_be_bytes());
                parse_binding_response(&msg, tid)
            });
            match answered {
                Some(m) if *m.ip() == exit => return (last_other, Some(Instant::now())),
                Some(_) => last_other = Some(Instant::now()),
                None => {}
            }
        }
    }
    (last_other, None)
}

/// A TCP server in `inet` sends `size` bytes to a client in `console`;
/// returns the address the server saw and what the client received
/// (everything bounded to 20 s).
fn tcp_download(inet: &Netns, console: &Netns, size: usize) -> Result<(Ipv4Addr, usize), String> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let listener = inet
        .spawn(|| TcpListener::bind((STUN_ALTERNATE, 8080)))
        .join()
        .unwrap()
        .expect("listen");
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let start = Instant::now();
        let (mut s, peer) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("the server had no connection: {e}")),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&vec![7u8; size]);
        match peer {
            SocketAddr::V4(p) => Ok(*p.ip()),
            SocketAddr::V6(_) => Err("an IPv6 peer".into()),
        }
    });
    let client = console.spawn(|| {
        let to = SocketAddr::from((STUN_ALTERNATE, 8080));
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
            .map_err(|e| format!("the console's connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        while let Ok(n @ 1..) = s.read(&mut buf) {
            total += n;
        }
        Ok(total)
    });
    let received: Result<usize, String> = client.join().unwrap();
    let peer = server.join().unwrap();
    match (peer, received) {
        (Ok(peer), Ok(received)) => Ok((peer, received)),
        (peer, received) => Err(format!(
            "{}; {}",
            peer.err()
                .unwrap_or_else(|| "the server saw the client".into()),
            received
                .err()
                .unwrap_or_else(|| "the client connected".into())
        )),
    }
}

#[test]
fn consoles_get_an_open_nat_through_game_exits_that_fail_over_and_stay() {
    require_root();
    require_cmd("stun", "stun-client");
    require_cmd("stund", "stun-server");
    require_cmd("nft", "nftables");
    use NatKind::*;
    let mut lab = NatLab::build("ex", meshd(), &[Symmetric, Open, Open, Cgnat, Cgnat]);
    let _stund = attach_stun(&lab);
    for n in [1, 4, 5] {
        home_router_nat(&lab.router(n).ns);
    }
    lab.main_options
        .push(("lan_interface".into(), "lan".into()));
    for n in 1..=5 {
        lab.router_options
            .push((n, "console".into(), format!("192.168.{n}.10")));
    }
    for n in [2, 3] {
        lab.router_options.push((n, "exit".into(), "1".into()));
    }
    lab.router_options.push((5, "exit_all".into(), "1".into()));
    for (router, exit) in [(1, 2), (1, 3), (2, 3), (3, 2), (4, 2), (5, 3)] {
        lab.member_options
            .push((router, exit, "exit".into(), "1".into()));
    }
    lab.write_configs();

    // 1. No mesh: c1 is behind a symmetric NAT.
    let before = stun_test(&lab.router(1).console, STUN_PRIMARY, 40100);
    assert!(
        !before.mapping_independent,
        "without an exit c1 should see endpoint-dependent mapping: {}",
        before.raw
    );

    // 2. r2 is the exit (r3 starts later, so every console is on r2 first).
    for n in [1, 2, 4, 5] {
        lab.start(n);
    }
    let started = Instant::now();
    until(
        &lab,
        Duration::from_secs(30),
        "r1 and r4 see exit r2",
        || (exits_seen(&lab, 1) == ["r2"] && exits_seen(&lab, 4) == ["r2"]).then_some(()),
    );
    println!(
        "exit r2 offered and seen after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report = stun_test(&lab.router(1).console, STUN_PRIMARY, 40000);
    println!("c1 through r2: {}", report.summary);
    assert!(report.mapping_independent, "{}", report.raw);
    assert_eq!(report.filtering, Filtering::Independent, "{}", report.raw);
    assert_eq!(
        report.mapped,
        Some(SocketAddrV4::new(R2, 40000)),
        "r2's address, c1's own port"
    );
    let c1 = &exit_status(&lab, 1)["consoles"][0];
    assert_eq!(c1["exit"], "r2", "{c1}");
    assert_eq!(c1["public"], R2.to_string(), "{c1}");
    assert_eq!(c1["nat"]["playstation"], 2, "{c1}");
    assert_eq!(c1["nat"]["xbox"], "Open", "{c1}");
    assert_eq!(c1["nat"]["switch"], "A", "{c1}");
    // Here, with a console and an exit, meshd writes every field the LuCI
    // status view's consoles panel reads (its contract).
    let doc = lab.status(1).unwrap();
    for path in luci_contract()["consoles"].as_array().unwrap() {
        let path = path.as_str().unwrap();
        assert!(
            json_path_present(&doc, path),
            "ubus consoles: the status view reads {path}, meshd does not write it: {}",
            doc["exit"]
        );
    }

    lab.start(3);
    until(
        &lab,
        Duration::from_secs(30),
        "r1 sees both exits, r5 sees r3",
        || (exits_seen(&lab, 1).len() == 2 && exits_seen(&lab, 5) == ["r3"]).then_some(()),
    );

    // 3. Two consoles on one exit (hairpinning at r2); both use local
    // port 41000, so r2 keeps it for one and gives the other another of
    // the same parity.
    let p1 = UdpPeer::bind(&lab.router(1).console, 41000);
    let p4 = UdpPeer::bind(&lab.router(4).console, 41000);
    let (m1, m4) = consoles_meet(&p1, &p4, "c1 and c4 on r2");
    println!("c1 at {m1}, c4 at {m4}, both through r2");
    assert_eq!((*m1.ip(), *m4.ip()), (R2, R2));
    assert_ne!(m1.port(), m4.port(), "no port overloading");
    assert_eq!(m1.port() % 2, m4.port() % 2, "port parity");
    assert!(counter(&lab, 2, "hairpin") >= 200, "hairpinned at r2");
    // Two exits: c4 on r2, c5 on r3.
    let p5 = UdpPeer::bind(&lab.router(5).console, 42000);
    let (_, m5) = consoles_meet(&p4, &p5, "c4 on r2, c5 on r3");
    assert_eq!(*m5.ip(), R3);
    let c5_idle_since = Instant::now();
    // exit_all: c5's TCP leaves through r3 too (the kernel's masquerade
    // there), at full size (the MSS clamped to the wrapped path).
    let (peer, received) =
        tcp_download(&lab.inet, &lab.router(5).console, 2 << 20).unwrap_or_else(|e| {
            // What the path looked like: the exit's routes and rules, the
            // console's router's policy, and every router's log.
            let r3 = &lab.router(3).ns;
            let r5 = &lab.router(5).ns;
            panic!(
                "c5's TCP through r3: {e}\n--- r3 routes ---\n{}\n--- r3 rules ---\n{}\n\
                 --- r3 nft ---\n{}\n--- nft processes ---\n{}\n--- r5 rules ---\n{}\n\
                 --- r5 routes ---\n{}\n\
                 --- r3 status ---\n{}\n--- r5 status ---\n{}\n{}",
                r3.exec(&["ip", "route", "show", "table", "all"]),
                r3.exec(&["ip", "rule"]),
                r3.exec(&["nft", "list", "ruleset"]),
                sh(&[
                    "sh",
                    "-c",
                    "ps -eo pid,stat,etime,args | grep '[n]ft -f' || true"
                ]),
                r5.exec(&["ip", "rule"]),
                r5.exec(&["ip", "route", "show", "table", "all"]),
                lab.status(3).map(|s| s.to_string()).unwrap_or_default(),
                lab.status(5).map(|s| s.to_string()).unwrap_or_default(),
                lab.logs()
            )
        });
    println!("c5's TCP through r3: {received} bytes, server saw {peer}");
    assert_eq!(peer, R3, "the server sees r3's address");
    assert_eq!(received, 2 << 20);

    // 4. r2 loses power while c1 asks stund for its mapping every 10 ms
    // from one socket: the time from the cut to the first answer through
    // r3 is what a game sees.
    let c1_probe = UdpPeer::bind(&lab.router(1).console, 43000);
    let prober = std::thread::spawn(move || probe_until_through(&c1_probe, R3));
    std::thread::sleep(Duration::from_millis(300));
    lab.power_cut(2);
    let cut = Instant::now();
    let (last_r2, first_r3) = prober.join().unwrap();
    let first_r3 = first_r3.unwrap_or_else(|| panic!("c1 never got through r3\n{}", lab.logs()));
    let last_r2 = last_r2.expect("answers through r2 before the cut");
    let moved = first_r3.saturating_duration_since(cut);
    let gap = first_r3.saturating_duration_since(last_r2);
    println!(
        "r2 cut: c1 through r3 {} ms after the cut; {} ms between the last answer through r2 and the first through r3",
        moved.as_millis(),
        gap.as_millis()
    );
    assert!(gap <= Duration::from_secs(2), "{} ms", gap.as_millis());
    let report = stun_test(&lab.router(1).console, STUN_PRIMARY, 43500);
    println!("c1 through r3: {}", report.summary);
    assert!(report.mapping_independent, "{}", report.raw);
    assert_eq!(report.filtering, Filtering::Independent, "{}", report.raw);
    assert_eq!(report.mapped, Some(SocketAddrV4::new(R3, 43500)));
    // c4 had only r2: its UDP takes its home's own uplink again.
    let c4_home = until(
        &lab,
        Duration::from_secs(5),
        "c4 through its own uplink",
        || stun_binding(&lab.router(4).console, primary(), 41020).filter(|m| *m.ip() != R2),
    );
    assert_eq!(*c4_home.ip(), lab.public_addr(4));
    // r2 comes back; c1 stays on r3.
    lab.power_on(2);
    until(&lab, Duration::from_secs(30), "r1 sees r2 again", || {
        (exits_seen(&lab, 1).len() == 2).then_some(())
    });
    assert_eq!(
        stun_binding(&lab.router(1).console, primary(), 43600).map(|m| *m.ip()),
        Some(R3),
        "sticky: c1 stays on r3"
    );
    assert_eq!(exit_status(&lab, 1)["consoles"][0]["exit"], "r3");

    // 5. Hostile input (c1 is on r3 now).
    assert!(
        lab.status(5).unwrap()["counters"]["hijacks_refused"]
            .as_u64()
            .unwrap()
            >= 1,
        "r5 refused and counted r2's default route"
    );
    // c1 opens 1000 mappings (2000 a second, so none is lost on the way);
    // r3 holds 256 for r1's home.
    let flood = lab.router(1).console.spawn(|| {
        for port in 50000..51000u16 {
            if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) {
                let _ = s.send_to(b"flood", (STUN_PRIMARY, 9));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    flood.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r3 = exit_status(&lab, 3);
    let from_r1 = r3["mappings"]["r1"].as_u64().unwrap_or(0);
    println!(
        "flood: r3 holds {from_r1} mappings of r1's, refused {}",
        r3["counters"]["quota"]
    );
    assert_eq!(from_r1, 256, "the quota");
    // All but those that found room (r1 held a few mappings already).
    let refused = r3["counters"]["quota"].as_u64().unwrap();
    assert!((1000 - 256..=1000).contains(&refused), "{refused}");
    // Other homes are not disturbed: c5 (another home on r3) opens one more.
    assert_eq!(
        stun_binding(&lab.router(5).console, primary(), 42010).map(|m| *m.ip()),
        Some(R3),
        "c5 still gets through r3"
    );
    // A datagram to an exit port nobody holds: the exit's kernel refuses it.
    let refused_before = udp_no_ports(&lab.router(3).ns);
    let probe = lab.inet.spawn(|| {
        let s = UdpSocket::bind((STUN_ALTERNATE, 0)).unwrap();
        s.send_to(b"unsolicited", (R3, 45555)).unwrap();
    });
    probe.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(udp_no_ports(&lab.router(3).ns), refused_before + 1);

    // 6. c5's mapping idle for two minutes: a datagram from an address c5
    // never sent to still gets in.
    let idle = Duration::from_secs(125);
    if let Some(left) = idle.checked_sub(c5_idle_since.elapsed()) {
        println!("waiting {} s for c5's mapping to idle", left.as_secs());
        std::thread::sleep(left);
    }
    let stranger = lab.inet.spawn(move || {
        let s = UdpSocket::bind((STUN_ALTERNATE, 0)).unwrap();
        s.send_to(b"after two minutes", m5).unwrap();
    });
    stranger.join().unwrap();
    let got = p5.recv(Duration::from_secs(2));
    assert_eq!(
        got.as_ref()
            .map(|(from, bytes)| (*from.ip(), bytes.as_slice())),
        Some((STUN_ALTERNATE, &b"after two minutes"[..])),
        "after {} s idle",
        c5_idle_since.elapsed().as_secs()
    );
}
