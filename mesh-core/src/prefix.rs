//! IP prefixes: the unit of routing, and their BGP NLRI encoding (RFC 4271 §4.3,
//! RFC 4760 §5: a length octet followed by the minimum number of address octets).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// Address family of a prefix, numbered as IANA AFIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const fn afi(self) -> u16 {
        match self {
            Family::Ipv4 => 1,
            Family::Ipv6 => 2,
        }
    }
    pub const fn max_len(self) -> u8 {
        match self {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }
    pub const fn addr_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }
}

/// An IPv4 or IPv6 prefix with its host bits cleared.
///
/// Stored as a 16-byte address so both families share one compact `Copy` type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    family: Family,
    len: u8,
    addr: [u8; 16],
}

/// Why a prefix could not be built or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// The length is longer than the family allows.
    BadLength,
    /// The encoding ends before the address octets do.
    Truncated,
    /// Text that is not `address/len`.
    Syntax,
}

impl Prefix {
    /// A prefix from an address and length; host bits are cleared (with
    /// one mask on the address as an integer).
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&(u32::from(a) & mask32(len)).to_be_bytes());
                Ok(Prefix {
                    family: Family::Ipv4,
                    len,
                    addr: b,
                })
            }
            IpAddr::V6(a) if len <= 128 => Ok(Prefix {
                family: Family::Ipv6,
                len,
                addr: (u128::from(a) & mask128(len)).to_be_bytes(),
            }),
            _ => Err(PrefixError::BadLength),
        }
    }

    pub fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Result<Prefix, PrefixError> {
        Prefix::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len)
    }

    /// The host prefix (/32 or /128) of an address.
    pub fn host(addr: IpAddr) -> Prefix {
        let len = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        match Prefix::new(addr, len) {
            Ok(p) => p,
            // A full-length prefix of a valid address is always valid.
            Err(_) => Prefix {
                family: Family::Ipv4,
                len: 0,
                addr: [0; 16],
            },
        }
    }

    /// The default route of a family (0.0.0.0/0 or ::/0).
    pub const fn default_route(family: Family) -> Prefix {
        Prefix {
            family,
            len: 0,
            addr: [0; 16],
        }
    }

    fn from_bytes(family: Family, len: u8, bytes: &[u8]) -> Result<Prefix, PrefixError> {
        if len > family.max_len() {
            return Err(PrefixError::BadLength);
        }
        let mut addr = [0u8; 16];
        let n = (len as usize).div_ceil(8);
        if bytes.len() < n {
            return Err(PrefixError::Truncated);
        }
        addr[..n].copy_from_slice(&bytes[..n]);
        mask_host_bits(&mut addr, len);
        Ok(Prefix { family, len, addr })
    }

    pub fn family(&self) -> Family {
        self.family
    }
    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// True for the default route (length zero).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    pub fn addr(&self) -> IpAddr {
        match self.family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            )),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(self.addr)),
        }
    }

    /// The address as a big-endian integer, an IPv4 one in the top 32 bits:
    /// among prefixes of one family and length it orders as `Ord` does, so
    /// the FIB lookup can binary-search on it.
    pub(crate) fn bits(&self) -> u128 {
        u128::from_be_bytes(self.addr)
    }

    /// [`Prefix::bits`]' top 32: an IPv4 prefix's address as an integer.
    pub(crate) fn bits4(&self) -> u32 {
        let a = &self.addr;
        u32::from_be_bytes([a[0], a[1], a[2], a[3]])
    }

    /// Does this prefix cover `addr`? (Integer compares: the forwarding path
    /// asks this of several prefixes per packet.)
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.family, addr) {
            (Family::Ipv4, IpAddr::V4(a)) => {
                let [b0, b1, b2, b3, ..] = self.addr;
                (u32::from(a) ^ u32::from_be_bytes([b0, b1, b2, b3])) & mask32(self.len) == 0
            }
            (Family::Ipv6, IpAddr::V6(a)) => (u128::from(a) ^ self.bits()) & mask128(self.len) == 0,
            _ => false,
        }
    }

    /// Does this prefix cover all of `other` (equal or more specific)?
    pub fn covers(&self, other: &Prefix) -> bool {
        // IPv4 sits in the top bits of `bits`, so the 128-bit mask fits both.
        self.family == other.family
            && self.len <= other.len
            && (self.bits() ^ other.bits()) & mask128(self.len) == 0
    }

    /// Length of the NLRI encoding: one length octet plus the significant octets.
    pub fn nlri_len(&self) -> usize {
        1 + (self.len as usize).div_ceil(8)
    }

    /// Writes the NLRI encoding into `buf`; returns the bytes written, or `None`
    /// when `buf` is too short.
    pub fn emit_nlri(&self, buf: &mut [u8]) -> Option<usize> {
        let n = self.nlri_len();
        let out = buf.get_mut(..n)?;
        out[0] = self.len;
        out[1..].copy_from_slice(&self.addr[..n - 1]);
        Some(n)
    }

    /// Decodes one NLRI entry from the front of `buf`; returns the prefix and the
    /// bytes it used.
    pub fn parse_nlri(family: Family, buf: &[u8]) -> Result<(Prefix, usize), PrefixError> {
        let (&len, rest) = buf.split_first().ok_or(PrefixError::Truncated)?;
        let p = Prefix::from_bytes(family, len, rest)?;
        Ok((p, p.nlri_len()))
    }
}

fn mask_host_bits(addr: &mut [u8; 16], len: u8) {
    let full = (len / 8) as usize;
    let rem = len % 8;
    let mut i = full;
    if rem != 0 && i < 16 {
        addr[i] &= 0xffu8 << (8 - rem);
        i += 1;
    }
    for b in addr.iter_mut().skip(i) {
        *b = 0;
    }
}

/// The network mask of an IPv4 prefix length. Length 0 is mask 0, which
/// no shift gives (one by the full width overflows), hence `checked_shl`.
pub(crate) fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// The network mask of an IPv6 prefix length (or of an IPv4 one, with the
/// address in the top 32 bits), as [`mask32`].
pub(crate) fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    /// `192.168.1.0/24`, `fd00::/64`; a bare address means a host prefix.
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Syntax)?;
        let len = match len {
            Some(l) => l.parse::<u8>().map_err(|_| PrefixError::Syntax)?,
            None => match addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
        };
        Prefix::new(addr, len)
    }
}

/// Iterator over a run of NLRI entries of one family (withdrawn routes, NLRI, or
/// the NLRI inside MP_REACH/MP_UNREACH). The run must have been validated with
/// [`validate_nlri`]; an entry that fails to decode ends the iteration.
#[derive(Clone, Debug)]
pub struct NlriIter<'a> {
    family: Family,
    buf: &'a [u8],
}

impl<'a> NlriIter<'a> {
    pub fn new(family: Family, buf: &'a [u8]) -> NlriIter<'a> {
        NlriIter { family, buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn family(&self) -> Family {
        self.family
    }
}

impl Iterator for NlriIter<'_> {
    type Item = Prefix;
    fn next(&mut self) -> Option<Prefix> {
        let (p, n) = Prefix::parse_nlri(self.family, self.buf).ok()?;
        self.buf = &self.buf[n..];
        Some(p)
    }
}

/// Checks that `buf` is a whole number of well-formed NLRI entries; returns how many.
pub fn validate_nlri(family: Family, mut buf: &[u8]) -> Result<usize, PrefixError> {
    let mut count = 0;
    while !buf.is_empty() {
        let (_, n) = Prefix::parse_nlri(family, buf)?;
        buf = &buf[n..];
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The integer mask of `new` clears what the byte-wise mask of the
        /// decoder does, for every length of both families.
        #[test]
        fn new_masks_as_the_decoder_does(a in proptest::prelude::any::<u128>(), len in 0u8..=128) {
            let v6 = Ipv6Addr::from(a);
            proptest::prop_assert_eq!(
                Prefix::new(IpAddr::V6(v6), len),
                Prefix::from_bytes(Family::Ipv6, len, &v6.octets())
            );
            let v4 = Ipv4Addr::from(a as u32);
            proptest::prop_assert_eq!(
                Prefix::new(IpAddr::V4(v4), len),
                Prefix::from_bytes(Family::Ipv4, len, &v4.octets())
            );
        }
    }

    /// The byte-wise match `contains` and `covers` used before they compared
    /// integers: the reference they are checked against.
    fn bytewise_match(a: &[u8; 16], b: &[u8; 16], len: u8) -> bool {
        let full = (len / 8) as usize;
        if a[..full] != b[..full] {
            return false;
        }
        let rem = len % 8;
        if rem == 0 {
            return true;
        }
        let mask = 0xffu8 << (8 - rem);
        (a[full] & mask) == (b[full] & mask)
    }

    fn bytewise_contains(p: &Prefix, addr: IpAddr) -> bool {
        let bytes: [u8; 16] = match (p.family, addr) {
            (Family::Ipv4, IpAddr::V4(a)) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            (Family::Ipv6, IpAddr::V6(a)) => a.octets(),
            _ => return false,
        };
        bytewise_match(&p.addr, &bytes, p.len)
    }

    fn addr_of(a: u128, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        }
    }

    /// `addr` with bit `bit` (counted from the top) inverted, or `addr`
    /// itself when `bit` is past its width: hits and near misses at every
    /// length.
    fn flip(addr: IpAddr, bit: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let f = 1u32.checked_shl(31u32.wrapping_sub(u32::from(bit)));
                IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ f.unwrap_or(0)))
            }
            IpAddr::V6(a) => {
                let f = 1u128.checked_shl(127u32.wrapping_sub(u32::from(bit)));
                IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ f.unwrap_or(0)))
            }
        }
    }

    proptest::proptest! {
        /// The integer `contains` and `covers` answer as the byte-wise
        /// match did, for both families, every length (0, 32 and 128
        /// included) and addresses one bit away from the prefix's.
        #[test]
        fn contains_and_covers_match_the_bytewise_reference(
            a in proptest::prelude::any::<u128>(),
            v6 in proptest::prelude::any::<bool>(),
            len in 0u8..=128,
            bit in 0u8..=130,
            other_len in 0u8..=128,
        ) {
            let base = addr_of(a, v6);
            let p = Prefix::new(base, len.min(if v6 { 128 } else { 32 })).unwrap();
            // The same family, and the other one.
            for addr in [flip(base, bit), flip(addr_of(a, !v6), bit)] {
                proptest::prop_assert_eq!(p.contains(addr), bytewise_contains(&p, addr));
                let q_len = other_len.min(if addr.is_ipv6() { 128 } else { 32 });
                for q in [Prefix::new(addr, q_len).unwrap(), Prefix::host(addr)] {
                    let want = p.family == q.family
                        && p.len <= q.len
                        && bytewise_match(&p.addr, &q.addr, p.len);
                    proptest::prop_assert_eq!(p.covers(&q), want);
                    proptest::prop_assert!(q.covers(&q));
                }
            }
        }
    }

    #[test]
    fn host_bits_are_cleared() {
        let p: Prefix = "192.168.1.77/24".parse().unwrap();
        assert_eq!(p.addr(), IpAddr::V4(Ipv4Addr::new(192, 168, 1, 0)));
        let p: Prefix = "10.255.255.255/9".parse().unwrap();
        assert_eq!(p.addr(), IpAddr::V4(Ipv4Addr::new(10, 128, 0, 0)));
    }

    #[test]
    fn nlri_round_trip_uses_minimum_octets() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(p.emit_nlri(&mut buf), Some(3));
        assert_eq!(&buf[..3], &[16, 10, 1]);
        assert_eq!(Prefix::parse_nlri(Family::Ipv4, &buf[..3]), Ok((p, 3)));
    }

    #[test]
    fn nlri_longer_than_family_is_rejected() {
        assert_eq!(
            Prefix::parse_nlri(Family::Ipv4, &[33, 1, 2, 3, 4, 5]),
            Err(PrefixError::BadLength)
        );
        assert_eq!(
            Prefix::parse_nlri(Family::Ipv4, &[24, 1, 2]),
            Err(PrefixError::Truncated)
        );
    }

    #[test]
    fn contains_and_covers() {
        let p: Prefix = "192.168.4.0/24".parse().unwrap();
        assert!(p.contains("192.168.4.10".parse().unwrap()));
        assert!(!p.contains("192.168.5.10".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let q: Prefix = "192.168.4.128/25".parse().unwrap();
        assert!(p.covers(&q));
        assert!(!q.covers(&p));
        let v6: Prefix = "fd00:1::/48".parse().unwrap();
        assert!(v6.contains("fd00:1::5".parse().unwrap()));
    }
}
