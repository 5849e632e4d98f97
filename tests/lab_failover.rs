//! Fast failover on real daemons (issue: BFD and redundant sending):
//! - a stock member (wireguard-go + BIRD 2 with `bfd on`) joins the meshd mesh;
//!   BGP and BFD come up across the tunnel; each side detects the other's
//!   power cut within BFD's detection time;
//! - power cuts of the transit router move traffic in tens of milliseconds;
//! - with redundant sending, a power cut loses no game packet.
//!
//! Timing matters here: `scripts/test.sh` runs these in a release build
//! (`cargo test --release --test lab_failover`). Needs root, bird2,
//! wireguard-go, wireguard-tools, nftables.

mod lab;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::seed::{console_addr, Probe, SeedLab, Topology, SQUARE};
use lab::stock::{self, BirdBfd, StockTunnel};
use lab::{require_cmd, require_root, wait_for};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

fn needs() {
    require_root();
    require_cmd("nft", "nftables");
    require_cmd("bird", "bird2");
    require_cmd("wireguard-go", "wireguard-go");
    require_cmd("wg", "wireguard-tools");
}

fn member_bfd(lab: &SeedLab, n: usize, member: &str) -> Option<serde_json::Value> {
    let s = lab.status(n)?;
    s["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == member)
        .map(|m| m["bfd"].clone())
}

fn bird_bfd_state(lab: &SeedLab, n: usize, neighbor: &str) -> Option<String> {
    // "10.0.0.1   wXXXX51   Up   12:00:00   0.100   0.300"
    let out = stock::birdc(lab, n, &["show", "bfd", "sessions"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(neighbor))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

#[test]
fn failover_a_stock_bird_member_runs_bgp_and_bfd_with_meshd() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    needs();
    // The square plus r5, a stock router with one tunnel, to r1.
    let mut links = SQUARE.to_vec();
    links.push((1, 5));
    let topo = Topology {
        routers: 5,
        links,
        blocked: vec![(1, 4)],
        extra_members: 0,
        main_options: vec![],
    };
    let mut lab = SeedLab::build_topology("mdfi", meshd(), 9, &topo);
    for n in 1..=4 {
        lab.start(n);
    }
    let stock_tunnel = StockTunnel {
        peer: 1,
        local: "10.0.0.5".parse().unwrap(),
        remote: "10.0.0.1".parse().unwrap(),
        listen_port: 51820,
        peer_endpoint: "198.51.100.1:51820".into(),
        peer_key: lab.router(1).public_key.clone(),
        peer_asn: 65001,
    };
    stock::start(
        &mut lab,
        5,
        std::slice::from_ref(&stock_tunnel),
        BirdBfd::STOCK,
        9,
    )
    .unwrap();

    // BGP and BFD up on both sides.
    let up = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let ours = lab.bgp_state(1, "r5").as_deref() == Some("Established")
            && member_bfd(&lab, 1, "r5").is_some_and(|b| b["state"] == "Up");
        let theirs = stock::birdc(&lab, 5, &["show", "protocols", "t1"]).contains("Established")
            && bird_bfd_state(&lab, 5, "10.0.0.1").as_deref() == Some("Up");
        (ours && theirs).then_some(())
    });
    assert!(
        up.is_some(),
        "no BGP+BFD with BIRD:\n{}\n{}\n{}",
        lab.status_text(1),
        stock::birdc(&lab, 5, &["show", "protocols", "all", "t1"]),
        stock::birdc(&lab, 5, &["show", "bfd", "sessions"])
    );
    // BIRD announces no route to its overlay address; its session over its
    // own tunnel still says it is reached directly, not "unreachable".
    let r5 = lab.status(1).unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "r5")
        .cloned()
        .unwrap();
    assert_eq!(r5["path"]["direct"], true, "{}", r5["path"]);
    let bfd = member_bfd(&lab, 1, "r5").unwrap();
    println!(
        "meshd r1 <-> BIRD r5: BGP Established, BFD Up (meshd sends every {} ms, detects in {} ms)",
        bfd["tx_interval_ms"], bfd["detection_ms"]
    );
    // BIRD negotiated up to its 100 ms, multiplier 3.
    assert_eq!(bfd["detection_ms"].as_f64(), Some(300.0));
    // The stock home is reachable from the far side of the mesh, and back.
    let reach = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        (lab.ping(4, 5) && lab.ping(5, 4)).then_some(())
    });
    assert!(reach.is_some(), "C4 and C5 cannot reach each other");

    // Power cut of the stock member: meshd notices within BFD's 300 ms.
    lab.power_cut(5);
    let cut = Instant::now();
    let noticed = wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        member_bfd(&lab, 1, "r5")
            .is_some_and(|b| b["state"] != "Up")
            .then(|| cut.elapsed())
    })
    .expect("meshd did not notice the stock member's power cut");
    println!(
        "stock member cut: meshd's BFD noticed after {} ms",
        noticed.as_millis()
    );
    assert!(noticed <= Duration::from_millis(300 + 200), "{noticed:?}");
    // Traffic moved off it at once; BGP and the routes go once the silence
    // outlasts the confirmation time (bfd_confirm, 2 s).
    assert_eq!(member_bfd(&lab, 1, "r5").unwrap()["traffic_moved"], true);
    let confirmed = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        (lab.bgp_state(1, "r5").as_deref() != Some("Established")).then(|| cut.elapsed())
    })
    .expect("meshd kept BGP with the dead stock member");
    println!(
        "stock member cut: BGP taken down after {} ms",
        confirmed.as_millis()
    );
    assert!(
        confirmed >= noticed + Duration::from_millis(1800)
            && confirmed <= noticed + Duration::from_millis(2000 + 500),
        "BFD down after {noticed:?}, BGP down after {confirmed:?}"
    );

    // Back on; then cut meshd's r1: BIRD notices within its detection time
    // (our multiplier 4 × its 100 ms = 400 ms).
    lab.links_up(5);
    stock::start(
        &mut lab,
        5,
        std::slice::from_ref(&stock_tunnel),
        BirdBfd::STOCK,
        9,
    )
    .unwrap();
    let back = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (bird_bfd_state(&lab, 5, "10.0.0.1").as_deref() == Some("Up")).then_some(())
    });
    assert!(back.is_some(), "BFD with BIRD did not come back");
    std::thread::sleep(Duration::from_secs(1));
    lab.power_cut(1);
    let cut = Instant::now();
    let noticed = wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        (bird_bfd_state(&lab, 5, "10.0.0.1").as_deref() != Some("Up")).then(|| cut.elapsed())
    })
    .expect("BIRD did not notice meshd's power cut");
    println!(
        "meshd r1 cut: BIRD's BFD noticed after {} ms",
        noticed.as_millis()
    );
    assert!(noticed <= Duration::from_millis(400 + 300), "{noticed:?}");
    let proto = stock::birdc(&lab, 5, &["show", "protocols", "all", "t1"]);
    let bgp_went = wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        let p = stock::birdc(&lab, 5, &["show", "protocols", "all", "t1"]);
        (!p.contains("Established")).then_some(p)
    });
    assert!(
        bgp_went.is_some(),
        "BIRD kept BGP up after BFD down:\n{proto}"
    );
}

/// One power cut of the transit router, as the stream saw it.
struct Cut {
    gap: Duration,
    lost: u32,
    /// Where the probes were lost, against the steps of the cut, and the
    /// logs of r1 and the transit when more was lost than the gap holds.
    story: String,
}

/// Power cuts of the transit router on the meshd square; returns the gaps and
/// the probes lost.
fn meshd_cuts(tag: &str, redundancy: bool, runs: usize) -> Vec<Cut> {
    needs();
    let mut topo = Topology::seed_square();
    if !redundancy {
        topo.main_options = vec![("redundancy", "0".into())];
    }
    let mut lab = SeedLab::build_topology(tag, meshd(), 9, &topo);
    lab.start_all();
    lab.wait_all_reachable(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("did not converge\n{}", lab.logs()));
    let settled = |lab: &SeedLab| {
        SQUARE.iter().all(|&(a, b)| {
            lab.bgp_state(a, &format!("r{b}")).as_deref() == Some("Established")
                && lab.bgp_state(b, &format!("r{a}")).as_deref() == Some("Established")
        })
    };
    let mut out = Vec::new();
    for run in 1..=runs {
        wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            settled(&lab).then_some(())
        })
        .unwrap_or_else(|| panic!("run {run}: sessions not back\n{}", lab.logs()));
        let probe = Probe::start(
            &lab.router(1).console,
            &lab.router(4).console,
            console_addr(4),
            Duration::from_millis(5),
        );
        let transit = lab
            .settled_first_hop(1, 4, Duration::from_secs(20))
            .expect("a settled path");
        let seen = r1_paths(&lab);
        let before = probe.last_seq().unwrap_or(0);
        // The probes sent by each step, to place the losses.
        let mut marks = vec![("cut", probe.sent())];
        lab.power_cut(transit);
        let resumed = wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
            (probe.last_seq().unwrap_or(0) > before + 100).then_some(())
        });
        assert!(resumed.is_some(), "run {run}: traffic did not resume");
        marks.push(("resumed", probe.sent()));
        // The whole run is judged: the stream goes on while the router
        // comes back, rejoins and takes traffic again.
        lab.power_on(transit);
        marks.push(("power on", probe.sent()));
        wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            settled(&lab).then_some(())
        })
        .unwrap_or_else(|| panic!("run {run}: r{transit} did not rejoin\n{}", lab.logs()));
        marks.push(("sessions up", probe.sent()));
        std::thread::sleep(Duration::from_secs(3));
        let r = probe.finish();
        marks.push(("end", r.sent));
        let where_lost = r
            .losses
            .iter()
            .map(|&(first, n)| {
                let step = marks
                    .iter()
                    .rev()
                    .find(|m| m.1 <= first)
                    .map_or("start", |m| m.0);
                format!("{n} from #{first} (after {step})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let steps = marks
            .iter()
            .map(|m| format!("{} #{}", m.0, m.1))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "run {run}: r{transit} cut: gap {} ms, {} of {} probes lost ({seen})",
            r.longest_gap.as_millis(),
            r.lost,
            r.sent
        );
        let mut story = format!("run {run}: lost {where_lost}; steps: {steps}");
        if r.lost > (r.longest_gap.as_millis() / 5) as u32 {
            for n in [1, transit, 4] {
                story.push_str(&format!(
                    "\n--- r{n} status ---\n{}\n--- r{n} log ---\n{}",
                    lab.status_text(n),
                    lab.log(n)
                ));
            }
        }
        out.push(Cut {
            gap: r.longest_gap,
            lost: r.lost,
            story,
        });
    }
    out
}

/// R1's view of its two transits before a cut: the latency route selection
/// uses and BFD's detection time, per member.
fn r1_paths(lab: &SeedLab) -> String {
    let Some(s) = lab.status(1) else {
        return "r1's status unread".into();
    };
    let members = s["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .map(|m| {
            format!(
                "{}: latency {} ms, detection {} ms",
                m["name"].as_str().unwrap_or("?"),
                m["latency_ms"],
                m["bfd"]["detection_ms"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn failover_with_bfd_moves_traffic_in_tens_of_milliseconds() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs = meshd_cuts("mdfb", false, 3);
    // Every probe lost lies in the cut's gap: none while the router came
    // back, rejoined and took traffic again.
    for c in &runs {
        let in_gap = (c.gap.as_millis() / 5) as u32;
        assert!(
            c.lost <= in_gap,
            "{} lost, {in_gap} of them in the gap\n{}",
            c.lost,
            c.story
        );
    }
    let mut gaps: Vec<Duration> = runs.into_iter().map(|c| c.gap).collect();
    gaps.sort();
    println!(
        "BFD 10 ms x 4, 3 power cuts: median {} ms, worst {} ms",
        gaps[1].as_millis(),
        gaps[2].as_millis()
    );
    assert!(gaps[1] <= Duration::from_millis(50), "median {:?}", gaps[1]);
    assert!(gaps[2] <= Duration::from_millis(100), "worst {:?}", gaps[2]);
}

#[test]
fn failover_with_redundant_sending_loses_no_game_packet() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs = meshd_cuts("mdfr", true, 3);
    let lost: u32 = runs.iter().map(|c| c.lost).sum();
    println!("redundant sending, 3 power cuts: {lost} probes lost");
    let stories: Vec<&str> = runs.iter().map(|c| c.story.as_str()).collect();
    assert_eq!(lost, 0, "{}", stories.join("\n"));
}
