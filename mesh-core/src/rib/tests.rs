use super::*;
use crate::bgp::attr::{AsPath, Origin};

extern crate std;
use std::vec::Vec;

type TestRib = Rib<64, 128>;

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn peer(n: u8, asn: u32) -> PeerInfo {
    PeerInfo {
        asn,
        router_id: Ipv4Addr::new(10, 0, 0, n),
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
        ebgp: true,
        latency: None,
    }
}

fn path(asns: &[u32]) -> PathAttributes {
    PathAttributes {
        as_path: AsPath::from_sequence(asns).unwrap(),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 9)),
        ..Default::default()
    }
}

/// A RIB for AS 65001 with peers 1 (AS 65002) and 2 (AS 65003).
fn rib() -> TestRib {
    let mut r = TestRib::new(65001, 1);
    r.set_peer(1, peer(2, 65002));
    r.set_peer(2, peer(3, 65003));
    r
}

fn best(r: &TestRib, p: &str) -> (Source, DecisionStep) {
    let b = r.entry(&pfx(p)).unwrap().best().unwrap();
    (b.source, b.step)
}

#[test]
fn a_single_path_is_best_as_the_only_path() {
    let mut r = rib();
    assert_eq!(
        r.update(
            Source::Peer(1),
            pfx("192.168.4.0/24"),
            &path(&[65002, 65004])
        ),
        Ok(Change::BestChanged)
    );
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(1), DecisionStep::OnlyPath)
    );
}

#[test]
fn shorter_as_path_wins_and_the_loser_knows_why() {
    let mut r = rib();
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65005, 65004]),
    )
    .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65004]),
    )
    .unwrap();
    let e = r.entry(&pfx("192.168.4.0/24")).unwrap();
    assert_eq!(e.paths()[0].source, Source::Peer(2));
    assert_eq!(e.paths()[0].step, DecisionStep::AsPathLength);
    assert_eq!(e.paths()[1].source, Source::Peer(1));
    assert_eq!(e.paths()[1].step, DecisionStep::AsPathLength);
}

#[test]
fn local_pref_beats_path_length() {
    let mut r = rib();
    let mut long = path(&[65002, 65005, 65004]);
    long.local_pref = Some(200);
    r.update(Source::Peer(1), pfx("192.168.4.0/24"), &long)
        .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65004]),
    )
    .unwrap();
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(1), DecisionStep::LocalPref)
    );
}

#[test]
fn lower_origin_wins_on_equal_paths() {
    let mut r = rib();
    let mut inc = path(&[65002, 65004]);
    inc.origin = Origin::Incomplete;
    r.update(Source::Peer(1), pfx("192.168.4.0/24"), &inc)
        .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65004]),
    )
    .unwrap();
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(2), DecisionStep::Origin)
    );
}

#[test]
fn med_is_compared_only_within_one_neighbor_as() {
    let mut r = rib();
    r.set_peer(
        3,
        PeerInfo {
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            ..peer(4, 65002)
        },
    );
    // Two paths from AS 65002 (peers 1 and 3): MED decides between them.
    let mut hi = path(&[65002, 65004]);
    hi.med = Some(50);
    let mut lo = path(&[65002, 65004]);
    lo.med = Some(10);
    r.update(Source::Peer(1), pfx("192.168.4.0/24"), &lo)
        .unwrap();
    r.update(Source::Peer(3), pfx("192.168.4.0/24"), &hi)
        .unwrap();
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(1), DecisionStep::Med)
    );
    // A path from another AS with a lower MED does not knock out 65002's:
    // MED is not comparable across neighbor ASes, so the router id decides.
    let mut other = path(&[65003, 65004]);
    other.med = Some(0);
    r.update(Source::Peer(2), pfx("192.168.4.0/24"), &other)
        .unwrap();
    let e = r.entry(&pfx("192.168.4.0/24")).unwrap();
    assert_eq!(e.paths()[0].source, Source::Peer(1));
    assert_eq!(e.paths()[0].step, DecisionStep::RouterId);
    let peer3 = e
        .paths()
        .iter()
        .find(|p| p.source == Source::Peer(3))
        .unwrap();
    assert_eq!(peer3.step, DecisionStep::Med);
}

#[test]
fn ebgp_beats_ibgp() {
    let mut r = rib();
    r.set_peer(
        1,
        PeerInfo {
            ebgp: false,
            router_id: Ipv4Addr::new(1, 1, 1, 1),
            ..peer(2, 65001)
        },
    );
    r.update(Source::Peer(1), pfx("192.168.4.0/24"), &path(&[65004]))
        .unwrap();
    r.update(Source::Peer(2), pfx("192.168.4.0/24"), &path(&[65003]))
        .unwrap();
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(2), DecisionStep::EbgpOverIbgp)
    );
}

#[test]
fn lower_latency_breaks_a_path_length_tie() {
    let mut r = rib();
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65004]),
    )
    .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65004]),
    )
    .unwrap();
    // Without measurements the lower router id (peer 1: 10.0.0.2) wins.
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(1), DecisionStep::RouterId)
    );
    // Peer 2 turns out to be faster: the best path moves.
    r.set_peer(
        1,
        PeerInfo {
            latency: Some(30_000),
            ..peer(2, 65002)
        },
    );
    r.set_peer(
        2,
        PeerInfo {
            latency: Some(10_000),
            ..peer(3, 65003)
        },
    );
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(2), DecisionStep::Latency)
    );
}

#[test]
fn lowest_router_id_then_lowest_address() {
    let mut r = rib();
    r.set_peer(
        2,
        PeerInfo {
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            ..peer(3, 65003)
        },
    );
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65004]),
    )
    .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65004]),
    )
    .unwrap();
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(2), DecisionStep::PeerAddress)
    );
}

#[test]
fn a_local_route_beats_any_learned_one() {
    let mut r = rib();
    r.update(Source::Peer(1), pfx("192.168.1.0/24"), &path(&[65002]))
        .unwrap();
    r.update(
        Source::Local,
        pfx("192.168.1.0/24"),
        &PathAttributes::default(),
    )
    .unwrap();
    assert_eq!(
        best(&r, "192.168.1.0/24"),
        (Source::Local, DecisionStep::LocalOrigin)
    );
}

#[test]
fn our_own_as_in_the_path_is_a_loop() {
    let mut r = rib();
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65004]),
    )
    .unwrap();
    assert_eq!(
        r.update(
            Source::Peer(1),
            pfx("192.168.4.0/24"),
            &path(&[65002, 65001, 65004])
        ),
        Err(RibError::AsPathLoop)
    );
    // The looped announcement also replaced (withdrew) the old path.
    assert!(r.entry(&pfx("192.168.4.0/24")).is_none());
    assert_eq!(r.stats.as_path_loops, 1);
}

#[test]
fn ecmp_set_holds_equal_paths_up_to_the_limit() {
    let mut r = rib();
    r.set_max_paths(2);
    r.set_peer(3, peer(4, 65006));
    for (p, asn) in [(1, 65002), (2, 65003), (3, 65006)] {
        r.update(Source::Peer(p), pfx("192.168.4.0/24"), &path(&[asn, 65004]))
            .unwrap();
    }
    let e = r.entry(&pfx("192.168.4.0/24")).unwrap();
    assert_eq!(e.ecmp_len(), 2);
    let set: Vec<Source> = e.multipath().iter().map(|p| p.source).collect();
    assert_eq!(set, [Source::Peer(1), Source::Peer(2)]);
    // A longer path is never in the set.
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65007, 65004]),
    )
    .unwrap();
    let e = r.entry(&pfx("192.168.4.0/24")).unwrap();
    let set: Vec<Source> = e.multipath().iter().map(|p| p.source).collect();
    assert_eq!(set, [Source::Peer(1), Source::Peer(3)]);
}

#[test]
fn withdrawal_promotes_the_next_path() {
    let mut r = rib();
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65004]),
    )
    .unwrap();
    r.update(
        Source::Peer(2),
        pfx("192.168.4.0/24"),
        &path(&[65003, 65009, 65004]),
    )
    .unwrap();
    assert_eq!(
        r.withdraw(Source::Peer(1), pfx("192.168.4.0/24")),
        Change::BestChanged
    );
    assert_eq!(
        best(&r, "192.168.4.0/24"),
        (Source::Peer(2), DecisionStep::OnlyPath)
    );
    assert_eq!(
        r.withdraw(Source::Peer(1), pfx("192.168.4.0/24")),
        Change::Unchanged
    );
}

#[test]
fn peer_down_drops_its_adj_rib_in() {
    let mut r = rib();
    for i in 0..5 {
        r.update(
            Source::Peer(1),
            Prefix::v4(192, 168, i, 0, 24).unwrap(),
            &path(&[65002]),
        )
        .unwrap();
    }
    r.update(Source::Peer(2), pfx("192.168.0.0/24"), &path(&[65003]))
        .unwrap();
    assert_eq!(r.count_from(1), 5);
    assert_eq!(r.adj_rib_in(1).count(), 5);
    assert_eq!(r.peer_down(1), 5);
    assert_eq!(r.count_from(1), 0);
    assert_eq!(r.len(), 1);
    assert_eq!(best(&r, "192.168.0.0/24").0, Source::Peer(2));
}

#[test]
fn paths_of_an_origin_gone_from_the_group_are_withdrawn_from_every_peer() {
    let mut r = rib();
    // 65004's LAN, heard from two members; 65003's own from one of them.
    r.update(Source::Peer(1), pfx("10.4.0.0/24"), &path(&[65002, 65004]))
        .unwrap();
    r.update(Source::Peer(2), pfx("10.4.0.0/24"), &path(&[65003, 65004]))
        .unwrap();
    r.update(Source::Peer(2), pfx("10.3.0.0/24"), &path(&[65003]))
        .unwrap();
    assert_eq!(
        r.withdraw_where(|a| a.as_path.origin_as() == Some(65004)),
        1
    );
    assert!(r
        .entry(&pfx("10.4.0.0/24"))
        .is_none_or(|e| e.best().is_none()));
    assert_eq!((r.count_from(1), r.count_from(2)), (0, 1));
    assert_eq!(best(&r, "10.3.0.0/24").0, Source::Peer(2));
    // Nothing more to withdraw.
    assert_eq!(
        r.withdraw_where(|a| a.as_path.origin_as() == Some(65004)),
        0
    );
    assert_eq!(r.len(), 1);
}

#[test]
fn longest_prefix_match() {
    let mut r = rib();
    r.update(Source::Peer(1), pfx("10.0.0.0/8"), &path(&[65002]))
        .unwrap();
    r.update(Source::Peer(2), pfx("10.1.0.0/16"), &path(&[65003]))
        .unwrap();
    r.update(Source::Peer(1), pfx("fd00::/8"), &path(&[65002]))
        .unwrap();
    fn hit(r: &TestRib, a: &str) -> Option<Prefix> {
        r.lookup(a.parse().unwrap()).map(|e| e.prefix)
    }
    assert_eq!(hit(&r, "10.1.2.3"), Some(pfx("10.1.0.0/16")));
    assert_eq!(hit(&r, "10.2.2.3"), Some(pfx("10.0.0.0/8")));
    assert_eq!(hit(&r, "11.0.0.1"), None);
    assert_eq!(hit(&r, "fd00::1"), Some(pfx("fd00::/8")));
    r.withdraw(Source::Peer(2), pfx("10.1.0.0/16"));
    assert_eq!(hit(&r, "10.1.2.3"), Some(pfx("10.0.0.0/8")));
}

#[test]
fn capacity_is_an_error_not_a_panic() {
    let mut r: Rib<4, 128> = Rib::new(65001, 1);
    r.set_peer(1, peer(2, 65002));
    for i in 0..4 {
        r.update(
            Source::Peer(1),
            Prefix::v4(10, i, 0, 0, 16).unwrap(),
            &path(&[65002]),
        )
        .unwrap();
    }
    assert_eq!(
        r.update(Source::Peer(1), pfx("10.9.0.0/16"), &path(&[65002])),
        Err(RibError::PrefixesFull)
    );
    let mut r: Rib<16, 2> = Rib::new(65001, 1);
    r.set_peer(1, peer(2, 65002));
    r.update(Source::Peer(1), pfx("10.1.0.0/16"), &path(&[65002]))
        .unwrap();
    r.update(Source::Peer(1), pfx("10.2.0.0/16"), &path(&[65002, 1]))
        .unwrap();
    assert_eq!(
        r.update(Source::Peer(1), pfx("10.3.0.0/16"), &path(&[65002, 2])),
        Err(RibError::AttrsFull)
    );
    // The failed insert left no empty entry behind.
    assert!(r.entry(&pfx("10.3.0.0/16")).is_none());
    assert_eq!(r.stats.full_errors, 1);
    // A set released leaves room the next one takes.
    r.withdraw(Source::Peer(1), pfx("10.1.0.0/16"));
    r.update(Source::Peer(1), pfx("10.3.0.0/16"), &path(&[65002, 2]))
        .unwrap();
    let as_path = |p: &str| {
        let best = r.entry(&pfx(p)).unwrap().best().unwrap();
        r.attrs(best.attrs).unwrap().as_path.clone()
    };
    assert_eq!(as_path("10.2.0.0/16"), path(&[65002, 1]).as_path);
    assert_eq!(as_path("10.3.0.0/16"), path(&[65002, 2]).as_path);
}

#[test]
fn attribute_sets_are_shared_and_released() {
    let mut r = rib();
    for i in 0..10 {
        r.update(
            Source::Peer(1),
            Prefix::v4(10, i, 0, 0, 16).unwrap(),
            &path(&[65002]),
        )
        .unwrap();
    }
    assert_eq!(r.attr_sets(), 1);
    r.peer_down(1);
    assert_eq!(r.attr_sets(), 0);
}

#[test]
fn export_sends_the_best_path_once_and_withdraws_where_announced() {
    let mut r = rib();
    r.update(
        Source::Local,
        pfx("192.168.1.0/24"),
        &PathAttributes::default(),
    )
    .unwrap();
    r.update(Source::Peer(1), pfx("192.168.2.0/24"), &path(&[65002]))
        .unwrap();
    r.peer_up(1);
    r.peer_up(2);
    let mut batch: heapless::Vec<Prefix, 16> = heapless::Vec::new();

    // To peer 2: both prefixes (different attribute sets: two batches).
    let mut sent = Vec::new();
    while let Some(kind) = r.next_export(2, 65003, &mut batch) {
        assert!(kind.is_some());
        sent.extend(batch.iter().copied());
        let b = batch.clone();
        r.mark_sent(2, &b, true);
    }
    sent.sort();
    assert_eq!(sent, [pfx("192.168.1.0/24"), pfx("192.168.2.0/24")]);

    // To peer 1: only our own prefix; its route is not sent back to it.
    assert_eq!(
        r.next_export(1, 65002, &mut batch),
        Some(
            r.entry(&pfx("192.168.1.0/24"))
                .unwrap()
                .best()
                .map(|p| p.attrs)
        )
    );
    assert_eq!(batch.as_slice(), &[pfx("192.168.1.0/24")]);
    let b = batch.clone();
    r.mark_sent(1, &b, true);
    assert_eq!(r.next_export(1, 65002, &mut batch), None);

    // Peer 1 withdraws: peer 2 (which was told) gets a withdrawal.
    r.withdraw(Source::Peer(1), pfx("192.168.2.0/24"));
    assert_eq!(r.next_export(2, 65003, &mut batch), Some(None));
    assert_eq!(batch.as_slice(), &[pfx("192.168.2.0/24")]);
    let b = batch.clone();
    r.mark_sent(2, &b, false);
    assert_eq!(r.next_export(2, 65003, &mut batch), None);
    // With nobody left to tell, the entry is gone.
    assert!(r.entry(&pfx("192.168.2.0/24")).is_none());
}

#[test]
fn export_skips_a_peer_already_in_the_path() {
    let mut r = rib();
    r.update(
        Source::Peer(1),
        pfx("192.168.4.0/24"),
        &path(&[65002, 65003, 65004]),
    )
    .unwrap();
    r.peer_up(2);
    let mut batch: heapless::Vec<Prefix, 16> = heapless::Vec::new();
    assert_eq!(r.next_export(2, 65003, &mut batch), None);
}

/// What the lookup keeps beside the entries matches a recount of them, and
/// the entries are in order.
fn check_lengths(r: &TestRib) {
    let mut fresh = Lengths::new();
    for e in &r.entries {
        fresh.add(&e.prefix);
    }
    assert_eq!(fresh, r.lengths);
    assert!(r.entries.windows(2).all(|w| w[0].prefix < w[1].prefix));
}

/// The longest-prefix match by scanning every entry.
fn lookup_by_scan(r: &TestRib, addr: IpAddr) -> Option<Prefix> {
    r.entries
        .iter()
        .filter(|e| !e.paths.is_empty())
        .map(|e| e.prefix)
        .filter(|p| Prefix::new(addr, p.prefix_len()) == Ok(*p))
        .max_by_key(|p| p.prefix_len())
}

#[derive(Debug, Clone)]
enum Op {
    /// Source 0 is the node itself, 1 and 2 are peers; an index into the
    /// prefixes.
    Announce(u8, usize),
    Withdraw(u8, usize),
    PeerDown(u8),
    /// Drops the paths whose AS_PATH starts with this peer's AS.
    WithdrawWhere(u8),
    /// Peer 3 hears everything pending: announced entries then stay, with
    /// no paths, until their withdrawal is sent.
    Export,
}

/// An address whose top bits are `a`'s (IPv4 takes the top 32).
fn addr_of(a: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(a.into())
    } else {
        IpAddr::V4(((a >> 96) as u32).into())
    }
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..3, 0usize..40).prop_map(|(s, i)| Op::Announce(s, i)),
        3 => (0u8..3, 0usize..40).prop_map(|(s, i)| Op::Withdraw(s, i)),
        1 => (1u8..3).prop_map(Op::PeerDown),
        1 => (1u8..3).prop_map(Op::WithdrawWhere),
        1 => Just(Op::Export),
    ]
}

proptest::proptest! {
    /// The lookup finds what a scan of every entry finds, after every
    /// change, on tables of IPv4 and IPv6 prefixes that nest (a few base
    /// addresses cut at many lengths, /0, /32 and /128 among them), for
    /// addresses near and inside them.
    #[test]
    fn lookup_finds_what_a_scan_finds(
        bases in proptest::array::uniform3(proptest::prelude::any::<u128>()),
        prefixes in proptest::collection::vec(
            (
                0usize..3,
                proptest::prelude::any::<bool>(),
                proptest::prop_oneof![
                    proptest::sample::select(&[0u8, 1, 8, 24, 31, 32, 64, 127, 128][..]),
                    0u8..=128,
                ],
            ),
            40,
        ),
        ops in proptest::collection::vec(op(), 1..60),
        probes in proptest::collection::vec((0usize..3, proptest::prelude::any::<u128>(), 0u32..=129), 16),
    ) {
        let prefixes: Vec<Prefix> = prefixes
            .iter()
            .map(|&(b, v6, len)| {
                let len = if v6 { len } else { len.min(32) };
                Prefix::new(addr_of(bases[b], v6), len).unwrap()
            })
            .collect();
        let source = |s: u8| if s == 0 { Source::Local } else { Source::Peer(s) };
        let mut r = rib();
        let mut batch: heapless::Vec<Prefix, 16> = heapless::Vec::new();
        for op in ops {
            match op {
                Op::Announce(s, i) => {
                    let _ = r.update(source(s), prefixes[i], &path(&[65001 + u32::from(s)]));
                }
                Op::Withdraw(s, i) => {
                    r.withdraw(source(s), prefixes[i]);
                }
                Op::PeerDown(p) => {
                    r.peer_down(p);
                    r.set_peer(p, peer(p + 1, 65001 + u32::from(p)));
                }
                Op::WithdrawWhere(p) => {
                    r.withdraw_where(|a| a.as_path.first_as() == Some(65001 + u32::from(p)));
                }
                Op::Export => {
                    r.peer_up(3);
                    while let Some(kind) = r.next_export(3, 65009, &mut batch) {
                        let b = batch.clone();
                        r.mark_sent(3, &b, kind.is_some());
                    }
                }
            }
            check_lengths(&r);
            // Near a base: its top bits with some of the rest flipped.
            for &(b, flips, keep) in &probes {
                let a = bases[b] ^ flips.checked_shr(keep).unwrap_or(0);
                for addr in [addr_of(a, false), addr_of(a, true)] {
                    proptest::prop_assert_eq!(
                        r.lookup(addr).map(|e| e.prefix),
                        lookup_by_scan(&r, addr),
                        "{}", addr
                    );
                }
            }
        }
    }
}

#[test]
fn a_reset_table_is_a_new_one() {
    let mut r = rib();
    r.update(Source::Peer(1), pfx("10.1.0.0/16"), &path(&[65002]))
        .unwrap();
    r.update(Source::Peer(2), pfx("10.2.0.0/16"), &path(&[65003, 65002]))
        .unwrap();
    r.reset(65009, 0);
    assert!(r.is_empty());
    assert_eq!(r.attr_sets(), 0);
    assert_eq!(r.local_asn(), 65009);
    assert_eq!(r.count_from(1), 0);
    assert!(r.lookup("10.1.2.3".parse().unwrap()).is_none());
    // Its peers are gone too: a route from one is refused until it is set.
    assert_eq!(
        r.update(Source::Peer(1), pfx("10.1.0.0/16"), &path(&[65002])),
        Err(RibError::UnknownPeer)
    );
    // And it works as a new one: 65001 is no longer our AS (no loop).
    r.set_peer(1, peer(2, 65002));
    r.update(Source::Peer(1), pfx("10.3.0.0/16"), &path(&[65002, 65001]))
        .unwrap();
    assert_eq!(
        r.lookup("10.3.0.1".parse().unwrap()).map(|e| e.prefix),
        Some(pfx("10.3.0.0/16"))
    );
    assert_eq!(r.attr_sets(), 1);
}
