//! The lab as a tool: the seed demo with a live view, and the benchmarks.
//! Run through the scripts (they build meshd and install what is needed):
//!
//! ```text
//! scripts/demo.sh [--check]            meshlab demo MESHD [--check]
//! scripts/bench-throughput.sh          meshlab bench-throughput MESHD
//! scripts/bench-footprint.sh           meshlab bench-footprint MESHD
//! ```
//!
//! Needs root. Everything lives in namespaces it creates and removes.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use lab::seed::{console_addr, Probe, ProbeReport, SeedLab, Topology, SQUARE};
use lab::stock::{self, BirdBfd};
use lab::{require_cmd, require_root, wait_for, Netns};

/// The BGP hold time: the default; BFD does the fast detection.
const HOLD: u16 = 9;

struct Clock(Instant);

impl Clock {
    fn say(&self, what: impl AsRef<str>) {
        println!(
            "[{:6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

fn path_text(lab: &SeedLab, from: usize, to: usize) -> String {
    let Some(route) = lab.route(from, to) else {
        return "no route".into();
    };
    let via = route["best"]["via"].as_str().unwrap_or("?").to_uppercase();
    let as_path = route["best"]["as_path"].as_str().unwrap_or("");
    let reason = route["best"]["reason"].as_str().unwrap_or("");
    format!("R{from} → {via} → R{to}  (AS path {as_path}; {reason})")
}

fn sessions_text(lab: &SeedLab) -> String {
    let mut parts = Vec::new();
    for n in 1..=4 {
        let Some(s) = lab.status(n) else {
            parts.push(format!("r{n}: down"));
            continue;
        };
        let mut ms = Vec::new();
        for m in s["members"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or("?");
            let bgp = m["bgp"]["state"] == "Established";
            let bfd = m["bfd"]["state"] == "Up";
            let short = match (bgp, bfd) {
                (true, true) => "up",
                (true, false) => "bgp",
                (false, true) => "bfd",
                (false, false) => "-",
            };
            ms.push(format!("{name}:{short}"));
        }
        parts.push(format!("r{n}[{}]", ms.join(" ")));
    }
    parts.join("  ")
}

/// Prints session changes until `done` says the lab is where it should be.
fn watch_until(
    lab: &SeedLab,
    clock: &Clock,
    last: &mut String,
    limit: Duration,
    done: impl Fn(&SeedLab) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    wait_for(limit, Duration::from_millis(100), || {
        let s = sessions_text(lab);
        if s != *last {
            clock.say(format!("sessions  {s}"));
            *last = s;
        }
        done(lab).then(|| start.elapsed())
    })
}

/// Both of router `n`'s square neighbours have BGP and BFD up with it, both ways.
fn rejoined(lab: &SeedLab, n: usize) -> bool {
    let up = |a: usize, b: usize| {
        let Some(s) = lab.status(a) else { return false };
        s["members"].as_array().into_iter().flatten().any(|m| {
            m["name"] == format!("r{b}").as_str()
                && m["bgp"]["state"] == "Established"
                && m["bfd"]["state"] == "Up"
        })
    };
    SQUARE
        .iter()
        .filter_map(|&(a, b)| (a == n).then_some(b).or((b == n).then_some(a)))
        .all(|m| up(n, m) && up(m, n))
}

/// Streams probes C1→C4, cuts the power of the router carrying them and
/// narrates until traffic has moved to the other transit router.
fn demo_cut(lab: &mut SeedLab, clock: &Clock) -> Result<(ProbeReport, usize), String> {
    let probe = Probe::start(
        &lab.router(1).console,
        &lab.router(4).console,
        console_addr(4),
        Duration::from_millis(5),
    );
    clock.say("C1 streams UDP probes to C4 at 200 per second (a game's rate)");
    // The router to cut is the one carrying the traffic now: a path that has
    // not changed for two seconds (latency measurements can still move it
    // right after convergence).
    let transit = lab
        .settled_first_hop(1, 4, Duration::from_secs(20))
        .ok_or("no settled path C1→C4")?;
    let other = if transit == 2 { 3 } else { 2 };
    clock.say(format!(
        "{} probes sent, {} received; path C1→C4: {}",
        probe.sent(),
        probe.received(),
        path_text(lab, 1, 4)
    ));
    let before = probe.last_seq().unwrap_or(0);
    clock.say(format!(
        "POWER CUT on r{transit}: its links go down, then meshd is killed (kill -9)"
    ));
    lab.power_cut(transit);
    let cut = Instant::now();
    let mut moved = false;
    while cut.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        let now_path = lab.first_hop(1, 4);
        // Missing below the newest arrival (not the ones still in flight).
        let lost = probe
            .last_seq()
            .map_or(0, |l| (l as usize + 1).saturating_sub(probe.received()));
        clock.say(format!(
            "  {:>4} probes lost so far   R1 sends C4's traffic via r{}",
            lost,
            now_path.map_or("?".into(), |v| v.to_string())
        ));
        if probe.last_seq().unwrap_or(0) > before + 100 && now_path == Some(other) {
            moved = true;
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = probe.finish();
    if !moved {
        return Err(format!("traffic did not move to r{other}\n{}", lab.logs()));
    }
    clock.say(format!("path C1→C4: {}", path_text(lab, 1, 4)));
    Ok((report, transit))
}

fn demo(meshd: &Path, check: bool) -> Result<(), String> {
    require_root();
    require_cmd("nft", "nftables");
    let clock = Clock(Instant::now());
    let pause = |secs: u64| {
        if !check {
            std::thread::sleep(Duration::from_secs(secs));
        }
    };
    println!("meshd seed demo: four homes R1..R4, consoles C1..C4 behind them.");
    println!("Tunnels R1-R2, R1-R3, R2-R4, R3-R4; R1 and R4 cannot reach each other");
    println!("directly, so C1's traffic to C4 transits R2 or R3. Defaults: BFD 10 ms × 4");
    println!("on every tunnel, and small game packets sent over both transits at once.");
    println!("Sessions: up = BGP and BFD up, bfd = BFD up and BGP waiting, - = neither.\n");
    let mut lab = SeedLab::build("mddemo", meshd, HOLD);
    clock.say("lab built: namespaces inet, r1..r4, c1..c4; starting meshd on r1..r4");
    lab.start_all();
    let mut last = String::new();
    let converged = watch_until(&lab, &clock, &mut last, Duration::from_secs(10), |lab| {
        (1..=4).all(|a| {
            (1..=4)
                .filter(|&b| b != a)
                .all(|b| lab.first_hop(a, b).is_some())
        }) && lab.ping(1, 4)
    })
    .ok_or_else(|| format!("the mesh did not converge in 10 s\n{}", lab.logs()))?;
    clock.say(format!(
        "converged in {:.2} s: every console reaches every other",
        converged.as_secs_f64()
    ));
    clock.say(format!("path C1→C4: {}", path_text(&lab, 1, 4)));
    watch_until(&lab, &clock, &mut last, Duration::from_secs(10), |lab| {
        (1..=4).all(|n| rejoined(lab, n))
    })
    .ok_or("BFD did not come up on every tunnel")?;
    pause(2);
    println!("\nR1's view (meshd status):\n{}", lab.status_text(1));
    pause(2);

    println!("— 1. a power cut with the defaults —");
    let (redundant, transit) = demo_cut(&mut lab, &clock)?;
    clock.say(format!(
        "{} of {} probes lost: every probe also went the other way round",
        redundant.lost, redundant.sent
    ));
    pause(2);
    clock.say(format!(
        "power back on r{transit}: links up, meshd started, no other step"
    ));
    lab.power_on(transit);
    let back1 = watch_until(&lab, &clock, &mut last, Duration::from_secs(20), |lab| {
        rejoined(lab, transit)
    })
    .ok_or_else(|| format!("r{transit} did not rejoin\n{}", lab.logs()))?;
    clock.say(format!(
        "r{transit} rejoined (BGP and BFD up both ways) in {:.2} s",
        back1.as_secs_f64()
    ));
    pause(2);

    println!("\n— 2. the same cut with redundant sending off: BFD alone —");
    for n in 1..=4 {
        lab.set_main_option(n, "redundancy", "0");
    }
    clock.say("option redundancy '0' on r1..r4, reloaded with SIGHUP (sessions stay up)");
    std::thread::sleep(Duration::from_secs(1));
    clock.say(format!("sessions  {}", sessions_text(&lab)));
    let (bfd_only, transit) = demo_cut(&mut lab, &clock)?;
    clock.say(format!(
        "traffic moved in {} ms ({} of {} probes lost): BFD noticed in 40 ms",
        bfd_only.longest_gap.as_millis(),
        bfd_only.lost,
        bfd_only.sent
    ));
    pause(2);
    clock.say(format!("power back on r{transit}"));
    lab.power_on(transit);
    let back2 = watch_until(&lab, &clock, &mut last, Duration::from_secs(20), |lab| {
        rejoined(lab, transit)
    })
    .ok_or_else(|| format!("r{transit} did not rejoin\n{}", lab.logs()))?;
    clock.say(format!(
        "r{transit} rejoined in {:.2} s",
        back2.as_secs_f64()
    ));
    std::thread::sleep(Duration::from_secs(1));
    clock.say(format!("path C1→C4: {}", path_text(&lab, 1, 4)));

    println!("\nsummary:");
    println!(
        "  converged                  {:.2} s after start (target ≤ 10 s)",
        converged.as_secs_f64()
    );
    println!(
        "  cut, redundant sending     {} of {} probes lost (target 0)",
        redundant.lost, redundant.sent
    );
    println!(
        "  cut, BFD alone             {} ms without traffic (target ≤ 100 ms)",
        bfd_only.longest_gap.as_millis()
    );
    println!(
        "  rejoin                     {:.2} s and {:.2} s (tunnel, BFD and BGP up again: a rebooted router is no flap, so no hold-down)",
        back1.as_secs_f64(),
        back2.as_secs_f64()
    );
    let ok = converged <= Duration::from_secs(10)
        && redundant.lost == 0
        && bfd_only.longest_gap <= Duration::from_millis(100);
    if ok {
        println!("  result                     ok");
        Ok(())
    } else {
        Err("a target was missed".into())
    }
}

/// iperf3 from `from` to `to_addr` for `secs` seconds; bits per second.
fn iperf(from: &Netns, to: &Netns, to_addr: &str, secs: u32) -> Result<f64, String> {
    let mut server = to
        .cmd("iperf3")
        .args(["-s", "-1", "-B", to_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 server: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = from
        .cmd("iperf3")
        .args(["-c", to_addr, "-t", &secs.to_string(), "-J"])
        .output()
        .map_err(|e| format!("iperf3 client: {e}"))?;
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "iperf3 output: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("iperf3 failed: {}", v["error"]))
}

/// Average ping RTT in ms over `count` pings.
fn ping_rtt(from: &Netns, to_addr: &str, count: u32) -> Option<f64> {
    let out = from
        .cmd("ping")
        .args(["-q", "-c", &count.to_string(), "-i", "0.02", to_addr])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // rtt min/avg/max/mdev = 0.050/0.081/0.120/0.010 ms
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    line.split('=')
        .nth(1)?
        .trim()
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

fn wireguard_go_pair(lab: &SeedLab) -> Result<Vec<std::process::Child>, String> {
    // One wireguard-go interface per router, same namespaces, same underlay.
    let mut children = Vec::new();
    let keys: Vec<(String, String)> = (0..2)
        .map(|_| {
            let private =
                String::from_utf8(Command::new("wg").arg("genkey").output().unwrap().stdout)
                    .unwrap()
                    .trim()
                    .to_string();
            let public = lab::seed::meshd_key(&lab.meshd, &private);
            (private, public)
        })
        .collect();
    for n in 1..=2usize {
        let r = lab.router(n);
        let ifname = format!("wgb{n}");
        let child =
            r.ns.cmd("wireguard-go")
                .arg("-f")
                .arg(&ifname)
                .env("WG_PROCESS_FOREGROUND", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("wireguard-go: {e}"))?;
        children.push(child);
        wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            Command::new("ip")
                .args(["-n", &r.ns.name, "link", "show", &ifname])
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .ok_or("wireguard-go did not create its interface")?;
        let key_file = lab.dir.path().join(format!("wg{n}.key"));
        std::fs::write(&key_file, &keys[n - 1].0).unwrap();
        let peer = 3 - n;
        r.ns.exec(&[
            "wg",
            "set",
            &ifname,
            "listen-port",
            "51821",
            "private-key",
            key_file.to_str().unwrap(),
            "peer",
            &keys[peer - 1].1,
            "allowed-ips",
            &format!("192.168.{peer}.0/24,10.1.0.{peer}/32"),
            "endpoint",
            &format!("198.51.100.{peer}:51821"),
        ]);
        r.ns.ip(&["addr", "add", &format!("10.1.0.{n}/32"), "dev", &ifname]);
        r.ns.ip(&["link", "set", &ifname, "mtu", "1420", "up"]);
        r.ns.ip(&[
            "route",
            "replace",
            &format!("192.168.{peer}.0/24"),
            "dev",
            &ifname,
        ]);
    }
    Ok(children)
}

fn bench_throughput(meshd: &Path) -> Result<(), String> {
    require_root();
    require_cmd("iperf3", "iperf3");
    require_cmd("wireguard-go", "wireguard-go");
    require_cmd("wg", "wireguard-tools");
    let topo = Topology {
        routers: 2,
        links: vec![(1, 2)],
        blocked: vec![],
        extra_members: 0,
        main_options: vec![],
    };
    let mut lab = SeedLab::build_topology("mdbt", meshd, 9, &topo);
    let secs = 10;
    println!("C1 → C2 over one tunnel R1-R2 (veth underlay, same namespaces for both)");

    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(20))
        .ok_or_else(|| {
            format!(
                "meshd did not converge: hops {:?} {:?} ping {} {}\n{}\n{}",
                lab.first_hop(1, 2),
                lab.first_hop(2, 1),
                lab.ping(1, 2),
                lab.ping(2, 1),
                lab.status_text(1),
                lab.logs()
            )
        })?;
    let (c1, c2) = (&lab.router(1).console, &lab.router(2).console);
    let _ = ping_rtt(c1, "192.168.2.10", 5);
    let meshd_rtt = ping_rtt(c1, "192.168.2.10", 100);
    let meshd_bps = iperf(c1, c2, "192.168.2.10", secs)?;
    println!(
        "meshd         {:8.1} Mbit/s   ping RTT {:.3} ms",
        meshd_bps / 1e6,
        meshd_rtt.unwrap_or(f64::NAN)
    );
    for n in 1..=2 {
        lab.power_cut(n);
        lab.router(n).ns.ip(&["link", "set", "wan", "up"]);
        lab.router(n).ns.ip(&["link", "set", "lan", "up"]);
    }
    // meshd's routes left with it; wireguard-go takes over the same path.
    let mut wg = wireguard_go_pair(&lab)?;
    let ok = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(1, 2).then_some(())
    });
    if ok.is_none() {
        return Err("wireguard-go pair does not pass traffic".into());
    }
    let (c1, c2) = (&lab.router(1).console, &lab.router(2).console);
    let _ = ping_rtt(c1, "192.168.2.10", 5);
    let wg_rtt = ping_rtt(c1, "192.168.2.10", 100);
    let wg_bps = iperf(c1, c2, "192.168.2.10", secs)?;
    for c in &mut wg {
        let _ = c.kill();
        let _ = c.wait();
    }
    println!(
        "wireguard-go  {:8.1} Mbit/s   ping RTT {:.3} ms",
        wg_bps / 1e6,
        wg_rtt.unwrap_or(f64::NAN)
    );
    println!(
        "ratio meshd/wireguard-go: throughput {:.2}, RTT {:.2}",
        meshd_bps / wg_bps,
        meshd_rtt.unwrap_or(f64::NAN) / wg_rtt.unwrap_or(f64::NAN)
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench_footprint(meshd: &Path) -> Result<(), String> {
    require_root();
    // r1 lists 16 members: r2..r5 (established) and 12 that never come.
    let topo = Topology {
        routers: 5,
        links: vec![(1, 2), (1, 3), (1, 4), (1, 5)],
        blocked: vec![],
        extra_members: 12,
        main_options: vec![],
    };
    let mut lab = SeedLab::build_topology("mdbf", meshd, 9, &topo);
    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(30))
        .ok_or_else(|| format!("did not converge\n{}", lab.logs()))?;
    let established = lab.status(1).map_or(0, |s| {
        s["members"].as_array().map_or(0, |m| {
            m.iter()
                .filter(|x| x["bgp"]["state"] == "Established")
                .count()
        })
    });
    let members = lab
        .status(1)
        .map_or(0, |s| s["members"].as_array().map_or(0, |m| m.len()));
    // Some traffic first, so buffers and queues have been touched.
    for n in 2..=5 {
        lab.ping(1, n);
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = lab.routers[0]
        .process
        .as_ref()
        .map(|p| p.id())
        .ok_or("r1 not running")?;
    let rss = rss_kib(pid).ok_or("no RSS")?;
    let size = std::fs::metadata(meshd).map_err(|e| e.to_string())?.len();
    let stripped = Command::new("file")
        .arg(meshd)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains("stripped")
                && !String::from_utf8_lossy(&o.stdout).contains("not stripped")
        })
        .unwrap_or(false);
    println!("meshd on r1: {members} members configured, {established} sessions established");
    println!("RSS          {:.1} MiB ({rss} KiB)", rss as f64 / 1024.0);
    println!(
        "binary       {:.2} MiB ({size} bytes, {}) {}",
        size as f64 / (1024.0 * 1024.0),
        if stripped { "stripped" } else { "not stripped" },
        meshd.display()
    );
    for n in 2..=5 {
        let pid = lab.routers[n - 1]
            .process
            .as_ref()
            .map(|p| p.id())
            .unwrap_or(0);
        if let Some(r) = rss_kib(pid) {
            println!("  (r{n}, 4 members: RSS {:.1} MiB)", r as f64 / 1024.0);
        }
    }
    if members != 16 || established != 4 {
        return Err(format!(
            "expected 16 members / 4 established, got {members} / {established}"
        ));
    }
    Ok(())
}

/// One power cut of the router carrying C1→C4, measured with a 200 pps probe
/// stream; `carrier` names it, `restore` powers it back, `settled` says when
/// the mesh is whole again. Returns the probe report and the router cut.
fn one_cut(
    lab: &mut SeedLab,
    carrier: &dyn Fn(&SeedLab) -> Option<usize>,
    restore: &dyn Fn(&mut SeedLab, usize) -> Result<(), String>,
    settled: &dyn Fn(&SeedLab) -> bool,
) -> Result<(ProbeReport, usize), String> {
    let probe = Probe::start(
        &lab.router(1).console,
        &lab.router(4).console,
        console_addr(4),
        Duration::from_millis(5),
    );
    // The router in use, on a path that has held for two seconds.
    let transit = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let a = carrier(lab)?;
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(250));
            if carrier(lab)? != a {
                return None;
            }
        }
        Some(a)
    })
    .ok_or("no settled path C1→C4")?;
    let before = probe.last_seq().unwrap_or(0);
    lab.power_cut(transit);
    let resumed = wait_for(Duration::from_secs(15), Duration::from_millis(10), || {
        (probe.last_seq().unwrap_or(0) > before + 100).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = probe.finish();
    resumed.ok_or_else(|| format!("traffic did not resume after r{transit} was cut"))?;
    restore(lab, transit)?;
    wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        settled(lab).then_some(())
    })
    .ok_or_else(|| format!("r{transit} did not rejoin"))?;
    Ok((report, transit))
}

fn median_worst(gaps: &mut [Duration]) -> (Duration, Duration) {
    gaps.sort();
    (gaps[gaps.len() / 2], gaps[gaps.len() - 1])
}

/// All BGP sessions of meshd router `n` with its square neighbours are up.
fn meshd_settled(lab: &SeedLab) -> bool {
    SQUARE.iter().all(|&(a, b)| {
        lab.bgp_state(a, &format!("r{b}")).as_deref() == Some("Established")
            && lab.bgp_state(b, &format!("r{a}")).as_deref() == Some("Established")
    }) && lab.ping(1, 4)
}

fn cuts_meshd(meshd: &Path, redundancy: bool, runs: usize) -> Result<Vec<ProbeReport>, String> {
    let mut topo = Topology::seed_square();
    if !redundancy {
        topo.main_options = vec![("redundancy", "0".into())];
    }
    let mut lab = SeedLab::build_topology("mdbx", meshd, 9, &topo);
    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(30))
        .ok_or_else(|| format!("meshd square did not converge\n{}", lab.logs()))?;
    wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        meshd_settled(&lab).then_some(())
    });
    let mut out = Vec::new();
    for run in 1..=runs {
        let (r, t) = one_cut(
            &mut lab,
            &|l| l.first_hop(1, 4),
            &|l, n| {
                l.power_on(n);
                Ok(())
            },
            &meshd_settled,
        )
        .map_err(|e| format!("run {run}: {e}\n{}", lab.logs()))?;
        println!(
            "  meshd{} cut r{t}: gap {:>5} ms, {:>3} of {} probes lost",
            if redundancy { " +redundancy" } else { "" },
            r.longest_gap.as_millis(),
            r.lost,
            r.sent
        );
        out.push(r);
    }
    Ok(out)
}

fn stock_settled(lab: &SeedLab) -> bool {
    (1..=4).all(|a| {
        (1..=4)
            .filter(|&b| b != a)
            .all(|b| stock::kernel_route_dev(lab, a, b).is_some())
    }) && lab.ping(1, 4)
}

fn cuts_stock(meshd: &Path, runs: usize) -> Result<Vec<ProbeReport>, String> {
    let topo = Topology::seed_square();
    let mut lab = SeedLab::build_topology("mdbs", meshd, 9, &topo);
    let start = |lab: &mut SeedLab, n: usize| {
        let tunnels = stock::square_tunnels(lab, n, &SQUARE);
        stock::start(lab, n, &tunnels, BirdBfd::STOCK, 9)
    };
    for n in 1..=4 {
        start(&mut lab, n)?;
    }
    wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        stock_settled(&lab).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "stock square did not converge:\n{}",
            stock::birdc(&lab, 1, &["show", "protocols"])
        )
    })?;
    let carrier = |lab: &SeedLab| -> Option<usize> {
        let dev = stock::kernel_route_dev(lab, 1, 4)?;
        dev.chars().last()?.to_digit(10).map(|d| d as usize)
    };
    let mut out = Vec::new();
    for run in 1..=runs {
        let (r, t) = one_cut(
            &mut lab,
            &carrier,
            &|l, n| {
                l.links_up(n);
                start(l, n)
            },
            &stock_settled,
        )
        .map_err(|e| format!("run {run}: {e}"))?;
        println!(
            "  stock cut r{t}: gap {:>5} ms, {:>3} of {} probes lost",
            r.longest_gap.as_millis(),
            r.lost,
            r.sent
        );
        out.push(r);
    }
    Ok(out)
}

/// Bytes per second on an idle meshd tunnel (both directions), from nftables
/// counters on the internet bridge, and BFD's share of it.
fn tunnel_cost(meshd: &Path) -> Result<(), String> {
    let topo = Topology {
        routers: 2,
        links: vec![(1, 2)],
        blocked: vec![],
        extra_members: 0,
        main_options: vec![("redundancy", "0".into())],
    };
    let mut lab = SeedLab::build_topology("mdbc", meshd, 9, &topo);
    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(20))
        .ok_or("did not converge")?;
    std::thread::sleep(Duration::from_secs(3));
    let rules = lab.dir.path().join("count.nft");
    std::fs::write(
        &rules,
        "table bridge cnt {\n\tchain tunnel_bytes {\n\t\ttype filter hook forward priority 0;\n\
         \t\tip saddr 198.51.100.1 ip daddr 198.51.100.2 udp dport 51820 counter\n\t}\n}\n",
    )
    .unwrap();
    lab.inet.exec(&["nft", "-f", rules.to_str().unwrap()]);
    let bfd_tx = |lab: &SeedLab| -> u64 {
        lab.status(1).map_or(0, |s| {
            s["members"][0]["bfd"]["tx_packets"].as_u64().unwrap_or(0)
        })
    };
    let b0 = bfd_tx(&lab);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let secs = t0.elapsed().as_secs_f64();
    let b1 = bfd_tx(&lab);
    let out = lab.inet.exec(&["nft", "list", "table", "bridge", "cnt"]);
    let (packets, bytes) = out
        .split("counter packets ")
        .nth(1)
        .and_then(|r| {
            let mut w = r.split_whitespace();
            let p: u64 = w.next()?.parse().ok()?;
            let _ = w.next();
            let b: u64 = w.next()?.parse().ok()?;
            Some((p, b))
        })
        .ok_or_else(|| format!("no counter in {out}"))?;
    let bfd_pps = (b1 - b0) as f64 / secs;
    let per_packet = bytes as f64 / packets.max(1) as f64;
    println!(
        "idle tunnel r1→r2: {:.0} packets/s = {:.0} bytes/s (IP) one way; BFD is {:.0} packets/s of it, \
         {:.0} bytes/s ({:.0} B per packet on the wire)",
        packets as f64 / secs,
        bytes as f64 / secs,
        bfd_pps,
        bfd_pps * per_packet,
        per_packet
    );
    Ok(())
}

fn bench_failover(meshd: &Path) -> Result<(), String> {
    require_root();
    require_cmd("wireguard-go", "wireguard-go");
    require_cmd("wg", "wireguard-tools");
    require_cmd("bird", "bird2");
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    println!(
        "seed square, power cut of the transit router (links down, kill -9), {runs} times each,"
    );
    println!("probe C1→C4 at 200 packets/s; gap = longest silence in received probes\n");
    println!("stock: wireguard-go + BIRD 2 (eBGP per tunnel, BFD 100 ms x 3)");
    let stock = cuts_stock(meshd, runs)?;
    println!("meshd: BFD 10 ms x 4, redundant sending off");
    let plain = cuts_meshd(meshd, false, runs)?;
    println!("meshd: BFD 10 ms x 4, redundant sending on (small UDP over two first hops)");
    let redundant = cuts_meshd(meshd, true, runs)?;
    let (sm, sw) = median_worst(&mut stock.iter().map(|r| r.longest_gap).collect::<Vec<_>>());
    let (mm, mw) = median_worst(&mut plain.iter().map(|r| r.longest_gap).collect::<Vec<_>>());
    let lost_redundant: u32 = redundant.iter().map(|r| r.lost).sum();
    println!("\nresults ({runs} power cuts each):");
    println!(
        "  stock (wireguard-go + BIRD, BFD 100x3)  median {:>4} ms  worst {:>4} ms",
        sm.as_millis(),
        sw.as_millis()
    );
    println!(
        "  meshd (BFD 10x4)                        median {:>4} ms  worst {:>4} ms",
        mm.as_millis(),
        mw.as_millis()
    );
    println!(
        "  ratio stock/meshd                       median {:.1}x   worst {:.1}x",
        sm.as_secs_f64() / mm.as_secs_f64(),
        sw.as_secs_f64() / mw.as_secs_f64()
    );
    println!(
        "  meshd with redundant sending            {} probes lost in {} power cuts",
        lost_redundant, runs
    );
    tunnel_cost(meshd)?;
    let ok =
        mm <= Duration::from_millis(50) && mw <= Duration::from_millis(100) && lost_redundant == 0;
    if ok {
        println!("targets met: median <= 50 ms, worst <= 100 ms, zero loss with redundancy");
        Ok(())
    } else {
        Err("a target was missed".into())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(meshd)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: meshlab demo|bench-throughput|bench-footprint|bench-failover MESHD [--check]"
        );
        return ExitCode::from(2);
    };
    let meshd = PathBuf::from(meshd);
    let check = args.iter().any(|a| a == "--check");
    let result = match cmd.as_str() {
        "demo" => demo(&meshd, check),
        "bench-throughput" => bench_throughput(&meshd),
        "bench-footprint" => bench_footprint(&meshd),
        "bench-failover" => bench_failover(&meshd),
        _ => Err(format!("unknown command {cmd}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
