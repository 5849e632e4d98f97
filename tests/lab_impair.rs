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

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::impair::{Counters, Dir, Profile, Shaper};
use lab::seed::{SeedLab, Topology};
use lab::{require_cmd, require_root};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

fn needs() {
    require_root();
    require_cmd("nft", "nftables");
    require_cmd("ping", "iputils-ping");
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

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}
