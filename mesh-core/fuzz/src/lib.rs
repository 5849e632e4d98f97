//! The small mesh the `node_udp` and `node_lan` targets run: three real
//! nodes (boringtun crypto, the overlay stack, BGP, BFD, STUN) on virtual
//! time, as `../tests/sim/harness.rs` runs them, plus what an attacker on
//! the underlay or inside a tunnel can do to R1, the node under test.
//!
//! - R1 (10.0.0.1, fd00::1, LAN 192.168.1.0/24 and fd01::/64) has members
//!   R2 and R3 (each at 198.51.100.N:51820) and R4 (no endpoint, never
//!   up). R2 and R3 have each other as members too, but no path between
//!   them (a NAT that never opens): what goes between them transits R1.
//! - Links R1–R2 and R1–R3 take 1 ms, lose nothing and never reorder; the
//!   fuzzer drops, duplicates or redirects datagrams itself.
//! - BFD runs at 100 ms × 3 (not the default 10 ms, which would spend most
//!   of an input's time on BFD packets).
//!
//! Checked on every node after every step (see [`World::check`]):
//! every datagram handed in is counted exactly once, as one of the
//! classification counters or as a member's `rx_datagrams`; the output
//! queues drain within their capacity; virtual time never spins at one
//! instant; what R1 sends on the underlay goes to a member's endpoint
//! (configured, or learned from an authenticated datagram), a candidate a
//! member told it of (hole punching), or back to an address that sent R1
//! something, at most one answer per datagram; bounded state stays in its bounds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use mesh_core::bfd;
use mesh_core::node::exitnat::ExitNatConfig;
use mesh_core::node::{
    ExitConfig, Node, NodeConfig, NodeMemory, NodeStorage, Port, EVENT_QUEUE, LAN_QUEUE,
    TRANSMIT_QUEUE,
};
use mesh_core::wg::boring::{public_key, BoringCrypto, BoringTunnel};
use mesh_core::wg::{BfdSetting, Key, MemberConfig, MAX_DATAGRAM, MAX_MEMBERS};
use mesh_core::{Duration, Instant, Prefix};

pub type FuzzNode<'a> = Node<'a, BoringCrypto>;

/// The instant every input starts at.
pub const T0: Instant = Instant::from_secs(1000);
/// Virtual time one input may spend (the rest of its advances are ignored).
pub const MAX_VIRTUAL: Duration = Duration::from_secs(300);
/// Link latency between R1 and R2, R1 and R3.
pub const LATENCY: Duration = Duration::from_millis(1);
/// Steps at one instant before virtual time counts as stuck.
const STUCK: u32 = 20_000;

/// Runs `f(data)` on a worker thread with a stack that holds three nodes
/// (they are built on the stack before they are boxed), as the simulation
/// does. The thread lives as long as the process: a fresh one per input
/// would spend most of the time faulting its stack in. A panic there
/// aborts the process as one in the main thread would (libfuzzer-sys's
/// panic hook).
pub fn on_big_stack(data: &[u8], f: fn(&[u8])) {
    struct Worker {
        inputs: SyncSender<Vec<u8>>,
        done: Receiver<()>,
    }
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (inputs, rx) = sync_channel::<Vec<u8>>(0);
        let (tx, done) = sync_channel(0);
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                for data in rx {
                    f(&data);
                    tx.send(()).expect("the fuzzer is gone");
                }
            })
            .expect("thread");
        Mutex::new(Worker { inputs, done })
    });
    let w = worker.lock().expect("worker");
    w.inputs.send(data.to_vec()).expect("the worker died");
    w.done.recv().expect("the worker died");
}

// ---- the input ----

/// The fuzzer's bytes, read front to back; reads past the end give zeros
/// (`done` says when the input is used up).
pub struct Input<'d> {
    data: &'d [u8],
}

impl<'d> Input<'d> {
    pub fn new(data: &'d [u8]) -> Self {
        Input { data }
    }
    pub fn done(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// `n` bytes (fewer if the input ends).
    pub fn bytes(&mut self, n: usize) -> &'d [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
    /// A length byte: 0–127 as is, 128–255 in steps of 12 up to 1,524
    /// (past the largest datagram the node accepts).
    pub fn length(&mut self) -> usize {
        match self.u8() {
            b @ 0..=127 => b as usize,
            b => 128 + (b as usize - 128) * 12,
        }
    }
    /// A delay: 0–127 ms, or (bit 7) 1–128 whole seconds... in 250 ms
    /// steps (boringtun's tick) for the lower half of those.
    pub fn delay(&mut self) -> Duration {
        match self.u8() {
            b @ 0..=127 => Duration::from_millis(b as u64),
            b @ 128..=191 => Duration::from_millis(250 * (b as u64 - 127)),
            b => Duration::from_secs(b as u64 - 175),
        }
    }
}

// ---- names and addresses ----

pub fn private_key(n: u8) -> Key {
    // Not in byte 0 or 31: x25519 clamps their low and high bits.
    let mut k = [0x11u8; 32];
    k[5] = n;
    Key(k)
}
pub fn overlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}
pub fn overlay6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n as u16)
}
pub fn lan(n: u8) -> Prefix {
    Prefix::v4(192, 168, n, 0, 24).unwrap()
}
pub fn lan6(n: u8) -> Prefix {
    Prefix::new(
        IpAddr::V6(Ipv6Addr::new(0xfd00 + n as u16, 0, 0, 0, 0, 0, 0, 0)),
        64,
    )
    .unwrap()
}
pub fn host(n: u8, h: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n, h)
}
pub fn host6(n: u8, h: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00 + n as u16, 0, 0, 0, 0, 0, 0, h as u16)
}
pub fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)), 51820)
}
fn asn(n: u8) -> u32 {
    65000 + n as u32
}

/// Where a datagram "from the internet" comes from: strangers (IPv4 and
/// IPv6), and forged sources: the members' own addresses, R1's own, R4's.
pub fn source(sel: u8) -> SocketAddr {
    let port = 40000 + (sel >> 3) as u16;
    match sel % 8 {
        0 | 1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, sel % 4)), port),
        2 => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            port,
        ),
        3 => underlay(2),
        4 => underlay(3),
        5 => underlay(1),
        6 => underlay(4),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), port),
    }
}

/// Whether `a` lies in some home of the mesh (a LAN or an overlay address
/// of R1–R4).
pub fn in_some_home(a: IpAddr) -> bool {
    (1..=4).any(|n| in_home(n, a))
}

/// Whether `a` lies in node `n`'s home.
pub fn in_home(n: u8, a: IpAddr) -> bool {
    a == IpAddr::V4(overlay(n))
        || a == IpAddr::V6(overlay6(n))
        || lan(n).contains(a)
        || lan6(n).contains(a)
}

// ---- the mesh ----

struct InFlight {
    at: u64,
    order: u64,
    /// Index of the node it is for.
    to: usize,
    from: SocketAddr,
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

/// What R1 emitted in one step, kept for the checks and for the fuzzer's
/// references ("answer R1's STUN request", "use R1's receiver index").
#[derive(Default)]
pub struct Observed {
    /// Receiver indices R1 and the others announced (sender index fields
    /// of handshake messages): what a forger needs to aim at a session.
    pub indices: Vec<u32>,
    /// STUN requests R1 sent, and to whom.
    pub stun_requests: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams R1 received (for replays), with their sources.
    pub history: Vec<(SocketAddr, Vec<u8>)>,
}

/// Options for the whole input (byte 0).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// R1 offers itself as a game exit (when STUN says it can).
    pub exit: bool,
    /// R1 has a second port for STUN's port-change test.
    pub alt_port: bool,
    /// R1's overlay address is also the kernel's.
    pub overlay_in_kernel: bool,
    /// R2 and R3 run (as real nodes); without them R1 is alone, its
    /// datagrams to them lost, and an input costs a fifth as much.
    pub peers: bool,
    /// R2 and R3 are members of each other (with no path between them:
    /// what goes between them transits R1, and they try to punch through
    /// to each other, which costs handshakes). Off, each knows only R1.
    pub transit: bool,
}

impl Options {
    pub fn from_byte(b: u8) -> Options {
        Options {
            exit: b & 1 != 0,
            alt_port: b & 2 != 0,
            overlay_in_kernel: b & 4 != 0,
            peers: b & 8 != 0,
            transit: false,
        }
    }
}

pub struct World<'a> {
    pub now: Instant,
    clock_us: u64,
    /// R1, R2, R3 at indices 0, 1, 2 (R1 alone without `peers`).
    pub nodes: Vec<Box<FuzzNode<'a>>>,
    pub options: Options,
    wire: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// Datagrams handed to each node (what its `udp_in` must say).
    pub handed: [u64; 3],
    /// LAN packets handed to each node (what its `from_lan` must say).
    pub lan_in: [u64; 3],
    /// What came out of each node's LAN since the last `take_lan`.
    pub lan_out: [Vec<Vec<u8>>; 3],
    /// Datagrams R1 sent through its exit NAT ports.
    pub exit_out: u64,
    pub seen: Observed,
    /// R1's underlay peers: datagrams received from and sent to each
    /// address, and every address that was ever a member's endpoint.
    received_from: HashMap<SocketAddr, u64>,
    sent_to: HashMap<SocketAddr, u64>,
    endpoints: HashSet<SocketAddr>,
}

fn bfd_config() -> bfd::Config {
    bfd::Config {
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
        max_detection: Duration::from_millis(600),
    }
}

fn member(n: u8, endpoint: bool) -> MemberConfig {
    MemberConfig {
        name: heapless::String::try_from(format!("r{n}").as_str()).unwrap(),
        public_key: public_key(&private_key(n)),
        overlay: overlay(n),
        overlay_v6: Some(overlay6(n)),
        asn: asn(n),
        prefixes: heapless::Vec::from_slice(&[lan(n), lan6(n)]).unwrap(),
        endpoints: if endpoint {
            heapless::Vec::from_slice(&[underlay(n)]).unwrap()
        } else {
            heapless::Vec::new()
        },
        keepalive: Some(25),
        hold_time: None,
        bfd: BfdSetting::Inherit,
        exit: false,
        inviter: true,
    }
}

impl<'a> World<'a> {
    /// The mesh, each node on its storage (R1, R2, R3).
    pub fn new(storage: [NodeStorage<'a, BoringTunnel>; 3], options: Options) -> World<'a> {
        // boringtun's clock (feature `sim`) is the thread's: it starts at
        // zero for each input.
        mock_instant::MockClock::set_time(std::time::Duration::ZERO);
        let mut nodes = Vec::new();
        let running = if options.peers { 3 } else { 1 };
        for (i, s) in storage.into_iter().take(running).enumerate() {
            let n = i as u8 + 1;
            let mut c = NodeConfig::new(private_key(n), overlay(n), asn(n));
            c.overlay_v6 = Some(overlay6(n));
            c.lan_prefixes.push(lan(n)).unwrap();
            c.lan_prefixes.push(lan6(n)).unwrap();
            c.hold_time = 3;
            c.connect_retry = Duration::from_secs(1);
            c.seed = n as u64 * 7919;
            c.bfd = Some(bfd_config());
            c.bfd_confirm = Duration::from_millis(500);
            if n == 1 {
                c.alt_port = options.alt_port;
                c.overlay_in_kernel = options.overlay_in_kernel;
                c.exit = options.exit.then_some(ExitConfig {
                    nat: ExitNatConfig {
                        first_port: 5000,
                        last_port: 5015,
                        timeout: Duration::from_secs(120),
                        quota: 4,
                    },
                    ports_forwarded: true,
                });
            }
            let crypto = BoringCrypto::new(&c.private_key);
            let mut node = Box::new(Node::new(c, crypto, s, T0));
            let members: &[(u8, bool)] = match (n, options.transit) {
                (1, _) => &[(2, true), (3, true), (4, false)],
                (2, true) => &[(1, true), (3, false)],
                (_, true) => &[(1, true), (2, false)],
                _ => &[(1, true)],
            };
            for &(m, endpoint) in members {
                node.add_member(T0, member(m, endpoint)).unwrap();
            }
            if n == 1 {
                // A STUN answer showing this address means no NAT: R1 may
                // become an exit.
                node.set_local_addresses(&[underlay(1).ip()]);
            }
            nodes.push(node);
        }
        let mut w = World {
            now: T0,
            clock_us: 0,
            nodes,
            options,
            wire: BinaryHeap::new(),
            order: 0,
            handed: [0; 3],
            lan_in: [0; 3],
            lan_out: Default::default(),
            exit_out: 0,
            seen: Observed::default(),
            received_from: HashMap::new(),
            sent_to: HashMap::new(),
            endpoints: [underlay(2), underlay(3)].into_iter().collect(),
        };
        for i in 0..w.nodes.len() {
            w.drain(i);
        }
        w
    }

    fn advance_clock(&mut self, to: Instant) {
        if to > self.now {
            let us = to.as_micros() - T0.as_micros();
            mock_instant::MockClock::advance(std::time::Duration::from_micros(us - self.clock_us));
            self.clock_us = us;
            self.now = to;
        }
    }

    /// Virtual time spent so far.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(T0)
    }

    /// Runs the mesh for `d` (within [`MAX_VIRTUAL`] in all): datagrams
    /// arrive, timers fire, outputs are drained after every input.
    pub fn advance(&mut self, d: Duration) {
        let until = (self.now + d).min(T0 + MAX_VIRTUAL);
        let mut same = (self.now, 0u32);
        loop {
            let mut next = self
                .wire
                .peek()
                .map(|Reverse(f)| Instant::from_micros(f.at));
            for n in &self.nodes {
                if let Some((t, _)) = n.poll_timeout() {
                    next = Some(next.map_or(t, |x| x.min(t)));
                }
            }
            let Some(t) = next.filter(|t| *t <= until) else {
                self.advance_clock(until);
                return;
            };
            self.advance_clock(t);
            if same.0 == self.now {
                same.1 += 1;
                let due: Vec<_> = self.nodes.iter().map(|n| n.poll_timeout()).collect();
                assert!(
                    same.1 < STUCK,
                    "virtual time stuck at {:?}: {due:?}",
                    self.now
                );
            } else {
                same = (self.now, 0);
            }
            let now = self.now;
            while self
                .wire
                .peek()
                .is_some_and(|Reverse(f)| f.at <= now.as_micros())
            {
                let Reverse(f) = self.wire.pop().unwrap();
                self.deliver(f.to, f.from, &f.bytes);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|(t, _)| t <= now) {
                    self.nodes[i].handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    /// A datagram from `from` to node `i`'s mesh port, now.
    pub fn deliver(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        self.handed[i] += 1;
        if i == 0 {
            *self.received_from.entry(from).or_default() += 1;
            if self.seen.history.len() < 64 {
                self.seen.history.push((from, bytes.to_vec()));
            } else {
                let k = self.handed[0] as usize % 64;
                self.seen.history[k] = (from, bytes.to_vec());
            }
        }
        let now = self.now;
        self.nodes[i].handle_udp(now, from, bytes);
        self.drain(i);
    }

    /// The next datagram in flight to R1, taken off the wire.
    pub fn take_in_flight_to_r1(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let mut rest = Vec::new();
        let mut found = None;
        while let Some(Reverse(f)) = self.wire.pop() {
            if f.to == 0 {
                found = Some((f.from, f.bytes));
                break;
            }
            rest.push(Reverse(f));
        }
        self.wire.extend(rest);
        found
    }

    /// A packet from node `i`'s LAN, now.
    pub fn lan_packet(&mut self, i: usize, packet: &[u8]) {
        if i >= self.nodes.len() {
            return;
        }
        self.lan_in[i] += 1;
        let now = self.now;
        self.nodes[i].handle_lan_packet(now, packet);
        self.drain(i);
    }

    /// Node `i` plays a hostile member: `packet` goes as is through its
    /// tunnel to `to` (a node index).
    pub fn raw_to_member(&mut self, i: usize, to: usize, packet: &[u8]) {
        if i >= self.nodes.len() {
            return;
        }
        let name = format!("r{}", to + 1);
        let Some(slot) = self.nodes[i].member_slot(&name) else {
            return;
        };
        self.nodes[i].send_raw_to_member(slot, packet);
        self.drain(i);
    }

    /// A datagram from the internet to R1's exit port `port`.
    pub fn exit_datagram(&mut self, port: u16, from: SocketAddr, payload: &[u8]) {
        let SocketAddr::V4(from) = from else {
            return;
        };
        let now = self.now;
        self.nodes[0].handle_exit_datagram(now, port, from, payload);
        self.drain(0);
    }

    /// An early or repeated `handle_timeout` on R1 (a driver may wake
    /// early): it must do no harm.
    pub fn spurious_timeout(&mut self) {
        let now = self.now;
        self.nodes[0].handle_timeout(now);
        self.drain(0);
    }

    /// R1's exit ports in use (for aiming inbound datagrams).
    pub fn exit_ports(&self) -> Vec<u16> {
        self.nodes[0].exit_mappings().map(|m| m.port).collect()
    }

    /// Drains node `i`'s outputs: datagrams onto the wire (or to the
    /// internet), packets to its LAN record, events away; then checks.
    fn drain(&mut self, i: usize) {
        let n = i as u8 + 1;
        let from_addr = underlay(n);
        if i == 0 {
            // Where R1 may send: members' endpoints, and the candidates
            // members told it of (peer exchange) for hole punching.
            // (The members themselves, not their status: this runs after
            // every event, and a status reads each tunnel's timers.)
            for slot in 0..MAX_MEMBERS as u8 {
                let Some(m) = self.nodes[0].member(slot) else {
                    continue;
                };
                self.endpoints.extend(m.endpoint);
                if let Some(t) = self.nodes[0].traversal(slot) {
                    self.endpoints.extend(t.learned.iter().copied());
                }
            }
        }
        let mut out = Vec::new();
        for k in 0.. {
            let Some(t) = self.nodes[i].poll_transmit() else {
                break;
            };
            assert!(k < TRANSMIT_QUEUE, "more datagrams than the queue holds");
            assert!(
                t.bytes.len() <= MAX_DATAGRAM,
                "a datagram of {} bytes",
                t.bytes.len()
            );
            out.push((t.to, t.from, t.bytes.to_vec()));
        }
        for k in 0.. {
            let Some(p) = self.nodes[i].poll_lan_packet() else {
                break;
            };
            assert!(k < LAN_QUEUE, "more LAN packets than the queue holds");
            let p = p.to_vec();
            if self.lan_out[i].len() < 4096 {
                self.lan_out[i].push(p);
            }
        }
        for k in 0.. {
            if self.nodes[i].poll_event().is_none() {
                break;
            }
            assert!(k < EVENT_QUEUE, "more events than the queue holds");
        }
        for (to, port, bytes) in out {
            let src = match port {
                Port::Mesh => from_addr,
                Port::Alt => SocketAddr::new(from_addr.ip(), from_addr.port() + 1),
                Port::Exit(p) => {
                    assert_eq!(i, 0, "only R1 is an exit");
                    self.exit_out += 1;
                    let _ = p;
                    continue;
                }
            };
            if i == 0 {
                self.observe_r1(to, &bytes);
            } else {
                self.observe_indices(&bytes);
            }
            let dest = (1..=3u8)
                .find(|&m| underlay(m) == to)
                .map(|m| m as usize - 1);
            let Some(dest) = dest.filter(|&d| d < self.nodes.len()) else {
                continue; // a stranger, or R4 (nowhere)
            };
            let linked = matches!((i, dest), (0, 1) | (0, 2) | (1, 0) | (2, 0));
            if !linked {
                continue;
            }
            self.order += 1;
            let at = self.now.as_micros() + LATENCY.as_micros();
            self.wire.push(Reverse(InFlight {
                at,
                order: self.order,
                to: dest,
                from: src,
                bytes,
            }));
        }
        self.check(i);
    }

    fn observe_indices(&mut self, bytes: &[u8]) {
        // Handshake initiation (1) and response (2) carry the sender's
        // index at 4..8.
        if matches!(bytes.first(), Some(1 | 2)) && bytes.len() >= 8 {
            let idx = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
            if self.seen.indices.len() < 32 && !self.seen.indices.contains(&idx) {
                self.seen.indices.push(idx);
            }
        }
    }

    /// A datagram R1 sends: to whom (the reflection check), and what it
    /// tells a forger.
    fn observe_r1(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.observe_indices(bytes);
        if mesh_core::stun::is_stun(bytes)
            && bytes.get(0..2) == Some(&[0, 1])
            && self.seen.stun_requests.len() < 16
        {
            self.seen.stun_requests.push((to, bytes.to_vec()));
        }
        let sent = self.sent_to.entry(to).or_default();
        *sent += 1;
        if !self.endpoints.contains(&to) {
            let received = self.received_from.get(&to).copied().unwrap_or(0);
            assert!(
                *sent <= received,
                "R1 sent {sent} datagrams to {to}, which is no member's endpoint and sent {received}"
            );
        }
    }

    /// Node `i`'s counters against what it was given, and its bounds.
    pub fn check(&self, i: usize) {
        let node = &self.nodes[i];
        let s = node.stats();
        assert_eq!(s.udp_in, self.handed[i], "udp_in");
        assert_eq!(s.from_lan, self.lan_in[i], "from_lan");
        let slots = (0..MAX_MEMBERS as u8).filter_map(|slot| node.member(slot).map(|m| (slot, m)));
        let members: u64 = slots.clone().map(|(_, m)| m.stats.rx_datagrams).sum();
        let classified = s.udp_oversized
            + s.join_in
            + s.stun_invalid
            + s.stun_rate_limited
            + s.stun_answered
            + s.stun_unexpected
            + s.stun_responses
            + s.cookie_replies
            + s.udp_invalid
            + s.unknown_key
            + members;
        assert_eq!(classified, s.udp_in, "a datagram not counted once: {s:?}");
        let table = match (i, self.options.transit) {
            (0, _) => 3,
            (_, true) => 2,
            _ => 1,
        };
        assert_eq!(slots.clone().count(), table, "members");
        for (slot, _) in slots {
            let t = node.traversal(slot).expect("a member's traversal");
            assert!(t.learned.len() <= mesh_core::pex::MAX_CANDIDATES);
        }
        if i == 0 {
            let mapped = node.exit_mappings().count();
            assert!(mapped <= 16, "{mapped} mappings in a 16-port range");
            assert_eq!(
                node.exit_stats().nat_out,
                self.exit_out,
                "exit datagrams counted"
            );
            let whole_seconds = self.elapsed().as_secs();
            assert!(
                s.icmp_sent <= 50 * (whole_seconds + 1),
                "{} ICMP errors in {whole_seconds} s",
                s.icmp_sent
            );
        }
    }
}

/// Runs `f` on a fresh mesh, each node on its own storage.
pub fn with_world(options: Options, f: impl FnOnce(&mut World<'_>)) {
    // Room for the two other routers and a spare: a member the inputs
    // cannot add is no loss, and a small table is a fast fuzz input.
    let mut s1 = NodeMemory::new(3);
    let mut s2 = NodeMemory::new(3);
    let mut s3 = NodeMemory::new(3);
    let mut w = World::new([s1.storage(), s2.storage(), s3.storage()], options);
    f(&mut w);
    if std::env::var_os("FUZZ_SHOW").is_some() {
        w.show();
    }
}

impl World<'_> {
    /// What each node did, for a person reading why an input covers what
    /// it covers (`FUZZ_SHOW=1 target input`).
    pub fn show(&self) {
        eprintln!("after {:?} of virtual time:", self.elapsed());
        for (i, n) in self.nodes.iter().enumerate() {
            eprintln!("R{}: {:?}", i + 1, n.stats());
            eprintln!("  routes: {}", n.routes().count());
            for m in n.members() {
                eprintln!(
                    "  {}: {:?}, bgp {:?}, {:?}",
                    m.config.name.as_str(),
                    m.endpoint,
                    m.bgp_state,
                    m.stats
                );
            }
        }
        eprintln!(
            "R1: exit {:?}, {:?}",
            self.nodes[0].exit_offer(),
            self.nodes[0].exit_stats()
        );
        eprintln!("R1: {:?}", self.nodes[0].nat_report());
    }
}

// ---- building what an attacker sends ----

/// CRC-32 (ISO-HDLC), for STUN's FINGERPRINT.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Appends a FINGERPRINT (RFC 8489 §14.7) to a STUN message in `m`,
/// fixing the length field.
pub fn stun_fingerprint(m: &mut Vec<u8>) {
    if m.len() < 20 {
        return;
    }
    let len = (m.len() - 20 + 8) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32(m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0, 4]);
    m.extend_from_slice(&crc.to_be_bytes());
}
