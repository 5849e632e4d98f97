//! The game exit's UDP NAT table (`node::exitnat::ExitNat<64>`) driven by
//! a sequence of operations.
//!
//! Input layout: records of an opcode byte and its argument bytes; the
//! opcode modulo 9 picks the operation (a record cut short ends the input):
//! - 0, 1, 2 `outbound` `[home, host, port]`: home 10.99.0.(home % 6),
//!   console 192.168.1.(host % 4), console port 4990 + port;
//! - 3 `inbound` `[port]`: external port 4990 + port;
//! - 4 `expire` `[seconds]`: time advances that many seconds, then expiry;
//! - 5 `port_unavailable` `[port]`: 4990 + port;
//! - 6 `remove_home` `[home]`;
//! - 7 `set_config` `[first, span, timeout, quota]`: ports 5000 + first % 64
//!   to that + span, timeout `timeout` seconds (raised to 120), quota
//!   `quota % 80`;
//! - 8 `reserve` `[n, port...]`: the next n % 6 bytes, each 4990 + byte.
//!
//! Checked after every operation: no panic; `check_invariants` (index
//! tables, unique ports and keys, rings, home counts, counters); a known
//! console keeps its port (EIM) and is not created twice; a port handed out
//! is in the range and its inbound finds its owner (EIF); closed ports are
//! gone; a removed home holds nothing.
#![no_main]

use core::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use mesh_core::node::exitnat::{ExitNat, ExitNatConfig, Internal};
use mesh_core::{Duration, Instant};

fn home(b: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, b % 6)
}

fn port(b: u8) -> u16 {
    4990 + u16::from(b)
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::from_secs(1000);
    let mut nat: ExitNat<64> = ExitNat::new(ExitNatConfig {
        first_port: 5000,
        last_port: 5127,
        timeout: Duration::from_secs(120),
        quota: 40,
    });
    let mut rest = data;
    while let [op, tail @ ..] = rest {
        rest = tail;
        match op % 9 {
            0..=2 => {
                let [h, host, p, tail @ ..] = rest else {
                    return;
                };
                rest = tail;
                let internal = Internal {
                    home: home(*h),
                    addr: SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, host % 4), port(*p)),
                };
                let known = nat.lookup(internal);
                match nat.outbound_new(now, internal) {
                    Ok((external, created)) => {
                        assert_eq!(created, known.is_none(), "created twice");
                        if let Some(k) = known {
                            assert_eq!(k, external, "EIM: port changed");
                        }
                        assert!(nat.config().contains(external));
                        assert_eq!(nat.inbound(external), Some(internal), "EIF");
                        assert_eq!(nat.outbound_new(now, internal), Ok((external, false)));
                    }
                    Err(_) => assert_eq!(known, None, "a known console refused"),
                }
            }
            3 => {
                let [p, tail @ ..] = rest else { return };
                rest = tail;
                if let Some(owner) = nat.inbound(port(*p)) {
                    assert_eq!(nat.lookup(owner), Some(port(*p)));
                }
            }
            4 => {
                let [s, tail @ ..] = rest else { return };
                rest = tail;
                now += Duration::from_secs(u64::from(*s));
                let mut closed = [0u16; 64];
                let mut n = 0;
                let before = nat.len();
                nat.expire(now, |p| {
                    closed[n] = p;
                    n += 1;
                });
                assert_eq!(nat.len() + n, before);
                for &p in &closed[..n] {
                    assert_eq!(nat.inbound(p), None, "closed port still mapped");
                }
                if let Some(at) = nat.next_expiry() {
                    assert!(at > now, "expired nothing that was due");
                }
            }
            5 => {
                let [p, tail @ ..] = rest else { return };
                rest = tail;
                let owner = nat.inbound(port(*p));
                assert_eq!(nat.port_unavailable(port(*p)), owner);
                assert_eq!(nat.inbound(port(*p)), None);
                if let Some(o) = owner {
                    assert_eq!(nat.lookup(o), None);
                }
            }
            6 => {
                let [h, tail @ ..] = rest else { return };
                rest = tail;
                let before = nat.count_of(home(*h));
                let mut n = 0;
                nat.remove_home(home(*h), |_| n += 1);
                assert_eq!(n, before);
                assert_eq!(nat.count_of(home(*h)), 0);
            }
            7 => {
                let [first, span, timeout, quota, tail @ ..] = rest else {
                    return;
                };
                rest = tail;
                let first_port = 5000 + u16::from(first % 64);
                let config = ExitNatConfig {
                    first_port,
                    last_port: first_port + u16::from(*span),
                    timeout: Duration::from_secs(u64::from(*timeout)),
                    quota: u16::from(quota % 80),
                };
                // Mappings in the new range that each home keeps: those
                // beyond the quota are the only others to close.
                let mut staying = [0usize; 6];
                let mut leaving = 0;
                for m in nat.iter() {
                    if config.contains(m.port) {
                        staying[usize::from(m.internal.home.octets()[3])] += 1;
                    } else {
                        leaving += 1;
                    }
                }
                let quota = usize::from(config.quota);
                let over: usize = staying.iter().map(|&c| c.saturating_sub(quota)).sum();
                let (mut outside, mut inside) = (0, 0);
                nat.set_config(config, |p| {
                    if config.contains(p) {
                        inside += 1;
                    } else {
                        outside += 1;
                    }
                });
                assert_eq!((outside, inside), (leaving, over), "set_config closed");
                assert!(nat.iter().all(|m| config.contains(m.port)));
            }
            _ => {
                let [n, tail @ ..] = rest else { return };
                let n = usize::from(n % 6).min(tail.len());
                let (ports, tail) = tail.split_at(n);
                rest = tail;
                let mut list = [0u16; 6];
                for (slot, &b) in list.iter_mut().zip(ports) {
                    *slot = port(b);
                }
                nat.reserve(&list[..n]);
            }
        }
        nat.check_invariants();
    }
});
