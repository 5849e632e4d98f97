//! `meshd::sys` (TUN device and rtnetlink client) against the real kernel.
//!
//! Runs as root, inside a network namespace it creates (`ip netns add
//! mdsys<pid>`) and always deletes, even when a check fails. The checks run on
//! a thread that has `setns`-ed into that namespace, so the TUN device, the
//! netlink socket and the test's own UDP sockets all live there; the `ip -n`
//! commands look at the namespace from outside.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use meshd::sys::errno;
use meshd::sys::netlink::{Netlink, Route, RTPROT_MESHD, RT_TABLE_MAIN};
use meshd::sys::tun::Tun;
use nix::sched::{setns, CloneFlags};

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        let name = format!("mdsys{}", std::process::id());
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
    let mut buf = [0u8; 2048];
    loop {
        match tun.read(&mut buf) {
            Ok(n) => packets.push(buf[..n].to_vec()),
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

#[test]
fn tun_and_netlink_in_a_network_namespace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/sys_netns.rs creates network namespaces and TUN devices and must run as root \
         (e.g. `sudo -E cargo test -p meshd --test sys_netns`); it is not skipped"
    );
    let ns = Netns::create();
    let name = ns.name.clone();
    let checks = thread::Builder::new()
        .name("in-netns".into())
        .stack_size(16 << 20)
        .spawn(move || {
            let file = File::open(format!("/run/netns/{name}")).expect("opening the netns file");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
            checks(&name);
        })
        .expect("spawning the test thread");
    let result = checks.join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
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
