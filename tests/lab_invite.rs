//! Invites (issue 17, the part about joining a mesh by invite) on real meshd
//! processes in network namespaces (LAB.md). Four homes whose configs hold
//! only their own main section (no member, no number, every LAN
//! 192.168.1.0/24 with its console at .10), on one `inet` bridge:
//! - r1 invites r2 (`meshd invite`), r2 joins with the token (`meshd join`):
//!   both files get the other's member section, the consoles reach each
//!   other at their aliases within 30 s, r1 counts one join and nothing
//!   pending;
//! - r2 invites r3, r3 joins: c2 and c3 reach each other; then, from r2's
//!   signed group record, r1 and r3 write each other's section and c1 and
//!   c3 reach each other too;
//! - refused, each leaving both files byte for byte as they were: an
//!   expired token, a token already used, a token with one bit flipped
//!   (refused by the joiner itself, nothing sent), and a flood of 2,000
//!   join-looking datagrams in a second, rate-capped and counted, after which
//!   a fresh invite still works: r1 invites r4, and within 30 s of its
//!   join every console reaches every other (r4 learns r2 from r1's record,
//!   r3 from r2's);
//! - r1 removes r3 (`meshd remove`): within 5 s no other router has a
//!   tunnel to it or a route to its LAN, and the others still reach each
//!   other.
//!
//! Needs root, iproute2, iputils-ping. The flood is timed: `scripts/test.sh`
//! runs this file in a release build. One lab at a time.

mod lab;

use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::seed::{SeedLab, Topology};
use lab::{json_path_present, luci_contract, require_cmd, require_root, wait_for, Netns};
use meshd::uci::Package;
use serde_json::Value;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// BFD (on by default) detects a dead tunnel; the hold time only confirms.
const HOLD: u16 = 9;
/// `meshd join` gives up within about 25 s; a command still running after
/// this is killed and the test fails.
const JOIN_LIMIT: Duration = Duration::from_secs(40);
const INVITE_LIMIT: Duration = Duration::from_secs(10);
/// How long after a join the consoles must reach each other.
const REACH_LIMIT: Duration = Duration::from_secs(30);
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const FLOOD: u32 = 2000;
/// How long after `meshd remove` began the removed member may still have a
/// tunnel or a route anywhere.
const REMOVE_LIMIT: Duration = Duration::from_secs(5);
const COUNTERS: [&str; 8] = [
    "joined",
    "refused_expired",
    "refused_used",
    "refused_bad_mac",
    "refused_unknown",
    "malformed",
    "rate_limited",
    "bad_tokens",
];

fn meshd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meshd"))
}

/// A meshd command run to its end (or killed at its limit).
struct Ran {
    /// `None`: still running at the limit, killed.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.2} s\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// `meshd -c <rN's config> <args>` inside router `n`'s namespace.
fn meshd_cmd(lab: &SeedLab, n: usize, args: &[&str], limit: Duration) -> Ran {
    let r = lab.router(n);
    let start = Instant::now();
    let mut child =
        r.ns.cmd(meshd().to_str().unwrap())
            .arg("-c")
            .arg(&r.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run meshd");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_for(limit, Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    });
    let took = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took,
    }
}

/// `meshd invite` on router `n`, carrying its own underlay endpoint; the
/// token (checked for its form).
fn invite(lab: &SeedLab, n: usize, name: &str, expires: Option<&str>) -> String {
    let endpoint = format!("198.51.100.{n}:51820");
    let mut args = vec!["invite", "--name", name, "--endpoint", &endpoint];
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    let ran = meshd_cmd(lab, n, &args, INVITE_LIMIT);
    assert_eq!(ran.code, Some(0), "r{n}: meshd {args:?}: {ran}");
    let token = ran.stdout.lines().next().unwrap_or("").trim().to_string();
    let body = token
        .strip_prefix("MESHD1")
        .unwrap_or_else(|| panic!("r{n}: the token does not start with MESHD1: {token:?}\n{ran}"));
    assert!(
        body.len() >= 16 && body.bytes().all(|b| BASE32.contains(&b)),
        "r{n}: the token is not MESHD1 and uppercase base32: {token:?}"
    );
    token
}

fn join(lab: &SeedLab, n: usize, token: &str) -> Ran {
    meshd_cmd(lab, n, &["join", token], JOIN_LIMIT)
}

fn invites(lab: &SeedLab, n: usize) -> Value {
    let s = lab
        .status(n)
        .unwrap_or_else(|| panic!("r{n} does not answer status\n{}", lab.logs()));
    assert!(
        s["invites"].is_object(),
        "r{n}'s status has no invites object: {s}"
    );
    s["invites"].clone()
}

/// Router `n`'s invite counters, in the order of [`COUNTERS`] (a counter
/// missing from the status fails the test).
fn counters(lab: &SeedLab, n: usize) -> [u64; 8] {
    let inv = invites(lab, n);
    COUNTERS.map(|c| {
        inv[c]
            .as_u64()
            .unwrap_or_else(|| panic!("r{n}: invites.{c} is not a number: {inv}"))
    })
}

fn count(c: &[u64; 8], name: &str) -> u64 {
    c[COUNTERS.iter().position(|x| *x == name).unwrap()]
}

/// How much counter `name` went up from `before` to `after` (a counter
/// that went down, a restart, fails the test).
fn since(before: &[u64; 8], after: &[u64; 8], name: &str) -> u64 {
    count(after, name)
        .checked_sub(count(before, name))
        .unwrap_or_else(|| panic!("{name} went down: {before:?} -> {after:?}"))
}

/// What went up between `before` and `after`, by name.
fn delta(before: &[u64; 8], after: &[u64; 8]) -> Vec<(&'static str, i64)> {
    COUNTERS
        .iter()
        .zip(before.iter().zip(after))
        .map(|(name, (b, a))| (*name, *a as i64 - *b as i64))
        .filter(|(_, d)| *d != 0)
        .collect()
}

fn pending(lab: &SeedLab, n: usize) -> Vec<(String, u64)> {
    let inv = invites(lab, n);
    inv["pending"]
        .as_array()
        .unwrap_or_else(|| panic!("r{n}: invites.pending is not a list: {inv}"))
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["expires_in_s"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// The member sections an invite wrote in a config file (not those the
/// group's records added, which name the member that brought them in with
/// `option via`): (section name, public key, endpoints).
fn members(path: &Path) -> Vec<(String, String, Vec<String>)> {
    sections(path)
        .into_iter()
        .filter(|m| m.via.is_none())
        .map(|m| (m.name, m.key, m.endpoints))
        .collect()
}

/// A member section as the file has it.
#[derive(Debug, Clone, PartialEq)]
struct Section {
    name: String,
    key: String,
    endpoints: Vec<String>,
    via: Option<String>,
    vouch: bool,
    removed: bool,
    enabled: bool,
}

/// Every member section of a config file.
fn sections(path: &Path) -> Vec<Section> {
    let text = std::fs::read_to_string(path).unwrap();
    let package = Package::parse(&text)
        .unwrap_or_else(|e| panic!("{} does not read as UCI: {e:?}\n{text}", path.display()));
    package
        .sections_of_type("member")
        .map(|s| {
            let single = |o: &str| s.get(o).and_then(|v| v.as_single()).map(str::to_string);
            Section {
                name: s.name.clone().unwrap_or_default(),
                key: single("public_key").unwrap_or_default(),
                endpoints: s
                    .get("endpoint")
                    .map(|v| v.items().to_vec())
                    .unwrap_or_default(),
                via: single("via"),
                vouch: single("vouch").as_deref() == Some("1"),
                removed: single("removed").as_deref() == Some("1"),
                enabled: single("enabled").as_deref() != Some("0"),
            }
        })
        .collect()
}

/// Router `n`'s section for router `m` (by key).
fn section_for(lab: &SeedLab, n: usize, m: usize) -> Option<Section> {
    let key = &lab.router(m).public_key;
    sections(&lab.router(n).config)
        .into_iter()
        .find(|s| s.key == *key)
}

fn file(lab: &SeedLab, n: usize) -> Vec<u8> {
    std::fs::read(&lab.router(n).config).unwrap()
}

/// The alias of router `n`'s console, as its router maps its LAN.
fn alias(lab: &SeedLab, n: usize) -> Ipv4Addr {
    lan_alias(lab, n, "192.168.1.0/24")
}

/// Waits until consoles `a` and `b` reach each other at their aliases, at
/// most [`REACH_LIMIT`] after `joined` (when `meshd join` returned).
fn reach(lab: &SeedLab, a: usize, b: usize, aliases: &[Ipv4Addr], joined: Instant) {
    let limit = REACH_LIMIT.saturating_sub(joined.elapsed());
    let ok = wait_for(limit, Duration::from_millis(200), || {
        (lab.ping_addr(a, aliases[b - 1]) && lab.ping_addr(b, aliases[a - 1])).then_some(())
    });
    assert!(
        ok.is_some(),
        "c{a} and c{b} do not reach each other at their aliases {} and {} within {} s of the join\n{}\n--- r{a} status ---\n{}\n--- r{b} status ---\n{}",
        aliases[a - 1],
        aliases[b - 1],
        REACH_LIMIT.as_secs(),
        lab.logs(),
        lab.status_text(a),
        lab.status_text(b)
    );
}

/// Router `inviter` invites `joiner` (section name `rJ`), which joins:
/// checked as issue 17 says. Returns the token used and when `meshd join`
/// returned.
fn invite_and_join(
    lab: &SeedLab,
    inviter: usize,
    joiner: usize,
    expires: Option<&str>,
    aliases: &[Ipv4Addr],
    after_flood: bool,
) -> (String, Instant) {
    let name = format!("r{joiner}");
    let before = counters(lab, inviter);
    let token = invite(lab, inviter, &name, expires);
    let waiting = pending(lab, inviter);
    let expected_s = match expires {
        None => 24 * 3600,
        Some("30m") => 1800,
        Some(e) => panic!("no expected lifetime for {e}"),
    };
    assert!(
        waiting
            .iter()
            .any(|(n, s)| *n == name && *s <= expected_s && *s + 60 >= expected_s),
        "r{inviter}: the invite for {name} ({expected_s} s) is not pending as it should be: {waiting:?}"
    );
    let joiner_members_before = members(&lab.router(joiner).config);
    let inviter_members_before = members(&lab.router(inviter).config);
    let ran = join(lab, joiner, &token);
    assert_eq!(
        ran.code,
        Some(0),
        "r{joiner} did not join r{inviter}: {ran}\n{}",
        lab.logs()
    );
    let joined_at = Instant::now();
    // The joiner's file: the inviter, with its key and the token's endpoint.
    let new: Vec<_> = members(&lab.router(joiner).config)
        .into_iter()
        .filter(|m| !joiner_members_before.contains(m))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "r{joiner}'s file should have gained one member section (the inviter's): {new:?}\n{}",
        String::from_utf8_lossy(&file(lab, joiner))
    );
    let (inviter_name, key, endpoints) = &new[0];
    assert_eq!(
        key,
        &lab.router(inviter).public_key,
        "r{joiner}'s new member {inviter_name} is not r{inviter}'s key"
    );
    assert_eq!(
        endpoints,
        &vec![format!("198.51.100.{inviter}:51820")],
        "r{joiner}'s new member {inviter_name}: the token's endpoint"
    );
    assert!(
        ran.stdout.contains(inviter_name.as_str()),
        "`meshd join` on r{joiner} does not name the inviter {inviter_name}: {ran}"
    );
    // The inviter's file: the joiner, under the invite's name, with its key.
    let new: Vec<_> = members(&lab.router(inviter).config)
        .into_iter()
        .filter(|m| !inviter_members_before.contains(m))
        .collect();
    assert!(
        new.len() == 1 && new[0].0 == name && new[0].1 == lab.router(joiner).public_key,
        "r{inviter}'s file should have gained `config member '{name}'` with r{joiner}'s key {}: {new:?}\n{}",
        lab.router(joiner).public_key,
        String::from_utf8_lossy(&file(lab, inviter))
    );
    reach(lab, inviter, joiner, aliases, joined_at);
    let first_ping = joined_at.elapsed();
    // The counters and the join's state, once both have reloaded.
    let after = counters(lab, inviter);
    let mut moved = delta(&before, &after);
    // Right after a flood the rate cap's bucket may still be empty: the
    // first request can be dropped (and counted), a retry gets through.
    let capped = if after_flood {
        let i = moved.iter().position(|(k, _)| *k == "rate_limited");
        i.map_or(0, |i| moved.remove(i).1)
    } else {
        0
    };
    assert_eq!(
        moved,
        vec![("joined", 1)],
        "r{inviter}'s invite counters after one join"
    );
    assert!(
        capped <= 3,
        "r{inviter} rate-limited {capped} join datagrams after the flood (its requests come once a second)"
    );
    let waiting = pending(lab, inviter);
    assert!(
        !waiting.iter().any(|(n, _)| *n == name),
        "r{inviter}: the invite for {name} is still pending after the join: {waiting:?}"
    );
    let state = &invites(lab, joiner)["join"];
    assert!(
        state["state"] == "joined" && state["inviter"] == inviter_name.as_str(),
        "r{joiner}'s join state: {state}"
    );
    println!(
        "r{inviter} invited r{joiner} (as {name}; r{inviter} is {inviter_name} in r{joiner}'s file): \
         `meshd join` took {:.2} s; c{inviter} <-> c{joiner} ping at their aliases {:.2} s after it returned",
        ran.took.as_secs_f64(),
        first_ping.as_secs_f64()
    );
    if after_flood {
        println!("r{inviter} rate-limited {capped} of r{joiner}'s requests (the flood emptied its bucket)");
    }
    (token, joined_at)
}

/// A join that must be refused: exit 1 within about 25 s, a reason on
/// stderr, both files as they were, `expect` the only invite counter that
/// moved at `counted_by` (r1, or the joiner itself), none at the other.
fn refused(
    lab: &SeedLab,
    what: &str,
    joiner: usize,
    token: &str,
    counted_by: usize,
    expect: &'static str,
) {
    let r1_file = file(lab, 1);
    let joiner_file = file(lab, joiner);
    let r1_before = counters(lab, 1);
    let joiner_before = counters(lab, joiner);
    let state_before = invites(lab, joiner)["join"].clone();
    let ran = join(lab, joiner, token);
    assert_eq!(
        ran.code,
        Some(1),
        "{what}: `meshd join` on r{joiner} should fail with exit 1 within {} s: {ran}",
        JOIN_LIMIT.as_secs()
    );
    assert!(
        ran.took <= Duration::from_secs(30),
        "{what}: `meshd join` took {:.1} s to give up (about 25 s at most)",
        ran.took.as_secs_f64()
    );
    assert!(
        !ran.stderr.trim().is_empty(),
        "{what}: `meshd join` says nothing about why: {ran}"
    );
    // A late write (a reload, an accept after the command gave up) would
    // show within a second.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        file(lab, 1) == r1_file,
        "{what}: r1's config changed:\n--- before ---\n{}--- after ---\n{}",
        String::from_utf8_lossy(&r1_file),
        String::from_utf8_lossy(&file(lab, 1))
    );
    assert!(
        file(lab, joiner) == joiner_file,
        "{what}: r{joiner}'s config changed:\n--- before ---\n{}--- after ---\n{}",
        String::from_utf8_lossy(&joiner_file),
        String::from_utf8_lossy(&file(lab, joiner))
    );
    let r1_after = counters(lab, 1);
    let joiner_after = counters(lab, joiner);
    // The inviter answers a refused request with a signed refusal, and the
    // joiner stops there: one request, counted once. A token the joiner
    // itself refuses is counted once, there, and nothing is sent.
    let (r1_moved, joiner_moved) = (
        delta(&r1_before, &r1_after),
        delta(&joiner_before, &joiner_after),
    );
    let (counted, quiet, quiet_moved) = if counted_by == 1 {
        (&r1_moved, joiner, &joiner_moved)
    } else {
        (&joiner_moved, 1, &r1_moved)
    };
    assert_eq!(
        counted,
        &vec![(expect, 1)],
        "{what}: r{counted_by}'s invite counters"
    );
    assert!(
        quiet_moved.is_empty(),
        "{what}: r{quiet}'s invite counters moved: {quiet_moved:?}"
    );
    let state = invites(lab, joiner)["join"].clone();
    if counted_by == 1 {
        // The joiner's status tells this refusal, not an earlier one.
        assert!(
            state["state"] == "failed"
                && state["reason"].as_str().is_some_and(|r| !r.is_empty())
                && state != state_before,
            "{what}: r{joiner}'s join state {state} (before: {state_before})"
        );
    }
    println!(
        "{what}: refused, `meshd join` exit {:?} after {:.2} s: {}; r{counted_by} {expect} +1 (join state: {state})",
        ran.code,
        ran.took.as_secs_f64(),
        ran.stderr.trim().replace('\n', " / ")
    );
}

/// The token with one bit flipped: one base32 character in its middle
/// swapped for the one whose 5-bit value differs in the lowest bit.
fn flip_one_bit(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = "MESHD1".len() + (b.len() - "MESHD1".len()) / 2;
    let v = BASE32.iter().position(|&c| c == b[i]).unwrap();
    b[i] = BASE32[v ^ 1];
    String::from_utf8(b).unwrap()
}

/// This file's lab, alone, with what it needs.
fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    let one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    require_cmd("ip", "iproute2");
    require_cmd("ping", "iputils-ping");
    one
}

#[test]
fn homes_join_by_invite_and_bad_tokens_are_refused() {
    let _one = one_lab();
    // Four routers on one bridge, every pair able to reach each other;
    // the lab's member sections are dropped below.
    let topo = Topology {
        routers: 4,
        links: vec![],
        blocked: vec![],
        extra_members: 0,
        main_options: vec![],
    };
    let mut lab = SeedLab::build_topology("mdinv", meshd(), HOLD, &topo);
    for n in 1..=4 {
        lab.move_to_default_lan(n);
        let r = lab.router(n);
        // The main section alone, with what the lab needs (key file, port,
        // socket, TUN, timers, log level), enabled, announcing the default
        // LAN, no number of its own.
        let text = std::fs::read_to_string(&r.config).unwrap();
        let main = &text[..text.find("\nconfig member").unwrap_or(text.len())];
        let mut home: String = main
            .lines()
            .filter(|l| {
                !l.starts_with("\toption overlay ")
                    && !l.starts_with("\toption asn ")
                    && !l.starts_with("\tlist announce ")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        home.push_str("\toption enabled '1'\n\tlist announce '192.168.1.0/24'\n");
        assert!(
            !home.contains("config member") && !home.contains("10.0.0.") && !home.contains("6500"),
            "{home}"
        );
        std::fs::write(&r.config, home).unwrap();
    }
    lab.start_all();
    let aliases: Vec<Ipv4Addr> = (1..=4).map(|n| alias(&lab, n)).collect();
    for n in 1..=4 {
        assert!(
            members(&lab.router(n).config).is_empty(),
            "r{n} starts with members"
        );
        assert_eq!(counters(&lab, n), [0; 8], "r{n}'s invite counters at start");
        assert!(pending(&lab, n).is_empty(), "r{n}: pending at start");
    }
    // Nobody reaches anybody before an invite.
    assert!(
        !lab.ping_addr(2, aliases[0]),
        "c2 reaches c1 before any invite"
    );
    println!("aliases: {aliases:?}");

    // 1. r1 invites r2 (the default lifetime, 24 h).
    let (used, _) = invite_and_join(&lab, 1, 2, None, &aliases, false);
    // 2. r2 invites r3 (30 minutes).
    let (_, r3_joined) = invite_and_join(&lab, 2, 3, Some("30m"), &aliases, false);
    // The group: r2's record lists its inviter r1 and r3, whom it invited.
    // r1 and r3 each write the other's section from it (`via` r2), with no
    // invite between them, and their consoles reach each other.
    reach(&lab, 1, 3, &aliases, r3_joined);
    println!(
        "group: c1 <-> c3 ping at their aliases {:.2} s after r3 joined r2",
        r3_joined.elapsed().as_secs_f64()
    );
    group_added(&lab, 1, 3, 2);
    group_added(&lab, 3, 1, 2);

    // 3. Refusals, r4 joining r1.
    let late = invite(&lab, 1, "late4", Some("1"));
    std::thread::sleep(Duration::from_secs(3));
    refused(&lab, "an expired token", 4, &late, 1, "refused_expired");
    refused(&lab, "a token already used", 4, &used, 1, "refused_used");
    let typo = invite(&lab, 1, "typo4", None);
    let damaged = flip_one_bit(&typo);
    assert_ne!(damaged, typo);
    refused(
        &lab,
        "a token with one bit flipped",
        4,
        &damaged,
        4,
        "bad_tokens",
    );
    // Nothing reached r1: its invite is still there.
    let waiting = pending(&lab, 1);
    assert!(
        waiting.iter().any(|(n, _)| n == "typo4"),
        "r1: the invite whose token was damaged is no longer pending: {waiting:?}"
    );
    // What the LuCI status view reads of invites (its contract), now that
    // r1 has one pending and r4's last join failed: lab_nat checks the
    // rest of the contract, where neither is so.
    for (n, doc) in [(1, lab.status(1)), (4, lab.status(4))] {
        let doc = doc.unwrap_or_else(|| panic!("r{n} does not answer status"));
        for path in luci_contract()["invites"].as_array().unwrap() {
            let path = path.as_str().unwrap();
            let only_at = match path {
                p if p.starts_with("invites.pending[].") => 1,
                "invites.join.reason" => 4,
                _ => n,
            };
            if n == only_at {
                assert!(
                    json_path_present(&doc, path),
                    "r{n}: the status view reads {path}, meshd does not write it"
                );
            }
        }
    }

    // The flood: from a host on the internet bridge, 2,000 datagrams that
    // look like join requests (0x4A, version 1, kind 1, random bytes) in
    // about a second.
    let attacker = Netns::new(&format!("{}x", lab.tag));
    lab::veth(&attacker, "eth0", "198.51.100.66/24", &lab.inet, "wx", "");
    lab.inet.ip(&["link", "set", "wx", "master", "br0"]);
    let r1_file = file(&lab, 1);
    let before = counters(&lab, 1);
    let kernel_before = lab.udp_rcvbuf_errors(1);
    let sender = attacker.spawn(move || {
        let s = UdpSocket::bind("198.51.100.66:40000").unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let start = Instant::now();
        let mut sent = 0u32;
        for i in 0..FLOOD {
            let len = 3 + (rnd() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            b[..3].copy_from_slice(&[0x4A, 0x01, 0x01]);
            if s.send_to(&b, "198.51.100.1:51820").is_ok() {
                sent += 1;
            }
            let due = start + Duration::from_micros(500 * (i as u64 + 1));
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        (sent, start.elapsed())
    });
    let (sent, took) = sender.join().unwrap();
    assert_eq!(sent, FLOOD, "the flood was not all sent");
    let handled = |c: &[u64; 8]| {
        [
            "rate_limited",
            "malformed",
            "refused_bad_mac",
            "refused_unknown",
        ]
        .iter()
        .map(|k| since(&before, c, k))
        .sum::<u64>()
    };
    let kernel = lab.udp_rcvbuf_errors(1) - kernel_before;
    // Until r1 has read everything that reached its socket.
    let after = wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        let c = counters(&lab, 1);
        (handled(&c) + kernel >= FLOOD as u64).then_some(c)
    })
    .unwrap_or_else(|| counters(&lab, 1));
    let kernel = lab.udp_rcvbuf_errors(1) - kernel_before;
    let d = |k| since(&before, &after, k);
    println!(
        "flood: {FLOOD} datagrams in {:.2} s; r1: rate_limited {}, malformed {}, refused_bad_mac {}, refused_unknown {}, dropped by the kernel {kernel}; other changes {:?}",
        took.as_secs_f64(),
        d("rate_limited"),
        d("malformed"),
        d("refused_bad_mac"),
        d("refused_unknown"),
        delta(&before, &after)
    );
    assert!(
        took <= Duration::from_millis(1500),
        "the flood took {:.2} s, not about one",
        took.as_secs_f64()
    );
    assert!(
        d("rate_limited") > 1000,
        "r1 rate-limited {} of {FLOOD} join datagrams sent in {:.2} s (10/s, burst 20)",
        d("rate_limited"),
        took.as_secs_f64()
    );
    assert_eq!(
        handled(&after) + kernel,
        FLOOD as u64,
        "r1's rate_limited + malformed + refused_bad_mac + refused_unknown (+ the kernel's drops) should account for the {FLOOD} datagrams: {:?}",
        delta(&before, &after)
    );
    for k in ["joined", "refused_expired", "refused_used", "bad_tokens"] {
        assert_eq!(d(k), 0, "r1's {k} moved under the flood");
    }
    assert!(
        file(&lab, 1) == r1_file,
        "r1's config changed under the flood:\n{}",
        String::from_utf8_lossy(&file(&lab, 1))
    );

    // After the flood a fresh invite still works.
    let (_, r4_joined) = invite_and_join(&lab, 1, 4, None, &aliases, true);
    let inv = invites(&lab, 1);
    assert_eq!(inv["joined"], 2, "r1 counts two joins: {inv}");
    println!("r1's invites at the end: {inv}");

    // Every console reaches every other at its alias within 30 s of the
    // last join: r4 learns r2 from r1's record, then r3 from r2's.
    let mut pairs = Vec::new();
    for a in 1..=4 {
        for b in a + 1..=4 {
            reach(&lab, a, b, &aliases, r4_joined);
            pairs.push(format!(
                "c{a}-c{b} {:.2} s",
                r4_joined.elapsed().as_secs_f64()
            ));
        }
    }
    println!("group: pairs reached (in turn) {}", pairs.join(", "));
    println!(
        "group: every console reaches every other {:.2} s after r4 joined r1",
        r4_joined.elapsed().as_secs_f64()
    );
    group_added(&lab, 4, 2, 1);
    group_added(&lab, 4, 3, 2);
    group_added(&lab, 2, 4, 1);
    group_added(&lab, 3, 4, 1);
    for n in 1..=4 {
        let g = &lab.status(n).expect("status")["group"];
        assert!(
            g["version"].as_u64().is_some() && g["bad"] == 0 && g["edit_errors"] == 0,
            "r{n}'s group: {g}"
        );
    }

    // 5. r1 removes r3, whom r2 brought in: a removal by any member allowed
    // to invite wins. Within 5 s no other router has a tunnel to r3 or a
    // route to its LAN: r1 and r2 (which vouched for it) keep its section
    // marked removed, r4 (where the group added it) deletes it.
    let r3_at_r1 = section_for(&lab, 1, 3).unwrap().name;
    let removing = Instant::now();
    let ran = meshd_cmd(&lab, 1, &["remove", &r3_at_r1], INVITE_LIMIT);
    assert_eq!(ran.code, Some(0), "r1: meshd remove {r3_at_r1}: {ran}");
    let r3_key = lab.router(3).public_key.clone();
    let r3_lan = format!(
        "{}/24",
        aliases[2].to_string().trim_end_matches(".10").to_string() + ".0"
    );
    let still = |n: usize| -> Option<String> {
        let Some(s) = lab.status(n) else {
            return Some("no status".into());
        };
        let tunnel = s["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["public_key"] == r3_key.as_str());
        let route = s["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["prefix"] == r3_lan.as_str());
        (tunnel || route).then(|| format!("tunnel {tunnel}, route to {r3_lan} {route}"))
    };
    let gone = wait_for(
        REMOVE_LIMIT.saturating_sub(removing.elapsed()),
        Duration::from_millis(50),
        || [1, 2, 4].iter().all(|&n| still(n).is_none()).then_some(()),
    );
    assert!(
        gone.is_some(),
        "5 s after `meshd remove` on r1 began, r3 still has a tunnel or route: r1 {:?}, r2 {:?}, r4 {:?}\n{}",
        still(1),
        still(2),
        still(4),
        lab.logs()
    );
    println!(
        "group: r3 removed by r1: no tunnel or route to it at r1, r2, r4 {:.2} s after `meshd remove` began (the command took {:.2} s: it waits for the file)",
        removing.elapsed().as_secs_f64(),
        ran.took.as_secs_f64()
    );
    for n in [1, 2] {
        let s = section_for(&lab, n, 3).unwrap_or_else(|| panic!("r{n} lost r3's section"));
        assert!(s.removed && !s.enabled, "r{n}'s section for r3: {s:?}");
    }
    assert!(
        section_for(&lab, 4, 3).is_none(),
        "r4 keeps the section the group added for r3:\n{}",
        String::from_utf8_lossy(&file(&lab, 4))
    );
    assert!(!lab.ping_addr(1, aliases[2]), "c1 still reaches c3");
    for (a, b) in [(1, 2), (1, 4), (2, 4)] {
        assert!(
            lab.ping_addr(a, aliases[b - 1]),
            "c{a} no longer reaches c{b} after r3's removal"
        );
    }
}

/// Router `n`'s file has a section for router `m` that the group's records
/// added (not an invite), naming router `via`'s section as the one whose
/// record brought it in.
fn group_added(lab: &SeedLab, n: usize, m: usize, via: usize) {
    let s = section_for(lab, n, m).unwrap_or_else(|| {
        panic!(
            "r{n} has no section for r{m}:\n{}",
            String::from_utf8_lossy(&file(lab, n))
        )
    });
    let via_name = section_for(lab, n, via).map(|v| v.name);
    assert!(
        s.via.is_some() && s.via == via_name && !s.vouch && s.enabled,
        "r{n}'s section for r{m} should be added by the group via r{via} ({via_name:?}): {s:?}"
    );
}

/// Issue 17: "a config written by hand in wave-1 style (explicit overlay,
/// asn, prefixes) still runs unchanged next to invited members". r1, r2 and
/// r3 run the seed lab's configs (numbers and endpoints by hand, LANs
/// 192.168.1-3.0/24); r4 has its main section alone (no numbers, its LAN
/// 192.168.4.0/24). r1 invites r4: c1 and c4 reach each other (c4 at its
/// alias, c1 at its own address: r1 maps nothing), r2 and r3 write r4's
/// section from r1's group record, and meanwhile nothing of the hand-written
/// mesh moves: no session among r1-r3 goes down, every line of their files
/// stays, c1-c3 keep reaching each other.
#[test]
fn a_hand_written_mesh_runs_unchanged_next_to_an_invited_member() {
    let _one = one_lab();
    let topo = Topology {
        routers: 5,
        links: vec![(1, 2), (1, 3), (2, 3), (1, 4), (2, 5)],
        blocked: vec![],
        extra_members: 0,
        main_options: vec![],
    };
    let mut lab = SeedLab::build_topology("mdhw", meshd(), HOLD, &topo);
    for n in 1..=3 {
        // The wave-1 config without r4 and r5.
        let path = &lab.router(n).config;
        let mut text = std::fs::read_to_string(path).unwrap();
        for gone in ["r4", "r5"] {
            let start = text.find(&format!("\nconfig member '{gone}'")).unwrap();
            let end = text[start + 1..]
                .find("\nconfig ")
                .map_or(text.len(), |e| start + 1 + e);
            text = format!("{}{}", &text[..start], &text[end..]);
        }
        std::fs::write(path, text).unwrap();
    }
    for n in [4, 5] {
        // The main section alone, no numbers, its own LAN.
        let path = &lab.router(n).config;
        let text = std::fs::read_to_string(path).unwrap();
        let main = &text[..text.find("\nconfig member").unwrap_or(text.len())];
        let home: String = main
            .lines()
            .filter(|l| !l.starts_with("\toption overlay ") && !l.starts_with("\toption asn "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            home.contains(&format!("list announce '192.168.{n}.0/24'")),
            "{home}"
        );
        std::fs::write(path, home).unwrap();
    }
    lab.start_all();
    let c = |n: u8| Ipv4Addr::new(192, 168, n, 10);
    let hand_written_mesh_up = || {
        [(1, 2), (1, 3), (2, 3)]
            .iter()
            .all(|&(a, b)| lab.ping_addr(a, c(b as u8)) && lab.ping_addr(b, c(a as u8)))
    };
    wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        hand_written_mesh_up().then_some(())
    })
    .unwrap_or_else(|| panic!("c1-c3 do not reach each other\n{}", lab.logs()));
    let files: Vec<String> = (1..=3)
        .map(|n| std::fs::read_to_string(&lab.router(n).config).unwrap())
        .collect();
    // Each hand-written session: (router, member, flaps, uptime).
    let sessions = |lab: &SeedLab| -> Vec<(usize, String, u64, f64)> {
        (1..=3)
            .flat_map(|n| {
                let s = lab.status(n).expect("status");
                s["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| ["r1", "r2", "r3"].contains(&m["name"].as_str().unwrap_or("")))
                    .map(|m| {
                        (
                            n,
                            m["name"].as_str().unwrap().to_string(),
                            m["bgp"]["flaps"].as_u64().unwrap_or(u64::MAX),
                            m["bgp"]["uptime_s"].as_f64().unwrap_or(-1.0),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let before = sessions(&lab);
    assert_eq!(before.len(), 6, "{before:?}");
    assert!(before.iter().all(|s| s.2 == 0 && s.3 >= 0.0), "{before:?}");
    let since = Instant::now();

    let token = invite(&lab, 1, "r4", None);
    let ran = join(&lab, 4, &token);
    assert_eq!(
        ran.code,
        Some(0),
        "r4 did not join r1: {ran}\n{}",
        lab.logs()
    );
    let joined = Instant::now();
    reach_hand_written(&lab, 1, 4, joined);
    println!(
        "hand-written mesh: c1 <-> c4 ping {:.2} s after r4 joined",
        joined.elapsed().as_secs_f64()
    );
    // r2 and r3 take r4 from r1's record.
    let added = wait_for(REACH_LIMIT, Duration::from_millis(200), || {
        [2, 3]
            .iter()
            .all(|&n| section_for(&lab, n, 4).is_some_and(|s| s.via.as_deref() == Some("r1")))
            .then_some(())
    });
    assert!(
        added.is_some(),
        "r2 and r3 did not write r4's section from r1's record:\n{}\n{}",
        String::from_utf8_lossy(&file(&lab, 2)),
        String::from_utf8_lossy(&file(&lab, 3))
    );
    // Nothing of the hand-written mesh moved.
    assert!(hand_written_mesh_up(), "c1-c3 no longer reach each other");
    sessions_kept(&before, &sessions(&lab), since, "r4 joined");
    for n in 1..=3 {
        let now = std::fs::read_to_string(&lab.router(n).config).unwrap();
        assert!(
            now.starts_with(&files[n - 1]),
            "r{n}'s hand-written file changed (more than a section added at its end):\n{now}"
        );
    }
    println!("hand-written mesh: 6 sessions up throughout, files kept, r2 and r3 added r4 from r1's record");

    // The other way round: r5 (no numbers) invites r2 (numbers by hand).
    // r2's request carries its numbers, and r5 writes them.
    let token = invite(&lab, 5, "r2", None);
    let ran = join(&lab, 2, &token);
    assert_eq!(
        ran.code,
        Some(0),
        "r2 did not join r5: {ran}\n{}",
        lab.logs()
    );
    let joined = Instant::now();
    let text = String::from_utf8_lossy(&file(&lab, 5)).to_string();
    assert!(
        text.contains(
            "\toption overlay '10.0.0.2'\n\toption asn '65002'\n\tlist prefix '192.168.2.0/24'\n"
        ),
        "r5's section for r2 should hold r2's own numbers:\n{text}"
    );
    reach_hand_written(&lab, 2, 5, joined);
    println!(
        "hand-written mesh: c2 <-> c5 ping {:.2} s after r2 (numbers by hand) joined r5",
        joined.elapsed().as_secs_f64()
    );
    assert!(hand_written_mesh_up(), "c1-c3 no longer reach each other");
    sessions_kept(&before, &sessions(&lab), since, "r2 joined r5");
}

/// Each hand-written session (router, member, flaps, uptime s) as it was
/// `since` then: no flap, and up all along (its uptime grew by the time
/// passed, less 2 s for when status was read).
fn sessions_kept(
    before: &[(usize, String, u64, f64)],
    after: &[(usize, String, u64, f64)],
    since: Instant,
    what: &str,
) {
    let waited = since.elapsed().as_secs_f64();
    assert_eq!(before.len(), after.len(), "{before:?} {after:?}");
    for (b, a) in before.iter().zip(after) {
        assert!(
            a.0 == b.0 && a.1 == b.1 && a.2 == 0 && a.3 >= b.3 + waited - 2.0,
            "r{}'s session with {} went down while {what}: before {b:?}, after {a:?} ({waited:.1} s later)",
            b.0,
            b.1
        );
    }
}

/// Consoles `hand` (a hand-written home: its own address) and `keyless` (a
/// home with no numbers: its alias) reach each other within
/// [`REACH_LIMIT`] of `joined`.
fn reach_hand_written(lab: &SeedLab, hand: usize, keyless: usize, joined: Instant) {
    let own = Ipv4Addr::new(192, 168, hand as u8, 10);
    let alias = lan_alias(lab, keyless, &format!("192.168.{keyless}.0/24"));
    let ok = wait_for(
        REACH_LIMIT.saturating_sub(joined.elapsed()),
        Duration::from_millis(200),
        || (lab.ping_addr(hand, alias) && lab.ping_addr(keyless, own)).then_some(()),
    );
    assert!(
        ok.is_some(),
        "c{hand} and c{keyless} do not reach each other ({alias}, {own}) within 30 s of the join\n{}",
        lab.logs()
    );
}

/// The alias router `n` maps its LAN `lan` to: its console's address there.
fn lan_alias(lab: &SeedLab, n: usize, lan: &str) -> Ipv4Addr {
    let map = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.status(n)?["lan_map"].as_array()?.first().cloned()
    })
    .unwrap_or_else(|| panic!("r{n} maps no LAN\n{}", lab.logs()));
    assert_eq!(map["lan"], lan, "r{n}");
    let alias = map["alias"].as_str().unwrap();
    assert!(
        alias.starts_with("10.") && alias.ends_with(".0/24"),
        "r{n}: alias {alias}"
    );
    (alias.trim_end_matches(".0/24").to_string() + ".10")
        .parse()
        .unwrap()
}
