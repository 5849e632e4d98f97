//! UPDATE messages (RFC 4271 §4.3) with multiprotocol NLRI (RFC 4760), 4-octet
//! AS paths (RFC 6793), communities (RFC 1997), large communities (RFC 8092), and
//! the revised error handling of RFC 7606.
//!
//! Decoding has two layers:
//! - [`UpdatePacket::new_checked`] locates the three variable parts. If they do
//!   not add up, or the IPv4 NLRI fields are malformed, the NLRI cannot be
//!   located and the only safe action is a session reset (RFC 7606 §5.3).
//! - [`UpdatePacket::decode`] walks the path attributes and applies, per
//!   attribute, the action RFC 7606 §7 prescribes. The result says which routes
//!   are announced and which are withdrawn, with "treat-as-withdraw" already
//!   folded in, so the session cannot forget to apply it.
//!
//! Unknown optional attributes are kept as raw bytes in the packet
//! ([`Update::unknown_attributes`]) but never copied into [`PathAttributes`], so
//! meshd does not propagate them (unlike RFC 4271's default for optional
//! transitive attributes): a mesh has no use for them, and propagation is how
//! malformed-attribute incidents spread between networks.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::attr::{
    code, flag, Aggregator, AsPath, LargeCommunity, MpNextHop, Origin, PathAttributes, SegmentKind,
};
use super::error::{ErrorAction, MessageError, UpdateError};
use super::open::{AFI_IPV4, AFI_IPV6, SAFI_UNICAST};
use super::wire::{emit_header, MessageType, HEADER_LEN, MAX_MESSAGE_LEN};
use crate::prefix::{validate_nlri, Family, NlriIter, Prefix};

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// Both sides announced the 4-octet AS capability.
    pub four_octet_as: bool,
    /// The peer is in another AS.
    pub ebgp: bool,
    pub peer_asn: u32,
}

/// A view of an UPDATE body whose three variable parts have been located.
#[derive(Debug, Clone, Copy)]
pub struct UpdatePacket<'a> {
    withdrawn: &'a [u8],
    attrs: &'a [u8],
    nlri: &'a [u8],
}

impl<'a> UpdatePacket<'a> {
    pub fn new_checked(body: &'a [u8]) -> Result<UpdatePacket<'a>, MessageError> {
        let reset = MessageError::Update(UpdateError::MalformedAttributeList);
        let wl = body.get(..2).ok_or(reset)?;
        let wl = u16::from_be_bytes([wl[0], wl[1]]) as usize;
        let withdrawn = body.get(2..2 + wl).ok_or(reset)?;
        let tl = body.get(2 + wl..4 + wl).ok_or(reset)?;
        let tl = u16::from_be_bytes([tl[0], tl[1]]) as usize;
        let attrs = body.get(4 + wl..4 + wl + tl).ok_or(reset)?;
        let nlri = &body[4 + wl + tl..];
        let bad_nlri = MessageError::Update(UpdateError::InvalidNetworkField);
        validate_nlri(Family::Ipv4, withdrawn).map_err(|_| bad_nlri)?;
        validate_nlri(Family::Ipv4, nlri).map_err(|_| bad_nlri)?;
        Ok(UpdatePacket {
            withdrawn,
            attrs,
            nlri,
        })
    }

    /// An UPDATE with nothing in it: the IPv4 unicast End-of-RIB marker (RFC 4724 §2).
    pub fn is_ipv4_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty() && self.attrs.is_empty() && self.nlri.is_empty()
    }

    /// Every path attribute as raw bytes, in wire order. Stops at the first
    /// attribute whose header or length overruns the attribute field.
    pub fn raw_attributes(&self) -> RawAttrIter<'a> {
        RawAttrIter { buf: self.attrs }
    }

    /// Decodes the path attributes. `Err` is a session reset; everything milder
    /// is reported inside the returned [`Update`].
    pub fn decode(&self, ctx: &DecodeContext) -> Result<Update<'a>, UpdateError> {
        let mut d = Decoder {
            ctx: *ctx,
            update: Update {
                withdrawn_v4: NlriIter::new(Family::Ipv4, self.withdrawn),
                nlri_v4: NlriIter::new(Family::Ipv4, self.nlri),
                mp_reach: None,
                mp_unreach: None,
                attrs: PathAttributes::default(),
                raw_attrs: self.attrs,
                treat_as_withdraw: None,
                discarded: AttrSet::default(),
            },
            seen: AttrSet::default(),
            as4_path: None,
            as4_aggregator: None,
        };
        d.walk(self.attrs)?;
        d.finish();
        Ok(d.update)
    }
}

/// A set of attribute type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttrSet([u64; 4]);

impl AttrSet {
    pub fn insert(&mut self, code: u8) -> bool {
        let (w, b) = ((code / 64) as usize, code % 64);
        let new = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        new
    }
    pub fn contains(&self, code: u8) -> bool {
        self.0[(code / 64) as usize] & (1 << (code % 64)) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|c| self.contains(*c))
    }
}

/// One path attribute as it appeared on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub flags: u8,
    pub code: u8,
    pub value: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct RawAttrIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for RawAttrIter<'a> {
    type Item = Result<RawAttr<'a>, UpdateError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (&flags, rest) = self.buf.split_first()?;
            let (&code, rest) = rest.split_first()?;
            let (len, rest) = if flags & flag::EXTENDED_LENGTH != 0 {
                let l = rest.get(..2)?;
                (u16::from_be_bytes([l[0], l[1]]) as usize, &rest[2..])
            } else {
                let (&l, rest) = rest.split_first()?;
                (l as usize, rest)
            };
            let value = rest.get(..len)?;
            Some((RawAttr { flags, code, value }, &rest[len..]))
        })();
        match parsed {
            Some((attr, rest)) => {
                self.buf = rest;
                Some(Ok(attr))
            }
            None => {
                // The attribute's header or value runs past the attribute field.
                let code = self.buf.get(1).copied().unwrap_or(0);
                self.buf = &[];
                Some(Err(UpdateError::AttributeLength(code)))
            }
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3) for a family we route.
#[derive(Debug, Clone)]
pub struct MpReach<'a> {
    pub next_hop: MpNextHop,
    pub nlri: NlriIter<'a>,
}

/// A decoded UPDATE, with RFC 7606 already applied.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    withdrawn_v4: NlriIter<'a>,
    nlri_v4: NlriIter<'a>,
    mp_reach: Option<MpReach<'a>>,
    mp_unreach: Option<NlriIter<'a>>,
    raw_attrs: &'a [u8],
    /// The attributes of the announced routes (after attribute-discard).
    pub attrs: PathAttributes,
    /// Set when RFC 7606 calls for treat-as-withdraw: the first reason found.
    /// [`Update::announced`] is then empty and [`Update::withdrawn`] covers
    /// everything the message carried.
    pub treat_as_withdraw: Option<UpdateError>,
    /// Attributes dropped under "attribute discard" (and duplicates, §3 g).
    pub discarded: AttrSet,
}

impl<'a> Update<'a> {
    /// Routes announced with [`Update::attrs`]: IPv4 NLRI then MP_REACH NLRI.
    pub fn announced(&self) -> impl Iterator<Item = Prefix> + 'a {
        let live = self.treat_as_withdraw.is_none();
        let v4 = if live {
            self.nlri_v4.clone()
        } else {
            NlriIter::new(Family::Ipv4, &[])
        };
        let mp = self
            .mp_reach
            .as_ref()
            .filter(|_| live)
            .map(|m| m.nlri.clone());
        v4.chain(mp.into_iter().flatten())
    }

    /// Routes to remove: the withdrawn fields, plus everything announced when
    /// the UPDATE is treated as a withdraw.
    pub fn withdrawn(&self) -> impl Iterator<Item = Prefix> + 'a {
        let taw = self.treat_as_withdraw.is_some();
        let v4 = self.withdrawn_v4.clone();
        let mp = self.mp_unreach.clone().into_iter().flatten();
        let extra_v4 = if taw {
            self.nlri_v4.clone()
        } else {
            NlriIter::new(Family::Ipv4, &[])
        };
        let extra_mp = self
            .mp_reach
            .as_ref()
            .filter(|_| taw)
            .map(|m| m.nlri.clone());
        v4.chain(mp)
            .chain(extra_v4)
            .chain(extra_mp.into_iter().flatten())
    }

    /// The MP_REACH_NLRI next hop, if the UPDATE carried one.
    pub fn mp_reach(&self) -> Option<&MpReach<'a>> {
        self.mp_reach.as_ref()
    }

    /// End-of-RIB (RFC 4724 §2): an empty UPDATE, or one whose only attribute is
    /// an empty MP_UNREACH_NLRI. Returns the family.
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn_v4.is_empty() || !self.nlri_v4.is_empty() || self.mp_reach.is_some() {
            return None;
        }
        if self.raw_attrs.is_empty() {
            return Some(Family::Ipv4);
        }
        let only_unreach = RawAttrIter {
            buf: self.raw_attrs,
        }
        .all(|a| matches!(a, Ok(a) if a.code == code::MP_UNREACH_NLRI));
        match &self.mp_unreach {
            Some(w) if only_unreach && w.is_empty() => Some(w.family()),
            _ => None,
        }
    }

    /// Optional attributes we do not implement, as received. Not propagated.
    pub fn unknown_attributes(&self) -> impl Iterator<Item = RawAttr<'a>> + 'a {
        RawAttrIter {
            buf: self.raw_attrs,
        }
        .filter_map(|a| a.ok())
        .filter(|a| !is_known(a.code))
    }
}

fn is_known(c: u8) -> bool {
    matches!(
        c,
        code::ORIGIN
            | code::AS_PATH
            | code::NEXT_HOP
            | code::MULTI_EXIT_DISC
            | code::LOCAL_PREF
            | code::ATOMIC_AGGREGATE
            | code::AGGREGATOR
            | code::COMMUNITIES
            | code::ORIGINATOR_ID
            | code::CLUSTER_LIST
            | code::MP_REACH_NLRI
            | code::MP_UNREACH_NLRI
            | code::EXTENDED_COMMUNITIES
            | code::AS4_PATH
            | code::AS4_AGGREGATOR
            | code::LARGE_COMMUNITIES
    )
}

/// The flags an attribute must carry (optional, transitive), per its RFC.
fn expected_flags(c: u8) -> Option<u8> {
    let wk = flag::TRANSITIVE;
    let opt_t = flag::OPTIONAL | flag::TRANSITIVE;
    let opt_nt = flag::OPTIONAL;
    Some(match c {
        code::ORIGIN | code::AS_PATH | code::NEXT_HOP | code::LOCAL_PREF => wk,
        code::ATOMIC_AGGREGATE => wk,
        code::MULTI_EXIT_DISC | code::ORIGINATOR_ID | code::CLUSTER_LIST => opt_nt,
        code::MP_REACH_NLRI | code::MP_UNREACH_NLRI => opt_nt,
        code::AGGREGATOR | code::COMMUNITIES | code::EXTENDED_COMMUNITIES => opt_t,
        code::AS4_PATH | code::AS4_AGGREGATOR | code::LARGE_COMMUNITIES => opt_t,
        _ => return None,
    })
}

struct Decoder<'a> {
    ctx: DecodeContext,
    update: Update<'a>,
    seen: AttrSet,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
}

impl<'a> Decoder<'a> {
    /// Records a non-fatal error: attribute-discard or treat-as-withdraw.
    /// Session-reset errors are returned by the caller instead.
    fn note(&mut self, err: UpdateError, action: ErrorAction, code: u8) {
        match action {
            ErrorAction::AttributeDiscard => {
                self.update.discarded.insert(code);
            }
            _ => {
                self.update.treat_as_withdraw.get_or_insert(err);
            }
        }
    }

    fn walk(&mut self, attrs: &'a [u8]) -> Result<(), UpdateError> {
        for raw in (RawAttrIter { buf: attrs }) {
            // An attribute that overruns the Total Path Attribute Length, or
            // a remainder too short for one attribute (RFC 7606 §4): treat-
            // as-withdraw, the NLRI located by that total length. Whatever
            // the overrun hides is not read; MP_REACH/MP_UNREACH read before
            // it are withdrawn with the rest, and one hidden in it stays
            // unread, as §4 accepts in return for keeping the session.
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) => {
                    self.update.treat_as_withdraw.get_or_insert(e);
                    break;
                }
            };
            if !self.seen.insert(raw.code) {
                if raw.code == code::MP_REACH_NLRI || raw.code == code::MP_UNREACH_NLRI {
                    return Err(UpdateError::MalformedAttributeList); // §3 g
                }
                self.update.discarded.insert(raw.code);
                continue;
            }
            self.attribute(raw)?;
        }
        Ok(())
    }

    fn attribute(&mut self, raw: RawAttr<'a>) -> Result<(), UpdateError> {
        let RawAttr {
            flags,
            code: c,
            value: v,
        } = raw;
        let Some(expected) = expected_flags(c) else {
            // RFC 4271 §6.3: an unrecognized well-known attribute is an error
            // RFC 7606 leaves as it was. Unknown optional ones are kept raw.
            if flags & flag::OPTIONAL == 0 {
                return Err(UpdateError::UnrecognizedWellKnownAttribute(c));
            }
            return Ok(());
        };
        let mp = c == code::MP_REACH_NLRI || c == code::MP_UNREACH_NLRI;
        if flags & (flag::OPTIONAL | flag::TRANSITIVE) != expected {
            if mp {
                return Err(UpdateError::AttributeFlags(c)); // §7.11: NLRI unlocatable
            }
            // RFC 7606 §3 c. LOCAL_PREF from an external peer is dropped
            // whatever its flags (§7.5).
            if c == code::LOCAL_PREF && self.ctx.ebgp {
                self.note(
                    UpdateError::AttributeFlags(c),
                    ErrorAction::AttributeDiscard,
                    c,
                );
            } else {
                self.note(
                    UpdateError::AttributeFlags(c),
                    ErrorAction::TreatAsWithdraw,
                    c,
                );
            }
            return Ok(());
        }
        let taw = ErrorAction::TreatAsWithdraw;
        let discard = ErrorAction::AttributeDiscard;
        let a = &mut self.update.attrs;
        match c {
            code::ORIGIN => match v {
                [o] => match Origin::from(*o) {
                    Origin::Unknown(o) => self.note(UpdateError::InvalidOrigin(o), taw, c),
                    o => a.origin = o,
                },
                _ => self.note(UpdateError::AttributeLength(c), taw, c),
            },
            code::AS_PATH => match parse_as_path(v, self.ctx.four_octet_as) {
                Ok(p) => a.as_path = p,
                Err(e) => self.note(e, taw, c),
            },
            code::NEXT_HOP => match v {
                [x, y, z, w] => {
                    let nh = Ipv4Addr::new(*x, *y, *z, *w);
                    if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                        self.note(UpdateError::InvalidNextHop, taw, c); // RFC 4271 §6.3
                    } else {
                        a.next_hop = Some(nh);
                    }
                }
                _ => self.note(UpdateError::AttributeLength(c), taw, c),
            },
            code::MULTI_EXIT_DISC => match be_u32(v) {
                Some(m) => a.med = Some(m),
                None => self.note(UpdateError::AttributeLength(c), taw, c),
            },
            code::LOCAL_PREF => {
                if self.ctx.ebgp {
                    self.note(UpdateError::AttributeLength(c), discard, c); // §7.5
                } else {
                    match be_u32(v) {
                        Some(l) => a.local_pref = Some(l),
                        None => self.note(UpdateError::AttributeLength(c), taw, c),
                    }
                }
            }
            code::ATOMIC_AGGREGATE => {
                if v.is_empty() {
                    a.atomic_aggregate = true;
                } else {
                    self.note(UpdateError::AttributeLength(c), discard, c); // §7.6
                }
            }
            code::AGGREGATOR => match parse_aggregator(v, self.ctx.four_octet_as) {
                Some(ag) => a.aggregator = Some(ag),
                None => self.note(UpdateError::AttributeLength(c), discard, c), // §7.7
            },
            code::COMMUNITIES => {
                if v.is_empty() || v.len() % 4 != 0 {
                    self.note(UpdateError::AttributeLength(c), taw, c); // §7.8
                } else {
                    for ch in v.chunks_exact(4) {
                        let comm = u32::from_be_bytes([ch[0], ch[1], ch[2], ch[3]]);
                        if a.communities.push(comm).is_err() {
                            self.note(UpdateError::ResourceLimit(c), taw, c);
                            break;
                        }
                    }
                }
            }
            code::LARGE_COMMUNITIES => {
                if v.is_empty() || v.len() % 12 != 0 {
                    self.note(UpdateError::AttributeLength(c), taw, c); // RFC 8092 §6
                } else {
                    for ch in v.chunks_exact(12) {
                        let lc = LargeCommunity {
                            global: u32::from_be_bytes([ch[0], ch[1], ch[2], ch[3]]),
                            local1: u32::from_be_bytes([ch[4], ch[5], ch[6], ch[7]]),
                            local2: u32::from_be_bytes([ch[8], ch[9], ch[10], ch[11]]),
                        };
                        if a.large_communities.push(lc).is_err() {
                            self.note(UpdateError::ResourceLimit(c), taw, c);
                            break;
                        }
                    }
                }
            }
            code::ORIGINATOR_ID | code::CLUSTER_LIST => {
                // Route reflection attributes (RFC 4456): meaningless from an
                // external peer (§7.9, §7.10); we do not reflect, so we only check.
                let ok = if c == code::ORIGINATOR_ID {
                    v.len() == 4
                } else {
                    !v.is_empty() && v.len() % 4 == 0
                };
                if self.ctx.ebgp {
                    self.note(UpdateError::AttributeLength(c), discard, c);
                } else if !ok {
                    self.note(UpdateError::AttributeLength(c), taw, c);
                }
            }
            code::EXTENDED_COMMUNITIES if v.is_empty() || v.len() % 8 != 0 => {
                self.note(UpdateError::AttributeLength(c), taw, c); // §7.14
            }
            code::MP_REACH_NLRI => self.mp_reach(v)?,
            code::MP_UNREACH_NLRI => self.mp_unreach(v)?,
            code::AS4_PATH => {
                // RFC 6793 §6: ignored from a 4-octet speaker; if malformed, discarded.
                if self.ctx.four_octet_as {
                    self.update.discarded.insert(c);
                } else {
                    match parse_as_path(v, true) {
                        Ok(p) if !p.has_confed_segments() => self.as4_path = Some(p),
                        _ => self.note(UpdateError::OptionalAttribute(c), discard, c),
                    }
                }
            }
            code::AS4_AGGREGATOR => {
                if self.ctx.four_octet_as {
                    self.update.discarded.insert(c);
                } else {
                    match parse_aggregator(v, true) {
                        Some(ag) => self.as4_aggregator = Some(ag),
                        None => self.note(UpdateError::OptionalAttribute(c), discard, c),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn mp_reach(&mut self, v: &'a [u8]) -> Result<(), UpdateError> {
        let err = UpdateError::OptionalAttribute(code::MP_REACH_NLRI);
        let (afi, safi, rest) = afi_safi(v).ok_or(err)?;
        let (&nh_len, rest) = rest.split_first().ok_or(err)?;
        let nh = rest.get(..nh_len as usize).ok_or(err)?;
        // One reserved octet (formerly SNPA count) follows the next hop.
        let nlri = rest.get(nh_len as usize + 1..).ok_or(err)?;
        let family = match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Family::Ipv4,
            (AFI_IPV6, SAFI_UNICAST) => Family::Ipv6,
            // A family we did not negotiate: ignore it (RFC 4760 §7).
            _ => return Ok(()),
        };
        let next_hop = match (family, nh.len()) {
            (Family::Ipv4, 4) => MpNextHop::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
            (Family::Ipv6, 16) | (Family::Ipv6, 32) => MpNextHop::V6 {
                global: v6(&nh[..16]),
                link_local: nh.get(16..32).map(v6),
            },
            // §7.11: a next hop length that does not fit the family.
            _ => return Err(err),
        };
        validate_nlri(family, nlri).map_err(|_| err)?;
        self.update.attrs.mp_next_hop = Some(next_hop);
        self.update.mp_reach = Some(MpReach {
            next_hop,
            nlri: NlriIter::new(family, nlri),
        });
        Ok(())
    }

    fn mp_unreach(&mut self, v: &'a [u8]) -> Result<(), UpdateError> {
        let err = UpdateError::OptionalAttribute(code::MP_UNREACH_NLRI);
        let (afi, safi, withdrawn) = afi_safi(v).ok_or(err)?;
        let family = match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Family::Ipv4,
            (AFI_IPV6, SAFI_UNICAST) => Family::Ipv6,
            _ => return Ok(()),
        };
        validate_nlri(family, withdrawn).map_err(|_| err)?;
        self.update.mp_unreach = Some(NlriIter::new(family, withdrawn));
        Ok(())
    }

    /// Checks for missing mandatory attributes and merges AS4_PATH.
    fn finish(&mut self) {
        let has_v4 = !self.update.nlri_v4.is_empty();
        let has_mp = self
            .update
            .mp_reach
            .as_ref()
            .is_some_and(|m| !m.nlri.is_empty());
        if !has_v4 && !has_mp {
            // Nothing announced: attribute errors have nothing to withdraw.
            return;
        }
        // RFC 6793 §4.2.3: rebuild the true path from AS_PATH and AS4_PATH.
        if let Some(as4) = self.as4_path.take() {
            let p = &mut self.update.attrs.as_path;
            let (n2, n4) = (p.selection_len(), as4.selection_len());
            if n2 >= n4 {
                let mut merged = p.truncate_front(n2 - n4);
                if merged.append(&as4).is_ok() {
                    *p = merged;
                }
            }
        }
        if let Some(ag) = self.as4_aggregator.take() {
            if self.update.attrs.aggregator.map(|a| a.asn) == Some(super::open::AS_TRANS as u32) {
                self.update.attrs.aggregator = Some(ag);
            }
        }
        for (c, needed) in [
            (code::ORIGIN, true),
            (code::AS_PATH, true),
            (code::NEXT_HOP, has_v4),
        ] {
            if needed && !self.seen.contains(c) {
                let e = UpdateError::MissingWellKnownAttribute(c);
                self.note(e, ErrorAction::TreatAsWithdraw, c); // §3 d
            }
        }
        if self.ctx.ebgp {
            let path = &self.update.attrs.as_path;
            if path.has_confed_segments() {
                self.note(
                    UpdateError::MalformedAsPath,
                    ErrorAction::TreatAsWithdraw,
                    2,
                );
            } else if self.seen.contains(code::AS_PATH)
                && path.first_as() != Some(self.ctx.peer_asn)
            {
                // RFC 4271 §6.3; RFC 7606 §7.2 makes it treat-as-withdraw.
                self.note(UpdateError::FirstAsNotPeer, ErrorAction::TreatAsWithdraw, 2);
            }
        }
    }
}

fn afi_safi(v: &[u8]) -> Option<(u16, u8, &[u8])> {
    match v {
        [a0, a1, safi, rest @ ..] => Some((u16::from_be_bytes([*a0, *a1]), *safi, rest)),
        _ => None,
    }
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

fn be_u32(v: &[u8]) -> Option<u32> {
    match v {
        [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn parse_aggregator(v: &[u8], four_octet: bool) -> Option<Aggregator> {
    let (asn, addr) = match (four_octet, v.len()) {
        (true, 8) => (be_u32(&v[..4])?, &v[4..]),
        (false, 6) => (u16::from_be_bytes([v[0], v[1]]) as u32, &v[2..]),
        _ => return None,
    };
    Some(Aggregator {
        asn,
        address: Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]),
    })
}

/// Parses AS_PATH segments (RFC 4271 §4.3, RFC 6793 §3).
pub fn parse_as_path(mut v: &[u8], four_octet: bool) -> Result<AsPath, UpdateError> {
    let width = if four_octet { 4 } else { 2 };
    let mut path = AsPath::new();
    let mut run: heapless::Vec<u32, 255> = heapless::Vec::new();
    while !v.is_empty() {
        let [ty, count, rest @ ..] = v else {
            return Err(UpdateError::MalformedAsPath);
        };
        let kind = match SegmentKind::from(*ty) {
            SegmentKind::Unknown(_) => return Err(UpdateError::MalformedAsPath),
            kind => kind,
        };
        let n = *count as usize;
        if n == 0 {
            return Err(UpdateError::MalformedAsPath); // RFC 7606 §7.2
        }
        let body = rest.get(..n * width).ok_or(UpdateError::MalformedAsPath)?;
        run.clear();
        for a in body.chunks_exact(width) {
            let asn = if four_octet {
                u32::from_be_bytes([a[0], a[1], a[2], a[3]])
            } else {
                u16::from_be_bytes([a[0], a[1]]) as u32
            };
            // Capacity 255 = the largest segment count: cannot fail.
            let _ = run.push(asn);
        }
        path.push_segment(kind, &run)
            .map_err(|_| UpdateError::ResourceLimit(code::AS_PATH))?;
        v = &rest[n * width..];
    }
    Ok(path)
}

/// An UPDATE to send. IPv4 prefixes use the classic fields, IPv6 prefixes go in
/// MP_REACH_NLRI / MP_UNREACH_NLRI (encoded first, as RFC 7606 §5.1 asks).
#[derive(Debug, Clone, Copy)]
pub struct UpdateRepr<'a> {
    pub withdrawn: &'a [Prefix],
    /// Required when `announced` is not empty.
    pub attrs: Option<&'a PathAttributes>,
    pub announced: &'a [Prefix],
    /// Encode ASNs in 4 octets (the 4-octet AS capability was exchanged).
    pub four_octet_as: bool,
}

/// Why an UPDATE could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// More than 4096 octets, or more than the buffer holds.
    TooLong,
    /// Announcements without attributes, or IPv6 without an IPv6 next hop.
    MissingAttribute,
}

fn attr_header_len(value_len: usize) -> usize {
    if value_len > 255 {
        4
    } else {
        3
    }
}

fn nlri_len(ps: impl Iterator<Item = Prefix>) -> usize {
    ps.map(|p| p.nlri_len()).sum()
}

impl UpdateRepr<'_> {
    fn v4(ps: &[Prefix]) -> impl Iterator<Item = Prefix> + '_ {
        ps.iter().copied().filter(|p| p.family() == Family::Ipv4)
    }
    fn v6(ps: &[Prefix]) -> impl Iterator<Item = Prefix> + '_ {
        ps.iter().copied().filter(|p| p.family() == Family::Ipv6)
    }

    fn mp_unreach_len(&self) -> usize {
        match nlri_len(Self::v6(self.withdrawn)) {
            0 => 0,
            n => 3 + n,
        }
    }

    fn mp_reach_len(&self) -> Result<usize, EmitError> {
        if Self::v6(self.announced).next().is_none() {
            return Ok(0);
        }
        let nh = self
            .attrs
            .and_then(|a| a.mp_next_hop)
            .filter(|n| matches!(n, MpNextHop::V6 { .. }))
            .ok_or(EmitError::MissingAttribute)?;
        Ok(3 + 1 + nh.wire_len() + 1 + nlri_len(Self::v6(self.announced)))
    }

    fn attrs_len(&self) -> Result<usize, EmitError> {
        let mut len = 0;
        let un = self.mp_unreach_len();
        if un > 0 {
            len += attr_header_len(un) + un;
        }
        if self.announced.is_empty() {
            return Ok(len);
        }
        let a = self.attrs.ok_or(EmitError::MissingAttribute)?;
        let re = self.mp_reach_len()?;
        if re > 0 {
            len += attr_header_len(re) + re;
        }
        len += 4; // ORIGIN
        let pl = a.as_path.wire_len(self.four_octet_as);
        len += attr_header_len(pl) + pl;
        if Self::v4(self.announced).next().is_some() {
            a.next_hop.ok_or(EmitError::MissingAttribute)?;
            len += 7;
        }
        len += a.med.map_or(0, |_| 7);
        len += a.local_pref.map_or(0, |_| 7);
        len += if a.atomic_aggregate { 3 } else { 0 };
        let agg = if self.four_octet_as { 8 } else { 6 };
        len += a.aggregator.map_or(0, |_| 3 + agg);
        let cl = a.communities.len() * 4;
        if cl > 0 {
            len += attr_header_len(cl) + cl;
        }
        let ll = a.large_communities.len() * 12;
        if ll > 0 {
            len += attr_header_len(ll) + ll;
        }
        if !self.four_octet_as && a.as_path.needs_as4() {
            let l4 = a.as_path.wire_len(true);
            len += attr_header_len(l4) + l4;
        }
        if self.needs_as4_aggregator(a) {
            len += 3 + 8;
        }
        Ok(len)
    }

    /// RFC 6793 §4.2.2: a 2-octet session gets the real aggregator AS here.
    fn needs_as4_aggregator(&self, a: &PathAttributes) -> bool {
        !self.four_octet_as && a.aggregator.is_some_and(|ag| ag.asn > 0xffff)
    }

    pub fn buffer_len(&self) -> Result<usize, EmitError> {
        Ok(HEADER_LEN
            + 2
            + nlri_len(Self::v4(self.withdrawn))
            + 2
            + self.attrs_len()?
            + nlri_len(Self::v4(self.announced)))
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let total = self.buffer_len()?;
        if total > MAX_MESSAGE_LEN {
            return Err(EmitError::TooLong);
        }
        let out = buf.get_mut(..total).ok_or(EmitError::TooLong)?;
        emit_header(out, MessageType::Update, total).ok_or(EmitError::TooLong)?;
        let mut w = Writer {
            buf: out,
            at: HEADER_LEN,
        };
        w.u16(nlri_len(Self::v4(self.withdrawn)) as u16);
        for p in Self::v4(self.withdrawn) {
            w.prefix(p);
        }
        w.u16(self.attrs_len()? as u16);
        let un = self.mp_unreach_len();
        if un > 0 {
            w.attr_header(flag::OPTIONAL, code::MP_UNREACH_NLRI, un);
            w.u16(AFI_IPV6);
            w.u8(SAFI_UNICAST);
            for p in Self::v6(self.withdrawn) {
                w.prefix(p);
            }
        }
        if let (Some(a), false) = (self.attrs, self.announced.is_empty()) {
            let re = self.mp_reach_len()?;
            if let (true, Some(nh)) = (re > 0, a.mp_next_hop) {
                w.attr_header(flag::OPTIONAL, code::MP_REACH_NLRI, re);
                w.u16(AFI_IPV6);
                w.u8(SAFI_UNICAST);
                w.u8(nh.wire_len() as u8);
                if let MpNextHop::V6 { global, link_local } = nh {
                    w.bytes(&global.octets());
                    if let Some(ll) = link_local {
                        w.bytes(&ll.octets());
                    }
                }
                w.u8(0);
                for p in Self::v6(self.announced) {
                    w.prefix(p);
                }
            }
            w.attr_header(flag::TRANSITIVE, code::ORIGIN, 1);
            w.u8(u8::from(a.origin));
            let pl = a.as_path.wire_len(self.four_octet_as);
            w.attr_header(flag::TRANSITIVE, code::AS_PATH, pl);
            a.as_path.emit(w.take(pl), self.four_octet_as);
            if Self::v4(self.announced).next().is_some() {
                let nh = a.next_hop.ok_or(EmitError::MissingAttribute)?;
                w.attr_header(flag::TRANSITIVE, code::NEXT_HOP, 4);
                w.bytes(&nh.octets());
            }
            if let Some(m) = a.med {
                w.attr_header(flag::OPTIONAL, code::MULTI_EXIT_DISC, 4);
                w.u32(m);
            }
            if let Some(l) = a.local_pref {
                w.attr_header(flag::TRANSITIVE, code::LOCAL_PREF, 4);
                w.u32(l);
            }
            if a.atomic_aggregate {
                w.attr_header(flag::TRANSITIVE, code::ATOMIC_AGGREGATE, 0);
            }
            if let Some(ag) = a.aggregator {
                let opt_t = flag::OPTIONAL | flag::TRANSITIVE;
                if self.four_octet_as {
                    w.attr_header(opt_t, code::AGGREGATOR, 8);
                    w.u32(ag.asn);
                } else {
                    w.attr_header(opt_t, code::AGGREGATOR, 6);
                    w.u16(u16::try_from(ag.asn).unwrap_or(super::open::AS_TRANS));
                }
                w.bytes(&ag.address.octets());
            }
            if !a.communities.is_empty() {
                let opt_t = flag::OPTIONAL | flag::TRANSITIVE;
                w.attr_header(opt_t, code::COMMUNITIES, a.communities.len() * 4);
                for c in &a.communities {
                    w.u32(*c);
                }
            }
            if !a.large_communities.is_empty() {
                let opt_t = flag::OPTIONAL | flag::TRANSITIVE;
                w.attr_header(
                    opt_t,
                    code::LARGE_COMMUNITIES,
                    a.large_communities.len() * 12,
                );
                for c in &a.large_communities {
                    w.u32(c.global);
                    w.u32(c.local1);
                    w.u32(c.local2);
                }
            }
            if !self.four_octet_as && a.as_path.needs_as4() {
                let l4 = a.as_path.wire_len(true);
                w.attr_header(flag::OPTIONAL | flag::TRANSITIVE, code::AS4_PATH, l4);
                a.as_path.emit(w.take(l4), true);
            }
            if let (true, Some(ag)) = (self.needs_as4_aggregator(a), a.aggregator) {
                w.attr_header(flag::OPTIONAL | flag::TRANSITIVE, code::AS4_AGGREGATOR, 8);
                w.u32(ag.asn);
                w.bytes(&ag.address.octets());
            }
        }
        for p in Self::v4(self.announced) {
            w.prefix(p);
        }
        debug_assert_eq!(w.at, total);
        Ok(total)
    }
}

/// Emits the End-of-RIB marker for `family` (RFC 4724 §2).
pub fn emit_end_of_rib(family: Family, buf: &mut [u8]) -> Option<usize> {
    match family {
        Family::Ipv4 => {
            let out = buf.get_mut(..23)?;
            emit_header(out, MessageType::Update, 23)?;
            out[HEADER_LEN..].fill(0);
            Some(23)
        }
        Family::Ipv6 => {
            let out = buf.get_mut(..29)?;
            emit_header(out, MessageType::Update, 29)?;
            out[HEADER_LEN..].copy_from_slice(&[0, 0, 0, 6, flag::OPTIONAL, 15, 3, 0, 2, 1]);
            Some(29)
        }
    }
}

/// A cursor over a buffer whose size was computed beforehand.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn take(&mut self, n: usize) -> &mut [u8] {
        let s = &mut self.buf[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u8(&mut self, v: u8) {
        self.take(1)[0] = v;
    }
    fn u16(&mut self, v: u16) {
        self.take(2).copy_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.take(4).copy_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.take(b.len()).copy_from_slice(b);
    }
    fn prefix(&mut self, p: Prefix) {
        let n = p.nlri_len();
        let _ = p.emit_nlri(self.take(n));
    }
    fn attr_header(&mut self, flags: u8, code: u8, len: usize) {
        if len > 255 {
            self.u8(flags | flag::EXTENDED_LENGTH);
            self.u8(code);
            self.u16(len as u16);
        } else {
            self.u8(flags);
            self.u8(code);
            self.u8(len as u8);
        }
    }
}

#[cfg(test)]
mod tests;
