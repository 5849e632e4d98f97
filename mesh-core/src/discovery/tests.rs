use std::vec::Vec;

use embassy_time::Duration;

use super::*;

const T0: Instant = Instant::from_secs(100);

// The seed square: R1..R4, overlay 10.0.0.N, LAN 192.168.N.0/24. We are R3.
fn overlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}
fn lan(n: u8) -> Prefix {
    Prefix::v4(192, 168, n, 0, 24).unwrap()
}
fn console(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, n, 10), 50000)
}
const LIMITED: Ipv4Addr = Ipv4Addr::BROADCAST;
fn directed(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n, 255)
}
const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

const OURS: u8 = 3;

/// The member table of R3: slot 0 is R1, slot 1 is R2, slot 2 is R4.
fn lans_of(n: u8) -> [Prefix; 1] {
    [lan(n)]
}
fn member(n: u8, lans: &[Prefix]) -> Option<Origin<'_>> {
    let slot = match n {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => return None,
    };
    Some(Origin { slot, lans })
}

fn relay(n: u8) -> Relay<4> {
    Relay::new(Policy::default(), overlay(n), 7)
}

fn message(origin: u8, seq: u32, kind: Kind, dst_port: u16) -> Relayed {
    Relayed {
        origin: overlay(origin),
        boot: 7,
        seq,
        src: *console(origin).ip(),
        src_port: console(origin).port(),
        kind,
        dst_port,
        payload: heapless::Vec::from_slice(
            b"SRCH * HTTP/1.1\r\ndevice-discovery-protocol-version:00030010\r\n\r\n",
        )
        .unwrap(),
    }
}

/// R3 receives `msg` from overlay address `from` (member `from`'s own).
fn receive(r: &mut Relay<4>, now: Instant, from: u8, msg: &Relayed) -> Result<Emit, Dropped> {
    let lans = lans_of(from);
    let mut buf = [0u8; MAX_LEN];
    let bytes = msg.encode(&mut buf).unwrap();
    r.receive(now, lan(OURS), overlay(from), member(from, &lans), bytes)
}

/// Every message counted exactly once, per port and in total.
fn assert_adds_up(s: &Stats) {
    let rows = s.ports.iter().map(|p| &p.counters);
    for c in rows.chain([&s.total]) {
        assert_eq!(c.captured, c.relayed + c.dropped_rate + c.too_big, "{c:?}");
        assert_eq!(
            c.received,
            c.emitted + c.forged + c.refused + c.replayed + c.dropped_rate_in + c.malformed,
            "{c:?}"
        );
    }
}

// ---- the message ----

#[test]
fn an_ssdp_search_encodes_to_these_bytes_and_back() {
    let m = Relayed {
        origin: overlay(1),
        boot: 7,
        seq: 300,
        src: Ipv4Addr::new(192, 168, 1, 10),
        src_port: 50000,
        kind: Kind::Multicast(SSDP_GROUP),
        dst_port: 1900,
        payload: heapless::Vec::from_slice(b"M-SEARCH * HTTP/1.1\r\n\r\n").unwrap(),
    };
    let mut buf = [0u8; MAX_LEN];
    let enc = m.encode(&mut buf).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(b"D\x01"); // magic, version
    want.extend_from_slice(&[10, 0, 0, 1]); // origin
    want.extend_from_slice(&[7]); // boot
    want.extend_from_slice(&[0xac, 0x02]); // seq 300, varint
    want.extend_from_slice(&[192, 168, 1, 10]); // src
    want.extend_from_slice(&[0xd0, 0x86, 0x03]); // src port 50000
    want.extend_from_slice(&[2, 239, 255, 255, 250]); // Multicast(group)
    want.extend_from_slice(&[0xec, 0x0e]); // dst port 1900
    want.extend_from_slice(&[23]); // payload length
    want.extend_from_slice(b"M-SEARCH * HTTP/1.1\r\n\r\n");
    assert_eq!(enc, &want[..]);
    assert_eq!(Relayed::decode(enc), Ok(m));
}

#[test]
fn every_kind_round_trips() {
    for kind in [
        Kind::LimitedBroadcast,
        Kind::DirectedBroadcast,
        Kind::Multicast(MDNS_GROUP),
    ] {
        let m = message(2, u32::MAX, kind, 9302);
        let mut buf = [0u8; MAX_LEN];
        let enc = m.encode(&mut buf).unwrap();
        assert_eq!(Relayed::decode(enc), Ok(m));
    }
}

#[test]
fn the_largest_message_is_max_len_and_fits_a_tunnel_datagram() {
    let m = Relayed {
        origin: overlay(1),
        boot: u32::MAX,
        seq: u32::MAX,
        src: Ipv4Addr::new(192, 168, 1, 10),
        src_port: u16::MAX,
        kind: Kind::Multicast(SSDP_GROUP),
        dst_port: u16::MAX,
        payload: heapless::Vec::from_slice(&[0xa5; MAX_PAYLOAD]).unwrap(),
    };
    let mut buf = [0u8; MAX_LEN];
    let n = m.encode(&mut buf).unwrap().len();
    assert_eq!(n, MAX_LEN);
    assert!(20 + 8 + n <= INNER_MTU);
    assert_eq!(Relayed::decode(&buf[..n]), Ok(m.clone()));
    assert_eq!(
        m.encode(&mut buf[..MAX_LEN - 1]),
        Err(Error::BufferTooSmall)
    );
    assert_eq!(m.encode(&mut [0u8; 1]), Err(Error::BufferTooSmall));
}

#[test]
fn truncated_or_garbage_input_is_an_error() {
    let m = message(1, 300, Kind::Multicast(SSDP_GROUP), 1900);
    let mut buf = [0u8; MAX_LEN];
    let enc = m.encode(&mut buf).unwrap().to_vec();
    for cut in 0..enc.len() {
        assert!(Relayed::decode(&enc[..cut]).is_err(), "cut {cut}");
    }
    let mut long = enc.clone();
    long.push(0);
    assert_eq!(Relayed::decode(&long), Err(Error::Trailing));
    assert_eq!(Relayed::decode(b""), Err(Error::Truncated));
    assert_eq!(Relayed::decode(b"D"), Err(Error::Truncated));
    assert_eq!(Relayed::decode(b"MX\x01\x01"), Err(Error::BadMagic));
    assert_eq!(
        Relayed::decode(b"D\x02anything"),
        Err(Error::UnsupportedVersion(2))
    );
    // The kind's tag (after magic 2, origin 4, boot 1, seq 2, src 4, port 3).
    let at = 2 + 4 + 1 + 2 + 4 + 3;
    assert_eq!(enc[at], 2);
    let mut bad = enc.clone();
    bad[at] = 3;
    assert_eq!(Relayed::decode(&bad), Err(Error::Malformed));
    // A "group" that is not multicast.
    let mut bad = enc.clone();
    bad[at + 1..at + 5].copy_from_slice(&[10, 0, 0, 1]);
    assert_eq!(Relayed::decode(&bad), Err(Error::NotMulticast));
    let unicast = Relayed {
        kind: Kind::Multicast(overlay(1)),
        ..m.clone()
    };
    assert_eq!(unicast.encode(&mut buf), Err(Error::NotMulticast));
    // A varint that does not end.
    let mut bad = enc.clone();
    bad[6..11].copy_from_slice(&[0xff; 5]);
    assert_eq!(Relayed::decode(&bad), Err(Error::Malformed));
    // One payload byte over MAX_PAYLOAD.
    let mut over = b"D\x01\x0a\x00\x00\x01\x07\x01\xc0\xa8\x01\x0a\x01\x00\xd6\x48".to_vec(); // ... port 1, limited, 9302
    over.extend_from_slice(&[0xb1, 0x09]); // 1201
    over.extend_from_slice(&[0; MAX_PAYLOAD + 1]);
    assert_eq!(Relayed::decode(&over), Err(Error::Malformed));
    // The same with 1200 bytes is fine.
    let mut fits = over[..16].to_vec();
    fits.extend_from_slice(&[0xb0, 0x09]);
    fits.extend_from_slice(&[0; MAX_PAYLOAD]);
    assert_eq!(Relayed::decode(&fits).map(|m| m.dst_port), Ok(9302));
    // No single bit flip panics.
    for i in 0..enc.len() {
        for bit in 0..8 {
            let mut flipped = enc.clone();
            flipped[i] ^= 1 << bit;
            let _ = Relayed::decode(&flipped);
        }
    }
}

// ---- the policy ----

#[test]
fn limited_directed_and_multicast_are_told_apart() {
    let mut p = Policy::default();
    let c = *console(1).ip();
    let l = lan(1);
    assert_eq!(
        p.classify(c, LIMITED, 9302, l),
        Some(Kind::LimitedBroadcast)
    );
    assert_eq!(
        p.classify(c, directed(1), 987, l),
        Some(Kind::DirectedBroadcast)
    );
    assert_eq!(
        p.classify(c, LIMITED, 30000, l),
        Some(Kind::LimitedBroadcast)
    );
    assert_eq!(
        p.classify(c, SSDP_GROUP, 1900, l),
        Some(Kind::Multicast(SSDP_GROUP))
    );
    // Off by default: mDNS. Never: other ports, other groups, unicast,
    // another subnet's broadcast.
    assert_eq!(p.classify(c, MDNS_GROUP, 5353, l), None);
    assert_eq!(p.classify(c, LIMITED, 53, l), None);
    assert_eq!(p.classify(c, SSDP_GROUP, 1901, l), None);
    assert_eq!(p.classify(c, LIMITED, 1900, l), None);
    assert_eq!(p.classify(c, Ipv4Addr::new(239, 1, 2, 3), 1900, l), None);
    assert_eq!(p.classify(c, Ipv4Addr::new(192, 168, 1, 20), 9302, l), None);
    assert_eq!(p.classify(c, directed(2), 9302, l), None);
    p = Policy::new(&[9302], false, true).unwrap();
    assert_eq!(
        p.classify(c, MDNS_GROUP, 5353, l),
        Some(Kind::Multicast(MDNS_GROUP))
    );
    assert_eq!(p.classify(c, SSDP_GROUP, 1900, l), None);
    assert_eq!(p.classify(c, LIMITED, 987, l), None);
    // A /31 has no directed broadcast; an IPv6 prefix has no IPv4 hosts.
    let p31 = Prefix::v4(192, 168, 1, 10, 31).unwrap();
    let p = Policy::default();
    assert_eq!(
        p.classify(c, Ipv4Addr::new(192, 168, 1, 11), 9302, p31),
        None
    );
    assert_eq!(
        p.classify(c, LIMITED, 9302, p31),
        Some(Kind::LimitedBroadcast)
    );
    let v6: Prefix = "fd00::/64".parse().unwrap();
    assert_eq!(p.classify(c, LIMITED, 9302, v6), None);
    assert_eq!(
        broadcast(Prefix::v4(10, 1, 0, 0, 16).unwrap()),
        Some(Ipv4Addr::new(10, 1, 255, 255))
    );
}

#[test]
fn only_hosts_of_our_lan_are_captured() {
    let p = Policy::default();
    let l = lan(1);
    for src in [
        Ipv4Addr::new(192, 168, 1, 0),   // the network
        Ipv4Addr::new(192, 168, 1, 255), // the broadcast
        Ipv4Addr::UNSPECIFIED,           // DHCP's
        Ipv4Addr::new(0, 0, 0, 1),       // Original Xbox system link
        Ipv4Addr::new(192, 168, 2, 10),  // another home
        overlay(2),                      // a member's overlay address
    ] {
        assert_eq!(p.classify(src, LIMITED, 9302, l), None, "{src}");
    }
}

#[test]
fn a_policy_takes_each_port_once_and_at_most_max_ports() {
    let p = Policy::new(&[1900, 9302, 1900], true, true).unwrap();
    assert_eq!(p.ports(), &[1900, 9302]);
    assert_eq!(p.channels(), &[1900, 9302, 5353]);
    assert_eq!(Policy::default().channels(), &[987, 9302, 30000, 1900]);
    assert_eq!(Policy::new(&[0], true, true), Err(PolicyError::ZeroPort));
    let nine: Vec<u16> = (1..=9).collect();
    assert_eq!(
        Policy::new(&nine, true, true),
        Err(PolicyError::TooManyPorts)
    );
    let p = Policy::new(&nine[..8], true, true).unwrap();
    assert_eq!(p.channels().len(), MAX_CHANNELS);
}

// ---- the sender side ----

#[test]
fn a_storm_of_10000_packets_in_10_s_is_cut_to_119() {
    let mut r1 = relay(1);
    let dst = SocketAddrV4::new(LIMITED, 9302);
    let mut seqs = Vec::new();
    for i in 0..10_000 {
        let now = T0 + Duration::from_millis(i);
        match r1.capture(now, lan(1), console(1), dst, b"SRCH") {
            Ok(m) => seqs.push(m.seq),
            Err(e) => assert_eq!(e, NotRelayed::RateCapped),
        }
    }
    // The burst of 20, then one every 100 ms: at 100, 200, ... 9900 ms.
    assert_eq!(seqs.len(), 20 + 99);
    assert_eq!(seqs, (0..119).collect::<Vec<u32>>());
    let c = r1.stats().port(9302).unwrap();
    assert_eq!(
        (c.captured, c.relayed, c.dropped_rate),
        (10_000, 119, 9_881)
    );
    assert_eq!(r1.stats().total.dropped_rate, 9_881);
    assert_eq!(r1.stats().port(987).unwrap().captured, 0);
    assert_adds_up(r1.stats());
}

#[test]
fn a_storm_on_one_port_leaves_the_others_alone() {
    let mut r1 = relay(1);
    let storm = SocketAddrV4::new(LIMITED, 9302);
    let ps4 = SocketAddrV4::new(directed(1), 987);
    for i in 0..1000 {
        let now = T0 + Duration::from_millis(i);
        let _ = r1.capture(now, lan(1), console(1), storm, b"x");
        if i % 100 == 0 {
            let m = r1.capture(now, lan(1), console(1), ps4, b"y").unwrap();
            assert_eq!(m.kind, Kind::DirectedBroadcast);
        }
    }
    assert_eq!(r1.stats().port(987).unwrap().relayed, 10);
    assert_eq!(r1.stats().port(9302).unwrap().relayed, 20 + 9);
}

#[test]
fn the_message_says_where_it_came_from_and_numbers_go_up() {
    let mut r1 = Relay::<4>::new(Policy::default(), overlay(1), u32::MAX);
    let dst = SocketAddrV4::new(SSDP_GROUP, 1900);
    let a = r1
        .capture(T0, lan(1), console(1), dst, b"M-SEARCH")
        .unwrap();
    assert_eq!(a.origin, overlay(1));
    assert_eq!((a.src, a.src_port), (*console(1).ip(), 50000));
    assert_eq!((a.kind, a.dst_port), (Kind::Multicast(SSDP_GROUP), 1900));
    assert_eq!(&a.payload[..], b"M-SEARCH");
    assert_eq!((a.boot, a.seq), (u32::MAX, 0));
    let b = r1
        .capture(T0, lan(1), console(1), dst, b"M-SEARCH")
        .unwrap();
    assert_eq!((b.boot, b.seq), (u32::MAX, 1));
}

#[test]
fn a_packet_over_max_payload_or_a_fragment_is_counted_too_big() {
    let mut r1 = relay(1);
    let dst = SocketAddrV4::new(LIMITED, 9302);
    let big = [0u8; MAX_PAYLOAD + 1];
    assert_eq!(
        r1.capture(T0, lan(1), console(1), dst, &big),
        Err(NotRelayed::TooBig)
    );
    let mut pkt = [0u8; 128];
    let n =
        ip::build_udp4_plain(*console(1).ip(), LIMITED, 50000, 9302, 64, b"x", &mut pkt).unwrap();
    pkt[6] |= 0x20; // more fragments
    pkt[10..12].fill(0);
    let hc = ip::checksum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&hc.to_be_bytes());
    assert_eq!(
        r1.capture_packet(T0, lan(1), &pkt[..n]),
        Err(NotRelayed::TooBig)
    );
    let c = r1.stats().port(9302).unwrap();
    assert_eq!((c.captured, c.too_big, c.relayed), (2, 2, 0));
    assert_adds_up(r1.stats());
}

// ---- the receiver side ----

#[test]
fn a_relayed_packet_is_emitted_on_our_lan_from_the_console() {
    let mut r3 = relay(OURS);
    let limited = message(1, 0, Kind::LimitedBroadcast, 9302);
    let e = receive(&mut r3, T0, 1, &limited).unwrap();
    assert_eq!(e.src, console(1));
    assert_eq!(e.dst, SocketAddrV4::new(directed(OURS), 9302));
    assert_eq!((e.ttl, e.origin), (1, overlay(1)));
    assert_eq!(e.payload, limited.payload);
    let directed_b = message(1, 1, Kind::DirectedBroadcast, 987);
    let e = receive(&mut r3, T0, 1, &directed_b).unwrap();
    assert_eq!(e.dst, SocketAddrV4::new(directed(OURS), 987));
    let ssdp = message(2, 0, Kind::Multicast(SSDP_GROUP), 1900);
    let e = receive(&mut r3, T0, 2, &ssdp).unwrap();
    assert_eq!((e.src, e.dst), (console(2), SSDP));
    // The packet for the raw socket: UDP from the console, checksums right.
    let mut out = [0u8; 1500];
    let n = e.build(&mut out).unwrap();
    let info = ip::parse(&out[..n]).unwrap();
    assert_eq!(
        (info.src, info.dst, info.ttl),
        (IpAddr::V4(*console(2).ip()), IpAddr::V4(SSDP_GROUP), 1)
    );
    let (sport, dport, payload) = ip::udp_parts(&out[..n], &info).unwrap();
    assert_eq!((sport, dport, payload), (50000, 1900, &ssdp.payload[..]));
    // mDNS, where switched on, goes out with TTL 255.
    r3.set_policy(Policy::new(&DEFAULT_PORTS, true, true).unwrap());
    let mdns = message(4, 0, Kind::Multicast(MDNS_GROUP), 5353);
    let e = receive(&mut r3, T0, 4, &mdns).unwrap();
    assert_eq!((e.dst, e.ttl), (MDNS, 255));
    assert_eq!(r3.stats().total.emitted, 4);
    assert_adds_up(r3.stats());
}

#[test]
fn a_re_emitted_packet_is_never_captured_for_relay() {
    let mut r3 = relay(OURS);
    for (i, (kind, port)) in [
        (Kind::LimitedBroadcast, 9302),
        (Kind::DirectedBroadcast, 987),
        (Kind::Multicast(SSDP_GROUP), 1900),
    ]
    .into_iter()
    .enumerate()
    {
        let e = receive(&mut r3, T0, 1, &message(1, i as u32, kind, port)).unwrap();
        let mut out = [0u8; 1500];
        let n = e.build(&mut out).unwrap();
        // Our capture sees our own transmission on the LAN.
        assert_eq!(
            r3.capture_packet(T0, lan(OURS), &out[..n]),
            Err(NotRelayed::Foreign)
        );
        assert_eq!(
            r3.policy()
                .classify(*e.src.ip(), *e.dst.ip(), port, lan(OURS)),
            None
        );
    }
    let t = r3.stats().total;
    assert_eq!((t.emitted, t.foreign, t.captured, t.relayed), (3, 3, 0, 0));
}

#[test]
fn a_member_cannot_speak_for_another() {
    let mut r3 = relay(OURS);
    let lans1 = lans_of(1);
    let lans2 = lans_of(2);
    let mut buf = [0u8; MAX_LEN];
    let from_r1 = message(1, 5, Kind::LimitedBroadcast, 9302);
    let bytes = from_r1.encode(&mut buf).unwrap();
    // R2 sends a message claiming R1 as its origin.
    assert_eq!(
        r3.receive(T0, lan(OURS), overlay(2), member(2, &lans2), bytes),
        Err(Dropped::Forged)
    );
    // Someone who is not a member.
    assert_eq!(
        r3.receive(T0, lan(OURS), overlay(9), None, bytes),
        Err(Dropped::Forged)
    );
    // R1 itself, with a source in R2's LAN.
    let spoofed = Relayed {
        src: *console(2).ip(),
        ..from_r1.clone()
    };
    assert_eq!(receive(&mut r3, T0, 1, &spoofed), Err(Dropped::Forged));
    // A slot the relay does not have (a caller's mistake): no panic.
    let bad_slot = Some(Origin {
        slot: 4,
        lans: &lans1,
    });
    assert_eq!(
        r3.receive(T0, lan(OURS), overlay(1), bad_slot, bytes),
        Err(Dropped::Forged)
    );
    let c = r3.stats().port(9302).unwrap();
    assert_eq!((c.received, c.forged, c.emitted), (4, 4, 0));
    // None of it touched R1's window: its own message 5 still goes.
    assert!(receive(&mut r3, T0, 1, &from_r1).is_ok());
    assert_adds_up(r3.stats());
}

#[test]
fn what_our_policy_does_not_relay_is_refused() {
    let mut r3 = relay(OURS);
    // A port we do not relay, and mDNS (off here).
    let dns = message(1, 0, Kind::LimitedBroadcast, 53);
    assert_eq!(receive(&mut r3, T0, 1, &dns), Err(Dropped::Refused));
    let mdns = message(1, 1, Kind::Multicast(MDNS_GROUP), 5353);
    assert_eq!(receive(&mut r3, T0, 1, &mdns), Err(Dropped::Refused));
    // A source inside our own LAN (an origin whose LANs overlap ours, not
    // mapped to an alias), or not unicast.
    let wide = [Prefix::v4(0, 0, 0, 0, 0).unwrap()];
    for (seq, src) in [
        (2, Ipv4Addr::new(192, 168, OURS, 7)),
        (3, Ipv4Addr::new(224, 1, 1, 1)),
        (4, Ipv4Addr::new(127, 0, 0, 1)),
        (5, Ipv4Addr::UNSPECIFIED),
    ] {
        let m = Relayed {
            src,
            ..message(1, seq, Kind::LimitedBroadcast, 9302)
        };
        let mut buf = [0u8; MAX_LEN];
        let bytes = m.encode(&mut buf).unwrap();
        let got = r3.receive(T0, lan(OURS), overlay(1), member(1, &wide), bytes);
        assert_eq!(got, Err(Dropped::Refused), "{src}");
    }
    // Our LAN is a /31: no broadcast address to re-emit to; groups still go.
    let p31 = Prefix::v4(192, 168, OURS, 0, 31).unwrap();
    let lans = lans_of(1);
    let mut buf = [0u8; MAX_LEN];
    let b = message(1, 6, Kind::LimitedBroadcast, 9302);
    let bytes = b.encode(&mut buf).unwrap();
    assert_eq!(
        r3.receive(T0, p31, overlay(1), member(1, &lans), bytes),
        Err(Dropped::Refused)
    );
    let m = message(1, 7, Kind::Multicast(SSDP_GROUP), 1900);
    let bytes = m.encode(&mut buf).unwrap();
    assert!(r3
        .receive(T0, p31, overlay(1), member(1, &lans), bytes)
        .is_ok());
    assert_eq!(r3.stats().total.refused, 7);
    // Port 53 is not a row; its refusal is in the totals only.
    assert_eq!(r3.stats().port(53), None);
    assert_eq!(r3.stats().port(9302).unwrap().refused, 5);
    assert_adds_up(r3.stats());
}

#[test]
fn out_of_order_numbers_inside_the_window_are_accepted_once() {
    let mut r3 = relay(OURS);
    let at = |seq| message(1, seq, Kind::LimitedBroadcast, 9302);
    assert!(receive(&mut r3, T0, 1, &at(1000)).is_ok());
    assert_eq!(receive(&mut r3, T0, 1, &at(1000)), Err(Dropped::Replayed));
    for seq in [999, 990, 1001, 995] {
        assert!(receive(&mut r3, T0, 1, &at(seq)).is_ok(), "{seq}");
        assert_eq!(
            receive(&mut r3, T0, 1, &at(seq)),
            Err(Dropped::Replayed),
            "{seq} twice"
        );
    }
    assert_eq!(r3.stats().total.replayed, 5);
    assert_eq!(r3.stats().total.emitted, 5);
}

#[test]
fn numbers_older_than_the_window_are_replays() {
    let mut r3 = relay(OURS);
    let at = |seq| message(1, seq, Kind::LimitedBroadcast, 9302);
    assert!(receive(&mut r3, T0, 1, &at(1000)).is_ok());
    // 1000 - 127 is the oldest still inside; 1000 - 128 is out.
    assert!(receive(&mut r3, T0, 1, &at(873)).is_ok());
    assert_eq!(receive(&mut r3, T0, 1, &at(872)), Err(Dropped::Replayed));
    // A jump ahead slides the window past everything before.
    assert!(receive(&mut r3, T0, 1, &at(5000)).is_ok());
    assert_eq!(
        receive(&mut r3, T0, 1, &at(4999 - 127)),
        Err(Dropped::Replayed)
    );
    assert!(receive(&mut r3, T0, 1, &at(4999 - 126)).is_ok());
    // Other origins have their own windows.
    assert!(receive(
        &mut r3,
        T0,
        2,
        &message(2, 872, Kind::LimitedBroadcast, 9302)
    )
    .is_ok());
    assert_eq!(r3.stats().total.replayed, 2);
    assert_adds_up(r3.stats());
}

#[test]
fn a_restarted_origin_is_heard_and_its_old_boot_is_a_replay() {
    let mut r3 = relay(OURS);
    let at = |boot, seq| Relayed {
        boot,
        ..message(1, seq, Kind::LimitedBroadcast, 9302)
    };
    assert!(receive(&mut r3, T0, 1, &at(7, 40_000)).is_ok());
    // R1's daemon restarts: seq begins again at 0 under a later boot.
    assert!(receive(&mut r3, T0, 1, &at(8, 0)).is_ok());
    assert!(receive(&mut r3, T0, 1, &at(8, 1)).is_ok());
    assert_eq!(
        receive(&mut r3, T0, 1, &at(7, 40_001)),
        Err(Dropped::Replayed)
    );
    // The slot given to a new member: forgotten, so its numbers start anew.
    r3.forget(0);
    assert!(receive(&mut r3, T0, 1, &at(1, 0)).is_ok());
}

#[test]
fn a_member_ignoring_its_cap_is_held_to_ours() {
    let mut r3 = relay(OURS);
    let mut emitted = 0;
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for i in 0..10_000u32 {
        let now = T0 + Duration::from_millis(i as u64);
        // Each message has a new number: none is a replay.
        let m = message(1, next(), Kind::LimitedBroadcast, 9302);
        match receive(&mut r3, now, 1, &m) {
            Ok(_) => emitted += 1,
            Err(e) => assert_eq!(e, Dropped::RateCapped),
        }
        // R2's discovery on the same port and R1's on another go through.
        if i % 1000 == 0 {
            let m = message(2, i, Kind::LimitedBroadcast, 9302);
            assert!(receive(&mut r3, now, 2, &m).is_ok());
            let m = message(1, next(), Kind::DirectedBroadcast, 987);
            assert!(receive(&mut r3, now, 1, &m).is_ok());
        }
    }
    // The burst of 40, then one every 100 ms: at 100, 200, ... 9900 ms.
    assert_eq!(emitted, 40 + 99);
    let c = r3.stats().port(9302).unwrap();
    assert_eq!((c.emitted, c.dropped_rate_in), (139 + 10, 10_000 - 139));
    assert_eq!(r3.stats().port(987).unwrap().emitted, 10);
    assert_adds_up(r3.stats());
}

#[test]
fn a_new_policy_keeps_the_ports_it_still_relays() {
    let mut r1 = relay(1);
    let dst = SocketAddrV4::new(LIMITED, 9302);
    for _ in 0..25 {
        let _ = r1.capture(T0, lan(1), console(1), dst, b"x");
    }
    r1.set_policy(Policy::new(&[9302, 4000], false, false).unwrap());
    assert_eq!(r1.stats().ports.len(), 2);
    let c = *r1.stats().port(9302).unwrap();
    assert_eq!((c.captured, c.relayed, c.dropped_rate), (25, 20, 5));
    assert_eq!(r1.stats().port(987), None);
    assert_eq!(r1.stats().total.captured, 25);
    // Its bucket moved with it: still empty.
    assert_eq!(
        r1.capture(T0, lan(1), console(1), dst, b"x"),
        Err(NotRelayed::RateCapped)
    );
    let new = SocketAddrV4::new(LIMITED, 4000);
    assert!(r1.capture(T0, lan(1), console(1), new, b"x").is_ok());
    let ssdp = SocketAddrV4::new(SSDP_GROUP, 1900);
    assert_eq!(
        r1.capture(T0, lan(1), console(1), ssdp, b"x"),
        Err(NotRelayed::NotDiscovery)
    );
}

#[test]
fn token_buckets_are_exact_and_time_going_back_refills_nothing() {
    let mut b = Bucket::default();
    assert!((0..3).all(|_| b.take(T0, 10, 3)));
    assert!(!b.take(T0, 10, 3));
    // 99.999 ms: not yet a token; 100 ms: one.
    assert!(!b.take(T0 + Duration::from_micros(99_999), 10, 3));
    assert!(b.take(T0 + Duration::from_millis(100), 10, 3));
    // Back in time, then forward again: the time in between counts once.
    assert!(!b.take(T0, 10, 3));
    assert!(!b.take(T0 + Duration::from_micros(199_999), 10, 3));
    assert!(b.take(T0 + Duration::from_millis(200), 10, 3));
}

// ---- the fuzz target's seeds ----

/// The seeds of `fuzz/seeds/discovery/` are these encodings. With
/// `MESHD_WRITE_SEEDS=1` this test writes them; otherwise it checks that the
/// committed files are still what the codec makes.
#[test]
fn fuzz_seeds_are_current_encodings() {
    let ssdp = Relayed {
        payload: heapless::Vec::from_slice(
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n",
        )
        .unwrap(),
        ..message(1, 300, Kind::Multicast(SSDP_GROUP), 1900)
    };
    let max = Relayed {
        boot: u32::MAX,
        seq: u32::MAX,
        src_port: u16::MAX,
        payload: heapless::Vec::from_slice(&[0x5a; MAX_PAYLOAD]).unwrap(),
        ..message(4, 0, Kind::Multicast(MDNS_GROUP), 5353)
    };
    let seeds = [
        (
            "ps5_limited_broadcast.bin",
            message(1, 0, Kind::LimitedBroadcast, 9302),
        ),
        (
            "ps4_directed_broadcast.bin",
            message(2, 70_000, Kind::DirectedBroadcast, 987),
        ),
        ("ssdp_msearch.bin", ssdp),
        ("max_size_mdns.bin", max),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/discovery");
    let write = std::env::var_os("MESHD_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, m) in seeds {
        let mut buf = [0u8; MAX_LEN];
        let enc = m.encode(&mut buf).unwrap();
        let path = dir.join(name);
        if write {
            std::fs::write(&path, enc).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(on_disk, enc, "{name}");
    }
}
