//! The daemon: one thread, one epoll loop around the sans-IO node.
//!
//! File descriptors: the mesh UDP sockets (IPv4, and IPv6 when the host has
//! it), the TUN device, a signalfd (SIGHUP reloads, SIGTERM/SIGINT stop), a
//! timerfd armed at the node's next deadline, and the control socket. After
//! every input the node's outputs are drained: datagrams to the sockets, IP
//! packets to the TUN device, events to the log and to the kernel's routing
//! table (netlink).
//!
//! Game exits (see `mesh-core/src/node/exit.rs`): on an exit, each NAT
//! mapping has its own UDP socket bound to the mapping's public port,
//! opened when the node first sends from it and closed when the node says
//! the mapping is gone. An unconnected socket takes datagrams from anyone,
//! which is exactly endpoint-independent filtering, and the kernel keeps no
//! NAT state. One socket per mapping costs a file descriptor each (the
//! node caps mappings; the soft limit is raised to the hard one at start);
//! it spares OpenWrt kernels an out-of-tree full-cone module. On a console's
//! router, the consoles found in the LAN's neighbour table (by MAC vendor,
//! or listed) get policy rules that send their UDP into the TUN device, to
//! a table whose default route exists only while some exit is live.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use mesh_core::discovery::{Policy, MDNS, SSDP};
use mesh_core::node::{Changes, MemberChange, Node, NodeEvent, NodeMemory, Port, TUN_MTU};
use mesh_core::wg::boring::BoringCrypto;
use mesh_core::wg::{Key, MemberError};
use mesh_core::{Instant, Prefix};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn6};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config::{Config, MemberEntry};
use crate::consoles::{self, Console, PolicyRouting};
use crate::control::{ControlServer, Request};
use crate::files::{self, Caller, Done, FileWorker, Job};
use crate::json::Json;
use crate::resolver::Resolver;
use crate::sys::discovery::LanSocket;
use crate::sys::netlink::{Netlink, Route, RTPROT_MESHD};
use crate::sys::nft::{self, Nft};
use crate::sys::offload;
use crate::sys::raw;
use crate::sys::tun::Tun;
use crate::sys::udp_gso;
use crate::{keys, status};

/// Buffers of [`MAPPED_ALONE`] and more (a status answer: 20-120 KiB) are
/// mapped for themselves and unmapped when freed. The daemon's pages are
/// locked (`mlockall`), and glibc cannot hand back a locked page in the middle
/// of a heap arena (`MADV_DONTNEED` refuses locked pages), so a transient
/// buffer cut from the packet loop's arena stays resident for good. glibc's
/// default threshold starts at 128 KiB and then rises to the size of every
/// mapped buffer freed, which would send later answers into the arena; a
/// fixed one stays put. (musl, OpenWrt's C library, has no such knob: its
/// allocator maps large buffers by itself.)
pub const MAPPED_ALONE: usize = 16 * 1024;

fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; it is called
    // before the daemon's threads start.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MAPPED_ALONE as i32);
    }
}

/// The status document's sources, borrowed field by field from the daemon
/// (so the ubus connection, another field, can be written meanwhile).
macro_rules! status_parts {
    ($d:expr) => {
        status::Parts {
            node: &$d.node,
            consoles: &$d.consoles,
            main: &$d.config.main,
            discovery: &$d.discovery,
            loop_worst: $d.loop_latency.worst(),
            join: &$d.join,
            bad_tokens: $d.bad_tokens,
            members: &$d.config.members,
            group: &$d.group,
        }
    };
}

const TOKEN_UDP4: u64 = 1;
const TOKEN_UDP6: u64 = 2;
const TOKEN_TUN: u64 = 3;
const TOKEN_SIGNAL: u64 = 4;
const TOKEN_TIMER: u64 = 5;
const TOKEN_CONTROL: u64 = 6;
const TOKEN_UBUS: u64 = 7;
const TOKEN_RESOLVER: u64 = 8;
const TOKEN_FILES: u64 = 9;
const TOKEN_DISCOVERY: u64 = 10;
/// An exit mapping's socket: this plus its port.
const TOKEN_EXIT: u64 = 1 << 16;
/// A control socket client: this plus its index.
const TOKEN_CONTROL_CLIENT: u64 = 1 << 17;

/// How often the LAN's neighbour table is read for consoles.
const CONSOLES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Where ubusd listens; `MESHD_UBUS_SOCKET` overrides it (tests, other
/// systems).
fn ubus_socket() -> PathBuf {
    std::env::var_os("MESHD_UBUS_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::ubus::DEFAULT_SOCKET))
}

/// Packets handled per readiness event before others get a turn.
const BATCH: usize = 256;
/// The clock this far past a deadline, or past the stamp of the inputs just
/// handled, means the loop was kept off the CPU (or worked that long): the
/// mesh port is read before the timers run
/// ([`Daemon::read_before_late_timers`]), and the node told of the stall
/// ([`Daemon::clock_again`]).
const LATE: mesh_core::Duration = mesh_core::Duration::from_millis(2);
/// A batch of packets reads the clock again after this many.
const CLOCK_EVERY: usize = 16;

/// How many packets one readiness event of a socket or the TUN device
/// reads. While packets come one at a time (a game's 60 a second, or BFD),
/// one: a second read would only find the queue empty, a system call per
/// packet for nothing (epoll is level-triggered: what is left wakes the loop
/// again). Once wake-ups for the source come back to back (a queue builds:
/// bulk traffic, or a backlog after the machine kept us off the CPU), up to
/// [`BATCH`], until a batch finds at most one packet.
#[derive(Debug, Default, Clone, Copy)]
struct ReadBudget {
    bulk: bool,
    last_wake: Option<Instant>,
}

impl ReadBudget {
    /// Wake-ups closer than this mean packets are queueing.
    const BACK_TO_BACK: mesh_core::Duration = mesh_core::Duration::from_micros(100);

    fn limit(&self) -> usize {
        if self.bulk {
            BATCH
        } else {
            1
        }
    }

    /// A wake-up at `t` read `read` packets; `drained`: the last read found
    /// the queue empty.
    fn after(&mut self, t: Instant, read: usize, drained: bool) {
        if self.bulk {
            self.bulk = !(drained && read <= 1);
        } else {
            self.bulk = self
                .last_wake
                .is_some_and(|l| t.saturating_duration_since(l) < Self::BACK_TO_BACK);
        }
        self.last_wake = Some(t);
    }
}

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SIGTERM/SIGINT: stopped cleanly.
    Exit,
    /// A reload changed settings that shape the node itself (key, overlay
    /// address, AS number, port, device): start over with a new process.
    Restart,
}

/// The monotonic clock, as mesh-core's `Instant`.
pub fn now() -> Instant {
    let t = clock(nix::libc::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    Instant::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000)
}

/// One clock, read straight from libc: the loop reads two or three a
/// wake-up, and nix's wrapper (a `TimeSpec` built and checked, an `Errno`)
/// cost as much again as the read under callgrind.
fn clock(id: nix::libc::clockid_t) -> Option<nix::libc::timespec> {
    let mut t = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a
    // live, writable one, and reads nothing else.
    let rc = unsafe { nix::libc::clock_gettime(id, &mut t) };
    (rc == 0).then_some(t)
}

/// `t` on std's clock, from one instant read on both.
fn std_instant((base, wall): (Instant, std::time::Instant), t: Instant) -> std::time::Instant {
    let us = |d: mesh_core::Duration| std::time::Duration::from_micros(d.as_micros());
    if t >= base {
        wall + us(t - base)
    } else {
        wall.checked_sub(us(base - t)).unwrap_or(wall)
    }
}

fn to_timespec(t: Instant) -> TimeSpec {
    let us = t.as_micros();
    TimeSpec::new((us / 1_000_000) as i64, ((us % 1_000_000) * 1_000) as i64)
}

fn ctx(e: impl std::fmt::Display, what: &str) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// The daemon's own settings that need a new process when they change (the
/// node says when its own do: [`mesh_core::node::Changes::rebuild`]).
fn sockets(c: &Config) -> (u16, String, PathBuf) {
    (
        c.main.listen_port,
        c.main.tun.clone(),
        c.main.control_socket.clone(),
    )
}

/// Endpoint names resolved per member entry: an entry read again unchanged
/// keeps what its names resolved to, as a running member keeps its
/// endpoints; a new or changed entry is resolved afresh: at once before the
/// loop runs, on the resolver's thread once it does.
#[derive(Default)]
struct Resolved(std::collections::HashMap<String, (MemberEntry, Vec<SocketAddr>)>);

impl Resolved {
    /// The members of `config` for mesh-core. With a `resolver`, names not
    /// yet resolved are asked for there and the member runs without them
    /// meanwhile; without one they are resolved here (blocking).
    fn members(
        &mut self,
        config: &Config,
        resolver: Option<&Resolver>,
    ) -> Vec<mesh_core::wg::MemberConfig> {
        let mut kept = std::collections::HashMap::new();
        let members = config
            .enabled_members()
            .map(|m| {
                let addrs = match (self.0.remove(&m.name), resolver) {
                    (Some((old, addrs)), _) if old == *m => addrs,
                    (_, None) => crate::resolver::resolve(m),
                    (_, Some(r)) => {
                        if m.endpoint_names().next().is_some() {
                            r.ask(m.clone());
                        }
                        Vec::new()
                    }
                };
                let mc = m.member_config(&config.main, &addrs);
                kept.insert(m.name.clone(), (m.clone(), addrs));
                mc
            })
            .collect();
        self.0 = kept;
        members
    }
}

/// The stack of the thread that builds the node: twice what building it
/// takes (measured: 4-8 MiB in a release build, 8-16 MiB in a debug one).
/// No more: Linux's default overcommit heuristic refuses a mapping larger
/// than the machine's RAM, and a 64 MB router has about 40 MB after its
/// kernel (a 256 MiB stack here kept meshd from starting on one).
const INIT_STACK: usize = if cfg!(debug_assertions) {
    32 << 20
} else {
    16 << 20
};

/// Builds the node on a short-lived thread with a large stack: the node's
/// fixed-size tables (about 0.5 MB) are moved through the stack while they
/// are built. That thread's stack is unmapped when it ends (it is larger
/// than glibc's stack cache), so those pages do not stay resident. The
/// member table and the sessions' socket buffers, which grow with
/// `members`, and the RIB are allocated apart ([`NodeMemory`]) and never
/// pass through a stack.
fn build_node(
    config: mesh_core::node::NodeConfig,
    private_key: Key,
    t: Instant,
    members: usize,
) -> io::Result<Box<Node<'static, BoringCrypto>>> {
    std::thread::Builder::new()
        .name("meshd-init".into())
        .stack_size(INIT_STACK)
        .spawn(move || {
            let storage = NodeMemory::leak(members);
            let crypto = BoringCrypto::new(&private_key);
            Box::new(Node::new(config, crypto, storage, t))
        })?
        .join()
        .map_err(|_| io::Error::other("building the node failed"))
}

pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    node: Box<Node<'static, BoringCrypto>>,
    udp4: UdpSocket,
    udp6: Option<UdpSocket>,
    /// The second port (mesh port + 1): STUN answers to port-change requests.
    udp_alt: Option<UdpSocket>,
    tun: Tun,
    tun_index: u32,
    netlink: Netlink,
    epoll: Epoll,
    signals: SignalFd,
    timer: TimerFd,
    /// The deadline the timer is armed for: it is re-armed only when the
    /// next deadline moved (a syscall saved on most wake-ups).
    armed: Option<mesh_core::Instant>,
    control: ControlServer,
    /// The `meshd` object on OpenWrt's bus (reconnects when ubusd restarts;
    /// where there is no ubusd it keeps trying, quietly).
    ubus: crate::ubus::UbusConn,
    /// Kernel routes we installed towards the TUN device.
    installed: BTreeSet<Prefix>,
    resolved: Resolved,
    /// Endpoint names are resolved here, off the loop.
    resolver: Resolver,
    /// The configuration file is read (SIGHUP, ubus `reload`) and edited
    /// (ubus `member_add`, `member_del`) here, off the loop.
    files: FileWorker,
    /// Our own join (`meshd join`), and tokens given to it that did not
    /// decode.
    join: crate::invites::JoinProgress,
    bad_tokens: u64,
    /// The length of the last status answer: the next one's buffer is
    /// reserved at once rather than grown through every smaller size.
    status_len: usize,
    /// For reconfiguring when names resolve (the key file is read on
    /// reloads only).
    private_key: Key,
    stop: Option<Outcome>,
    udp_send_errors: u64,
    tun_write_errors: u64,
    /// TUN frames that [`offload::split`] could not turn into packets.
    tun_frame_errors: u64,
    /// Where a TSO super-packet's segments are built, one at a time.
    tun_segment: Vec<u8>,
    /// The mesh port's datagrams of one TUN frame, gathered for one
    /// `sendmsg` (UDP segmentation offload).
    gso: udp_gso::Batch,
    /// Gathering: set while one TUN frame's packets are handled.
    gathering: bool,
    /// The kernel took UDP segmentation offload (until it refuses once).
    gso_on: bool,
    /// The LAN packets of one read of the mesh socket, TCP segments of one
    /// stream joined for one TUN write (receive offload).
    lan: offload::Coalescer,
    /// Joining: set while a read of the mesh socket is handled.
    joining: bool,
    /// When the host's addresses were last read (for the NAT verdict).
    addrs_read: Option<std::time::Instant>,
    /// The running or finished path probe (carrier-grade NAT), and when it
    /// started.
    path_probe: Option<(PathProbe, std::time::Instant)>,
    /// The exit NAT's sockets, by public port.
    exit_sockets: std::collections::BTreeMap<u16, UdpSocket>,
    exit_bind_errors: u64,
    /// Consoles found on the LAN, and the policy rules that send them to us.
    consoles: Vec<Console>,
    policy: PolicyRouting,
    consoles_read: Option<std::time::Instant>,
    /// Some exit is live: the consoles' table has its default route.
    exit_route: bool,
    /// `nft` runs for the exit's kernel rules, not waited for.
    nft: Nft,
    /// How long the loop was busy per wake-up, at worst, lately.
    loop_latency: LoopLatency,
    /// Reads per wake-up of the IPv4 and IPv6 mesh ports and the TUN device.
    read_budget: [ReadBudget; 3],
    /// The bus's retry deadline, and the same on mesh-core's clock.
    ubus_retry: Option<(std::time::Instant, Instant)>,
    /// One instant on both clocks (both CLOCK_MONOTONIC), read at start: the
    /// loop reads mesh-core's and derives std's, for the parts that keep it.
    clock_base: (Instant, std::time::Instant),
    /// The LAN's discovery socket (relayed broadcasts and multicasts).
    discovery: LanDiscovery,
    /// Our signed group record and the edits the group's records ask for.
    group: crate::group::State,
}

/// The LAN side of relayed discovery: the socket, and why there is none.
#[derive(Debug, Default)]
pub struct LanDiscovery {
    socket: Option<LanSocket>,
    /// What the open socket was made for: the device and the policy.
    made_for: Option<(u32, Policy)>,
    /// Why there is no socket while discovery is on (logged when it changes).
    pub error: Option<String>,
    /// Relayed packets the LAN socket refused.
    pub send_errors: u64,
    /// Captured frames the kernel dropped before meshd read them (the
    /// socket's count is added when read: it resets on reading).
    kernel_drops: std::cell::Cell<u64>,
    /// Reads in the current second, and when it began.
    reads: u32,
    second: Option<std::time::Instant>,
    /// Reading is paused until then: a storm is left to the kernel.
    paused_until: Option<std::time::Instant>,
    /// How often reading was paused, and when last.
    pub pauses: u64,
    last_pause: Option<std::time::Instant>,
}

/// The most captured packets read in a second. Senders relay 10 a second
/// per port (burst 20): this is many times what discovery needs, and under
/// a broadcast storm what lies beyond is dropped by the kernel (counted in
/// `kernel_drops`) at no cost to the loop.
const DISCOVERY_READS_PER_SECOND: u32 = 200;

impl LanDiscovery {
    pub fn is_open(&self) -> bool {
        self.socket.is_some()
    }

    /// Frames the kernel dropped for us, so far.
    pub fn kernel_drops(&self) -> u64 {
        if let Some(Ok(n)) = self.socket.as_ref().map(LanSocket::drops) {
            self.kernel_drops.set(self.kernel_drops.get() + n as u64);
        }
        self.kernel_drops.get()
    }

    /// Whether one more read fits this second's budget.
    fn take_read(&mut self, wall: std::time::Instant) -> bool {
        if self
            .second
            .is_none_or(|t| wall.duration_since(t) >= std::time::Duration::from_secs(1))
        {
            self.second = Some(wall);
            self.reads = 0;
        }
        if self.reads >= DISCOVERY_READS_PER_SECOND {
            return false;
        }
        self.reads += 1;
        true
    }
}

/// A stretch of the loop shorter than this (the first bucket of
/// [`SourceWork::BOUNDS_US`]) is not timed on the thread's CPU clock.
const SHORT_STRETCH_US: u64 = SourceWork::BOUNDS_US[0];

/// The worst time the packet loop spent between two waits, over the last
/// minute (two one-minute buckets: the current and the one before). Kept
/// in integers (µs of wall time, ns of CPU time): it runs at every wake-up.
#[derive(Debug)]
struct LoopLatency {
    bucket_start: Instant,
    current_us: u64,
    previous_us: u64,
    /// The same for the loop thread's own CPU time per stretch (its work,
    /// without the time the scheduler gave other processes), in ns, with
    /// what the stretch handled. A stretch is one ready source's handling
    /// (node timers run between sources), or the last source's with the
    /// timers and upkeep after it.
    busy_current: (u64, &'static str),
    busy_previous: (u64, &'static str),
    /// The thread's CPU clock at the start of the stretch, in ns: read when
    /// the loop wakes and at the end of a stretch of [`SHORT_STRETCH_US`] or
    /// more; `None` after a shorter one, whose CPU time was taken to be its
    /// wall-clock time (at least as long). The clock is a system call, not
    /// a vDSO read: two a wake-up were most of the bookkeeping's cost.
    /// (Counting from the end of the last wake-up's instead would charge the
    /// loop with what the kernel did in its context while it slept in
    /// `epoll_wait`, such as the receive path of packets it had sent: up to
    /// a few ms seen.)
    cpu_at: Option<u64>,
    /// Every stretch's CPU time since start, by what it handled.
    work: Vec<SourceWork>,
    /// The last stretch's entry in `work`.
    last_work: usize,
    /// Since start: times the clock had moved on more than [`LATE`] from
    /// the stamp of the inputs just handled ([`Daemon::clock_again`]).
    stalls: u64,
}

/// The loop's work for one kind of source since start: how many stretches,
/// their CPU time, and how that time is distributed. One stretch's figure
/// also holds what the kernel did in the thread's context (a packet's
/// receive path behind a send) and, on a virtual machine, time the host
/// took the CPU away: the tail of this distribution is the machine's, its
/// body is meshd's.
#[derive(Debug, Clone, Copy)]
pub struct SourceWork {
    pub source: &'static str,
    pub stretches: u64,
    cpu_ns: u64,
    /// Stretches by CPU time, bucketed at [`SourceWork::BOUNDS_US`] (the
    /// last bucket: longer than the last bound).
    pub histogram: [u64; SourceWork::BOUNDS_US.len() + 1],
}

impl SourceWork {
    /// The buckets' upper bounds, in µs.
    pub const BOUNDS_US: [u64; 9] = [100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

    fn new(source: &'static str) -> SourceWork {
        SourceWork {
            source,
            stretches: 0,
            cpu_ns: 0,
            histogram: [0; Self::BOUNDS_US.len() + 1],
        }
    }

    /// The CPU time of all its stretches.
    pub fn cpu(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.cpu_ns)
    }

    fn add(&mut self, busy_ns: u64) {
        self.stretches += 1;
        self.cpu_ns += busy_ns;
        let us = busy_ns / 1_000;
        let i = Self::BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(Self::BOUNDS_US.len());
        self.histogram[i] += 1;
    }

    /// The bound under which `q` (0..=1) of the stretches fell, in µs; None
    /// above the last bound, or without stretches.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let want = (self.stretches as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return Self::BOUNDS_US.get(i).copied();
            }
        }
        None
    }
}

/// The worst of the loop over the last one to two minutes.
#[derive(Debug, Clone)]
pub struct LoopWorst {
    /// Wall-clock time of one stretch.
    pub wall: std::time::Duration,
    /// The loop thread's CPU time in one stretch, and what that stretch
    /// handled.
    pub busy: std::time::Duration,
    pub busy_in: &'static str,
    /// Since start, by source.
    pub work: Vec<SourceWork>,
    /// Since start: the loop found its clock more than [`LATE`] past the
    /// stamp of the inputs it had just handled (kept off the CPU, or a long
    /// batch), and made up for it.
    pub stalls: u64,
}

impl LoopLatency {
    const BUCKET_US: u64 = 60_000_000;

    fn new(now: Instant) -> LoopLatency {
        LoopLatency {
            bucket_start: now,
            current_us: 0,
            previous_us: 0,
            busy_current: (0, ""),
            busy_previous: (0, ""),
            cpu_at: Some(thread_cpu_ns()),
            work: Vec::new(),
            last_work: 0,
            stalls: 0,
        }
    }

    /// The loop woke up: a stretch starts.
    fn woke(&mut self) {
        self.cpu_at = Some(thread_cpu_ns());
    }

    /// A stretch that started at `at` ended at `end`. Its CPU time is read
    /// from the thread's clock when it lasted [`SHORT_STRETCH_US`] or more;
    /// a shorter one (nearly all) is counted as its wall-clock time, which
    /// puts it in the same first histogram bucket.
    fn record(&mut self, at: Instant, end: Instant, what: &'static str) {
        let wall_us = end.as_micros().saturating_sub(at.as_micros());
        let busy = if wall_us < SHORT_STRETCH_US {
            self.cpu_at = None;
            wall_us * 1_000
        } else {
            let cpu = thread_cpu_ns();
            // After a short stretch, the start is not known: the wall-clock
            // time bounds this one's CPU time.
            let busy = self
                .cpu_at
                .map_or(wall_us * 1_000, |c| cpu.saturating_sub(c));
            self.cpu_at = Some(cpu);
            busy
        };
        let age_us = at.as_micros().saturating_sub(self.bucket_start.as_micros());
        if age_us >= Self::BUCKET_US {
            let old = age_us >= 2 * Self::BUCKET_US;
            self.previous_us = if old { 0 } else { self.current_us };
            self.busy_previous = if old { (0, "") } else { self.busy_current };
            self.current_us = 0;
            self.busy_current = (0, "");
            self.bucket_start = at;
        }
        // The names come from a few literals: the same pointer, most often;
        // and most stretches handle what the last one did.
        let same = |w: &SourceWork| {
            core::ptr::eq(w.source.as_ptr(), what.as_ptr()) && w.source.len() == what.len()
                || w.source == what
        };
        let i = match self.work.get(self.last_work) {
            Some(w) if same(w) => Some(self.last_work),
            _ => self.work.iter().position(same),
        };
        match i.and_then(|i| Some((i, self.work.get_mut(i)?))) {
            Some((i, w)) => {
                w.add(busy);
                self.last_work = i;
            }
            None => {
                let mut w = SourceWork::new(what);
                w.add(busy);
                self.last_work = self.work.len();
                self.work.push(w);
            }
        }
        self.current_us = self.current_us.max(wall_us);
        if busy > self.busy_current.0 {
            self.busy_current = (busy, what);
        }
    }

    /// The worst over the last one to two minutes.
    fn worst(&self) -> LoopWorst {
        let busy = if self.busy_current.0 >= self.busy_previous.0 {
            self.busy_current
        } else {
            self.busy_previous
        };
        LoopWorst {
            wall: std::time::Duration::from_micros(self.current_us.max(self.previous_us)),
            busy: std::time::Duration::from_nanos(busy.0),
            busy_in: busy.1,
            work: self.work.clone(),
            stalls: self.stalls,
        }
    }
}

/// The order in which a wake-up's ready sources are served.
fn wake_order(token: u64) -> u8 {
    match token {
        TOKEN_UDP4 | TOKEN_UDP6 => 0,
        TOKEN_TIMER => 1,
        TOKEN_TUN => 2,
        _ => 3,
    }
}

/// What an epoll token stands for, as the status document names it.
fn source_name(token: u64) -> &'static str {
    match token {
        TOKEN_UDP4 | TOKEN_UDP6 => "mesh port",
        TOKEN_TUN => "tun",
        TOKEN_SIGNAL => "signal",
        TOKEN_TIMER => "timers",
        TOKEN_CONTROL => "control accept",
        TOKEN_UBUS => "ubus",
        TOKEN_RESOLVER => "resolver",
        TOKEN_FILES => "config file",
        TOKEN_DISCOVERY => "LAN discovery",
        t if t & TOKEN_CONTROL_CLIENT != 0 => "control client",
        t if t & TOKEN_EXIT != 0 => "exit port",
        _ => "other",
    }
}

/// The loop thread's CPU time so far, in ns.
fn thread_cpu_ns() -> u64 {
    clock(nix::libc::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0, |t| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

type PathProbe = std::sync::Arc<std::sync::Mutex<Option<crate::sys::path_probe::PathReport>>>;

/// How often the host's addresses are read again.
const ADDRS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the path is probed for a carrier-grade NAT.
const PATH_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The host's addresses, but not the overlay's.
fn host_addresses(overlay: Ipv4Addr) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let s = a.address?;
            let ip = if let Some(v4) = s.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(s.as_sockaddr_in6()?.ip())
            };
            (!ip.is_loopback() && ip != IpAddr::V4(overlay)).then_some(ip)
        })
        .collect()
}

/// One socket per exit mapping: the soft limit on descriptors goes up to
/// the hard one (OpenWrt's procd sets both).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::debug!("cannot raise the descriptor limit to {hard}: {e}");
            }
        }
    }
}

/// Sends the datagrams `batch` gathered: one `sendmsg` with UDP
/// segmentation offload, or a plain `sendto` for a single one. If the
/// kernel refuses the offload (a kernel before 4.18, an uplink without
/// checksum offload), they go one by one, and so does everything after.
fn flush_gathered(
    batch: &mut udp_gso::Batch,
    udp4: &UdpSocket,
    udp6: Option<&UdpSocket>,
    gso_on: &mut bool,
    errors: &mut u64,
) {
    let count = batch.len() as u64;
    let Some((to, seg, bytes)) = batch.take() else {
        return;
    };
    let sock = match to {
        SocketAddr::V4(_) => Some(udp4),
        SocketAddr::V6(_) => udp6,
    };
    let Some(sock) = sock else {
        *errors += count;
        return;
    };
    if count == 1 {
        if sock.send_to(bytes, to).is_err() {
            *errors += 1;
        }
        return;
    }
    match udp_gso::send(sock, bytes, seg, to) {
        Ok(()) => {}
        Err(e) if udp_gso::refused(&e) => {
            log::warn!("mesh socket: no UDP segmentation offload ({e}): one sendto per datagram");
            *gso_on = false;
            for d in udp_gso::datagrams(bytes, seg) {
                if sock.send_to(d, to).is_err() {
                    *errors += 1;
                }
            }
        }
        Err(_) => *errors += count,
    }
}

/// The mesh socket's kernel buffers, each way: room for some 450 full-size
/// datagrams (the kernel counts twice what is asked, for its overhead).
/// The default, 208 KiB on most kernels, fills in some 90 ms at 1,000 game
/// packets a second, so a short pause of the loop (a busy router's CPU)
/// dropped datagrams, BFD's among them. Memory is only taken while
/// datagrams wait.
pub const MESH_SOCKET_BUFFER: usize = 1 << 20;

/// Sets [`MESH_SOCKET_BUFFER`] on `sock`, past `net.core.rmem_max` and
/// `wmem_max` where the daemon may (`CAP_NET_ADMIN`), else up to them.
/// Best effort: what the kernel granted is logged.
fn size_mesh_buffers(sock: &UdpSocket) {
    let want = MESH_SOCKET_BUFFER;
    if socket::setsockopt(sock, sockopt::RcvBufForce, &want).is_err() {
        let _ = socket::setsockopt(sock, sockopt::RcvBuf, &want);
    }
    if socket::setsockopt(sock, sockopt::SndBufForce, &want).is_err() {
        let _ = socket::setsockopt(sock, sockopt::SndBuf, &want);
    }
    let got =
        |o: io::Result<usize>| o.map_or_else(|e| e.to_string(), |n| format!("{} KiB", n / 1024));
    log::info!(
        "mesh socket buffers: receive {}, send {} (asked {} KiB each, counted twice)",
        got(socket::getsockopt(sock, sockopt::RcvBuf).map_err(io::Error::from)),
        got(socket::getsockopt(sock, sockopt::SndBuf).map_err(io::Error::from)),
        want / 1024
    );
}

fn bind_udp6(port: u16) -> io::Result<UdpSocket> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    // IPv4 has its own socket; this one is IPv6 only (no mapped addresses).
    socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    let addr = SockaddrIn6::from(std::net::SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        port,
        0,
        0,
    ));
    socket::bind(fd.as_raw_fd(), &addr)?;
    Ok(UdpSocket::from(fd))
}

impl Daemon {
    /// Sets everything up. Errors name what failed.
    pub fn new(config_path: &Path, mut config: Config) -> io::Result<Daemon> {
        tune_allocator();
        let private_key = keys::load_or_create(&config.main.private_key_file)?;
        // Numbers the file leaves to the key (issue 17).
        let public = mesh_core::wg::boring::public_key(&private_key);
        config
            .derive_identity(&public, config_path)
            .map_err(|errors| {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                io::Error::new(io::ErrorKind::InvalidData, text.join("\n"))
            })?;
        let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, config.main.listen_port))
            .map_err(|e| ctx(e, &format!("UDP port {}", config.main.listen_port)))?;
        udp4.set_nonblocking(true)?;
        let udp6 = match bind_udp6(config.main.listen_port) {
            Ok(s) => Some(s),
            Err(e) => {
                log::info!("no IPv6 mesh socket ({e}); IPv4 only");
                None
            }
        };
        // Several datagrams of a burst in one read (udp_gso::recv cuts them).
        for s in std::iter::once(&udp4).chain(udp6.as_ref()) {
            size_mesh_buffers(s);
            if let Err(e) = udp_gso::enable_gro(s) {
                log::info!("mesh socket without UDP receive offload ({e}): one read per datagram");
            }
        }
        // Best effort: without it, port-change requests get a 420.
        let udp_alt = match config.main.listen_port.checked_add(1).map(|p| {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            })
        }) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                log::info!("no second port for STUN port-change answers: {e}");
                None
            }
            None => None,
        };
        let mut netlink = Netlink::open()?;
        // Routes a previous meshd left after a crash.
        match netlink.flush_protocol(RTPROT_MESHD) {
            Ok(0) => {}
            Ok(n) => log::info!("removed {n} stale meshd routes"),
            Err(e) => log::warn!("cannot flush stale routes: {e}"),
        }
        match netlink.flush_rules(RTPROT_MESHD) {
            Ok(0) => {}
            Ok(n) => log::info!("removed {n} stale meshd policy rules"),
            Err(e) => log::warn!("cannot flush stale policy rules: {e}"),
        }
        raise_fd_limit();
        let mut policy = PolicyRouting::new(&config.main.lan_interface, config.main.exit_all);
        // A crashed meshd's console routes.
        if let Err(e) = policy.clear(&mut netlink) {
            log::warn!("cannot clear the consoles' table: {e}");
        }
        let tun = Tun::create(&config.main.tun)?;
        let tun_index = netlink.link_index(tun.name())?;
        netlink.link_set(tun_index, true, Some(TUN_MTU as u32))?;
        netlink.addr_add(tun_index, IpAddr::V4(config.main.overlay), 32)?;
        if let Some(v6) = config.main.overlay6 {
            netlink.addr_add(tun_index, IpAddr::V6(v6), 128)?;
        }
        let t = now();
        // The seed numbers BFD discriminators, STUN transactions, punch
        // tokens and the overlay's first source port: a restart must not
        // repeat the last run's (a member may still hold a connection from
        // that port). The clock stands in if the kernel has no randomness.
        let seed = crate::invites::random::<8>()
            .map(u64::from_le_bytes)
            .unwrap_or(0)
            ^ t.as_micros()
            ^ 0x5eed;
        let mut node_config = config.main.node_config(private_key, seed);
        node_config.overlay_in_kernel = true;
        node_config.alt_port = udp_alt.is_some();
        // Relayed discovery is numbered from here: a restart counts on from
        // a later second, so members do not take it for a replay.
        node_config.boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let start_config = node_config.clone();
        let capacity = config.member_capacity();
        let node = build_node(node_config, private_key, t, capacity)?;
        log::info!("room for {capacity} members (option max_members)");

        let mut mask = SigSet::empty();
        for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(s);
        }
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        let control = ControlServer::bind(&config.main.control_socket)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let readable = |t| EpollEvent::new(EpollFlags::EPOLLIN, t);
        epoll.add(udp4.as_fd(), readable(TOKEN_UDP4))?;
        if let Some(u) = &udp6 {
            epoll.add(u.as_fd(), readable(TOKEN_UDP6))?;
        }
        epoll.add(tun.as_fd(), readable(TOKEN_TUN))?;
        epoll.add(signals.as_fd(), readable(TOKEN_SIGNAL))?;
        epoll.add(timer.as_fd(), readable(TOKEN_TIMER))?;
        epoll.add(control.listener().as_fd(), readable(TOKEN_CONTROL))?;
        let resolver = Resolver::start()?;
        epoll.add(resolver.fd(), readable(TOKEN_RESOLVER))?;
        let files = FileWorker::start(config_path.to_path_buf())?;
        epoll.add(files.fd(), readable(TOKEN_FILES))?;

        let mut d = Daemon {
            config_path: config_path.to_path_buf(),
            config,
            node,
            udp4,
            udp6,
            udp_alt,
            tun,
            tun_index,
            netlink,
            epoll,
            signals,
            timer,
            armed: None,
            control,
            ubus: crate::ubus::UbusConn::new(ubus_socket(), crate::ubus_api::object()),
            installed: BTreeSet::new(),
            resolved: Resolved::default(),
            resolver,
            files,
            join: Default::default(),
            bad_tokens: 0,
            status_len: 0,
            private_key,
            stop: None,
            udp_send_errors: 0,
            tun_write_errors: 0,
            tun_frame_errors: 0,
            // Zeroed: only the pages a segment reaches are ever touched.
            tun_segment: vec![0; offload::MAX_FRAME],
            gso: udp_gso::Batch::default(),
            gathering: false,
            gso_on: true,
            lan: offload::Coalescer::default(),
            joining: false,
            addrs_read: None,
            path_probe: None,
            exit_sockets: std::collections::BTreeMap::new(),
            exit_bind_errors: 0,
            consoles: Vec::new(),
            policy,
            consoles_read: None,
            exit_route: false,
            nft: Nft::default(),
            loop_latency: LoopLatency::new(now()),
            read_budget: Default::default(),
            ubus_retry: None,
            clock_base: (now(), std::time::Instant::now()),
            discovery: LanDiscovery::default(),
            group: Default::default(),
        };
        d.refresh_discovery();
        // A crashed meshd's exit rules.
        if let Err(e) = d
            .nft
            .load(&nft::remove_ruleset(), "remove stale exit rules")
        {
            log::debug!("nft: {e}");
        }
        // Before the loop runs: names are resolved here, at once.
        let members = d.resolved.members(&d.config, None);
        let changes = d.node.reconfigure(t, start_config, &members);
        d.log_changes(&changes);
        log::info!(
            "meshd {} up: AS{} overlay {} on {}, port {}, {} members, public key {}",
            env!("CARGO_PKG_VERSION"),
            d.config.main.asn,
            d.config.main.overlay,
            d.tun.name(),
            d.config.main.listen_port,
            members.len(),
            d.node.public_key()
        );
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "0") {
            log::warn!("IPv4 forwarding is off: consoles behind this router cannot use the mesh");
        }
        d.publish_group_record();
        Ok(d)
    }

    /// Logs what a (re)configuration did to the members.
    fn log_changes(&self, changes: &Changes) {
        for c in &changes.members {
            match c {
                MemberChange::Added { slot } => log::info!("member {} added", self.member(*slot)),
                MemberChange::Updated { slot } => {
                    log::info!("member {} updated", self.member(*slot))
                }
                MemberChange::Removed { name } => log::info!("member {name} removed"),
                MemberChange::Refused {
                    name,
                    error: MemberError::Full,
                } => log::error!(
                    "member {name}: cannot add: room for {} members only (option max_members)",
                    self.node.member_capacity()
                ),
                MemberChange::Refused { name, error } => {
                    log::error!("member {name}: cannot add: {error:?}")
                }
            }
        }
    }

    /// Runs until stopped.
    pub fn run(&mut self) -> io::Result<Outcome> {
        // The helper threads exist by now (in SCHED_IDLE), so only this
        // thread, the loop, is raised.
        if let Err(e) = crate::sys::favour_the_loop() {
            log::warn!("the packet loop keeps its priority: {e}");
        }
        let mut events = [EpollEvent::empty(); 16];
        let mut buf = vec![0u8; offload::MAX_FRAME];
        self.drain_and_arm(now());
        while self.stop.is_none() {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ctx(e, "epoll")),
            };
            // The clock is read when the loop wakes and serves the whole
            // stretch (a batch of packets reads it again every
            // `CLOCK_EVERY`); a deadline that falls due meanwhile fires the
            // timer at once. One more read ends the stretch, for its length.
            let mut t = now();
            let mut woke = t;
            self.loop_latency.woke();
            let mut handled = "upkeep";
            // The mesh port first: after the machine kept us off the CPU,
            // members' BFD packets wait there, and BFD's detection timers,
            // which run between sources, must see them before they call a
            // live member dead.
            events[..n].sort_unstable_by_key(|ev| wake_order(ev.data()));
            // Deadlines already due (we woke for them, or late) are met
            // with everything the mesh port holds, not its usual one
            // datagram a wake-up: one member's packet read, another's
            // still queued, and its session would expire.
            if let Some((d, _)) = self.node.poll_timeout().filter(|(d, _)| *d <= t) {
                for b in &mut self.read_budget[..2] {
                    b.bulk = true;
                }
                // Woken this late, we were held off the CPU since `d`
                // (perhaps with the whole machine, members and all).
                if d + LATE <= t {
                    self.loop_latency.stalls += 1;
                    self.node.resumed(d, t);
                }
            }
            for (i, ev) in events[..n].iter().enumerate() {
                if i > 0 {
                    // A batch of ready sources (a backlog after the machine
                    // kept us off the CPU) does not hold BFD's timers back:
                    // what fell due runs between one source and the next.
                    t = self.clock_again(t);
                    self.loop_latency.record(woke, t, handled);
                    woke = t;
                    if self.node.poll_timeout().is_some_and(|(d, _)| d <= t) {
                        self.read_before_late_timers(&mut t, &mut buf);
                        self.node.handle_timeout(t);
                        self.drain();
                    }
                }
                handled = source_name(ev.data());
                match ev.data() {
                    TOKEN_UDP4 => self.read_udp(false, &mut t, &mut buf),
                    TOKEN_UDP6 => self.read_udp(true, &mut t, &mut buf),
                    TOKEN_TUN => self.read_tun(&mut t, &mut buf),
                    TOKEN_TIMER => {
                        let _ = self.timer.wait();
                        self.armed = None;
                    }
                    TOKEN_SIGNAL => self.read_signals(),
                    TOKEN_CONTROL => self.accept_control(),
                    TOKEN_RESOLVER => self.names_resolved(),
                    TOKEN_FILES => self.files_done(),
                    TOKEN_DISCOVERY => self.read_discovery(&mut buf),
                    t if t & TOKEN_CONTROL_CLIENT != 0 => {
                        self.serve_control((t & 0xffff) as usize, ev.events())
                    }
                    TOKEN_UBUS => {
                        let evs = self.ubus.on_readable();
                        self.on_ubus(evs);
                    }
                    t if t & TOKEN_EXIT != 0 => self.read_exit((t & 0xffff) as u16, &mut buf),
                    _ => {}
                }
            }
            if self.control.busy() {
                // Closing a stalled client's fd also drops its epoll entry.
                self.control.expire(std::time::Instant::now());
            }
            // poll_reconnect acts only on a retry or registration deadline
            // that came (compared on our clock once converted), and std's
            // clock is derived only when one of its deadlines is there.
            let ubus_due = self
                .ubus
                .next_reconnect()
                .is_some_and(|at| match self.ubus_retry {
                    Some((was, on_ours)) if was == at => on_ours <= t,
                    _ => at <= self.std_instant(t),
                });
            if ubus_due {
                let evs = self.ubus.poll_reconnect(self.std_instant(t));
                if !evs.is_empty() {
                    self.on_ubus(evs);
                }
            }
            if self.discovery.paused_until.is_some() {
                self.resume_discovery(self.std_instant(t));
            }
            if self.ubus.wants_write() {
                self.ubus.flush();
            }
            if self.node.poll_timeout().is_some_and(|(d, _)| d <= t) {
                self.read_before_late_timers(&mut t, &mut buf);
                self.node.handle_timeout(t);
                self.housekeeping();
            }
            self.drain_and_arm(t);
            // The stretch's end: had the machine stopped us since `t`, what
            // was stamped `t` is made up for, and the timers re-armed.
            let stalls = self.loop_latency.stalls;
            let end = self.clock_again(t);
            if self.loop_latency.stalls != stalls {
                self.drain_and_arm(end);
            }
            self.loop_latency.record(woke, end, handled);
        }
        Ok(self.stop.take().unwrap_or(Outcome::Exit))
    }

    /// The clock, read again after inputs were handled at `stamped`. More
    /// than [`LATE`] since then means the machine kept us off the CPU (or
    /// a long batch): the node is told, so that members' BFD packets
    /// stamped `stamped` but taken up to now do not leave their sessions
    /// expiring at once ([`mesh_core::Node::resumed`]).
    fn clock_again(&mut self, stamped: Instant) -> Instant {
        let t = now();
        if t >= stamped + LATE {
            self.loop_latency.stalls += 1;
            self.node.resumed(stamped, t);
        }
        t
    }

    /// Before deadlines that are overdue by more than [`LATE`] run, the
    /// mesh port is read (in bulk) whether or not this wake-up listed it.
    /// The machine kept us off the CPU, perhaps between `epoll_wait` and
    /// here, so the ready list is stale: members' BFD packets that came
    /// meanwhile would otherwise be read only after their sessions had
    /// expired. On time, this costs nothing.
    fn read_before_late_timers(&mut self, t: &mut Instant, buf: &mut [u8]) {
        if self.node.poll_timeout().is_none_or(|(d, _)| d + LATE > *t) {
            return;
        }
        for v6 in [false, true] {
            self.read_budget[usize::from(v6)].bulk = true;
            self.read_udp(v6, t, buf);
        }
    }

    /// `t` on std's clock.
    fn std_instant(&self, t: Instant) -> std::time::Instant {
        std_instant(self.clock_base, t)
    }

    /// Host facts the node cannot read itself: our addresses (is a STUN
    /// answer our own address?) and whether a carrier-grade NAT is on the
    /// path.
    fn housekeeping(&mut self) {
        let wall = std::time::Instant::now();
        self.nft.reap();
        if self
            .addrs_read
            .is_none_or(|t| wall.duration_since(t) >= ADDRS_EVERY)
        {
            self.addrs_read = Some(wall);
            let addrs = host_addresses(self.config.main.overlay);
            self.node.set_local_addresses(&addrs);
        }
        if self
            .consoles_read
            .is_none_or(|t| wall.duration_since(t) >= CONSOLES_EVERY)
        {
            self.consoles_read = Some(wall);
            self.refresh_consoles();
            self.refresh_discovery();
        }
        if let Some((cell, _)) = &self.path_probe {
            let done = cell.lock().ok().and_then(|mut g| g.take());
            if let Some(report) = done {
                log::info!(
                    "path probe: hops {:?}, reached {}: carrier-grade NAT {:?}",
                    report.hops,
                    report.reached,
                    report.cgnat()
                );
                self.node.set_cgnat(report.cgnat());
            }
        }
        let due = self
            .path_probe
            .as_ref()
            .is_none_or(|(_, t)| wall.duration_since(*t) >= PATH_PROBE_EVERY);
        if due {
            // Towards a member that has a public endpoint of its own.
            let target = self
                .node
                .members()
                .filter(|m| m.endpoint_confirmed)
                .find_map(|m| m.config.endpoints.first().copied());
            if let Some(target) = target {
                let cell = crate::sys::path_probe::spawn(target);
                self.path_probe = Some((cell, wall));
            }
        }
    }

    /// Datagrams to an exit mapping's port.
    fn read_exit(&mut self, port: u16, buf: &mut [u8]) {
        for _ in 0..BATCH {
            let Some(sock) = self.exit_sockets.get(&port) else {
                return;
            };
            match sock.recv_from(buf) {
                Ok((len, SocketAddr::V4(from))) => {
                    self.node
                        .handle_exit_datagram(now(), port, from, &buf[..len]);
                    self.drain();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // An ICMP error about an earlier datagram: the mapping
                    // stays (RFC 4787 REQ-12).
                    log::debug!("exit port {port}: {e}");
                    return;
                }
            }
        }
    }

    /// The socket of exit port `port`, opened on first use.
    fn exit_socket(&mut self, port: u16) -> io::Result<&UdpSocket> {
        if !self.exit_sockets.contains_key(&port) {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
            s.set_nonblocking(true)?;
            self.epoll.add(
                s.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_EXIT | port as u64),
            )?;
            self.exit_sockets.insert(port, s);
        }
        self.exit_sockets
            .get(&port)
            .ok_or_else(|| io::Error::other("exit socket gone"))
    }

    fn close_exit_socket(&mut self, port: u16) {
        if let Some(s) = self.exit_sockets.remove(&port) {
            let _ = self.epoll.delete(s.as_fd());
        }
    }

    /// Reads the LAN's neighbour table, finds the consoles, and keeps their
    /// policy rules in step. Only local netlink calls, each bounded by its
    /// reply timeout.
    fn refresh_consoles(&mut self) {
        let lan = &self.config.main.lan_interface;
        let index = match self.netlink.link_index(lan) {
            Ok(i) => Some(i),
            Err(e) => {
                log::debug!("consoles: no LAN device {lan}: {e}");
                None
            }
        };
        let neighbours: Vec<(Ipv4Addr, [u8; 6])> = match index {
            Some(i) => match self.netlink.neighbours(2, Some(i)) {
                Ok(n) => n
                    .into_iter()
                    .filter_map(|n| match (n.addr, n.mac) {
                        (IpAddr::V4(a), Some(mac)) => Some((a, mac)),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    log::warn!("consoles: cannot read the neighbour table: {e}");
                    return;
                }
            },
            None => Vec::new(),
        };
        let found = consoles::detect(
            self.config.main.consoles_auto,
            &self.config.main.consoles,
            &neighbours,
            &self.config.main.announce,
        );
        if found != self.consoles {
            for c in found.iter().filter(|c| !self.consoles.contains(c)) {
                log::info!(
                    "console {} found ({}, {:?})",
                    c.ip,
                    c.vendor.map_or("listed", |v| v.display_name()),
                    c.how
                );
            }
            self.consoles = found;
        }
        match self.policy.apply(&mut self.netlink, &self.consoles) {
            Ok((0, 0)) => {}
            Ok((added, removed)) => {
                log::info!("consoles: {added} policy rules added, {removed} removed")
            }
            Err(e) => log::warn!("consoles: cannot program policy rules: {e}"),
        }
    }

    /// The consoles' table gets its default route while some exit is live,
    /// and loses it otherwise (their traffic then takes the home's own
    /// uplink, as if meshd were not there).
    fn set_exit_route(&mut self, available: bool) {
        self.exit_route = available;
        let mtu = mesh_core::node::EXIT_MTU as u32;
        for route in self.policy.table_routes(self.tun_index, mtu) {
            let r = if available {
                self.netlink.route_replace(&route)
            } else {
                self.netlink.route_delete(&route)
            };
            if let Err(e) = r {
                log::warn!("consoles: cannot change their route ({route}): {e}");
            }
        }
    }

    /// The mesh port's datagrams (budget 0 for IPv4, 1 for IPv6; 2 is the
    /// TUN device's).
    fn read_udp(&mut self, v6: bool, t: &mut Instant, buf: &mut [u8]) {
        let which = usize::from(v6);
        self.read_batch(
            which,
            t,
            |d, buf| {
                let sock = if v6 { d.udp6.as_ref()? } else { &d.udp4 };
                Some(udp_gso::recv(sock, buf))
            },
            buf,
            |d, t, from, p, seg| {
                // A coalesced read's TCP segments of one stream join for one
                // TUN write (one datagram alone has nothing to join).
                d.joining = seg != 0;
                let mut n = 0;
                for datagram in udp_gso::datagrams(p, seg) {
                    d.node.handle_udp(t, from, datagram);
                    d.drain();
                    n += 1;
                }
                d.joining = false;
                d.flush_joined();
                n
            },
        );
    }

    /// Writes what [`Daemon::drain`] joined.
    fn flush_joined(&mut self) {
        if let Some(frame) = self.lan.take() {
            if self.tun.write_frame(frame).is_err() {
                self.tun_write_errors += 1;
            }
        }
    }

    fn read_tun(&mut self, t: &mut Instant, buf: &mut [u8]) {
        const ANY: SocketAddr =
            SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        self.read_batch(
            2,
            t,
            |d, buf| Some(d.tun.read(buf).map(|n| (n, ANY, 0))),
            buf,
            |d, t, _, frame, _| d.handle_tun_frame(t, frame),
        );
    }

    /// One frame read from the TUN: a packet, or a TSO super-packet cut
    /// into segments; each goes to the node, which is drained after it.
    /// Returns how many packets that was.
    fn handle_tun_frame(&mut self, t: Instant, frame: &mut [u8]) -> usize {
        let mut scratch = std::mem::take(&mut self.tun_segment);
        // A super-packet's datagrams to one member go out in one `sendmsg`.
        self.gathering = self.gso_on && offload::is_super_packet(frame);
        let r = offload::split(frame, &mut scratch, |p| {
            self.node.handle_lan_packet(t, p);
            self.drain();
        });
        self.gathering = false;
        self.flush_gathered();
        self.tun_segment = scratch;
        match r {
            Ok(n) => n,
            Err(e) => {
                self.tun_frame_errors += 1;
                if self.tun_frame_errors.is_power_of_two() {
                    log::warn!("tun: frame dropped: {e} ({} so far)", self.tun_frame_errors);
                }
                1
            }
        }
    }

    /// Reads what [`ReadBudget`] `which` allows with `read`, each datagram
    /// or frame to `handle`, which drains the node after every packet and
    /// says how many there were (a TUN frame may hold dozens); the budget
    /// counts packets, and the clock is read again every [`CLOCK_EVERY`].
    fn read_batch(
        &mut self,
        which: usize,
        t: &mut Instant,
        read: impl Fn(&Daemon, &mut [u8]) -> Option<io::Result<(usize, SocketAddr, usize)>>,
        buf: &mut [u8],
        handle: impl Fn(&mut Daemon, Instant, SocketAddr, &mut [u8], usize) -> usize,
    ) {
        let woke = *t;
        let limit = self.read_budget[which].limit();
        let mut got = 0;
        let mut since_clock = 0;
        let mut drained = false;
        while got < limit {
            if since_clock >= CLOCK_EVERY {
                *t = self.clock_again(*t);
                since_clock = 0;
            }
            match read(self, buf) {
                // Anything longer than a WireGuard datagram or the TUN's MTU
                // is counted and dropped by the node, not truncated here.
                Some(Ok((len, from, seg))) => {
                    let n = handle(self, *t, from, &mut buf[..len], seg);
                    got += n;
                    since_clock += n;
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Some(Err(e)) => {
                    match which {
                        2 => log::warn!("tun read: {e}"),
                        _ => log::debug!("udp receive: {e}"),
                    }
                    drained = true;
                    break;
                }
                None => return,
            }
        }
        self.read_budget[which].after(woke, got, drained);
    }

    /// Discovery packets captured on the LAN.
    fn read_discovery(&mut self, buf: &mut [u8]) {
        let wall = std::time::Instant::now();
        for _ in 0..BATCH {
            if !self.discovery.take_read(wall) {
                self.pause_discovery(wall);
                return;
            }
            let Some(sock) = &self.discovery.socket else {
                return;
            };
            match sock.recv(buf) {
                Ok(len) => {
                    self.node.handle_discovery_capture(now(), &buf[..len]);
                    self.drain();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // The device went away (ENETDOWN): reopened by the
                    // next refresh.
                    log::debug!("discovery receive: {e}");
                    self.close_discovery(Some(format!("receive: {e}")));
                    return;
                }
            }
        }
    }

    /// More than the second's reads: the socket leaves the loop until the
    /// second is over, and the kernel drops (and counts) what comes.
    fn pause_discovery(&mut self, wall: std::time::Instant) {
        let Some(sock) = &self.discovery.socket else {
            return;
        };
        let _ = self.epoll.delete(sock.as_fd());
        let d = &mut self.discovery;
        let second = d.second.unwrap_or(wall);
        d.paused_until = Some(second + std::time::Duration::from_secs(1));
        d.pauses += 1;
        if d.last_pause
            .is_none_or(|t| wall.duration_since(t) >= std::time::Duration::from_secs(60))
        {
            log::warn!(
                "discovery: more than {DISCOVERY_READS_PER_SECOND} packets a second on the LAN \
                 (a broadcast storm?): the rest of each second is left to the kernel"
            );
        }
        d.last_pause = Some(wall);
    }

    /// The paused second is over: the socket is read again.
    fn resume_discovery(&mut self, wall: std::time::Instant) {
        let Some(until) = self.discovery.paused_until else {
            return;
        };
        if wall < until {
            return;
        }
        self.discovery.paused_until = None;
        if let Some(sock) = &self.discovery.socket {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DISCOVERY);
            if let Err(e) = self.epoll.add(sock.as_fd(), ev) {
                self.close_discovery(Some(format!("cannot watch the capture socket: {e}")));
            }
        }
    }

    /// Opens, reopens or closes the LAN's discovery socket as the
    /// configuration and the device (which may come and go, or come back
    /// with a new index) say. Cheap when nothing changed: one netlink
    /// lookup of the device.
    fn refresh_discovery(&mut self) {
        let Some(policy) = self.config.main.discovery.clone() else {
            self.close_discovery(None);
            return;
        };
        let lan = self.config.main.lan_interface.clone();
        let ifindex = match self.netlink.link_index(&lan) {
            Ok(i) => i,
            Err(e) => {
                self.close_discovery(Some(format!("no LAN device {lan}: {e}")));
                return;
            }
        };
        if self.discovery.socket.is_some()
            && self.discovery.made_for.as_ref() == Some(&(ifindex, policy.clone()))
        {
            return;
        }
        self.close_discovery(None);
        let mut groups = Vec::new();
        if policy.ssdp() {
            groups.push((*SSDP.ip(), SSDP.port()));
        }
        if policy.mdns() {
            groups.push((*MDNS.ip(), MDNS.port()));
        }
        let opened = LanSocket::open(ifindex, policy.ports(), &groups).and_then(|s| {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DISCOVERY);
            self.epoll.add(s.as_fd(), ev)?;
            Ok(s)
        });
        match opened {
            Ok(s) => {
                log::info!(
                    "discovery: relaying broadcasts to ports {:?}{}{} on {lan}",
                    policy.ports(),
                    if policy.ssdp() { ", SSDP" } else { "" },
                    if policy.mdns() { ", mDNS" } else { "" },
                );
                self.discovery.socket = Some(s);
                self.discovery.made_for = Some((ifindex, policy));
                self.discovery.error = None;
            }
            Err(e) => self.close_discovery(Some(format!("cannot capture on {lan}: {e}"))),
        }
    }

    /// Closes the discovery socket; `error` says why, if discovery is on.
    fn close_discovery(&mut self, error: Option<String>) {
        // Its drops so far are kept.
        let _ = self.discovery.kernel_drops();
        if let Some(s) = self.discovery.socket.take() {
            if self.discovery.paused_until.take().is_none() {
                let _ = self.epoll.delete(s.as_fd());
            }
        }
        self.discovery.made_for = None;
        if error.is_some() && error != self.discovery.error {
            if let Some(e) = &error {
                log::warn!("discovery: {e}; consoles' LAN discovery is not relayed");
            }
        }
        self.discovery.error = error;
    }

    fn read_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => self.reload(None),
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                    log::info!("stopping");
                    self.stop = Some(Outcome::Exit);
                }
                _ => {}
            }
        }
    }

    /// New control clients: watched for their request line.
    fn accept_control(&mut self) {
        let accepted = self.control.accept(std::time::Instant::now());
        for (i, fd) in accepted {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CONTROL_CLIENT | i as u64);
            if let Err(e) = self.epoll.add(fd, ev) {
                log::warn!("control: cannot watch a client: {e}");
            }
        }
    }

    /// A control client is readable or writable: served as far as it goes,
    /// never waited for.
    fn serve_control(&mut self, i: usize, events: EpollFlags) {
        use crate::control::Interest;
        let interest = if events.contains(EpollFlags::EPOLLOUT) {
            self.control.on_writable(i)
        } else {
            match self.control.read_request(i) {
                Ok(Some(Request::Status)) => {
                    // Mapped alone, never grown through the arena.
                    let room = (self.status_len + self.status_len / 8).max(MAPPED_ALONE);
                    let text = status_parts!(self).text(now(), status::Part::Whole, room);
                    self.status_len = text.len();
                    self.control.answer(i, text)
                }
                Ok(Some(other)) => {
                    let answer = self.invite_request(other);
                    self.control.answer(i, answer)
                }
                Ok(None) => self
                    .control
                    .answer(i, "error: unknown request (try: status)\n".into()),
                Err(interest) => interest,
            }
        };
        if interest == Interest::Write {
            if let Some(fd) = self.control.fd(i) {
                let mut ev = EpollEvent::new(EpollFlags::EPOLLOUT, TOKEN_CONTROL_CLIENT | i as u64);
                let _ = self.epoll.modify(fd, &mut ev);
            }
        }
        // Closed: the stream is gone, and with its fd the epoll entry.
    }

    /// Endpoint names the resolver answered: members whose entry is still
    /// the one asked about get the addresses.
    fn names_resolved(&mut self) {
        let mut any = false;
        for (entry, addrs) in self.resolver.answers() {
            if let Some((current, cached)) = self.resolved.0.get_mut(&entry.name) {
                if *current == entry {
                    log::info!(
                        "member {}: endpoint names resolved to {addrs:?}",
                        entry.name
                    );
                    *cached = addrs;
                    any = true;
                }
            }
        }
        if !any {
            return;
        }
        let members = self.resolved.members(&self.config, Some(&self.resolver));
        let config = self.config.main.node_config(self.private_key, 0);
        let changes = self.node.reconfigure(now(), config, &members);
        self.log_changes(&changes);
    }

    /// Has the configuration re-read off the loop; [`Daemon::files_done`]
    /// applies it. `caller` (a ubus `reload`) is answered then.
    fn reload(&mut self, caller: Option<Caller>) {
        if !self.files.submit(Job::Reload { caller }) {
            log::error!("reload: the file thread is gone; keeping the running configuration");
            if let Some((peer, seq)) = caller {
                self.ubus
                    .reply(peer, seq, Err(crate::ubus::Status::UnknownError));
            }
        }
    }

    /// Applies a configuration read off the loop: what changed, keeping
    /// what did not.
    fn apply(&mut self, loaded: files::Loaded) {
        let (new, key) = match loaded {
            Ok(k) => k,
            Err(errors) => {
                for e in errors {
                    log::error!("{e}");
                }
                log::error!("reload refused: keeping the running configuration");
                return;
            }
        };
        for w in &new.warnings {
            log::warn!("{w}");
        }
        crate::logger::init(new.main.log_level);
        if sockets(&new) != sockets(&self.config) {
            log::info!("reload: port, device or control socket changed: restarting");
            self.stop = Some(Outcome::Restart);
            self.config = new;
            return;
        }
        let room = self.node.member_capacity();
        if new.needs_new_room(&self.config, room) {
            log::info!(
                "reload: room for {} members wanted, {room} set aside: restarting",
                new.member_capacity()
            );
            self.stop = Some(Outcome::Restart);
            self.config = new;
            return;
        }
        let t = now();
        self.private_key = key;
        let members = self.resolved.members(&new, Some(&self.resolver));
        let changes = self
            .node
            .reconfigure(t, new.main.node_config(key, 0), &members);
        if changes.rebuild {
            log::info!("reload: key, address or AS changed: restarting");
            self.stop = Some(Outcome::Restart);
            self.config = new;
            return;
        }
        self.log_changes(&changes);
        let policy_changed = (new.main.lan_interface.as_str(), new.main.exit_all)
            != (
                self.config.main.lan_interface.as_str(),
                self.config.main.exit_all,
            );
        let consoles_changed = policy_changed
            || (new.main.consoles_auto, &new.main.consoles)
                != (self.config.main.consoles_auto, &self.config.main.consoles);
        self.config = new;
        if policy_changed {
            // Other rules: the old ones go, the table's route comes back.
            if let Err(e) = self.policy.clear(&mut self.netlink) {
                log::warn!("consoles: cannot remove the old rules: {e}");
            }
            self.policy =
                PolicyRouting::new(&self.config.main.lan_interface, self.config.main.exit_all);
            if self.exit_route {
                self.set_exit_route(true);
            }
        }
        if consoles_changed {
            self.refresh_consoles();
        }
        self.refresh_discovery();
        log::info!(
            "reloaded {}: {} changes",
            self.config_path.display(),
            changes.count()
        );
        self.publish_group_record();
        self.group_check();
    }

    /// Sends what [`Daemon::drain`] gathered.
    fn flush_gathered(&mut self) {
        flush_gathered(
            &mut self.gso,
            &self.udp4,
            self.udp6.as_ref(),
            &mut self.gso_on,
            &mut self.udp_send_errors,
        );
    }

    /// Moves the node's outputs to the sockets, the TUN device, the log and
    /// the routing table. While [`Daemon::gathering`], the mesh port's
    /// datagrams wait in [`Daemon::gso`] for one `sendmsg`.
    fn drain(&mut self) {
        // (An Option: dropping an empty Vec is a call on every drain.)
        let mut unavailable: Option<Vec<(u16, Vec<u8>, SocketAddr)>> = None;
        while let Some(d) = self.node.poll_transmit() {
            let sent = match (d.to, d.from) {
                (SocketAddr::V4(_), Port::Exit(port)) => match self.exit_sockets.get(&port) {
                    Some(s) => Some(s.send_to(d.bytes, d.to)),
                    None => {
                        // A new mapping: `d` borrows the node, so its socket
                        // is opened (and the datagram sent) after the loop.
                        unavailable.get_or_insert_with(Vec::new).push((
                            port,
                            d.bytes.to_vec(),
                            d.to,
                        ));
                        continue;
                    }
                },
                (SocketAddr::V4(_), Port::Alt) => {
                    self.udp_alt.as_ref().map(|s| s.send_to(d.bytes, d.to))
                }
                (to, _) => {
                    // Gathered for one sendmsg; when the batch cannot take
                    // it, the batch goes first; what no batch takes goes
                    // alone.
                    if self.gathering {
                        if self.gso.push(d.bytes, to) {
                            continue;
                        }
                        flush_gathered(
                            &mut self.gso,
                            &self.udp4,
                            self.udp6.as_ref(),
                            &mut self.gso_on,
                            &mut self.udp_send_errors,
                        );
                        if self.gso.push(d.bytes, to) {
                            continue;
                        }
                    }
                    match to {
                        SocketAddr::V4(_) => Some(raw::send_to(self.udp4.as_raw_fd(), d.bytes, to)),
                        SocketAddr::V6(_) => self
                            .udp6
                            .as_ref()
                            .map(|s| raw::send_to(s.as_raw_fd(), d.bytes, to)),
                    }
                }
            };
            if !matches!(sent, Some(Ok(_))) {
                self.udp_send_errors += 1;
            }
        }
        // First datagrams of new mappings: open their sockets.
        if let Some(unavailable) = unavailable {
            for (port, bytes, to) in unavailable {
                match self.exit_socket(port) {
                    Ok(s) => {
                        if s.send_to(&bytes, to).is_err() {
                            self.udp_send_errors += 1;
                        }
                    }
                    Err(e) => {
                        self.exit_bind_errors += 1;
                        log::warn!(
                            "exit: cannot open public port {port}: {e}; the console gets another"
                        );
                        self.node.exit_port_unavailable(port);
                    }
                }
            }
        }
        while let Some(p) = self.node.poll_lan_packet() {
            if self.joining {
                if self.lan.push(p) {
                    continue;
                }
                // Not the next segment: what was joined goes first, and this
                // one may start the next.
                if let Some(frame) = self.lan.take() {
                    if self.tun.write_frame(frame).is_err() {
                        self.tun_write_errors += 1;
                    }
                    if self.lan.push(p) {
                        continue;
                    }
                }
            }
            if self.tun.write(p).is_err() {
                self.tun_write_errors += 1;
            }
        }
        if self.node.has_control_output() || self.group.outrun(self.node.group_own_version_seen()) {
            self.drain_control();
        }
    }

    /// The node's discovery packets, events, invite outcomes and the
    /// group's changes.
    fn drain_control(&mut self) {
        while let Some(p) = self.node.poll_discovery_packet() {
            let sent = self.discovery.socket.as_ref().map(|s| s.send(p));
            if !matches!(sent, Some(Ok(()))) {
                self.discovery.send_errors += 1;
            }
        }
        while let Some(ev) = self.node.poll_event() {
            self.on_event(ev);
        }
        while let Some(o) = self.node.poll_invite_outcome() {
            self.on_invite(o);
        }
        if self.node.take_group_changed() {
            self.group_check();
        }
        if self.group.outrun(self.node.group_own_version_seen()) {
            // A member holds a record of ours we did not sign in this run
            // (or one as new as ours): ours goes above it, even with nothing
            // to list (what the old one listed may be gone from the file).
            self.publish_group_record();
        }
    }

    /// Signs and publishes our group record when what it should say
    /// changed (the members we vouch for, or removed), or when a member
    /// holds a version of it as high as ours (we restarted, or the clock
    /// went back). Nothing to say and nothing said yet: no record.
    fn publish_group_record(&mut self) {
        use crate::group;
        let (entries, left_out) = group::own_entries(&self.config);
        let seen = self.node.group_own_version_seen();
        let outrun = self.group.outrun(seen);
        let changed = entries != self.group.entries;
        // (Nothing signed yet and nothing to list: `changed` is false.)
        if !(changed || outrun) {
            return;
        }
        if left_out > 0 {
            log::warn!(
                "group: our record lists {} members; {left_out} more we vouch for are left out",
                entries.len()
            );
        }
        let random = match crate::invites::random::<64>() {
            Ok(r) => r,
            Err(e) => {
                log::error!("group: random source: {e}: our record is not signed");
                return;
            }
        };
        let version = group::next_version(crate::invites::unix_now(), self.group.version, seen);
        let public = self.node.public_key();
        let signed = group::sign(&self.private_key, &public, version, &entries, &random)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.node
                    .set_group_record(&bytes)
                    .map_err(|e| e.to_string())
            });
        match signed {
            Ok(()) => {
                log::info!(
                    "group: our record, version {version}, lists {} members ({} removed)",
                    entries.len(),
                    entries.iter().filter(|e| e.removed).count()
                );
                self.group.version = Some(version);
                self.group.entries = entries;
            }
            Err(e) => log::error!("group: our record: {e}"),
        }
    }

    /// What the group's records want, against the running configuration:
    /// the member sections to add or remove are written on the file thread
    /// (one edit at a time; a change while one runs is looked at after it).
    fn group_check(&mut self) {
        if self.group.editing {
            self.group.again = true;
            return;
        }
        let mut wanted = Vec::new();
        let mut removed = Vec::new();
        self.node
            .group_membership(|w| wanted.push(w), |k| removed.push(*k));
        let (plan, kept) = crate::group::plan(&self.config, &wanted, &removed);
        if kept != self.group.kept {
            for name in kept.iter().filter(|n| !self.group.kept.contains(n)) {
                log::warn!(
                    "group: member '{name}' was removed from the group, but its section was \
                     written by hand: kept (remove it yourself if you agree)"
                );
            }
            self.group.kept = kept;
        }
        if plan.is_empty() {
            return;
        }
        let edit = crate::ubus_api::Edit {
            method: "group",
            event: "added",
            job: Box::new(move |config| {
                let done = crate::group::apply(config, &plan)
                    .map_err(|e| (crate::ubus_api::edit_status(&e), e.to_string()))?;
                Ok(done.join("; "))
            }),
        };
        if self.files.submit(Job::Edit { caller: None, edit }) {
            self.group.editing = true;
        } else {
            log::error!("group: the file thread is gone: the members are not written");
        }
    }

    /// The group's edit was written (or not), and re-read and applied.
    fn group_written(&mut self, result: crate::ubus_api::EditResult) {
        self.group.editing = false;
        match result {
            Ok(done) if done.is_empty() => {}
            Ok(done) => log::info!("group: {done}"),
            Err((_, why)) => {
                self.group.errors += 1;
                log::error!("group: the members could not be written: {why}")
            }
        }
        if std::mem::take(&mut self.group.again) {
            self.group_check();
        }
    }

    /// Drains the node, and arms the timer for the next deadline; `t` is
    /// the stretch's time.
    fn drain_and_arm(&mut self, t: Instant) {
        self.drain();
        // (std's clock only when there is a deadline on it.)
        let base = self.clock_base;
        let on_clock = |at: std::time::Instant| {
            let wall = std_instant(base, t);
            t + mesh_core::Duration::from_micros(
                at.saturating_duration_since(wall).as_micros() as u64
            )
        };
        // The bus connection's retry is a deadline too (converted once: it
        // stays while ubusd is away, which a router without it always is).
        let ubus = self.ubus.next_reconnect().map(|at| match self.ubus_retry {
            Some((was, on_ours)) if was == at => on_ours,
            _ => {
                let on_ours = on_clock(at);
                self.ubus_retry = Some((at, on_ours));
                on_ours
            }
        });
        // And the end of a paused second of discovery capture.
        let capture = self.discovery.paused_until.map(on_clock);
        let node = self.node.poll_timeout().map(|(d, _)| d);
        let earlier = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let next = earlier(earlier(node, ubus), capture);
        match next {
            Some(deadline) => {
                // A deadline already past fires at once (1 µs from now).
                let at = deadline.max(t + mesh_core::Duration::from_micros(1));
                if self.armed != Some(at) {
                    let set = self.timer.set(
                        Expiration::OneShot(to_timespec(at)),
                        TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                    );
                    self.armed = set.is_ok().then_some(at);
                }
            }
            None => {
                if self.armed.is_some() {
                    let _ = self.timer.unset();
                    self.armed = None;
                }
            }
        }
    }

    /// An exit by its overlay address: the member's name, or "this router".
    fn exit_name(&self, overlay: Ipv4Addr) -> String {
        if overlay == self.config.main.overlay {
            return "this router".into();
        }
        self.node
            .members()
            .find(|m| m.config.overlay == overlay)
            .map_or_else(|| overlay.to_string(), |m| m.config.name.to_string())
    }

    fn member(&self, slot: u8) -> String {
        self.node.member_name(slot).unwrap_or("?").to_string()
    }

    /// What the bus brought: connection changes and calls.
    fn on_ubus(&mut self, events: Vec<crate::ubus::Event>) {
        use crate::ubus::Event;
        for ev in events {
            match ev {
                Event::Connected => {
                    if let Some(fd) = self.ubus.fd() {
                        let ev = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_UBUS);
                        if let Err(e) = self.epoll.add(fd, ev) {
                            log::warn!("ubus: cannot watch the bus socket: {e}");
                        }
                    }
                }
                Event::Disconnected => log::debug!("ubus: disconnected; will reconnect"),
                Event::Registered { id } => {
                    log::info!("ubus: object meshd registered (id {id:#010x})")
                }
                Event::SubscribersChanged { active } => {
                    log::debug!(
                        "ubus: subscribers {}",
                        if active { "present" } else { "gone" }
                    )
                }
                Event::Error(e) => log::debug!("ubus: {e:?}"),
                Event::Invoke {
                    peer,
                    seq,
                    method,
                    args,
                } => {
                    match crate::ubus_api::call(self, &method, &args) {
                        crate::ubus_api::Answer::Now(result) => {
                            if let Err(status) = &result {
                                log::debug!("ubus: {method} answered {status:?}");
                            }
                            self.ubus.reply(peer, seq, result);
                        }
                        // Written straight into the reply frame: the
                        // document is never a tree on the packet loop.
                        crate::ubus_api::Answer::Document(part) => {
                            let parts = status_parts!(self);
                            let at = now();
                            self.ubus
                                .reply_with(peer, seq, |sink| parts.write_to(at, part, sink));
                        }
                        crate::ubus_api::Answer::AfterReload => self.reload(Some((peer, seq))),
                        // The file edit runs on the file thread; the call
                        // is answered when it is done and applied.
                        crate::ubus_api::Answer::AfterEdit(edit) => {
                            let job = Job::Edit {
                                caller: Some((peer, seq)),
                                edit,
                            };
                            if !self.files.submit(job) {
                                self.ubus
                                    .reply(peer, seq, Err(crate::ubus::Status::UnknownError));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reloads and edits the file thread finished: the daemon follows the
    /// file, the subscribers hear of edits, callers get their answers.
    /// Of several good configurations read since the loop last looked,
    /// only the newest is applied (each would replace the one before
    /// anyway): a burst of reloads costs the loop one reconfiguration. A
    /// refused one is still reported.
    fn files_done(&mut self) {
        let done = self.files.done();
        let newest = done.iter().rposition(|d| matches!(d.loaded(), Some(Ok(_))));
        for (i, d) in done.into_iter().enumerate() {
            match d {
                Done::Reloaded { caller, loaded } => {
                    if loaded.is_err() || Some(i) == newest {
                        self.apply(loaded);
                    }
                    if let Some((peer, seq)) = caller {
                        self.ubus.reply(peer, seq, crate::ubus_api::reloaded());
                    }
                }
                Done::Edited {
                    caller,
                    method,
                    event,
                    result,
                    loaded,
                } => {
                    if let Some(loaded) = loaded {
                        if loaded.is_err() || Some(i) == newest {
                            self.apply(loaded);
                        }
                    }
                    match caller {
                        Some((peer, seq)) => {
                            let answer = crate::ubus_api::finish_edit(self, method, event, result);
                            self.ubus.reply(peer, seq, answer);
                        }
                        None if method == "group" => self.group_written(result),
                        None if method == "member_remove" => match result {
                            Ok(name) => log::info!("group: '{name}' removed"),
                            Err((_, why)) => log::error!("group: remove: {why}"),
                        },
                        None => self.invite_written(method, result),
                    }
                }
            }
        }
    }

    /// `invite ...`, `join TOKEN`, `join status` on the control socket.
    fn invite_request(&mut self, req: Request) -> String {
        let result = match req {
            Request::Invite {
                name,
                seconds,
                endpoints,
            } => crate::ubus_api::Api::invite(self, &name, seconds, endpoints),
            Request::Join(text) => self.start_join(&text),
            Request::JoinStatus => Ok(self.join.line()),
            Request::Remove(name) => self.remove_member(name),
            Request::Status => Err("not an invite request".into()),
        };
        result.unwrap_or_else(|e| format!("error: {e}\n"))
    }

    /// `remove NAME`: marks the member removed in the file (on the file
    /// thread); the reload closes its tunnel and our record, signed anew,
    /// tells the group.
    fn remove_member(&mut self, name: String) -> Result<String, String> {
        match self.config.member(&name) {
            None => return Err(format!("no member '{name}'")),
            Some(m) if m.removed => return Err(format!("'{name}' is removed already")),
            Some(_) => {}
        }
        let edit = crate::ubus_api::remove_edit(name.clone());
        if !self.files.submit(Job::Edit { caller: None, edit }) {
            return Err("the file thread is gone".into());
        }
        Ok(format!(
            "removing '{name}': its tunnels close here, and at every member as our record reaches it\n"
        ))
    }

    /// `join TOKEN`: starts asking the inviter.
    fn start_join(&mut self, text: &str) -> Result<String, String> {
        let token = match mesh_core::invite::Token::from_text(text) {
            Ok(t) => t,
            Err(e) => {
                self.bad_tokens += 1;
                return Err(e.to_string());
            }
        };
        let inviter = mesh_core::wg::Key(token.inviter);
        if inviter == self.node.public_key() {
            return Err("that is this router's own invite".into());
        }
        if let Some(m) = self.config.members.iter().find(|m| m.public_key == inviter) {
            return Err(format!("the inviter is member '{}' already", m.name));
        }
        if matches!(self.join, crate::invites::JoinProgress::Joining { .. }) {
            return Err("a join is in progress".into());
        }
        if token.expires < crate::invites::unix_now() {
            log::warn!(
                "invite: the token says it expired (our clock); asking {} anyway",
                token.inviter_name
            );
        }
        let nonce = crate::invites::random::<8>().map_err(|e| format!("random source: {e}"))?;
        let name = token.inviter_name.to_string();
        log::info!(
            "invite: joining {name}'s mesh at {}",
            token
                .endpoints
                .iter()
                .map(|&e| std::net::SocketAddr::from(e).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.node.join(
            now(),
            token,
            nonce,
            crate::invites::numbers(&self.config.main),
        );
        self.join = crate::invites::JoinProgress::Joining {
            inviter: name.clone(),
        };
        Ok(format!("joining {name}\n"))
    }

    /// What the node says of an invite or of our join: member sections to
    /// write (on the file thread), or a join that failed.
    fn on_invite(&mut self, o: mesh_core::node::InviteOutcome) {
        use crate::uci_edit::NewMember;
        use mesh_core::node::InviteOutcome;
        let (method, member) = match o {
            InviteOutcome::Joined {
                name,
                key,
                numbers,
                from,
            } => {
                log::info!("invite: '{name}' joined with key {key} from {from}; adding it");
                let key = key.to_string();
                let mut m = NewMember::new(name.as_str(), &key, "", "");
                // Where its join came from: we initiate the tunnel the moment
                // we add it. Its own first initiation may have arrived before
                // (and been dropped): without this it would wait for its
                // retry, 5 s later. Peer exchange keeps the endpoint current.
                let from = std::net::SocketAddr::new(from.ip().to_canonical(), from.port());
                m.endpoints = vec![from.to_string()];
                // We brought it in: our group record lists it.
                m.vouch = Some("1".into());
                // A friend with numbers of its own (not from its key).
                crate::invites::write_numbers(&mut m, numbers.as_ref());
                ("invite_joined", m)
            }
            InviteOutcome::Accepted { token } => {
                let key = mesh_core::wg::Key(token.inviter);
                let name = crate::invites::unique_name(
                    &token.inviter_name,
                    &key,
                    self.config.members.iter().map(|m| m.name.as_str()),
                );
                log::info!(
                    "invite: {} accepted us; adding it as '{name}'",
                    token.inviter_name
                );
                let mut m = NewMember::new(name.as_str(), &key.to_string(), "", "");
                // Our inviter: our group record lists it, so that the
                // members we bring in learn of it.
                m.vouch = Some("1".into());
                // An inviter with numbers of its own (not from its key).
                crate::invites::write_numbers(&mut m, token.numbers.as_ref());
                m.endpoints = token
                    .endpoints
                    .iter()
                    .map(|&e| std::net::SocketAddr::from(e).to_string())
                    .collect();
                self.join = crate::invites::JoinProgress::Writing {
                    inviter: name.to_string(),
                };
                ("join_accepted", m)
            }
            InviteOutcome::Refused { token, why } => {
                log::warn!("invite: {} refused our join: {why}", token.inviter_name);
                self.join = crate::invites::JoinProgress::Failed {
                    inviter: token.inviter_name.to_string(),
                    reason: why.to_string(),
                };
                return;
            }
            InviteOutcome::TimedOut { token } => {
                let reason = format!(
                    "no answer in {} s (not reachable, or not its token)",
                    mesh_core::invite::JOIN_TIMEOUT.as_secs()
                );
                log::warn!("invite: {}: {reason}", token.inviter_name);
                self.join = crate::invites::JoinProgress::Failed {
                    inviter: token.inviter_name.to_string(),
                    reason,
                };
                return;
            }
        };
        let edit = crate::ubus_api::Edit {
            method,
            event: "added",
            job: Box::new(move |config| {
                crate::uci_edit::member_add(config, &member)
                    .map_err(|e| (crate::ubus::Status::UnknownError, e.to_string()))?;
                Ok(member.name)
            }),
        };
        if !self.files.submit(Job::Edit { caller: None, edit }) {
            log::error!("invite: the file thread is gone: the member is not written");
        }
    }

    /// An invite's member section was written (or not).
    fn invite_written(&mut self, method: &'static str, result: crate::ubus_api::EditResult) {
        match (&result, method) {
            (Ok(name), "join_accepted") => {
                log::info!("invite: joined; '{name}' is a member now");
                self.join = crate::invites::JoinProgress::Joined {
                    inviter: name.clone(),
                };
            }
            (Ok(name), _) => log::info!("invite: '{name}' is a member now"),
            (Err((_, why)), _) => {
                log::error!("invite: the member could not be written: {why}");
                if method == "join_accepted" {
                    let inviter = match &self.join {
                        crate::invites::JoinProgress::Writing { inviter } => inviter.clone(),
                        _ => String::new(),
                    };
                    self.join = crate::invites::JoinProgress::Failed {
                        inviter,
                        reason: format!("the config file: {why}"),
                    };
                }
            }
        }
    }

    fn on_event(&mut self, ev: NodeEvent) {
        self.notify_event(&ev);
        match ev {
            NodeEvent::SessionUp { member } => {
                log::info!("bgp: session with {} established", self.member(member))
            }
            NodeEvent::SessionDown { member, reason } => {
                log::warn!("bgp: session with {} down: {reason:?}", self.member(member))
            }
            NodeEvent::TunnelUp { member } => {
                log::info!("wg: tunnel to {} up", self.member(member))
            }
            NodeEvent::TunnelDown { member } => log::warn!(
                "wg: tunnel to {} down (nothing from it for {} s)",
                self.member(member),
                mesh_core::node::TUNNEL_SILENCE.as_secs()
            ),
            NodeEvent::BfdUp { member } => {
                log::info!("bfd: {} up", self.member(member))
            }
            NodeEvent::BfdAdminDown { member } => log::info!(
                "bfd: {} took BFD out of service (AdminDown); BGP is left alone",
                self.member(member)
            ),
            NodeEvent::BfdDown { member, diagnostic } => {
                log::warn!(
                    "bfd: {} down ({diagnostic}): BGP and its routes go if it stays down {} ms",
                    self.member(member),
                    self.config.main.bfd_confirm.as_millis()
                )
            }
            NodeEvent::TrafficMoved { member, away } => {
                if away {
                    log::info!("forwarding: traffic moved off {}", self.member(member))
                } else {
                    log::info!("forwarding: traffic back on {}", self.member(member))
                }
            }
            NodeEvent::RouteAdded { prefix, via } => {
                log::info!("route {prefix} via {}", self.member(via));
                self.install(prefix);
            }
            NodeEvent::PathChanged { prefix, from, to } => {
                log::info!(
                    "route {prefix} now via {} (was {})",
                    self.member(to),
                    self.member(from)
                );
                self.install(prefix);
            }
            NodeEvent::ConsoleExit { console, exit } => match exit {
                Some(e) => log::info!("console {console}: game exit {}", self.exit_name(e)),
                None => log::warn!("console {console}: no game exit is live"),
            },
            NodeEvent::ExitAvailable { available } => {
                log::info!(
                    "game exits: {}",
                    if available {
                        "one is live: consoles' UDP goes through the mesh"
                    } else {
                        "none live: consoles use this home's own uplink"
                    }
                );
                self.set_exit_route(available);
            }
            NodeEvent::ExitOffered { public } => {
                let rules = match public {
                    Some(a) => {
                        log::info!("offering this router as a game exit at {a}");
                        let mss = (mesh_core::node::EXIT_MTU - 40) as u16;
                        let lan = &self.config.main.lan_interface;
                        nft::exit_ruleset(self.tun.name(), lan, mss)
                    }
                    None => {
                        log::info!("not a game exit (now)");
                        nft::remove_ruleset()
                    }
                };
                if let Err(e) = self.nft.load(&rules, "exit rules") {
                    log::warn!("exit: cannot run nft ({e}): consoles set to exit_all get no TCP through this exit");
                }
            }
            NodeEvent::MappingClosed { port } => self.close_exit_socket(port),
            NodeEvent::RouteRemoved { prefix } => {
                log::info!("route {prefix} gone");
                let route = Route::new(prefix.addr(), prefix.prefix_len(), self.tun_index);
                if let Err(e) = self.netlink.route_delete(&route) {
                    log::warn!("cannot remove kernel route {prefix}: {e}");
                }
                self.installed.remove(&prefix);
            }
        }
    }

    /// Member and route changes, for the bus's subscribers.
    fn notify_event(&mut self, ev: &NodeEvent) {
        if !self.ubus.object().has_subscribers() {
            return;
        }
        let member = |d: &Daemon, m: u8, event: &str| {
            Json::obj().with("name", d.member(m)).with("event", event)
        };
        let (kind, data) = match *ev {
            NodeEvent::TunnelUp { member: m } => ("member", member(self, m, "tunnel_up")),
            NodeEvent::TunnelDown { member: m } => ("member", member(self, m, "tunnel_down")),
            NodeEvent::SessionUp { member: m } => ("member", member(self, m, "session_up")),
            NodeEvent::SessionDown { member: m, .. } => ("member", member(self, m, "session_down")),
            NodeEvent::BfdUp { member: m } => ("member", member(self, m, "bfd_up")),
            NodeEvent::BfdDown { member: m, .. } => ("member", member(self, m, "bfd_down")),
            NodeEvent::BfdAdminDown { member: m } => ("member", member(self, m, "bfd_admin_down")),
            NodeEvent::TrafficMoved { member: m, away } => (
                "member",
                member(
                    self,
                    m,
                    if away {
                        "traffic_moved"
                    } else {
                        "traffic_back"
                    },
                ),
            ),
            NodeEvent::RouteAdded { prefix, via } => (
                "route",
                Json::obj()
                    .with("prefix", prefix.to_string())
                    .with("event", "added")
                    .with("via", self.member(via)),
            ),
            NodeEvent::PathChanged { prefix, to, .. } => (
                "route",
                Json::obj()
                    .with("prefix", prefix.to_string())
                    .with("event", "changed")
                    .with("via", self.member(to)),
            ),
            NodeEvent::RouteRemoved { prefix } => (
                "route",
                Json::obj()
                    .with("prefix", prefix.to_string())
                    .with("event", "removed"),
            ),
            NodeEvent::ConsoleExit { console, exit } => (
                "exit",
                Json::obj()
                    .with("console", console.to_string())
                    .with("event", if exit.is_some() { "chosen" } else { "lost" })
                    .with("exit", exit.map(|e| self.exit_name(e))),
            ),
            NodeEvent::ExitAvailable { available } => (
                "exit",
                Json::obj().with(
                    "event",
                    if available {
                        "available"
                    } else {
                        "unavailable"
                    },
                ),
            ),
            NodeEvent::ExitOffered { public } => (
                "exit",
                Json::obj()
                    .with(
                        "event",
                        if public.is_some() {
                            "offered"
                        } else {
                            "withdrawn"
                        },
                    )
                    .with("public", public.map(|a| a.to_string())),
            ),
            NodeEvent::MappingClosed { .. } => return,
        };
        self.ubus.notify(kind, data);
    }

    fn install(&mut self, prefix: Prefix) {
        // Our own address needs no route: the kernel has it on the TUN device.
        if prefix == Prefix::host(IpAddr::V4(self.config.main.overlay)) {
            return;
        }
        let route = Route::new(prefix.addr(), prefix.prefix_len(), self.tun_index);
        match self.netlink.route_replace(&route) {
            Ok(()) => {
                self.installed.insert(prefix);
            }
            Err(e) => log::warn!("cannot install kernel route {prefix}: {e}"),
        }
    }

    /// Stops the sessions (Cease to every peer), lets the NOTIFICATIONs and
    /// FINs out, and removes our routes.
    pub fn shutdown(&mut self) {
        let t = now();
        self.node.shutdown(t);
        self.drain();
        // Give TCP a moment to carry the NOTIFICATIONs through the tunnels.
        let deadline = t + mesh_core::Duration::from_millis(300);
        let mut buf = vec![0u8; 65536];
        let mut events = [EpollEvent::empty(); 16];
        while now() < deadline {
            let left = deadline.saturating_duration_since(now()).as_millis() as u16;
            if self
                .epoll
                .wait(&mut events, EpollTimeout::from(left.max(1)))
                .is_err()
            {
                break;
            }
            let mut t = now();
            self.read_udp(false, &mut t, &mut buf);
            self.read_udp(true, &mut t, &mut buf);
            if self.node.poll_timeout().is_some_and(|(d, _)| d <= t) {
                self.node.handle_timeout(t);
            }
            self.drain();
        }
        if let Err(e) = self.policy.clear(&mut self.netlink) {
            log::warn!("cannot remove the consoles' rules: {e}");
        }
        if self.node.exit_offered().is_some() {
            let _ = self.nft.load(&nft::remove_ruleset(), "remove exit rules");
        }
        self.nft.wait();
        match self.netlink.flush_protocol(RTPROT_MESHD) {
            Ok(n) => log::info!("removed {n} routes"),
            Err(e) => log::warn!("cannot remove routes: {e}"),
        }
        if self.udp_send_errors + self.tun_write_errors + self.tun_frame_errors > 0 {
            log::info!(
                "send errors: udp {} tun {}; tun frames dropped {}",
                self.udp_send_errors,
                self.tun_write_errors,
                self.tun_frame_errors
            );
        }
    }
}

/// What the ubus methods need of the daemon.
impl crate::ubus_api::Api for Daemon {
    fn status(&self, part: status::Part, sink: &mut dyn crate::json::Sink) {
        status_parts!(self).write_to(now(), part, sink)
    }

    fn config_path(&self) -> &Path {
        &self.config_path
    }

    fn notify(&mut self, event_type: &str, data: Json) {
        self.ubus.notify(event_type, data);
    }

    /// Makes an invite giving `name` and answers its token.
    fn invite(
        &mut self,
        name: &str,
        seconds: u64,
        endpoints: Vec<std::net::SocketAddr>,
    ) -> Result<String, String> {
        use crate::invites;
        if !mesh_core::invite::valid_name(name) {
            return Err(format!(
                "'{name}' is not a member name (1..32 of [A-Za-z0-9_])"
            ));
        }
        if self.config.members.iter().any(|m| m.name == name) {
            return Err(format!("there is a member '{name}' already"));
        }
        let t = now();
        if self.node.invites().gives(t, name) {
            return Err(format!("an invite for '{name}' is pending"));
        }
        if seconds == 0 || seconds > 30 * 86400 {
            return Err("an invite lasts 1 s to 30 days".into());
        }
        let endpoints = if endpoints.is_empty() {
            let public = self.node.nat_report().public;
            let host = host_addresses(self.config.main.overlay);
            invites::default_endpoints(public, &host, self.config.main.listen_port)
        } else {
            endpoints
        };
        let id = invites::random::<8>().map_err(|e| format!("random source: {e}"))?;
        let secret = invites::random::<16>().map_err(|e| format!("random source: {e}"))?;
        let own = self.node.public_key();
        let mut token = invites::token(
            &own,
            invites::own_name(),
            name,
            &endpoints,
            id,
            secret,
            invites::unix_now() + seconds,
        )?;
        token.numbers = invites::numbers(&self.config.main);
        let text = token.to_text().map_err(|e| e.to_string())?;
        self.node
            .add_invite(
                t,
                id,
                secret,
                token.name.clone(),
                mesh_core::Duration::from_secs(seconds),
            )
            .map_err(|_| {
                format!(
                    "{} invites are pending: wait for one to be used or to expire",
                    mesh_core::node::MAX_INVITES
                )
            })?;
        log::info!(
            "invite: made one for '{name}', valid {seconds} s, reaching us at {}",
            endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(format!("{text}\n"))
    }

    fn join(&mut self, token: &str) -> Result<String, String> {
        self.start_join(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_micros(1_000_000 + us)
    }

    /// A short stretch is counted as its wall-clock time, in the first
    /// bucket; a long one after it, without a known start on the CPU
    /// clock, as at most its wall-clock time.
    #[test]
    fn a_short_stretch_is_not_timed_on_the_cpu_clock() {
        let mut l = LoopLatency::new(at(0));
        l.woke();
        l.record(at(0), at(40), "mesh4");
        assert_eq!(l.cpu_at, None);
        let w = l.work[0];
        assert_eq!((w.stretches, w.cpu_ns, w.histogram[0]), (1, 40_000, 1));
        l.record(at(40), at(5_040), "mesh4");
        let w = l.work[0];
        assert_eq!(w.stretches, 2);
        assert!(w.cpu_ns <= 40_000 + 5_000_000, "{}", w.cpu_ns);
        assert!(l.cpu_at.is_some());
    }

    /// Root (as meshd runs, and as the tests run here) passes the kernel's
    /// `rmem_max`/`wmem_max`; the kernel then counts twice what was asked.
    #[test]
    fn the_mesh_socket_buffers_are_raised_past_the_default_each_way() {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let before = socket::getsockopt(&sock, sockopt::RcvBuf).unwrap();
        assert!(
            before < MESH_SOCKET_BUFFER,
            "the default is already {before}"
        );
        size_mesh_buffers(&sock);
        for (way, got) in [
            (
                "receive",
                socket::getsockopt(&sock, sockopt::RcvBuf).unwrap(),
            ),
            ("send", socket::getsockopt(&sock, sockopt::SndBuf).unwrap()),
        ] {
            assert_eq!(got, 2 * MESH_SOCKET_BUFFER, "{way} buffer");
        }
    }

    #[test]
    fn packets_one_at_a_time_are_read_one_a_wake_up_and_a_queue_in_batches() {
        let mut b = ReadBudget::default();
        // A game's packets, 16 ms apart: one read each, no empty read.
        for i in 0..10 {
            assert_eq!(b.limit(), 1, "packet {i}");
            b.after(at(i * 16_000), 1, false);
        }
        // Wake-ups back to back: a queue builds, the next reads it all.
        b.after(at(144_050), 1, false);
        assert_eq!(b.limit(), BATCH);
        b.after(at(144_100), 40, true);
        assert_eq!(b.limit(), BATCH, "a batch that found many stays");
        b.after(at(144_500), BATCH, false);
        assert_eq!(b.limit(), BATCH, "a full batch stays");
        // A batch that found one packet and then nothing: back to one.
        b.after(at(145_000), 1, true);
        assert_eq!(b.limit(), 1);
        b.after(at(161_000), 1, false);
        assert_eq!(b.limit(), 1);
    }
}
