//! The STUN tools of `lab/stun.rs` against the kernel NATs of `lab/nat.rs`,
//! no meshd running: Debian's `stund` on two addresses in the lab's
//! internet, its `stun` client and our own Binding request from console
//! namespaces, and two consoles hole-punching towards each other's mapped
//! addresses.
//!
//! The lab is `[Symmetric, Open, Cone]`. Its routers only route LAN → WAN;
//! nothing upstream knows a way back to 192.168.N.0/24, so every router gets
//! a home router's masquerade and WAN input policy ([`home_router_nat`]).
//! What each console then sits behind:
//! - c1: its router's cone behind a symmetric NAT box: a symmetric NAT
//!   (endpoint-dependent mapping, random ports);
//! - c2: its router's own masquerade on a public address: a cone NAT
//!   (endpoint-independent mapping, port preserved, address-and-port-
//!   dependent filtering), not "open". With a port forward of the console's
//!   ports added it is a full cone for those ports;
//! - c3: its router's cone behind a cone NAT box: still a cone.
//!
//! Before its masquerade, the open router itself is "Open"; after, its WAN
//! input policy makes it "Firewall".
//!
//! Hole punching: c2 and c3 (both endpoint-independent mapping) learn their
//! mapped addresses from stund with their game socket, then send to each
//! other at once, each order once (one side 5 ms ahead): both get through,
//! all but the first datagram of the side that started first, which dies at
//! the other's NAT before its console has sent. That needs the WAN input
//! drop of `home_router_nat`: without it, when c3 started first, its first
//! datagram hit r2 before c2 had sent, r2 answered with ICMP and kept a
//! conntrack entry for it, c2's masquerade then had to pick another port
//! (the conntrack clash of nat.rs), c3's NAT dropped that unknown port and
//! nothing got through either way. c1 (endpoint-dependent mapping) and c3
//! get nothing through either way: c1's NAT gives c1 a new port towards c3,
//! which c3's port-dependent filter has never seen, and c3's datagrams go
//! to the mapping c1 made for stund, which lets only stund in.
//!
//! Every behavioural check is collected and reported together, so one run
//! shows every failure (and a run with each condition negated showed each
//! check can fail).
//!
//! Needs root, iproute2, nftables, stun-client, stun-server.

mod lab;

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use lab::nat::{NatKind, NatLab};
use lab::stun::{
    attach_stun, home_router_nat, parse_binding_response, parse_stun_output, stun_binding,
    stun_test, Filtering, StunReport, UdpPeer, STUN_PRIMARY,
};
use lab::{require_cmd, require_root, Netns};

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

/// Behavioural checks, reported all at once at the end.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl Debug) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("{what}: {detail:?}"));
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(what, ok, format_args!("got {got:?}, want {want:?}"));
    }
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn show(who: &str, r: &StunReport) {
    println!(
        "{who:<34} {:<72} mapped {:?}",
        r.summary,
        r.mapped.map(|m| m.to_string())
    );
}

/// The stun client's output for each kind of NAT, as recorded in a lab
/// (stun-client 0.97 against stund 0.97; the NATs of nat.rs, plus a port
/// forward for the full cone and an nftables set of (peer address, port)
/// for the address-dependent filter). Needs neither root nor stun.
#[test]
fn stun_output_of_every_nat_type_parses() {
    let stderr = |port: u16| {
        format!(
            "Opened port {port} with fd 3\n\
             Received stun message: 88 bytes\n\
             MappedAddress = 203.0.113.23:{port}\n\
             SourceAddress = 203.0.113.1:3478\n\
             ChangedAddress = 203.0.113.2:3479\n\
             XorMappedAddress = 203.0.113.23:{port}\n\
             ServerName = Vovida.org 0.97\n\
             Received message of type 257  id=1\n\
             Received stun message: 88 bytes\n\
             MappedAddress = 203.0.113.23:{}\n\
             Received message of type 257  id=2\n",
            port + 1
        )
    };
    let out = |line: &str, value: &str| {
        format!("STUN client version 0.97\nPrimary: {line}\t\nReturn value is 0x{value}\n")
    };
    use Filtering::*;
    // (independent mapping, filtering, open, preserves port, hairpin)
    type Expected = (bool, Filtering, bool, Option<bool>, Option<bool>);
    let cases: [(&str, &str, Expected); 7] = [
        (
            "Open",
            "000001",
            (true, Independent, true, Some(true), Some(true)),
        ),
        (
            "Independent Mapping, Independent Filter, preserves ports, no hairpin",
            "000013",
            (true, Independent, false, Some(true), Some(false)),
        ),
        (
            "Independent Mapping, Address Dependent Filter, preserves ports, no hairpin",
            "000015",
            (true, AddressDependent, false, Some(true), Some(false)),
        ),
        (
            "Independent Mapping, Port Dependent Filter, preserves ports, no hairpin",
            "000017",
            (true, PortDependent, false, Some(true), Some(false)),
        ),
        (
            "Dependent Mapping, random port, no hairpin",
            "000018",
            (false, Unknown, false, Some(false), Some(false)),
        ),
        (
            "Firewall",
            "00000b",
            (true, Unknown, false, Some(true), Some(true)),
        ),
        (
            "Blocked or could not reach STUN server",
            "00001c",
            (false, Unknown, false, Some(true), None),
        ),
    ];
    for (line, value, expected) in cases {
        let r = parse_stun_output(&out(line, value), &stderr(40000), 40000);
        assert_eq!(r.summary, line);
        let got = (
            r.mapping_independent,
            r.filtering,
            r.open,
            r.preserves_port,
            r.hairpin,
        );
        assert_eq!(got, expected, "{line}");
        assert_eq!(r.mapped, Some(sa(Ipv4Addr::new(203, 0, 113, 23), 40000)));
        assert_eq!(r.return_value, u32::from_str_radix(value, 16).ok());
    }
    // Test I's response need not come first: the address is the one its
    // block (closed by `id=1`) carried.
    let late = "MappedAddress = 203.0.113.23:40001\n\
                Received message of type 257  id=2\n\
                MappedAddress = 203.0.113.23:40000\n\
                Received message of type 257  id=1\n";
    let r = parse_stun_output(&out("Open", "000001"), late, 40000);
    assert_eq!(r.mapped, Some(sa(Ipv4Addr::new(203, 0, 113, 23), 40000)));
    // Nothing printed (a timeout): nothing known.
    let r = parse_stun_output("", "", 40000);
    assert!(!r.mapping_independent && !r.open);
    assert_eq!(
        (r.filtering, r.mapped, r.preserves_port),
        (Unknown, None, None)
    );
}

/// A Binding response stund 0.97 sent to a request of ours from
/// 10.9.3.2:45000 behind a cone NAT (captured in a lab): MAPPED-ADDRESS,
/// SOURCE-ADDRESS, CHANGED-ADDRESS, XOR-MAPPED-ADDRESS (0x0020) and SERVER.
#[test]
fn binding_response_from_stund_parses() {
    let hex = "010100442112a4420102030405060708090a0b0c000100080001afc8cb007117\
               0004000800010d96cb0071010005000800010d97cb0071020020000800018eda\
               ea12d55580220010566f766964612e6f726720302e393700";
    let msg: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let transaction: [u8; 12] = std::array::from_fn(|i| i as u8 + 1);
    let mapped = sa(Ipv4Addr::new(203, 0, 113, 23), 45000);
    assert_eq!(parse_binding_response(&msg, transaction), Some(mapped));
    // MAPPED-ADDRESS alone (the XOR one's type changed to an unknown one).
    let mut plain = msg.clone();
    plain[56..58].copy_from_slice(&[0x7f, 0x20]);
    assert_eq!(parse_binding_response(&plain, transaction), Some(mapped));
    // Another transaction's answer, a truncated one.
    assert_eq!(parse_binding_response(&msg, [0; 12]), None);
    assert_eq!(parse_binding_response(&msg[..60], transaction), None);
}

#[test]
fn stun_tools_classify_the_kernel_nats() {
    require_root();
    for (cmd, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("ss", "iproute2"),
        ("stun", "stun-client"),
        ("stund", "stun-server"),
    ] {
        require_cmd(cmd, pkg);
    }
    let started = Instant::now();
    let lab = NatLab::build(
        "st",
        meshd(),
        &[NatKind::Symmetric, NatKind::Open, NatKind::Cone],
    );
    let stund = attach_stun(&lab);
    let (primary, alternate) = (stund.primary(), stund.alternate());
    let public = |n| lab.public_addr(n);
    let router = |n| &lab.router(n).ns;
    let console = |n: usize| -> &Netns { &lab.router(n).console };
    let mut c = Checks::default();
    let mut raw = String::new();
    let mut report = |who: &str, r: StunReport| -> StunReport {
        show(who, &r);
        raw.push_str(&format!("=== {who}\n{}\n", r.raw));
        r
    };

    // The open router itself, before it masquerades: no NAT, no filter.
    let r = report(
        "r2 itself (public address)",
        stun_test(router(2), STUN_PRIMARY, 40000),
    );
    c.eq("r2 itself: open", r.open, true);
    c.eq("r2 itself: filtering", r.filtering, Filtering::Independent);
    c.eq("r2 itself: mapped", r.mapped, Some(sa(public(2), 40000)));

    for n in 1..=3 {
        home_router_nat(router(n));
    }

    // Its WAN input policy now drops the change-address answers.
    let r = report(
        "r2 itself, WAN input dropped",
        stun_test(router(2), STUN_PRIMARY, 40010),
    );
    c.eq("r2 firewalled: summary", r.summary.as_str(), "Firewall");
    c.eq("r2 firewalled: open", r.open, false);
    c.eq(
        "r2 firewalled: mapped",
        r.mapped,
        Some(sa(public(2), 40010)),
    );

    // c1: symmetric.
    let r = report(
        "c1 (router cone + symmetric NAT)",
        stun_test(console(1), STUN_PRIMARY, 41000),
    );
    c.eq("c1: independent mapping", r.mapping_independent, false);
    c.eq("c1: open", r.open, false);
    c.eq("c1: preserves port", r.preserves_port, Some(false));
    c.eq(
        "c1: mapped address",
        r.mapped.map(|m| *m.ip()),
        Some(public(1)),
    );

    // c2: the router's own masquerade on a public address is a cone NAT.
    let r = report(
        "c2 (router masquerade, public)",
        stun_test(console(2), STUN_PRIMARY, 42000),
    );
    c.eq("c2: independent mapping", r.mapping_independent, true);
    c.eq("c2: filtering", r.filtering, Filtering::PortDependent);
    c.eq("c2: open", r.open, false);
    c.eq("c2: preserves port", r.preserves_port, Some(true));
    c.eq("c2: hairpin", r.hairpin, Some(false));
    c.eq("c2: mapped", r.mapped, Some(sa(public(2), 42000)));

    // c3: cone behind cone.
    let r = report(
        "c3 (router cone + cone NAT)",
        stun_test(console(3), STUN_PRIMARY, 43000),
    );
    c.eq("c3: independent mapping", r.mapping_independent, true);
    c.eq("c3: filtering", r.filtering, Filtering::PortDependent);
    c.eq("c3: open", r.open, false);
    c.eq("c3: preserves port", r.preserves_port, Some(true));
    c.eq("c3: mapped", r.mapped, Some(sa(public(3), 43000)));

    // c2 with its ports forwarded: a full cone for those ports (what a game
    // exit should be).
    let forward = lab.dir.path().join("r2-forward.nft");
    std::fs::write(
        &forward,
        "table ip forward {\n\
         \tchain prerouting {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"wan\" udp dport 42500-42501 dnat to 192.168.2.10\n\
         \t}\n\
         }\n",
    )
    .unwrap();
    router(2).exec(&["nft", "-f", forward.to_str().unwrap()]);
    let r = report(
        "c2, ports forwarded",
        stun_test(console(2), STUN_PRIMARY, 42500),
    );
    c.eq(
        "c2 forwarded: independent mapping",
        r.mapping_independent,
        true,
    );
    c.eq(
        "c2 forwarded: filtering",
        r.filtering,
        Filtering::Independent,
    );
    c.eq("c2 forwarded: mapped", r.mapped, Some(sa(public(2), 42500)));

    // Our own Binding request, one local port to both server addresses.
    let both = |n: usize, port: u16| {
        let a = stun_binding(console(n), primary, port);
        let b = stun_binding(console(n), alternate, port);
        println!("c{n} binding from :{port}: primary {a:?}, alternate {b:?}");
        (a, b)
    };
    let (a, b) = both(1, 41100);
    c.check("c1 binding: answered", a.is_some() && b.is_some(), (a, b));
    c.check("c1 binding: a new port per destination", a != b, (a, b));
    c.eq("c1 binding: address", a.map(|m| *m.ip()), Some(public(1)));
    for (n, port) in [(2, 42100), (3, 43100)] {
        let (a, b) = both(n, port);
        let want = Some(sa(public(n), port));
        c.eq(&format!("c{n} binding: primary"), a, want);
        c.eq(&format!("c{n} binding: alternate"), b, want);
    }

    // Hole punching: learn, then both send at once, `x` 5 ms ahead (each
    // order once: the side that starts first loses its first datagram at
    // the other's NAT, and must not lose its mapping to the other's).
    const COUNT: u32 = 50;
    const EVERY: Duration = Duration::from_millis(20);
    const LEAD: Duration = Duration::from_millis(5);
    let punch = |x: usize, px: u16, y: usize, py: u16| {
        let (a, b) = (UdpPeer::bind(console(x), px), UdpPeer::bind(console(y), py));
        let (ma, mb) = (a.learn_mapped(primary), b.learn_mapped(primary));
        let (Some(ma), Some(mb)) = (ma, mb) else {
            return Err(format!("c{x} mapped {ma:?}, c{y} mapped {mb:?}"));
        };
        let ta = a.start_blast(mb, COUNT, EVERY);
        std::thread::sleep(LEAD);
        let tb = b.start_blast(ma, COUNT, EVERY);
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        println!(
            "c{x} {ma} <-> c{y} {mb}: c{x} got {} (first seq {:?}), c{y} got {} (first seq {:?})",
            ra.len(),
            ra.first().map(|r| r.1),
            rb.len(),
            rb.first().map(|r| r.1)
        );
        Ok([(x, ma, ra), (y, mb, rb)])
    };
    for (x, px, y, py) in [(2, 42200, 3, 43200), (3, 43400, 2, 42400)] {
        let what = format!("cone c{x} first <-> cone c{y}");
        match punch(x, px, y, py) {
            Err(e) => c.check(&format!("{what}: mapped addresses"), false, e),
            Ok([(_, mx, rx), (_, my, ry)]) => {
                c.eq(&format!("{what}: c{x} mapped"), mx, sa(public(x), px));
                c.eq(&format!("{what}: c{y} mapped"), my, sa(public(y), py));
                for (n, got, from) in [(x, &rx, my), (y, &ry, mx)] {
                    let seqs: Vec<u32> = got.iter().map(|r| r.1).collect();
                    c.check(
                        &format!("{what}: c{n} got all but the first few"),
                        got.len() as u32 >= COUNT - 3 && seqs.contains(&(COUNT - 1)),
                        &seqs,
                    );
                    c.check(
                        &format!("{what}: c{n} heard only the peer's mapped address"),
                        got.iter().all(|r| r.0 == from),
                        got.iter()
                            .map(|r| r.0)
                            .collect::<std::collections::BTreeSet<_>>(),
                    );
                }
            }
        }
    }
    match punch(1, 41200, 3, 43300) {
        Err(e) => c.check("symmetric <-> cone: mapped addresses", false, e),
        Ok([(_, _, r1), (_, _, r3)]) => {
            c.eq("symmetric <-> cone: c1 got", r1.len(), 0);
            c.eq("symmetric <-> cone: c3 got", r3.len(), 0);
        }
    }

    println!(
        "{} checks passed, {} failed; {:.1} s",
        c.passed,
        c.failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !c.failed.is_empty() {
        panic!(
            "failed:\n  {}\n{raw}\n{}",
            c.failed.join("\n  "),
            lab.nat_report()
        );
    }
    if std::env::var_os("STUN_LAB_RAW").is_some() {
        println!("{raw}");
    }
}
