//! Relayed LAN discovery: the message codec and the receiver.
//!
//! The input is used twice.
//!
//! 1. As one message: `Relayed::decode` never panics, and whatever decodes
//!    encodes (within `MAX_LEN`) and decodes back to the same message. (Not
//!    to the same bytes: postcard accepts over-long varints.)
//! 2. As a run of the receiver of node R3 (LAN 192.168.3.0/24, members R1,
//!    R2, R4, R5 in slots 0..3): byte 0 is the policy (bit 0 SSDP, bit 1
//!    mDNS, bit 2 port 53 too, bit 3 our LAN is a /31), then records of 8
//!    bytes `[from, origin, seq lo, seq hi, port, source, delay, mode]`:
//!    - `from % 6`: the overlay source: R1, R2, R4, R5, a stranger, us;
//!    - `origin`: bit 0 clear: the same; set: `(origin >> 1) % 6` as above;
//!      bits 5-6: the boot (7..=10); bit 4: the seq is shifted left by 12;
//!    - `port % 6`: 987, 9302, 30000, 1900, 5353, 53; `(port / 6) % 4`:
//!      limited broadcast, directed broadcast, the SSDP group, the mDNS group;
//!    - `source & 3`: a host of the origin's LAN, of ours, of another
//!      member's, or a multicast address; the rest is its last octet;
//!    - `delay` milliseconds pass (seconds when bit 7 of `mode` is set);
//!    - `mode & 3`: the encoding as is, cut to `(mode >> 2) & 31` bytes,
//!      with byte `(mode >> 2) & 31` inverted, or the decoded message
//!      handed in directly.
//!
//!    Checked: no panic; each message is counted exactly once, as emitted or
//!    as the one drop reason returned, per port and in total; no
//!    (origin, boot, seq) is emitted twice; an emission keeps the source
//!    and port and goes to our broadcast address or the same group; per
//!    origin and port, emissions never exceed the burst plus the rate times
//!    the time since the first.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use mesh_core::discovery::{
    broadcast, Counters, Dropped, Kind, Origin, Policy, Relay, Relayed, Stats, DEFAULT_PORTS,
    MAX_LEN, RECEIVE_BURST, RECEIVE_RATE,
};
use mesh_core::{Duration, Instant, Prefix};

const PORTS: [u16; 6] = [987, 9302, 30000, 1900, 5353, 53];
const MEMBERS: [u8; 4] = [1, 2, 4, 5];
const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

fn overlay(sel: u8) -> Ipv4Addr {
    match sel % 6 {
        i @ 0..=3 => Ipv4Addr::new(10, 0, 0, MEMBERS[i as usize]),
        4 => Ipv4Addr::new(10, 0, 0, 9),
        _ => Ipv4Addr::new(10, 0, 0, 3),
    }
}

fn home(n: u8) -> [Prefix; 1] {
    [Prefix::v4(192, 168, n, 0, 24).unwrap()]
}

fn adds_up(c: &Counters) {
    assert_eq!(c.captured, c.relayed + c.dropped_rate + c.too_big, "{c:?}");
    assert_eq!(
        c.received,
        c.emitted + c.forged + c.refused + c.replayed + c.dropped_rate_in + c.malformed,
        "{c:?}"
    );
}

fn check_codec(data: &[u8]) {
    if let Ok(m) = Relayed::decode(data) {
        let mut out = [0u8; MAX_LEN];
        let enc = m.encode(&mut out).expect("a decoded message encodes");
        assert_eq!(Relayed::decode(enc).as_ref(), Ok(&m), "re-decoding differs");
    }
}

/// Which counter a verdict moves.
fn moved(before: &Counters, after: &Counters) -> Vec<&'static str> {
    let pairs = [
        ("emitted", before.emitted, after.emitted),
        ("forged", before.forged, after.forged),
        ("refused", before.refused, after.refused),
        ("replayed", before.replayed, after.replayed),
        (
            "dropped_rate_in",
            before.dropped_rate_in,
            after.dropped_rate_in,
        ),
        ("malformed", before.malformed, after.malformed),
    ];
    let mut v = Vec::new();
    for (name, b, a) in pairs {
        assert!(a == b || a == b + 1, "{name} moved by more than one");
        if a == b + 1 {
            v.push(name);
        }
    }
    v
}

fn name_of(r: &Result<mesh_core::discovery::Emit, Dropped>) -> &'static str {
    match r {
        Ok(_) => "emitted",
        Err(Dropped::Forged) => "forged",
        Err(Dropped::Refused) => "refused",
        Err(Dropped::Replayed) => "replayed",
        Err(Dropped::RateCapped) => "dropped_rate_in",
        Err(Dropped::Malformed(_)) => "malformed",
    }
}

fn port_row(s: &Stats, port: u16) -> Counters {
    s.port(port).copied().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    check_codec(data);

    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut ports = DEFAULT_PORTS.to_vec();
    if flags & 4 != 0 {
        ports.push(53);
    }
    let policy = Policy::new(&ports, flags & 1 != 0, flags & 2 != 0).unwrap();
    let lan = if flags & 8 != 0 {
        Prefix::v4(192, 168, 3, 0, 31).unwrap()
    } else {
        home(3)[0]
    };
    let mut r: Relay<4> = Relay::new(policy, Ipv4Addr::new(10, 0, 0, 3), 1);
    let mut now = Instant::from_secs(1000);
    let mut seen = HashSet::new();
    // (slot, port) -> (first emission, emissions)
    let mut emitted: HashMap<(usize, u16), (Instant, u64)> = HashMap::new();
    let mut messages = 0u64;

    while let [from, origin, lo, hi, port, source, delay, mode, tail @ ..] = rest {
        rest = tail;
        let step = if mode & 0x80 != 0 { 1000 } else { 1 };
        now += Duration::from_millis(*delay as u64 * step);

        let from_sel = from % 6;
        let from_addr = overlay(from_sel);
        let origin_sel = if origin & 1 == 0 {
            from_sel
        } else {
            (origin >> 1) % 6
        };
        let mut seq = u16::from_le_bytes([*lo, *hi]) as u32;
        if origin & 0x10 != 0 {
            seq <<= 12;
        }
        let boot = 7 + ((origin >> 5) & 3) as u32;
        let dst_port = PORTS[(port % 6) as usize];
        let kind = match (port / 6) % 4 {
            0 => Kind::LimitedBroadcast,
            1 => Kind::DirectedBroadcast,
            2 => Kind::Multicast(SSDP_GROUP),
            _ => Kind::Multicast(MDNS_GROUP),
        };
        let origin_home = match origin_sel {
            i @ 0..=3 => MEMBERS[i as usize],
            _ => 9,
        };
        let octet = source >> 2;
        let src = match source & 3 {
            0 => Ipv4Addr::new(192, 168, origin_home, octet),
            1 => Ipv4Addr::new(192, 168, 3, octet),
            2 => Ipv4Addr::new(192, 168, MEMBERS[(octet % 4) as usize], octet),
            _ => Ipv4Addr::new(224, 0, 0, octet),
        };
        let msg = Relayed {
            origin: overlay(origin_sel),
            boot,
            seq,
            src,
            src_port: 50000,
            kind,
            dst_port,
            payload: heapless::Vec::from_slice(&data[..data.len().min(64)]).unwrap(),
        };
        let lans;
        let member = match from_sel {
            i @ 0..=3 => {
                lans = home(MEMBERS[i as usize]);
                Some(Origin {
                    slot: i as usize,
                    lans: &lans,
                })
            }
            _ => None,
        };

        let before = r.stats().clone();
        let mut buf = [0u8; MAX_LEN];
        let enc = msg.encode(&mut buf).unwrap().to_vec();
        let at = ((mode >> 2) & 31) as usize;
        let (verdict, delivered) = match mode & 3 {
            0 => (
                r.receive(now, lan, from_addr, member, &enc),
                Relayed::decode(&enc).ok(),
            ),
            1 => {
                let cut = &enc[..at.min(enc.len())];
                (
                    r.receive(now, lan, from_addr, member, cut),
                    Relayed::decode(cut).ok(),
                )
            }
            2 => {
                let mut bad = enc.clone();
                if let Some(b) = bad.get_mut(at) {
                    *b = !*b;
                }
                (
                    r.receive(now, lan, from_addr, member, &bad),
                    Relayed::decode(&bad).ok(),
                )
            }
            _ => (
                r.receive_message(now, lan, from_addr, member, msg.clone()),
                Some(msg.clone()),
            ),
        };
        messages += 1;
        let after = r.stats();

        // Counted exactly once, as what the verdict says.
        assert_eq!(after.total.received, messages);
        assert_eq!(moved(&before.total, &after.total), vec![name_of(&verdict)]);
        if let Some(m) = &delivered {
            let (b, a) = (port_row(&before, m.dst_port), port_row(after, m.dst_port));
            if after.port(m.dst_port).is_some() {
                assert_eq!(a.received, b.received + 1);
                assert_eq!(moved(&b, &a), vec![name_of(&verdict)]);
            }
        } else {
            assert!(matches!(verdict, Err(Dropped::Malformed(_))));
        }
        adds_up(&after.total);
        for row in &after.ports {
            adds_up(&row.counters);
        }

        if let Ok(e) = &verdict {
            let m = delivered.expect("an emission was a message");
            assert_eq!(e.origin, from_addr);
            assert_eq!((*e.src.ip(), e.src.port()), (m.src, m.src_port));
            assert_eq!(e.dst.port(), m.dst_port);
            let want = match m.kind {
                Kind::Multicast(g) => Some(g),
                _ => broadcast(lan),
            };
            assert_eq!(Some(*e.dst.ip()), want);
            assert!(!lan.contains(IpAddr::V4(m.src)));
            assert!(seen.insert((m.origin, m.boot, m.seq)), "emitted twice");
            let slot = (from % 6) as usize;
            let entry = emitted.entry((slot, m.dst_port)).or_insert((now, 0));
            entry.1 += 1;
            let micros = now.saturating_duration_since(entry.0).as_micros();
            let bound = RECEIVE_BURST as u64 + RECEIVE_RATE as u64 * micros / 1_000_000;
            assert!(entry.1 <= bound, "{} emissions, bound {bound}", entry.1);
        }
    }
});
