//! Impairment profiles on the seed square of real meshd daemons (LAB.md,
//! "Impairments"): jitter 20 ± 15 ms, a 200 ms upload queue for 5 s, 5% and
//! 10% loss, a 100 ms SIGSTOP of one meshd, a CPU hog on the router's core.
//!
//! Each profile is held for `MESHD_IMPAIR_SECS` seconds (default 120, at
//! least 20) under a 200 pps probe stream C1→C4, on the tunnel that carries
//! it (R1 to the transit router meshd chose). None may flap BGP, on any
//! router, with any member: BFD may go down (and move traffic), BGP must stay
//! up. Each test also proves the impairment happened, and bounds the probe
//! stream's longest gap by what the profile itself causes.
//!
//! The link emulator (`tests/lab/impair.rs`) is checked first, without
//! meshd: its decisions alone, then a ping through it.
//!
//! Timing matters: `scripts/test.sh` runs the profiles in a release build
//! (`MESHD_IMPAIR_SECS=20 cargo test --release --test lab_impair`). Needs
//! root, nftables, iputils-ping, stress-ng.

mod lab;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::impair::{Counters, Dir, Profile, Shaper};
use lab::seed::{console_addr, Probe, ProbeReport, SeedLab, Topology, SQUARE};
use lab::{require_cmd, require_root, wait_for};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

fn needs() {
    require_root();
    require_cmd("nft", "nftables");
    require_cmd("ping", "iputils-ping");
}

/// How long each profile is held.
fn hold() -> Duration {
    let secs = std::env::var("MESHD_IMPAIR_SECS")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("MESHD_IMPAIR_SECS={s:?}: seconds"))
        })
        .unwrap_or(120);
    assert!(secs >= 20, "MESHD_IMPAIR_SECS={secs}: at least 20");
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------
// The emulator's decisions, without sockets.

const MS: Duration = Duration::from_millis(1);

#[test]
fn emulator_shaper_keeps_order_under_jitter_unless_told_to_reorder() {
    let t0 = Instant::now();
    for reorder in [false, true] {
        let c = Counters::default();
        let mut s = Shaper::new(7, t0);
        let p = Profile {
            reorder,
            ..Profile::delay(20 * MS, 15 * MS)
        };
        let mut last = t0;
        let mut out_of_order = 0;
        // A frame every 2 ms for 10 s.
        for i in 0..5000u32 {
            let now = t0 + 2 * MS * i;
            let at = s.admit(now, Dir::Up, 100, &p, &c).unwrap();
            assert!(at >= now + 5 * MS && at <= now + 35 * MS, "{:?}", at - now);
            if at < last {
                out_of_order += 1;
            }
            last = last.max(at);
        }
        let k = c.snapshot();
        assert_eq!(k.impaired, 5000);
        assert!(k.max_delay_ms >= 30.0, "{k}");
        if reorder {
            assert!(out_of_order > 100, "{out_of_order}");
            assert_eq!(k.reordered, out_of_order);
        } else {
            assert_eq!(out_of_order, 0);
            assert_eq!(k.reordered, 0);
        }
    }
}

#[test]
fn emulator_shaper_loses_the_fraction_it_is_told() {
    let t0 = Instant::now();
    for loss in [0.0, 0.05, 0.10] {
        let c = Counters::default();
        let mut s = Shaper::new(11, t0);
        for i in 0..20_000u32 {
            let at = s.admit(t0 + MS * i, Dir::Down, 100, &Profile::loss(loss), &c);
            if let Some(at) = at {
                assert_eq!(at, t0 + MS * i, "loss alone adds no delay");
            }
        }
        let k = c.snapshot();
        assert!(
            (k.loss_fraction() - loss).abs() < 0.01,
            "{loss}: {}",
            k.loss_fraction()
        );
    }
}

#[test]
fn emulator_shaper_upload_queue_fills_with_cross_traffic_and_drains() {
    // 10 Mbit/s, 200 ms of queue, 12 Mbit/s of a PC's upload for 5 s, and a
    // 150-byte tunnel frame every 5 ms; then the upload stops.
    let t0 = Instant::now();
    let c = Counters::default();
    let mut s = Shaper::new(3, t0);
    let busy = Profile::queue(10_000_000, 200 * MS, 12_000_000);
    let quiet = Profile::queue(10_000_000, 200 * MS, 0);
    let mut delays = Vec::new();
    for i in 0..2000u32 {
        let now = t0 + 5 * MS * i;
        let p = if now < t0 + Duration::from_secs(5) {
            &busy
        } else {
            &quiet
        };
        if let Some(at) = s.admit(now, Dir::Up, 150, p, &c) {
            delays.push((now - t0, at - now));
        }
    }
    let k = c.snapshot();
    println!("{k}");
    assert!(
        k.max_queue_delay_ms >= 190.0 && k.max_queue_delay_ms <= 200.5,
        "{k}"
    );
    assert!(k.dropped_queue > 0, "{k}");
    assert!(k.cross_dropped > 0 && k.cross_frames > 4000, "{k}");
    // Filling at 2 Mbit/s takes about a second; it is drained 200 ms after
    // the upload stops.
    let at = |t: u64| {
        delays
            .iter()
            .find(|d| d.0 >= Duration::from_millis(t))
            .unwrap()
            .1
    };
    assert!(at(100) < 50 * MS, "{:?}", at(100));
    assert!(at(3000) > 150 * MS, "{:?}", at(3000));
    assert!(at(5300) < MS, "{:?}", at(5300));
}

// ---------------------------------------------------------------------------
// The emulator on a wire, without meshd.

/// `ping` from router `n`'s namespace: (min, avg, max) RTT in ms and the
/// replies.
fn ping_rtt(lab: &SeedLab, n: usize, to: &str, count: u32) -> (f64, f64, f64, u32) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.router(n).ns.name,
            "ping",
            "-q",
            "-i",
            "0.05",
            "-W",
            "1",
        ])
        .args(["-c", &count.to_string(), to])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .split(", ")
        .find_map(|s| s.strip_suffix(" received")?.parse().ok())
        .unwrap_or(0);
    let rtt: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split(" = ").nth(1))
        .map(|v| v.split([' ', '/']).filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    match rtt[..] {
        [min, avg, max, ..] => (min, avg, max, received),
        _ => (0.0, 0.0, 0.0, received),
    }
}

/// A UDP stream from router `from` to router `to` over their WAN, a datagram
/// every millisecond while `during` runs; the longest time between two
/// arrivals, and how many arrived of how many sent.
fn longest_silence(
    lab: &SeedLab,
    from: usize,
    to: usize,
    during: impl FnOnce(),
) -> (Duration, u32, u32) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let dst = Ipv4Addr::new(198, 51, 100, to as u8);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = {
        let stop = stop.clone();
        lab.router(to).ns.spawn(move || {
            let s = UdpSocket::bind((dst, 9998)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            ready_tx.send(()).unwrap();
            let (mut last, mut longest, mut got) = (None::<Instant>, Duration::ZERO, 0u32);
            let mut buf = [0u8; 16];
            while !stop.load(Ordering::Relaxed) {
                if s.recv(&mut buf).is_ok() {
                    let now = Instant::now();
                    if let Some(l) = last {
                        longest = longest.max(now - l);
                    }
                    last = Some(now);
                    got += 1;
                }
            }
            (longest, got)
        })
    };
    ready_rx.recv().unwrap();
    let tx = {
        let stop = stop.clone();
        lab.router(from).ns.spawn(move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let (start, mut sent) = (Instant::now(), 0u32);
            while !stop.load(Ordering::Relaxed) {
                let _ = s.send_to(&sent.to_be_bytes(), (dst, 9998));
                sent += 1;
                sleep_until(start + MS * sent);
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    during();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = tx.join().unwrap();
    let (longest, got) = rx.join().unwrap();
    (longest, got, sent)
}

#[test]
fn emulator_on_and_off_the_wire_cuts_it_for_a_few_milliseconds() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    needs();
    let lab = SeedLab::build_topology("mdio", meshd(), 9, &Topology::seed_square());
    assert_eq!(ping_rtt(&lab, 1, "198.51.100.3", 3).3, 3);
    // On, then off, while r1 streams to r3 (passed at once) and r2 (the
    // impaired pair, with no impairment).
    let mut on = Duration::ZERO;
    let mut off = Duration::ZERO;
    let mut k = None;
    let r3 = longest_silence(&lab, 1, 3, || {
        let t = Instant::now();
        let wire = lab.impair_wan(1, 2);
        on = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        k = Some(wire.counts());
        let t = Instant::now();
        drop(wire);
        off = t.elapsed();
    });
    println!(
        "emulator on in {:.1} ms, off in {:.1} ms: r1 -> r3 longest silence {:.1} ms, {} of {} arrived\n{}",
        on.as_secs_f64() * 1e3,
        off.as_secs_f64() * 1e3,
        r3.0.as_secs_f64() * 1e3,
        r3.1,
        r3.2,
        k.unwrap()
    );
    assert!(r3.0 <= Duration::from_millis(20), "{r3:?}");
}

#[test]
fn emulator_delays_only_its_pair_and_leaves_the_bridge_as_it_was() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    needs();
    // Namespaces and addresses only: no meshd.
    let lab = SeedLab::build_topology("mdie", meshd(), 9, &Topology::seed_square());
    let base = ping_rtt(&lab, 1, "198.51.100.2", 5);
    assert_eq!(base.3, 5, "no ping r1 -> r2 before the emulator");
    {
        let wire = lab.impair_wan(1, 2);
        let master = lab.inet.ip(&["link", "show", "w1"]);
        assert!(!master.contains("master br0"), "{master}");
        wire.set(Profile::delay(50 * MS, Duration::ZERO));
        let r2 = ping_rtt(&lab, 1, "198.51.100.2", 10);
        let r3 = ping_rtt(&lab, 1, "198.51.100.3", 10);
        // UDP too: veth leaves its checksum to the hardware, the emulator
        // must carry that over.
        let rx = lab.router(2).ns.spawn(|| {
            let s = UdpSocket::bind("198.51.100.2:9999").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 2000];
            let mut got = 0;
            while let Ok(n) = s.recv(&mut buf) {
                assert_eq!(n, 1200);
                got += 1;
                if got == 20 {
                    break;
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(200));
        lab.router(1)
            .ns
            .spawn(|| {
                let s = UdpSocket::bind("198.51.100.1:0").unwrap();
                for _ in 0..20 {
                    s.send_to(&[7u8; 1200], (Ipv4Addr::new(198, 51, 100, 2), 9999))
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .join()
            .unwrap();
        let udp = rx.join().unwrap();
        let k = wire.counts();
        println!(
            "ping r1 -> r2 with 50 ms each way: rtt min/avg/max {:.1}/{:.1}/{:.1} ms ({} of 10); \
             r1 -> r3: {:.1}/{:.1}/{:.1} ms ({} of 10); UDP r1 -> r2 {udp} of 20; before: r1 -> r2 {:.1} ms\n{k}",
            r2.0, r2.1, r2.2, r2.3, r3.0, r3.1, r3.2, r3.3, base.1
        );
        assert_eq!(r2.3, 10);
        assert!(r2.0 >= 100.0 && r2.1 <= 130.0, "{r2:?}");
        assert_eq!(r3.3, 10);
        assert!(r3.1 < 20.0, "{r3:?}");
        assert_eq!(udp, 20, "UDP through the emulator");
        assert!(k.impaired >= 40 && k.passed >= 20, "{k}");
        assert!(k.max_delay_ms >= 50.0 && k.max_delay_ms < 80.0, "{k}");
        assert_eq!(
            k.dropped_loss + k.dropped_queue + k.socket_drops + k.send_errors,
            0
        );
    }
    let master = lab.inet.ip(&["link", "show", "w1"]);
    assert!(master.contains("master br0"), "{master}");
    assert!(!lab.inet.ip(&["link", "show"]).contains("x1a"));
    let after = ping_rtt(&lab, 1, "198.51.100.2", 5);
    assert_eq!(after.3, 5);
    assert!(after.1 < 20.0, "{after:?}");
}

// ---------------------------------------------------------------------------
// The profiles, on real daemons.

/// Per router, per member: (BGP flaps, BFD downs).
type Flaps = BTreeMap<(usize, String), (u64, u64)>;

fn flaps(lab: &SeedLab) -> Flaps {
    let mut out = Flaps::new();
    for n in 1..=lab.routers.len() {
        let s = lab
            .status(n)
            .unwrap_or_else(|| panic!("no status from r{n}\n{}", lab.logs()));
        for m in s["members"].as_array().unwrap() {
            out.insert(
                (n, m["name"].as_str().unwrap().to_string()),
                (
                    m["bgp"]["flaps"].as_u64().unwrap_or(0),
                    m["bfd"]["downs"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    out
}

/// What an impairment did: its figures, and what shows it did not happen.
struct Evidence {
    figures: String,
    missing: Vec<String>,
}

impl Evidence {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.missing.push(what.into());
        }
    }
}

/// The lines of the routers' logs about BGP or BFD going down or up (how
/// long a down lasted is what decides a flap).
fn down_lines(lab: &SeedLab) -> String {
    let mut s = String::new();
    for r in &lab.routers {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                (l.contains("bgp: session") || l.contains("bfd: "))
                    && [" down", " up", " established"]
                        .iter()
                        .any(|w| l.contains(w))
            })
            .collect();
        for l in lines.iter().rev().take(8).rev() {
            s.push_str(&format!("r{}: {l}\n", r.n));
        }
    }
    s
}

/// The common run: the converged square, a 200 pps probe C1→C4, `impair`
/// held for [`hold`] on the tunnel from R1 to the transit router it gets
/// (and which must be gone when it returns), then the judgement: no BGP
/// flap anywhere, the impairment proven, the probe's longest gap within
/// `gap_bound`. Everything is printed on one line first.
fn run_profile(
    tag: &str,
    name: &str,
    gap_bound: Duration,
    impair: impl FnOnce(&SeedLab, usize, Duration) -> Evidence,
) {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    needs();
    let hold = hold();
    let mut lab = SeedLab::build_topology(tag, meshd(), 9, &Topology::seed_square());
    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("did not converge\n{}", lab.logs()));
    let established = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        SQUARE
            .iter()
            .all(|&(a, b)| {
                lab.bgp_state(a, &format!("r{b}")).as_deref() == Some("Established")
                    && lab.bgp_state(b, &format!("r{a}")).as_deref() == Some("Established")
            })
            .then_some(())
    });
    assert!(established.is_some(), "sessions not up\n{}", lab.logs());
    let transit = lab
        .settled_first_hop(1, 4, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no settled path C1→C4\n{}", lab.logs()));
    let before = flaps(&lab);
    let probe = Probe::start(
        &lab.router(1).console,
        &lab.router(4).console,
        console_addr(4),
        Duration::from_millis(5),
    );
    let start = Instant::now();
    let evidence = impair(&lab, transit, hold);
    let held = start.elapsed();
    // Let what the impairment did (or its end) show in the counters.
    std::thread::sleep(Duration::from_secs(2));
    let report: ProbeReport = probe.finish();
    let after = flaps(&lab);
    let via_after = lab.first_hop(1, 4);

    let mut bgp = Vec::new();
    let mut bfd = Vec::new();
    for (key, a) in &after {
        let b = before.get(key).copied().unwrap_or_default();
        let (f, d) = (a.0 - b.0, a.1 - b.1);
        if f > 0 {
            bgp.push(format!("r{}/{} {f}", key.0, key.1));
        }
        if d > 0 {
            bfd.push(format!("r{}/{} {d}", key.0, key.1));
        }
    }
    let total = |v: &[String]| -> u64 {
        v.iter()
            .map(|s| s.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    println!(
        "{name} on R1-R{transit} for {:.1} s: BGP flaps {} [{}], BFD downs {} [{}]; probe C1→C4 \
         sent {} received {} lost {} longest gap {} ms (bound {} ms); via r{transit} before, {} after; {}",
        held.as_secs_f64(),
        total(&bgp),
        bgp.join(", "),
        total(&bfd),
        bfd.join(", "),
        report.sent,
        report.received,
        report.lost,
        report.longest_gap.as_millis(),
        gap_bound.as_millis(),
        via_after.map_or("none".into(), |v| format!("r{v}")),
        evidence.figures
    );
    let mut failures: Vec<String> = evidence
        .missing
        .iter()
        .map(|m| format!("the impairment did not happen: {m}"))
        .collect();
    if !bgp.is_empty() {
        failures.push(format!("BGP flapped: {}", bgp.join(", ")));
    }
    if report.longest_gap > gap_bound {
        failures.push(format!(
            "the probe's longest gap {} ms > {} ms",
            report.longest_gap.as_millis(),
            gap_bound.as_millis()
        ));
    }
    assert!(
        failures.is_empty(),
        "{name}: {}\n{}",
        failures.join("; "),
        down_lines(&lab)
    );
}

/// The emulator on R1's wire to `transit`, `set` as the profile, for `hold`;
/// the wire is gone (R1's WAN back on the bridge) when this returns.
fn with_wire(
    lab: &SeedLab,
    transit: usize,
    hold: Duration,
    drive: impl FnOnce(&lab::impair::Wire, Duration),
) -> lab::impair::Counts {
    let wire = lab.impair_wan(1, transit);
    drive(&wire, hold);
    let counts = wire.counts();
    drop(wire);
    counts
}

#[test]
fn impaired_jitter_20ms_plus_minus_15_does_not_flap() {
    run_profile(
        "mdij",
        "jitter 20±15 ms",
        Duration::from_millis(150),
        |lab, transit, hold| {
            let k = with_wire(lab, transit, hold, |w, hold| {
                let start = Instant::now();
                // Eased in over a second: a step from no delay to 35 ms
                // would be an outage of its own, not jitter.
                for i in 1..=50u32 {
                    w.set(Profile::delay(20 * MS * i / 50, 15 * MS * i / 50));
                    std::thread::sleep(20 * MS);
                }
                sleep_until(start + hold);
            });
            let mut e = Evidence {
                figures: k.to_string(),
                missing: vec![],
            };
            e.check(
                k.impaired >= 1000,
                format!("{} frames impaired", k.impaired),
            );
            e.check(
                k.max_delay_ms >= 30.0,
                format!("max delay {} ms", k.max_delay_ms),
            );
            e.check(k.reordered == 0, format!("{} reordered", k.reordered));
            e
        },
    );
}

#[test]
fn impaired_upload_queue_200ms_for_5s_does_not_flap() {
    let limit = Duration::from_millis(200);
    run_profile(
        "mdiq",
        "upload queue 10 Mbit/s, 200 ms, 12 Mbit/s cross traffic 5 s of every 20 s",
        limit + Duration::from_millis(150),
        |lab, transit, hold| {
            let mut bursts = 0;
            let k = with_wire(lab, transit, hold, |w, hold| {
                let quiet = Profile::queue(10_000_000, limit, 0);
                let busy = Profile::queue(10_000_000, limit, 12_000_000);
                w.set_dir(Dir::Up, quiet);
                let start = Instant::now();
                while start.elapsed() + Duration::from_secs(20) <= hold + MS {
                    let cycle = start + Duration::from_secs(20) * bursts;
                    w.set_dir(Dir::Up, busy);
                    sleep_until(cycle + Duration::from_secs(5));
                    w.set_dir(Dir::Up, quiet);
                    bursts += 1;
                    sleep_until(cycle + Duration::from_secs(20));
                }
                sleep_until(start + hold);
            });
            let mut e = Evidence {
                figures: format!("{bursts} bursts; {k}"),
                missing: vec![],
            };
            e.check(
                k.max_queue_delay_ms >= 150.0,
                format!("max queue delay {} ms", k.max_queue_delay_ms),
            );
            e.check(
                k.dropped_queue > 0,
                "no tunnel frame dropped by the full queue",
            );
            e
        },
    );
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn loss_profile(tag: &str, loss: f64) {
    run_profile(
        tag,
        &format!("{}% random loss both ways", loss * 100.0),
        Duration::from_millis(150),
        |lab, transit, hold| {
            let k = with_wire(lab, transit, hold, |w, hold| {
                w.set(Profile::loss(loss));
                std::thread::sleep(hold);
            });
            let mut e = Evidence {
                figures: k.to_string(),
                missing: vec![],
            };
            e.check(
                k.impaired >= 1000,
                format!("{} frames impaired", k.impaired),
            );
            e.check(k.dropped_loss > 0, "nothing lost");
            e.check(
                (k.loss_fraction() - loss).abs() <= loss * 0.3,
                format!(
                    "{:.2}% lost, not near {}%",
                    100.0 * k.loss_fraction(),
                    100.0 * loss
                ),
            );
            e
        },
    );
}

#[test]
fn impaired_loss_5_percent_does_not_flap() {
    loss_profile("mdi5", 0.05);
}

#[test]
fn impaired_loss_10_percent_does_not_flap() {
    loss_profile("mdi10", 0.10);
}

/// SIGCONT on drop: a failing test never leaves a meshd stopped.
struct Continue(nix::unistd::Pid);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// The state letter of a process (`T`: stopped).
fn proc_state(pid: nix::unistd::Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

#[test]
fn impaired_sigstop_100ms_does_not_flap() {
    use nix::sys::signal::{kill, Signal};
    let stop_for = Duration::from_millis(100);
    run_profile(
        "mdis",
        "SIGSTOP 100 ms every 5 s of the transit meshd",
        stop_for + Duration::from_millis(150),
        |lab, transit, hold| {
            let pid = nix::unistd::Pid::from_raw(
                lab.router(transit).process.as_ref().unwrap().id() as i32,
            );
            let _cont = Continue(pid);
            let start = Instant::now();
            let (mut stops, mut confirmed) = (0u32, 0u32);
            let mut longest = Duration::ZERO;
            let expected = (hold.as_secs() / 5) as u32;
            for i in 0..expected {
                sleep_until(start + Duration::from_millis(2500) + Duration::from_secs(5) * i);
                kill(pid, Signal::SIGSTOP).unwrap();
                let t = Instant::now();
                stops += 1;
                if wait_for(Duration::from_millis(20), MS, || {
                    (proc_state(pid) == Some('T')).then_some(())
                })
                .is_some()
                {
                    confirmed += 1;
                }
                sleep_until(t + stop_for);
                kill(pid, Signal::SIGCONT).unwrap();
                longest = longest.max(t.elapsed());
            }
            sleep_until(start + hold);
            let mut e = Evidence {
                figures: format!(
                    "r{transit}'s meshd stopped {stops} times ({confirmed} seen stopped), longest {:.1} ms",
                    longest.as_secs_f64() * 1000.0
                ),
                missing: vec![],
            };
            e.check(
                stops == expected && confirmed == stops,
                format!("{confirmed} of {stops} stops seen, {expected} planned"),
            );
            e.check(longest >= stop_for, format!("longest stop {longest:?}"));
            e
        },
    );
}

/// Pins every thread of `pid` to CPU `cpu`; returns how many.
fn pin(pid: u32, cpu: usize) -> usize {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).unwrap();
        n += 1;
    }
    n
}

#[test]
fn impaired_cpu_hog_does_not_flap() {
    require_cmd("stress-ng", "stress-ng");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    run_profile(
        "mdih",
        &format!("CPU hog on {cpus} cores, r1's meshd pinned to core 0"),
        Duration::from_millis(150),
        |lab, _transit, hold| {
            let pid = lab.router(1).process.as_ref().unwrap().id();
            let threads = pin(pid, 0);
            let affinity =
                nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid as i32)).unwrap();
            let pinned = (0..cpus).all(|c| affinity.is_set(c).unwrap() == (c == 0));
            let start = Instant::now();
            let out = Command::new("stress-ng")
                .args(["--cpu", &cpus.to_string(), "--metrics-brief", "--timeout"])
                .arg(format!("{}s", hold.as_secs()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .expect("run stress-ng");
            let ran = start.elapsed();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // "stress-ng: metrc: [pid] cpu  2584  1.00  1.31  0.00  2581.58  1966.69"
            let bogo: u64 = text
                .lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace().skip(3);
                    (w.next()? == "cpu").then(|| w.next()?.parse().ok())?
                })
                .unwrap_or(0);
            let worst = lab
                .status(1)
                .and_then(|s| s["loop"]["worst_ms_last_minute"].as_f64());
            let mut e = Evidence {
                figures: format!(
                    "stress-ng --cpu {cpus}: {bogo} bogo ops in {:.1} s; r1's meshd ({threads} threads) \
                     pinned to core 0: {pinned}; r1's loop at worst {} ms in the last minute",
                    ran.as_secs_f64(),
                    worst.map_or("?".into(), |w| format!("{w:.1}"))
                ),
                missing: vec![],
            };
            e.check(out.status.success(), format!("stress-ng failed:\n{text}"));
            e.check(pinned, "r1's meshd not pinned to core 0");
            e.check(bogo > 0, format!("no bogo ops:\n{text}"));
            e.check(
                ran + Duration::from_secs(1) >= hold,
                format!("stress-ng ran {ran:?} only"),
            );
            e
        },
    );
}
