//! A deterministic network of mesh-core nodes in one thread.
//!
//! - Virtual time: the harness jumps from one deadline (a node's
//!   `poll_timeout`, a datagram's arrival) to the next, and moves boringtun's
//!   mock clock along with it (feature `sim`), so WireGuard's timers follow.
//! - The underlay: every node has a public address 198.51.100.N:51820; a
//!   datagram arrives only over a configured link (the others stand for NATs
//!   that never open), after the link's latency plus seeded jitter, unless the
//!   seeded loss drops it.
//! - Consoles: console N sits behind node N at 192.168.N.10; the harness
//!   injects UDP probes as LAN packets and records what comes out of LANs.
//!
//! One artifact: boringtun stamps handshake initiations with the real wall
//! clock at tunnel creation plus (mock) time since. Virtual time runs ahead of
//! the wall clock, so a node restarted in a simulation sends stamps older
//! than its previous life's until it has been up as long, and peers refuse
//! them as replays (as WireGuard must). Restarts therefore rejoin more slowly
//! here than on real clocks.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mesh_core::node::{Node, NodeConfig, NodeEvent, NodeMemory};
use mesh_core::wg::boring::{public_key, BoringCrypto};
use mesh_core::wg::{Key, MemberConfig};
use mesh_core::{Duration, Instant, Prefix};

pub type SimNode = Node<'static, BoringCrypto>;

/// Set `SIM_LOG=debug` to see the nodes' logs.
struct SimLog;
impl log::Log for SimLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.level() <= log::max_level() {
            eprintln!("{}: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}
static SIM_LOG: SimLog = SimLog;

pub fn init_log() {
    if let Ok(level) = std::env::var("SIM_LOG") {
        let _ = log::set_logger(&SIM_LOG);
        log::set_max_level(level.parse().unwrap_or(log::LevelFilter::Debug));
    }
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn private_key(n: usize) -> Key {
    // Not in byte 0 or 31: x25519 clamps their low and high bits.
    let mut k = [0x11u8; 32];
    k[5] = n as u8;
    k[6] = (n >> 8) as u8;
    Key(k)
}

pub fn underlay(n: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n as u8)), 51820)
}

pub fn overlay(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8)
}

pub fn lan(n: usize) -> Prefix {
    Prefix::v4(192, 168, n as u8, 0, 24).unwrap()
}

pub fn console(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n as u8, 10)
}

pub fn asn(n: usize) -> u32 {
    65000 + n as u32
}

/// A probe a console received.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub at: Instant,
    /// Which node's LAN it came out of.
    pub node: usize,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub seq: u32,
    /// ICMP errors are recorded with their type here (0 for probes).
    pub icmp_type: u8,
}

struct InFlight {
    at: u64,
    order: u64,
    from: usize,
    from_alt_port: bool,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    pub loss: f64,
    pub up: bool,
}

pub struct Sim {
    pub now: Instant,
    /// Node n is at index n (index 0 unused), `None` while powered off.
    pub nodes: Vec<Option<Box<SimNode>>>,
    pub links: BTreeMap<(usize, usize), Link>,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    rng: Rng,
    pub jitter: Duration,
    pub hold_time: u16,
    pub deliveries: Vec<Delivery>,
    /// What each node's driver was asked to send on its LAN as relayed
    /// discovery (time, node, IP packet).
    pub discovered: Vec<(Instant, usize, Vec<u8>)>,
    pub events: Vec<(Instant, usize, NodeEvent)>,
    clock_us: u64,
    /// Each node's next deadline, as it said after its last input (the
    /// driver contract: ask again only after feeding it).
    deadlines: Vec<Option<Instant>>,
    /// When set, every datagram put on the network is recorded here
    /// (sender, destination, bytes).
    pub tap: Option<Vec<(usize, SocketAddr, Vec<u8>)>>,
    /// Where each node sends from (normally its underlay address; change it
    /// to make a node roam).
    pub source: Vec<SocketAddr>,
    /// The last arrival time scheduled on each directed link: jitter varies
    /// the delay but one path does not reorder. (smoltcp drops a segment whose
    /// ACK is older than one it has seen, data included, so reordering two
    /// back-to-back segments costs a retransmission timeout; real single-path
    /// tunnels rarely reorder.)
    last_arrival: BTreeMap<(usize, usize), u64>,
    /// Adjusts each node's configuration before it starts.
    pub configure: fn(usize, &mut NodeConfig),
    /// The prefix node n announces, and its members allow it (its LAN,
    /// or the alias its LAN is mapped to).
    pub announced: fn(usize) -> Prefix,
    /// How many times each node was started (a restart gets a new seed, as a
    /// real process seeded from the clock does).
    starts: Vec<u64>,
}

impl Sim {
    /// `n` nodes, no links yet.
    pub fn new(n: usize, seed: u64) -> Sim {
        init_log();
        mock_instant::MockClock::set_time(std::time::Duration::ZERO);
        Sim {
            now: Instant::from_secs(1),
            nodes: (0..=n).map(|_| None).collect(),
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            rng: Rng::new(seed),
            jitter: Duration::from_micros(500),
            hold_time: 3,
            deliveries: Vec::new(),
            discovered: Vec::new(),
            events: Vec::new(),
            clock_us: 0,
            deadlines: vec![None; n + 1],
            tap: None,
            source: (0..=n).map(underlay).collect(),
            last_arrival: BTreeMap::new(),
            configure: |_, _| {},
            announced: lan,
            starts: vec![0; n + 1],
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len() - 1
    }

    /// A tunnel between `a` and `b` is possible (both directions).
    pub fn link(&mut self, a: usize, b: usize, latency_ms: u64, loss: f64) {
        let l = Link {
            latency: Duration::from_millis(latency_ms),
            loss,
            up: true,
        };
        self.links.insert((a.min(b), a.max(b)), l);
    }

    /// Sets the loss rate of every link.
    pub fn set_loss(&mut self, loss: f64) {
        for l in self.links.values_mut() {
            l.loss = loss;
        }
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&(a.min(b), a.max(b)))
    }

    fn config(&self, n: usize) -> (NodeConfig, Vec<MemberConfig>) {
        let mut c = NodeConfig::new(private_key(n), overlay(n), asn(n));
        c.lan_prefixes.push((self.announced)(n)).unwrap();
        c.hold_time = self.hold_time;
        c.connect_retry = Duration::from_secs(1);
        c.seed = n as u64 * 7919 + self.starts[n] * 104_729;
        // A restart numbers its relayed discovery anew (the daemon uses
        // wall-clock seconds).
        c.boot = self.starts[n] as u32 + 1;
        (self.configure)(n, &mut c);
        let members = (1..=self.size())
            .filter(|&m| m != n)
            .map(|m| {
                let mut endpoints = heapless::Vec::new();
                if self.linked(n, m) {
                    endpoints.push(underlay(m)).unwrap();
                }
                MemberConfig {
                    name: heapless::String::try_from(format!("r{m}").as_str()).unwrap(),
                    public_key: public_key(&private_key(m)),
                    overlay: overlay(m),
                    overlay_v6: None,
                    asn: asn(m),
                    prefixes: heapless::Vec::from_slice(&[(self.announced)(m)]).unwrap(),
                    endpoints,
                    keepalive: Some(25),
                    hold_time: None,
                    bfd: mesh_core::wg::BfdSetting::Inherit,
                    exit: false,
                    inviter: true,
                }
            })
            .collect();
        (c, members)
    }

    /// Powers node `n` on (fresh state, same keys and configuration).
    pub fn start(&mut self, n: usize) {
        let (config, members) = self.config(n);
        self.starts[n] += 1;
        // Sized by its members, as the daemon sizes it by its configuration.
        let storage = NodeMemory::leak(members.len());
        let crypto = BoringCrypto::new(&config.private_key);
        let mut node = Box::new(Node::new(config, crypto, storage, self.now));
        for m in members {
            node.add_member(self.now, m).unwrap();
        }
        self.nodes[n] = Some(node);
        self.drain(n);
    }

    pub fn start_all(&mut self) {
        for n in 1..=self.size() {
            self.start(n);
        }
    }

    /// Power cut: the node stops at once (links down and process gone).
    pub fn power_off(&mut self, n: usize) {
        self.nodes[n] = None;
        self.deadlines[n] = None;
    }

    pub fn node(&self, n: usize) -> &SimNode {
        self.nodes[n].as_ref().expect("node is off")
    }

    pub fn node_mut(&mut self, n: usize) -> &mut SimNode {
        self.nodes[n].as_mut().expect("node is off")
    }

    fn advance_clock(&mut self, to: Instant) {
        let target = to.as_micros();
        if target > self.clock_us {
            if self.clock_us != 0 {
                mock_instant::MockClock::advance(std::time::Duration::from_micros(
                    target - self.clock_us,
                ));
            }
            self.clock_us = target;
        }
        self.now = self.now.max(to);
    }

    fn addr_to_node(&self, a: SocketAddr) -> Option<usize> {
        (1..=self.size()).find(|&n| self.source[n] == a || underlay(n) == a)
    }

    /// Drains node `n`'s outputs into the network, the LAN and the event log.
    fn drain(&mut self, n: usize) {
        let now = self.now;
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(d) = node.poll_transmit() {
            out.push((d.to, d.from == mesh_core::node::Port::Alt, d.bytes.to_vec()));
        }
        let mut lan = Vec::new();
        while let Some(p) = node.poll_lan_packet() {
            lan.push(p.to_vec());
        }
        while let Some(p) = node.poll_discovery_packet() {
            self.discovered.push((now, n, p.to_vec()));
        }
        while let Some(e) = node.poll_event() {
            self.events.push((now, n, e));
        }
        self.deadlines[n] = node.poll_timeout().map(|(t, _)| t);
        for (to, from_alt_port, bytes) in out {
            if let Some(tap) = self.tap.as_mut() {
                tap.push((n, to, bytes.clone()));
            }
            let dest = to;
            let Some(to) = self.addr_to_node(dest) else {
                continue;
            };
            let Some(link) = self.links.get(&(n.min(to), n.max(to))).copied() else {
                continue; // no path between these two (NAT)
            };
            if !link.up || self.rng.unit() < link.loss {
                continue;
            }
            let jitter = self.rng.below(self.jitter.as_micros().max(1));
            let earliest = self.last_arrival.get(&(n, to)).copied().unwrap_or(0);
            let at = (now.as_micros() + link.latency.as_micros() + jitter).max(earliest);
            self.last_arrival.insert((n, to), at);
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at,
                order: self.order,
                from: n,
                from_alt_port,
                to: dest,
                bytes,
            }));
        }
        for p in lan {
            if let Some(d) = parse_delivery(now, n, &p) {
                self.deliveries.push(d);
            }
        }
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        // A node whose deadline does not move after its timeout ran would
        // spin here at one instant forever: name it instead.
        let mut same_instant = (self.now, 0u32);
        loop {
            if same_instant.0 == self.now {
                same_instant.1 += 1;
                if same_instant.1 > 100_000 {
                    let stuck: Vec<_> = (1..=self.size())
                        .filter_map(|n| Some((n, self.nodes[n].as_ref()?.poll_timeout()?)))
                        .filter(|(_, (t, _))| *t <= self.now)
                        .collect();
                    let recent: Vec<_> = self.events.iter().rev().take(12).collect();
                    panic!(
                        "virtual time stuck at {:?}: {stuck:?}; last events {recent:?}",
                        self.now
                    );
                }
            } else {
                same_instant = (self.now, 0);
            }
            let mut next = self
                .queue
                .peek()
                .map(|Reverse(f)| Instant::from_micros(f.at));
            for t in self.deadlines.iter().flatten() {
                next = Some(next.map_or(*t, |x| x.min(*t)));
            }
            let Some(t) = next.filter(|t| *t <= until) else {
                self.advance_clock(until);
                return;
            };
            self.advance_clock(t.max(self.now));
            let now = self.now;
            while self
                .queue
                .peek()
                .is_some_and(|Reverse(f)| f.at <= now.as_micros())
            {
                let Reverse(f) = self.queue.pop().unwrap();
                let Some(to) = self.addr_to_node(f.to) else {
                    continue;
                };
                let mut from = self.source[f.from];
                if f.from_alt_port {
                    // The node's second port (STUN port-change answers).
                    from.set_port(from.port().wrapping_add(1));
                }
                if let Some(node) = self.nodes[to].as_mut() {
                    node.handle_udp(now, from, &f.bytes);
                    self.drain(to);
                }
            }
            for n in 1..=self.size() {
                if self.deadlines[n].is_some_and(|t| t <= now) {
                    if let Some(node) = self.nodes[n].as_mut() {
                        node.handle_timeout(now);
                        self.drain(n);
                    }
                }
            }
        }
    }

    /// Injects an IP packet into node `n`'s LAN side (from its console).
    pub fn lan_packet(&mut self, n: usize, packet: &[u8]) {
        let now = self.now;
        if let Some(node) = self.nodes[n].as_mut() {
            node.handle_lan_packet(now, packet);
            self.drain(n);
        }
    }

    /// Runs `f` on node `n` now, then sends what it queued.
    pub fn act(&mut self, n: usize, f: impl FnOnce(&mut SimNode, Instant)) {
        let now = self.now;
        if let Some(node) = self.nodes[n].as_mut() {
            f(node, now);
            self.drain(n);
        }
    }

    /// Delivers `bytes` to node `to` as if from `from`, now.
    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        if let Some(node) = self.nodes[to].as_mut() {
            node.handle_udp(now, from, bytes);
            self.drain(to);
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Sends a UDP probe from console `a` to console `b`.
    pub fn probe(&mut self, a: usize, b: usize, seq: u32) {
        let p = udp_probe(console(a), console(b), seq);
        let now = self.now;
        if let Some(node) = self.nodes[a].as_mut() {
            node.handle_lan_packet(now, &p);
            self.drain(a);
        }
    }

    /// Runs `d` while console `a` sends to console `b` every `every`;
    /// returns the sequence numbers sent and when.
    pub fn stream(
        &mut self,
        a: usize,
        b: usize,
        d: Duration,
        every: Duration,
        first_seq: u32,
    ) -> Vec<(u32, Instant)> {
        let end = self.now + d;
        let mut seq = first_seq;
        let mut sent = Vec::new();
        while self.now < end {
            self.probe(a, b, seq);
            sent.push((seq, self.now));
            seq += 1;
            let next = self.now + every;
            self.run_until(next);
        }
        sent
    }

    /// Probes from `a` to `b` that arrived, by sequence number.
    pub fn arrived(&self, a: usize, b: usize) -> BTreeMap<u32, Delivery> {
        self.deliveries
            .iter()
            .filter(|d| {
                d.node == b && d.src == console(a) && d.dst == console(b) && d.icmp_type == 0
            })
            .map(|d| (d.seq, *d))
            .collect()
    }

    /// Does node `n` have a route to every other node's LAN?
    pub fn converged(&self, n: usize, of: &[usize]) -> bool {
        let Some(node) = self.nodes[n].as_ref() else {
            return false;
        };
        of.iter()
            .filter(|&&m| m != n)
            .all(|&m| node.next_hop(IpAddr::V4(console(m))).is_some())
    }

    pub fn all_converged(&self, alive: &[usize]) -> bool {
        alive.iter().all(|&n| self.converged(n, alive))
    }

    /// Runs until `cond` holds (checked every `step`), at most `limit`.
    /// Returns the virtual time it took.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        step: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now.saturating_duration_since(start) < limit {
            if cond(self) {
                return Some(self.now.saturating_duration_since(start));
            }
            let next = self.now + step;
            self.run_until(next);
        }
        cond(self).then(|| self.now.saturating_duration_since(start))
    }
}

pub fn udp_probe(src: Ipv4Addr, dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    udp_probe_ttl(src, dst, seq, 64)
}

pub fn udp_probe_ttl(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, ttl: u8) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = mesh_core::ip::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&40000u16.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(&seq.to_be_bytes());
    p
}

fn parse_delivery(at: Instant, node: usize, p: &[u8]) -> Option<Delivery> {
    let info = mesh_core::ip::parse(p).ok()?;
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else {
        return None;
    };
    let (seq, icmp_type) = match info.protocol {
        17 => (u32::from_be_bytes(p.get(28..32)?.try_into().ok()?), 0),
        1 => (0, *p.get(20)?),
        _ => return None,
    };
    Some(Delivery {
        at,
        node,
        src,
        dst,
        ttl: info.ttl,
        seq,
        icmp_type,
    })
}

/// The longest run of missing sequence numbers in a probe stream, as time.
pub fn longest_gap(sent: &[(u32, Instant)], arrived: &BTreeMap<u32, Delivery>) -> Duration {
    let mut gap = Duration::from_ticks(0);
    let mut last_ok: Option<Instant> = None;
    for (seq, at) in sent {
        if arrived.contains_key(seq) {
            if let Some(prev) = last_ok {
                let g = at.saturating_duration_since(prev);
                if g > gap {
                    gap = g;
                }
            }
            last_ok = Some(*at);
        }
    }
    gap
}
