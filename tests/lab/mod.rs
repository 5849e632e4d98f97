//! Helpers for tests that build a lab in network namespaces (see
//! `../shared/design/LAB.md`): every address lives in a namespace the test made,
//! every namespace is removed on drop (also when the test fails), every wait is
//! bounded.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails loudly unless we are root: the lab needs namespaces and veth pairs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds network namespaces and must run as root (scripts/test.sh does)"
    );
}

/// Fails loudly when a command is missing, naming the Debian package.
pub fn require_cmd(cmd: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{cmd}` not found: install the Debian package `{package}` (scripts/test.sh does)"
    );
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique, short name prefix for this test process (interface names are
/// limited to 15 characters).
pub fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        // A leftover from a crashed run with the same pid would break this one.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `/proc/net/snmp`'s UDP RcvbufErrors in this namespace: datagrams
    /// the kernel dropped because the socket they were for was full.
    pub fn udp_rcvbuf_errors(&self) -> u64 {
        let snmp = self.exec(&["cat", "/proc/net/snmp"]);
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            panic!("no Udp lines in {}'s /proc/net/snmp:\n{snmp}", self.name);
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "RcvbufErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no UDP RcvbufErrors in {}'s /proc/net/snmp", self.name))
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs `f` on a thread whose network namespace is this one, so sockets
    /// it opens live here.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        // mesh-core tables are fixed-size values of a megabyte or more; debug
        // builds move them through the stack.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .expect("spawn lab thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair between two namespaces, each end with an address.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        for addr in addr.split(',').filter(|s| !s.is_empty()) {
            let extra: &[&str] = if addr.contains(':') { &["nodad"] } else { &[] };
            let mut args = vec!["addr", "add", addr, "dev", ifname];
            args.extend_from_slice(extra);
            ns.ip(&args);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// Polls `f` every `every` until it returns `Some`, or gives up after `limit`.
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MESHD_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A BIRD 2 daemon in a namespace, with its own config and control socket.
pub struct Bird {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Bird {
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Bird {
        require_cmd("bird", "bird2");
        let conf = dir.join("bird.conf");
        let socket = dir.join("bird.ctl");
        let log = dir.join("bird.log");
        std::fs::write(&conf, config).unwrap();
        let child = ns
            .cmd("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("bird.stderr")).unwrap())
            .spawn()
            .expect("start bird");
        let bird = Bird { child, socket, log };
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            bird.try_birdc(&["show", "status"])
                .filter(|s| s.contains("Daemon is up"))
        });
        assert!(
            up.is_some(),
            "BIRD did not start: {}",
            std::fs::read_to_string(dir.join("bird.stderr")).unwrap_or_default()
        );
        bird
    }

    pub fn try_birdc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// birdc's output whatever its exit status ("Network not found" is an
    /// answer too).
    pub fn birdc_any(&self, args: &[&str]) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn birdc(&self, args: &[&str]) -> String {
        self.try_birdc(args)
            .unwrap_or_else(|| panic!("birdc {args:?} failed"))
    }

    /// The pid of the bird process itself (not the `ip netns exec` wrapper,
    /// which execs into bird, so they are the same).
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal bird");
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// The LuCI status view's contract (`openwrt/luci-app-meshd/status-contract.json`):
/// per ubus method of meshd, the paths in the status document the view reads.
pub fn luci_contract() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/luci-app-meshd/status-contract.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Is `path` (`a.b`, `a[].b`: some element of the array) a key in `doc`?
/// The value may be null; the key must be written.
pub fn json_path_present(doc: &serde_json::Value, path: &str) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let (key, array) = match head.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (head, false),
    };
    let Some(v) = doc.as_object().and_then(|o| o.get(key)) else {
        return false;
    };
    match (array, rest) {
        (false, None) => true,
        (false, Some(r)) => json_path_present(v, r),
        (true, None) => v.is_array(),
        (true, Some(r)) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|e| json_path_present(e, r))),
    }
}

pub mod impair;
pub mod nat;
pub mod seed;
pub mod stock;
pub mod stun;
pub mod vm;
