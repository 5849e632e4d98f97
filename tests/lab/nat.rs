//! Routers behind emulated NATs (see `../shared/design/LAB.md`, "NAT
//! behaviours to emulate"):
//!
//! ```text
//!   cN ─ rN ─────────────────────────────────── inet   Open: 198.51.100.N on the bridge
//!   cN ─ rN ── nN (NAT) ─────────────────────── inet   Cone / Forwarded / Symmetric:
//!     10.N.0.2   10.N.0.1 │ 198.51.100.(100+N)          NAT outside on the bridge
//!   cN ─ rN ── nN (home, cone) ── gN (carrier, symmetric) ── inet   Cgnat
//!     10.N.0.2  10.N.0.1 │ 100.64.N.2   100.64.N.1 │ 198.51.100.(150+N)
//! ```
//!
//! Consoles, LANs, overlay addresses and AS numbers are as in the seed lab
//! (`seed.rs`). Every router lists every other as a member, but only the
//! endpoints of Open and Forwarded members (whose address is stable and
//! reachable); the others must be found by NAT traversal.
//!
//! The nftables rules of each NAT live in a table `natlab` in its namespace,
//! written to `<lab dir>/nN.nft` (`gN.nft` for a carrier) and loaded with
//! `nft -f`; [`NatLab::nat_report`] lists them with their counters.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::seed::Router;
use super::{veth, Netns, TempDir};

/// What stands between a router and the internet (LAB.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// No NAT: the router's WAN has a public address.
    Open,
    /// A home router: endpoint-independent mapping (the source port is kept
    /// when free), address-and-port-dependent filtering.
    Cone,
    /// Cone plus a static port forward of UDP 51820 to the router:
    /// endpoint-independent filtering for the mesh port.
    Forwarded,
    /// Endpoint-dependent mapping (a new external port for every new
    /// destination), address-and-port-dependent filtering.
    Symmetric,
    /// A cone home router behind a symmetric carrier-grade NAT whose inside
    /// network is 100.64.N.0/24 (shared address space, RFC 6598).
    Cgnat,
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Open => "open",
            NatKind::Cone => "cone",
            NatKind::Forwarded => "forwarded",
            NatKind::Symmetric => "symmetric",
            NatKind::Cgnat => "cgnat",
        }
    }

    /// Whether other routers may list this one's endpoint in their config:
    /// its public address and mesh port are stable and reachable unasked.
    pub fn listed_endpoint(self) -> bool {
        matches!(self, NatKind::Open | NatKind::Forwarded)
    }
}

/// The NAT boxes in front of one router.
pub struct NatBoxes {
    /// The NAT next to the router (`{prefix}nN`): the only one, or the home
    /// router of a CGNAT.
    pub home: Netns,
    /// The carrier NAT of a CGNAT (`{prefix}gN`).
    pub carrier: Option<Netns>,
    /// The rule files loaded, in the order home, carrier.
    pub rules: Vec<PathBuf>,
}

pub struct NatLab {
    pub tag: String,
    pub inet: Netns,
    pub routers: Vec<Router>,
    pub kinds: Vec<NatKind>,
    /// Index n-1: the NATs in front of router n (`None` for Open).
    pub nats: Vec<Option<NatBoxes>>,
    pub dir: TempDir,
    pub meshd: PathBuf,
    /// BGP hold time written to every config (seconds).
    pub hold_time: u16,
    /// More options for every router's main section.
    pub main_options: Vec<(String, String)>,
    /// More options for one router's main section: (router, option, value).
    pub router_options: Vec<(usize, String, String)>,
    /// More options for one member section in one router's config:
    /// (router, member, option, value).
    pub member_options: Vec<(usize, usize, String, String)>,
}

/// The filtering of a home router's firewall, shared by every NAT kind:
/// replies (and ICMP errors about them) come in, nothing new does.
///
/// The input chain matters as much as the forward chain. Without its drop,
/// an unsolicited datagram to the NAT's own address, say peer:P →
/// nat:51820 (the other side's first hole-punching packet, arriving before
/// ours left), is delivered locally, answered with ICMP port unreachable,
/// and its conntrack entry is confirmed. When our router then sends
/// 10.N.0.2:51820 → peer:P, masquerade would produce the reply tuple
/// peer:P → nat:51820, which that entry already holds: the well-known
/// conntrack clash, so masquerade picks another port and the hole punched
/// by the peer leads nowhere. A real home router's WAN input policy drops
/// such packets; a packet dropped in a filter chain never confirms its
/// conntrack entry, so the port stays free and the mapping stays
/// endpoint-independent.
const FILTER_CHAINS: &str = "\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"out\" ct state established,related accept
\t\t# the WAN input policy of a home router (see nat.rs: the conntrack clash)
\t\tiifname \"out\" counter drop
\t}
";

/// The rule set of one NAT box. `forward_to`: a static DNAT of UDP 51820
/// on the outside to that inside address (Forwarded). `random`: a new,
/// random external port for every new mapping (endpoint-dependent
/// mapping), else the source port is kept when free.
fn nat_rules(what: &str, random: bool, forward_to: Option<Ipv4Addr>) -> String {
    let mut r = format!("# {what}\ntable ip natlab {{\n");
    if let Some(inside) = forward_to {
        r.push_str(&format!(
            "\tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\t# the mesh port forwarded to the router\n\
             \t\tiifname \"out\" udp dport 51820 counter dnat to {inside}:51820\n\
             \t}}\n"
        ));
    }
    r.push_str(&format!(
        "\tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"out\" counter masquerade{}\n\
         \t}}\n",
        if random { " random" } else { "" }
    ));
    r.push_str(FILTER_CHAINS);
    r.push_str(
        "\tchain forward {\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"out\" ct state established,related accept\n",
    );
    if forward_to.is_some() {
        r.push_str("\t\tiifname \"out\" ct status dnat udp dport 51820 counter accept\n");
    }
    r.push_str("\t\tiifname \"out\" counter drop\n\t}\n}\n");
    r
}

impl NatLab {
    /// Builds the namespaces, NATs and meshd configs (meshd not started).
    /// Router n (1-based) sits behind `kinds[n - 1]`.
    pub fn build(tag: &str, meshd: &Path, kinds: &[NatKind]) -> NatLab {
        assert!(
            !kinds.is_empty() && kinds.len() < 50,
            "1 to 49 routers (public addresses .N, .100+N, .150+N must not overlap)"
        );
        let tag = super::lab_prefix(tag);
        let dir = TempDir::new(&format!("meshd-lab-{tag}"));
        let inet = Netns::new(&format!("{tag}i"));
        inet.ip(&["link", "add", "br0", "type", "bridge"]);
        inet.ip(&["link", "set", "br0", "up"]);
        let mut routers = Vec::new();
        let mut nats = Vec::new();
        for (i, &kind) in kinds.iter().enumerate() {
            let n = i + 1;
            let ns = Netns::new(&format!("{tag}r{n}"));
            let console = Netns::new(&format!("{tag}c{n}"));
            let bridge_port = format!("w{n}");
            let nat = match kind {
                NatKind::Open => {
                    veth(
                        &ns,
                        "wan",
                        &format!("198.51.100.{n}/24"),
                        &inet,
                        &bridge_port,
                        "",
                    );
                    None
                }
                NatKind::Cone | NatKind::Forwarded | NatKind::Symmetric => {
                    let home = nat_box(&format!("{tag}n{n}"));
                    veth(
                        &ns,
                        "wan",
                        &format!("10.{n}.0.2/24"),
                        &home,
                        "in",
                        &format!("10.{n}.0.1/24"),
                    );
                    veth(
                        &home,
                        "out",
                        &format!("198.51.100.{}/24", 100 + n),
                        &inet,
                        &bridge_port,
                        "",
                    );
                    ns.ip(&["route", "add", "default", "via", &format!("10.{n}.0.1")]);
                    let rules = match kind {
                        NatKind::Cone => nat_rules("cone", false, None),
                        NatKind::Forwarded => nat_rules(
                            "forwarded: cone + UDP 51820 to the router",
                            false,
                            Some(Ipv4Addr::new(10, n as u8, 0, 2)),
                        ),
                        _ => nat_rules("symmetric", true, None),
                    };
                    let file = load_rules(&home, &dir, &format!("n{n}"), &rules);
                    Some(NatBoxes {
                        home,
                        carrier: None,
                        rules: vec![file],
                    })
                }
                NatKind::Cgnat => {
                    let home = nat_box(&format!("{tag}n{n}"));
                    let carrier = nat_box(&format!("{tag}g{n}"));
                    veth(
                        &ns,
                        "wan",
                        &format!("10.{n}.0.2/24"),
                        &home,
                        "in",
                        &format!("10.{n}.0.1/24"),
                    );
                    veth(
                        &home,
                        "out",
                        &format!("100.64.{n}.2/24"),
                        &carrier,
                        "in",
                        &format!("100.64.{n}.1/24"),
                    );
                    veth(
                        &carrier,
                        "out",
                        &format!("198.51.100.{}/24", 150 + n),
                        &inet,
                        &bridge_port,
                        "",
                    );
                    ns.ip(&["route", "add", "default", "via", &format!("10.{n}.0.1")]);
                    home.ip(&["route", "add", "default", "via", &format!("100.64.{n}.1")]);
                    // The carrier is an ordinary router towards its
                    // customers: it forwards, decrements the TTL and sends
                    // ICMP time exceeded from 100.64.N.1 (its output is not
                    // filtered), so a TTL-limited probe finds a hop in
                    // 100.64.0.0/10.
                    let home_file = load_rules(
                        &home,
                        &dir,
                        &format!("n{n}"),
                        &nat_rules("cgnat home router: cone", false, None),
                    );
                    let carrier_file = load_rules(
                        &carrier,
                        &dir,
                        &format!("g{n}"),
                        &nat_rules("cgnat carrier: symmetric", true, None),
                    );
                    Some(NatBoxes {
                        home,
                        carrier: Some(carrier),
                        rules: vec![home_file, carrier_file],
                    })
                }
            };
            inet.ip(&["link", "set", &bridge_port, "master", "br0"]);
            routers.push(Router::new(n, ns, console, &dir, meshd));
            nats.push(nat);
        }
        let lab = NatLab {
            tag,
            inet,
            routers,
            kinds: kinds.to_vec(),
            nats,
            dir,
            meshd: meshd.to_path_buf(),
            hold_time: 9,
            main_options: Vec::new(),
            router_options: Vec::new(),
            member_options: Vec::new(),
        };
        lab.write_configs();
        lab
    }

    pub fn router(&self, n: usize) -> &Router {
        &self.routers[n - 1]
    }

    pub fn kind(&self, n: usize) -> NatKind {
        self.kinds[n - 1]
    }

    /// The NAT next to router `n` (the home router of a CGNAT).
    pub fn nat_ns(&self, n: usize) -> Option<&Netns> {
        self.nats[n - 1].as_ref().map(|b| &b.home)
    }

    /// The carrier NAT of router `n`, if it is behind a CGNAT.
    pub fn carrier_ns(&self, n: usize) -> Option<&Netns> {
        self.nats[n - 1].as_ref()?.carrier.as_ref()
    }

    /// The address the internet sees router `n` as: its own, or its
    /// outermost NAT's outside address.
    pub fn public_addr(&self, n: usize) -> Ipv4Addr {
        let last = match self.kind(n) {
            NatKind::Open => n,
            NatKind::Cone | NatKind::Forwarded | NatKind::Symmetric => 100 + n,
            NatKind::Cgnat => 150 + n,
        };
        Ipv4Addr::new(198, 51, 100, last as u8)
    }

    /// Router `n`'s own WAN address.
    pub fn wan_addr(&self, n: usize) -> Ipv4Addr {
        match self.kind(n) {
            NatKind::Open => self.public_addr(n),
            _ => Ipv4Addr::new(10, n as u8, 0, 2),
        }
    }

    /// (Re)writes every router's meshd config from the lab's fields
    /// (`hold_time`, `main_options`); `build` already did once.
    pub fn write_configs(&self) {
        for n in 1..=self.routers.len() {
            self.write_config(n);
        }
    }

    fn write_config(&self, n: usize) {
        let r = self.router(n);
        let mut c = format!(
            "config meshd 'main'\n\
             \toption private_key_file '{}'\n\
             \toption listen_port '51820'\n\
             \toption overlay '10.0.0.{n}'\n\
             \toption asn '{}'\n\
             \tlist announce '192.168.{n}.0/24'\n\
             \toption hold_time '{}'\n\
             \toption connect_retry '1'\n\
             \toption tun 'meshd0'\n\
             \toption control_socket '{}'\n\
             \toption log_level 'debug'\n",
            self.dir.path().join(format!("r{n}.key")).display(),
            65000 + n,
            self.hold_time,
            r.socket.display()
        );
        for (option, value) in &self.main_options {
            c.push_str(&format!("\toption {option} '{value}'\n"));
        }
        for (_, option, value) in self.router_options.iter().filter(|o| o.0 == n) {
            c.push_str(&format!("\toption {option} '{value}'\n"));
        }
        for m in 1..=self.routers.len() {
            if m == n {
                continue;
            }
            c.push_str(&format!(
                "\nconfig member 'r{m}'\n\
                 \toption public_key '{}'\n\
                 \toption overlay '10.0.0.{m}'\n\
                 \toption asn '{}'\n\
                 \tlist prefix '192.168.{m}.0/24'\n",
                self.router(m).public_key,
                65000 + m
            ));
            for (_, _, option, value) in self.member_options.iter().filter(|o| o.0 == n && o.1 == m)
            {
                c.push_str(&format!("\toption {option} '{value}'\n"));
            }
            if self.kind(m).listed_endpoint() {
                c.push_str(&format!(
                    "\tlist endpoint '{}:51820'\n",
                    self.public_addr(m)
                ));
            }
        }
        std::fs::write(&r.config, c).unwrap();
    }

    /// Starts (or restarts) meshd on router `n`.
    pub fn start(&mut self, n: usize) {
        let meshd = self.meshd.clone();
        self.routers[n - 1].start_meshd(&meshd);
    }

    pub fn start_all(&mut self) {
        for n in 1..=self.routers.len() {
            self.start(n);
        }
    }

    /// A power cut: every link down first, then `kill -9` (LAB.md).
    pub fn power_cut(&mut self, n: usize) {
        self.routers[n - 1].power_cut();
    }

    /// Power back: links up, meshd started with no other step.
    pub fn power_on(&mut self, n: usize) {
        let r = &self.routers[n - 1];
        r.links_up();
        // Taking the link down removed the default route through the NAT.
        if self.kinds[n - 1] != NatKind::Open {
            r.ns.ip(&["route", "replace", "default", "via", &format!("10.{n}.0.1")]);
        }
        self.start(n);
    }

    /// `meshd status --json` of router `n`, raw (as seed.rs asks it: the
    /// config names the control socket).
    pub fn status_json(&self, n: usize) -> Option<String> {
        self.router(n).status_json(&self.meshd)
    }

    /// Router `n`'s status document.
    pub fn status(&self, n: usize) -> Option<serde_json::Value> {
        serde_json::from_str(&self.status_json(n)?).ok()
    }

    /// Pings console `b` from console `a` once (1 s timeout).
    pub fn ping(&self, a: usize, b: usize) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router(a).console.name,
                "ping",
                "-c1",
                "-W1",
                "-q",
            ])
            .arg(format!("192.168.{b}.10"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for r in &self.routers {
            s.push_str(&format!("--- r{} log ---\n", r.n));
            s.push_str(&std::fs::read_to_string(&r.log).unwrap_or_default());
        }
        s
    }

    /// Every NAT's rule set as loaded, with its counters, for a failure
    /// report.
    pub fn nat_report(&self) -> String {
        let mut s = String::new();
        for (i, nat) in self.nats.iter().enumerate() {
            let Some(nat) = nat else { continue };
            for ns in std::iter::once(&nat.home).chain(nat.carrier.as_ref()) {
                let out = ns
                    .cmd("nft")
                    .args(["list", "ruleset"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|e| format!("nft: {e}"));
                s.push_str(&format!(
                    "--- r{} ({}): {} ---\n{out}",
                    i + 1,
                    self.kinds[i].name(),
                    ns.name
                ));
            }
        }
        s
    }
}

/// A namespace that forwards: a NAT box.
fn nat_box(name: &str) -> Netns {
    let ns = Netns::new(name);
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns
}

/// Writes `rules` to `<dir>/<name>.nft` and loads them in `ns`.
fn load_rules(ns: &Netns, dir: &TempDir, name: &str, rules: &str) -> PathBuf {
    let file = dir.path().join(format!("{name}.nft"));
    std::fs::write(&file, rules).unwrap();
    ns.exec(&["nft", "-f", file.to_str().unwrap()]);
    file
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for r in &mut self.routers {
            for mut p in r.process.take().into_iter().chain(r.others.drain(..)) {
                let _ = p.kill();
                let _ = p.wait();
            }
        }
        // The namespaces (routers, consoles, NATs, inet) delete themselves
        // as the fields drop.
    }
}
