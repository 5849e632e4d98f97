use super::*;
use crate::bgp::attr::LargeCommunity;
use crate::bgp::message::Message;
use crate::bgp::testdata::bird;

extern crate std;
use std::string::ToString;
use std::vec::Vec;

const EBGP_65002: DecodeContext = DecodeContext {
    four_octet_as: true,
    ebgp: true,
    peer_asn: 65002,
};

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn decode_bird(name: &str) -> (Vec<Prefix>, Vec<Prefix>, Update<'static>) {
    let bytes: &'static [u8] = std::boxed::Box::leak(bird(name).to_vec().into_boxed_slice());
    let Message::Update(u) = Message::parse(bytes).unwrap() else {
        panic!("{name} is not an UPDATE")
    };
    let u = u.decode(&EBGP_65002).unwrap();
    (u.announced().collect(), u.withdrawn().collect(), u)
}

#[test]
fn bird_ipv4_update_with_communities() {
    let (ann, wd, u) = decode_bird("update_v4_communities");
    assert_eq!(ann, [pfx("10.2.0.0/16")]);
    assert!(wd.is_empty());
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.attrs.origin, Origin::Igp);
    assert_eq!(u.attrs.as_path.to_string(), "65002");
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 255, 0, 2)));
    assert_eq!(u.attrs.communities.as_slice(), &[(65002 << 16) | 100]);
    assert_eq!(
        u.attrs.large_communities.as_slice(),
        &[LargeCommunity {
            global: 65002,
            local1: 1,
            local2: 2
        }]
    );
}

#[test]
fn bird_ipv6_update_in_mp_reach_with_link_local_next_hop() {
    let (ann, _, u) = decode_bird("update_v6_mp_reach");
    assert_eq!(ann, [pfx("fd00:2::/48")]);
    let Some(MpNextHop::V6 { global, link_local }) = u.attrs.mp_next_hop else {
        panic!("no IPv6 next hop");
    };
    assert_eq!(global, "fd00::2".parse::<Ipv6Addr>().unwrap());
    assert!(link_local.unwrap().is_unicast_link_local());
    assert_eq!(u.attrs.next_hop, None);
}

#[test]
fn bird_end_of_rib_markers() {
    assert_eq!(decode_bird("eor_v4").2.end_of_rib(), Some(Family::Ipv4));
    assert_eq!(decode_bird("eor_v6").2.end_of_rib(), Some(Family::Ipv6));
    assert_eq!(decode_bird("update_v4").2.end_of_rib(), None);
}

#[test]
fn bird_withdrawal() {
    let (ann, wd, _) = decode_bird("withdraw_v4");
    assert!(ann.is_empty());
    assert_eq!(wd, [pfx("10.2.0.0/16"), pfx("192.168.2.0/24")]);
}

#[test]
fn our_end_of_rib_matches_birds_bytes() {
    let mut b = [0u8; 64];
    let n = emit_end_of_rib(Family::Ipv4, &mut b).unwrap();
    assert_eq!(&b[..n], bird("eor_v4").as_slice());
    let n = emit_end_of_rib(Family::Ipv6, &mut b).unwrap();
    assert_eq!(&b[..n], bird("eor_v6").as_slice());
}

#[test]
fn our_encoding_of_birds_update_is_identical() {
    // Same attributes, same order as BIRD puts them: byte-identical output.
    let (ann, _, u) = decode_bird("update_v4_communities");
    let repr = UpdateRepr {
        withdrawn: &[],
        attrs: Some(&u.attrs),
        announced: &ann,
        four_octet_as: true,
    };
    let mut b = [0u8; 128];
    let n = repr.emit(&mut b).unwrap();
    assert_eq!(&b[..n], bird("update_v4_communities").as_slice());
}

// ---- RFC 7606: an UPDATE built attribute by attribute ----

struct Build {
    attrs: Vec<u8>,
    nlri: Vec<u8>,
    withdrawn: Vec<u8>,
}

impl Build {
    fn new() -> Build {
        Build {
            attrs: Vec::new(),
            nlri: std::vec![24, 192, 168, 9],
            withdrawn: Vec::new(),
        }
    }
    /// A valid eBGP announcement of 192.168.9.0/24 from AS 65002.
    fn valid() -> Build {
        Build::new()
            .attr(0x40, 1, &[0])
            .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
            .attr(0x40, 3, &[10, 0, 0, 2])
    }
    fn attr(mut self, flags: u8, code: u8, v: &[u8]) -> Build {
        self.attrs.push(flags);
        self.attrs.push(code);
        if flags & 0x10 != 0 {
            self.attrs
                .extend_from_slice(&(v.len() as u16).to_be_bytes());
        } else {
            self.attrs.push(v.len() as u8);
        }
        self.attrs.extend_from_slice(v);
        self
    }
    fn raw_attrs(mut self, bytes: &[u8]) -> Build {
        self.attrs.extend_from_slice(bytes);
        self
    }
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(self.withdrawn.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.withdrawn);
        b.extend_from_slice(&(self.attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.attrs);
        b.extend_from_slice(&self.nlri);
        b
    }
    fn decode_with(
        &self,
        ctx: &DecodeContext,
    ) -> Result<(Option<UpdateError>, AttrSet, PathAttributes, usize, usize), UpdateError> {
        let body = self.body();
        let p = UpdatePacket::new_checked(&body).map_err(|e| match e {
            MessageError::Update(u) => u,
            other => panic!("{other:?}"),
        })?;
        let u = p.decode(ctx)?;
        Ok((
            u.treat_as_withdraw,
            u.discarded,
            u.attrs.clone(),
            u.announced().count(),
            u.withdrawn().count(),
        ))
    }
    fn decode(
        &self,
    ) -> Result<(Option<UpdateError>, AttrSet, PathAttributes, usize, usize), UpdateError> {
        self.decode_with(&EBGP_65002)
    }
}

fn assert_treat_as_withdraw(b: Build, why: UpdateError) {
    let (taw, _, _, ann, wd) = b.decode().unwrap();
    assert_eq!(taw, Some(why));
    assert_eq!(
        (ann, wd),
        (0, 1),
        "the announced route must become a withdrawal"
    );
}

fn assert_discarded(b: Build, code: u8) {
    let (taw, discarded, _, ann, _) = b.decode().unwrap();
    assert_eq!(taw, None);
    assert!(discarded.contains(code), "attribute {code} not discarded");
    assert_eq!(ann, 1, "the route must survive attribute-discard");
}

#[test]
fn valid_update_is_accepted() {
    let (taw, discarded, a, ann, wd) = Build::valid().decode().unwrap();
    assert_eq!(taw, None);
    assert!(discarded.is_empty());
    assert_eq!((ann, wd), (1, 0));
    assert_eq!(a.as_path.to_string(), "65002");
}

#[test]
fn origin_errors_are_treat_as_withdraw() {
    let b = Build::new()
        .attr(0x40, 1, &[7])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
        .attr(0x40, 3, &[10, 0, 0, 2]);
    assert_treat_as_withdraw(b, UpdateError::InvalidOrigin(7));
    let b = Build::new()
        .attr(0x40, 1, &[0, 0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
        .attr(0x40, 3, &[10, 0, 0, 2]);
    assert_treat_as_withdraw(b, UpdateError::AttributeLength(1));
}

#[test]
fn malformed_as_path_is_treat_as_withdraw() {
    for path in [
        &[2, 0][..],                   // zero-length segment
        &[9, 1, 0, 0, 0xfd, 0xea][..], // unknown segment type
        &[2, 2, 0, 0, 0xfd, 0xea][..], // overrun
        &[2][..],                      // truncated header
    ] {
        let b = Build::new()
            .attr(0x40, 1, &[0])
            .attr(0x40, 2, path)
            .attr(0x40, 3, &[10, 0, 0, 2]);
        assert_treat_as_withdraw(b, UpdateError::MalformedAsPath);
    }
}

#[test]
fn ebgp_path_must_start_with_the_peer_as() {
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xeb])
        .attr(0x40, 3, &[10, 0, 0, 2]);
    assert_treat_as_withdraw(b, UpdateError::FirstAsNotPeer);
}

#[test]
fn missing_mandatory_attributes_are_treat_as_withdraw() {
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 3, &[10, 0, 0, 2]);
    assert_treat_as_withdraw(b, UpdateError::MissingWellKnownAttribute(2));
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea]);
    assert_treat_as_withdraw(b, UpdateError::MissingWellKnownAttribute(3));
}

#[test]
fn missing_attributes_do_not_matter_without_nlri() {
    let mut b = Build::new();
    b.nlri.clear();
    b.withdrawn = std::vec![24, 192, 168, 9];
    let (taw, _, _, ann, wd) = b.decode().unwrap();
    assert_eq!((taw, ann, wd), (None, 0, 1));
}

#[test]
fn next_hop_errors_are_treat_as_withdraw() {
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
        .attr(0x40, 3, &[10, 0, 0]);
    assert_treat_as_withdraw(b, UpdateError::AttributeLength(3));
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
        .attr(0x40, 3, &[224, 0, 0, 1]);
    assert_treat_as_withdraw(b, UpdateError::InvalidNextHop);
}

#[test]
fn flag_conflicts_are_treat_as_withdraw() {
    // ORIGIN marked optional.
    let b = Build::valid().attr(0xc0, 8, &[0, 0, 0, 1]);
    let (taw, ..) = b.decode().unwrap();
    assert_eq!(taw, None);
    let b = Build::new()
        .attr(0xc0, 1, &[0])
        .attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
        .attr(0x40, 3, &[10, 0, 0, 2]);
    assert_treat_as_withdraw(b, UpdateError::AttributeFlags(1));
    // COMMUNITIES marked well-known.
    let b = Build::valid().attr(0x40, 8, &[0, 0, 0, 1]);
    assert_treat_as_withdraw(b, UpdateError::AttributeFlags(8));
}

#[test]
fn med_and_community_length_errors_are_treat_as_withdraw() {
    assert_treat_as_withdraw(
        Build::valid().attr(0x80, 4, &[0, 0, 1]),
        UpdateError::AttributeLength(4),
    );
    assert_treat_as_withdraw(
        Build::valid().attr(0xc0, 8, &[0, 0, 1]),
        UpdateError::AttributeLength(8),
    );
    assert_treat_as_withdraw(
        Build::valid().attr(0xc0, 8, &[]),
        UpdateError::AttributeLength(8),
    );
    assert_treat_as_withdraw(
        Build::valid().attr(0xc0, 32, &[0; 13]),
        UpdateError::AttributeLength(32),
    );
    assert_treat_as_withdraw(
        Build::valid().attr(0xc0, 16, &[0; 7]),
        UpdateError::AttributeLength(16),
    );
}

#[test]
fn local_pref_from_an_external_peer_is_discarded() {
    assert_discarded(Build::valid().attr(0x40, 5, &[0, 0, 0, 200]), 5);
    // Even malformed: it is discarded before it is looked at.
    assert_discarded(Build::valid().attr(0x40, 5, &[1]), 5);
}

#[test]
fn local_pref_from_an_internal_peer_is_kept_or_treat_as_withdraw() {
    let ibgp = DecodeContext {
        four_octet_as: true,
        ebgp: false,
        peer_asn: 65002,
    };
    let (taw, _, a, ..) = Build::valid()
        .attr(0x40, 5, &[0, 0, 0, 200])
        .decode_with(&ibgp)
        .unwrap();
    assert_eq!((taw, a.local_pref), (None, Some(200)));
    let (taw, ..) = Build::valid()
        .attr(0x40, 5, &[1])
        .decode_with(&ibgp)
        .unwrap();
    assert_eq!(taw, Some(UpdateError::AttributeLength(5)));
}

#[test]
fn atomic_aggregate_and_aggregator_errors_are_discarded() {
    assert_discarded(Build::valid().attr(0x40, 6, &[1]), 6);
    assert_discarded(Build::valid().attr(0xc0, 7, &[0; 5]), 7);
}

#[test]
fn route_reflection_attributes_from_ebgp_are_discarded() {
    assert_discarded(Build::valid().attr(0x80, 9, &[1, 2, 3, 4]), 9);
    assert_discarded(Build::valid().attr(0x80, 10, &[1, 2, 3, 4]), 10);
}

#[test]
fn duplicate_attributes_keep_the_first() {
    let b = Build::valid()
        .attr(0x80, 4, &[0, 0, 0, 5])
        .attr(0x80, 4, &[0, 0, 0, 9]);
    let (taw, discarded, a, ann, _) = b.decode().unwrap();
    assert_eq!((taw, a.med, ann), (None, Some(5), 1));
    assert!(discarded.contains(4));
}

#[test]
fn duplicate_mp_reach_is_a_session_reset() {
    let mp = [
        0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    ];
    let b = Build::valid().attr(0x80, 14, &mp).attr(0x80, 14, &mp);
    assert_eq!(b.decode().unwrap_err(), UpdateError::MalformedAttributeList);
}

#[test]
fn malformed_mp_reach_is_a_session_reset() {
    // Next hop length 5 does not fit IPv6.
    let b = Build::valid().attr(0x80, 14, &[0, 2, 1, 5, 1, 2, 3, 4, 5, 0]);
    assert_eq!(b.decode().unwrap_err(), UpdateError::OptionalAttribute(14));
    // NLRI prefix length 129.
    let mut mp = std::vec![0, 2, 1, 16];
    mp.extend_from_slice(&[0xfd; 16]);
    mp.extend_from_slice(&[0, 129, 1]);
    let b = Build::valid().attr(0x80, 14, &mp);
    assert_eq!(b.decode().unwrap_err(), UpdateError::OptionalAttribute(14));
    // Wrong flags on MP_UNREACH.
    let b = Build::valid().attr(0x40, 15, &[0, 2, 1]);
    assert_eq!(b.decode().unwrap_err(), UpdateError::AttributeFlags(15));
}

#[test]
fn attribute_overrunning_the_field_is_treat_as_withdraw() {
    // RFC 7606 §4: the NLRI is found by the Total Path Attribute Length;
    // the session stays.
    let b = Build::valid().raw_attrs(&[0x80, 4, 10, 0, 0]);
    assert_treat_as_withdraw(b, UpdateError::AttributeLength(4));
    // Fewer octets left than one attribute's header: the same.
    let b = Build::valid().raw_attrs(&[0x80]);
    assert_treat_as_withdraw(b, UpdateError::AttributeLength(0));
    // An MP_REACH_NLRI read before the overrun: its prefix is withdrawn with
    // the IPv4 one, nothing is announced.
    let mut mp = std::vec![0, 2, 1, 16];
    mp.extend_from_slice(&[0xfd; 16]);
    mp.extend_from_slice(&[0, 48, 0xfd, 0, 0, 1, 0, 0]);
    let b = Build::valid()
        .attr(0x80, 14, &mp)
        .raw_attrs(&[0x80, 4, 10, 0, 0]);
    let (taw, _, _, ann, wd) = b.decode().unwrap();
    assert_eq!(taw, Some(UpdateError::AttributeLength(4)));
    assert_eq!((ann, wd), (0, 2), "the IPv4 and the IPv6 prefix withdrawn");
}

#[test]
fn unknown_well_known_attribute_is_a_session_reset() {
    let b = Build::valid().attr(0x40, 99, &[1]);
    assert_eq!(
        b.decode().unwrap_err(),
        UpdateError::UnrecognizedWellKnownAttribute(99)
    );
}

#[test]
fn unknown_optional_attributes_are_kept_raw_but_not_stored() {
    let body = Build::valid()
        .attr(0xc0, 99, &[1, 2, 3])
        .attr(0x80, 100, &[])
        .body();
    let u = UpdatePacket::new_checked(&body)
        .unwrap()
        .decode(&EBGP_65002)
        .unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    let unknown: Vec<_> = u
        .unknown_attributes()
        .map(|a| (a.flags, a.code, a.value))
        .collect();
    assert_eq!(
        unknown,
        [(0xc0, 99, &[1u8, 2, 3][..]), (0x80, 100, &[][..])]
    );
}

#[test]
fn malformed_nlri_is_a_session_reset() {
    let mut b = Build::valid();
    b.nlri = std::vec![33, 1, 2, 3, 4, 5];
    assert_eq!(b.decode().unwrap_err(), UpdateError::InvalidNetworkField);
    let mut b = Build::valid();
    b.withdrawn = std::vec![24, 1];
    assert_eq!(b.decode().unwrap_err(), UpdateError::InvalidNetworkField);
}

#[test]
fn lengths_that_do_not_add_up_are_a_session_reset() {
    let mut body = Build::valid().body();
    body[3] += 1; // total path attribute length one too many... eats an NLRI octet
    body.truncate(body.len() - 4);
    assert!(matches!(
        UpdatePacket::new_checked(&body),
        Err(MessageError::Update(UpdateError::MalformedAttributeList))
    ));
}

#[test]
fn two_octet_as_path_is_merged_with_as4_path() {
    let ctx = DecodeContext {
        four_octet_as: false,
        ebgp: true,
        peer_asn: 65002,
    };
    // AS_PATH 65002 23456 (AS_TRANS), AS4_PATH 4200000001.
    let b = Build::new()
        .attr(0x40, 1, &[0])
        .attr(0x40, 2, &[2, 2, 0xfd, 0xea, 0x5b, 0xa0])
        .attr(0x40, 3, &[10, 0, 0, 2])
        .attr(0xc0, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x01]);
    let (taw, _, a, ..) = b.decode_with(&ctx).unwrap();
    assert_eq!(taw, None);
    assert_eq!(a.as_path.to_string(), "65002 4200000001");
}

#[test]
fn emit_and_decode_agree_for_ipv4_and_ipv6_together() {
    let mut attrs = PathAttributes {
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        mp_next_hop: Some(MpNextHop::V6 {
            global: "fd00::1".parse().unwrap(),
            link_local: None,
        }),
        med: Some(10),
        atomic_aggregate: true,
        aggregator: Some(Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(10, 0, 0, 1),
        }),
        ..Default::default()
    };
    attrs.as_path = AsPath::from_sequence(&[4_200_000_001, 65003]).unwrap();
    attrs.communities.push(0x0001_0002).unwrap();
    let announced = [pfx("192.168.1.0/24"), pfx("fd00:1::/48"), pfx("0.0.0.0/0")];
    let withdrawn = [pfx("192.168.7.0/24"), pfx("fd00:7::/48")];
    let ctx = DecodeContext {
        four_octet_as: true,
        ebgp: true,
        peer_asn: 4_200_000_001,
    };
    for four in [true, false] {
        let repr = UpdateRepr {
            withdrawn: &withdrawn,
            attrs: Some(&attrs),
            announced: &announced,
            four_octet_as: four,
        };
        let mut buf = [0u8; 512];
        let n = repr.emit(&mut buf).unwrap();
        assert_eq!(n, repr.buffer_len().unwrap());
        let Message::Update(p) = Message::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        let u = p
            .decode(&DecodeContext {
                four_octet_as: four,
                ..ctx
            })
            .unwrap();
        assert_eq!(u.treat_as_withdraw, None);
        let mut ann: Vec<Prefix> = u.announced().collect();
        ann.sort();
        let mut want = announced.to_vec();
        want.sort();
        assert_eq!(ann, want);
        let mut wd: Vec<Prefix> = u.withdrawn().collect();
        wd.sort();
        assert_eq!(wd, withdrawn);
        assert_eq!(u.attrs, attrs, "four_octet_as={four}");
    }
}

#[test]
fn oversized_update_is_refused() {
    let attrs = PathAttributes {
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        as_path: AsPath::from_sequence(&[65001]).unwrap(),
        ..Default::default()
    };
    let many: Vec<Prefix> = (0..1100u32)
        .map(|i| Prefix::v4(10, (i >> 8) as u8, i as u8, 0, 24).unwrap())
        .collect();
    let repr = UpdateRepr {
        withdrawn: &[],
        attrs: Some(&attrs),
        announced: &many,
        four_octet_as: true,
    };
    let mut buf = [0u8; 8192];
    assert_eq!(repr.emit(&mut buf), Err(EmitError::TooLong));
}
