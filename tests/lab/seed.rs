//! The seed square of real meshd processes (see `../shared/design/LAB.md`):
//!
//! ```text
//!   c1 ─ r1 ──── r2 ──── r4 ─ c4          inet: a bridge standing for the
//!         \             /                 internet, 198.51.100.0/24
//!          `──── r3 ───'
//! ```
//!
//! Router rN: WAN veth into `inet` (198.51.100.N), LAN veth to console cN
//! (192.168.N.1 / .10), meshd on a TUN device with overlay 10.0.0.N, AS 6500N.
//! Tunnels R1-R2, R1-R3, R2-R4, R3-R4: each router knows the endpoints of its
//! tunnel neighbours only, and nftables in `inet` drops R1↔R4 traffic, so R1
//! and R4 can reach each other only through a transit router.

#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{sh, veth, wait_for, Netns, TempDir};

pub const SQUARE: [(usize, usize); 4] = [(1, 2), (1, 3), (2, 4), (3, 4)];

pub struct Router {
    pub n: usize,
    pub ns: Netns,
    pub console: Netns,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub public_key: String,
    pub process: Option<Child>,
    /// Other daemons of a stock router (wireguard-go, bird), killed with it.
    pub others: Vec<Child>,
    /// Environment meshd starts with (e.g. `MESHD_UBUS_SOCKET`).
    pub env: Vec<(String, String)>,
}

impl Router {
    /// Router `n` in `ns` (its WAN already set up): the LAN veth to console
    /// `console` (192.168.n.0/24), forwarding on, a meshd key in `dir`.
    pub fn new(n: usize, ns: Netns, console: Netns, dir: &TempDir, meshd: &Path) -> Router {
        veth(
            &ns,
            "lan",
            &format!("192.168.{n}.1/24"),
            &console,
            "eth0",
            &format!("192.168.{n}.10/24"),
        );
        console.ip(&["route", "add", "default", "via", &format!("192.168.{n}.1")]);
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Packets from the mesh arrive on the TUN device with sources
        // routed back through it; loose reverse-path filtering is the
        // router default on OpenWrt too.
        ns.exec(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
        let private =
            String::from_utf8(Command::new(meshd).arg("genkey").output().unwrap().stdout).unwrap();
        let key_file = dir.path().join(format!("r{n}.key"));
        std::fs::write(&key_file, &private).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let public_key = meshd_key(meshd, &private);
        Router {
            n,
            ns,
            console,
            config: dir.path().join(format!("r{n}.conf")),
            socket: dir.path().join(format!("r{n}.sock")),
            log: dir.path().join(format!("r{n}.log")),
            public_key,
            process: None,
            others: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts (or restarts) `meshd` on this router, its log appended to.
    pub fn start_meshd(&mut self, meshd: &Path) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.start_meshd_with_stderr(meshd, log.into());
    }

    /// Starts (or restarts) `meshd` on this router with its stderr (its
    /// log) going to `stderr`.
    pub fn start_meshd_with_stderr(&mut self, meshd: &Path, stderr: Stdio) {
        let child = self
            .ns
            .cmd(meshd.to_str().unwrap())
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start meshd");
        self.process = Some(child);
    }

    /// A power cut: every link down first, then `kill -9` of meshd and any
    /// other daemon of the router (LAB.md).
    pub fn power_cut(&mut self) {
        self.ns.ip(&["link", "set", "wan", "down"]);
        self.ns.ip(&["link", "set", "lan", "down"]);
        for mut p in self.process.take().into_iter().chain(self.others.drain(..)) {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    pub fn links_up(&self) {
        self.ns.ip(&["link", "set", "wan", "up"]);
        self.ns.ip(&["link", "set", "lan", "up"]);
    }

    /// `meshd status --json` of this router, raw (the config names the
    /// control socket).
    pub fn status_json(&self, meshd: &Path) -> Option<String> {
        let out = Command::new(meshd)
            .args(["status", "--json", "-c"])
            .arg(&self.config)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

pub struct SeedLab {
    pub tag: String,
    pub inet: Netns,
    pub routers: Vec<Router>,
    pub dir: TempDir,
    pub meshd: PathBuf,
    pub hold_time: u16,
}

pub fn meshd_key(meshd: &Path, private: &str) -> String {
    let mut child = Command::new(meshd)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("meshd pubkey");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A lab topology: how many routers, which pairs may have a tunnel, and how
/// many extra (configured but absent) members each router lists.
#[derive(Debug, Clone)]
pub struct Topology {
    pub routers: usize,
    pub links: Vec<(usize, usize)>,
    /// Pairs whose underlay traffic the `inet` bridge drops.
    pub blocked: Vec<(usize, usize)>,
    pub extra_members: usize,
    /// More options for every router's main section.
    pub main_options: Vec<(&'static str, String)>,
}

impl Topology {
    pub fn seed_square() -> Topology {
        Topology {
            routers: 4,
            links: SQUARE.to_vec(),
            blocked: vec![(1, 4)],
            extra_members: 0,
            main_options: vec![],
        }
    }
    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }
}

impl SeedLab {
    /// The seed square (meshd not started yet).
    pub fn build(tag: &str, meshd: &Path, hold_time: u16) -> SeedLab {
        SeedLab::build_topology(tag, meshd, hold_time, &Topology::seed_square())
    }

    /// The seed square with BGP timers alone: no BFD, no redundant sending.
    pub fn build_bgp_only(tag: &str, meshd: &Path, hold_time: u16) -> SeedLab {
        let mut topo = Topology::seed_square();
        topo.main_options = vec![("bfd", "0".into()), ("redundancy", "0".into())];
        SeedLab::build_topology(tag, meshd, hold_time, &topo)
    }

    /// Builds the namespaces and configs for `topo` (meshd not started yet).
    pub fn build_topology(tag: &str, meshd: &Path, hold_time: u16, topo: &Topology) -> SeedLab {
        let tag = super::lab_prefix(tag);
        let dir = TempDir::new(&format!("meshd-lab-{tag}"));
        let inet = Netns::new(&format!("{tag}i"));
        inet.ip(&["link", "add", "br0", "type", "bridge"]);
        inet.ip(&["link", "set", "br0", "up"]);
        let mut routers = Vec::new();
        for n in 1..=topo.routers {
            let ns = Netns::new(&format!("{tag}r{n}"));
            let console = Netns::new(&format!("{tag}c{n}"));
            veth(
                &ns,
                "wan",
                &format!("198.51.100.{n}/24"),
                &inet,
                &format!("w{n}"),
                "",
            );
            inet.ip(&["link", "set", &format!("w{n}"), "master", "br0"]);
            routers.push(Router::new(n, ns, console, &dir, meshd));
        }
        if !topo.blocked.is_empty() {
            let mut rules = String::from(
                "table bridge lab {\n\tchain no_direct {\n\t\ttype filter hook forward priority 0;\n",
            );
            for (a, b) in &topo.blocked {
                for (x, y) in [(a, b), (b, a)] {
                    rules.push_str(&format!(
                        "\t\tip saddr 198.51.100.{x} ip daddr 198.51.100.{y} drop\n"
                    ));
                }
            }
            rules.push_str("\t}\n}\n");
            let file = dir.path().join("inet.nft");
            std::fs::write(&file, rules).unwrap();
            inet.exec(&["nft", "-f", file.to_str().unwrap()]);
        }
        let lab = SeedLab {
            tag,
            inet,
            routers,
            dir,
            meshd: meshd.to_path_buf(),
            hold_time,
        };
        for n in 1..=topo.routers {
            lab.write_config(n, topo);
        }
        lab
    }

    pub fn router(&self, n: usize) -> &Router {
        &self.routers[n - 1]
    }

    /// UDP datagrams the kernel dropped at a full socket in router `n`'s
    /// namespace (meshd's): see [`Netns::udp_rcvbuf_errors`].
    pub fn udp_rcvbuf_errors(&self, n: usize) -> u64 {
        self.router(n).ns.udp_rcvbuf_errors()
    }

    /// Puts router `n`'s home on OpenWrt's default LAN, 192.168.1.0/24:
    /// the router at .1, its console at .10 (the config is the caller's).
    pub fn move_to_default_lan(&self, n: usize) {
        let r = self.router(n);
        r.ns.ip(&["addr", "flush", "dev", "lan"]);
        r.ns.ip(&["addr", "add", "192.168.1.1/24", "dev", "lan"]);
        r.console.ip(&["addr", "flush", "dev", "eth0"]);
        r.console
            .ip(&["addr", "add", "192.168.1.10/24", "dev", "eth0"]);
        r.console
            .ip(&["route", "add", "default", "via", "192.168.1.1"]);
    }

    fn write_config(&self, n: usize, topo: &Topology) {
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
        for (option, value) in &topo.main_options {
            c.push_str(&format!("\toption {option} '{value}'\n"));
        }
        for m in 1..=topo.routers {
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
            if topo.linked(n, m) {
                c.push_str(&format!("\tlist endpoint '198.51.100.{m}:51820'\n"));
            }
        }
        // Friends that are configured but never show up.
        for x in 0..topo.extra_members {
            let private = String::from_utf8(
                Command::new(&self.meshd)
                    .arg("genkey")
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            let m = 100 + x;
            c.push_str(&format!(
                "\nconfig member 'absent{x}'\n\
                 \toption public_key '{}'\n\
                 \toption overlay '10.0.1.{m}'\n\
                 \toption asn '{}'\n\
                 \tlist prefix '172.16.{m}.0/24'\n\
                 \tlist endpoint '203.0.113.{m}:51820'\n",
                meshd_key(&self.meshd, &private),
                65000 + m
            ));
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
        self.links_up(n);
        self.start(n);
    }

    pub fn links_up(&self, n: usize) {
        self.routers[n - 1].links_up();
    }

    /// Sets `option` in router `n`'s main section and reloads meshd with
    /// SIGHUP (no restart), as `uci set` + `reload_config` would.
    pub fn set_main_option(&self, n: usize, option: &str, value: &str) {
        let r = self.router(n);
        let text = std::fs::read_to_string(&r.config).unwrap();
        let line = format!("\toption {option} '{value}'");
        let prefix = format!("\toption {option} ");
        let (main, members) = text.split_at(text.find("\nconfig member").unwrap_or(text.len()));
        let mut main: Vec<String> = main
            .lines()
            .filter(|l| !l.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        main.push(line);
        // Written aside and renamed, as uci commits: meshd, still reading
        // the last SIGHUP's file, never sees one half written.
        let aside = r.config.with_extension("new");
        std::fs::write(&aside, format!("{}\n{members}", main.join("\n"))).unwrap();
        std::fs::rename(&aside, &r.config).unwrap();
        let pid = r.process.as_ref().expect("meshd runs").id();
        sh(&["kill", "-HUP", &pid.to_string()]);
    }

    /// `meshd status --json` of router `n`, raw.
    pub fn status_json(&self, n: usize) -> Option<String> {
        self.router(n).status_json(&self.meshd)
    }

    pub fn status_text(&self, n: usize) -> String {
        let r = self.router(n);
        let out = Command::new(&self.meshd)
            .args(["status", "-c"])
            .arg(&r.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Router `n`'s status document.
    pub fn status(&self, n: usize) -> Option<serde_json::Value> {
        serde_json::from_str(&self.status_json(n)?).ok()
    }

    /// The route for console `dst`'s LAN in router `n`'s status.
    pub fn route(&self, n: usize, dst: usize) -> Option<serde_json::Value> {
        let prefix = format!("192.168.{dst}.0/24");
        self.status(n)?["routes"]
            .as_array()?
            .iter()
            .find(|r| r["prefix"] == prefix.as_str())
            .cloned()
    }

    /// Which router R(n) sends console `dst`'s traffic through now.
    pub fn first_hop(&self, n: usize, dst: usize) -> Option<usize> {
        let r = self.route(n, dst)?;
        r["best"]["via"].as_str()?.strip_prefix('r')?.parse().ok()
    }

    /// The router `from` sends `to`'s traffic through, once that has not
    /// changed for two seconds (right after convergence, latency
    /// measurements or a rejoining router can still move it).
    pub fn settled_first_hop(&self, from: usize, to: usize, limit: Duration) -> Option<usize> {
        wait_for(limit, Duration::from_millis(100), || {
            let a = self.first_hop(from, to)?;
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(250));
                if self.first_hop(from, to)? != a {
                    return None;
                }
            }
            Some(a)
        })
    }

    /// A counter from router `n`'s status.
    pub fn counter(&self, n: usize, name: &str) -> Option<u64> {
        self.status(n)?["counters"][name].as_u64()
    }

    /// BGP state of router `n`'s session with member `m`.
    pub fn bgp_state(&self, n: usize, m: &str) -> Option<String> {
        let s = self.status(n)?;
        let member = s["members"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == m)?
            .clone();
        Some(member["bgp"]["state"].as_str()?.to_string())
    }

    /// Pings console `b` from console `a` once (1 s timeout).
    pub fn ping(&self, a: usize, b: usize) -> bool {
        self.ping_addr(a, std::net::Ipv4Addr::new(192, 168, b as u8, 10))
    }

    /// Pings `to` from console `a` once (1 s timeout).
    pub fn ping_addr(&self, a: usize, to: std::net::Ipv4Addr) -> bool {
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
            .arg(to.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until every console pings every other.
    pub fn wait_all_reachable(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let n = self.routers.len();
        wait_for(limit, Duration::from_millis(100), || {
            let ok = (1..=n).all(|a| {
                (1..=n)
                    .filter(|&b| b != a)
                    .all(|b| self.first_hop(a, b).is_some())
            });
            (ok && self.ping(1, n) && self.ping(n, 1)).then_some(())
        })?;
        Some(start.elapsed())
    }

    /// Puts the link emulator on router `n`'s WAN wire, impairing its
    /// tunnel underlay with router `peer` (198.51.100.n <-> 198.51.100.peer);
    /// nothing is impaired until [`Wire::set`](super::impair::Wire::set).
    /// Drop the wire before the lab.
    pub fn impair_wan(&self, n: usize, peer: usize) -> super::impair::Wire {
        super::impair::Wire::start(
            &self.inet,
            n,
            (
                Ipv4Addr::new(198, 51, 100, n as u8),
                Ipv4Addr::new(198, 51, 100, peer as u8),
            ),
        )
    }

    /// Router `n`'s meshd log.
    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(&self.router(n).log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for r in &self.routers {
            s.push_str(&format!("--- r{} log ---\n", r.n));
            s.push_str(&std::fs::read_to_string(&r.log).unwrap_or_default());
        }
        s
    }
}

impl Drop for SeedLab {
    fn drop(&mut self) {
        for r in &mut self.routers {
            for mut p in r.process.take().into_iter().chain(r.others.drain(..)) {
                let _ = p.kill();
                let _ = p.wait();
            }
        }
    }
}

/// A probe stream: console `a` sends numbered UDP datagrams to console `b`
/// every `interval`; the receiver records arrivals.
pub struct Probe {
    stop: Arc<AtomicBool>,
    stop_sending: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(u32, Instant)>>>,
    sent: Arc<Mutex<u32>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub interval: Duration,
}

impl Probe {
    pub fn start(from: &Netns, to: &Netns, to_addr: Ipv4Addr, interval: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0u32));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let rx = {
            let (stop, received) = (stop.clone(), received.clone());
            to.spawn(move || {
                let s = UdpSocket::bind((to_addr, 9000)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = s.recv(&mut buf) {
                        if n >= 4 {
                            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                            received.lock().unwrap().push((seq, Instant::now()));
                        }
                    }
                }
            })
        };
        ready_rx.recv().unwrap();
        let stop_sending = Arc::new(AtomicBool::new(false));
        let tx = {
            let (stop, sent) = (stop_sending.clone(), sent.clone());
            from.spawn(move || {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
                let mut seq = 0u32;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let _ = s.send_to(&seq.to_be_bytes(), (to_addr, 9000));
                    seq += 1;
                    *sent.lock().unwrap() = seq;
                    next += interval;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Probe {
            stop,
            stop_sending,
            received,
            sent,
            threads: vec![rx, tx],
            interval,
        }
    }

    pub fn received(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The highest sequence number received so far.
    pub fn last_seq(&self) -> Option<u32> {
        self.received.lock().unwrap().iter().map(|r| r.0).max()
    }

    pub fn sent(&self) -> u32 {
        *self.sent.lock().unwrap()
    }

    /// Probes numbered below `seq` that have not arrived (yet).
    pub fn missing_before(&self, seq: u32) -> u32 {
        missing_before(&self.received.lock().unwrap(), seq)
    }

    /// Stops sending, gives the last probes 300 ms to arrive, and reports.
    pub fn finish(mut self) -> ProbeReport {
        self.stop_sending.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let sent = *self.sent.lock().unwrap();
        report(sent, &self.received.lock().unwrap(), self.interval)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop_sending.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Of the probes `received` (sequence number, arrival), how many numbered
/// below `seq` are missing.
pub fn missing_before(received: &[(u32, Instant)], seq: u32) -> u32 {
    let mut got: Vec<u32> = received.iter().map(|r| r.0).filter(|&s| s < seq).collect();
    got.sort_unstable();
    got.dedup();
    seq.saturating_sub(got.len() as u32)
}

/// A stream's report: `sent` probes sent every `interval`, `received` as
/// they arrived.
pub fn report(sent: u32, received: &[(u32, Instant)], interval: Duration) -> ProbeReport {
    let mut seqs: Vec<u32> = received.iter().map(|r| r.0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut gap = 0u32;
    for w in seqs.windows(2) {
        gap = gap.max(w[1] - w[0] - 1);
    }
    // Every run of missing numbers, the head and the tail included: a
    // stream that broke for good near its end has no "gap" after it.
    let mut losses = Vec::new();
    let mut next = 0u32;
    for &s in seqs.iter().chain(std::iter::once(&sent)) {
        if s > next {
            losses.push((next, s - next));
        }
        next = next.max(s + 1);
    }
    ProbeReport {
        sent,
        received: seqs.len() as u32,
        longest_gap: interval * (gap + 1),
        lost: sent.saturating_sub(seqs.len() as u32),
        losses,
    }
}

#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub sent: u32,
    pub received: u32,
    pub lost: u32,
    /// Runs of probes that did not arrive: (first number, how many).
    pub losses: Vec<(u32, u32)>,
    /// Time between the last packet before the outage and the first after
    /// it, in send intervals (one interval when nothing was lost).
    pub longest_gap: Duration,
}

pub fn console_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n as u8, 10)
}

/// `sh` re-exported for lab tests.
pub fn run(args: &[&str]) -> String {
    sh(args)
}
