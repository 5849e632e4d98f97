//! NAT behaviour as a console's NAT test sees it (CONSOLES.md, "Testing it
//! without a console"): Debian's RFC 3489 `stund` in the lab's internet, its
//! `stun` client run from a console namespace, a minimal Binding request in
//! Rust, and a UDP peer that hole-punches towards another console the way
//! consoles do after matchmaking.
//!
//! ```text
//!   cN ─ rN ─(NAT)─ inet br0: 203.0.113.1 + 203.0.113.2  (stund, ports 3478/3479)
//! ```
//!
//! What Debian's client (stun-client 0.97) does and prints, observed in the
//! lab: `stun <server> -v -p <port>` binds `<port>` *and* `<port>+1` on
//! 0.0.0.0 (tests I, I(2) and the hairpin test go from the first, the
//! change-request tests II and III from the second), prints on stdout
//!
//! ```text
//! STUN client version 0.97
//! Primary: Independent Mapping, Port Dependent Filter, preserves ports, no hairpin<TAB>
//! Return value is 0x000017
//! ```
//!
//! and, with `-v`, each response's attributes on stderr, e.g.
//! `MappedAddress = 198.51.100.103:41000` followed by
//! `Received message of type 257  id=1` (test I's response; `id=10` is test
//! I(2)'s, sent to the alternate address). The exit status is the return
//! value's low byte: the type (0x00 open, 0x02 independent filter, 0x04
//! address-dependent filter, 0x06 port-dependent filter, 0x08 dependent
//! mapping, 0x0A firewall, 0x0C blocked, 0x0E unknown) | 0x01 when the port
//! was preserved | 0x10 when there was no hairpin. So a zero exit status
//! means nothing; [`parse_stun_output`] reads the `Primary:` line.
//!
//! Earlier packets leave filter state in a NAT: give every test a fresh
//! local port (and keep `port + 1` free for the client's second socket).

#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::nat::{NatKind, NatLab};
use super::{wait_for, Netns};

/// The STUN server's primary address (on the `inet` bridge).
pub const STUN_PRIMARY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Its alternate address, for RFC 3489's change-IP tests.
pub const STUN_ALTERNATE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// `stund`'s ports (its defaults, `-p` and `-o`).
pub const STUN_PORT: u16 = 3478;
pub const STUN_ALT_PORT: u16 = 3479;
/// The lab's public network the routers and NATs sit on (nat.rs).
const LAB_PUBLIC: &str = "198.51.100.0/24";
const STUN_NET: &str = "203.0.113.0/24";

/// Puts [`STUN_PRIMARY`] and [`STUN_ALTERNATE`] on `inet`'s bridge `br0`,
/// with a route back to the lab's public addresses (the bridge has no
/// address of its own otherwise, so stund could not answer them).
pub fn add_stun_addresses(inet: &Netns) {
    for addr in [STUN_PRIMARY, STUN_ALTERNATE] {
        inet.ip(&["addr", "add", &format!("{addr}/24"), "dev", "br0"]);
    }
    inet.ip(&["route", "add", LAB_PUBLIC, "dev", "br0"]);
}

/// Routes 203.0.113.0/24 out of `dev` in `ns`, on-link (the bridge answers
/// ARP for the server's addresses).
pub fn route_to_stun(ns: &Netns, dev: &str) {
    ns.ip(&["route", "add", STUN_NET, "dev", dev]);
}

/// Makes the STUN server reachable from every router of `lab`: addresses
/// and return route in `inet`, a route in the namespace that faces the
/// internet (the open router itself, the NAT box, or a CGNAT's carrier),
/// then starts `stund`.
pub fn attach_stun(lab: &NatLab) -> Stund {
    add_stun_addresses(&lab.inet);
    for n in 1..=lab.routers.len() {
        match lab.kind(n) {
            NatKind::Open => route_to_stun(&lab.router(n).ns, "wan"),
            NatKind::Cgnat => route_to_stun(lab.carrier_ns(n).unwrap(), "out"),
            NatKind::Cone | NatKind::Forwarded | NatKind::Symmetric => {
                route_to_stun(lab.nat_ns(n).unwrap(), "out")
            }
        }
    }
    Stund::start(&lab.inet, STUN_PRIMARY, STUN_ALTERNATE)
}

/// The nftables rules [`home_router_nat`] loads.
pub const HOME_ROUTER_RULES: &str = "table ip homenat {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"wan\" ip saddr 192.168.0.0/16 counter masquerade
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"wan\" ct state established,related accept
\t\tiifname \"wan\" udp dport 51820 accept
\t\tiifname \"wan\" counter drop
\t}
}
";

/// Makes a lab router the console's home router: the console's packets
/// leave masqueraded to the router's WAN address (the routers of nat.rs
/// only route LAN → WAN, and nothing upstream knows a way back to
/// 192.168.N.0/24), and the WAN input drops what is new except meshd's
/// port 51820. The drop is a home router's WAN policy and matters: an
/// unsolicited datagram to the router's address (a peer's first
/// hole-punching packet) would otherwise be answered with ICMP and leave a
/// conntrack entry that makes masquerade pick another port later (the
/// conntrack clash described in nat.rs). Masquerade keeps the source port
/// when free, so the router is a cone NAT: endpoint-independent mapping,
/// address-and-port-dependent filtering.
pub fn home_router_nat(router: &Netns) {
    let file = std::env::temp_dir().join(format!("homenat-{}.nft", router.name));
    std::fs::write(&file, HOME_ROUTER_RULES).unwrap();
    router.exec(&["nft", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
}

/// Debian's `stund` (RFC 3489) in a namespace, on two addresses already
/// configured there; killed on drop.
pub struct Stund {
    child: Child,
    pub primary: Ipv4Addr,
    pub alternate: Ipv4Addr,
    pub log: PathBuf,
}

impl Stund {
    /// `stund -h primary -a alternate` (ports 3478 and 3479 on both), in the
    /// foreground so the child is stund itself; waits up to 5 s until its
    /// four sockets are bound.
    pub fn start(ns: &Netns, primary: Ipv4Addr, alternate: Ipv4Addr) -> Stund {
        super::require_cmd("stund", "stun-server");
        let log = std::env::temp_dir().join(format!("stund-{}.log", ns.name));
        let out = File::create(&log).unwrap();
        let child = ns
            .cmd("stund")
            .args(["-h", &primary.to_string(), "-a", &alternate.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start stund");
        let mut stund = Stund {
            child,
            primary,
            alternate,
            log,
        };
        let wanted: Vec<String> = [primary, alternate]
            .iter()
            .flat_map(|a| [STUN_PORT, STUN_ALT_PORT].map(|p| format!("{a}:{p}")))
            .collect();
        let listening = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            if let Ok(Some(status)) = stund.child.try_wait() {
                panic!("stund exited ({status}): {}", stund.log_text());
            }
            let out = ns.cmd("ss").args(["-Hnlu"]).output().ok()?;
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            let bound: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .collect();
            wanted
                .iter()
                .all(|w| bound.contains(&w.as_str()))
                .then_some(())
        });
        assert!(
            listening.is_some(),
            "stund did not bind {wanted:?} within 5 s: {}",
            stund.log_text()
        );
        stund
    }

    pub fn primary(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.primary, STUN_PORT)
    }

    pub fn alternate(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.alternate, STUN_PORT)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Stund {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Filtering behaviour as RFC 4787 names it (RFC 3489: full cone,
/// restricted cone, port-restricted cone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone may send to the mapping (or there is no NAT and no firewall).
    Independent,
    /// Only addresses the inside host sent to.
    AddressDependent,
    /// Only address:port pairs the inside host sent to.
    PortDependent,
    /// Not tested (a dependent mapping) or not known (blocked, firewall).
    Unknown,
}

/// What `stun` found from one namespace and local port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunReport {
    /// "Open", "Independent Mapping, ..." or "Firewall" (no NAT: the
    /// mapping is the identity, so it is independent too).
    pub mapping_independent: bool,
    pub filtering: Filtering,
    /// Test I's mapped address (from `-v`, or a Binding request of ours
    /// from the same local port when the client printed none).
    pub mapped: Option<SocketAddrV4>,
    /// No NAT and nothing filtered ("Open").
    pub open: bool,
    /// The client's "preserves ports" / "random port"; for Open and
    /// Firewall, whether the mapped port is the local one.
    pub preserves_port: Option<bool>,
    /// "will hairpin" / "no hairpin" (for Open and Firewall, from the return
    /// value's 0x10 bit).
    pub hairpin: Option<bool>,
    /// The `Primary:` line's text, e.g. "Dependent Mapping, random port,
    /// no hairpin" (empty if the client printed none).
    pub summary: String,
    /// "Return value is 0x......".
    pub return_value: Option<u32>,
    /// The command line, exit status, stdout and stderr.
    pub raw: String,
}

/// Parses `stun -v`'s output (stdout and stderr) for a test from
/// `local_port`; `raw` is left to the caller.
pub fn parse_stun_output(stdout: &str, stderr: &str, local_port: u16) -> StunReport {
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Primary:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let return_value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Return value is 0x"))
        .and_then(|h| u32::from_str_radix(h.trim(), 16).ok());
    // The mapped address of test I: the `MappedAddress` line of the block
    // that `Received message ... id=1` closes.
    let mut last_mapped = None;
    let mut mapped = None;
    for line in stderr.lines() {
        if let Some(a) = line.strip_prefix("MappedAddress = ") {
            last_mapped = a.trim().parse::<SocketAddrV4>().ok();
        } else if line.starts_with("Received message of type") {
            if line.trim_end().ends_with(" id=1") && mapped.is_none() {
                mapped = last_mapped;
            }
            last_mapped = None;
        }
    }
    let open = summary == "Open";
    let firewall = summary == "Firewall";
    let mapping_independent = open || firewall || summary.starts_with("Independent Mapping");
    let filtering = if open || summary.starts_with("Independent Mapping, Independent Filter") {
        Filtering::Independent
    } else if summary.starts_with("Independent Mapping, Address Dependent Filter") {
        Filtering::AddressDependent
    } else if summary.starts_with("Independent Mapping, Port Dependent Filter") {
        Filtering::PortDependent
    } else {
        Filtering::Unknown
    };
    let preserves_port = if summary.contains("preserves ports") {
        Some(true)
    } else if summary.contains("random port") {
        Some(false)
    } else {
        mapped.map(|m: SocketAddrV4| m.port() == local_port)
    };
    let hairpin = if summary.contains("will hairpin") {
        Some(true)
    } else if summary.contains("no hairpin") {
        Some(false)
    } else if open || firewall {
        return_value.map(|r| r & 0x10 == 0)
    } else {
        None
    };
    StunReport {
        mapping_independent,
        filtering,
        mapped,
        open,
        preserves_port,
        hairpin,
        summary,
        return_value,
        raw: String::new(),
    }
}

/// Runs `timeout 20 stun <server> -v -p <local_port>` in `ns` (it also
/// binds `local_port + 1`) and parses what it printed.
pub fn stun_test(ns: &Netns, server: Ipv4Addr, local_port: u16) -> StunReport {
    super::require_cmd("stun", "stun-client");
    let args = [
        "20".to_string(),
        "stun".into(),
        server.to_string(),
        "-v".into(),
        "-p".into(),
        local_port.to_string(),
    ];
    let out = ns
        .cmd("timeout")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run stun");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut report = parse_stun_output(&stdout, &stderr, local_port);
    report.raw = format!(
        "$ ip netns exec {} timeout {}\nexit status: {:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        ns.name,
        args.join(" "),
        out.status.code()
    );
    if report.mapped.is_none() {
        report.mapped = stun_binding(ns, SocketAddrV4::new(server, STUN_PORT), local_port);
        report.raw.push_str(&format!(
            "--- mapped address from our own Binding request: {:?}\n",
            report.mapped
        ));
        if report.preserves_port.is_none() {
            report.preserves_port = report.mapped.map(|m| m.port() == local_port);
        }
    }
    report
}

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
/// RFC 5389's XOR-MAPPED-ADDRESS, and the code point of the drafts before
/// it (stund 0.97 sends 0x0020).
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const XOR_MAPPED_ADDRESS_OLD: u16 = 0x8020;

/// A Binding request (RFC 5389 §6: no attributes; the magic cookie makes
/// the first four bytes of RFC 3489's 16-byte transaction ID, so an RFC
/// 3489 server answers it too and XORs with the cookie).
pub fn binding_request(transaction: [u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // length 0
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(&transaction);
    m
}

/// The mapped address in a Binding success response to `transaction`:
/// XOR-MAPPED-ADDRESS if present, else MAPPED-ADDRESS. `None` for anything
/// else (another message, a truncated one, an IPv6 address).
pub fn parse_binding_response(msg: &[u8], transaction: [u8; 12]) -> Option<SocketAddrV4> {
    if msg.len() < 20
        || u16::from_be_bytes([msg[0], msg[1]]) != BINDING_SUCCESS
        || msg[4..8] != MAGIC_COOKIE.to_be_bytes()
        || msg[8..20] != transaction
    {
        return None;
    }
    let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
    let body = msg.get(20..20 + len)?;
    let (mut plain, mut xored) = (None, None);
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        // family 0x01 = IPv4: reserved, family, port, address
        if alen == 8 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2], value[3]]);
            let addr = u32::from_be_bytes([value[4], value[5], value[6], value[7]]);
            match kind {
                MAPPED_ADDRESS => plain = Some(SocketAddrV4::new(addr.into(), port)),
                XOR_MAPPED_ADDRESS | XOR_MAPPED_ADDRESS_OLD => {
                    xored = Some(SocketAddrV4::new(
                        (addr ^ MAGIC_COOKIE).into(),
                        port ^ (MAGIC_COOKIE >> 16) as u16,
                    ))
                }
                _ => {}
            }
        }
        at += 4 + alen.div_ceil(4) * 4; // attributes are padded to 4 bytes
    }
    xored.or(plain)
}

/// A transaction ID unique enough for a lab: time, pid and a counter.
fn transaction_id() -> [u8; 12] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u32;
    let mut t = [0u8; 12];
    t[0..4].copy_from_slice(&nanos.to_be_bytes());
    t[4..8].copy_from_slice(&std::process::id().to_be_bytes());
    t[8..12].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    t
}

/// Asks `server` for `socket`'s mapped address: three tries, 500 ms each.
/// Datagrams that are not the answer (a peer's, a late one) are skipped.
pub fn binding_on(socket: &UdpSocket, server: SocketAddrV4) -> Option<SocketAddrV4> {
    let transaction = transaction_id();
    let request = binding_request(transaction);
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&request, server).ok()?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            socket.set_read_timeout(Some(left)).ok()?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == server.into() => {
                    if let Some(m) = parse_binding_response(&buf[..n], transaction) {
                        return Some(m);
                    }
                }
                Ok(_) => {}
                Err(_) => break, // timed out
            }
        }
    }
    None
}

/// Binds `0.0.0.0:local_port` in `ns` and asks `server` for the mapped
/// address ([`binding_on`]).
pub fn stun_binding(ns: &Netns, server: SocketAddrV4, local_port: u16) -> Option<SocketAddrV4> {
    ns.spawn(move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, local_port))
            .unwrap_or_else(|e| panic!("bind 0.0.0.0:{local_port}: {e}"));
        binding_on(&socket, server)
    })
    .join()
    .expect("binding thread")
}

/// The first bytes of every [`UdpPeer`] datagram, then the sequence number.
const PEER_MAGIC: &[u8; 4] = b"LABP";

/// A console's game socket: one UDP socket on `0.0.0.0:local_port` in a
/// namespace, used both to learn the mapped address and to send to the
/// other console, so the mapping learned is the one the game uses.
///
/// The socket is created on a thread inside the namespace; a socket
/// belongs to the namespace it was created in, so it may then be used from
/// any thread. [`UdpPeer::start_blast`] runs on a thread of its own: start
/// both consoles' blasts, then join both.
#[derive(Clone)]
pub struct UdpPeer {
    socket: Arc<UdpSocket>,
    pub local_port: u16,
}

impl UdpPeer {
    pub fn bind(ns: &Netns, local_port: u16) -> UdpPeer {
        let socket = ns
            .spawn(move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, local_port)))
            .join()
            .expect("bind thread")
            .unwrap_or_else(|e| panic!("bind 0.0.0.0:{local_port} in {}: {e}", ns.name));
        UdpPeer {
            socket: Arc::new(socket),
            local_port,
        }
    }

    /// The mapped address of this socket as `server` sees it.
    pub fn learn_mapped(&self, server: SocketAddrV4) -> Option<SocketAddrV4> {
        binding_on(&self.socket, server)
    }

    /// Sends `count` datagrams (sequence numbers 0..count) to `to`, one every
    /// `interval`, receiving all the while and for 500 ms after the last;
    /// returns the source and sequence number of every peer datagram
    /// received, in order.
    pub fn blast(
        &self,
        to: SocketAddrV4,
        count: u32,
        interval: Duration,
    ) -> Vec<(SocketAddrV4, u32)> {
        const LINGER: Duration = Duration::from_millis(500);
        let start = Instant::now();
        let mut received = Vec::new();
        let mut buf = [0u8; 1500];
        let mut next_seq = 0u32;
        loop {
            let now = Instant::now();
            let next_send = start + interval * next_seq;
            if next_seq < count && now >= next_send {
                let mut datagram = [0u8; 8];
                datagram[..4].copy_from_slice(PEER_MAGIC);
                datagram[4..].copy_from_slice(&next_seq.to_be_bytes());
                // A send error (no route yet, a full queue) is a loss like
                // any other.
                let _ = self.socket.send_to(&datagram, to);
                next_seq += 1;
                continue;
            }
            let until = if next_seq < count {
                next_send
            } else {
                start + interval * count.saturating_sub(1) + LINGER
            };
            let Some(wait) = until.checked_duration_since(now).filter(|d| !d.is_zero()) else {
                if next_seq < count {
                    continue;
                }
                break;
            };
            self.socket.set_read_timeout(Some(wait)).unwrap();
            if let Ok((n, std::net::SocketAddr::V4(from))) = self.socket.recv_from(&mut buf) {
                if n == 8 && &buf[..4] == PEER_MAGIC {
                    let seq = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                    received.push((from, seq));
                }
            }
        }
        received
    }

    /// The next datagram within `timeout`: its source and bytes.
    pub fn recv(&self, timeout: Duration) -> Option<(SocketAddrV4, Vec<u8>)> {
        let mut buf = [0u8; 1500];
        self.socket.set_read_timeout(Some(timeout)).ok()?;
        match self.socket.recv_from(&mut buf) {
            Ok((n, std::net::SocketAddr::V4(from))) => Some((from, buf[..n].to_vec())),
            _ => None,
        }
    }

    /// Sends `bytes` to `to` (errors are losses).
    pub fn send(&self, to: SocketAddrV4, bytes: &[u8]) {
        let _ = self.socket.send_to(bytes, to);
    }

    /// [`UdpPeer::blast`] on a thread of its own.
    pub fn start_blast(
        &self,
        to: SocketAddrV4,
        count: u32,
        interval: Duration,
    ) -> JoinHandle<Vec<(SocketAddrV4, u32)>> {
        let peer = self.clone();
        std::thread::spawn(move || peer.blast(to, count, interval))
    }
}
