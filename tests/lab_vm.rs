//! The seed square on four arm64 router VMs of 64 MB each (issue 13; see
//! `tests/lab/vm.rs` for the wiring): they boot the image
//! `scripts/router-image.sh` built, converge, carry a 200 pps stream C1→C4,
//! and the transit router loses power for real (SIGKILL of its qemu), cold
//! boots and rejoins; once with redundant sending, once without (and the
//! R1-R3 wire stalling meanwhile, so that every path to C4 has moved at
//! R1), and once by the reset button (QMP `system_reset`).
//!
//! Needs `qemu-system-aarch64` (Debian package `qemu-system-arm`) and the
//! image; `scripts/test.sh` provides both. Runs under TCG (no KVM here):
//! figures are printed with the timers the square runs with
//! ([`BFD_INTERVAL_MS`] × [`BFD_MULTIPLIER`]).

mod lab;

use std::path::Path;
use std::time::{Duration, Instant};

use lab::require_cmd;
use lab::vm::{Image, SquareOptions, VmSquare};

/// BFD under TCG: the guest runs several times slower than the host, so the
/// image's configuration (not meshd's defaults) sets these.
const BFD_INTERVAL_MS: u64 = 10;
const BFD_MULTIPLIER: u64 = 4;

const INTERVAL: Duration = Duration::from_millis(5);

/// The longest detection time BFD's adaptation may reach: meshd's default
/// `bfd_max_detection`, which the square leaves alone.
const MAX_DETECTION: Duration = Duration::from_millis(mesh_core::bfd::DEFAULT_MAX_DETECTION_MS);

/// From the detection to the stream arriving through r3: R1's timer fires
/// late when its VM waits for a host core (TCG, four VMs on this host), the
/// route moves, and the probes in flight on the wire to r2 are lost too.
/// Measured on a quiet host: 18 and 82 ms beyond the detection time.
const SWITCH: Duration = Duration::from_millis(120);

/// How long the R1-R3 wire stalls during the second cut: longer than any
/// detection time BFD may adapt to, so R1's BFD toward r3 goes down too.
const STALL: Duration = Duration::from_millis(MAX_DETECTION.as_millis() as u64 + 100);

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

fn say(what: &str) {
    println!("[vm square] {what}");
}

#[test]
fn four_arm64_router_vms_converge_survive_a_power_cut_and_rejoin() {
    require_cmd("qemu-system-aarch64", "qemu-system-arm");
    let image = Image::aarch64();
    let options = SquareOptions {
        main: vec![
            ("bfd_interval", BFD_INTERVAL_MS.to_string()),
            ("bfd_multiplier", BFD_MULTIPLIER.to_string()),
        ],
        memory_mb: 64,
    };
    let mut sq = VmSquare::build("sq", &image, meshd(), &options);
    let launched = Instant::now();
    sq.launch_all();
    for n in 1..=4 {
        let t = sq
            .router(n)
            .wait_booted(Duration::from_secs(90))
            .unwrap_or_else(|| panic!("r{n} did not boot\n{}", sq.logs()));
        say(&format!("r{n} booted in {:.1} s", t.as_secs_f64()));
    }
    for n in [1, 4] {
        sq.console(n)
            .resolve_gateway(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("c{n}: r{n} does not answer ARP\n{}", sq.logs()));
    }
    let probe = sq.probe(1, 4, INTERVAL);
    lab::wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
        probe.first_arrival()
    })
    .unwrap_or_else(|| panic!("C1→C4 never converged\n{}", sq.logs()));
    let converged = probe.first_arrival().unwrap() - launched;
    say(&format!(
        "C1→C4 converged {:.1} s after the four VMs were launched",
        converged.as_secs_f64()
    ));
    assert!(converged <= Duration::from_secs(30), "{converged:?}");

    sq.wait_converged(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the mesh did not converge\n{}", sq.logs()));
    let all = launched.elapsed();
    say(&format!(
        "every session Established, every LAN routed {:.1} s after launch",
        all.as_secs_f64()
    ));
    assert!(all <= Duration::from_secs(30), "{all:?}");
    // The lower-latency path: r1-r3 runs through the host's delay relay.
    let t = sq.wait_path(2, Duration::from_secs(30)).unwrap_or_else(|| {
        let route = sq.router(1).status().map(|s| {
            s["routes"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["prefix"] == "192.168.4.0/24").cloned())
        });
        panic!(
            "r1 does not send C4's traffic through r2: {route:?}\n{}",
            sq.logs()
        )
    });
    say(&format!(
        "r1 → r2 → r4 is the path ({:.1} s)",
        t.as_secs_f64()
    ));
    // A steady stream first: nothing lost over 5 s.
    let from = probe.sent();
    std::thread::sleep(Duration::from_secs(5));
    let to = probe.sent();
    std::thread::sleep(Duration::from_millis(500));
    // What was lost before the first probe arrived (the routers were still
    // converging) is not judged; everything after it is.
    let before_steady = probe.missing_before(from);
    let steady = probe.missing_before(to) - before_steady;
    say(&format!("steady: {steady} of {} probes lost", to - from));
    assert_eq!(steady, 0, "probes lost before any cut\n{}", sq.logs());

    let mut memory = Vec::new();
    for n in 1..=4 {
        let m = sq
            .router(n)
            .memory()
            .unwrap_or_else(|| panic!("r{n}: cannot read memory\n{}", sq.logs()));
        let members = if n == 1 { 3 + lab::vm::AWAY_FRIENDS } else { 3 };
        say(&format!(
            "r{n} ({members} members configured): meshd RSS {:.2} MiB, peak (VmHWM) {:.2} MiB; the VM's free memory {:.1} MiB, available {:.1} MiB (of 64)",
            m.0 as f64 / 1024.0,
            m.1 as f64 / 1024.0,
            m.2 as f64 / 1024.0,
            m.3 as f64 / 1024.0
        ));
        memory.push(m);
    }

    // 1. Power cut with redundant sending (the default): nothing lost,
    //    neither at the cut nor while r2 boots and takes traffic again.
    let c = sq.cut_r2(&probe, false, None);
    say(&format!(
        "power cut, redundancy on: {} probes lost at the cut, {} while r2 came back; booted in {:.1} s, traffic back through r2 {:.1} s after power-on",
        c.lost_at_cut,
        c.lost_rejoining,
        c.booted.as_secs_f64(),
        c.rejoined.as_secs_f64()
    ));
    let redundant = (c.lost_at_cut, c.lost_rejoining);

    // 2. Without redundant sending: the loss window is BFD's detection.
    //    And once the stream runs through r3, the R1-R3 wire stalls (as a
    //    busy host made it do in CI once): R1's BFD toward r3 goes down
    //    while r2's routes still stand, and the stream must stay on r3,
    //    the member heard from last, not go back to the dead r2.
    sq.set_option_everywhere("redundancy", "0", |s| {
        s["failover"]["redundancy_max_size"].is_null()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sq.logs()));
    let c2 = sq.cut_r2(&probe, false, Some(STALL));
    say(&format!(
        "power cut, redundancy off: {}; the R1-R3 wire stalled {} ms meanwhile: r1's BFD toward r3 went down {} times",
        c2.summary(INTERVAL),
        STALL.as_millis(),
        c2.r3_downs.map_or("an unknown number of".to_string(), |n| n.to_string())
    ));

    // 3. The reset button.
    let c3 = sq.cut_r2(&probe, true, None);
    say(&format!(
        "system_reset, redundancy off: {}",
        c3.summary(INTERVAL)
    ));
    let end = probe.sent();
    std::thread::sleep(Duration::from_millis(500));
    let missing = runs(
        &probe
            .missing_seqs(end)
            .into_iter()
            .filter(|&s| s >= from)
            .collect::<Vec<u32>>(),
    );
    // What a failure shows: the steps of each cut (probe sequence numbers
    // and the host's clock) and R1's log after each.
    let story = [("redundancy on", &c), ("power cut", &c2), ("reset", &c3)]
        .iter()
        .map(|(what, c)| format!("--- {what}: steps {:?}\nr1's log:\n{}", c.marks, c.r1_log))
        .collect::<Vec<_>>()
        .join("\n");
    let r = probe.finish();
    // How steady the square's BFD was (TCG's scheduling is its jitter):
    // each down moves traffic for a while.
    if let Some(s) = sq.router(1).status() {
        for m in s["members"].as_array().into_iter().flatten().take(2) {
            say(&format!(
                "r1's BFD toward {}: {} downs ({} survived), detection {} ms, jitter {} ms",
                m["name"],
                m["bfd"]["downs"],
                m["bfd"]["downs_survived"],
                m["bfd"]["detection_ms"],
                m["bfd"]["jitter_ms"]
            ));
        }
    }
    let relayed = sq.relay.frames.load(std::sync::atomic::Ordering::Relaxed);
    say(&format!("the R1-R3 relay delayed {relayed} frames"));
    assert!(relayed > 0, "nothing crossed the delayed wire");
    say(&format!(
        "whole run: {} of {} probes lost ({} before the first arrived), longest gap {} ms",
        r.lost,
        r.sent,
        before_steady,
        r.longest_gap.as_millis()
    ));

    assert_eq!(
        redundant,
        (0, 0),
        "lost with redundant sending: missing {missing}\n{story}\n{}",
        sq.logs()
    );
    // Nothing lost anywhere else: not while the routers reloaded, not
    // between the cuts.
    assert_eq!(
        r.lost - before_steady,
        c2.lost_at_cut + c3.lost_at_cut,
        "probes lost outside the cuts: missing {missing}, cuts at {}, {}, {}\n{story}",
        c.at_seq,
        c2.at_seq,
        c3.at_seq
    );
    assert!(
        c2.r3_downs.is_some_and(|n| n >= 1),
        "the stall did not take r1's BFD toward r3 down ({:?} downs): the cut did not test a stream with every path moved\n{story}",
        c2.r3_downs
    );
    for (what, c) in [("power cut", &c2), ("reset", &c3)] {
        let window = INTERVAL * c.lost_at_cut;
        // R1 moves the stream when BFD finds r2 gone: the loss is the
        // detection time in force (the square's 40 ms, widened by BFD on a
        // jittery path up to bfd_max_detection) and the switch.
        let detection = c
            .detection
            .unwrap_or_else(|| panic!("{what}: r1's status had no BFD detection time for r2"));
        assert!(
            detection <= MAX_DETECTION,
            "{what}: r1's detection time toward r2 {detection:?}"
        );
        assert!(
            window <= detection + SWITCH,
            "{what}: {window:?} lost with a detection time of {detection:?}\n{}",
            sq.logs()
        );
        assert_eq!(
            c.lost_rejoining, 0,
            "{what}: lost while r2 rejoined: missing {missing}\n{story}"
        );
        assert!(
            c.rejoined <= lab::vm::REJOIN_LIMIT,
            "{what}: {:?}",
            c.rejoined
        );
    }
    // 64 MB less the kernel (its Image alone is 26 MB) leaves about 39 MB;
    // meshd must leave room for the rest of a router.
    for (n, (rss, _, _, available)) in memory.iter().enumerate() {
        assert!(*rss < 12 * 1024, "r{}: meshd RSS {rss} kB", n + 1);
        assert!(
            *available > 8 * 1024,
            "r{}: {available} kB available",
            n + 1
        );
    }
}

/// Sequence numbers as runs: "3468-3899 (432), 12113".
fn runs(seqs: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{} ({})", seqs[i], seqs[j], j - i + 1)
        });
        i = j + 1;
    }
    out.join(", ")
}
