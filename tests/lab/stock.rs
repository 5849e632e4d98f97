//! The stock assembly of the same design, for comparison and interop
//! (LAB.md): per tunnel one wireguard-go interface (AllowedIPs 0.0.0.0/0)
//! and one eBGP session of BIRD 2 with BFD; BIRD installs what it learns in
//! the kernel. A stock router lives in the same namespaces as a meshd router
//! would (`rN`, with its `wan` and `lan` veths), so one lab can hold either.

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::seed::SeedLab;
use super::wait_for;

/// BFD timers of the stock BIRD.
#[derive(Debug, Clone, Copy)]
pub struct BirdBfd {
    pub interval_ms: u32,
    pub multiplier: u8,
}

impl BirdBfd {
    /// What LAB.md names as the stock setup: 100 ms × 3.
    pub const STOCK: BirdBfd = BirdBfd {
        interval_ms: 100,
        multiplier: 3,
    };
    /// The stock stack at meshd's own timers (10 ms × 4), so a comparison
    /// separates what the timers buy from what meshd does.
    pub const AGGRESSIVE: BirdBfd = BirdBfd {
        interval_ms: 10,
        multiplier: 4,
    };
}

/// One tunnel of a stock router.
#[derive(Debug, Clone)]
pub struct StockTunnel {
    /// The router at the other end.
    pub peer: usize,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub listen_port: u16,
    pub peer_endpoint: String,
    pub peer_key: String,
    pub peer_asn: u32,
}

/// The interface name of router `n`'s tunnel to `m` (short: IFNAMSIZ, and
/// unique per lab because wireguard-go's control socket path is global).
pub fn ifname(lab: &SeedLab, n: usize, m: usize) -> String {
    let tag: String = lab.tag.chars().rev().take(4).collect::<String>();
    format!("w{tag}{n}{m}")
}

/// The tunnels of router `n` in an all-stock lab with `links`: point-to-point
/// addresses 10.lo.hi.1/.2, listen port 51800 + the peer's number.
pub fn square_tunnels(lab: &SeedLab, n: usize, links: &[(usize, usize)]) -> Vec<StockTunnel> {
    links
        .iter()
        .filter(|(a, b)| *a == n || *b == n)
        .map(|&(a, b)| {
            let m = if a == n { b } else { a };
            let (lo, hi) = (n.min(m) as u8, n.max(m) as u8);
            let mine = if n < m { 1 } else { 2 };
            StockTunnel {
                peer: m,
                local: Ipv4Addr::new(10, lo, hi, mine),
                remote: Ipv4Addr::new(10, lo, hi, 3 - mine),
                listen_port: 51800 + m as u16,
                peer_endpoint: format!("198.51.100.{m}:{}", 51800 + n),
                peer_key: lab.router(m).public_key.clone(),
                peer_asn: 65000 + m as u32,
            }
        })
        .collect()
}

fn bird_config(n: usize, tunnels: &[(String, &StockTunnel)], bfd: BirdBfd, hold: u16) -> String {
    let mut c = format!(
        r#"router id 10.0.0.{n};
protocol device {{ scan time 1; }}
protocol direct {{ ipv4; interface "lan"; }}
protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; }}
protocol bfd {{
"#
    );
    for (ifname, _) in tunnels {
        c.push_str(&format!(
            "  interface \"{ifname}\" {{ interval {} ms; multiplier {}; }};\n",
            bfd.interval_ms, bfd.multiplier
        ));
    }
    c.push_str("}\n");
    for (ifname, t) in tunnels {
        c.push_str(&format!(
            r#"protocol bgp t{peer} {{
  local {local} as {asn};
  neighbor {remote} as {peer_asn};
  interface "{ifname}";
  hold time {hold};
  keepalive time {ka};
  connect retry time 1;
  error wait time 1, 4;
  bfd on;
  ipv4 {{ import all; export where source ~ [RTS_DEVICE, RTS_BGP]; next hop self; }};
}}
"#,
            peer = t.peer,
            local = t.local,
            asn = 65000 + n,
            remote = t.remote,
            peer_asn = t.peer_asn,
            ka = (hold / 3).max(1),
        ));
    }
    c
}

/// Starts router `n` as a stock router with `tunnels`; the processes are
/// recorded in the router so that a power cut kills them.
pub fn start(
    lab: &mut SeedLab,
    n: usize,
    tunnels: &[StockTunnel],
    bfd: BirdBfd,
    hold: u16,
) -> Result<(), String> {
    let key_file = lab.dir.path().join(format!("r{n}.key"));
    let mut named = Vec::new();
    for t in tunnels {
        let ifname = ifname(lab, n, t.peer);
        let r = lab.router(n);
        let log = File::create(lab.dir.path().join(format!("{ifname}.log"))).unwrap();
        let child =
            r.ns.cmd("wireguard-go")
                .arg("-f")
                .arg(&ifname)
                .env("WG_PROCESS_FOREGROUND", "1")
                .env("LOG_LEVEL", "error")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("wireguard-go: {e}"))?;
        lab.routers[n - 1].others.push(child);
        let r = lab.router(n);
        // The link appears before wireguard-go's control socket; `wg set`
        // run in between falls back to the kernel's (absent) WireGuard.
        let uapi = format!("/var/run/wireguard/{ifname}.sock");
        wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            Command::new("ip")
                .args(["-n", &r.ns.name, "link", "show", &ifname])
                .output()
                .ok()
                .filter(|o| o.status.success() && std::path::Path::new(&uapi).exists())
        })
        .ok_or_else(|| format!("wireguard-go did not create {ifname}"))?;
        r.ns.exec(&[
            "wg",
            "set",
            &ifname,
            "listen-port",
            &t.listen_port.to_string(),
            "private-key",
            key_file.to_str().unwrap(),
            "peer",
            &t.peer_key,
            "allowed-ips",
            "0.0.0.0/0",
            "endpoint",
            &t.peer_endpoint,
            "persistent-keepalive",
            "25",
        ]);
        r.ns.ip(&[
            "addr",
            "add",
            &t.local.to_string(),
            "peer",
            &format!("{}/32", t.remote),
            "dev",
            &ifname,
        ]);
        r.ns.ip(&["link", "set", &ifname, "mtu", "1420", "up"]);
        named.push((ifname, t));
    }
    let conf = lab.dir.path().join(format!("bird{n}.conf"));
    std::fs::write(&conf, bird_config(n, &named, bfd, hold)).unwrap();
    let r = lab.router(n);
    let socket = lab.dir.path().join(format!("bird{n}.ctl"));
    let log = File::create(lab.dir.path().join(format!("bird{n}.log"))).unwrap();
    let bird =
        r.ns.cmd("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(lab.dir.path().join(format!("bird{n}.pid")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("bird: {e}"))?;
    lab.routers[n - 1].others.push(bird);
    Ok(())
}

/// birdc on router `n`'s BIRD.
pub fn birdc(lab: &SeedLab, n: usize, args: &[&str]) -> String {
    let socket = lab.dir.path().join(format!("bird{n}.ctl"));
    Command::new("birdc")
        .arg("-s")
        .arg(&socket)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The kernel route of router `n` to console `dst`'s LAN: the interface it
/// leaves through, if any.
pub fn kernel_route_dev(lab: &SeedLab, n: usize, dst: usize) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", &lab.router(n).ns.name, "route", "show"])
        .arg(format!("192.168.{dst}.0/24"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().map(str::to_string);
        }
    }
    None
}
