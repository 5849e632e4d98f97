//! Property tests for the BGP codec, the NLRI/prefix codec, the BFD codec and
//! session, and the BGP session's handling of a hostile byte stream.
//!
//! Three kinds of property:
//! - round trips: whatever the encoders accept, the decoders give back equal;
//! - decoders never panic, on arbitrary bytes, on bytes shaped like BGP past
//!   the framing, and on valid messages with a few bytes flipped, inserted or
//!   deleted;
//! - an Established session fed an arbitrary stream does not panic, keeps its
//!   output queues drainable, sends only well-formed messages and reports the
//!   session going down.
//!
//! Case counts are kept modest so the file runs in a few seconds in debug mode;
//! the cargo-fuzz targets in `fuzz/` cover the same decoders for longer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use embassy_time::{Duration, Instant};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

use mesh_core::bfd;
use mesh_core::bgp::attr::{
    code, flag, Aggregator, AsPath, LargeCommunity, MpNextHop, Origin, PathAttributes, SegmentKind,
    MAX_AS_PATH_LEN, MAX_AS_PATH_SEGMENTS, MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES,
};
use mesh_core::bgp::error::UpdateError;
use mesh_core::bgp::message::Message;
use mesh_core::bgp::notification::{shutdown_data, CeaseSubcode, ErrorCode, NotificationRepr};
use mesh_core::bgp::open::{Capability, GracefulRestart, OpenPacket, OpenRepr, AS_TRANS};
use mesh_core::bgp::route_refresh::RouteRefresh;
use mesh_core::bgp::session::{
    ConnId, RibFull, Session, SessionBuffers, SessionConfig, SessionEvent, UpdateSink,
    SESSION_BUFFERS,
};
use mesh_core::bgp::update::{
    emit_end_of_rib, DecodeContext, EmitError, Update, UpdatePacket, UpdateRepr,
};
use mesh_core::bgp::wire::{emit_keepalive, frame, HEADER_LEN, MARKER, MAX_MESSAGE_LEN};
use mesh_core::prefix::{validate_nlri, NlriIter, PrefixError};
use mesh_core::{Family, Prefix};

const BIRD_CAPTURE: &str = include_str!("../src/bgp/testdata/bird2-session.txt");

/// `default` cases, or `PROPTEST_CASES` when set (for a longer hunt, best in
/// release mode: `PROPTEST_CASES=100000 cargo test -p mesh-core --release
/// --test codec_props`).
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn arb_v4_prefix() -> impl Strategy<Value = Prefix> {
    (any::<[u8; 4]>(), 0u8..=32)
        .prop_map(|(a, len)| Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap())
}

fn arb_v6_prefix() -> impl Strategy<Value = Prefix> {
    (any::<[u8; 16]>(), 0u8..=128)
        .prop_map(|(a, len)| Prefix::new(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap())
}

fn arb_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![arb_v4_prefix(), arb_v6_prefix()]
}

/// Usually a few prefixes, sometimes more than an UPDATE can carry.
fn arb_prefix_list() -> impl Strategy<Value = Vec<Prefix>> {
    prop_oneof![
        12 => vec(arb_prefix(), 0..48),
        1 => vec(arb_prefix(), 100..400),
    ]
}

fn arb_family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)]
}

/// Mostly 2-octet ASNs, so both the plain and the AS_TRANS paths are common.
fn arb_asn() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..=0xffff, 1 => any::<u32>()]
}

/// AS paths of Sequence and Set segments within the crate's capacities.
fn arb_as_path() -> impl Strategy<Value = AsPath> {
    vec(
        (any::<bool>(), vec(arb_asn(), 1..=24)),
        0..=MAX_AS_PATH_SEGMENTS,
    )
    .prop_map(|segs| {
        let mut path = AsPath::new();
        let mut room = MAX_AS_PATH_LEN;
        for (is_set, asns) in segs {
            let n = asns.len().min(room);
            if n == 0 {
                break;
            }
            let kind = if is_set {
                SegmentKind::Set
            } else {
                SegmentKind::Sequence
            };
            path.push_segment(kind, &asns[..n]).unwrap();
            room -= n;
        }
        path
    })
}

/// A NEXT_HOP the decoder accepts (RFC 4271 §6.3).
fn arb_usable_next_hop() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("usable next hop", |a| {
            !(a.is_unspecified() || a.is_multicast() || a.is_broadcast())
        })
}

fn arb_mp_next_hop() -> impl Strategy<Value = MpNextHop> {
    prop_oneof![
        1 => any::<[u8; 4]>().prop_map(|a| MpNextHop::V4(Ipv4Addr::from(a))),
        4 => (any::<[u8; 16]>(), option::of(any::<[u8; 16]>())).prop_map(|(g, ll)| {
            MpNextHop::V6 {
                global: Ipv6Addr::from(g),
                link_local: ll.map(Ipv6Addr::from),
            }
        }),
    ]
}

fn arb_origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ]
}

fn arb_attrs() -> impl Strategy<Value = PathAttributes> {
    (
        arb_origin(),
        arb_as_path(),
        option::weighted(0.9, arb_usable_next_hop()),
        option::weighted(0.9, arb_mp_next_hop()),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        any::<bool>(),
        option::of((arb_asn(), any::<[u8; 4]>())),
        vec(any::<u32>(), 0..=MAX_COMMUNITIES),
        vec(any::<(u32, u32, u32)>(), 0..=MAX_LARGE_COMMUNITIES),
    )
        .prop_map(
            |(
                origin,
                as_path,
                next_hop,
                mp_next_hop,
                med,
                local_pref,
                atomic,
                agg,
                comms,
                large,
            )| {
                PathAttributes {
                    origin,
                    as_path,
                    next_hop,
                    mp_next_hop,
                    med,
                    local_pref,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|(asn, a)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(a),
                    }),
                    communities: comms.into_iter().collect(),
                    large_communities: large
                        .into_iter()
                        .map(|(global, local1, local2)| LargeCommunity {
                            global,
                            local1,
                            local2,
                        })
                        .collect(),
                }
            },
        )
}

/// A capability, owned, so a `Capability<'_>` can borrow from it.
#[derive(Debug, Clone)]
enum CapSpec {
    Multiprotocol(u16, u8),
    RouteRefresh,
    EnhancedRouteRefresh,
    FourOctetAs(u32),
    GracefulRestart(GracefulRestart),
    Unknown(u8, Vec<u8>),
}

impl CapSpec {
    fn capability(&self) -> Capability<'_> {
        match self {
            CapSpec::Multiprotocol(afi, safi) => Capability::Multiprotocol {
                afi: *afi,
                safi: *safi,
            },
            CapSpec::RouteRefresh => Capability::RouteRefresh,
            CapSpec::EnhancedRouteRefresh => Capability::EnhancedRouteRefresh,
            CapSpec::FourOctetAs(asn) => Capability::FourOctetAs(*asn),
            CapSpec::GracefulRestart(gr) => Capability::GracefulRestart(*gr),
            CapSpec::Unknown(code, value) => Capability::Unknown { code: *code, value },
        }
    }
    fn wire_len(&self) -> usize {
        2 + match self {
            CapSpec::Multiprotocol(..) | CapSpec::FourOctetAs(_) => 4,
            CapSpec::RouteRefresh | CapSpec::EnhancedRouteRefresh => 0,
            CapSpec::GracefulRestart(gr) => 2 + 4 * gr.families.iter().flatten().count(),
            CapSpec::Unknown(_, v) => v.len(),
        }
    }
}

fn arb_graceful_restart() -> impl Strategy<Value = GracefulRestart> {
    (
        any::<bool>(),
        any::<bool>(),
        0u16..=0x0fff,
        vec(any::<(u16, u8, bool)>(), 0..=4),
    )
        .prop_map(|(restarting, notification, restart_time, fams)| {
            // The decoder fills the slots in order, so families are a prefix.
            let mut families = [None; 4];
            for (slot, f) in families.iter_mut().zip(fams) {
                *slot = Some(f);
            }
            GracefulRestart {
                restarting,
                notification,
                restart_time,
                families,
            }
        })
}

fn arb_cap() -> impl Strategy<Value = CapSpec> {
    prop_oneof![
        3 => prop_oneof![
            Just((1u16, 1u8)),
            Just((2u16, 1u8)),
            any::<(u16, u8)>()
        ]
        .prop_map(|(afi, safi)| CapSpec::Multiprotocol(afi, safi)),
        1 => Just(CapSpec::RouteRefresh),
        1 => Just(CapSpec::EnhancedRouteRefresh),
        2 => any::<u32>().prop_map(CapSpec::FourOctetAs),
        1 => arb_graceful_restart().prop_map(CapSpec::GracefulRestart),
        2 => (
            any::<u8>().prop_filter("not a capability we decode", |c| {
                ![1, 2, 64, 65, 70].contains(c)
            }),
            vec(any::<u8>(), 0..48),
        )
            .prop_map(|(code, value)| CapSpec::Unknown(code, value)),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The messages of the BIRD 2 capture, as bytes.
fn bird_messages() -> Vec<Vec<u8>> {
    BIRD_CAPTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .map(|(_, hex)| {
            let hex = hex.trim().as_bytes();
            hex.chunks(2)
                .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
                .collect()
        })
        .collect()
}

const ALL_CONTEXTS: [(bool, bool); 4] =
    [(false, false), (false, true), (true, false), (true, true)];

/// Runs every decoder and every accessor of a decoded UPDATE over `upd`.
fn exercise_update_packet(p: &UpdatePacket<'_>) {
    let _ = p.is_ipv4_end_of_rib();
    for a in p.raw_attributes() {
        let _ = a;
    }
    for (four_octet_as, ebgp) in ALL_CONTEXTS {
        let ctx = DecodeContext {
            four_octet_as,
            ebgp,
            peer_asn: 65002,
        };
        if let Ok(u) = p.decode(&ctx) {
            let _ = u.announced().count();
            let _ = u.withdrawn().count();
            let _ = u.end_of_rib();
            let _ = u.unknown_attributes().count();
            let _ = u.mp_reach().map(|m| m.nlri.clone().count());
            let _ = u.discarded.iter().count();
            let _ = u.attrs.next_hop_for(Family::Ipv4);
            let _ = u.attrs.next_hop_for(Family::Ipv6);
            let _ = u.attrs.as_path.to_string();
            let _ = u.attrs.as_path.first_as();
            let _ = u.attrs.as_path.origin_as();
            let _ = u.attrs.as_path.selection_len();
            if u.treat_as_withdraw.is_some() {
                assert_eq!(
                    u.announced().count(),
                    0,
                    "treat-as-withdraw announced routes"
                );
            }
        }
    }
}

fn exercise_open_packet(o: &OpenPacket<'_>) {
    let _ = (o.version(), o.my_as(), o.hold_time(), o.bgp_identifier());
    let _ = o.capabilities().count();
    let _ = o.summary();
    let _ = o.peer_asn();
}

fn exercise_notification(n: &NotificationRepr<'_>) {
    let _ = n.shutdown_communication();
    let _ = n.error.to_string();
    let _ = n.error.to_wire();
}

/// Feeds `bytes` to every decoder that takes a message, a body or NLRI.
fn exercise_all_decoders(bytes: &[u8]) {
    // The stream framer, and the parse of each message it finds.
    let mut rest = bytes;
    while let Ok(Some(n)) = frame(rest) {
        assert!((HEADER_LEN..=MAX_MESSAGE_LEN).contains(&n) && n <= rest.len());
        let parsed = Message::parse(&rest[..n]);
        assert!(parsed.is_ok() || parsed.is_err());
        rest = &rest[n..];
    }
    // The whole input as one message.
    match Message::parse(bytes) {
        Ok(Message::Update(p)) => exercise_update_packet(&p),
        Ok(Message::Open(o)) => exercise_open_packet(&o),
        Ok(Message::Notification(n)) => exercise_notification(&n),
        Ok(Message::Keepalive) | Ok(Message::RouteRefresh(_)) => {}
        Err(e) => {
            let _ = e.notification();
        }
    }
    // The input as a body, skipping the framing.
    let body = bytes.get(HEADER_LEN..).unwrap_or(bytes);
    for b in [bytes, body] {
        if let Ok(p) = UpdatePacket::new_checked(b) {
            exercise_update_packet(&p);
        }
        if let Ok(o) = OpenPacket::new_checked(b) {
            exercise_open_packet(&o);
        }
        if let Ok(n) = NotificationRepr::parse(b) {
            exercise_notification(&n);
            for error in [
                ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown),
                ErrorCode::Cease(CeaseSubcode::AdministrativeReset),
            ] {
                let _ = NotificationRepr { error, ..n }.shutdown_communication();
            }
        }
        let _ = RouteRefresh::parse(b);
    }
    exercise_nlri(bytes);
}

fn exercise_nlri(bytes: &[u8]) {
    for family in [Family::Ipv4, Family::Ipv6] {
        if let Ok((p, used)) = Prefix::parse_nlri(family, bytes) {
            assert!(used <= bytes.len());
            assert_eq!(used, p.nlri_len());
            assert_eq!(p.family(), family);
        }
        let valid = validate_nlri(family, bytes);
        let iterated = NlriIter::new(family, bytes).count();
        if let Ok(n) = valid {
            assert_eq!(n, iterated);
        }
    }
}

/// Flip, insert or delete bytes of `msg`, optionally fixing the length field
/// up afterwards so the mutation is seen past the framing.
fn mutate(msg: &[u8], edits: &[(u8, Index, u8)], fix_length: bool) -> Vec<u8> {
    let mut m = msg.to_vec();
    for &(op, at, byte) in edits {
        match op % 3 {
            0 if !m.is_empty() => {
                let i = at.index(m.len());
                m[i] ^= byte | 1;
            }
            1 => {
                let i = at.index(m.len() + 1);
                m.insert(i, byte);
            }
            _ if !m.is_empty() => {
                let i = at.index(m.len());
                m.remove(i);
            }
            _ => {}
        }
    }
    if fix_length && m.len() >= HEADER_LEN && m.len() <= 0xffff {
        let len = m.len() as u16;
        m[16..18].copy_from_slice(&len.to_be_bytes());
    }
    m
}

fn emit_update(repr: &UpdateRepr<'_>) -> Result<Vec<u8>, EmitError> {
    let mut buf = vec![0u8; 2 * MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn header(ty: u8, body_len: usize) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((HEADER_LEN + body_len) as u16).to_be_bytes());
    m.push(ty);
    m
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn open_round_trips_with_any_capabilities(
        asn in arb_asn(),
        hold_time in any::<u16>(),
        router_id in any::<[u8; 4]>(),
        specs in vec(arb_cap(), 0..12),
    ) {
        let caps: Vec<Capability<'_>> = specs.iter().map(CapSpec::capability).collect();
        let repr = OpenRepr {
            asn,
            hold_time,
            router_id: Ipv4Addr::from(router_id),
            capabilities: &caps,
        };
        let caps_len: usize = specs.iter().map(CapSpec::wire_len).sum();
        let mut buf = [0u8; 512];
        let emitted = repr.emit(&mut buf);
        if caps_len > 253 {
            // One Capabilities parameter holds at most 255 octets.
            prop_assert_eq!(emitted, None);
            return Ok(());
        }
        let n = emitted.expect("an OPEN whose capabilities fit is emitted");
        prop_assert_eq!(n, repr.buffer_len());
        prop_assert_eq!(frame(&buf[..n]), Ok(Some(n)));
        let Ok(Message::Open(open)) = Message::parse(&buf[..n]) else {
            panic!("not an OPEN: {:?}", Message::parse(&buf[..n]));
        };
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        prop_assert_eq!(open.version(), 4);
        prop_assert_eq!(open.my_as(), my_as);
        prop_assert_eq!(open.hold_time(), hold_time);
        prop_assert_eq!(open.bgp_identifier(), Ipv4Addr::from(router_id));
        let got: Vec<Capability<'_>> = open.capabilities().collect();
        prop_assert_eq!(&got, &caps);

        // The summary, against a model of RFC 5492/4760/6793.
        let s = open.summary();
        let four = specs.iter().rev().find_map(|c| match c {
            CapSpec::FourOctetAs(a) => Some(*a),
            _ => None,
        });
        let mp = |afi, safi| specs.iter().any(|c| matches!(c, CapSpec::Multiprotocol(a, s) if (*a, *s) == (afi, safi)));
        let any_mp = specs.iter().any(|c| matches!(c, CapSpec::Multiprotocol(..)));
        prop_assert_eq!(s.four_octet_as, four);
        prop_assert_eq!(s.ipv4_unicast, mp(1, 1) || !any_mp);
        prop_assert_eq!(s.ipv6_unicast, mp(2, 1));
        prop_assert_eq!(s.route_refresh, specs.iter().any(|c| matches!(c, CapSpec::RouteRefresh)));
        prop_assert_eq!(
            s.enhanced_route_refresh,
            specs.iter().any(|c| matches!(c, CapSpec::EnhancedRouteRefresh))
        );
        let gr = specs.iter().rev().find_map(|c| match c {
            CapSpec::GracefulRestart(g) => Some(*g),
            _ => None,
        });
        prop_assert_eq!(s.graceful_restart, gr);
        let mut unknown: Vec<u8> = Vec::new();
        for c in &specs {
            if let CapSpec::Unknown(code, _) = c {
                if !unknown.contains(code) && unknown.len() < 8 {
                    unknown.push(*code);
                }
            }
        }
        prop_assert_eq!(s.unknown.as_slice(), unknown.as_slice());
        prop_assert_eq!(open.peer_asn(), four.unwrap_or(my_as as u32));
    }

    #[test]
    fn update_round_trips_for_any_attributes(
        withdrawn in arb_prefix_list(),
        announced in arb_prefix_list(),
        attrs in arb_attrs(),
        with_attrs in prop::bool::weighted(0.95),
        four_octet_as in any::<bool>(),
        peer_asn in any::<u32>(),
    ) {
        let repr = UpdateRepr {
            withdrawn: &withdrawn,
            attrs: with_attrs.then_some(&attrs),
            announced: &announced,
            four_octet_as,
        };
        let has_v4 = announced.iter().any(|p| p.family() == Family::Ipv4);
        let has_v6 = announced.iter().any(|p| p.family() == Family::Ipv6);
        let missing = !announced.is_empty()
            && (!with_attrs
                || (has_v4 && attrs.next_hop.is_none())
                || (has_v6 && !matches!(attrs.mp_next_hop, Some(MpNextHop::V6 { .. }))));
        let bytes = match emit_update(&repr) {
            Err(EmitError::MissingAttribute) if missing => return Ok(()),
            Err(EmitError::TooLong) if !missing => {
                prop_assert!(repr.buffer_len().unwrap() > MAX_MESSAGE_LEN);
                return Ok(());
            }
            Err(e) => panic!("unexpected {e:?} (missing attribute expected: {missing})"),
            Ok(b) => {
                prop_assert!(!missing, "emitted an UPDATE with a missing attribute");
                b
            }
        };
        prop_assert_eq!(bytes.len(), repr.buffer_len().unwrap());
        prop_assert_eq!(frame(&bytes), Ok(Some(bytes.len())));
        let Ok(Message::Update(packet)) = Message::parse(&bytes) else {
            panic!("not an UPDATE: {:?}", Message::parse(&bytes));
        };
        let ctx = DecodeContext { four_octet_as, ebgp: false, peer_asn };
        let u = packet.decode(&ctx).expect("our own UPDATE decodes");
        prop_assert_eq!(u.treat_as_withdraw, None);
        prop_assert!(u.discarded.is_empty(), "discarded {:?}", u.discarded.iter().collect::<Vec<_>>());

        // IPv4 in the classic fields first, then IPv6 in MP_(UN)REACH_NLRI,
        // each in the order given.
        let by_family = |ps: &[Prefix]| -> Vec<Prefix> {
            let v4 = ps.iter().copied().filter(|p| p.family() == Family::Ipv4);
            let v6 = ps.iter().copied().filter(|p| p.family() == Family::Ipv6);
            v4.chain(v6).collect()
        };
        prop_assert_eq!(u.announced().collect::<Vec<_>>(), by_family(&announced));
        prop_assert_eq!(u.withdrawn().collect::<Vec<_>>(), by_family(&withdrawn));

        let expected = if announced.is_empty() {
            PathAttributes::default()
        } else {
            PathAttributes {
                next_hop: attrs.next_hop.filter(|_| has_v4),
                mp_next_hop: attrs.mp_next_hop.filter(|_| has_v6),
                ..attrs.clone()
            }
        };
        prop_assert_eq!(&u.attrs, &expected);
        let eor = (withdrawn.is_empty() && announced.is_empty()).then_some(Family::Ipv4);
        prop_assert_eq!(u.end_of_rib(), eor);
    }

    #[test]
    fn update_with_an_unusable_next_hop_is_treated_as_withdraw(
        prefixes in vec(arb_v4_prefix(), 1..8),
        bad in prop_oneof![
            Just(Ipv4Addr::UNSPECIFIED),
            Just(Ipv4Addr::BROADCAST),
            (224u8..=239, any::<[u8; 3]>()).prop_map(|(a, r)| Ipv4Addr::new(a, r[0], r[1], r[2])),
        ],
        four_octet_as in any::<bool>(),
    ) {
        let attrs = PathAttributes {
            as_path: AsPath::from_sequence(&[65002]).unwrap(),
            next_hop: Some(bad),
            ..Default::default()
        };
        let bytes = emit_update(&UpdateRepr {
            withdrawn: &[],
            attrs: Some(&attrs),
            announced: &prefixes,
            four_octet_as,
        }).unwrap();
        let Ok(Message::Update(p)) = Message::parse(&bytes) else { panic!() };
        let u = p.decode(&DecodeContext { four_octet_as, ebgp: true, peer_asn: 65002 }).unwrap();
        prop_assert_eq!(u.treat_as_withdraw, Some(UpdateError::InvalidNextHop));
        prop_assert_eq!(u.announced().count(), 0);
        prop_assert_eq!(u.withdrawn().collect::<Vec<_>>(), prefixes);
    }

    #[test]
    fn notification_round_trips_up_to_the_size_limit(
        code in any::<u8>(),
        subcode in any::<u8>(),
        data in prop_oneof![
            4 => vec(any::<u8>(), 0..64),
            1 => vec(any::<u8>(), 0..4200),
        ],
    ) {
        let error = ErrorCode::from_wire(code, subcode);
        // Hold Timer Expired has no subcodes: anything else is kept as sent.
        let wire = if code == 4 { (4, 0) } else { (code, subcode) };
        prop_assert_eq!(error.to_wire(), wire);
        let n = NotificationRepr::new(error, &data);
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let len = n.emit(&mut buf).expect("a NOTIFICATION always fits 4096 octets");
        let kept = data.len().min(MAX_MESSAGE_LEN - HEADER_LEN - 2);
        prop_assert_eq!(len, HEADER_LEN + 2 + kept);
        prop_assert_eq!(frame(&buf[..len]), Ok(Some(len)));
        let Ok(Message::Notification(got)) = Message::parse(&buf[..len]) else {
            panic!("not a NOTIFICATION");
        };
        prop_assert_eq!(got, NotificationRepr::new(error, &data[..kept]));
    }

    #[test]
    fn shutdown_communication_round_trips_cut_on_a_char_boundary(text in ".{0,300}") {
        let mut b = [0u8; 256];
        let data = shutdown_data(&text, &mut b);
        for error in [
            ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown),
            ErrorCode::Cease(CeaseSubcode::AdministrativeReset),
        ] {
            let got = NotificationRepr::new(error, data).shutdown_communication().unwrap();
            prop_assert!(got.len() <= 255);
            prop_assert!(text.starts_with(got));
            if text.len() <= 255 {
                prop_assert_eq!(got, text.as_str());
            } else {
                // Nothing more would have fitted.
                let next = text[got.len()..].chars().next().unwrap();
                prop_assert!(got.len() + next.len_utf8() > 255);
            }
        }
    }

    #[test]
    fn route_refresh_round_trips(afi in any::<u16>(), subtype in any::<u8>(), safi in any::<u8>()) {
        let rr = RouteRefresh { afi, subtype, safi };
        let mut buf = [0u8; RouteRefresh::LEN];
        prop_assert_eq!(rr.emit(&mut buf), Some(RouteRefresh::LEN));
        prop_assert_eq!(frame(&buf), Ok(Some(RouteRefresh::LEN)));
        let Ok(Message::RouteRefresh(got)) = Message::parse(&buf) else { panic!() };
        prop_assert_eq!(got, rr);
        // One octet short or long is a length error, not a panic.
        prop_assert!(RouteRefresh::parse(&buf[HEADER_LEN..RouteRefresh::LEN - 1]).is_err());
    }

    #[test]
    fn keepalive_round_trips_and_frames_alone(trailer in vec(any::<u8>(), 0..64)) {
        let mut buf = [0u8; HEADER_LEN];
        prop_assert_eq!(emit_keepalive(&mut buf), Some(HEADER_LEN));
        prop_assert!(matches!(Message::parse(&buf), Ok(Message::Keepalive)));
        let mut stream = buf.to_vec();
        stream.extend_from_slice(&trailer);
        prop_assert_eq!(frame(&stream), Ok(Some(HEADER_LEN)));
        for cut in 0..HEADER_LEN {
            prop_assert_eq!(frame(&buf[..cut]), Ok(None));
        }
    }

    #[test]
    fn end_of_rib_markers_decode_as_end_of_rib(family in arb_family(), four_octet_as in any::<bool>(), ebgp in any::<bool>()) {
        let mut buf = [0u8; 64];
        let n = emit_end_of_rib(family, &mut buf).unwrap();
        let Ok(Message::Update(p)) = Message::parse(&buf[..n]) else { panic!() };
        let u = p.decode(&DecodeContext { four_octet_as, ebgp, peer_asn: 65002 }).unwrap();
        prop_assert_eq!(u.end_of_rib(), Some(family));
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn prefix_nlri_round_trips(p in arb_prefix(), trailer in vec(any::<u8>(), 0..8)) {
        let mut buf = vec![0u8; 17];
        let n = p.emit_nlri(&mut buf).unwrap();
        prop_assert_eq!(n, p.nlri_len());
        buf.truncate(n);
        prop_assert_eq!(Prefix::parse_nlri(p.family(), &buf), Ok((p, n)));
        // Trailing bytes are the next entry's, not this one's.
        buf.extend_from_slice(&trailer);
        prop_assert_eq!(Prefix::parse_nlri(p.family(), &buf), Ok((p, n)));
        // One octet short is truncated (except for /0, which has none).
        if n > 1 {
            prop_assert_eq!(Prefix::parse_nlri(p.family(), &buf[..n - 1]), Err(PrefixError::Truncated));
        }
        // A too-small buffer is refused, not overrun.
        let mut small = vec![0u8; n - 1];
        prop_assert_eq!(p.emit_nlri(&mut small), None);
    }

    #[test]
    fn nlri_runs_round_trip_through_the_iterator(family in arb_family(), seed in vec(arb_prefix(), 0..32)) {
        let ps: Vec<Prefix> = seed.into_iter().filter(|p| p.family() == family).collect();
        let mut buf = Vec::new();
        for p in &ps {
            let mut b = [0u8; 17];
            let n = p.emit_nlri(&mut b).unwrap();
            buf.extend_from_slice(&b[..n]);
        }
        prop_assert_eq!(validate_nlri(family, &buf), Ok(ps.len()));
        prop_assert_eq!(NlriIter::new(family, &buf).collect::<Vec<_>>(), ps);
    }

    #[test]
    fn prefix_display_and_from_str_round_trip(p in arb_prefix()) {
        let text = p.to_string();
        prop_assert_eq!(text.parse::<Prefix>(), Ok(p));
        prop_assert_eq!(format!("{p:?}"), text);
    }

    #[test]
    fn prefixes_clear_host_bits_and_cover_their_addresses(
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        len4 in 0u8..=32,
        len6 in 0u8..=128,
    ) {
        for (addr, len) in [(IpAddr::V4(v4.into()), len4), (IpAddr::V6(v6.into()), len6)] {
            let p = Prefix::new(addr, len).unwrap();
            prop_assert!(p.contains(addr));
            prop_assert_eq!(Prefix::new(p.addr(), len), Ok(p));
            prop_assert!(p.covers(&Prefix::host(addr)));
            prop_assert_eq!(format!("{addr}/{len}").parse::<Prefix>(), Ok(p));
        }
        prop_assert_eq!(Prefix::new(IpAddr::V4(v4.into()), 33), Err(PrefixError::BadLength));
        prop_assert_eq!(Prefix::new(IpAddr::V6(v6.into()), 129), Err(PrefixError::BadLength));
    }

    #[test]
    fn prefix_from_str_never_panics(s in "\\PC{0,48}", t in "[0-9a-f.:/]{0,48}") {
        let _ = s.parse::<Prefix>();
        let _ = t.parse::<Prefix>();
    }
}

// ---------------------------------------------------------------------------
// Decoders never panic
// ---------------------------------------------------------------------------

/// Bytes that look like a BGP message: marker, a (usually right) length and a
/// (usually known) type, then an arbitrary body.
fn arb_framed_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![9 => 1u8..=5, 1 => any::<u8>()],
        vec(any::<u8>(), 0..(MAX_MESSAGE_LEN - HEADER_LEN + 8)),
        option::weighted(0.1, any::<u16>()),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(|(ty, body, len, trailer)| {
            let mut m = header(ty, body.len());
            if let Some(l) = len {
                m[16..18].copy_from_slice(&l.to_be_bytes());
            }
            m.extend_from_slice(&body);
            m.extend_from_slice(&trailer);
            m
        })
}

/// Codes of the attributes the decoder knows, plus a few it does not.
fn arb_attr_code() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(vec![
            code::ORIGIN,
            code::AS_PATH,
            code::NEXT_HOP,
            code::MULTI_EXIT_DISC,
            code::LOCAL_PREF,
            code::ATOMIC_AGGREGATE,
            code::AGGREGATOR,
            code::COMMUNITIES,
            code::ORIGINATOR_ID,
            code::CLUSTER_LIST,
            code::MP_REACH_NLRI,
            code::MP_UNREACH_NLRI,
            code::EXTENDED_COMMUNITIES,
            code::AS4_PATH,
            code::AS4_AGGREGATOR,
            code::LARGE_COMMUNITIES,
        ]),
        1 => any::<u8>(),
    ]
}

fn arb_nlri_bytes(family: Family) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(if family == Family::Ipv4 { arb_v4_prefix().boxed() } else { arb_v6_prefix().boxed() }, 0..6)
            .prop_map(|ps| {
                let mut out = Vec::new();
                for p in ps {
                    let mut b = [0u8; 17];
                    let n = p.emit_nlri(&mut b).unwrap();
                    out.extend_from_slice(&b[..n]);
                }
                out
            }),
        1 => vec(any::<u8>(), 0..24),
    ]
}

/// AS_PATH-shaped bytes: segments of a (usually valid) type and count.
fn arb_as_path_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        vec((0u8..=5, vec(any::<u32>(), 0..12), any::<bool>()), 0..10),
    )
        .prop_map(|(four, segs)| {
            let mut out = Vec::new();
            for (ty, asns, honest) in segs {
                out.push(ty);
                out.push(if honest {
                    asns.len() as u8
                } else {
                    asns.len() as u8 + 1
                });
                for a in asns {
                    if four {
                        out.extend_from_slice(&a.to_be_bytes());
                    } else {
                        out.extend_from_slice(&(a as u16).to_be_bytes());
                    }
                }
            }
            out
        })
}

/// MP_REACH/MP_UNREACH-shaped bytes.
fn arb_mp_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just((1u16, 1u8)), Just((2u16, 1u8)), any::<(u16, u8)>()],
        prop_oneof![Just(4u8), Just(16u8), Just(32u8), any::<u8>()],
        vec(any::<u8>(), 32),
        any::<bool>(),
        arb_nlri_bytes(Family::Ipv6),
        arb_nlri_bytes(Family::Ipv4),
    )
        .prop_map(|((afi, safi), nh_len, nh, reach, nlri6, nlri4)| {
            let mut out = afi.to_be_bytes().to_vec();
            out.push(safi);
            if reach {
                out.push(nh_len);
                out.extend_from_slice(&nh[..(nh_len as usize).min(32)]);
                out.push(0);
            }
            out.extend_from_slice(if afi == 1 { &nlri4 } else { &nlri6 });
            out
        })
}

fn arb_attr_value(code_: u8) -> BoxedStrategy<Vec<u8>> {
    let random = vec(any::<u8>(), 0..40);
    match code_ {
        code::AS_PATH | code::AS4_PATH => {
            prop_oneof![3 => arb_as_path_bytes(), 1 => random].boxed()
        }
        code::MP_REACH_NLRI | code::MP_UNREACH_NLRI => {
            prop_oneof![3 => arb_mp_bytes(), 1 => random].boxed()
        }
        _ => random.boxed(),
    }
}

fn arb_raw_attr() -> impl Strategy<Value = Vec<u8>> {
    arb_attr_code()
        .prop_flat_map(|c| {
            (
                Just(c),
                prop_oneof![
                    4 => Just(None),
                    1 => any::<u8>().prop_map(Some),
                ],
                arb_attr_value(c),
                any::<bool>(),
            )
        })
        .prop_map(|(c, flags, value, extended)| {
            let wk = matches!(
                c,
                code::ORIGIN
                    | code::AS_PATH
                    | code::NEXT_HOP
                    | code::LOCAL_PREF
                    | code::ATOMIC_AGGREGATE
            );
            let opt_nt = matches!(
                c,
                code::MULTI_EXIT_DISC
                    | code::ORIGINATOR_ID
                    | code::CLUSTER_LIST
                    | code::MP_REACH_NLRI
                    | code::MP_UNREACH_NLRI
            );
            let mut f = flags.unwrap_or(if wk {
                flag::TRANSITIVE
            } else if opt_nt {
                flag::OPTIONAL
            } else {
                flag::OPTIONAL | flag::TRANSITIVE
            });
            if extended {
                f |= flag::EXTENDED_LENGTH;
            } else {
                f &= !flag::EXTENDED_LENGTH;
            }
            let mut out = vec![f, c];
            if f & flag::EXTENDED_LENGTH != 0 {
                out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            } else {
                out.push(value.len() as u8);
            }
            out.extend_from_slice(&value);
            out
        })
}

/// UPDATE bodies whose three parts usually add up, so the attribute decoders
/// (not only the framing) see the input.
fn arb_update_body() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_nlri_bytes(Family::Ipv4),
        vec(arb_raw_attr(), 0..10),
        arb_nlri_bytes(Family::Ipv4),
        option::weighted(0.1, any::<(u16, u16)>()),
    )
        .prop_map(|(withdrawn, attrs, nlri, lens)| {
            let attrs: Vec<u8> = attrs.concat();
            let (wl, tl) = lens.unwrap_or((withdrawn.len() as u16, attrs.len() as u16));
            let mut out = wl.to_be_bytes().to_vec();
            out.extend_from_slice(&withdrawn);
            out.extend_from_slice(&tl.to_be_bytes());
            out.extend_from_slice(&attrs);
            out.extend_from_slice(&nlri);
            out
        })
}

fn arb_update_message() -> impl Strategy<Value = Vec<u8>> {
    arb_update_body().prop_map(|body| {
        let mut m = header(2, body.len());
        m.extend_from_slice(&body);
        m
    })
}

/// OPEN bodies with (usually) well-framed optional parameters, sometimes in
/// RFC 9072's extended form.
fn arb_open_body() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 9]>(),
        vec((any::<u8>(), vec(any::<u8>(), 0..20), any::<bool>()), 0..8),
        any::<bool>(),
        prop::bool::weighted(0.2),
        option::weighted(0.1, any::<u16>()),
    )
        .prop_map(|(fixed, caps, honest, extended, len)| {
            let mut params = Vec::new();
            for (code_, value, ok) in caps {
                params.push(code_);
                params.push(if ok { value.len() as u8 } else { 255 });
                params.extend_from_slice(&value);
            }
            let mut out = fixed.to_vec();
            if extended {
                out.extend_from_slice(&[255, 255]);
                let l = len.unwrap_or(params.len() as u16 + 3);
                out.extend_from_slice(&l.to_be_bytes());
                out.push(if honest { 2 } else { 1 });
                out.extend_from_slice(&(params.len() as u16).to_be_bytes());
            } else {
                let l = len.map_or(params.len() + 2, |l| l as usize);
                out.push(l as u8);
                out.push(if honest { 2 } else { 1 });
                out.push(params.len() as u8);
            }
            out.extend_from_slice(&params);
            out
        })
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4200)) {
        exercise_all_decoders(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_framed_bytes(msg in arb_framed_message()) {
        exercise_all_decoders(&msg);
    }

    #[test]
    fn update_decoder_never_panics_on_update_shaped_bytes(msg in arb_update_message()) {
        exercise_all_decoders(&msg);
        // Every path to the decoder, not only the one through Message::parse.
        if let Ok(p) = UpdatePacket::new_checked(&msg[HEADER_LEN..]) {
            exercise_update_packet(&p);
        }
    }

    #[test]
    fn open_decoder_never_panics_on_open_shaped_bytes(body in arb_open_body()) {
        let mut msg = header(1, body.len());
        msg.extend_from_slice(&body);
        exercise_all_decoders(&msg);
        if let Ok(o) = OpenPacket::new_checked(&body) {
            exercise_open_packet(&o);
        }
    }

    #[test]
    fn nlri_decoders_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        exercise_nlri(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn mutated_bird_messages_never_panic_the_decoders(
        which in any::<Index>(),
        edits in vec((any::<u8>(), any::<Index>(), any::<u8>()), 1..6),
        fix_length in any::<bool>(),
    ) {
        let msgs = bird_messages();
        let msg = which.get(&msgs);
        exercise_all_decoders(&mutate(msg, &edits, fix_length));
    }

    #[test]
    fn mutated_valid_updates_never_panic_the_decoders(
        withdrawn in vec(arb_prefix(), 0..6),
        announced in vec(arb_prefix(), 0..6),
        attrs in arb_attrs(),
        four_octet_as in any::<bool>(),
        edits in vec((any::<u8>(), any::<Index>(), any::<u8>()), 1..6),
        fix_length in any::<bool>(),
    ) {
        let repr = UpdateRepr { withdrawn: &withdrawn, attrs: Some(&attrs), announced: &announced, four_octet_as };
        if let Ok(bytes) = emit_update(&repr) {
            exercise_all_decoders(&mutate(&bytes, &edits, fix_length));
        }
    }

    #[test]
    fn mutated_valid_opens_never_panic_the_decoders(
        specs in vec(arb_cap(), 0..6),
        asn in arb_asn(),
        edits in vec((any::<u8>(), any::<Index>(), any::<u8>()), 1..6),
        fix_length in any::<bool>(),
    ) {
        let caps: Vec<Capability<'_>> = specs.iter().map(CapSpec::capability).collect();
        let repr = OpenRepr { asn, hold_time: 90, router_id: Ipv4Addr::new(10, 0, 0, 2), capabilities: &caps };
        let mut buf = [0u8; 512];
        if let Some(n) = repr.emit(&mut buf) {
            exercise_all_decoders(&mutate(&buf[..n], &edits, fix_length));
        }
    }
}

#[test]
fn every_bird_message_decodes_and_re_frames() {
    let msgs = bird_messages();
    assert_eq!(msgs.len(), 10);
    let stream: Vec<u8> = msgs.concat();
    let mut rest = &stream[..];
    let mut count = 0;
    while let Ok(Some(n)) = frame(rest) {
        Message::parse(&rest[..n]).unwrap();
        exercise_all_decoders(&rest[..n]);
        rest = &rest[n..];
        count += 1;
    }
    assert!(rest.is_empty());
    assert_eq!(count, msgs.len());
}

// ---------------------------------------------------------------------------
// A session fed a hostile stream
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct CountingSink {
    updates: usize,
    announced: usize,
    withdrawn: usize,
}

impl UpdateSink for CountingSink {
    fn apply_update(&mut self, update: &Update<'_>) -> Result<usize, RibFull> {
        self.updates += 1;
        if update.treat_as_withdraw.is_some() {
            assert_eq!(update.announced().count(), 0);
        }
        self.announced += update.announced().count();
        self.withdrawn += update.withdrawn().count();
        Ok(self.announced.saturating_sub(self.withdrawn))
    }
}

const LOCAL_ASN: u32 = 65001;

/// How the scripted peer is set up.
#[derive(Debug, Clone, Copy)]
struct PeerSetup {
    four_octet_as: bool,
    ibgp: bool,
    max_prefixes: Option<u32>,
}

impl PeerSetup {
    fn peer_asn(&self) -> u32 {
        match (self.ibgp, self.four_octet_as) {
            (true, _) => LOCAL_ASN,
            (false, true) => 4_200_000_002,
            (false, false) => 65002,
        }
    }
}

fn arb_setup() -> impl Strategy<Value = PeerSetup> {
    (
        any::<bool>(),
        any::<bool>(),
        option::weighted(0.2, 0u32..20),
    )
        .prop_map(|(four_octet_as, ibgp, max_prefixes)| PeerSetup {
            four_octet_as,
            ibgp,
            max_prefixes,
        })
}

/// A session that accepted a connection from the scripted peer and reached
/// Established (its OPEN and KEEPALIVE already drained).
fn established_session(setup: PeerSetup, now: Instant) -> (Session<'static>, CountingSink) {
    let mut cfg = SessionConfig::new(LOCAL_ASN, Ipv4Addr::new(10, 0, 0, 1), setup.peer_asn());
    cfg.passive = true;
    cfg.hold_time = 9;
    cfg.max_prefixes = setup.max_prefixes;
    let buffers = SessionBuffers::new(Vec::leak(vec![0u8; SESSION_BUFFERS]));
    let mut s = Session::new(cfg, buffers);
    let mut sink = CountingSink::default();
    s.start(now);
    assert!(s.handle_accepted(now));
    let conn = ConnId::Incoming;
    assert!(matches!(
        Message::parse(&queued(&mut s, conn)),
        Ok(Message::Open(_))
    ));

    let mut caps = vec![
        Capability::Multiprotocol { afi: 1, safi: 1 },
        Capability::Multiprotocol { afi: 2, safi: 1 },
        Capability::RouteRefresh,
    ];
    if setup.four_octet_as {
        caps.push(Capability::FourOctetAs(setup.peer_asn()));
    }
    let open = OpenRepr {
        asn: setup.peer_asn(),
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: &caps,
    };
    let mut buf = [0u8; 256];
    let n = open.emit(&mut buf).unwrap();
    let k = emit_keepalive(&mut buf[n..]).unwrap();
    s.handle_data(now, conn, &buf[..n + k], &mut sink);
    assert_eq!(s.poll_event(), Some(SessionEvent::Established));
    assert_eq!(s.poll_event(), None);
    assert!(s.is_established());
    let ctx = s.decode_context();
    assert_eq!(ctx.four_octet_as, setup.four_octet_as);
    assert_eq!(ctx.ebgp, !setup.ibgp);
    assert!(matches!(
        Message::parse(&queued(&mut s, conn)),
        Ok(Message::Keepalive)
    ));
    (s, sink)
}

/// One thing the scripted peer puts on the wire.
#[derive(Debug, Clone)]
enum Item {
    Keepalive,
    Update {
        withdrawn: Vec<Prefix>,
        announced: Vec<Prefix>,
        attrs: Box<PathAttributes>,
    },
    EndOfRib(Family),
    RouteRefresh(u16, u8, u8),
    /// A valid header with an arbitrary body.
    Framed(u8, Vec<u8>),
    /// An UPDATE whose body is shaped but not necessarily valid.
    UpdateBody(Vec<u8>),
    /// ROUTE-REFRESH or End-of-RIB messages back to back, enough to fill the
    /// session's event queue if they were not coalesced.
    Burst {
        family: Family,
        end_of_rib: bool,
        count: usize,
    },
    Notification(u8, u8, Vec<u8>),
    Open,
    Raw(Vec<u8>),
}

fn arb_item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => Just(Item::Keepalive),
        12 => (vec(arb_prefix(), 0..6), vec(arb_prefix(), 0..6), arb_attrs()).prop_map(
            |(withdrawn, announced, attrs)| Item::Update {
                withdrawn,
                announced,
                attrs: Box::new(attrs),
            }
        ),
        2 => arb_family().prop_map(Item::EndOfRib),
        3 => prop_oneof![
            Just((1u16, 0u8, 1u8)),
            Just((2u16, 0u8, 1u8)),
            any::<(u16, u8, u8)>()
        ]
        .prop_map(|(afi, st, safi)| Item::RouteRefresh(afi, st, safi)),
        2 => (1u8..=5, vec(any::<u8>(), 0..64)).prop_map(|(t, b)| Item::Framed(t, b)),
        4 => arb_update_body().prop_map(Item::UpdateBody),
        1 => (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..16))
            .prop_map(|(c, s, d)| Item::Notification(c, s, d)),
        1 => Just(Item::Open),
        1 => vec(any::<u8>(), 1..32).prop_map(Item::Raw),
        1 => (arb_family(), any::<bool>(), 2usize..12)
            .prop_map(|(family, end_of_rib, count)| Item::Burst { family, end_of_rib, count }),
    ]
}

fn encode_items(items: &[Item], four_octet_as: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Keepalive => {
                let mut b = [0u8; HEADER_LEN];
                emit_keepalive(&mut b).unwrap();
                out.extend_from_slice(&b);
            }
            Item::Update {
                withdrawn,
                announced,
                attrs,
            } => {
                let repr = UpdateRepr {
                    withdrawn,
                    attrs: Some(attrs),
                    announced,
                    four_octet_as,
                };
                if let Ok(b) = emit_update(&repr) {
                    out.extend_from_slice(&b);
                }
            }
            Item::EndOfRib(f) => {
                let mut b = [0u8; 64];
                let n = emit_end_of_rib(*f, &mut b).unwrap();
                out.extend_from_slice(&b[..n]);
            }
            Item::RouteRefresh(afi, subtype, safi) => {
                let mut b = [0u8; RouteRefresh::LEN];
                let rr = RouteRefresh {
                    afi: *afi,
                    subtype: *subtype,
                    safi: *safi,
                };
                rr.emit(&mut b).unwrap();
                out.extend_from_slice(&b);
            }
            Item::Framed(ty, body) => {
                out.extend_from_slice(&header(*ty, body.len()));
                out.extend_from_slice(body);
            }
            Item::UpdateBody(body) => {
                if HEADER_LEN + body.len() <= MAX_MESSAGE_LEN {
                    out.extend_from_slice(&header(2, body.len()));
                    out.extend_from_slice(body);
                }
            }
            Item::Burst {
                family,
                end_of_rib,
                count,
            } => {
                let item = if *end_of_rib {
                    Item::EndOfRib(*family)
                } else {
                    Item::RouteRefresh(family.afi(), 0, 1)
                };
                out.extend_from_slice(&encode_items(&vec![item; *count], four_octet_as));
            }
            Item::Notification(c, s, d) => {
                let mut b = [0u8; 64];
                let n = NotificationRepr::new(ErrorCode::from_wire(*c, *s), d)
                    .emit(&mut b)
                    .unwrap();
                out.extend_from_slice(&b[..n]);
            }
            Item::Open => {
                let repr = OpenRepr {
                    asn: 65002,
                    hold_time: 9,
                    router_id: Ipv4Addr::new(10, 0, 0, 2),
                    capabilities: &[],
                };
                let mut b = [0u8; 64];
                let n = repr.emit(&mut b).unwrap();
                out.extend_from_slice(&b[..n]);
            }
            Item::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

/// Everything queued on `conn`, as a driver whose transport takes it all.
fn queued(s: &mut Session, conn: ConnId) -> Vec<u8> {
    let mut buf = vec![0u8; mesh_core::bgp::session::TX_BUF];
    let n = s.poll_transmit(conn, &mut buf);
    buf.truncate(n);
    buf
}

/// Everything the session queued to send must be well-formed BGP.
fn take_tx(s: &mut Session, conn: ConnId) -> bool {
    let tx = queued(s, conn);
    let mut rest = &tx[..];
    while !rest.is_empty() {
        let n = frame(rest)
            .expect("the session sends a valid header")
            .expect("the session sends whole messages");
        let msg = Message::parse(&rest[..n]).expect("the session sends valid messages");
        assert!(
            matches!(msg, Message::Keepalive | Message::Notification(_)),
            "unexpected {msg:?}"
        );
        rest = &rest[n..];
    }
    !tx.is_empty()
}

/// Drains actions, events and transmit buffers as a driver would, until the
/// session has nothing more to say. Returns the events.
fn drain(s: &mut Session, now: Instant, events: &mut Vec<SessionEvent>) {
    for _ in 0..64 {
        let mut busy = false;
        for conn in [ConnId::Outgoing, ConnId::Incoming] {
            busy |= take_tx(s, conn);
        }
        while let Some(e) = s.poll_event() {
            busy = true;
            match e {
                // Passive: the session never connects by itself.
                SessionEvent::Connect => panic!("a passive session connected"),
                SessionEvent::Close(conn) => {
                    take_tx(s, conn);
                    s.handle_transport_closed(now, conn);
                }
                e => events.push(e),
            }
        }
        if !busy {
            return;
        }
    }
    panic!("the session's outputs did not drain");
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn established_session_survives_any_byte_stream(
        setup in arb_setup(),
        items in vec(arb_item(), 0..24),
        flips in vec((any::<Index>(), any::<u8>()), 0..3),
        chunk_sizes in vec(1usize..700, 1..24),
    ) {
        let mut now = Instant::from_secs(1000);
        let (mut s, mut sink) = established_session(setup, now);
        let mut stream = encode_items(&items, setup.four_octet_as);
        if !stream.is_empty() {
            for (at, byte) in &flips {
                let i = at.index(stream.len());
                stream[i] ^= byte | 1;
            }
        }
        let mut events = Vec::new();
        let mut rest = &stream[..];
        for size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*size).min(rest.len());
            s.handle_data(now, ConnId::Incoming, &rest[..n], &mut sink);
            drain(&mut s, now, &mut events);
            rest = &rest[n..];
            now += Duration::from_millis(10);
        }
        prop_assert!(sink.updates as u64 <= s.stats().updates_in);
        let up = s.is_established();
        if !up {
            prop_assert!(s.last_down().is_some());
            prop_assert!(
                matches!(events.last(), Some(SessionEvent::Down(_))),
                "the session went down without a Down event: {:?}",
                events
            );
        }
        prop_assert!(!events.contains(&SessionEvent::Established));

        // Then the peer goes silent: the hold timer must bring the session down.
        for _ in 0..32 {
            let Some(t) = s.poll_timeout() else { break };
            now = now.max(t);
            s.handle_timeout(now);
            drain(&mut s, now, &mut events);
        }
        prop_assert!(!s.is_established());
        prop_assert_eq!(
            events.iter().filter(|e| matches!(e, SessionEvent::Down(_))).count(),
            1,
            "events: {:?}",
            events
        );
    }

    #[test]
    fn established_session_survives_arbitrary_chunks(
        setup in arb_setup(),
        chunks in vec(vec(any::<u8>(), 0..300), 0..8),
        prefix_valid_header in any::<bool>(),
    ) {
        let now = Instant::from_secs(1000);
        let (mut s, mut sink) = established_session(setup, now);
        let mut events = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut data = chunk.clone();
            // Optionally start with a marker so the bytes get past framing.
            if i == 0 && prefix_valid_header && data.len() >= 3 {
                let mut framed = MARKER.to_vec();
                framed.extend_from_slice(&data);
                data = framed;
            }
            s.handle_data(now, ConnId::Incoming, &data, &mut sink);
            drain(&mut s, now, &mut events);
        }
        while s.poll_event().is_some() {}
        if !s.is_established() {
            prop_assert!(matches!(events.last(), Some(SessionEvent::Down(_))));
        }
    }
}

// ---------------------------------------------------------------------------
// BFD
// ---------------------------------------------------------------------------

fn arb_bfd_state() -> impl Strategy<Value = bfd::State> {
    prop_oneof![
        Just(bfd::State::AdminDown),
        Just(bfd::State::Down),
        Just(bfd::State::Init),
        Just(bfd::State::Up),
    ]
}

prop_compose! {
    fn arb_bfd_packet()(
        diag in 0u8..9,
        state in arb_bfd_state(),
        pf in 0u8..3,
        cpi in any::<bool>(),
        demand in any::<bool>(),
        detect_mult in 1u8..,
        my in 1u32..,
        your in any::<u32>(),
        tx in any::<u32>(),
        rx in any::<u32>(),
        echo in any::<u32>(),
    ) -> bfd::ControlPacket {
        bfd::ControlPacket {
            diag: bfd::Diagnostic::from(diag),
            state,
            poll: pf == 1,
            final_: pf == 2,
            control_plane_independent: cpi,
            demand,
            detect_mult,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx: tx,
            required_min_rx: rx,
            required_min_echo_rx: echo,
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn bfd_packet_round_trips(p in arb_bfd_packet(), trailer in vec(any::<u8>(), 0..8)) {
        let mut b = vec![0u8; bfd::PACKET_LEN];
        prop_assert_eq!(p.emit(&mut b), Some(bfd::PACKET_LEN));
        b.extend_from_slice(&trailer);
        prop_assert_eq!(bfd::ControlPacket::parse(&b), Ok(p));
        prop_assert_eq!(p.emit(&mut [0u8; bfd::PACKET_LEN - 1]), None);
    }

    #[test]
    fn bfd_parse_never_panics(bytes in vec(any::<u8>(), 0..64)) {
        if let Ok(p) = bfd::ControlPacket::parse(&bytes) {
            prop_assert!(bytes.len() >= bfd::PACKET_LEN);
            prop_assert_ne!(p.my_discriminator, 0);
            prop_assert_ne!(p.detect_mult, 0);
        }
    }

    /// Any sequence of well-formed packets, at any spacing: the session never
    /// panics, Up and Down alternate, and silence ends an Up session within
    /// its detection time.
    #[test]
    fn bfd_session_survives_any_packets(
        steps in vec((0u64..200, arb_bfd_packet(), any::<bool>(), any::<bool>()), 0..40),
    ) {
        let mut now = Instant::from_secs(100);
        let mut s = bfd::Session::new(bfd::Config::GAMING, 42, 1);
        s.start(now);
        let mut up = false;
        let apply = |s: &bfd::Session, e: Option<bfd::Event>, up: &mut bool| {
            match e {
                Some(bfd::Event::Up) => { assert!(!*up); *up = true; }
                Some(bfd::Event::Down(_) | bfd::Event::PeerAdminDown) => { assert!(*up); *up = false; }
                None => {}
            }
            assert_eq!(*up, s.state() == bfd::State::Up);
        };
        for (ms, mut p, addressed, good_ttl) in steps {
            now += Duration::from_millis(ms);
            s.handle_timeout(now);
            let e = s.poll_event();
            apply(&s, e, &mut up);
            prop_assert_eq!(s.poll_event(), None);
            while let Some(tx) = s.poll_transmit() {
                prop_assert!(!(tx.poll && tx.final_));
                prop_assert_eq!(tx.my_discriminator, 42);
            }
            if addressed {
                p.your_discriminator = 42;
            }
            let before = s.state();
            match s.handle_packet(now, &p, if good_ttl { 255 } else { 1 }) {
                Ok(()) => {
                    let e = s.poll_event();
                    apply(&s, e, &mut up);
                    prop_assert_eq!(s.poll_event(), None);
                }
                Err(_) => prop_assert_eq!(s.state(), before),
            }
            while s.poll_transmit().is_some() {}
        }
        if up {
            now += s.detection_time() + Duration::from_millis(1);
            s.handle_timeout(now);
            let e = s.poll_event();
            apply(&s, e, &mut up);
            prop_assert!(!up);
        }
    }
}

// ---------------------------------------------------------------------------
// STUN
// ---------------------------------------------------------------------------

use mesh_core::stun::{self, attr, ChangeRequest, Class, TransactionId};
use std::net::{SocketAddr, SocketAddrV6};

fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(a, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)),
        // Flow info and scope id are not carried by STUN: leave them zero.
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(a),
            p,
            0,
            0
        ))),
    ]
}

fn arb_stun_class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::SuccessResponse),
        Just(Class::ErrorResponse),
    ]
}

fn arb_change_request() -> impl Strategy<Value = ChangeRequest> {
    (any::<bool>(), any::<bool>()).prop_map(|(ip, port)| ChangeRequest { ip, port })
}

/// Everything one STUN message built by `stun::Builder` can say.
#[derive(Debug, Clone)]
struct StunCase {
    class: Class,
    method: u16,
    tid: [u8; 12],
    xor_mapped: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    response_origin: Option<SocketAddr>,
    other: Option<SocketAddr>,
    change: Option<ChangeRequest>,
    error: Option<(u16, String)>,
    software: Option<String>,
    username: Option<String>,
    unknown: Vec<u16>,
    key: Option<Vec<u8>>,
    fingerprint: bool,
}

prop_compose! {
    fn arb_stun_case()(
        class in arb_stun_class(),
        method in 0u16..=stun::MAX_METHOD,
        tid in any::<[u8; 12]>(),
        xor_mapped in option::of(arb_socket_addr()),
        mapped in option::of(arb_socket_addr()),
        response_origin in option::of(arb_socket_addr()),
        other in option::of(arb_socket_addr()),
        change in option::of(arb_change_request()),
        error in option::of((300u16..700, "[ -~]{0,40}")),
        software in option::of("\\PC{0,30}"),
        username in option::of("[a-zA-Z0-9:]{0,40}"),
        unknown in vec(any::<u16>(), 0..6),
        key in option::of(vec(any::<u8>(), 0..100)),
        fingerprint in any::<bool>(),
    ) -> StunCase {
        StunCase {
            class, method, tid, xor_mapped, mapped, response_origin, other, change, error,
            software, username, unknown, key, fingerprint,
        }
    }
}

fn build_stun(c: &StunCase, buf: &mut [u8]) -> Result<usize, stun::StunError> {
    let mut b = stun::Builder::new(buf, c.class, c.method, TransactionId(c.tid))?;
    if let Some(a) = c.xor_mapped {
        b.xor_mapped_address(a)?;
    }
    if let Some(a) = c.mapped {
        b.mapped_address(a)?;
    }
    if let Some(a) = c.response_origin {
        b.response_origin(a)?;
    }
    if let Some(a) = c.other {
        b.other_address(a)?;
    }
    if let Some(ch) = c.change {
        b.change_request(ch)?;
    }
    if let Some((code, reason)) = &c.error {
        b.error_code(*code, reason)?;
    }
    if let Some(s) = &c.software {
        b.software(s)?;
    }
    if let Some(s) = &c.username {
        b.username(s)?;
    }
    if !c.unknown.is_empty() {
        b.unknown_attributes(&c.unknown)?;
    }
    if let Some(k) = &c.key {
        b.message_integrity(k)?;
    }
    if c.fingerprint {
        b.fingerprint()?;
    }
    b.finish()
}

/// Every accessor of a parsed message; checks the invariants that hold for
/// any input.
fn exercise_stun(bytes: &[u8]) {
    let is = stun::is_stun(bytes);
    let Ok(m) = stun::Message::parse(bytes) else {
        return;
    };
    assert!(is, "parsed but not is_stun");
    assert_eq!(m.as_bytes(), bytes);
    let (class, method) = (m.class(), m.method());
    assert_eq!(
        stun::message_type(class, method),
        Some(m.message_type() & 0x3FFF)
    );
    let _ = m.transaction_id();
    let counted = m.attributes().count();
    let raw = m.raw_attributes().count();
    assert!(counted <= raw);
    // Attribute values and their padding lie inside the message.
    let total: usize = m
        .raw_attributes()
        .map(|(_, v)| 4 + v.len().div_ceil(4) * 4)
        .sum();
    assert_eq!(total, bytes.len() - stun::HEADER_LEN);
    let _ = m.xor_mapped_address();
    let _ = m.mapped_address();
    let _ = m.response_origin();
    let _ = m.other_address();
    let _ = m.change_request();
    if let Some(Ok((code, _))) = m.error_code() {
        assert!((300..700).contains(&code));
    }
    if let Some(Ok(u)) = m.unknown_attributes() {
        let _ = u.count();
    }
    let _ = (m.software(), m.username(), m.realm(), m.nonce());
    for t in m.unknown_comprehension_required() {
        assert!(t < 0x8000 && !attr::UNDERSTOOD.contains(&t));
    }
    // Accessors are pure.
    let fp = m.fingerprint_ok();
    assert_eq!(m.fingerprint_ok(), fp);
    let mi = m.verify_integrity(b"key");
    assert_eq!(m.verify_integrity(b"key"), mi);
    assert_eq!(mi.is_some(), m.attribute(attr::MESSAGE_INTEGRITY).is_some());
    if m.is_binding_request() {
        let from: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
        let mut out = [0u8; 128];
        let n = stun::binding_success(&m, from, &mut out).expect("a Binding answer fits");
        let r = stun::Message::parse(&out[..n]).expect("the answer parses");
        assert_eq!(r.transaction_id(), m.transaction_id());
        assert_eq!(r.class(), Class::SuccessResponse);
        assert_eq!(r.xor_mapped_address(), Some(Ok(from)));
        assert_eq!(r.fingerprint_ok(), Some(true));
    }
}

/// Attribute types worth generating: everything the codec knows, and a few
/// it does not.
fn arb_stun_attr_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => proptest::sample::select(vec![
            attr::MAPPED_ADDRESS,
            attr::CHANGE_REQUEST,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::ERROR_CODE,
            attr::UNKNOWN_ATTRIBUTES,
            attr::REALM,
            attr::NONCE,
            attr::MESSAGE_INTEGRITY_SHA256,
            attr::XOR_MAPPED_ADDRESS,
            attr::SOFTWARE,
            attr::FINGERPRINT,
            attr::RESPONSE_ORIGIN,
            attr::OTHER_ADDRESS,
        ]),
        1 => any::<u16>(),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn stun_round_trip(c in arb_stun_case()) {
        let mut buf = [0u8; 1024];
        let n = build_stun(&c, &mut buf).expect("fits in 1024 bytes");
        let bytes = &buf[..n];
        prop_assert!(stun::is_stun(bytes));
        let m = stun::Message::parse(bytes).expect("what the builder writes parses");
        prop_assert_eq!(m.class(), c.class);
        prop_assert_eq!(m.method(), c.method);
        prop_assert_eq!(m.transaction_id(), TransactionId(c.tid));
        prop_assert_eq!(m.xor_mapped_address(), c.xor_mapped.map(Ok));
        prop_assert_eq!(m.mapped_address(), c.mapped.map(Ok));
        prop_assert_eq!(m.response_origin(), c.response_origin.map(Ok));
        prop_assert_eq!(m.other_address(), c.other.map(Ok));
        prop_assert_eq!(m.change_request(), c.change.map(Ok));
        prop_assert_eq!(
            m.error_code(),
            c.error.as_ref().map(|(code, r)| Ok((*code, r.as_str())))
        );
        prop_assert_eq!(m.software(), c.software.as_deref().map(Ok));
        prop_assert_eq!(m.username(), c.username.as_deref().map(Ok));
        match m.unknown_attributes() {
            None => prop_assert!(c.unknown.is_empty()),
            Some(u) => prop_assert_eq!(u.unwrap().collect::<Vec<_>>(), c.unknown.clone()),
        }
        prop_assert_eq!(m.unknown_comprehension_required().count(), 0);
        match &c.key {
            Some(k) => {
                prop_assert_eq!(m.verify_integrity(k), Some(true));
                let mut wrong = k.clone();
                wrong.push(1);
                prop_assert_eq!(m.verify_integrity(&wrong), Some(false));
            }
            None => prop_assert_eq!(m.verify_integrity(b"key"), None),
        }
        prop_assert_eq!(m.fingerprint_ok(), c.fingerprint.then_some(true));
        exercise_stun(bytes);

        // The builder never writes past a smaller buffer, and fails cleanly.
        let mut small = vec![0u8; n - 1];
        prop_assert_eq!(build_stun(&c, &mut small), Err(stun::StunError::BufferTooSmall));
    }

    #[test]
    fn stun_parse_never_panics(
        mut bytes in vec(any::<u8>(), 0..300),
        patch_header in any::<bool>(),
        keep_type in any::<bool>(),
    ) {
        exercise_stun(&bytes);
        // The same bytes behind a valid header, so they reach the attribute
        // walk.
        if patch_header && bytes.len() >= stun::HEADER_LEN {
            let body = (bytes.len() - stun::HEADER_LEN) / 4 * 4;
            bytes.truncate(stun::HEADER_LEN + body);
            if keep_type {
                bytes[0] &= 0x3F;
            } else {
                bytes[..2].copy_from_slice(&[0x00, 0x01]); // Binding request
            }
            bytes[2..4].copy_from_slice(&(body as u16).to_be_bytes());
            bytes[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
            prop_assert!(stun::is_stun(&bytes));
            exercise_stun(&bytes);
        }
    }

    /// Well-framed messages with arbitrary attribute values: framing parses,
    /// every accessor copes with the values.
    #[test]
    fn stun_accessors_survive_any_attribute_values(
        class in arb_stun_class(),
        tid in any::<[u8; 12]>(),
        attrs in vec((arb_stun_attr_type(), vec(any::<u8>(), 0..28)), 0..10),
        flips in vec((any::<Index>(), any::<u8>()), 0..3),
    ) {
        let mut buf = [0u8; 512];
        let mut b = stun::Builder::new(&mut buf, class, stun::BINDING, TransactionId(tid)).unwrap();
        for (ty, value) in &attrs {
            // MESSAGE-INTEGRITY and FINGERPRINT seal the builder; raw ones do
            // too, and later attributes are then refused.
            match b.attribute(*ty, value) {
                Ok(_) | Err(stun::StunError::AttributeOrder) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let n = b.finish().unwrap();
        let mut bytes = buf[..n].to_vec();
        prop_assert!(stun::Message::parse(&bytes).is_ok());
        exercise_stun(&bytes);
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        exercise_stun(&bytes);
    }
}

// ---- peer exchange ----

fn pex_endpoint() -> impl Strategy<Value = std::net::SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(a, p)| std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(a, p)| std::net::SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p)),
    ]
}

fn pex_message() -> impl Strategy<Value = mesh_core::pex::Message> {
    use mesh_core::pex::{Entry, Message, MAX_CANDIDATES, MAX_ENTRIES};
    prop_oneof![
        (
            any::<u8>(),
            any::<u8>(),
            vec(
                (any::<u32>(), any::<bool>(), pex_endpoint()),
                0..=MAX_ENTRIES
            )
        )
            .prop_map(|(nat, playstation, v)| Message::Endpoints {
                nat,
                playstation,
                entries: v
                    .into_iter()
                    .map(|(s, own, endpoint)| Entry {
                        subject: Ipv4Addr::from(s),
                        own,
                        endpoint,
                    })
                    .collect(),
            }),
        (
            any::<u32>(),
            any::<bool>(),
            vec(pex_endpoint(), 0..=MAX_CANDIDATES)
        )
            .prop_map(|(token, answer, c)| Message::Punch {
                token,
                answer,
                candidates: c.into_iter().collect(),
            }),
    ]
}

proptest! {
    #[test]
    fn pex_round_trips(m in pex_message()) {
        let mut buf = [0u8; mesh_core::pex::MAX_LEN];
        let n = m.encode(&mut buf).unwrap();
        prop_assert_eq!(mesh_core::pex::Message::decode(&buf[..n]), Ok(m));
        // Any truncation is an error.
        for cut in 0..n {
            prop_assert!(mesh_core::pex::Message::decode(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn pex_decode_never_panics(bytes in vec(any::<u8>(), 0..600), patch in any::<bool>()) {
        let mut bytes = bytes;
        if patch && bytes.len() >= 4 {
            bytes[..3].copy_from_slice(b"MX\x01");
            bytes[3] = 1 + bytes[3] % 2;
        }
        let _ = mesh_core::pex::Message::decode(&bytes);
    }
}

// ---- relayed discovery ----

fn discovery_message() -> impl Strategy<Value = mesh_core::discovery::Relayed> {
    use mesh_core::discovery::{Kind, Relayed, MAX_PAYLOAD};
    let kind = prop_oneof![
        Just(Kind::LimitedBroadcast),
        Just(Kind::DirectedBroadcast),
        // 224.0.0.0/4
        (0u32..1 << 28).prop_map(|g| Kind::Multicast(Ipv4Addr::from(0xe000_0000 | g))),
    ];
    (
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u16>(), kind, any::<u16>()),
        prop_oneof![
            vec(any::<u8>(), 0..=64),
            vec(any::<u8>(), MAX_PAYLOAD - 8..=MAX_PAYLOAD),
        ],
    )
        .prop_map(
            |((origin, boot, seq), (src, src_port, kind, dst_port), payload)| Relayed {
                origin: Ipv4Addr::from(origin),
                boot,
                seq,
                src: Ipv4Addr::from(src),
                src_port,
                kind,
                dst_port,
                payload: heapless::Vec::from_slice(&payload).unwrap(),
            },
        )
}

proptest! {
    #[test]
    fn discovery_round_trips(m in discovery_message()) {
        use mesh_core::discovery::{Relayed, MAX_LEN};
        let mut buf = [0u8; MAX_LEN];
        let enc = m.encode(&mut buf).unwrap().to_vec();
        prop_assert_eq!(Relayed::decode(&enc), Ok(m));
        // Any truncation is an error (every cut of a short one, some of a
        // long one: each decode of 1,200 bytes is not free in debug mode).
        let step = 1 + enc.len() / 64;
        for cut in (0..enc.len()).step_by(step).chain([enc.len() - 1]) {
            prop_assert!(Relayed::decode(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn discovery_decode_never_panics(bytes in vec(any::<u8>(), 0..1300), patch in any::<bool>()) {
        let mut bytes = bytes;
        if patch && bytes.len() >= 2 {
            bytes[..2].copy_from_slice(b"D\x01");
        }
        let _ = mesh_core::discovery::Relayed::decode(&bytes);
    }
}
