//! `meshd::sys` (TUN device and rtnetlink client) against the real kernel.
//!
//! Runs as root, each test inside network namespaces it creates (`ip netns
//! add mdsys<pid>`, `mdrule<pid>`, ...) and always deletes, even when a check
//! fails. The checks run on a thread that has `setns`-ed into a namespace, so
//! the TUN device, the netlink socket and the test's own UDP sockets all live
//! there; the `ip -n` commands look at the namespace from outside.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use mesh_core::Prefix;
use meshd::consoles::{self, ConsoleSpec, How, PolicyRouting, Vendor};
use meshd::sys::errno;
use meshd::sys::netlink::{
    Neighbour, Netlink, Route, RouteKind, Rule, AF_INET, AF_INET6, NUD_PERMANENT, RTPROT_MESHD,
    RT_TABLE_MAIN,
};
use meshd::sys::offload;
use meshd::sys::tun::Tun;
use nix::sched::{setns, CloneFlags};

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace called `<prefix><pid>` (each test its own prefix, as
    /// the tests run in parallel).
    fn create(prefix: &str) -> Netns {
        let name = format!("{prefix}{}", std::process::id());
        // A leftover of an earlier run that had this pid: ignore errors.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running `ip` (install iproute2)");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

/// Runs `ip -n <ns> <args>`; returns (success, stdout + stderr).
fn ip_try(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("running `ip`");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `ip -n <ns> <args>`, which must succeed; returns its output.
fn ip(ns: &str, args: &[&str]) -> String {
    let (ok, text) = ip_try(ns, args);
    assert!(ok, "ip -n {ns} {}: {text}", args.join(" "));
    text
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Our routes, in a stable order.
fn ours(nl: &mut Netlink) -> Vec<Route> {
    let mut routes = nl
        .routes_by_protocol(RTPROT_MESHD)
        .expect("routes_by_protocol");
    routes.sort_by_key(|r| (r.dst, r.prefix_len, r.metric));
    routes
}

/// Reads every packet waiting on the TUN.
fn drain(tun: &Tun) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut buf = vec![0u8; offload::MAX_FRAME];
    let mut segment = vec![0u8; offload::MAX_FRAME];
    loop {
        match tun.read(&mut buf) {
            // A frame: the offload header, then a packet (or many).
            Ok(n) => {
                offload::split(&mut buf[..n], &mut segment, |p| packets.push(p.to_vec()))
                    .expect("a frame from the TUN");
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return packets,
            Err(e) => panic!("reading the TUN: {e}"),
        }
        assert!(packets.len() < 10_000, "TUN keeps producing packets");
    }
}

/// Waits up to 3 s for a packet on the TUN that `want` accepts, returning it
/// and whatever else came first.
fn wait_packet(tun: &Tun, want: impl Fn(&[u8]) -> bool) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut others = Vec::new();
    while Instant::now() < deadline {
        for p in drain(tun) {
            if want(&p) {
                return (Some(p), others);
            }
            others.push(p);
        }
        thread::sleep(Duration::from_millis(10));
    }
    (None, others)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0: none).
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn describe(packets: &[Vec<u8>]) -> String {
    packets
        .iter()
        .map(|p| format!("{:02x?}", &p[..p.len().min(48)]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/sys_netns.rs creates network namespaces and TUN devices and must run as root \
         (e.g. `sudo -E cargo test -p meshd --test sys_netns`); it is not skipped"
    );
}

/// Runs `f` on a thread that has entered namespace `ns`, then deletes the
/// namespaces `nss` (even when `f` failed) and passes a failure of `f` on.
fn run_in(ns: &str, nss: Vec<Netns>, f: impl FnOnce() + Send + 'static) {
    let path = format!("/run/netns/{ns}");
    let result = thread::Builder::new()
        .name("in-netns".into())
        .stack_size(16 << 20)
        .spawn(move || {
            let file = File::open(path).expect("opening the netns file");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
            f();
        })
        .expect("spawning the test thread")
        .join();
    drop(nss);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Adds a veth pair `a` (in `ns`) / `b` (in `peer_ns`, `ns` if `None`) with
/// the given IPv4 addresses (prefix and all, or none), both ends up.
fn veth(
    ns: &str,
    a: &str,
    a_addr: Option<&str>,
    peer_ns: Option<&str>,
    b: &str,
    b_addr: Option<&str>,
) {
    let peer_ns = peer_ns.unwrap_or(ns);
    ip(
        ns,
        &[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", peer_ns,
        ],
    );
    for (ns, dev, addr) in [(ns, a, a_addr), (peer_ns, b, b_addr)] {
        if let Some(addr) = addr {
            ip(ns, &["addr", "add", addr, "dev", dev]);
        }
        ip(ns, &["link", "set", dev, "up"]);
    }
}

/// The MAC address of `dev` in `ns`, as `ip link` prints it.
fn mac_of(ns: &str, dev: &str) -> String {
    let line = ip(ns, &["-o", "link", "show", "dev", dev]);
    let mut words = line.split_whitespace();
    words.find(|&w| w == "link/ether");
    words
        .next()
        .unwrap_or_else(|| panic!("no link/ether in {line}"))
        .to_string()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[test]
fn tun_and_netlink_in_a_network_namespace() {
    need_root();
    let ns = Netns::create("mdsys");
    let name = ns.name.clone();
    run_in(&ns.name.clone(), vec![ns], move || checks(&name));
}

fn checks(ns: &str) {
    // --- TUN device -------------------------------------------------------
    let tun = Tun::create("mdtun%d").expect("creating the TUN");
    let dev = tun.name().to_string();
    assert_eq!(dev, "mdtun0", "the kernel fills in %d");
    let links = ip(ns, &["-o", "link", "show"]);
    assert!(
        links.contains(&format!(": {dev}:")),
        "{dev} not in\n{links}"
    );
    let e = Tun::create(&dev).expect_err("a second open of a busy TUN");
    eprintln!("second TUN of the same name: {e}");
    let e = Tun::create("this-name-is-too-long").expect_err("a 21-byte name");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

    // --- links --------------------------------------------------------------
    let mut nl = Netlink::open().expect("opening netlink");
    let idx = nl.link_index(&dev).expect("link_index");
    let line = ip(ns, &["-o", "link", "show", "dev", &dev]);
    assert!(
        line.starts_with(&format!("{idx}: {dev}:")),
        "index {idx}, ip says: {line}"
    );
    let e = nl
        .link_index("nosuchdev0")
        .expect_err("a missing interface");
    assert_eq!(errno(&e), Some(nix::libc::ENODEV), "{e}");
    assert!(e.to_string().contains("nosuchdev0"), "{e}");

    nl.link_set(idx, true, Some(1420))
        .expect("link_set up, mtu 1420");
    let line = ip(ns, &["-o", "link", "show", "dev", &dev]);
    assert!(line.contains(" mtu 1420 "), "{line}");
    let flags = &line[line.find('<').unwrap() + 1..line.find('>').unwrap()];
    assert!(flags.split(',').any(|f| f == "UP"), "{line}");
    assert!(!flags.split(',').any(|f| f == "NO-CARRIER"), "{line}");
    let e = nl.link_set(idx, true, Some(10)).expect_err("an MTU of 10");
    eprintln!("mtu 10: {e}");

    // --- addresses ----------------------------------------------------------
    for (a, len) in [
        ("10.0.0.1", 24),
        ("fd00::1", 64),
        ("10.0.0.2", 24),
        ("fd00::2", 64),
    ] {
        nl.addr_add(idx, addr(a), len).expect("addr_add");
        nl.addr_add(idx, addr(a), len)
            .expect("addr_add is idempotent");
    }
    let addrs = ip(ns, &["-o", "addr", "show", "dev", &dev]);
    for want in [
        "inet 10.0.0.1/24",
        "inet 10.0.0.2/24",
        "inet6 fd00::1/64",
        "inet6 fd00::2/64",
    ] {
        assert!(addrs.contains(want), "{want} not in\n{addrs}");
    }
    assert!(
        !addrs.contains("tentative"),
        "IPv6 addresses need NODAD:\n{addrs}"
    );
    nl.addr_add(idx, addr("10.0.0.9"), 24).unwrap();
    nl.addr_add(idx, addr("fd00::9"), 64).unwrap();
    nl.addr_del(idx, addr("10.0.0.9"), 24).expect("addr_del v4");
    nl.addr_del(idx, addr("fd00::9"), 64).expect("addr_del v6");
    nl.addr_del(idx, addr("fd00::9"), 64)
        .expect("addr_del is idempotent");
    let addrs = ip(ns, &["-o", "addr", "show", "dev", &dev]);
    assert!(
        !addrs.contains("10.0.0.9") && !addrs.contains("fd00::9"),
        "{addrs}"
    );

    // --- routes -------------------------------------------------------------
    let mut r4 = Route::new(addr("192.168.4.0"), 24, idx);
    r4.src = Some(addr("10.0.0.1"));
    let mut r6 = Route::new(addr("fd00:4::"), 48, idx);
    r6.src = Some(addr("fd00::1"));
    assert_eq!((r4.protocol, r4.table), (0xC8, RT_TABLE_MAIN));
    nl.route_replace(&r4).expect("route_replace v4");
    nl.route_replace(&r6).expect("route_replace v6");
    let show4 = ip(ns, &["route", "show", "proto", "200"]);
    assert!(
        show4.contains(&format!("192.168.4.0/24 dev {dev} scope link src 10.0.0.1")),
        "{show4}"
    );
    let show6 = ip(ns, &["-6", "route", "show", "proto", "200"]);
    assert!(
        show6.contains(&format!("fd00:4::/48 dev {dev} ")),
        "{show6}"
    );
    assert!(show6.contains("src fd00::1 "), "{show6}");
    // The kernel gives IPv6 routes without a metric 1024; IPv4 ones 0 (no
    // RTA_PRIORITY in the dump).
    let r6_1024 = Route {
        metric: Some(1024),
        ..r6.clone()
    };
    assert_eq!(ours(&mut nl), vec![r4.clone(), r6_1024.clone()]);
    // Other protocols' routes (the kernel's prefix routes) are not listed.
    assert!(nl
        .routes_by_protocol(2)
        .unwrap()
        .iter()
        .any(|r| r.dst == addr("10.0.0.0")));

    // Replace with another source: in place.
    r4.src = Some(addr("10.0.0.2"));
    r6.src = Some(addr("fd00::2"));
    nl.route_replace(&r4).unwrap();
    nl.route_replace(&r6).unwrap();
    let r6_1024 = Route {
        metric: Some(1024),
        ..r6.clone()
    };
    assert_eq!(ours(&mut nl), vec![r4.clone(), r6_1024.clone()]);
    let show4 = ip(ns, &["route", "show", "proto", "200"]);
    assert!(
        show4.contains("src 10.0.0.2") && !show4.contains("src 10.0.0.1"),
        "{show4}"
    );

    // Replace with another metric: to the kernel that is another route, so
    // the old one stays until deleted.
    let r4m = Route {
        metric: Some(50),
        ..r4.clone()
    };
    let r6m = Route {
        metric: Some(50),
        ..r6.clone()
    };
    nl.route_replace(&r4m).unwrap();
    nl.route_replace(&r6m).unwrap();
    assert_eq!(
        ours(&mut nl),
        vec![r4.clone(), r4m.clone(), r6m.clone(), r6_1024.clone()]
    );
    nl.route_delete(&r4).expect("route_delete v4 metric 0");
    nl.route_delete(&r6_1024)
        .expect("route_delete v6 metric 1024");
    assert_eq!(ours(&mut nl), vec![r4m.clone(), r6m.clone()]);
    let show6 = ip(ns, &["-6", "route", "show", "proto", "200"]);
    assert!(
        show6.contains("metric 50") && !show6.contains("metric 1024"),
        "{show6}"
    );

    // Delete; deleting again is fine.
    nl.route_delete(&r4m).expect("route_delete v4");
    nl.route_delete(&r6m).expect("route_delete v6");
    assert_eq!(ours(&mut nl), vec![]);
    assert_eq!(ip(ns, &["route", "show", "proto", "200"]).trim(), "");
    assert_eq!(ip(ns, &["-6", "route", "show", "proto", "200"]).trim(), "");
    nl.route_delete(&r4m)
        .expect("route_delete of a missing route");
    nl.route_delete(&r6m)
        .expect("route_delete of a missing route");

    // A route towards a device that is down is refused with a clear error.
    let e = nl
        .route_replace(&Route::new(addr("192.168.9.0"), 24, 1 /* lo, down */))
        .expect_err("a route via a down device");
    eprintln!("route via a down device: {e}");
    assert!(e.to_string().contains("192.168.9.0/24"), "{e}");

    // Flush: ours go, the others stay.
    nl.route_replace(&r4m).unwrap();
    nl.route_replace(&r6m).unwrap();
    nl.route_replace(&Route::new(addr("192.168.6.0"), 24, idx))
        .unwrap();
    ip(
        ns,
        &[
            "route",
            "add",
            "192.168.5.0/24",
            "dev",
            &dev,
            "proto",
            "static",
        ],
    );
    ip(
        ns,
        &[
            "-6",
            "route",
            "add",
            "fd00:5::/48",
            "dev",
            &dev,
            "proto",
            "static",
        ],
    );
    assert_eq!(nl.flush_protocol(RTPROT_MESHD).expect("flush_protocol"), 3);
    assert_eq!(ours(&mut nl), vec![]);
    assert_eq!(nl.flush_protocol(RTPROT_MESHD).unwrap(), 0);
    let statics = ip(ns, &["route", "show", "proto", "static"]);
    assert!(statics.contains("192.168.5.0/24"), "{statics}");
    let statics = ip(ns, &["-6", "route", "show", "proto", "static"]);
    assert!(statics.contains("fd00:5::/48"), "{statics}");

    // --- packets ------------------------------------------------------------
    r4.src = Some(addr("10.0.0.1"));
    r6.src = Some(addr("fd00::1"));
    nl.route_replace(&r4).unwrap();
    nl.route_replace(&r6).unwrap();
    let early = drain(&tun);
    eprintln!(
        "{} packet(s) the kernel sent on its own:\n{}",
        early.len(),
        describe(&early)
    );

    // A packet written into the TUN is not read back (forwarding is off in a
    // new namespace, so it is dropped, not routed back out).
    let pkt = udp4(
        Ipv4Addr::new(192, 168, 4, 20),
        Ipv4Addr::new(192, 168, 4, 10),
        9,
        b"into the kernel",
    );
    assert_eq!(tun.write(&pkt).expect("writing the TUN"), pkt.len());
    thread::sleep(Duration::from_millis(200));
    let back = drain(&tun);
    assert!(
        !back.iter().any(|p| p.first().is_some_and(|v| v >> 4 == 4)),
        "IPv4 read back after a write:\n{}",
        describe(&back)
    );

    // The kernel routes a packet for 192.168.4.10 into the TUN, from the
    // preferred source.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.send_to(b"hello meshd", "192.168.4.10:9")
        .expect("sending via the TUN route");
    let (got, others) = wait_packet(&tun, |p| p.len() >= 20 && p[0] >> 4 == 4);
    let p = got.unwrap_or_else(|| panic!("no IPv4 packet on the TUN; got\n{}", describe(&others)));
    assert_eq!(&p[16..20], &[192, 168, 4, 10], "destination");
    assert_eq!(&p[12..16], &[10, 0, 0, 1], "source = the route's src");
    assert_eq!(p[9], 17, "UDP");
    assert!(p.ends_with(b"hello meshd"));

    let sock = UdpSocket::bind("[::]:0").unwrap();
    sock.send_to(b"hello meshd 6", "[fd00:4::10]:9")
        .expect("sending via the v6 route");
    let (got, others) = wait_packet(&tun, |p| {
        p.len() >= 40 && p[0] >> 4 == 6 && p[24..40] == v6("fd00:4::10").octets()
    });
    let p = got.unwrap_or_else(|| panic!("no IPv6 packet on the TUN; got\n{}", describe(&others)));
    assert_eq!(
        &p[8..24],
        &v6("fd00::1").octets(),
        "source = the route's src"
    );
    assert!(p.ends_with(b"hello meshd 6"));

    // --- closing the TUN deletes the device (and its routes) -----------------
    drop(tun);
    let deadline = Instant::now() + Duration::from_secs(2);
    while ip_try(ns, &["link", "show", "dev", &dev]).0 {
        assert!(Instant::now() < deadline, "{dev} still there after close");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(nl.link_index(&dev).is_err());
    assert_eq!(ours(&mut nl), vec![]);
}

/// The two rules meshd installs for a game console, and an IPv6 one.
fn console_rules(iif: &str) -> (Rule, Rule, Rule) {
    let main = Rule {
        src: Some((addr("192.168.1.50"), 32)),
        suppress_prefixlen: Some(0),
        ..Rule::new(32000, RT_TABLE_MAIN)
    };
    let exit = Rule {
        src: Some((addr("192.168.1.50"), 32)),
        iif: Some(iif.to_string()),
        ip_proto: Some(17),
        ..Rule::new(32001, 28005)
    };
    let v6 = Rule {
        family: AF_INET6,
        src: Some((addr("fd00:1::"), 64)),
        ..Rule::new(100, 1000)
    };
    (main, exit, v6)
}

/// `ip rule show` without the three rules every namespace starts with.
fn extra_rules(ns: &str, family: &str) -> Vec<String> {
    let defaults = [
        "0:\tfrom all lookup local",
        "32766:\tfrom all lookup main",
        "32767:\tfrom all lookup default",
    ];
    ip(ns, &[family, "rule", "show"])
        .lines()
        .filter(|l| !defaults.contains(&l.trim_end()))
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn rules_in_a_network_namespace() {
    need_root();
    let ns = Netns::create("mdrule");
    let name = ns.name.clone();
    run_in(&ns.name.clone(), vec![ns], move || {
        let ns = name.as_str();
        veth(ns, "lan0", None, None, "lan1", None);
        let mut nl = Netlink::open().expect("opening netlink");
        let (main, exit, v6) = console_rules("lan0");
        for r in [&main, &exit, &v6] {
            nl.rule_add(r).expect("rule_add");
            nl.rule_add(r).expect("rule_add is idempotent");
        }
        assert_eq!(
            extra_rules(ns, "-4"),
            vec![
                "32000:\tfrom 192.168.1.50 lookup main suppress_prefixlength 0 proto 200",
                "32001:\tfrom 192.168.1.50 iif lan0 ipproto udp lookup 28005 proto 200",
            ]
        );
        assert_eq!(
            extra_rules(ns, "-6"),
            vec!["100:\tfrom fd00:1::/64 lookup 1000 proto 200"]
        );
        // Read back equal, in the kernel's order (IPv4 first in a dump of
        // all families, then by priority).
        assert_eq!(
            nl.rules_by_protocol(RTPROT_MESHD)
                .expect("rules_by_protocol"),
            vec![main.clone(), exit.clone(), v6.clone()]
        );
        // The kernel's own rules have protocol "kernel" (2).
        let kernel = nl.rules_by_protocol(2).unwrap();
        assert!(
            kernel.contains(&Rule {
                protocol: 2,
                ..Rule::new(32766, RT_TABLE_MAIN)
            }),
            "{kernel:?}"
        );

        // The rules work: UDP from the console coming in on lan0 looks up
        // table 28005 (here empty, so on to main's default, which is lan1).
        ip(ns, &["addr", "add", "192.168.1.1/24", "dev", "lan0"]);
        ip(ns, &["route", "add", "default", "dev", "lan1"]);
        ip(
            ns,
            &["route", "add", "default", "dev", "lan0", "table", "28005"],
        );
        let sysctl = [
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ];
        let out = Command::new("ip").args(sysctl).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let get = |proto: &str| {
            let args = [
                "route",
                "get",
                "8.8.8.8",
                "from",
                "192.168.1.50",
                "iif",
                "lan0",
                "ipproto",
                proto,
            ];
            ip(ns, &args)
        };
        assert!(
            get("udp").contains("dev lan0 table 28005"),
            "{}",
            get("udp")
        );
        assert!(get("tcp").contains("dev lan1"), "{}", get("tcp"));
        ip(ns, &["route", "flush", "table", "28005"]);

        // Someone else's rule, which a flush leaves alone.
        ip(
            ns,
            &[
                "rule", "add", "from", "10.9.9.9", "lookup", "100", "pref", "500",
            ],
        );

        // Delete; deleting again is fine.
        nl.rule_delete(&exit).expect("rule_delete");
        nl.rule_delete(&exit)
            .expect("rule_delete of a missing rule");
        assert!(
            !ip(ns, &["rule", "show"]).contains("iif lan0"),
            "{}",
            ip(ns, &["rule", "show"])
        );
        assert_eq!(
            nl.rules_by_protocol(RTPROT_MESHD).unwrap(),
            vec![main.clone(), v6.clone()]
        );

        // Flush: ours go, the others stay.
        assert_eq!(nl.flush_rules(RTPROT_MESHD).expect("flush_rules"), 2);
        assert_eq!(nl.flush_rules(RTPROT_MESHD).unwrap(), 0);
        assert_eq!(nl.rules_by_protocol(RTPROT_MESHD).unwrap(), vec![]);
        assert_eq!(
            extra_rules(ns, "-4"),
            vec!["500:\tfrom 10.9.9.9 lookup 100"]
        );
        assert_eq!(extra_rules(ns, "-6"), Vec::<String>::new());

        // A rule that cannot be (table 0) is refused before the kernel.
        let e = nl.rule_add(&Rule::new(1, 0)).expect_err("table 0");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    });
}

#[test]
fn throw_and_mtu_routes_in_a_custom_table() {
    need_root();
    let ns = Netns::create("mdtbl");
    let name = ns.name.clone();
    run_in(&ns.name.clone(), vec![ns], move || {
        let ns = name.as_str();
        veth(ns, "exit0", None, None, "exit1", None);
        let mut nl = Netlink::open().expect("opening netlink");
        let idx = nl.link_index("exit0").unwrap();
        let throw = Route::throw(addr("10.0.0.0"), 8, 100);
        let mut default = Route::new(addr("0.0.0.0"), 0, idx);
        default.table = 100;
        default.mtu = Some(1380);
        let throw6 = Route::throw(addr("fd00::"), 16, 100);
        for r in [&throw, &default, &throw6] {
            nl.route_replace(r).expect("route_replace");
        }
        let show = ip(ns, &["route", "show", "table", "100"]);
        let lines: Vec<&str> = show.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            vec![
                "default dev exit0 proto 200 scope link mtu 1380",
                "throw 10.0.0.0/8 proto 200",
            ],
            "{show}"
        );
        let show6 = ip(ns, &["-6", "route", "show", "table", "100"]);
        // (The kernel hangs IPv6 throw routes on lo.)
        assert!(
            show6.starts_with("throw fd00::/16 dev lo proto 200 metric 1024"),
            "{show6}"
        );

        // Read back equal; not in the main table.
        let mut got = nl
            .routes_in_table(100, RTPROT_MESHD)
            .expect("routes_in_table");
        got.sort_by_key(|r| (r.dst, r.prefix_len));
        let throw6_1024 = Route {
            metric: Some(1024),
            ..throw6.clone()
        };
        assert_eq!(
            got,
            vec![default.clone(), throw.clone(), throw6_1024.clone()]
        );
        assert_eq!(got[1].kind, RouteKind::Throw);
        assert_eq!(ours(&mut nl), vec![]);

        // Another MTU replaces the route in place.
        default.mtu = Some(1400);
        nl.route_replace(&default).unwrap();
        let show = ip(ns, &["route", "show", "table", "100", "default"]);
        assert_eq!(
            show.trim_end(),
            "default dev exit0 proto 200 scope link mtu 1400"
        );
        assert!(nl
            .routes_in_table(100, RTPROT_MESHD)
            .unwrap()
            .contains(&default));

        // The throw route does its job: the lookup falls through to main.
        ip(ns, &["addr", "add", "10.1.0.1/16", "dev", "exit1"]);
        ip(
            ns,
            &[
                "rule",
                "add",
                "to",
                "10.1.0.0/16",
                "lookup",
                "100",
                "pref",
                "10",
            ],
        );
        let got = ip(ns, &["route", "get", "10.1.2.3"]);
        assert!(got.contains("dev exit1"), "{got}");

        for r in [&throw, &default, &throw6_1024] {
            nl.route_delete(r).expect("route_delete");
        }
        assert_eq!(ip(ns, &["route", "show", "table", "100"]).trim(), "");
        assert_eq!(nl.routes_in_table(100, RTPROT_MESHD).unwrap(), vec![]);
    });
}

#[test]
fn neighbours_across_a_veth_pair() {
    need_root();
    let here = Netns::create("mdnba");
    let there = Netns::create("mdnbb");
    let (a, b) = (here.name.clone(), there.name.clone());
    run_in(&here.name.clone(), vec![here, there], move || {
        let (a, b) = (a.as_str(), b.as_str());
        veth(
            a,
            "nb0",
            Some("192.168.77.1/24"),
            Some(b),
            "nb1",
            Some("192.168.77.2/24"),
        );
        let peer_mac = mac_of(b, "nb1");
        let ping = |dst: &str| {
            Command::new("ip")
                .args(["netns", "exec", a, "ping", "-c1", "-W1", dst])
                .output()
                .expect("running ping (install iputils-ping)")
        };
        let out = ping("192.168.77.2");
        assert!(out.status.success(), "ping: {out:?}");
        // Nobody answers for .3: an unresolved (incomplete, then failed)
        // entry. A static one for .9.
        assert!(!ping("192.168.77.3").status.success());
        ip(
            a,
            &[
                "neigh",
                "add",
                "192.168.77.9",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
                "nb0",
                "nud",
                "permanent",
            ],
        );

        let mut nl = Netlink::open().expect("opening netlink");
        let idx = nl.link_index("nb0").unwrap();
        let table = ip(a, &["neigh", "show", "dev", "nb0"]);
        eprintln!("ip neigh:\n{table}");
        let mut got = nl.neighbours(AF_INET, Some(idx)).expect("neighbours");
        got.sort_by_key(|n| n.addr);
        let addrs: Vec<IpAddr> = got.iter().map(|n| n.addr).collect();
        assert_eq!(
            addrs,
            vec![addr("192.168.77.2"), addr("192.168.77.9")],
            "{got:?}"
        );
        let peer = &got[0];
        assert_eq!(peer.ifindex, idx);
        assert_eq!(mac_text(peer.mac.unwrap()), peer_mac);
        assert_eq!(
            got[1],
            Neighbour {
                ifindex: idx,
                addr: addr("192.168.77.9"),
                mac: Some([2, 0, 0, 0, 0, 9]),
                state: NUD_PERMANENT,
            }
        );
        // The same as `ip neigh` says, left out the unresolved entry.
        for n in &got {
            let line = format!("{} lladdr {}", n.addr, mac_text(n.mac.unwrap()));
            assert!(table.contains(&line), "{line} not in\n{table}");
        }
        assert!(table.contains("192.168.77.3 "), "{table}");

        // All interfaces; another interface; IPv6 only IPv6.
        assert_eq!(nl.neighbours(AF_INET, None).unwrap().len(), 2);
        assert_eq!(nl.neighbours(AF_INET, Some(1)).unwrap(), vec![]);
        assert!(nl
            .neighbours(AF_INET6, None)
            .unwrap()
            .iter()
            .all(|n| n.addr.is_ipv6()));
        let e = nl.neighbours(AF_INET, Some(0)).expect_err("index 0");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

/// Runs `sysctl -qw <setting>` in namespace `ns`.
fn sysctl(ns: &str, setting: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .output()
        .expect("running sysctl (install procps)");
    assert!(out.status.success(), "sysctl {setting}: {out:?}");
}

/// The game exit end to end, on a router namespace: a console (a namespace
/// behind the LAN veth, with a PlayStation MAC address) found through the
/// neighbour table, its rules and table installed, and `ip route get`
/// showing which traffic takes the exit. A second veth stands in for the
/// TUN: routing does not care what the device is.
#[test]
fn console_policy_routing() {
    need_root();
    let router = Netns::create("mdcr");
    let console = Netns::create("mdcc");
    let (r, c) = (router.name.clone(), console.name.clone());
    run_in(&router.name.clone(), vec![router, console], move || {
        let (r, c) = (r.as_str(), c.as_str());
        veth(
            r,
            "lan0",
            Some("192.168.50.1/24"),
            Some(c),
            "con0",
            Some("192.168.50.10/24"),
        );
        veth(r, "exit0", None, None, "exit1", None);
        veth(r, "wan0", Some("203.0.113.1/24"), None, "wan1", None);
        ip(
            r,
            &[
                "route",
                "add",
                "default",
                "via",
                "203.0.113.254",
                "dev",
                "wan0",
            ],
        );
        // A route of the mesh to a friend's LAN, in the main table.
        ip(r, &["route", "add", "10.99.0.0/16", "dev", "exit1"]);
        sysctl(r, "net.ipv4.ip_forward=1");
        for dev in ["all", "default", "lan0"] {
            sysctl(r, &format!("net.ipv4.conf.{dev}.rp_filter=0"));
        }
        ip(c, &["link", "set", "con0", "address", "00:04:1f:12:34:56"]);
        let out = Command::new("ip")
            .args(["netns", "exec", c, "ping", "-c1", "-W2", "192.168.50.1"])
            .output()
            .expect("running ping");
        assert!(out.status.success(), "ping: {out:?}");

        // Detection from the router's neighbour table.
        let mut nl = Netlink::open().expect("opening netlink");
        let lan_idx = nl.link_index("lan0").unwrap();
        let neighbours: Vec<(Ipv4Addr, [u8; 6])> = nl
            .neighbours(AF_INET, Some(lan_idx))
            .unwrap()
            .into_iter()
            .filter_map(|n| match (n.addr, n.mac) {
                (IpAddr::V4(a), Some(mac)) => Some((a, mac)),
                _ => None,
            })
            .collect();
        let lan = [Prefix::v4(192, 168, 50, 0, 24).unwrap()];
        let found = consoles::detect(true, &[], &neighbours, &lan);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ip, Ipv4Addr::new(192, 168, 50, 10));
        assert_eq!(
            (found[0].vendor, found[0].how),
            (Some(Vendor::PlayStation), How::Auto)
        );

        // Install.
        let mut pr = PolicyRouting::new("lan0", false);
        let exit_idx = nl.link_index("exit0").unwrap();
        pr.install_routes(&mut nl, exit_idx, 1380)
            .expect("install_routes");
        assert_eq!(pr.apply(&mut nl, &found).expect("apply"), (2, 0));
        assert_eq!(pr.apply(&mut nl, &found).unwrap(), (0, 0), "no churn");
        assert_eq!(
            pr.installed().into_iter().collect::<Vec<_>>(),
            vec![found[0].ip]
        );
        assert_eq!(
            extra_rules(r, "-4"),
            vec![
                "32000:\tfrom 192.168.50.10 lookup main suppress_prefixlength 0 proto 200",
                "32001:\tfrom 192.168.50.10 iif lan0 ipproto udp lookup 28005 proto 200",
            ]
        );
        let table = ip(r, &["route", "show", "table", "28005"]);
        assert_eq!(
            table.trim_end(),
            "default dev exit0 proto 200 scope link mtu 1380"
        );

        let get = |dst: &str, src: &str, proto: &str| {
            ip(
                r,
                &[
                    "route", "get", dst, "from", src, "iif", "lan0", "ipproto", proto,
                ],
            )
        };
        // The console's internet-bound UDP takes the exit ...
        let udp = get("8.8.8.8", "192.168.50.10", "udp");
        assert!(udp.contains("dev exit0 table 28005"), "{udp}");
        // ... its TCP does not ...
        let tcp = get("8.8.8.8", "192.168.50.10", "tcp");
        assert!(tcp.contains("via 203.0.113.254 dev wan0"), "{tcp}");
        // ... nor its UDP to the LAN or through the mesh ...
        let local = get("192.168.50.20", "192.168.50.10", "udp");
        assert!(
            local.contains("dev lan0") && !local.contains("table"),
            "{local}"
        );
        let mesh = get("10.99.1.1", "192.168.50.10", "udp");
        assert!(
            mesh.contains("dev exit1") && !mesh.contains("table"),
            "{mesh}"
        );
        // ... nor another LAN host's UDP.
        let other = get("8.8.8.8", "192.168.50.20", "udp");
        assert!(other.contains("via 203.0.113.254 dev wan0"), "{other}");

        // All traffic: TCP too, after the old rules are replaced.
        let mut all = PolicyRouting::new("lan0", true);
        assert_eq!(pr.apply(&mut nl, &[]).unwrap(), (0, 2));
        assert_eq!(extra_rules(r, "-4"), Vec::<String>::new());
        assert_eq!(all.apply(&mut nl, &found).unwrap(), (2, 0));
        let tcp = get("8.8.8.8", "192.168.50.10", "tcp");
        assert!(tcp.contains("dev exit0 table 28005"), "{tcp}");

        // The console moves to another address: its rules follow.
        let moved = consoles::detect(
            false,
            &[ConsoleSpec::Ip(Ipv4Addr::new(192, 168, 50, 11))],
            &neighbours,
            &lan,
        );
        assert_eq!(all.apply(&mut nl, &moved).unwrap(), (2, 2));
        let rules = extra_rules(r, "-4");
        assert!(
            rules.iter().all(|l| l.contains("from 192.168.50.11 ")),
            "{rules:?}"
        );

        // Clear: the two rules and the table's route.
        assert_eq!(all.clear(&mut nl).expect("clear"), 3);
        assert_eq!(all.installed().len(), 0);
        assert_eq!(ip(r, &["rule", "show"]).lines().count(), 3);
        assert_eq!(extra_rules(r, "-4"), Vec::<String>::new());
        assert_eq!(ip(r, &["route", "show", "table", "28005"]).trim(), "");
        assert_eq!(all.clear(&mut nl).unwrap(), 0);
        let udp = get("8.8.8.8", "192.168.50.10", "udp");
        assert!(udp.contains("dev wan0"), "{udp}");
    });
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(path).expect("opening the netns file");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The LAN discovery socket (issue 14) against the kernel: its BPF filter
/// takes only broadcasts and group multicasts to the relayed ports that
/// arrive, never unicast to the router, other ports, or what it sends
/// itself; what it sends reaches a console as broadcast or multicast with
/// another home's source address.
#[test]
fn lan_discovery_socket_captures_and_emits_only_what_it_should() {
    use meshd::sys::discovery::LanSocket;
    need_root();
    let here = Netns::create("mddsa");
    let there = Netns::create("mddsb");
    let (a, b) = (here.name.clone(), there.name.clone());
    run_in(&here.name.clone(), vec![here, there], move || {
        veth(
            &a,
            "ds0",
            Some("192.168.78.1/24"),
            Some(&b),
            "ds1",
            Some("192.168.78.10/24"),
        );
        let mut nl = Netlink::open().unwrap();
        let ifindex = nl.link_index("ds0").unwrap();
        let ssdp = Ipv4Addr::new(239, 255, 255, 250);
        let sock = LanSocket::open(ifindex, &[9302], &[(ssdp, 1900)]).unwrap();
        // The console side sends a mix; only three may be captured.
        in_ns(&b, move || {
            let s = UdpSocket::bind(("192.168.78.10", 40000)).unwrap();
            s.set_broadcast(true).unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            let sends: [(&str, u16, &[u8]); 6] = [
                ("192.168.78.1", 9302, b"unicast to the router"),
                ("255.255.255.255", 5353, b"another port"),
                ("255.255.255.255", 9302, b"limited"),
                ("192.168.78.255", 9302, b"directed"),
                ("224.0.0.251", 9302, b"a group not joined, still multicast"),
                ("239.255.255.250", 1900, b"M-SEARCH"),
            ];
            for (dst, port, payload) in sends {
                s.send_to(payload, (dst, port)).unwrap();
            }
        });
        thread::sleep(Duration::from_millis(200));
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[28..n]).to_string());
        }
        assert_eq!(
            got,
            [
                "limited",
                "directed",
                "a group not joined, still multicast",
                "M-SEARCH"
            ],
            "captured"
        );
        // Joined at the IP level on the device: the group is in its list.
        let groups = Command::new("ip")
            .args(["-n", &a, "maddr", "show", "dev", "ds0"])
            .output()
            .unwrap();
        let groups = String::from_utf8_lossy(&groups.stdout).to_string();
        assert!(groups.contains("239.255.255.250"), "{groups}");

        // Emitting: a console there hears another home's console.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let listener = {
            let b = b.clone();
            thread::spawn(move || {
                in_ns(&b, move || {
                    let bc = UdpSocket::bind(("0.0.0.0", 9302)).unwrap();
                    let mc = UdpSocket::bind(("0.0.0.0", 1900)).unwrap();
                    mc.join_multicast_v4(&ssdp, &Ipv4Addr::new(192, 168, 78, 10))
                        .unwrap();
                    for s in [&bc, &mc] {
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    }
                    ready_tx.send(()).unwrap();
                    let mut buf = [0u8; 100];
                    let (n, from) = bc.recv_from(&mut buf).unwrap();
                    let one = (from, buf[..n].to_vec());
                    let (n, from) = mc.recv_from(&mut buf).unwrap();
                    (one, (from, buf[..n].to_vec()))
                })
            })
        };
        ready_rx.recv().unwrap();
        let build = |dst: Ipv4Addr, port: u16, payload: &[u8]| {
            let mut out = vec![0u8; 200];
            let n = mesh_core::ip::build_udp4_plain(
                Ipv4Addr::new(192, 168, 1, 10),
                dst,
                49152,
                port,
                64,
                payload,
                &mut out,
            )
            .unwrap();
            out.truncate(n);
            out
        };
        sock.send(&build(
            Ipv4Addr::new(192, 168, 78, 255),
            9302,
            b"from home 1",
        ))
        .unwrap();
        sock.send(&build(ssdp, 1900, b"NOTIFY from home 1"))
            .unwrap();
        let (bc, mc) = listener.join().unwrap();
        let from_home_1: std::net::SocketAddr = "192.168.1.10:49152".parse().unwrap();
        assert_eq!(bc, (from_home_1, b"from home 1".to_vec()));
        assert_eq!(mc, (from_home_1, b"NOTIFY from home 1".to_vec()));
        // What the router sent is not captured back.
        thread::sleep(Duration::from_millis(100));
        assert!(sock.recv(&mut buf).is_err(), "our own packets came back");
    });
}

/// `nft list table ip meshd_exit` in this thread's namespace: the table's
/// text, or `None` when there is no such table.
fn exit_table() -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", meshd::sys::nft::TABLE])
        .output()
        .expect("running `nft` (install nftables)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn nft_loads_take_effect_in_the_order_asked() {
    need_root();
    let ns = Netns::create("mdnf");
    let name = ns.name.clone();
    run_in(&name, vec![ns], || {
        use meshd::sys::nft::{self, Nft};
        // A big ruleset takes nft a while to parse and commit; the removal
        // asked for after it must still be what stays.
        let mut big = format!(
            "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\tchain forward {{\n\t\ttype filter hook forward priority mangle; policy accept;\n",
            t = nft::TABLE
        );
        for port in 1..=3000 {
            big.push_str(&format!("\t\tudp dport {port} counter\n"));
        }
        big.push_str("\t}\n}\n");
        for round in 1..=5 {
            let mut n = Nft::default();
            n.load(&big, "big").unwrap();
            n.load(&nft::remove_ruleset(), "remove").unwrap();
            n.wait();
            assert_eq!(
                exit_table(),
                None,
                "round {round}: the table outlived its removal"
            );
            // Start-up's removal of a stale table, then the exit's rules:
            // the rules stay.
            n.load(&nft::remove_ruleset(), "remove stale").unwrap();
            n.load(&nft::exit_ruleset("mesh0", "br-lan", 1380), "exit rules")
                .unwrap();
            n.wait();
            let table = exit_table().unwrap_or_default();
            assert!(
                table.contains("masquerade") && table.contains("maxseg size set 1380"),
                "round {round}: the exit's rules are not in place:\n{table}"
            );
            // A third asked for while the first runs replaces the second.
            n.load(&big, "big").unwrap();
            n.load(&nft::exit_ruleset("mesh0", "br-lan", 1380), "exit rules")
                .unwrap();
            n.load(&nft::remove_ruleset(), "remove").unwrap();
            n.wait();
            assert_eq!(
                exit_table(),
                None,
                "round {round}: the last load is not what stayed"
            );
        }
    });
}
