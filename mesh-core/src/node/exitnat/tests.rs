use super::*;

extern crate std;
use std::collections::{HashMap, HashSet, VecDeque};
use std::vec::Vec;

const T0: Instant = Instant::from_secs(1000);
const HOME_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const HOME_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// The PlayStation's game port.
const PSN: u16 = 3074;

fn console(home: Ipv4Addr, host: u8, port: u16) -> Internal {
    Internal {
        home,
        addr: SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, host), port),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn config(first_port: u16, last_port: u16) -> ExitNatConfig {
    ExitNatConfig {
        first_port,
        last_port,
        ..ExitNatConfig::default()
    }
}

/// Runs `f` with a `closed` callback and returns the ports it was given.
fn closing(f: impl FnOnce(&mut dyn FnMut(u16))) -> Vec<u16> {
    let mut ports = Vec::new();
    f(&mut |p| ports.push(p));
    ports
}

#[test]
fn defaults_are_as_documented() {
    let c = ExitNatConfig::default();
    assert_eq!((c.first_port, c.last_port), (1024, 65535));
    assert_eq!(c.timeout, secs(300));
    assert_eq!(c.quota, 256);
    let nat: ExitNat = ExitNat::default();
    assert_eq!(*nat.config(), c);
    assert!(nat.is_empty());
    assert_eq!(nat.next_expiry(), None);
    nat.check_invariants();
}

#[test]
fn size_stays_small() {
    let size = core::mem::size_of::<ExitNat<1024>>();
    std::println!("size_of::<ExitNat<1024>>() = {size}");
    assert!(size < 56 * 1024, "{size} bytes");
}

#[test]
fn port_preserved_when_free() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    assert_eq!(nat.outbound_new(T0, a), Ok((PSN, true)));
    assert_eq!(nat.outbound_new(T0, a), Ok((PSN, false)));
    assert_eq!(nat.lookup(a), Some(PSN));
    // An odd port too, and the top of the range.
    let b = console(HOME_A, 11, 9309);
    assert_eq!(nat.outbound(T0, b), Ok(9309));
    let c = console(HOME_A, 12, 65535);
    assert_eq!(nat.outbound(T0, c), Ok(65535));
    assert_eq!(nat.stats().created, 3);
    nat.check_invariants();
}

#[test]
fn port_outside_the_range_is_not_preserved_but_keeps_its_parity() {
    let mut nat: ExitNat = ExitNat::new(config(20000, 20999));
    let even = nat.outbound(T0, console(HOME_A, 10, PSN)).unwrap();
    let odd = nat.outbound(T0, console(HOME_A, 11, 3075)).unwrap();
    assert!((20000..=20999).contains(&even) && even % 2 == 0, "{even}");
    assert!((20000..=20999).contains(&odd) && odd % 2 == 1, "{odd}");
}

#[test]
fn second_console_with_the_same_port_gets_another_port_of_the_same_parity() {
    let mut nat: ExitNat = ExitNat::default();
    let first = console(HOME_A, 10, PSN);
    let other_home = console(HOME_B, 10, PSN);
    let other_ip = console(HOME_A, 11, PSN);
    assert_eq!(nat.outbound(T0, first), Ok(PSN));
    let p = nat.outbound(T0, other_home).unwrap();
    let q = nat.outbound(T0, other_ip).unwrap();
    for port in [p, q] {
        assert_ne!(port, PSN);
        assert_eq!(port % 2, 0, "parity lost: {port}");
        assert!(port >= 1024);
    }
    assert_ne!(p, q);
    // Odd ports stay odd.
    assert_eq!(nat.outbound(T0, console(HOME_A, 10, 3075)), Ok(3075));
    let r = nat.outbound(T0, console(HOME_B, 10, 3075)).unwrap();
    assert_eq!(r % 2, 1, "parity lost: {r}");
    assert_eq!(nat.len(), 5);
    nat.check_invariants();
}

#[test]
fn parity_falls_back_to_the_other_parity_when_one_is_used_up() {
    let mut nat: ExitNat = ExitNat::new(config(5000, 5003));
    let ports: Vec<u16> = (0..4)
        .map(|h| nat.outbound(T0, console(HOME_A, h, 6000)).unwrap())
        .collect();
    let (even, odd): (Vec<u16>, Vec<u16>) = ports.iter().partition(|&&p| p % 2 == 0);
    // The even ports first, then the odd ones.
    assert_eq!(even.len(), 2);
    assert!(ports.iter().take(2).all(|p| p % 2 == 0), "{ports:?}");
    assert_eq!(odd.len(), 2);
    let mut sorted = ports.clone();
    sorted.sort();
    assert_eq!(sorted, [5000, 5001, 5002, 5003]);
}

#[test]
fn same_internal_key_same_port_whatever_the_number_of_calls() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, console(HOME_B, 10, PSN)).unwrap();
    let port = nat.outbound(T0, a).unwrap();
    for n in 0..1000u64 {
        // The remote is no input at all (REQ-1): only time passes.
        assert_eq!(nat.outbound_new(T0 + secs(n % 100), a), Ok((port, false)));
    }
    assert_eq!(nat.len(), 2);
    assert_eq!(nat.stats().created, 2);
}

#[test]
fn inbound_from_anyone_finds_the_mapping_by_port_only() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    let b = console(HOME_B, 10, PSN);
    nat.outbound(T0, a).unwrap();
    let pb = nat.outbound(T0, b).unwrap();
    // No remote address is an input: whoever sends to the port reaches it.
    assert_eq!(nat.inbound(PSN), Some(a));
    assert_eq!(nat.inbound(pb), Some(b));
    assert_eq!(nat.stats().inbound_unmapped, 0);
    assert_eq!(nat.inbound(PSN + 2), None);
    assert_eq!(nat.inbound(0), None);
    assert_eq!(nat.stats().inbound_unmapped, 2);
}

#[test]
fn idle_below_the_timeout_stays() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, a).unwrap();
    let just_before = T0 + secs(300) - Duration::from_micros(1);
    assert!(closing(|c| nat.expire(just_before, c)).is_empty());
    assert_eq!(nat.lookup(a), Some(PSN));
    assert_eq!(nat.stats().expired, 0);
}

#[test]
fn idle_at_the_timeout_goes_and_is_closed() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, a).unwrap();
    assert_eq!(nat.next_expiry(), Some(T0 + secs(300)));
    assert_eq!(closing(|c| nat.expire(T0 + secs(300), c)), [PSN]);
    assert_eq!(nat.lookup(a), None);
    assert_eq!(nat.inbound(PSN), None);
    assert!(nat.is_empty());
    assert_eq!(nat.next_expiry(), None);
    assert_eq!(nat.stats().expired, 1);
    assert_eq!(nat.count_of(HOME_A), 0);
    assert_eq!(nat.consoles(), 0);
    nat.check_invariants();
}

#[test]
fn outbound_refresh_extends_the_mapping() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, a).unwrap();
    nat.outbound(T0 + secs(200), a).unwrap();
    // Conservative: still the creation's expiry, which finds nothing...
    assert_eq!(nat.next_expiry(), Some(T0 + secs(300)));
    assert!(closing(|c| nat.expire(T0 + secs(300), c)).is_empty());
    // ...and makes it exact.
    assert_eq!(nat.next_expiry(), Some(T0 + secs(500)));
    assert!(closing(|c| nat.expire(T0 + secs(499), c)).is_empty());
    assert_eq!(closing(|c| nat.expire(T0 + secs(500), c)), [PSN]);
}

#[test]
fn inbound_does_not_refresh() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, a).unwrap();
    for _ in 0..10 {
        assert_eq!(nat.inbound(PSN), Some(a));
    }
    assert_eq!(nat.iter().next().map(|m| m.last_out), Some(T0));
    assert_eq!(closing(|c| nat.expire(T0 + secs(300), c)), [PSN]);
}

#[test]
fn next_expiry_is_never_later_than_the_true_one() {
    let mut nat: ExitNat = ExitNat::default();
    let a = console(HOME_A, 10, PSN);
    let b = console(HOME_A, 11, PSN);
    nat.outbound(T0 + secs(50), a).unwrap();
    nat.outbound(T0, b).unwrap();
    assert_eq!(nat.next_expiry(), Some(T0 + secs(300)));
    assert_eq!(closing(|c| nat.expire(T0 + secs(300), c)).len(), 1);
    assert_eq!(nat.next_expiry(), Some(T0 + secs(350)));
}

#[test]
fn timeout_is_clamped_to_two_minutes() {
    let short = ExitNatConfig {
        timeout: secs(10),
        ..ExitNatConfig::default()
    };
    let mut nat: ExitNat = ExitNat::new(short);
    assert_eq!(nat.config().timeout, MIN_TIMEOUT);
    assert_eq!(MIN_TIMEOUT, secs(120));
    let a = console(HOME_A, 10, PSN);
    nat.outbound(T0, a).unwrap();
    assert!(closing(|c| nat.expire(T0 + secs(119), c)).is_empty());
    assert_eq!(closing(|c| nat.expire(T0 + secs(120), c)), [PSN]);

    let zero = ExitNatConfig {
        timeout: Duration::from_ticks(0),
        ..ExitNatConfig::default()
    };
    closing(|c| nat.set_config(zero, c));
    assert_eq!(nat.config().timeout, MIN_TIMEOUT);
    // A longer one is kept as it is.
    let long = ExitNatConfig {
        timeout: secs(600),
        ..ExitNatConfig::default()
    };
    closing(|c| nat.set_config(long, c));
    assert_eq!(nat.config().timeout, secs(600));
}

#[test]
fn port_zero_is_never_given_out() {
    let mut nat: ExitNat<8> = ExitNat::new(config(0, 1));
    assert_eq!(nat.config().first_port, 1);
    assert_eq!(nat.outbound(T0, console(HOME_A, 10, 0)), Ok(1));
    assert_eq!(
        nat.outbound(T0, console(HOME_A, 11, 0)),
        Err(Refused::NoPort)
    );
}

#[test]
fn quota_refuses_and_counts_and_other_homes_are_unaffected() {
    let mut nat: ExitNat = ExitNat::new(ExitNatConfig {
        quota: 3,
        ..ExitNatConfig::default()
    });
    for port in 0..3 {
        nat.outbound(T0, console(HOME_A, 10, 4000 + port)).unwrap();
    }
    assert_eq!(nat.count_of(HOME_A), 3);
    assert_eq!(
        nat.outbound(T0, console(HOME_A, 10, 4003)),
        Err(Refused::Quota)
    );
    assert_eq!(
        nat.outbound(T0, console(HOME_A, 11, 4003)),
        Err(Refused::Quota)
    );
    assert_eq!(nat.stats().refused_quota, 2);
    // Its existing mappings still work.
    assert_eq!(nat.outbound(T0, console(HOME_A, 10, 4000)), Ok(4000));
    // Other homes do not share the quota.
    for port in 0..3 {
        nat.outbound(T0, console(HOME_B, 10, 4003 + port)).unwrap();
    }
    assert_eq!(nat.count_of(HOME_B), 3);
    assert_eq!(nat.len(), 6);
    nat.check_invariants();
}

#[test]
fn a_full_table_refuses() {
    let mut nat: ExitNat<4> = ExitNat::default();
    for host in 0..4 {
        nat.outbound(T0, console(HOME_A, host, PSN)).unwrap();
    }
    let late = console(HOME_B, 10, PSN);
    assert_eq!(nat.outbound(T0, late), Err(Refused::Full));
    assert_eq!(nat.stats().refused_full, 1);
    assert_eq!(nat.outbound(T0, console(HOME_A, 0, PSN)), Ok(PSN));
    nat.check_invariants();
    // Room again once one goes.
    closing(|c| nat.remove_home(HOME_A, c));
    assert_eq!(nat.outbound_new(T0, late), Ok((PSN, true)));
}

#[test]
fn one_home_too_many_is_refused_as_full() {
    let mut nat: ExitNat<256> = ExitNat::default();
    let home = |i: usize| Ipv4Addr::new(10, 99, (i / 256) as u8, (i % 256) as u8);
    for i in 0..EXIT_HOMES {
        nat.outbound(T0, console(home(i), 10, PSN)).unwrap();
    }
    assert_eq!(
        nat.outbound(T0, console(home(EXIT_HOMES), 10, PSN)),
        Err(Refused::Full)
    );
    // Homes already there may add mappings.
    nat.outbound(T0, console(home(0), 11, PSN)).unwrap();
    nat.check_invariants();
    // One leaves, another comes.
    closing(|c| nat.remove_home(home(3), c));
    nat.outbound(T0, console(home(EXIT_HOMES), 10, PSN))
        .unwrap();
    nat.check_invariants();
}

#[test]
fn no_port_when_the_range_is_used_up() {
    let mut nat: ExitNat = ExitNat::new(config(5000, 5003));
    for host in 0..4 {
        nat.outbound(T0, console(HOME_A, host, 5000)).unwrap();
    }
    assert_eq!(
        nat.outbound(T0, console(HOME_B, 10, 5001)),
        Err(Refused::NoPort)
    );
    assert_eq!(nat.stats().refused_port, 1);
    assert_eq!(nat.len(), 4);
    let mut ports: Vec<u16> = nat.iter().map(|m| m.port).collect();
    ports.sort();
    assert_eq!(ports, [5000, 5001, 5002, 5003]);
    // An empty range refuses everything.
    let mut empty: ExitNat = ExitNat::new(config(6000, 5999));
    assert_eq!(
        empty.outbound(T0, console(HOME_A, 1, 6000)),
        Err(Refused::NoPort)
    );
}

#[test]
fn port_unavailable_removes_and_the_port_is_never_used_again() {
    let mut nat: ExitNat = ExitNat::new(config(5000, 5099));
    let a = console(HOME_A, 10, 5000);
    assert_eq!(nat.outbound(T0, a), Ok(5000));
    assert_eq!(nat.port_unavailable(5000), Some(a));
    assert_eq!(nat.lookup(a), None);
    assert_eq!(nat.stats().ports_unavailable, 1);
    assert_eq!(nat.stats().removed, 1);
    let (again, created) = nat.outbound_new(T0, a).unwrap();
    assert!(created);
    assert_ne!(again, 5000);
    assert_eq!(again % 2, 0);
    // Fill the whole range: 5000 is never given out.
    let mut host = 0u8;
    while nat.outbound(T0, console(HOME_B, host, 5000)).is_ok() {
        host += 1;
    }
    assert_eq!(nat.len(), 99);
    assert!(nat.iter().all(|m| m.port != 5000));
    // A port without a mapping is blocked too.
    let owner = nat.inbound(5001);
    assert!(owner.is_some());
    assert_eq!(nat.port_unavailable(5001), owner);
    assert_eq!(nat.port_unavailable(5001), None);
    assert_eq!(nat.stats().ports_unavailable, 3);
    nat.check_invariants();
}

#[test]
fn the_blocklist_forgets_the_oldest_port_first() {
    let mut nat: ExitNat = ExitNat::default();
    for port in 0..BLOCKLIST as u16 {
        nat.port_unavailable(4000 + port);
    }
    assert_ne!(nat.outbound(T0, console(HOME_A, 1, 4000)), Ok(4000));
    nat.port_unavailable(6000);
    // 4000 was the oldest: forgotten.
    assert_eq!(nat.outbound(T0, console(HOME_A, 2, 4000)), Ok(4000));
    assert_ne!(nat.outbound(T0, console(HOME_A, 3, 4001)), Ok(4001));
    assert_ne!(nat.outbound(T0, console(HOME_A, 4, 6000)), Ok(6000));
}

#[test]
fn reserved_ports_are_never_given_out() {
    let mut nat: ExitNat = ExitNat::new(config(5000, 5009));
    nat.reserve(&[5000, 5002, 5004, 5006, 5008]);
    // The first four only.
    let mut ports = Vec::new();
    while let Ok(p) = nat.outbound(T0, console(HOME_A, ports.len() as u8, 5000)) {
        ports.push(p);
    }
    ports.sort();
    assert_eq!(ports, [5001, 5003, 5005, 5007, 5008, 5009]);
    // A new call replaces the list.
    nat.reserve(&[5001]);
    assert_eq!(nat.outbound(T0, console(HOME_B, 1, 5000)), Ok(5000));
    nat.reserve(&[]);
    assert_eq!(nat.outbound(T0, console(HOME_B, 2, 5002)), Ok(5002));
    nat.check_invariants();
}

#[test]
fn set_config_narrowing_the_range_closes_the_mappings_outside() {
    let mut nat: ExitNat = ExitNat::default();
    let keep = [console(HOME_A, 1, 3074), console(HOME_A, 2, 4000)];
    let lose = [console(HOME_B, 1, 5000), console(HOME_A, 3, 2000)];
    for i in keep.iter().chain(&lose) {
        nat.outbound(T0, *i).unwrap();
    }
    let mut closed = closing(|c| nat.set_config(config(3000, 4500), c));
    closed.sort();
    assert_eq!(closed, [2000, 5000]);
    assert_eq!(nat.lookup(keep[0]), Some(3074));
    assert_eq!(nat.lookup(keep[1]), Some(4000));
    assert_eq!(nat.len(), 2);
    assert_eq!(nat.stats().removed, 2);
    assert_eq!(nat.count_of(HOME_B), 0);
    // New ones come from the new range.
    let p = nat.outbound(T0, lose[0]).unwrap();
    assert!((3000..=4500).contains(&p));
    nat.check_invariants();
}

#[test]
fn set_config_lowering_the_quota_closes_the_idlest() {
    let mut nat: ExitNat = ExitNat::default();
    for (i, port) in [4000, 4001, 4002, 4003].into_iter().enumerate() {
        nat.outbound(T0 + secs(i as u64), console(HOME_A, 1, port))
            .unwrap();
    }
    nat.outbound(T0, console(HOME_B, 1, 4004)).unwrap();
    // 4000 is used again: 4001 and 4002 are now the idlest of home A.
    nat.outbound(T0 + secs(10), console(HOME_A, 1, 4000))
        .unwrap();
    let lower = ExitNatConfig {
        quota: 2,
        ..ExitNatConfig::default()
    };
    let mut closed = closing(|c| nat.set_config(lower, c));
    closed.sort();
    assert_eq!(closed, [4001, 4002]);
    assert_eq!(nat.count_of(HOME_A), 2);
    assert_eq!(nat.count_of(HOME_B), 1);
    let zero = ExitNatConfig { quota: 0, ..lower };
    assert_eq!(closing(|c| nat.set_config(zero, c)).len(), 3);
    assert!(nat.is_empty());
    nat.check_invariants();
}

#[test]
fn remove_home_closes_all_its_mappings() {
    let mut nat: ExitNat = ExitNat::default();
    for host in 0..3 {
        nat.outbound(T0, console(HOME_A, host, 5000 + u16::from(host)))
            .unwrap();
    }
    nat.outbound(T0, console(HOME_B, 0, 6000)).unwrap();
    nat.outbound(T0, console(HOME_B, 0, 6001)).unwrap();
    let mut closed = closing(|c| nat.remove_home(HOME_A, c));
    closed.sort();
    assert_eq!(closed, [5000, 5001, 5002]);
    assert_eq!(nat.count_of(HOME_A), 0);
    assert_eq!(nat.count_of(HOME_B), 2);
    assert_eq!(nat.len(), 2);
    assert_eq!(nat.consoles(), 1);
    assert_eq!(nat.inbound(5000), None);
    assert_eq!(nat.inbound(6001), Some(console(HOME_B, 0, 6001)));
    assert!(closing(|c| nat.remove_home(HOME_A, c)).is_empty());
    nat.check_invariants();
}

#[test]
fn consoles_counts_distinct_console_addresses() {
    let mut nat: ExitNat = ExitNat::default();
    nat.outbound(T0, console(HOME_A, 1, 5000)).unwrap();
    nat.outbound(T0, console(HOME_A, 1, 5001)).unwrap();
    nat.outbound(T0, console(HOME_A, 1, 5002)).unwrap();
    assert_eq!(nat.consoles(), 1);
    nat.outbound(T0, console(HOME_A, 2, 5000)).unwrap();
    nat.outbound(T0, console(HOME_B, 1, 5000)).unwrap();
    assert_eq!(nat.consoles(), 3);
    nat.port_unavailable(5001);
    assert_eq!(nat.consoles(), 3);
    nat.port_unavailable(5000);
    nat.port_unavailable(5002);
    assert_eq!(nat.consoles(), 2);
    nat.check_invariants();
}

#[test]
fn two_tables_fed_the_same_calls_give_the_same_ports() {
    fn run() -> Vec<Result<u16, Refused>> {
        let mut nat: ExitNat<64> = ExitNat::new(ExitNatConfig {
            first_port: 20000,
            last_port: 20199,
            quota: 30,
            ..ExitNatConfig::default()
        });
        let mut out = Vec::new();
        for round in 0..3u64 {
            for host in 0..40u8 {
                let now = T0 + secs(round * 100 + u64::from(host));
                let home = if host % 3 == 0 { HOME_A } else { HOME_B };
                out.push(nat.outbound(now, console(home, host % 7, PSN + u16::from(host))));
            }
            nat.port_unavailable(20000 + round as u16 * 2);
            let now = T0 + secs(round * 100 + 400);
            out.extend(closing(|c| nat.expire(now, c)).into_iter().map(Ok));
        }
        out.extend(nat.iter().map(|m| Ok(m.port)));
        out
    }
    let a = run();
    assert_eq!(a, run());
    assert!(a.iter().filter(|r| r.is_ok()).count() > 40);
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy)]
struct Modelled {
    port: u16,
    created: Instant,
    last_out: Instant,
}

/// What the table should hold, kept the simple way.
struct Model {
    map: HashMap<Internal, Modelled>,
    config: ExitNatConfig,
    reserved: Vec<u16>,
    blocked: VecDeque<u16>,
}

impl Model {
    fn owner(&self, port: u16) -> Option<Internal> {
        self.map
            .iter()
            .find(|(_, m)| m.port == port)
            .map(|(i, _)| *i)
    }

    fn count_of(&self, home: Ipv4Addr) -> usize {
        self.map.keys().filter(|i| i.home == home).count()
    }

    fn port_taken(&self, port: u16) -> bool {
        self.reserved.contains(&port) || self.blocked.contains(&port) || self.owner(port).is_some()
    }

    fn homes(&self) -> HashSet<Ipv4Addr> {
        self.map.keys().map(|i| i.home).collect()
    }
}

const HOMES: [Ipv4Addr; 5] = [
    Ipv4Addr::new(10, 99, 0, 1),
    Ipv4Addr::new(10, 99, 0, 2),
    Ipv4Addr::new(10, 99, 0, 3),
    Ipv4Addr::new(10, 99, 1, 1),
    Ipv4Addr::new(172, 16, 0, 1),
];

fn random_config(rng: &mut Rng) -> ExitNatConfig {
    let first_port = 5000 + rng.below(20) as u16;
    ExitNatConfig {
        first_port,
        last_port: first_port + rng.below(200) as u16,
        timeout: secs(rng.below(400)),
        quota: rng.below(40) as u16,
    }
}

/// 100,000 random operations on a small table, checked against a model and
/// the table's own invariants after each.
#[test]
fn random_operations_keep_the_invariants() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = ExitNatConfig {
        first_port: 5000,
        last_port: 5099,
        timeout: secs(150),
        quota: 20,
    };
    let mut nat: ExitNat<64> = ExitNat::new(start);
    let mut model = Model {
        map: HashMap::new(),
        config: start,
        reserved: Vec::new(),
        blocked: VecDeque::new(),
    };
    let mut now = T0;
    let mut seen = [0u32; 4];
    for step in 0..100_000u32 {
        match rng.below(100) {
            0..=4 => now += Duration::from_millis(rng.below(10_000)),
            5 => now = now.saturating_sub(Duration::from_millis(rng.below(5_000))),
            6..=55 => {
                let home = HOMES[rng.below(HOMES.len() as u64) as usize];
                let ip = rng.below(4) as u8;
                let port = 4990 + rng.below(130) as u16;
                let internal = console(home, ip, port);
                let result = nat.outbound_new(now, internal);
                match (model.map.get_mut(&internal), result) {
                    (Some(m), r) => {
                        assert_eq!(r, Ok((m.port, false)), "step {step}: EIM");
                        m.last_out = m.last_out.max(now);
                    }
                    (None, Ok((p, true))) => {
                        assert!(model.config.contains(p), "step {step}: {p}");
                        assert!(!model.port_taken(p), "step {step}: {p} taken");
                        if model.config.contains(port) && !model.port_taken(port) {
                            assert_eq!(p, port, "step {step}: not preserved");
                        }
                        let same_parity_free = (model.config.first_port..=model.config.last_port)
                            .any(|q| q % 2 == port % 2 && !model.port_taken(q));
                        if same_parity_free {
                            assert_eq!(p % 2, port % 2, "step {step}: parity");
                        }
                        model.map.insert(
                            internal,
                            Modelled {
                                port: p,
                                created: now,
                                last_out: now,
                            },
                        );
                        seen[0] += 1;
                    }
                    (None, Err(Refused::Quota)) => {
                        assert!(model.count_of(home) >= usize::from(model.config.quota));
                        seen[1] += 1;
                    }
                    (None, Err(Refused::Full)) => {
                        assert!(model.count_of(home) < usize::from(model.config.quota));
                        assert_eq!(model.map.len(), 64, "step {step}: Full");
                        seen[2] += 1;
                    }
                    (None, Err(Refused::NoPort)) => {
                        let c = model.config;
                        assert!(
                            (c.first_port..=c.last_port).all(|q| model.port_taken(q)),
                            "step {step}: NoPort with a free port"
                        );
                        seen[3] += 1;
                    }
                    (None, r) => panic!("step {step}: {r:?} for a new mapping"),
                }
            }
            56..=70 => {
                let port = 4990 + rng.below(130) as u16;
                assert_eq!(nat.inbound(port), model.owner(port), "step {step}");
            }
            71..=80 => {
                now += Duration::from_millis(rng.below(20_000));
                let timeout = model.config.normalized().timeout;
                let mut expect: Vec<u16> = model
                    .map
                    .values()
                    .filter(|m| now.saturating_duration_since(m.last_out) >= timeout)
                    .map(|m| m.port)
                    .collect();
                model
                    .map
                    .retain(|_, m| now.saturating_duration_since(m.last_out) < timeout);
                let mut closed = closing(|c| nat.expire(now, c));
                closed.sort();
                expect.sort();
                assert_eq!(closed, expect, "step {step}: expiry");
            }
            81..=85 => {
                let port = 4995 + rng.below(400) as u16;
                let owner = model.owner(port);
                assert_eq!(nat.port_unavailable(port), owner, "step {step}");
                if let Some(i) = owner {
                    model.map.remove(&i);
                }
                if !model.blocked.contains(&port) {
                    if model.blocked.len() == BLOCKLIST {
                        model.blocked.pop_front();
                    }
                    model.blocked.push_back(port);
                }
            }
            86..=88 => {
                let home = HOMES[rng.below(HOMES.len() as u64) as usize];
                let mut expect: Vec<u16> = model
                    .map
                    .iter()
                    .filter(|(i, _)| i.home == home)
                    .map(|(_, m)| m.port)
                    .collect();
                model.map.retain(|i, _| i.home != home);
                let mut closed = closing(|c| nat.remove_home(home, c));
                closed.sort();
                expect.sort();
                assert_eq!(closed, expect, "step {step}: remove_home");
            }
            89..=91 => {
                let config = random_config(&mut rng);
                model.config = config.normalized();
                let c = model.config;
                let mut expect: Vec<u16> = Vec::new();
                model.map.retain(|_, m| {
                    let keep = c.contains(m.port);
                    if !keep {
                        expect.push(m.port);
                    }
                    keep
                });
                for home in model.homes() {
                    let mut mine: Vec<(Internal, Modelled)> = model
                        .map
                        .iter()
                        .filter(|(i, _)| i.home == home)
                        .map(|(i, m)| (*i, *m))
                        .collect();
                    mine.sort_by_key(|(_, m)| (m.last_out, m.created, m.port));
                    let excess = mine.len().saturating_sub(usize::from(c.quota));
                    for (i, m) in mine.into_iter().take(excess) {
                        expect.push(m.port);
                        model.map.remove(&i);
                    }
                }
                let mut closed = closing(|cb| nat.set_config(config, cb));
                closed.sort();
                expect.sort();
                assert_eq!(closed, expect, "step {step}: set_config");
                assert_eq!(*nat.config(), c);
            }
            92..=93 => {
                let n = rng.below(6) as usize;
                let ports: Vec<u16> = (0..n).map(|_| 4995 + rng.below(120) as u16).collect();
                nat.reserve(&ports);
                model.reserved = ports.into_iter().take(MAX_RESERVED).collect();
            }
            _ => {
                let home = HOMES[rng.below(HOMES.len() as u64) as usize];
                let internal = console(home, rng.below(4) as u8, 4990 + rng.below(130) as u16);
                assert_eq!(
                    nat.lookup(internal),
                    model.map.get(&internal).map(|m| m.port)
                );
            }
        }
        nat.check_invariants();
        assert_eq!(nat.len(), model.map.len(), "step {step}: len");
        for (i, m) in &model.map {
            assert_eq!(nat.lookup(*i), Some(m.port), "step {step}: {i:?}");
        }
        let consoles: HashSet<(Ipv4Addr, Ipv4Addr)> =
            model.map.keys().map(|i| (i.home, *i.addr.ip())).collect();
        assert_eq!(nat.consoles(), consoles.len(), "step {step}: consoles");
        for home in HOMES {
            assert_eq!(nat.count_of(home), model.count_of(home), "step {step}");
        }
        if let Some(at) = nat.next_expiry() {
            let timeout = model.config.normalized().timeout;
            let truth = model.map.values().map(|m| m.last_out + timeout).min();
            assert!(
                truth.is_some_and(|t| at <= t),
                "step {step}: next_expiry late"
            );
        }
    }
    std::println!("created, quota, full, no port: {seen:?}");
    // Every outcome happened often enough to mean something.
    assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
}
