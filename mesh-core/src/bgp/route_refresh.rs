//! ROUTE-REFRESH (RFC 2918 §3, with the subtypes of RFC 7313 §3).

use super::error::MessageError;
use super::wire::{emit_header, MessageType, HEADER_LEN};

/// A ROUTE-REFRESH request (RFC 2918 §3; subtype per RFC 7313).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

impl RouteRefresh {
    pub const LEN: usize = HEADER_LEN + 4;
    pub fn parse(body: &[u8]) -> Result<RouteRefresh, MessageError> {
        match body {
            [a0, a1, subtype, safi] => Ok(RouteRefresh {
                afi: u16::from_be_bytes([*a0, *a1]),
                subtype: *subtype,
                safi: *safi,
            }),
            _ => Err(MessageError::RouteRefreshLength),
        }
    }
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        emit_header(buf, MessageType::RouteRefresh, Self::LEN)?;
        let b = buf.get_mut(HEADER_LEN..Self::LEN)?;
        b[..2].copy_from_slice(&self.afi.to_be_bytes());
        b[2] = self.subtype;
        b[3] = self.safi;
        Some(Self::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::message::Message;

    #[test]
    fn route_refresh_round_trips() {
        let rr = RouteRefresh {
            afi: 2,
            subtype: 0,
            safi: 1,
        };
        let mut b = [0u8; 23];
        assert_eq!(rr.emit(&mut b), Some(23));
        match Message::parse(&b).unwrap() {
            Message::RouteRefresh(got) => assert_eq!(got, rr),
            other => panic!("{other:?}"),
        }
    }
}
