//! OPEN messages and capabilities: RFC 4271 §4.2, RFC 5492 (capabilities),
//! RFC 6793 (4-octet AS), RFC 4760 (multiprotocol), RFC 2918 / RFC 7313 (route
//! refresh), RFC 4724 (graceful restart), RFC 9072 (extended optional parameters).

use core::net::Ipv4Addr;

use super::error::OpenError;
use super::wire::{emit_header, MessageType, HEADER_LEN};

/// The AS number a 4-octet speaker puts in the 2-octet field (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;
pub const BGP_VERSION: u8 = 4;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

const PARAM_CAPABILITIES: u8 = 2;

/// A read-only view of an OPEN body (after the header). After `new_checked` the
/// optional parameters are known to be well framed and no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct OpenPacket<'a> {
    body: &'a [u8],
    /// Where the optional parameters start, and whether they use RFC 9072's
    /// two-octet lengths.
    params_start: usize,
    extended: bool,
}

impl<'a> OpenPacket<'a> {
    pub fn new_checked(body: &'a [u8]) -> Result<OpenPacket<'a>, OpenError> {
        if body.len() < 10 {
            return Err(OpenError::Malformed);
        }
        let opt_len = body[9] as usize;
        // RFC 9072 §2: a non-extended length of 255 followed by a parameter type
        // of 255 announces a two-octet length.
        let (params_start, params_len, extended) = if opt_len == 255 && body.get(10) == Some(&255) {
            let l = body.get(11..13).ok_or(OpenError::Malformed)?;
            (13, u16::from_be_bytes([l[0], l[1]]) as usize, true)
        } else {
            (10, opt_len, false)
        };
        if body.len() != params_start + params_len {
            return Err(OpenError::Malformed);
        }
        let packet = OpenPacket {
            body,
            params_start,
            extended,
        };
        // Walk everything once so iterators below can trust the framing.
        for param in packet.raw_params() {
            let (ty, value) = param?;
            if ty != PARAM_CAPABILITIES {
                return Err(OpenError::UnsupportedOptionalParameter);
            }
            for cap in (CapabilityIter { buf: value }) {
                cap?;
            }
        }
        Ok(packet)
    }

    pub fn version(&self) -> u8 {
        self.body[0]
    }
    /// The 2-octet "My Autonomous System" field (AS_TRANS for 4-octet speakers).
    pub fn my_as(&self) -> u16 {
        u16::from_be_bytes([self.body[1], self.body[2]])
    }
    pub fn hold_time(&self) -> u16 {
        u16::from_be_bytes([self.body[3], self.body[4]])
    }
    pub fn bgp_identifier(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.body[5], self.body[6], self.body[7], self.body[8])
    }

    fn raw_params(&self) -> ParamIter<'a> {
        ParamIter {
            buf: self.body.get(self.params_start..).unwrap_or(&[]),
            extended: self.extended,
        }
    }

    /// Every capability in every Capabilities parameter, in order.
    pub fn capabilities(&self) -> impl Iterator<Item = Capability<'a>> + 'a {
        self.raw_params()
            .filter_map(|p| p.ok())
            .flat_map(|(_, value)| CapabilityIter { buf: value }.filter_map(|c| c.ok()))
    }

    /// The capabilities reduced to what the session negotiates with.
    pub fn summary(&self) -> PeerCapabilities {
        PeerCapabilities::from_iter(self.capabilities())
    }

    /// The peer's AS: from the 4-octet AS capability if present, else the
    /// 2-octet field (RFC 6793 §4.1).
    pub fn peer_asn(&self) -> u32 {
        self.summary().four_octet_as.unwrap_or(self.my_as() as u32)
    }
}

struct ParamIter<'a> {
    buf: &'a [u8],
    extended: bool,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(u8, &'a [u8]), OpenError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let hdr = if self.extended { 3 } else { 2 };
        let item = (|| {
            let h = self.buf.get(..hdr).ok_or(OpenError::Malformed)?;
            let len = if self.extended {
                u16::from_be_bytes([h[1], h[2]]) as usize
            } else {
                h[1] as usize
            };
            let value = self.buf.get(hdr..hdr + len).ok_or(OpenError::Malformed)?;
            Ok((h[0], value, hdr + len))
        })();
        match item {
            Ok((ty, value, used)) => {
                self.buf = &self.buf[used..];
                Some(Ok((ty, value)))
            }
            Err(e) => {
                self.buf = &[];
                Some(Err(e))
            }
        }
    }
}

/// One capability (RFC 5492 §4); unknown codes are kept with their value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability<'a> {
    Multiprotocol { afi: u16, safi: u8 },
    RouteRefresh,
    EnhancedRouteRefresh,
    GracefulRestart(GracefulRestart),
    FourOctetAs(u32),
    Unknown { code: u8, value: &'a [u8] },
}

/// Graceful restart capability (RFC 4724 §3): parsed and reported; meshd itself
/// does not retain routes across a restart (a mesh reconverges in a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restarting: bool,
    /// N bit (RFC 8538): graceful notification supported.
    pub notification: bool,
    pub restart_time: u16,
    /// Up to four address families with their forwarding-state (F) bit.
    pub families: [Option<(u16, u8, bool)>; 4],
}

impl GracefulRestart {
    fn parse(v: &[u8]) -> Option<GracefulRestart> {
        if v.len() < 2 || (v.len() - 2) % 4 != 0 {
            return None;
        }
        let flags_time = u16::from_be_bytes([v[0], v[1]]);
        let mut gr = GracefulRestart {
            restarting: flags_time & 0x8000 != 0,
            notification: flags_time & 0x4000 != 0,
            restart_time: flags_time & 0x0fff,
            families: [None; 4],
        };
        for (slot, af) in gr.families.iter_mut().zip(v[2..].chunks_exact(4)) {
            *slot = Some((u16::from_be_bytes([af[0], af[1]]), af[2], af[3] & 0x80 != 0));
        }
        Some(gr)
    }
    fn value_len(&self) -> usize {
        2 + 4 * self.families.iter().flatten().count()
    }
    fn emit_value(&self, out: &mut [u8]) {
        let mut ft = self.restart_time & 0x0fff;
        if self.restarting {
            ft |= 0x8000;
        }
        if self.notification {
            ft |= 0x4000;
        }
        out[..2].copy_from_slice(&ft.to_be_bytes());
        for (chunk, (afi, safi, fwd)) in out[2..]
            .chunks_exact_mut(4)
            .zip(self.families.iter().flatten())
        {
            chunk[..2].copy_from_slice(&afi.to_be_bytes());
            chunk[2] = *safi;
            chunk[3] = if *fwd { 0x80 } else { 0 };
        }
    }
}

impl<'a> Capability<'a> {
    fn parse(code: u8, value: &'a [u8]) -> Result<Capability<'a>, OpenError> {
        Ok(match code {
            1 => match value {
                [a0, a1, _reserved, safi] => Capability::Multiprotocol {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                },
                _ => return Err(OpenError::Malformed),
            },
            2 if value.is_empty() => Capability::RouteRefresh,
            70 if value.is_empty() => Capability::EnhancedRouteRefresh,
            64 => Capability::GracefulRestart(
                GracefulRestart::parse(value).ok_or(OpenError::Malformed)?,
            ),
            65 => match value {
                [a, b, c, d] => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => return Err(OpenError::Malformed),
            },
            2 | 70 => return Err(OpenError::Malformed),
            code => Capability::Unknown { code, value },
        })
    }

    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol { .. } => 1,
            Capability::RouteRefresh => 2,
            Capability::EnhancedRouteRefresh => 70,
            Capability::GracefulRestart(_) => 64,
            Capability::FourOctetAs(_) => 65,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            Capability::Multiprotocol { .. } => 4,
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => 0,
            Capability::GracefulRestart(gr) => gr.value_len(),
            Capability::FourOctetAs(_) => 4,
            Capability::Unknown { value, .. } => value.len(),
        }
    }

    fn emit_value(&self, out: &mut [u8]) {
        match self {
            Capability::Multiprotocol { afi, safi } => {
                out[..2].copy_from_slice(&afi.to_be_bytes());
                out[2] = 0;
                out[3] = *safi;
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => {}
            Capability::GracefulRestart(gr) => gr.emit_value(out),
            Capability::FourOctetAs(asn) => out.copy_from_slice(&asn.to_be_bytes()),
            Capability::Unknown { value, .. } => out.copy_from_slice(value),
        }
    }
}

struct CapabilityIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for CapabilityIter<'a> {
    type Item = Result<Capability<'a>, OpenError>;
    fn next(&mut self) -> Option<Self::Item> {
        let (code, len, rest) = match self.buf {
            [] => return None,
            [code, len, rest @ ..] => (*code, *len as usize, rest),
            [_] => {
                self.buf = &[];
                return Some(Err(OpenError::Malformed));
            }
        };
        let Some(value) = rest.get(..len) else {
            self.buf = &[];
            return Some(Err(OpenError::Malformed));
        };
        self.buf = &rest[len..];
        Some(Capability::parse(code, value))
    }
}

/// What a peer's capabilities mean for the session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCapabilities {
    pub four_octet_as: Option<u32>,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    pub graceful_restart: Option<GracefulRestart>,
    /// Codes of capabilities we do not implement, kept for status output.
    pub unknown: heapless::Vec<u8, 8>,
}

impl<'a> FromIterator<Capability<'a>> for PeerCapabilities {
    fn from_iter<I: IntoIterator<Item = Capability<'a>>>(caps: I) -> Self {
        let mut pc = PeerCapabilities::default();
        let mut any_mp = false;
        for cap in caps {
            match cap {
                Capability::Multiprotocol { afi, safi } => {
                    any_mp = true;
                    match (afi, safi) {
                        (AFI_IPV4, SAFI_UNICAST) => pc.ipv4_unicast = true,
                        (AFI_IPV6, SAFI_UNICAST) => pc.ipv6_unicast = true,
                        _ => {}
                    }
                }
                Capability::RouteRefresh => pc.route_refresh = true,
                Capability::EnhancedRouteRefresh => pc.enhanced_route_refresh = true,
                Capability::GracefulRestart(gr) => pc.graceful_restart = Some(gr),
                Capability::FourOctetAs(asn) => pc.four_octet_as = Some(asn),
                Capability::Unknown { code, .. } => {
                    if !pc.unknown.contains(&code) {
                        let _ = pc.unknown.push(code);
                    }
                }
            }
        }
        // RFC 4760 §8: without any multiprotocol capability, IPv4 unicast is implied.
        if !any_mp {
            pc.ipv4_unicast = true;
        }
        pc
    }
}

/// An OPEN message to send.
#[derive(Debug, Clone, Copy)]
pub struct OpenRepr<'c> {
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: &'c [Capability<'c>],
}

impl OpenRepr<'_> {
    fn caps_len(&self) -> usize {
        self.capabilities.iter().map(|c| 2 + c.value_len()).sum()
    }

    /// Total length on the wire. All capabilities go in one Capabilities
    /// parameter, as BIRD and FRR do.
    pub fn buffer_len(&self) -> usize {
        let caps = self.caps_len();
        HEADER_LEN + 10 + if caps > 0 { 2 + caps } else { 0 }
    }

    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let caps_len = self.caps_len();
        // One parameter holds at most 255 octets; we never need more.
        if caps_len > 253 || self.capabilities.iter().any(|c| c.value_len() > 255) {
            return None;
        }
        let len = self.buffer_len();
        let out = buf.get_mut(..len)?;
        emit_header(out, MessageType::Open, len)?;
        let b = &mut out[HEADER_LEN..];
        b[0] = BGP_VERSION;
        let my_as = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        b[1..3].copy_from_slice(&my_as.to_be_bytes());
        b[3..5].copy_from_slice(&self.hold_time.to_be_bytes());
        b[5..9].copy_from_slice(&self.router_id.octets());
        if caps_len == 0 {
            b[9] = 0;
            return Some(len);
        }
        b[9] = (caps_len + 2) as u8;
        b[10] = PARAM_CAPABILITIES;
        b[11] = caps_len as u8;
        let mut at = 12;
        for cap in self.capabilities {
            let vl = cap.value_len();
            b[at] = cap.code();
            b[at + 1] = vl as u8;
            cap.emit_value(&mut b[at + 2..at + 2 + vl]);
            at += 2 + vl;
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::message::Message;
    use crate::bgp::testdata::bird;

    #[test]
    fn bird_open_is_understood() {
        let bytes = bird("open");
        let Message::Open(open) = Message::parse(&bytes).unwrap() else {
            panic!("not an OPEN");
        };
        assert_eq!(open.version(), 4);
        assert_eq!(open.my_as(), 65002);
        assert_eq!(open.hold_time(), 9);
        assert_eq!(open.bgp_identifier(), Ipv4Addr::new(10, 255, 0, 2));
        let s = open.summary();
        assert_eq!(s.four_octet_as, Some(65002));
        assert!(s.ipv4_unicast && s.ipv6_unicast && s.route_refresh);
        assert!(s.enhanced_route_refresh);
        let gr = s.graceful_restart.unwrap();
        assert_eq!(gr.restart_time, 120);
        assert!(!gr.restarting);
        assert_eq!(gr.families[0], Some((1, 1, false)));
        assert_eq!(gr.families[1], Some((2, 1, false)));
        // Long-lived graceful restart (71) is kept as unknown.
        assert_eq!(s.unknown.as_slice(), &[71]);
        assert_eq!(open.peer_asn(), 65002);
    }

    #[test]
    fn open_round_trips_with_four_octet_as() {
        let caps = [
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 90,
                families: [Some((1, 1, true)), None, None, None],
            }),
            Capability::Unknown {
                code: 200,
                value: &[1, 2, 3],
            },
        ];
        let repr = OpenRepr {
            asn: 4_200_000_001,
            hold_time: 3,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            capabilities: &caps,
        };
        let mut buf = [0u8; 128];
        let n = repr.emit(&mut buf).unwrap();
        assert_eq!(n, repr.buffer_len());
        let Message::Open(open) = Message::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert_eq!(open.my_as(), AS_TRANS);
        assert_eq!(open.peer_asn(), 4_200_000_001);
        let got: heapless::Vec<Capability, 8> = open.capabilities().collect();
        assert_eq!(got.as_slice(), &caps);
    }

    #[test]
    fn open_without_multiprotocol_implies_ipv4_unicast() {
        let repr = OpenRepr {
            asn: 65001,
            hold_time: 90,
            router_id: Ipv4Addr::new(1, 2, 3, 4),
            capabilities: &[],
        };
        let mut buf = [0u8; 64];
        let n = repr.emit(&mut buf).unwrap();
        let Message::Open(open) = Message::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        let s = open.summary();
        assert!(s.ipv4_unicast && !s.ipv6_unicast);
        assert_eq!(open.peer_asn(), 65001);
    }

    #[test]
    fn optional_parameter_lengths_must_add_up() {
        let mut open = bird("open");
        open[HEADER_LEN + 9] += 1; // claims one more octet than the message has
        assert_eq!(
            Message::parse(&open).unwrap_err(),
            crate::bgp::error::MessageError::Open(OpenError::Malformed)
        );
    }

    #[test]
    fn non_capability_parameter_is_unsupported() {
        let mut open = bird("open");
        open[HEADER_LEN + 10] = 1; // the deprecated authentication parameter
        assert_eq!(
            Message::parse(&open).unwrap_err(),
            crate::bgp::error::MessageError::Open(OpenError::UnsupportedOptionalParameter)
        );
    }
}
