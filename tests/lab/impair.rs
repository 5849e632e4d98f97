//! A userspace link emulator for the lab (LAB.md, "Impairments": this kernel
//! has no netem and no tbf).
//!
//! It sits on one router's WAN wire in the `inet` namespace:
//!
//! ```text
//!   rN:wan ══ wN ─(emulator thread)─ xNa ══ xNb ─ br0 (the internet)
//! ```
//!
//! `wN` leaves the bridge; a veth pair `xNa`/`xNb` takes its place, and a
//! thread in `inet` copies Ethernet frames both ways between `wN` and `xNa`
//! with AF_PACKET raw sockets. Frames of one IPv4 address pair (a tunnel's
//! underlay) go through a [`Shaper`] per direction: random loss, a rate limit
//! with a tail-drop FIFO that phantom cross traffic fills (bufferbloat),
//! delay and jitter, FIFO order unless reordering is allowed. Every other
//! frame (ARP, other routers' traffic) passes at once. [`Counters`] prove
//! what was done. Dropping the [`Wire`] puts `wN` back into the bridge.
//!
//! The sockets use `PACKET_VNET_HDR`: veth hands over UDP with the checksum
//! left to the hardware (`CHECKSUM_PARTIAL`); the virtio header carries that
//! state from the receiving socket to the sending one, so the far end still
//! accepts the datagram.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::libc;

use super::Netns;

/// What one direction of the wire does to the chosen frames. The default
/// does nothing (the frames are still counted as impaired).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Profile {
    /// Added to every frame.
    pub delay: Duration,
    /// Uniform ± around `delay` (the sum is never below zero).
    pub jitter: Duration,
    /// Frames may overtake the ones ahead of them; otherwise a frame is
    /// never released before the one ahead of it, like on a real link.
    pub reorder: bool,
    /// Probability that a frame is lost (0.0 ..= 1.0), before the queue.
    pub loss: f64,
    /// Rate limit of the link in bit/s; 0: none (no queue).
    pub rate_bps: u64,
    /// The FIFO's size, as time to drain it at `rate_bps`; a frame that
    /// does not fit is dropped (tail drop). Zero: no limit.
    pub queue_limit: Duration,
    /// Phantom traffic entering the same FIFO at this rate: a PC's upload
    /// on the home uplink, 1500-byte frames paced like TCP's (evenly spaced,
    /// ±10%), so the queue stays within a frame of full.
    pub cross_traffic_bps: u64,
}

impl Profile {
    pub const NONE: Profile = Profile {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        reorder: false,
        loss: 0.0,
        rate_bps: 0,
        queue_limit: Duration::ZERO,
        cross_traffic_bps: 0,
    };

    pub fn delay(delay: Duration, jitter: Duration) -> Profile {
        Profile {
            delay,
            jitter,
            ..Profile::NONE
        }
    }

    pub fn loss(loss: f64) -> Profile {
        Profile {
            loss,
            ..Profile::NONE
        }
    }

    pub fn queue(rate_bps: u64, queue_limit: Duration, cross_traffic_bps: u64) -> Profile {
        Profile {
            rate_bps,
            queue_limit,
            cross_traffic_bps,
            ..Profile::NONE
        }
    }
}

/// A direction on the wire of router N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the router to the internet (`wN` → `xNa`): its upload.
    Up = 0,
    /// From the internet to the router.
    Down = 1,
}

/// Size of a phantom cross-traffic frame.
pub const CROSS_FRAME: usize = 1500;

/// What the emulator did, readable at any time.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames forwarded at once: not of the impaired pair.
    pub passed: AtomicU64,
    /// Frames of the impaired pair that went through the shaper.
    pub impaired: AtomicU64,
    pub dropped_loss: AtomicU64,
    pub dropped_queue: AtomicU64,
    /// The largest delay a released frame got (queue + delay + jitter +
    /// waiting for the frame ahead), in µs.
    pub max_delay_us: AtomicU64,
    /// The largest time a frame spent in the rate-limited FIFO, in µs.
    pub max_queue_delay_us: AtomicU64,
    /// Frames released before a frame that arrived ahead of them.
    pub reordered: AtomicU64,
    /// Phantom cross-traffic frames that entered the FIFO, and that did not
    /// fit.
    pub cross_frames: AtomicU64,
    pub cross_dropped: AtomicU64,
    /// Frames the kernel dropped because our sockets were not read in time
    /// (`PACKET_STATISTICS`), and sends that failed: the emulator's own
    /// losses, which should stay zero.
    pub socket_drops: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub passed: u64,
    pub impaired: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub max_delay_ms: f64,
    pub max_queue_delay_ms: f64,
    pub reordered: u64,
    pub cross_frames: u64,
    pub cross_dropped: u64,
    pub socket_drops: u64,
    pub send_errors: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            passed: get(&self.passed),
            impaired: get(&self.impaired),
            dropped_loss: get(&self.dropped_loss),
            dropped_queue: get(&self.dropped_queue),
            max_delay_ms: get(&self.max_delay_us) as f64 / 1000.0,
            max_queue_delay_ms: get(&self.max_queue_delay_us) as f64 / 1000.0,
            reordered: get(&self.reordered),
            cross_frames: get(&self.cross_frames),
            cross_dropped: get(&self.cross_dropped),
            socket_drops: get(&self.socket_drops),
            send_errors: get(&self.send_errors),
        }
    }

    fn add(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    fn max(a: &AtomicU64, d: Duration) {
        a.fetch_max(d.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Counts {
    /// Frames dropped by loss, as a fraction of the impaired ones.
    pub fn loss_fraction(&self) -> f64 {
        self.dropped_loss as f64 / self.impaired.max(1) as f64
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "emulator: {} impaired, {} passed, {} lost ({:.2}%), {} queue drops, max delay {:.1} ms, \
             max queue delay {:.1} ms, {} reordered, cross traffic {} frames ({} dropped), \
             own drops {} + {} send errors",
            self.impaired,
            self.passed,
            self.dropped_loss,
            100.0 * self.loss_fraction(),
            self.dropped_queue,
            self.max_delay_ms,
            self.max_queue_delay_ms,
            self.reordered,
            self.cross_frames,
            self.cross_dropped,
            self.socket_drops,
            self.send_errors
        )
    }
}

/// xorshift64*: small, seeded, good enough for loss and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `mean` ± `spread` × `mean`.
    pub fn around(&mut self, mean: Duration, spread: f64) -> Duration {
        mean.mul_f64(1.0 - spread + 2.0 * spread * self.unit())
    }
}

/// One direction's FIFO and ordering state.
#[derive(Debug, Clone)]
struct Lane {
    /// When the rate-limited link finishes sending what it accepted.
    busy_until: Instant,
    /// The next phantom cross-traffic arrival.
    next_cross: Option<Instant>,
    /// The latest release time given to a frame so far.
    last_release: Instant,
}

/// The decisions of the emulator, apart from the sockets: testable without
/// a network.
#[derive(Debug, Clone)]
pub struct Shaper {
    lanes: [Lane; 2],
    rng: Rng,
}

impl Shaper {
    pub fn new(seed: u64, now: Instant) -> Shaper {
        let lane = Lane {
            busy_until: now,
            next_cross: None,
            last_release: now,
        };
        Shaper {
            lanes: [lane.clone(), lane],
            rng: Rng::new(seed),
        }
    }

    fn tx_time(bytes: usize, rate_bps: u64) -> Duration {
        Duration::from_nanos((bytes as u64 * 8).saturating_mul(1_000_000_000) / rate_bps.max(1))
    }

    /// Lets phantom cross traffic arrive into the FIFO of `dir` up to `now`.
    pub fn advance(&mut self, now: Instant, dir: Dir, p: &Profile, c: &Counters) {
        let lane = &mut self.lanes[dir as usize];
        if p.rate_bps == 0 || p.cross_traffic_bps == 0 {
            lane.next_cross = None;
            return;
        }
        let mean = Self::tx_time(CROSS_FRAME, p.cross_traffic_bps);
        let tx = Self::tx_time(CROSS_FRAME, p.rate_bps);
        let mut t = match lane.next_cross {
            Some(t) => t,
            None => now + self.rng.around(mean, 0.1),
        };
        // After a long stall, start over instead of replaying it.
        if now.saturating_duration_since(t) > Duration::from_secs(1) {
            t = now;
        }
        while t <= now {
            let backlog = lane.busy_until.saturating_duration_since(t);
            if p.queue_limit > Duration::ZERO && backlog + tx > p.queue_limit {
                Counters::add(&c.cross_dropped);
            } else {
                lane.busy_until = lane.busy_until.max(t) + tx;
                Counters::add(&c.cross_frames);
            }
            t += self.rng.around(mean, 0.1);
        }
        lane.next_cross = Some(t);
    }

    /// A frame of `bytes` of the impaired pair arrives at `now` in `dir`:
    /// when to release it, or `None` when it is dropped.
    pub fn admit(
        &mut self,
        now: Instant,
        dir: Dir,
        bytes: usize,
        p: &Profile,
        c: &Counters,
    ) -> Option<Instant> {
        Counters::add(&c.impaired);
        self.advance(now, dir, p, c);
        if p.loss > 0.0 && self.rng.unit() < p.loss {
            Counters::add(&c.dropped_loss);
            return None;
        }
        let lane = &mut self.lanes[dir as usize];
        let mut at = now;
        if p.rate_bps > 0 {
            let tx = Self::tx_time(bytes, p.rate_bps);
            let backlog = lane.busy_until.saturating_duration_since(now);
            if p.queue_limit > Duration::ZERO && backlog + tx > p.queue_limit {
                Counters::add(&c.dropped_queue);
                return None;
            }
            lane.busy_until = lane.busy_until.max(now) + tx;
            at = lane.busy_until;
            Counters::max(&c.max_queue_delay_us, at - now);
        } else {
            lane.busy_until = now;
        }
        // Delay and jitter, never below zero.
        let mut extra = p.delay.as_nanos() as f64;
        if p.jitter > Duration::ZERO {
            extra += p.jitter.as_nanos() as f64 * (2.0 * self.rng.unit() - 1.0);
        }
        at += Duration::from_nanos(extra.max(0.0) as u64);
        if p.reorder {
            if at < lane.last_release {
                Counters::add(&c.reordered);
            }
        } else {
            at = at.max(lane.last_release);
        }
        lane.last_release = lane.last_release.max(at);
        Counters::max(&c.max_delay_us, at - now);
        Some(at)
    }
}

/// Does this frame (Ethernet, no VLAN) carry IPv4 between `a` and `b`, either
/// way?
pub fn is_pair(frame: &[u8], a: Ipv4Addr, b: Ipv4Addr) -> bool {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    (src, dst) == (a, b) || (src, dst) == (b, a)
}

/// `struct virtio_net_hdr` in front of every frame on a `PACKET_VNET_HDR`
/// socket.
const VNET_HDR: usize = 10;

/// An AF_PACKET socket on `ifname` (in the calling thread's namespace): all
/// protocols, promiscuous, with virtio headers, non-blocking.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let index = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
    let all = (libc::ETH_P_ALL as u16).to_be();
    // Protocol 0 first: the socket hears nothing until bound to its
    // interface, not even frames of the others.
    // SAFETY: plain syscall; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_PACKET,
        libc::PACKET_VNET_HDR,
        &1i32,
    )?;
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &(4i32 << 20),
    )?;
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the length given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid packet_mreq.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = index as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_PACKET,
        libc::PACKET_ADD_MEMBERSHIP,
        &mreq,
    )?;
    Ok(fd)
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a `T` of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Frames the kernel dropped for this socket since the last call.
fn socket_drops(fd: RawFd) -> u64 {
    // SAFETY: all-zero is a valid tpacket_stats.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` is writable for `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r < 0 {
        0
    } else {
        st.tp_drops as u64
    }
}

/// Receives one frame (with its virtio header): its length and packet type,
/// or `None` when there is none.
fn recv_frame(fd: RawFd, buf: &mut [u8]) -> Option<(usize, u8)> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `sll` are writable for the lengths given.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    (n >= 0).then_some((n as usize, sll.sll_pkttype))
}

/// Sends one frame (with its virtio header), counting a failure.
fn send_frame(fd: RawFd, frame: &[u8], c: &Counters) {
    // SAFETY: `frame` is readable for its length.
    let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
    if n != frame.len() as isize {
        Counters::add(&c.send_errors);
    }
}

/// A frame waiting for its release time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Instant,
    /// Arrival order: equal release times keep it.
    seq: u64,
    out: usize,
    frame: Vec<u8>,
}

/// The emulator on router N's WAN wire. Dropping it stops the thread and
/// puts `wN` back into `br0`.
pub struct Wire {
    ns: String,
    wan: String,
    veth: String,
    peer_veth: String,
    pub pair: (Ipv4Addr, Ipv4Addr),
    pub seed: u64,
    profiles: Arc<Mutex<[Profile; 2]>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn ip_batch(ns: &str, commands: &str) -> io::Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(commands.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip -n {ns} -batch: {commands}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Wire {
    /// Puts the emulator on `w{n}` of bridge `br0` in `inet`, impairing the
    /// IPv4 frames between `pair.0` and `pair.1` (with [`Profile::NONE`]
    /// until [`Wire::set`]).
    pub fn start(inet: &Netns, n: usize, pair: (Ipv4Addr, Ipv4Addr)) -> Wire {
        let (wan, veth, peer_veth) = (format!("w{n}"), format!("x{n}a"), format!("x{n}b"));
        inet.ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer_veth,
        ]);
        inet.ip(&["link", "set", &peer_veth, "master", BRIDGE]);
        for i in [&veth, &peer_veth] {
            inet.ip(&["link", "set", i, "up"]);
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ n as u64;
        let profiles = Arc::new(Mutex::new([Profile::NONE; 2]));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (profiles, counters, stop) = (profiles.clone(), counters.clone(), stop.clone());
            let ports = [wan.clone(), veth.clone(), peer_veth.clone()];
            inet.spawn(move || {
                let [wan, veth, peer_veth] = ports;
                // The sockets first, then `wN` out of the bridge: the wire
                // is cut for one ioctl, not for an `ip` process.
                let socks = match (packet_socket(&wan), packet_socket(&veth)) {
                    (Ok(a), Ok(b)) => [a, b],
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = bridge_port(&wan, false) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                // What the sockets heard while `wN` was a bridge port, the
                // bridge has forwarded already.
                for s in &socks {
                    let mut buf = [0u8; 2048];
                    while recv_frame(s.as_raw_fd(), &mut buf).is_some() {}
                }
                let _ = ready_tx.send(Ok(()));
                run(&socks, pair, seed, &profiles, &counters, &stop);
                // Back as it was: `xNb` out (its learnt addresses go with
                // it), `wN` in.
                let back = bridge_port(&peer_veth, false).and_then(|()| bridge_port(&wan, true));
                if let Err(e) = back {
                    eprintln!("link emulator: {wan} back into {BRIDGE}: {e}");
                }
            })
        };
        let wire = Wire {
            ns: inet.name.clone(),
            wan,
            veth,
            peer_veth,
            pair,
            seed,
            profiles,
            counters,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => wire,
            Ok(Err(e)) => panic!("link emulator on {}: {e}", wire.wan),
            Err(e) => panic!("link emulator on {}: no answer: {e}", wire.wan),
        }
    }

    /// The same profile both ways.
    pub fn set(&self, p: Profile) {
        *self.profiles.lock().unwrap() = [p, p];
    }

    pub fn set_dir(&self, dir: Dir, p: Profile) {
        self.profiles.lock().unwrap()[dir as usize] = p;
    }

    pub fn profile(&self, dir: Dir) -> Profile {
        self.profiles.lock().unwrap()[dir as usize]
    }

    pub fn counts(&self) -> Counts {
        self.counters.snapshot()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The thread has put `wN` back; this also does when it could not.
        if let Err(e) = ip_batch(
            &self.ns,
            &format!(
                "link set {} master {BRIDGE}\nlink del {}\n",
                self.wan, self.veth
            ),
        ) {
            eprintln!("link emulator: restoring {}: {e}", self.wan);
        }
    }
}

/// The bridge standing for the internet.
const BRIDGE: &str = "br0";

/// Adds `ifname` to [`BRIDGE`] or removes it (the bridge ioctls, in the
/// calling thread's namespace).
fn bridge_port(ifname: &str, add: bool) -> io::Result<()> {
    const SIOCBRADDIF: u64 = 0x89a2;
    const SIOCBRDELIF: u64 = 0x89a3;
    let index = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
    // SAFETY: plain syscall; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(BRIDGE.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_ifindex = index as i32;
    let request = if add { SIOCBRADDIF } else { SIOCBRDELIF };
    // SAFETY: the bridge ioctls read an ifreq, which `ifr` is.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut ifr) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // Not a port (any more), or one already: as wanted.
        let done = matches!(e.raw_os_error(), Some(libc::EINVAL) if !add)
            || matches!(e.raw_os_error(), Some(libc::EBUSY) if add);
        return if done { Ok(()) } else { Err(e) };
    }
    Ok(())
}

/// The emulator's loop: `socks[0]` is `wN` (the router's side), `socks[1]`
/// is `xNa` (the internet's side).
fn run(
    socks: &[OwnedFd; 2],
    pair: (Ipv4Addr, Ipv4Addr),
    seed: u64,
    profiles: &Mutex<[Profile; 2]>,
    c: &Counters,
    stop: &AtomicBool,
) {
    let fds = [socks[0].as_raw_fd(), socks[1].as_raw_fd()];
    let mut shaper = Shaper::new(seed, Instant::now());
    let mut queue: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; VNET_HDR + 65536];
    let mut last_stats = Instant::now();
    for fd in fds {
        socket_drops(fd); // start counting from here
    }
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(Reverse(p)) = queue.peek() {
            if p.at > now {
                break;
            }
            let Reverse(p) = queue.pop().unwrap();
            send_frame(fds[p.out], &p.frame, c);
        }
        if now.duration_since(last_stats) > Duration::from_millis(100) {
            last_stats = now;
            for fd in fds {
                c.socket_drops
                    .fetch_add(socket_drops(fd), Ordering::Relaxed);
            }
        }
        // Cross traffic keeps arriving when no frame does.
        let p = *profiles.lock().unwrap();
        for dir in [Dir::Up, Dir::Down] {
            shaper.advance(now, dir, &p[dir as usize], c);
        }
        let wait = queue
            .peek()
            .map_or(Duration::from_millis(1), |p| {
                p.0.at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(1));
        let mut pfds = fds.map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: wait.as_nanos() as _,
        };
        // SAFETY: `pfds` and `ts` are valid for the call.
        let r = unsafe { libc::ppoll(pfds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if r <= 0 {
            continue;
        }
        for (i, pfd) in pfds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let (dir, out) = if i == 0 { (Dir::Up, 1) } else { (Dir::Down, 0) };
            // A bounded batch, then the release queue again.
            for _ in 0..64 {
                let Some((n, kind)) = recv_frame(fds[i], &mut buf) else {
                    break;
                };
                if kind == libc::PACKET_OUTGOING || n < VNET_HDR {
                    continue;
                }
                let frame = &buf[..n];
                if !is_pair(&frame[VNET_HDR..], pair.0, pair.1) {
                    Counters::add(&c.passed);
                    send_frame(fds[out], frame, c);
                    continue;
                }
                let now = Instant::now();
                let p = profiles.lock().unwrap()[dir as usize];
                match shaper.admit(now, dir, n - VNET_HDR, &p, c) {
                    None => {}
                    Some(at) if at <= now && queue.is_empty() => {
                        send_frame(fds[out], frame, c);
                    }
                    Some(at) => {
                        seq += 1;
                        queue.push(Reverse(Pending {
                            at,
                            seq,
                            out,
                            frame: frame.to_vec(),
                        }));
                    }
                }
            }
        }
    }
    // Frames still held leave now, in order: taking the emulator off the
    // wire loses nothing.
    while let Some(Reverse(p)) = queue.pop() {
        send_frame(fds[p.out], &p.frame, c);
    }
}
