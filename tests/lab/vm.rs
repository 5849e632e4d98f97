//! The seed square on QEMU router VMs (issue 13): four arm64 `virt` machines
//! of 64 MB, each booting the image `scripts/router-image.sh` builds, wired
//! point to point:
//!
//! ```text
//!   c1 ─ r1 ──── r2 ──── r4 ─ c4      every ─ is a wire of its own: QEMU's
//!         \             /             `-netdev dgram` over 127.0.0.1, one
//!          `──── r3 ───'              Ethernet frame per UDP datagram
//! ```
//!
//! R1-R3 runs through a relay on the host that delays every frame
//! ([`RELAY_DELAY`]), so the path through R2 has the lower latency and is the
//! one the stream takes; after R2's power cut it moves to R3, and back once R2
//! has rebooted and rejoined.
//!
//! Router rN: eth0 the LAN (192.168.N.1/24), then one NIC per tunnel wire
//! (172.16.L.1 and .2 /30 for wire L of [`SQUARE`]); overlay 10.0.0.N, AS
//! 6500N; the image's init brings the interfaces up from the kernel command
//! line and starts meshd with the OpenWrt init script over procd-lite. Its
//! configuration and key reach it as a cpio archive appended to the image's
//! initramfs (Linux unpacks concatenated archives): the router's own flash.
//!
//! The consoles are stand-ins on the host that are faithful on the wire:
//! each owns the other end of its router's LAN wire and speaks Ethernet, ARP
//! (answering for its address, resolving the gateway's), ICMP echo and
//! IPv4/UDP with checksums. Booting four more VMs as consoles would only add
//! TCG time.
//!
//! A power cut is SIGKILL of the qemu process: its wires go silent at once,
//! nothing escapes (no FIN, no BFD Down). Power comes back as the same
//! command line: a cold boot. QMP `system_reset` is the reset button.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::seed::{meshd_key, ProbeReport, SQUARE};
use super::TempDir;

/// The delay the host adds to each frame on the R1-R3 wire, each way.
pub const RELAY_DELAY: Duration = Duration::from_millis(100);

/// How long a rebooted R2 may take until R1 sends through it again. Path
/// latency is the WireGuard handshake's round trip; under TCG a handshake
/// with a router that is still booting was seen at 393 ms, beyond the
/// relay's 200 ms, and R1 stayed on R3 until the next rekey (120 s; once
/// past 150 s on a busy host). R1 now makes the handshake again 10 s after
/// a new session (`REMEASURE_AFTER`), and keeps the series' least sample:
/// measured 11-22 s from power-on to traffic back on r2. The limit keeps
/// the rekey's margin for a host busier than that.
pub const REJOIN_LIMIT: Duration = Duration::from_secs(150);

/// The niceness of a rebooting router's qemu (see [`VmSquare::cut_r2`]).
const BOOT_NICE: i32 = 10;

/// The UDP port the probe stream goes to on the receiving console.
pub const PROBE_PORT: u16 = 9000;

/// The image `scripts/router-image.sh` built for `arch`: kernel and
/// initramfs.
pub struct Image {
    pub arch: &'static str,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
}

impl Image {
    pub fn aarch64() -> Image {
        let dir = repo().join("target/router-image/aarch64");
        let image = Image {
            arch: "aarch64",
            kernel: dir.join("Image"),
            rootfs: dir.join("rootfs.cpio.gz"),
        };
        assert!(
            image.kernel.is_file() && image.rootfs.is_file(),
            "no router image in {}: run scripts/router-image.sh (scripts/test.sh does)",
            dir.display()
        );
        image
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cpio archive (newc) of `entries`: path (no leading /), mode, contents
/// (directories: mode 0o40xxx, no contents). Linux unpacks it over the
/// image's own when appended to the initramfs.
pub fn cpio(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, name: &str) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            size as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, (path, mode, data)) in entries.iter().enumerate() {
        header(&mut out, 1000 + i as u32, *mode, data.len(), path);
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    header(&mut out, 0, 0, 0, "TRAILER!!!");
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

/// A free-looking block of 64 UDP ports on 127.0.0.1 for this lab's wires.
fn port_base() -> u16 {
    20_000 + (std::process::id() % 600) as u16 * 64
}

/// One end of a wire: the port QEMU (or the host) receives on, and the port
/// it sends to.
#[derive(Debug, Clone, Copy)]
pub struct WireEnd {
    pub local: u16,
    pub remote: u16,
}

/// A router VM: its qemu command line, process, serial console and QMP
/// socket.
pub struct VmRouter {
    pub n: usize,
    pub args: Vec<String>,
    pub process: Option<Child>,
    pub serial: PathBuf,
    pub qmp: PathBuf,
    pub console_log: PathBuf,
    pub public_key: String,
    /// When qemu was last launched.
    pub launched: Instant,
    /// Boots seen in the console log when last launched or reset.
    boots_before: usize,
}

impl VmRouter {
    /// Starts qemu (again): a cold boot.
    pub fn launch(&mut self) {
        self.launch_niced(0);
    }

    /// Starts qemu (again) at scheduling niceness `nice`.
    pub fn launch_niced(&mut self, nice: i32) {
        self.boots_before = self.boots();
        // The serial and QMP sockets of a killed qemu stay behind.
        let _ = std::fs::remove_file(&self.serial);
        let _ = std::fs::remove_file(&self.qmp);
        let child = Command::new("nice")
            .args(["-n", &nice.to_string(), "qemu-system-aarch64"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-aarch64 (Debian package qemu-system-arm)");
        self.process = Some(child);
        self.launched = Instant::now();
    }

    /// Sets the qemu process's scheduling niceness.
    pub fn renice(&self, nice: i32) {
        let Some(p) = &self.process else {
            return;
        };
        // Every thread: Linux keeps a niceness per thread, and `renice -p`
        // of the process id reaches only its main thread, not the vCPU's.
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", p.id()))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if threads.is_empty() {
            return;
        }
        let _ = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p"])
            .args(&threads)
            .stdout(Stdio::null())
            .status();
    }

    /// Power cut: SIGKILL of the qemu process.
    pub fn power_cut(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// The reset button: QMP `system_reset`.
    pub fn reset(&mut self) -> Result<(), String> {
        self.boots_before = self.boots();
        let mut s = UnixStream::connect(&self.qmp).map_err(|e| format!("qmp: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("qmp greeting: {e}"))?;
        for cmd in ["qmp_capabilities", "system_reset"] {
            writeln!(s, "{{\"execute\":\"{cmd}\"}}").map_err(|e| e.to_string())?;
            loop {
                line.clear();
                r.read_line(&mut line)
                    .map_err(|e| format!("qmp {cmd}: {e}"))?;
                if line.contains("\"return\"") {
                    break;
                }
                if line.contains("\"error\"") || line.is_empty() {
                    return Err(format!("qmp {cmd}: {line}"));
                }
            }
        }
        self.launched = Instant::now();
        Ok(())
    }

    /// Boots the console log has seen (the image prints one marker line per
    /// boot).
    fn boots(&self) -> usize {
        std::fs::read_to_string(&self.console_log)
            .map(|s| s.matches(&format!("meshd-router: up r{}", self.n)).count())
            .unwrap_or(0)
    }

    /// Waits until the router has booted since it was last launched or
    /// reset; the time from then.
    pub fn wait_booted(&self, limit: Duration) -> Option<Duration> {
        super::wait_for(limit, Duration::from_millis(50), || {
            (self.boots() > self.boots_before).then(|| self.launched.elapsed())
        })
    }

    /// Runs `cmd` in the router's shell on its serial console; its output,
    /// or `None` after `limit`.
    pub fn shell(&self, cmd: &str, limit: Duration) -> Option<String> {
        let mut s = UnixStream::connect(&self.serial).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
        // The tty echoes the command: the marker printed differs from the
        // one typed.
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .subsec_nanos();
        let begin = format!("__B{id}__");
        let end = format!("__E{id}__");
        writeln!(s, "echo __B\"\"{id}__; {cmd}; echo __E\"\"{id}__",).ok()?;
        let start = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            match s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            let text = String::from_utf8_lossy(&out);
            if let (Some(b), Some(e)) = (text.find(&format!("{begin}\r\n")), text.rfind(&end)) {
                if e > b {
                    let body = &text[b + begin.len() + 2..e];
                    return Some(body.replace('\r', ""));
                }
            }
        }
        None
    }

    /// `meshd status --json` inside the router.
    pub fn status(&self) -> Option<serde_json::Value> {
        // Compressed: every byte on the emulated serial port is work for
        // the router's one vCPU under TCG, beside meshd's (the document is
        // 14 kB; gzip and base64 make it 4).
        let out = self.shell(
            "meshd status --json | gzip -c | base64",
            Duration::from_secs(20),
        )?;
        let packed: String = out.split_whitespace().collect();
        let mut child = Command::new("sh")
            .args(["-c", "base64 -d | gzip -dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(packed.as_bytes()).ok()?;
        let json = child.wait_with_output().ok()?;
        serde_json::from_slice(&json.stdout).ok()
    }

    /// This router's BFD detection time toward router `m`, as its status
    /// reports it, once that session is Up (before, it is the slow pace's).
    pub fn bfd_detection(&self, m: usize) -> Option<Duration> {
        let status = self.status()?;
        let name = format!("r{m}");
        let member = status["members"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == name.as_str())?
            .clone();
        if member["bfd"]["state"] != "Up" {
            return None;
        }
        let ms = member["bfd"]["detection_ms"].as_f64()?;
        Some(Duration::from_micros((ms * 1000.0) as u64))
    }

    /// How often this router's BFD toward router `m` has gone down, as its
    /// status says.
    pub fn bfd_downs(&self, m: usize) -> Option<u64> {
        let status = self.status()?;
        let name = format!("r{m}");
        status["members"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == name.as_str())?["bfd"]["downs"]
            .as_u64()
    }

    /// Each member's handshake round trip and BFD state, as this router's
    /// status says (for a failure's message).
    pub fn members_summary(&self) -> String {
        let Some(status) = self.status() else {
            return "no status".into();
        };
        status["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        format!(
                            "{}: rtt {} ms, bfd {}, bgp {}",
                            m["name"], m["rtt_ms"], m["bfd"]["state"], m["bgp"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// Which router this one sends console `dst`'s traffic through: its
    /// best route's first hop, or `None` while BFD has moved traffic off
    /// that member (forwarding then takes another path).
    pub fn first_hop(&self, dst: usize) -> Option<usize> {
        let prefix = format!("192.168.{dst}.0/24");
        let status = self.status()?;
        let route = status["routes"]
            .as_array()?
            .iter()
            .find(|r| r["prefix"] == prefix.as_str())?
            .clone();
        let via = route["best"]["via"].as_str()?;
        // Forwarding skips a member whose traffic BFD moved (a blip, still
        // in its return hysteresis) while the route still names it.
        let moved = status["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == via)
            .is_some_and(|m| m["bfd"]["traffic_moved"] == true);
        if moved {
            return None;
        }
        via.strip_prefix('r')?.parse().ok()
    }

    /// meshd's own log lines (from the router's syslog ring), the last
    /// `lines` of them: what it did about members, sessions and paths.
    pub fn meshd_log(&self, lines: usize) -> String {
        self.shell(
            &format!("logread | grep ' meshd' | tail -n {lines}"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| "(no answer from the router's shell)".into())
    }

    /// meshd's resident memory and its peak (kB), and the VM's free and
    /// available memory (kB), read inside the router.
    pub fn memory(&self) -> Option<(u64, u64, u64, u64)> {
        let out = self.shell(
            "grep -E 'VmRSS|VmHWM' /proc/$(cat /var/run/meshd.pid)/status; grep -E 'MemFree|MemAvailable' /proc/meminfo",
            Duration::from_secs(20),
        )?;
        let kb = |key: &str| -> Option<u64> {
            out.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((
            kb("VmRSS:")?,
            kb("VmHWM:")?,
            kb("MemFree:")?,
            kb("MemAvailable:")?,
        ))
    }
}

impl Drop for VmRouter {
    fn drop(&mut self) {
        self.power_cut();
    }
}

/// A relay on the host between two VMs' ends of a wire: every frame waits
/// `delay` before it goes on.
pub struct DelayRelay {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub frames: Arc<AtomicU64>,
    /// Nothing goes on before this instant, either way (a stall).
    held_until: Arc<Mutex<Option<Instant>>>,
}

impl DelayRelay {
    /// `a` receives what the VM at `a_vm` sends (it sends to `a`) and `b`
    /// what the VM at `b_vm` sends.
    fn start(a: u16, a_vm: u16, b: u16, b_vm: u16, delay: Duration) -> DelayRelay {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let held_until = Arc::new(Mutex::new(None::<Instant>));
        let sa = UdpSocket::bind(("127.0.0.1", a)).expect("relay port");
        let sb = UdpSocket::bind(("127.0.0.1", b)).expect("relay port");
        let mut threads = Vec::new();
        for (from, to, to_port) in [
            (sa.try_clone().unwrap(), sb.try_clone().unwrap(), b_vm),
            (sb, sa, a_vm),
        ] {
            let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
            let (stop1, stop2, frames) = (stop.clone(), stop.clone(), frames.clone());
            let held = held_until.clone();
            from.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop1.load(Ordering::Relaxed) {
                    if let Ok(n) = from.recv(&mut buf) {
                        frames.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send((Instant::now() + delay, buf[..n].to_vec()));
                    }
                }
            }));
            threads.push(std::thread::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((due, frame)) = rx.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    let held = *held.lock().unwrap();
                    let due = held.map_or(due, |h| h.max(due));
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let _ = to.send_to(&frame, ("127.0.0.1", to_port));
                }
            }));
        }
        DelayRelay {
            stop,
            threads,
            frames,
            held_until,
        }
    }

    /// Holds every frame, both ways, for `d` from now, then lets them go
    /// on in order: the wire stalls (a busy host, a Wi-Fi bridge hiccup)
    /// and loses nothing.
    pub fn stall(&self, d: Duration) {
        *self.held_until.lock().unwrap() = Some(Instant::now() + d);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A console stand-in on the host end of a router's LAN wire.
pub struct Console {
    pub n: usize,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    gateway: Ipv4Addr,
    gateway_mac: Arc<Mutex<Option<[u8; 6]>>>,
    sock: UdpSocket,
    vm_port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Probes received: (sequence number, when).
    pub received: Arc<Mutex<Vec<(u32, Instant)>>>,
}

const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        let word = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame with an IPv4 packet of `proto` carrying `payload`.
fn ipv4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_IPV4.to_be_bytes());
    let total = (20 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram with its checksum (over the IPv4 pseudo-header).
fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = (8 + data.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let mut pseudo = 0u32;
    for w in [src.octets(), dst.octets()] {
        pseudo += u16::from_be_bytes([w[0], w[1]]) as u32 + u16::from_be_bytes([w[2], w[3]]) as u32;
    }
    pseudo += 17 + len as u32;
    let c = match checksum(&u, pseudo) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let dst = if op == 1 { [0xff; 6] } else { tha };
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&ETH_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

impl Console {
    /// Console `n` (192.168.n.10) on the host end `wire` of router n's LAN.
    fn start(n: usize, wire: WireEnd) -> Console {
        let ip = Ipv4Addr::new(192, 168, n as u8, 10);
        let gateway = Ipv4Addr::new(192, 168, n as u8, 1);
        let mac = [0x02, 0, 0, 0, n as u8, 0x10];
        let sock = UdpSocket::bind(("127.0.0.1", wire.local)).expect("console wire port");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let gateway_mac = Arc::new(Mutex::new(None));
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (sock, stop, gateway_mac, received) = (
                sock.try_clone().unwrap(),
                stop.clone(),
                gateway_mac.clone(),
                received.clone(),
            );
            let vm = wire.remote;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = sock.recv(&mut buf) else {
                        continue;
                    };
                    let f = &buf[..len];
                    if f.len() < 14 {
                        continue;
                    }
                    let src_mac: [u8; 6] = f[6..12].try_into().unwrap();
                    match u16::from_be_bytes([f[12], f[13]]) {
                        ETH_ARP if f.len() >= 42 => {
                            let op = u16::from_be_bytes([f[20], f[21]]);
                            let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                            let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
                            if spa == gateway {
                                *gateway_mac.lock().unwrap() = Some(src_mac);
                            }
                            if op == 1 && tpa == ip {
                                let reply = arp(2, mac, ip, src_mac, spa);
                                let _ = sock.send_to(&reply, ("127.0.0.1", vm));
                            }
                        }
                        ETH_IPV4 if f.len() >= 34 => {
                            let ihl = ((f[14] & 0x0f) as usize) * 4;
                            let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
                            let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
                            let body = &f[14 + ihl.min(f.len() - 14)..];
                            if dst != ip {
                                continue;
                            }
                            match f[23] {
                                // UDP: a probe.
                                17 if body.len() >= 12 => {
                                    let dport = u16::from_be_bytes([body[2], body[3]]);
                                    if dport == PROBE_PORT {
                                        let seq =
                                            u32::from_be_bytes(body[8..12].try_into().unwrap());
                                        received.lock().unwrap().push((seq, Instant::now()));
                                    }
                                }
                                // ICMP: answer echo requests.
                                1 if body.len() >= 8 && body[0] == 8 => {
                                    let mut icmp = body.to_vec();
                                    icmp[0] = 0;
                                    icmp[2] = 0;
                                    icmp[3] = 0;
                                    let c = checksum(&icmp, 0);
                                    icmp[2..4].copy_from_slice(&c.to_be_bytes());
                                    let reply = ipv4_frame(src_mac, mac, ip, src, 1, &icmp);
                                    let _ = sock.send_to(&reply, ("127.0.0.1", vm));
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        Console {
            n,
            ip,
            mac,
            gateway,
            gateway_mac,
            sock,
            vm_port: wire.remote,
            stop,
            thread: Some(thread),
            received,
        }
    }

    /// The gateway's MAC address, asking for it (ARP) until `limit`.
    pub fn resolve_gateway(&self, limit: Duration) -> Option<[u8; 6]> {
        super::wait_for(limit, Duration::from_millis(200), || {
            if let Some(m) = *self.gateway_mac.lock().unwrap() {
                return Some(m);
            }
            let req = arp(1, self.mac, self.ip, [0; 6], self.gateway);
            let _ = self.sock.send_to(&req, ("127.0.0.1", self.vm_port));
            None
        })
    }

    /// Sends a UDP datagram through the gateway (whose MAC must be known).
    pub fn send_udp(&self, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> bool {
        let Some(gw) = *self.gateway_mac.lock().unwrap() else {
            return false;
        };
        let frame = ipv4_frame(
            gw,
            self.mac,
            self.ip,
            dst,
            17,
            &udp(self.ip, dst, sport, dport, data),
        );
        self.sock
            .send_to(&frame, ("127.0.0.1", self.vm_port))
            .is_ok()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A probe stream from one console to another: numbered datagrams every
/// `interval`, sent by a thread of its own.
pub struct VmProbe {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<u32>>,
    thread: Option<std::thread::JoinHandle<()>>,
    received: Arc<Mutex<Vec<(u32, Instant)>>>,
    pub interval: Duration,
}

impl VmProbe {
    pub fn last_seq(&self) -> Option<u32> {
        self.received.lock().unwrap().iter().map(|r| r.0).max()
    }

    pub fn sent(&self) -> u32 {
        *self.sent.lock().unwrap()
    }

    /// Probes numbered below `seq` that have not arrived (yet).
    pub fn missing_before(&self, seq: u32) -> u32 {
        super::seed::missing_before(&self.received.lock().unwrap(), seq)
    }

    /// The sequence numbers below `seq` that have not arrived.
    pub fn missing_seqs(&self, seq: u32) -> Vec<u32> {
        let got: std::collections::BTreeSet<u32> =
            self.received.lock().unwrap().iter().map(|r| r.0).collect();
        (0..seq).filter(|s| !got.contains(s)).collect()
    }

    /// When the first probe arrived.
    pub fn first_arrival(&self) -> Option<Instant> {
        self.received.lock().unwrap().iter().map(|r| r.1).min()
    }

    /// Stops sending, gives the last probes 500 ms to arrive, and reports.
    pub fn finish(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::thread::sleep(Duration::from_millis(500));
        let sent = *self.sent.lock().unwrap();
        super::seed::report(sent, &self.received.lock().unwrap(), self.interval)
    }
}

/// A power cut (or reset) of r2 under the stream: the probes lost from the
/// cut until the stream runs through r3, the time until r2 booted, and
/// until r1 sends through r2 again.
pub struct Cut {
    /// The probes sent by each step: the cut, the stream through r3, power
    /// on, booted, traffic back on r2 (for a failure's message).
    /// (and the host's UTC clock then, to read beside the routers' logs).
    pub marks: Vec<(&'static str, u32, String)>,
    /// The first probe that had not arrived when the cut came.
    pub at_seq: u32,
    pub lost_at_cut: u32,
    /// R1's BFD detection time toward r2 just before the cut (adapted to
    /// the path's jitter, up to `bfd_max_detection`), if its status said.
    pub detection: Option<Duration>,
    pub booted: Duration,
    pub rejoined: Duration,
    pub lost_rejoining: u32,
    /// With a stall: how often R1's BFD toward r3 went down from just
    /// before the cut until traffic was back on r2 (`None` without a
    /// stall, or if its status did not say).
    pub r3_downs: Option<u64>,
    /// R1's meshd log once traffic was back on r2 (for a failure's message).
    pub r1_log: String,
}

/// The host's UTC time of day, `HH:MM:SS.mmm` (the routers' syslog
/// stamps are the same clock: QEMU's RTC starts at the host's UTC).
fn clock() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Cut {
    /// What the cut cost, for a report line (`interval`: the probes').
    pub fn summary(&self, interval: Duration) -> String {
        format!(
            "{} probes lost at the cut ({} ms; R1's detection time toward r2 was {}), {} while r2 came back; booted in {:.1} s, back through r2 {:.1} s after power-on (or the reset)",
            self.lost_at_cut,
            self.lost_at_cut as u128 * interval.as_millis(),
            self.detection
                .map_or("unknown".to_string(), |d| format!("{} ms", d.as_millis())),
            self.lost_rejoining,
            self.booted.as_secs_f64(),
            self.rejoined.as_secs_f64()
        )
    }
}

/// The square of router VMs with their consoles.
pub struct VmSquare {
    pub dir: TempDir,
    pub routers: Vec<VmRouter>,
    pub consoles: Vec<Console>,
    pub relay: DelayRelay,
}

/// A `config member` section (without endpoints).
fn member_section(name: &str, key: &str, overlay: &str, asn: usize, prefix: &str) -> String {
    format!(
        "\nconfig member '{name}'\n\
         \toption public_key '{key}'\n\
         \toption overlay '{overlay}'\n\
         \toption asn '{asn}'\n\
         \tlist prefix '{prefix}'\n"
    )
}

/// Members r1 has beside r2..r4 that never come up: 16 in all, the
/// default room.
pub const AWAY_FRIENDS: usize = 13;

/// Options of `config meshd` every router of the square gets beside its
/// own (e.g. slower BFD timers under TCG).
pub struct SquareOptions {
    pub main: Vec<(&'static str, String)>,
    pub memory_mb: u32,
}

impl VmSquare {
    /// Writes the four routers' configurations and keys and their qemu
    /// command lines, and starts the consoles and the relay; no VM runs yet.
    pub fn build(tag: &str, image: &Image, meshd: &Path, options: &SquareOptions) -> VmSquare {
        let dir = TempDir::new(&format!("meshd-vm-{tag}"));
        let base = port_base();
        // Wire ends: the LAN of router n uses base + 2n (VM) and base + 2n + 1
        // (console); wire L of SQUARE uses base + 16 + 4L .. + 3.
        let lan = |n: usize| WireEnd {
            local: base + 2 * n as u16,
            remote: base + 2 * n as u16 + 1,
        };
        let wire_port = |l: usize, k: u16| base + 16 + 4 * l as u16 + k;
        let new_key = || {
            let private =
                String::from_utf8(Command::new(meshd).arg("genkey").output().unwrap().stdout)
                    .unwrap();
            let public = meshd_key(meshd, &private);
            (private, public)
        };
        let keys: Vec<(String, String)> = (1..=4).map(|_| new_key()).collect();
        let away: Vec<String> = (0..AWAY_FRIENDS).map(|_| new_key().1).collect();
        let rootfs = std::fs::read(&image.rootfs).expect("the image's initramfs");
        let mut routers = Vec::new();
        for n in 1..=4usize {
            let mut nics = vec![(lan(n), format!("192.168.{n}.1/24"))];
            let mut config = format!(
                "config meshd 'main'\n\
                 \toption enabled '1'\n\
                 \toption private_key_file '/etc/meshd/private.key'\n\
                 \toption listen_port '51820'\n\
                 \toption overlay '10.0.0.{n}'\n\
                 \toption asn '{}'\n\
                 \tlist announce '192.168.{n}.0/24'\n\
                 \toption lan_interface 'eth0'\n\
                 \toption connect_retry '1'\n",
                65000 + n
            );
            for (k, v) in &options.main {
                config.push_str(&format!("\toption {k} '{v}'\n"));
            }
            for m in (1..=4).filter(|&m| m != n) {
                config.push_str(&member_section(
                    &format!("r{m}"),
                    &keys[m - 1].1,
                    &format!("10.0.0.{m}"),
                    65000 + m,
                    &format!("192.168.{m}.0/24"),
                ));
                if let Some(l) = SQUARE
                    .iter()
                    .position(|&(a, b)| (a, b) == (n, m) || (a, b) == (m, n))
                {
                    let peer = if SQUARE[l].0 == m { 1 } else { 2 };
                    config.push_str(&format!(
                        "\tlist endpoint '172.16.{}.{peer}:51820'\n",
                        l + 1
                    ));
                }
            }
            // r1 also has friends who are away (no endpoint, never up), up
            // to the default room of 16 members: its memory is that of a
            // 16-member mesh with 3 sessions up.
            if n == 1 {
                for (i, key) in away.iter().enumerate() {
                    config.push_str(&member_section(
                        &format!("away{i}"),
                        key,
                        &format!("10.0.1.{}", i + 1),
                        65100 + i,
                        &format!("192.168.{}.0/24", 100 + i),
                    ));
                }
            }
            for (l, &(a, b)) in SQUARE.iter().enumerate() {
                let (me, k_local, k_remote) = if a == n {
                    (1, 0, 1)
                } else if b == n {
                    (2, 1, 0)
                } else {
                    continue;
                };
                // VM a sends to wire_port(l, 1) and receives on (l, 0); VM b
                // the other way round. R1-R3 goes through the relay, which
                // owns ports (l, 2) and (l, 3).
                let relayed = (a, b) == (1, 3);
                let end = WireEnd {
                    local: wire_port(l, k_local),
                    remote: if relayed {
                        wire_port(l, 2 + k_local)
                    } else {
                        wire_port(l, k_remote)
                    },
                };
                nics.push((end, format!("172.16.{}.{me}/30", l + 1)));
            }
            let overlay = cpio(&[
                ("etc", 0o40755, b""),
                ("etc/config", 0o40755, b""),
                ("etc/config/meshd", 0o100644, config.as_bytes()),
                ("etc/meshd", 0o40700, b""),
                ("etc/meshd/private.key", 0o100600, keys[n - 1].0.as_bytes()),
            ]);
            let initrd = dir.path().join(format!("r{n}.cpio"));
            let mut bytes = rootfs.clone();
            bytes.extend_from_slice(&overlay);
            std::fs::write(&initrd, bytes).unwrap();
            std::fs::write(dir.path().join(format!("r{n}.conf")), &config).unwrap();
            let serial = dir.path().join(format!("r{n}.serial"));
            let qmp = dir.path().join(format!("r{n}.qmp"));
            let console_log = dir.path().join(format!("r{n}.console.log"));
            let ips: Vec<String> = nics
                .iter()
                .enumerate()
                .map(|(i, (_, addr))| format!("eth{i}:{addr}"))
                .collect();
            let mut args: Vec<String> = [
                "-M",
                "virt",
                "-cpu",
                "cortex-a57",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-display",
                "none",
                "-monitor",
                "none",
                "-nodefaults",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend([
                "-m".into(),
                options.memory_mb.to_string(),
                "-kernel".into(),
                image.kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                format!(
                    "console=ttyAMA0 quiet meshd.hostname=r{n} meshd.ip={}",
                    ips.join(",")
                ),
                "-chardev".into(),
                format!(
                    "socket,id=s0,path={},server=on,wait=off,logfile={},logappend=on",
                    serial.display(),
                    console_log.display()
                ),
                "-serial".into(),
                "chardev:s0".into(),
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", qmp.display()),
                "-device".into(),
                "virtio-rng-pci".into(),
            ]);
            for (i, (end, _)) in nics.iter().enumerate() {
                args.extend([
                    "-netdev".into(),
                    format!(
                        "dgram,id=n{i},local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                        end.local, end.remote
                    ),
                    "-device".into(),
                    format!(
                        "virtio-net-pci,netdev=n{i},mac=52:54:00:00:{n:02x}:{i:02x},addr=0x{:x},romfile=",
                        0x10 + i
                    ),
                ]);
            }
            routers.push(VmRouter {
                n,
                args,
                process: None,
                serial,
                qmp,
                console_log,
                public_key: keys[n - 1].1.clone(),
                launched: Instant::now(),
                boots_before: 0,
            });
        }
        let consoles = (1..=4)
            .map(|n| {
                let vm = lan(n);
                Console::start(
                    n,
                    WireEnd {
                        local: vm.remote,
                        remote: vm.local,
                    },
                )
            })
            .collect();
        let l13 = SQUARE.iter().position(|&w| w == (1, 3)).unwrap();
        let relay = DelayRelay::start(
            wire_port(l13, 2),
            wire_port(l13, 0),
            wire_port(l13, 3),
            wire_port(l13, 1),
            RELAY_DELAY,
        );
        VmSquare {
            dir,
            routers,
            consoles,
            relay,
        }
    }

    pub fn router(&self, n: usize) -> &VmRouter {
        &self.routers[n - 1]
    }

    pub fn router_mut(&mut self, n: usize) -> &mut VmRouter {
        &mut self.routers[n - 1]
    }

    pub fn console(&self, n: usize) -> &Console {
        &self.consoles[n - 1]
    }

    pub fn launch_all(&mut self) {
        for r in &mut self.routers {
            r.launch();
        }
    }

    /// Starts a probe stream C`from` → C`to` every `interval` (the sender's
    /// gateway must be resolved).
    pub fn probe(&self, from: usize, to: usize, interval: Duration) -> VmProbe {
        let c = &self.consoles[from - 1];
        let sock = c.sock.try_clone().unwrap();
        let gw = c.gateway_mac.clone();
        let (mac, ip, vm) = (c.mac, c.ip, c.vm_port);
        let dst = Ipv4Addr::new(192, 168, to as u8, 10);
        let received = self.consoles[to - 1].received.clone();
        received.lock().unwrap().clear();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(0u32));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0u32;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(g) = *gw.lock().unwrap() {
                        let data = udp(ip, dst, 40000, PROBE_PORT, &seq.to_be_bytes());
                        let frame = ipv4_frame(g, mac, ip, dst, 17, &data);
                        let _ = sock.send_to(&frame, ("127.0.0.1", vm));
                    }
                    seq += 1;
                    *sent.lock().unwrap() = seq;
                    next += interval;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        VmProbe {
            stop,
            sent,
            thread: Some(thread),
            received,
            interval,
        }
    }

    /// The time from now until r1 sends C4's traffic through `via`, and
    /// still does 1 s later (a BFD blip under TCG may move it off for a
    /// while: then it waits on, within `limit`).
    pub fn wait_path(&self, via: usize, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let on = || (self.router(1).first_hop(4) == Some(via)).then_some(());
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            super::wait_for(left, Duration::from_millis(500), on)?;
            let found = start.elapsed();
            std::thread::sleep(Duration::from_secs(1));
            if on().is_some() {
                return Some(found);
            }
        }
    }

    /// Cuts r2's power (or presses its reset button, `reset`) under the
    /// stream and follows it back: see [`Cut`] for what is measured.
    ///
    /// With `stall`, the R1-R3 wire stalls that long as soon as the stream
    /// runs through r3, while r2's routes still stand at r1: R1's BFD
    /// toward r3 goes down too (a stall longer than its detection time),
    /// every path to C4 has moved, and the stream must stay on r3 (the
    /// member heard from last), losing nothing.
    pub fn cut_r2(&mut self, probe: &VmProbe, reset: bool, stall: Option<Duration>) -> Cut {
        // Under TCG the path's jitter is the host's scheduling: R1's BFD
        // may have widened its detection time (up to bfd_max_detection).
        // The cut is judged against the time in force when it came, in a
        // steady state: R1's BFD toward r2 Up (after a rejoin it may still
        // be on its way there, at the slow pace's 4 s) and on the fast
        // timers (the poll sequence that leaves the slow pace done).
        let fast = |d: &Duration| *d < Duration::from_secs(1);
        let detection =
            super::wait_for(Duration::from_secs(20), Duration::from_millis(500), || {
                self.router(1).bfd_detection(2).filter(fast)
            })
            .or_else(|| self.router(1).bfd_detection(2));
        // The cut measures a failover only if the stream runs through r2
        // (a BFD blip before it may have moved the stream off r2 for a while).
        self.wait_path(2, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "r1 does not send C4's traffic through r2 before the cut ({})\n{}",
                    self.router(1).members_summary(),
                    self.logs()
                )
            });
        let r3_downs_before = stall.and_then(|_| self.router(1).bfd_downs(3));
        // Probes in flight when the power goes belong to the cut: it starts
        // after the last one that arrived.
        let before = probe.last_seq().map_or(0, |s| s + 1);
        let cut_clock = clock();
        // Booting under TCG takes a whole host core; on this shared host
        // that would starve the other routers' VMs, which a real router's
        // boot never does to its neighbours. The rebooting router gets the
        // CPU the others leave (niceness 10) while it boots, and its share
        // back once booted: a real router runs meshd on a CPU of its own,
        // and a starved one answers handshakes and BFD late, which route
        // selection rightly counts against it.
        if reset {
            self.router(2).renice(BOOT_NICE);
            self.router_mut(2)
                .reset()
                .unwrap_or_else(|e| panic!("system_reset: {e}"));
        } else {
            self.router_mut(2).power_cut();
        }
        // The stream is back through r3 once 100 probes sent after the cut
        // arrived; what is missing of those sent until then is the cut's loss.
        super::wait_for(Duration::from_secs(20), Duration::from_millis(10), || {
            (probe.last_seq().unwrap_or(0) > probe.sent().max(before + 200) - 100).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the stream did not come back after r2 went\n{}",
                self.logs()
            )
        });
        let settled = probe.sent();
        let settled_clock = clock();
        if let Some(d) = stall {
            self.relay.stall(d);
        }
        // (Probes held by a stall arrive within it and the relay's delay.)
        std::thread::sleep(
            Duration::from_millis(500).max(stall.unwrap_or_default() + RELAY_DELAY * 2),
        );
        let lost_at_cut = probe.missing_before(settled) - probe.missing_before(before);
        let mut marks = vec![
            ("cut", before, cut_clock),
            ("through r3", settled, settled_clock),
        ];
        if stall.is_some() {
            marks.push(("R1-R3 stalled and went on", probe.sent(), clock()));
        }
        if !reset {
            self.router_mut(2).launch_niced(BOOT_NICE);
            marks.push(("power on", probe.sent(), clock()));
        }
        let booted = self
            .router(2)
            .wait_booted(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("r2 did not boot again\n{}", self.logs()));
        self.router(2).renice(0);
        marks.push(("booted", probe.sent(), clock()));
        let rejoined = self
            .wait_path(2, REJOIN_LIMIT)
            .map(|d| d + booted)
            .unwrap_or_else(|| {
                panic!(
                    "r1 did not go back to r2 ({})\n{}",
                    self.router(1).members_summary(),
                    self.logs()
                )
            });
        marks.push(("back on r2", probe.sent(), clock()));
        std::thread::sleep(Duration::from_secs(2));
        let now = probe.sent();
        std::thread::sleep(Duration::from_millis(500));
        let lost_rejoining = probe.missing_before(now) - probe.missing_before(settled);
        let r3_downs = r3_downs_before
            .zip(self.router(1).bfd_downs(3))
            .map(|(a, b)| b.saturating_sub(a));
        let r1_log = self.router(1).meshd_log(120);
        Cut {
            marks,
            at_seq: before,
            lost_at_cut,
            detection,
            booted,
            rejoined,
            lost_rejoining,
            r3_downs,
            r1_log,
        }
    }

    /// Waits until every tunnel's BGP session is Established at both ends
    /// and every router has a route to every other console's LAN (the mesh
    /// has converged, not only the first packet got through).
    pub fn wait_converged(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        super::wait_for(limit, Duration::from_millis(500), || {
            let all = self.routers.iter().all(|r| {
                let Some(s) = r.status() else {
                    return false;
                };
                let sessions = SQUARE
                    .iter()
                    .filter_map(|&(a, b)| match r.n {
                        n if n == a => Some(b),
                        n if n == b => Some(a),
                        _ => None,
                    })
                    .all(|m| {
                        s["members"].as_array().is_some_and(|ms| {
                            ms.iter().any(|x| {
                                x["name"] == format!("r{m}").as_str()
                                    && x["bgp"]["state"] == "Established"
                            })
                        })
                    });
                let routes = (1..=4).filter(|&m| m != r.n).all(|m| {
                    let prefix = format!("192.168.{m}.0/24");
                    s["routes"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|x| x["prefix"] == prefix.as_str()))
                });
                sessions && routes
            });
            all.then_some(())
        })?;
        Some(start.elapsed())
    }

    /// Sets `option key 'value'` in every router's `config meshd 'main'`
    /// (inside the VM, as a user editing the file would) and reloads meshd
    /// through its init script; then waits until r1's status shows `check`.
    pub fn set_option_everywhere(
        &self,
        key: &str,
        value: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(), String> {
        for r in &self.routers {
            let cmd = format!(
                "sed -i -e \"/^[[:space:]]*option {key} /d\" -e \"s/^config meshd 'main'/&\\n\\toption {key} '{value}'/\" /etc/config/meshd && /etc/init.d/S50meshd reload && echo reloaded"
            );
            let out = r.shell(&cmd, Duration::from_secs(20));
            if !out.as_deref().is_some_and(|o| o.contains("reloaded")) {
                return Err(format!("r{}: reload: {out:?}", r.n));
            }
        }
        super::wait_for(Duration::from_secs(20), Duration::from_millis(500), || {
            self.router(1).status().filter(|s| check(s))
        })
        .map(|_| ())
        .ok_or_else(|| {
            let seen = self.router(1).shell(
                &format!("grep -n '{key}' /etc/config/meshd; logread | grep -i -e reload -e meshd | tail -n 8"),
                Duration::from_secs(20),
            );
            format!(
                "r1's status does not show {key} '{value}' after the reload; r1 says:\n{}",
                seen.unwrap_or_default()
            )
        })
    }

    /// The routers' console output (the tail of each), for a failure.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for r in &self.routers {
            let text = std::fs::read_to_string(&r.console_log).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            s.push_str(&format!("--- r{} console (tail) ---\n{tail}\n", r.n));
        }
        s
    }
}
